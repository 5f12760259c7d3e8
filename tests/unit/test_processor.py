"""The processor folds a request's child spans into one event, frees state, and never raises."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context

from otel_canonical_logs.event import Event
from otel_canonical_logs.processor import TEMPLATE_ATTRIBUTE, CanonicalLogProcessor
from otel_canonical_logs.sampling import RecordEverythingSampler

SQL_A = 'SELECT "a" FROM "t" WHERE "id" = %s'
SQL_B = 'SELECT COUNT(*) FROM "t"'


class Recorder:
    """A sink that keeps the events it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def processor(recorder: Recorder) -> CanonicalLogProcessor:
    return CanonicalLogProcessor(recorder, max_open_requests=4, max_statements=50)


@pytest.fixture
def tracer(processor: CanonicalLogProcessor) -> Iterator[object]:
    provider = TracerProvider(sampler=RecordEverythingSampler(ALWAYS_OFF))
    provider.add_span_processor(processor)
    yield provider.get_tracer("test")
    provider.shutdown()


def _db(tracer, sql: str, system: str = "sqlite", old_semconv: bool = True) -> None:  # type: ignore[no-untyped-def]
    attrs = (
        {"db.system": system, "db.statement": sql}
        if old_semconv
        else {
            "db.system.name": system,
            "db.query.text": sql,
        }
    )
    with tracer.start_as_current_span(sql.split()[0], kind=SpanKind.CLIENT, attributes=attrs):
        pass


def test_db_spans_are_counted_and_duplicates_found(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """Six queries, five with one SQL text, give db_queries=6 and db_dup_queries=5."""
    with tracer.start_as_current_span("GET /x/", kind=SpanKind.SERVER):
        _db(tracer, SQL_B)
        for _ in range(5):
            _db(tracer, SQL_A, old_semconv=False)
    [event] = recorder.events
    assert event.fields["db_queries"] == 6
    assert event.fields["db_dup_queries"] == 5
    assert event.fields["db_dup_sql"] == SQL_A
    assert event.fields["db_dup_time"] <= event.fields["db_time"]


def test_unsampled_requests_still_get_their_event(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """With a sampler that drops everything, the request is still recorded and emitted."""
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER) as span:
        assert not span.get_span_context().trace_flags.sampled
        _db(tracer, SQL_B)
    assert recorder.events[0].fields["db_queries"] == 1


def test_grandchildren_fold_into_the_request(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """A query under a template span under the root counts for the request."""
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("render", attributes={TEMPLATE_ATTRIBUTE: "a.html"}):
            _db(tracer, SQL_B)
    fields = recorder.events[0].fields
    assert (fields["db_queries"], fields["tmpl_renders"]) == (1, 1)


def test_http_and_cache_client_spans_are_categorised(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """HTTP client spans (old and new conventions) and redis spans land in their own fields."""
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        for attrs in ({"http.method": "GET"}, {"http.request.method": "POST"}):
            with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes=attrs):
                pass
        _db(tracer, "GET", system="redis")
    fields = recorder.events[0].fields
    assert (fields["http_out_calls"], fields["cache_calls"]) == (2, 1)
    assert "db_queries" not in fields


def test_request_without_children_has_no_aggregate_keys(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """Absent data is absent: no db_* or tmpl_* keys for a request with none."""
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    keys = set(recorder.events[0].fields)
    assert not {k for k in keys if k.startswith(("db_", "tmpl_", "http_out", "cache_"))}
    assert list(recorder.events[0].fields)[:3] == ["event_type", "trace_id", "span_id"]


def test_state_is_freed_when_the_root_ends(tracer, processor: CanonicalLogProcessor) -> None:  # type: ignore[no-untyped-def]
    """After the request, nothing about it is held."""
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        _db(tracer, SQL_A)
        assert processor.open_requests() == 1
    assert processor.open_requests() == 0
    assert processor._owner == {}


def test_roots_that_never_end_are_capped(tracer, processor: CanonicalLogProcessor) -> None:  # type: ignore[no-untyped-def]
    """Ten leaked roots with a cap of four keep only four requests' state."""
    for _ in range(10):
        tracer.start_span("GET /leak", kind=SpanKind.SERVER)
    assert processor.open_requests() == 4
    assert len(processor._owner) == 4


def test_remote_parent_still_makes_a_local_root(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """A request continuing an incoming trace is still its own canonical request."""
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    ctx = set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("GET /", context=ctx, kind=SpanKind.SERVER):
        pass
    assert format(0xABC, "032x") == recorder.events[0].fields["trace_id"]


def test_internal_roots_are_not_requests(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """A local root that is not a SERVER span (a script, a task) emits nothing."""
    with tracer.start_as_current_span("job"):
        _db(tracer, SQL_A)
    assert recorder.events == []


def test_distinct_statements_are_capped(tracer, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    """Past the statement cap (50 in the fixture), queries still count but are not tracked one by
    one: a statement first seen beyond the cap, however often repeated, is no duplicate."""
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        for i in range(80):
            _db(tracer, f"SELECT {i}")
        for _ in range(5):
            _db(tracer, "SELECT 79")  # beyond the cap: counted, never tracked
        _db(tracer, "SELECT 0")  # within the cap: its repeat is a duplicate
    [event] = recorder.events
    assert event.fields["db_queries"] == 86
    assert (event.fields["db_dup_queries"], event.fields["db_dup_sql"]) == (2, "SELECT 0")


def test_a_failing_emit_is_contained(fail_on_internal_errors) -> None:  # type: ignore[no-untyped-def]
    """An exception inside on_end is reported, never raised into the request."""
    provider = TracerProvider()

    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    provider.add_span_processor(CanonicalLogProcessor(broken))
    with provider.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    assert [kind for kind, _ in fail_on_internal_errors] == ["processor.on_end"]
    fail_on_internal_errors.clear()


def test_spans_count_as_wanted_only_when_another_processor_receives_them(
    processor: CanonicalLogProcessor,
) -> None:
    """A sampled request whose spans reach no processor but ours takes the DB fast path."""
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    provider = TracerProvider(sampler=RecordEverythingSampler(ALWAYS_ON))
    provider.add_span_processor(processor)
    processor.watch(provider)
    tracer = provider.get_tracer("test")
    wanted = []
    for _ in range(2):
        with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as root:
            state = processor.state_for(root)
            assert state is not None
            wanted.append(state.spans_wanted)
        provider.add_span_processor(SpanProcessor())  # e.g. an exporter's batch processor
    provider.shutdown()
    assert [False, True] == wanted


def test_span_attributes_reads_what_the_public_view_shows(tracer) -> None:  # type: ignore[no-untyped-def]
    """The fast read of a finished span's attributes equals ReadableSpan.attributes, for SDK
    spans and for a ReadableSpan built by hand (another layout: the public view is used)."""
    from opentelemetry.sdk.trace import ReadableSpan

    from otel_canonical_logs._otel import span_attributes

    with tracer.start_as_current_span("q", kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"}) as span:
        span.set_attribute("db.statement", SQL_A)
    built = ReadableSpan(name="x", attributes={"a": 1})
    assert (
        dict(span.attributes) == dict(span_attributes(span)) == {"db.system": "sqlite", "db.statement": SQL_A}
    )
    assert {"a": 1} == dict(span_attributes(built))
