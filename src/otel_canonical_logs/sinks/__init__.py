"""Where finished events go: stdout (logfmt) and the OpenTelemetry Logs SDK."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import _guard
from .._values import normalise
from ..event import Event
from ..instrumenters import enrich

Sink = Callable[[Event], None]


class Dispatcher:
    """Runs the enrichers on each event, makes its keys and values safe once (``_values``: values
    cut to ``max_len``), then calls every sink; a failing sink is skipped and counted."""

    def __init__(self, sinks: Sequence[Sink] = (), max_len: int = 2048) -> None:
        self.sinks: list[Sink] = list(sinks)
        self.max_len = max_len

    def __call__(self, event: Event) -> None:
        if event.type != "saturation":  # the arbiter's: no request, no worker's set-up enrichers
            enrich(event)  # the application's enrichers first: every sink sees their fields
        try:
            normalise(event.fields, self.max_len)
        except Exception as exc:
            _guard.report("dispatch.normalise", exc)  # the encoders still make what they write safe
        for sink in self.sinks:
            try:
                sink(event)
            except Exception as exc:
                _guard.report(f"sink.{type(sink).__name__}", exc)
