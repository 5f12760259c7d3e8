"""Locations prefer application frames and use the shortest importable path."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_canonical_logs import _frames

APP = """
import json


def view():
    return helper()


def helper():
    return json.loads("{not json")
"""


@pytest.fixture
def app_module(tmp_path: Path) -> Iterator[object]:
    """A throwaway application package on sys.path: shop/views.py."""
    (tmp_path / "shopx").mkdir()
    (tmp_path / "shopx" / "__init__.py").write_text("")
    (tmp_path / "shopx" / "views.py").write_text(APP)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("shopx.views")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shopx.views", None)
        sys.modules.pop("shopx", None)


def test_app_frames_win_over_library_frames(app_module) -> None:  # type: ignore[no-untyped-def]
    """An error raised inside json is located at the app frames that called it."""
    with pytest.raises(json.JSONDecodeError) as info:
        app_module.view()
    exc = info.value
    exc.__traceback__ = exc.__traceback__.tb_next  # type: ignore[union-attr]  # this test's frame
    loc, cause = _frames.exception_locations(exc)
    assert ("shopx/views.py:6:view", "shopx/views.py:10:helper") == (loc, cause)


def test_library_only_traceback_falls_back_to_the_innermost_frame() -> None:
    """With no application frame, both locations are the innermost library frame."""
    try:
        json.loads("{not json")
    except json.JSONDecodeError as exc:
        exc.__traceback__ = exc.__traceback__.tb_next  # drop this test's own frame
        loc, cause = _frames.exception_locations(exc)
    assert loc == cause and loc is not None and loc.startswith("json/decoder.py:")


def test_stdlib_and_site_packages_are_not_app_files() -> None:
    """Installed packages and the standard library are library code."""
    assert not _frames.is_app_file(json.__file__)
    assert not _frames.is_app_file(pytest.__file__)
    assert not _frames.is_app_file(_frames.__file__)
