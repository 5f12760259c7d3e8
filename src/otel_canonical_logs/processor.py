"""The SpanProcessor: folds each local root SERVER span's children into one request aggregate."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Span as APISpan
from opentelemetry.trace import SpanKind

from . import _env, _frames, _guard, _scope
from ._state import RequestState, SqlStat
from .event import Event, build_event, span_attributes

# Semantic-convention attribute names, new conventions first. Categories come from these
# attributes, never from which instrumentor made the span.
_DB_SYSTEM = ("db.system.name", "db.system")
_DB_STATEMENT = ("db.query.text", "db.statement")
_HTTP_METHOD = ("http.request.method", "http.method")
_CACHE_SYSTEMS = frozenset({"redis", "memcached", "valkey"})
TEMPLATE_ATTRIBUTE = "django.template.name"
# Set on a render inside a render (an include): counted, its time already in the outer one's.
TEMPLATE_NESTED_ATTRIBUTE = "django.template.nested"

EmitFn = Callable[[Event], None]
# What Django sends (or logs) to manage transactions, on every backend it ships.
_TRANSACTION_STATEMENTS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _first(attrs: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


class CanonicalLogProcessor(SpanProcessor):
    """Aggregates child spans per request and emits one canonical event when the root ends.

    ``on_start``/``on_end`` run on the request thread: they never raise and do no I/O besides
    what the sinks do with the finished event.
    """

    def __init__(
        self,
        emit: EmitFn,
        max_open_requests: int | None = None,
        max_statements: int | None = None,
    ) -> None:
        self._emit = emit
        self._max_open = max_open_requests or _env.env_int(_env.CANONICAL_LOGS_MAX_OPEN_REQUESTS, 1000)
        self._max_statements = max_statements or _env.env_int(_env.CANONICAL_LOGS_DB_MAX_STATEMENTS, 500)
        # span_id -> state of the request it belongs to (roots and open descendants).
        self._owner: dict[int, RequestState] = {}
        # root span_id -> state, in start order, to evict the oldest when roots never end.
        self._roots: dict[int, RequestState] = {}
        self._lock = threading.Lock()
        self._max_owned = self._max_open * 64
        self._multi: Any = None  # the tracer provider's multi span processor, once watched

    # -- lookups used by hooks on the request path -------------------------------------------

    def state_for(self, span: APISpan) -> RequestState | None:
        """The request aggregate a span (root or descendant) belongs to, if any."""
        ctx = span.get_span_context()
        return self._owner.get(ctx.span_id) if ctx.is_valid else None

    def open_requests(self) -> int:
        """Requests whose root span has started and not yet ended."""
        return len(self._roots)

    # -- SpanProcessor ------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            parent = span.parent
            span_id = span.context.span_id
            if parent is None or parent.is_remote:
                if span.kind is SpanKind.SERVER:
                    self._start_request(span, span_id)
                    return
                # A span with no parent while a streamed body is being sent (its root span has
                # ended and is no longer current): still the request's work.
                scope = _scope.current.get()
                state = scope.state if scope is not None else None
                if state is None or state.root_end_ns is None or state.ended:
                    return
            else:
                state = self._owner.get(parent.span_id)
            if state is not None:
                self._owner[span_id] = state
                state.open_spans[span_id] = span
                if len(self._owner) > self._max_owned:
                    self._evict_owned()
        except Exception as exc:
            _guard.report("processor.on_start", exc)

    def watch(self, provider: Any) -> None:
        """Follow which span processors the tracer provider runs besides this one."""
        self._multi = getattr(provider, "_active_span_processor", None)

    def _spans_go_elsewhere(self) -> bool:
        # The SDK's multi-processor keeps its processors in a tuple it replaces on each
        # add_span_processor. Unknown layout: assume another processor wants the spans.
        processors = getattr(self._multi, "_span_processors", None)
        return processors is None or processors != (self,)

    def _start_request(self, span: Span, span_id: int) -> None:
        state = RequestState(span, span.context, span.start_time or 0)
        if state.spans_wanted and self._multi is not None and not self._spans_go_elsewhere():
            # No exporter or other processor would ever see this request's query spans: count
            # its queries on the fast path, as for an unsampled request. Same fields.
            state.spans_wanted = False
        _scope.mark_root_started(state)
        with self._lock:
            self._owner[span_id] = state
            self._roots[span_id] = state
            if len(self._roots) > self._max_open:
                old_id = next(iter(self._roots))
                del self._roots[old_id]
                self._owner.pop(old_id, None)
                _guard.count("dropped.open_request_evicted")

    def _evict_owned(self) -> None:
        with self._lock:
            while len(self._owner) > self._max_owned:
                old_id = next(iter(self._owner))
                if old_id in self._roots:
                    # Keep roots; move them to the end so the scan makes progress.
                    self._owner[old_id] = self._owner.pop(old_id)
                    continue
                self._owner.pop(old_id).open_spans.pop(old_id, None)
                _guard.count("dropped.open_span_evicted")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            span_id = span.context.span_id
            state = self._owner.pop(span_id, None)
            if state is None:
                return
            if state.root_context.span_id == span_id:
                scope = state.scope
                if scope is not None and scope.open and not state.done:
                    # The view returned; its body is still to be sent (a streamed response, or
                    # just the bytes of a plain one). The server layer calls finish() when the
                    # last byte is out: until then the request keeps counting.
                    self._owner[span_id] = state
                    state.root_end_ns = span.end_time or 0
                    return
                self._close(state, span_id)
                if not state.done:
                    self._emit(build_event("request", span, state))
            else:
                state.open_spans.pop(span_id, None)
                self._fold(state, span)
        except Exception as exc:
            _guard.report("processor.on_end", exc)

    def _close(self, state: RequestState, span_id: int) -> None:
        state.ended = True
        self._owner.pop(span_id, None)
        self._roots.pop(span_id, None)
        if state.open_spans:
            # Descendants still open were leaked (never ended): forget them with their
            # request, or each would keep the request's whole state alive.
            for child_id in list(state.open_spans):
                if child_id >= 0:
                    self._owner.pop(child_id, None)

    def finish(self, state: RequestState, end_ns: int, fields: dict[str, Any] | None = None) -> None:
        """The server layer's end of a request whose root span ended before its body was sent:
        write its line now, with ``resp_time`` up to ``end_ns`` (the last byte sent)."""
        try:
            if state.ended:
                return
            self._close(state, state.root_context.span_id)
            if fields:
                state.fields.update(fields)
            if not state.done:
                self._emit(build_event("request", state.root_span, state, end_ns=end_ns))
        except Exception as exc:
            _guard.report("processor.finish", exc)

    def _fold(self, state: RequestState, span: ReadableSpan) -> None:
        attrs = span_attributes(span)
        elapsed = (span.end_time or 0) - (span.start_time or 0)
        kind = span.kind
        if kind is SpanKind.CLIENT:
            system = _first(attrs, _DB_SYSTEM)
            if system is not None:
                if system in _CACHE_SYSTEMS:
                    state.cache_calls += 1
                    state.cache_time_ns += elapsed
                    return
                self.count_query(state, _first(attrs, _DB_STATEMENT), elapsed)
                return
            if _first(attrs, _HTTP_METHOD) is not None:
                state.http_out_calls += 1
                state.http_out_time_ns += elapsed
                return
        if TEMPLATE_ATTRIBUTE in attrs:
            state.tmpl_renders += 1
            if not attrs.get(TEMPLATE_NESTED_ATTRIBUTE):
                state.tmpl_time_ns += elapsed

    def disown(self, state: RequestState, span: Span) -> None:
        """Take a child span out of its request before it ends: its maker counted what it did,
        so ``on_end`` has nothing to fold (it returns at the first look-up)."""
        span_id = span.get_span_context().span_id
        if self._owner.pop(span_id, None) is not None:
            state.open_spans.pop(span_id, None)

    def count_query(self, state: RequestState, statement: object, elapsed: int) -> None:
        """Add one query to the request: totals, and per SQL text for the N+1 smell.

        Runs on the thread that ran the query, right after it (from a span's ``on_end`` or
        from the unsampled fast path), so the caller's frames are still on the stack.
        """
        state.db_queries += 1
        state.db_time_ns += elapsed
        if not isinstance(statement, str) or statement.startswith(_TRANSACTION_STATEMENTS):
            return  # a transaction statement is never the N+1 smell
        stat = state.sql.get(statement)
        if stat is None:
            if len(state.sql) >= self._max_statements:
                return
            stat = state.sql[statement] = SqlStat()
        stat.count += 1
        stat.time_ns += elapsed
        if stat.count == 2:
            # Only a repeat pays for a stack walk.
            stat.loc = _frames.caller_location(sys._getframe(1))

    def shutdown(self) -> None:
        with self._lock:
            self._owner.clear()
            self._roots.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
