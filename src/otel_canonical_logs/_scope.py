"""The server-side request scope: lets the WSGI layer know whether a root span saw the request."""

from __future__ import annotations

from contextvars import ContextVar


class RequestScope:
    """Set by the outermost WSGI wrapper for the duration of one request."""

    __slots__ = ("root_started",)

    def __init__(self) -> None:
        self.root_started = False


current: ContextVar[RequestScope | None] = ContextVar("otel_canonical_logs_scope", default=None)


def mark_root_started() -> None:
    """Record that a root SERVER span started inside the current request scope."""
    scope = current.get()
    if scope is not None:
        scope.root_started = True
