"""The server-side request scope: lets the WSGI layer know whether a root span saw the request."""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from typing import Any


class RequestScope:
    """Set by the outermost WSGI wrapper for the duration of one request."""

    __slots__ = ("environ", "fired", "root_started", "start", "state", "thread_id")

    def __init__(self, environ: Any = None) -> None:
        self.root_started = False
        self.environ = environ
        self.start = time.monotonic()
        self.thread_id = threading.get_ident()
        # The request's aggregate, once its root span started (RequestState).
        self.state: Any = None
        self.fired = False  # the watchdog reported it (timeout or stuck)


current: ContextVar[RequestScope | None] = ContextVar("otel_canonical_logs_scope", default=None)


def mark_root_started(state: Any) -> None:
    """Record that a root SERVER span started inside the current request scope."""
    scope = current.get()
    # The first root is the request's own; a root the application starts inside it (a new trace
    # of its own, perhaps never ended) must not take its place for the watchdog's snapshot.
    if scope is not None and not scope.root_started:
        scope.root_started = True
        scope.state = state
