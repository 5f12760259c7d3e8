"""DB spans for every Django connection, through opentelemetry-instrumentation-dbapi.

The raw DB-API connection is wrapped when Django opens it (``connection_created``), below
Django's ``CursorWrapper``/``CursorDebugWrapper``: every cursor path Django has — ``DEBUG=True``,
``force_debug_cursor``, ``assertNumQueries``, raw SQL — goes through it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from .. import __version__, _guard

# Django vendor -> OpenTelemetry db.system value.
_options: dict[str, Any] = {}

_DB_SYSTEMS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "oracle": "oracle",
}


def already_traced(raw: Any) -> bool:
    """True when a driver instrumentor (sqlite3, psycopg, ...) already traces this connection.

    Wrapping it again would produce two spans per query and count every query twice.
    """
    import wrapt

    proxy_type = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)  # wrapt 2 / wrapt 1
    if isinstance(raw, proxy_type):  # dbapi.wrap_connect / instrument_connection
        return True
    if hasattr(raw, "_otel_orig_cursor_factory"):  # psycopg instrument_connection
        return True
    factory = getattr(raw, "cursor_factory", None)
    module = getattr(factory, "__module__", "") or ""
    return module.startswith("opentelemetry.")  # psycopg's traced cursor factory


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


def _wrap(connection: Any) -> None:
    from opentelemetry.instrumentation.dbapi import instrument_connection

    _quiet_debug_bookkeeping(type(connection.ops))
    raw = connection.connection
    if raw is None or already_traced(raw):
        return
    system = _DB_SYSTEMS.get(connection.vendor, connection.vendor)
    connection.connection = instrument_connection(
        "otel_canonical_logs.django_db", raw, system, version=__version__, **_options
    )


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
