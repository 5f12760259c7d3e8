"""Where finished events go: stdout (logfmt) and the OpenTelemetry Logs SDK."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import _guard
from ..event import Event
from ..instrumenters import enrich

Sink = Callable[[Event], None]


class Dispatcher:
    """Calls every sink with each event; a failing sink is skipped and counted, never raised."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks: list[Sink] = list(sinks)

    def __call__(self, event: Event) -> None:
        enrich(event)  # the application's enrichers first: every sink sees their fields
        for sink in self.sinks:
            try:
                sink(event)
            except Exception as exc:
                _guard.report(f"sink.{type(sink).__name__}", exc)
