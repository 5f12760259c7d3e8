"""A real tracer provider wired to a canonical-log processor that is the process's ``_runtime``
one for the test, so ``Context`` and ``on_error`` find the request; restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from otel_canonical_logs._runtime import runtime
from otel_canonical_logs.event import Event
from otel_canonical_logs.processor import CanonicalLogProcessor
from otel_canonical_logs.sampling import RecordEverythingSampler


class Pipeline:
    """The tracer of a private provider and every event its processor dispatched."""

    def __init__(self, tracer: Any, events: list[Event]) -> None:
        self.tracer = tracer
        self.events = events

    def request(self, name: str = "GET /x/") -> Any:
        """A root SERVER span: the request, as the Django instrumentor starts it."""
        return self.tracer.start_as_current_span(name, kind=SpanKind.SERVER)

    def fields(self, event_type: str = "request") -> list[dict[str, Any]]:
        return [e.fields for e in self.events if e.type == event_type]


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    """Events go through ``_runtime.dispatcher`` (so enrichers run) into a list."""
    events: list[Event] = []
    previous_processor = runtime.processor
    previous_sinks = list(runtime.dispatcher.sinks)
    runtime.dispatcher.sinks[:] = [events.append]
    processor = CanonicalLogProcessor(runtime.dispatcher)
    runtime.processor = processor
    provider = TracerProvider(sampler=RecordEverythingSampler(ALWAYS_ON))
    provider.add_span_processor(processor)
    try:
        yield Pipeline(provider.get_tracer("test"), events)
    finally:
        provider.shutdown()
        runtime.processor = previous_processor
        runtime.dispatcher.sinks[:] = previous_sinks
