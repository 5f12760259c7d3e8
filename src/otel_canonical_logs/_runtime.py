"""The process-wide wiring: one processor and one dispatcher, created by the configurator."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider
from opentelemetry.trace.propagation import _SPAN_KEY

from . import _env
from ._scope import current as _scope_current
from ._state import RequestState
from .processor import CanonicalLogProcessor
from .sinks import Dispatcher, Sink, jsonl, logfmt
from .sinks.otel_logs import OTelLogSink
from .sinks.stdout import StdoutSink

dispatcher = Dispatcher()
processor: CanonicalLogProcessor | None = None


def build(logger_provider: LoggerProvider | None) -> CanonicalLogProcessor:
    """Create the processor and the sinks the environment asks for."""
    global processor
    max_len = _env.env_int(_env.CANONICAL_LOGS_VALUE_MAX, 2048, minimum=32)
    sinks: list[Sink] = []
    if _env.env_bool(_env.CANONICAL_LOGS_STDOUT, True):
        fmt = _env.env_choice(_env.CANONICAL_LOGS_FORMAT, "logfmt", ("logfmt", "json"))
        sinks.append(
            StdoutSink(max_len, encoder=jsonl.encode_bytes if fmt == "json" else logfmt.encode_bytes)
        )
    if logger_provider is not None:
        sinks.append(OTelLogSink(logger_provider, max_len))
    dispatcher.sinks[:] = sinks
    processor = CanonicalLogProcessor(dispatcher)
    return processor


def request_state(ctx: Any) -> RequestState | None:
    """The aggregate of the request the current code runs in, if any (``ctx``: the current OTel
    context).

    Runs per query, so the common case is decided from what the request scope already holds: work
    done straight under the request's root span belongs to that request. Anything else (under a
    template span, outside Gunicorn's scope, in a trace the application started) takes the
    general look-up by the current span. Work with no current span while the request's streamed
    body is being sent (its root span ended when the view returned) is the request's too.
    """
    scope = _scope_current.get()
    state: RequestState | None = scope.state if scope is not None else None
    if state is not None and not state.ended:
        span = ctx.get(_SPAN_KEY)
        if span is state.root_span:
            return state
        if span is None and state.root_end_ns is not None:
            return state  # the body of a streamed response, sent after the root span ended
    if processor is None:
        return None
    return processor.state_for(trace.get_current_span(ctx))


def counting_state(ctx: Any) -> RequestState | None:
    """The current request's aggregate if its spans go nowhere (its trace is not sampled, or no
    processor but ours receives spans), else None: then a query or a render is timed and counted
    into it directly instead of making a span."""
    state = request_state(ctx)
    return None if state is None or state.spans_wanted else state
