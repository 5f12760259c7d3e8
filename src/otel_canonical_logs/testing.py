"""Helpers for tests, including the application's own: assert on the canonical events emitted.

Example::

    from otel_canonical_logs.testing import capture_events

    def test_checkout_logs_queries(client):
        with capture_events() as events:
            client.get("/checkout/")
        assert events[-1]["db_queries"] == 3
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._runtime import internal_counts, runtime
from .event import Event

__all__ = ["CapturedEvents", "capture_events", "internal_counts"]


class CapturedEvents(list[dict[str, Any]]):
    """The events' fields, in emission order; ``.events`` keeps the full ``Event`` objects."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.append(dict(event.fields))


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Collect every canonical event emitted in this process while the block runs."""
    captured = CapturedEvents()
    runtime.dispatcher.sinks.append(captured)
    try:
        yield captured
    finally:
        runtime.dispatcher.sinks.remove(captured)
