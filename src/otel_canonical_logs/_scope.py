"""The server-side request scope: one per request the server layer (WSGI or ASGI) saw, from the
moment the worker starts it until the last byte of its body has been sent."""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from typing import Any


class RequestScope:
    """Set by the outermost server layer for the whole life of one request, body included.

    While ``open`` is true the request is not over even if its root span has ended (a streamed
    body is still being sent): the processor leaves the line to the server layer, which writes it
    when the body is done (``finish``).
    """

    __slots__ = (
        "cpu",
        "environ",
        "fired",
        "greenlet",
        "loop",
        "open",
        "root_started",
        "start",
        "state",
        "thread_id",
        "timed_out",
    )

    def __init__(self, environ: Any = None, cpu: bool = True, greenlet: Any = None) -> None:
        self.root_started = False
        # The WSGI environ, or the ASGI scope dict: what Django's request object also holds.
        self.environ = environ
        self.start = time.monotonic()
        self.thread_id = threading.get_ident()
        # The request's greenlet under gevent: its frames are where a stuck request stands.
        self.greenlet = greenlet
        # The event loop of an ASGI request: a stuck async view is found among its tasks.
        self.loop: Any = None
        # Whether the thread's CPU clock is this request's alone (not for greenlets, event loops).
        self.cpu = cpu
        # The request's aggregate, once its root span started (RequestState).
        self.state: Any = None
        self.fired = False  # the watchdog reported it (timeout or stuck)
        self.open = True  # the server layer has not finished sending the response yet
        self.timed_out = False  # its timeout event went out (the worker is about to be killed)


current: ContextVar[RequestScope | None] = ContextVar("otel_canonical_logs_scope", default=None)


def mark_root_started(state: Any) -> None:
    """Record that a root SERVER span started inside the current request scope."""
    scope = current.get()
    # The first root is the request's own; a root the application starts inside it (a new trace
    # of its own, perhaps never ended) must not take its place for the watchdog's snapshot.
    if scope is not None and not scope.root_started:
        scope.root_started = True
        scope.state = state
        state.scope = scope
        if not scope.cpu:
            state.cpu_start = None
