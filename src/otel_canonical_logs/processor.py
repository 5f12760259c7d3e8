"""The SpanProcessor: folds each local root SERVER span's children into one request aggregate."""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import time_ns
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Span as APISpan
from opentelemetry.trace import SpanKind

from . import _env, _guard, _keep, _otel, _scope
from ._aggregate import RequestAggregate
from .event import Event, build_event

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
_span_attributes = _otel.span_attributes


def _first(attrs: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


class CanonicalLogProcessor(SpanProcessor):
    """Maps each span to its request's aggregate and emits one canonical event when the request
    is over: a root SERVER span starts an aggregate, a descendant's end is folded into it (by
    category, from its semantic-convention attributes).

    ``on_start``/``on_end`` run on the request thread: they never raise and do no I/O besides
    what the sinks do with the finished event.
    """

    def __init__(
        self,
        emit: EmitFn,
        max_open_requests: int | None = None,
        max_statements: int | None = None,
        server_fields: Callable[[], dict[str, Any]] | None = None,
        keep: _keep.Policy | None = None,
    ) -> None:
        self._emit = emit
        # What the server integration adds to every event (set by the runtime when registered).
        self.server_fields = server_fields
        # The keep rules (``CANONICAL_LOGS_KEEP``); None when keeping is off.
        policy = keep if keep is not None else _keep.Policy.from_env()
        self._keep = policy if policy.rules else None
        self._max_records = _env.env_int(_env.CANONICAL_LOGS_KEEP_MAX_SPANS, 1000)
        self._max_open = max_open_requests or _env.env_int(_env.CANONICAL_LOGS_MAX_OPEN_REQUESTS, 1000)
        self._max_statements = max_statements or _env.env_int(_env.CANONICAL_LOGS_DB_MAX_STATEMENTS, 500)
        self._n1_min = _env.env_int(_env.CANONICAL_LOGS_N1_MIN_QUERIES, 5, minimum=2)
        self._n1_min_ns = int(_env.env_float(_env.CANONICAL_LOGS_N1_MIN_TIME, 0.0) * 1e9)
        # span_id -> aggregate of the request it belongs to (roots and open descendants).
        self._owner: dict[int, RequestAggregate] = {}
        # root span_id -> aggregate, in start order, to evict the oldest when roots never end.
        self._roots: dict[int, RequestAggregate] = {}
        self._lock = threading.Lock()
        self._max_owned = self._max_open * 64
        # The span processors the tracer provider runs, once watched (None: unknown).
        self._processors: Callable[[], tuple[Any, ...] | None] | None = None
        # Whether the provider lets an exported request's query spans be made at its end
        # (``_otel.deferred_query_spans``), and for which tuple of processors it was last asked.
        self._defer_ok = False
        self._defer_for: tuple[Any, ...] | None = None
        self._defer_now = False

    # -- lookups used by hooks on the request path -------------------------------------------

    def state_for(self, span: APISpan) -> RequestAggregate | None:
        """The request aggregate a span (root or descendant) belongs to, if any."""
        ctx = span.get_span_context()
        return self._owner.get(ctx.span_id) if ctx.is_valid else None

    def open_requests(self) -> int:
        """Requests whose root span has started and not yet ended."""
        return len(self._roots)

    def tracked_spans(self) -> int:
        """Spans (roots and open descendants) mapped to a request now."""
        return len(self._owner)

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
                state.in_flight[span_id] = span
                if len(self._owner) > self._max_owned:
                    self._evict_owned()
        except Exception as exc:
            _guard.report("processor.on_start", exc)

    def watch(self, provider: Any) -> None:
        """Follow which span processors the tracer provider runs besides this one."""
        self._processors = _otel.span_processors(provider)
        self._defer_ok = _otel.deferred_query_spans(provider)

    def _defers_queries(self) -> bool:
        """Whether an exported request's query spans can be made when it ends: the provider
        allows it and no span processor but ours acts when a span starts (the SDK replaces the
        tuple on each ``add_span_processor``; the answer is kept per tuple)."""
        if not self._defer_ok or self._processors is None:
            return False
        processors = self._processors()
        if processors is not self._defer_for:
            self._defer_for = processors
            self._defer_now = processors is not None and all(
                p is self or _otel.start_free(p) for p in processors
            )
        return self._defer_now

    def _spans_go_elsewhere(self) -> bool:
        # The SDK replaces its tuple of processors on each add_span_processor. Unknown: assume
        # another processor wants the spans.
        processors = self._processors() if self._processors is not None else None
        return processors is None or processors != (self,)

    def _start_request(self, span: Span, span_id: int) -> None:
        state = RequestAggregate(
            span, span.context, span.start_time or 0, self._max_statements, self._n1_min, self._n1_min_ns
        )
        if self._processors is not None:
            elsewhere = self._spans_go_elsewhere()
            if state.spans_wanted and not elsewhere:
                # No exporter or other processor would ever see this request's query spans: count
                # its queries on the fast path, as for an unsampled request. Same fields.
                state.spans_wanted = state.exported = False
            elif elsewhere and not state.spans_wanted and self._keep is not None:
                # Not sampled: recorded, exported if a rule fires.
                state.record_for(self._keep, self._max_records)
            elif state.spans_wanted and self._defers_queries():
                state.defer_queries(self._max_records)
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
                self._owner.pop(old_id).in_flight.pop(old_id, None)
                _guard.count("dropped.open_span_evicted")

    def _on_ending(self, span: Span) -> None:
        # The SDK calls this on every processor when a span ends, before any processor's
        # on_end. An exported request's deferred queries are handed over here, when its root
        # ends: every other processor (the exporter's batch, a user's own) then receives the
        # request's children before its root, as it would live spans — a processor that
        # assembles a trace when its root ends sees it whole, and a batch never carries the
        # root without the children that ended before it.
        try:
            state = self._owner.get(span.context.span_id)
            if state is not None and state.ops and state.exported and state.root_span is span:
                _keep.flush_queries(state, self._processors, self)
        except Exception as exc:
            _guard.report("processor.on_ending", exc)

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
                    self._emit(build_event("request", span, state, server=self._server()))
                if state.records:
                    _keep.deliver(state, span, span.end_time or 0, self._processors, self)
            else:
                state.in_flight.pop(span_id, None)
                self._fold(state, span)
                if state.keep is not None:
                    state.record(span)
        except Exception as exc:
            _guard.report("processor.on_end", exc)

    def _server(self) -> dict[str, Any] | None:
        provider = self.server_fields
        return provider() if provider is not None else None

    def _close(self, state: RequestAggregate, span_id: int) -> None:
        state.ended = True
        self._owner.pop(span_id, None)
        self._roots.pop(span_id, None)
        if state.in_flight:
            # Descendants still open were leaked (never ended): forget them with their
            # request, or each would keep the request's whole state alive.
            for child_id in list(state.in_flight):
                if type(child_id) is int:
                    self._owner.pop(child_id, None)

    def finish(self, state: RequestAggregate, end_ns: int, fields: dict[str, Any] | None = None) -> None:
        """The server layer's end of a request whose root span ended before its body was sent:
        write its line now, with ``resp_time`` up to ``end_ns`` (the last byte sent)."""
        try:
            if state.ended:
                return
            self._close(state, state.root_context.span_id)
            if fields:
                state.fields.update(fields)
            if not state.done:
                self._emit(
                    build_event("request", state.root_span, state, end_ns=end_ns, server=self._server())
                )
            if state.records:
                self.deliver(state)
        except Exception as exc:
            _guard.report("processor.finish", exc)

    def deliver(self, state: RequestAggregate) -> None:
        """Export what a request recorded — a kept request's whole trace, an exported one's
        deferred queries — now, if its root span has ended (else its end will); once."""
        root = state.root_span
        end = getattr(root, "end_time", None)
        if state.records and end:
            try:
                # Operations still running (a timeout) end now: after the root, if it ended when
                # the view returned and the body was still being sent.
                _keep.deliver(state, root, max(end, time_ns()), self._processors, self)
            except Exception as exc:
                _guard.report("processor.deliver", exc)

    def flush_queries(self, state: RequestAggregate) -> None:
        """Export an exported request's deferred queries so far (as many as it may hold)."""
        _keep.flush_queries(state, self._processors, self)

    def _fold(self, state: RequestAggregate, span: ReadableSpan) -> None:
        """Add an ended child span to its request, by what its attributes say it was."""
        attrs = _span_attributes(span)
        elapsed = (span.end_time or 0) - (span.start_time or 0)
        if span.kind is SpanKind.CLIENT:
            system = _first(attrs, _DB_SYSTEM)
            if system is not None:
                if system in _CACHE_SYSTEMS:
                    state.add("cache", elapsed)
                else:
                    state.add_query(_first(attrs, _DB_STATEMENT), elapsed)
                return
            if _first(attrs, _HTTP_METHOD) is not None:
                state.add("http_out", elapsed)
                return
        if TEMPLATE_ATTRIBUTE in attrs:
            state.add("tmpl", elapsed, timed=not attrs.get(TEMPLATE_NESTED_ATTRIBUTE))

    def disown(self, state: RequestAggregate, span: Span) -> None:
        """Take a child span out of its request before it ends: its maker reported what it
        measured to the aggregate itself, so ``on_end`` has nothing to fold."""
        span_id = span.get_span_context().span_id
        if self._owner.pop(span_id, None) is not None:
            state.in_flight.pop(span_id, None)

    def shutdown(self) -> None:
        with self._lock:
            self._owner.clear()
            self._roots.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
