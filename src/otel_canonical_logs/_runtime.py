"""The process-wide wiring, one object: ``runtime``. The configurator builds it (``build``), the
server integrations register into it (``register_server_fields``), and everything on the request
path asks it for the current request's aggregate (``request_state``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import LoggerProvider

from . import _env, _otel
from ._aggregate import RequestAggregate
from ._scope import current as _scope_current
from .processor import CanonicalLogProcessor
from .sinks import Dispatcher, Sink, jsonl, logfmt
from .sinks.otel_logs import OTelLogSink
from .sinks.stdout import StdoutSink

ServerFields = Callable[[], dict[str, Any]]
_SPAN_KEY = _otel.SPAN_KEY


class Runtime:
    """The dispatcher and its sinks, the processor, and what the server integration adds."""

    __slots__ = ("_server_fields", "dispatcher", "processor")

    def __init__(self) -> None:
        self.dispatcher = Dispatcher()
        self.processor: CanonicalLogProcessor | None = None
        self._server_fields: ServerFields | None = None

    def build(self, logger_provider: LoggerProvider | None) -> CanonicalLogProcessor:
        """Create the processor and the sinks the environment asks for."""
        max_len = _env.env_int(_env.CANONICAL_LOGS_VALUE_MAX, 2048, minimum=32)
        sinks: list[Sink] = []
        if _env.env_bool(_env.CANONICAL_LOGS_STDOUT, True):
            fmt = _env.env_choice(_env.CANONICAL_LOGS_FORMAT, "logfmt", ("logfmt", "json"))
            # The fields reach the sinks normalised (the dispatcher): only formatting is left.
            encoder = jsonl.format_bytes if fmt == "json" else logfmt.format_bytes
            sinks.append(StdoutSink(max_len, encoder=encoder))
        if logger_provider is not None:
            sinks.append(OTelLogSink(logger_provider))
        self.dispatcher.sinks[:] = sinks
        self.dispatcher.max_len = max_len
        self.processor = CanonicalLogProcessor(self.dispatcher, server_fields=self._server_fields)
        return self.processor

    # -- what integrations register ---------------------------------------------------------

    def register_server_fields(self, provider: ServerFields) -> None:
        """Fields the server adds to every event (Gunicorn's saturation sample)."""
        self._server_fields = provider
        if self.processor is not None:
            self.processor.server_fields = provider

    def server_fields(self) -> dict[str, Any]:
        provider = self._server_fields
        return provider() if provider is not None else {}

    # -- the one look-up of "the current request" --------------------------------------------

    def request_state(self, ctx: Any = None) -> RequestAggregate | None:
        """The aggregate of the request the current code runs in, if any (``ctx``: the current
        OTel context, when the caller has it already).

        Runs per query, so the common case is decided from what the request scope already holds:
        work done straight under the request's root span belongs to that request. Anything else
        (under a template span, outside Gunicorn's scope, in a trace the application started)
        takes the general look-up by the current span. Work with no current span while the
        request's streamed body is being sent (its root span ended when the view returned) is
        the request's too.
        """
        if ctx is None:
            ctx = otel_context.get_current()
        scope = _scope_current.get()
        state: RequestAggregate | None = scope.state if scope is not None else None
        if state is not None and not state.ended:
            span = ctx.get(_SPAN_KEY) if _SPAN_KEY is not None else _otel.span_in(ctx)
            if span is state.root_span:
                return state
            if span is None and state.root_end_ns is not None:
                return state  # the body of a streamed response, sent after the root span ended
        processor = self.processor
        if processor is None:
            return None
        return processor.state_for(trace.get_current_span(ctx))

    def counting_state(self, ctx: Any) -> RequestAggregate | None:
        """The current request's aggregate if its spans go nowhere (its trace is not sampled, or
        no processor but ours receives spans), else None: then a query or a render is timed and
        counted into it directly instead of making a span."""
        state = self.request_state(ctx)
        return None if state is None or state.spans_wanted else state

    def state_for(self, span: trace.Span) -> RequestAggregate | None:
        """The aggregate a given span (a root, or a descendant) belongs to, if any."""
        processor = self.processor
        return processor.state_for(span) if processor is not None else None


runtime = Runtime()


def internal_counts() -> dict[str, Any]:
    """What this process counted: internal errors and expected losses by kind, requests in
    flight and spans tracked (``otel_canonical_logs.testing.internal_counts``)."""
    from . import _guard

    processor = runtime.processor
    return {
        "counts": _guard.error_counts(),
        "open_requests": processor.open_requests() if processor is not None else None,
        "tracked_spans": processor.tracked_spans() if processor is not None else 0,
    }
