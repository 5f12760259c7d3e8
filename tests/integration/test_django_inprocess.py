"""Django driven in-process with ``django.test.Client``: query counting against Django's own count,
one span per query with a driver instrumentor, and ``capture_events``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON

from otel_canonical_logs.sampling import RecordEverythingSampler
from otel_canonical_logs.testing import capture_events
from tests.integration.harness import EXAMPLE_DIR


class Traced:
    """The in-process app's tracer provider and the spans it finished."""

    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        self.provider = provider
        self.exporter = exporter

    def db_spans(self) -> list[Any]:
        return [s for s in self.exporter.get_finished_spans() if s.attributes and "db.system" in s.attributes]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """Django set up once for this module, instrumented with a private tracer provider."""
    os.environ["EXAMPLE_SQLITE_PATH"] = str(Path(tmp_path_factory.mktemp("django")) / "db.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    os.environ["CANONICAL_LOGS_STDOUT"] = "false"
    sys.path.insert(0, str(EXAMPLE_DIR))
    import django
    from django.core.management import call_command
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    from otel_canonical_logs import _runtime
    from otel_canonical_logs.instrumentation import django as django_integration
    from otel_canonical_logs.instrumentation.django_db import DjangoDatabaseInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=RecordEverythingSampler(DEFAULT_ON))
    provider.add_span_processor(_runtime.build(None))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    django_integration.instrument(DjangoInstrumentor, tracer_provider=provider)
    DjangoDatabaseInstrumentor().instrument(tracer_provider=provider)
    django.setup()
    call_command("migrate", verbosity=0)
    call_command("seed", stderr=open(os.devnull, "w"))  # noqa: SIM115
    yield Traced(provider, exporter)
    DjangoDatabaseInstrumentor().uninstrument()
    DjangoInstrumentor().uninstrument()
    os.environ.pop("CANONICAL_LOGS_STDOUT")


def _get(path: str) -> dict[str, Any]:
    from django.test import Client

    with capture_events() as events:
        Client().get(path)
    [event] = events
    return event


def test_counts_match_django_capture_queries(traced: Traced) -> None:
    """Under CaptureQueriesContext (assertNumQueries' mechanism) db_queries equals Django's count."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        event = _get("/n-plus-one/")
    assert len(captured.captured_queries) == event["db_queries"] == 6
    assert 5 == event["db_dup_queries"]


def test_driver_instrumentor_spans_are_used_not_doubled(traced: Traced) -> None:
    """With the sqlite3 instrumentor on, each query is one span, the driver's, counted once."""
    from django.db import connection
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    connection.close()
    SQLite3Instrumentor().instrument(tracer_provider=traced.provider)
    try:
        traced.exporter.clear()
        event = _get("/n-plus-one/")
        db_spans = traced.db_spans()
        assert 6 == event["db_queries"] == len(db_spans)
        assert {"opentelemetry.instrumentation.sqlite3"} == {s.instrumentation_scope.name for s in db_spans}
    finally:
        connection.close()
        SQLite3Instrumentor().uninstrument()


def test_our_wrapping_makes_one_span_per_query(traced: Traced) -> None:
    """Without a driver instrumentor, our dbapi wrapping makes exactly one span per query."""
    from django.db import connection

    connection.close()
    traced.exporter.clear()
    event = _get("/db/")
    db_spans = traced.db_spans()
    assert 10 == event["db_queries"] == len(db_spans)
    assert {"otel_canonical_logs.django_db"} == {s.instrumentation_scope.name for s in db_spans}


def test_capture_events_sees_the_exception_fields(traced: Traced) -> None:
    """capture_events returns the fields of the request's event, exception included."""
    from django.test import Client

    with capture_events() as events:
        Client(raise_request_exception=False).get("/boom/")
    assert ("ValueError", 500) == (events[0]["exc_type"], events[0]["resp_status"])
