"""Test-wide fixtures: any internal error the production guard swallows fails the test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from otel_canonical_logs import _guard  # noqa: E402


@pytest.fixture(autouse=True)
def fail_on_internal_errors() -> Iterator[list[tuple[str, BaseException]]]:
    """Collect errors swallowed by ``_guard`` during the test and re-raise the first at teardown."""
    seen: list[tuple[str, BaseException]] = []
    previous = _guard.on_internal_error
    _guard.on_internal_error = lambda kind, exc: seen.append((kind, exc))
    try:
        yield seen
    finally:
        _guard.on_internal_error = previous
    if seen:
        kind, exc = seen[0]
        raise AssertionError(f"internal error swallowed in {kind}: {exc!r}") from exc
