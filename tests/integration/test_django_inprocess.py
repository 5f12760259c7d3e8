"""Django driven in-process with ``django.test.Client``: query counting against Django's own count,
one span per query with a driver instrumentor, and ``capture_events``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON

from otel_canonical_logs.sampling import RecordEverythingSampler
from otel_canonical_logs.testing import capture_events
from tests.integration.harness import EXAMPLE_DIR


class Recorded(SpanProcessor):
    """Every span that ended, sampled or not (an exporter only ever sees sampled ones)."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_end(self, span: Any) -> None:
        self.spans.append(span)


class Traced:
    """The in-process app's tracer provider and the spans it finished."""

    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter, recorded: Recorded) -> None:
        self.provider = provider
        self.exporter = exporter
        self.recorded = recorded

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

    from otel_canonical_logs._runtime import runtime
    from otel_canonical_logs.instrumentation import django as django_integration
    from otel_canonical_logs.instrumentation.django_db import DjangoDatabaseInstrumentor
    from otel_canonical_logs.instrumentation.templates import DjangoTemplateInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=RecordEverythingSampler(DEFAULT_ON))
    provider.add_span_processor(runtime.build(None))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorded = Recorded()
    provider.add_span_processor(recorded)
    django_integration.instrument(DjangoInstrumentor, tracer_provider=provider)
    DjangoDatabaseInstrumentor().instrument(tracer_provider=provider)
    DjangoTemplateInstrumentor().instrument(tracer_provider=provider)
    django.setup()
    call_command("migrate", verbosity=0)
    call_command("seed", stderr=open(os.devnull, "w"))  # noqa: SIM115
    yield Traced(provider, exporter, recorded)
    DjangoTemplateInstrumentor().uninstrument()
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


def test_driver_instrumentor_is_taken_off_django_connections(traced: Traced) -> None:
    """With the sqlite3 instrumentor on, each Django query is still one span (ours), counted once."""
    from django.db import connection
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    connection.close()
    SQLite3Instrumentor().instrument(tracer_provider=traced.provider)
    try:
        traced.exporter.clear()
        event = _get("/n-plus-one/")
        db_spans = traced.db_spans()
        assert 6 == event["db_queries"] == len(db_spans)
        assert {"otel_canonical_logs.django_db"} == {s.instrumentation_scope.name for s in db_spans}
    finally:
        connection.close()
        SQLite3Instrumentor().uninstrument()


def test_driver_instrumentor_never_wraps_django_connections(
    traced: Traced, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Django connects through the bare driver (no throw-away proxy); the app's own connections
    keep the driver's tracing, and the driver's uninstrument still restores ``connect``."""
    import sqlite3

    import wrapt
    from django.db import connection
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    from otel_canonical_logs.instrumentation import django_db

    handed: list[type] = []
    original_untraced = django_db.untraced

    def spy(raw: Any) -> Any:
        handed.append(type(raw))
        return original_untraced(raw)

    monkeypatch.setattr(django_db, "untraced", spy)
    connection.close()
    SQLite3Instrumentor().instrument(tracer_provider=traced.provider)
    try:
        traced.exporter.clear()
        assert 10 == _get("/db/")["db_queries"]
        assert [sqlite3.Connection] == handed

        own = sqlite3.connect(str(tmp_path / "own.sqlite3"))
        own.cursor().execute("SELECT 1")
        own.close()
        scopes = [s.instrumentation_scope.name for s in traced.db_spans()]
        assert 1 == scopes.count("opentelemetry.instrumentation.sqlite3")
    finally:
        connection.close()
        SQLite3Instrumentor().uninstrument()
    assert not isinstance(sqlite3.dbapi2.connect, wrapt.ObjectProxy)
    assert not isinstance(sqlite3.connect, wrapt.ObjectProxy)


def test_our_wrapping_makes_one_span_per_query(traced: Traced) -> None:
    """Without a driver instrumentor, our dbapi wrapping makes exactly one span per query."""
    from django.db import connection

    connection.close()
    traced.exporter.clear()
    event = _get("/db/")
    db_spans = traced.db_spans()
    assert 10 == event["db_queries"] == len(db_spans)
    assert {"otel_canonical_logs.django_db"} == {s.instrumentation_scope.name for s in db_spans}


def _query_spans(traced: Traced, path: str) -> list[tuple[Any, ...]]:
    """What matters of each DB span of one request: name, kind, attributes, status, events,
    and whether its parent is the request's root."""
    traced.exporter.clear()
    _get(path)
    spans = traced.exporter.get_finished_spans()
    [root] = [s for s in spans if s.parent is None]
    return [
        (
            s.name,
            s.kind,
            {k: v for k, v in (s.attributes or {}).items()},
            s.status.status_code,
            s.status.description,
            [(e.name, (e.attributes or {}).get("exception.type")) for e in s.events],
            s.parent is not None and s.parent.span_id == root.context.span_id,
        )
        for s in spans
        if s.attributes and "db.system" in s.attributes
    ]


def test_lean_query_spans_equal_dbapi_traced_execution_spans(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Query spans started without being made current carry exactly what dbapi's own
    ``traced_execution`` gives them — name, attributes, error status and exception event — and
    hang under the request's root span."""
    from otel_canonical_logs.instrumentation import django_db

    assert django_db._settings.lean
    lean = _query_spans(traced, "/fault/db-error/")
    monkeypatch.setattr(django_db._settings, "lean", False)
    stock = _query_spans(traced, "/fault/db-error/")
    assert stock == lean
    [failed] = [s for s in lean if s[5]]
    # The exception the application gets: Django's, wrapping the driver's (its __cause__).
    assert [("exception", "django.db.utils.OperationalError")] == failed[5]
    assert "SELECT * FROM shop_no_such_table" == failed[2]["db.statement"]
    assert all(s[6] for s in lean)


def test_each_new_connection_reuses_the_alias_integration(traced: Traced) -> None:
    """CONN_MAX_AGE=0 opens a connection per request; its dbapi integration and cursor tracer
    are built once, and ours is in its execute wrappers once."""
    from django.db import connection

    from otel_canonical_logs.instrumentation import django_db

    tracers = []
    for _ in range(2):
        connection.close()
        connection.ensure_connection()
        tracers.append(django_db._cursor_tracer(connection))
        assert 1 == connection.execute_wrappers.count(django_db._query)
    assert tracers[0] is tracers[1]
    assert tracers[0]._db_api_integration is django_db._integration(connection, connection.connection)
    assert 10 == _get("/db/")["db_queries"]


def test_no_query_spans_when_nothing_but_ours_receives_spans(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exporters off (our processor alone on the provider): queries make no spans, and the line
    has the same DB fields as with spans."""
    from opentelemetry.instrumentation.dbapi import CursorTracer

    from otel_canonical_logs._runtime import runtime

    processor = runtime.processor
    assert processor is not None
    spans = _get("/n-plus-one/")

    traced_calls: list[object] = []
    original = CursorTracer.traced_execution

    def traced_execution(self: Any, *a: Any, **k: Any) -> Any:
        traced_calls.append(a)
        return original(self, *a, **k)

    monkeypatch.setattr(CursorTracer, "traced_execution", traced_execution)
    monkeypatch.setattr(processor, "_processors", lambda: (processor,))  # ours alone
    fast = _get("/n-plus-one/")
    assert [] == traced_calls
    keys = ("db_queries", "db_dup_queries", "db_dup_sql", "db_dup_loc")
    assert [spans[k] for k in keys] == [fast[k] for k in keys]
    assert 6 == fast["db_queries"]


def test_capture_events_sees_the_exception_fields(traced: Traced) -> None:
    """capture_events returns the fields of the request's event, exception included."""
    from django.test import Client

    with capture_events() as events:
        Client(raise_request_exception=False).get("/boom/")
    assert ("ValueError", 500) == (events[0]["exc_type"], events[0]["resp_status"])


# -- the public API, in-process (trace-side checks the stdout line cannot show) ------------------


def _root_span(traced: Traced) -> Any:
    [root] = [s for s in traced.exporter.get_finished_spans() if s.parent is None]
    return root


def test_context_fields_are_root_span_attributes(traced: Traced) -> None:
    """Fields set with Context in a view are attributes of the request's root span too."""
    traced.exporter.clear()
    event = _get("/checkout/")
    attributes = _root_span(traced).attributes
    assert (3, 3) == (event["app_cart_items"], attributes["canonical.app_cart_items"])
    assert event["app_pricing_time"] == attributes["canonical.app_pricing_time"]


def test_template_renders_are_spans(traced: Traced) -> None:
    """Each render, includes too, is a span named after its template; includes are marked nested."""
    traced.exporter.clear()
    event = _get("/receipt/")
    renders = [
        s
        for s in traced.exporter.get_finished_spans()
        if s.attributes and "django.template.name" in s.attributes
    ]
    names = sorted((s.name, bool((s.attributes or {}).get("django.template.nested"))) for s in renders)
    assert [("render shop/partials/receipt_line.html", True)] * 3 + [
        ("render shop/receipt.html", False)
    ] == names
    assert 4 == event["tmpl_renders"]


def test_renders_are_counted_without_spans_when_nothing_but_ours_receives_spans(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exporters off: no render spans, the same tmpl_* fields, and a failing include still named."""
    from django.test import Client

    from otel_canonical_logs._runtime import runtime

    processor = runtime.processor
    assert processor is not None

    monkeypatch.setattr(processor, "_processors", lambda: (processor,))  # ours alone
    traced.exporter.clear()
    event = _get("/receipt/")
    with capture_events() as failed:
        Client(raise_request_exception=False).get("/receipt/?broken=line")
    rendered = [s.name for s in traced.exporter.get_finished_spans() if s.name.startswith("render ")]
    assert [] == rendered
    assert 4 == event["tmpl_renders"]
    assert 0 < event["tmpl_time"] <= event["resp_time"]
    assert failed[0]["exc_template"].startswith("shop/partials/receipt_line.html:")


def test_template_time_counts_the_outermost_render_only(traced: Traced) -> None:
    """tmpl_time is the top-level render's time: an include's time is not counted twice."""
    traced.exporter.clear()
    event = _get("/receipt/")
    [top] = [s for s in traced.exporter.get_finished_spans() if s.name == "render shop/receipt.html"]
    assert top.end_time is not None and top.start_time is not None
    assert round((top.end_time - top.start_time) * 1e-9, 6) == event["tmpl_time"]


def test_failed_render_span_records_the_exception(traced: Traced) -> None:
    """The include whose callable raised ends as an error span with the exception recorded."""
    from django.test import Client

    traced.exporter.clear()
    with capture_events() as events:
        Client(raise_request_exception=False).get("/receipt/?broken=line")
    [failed] = [
        s for s in traced.exporter.get_finished_spans() if s.name.endswith("receipt_line.html") and s.events
    ]
    assert ("ERROR", "exception") == (failed.status.status_code.name, failed.events[0].name)
    assert events[0]["exc_template"].startswith("shop/partials/receipt_line.html:")


def test_template_error_named_with_template_debug_on(traced: Traced) -> None:
    """With an engine in debug mode (Django's own annotation active), the node is the same."""
    from django.template import Context as TemplateContext
    from django.template import Engine
    from shop.api_views import Receipt, ReceiptLine

    from otel_canonical_logs._frames import template_location

    template = Engine(debug=True, app_dirs=True).get_template("shop/receipt.html")
    with pytest.raises(ValueError) as raised:
        template.render(TemplateContext({"receipt": Receipt([ReceiptLine("jam", -1)], False)}))
    assert hasattr(raised.value, "template_debug")
    assert "shop/partials/receipt_line.html:3" == template_location(raised.value)


def test_unsampled_request_counts_queries_without_spans(traced: Traced) -> None:
    """An unsampled request's queries are counted on the line but make no span at all."""
    from django.test import Client

    traced.recorded.spans.clear()
    unsampled = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-00"  # the caller decided: not sampled
    with capture_events() as events:
        Client().get("/n-plus-one/", HTTP_TRACEPARENT=unsampled)
    [event] = events
    assert (6, 5) == (event["db_queries"], event["db_dup_queries"])
    assert event["db_dup_loc"].startswith("shop/views.py:")
    assert [] == [s for s in traced.recorded.spans if s.attributes and "db.system" in s.attributes]
    assert ["GET n-plus-one/"] == [s.name for s in traced.recorded.spans]  # the request itself


def test_uninstrument_undoes_everything_instrument_replaced(traced: Traced) -> None:
    """Every outside attribute the DB and template instrumentors replaced — the driver-``connect``
    bypass included — is the original again after ``uninstrument()``, the connection's execute
    wrappers no longer hold ours, and ours again after a new ``instrument()``."""
    import sqlite3

    from django.db import connection
    from django.db.backends.base import base as backend_base
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper
    from django.template.base import Template
    from django.template.loader_tags import ExtendsNode
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    from otel_canonical_logs._patching import is_ours
    from otel_canonical_logs.instrumentation import django_db
    from otel_canonical_logs.instrumentation.django_db import DjangoDatabaseInstrumentor
    from otel_canonical_logs.instrumentation.templates import DjangoTemplateInstrumentor

    def bypassed() -> bool:
        return is_ours(getattr(sqlite3.dbapi2.connect, "_self_wrapper", None))

    def replaced() -> list[bool]:
        return [
            is_ours(BaseDatabaseWrapper.__dict__["connect"]),
            is_ours(CursorWrapper.__dict__["callproc"]),
            is_ours(vars(backend_base)["debug_transaction"]),
            is_ours(Template.__dict__["render"]),
            is_ours(ExtendsNode.__dict__["render"]),
            django_db._query in connection.execute_wrappers,
        ]

    connection.close()
    SQLite3Instrumentor().instrument(tracer_provider=traced.provider)
    try:
        with connection.cursor() as cursor:  # connects (bypass) and adds ours to execute_wrappers
            cursor.execute("SELECT 1")
        assert [True] * 6 == replaced() and bypassed()
        connection.close()
        DjangoTemplateInstrumentor().uninstrument()
        DjangoDatabaseInstrumentor().uninstrument()
        assert [False] * 6 == replaced() and not bypassed()
        assert getattr(sqlite3.dbapi2.connect, "_self_wrapper", None).__module__.startswith("opentelemetry.")
    finally:
        DjangoDatabaseInstrumentor().instrument(tracer_provider=traced.provider)
        DjangoTemplateInstrumentor().instrument(tracer_provider=traced.provider)
        connection.close()
        SQLite3Instrumentor().uninstrument()
    assert 10 == _get("/db/")["db_queries"]  # a new connection: ours in its execute wrappers again
    assert [True] * 6 == replaced()


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("request_state", "/db/"),  # the look-up before every query and render
        ("_populate_span", "/db/"),  # dbapi's attribute population on the span path
        ("counting_state", "/tpl/"),  # the render wrapper's decision
    ],
)
def test_a_failure_of_ours_before_the_hosts_call_leaves_the_call_to_the_host(
    traced: Traced,
    monkeypatch: pytest.MonkeyPatch,
    fail_on_internal_errors: list[tuple[str, BaseException]],
    target: str,
    path: str,
) -> None:
    """Whatever of ours raises before a query or a render runs it as it would run without us:
    the page is the same, and the failure is counted (once per kind, never raised)."""
    from django.test import Client
    from opentelemetry.instrumentation.dbapi import CursorTracer

    from otel_canonical_logs._runtime import runtime

    expected = Client().get(path)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ours, broken")

    owner: Any = CursorTracer if target == "_populate_span" else type(runtime)
    monkeypatch.setattr(owner, target, broken)
    response = Client().get(path)
    assert (200, expected.content) == (response.status_code, response.content)
    kinds = {kind for kind, _ in fail_on_internal_errors}
    assert kinds and kinds <= {"django_db.execute", "django_db.span", "templates.render", "context.set"}
    fail_on_internal_errors.clear()
