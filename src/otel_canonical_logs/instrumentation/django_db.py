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


def _wrap(connection: Any) -> None:
    from opentelemetry.instrumentation.dbapi import instrument_connection

    raw = connection.connection
    if raw is None or already_traced(raw):
        return
    system = _DB_SYSTEMS.get(connection.vendor, connection.vendor)
    connection.connection = instrument_connection(
        "otel_canonical_logs.django_db", raw, system, version=__version__
    )


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

        connection_created.connect(
            _on_connection_created, weak=False, dispatch_uid="otel_canonical_logs.django_db"
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        from django.db.backends.signals import connection_created

        connection_created.disconnect(dispatch_uid="otel_canonical_logs.django_db")
