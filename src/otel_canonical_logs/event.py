"""Builds the ordered canonical event from a root span, its aggregate and the request's fields:
which value comes from where is the field registry's (``fields.FIELDS``) to say."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from . import _frames, _keep, _otel
from ._aggregate import RequestAggregate
from .fields import FIELDS

_NS = 1e-9
_DUP_SQL_MAX = 200

# Fields resolved from root-span attributes when the request path did not set them.
_ATTR_FIELDS = tuple((f.key, f.attrs, f.type) for f in FIELDS if f.attrs)
# Roll-ups of the aggregate, by category: its fields as (key, whether it is the count, not the time).
_ROLLUPS: dict[str, tuple[tuple[str, bool], ...]] = {}
for _f in FIELDS:
    if _f.rollup:
        _ROLLUPS[_f.rollup] = (*_ROLLUPS.get(_f.rollup, ()), (_f.key, _f.type is int))
_ORDER = tuple(f.key for f in FIELDS)
_REGISTERED = frozenset(_ORDER)


@dataclass(slots=True)
class Event:
    """One canonical event, ready for the sinks."""

    type: str
    fields: dict[str, Any]  # ordered: event_type first, then registry order, then app_*
    span_context: SpanContext | None
    time_ns: int
    # The request's WSGI environ when known: what instrumenters' call(req, resp, environ) get.
    environ: Any = None

    @property
    def status(self) -> int | None:
        value = self.fields.get("resp_status")
        return value if isinstance(value, int) else None


def _seconds(ns: int) -> float:
    return round(ns * _NS, 6)


def _collect(
    span: ReadableSpan | None, state: RequestAggregate | None, end_ns: int | None = None
) -> dict[str, Any]:
    """Every known value by key, in no particular order."""
    values: dict[str, Any] = {}
    if span is not None:
        attrs = _otel.span_attributes(span)
        for key, names, kind in _ATTR_FIELDS:
            for name in names:
                value = attrs.get(name)
                if value is not None:
                    values[key] = int(value) if kind is int and isinstance(value, (int, str)) else value
                    break
        path = values.get("req_path")
        if path is None:
            target = attrs.get("http.target")
            if isinstance(target, str):
                values["req_path"] = target.split("?", 1)[0]
        route = values.get("req_route")
        if isinstance(route, str):
            values["req_route"] = readable_route(route)
        end = end_ns or span.end_time
        if end and span.start_time:
            values["resp_time"] = _seconds(end - span.start_time)
    if state is None:
        return values
    ctx = state.root_context
    values["trace_id"] = format(ctx.trace_id, "032x")
    values["span_id"] = format(ctx.span_id, "016x")
    counts, times = state.counts, state.times
    for category, n in counts.items():
        if n:
            for key, is_count in _ROLLUPS[category]:
                values[key] = n if is_count else _seconds(times[category])
    if counts["db"]:
        dup_count, dup_ns, top_sql, top_loc = state.top_repeat()
        if dup_count:
            values["db_dup_queries"] = dup_count
            values["db_dup_time"] = _seconds(dup_ns)
            values["db_dup_sql"] = top_sql[:_DUP_SQL_MAX]
            values["db_dup_loc"] = top_loc
        run = state.n_plus_one()
        if run is not None:
            values["db_n1_queries"] = run.count
            values["db_n1_time"] = _seconds(run.time_ns)
            values["db_n1_sql"] = run.sql[:_DUP_SQL_MAX]
            values["db_n1_loc"] = run.loc
    if state.exc is not None:
        values.update(exception_fields(state.exc))
    values.update(state.fields)
    return values


def readable_route(route: str) -> str:
    """The matched URL pattern as a path: ``re_path``'s anchors dropped (``^books/(?P<pk>\\d+)/$``
    gives ``/books/(?P<pk>\\d+)/``), a leading slash added."""
    if route.startswith("^"):
        route = route[1:]
    if route.endswith("\\Z"):
        route = route[:-2]
    elif route.endswith("$") and not route.endswith("\\$"):
        route = route[:-1]
    return route if route.startswith("/") else "/" + route


def exception_fields(exc: BaseException) -> dict[str, Any]:
    """The ``exc_*`` fields of an exception: type, message, where handled, raised, in a template."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    loc, cause_loc = _frames.exception_locations(exc)
    return {
        "exc_type": type(exc).__name__,
        "exc_msg": message,
        "exc_loc": loc,
        "exc_cause_loc": cause_loc,
        "exc_template": _frames.template_location(exc),
    }


def order(event_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """Put values in canonical order: event_type, the registry's order, then the application's
    own keys (``app_*``, or another ``Context`` namespace) in the order they were set."""
    ordered: dict[str, Any] = {"event_type": event_type}
    for key in _ORDER:
        value = values.get(key)
        if value is not None and key != "event_type":
            ordered[key] = value
    for key, value in values.items():
        if key not in _REGISTERED and value is not None:
            ordered[key] = value
    return ordered


def build_event(
    event_type: str,
    span: ReadableSpan | None,
    state: RequestAggregate | None,
    end_ns: int | None = None,
    server: dict[str, Any] | None = None,
) -> Event:
    """The canonical event for a finished (or, for timeouts, still running) request; ``end_ns``:
    when the request was over, if later than its root span's end (the body's last byte);
    ``server``: what the server integration adds (saturation)."""
    values = _collect(span, state, end_ns)
    if server:
        values.update(server)
    if state is not None:
        _keep.decide(event_type, values, state)
    if (
        state is not None
        and state.cpu_start is not None
        and span is not None
        and span.end_time
        and state.thread_id == threading.get_ident()
    ):
        values["resp_cpu_time"] = round(time.thread_time() - state.cpu_start, 6)
    ctx = _keep.event_context(state) if state is not None else None
    end = end_ns or (span.end_time if span is not None else None) or time.time_ns()
    environ = state.environ if state is not None else None
    return Event(event_type, order(event_type, values), ctx, end, environ)
