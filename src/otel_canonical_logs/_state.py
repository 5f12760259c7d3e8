"""Per-request aggregate: what the request's child spans and hooks added up to so far."""

from __future__ import annotations

import threading
import time
from typing import Any

from opentelemetry.trace import SpanContext


class SqlStat:
    """Executions and total time of one SQL text within a request."""

    __slots__ = ("count", "loc", "time_ns")

    def __init__(self) -> None:
        self.count = 0
        self.time_ns = 0
        # Application frame of its second run (path:line:function); the N+1 call site.
        self.loc: str | None = None


class RequestState:
    """Everything one request has produced so far; freed when its root span ends."""

    __slots__ = (
        "cache_calls",
        "cache_time_ns",
        "cpu_start",
        "db_queries",
        "db_time_ns",
        "done",
        "ended",
        "environ",
        "exc",
        "fields",
        "http_out_calls",
        "http_out_time_ns",
        "open_spans",
        "root_context",
        "root_end_ns",
        "root_span",
        "scope",
        "spans_wanted",
        "sql",
        "start_ns",
        "thread_id",
        "tmpl_renders",
        "tmpl_time_ns",
    )

    def __init__(self, root_span: Any, root_context: SpanContext, start_ns: int) -> None:
        self.root_span = root_span
        self.root_context = root_context
        self.start_ns = start_ns
        self.thread_id = threading.get_ident()
        # None where the thread's CPU clock is shared (greenlets, an event loop's thread).
        self.cpu_start: float | None = time.thread_time()
        # Fields set directly by the request path (req_*, resp_view, app_*), in arrival order.
        self.fields: dict[str, Any] = {}
        self.db_queries = 0
        self.db_time_ns = 0
        self.sql: dict[str, SqlStat] = {}
        self.tmpl_renders = 0
        self.tmpl_time_ns = 0
        self.http_out_calls = 0
        self.http_out_time_ns = 0
        self.cache_calls = 0
        self.cache_time_ns = 0
        self.exc: BaseException | None = None
        # The request's WSGI environ, for instrumenters' call(req, resp, environ).
        self.environ: Any = None
        # Child spans started and not yet ended, in start order: a timeout snapshot names the
        # innermost one (the query that hung).
        self.open_spans: dict[int, Any] = {}
        # Set once the request's event went out early (a timeout): the root's end emits nothing.
        self.done = False
        # Whether the request's spans go anywhere: its trace is sampled and (see the processor)
        # some span processor besides ours receives spans. Read per query and per render: when
        # False they are timed and counted without spans.
        self.spans_wanted = bool(root_context.trace_flags.sampled)
        # Set when the request is over and its line written: later queries are no longer its own.
        # The root span may end earlier (a streamed body is sent after the view returned): then
        # ``root_end_ns`` is set and the server layer finishes the request when the body is sent.
        self.ended = False
        self.root_end_ns: int | None = None
        # The server layer's RequestScope (gunicorn/wsgi.py, gunicorn/asgi.py), when one saw it.
        self.scope: Any = None
