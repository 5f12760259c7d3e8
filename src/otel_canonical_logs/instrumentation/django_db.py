"""DB spans for every Django connection, through opentelemetry-instrumentation-dbapi.

Each query is seen through Django's own instrumentation hook: ours is the first of every
connection's ``execute_wrappers`` (put there when Django opens the connection,
``connection_created``), which every ``CursorWrapper``/``CursorDebugWrapper`` ``execute`` and
``executemany`` runs — ``DEBUG=True``, ``force_debug_cursor``, ``assertNumQueries``, raw SQL,
server-side cursors — exactly where Django's ``CaptureQueriesContext`` logs them; ``callproc``,
which Django runs outside its wrappers, is wrapped on ``CursorWrapper``. No proxy sits on the
raw DB-API connection or cursor (an earlier version's wrapt proxies cost about 35k instructions
per query).

A query in a request whose trace is sampled becomes a dbapi CLIENT span, exported like any other:
where the provider allows it (``_otel.deferred_query_spans``, span processors that do nothing
when a span starts, and no tracer provider given to this instrumentor but the global one), it is
recorded as it runs and its span is made when the request ends (``_keep.query_spans``) — the same
span, without the live span's bookkeeping on every query.
A query in an unsampled request — or in any request when no span processor but ours is installed
(``OTEL_TRACES_EXPORTER=none``) — would make a span nobody exports: it is timed and counted into
the request's aggregate directly instead, which costs a few microseconds instead of tens and gives
the line the same fields.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.dbapi import (
    CursorTracer,
    DatabaseApiIntegration,
)
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.trace import SpanKind, Status, StatusCode, get_tracer_provider, set_span_in_context
from wrapt import FunctionWrapper

from .. import _guard, _otel
from .._aggregate import InFlight, RequestAggregate
from .._patching import Patches, is_ours, mark
from .._runtime import runtime
from .._version import __version__

_INTEGRATION_ATTR = "_otel_canonical_logs_integration"
_TRACER_ATTR = "_otel_canonical_logs_cursor_tracer"
_CLIENT = SpanKind.CLIENT
# True while Django opens a connection (BaseDatabaseWrapper.connect).
_django_connecting: ContextVar[bool] = ContextVar("otel_canonical_logs_django_connecting", default=False)
_patches = Patches()
_suppressed = _otel.suppressed
_SUPPRESS = _otel.SUPPRESS_KEY
_span_in = _otel.span_in


class _Settings:
    """What the last ``instrument()`` asked for; ``generation`` tells cached integrations,
    built with older options, to be rebuilt."""

    __slots__ = ("active", "defer", "generation", "lean", "options")

    def __init__(self) -> None:
        # False after ``uninstrument()``: connections opened before it still have ours among
        # their execute wrappers (every thread's, not only the caller's), which then only call on.
        self.active = False
        self.generation = 0
        self.options: dict[str, Any] = {}
        # Whether an exported request's queries may be recorded and their spans made at its end
        # (``_keep.query_spans``): those go to the global provider's span processors, so not when
        # this instrumentor was given a tracer provider of its own.
        self.defer = True
        # dbapi's span naming and attribute population reused by the leaner span path (_traced).
        self.lean = False


_settings = _Settings()

# Django vendor -> OpenTelemetry db.system value.
_DB_SYSTEMS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "oracle": "oracle",
}


def untraced(raw: Any) -> Any:
    """The connection with a driver instrumentor's tracing taken off, so ours is the only one.

    ``opentelemetry-instrumentation-sqlite3`` (and every ``dbapi.wrap_connect``-based driver
    instrumentor) hands Django a proxy; ``-psycopg`` sets a traced ``cursor_factory``. Left in
    place, each query would make two spans and count twice; ours also has the unsampled fast
    path. Connections the application opens itself, outside Django, keep the driver's tracing.
    """
    import wrapt

    proxy_type = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)  # wrapt 2 / wrapt 1
    while isinstance(raw, proxy_type):
        raw = raw.__wrapped__
    factory = getattr(raw, "cursor_factory", None)
    if factory is not None and (getattr(factory, "__module__", "") or "").startswith("opentelemetry."):
        original = _otel.original_cursor_factory(raw, factory)
        if original is not None:
            raw.cursor_factory = original
    return raw


def _query(execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """Django's execute wrapper, first in every connection's ``execute_wrappers``: one
    execution, counted on the fast path, else a span. Guarded on both sides of the host's call:
    anything of ours failing before it runs the query as it would run without us; after it, the
    query's result or exception is the host's, untouched."""
    if not _settings.active:
        return execute(sql, params, many, context)
    try:
        ctx = otel_context.get_current()
        suppressed = ctx.get(_SUPPRESS) if _SUPPRESS is not None else _suppressed(ctx)
        state = None if suppressed else runtime.request_state(ctx)
    except Exception as exc:
        _guard.report("django_db.execute", exc)
        return execute(sql, params, many, context)
    if suppressed:
        return execute(sql, params, many, context)
    if state is None or (state.spans_wanted and (not state.records or not _settings.defer)):
        return _traced(execute, sql, params, many, context, ctx, state)
    try:
        if state.records:
            # Recorded for keeping, or an exported request's query whose span is made when the
            # request ends: a record of its own (its times, parent, error).
            op = state.begin(sql, "db", ctx, _cursor_tracer(context["connection"]))
        else:
            # The aggregate's slot for the query running now (a request's queries do not nest):
            # what a timeout snapshot names. Set and cleared here, not through a call: this is
            # the path every query of an unsampled request takes.
            slot = state.query_slot
            if slot is None:
                slot = state.query_slot = InFlight(None)
            op = slot
            op.text = sql
            state.in_flight[op] = op
    except Exception as exc:
        _guard.report("django_db.execute", exc)
        return execute(sql, params, many, context)
    error: BaseException | None = None
    start = perf_counter_ns()
    try:
        return execute(sql, params, many, context)
    except BaseException as exc:
        error = exc
        raise
    finally:
        elapsed = perf_counter_ns() - start
        try:
            if op is state.query_slot:
                state.in_flight.pop(op, None)
            else:
                state.end(op, error)
                if state.exported and len(state.ops) >= state.max_records:
                    processor = runtime.processor
                    if processor is not None:
                        processor.flush_queries(state)
            state.add_query(sql, elapsed)
        except Exception as exc:
            _guard.report("django_db.count_query", exc)


def _count(state: RequestAggregate, span: Any, statement: object, elapsed: int) -> None:
    """Report a query to its request, right after it ran; ``span``: its span, if it made one."""
    try:
        if span is not None:
            processor = runtime.processor
            if processor is not None:
                processor.disown(state, span)
        state.add_query(statement, elapsed)
    except Exception as exc:
        _guard.report("django_db.count_query", exc)


def _traced(
    execute: Callable[..., Any],
    sql: Any,
    params: Any,
    many: bool,
    context: dict[str, Any],
    ctx: Any,
    state: RequestAggregate | None,
) -> Any:
    """The query as a dbapi CLIENT span, with the name and attributes dbapi's
    ``traced_execution`` gives it. Where dbapi's internals are as expected (``_settings.lean``)
    the span is started without being made the current span: a query is a leaf (the driver's
    own instrumentation is off Django's connections), so nothing needs it current, and attaching
    and detaching a context per query is a large part of dbapi's per-query cost. In a request,
    the query is counted here, as on the fast path, and its span is not folded again."""
    if not _settings.lean:
        return _traced_by_dbapi(execute, sql, params, many, context)
    args = (sql,) if params is None else (sql, params)
    span: Any = None
    try:
        tracer = _cursor_tracer(context["connection"])
        cursor = context["cursor"].cursor
        integration = tracer._db_api_integration
        if state is not None and state.root_end_ns is not None and _span_in(ctx) is None:
            # A query in a streamed body, after the root span ended: still a child of the request.
            ctx = set_span_in_context(state.root_span, ctx)
        operation = tracer.get_operation_name(cursor, args)
        span = integration._tracer.start_span(
            operation or integration.database or integration.name, ctx, kind=_CLIENT
        )
        tracer._populate_span(span, cursor, *args)
    except Exception as exc:
        _guard.report("django_db.span", exc)
        if span is not None:
            with _guard.guard("django_db.span"):
                span.end()
        return execute(sql, params, many, context)
    start = perf_counter_ns()
    error: Exception | None = None
    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        error = exc
        raise
    finally:
        try:
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            if state is not None:
                _count(state, span, sql, perf_counter_ns() - start)
            span.end()
            tracer._record_metrics(cursor, operation, start * 1e-9, error)
        except Exception as exc:
            _guard.report("django_db.span", exc)


def _traced_by_dbapi(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """dbapi's own ``traced_execution`` (its span made current, its sqlcommenter if enabled),
    for a dbapi whose internals the lean path does not know. Its spans are folded by the
    processor like any other child span."""
    ran = False

    def run(sql: Any, params: Any = None, *rest: Any) -> Any:
        nonlocal ran
        ran = True
        return execute(sql, params, many, context)

    try:
        tracer = _cursor_tracer(context["connection"])
        cursor = context["cursor"].cursor
    except Exception as exc:
        _guard.report("django_db.span", exc)
        return execute(sql, params, many, context)
    args = (sql,) if params is None else (sql, params)
    try:
        return tracer.traced_execution(cursor, run, *args)
    except Exception as exc:
        if ran:
            raise  # the host's query raised: its exception, untouched
        _guard.report("django_db.span", exc)
        return execute(sql, params, many, context)


def _cursor_tracer(connection: Any) -> CursorTracer[Any]:
    """The dbapi ``CursorTracer`` of a Django connection object (per alias and thread): built
    on its first traced or recorded query, and again after ``instrument()`` changed options."""
    cached = connection.__dict__.get(_TRACER_ATTR)
    if cached is not None and cached[0] == _settings.generation:
        return cached[1]  # type: ignore[no-any-return]
    tracer: CursorTracer[Any] = CursorTracer(_integration(connection, connection.connection))
    connection.__dict__[_TRACER_ATTR] = (_settings.generation, tracer)
    return tracer


def _make_callproc(original: Any) -> Any:
    """``CursorWrapper.callproc`` does not go through Django's execute wrappers: the same
    counting and span around it, the procedure's name as its statement."""

    def callproc(self: Any, procname: Any, params: Any = None, kparams: Any = None) -> Any:
        def execute(sql: Any, params: Any, many: bool, context: Any) -> Any:
            return original(self, procname, params, kparams)

        return _query(execute, procname, params, False, {"connection": self.db, "cursor": self})

    return callproc


def _integration(connection: Any, raw: Any) -> DatabaseApiIntegration:
    """One integration per Django connection object (per alias and thread), reused by every
    raw connection it opens: with ``CONN_MAX_AGE=0`` that is one per request, and building an
    integration (tracer, semconv look-ups, connection attributes) costs tens of microseconds."""
    cached = connection.__dict__.get(_INTEGRATION_ATTR)
    if cached is not None and cached[0] == _settings.generation:
        return cached[1]  # type: ignore[no-any-return]
    system = _DB_SYSTEMS.get(connection.vendor, connection.vendor)
    integration = DatabaseApiIntegration(
        "otel_canonical_logs.django_db", system, version=__version__, **_settings.options
    )
    integration.get_connection_attributes(raw)
    connection.__dict__[_INTEGRATION_ATTR] = (_settings.generation, integration)
    return integration


def _wrap(connection: Any) -> None:
    """A connection Django just opened: ours first in its execute wrappers (once per connection
    object: the list outlives reconnects), and the driver's own tracing taken off the raw
    connection."""
    wrappers = connection.execute_wrappers
    if _query not in wrappers:
        wrappers.insert(0, _query)
    if connection.connection is not None:
        connection.connection = untraced(connection.connection)


def _bypass_driver_tracing(module: Any) -> None:
    """Keep a driver instrumentor's ``connect`` wrapper from wrapping Django's own connections.

    ``opentelemetry-instrumentation-sqlite3``/``-psycopg`` wrap the driver's ``connect`` and
    build a ``DatabaseApiIntegration`` plus a proxy for every connection (about 65 µs), which
    ``untraced()`` would only take off again. Their wrapper is re-wrapped once, in place, by
    one that calls the bare ``connect`` while Django connects and theirs otherwise: connections
    the application opens itself stay traced, and ``unwrap`` (their uninstrument) still works.
    """
    fn = getattr(module, "connect", None)
    wrapper = _otel.wrapper_of(fn)
    if wrapper is None or is_ours(wrapper):
        return
    if not (getattr(wrapper, "__module__", "") or "").startswith("opentelemetry."):
        return

    def connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if _django_connecting.get():
            return wrapped(*args, **kwargs)
        return wrapper(wrapped, instance, args, kwargs)

    _patches.replace(module, "connect", FunctionWrapper(fn.__wrapped__, mark(connect, wrapper)))  # type: ignore[union-attr]


def _make_connect(original: Any) -> Any:
    """Leave connection set-up out of the request's queries, whoever traces the driver.

    Opening a connection runs Django's own set-up SQL (PostgreSQL's time zone and role). A driver
    instrumentor would trace it and our wrapping, installed at ``connection_created``, would not;
    suppressing it during ``connect()`` makes ``db_queries`` the same either way, and equal to
    what ``assertNumQueries`` counts.
    """
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    def connect(self: Any) -> None:
        # Every backend connects through ``DatabaseWrapper.Database.connect``; a driver
        # instrumentor loaded after us is caught on the next connection.
        with _guard.guard("django_db.bypass_driver_tracing"):
            _bypass_driver_tracing(getattr(type(self), "Database", None))
        token = _django_connecting.set(True)
        try:
            with suppress_instrumentation():
                original(self)
        finally:
            _django_connecting.reset(token)

    return connect


def _count_transaction_statement(sql: str, elapsed: int) -> None:
    try:
        ctx = otel_context.get_current()
        if _suppressed(ctx):
            return
        state = runtime.request_state(ctx)
        if state is not None:
            _count(state, None, sql, elapsed)
    except Exception as exc:
        _guard.report("django_db.transaction", exc)


def _make_debug_transaction(original: Any) -> Any:
    """Count BEGIN, COMMIT and ROLLBACK where Django logs them (4.2+: ``debug_transaction``).

    PostgreSQL's BEGIN is not a statement of Django's (the driver sends it with the next query)
    and COMMIT/ROLLBACK are driver calls, not cursor executions: Django times and logs each
    around the call, and ``CaptureQueriesContext`` counts them. So do we, with the same time.
    """
    from contextlib import contextmanager

    @contextmanager
    def debug_transaction(connection: Any, sql: Any) -> Any:
        start = perf_counter_ns()
        try:
            with original(connection, sql):
                yield
        finally:
            _count_transaction_statement(str(sql), perf_counter_ns() - start)

    return debug_transaction


# Modules that imported Django's debug_transaction by name (django/db/backends/*/base.py).
_DEBUG_TRANSACTION_MODULES = ("django.db.backends.base.base", "django.db.backends.oracle.base")


def _on_connection_created(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    try:
        if connection is not None:
            _wrap(connection)
    except Exception as exc:
        _guard.report("django_db.connection_created", exc)


class DjangoDatabaseInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces each query of every Django database connection as a dbapi CLIENT span."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("django >= 4.2",)

    def _instrument(self, **kwargs: Any) -> None:
        import importlib

        from django.db.backends.base.base import BaseDatabaseWrapper
        from django.db.backends.signals import connection_created
        from django.db.backends.utils import CursorWrapper

        _settings.generation += 1
        _settings.options = {}
        given = kwargs.get("tracer_provider")
        if given is not None:
            _settings.options["tracer_provider"] = given
        _settings.defer = given is None or given is get_tracer_provider()
        _settings.lean = _otel.dbapi_lean()
        _settings.active = True

        connection_created.connect(
            _on_connection_created, weak=False, dispatch_uid="otel_canonical_logs.django_db"
        )
        _patches.patch(BaseDatabaseWrapper, "connect", _make_connect)
        _patches.patch(CursorWrapper, "callproc", _make_callproc)
        for name in _DEBUG_TRANSACTION_MODULES:
            try:
                module = importlib.import_module(name)
            except Exception:  # a backend whose driver is not installed
                continue
            _patches.patch(module, "debug_transaction", _make_debug_transaction)

    def _uninstrument(self, **kwargs: Any) -> None:
        from django.conf import settings
        from django.db import connections
        from django.db.backends.signals import connection_created

        _settings.active = False
        connection_created.disconnect(dispatch_uid="otel_canonical_logs.django_db")
        _patches.undo()
        if not settings.configured:
            # Before Django's settings are loaded (a Gunicorn post_fork hook, before the app is)
            # no connection can have been opened; asking for them would load the settings.
            return
        for connection in connections.all(initialized_only=True):  # this thread's
            with _guard.guard("django_db.uninstrument"):
                while _query in connection.execute_wrappers:
                    connection.execute_wrappers.remove(_query)
