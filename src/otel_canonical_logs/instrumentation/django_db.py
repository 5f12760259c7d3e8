"""DB spans for every Django connection, through opentelemetry-instrumentation-dbapi.

The raw DB-API connection is wrapped when Django opens it (``connection_created``), below
Django's ``CursorWrapper``/``CursorDebugWrapper``: every cursor path Django has — ``DEBUG=True``,
``force_debug_cursor``, ``assertNumQueries``, raw SQL — goes through it.

A query in a request whose trace is sampled becomes a dbapi CLIENT span, exported like any other.
A query in an unsampled request would make a span nobody exports: it is timed and counted into the
request's aggregate directly instead, which costs a few microseconds instead of tens and gives
the line the same fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.dbapi import (
    DatabaseApiIntegration,
    TracedConnectionProxy,
    TracedCursorProxy,
)
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from .. import __version__, _guard, _runtime
from .._state import RequestState

# The key OTel uses to suppress instrumentation (``suppress_instrumentation()``).
_SUPPRESS = otel_context._SUPPRESS_INSTRUMENTATION_KEY
_OPEN_QUERY = -1  # key of the fast path's in-flight statement in RequestState.open_spans

# Django vendor -> OpenTelemetry db.system value.
_options: dict[str, Any] = {}

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
        original = getattr(raw, "_otel_orig_cursor_factory", None)  # psycopg instrument_connection
        if original is None:
            original = factory.__mro__[1]  # psycopg wrap_connect: TracedCursorFactory(base)
        raw.cursor_factory = original
    return raw


def _quiet_debug_bookkeeping(ops_class: type) -> None:
    """Keep Django's own debug-mode SQL out of the request's queries.

    With ``DEBUG=True`` (or ``force_debug_cursor``) Django calls ``last_executed_query`` after
    every query; on SQLite that runs ``SELECT QUOTE(?), ...`` on the same connection. It is not
    the application's query, so no span is made for it.
    """
    original = ops_class.__dict__.get("last_executed_query")
    if original is None or getattr(original, "_otel_canonical_logs", False):
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    def last_executed_query(self: Any, *args: Any, **kwargs: Any) -> Any:
        with suppress_instrumentation():
            return original(self, *args, **kwargs)

    last_executed_query._otel_canonical_logs = True  # type: ignore[attr-defined]
    ops_class.last_executed_query = last_executed_query  # type: ignore[attr-defined]


def _unsampled_request() -> RequestState | None:
    """The current request's aggregate when its trace is not sampled (and not suppressed)."""
    span = trace.get_current_span()
    if span.get_span_context().trace_flags.sampled:
        return None
    processor = _runtime.processor
    return processor.state_for(span) if processor is not None else None


def _run(proxy: Any, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    state = _unsampled_request()
    if state is None:
        return proxy._self_cursor_tracer.traced_execution(proxy.__wrapped__, method, *args, **kwargs)
    if otel_context.get_value(_SUPPRESS):
        return method(*args, **kwargs)
    statement = args[0] if args else None
    state.open_spans[_OPEN_QUERY] = statement
    start = time.perf_counter_ns()
    try:
        return method(*args, **kwargs)
    finally:
        elapsed = time.perf_counter_ns() - start
        state.open_spans.pop(_OPEN_QUERY, None)
        processor = _runtime.processor
        if processor is not None:
            try:
                processor.count_query(state, statement, elapsed)
            except Exception as exc:
                _guard.report("django_db.count_query", exc)


class _Cursor(TracedCursorProxy):  # type: ignore[misc]
    """dbapi's traced cursor, with the unsampled fast path in front of its span path."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return _run(self, self.__wrapped__.execute, args, kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return _run(self, self.__wrapped__.executemany, args, kwargs)

    def callproc(self, *args: Any, **kwargs: Any) -> Any:
        return _run(self, self.__wrapped__.callproc, args, kwargs)


class _Connection(TracedConnectionProxy):  # type: ignore[misc]
    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _Cursor(self.__wrapped__.cursor(*args, **kwargs), self._self_db_api_integration)


def _wrap(connection: Any) -> None:
    _quiet_debug_bookkeeping(type(connection.ops))
    if connection.connection is None:
        return
    raw = untraced(connection.connection)
    system = _DB_SYSTEMS.get(connection.vendor, connection.vendor)
    integration = DatabaseApiIntegration(
        "otel_canonical_logs.django_db", system, version=__version__, **_options
    )
    integration.get_connection_attributes(raw)
    connection.connection = _Connection(raw, integration)


def _patch_connect() -> None:
    """Leave connection set-up out of the request's queries, whoever traces the driver.

    Opening a connection runs Django's own set-up SQL (PostgreSQL's time zone and role). A driver
    instrumentor would trace it and our wrapping, installed at ``connection_created``, would not;
    suppressing it during ``connect()`` makes ``db_queries`` the same either way, and equal to
    what ``assertNumQueries`` counts.
    """
    from django.db.backends.base.base import BaseDatabaseWrapper
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    original = BaseDatabaseWrapper.connect
    if getattr(original, "_otel_canonical_logs", False):
        return

    def connect(self: Any) -> None:
        with suppress_instrumentation():
            original(self)

    connect._otel_canonical_logs = True  # type: ignore[attr-defined]
    connect.__wrapped__ = original  # type: ignore[attr-defined]
    BaseDatabaseWrapper.connect = connect  # type: ignore[method-assign]


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
        from django.db.backends.signals import connection_created

        _options.clear()
        if kwargs.get("tracer_provider") is not None:
            _options["tracer_provider"] = kwargs["tracer_provider"]

        connection_created.connect(
            _on_connection_created, weak=False, dispatch_uid="otel_canonical_logs.django_db"
        )
        _patch_connect()

    def _uninstrument(self, **kwargs: Any) -> None:
        from django.db.backends.signals import connection_created

        connection_created.disconnect(dispatch_uid="otel_canonical_logs.django_db")
        from django.db.backends.base.base import BaseDatabaseWrapper

        original = getattr(BaseDatabaseWrapper.connect, "__wrapped__", None)
        if original is not None:
            BaseDatabaseWrapper.connect = original  # type: ignore[method-assign]
