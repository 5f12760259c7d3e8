"""Traces worth keeping: the trace of a request the head sampler did not sample is exported,
complete, when a keep rule fires at its end.

A request that may be kept is recorded as it runs, cheaply: its child spans (made by any
instrumentor) are held when they end instead of being dropped, and its span-less queries and
renders (the fast path the line already uses) are kept as ``InFlight`` records. Only when a rule
fires are real spans made from them — the root and every child, with their ids, times, attributes
and parents, the trace flags set to sampled — and handed to every span processor of the provider
but ours (the exporter's batch processor, and any of the user's own).

The same records serve a request that *is* exported (head-sampled): its queries are recorded
instead of made into live spans, and their spans are made from the records when the request ends
(``query_spans``), where the provider allows it (``_otel.deferred_query_spans``).
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from . import _env, _guard
from ._aggregate import InFlight, RequestAggregate
from ._export import copy_span
from ._version import __version__

RULES = ("error", "timeout", "stuck", "partial_failure", "slow", "n_plus_one")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_DB_SCOPE = InstrumentationScope("otel_canonical_logs.django_db", __version__)
_TEMPLATE_SCOPE = InstrumentationScope("otel_canonical_logs.instrumentation.templates", __version__)
TEMPLATE_ATTRIBUTE = "django.template.name"
TEMPLATE_NESTED_ATTRIBUTE = "django.template.nested"


class Policy:
    """The keep rules in force and their thresholds."""

    __slots__ = ("rules", "slow_s")

    def __init__(self, rules: Iterable[str] = RULES, slow_s: float = 2.0) -> None:
        self.rules = frozenset(rules)
        self.slow_s = slow_s

    @classmethod
    def from_env(cls) -> Policy:
        return cls(
            _env.env_list(_env.CANONICAL_LOGS_KEEP, RULES, RULES),
            _env.env_float(_env.CANONICAL_LOGS_KEEP_SLOW, 2.0),
        )

    def fired(self, event_type: str, values: dict[str, Any], state: RequestAggregate) -> list[str]:
        """The rules that fire for this event of the request, in ``RULES`` order."""
        rules = self.rules
        fired: list[str] = []
        status = values.get("resp_status")
        if "error" in rules and (state.exc is not None or (isinstance(status, int) and status >= 500)):
            fired.append("error")
        if "timeout" in rules and event_type == "timeout":
            fired.append("timeout")
        if "stuck" in rules and (event_type == "stuck" or values.get("stuck")):
            fired.append("stuck")
        if "partial_failure" in rules and (event_type == "partial_failure" or values.get("partial_failures")):
            fired.append("partial_failure")
        elapsed = values.get("resp_time")
        if "slow" in rules and isinstance(elapsed, float) and elapsed >= self.slow_s:
            fired.append("slow")
        if "n_plus_one" in rules and state.n_plus_one() is not None:
            fired.append("n_plus_one")  # an N+1 run, as db_n1_* reports it
        return fired


def decide(event_type: str, values: dict[str, Any], state: RequestAggregate) -> None:
    """Set ``trace_sampled`` (and ``trace_keep``) in an event's values; remember what fired."""
    if state.exported:
        values["trace_sampled"] = True
        return
    policy = state.keep
    if policy is None:
        values["trace_sampled"] = False
        return
    fired = policy.fired(event_type, values, state)
    if state.kept:
        fired = [r for r in RULES if r in fired or r in state.kept]
    if fired:
        state.kept = fired
        values["trace_sampled"] = True
        values["trace_keep"] = ",".join(fired)
    else:
        values["trace_sampled"] = False


def event_context(state: RequestAggregate) -> SpanContext:
    """The span context an event of the request carries: sampled when its trace is exported."""
    ctx = state.root_context
    if state.kept and not ctx.trace_flags.sampled:
        return _sampled(ctx)
    return ctx


def _sampled(ctx: SpanContext) -> SpanContext:
    return SpanContext(ctx.trace_id, ctx.span_id, ctx.is_remote, _SAMPLED, ctx.trace_state)


class _Attributes:
    """Stands in for a span while dbapi populates a query's attributes."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)


def _query_span_parts(op: InFlight) -> tuple[str, dict[str, Any]]:
    """The name and attributes dbapi gives this query's span (``traced_execution``)."""
    tracer, statement = op.source, op.text
    try:
        integration = tracer._db_api_integration
        name = tracer.get_operation_name(None, (statement,)) or integration.database or integration.name
        recorder = _Attributes()
        tracer._populate_span(recorder, None, statement)
        return name, recorder.attributes
    except Exception:  # another dbapi: the system and the statement, as the line has them
        text = statement if isinstance(statement, str) else str(statement)
        system = getattr(getattr(tracer, "_db_api_integration", None), "database_system", "unknown")
        return (text.split(None, 1) or ["query"])[0], {"db.system": system, "db.statement": text}


def _exception_event(op: InFlight) -> Event:
    """The ``exception`` event a live span's ``record_exception`` would have had."""
    error = op.error
    assert error is not None
    cls = type(error)
    module = cls.__module__
    return Event(
        "exception",
        {
            "exception.type": f"{module}.{cls.__qualname__}"
            if module and module != "builtins"
            else cls.__qualname__,
            "exception.message": str(error),
            "exception.stacktrace": "".join(traceback.format_exception(cls, error, op.tb)),
            "exception.escaped": "False",
        },
        op.end_ns,
    )


def _random_span_id() -> int:
    return random.getrandbits(64) or 1


def _op_spans(
    ops: Iterable[InFlight],
    root_ctx: SpanContext,
    resource: Any,
    end_ns: int,
    parent_of: Callable[[Any], SpanContext],
    span_id_of: Callable[[InFlight], int],
) -> list[ReadableSpan]:
    """Spans of span-less operations, in ``root_ctx``'s trace with its flags and trace state;
    one still running (a timeout) ends at ``end_ns`` with an error status."""
    trace_id, flags, trace_state = root_ctx.trace_id, root_ctx.trace_flags, root_ctx.trace_state
    spans = []
    for op in ops:
        finished = op.end_ns > 0
        events: tuple[Event, ...] = ()
        if op.kind == "db":
            name, attributes = _query_span_parts(op)
            kind = SpanKind.CLIENT
            scope = getattr(
                getattr(getattr(op.source, "_db_api_integration", None), "_tracer", None),
                "_instrumentation_scope",
                None,
            )
            if not isinstance(scope, InstrumentationScope):
                scope = _DB_SCOPE
        else:
            name = str(op.text)  # "render <template>"
            attributes = {TEMPLATE_ATTRIBUTE: name.removeprefix("render ")}
            if op.source:
                attributes[TEMPLATE_NESTED_ATTRIBUTE] = True
            kind, scope = SpanKind.INTERNAL, _TEMPLATE_SCOPE
        if op.error is not None:
            status = Status(StatusCode.ERROR, f"{type(op.error).__name__}: {op.error}")
            events = (_exception_event(op),)
        elif not finished:
            status = Status(StatusCode.ERROR, "still running when the request's trace was exported")
        else:
            status = Status(StatusCode.UNSET)
        spans.append(
            ReadableSpan(
                name=name,
                context=SpanContext(trace_id, span_id_of(op), False, flags, trace_state),
                parent=parent_of(op.parent),
                resource=resource,
                attributes=attributes,
                events=events,
                kind=kind,
                status=status,
                start_time=op.start_ns,
                end_time=op.end_ns if finished else end_ns,
                instrumentation_scope=scope,
            )
        )
    return spans


def _running(state: RequestAggregate) -> list[InFlight]:
    return [op for op in state.in_flight.values() if isinstance(op, InFlight) and op.start_ns]


def materialise(state: RequestAggregate, root: ReadableSpan, end_ns: int) -> list[ReadableSpan]:
    """The request's whole trace as exportable spans, the root last (a processor receives a
    request's children before its root, as live spans end); operations still running (a
    timeout) end at ``end_ns`` with an error status."""
    trace_id = state.root_context.trace_id
    root_ctx = _sampled(root.context)
    ids: dict[int, int] = {}  # id(InFlight) -> its span id

    def span_id_of(op: InFlight) -> int:
        found = ids.get(id(op))
        if found is None:
            found = ids[id(op)] = _random_span_id()
        return found

    def parent_of(parent: Any) -> SpanContext:
        if isinstance(parent, InFlight):
            return SpanContext(trace_id, span_id_of(parent), False, _SAMPLED)
        ctx = parent.get_span_context() if parent is not None else None
        if ctx is None or not ctx.is_valid or ctx.trace_id != trace_id:
            return root_ctx
        return _sampled(ctx)

    spans = [
        copy_span(
            span,
            context=_sampled(span.context),
            parent=_sampled(span.parent) if span.parent is not None else root_ctx,
        )
        for span in state.spans
    ]
    spans += _op_spans([*state.ops, *_running(state)], root_ctx, root.resource, end_ns, parent_of, span_id_of)
    spans.append(copy_span(root, context=root_ctx))
    return spans


def query_spans(state: RequestAggregate, end_ns: int, ops: list[InFlight]) -> list[ReadableSpan]:
    """Spans of an exported request's deferred queries (``RequestAggregate.defer_queries``),
    children of the span that was current when each ran (the root span when none was), with the
    span ids of the provider's id generator."""
    root = state.root_span
    root_ctx = state.root_context
    trace_id = root_ctx.trace_id

    def parent_of(parent: Any) -> SpanContext:
        ctx = parent.get_span_context() if parent is not None else None
        if ctx is None or not ctx.is_valid or ctx.trace_id != trace_id:
            return root_ctx
        return ctx  # type: ignore[no-any-return]

    def span_id_of(op: InFlight) -> int:
        generator = getattr(
            getattr(getattr(op.source, "_db_api_integration", None), "_tracer", None), "id_generator", None
        )
        return generator.generate_span_id() if generator is not None else _random_span_id()

    return _op_spans(ops, root_ctx, getattr(root, "resource", None), end_ns, parent_of, span_id_of)


def _hand_over(
    spans: list[ReadableSpan], processors: Callable[[], tuple[Any, ...] | None], ours: Any
) -> None:
    for processor in processors() or ():
        if processor is ours:
            continue
        for span in spans:
            try:
                processor.on_end(span)
            except Exception as exc:
                _guard.report("keep.deliver", exc)


def deliver(
    state: RequestAggregate,
    root: ReadableSpan,
    end_ns: int,
    processors: Callable[[], tuple[Any, ...] | None] | None,
    ours: Any,
) -> None:
    """Hand the spans made from the request's records to every span processor of the provider
    but ``ours``, once: a kept request's whole trace, or an exported request's deferred queries
    (with those still running, a timeout, ending at ``end_ns``)."""
    if state.delivered or processors is None or not (state.kept or (state.exported and state.records)):
        return
    state.delivered = True
    ops: list[InFlight] = []
    if not state.kept:
        ops = [*state.ops, *_running(state)] if state.in_flight else state.ops
        if not ops:
            return  # no query (or all of them handed over already): nothing to make
    try:
        spans = materialise(state, root, end_ns) if state.kept else query_spans(state, end_ns, ops)
    except Exception as exc:
        _guard.report("keep.materialise", exc)
        return
    finally:
        state.spans.clear()
        state.ops.clear()
    _hand_over(spans, processors, ours)


def flush_queries(
    state: RequestAggregate, processors: Callable[[], tuple[Any, ...] | None] | None, ours: Any
) -> None:
    """Hand an exported request's deferred queries, all ended, over now (``max_records`` of them
    are waiting): a request of many queries holds at most that many records."""
    ops = state.ops
    if processors is None or not ops:
        return
    try:
        spans = query_spans(state, 0, list(ops))
    except Exception as exc:
        _guard.report("keep.materialise", exc)
        return
    finally:
        ops.clear()
    _hand_over(spans, processors, ours)
