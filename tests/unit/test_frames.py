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
        assert exc.__traceback__ is not None
        exc.__traceback__ = exc.__traceback__.tb_next  # drop this test's own frame
        loc, cause = _frames.exception_locations(exc)
    assert loc == cause and loc is not None and loc.startswith("json/decoder.py:")


def test_stdlib_and_site_packages_are_not_app_files() -> None:
    """Installed packages and the standard library are library code."""
    assert not _frames.is_app_file(json.__file__)
    assert not _frames.is_app_file(pytest.__file__)
    assert not _frames.is_app_file(_frames.__file__)


def test_console_scripts_are_not_app_files() -> None:
    """The venv's bin/ launchers (bin/gunicorn) are not the project's code."""
    import sysconfig

    launcher = Path(sysconfig.get_paths()["scripts"]) / "gunicorn"
    assert launcher.exists()
    assert not _frames.is_app_file(str(launcher))


_LIBRARY = """
import sys


def bridge(locate, out):
    out.append(locate(sys._getframe()))


class Node:
    def __init__(self, name, line):
        self.origin = type("Origin", (), {"template_name": name})()
        self.token = type("Token", (), {"lineno": line})()

    def render_annotated(self, locate):
        return locate(sys._getframe())
"""


def _library(path: str) -> dict[str, object]:
    """Functions whose code lives at ``path`` (a file of an installed distribution)."""
    namespace: dict[str, object] = {}
    exec(compile(_LIBRARY, path, "exec"), namespace)
    return namespace


def test_without_an_application_frame_the_innermost_library_frame_says_where() -> None:
    """A query from library code alone (an async-to-sync bridge) is located there, not in the
    standard library's thread machinery."""
    import threading

    lib = _library("/venv/lib/python3.11/site-packages/asgiref/sync.py")
    out: list[object] = []
    # Started by the standard library, so no application frame is outside the bridge.
    thread = threading.Thread(target=lib["bridge"], args=(_frames.caller_location, out))  # type: ignore[arg-type]
    thread.start()
    thread.join()
    [where] = out
    assert isinstance(where, str) and where.endswith("asgiref/sync.py:6:bridge"), where


def test_a_template_node_reached_first_names_the_query() -> None:
    """A template node met before any application frame is the location, as ``name:line``."""
    lib = _library("/venv/lib/python3.11/site-packages/django/template/base.py")
    node = lib["Node"]("shop/list.html", 7)  # type: ignore[operator]
    assert "shop/list.html:7" == node.render_annotated(_frames.caller_location)
