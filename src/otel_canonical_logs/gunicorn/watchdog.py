"""One long-lived thread per worker that notices requests running past Gunicorn's timeout.

Sync worker: Gunicorn's arbiter SIGABRTs, then SIGKILLs, a worker whose heartbeat is older than
``timeout``; the heartbeat is refreshed just before each request is accepted. When a request
reaches that age the watchdog snapshots its thread's stack, emits the ``timeout`` event with
everything aggregated so far, ends the root span with ERROR and flushes the exporters, all before
the kill can land. gthread worker: Gunicorn never kills a stuck request, so the watchdog emits one
``stuck`` event and the request's own line follows when (if) it completes, with ``stuck=true``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .. import _frames, _guard, _runtime, _scope
from ..event import Event, build_event, order
from . import saturation

FLUSH_BUDGET_MS = 400
_logger = logging.getLogger("otel_canonical_logs")


class Watchdog:
    """Watches the in-flight requests of one worker process; re-armed per request, never respawned.

    Arming is one dict insert on the request thread and disarming one pop; the thread sleeps
    until the earliest deadline (or a tick), so requests pay for no synchronisation.
    """

    def __init__(self, timeout: float, kill_on_timeout: bool) -> None:
        self.timeout = timeout
        self.kill_on_timeout = kill_on_timeout  # sync: the arbiter kills it; gthread: it never does
        self.tick = min(1.0, max(timeout / 4, 0.05))
        # id(scope) -> (scope, deadline on the monotonic clock)
        self._inflight: dict[int, tuple[_scope.RequestScope, float]] = {}
        self._thread = threading.Thread(target=self._run, name="canonical-logs-watchdog", daemon=True)
        self._thread.start()

    def arm(self, scope: _scope.RequestScope, since: float) -> None:
        """Watch a request whose timeout clock started at ``since`` (Gunicorn's last heartbeat)."""
        self._inflight[id(scope)] = (scope, since + self.timeout)

    def disarm(self, scope: _scope.RequestScope) -> None:
        self._inflight.pop(id(scope), None)

    def _run(self) -> None:
        while True:
            try:
                wake = self._check(time.monotonic())
            except Exception as exc:
                _guard.report("gunicorn.watchdog", exc)
                wake = time.monotonic() + self.tick
            time.sleep(max(0.001, wake - time.monotonic()))

    def _check(self, now: float) -> float:
        """Fire for every request past its deadline; return when to look again."""
        wake = now + self.tick
        for scope, deadline in list(self._inflight.values()):
            if deadline > now:
                wake = min(wake, deadline)
                continue
            if scope.fired:
                continue
            scope.fired = True
            try:
                self._fire(scope, now)
            except Exception as exc:
                _guard.report("gunicorn.watchdog.fire", exc)
        return wake

    def _fire(self, scope: _scope.RequestScope, now: float) -> None:
        event_type = "timeout" if self.kill_on_timeout else "stuck"
        event = snapshot_event(event_type, scope, now)
        state = scope.state
        if state is not None:
            if self.kill_on_timeout:
                state.done = True  # exactly one event for this request: no request line after it
                _end_root(state.root_span, now - scope.start, self.timeout)
            else:
                state.fields["stuck"] = True
        _runtime.dispatcher(event)
        started = time.monotonic()
        flush(FLUSH_BUDGET_MS)
        _logger.warning(
            "otel_canonical_logs: %s event for req_id=%s after %.3f s; exporters flushed in %.0f ms",
            event_type,
            event.fields.get("req_id"),
            now - scope.start,
            (time.monotonic() - started) * 1000,
        )


def snapshot_event(event_type: str, scope: _scope.RequestScope, now: float) -> Event:
    """What the request had done and what its thread is doing now."""
    state = scope.state
    if state is not None:
        values = build_event(event_type, state.root_span, state).fields
        open_spans = list(state.open_spans.values())
        if open_spans:
            values["timeout_span"] = _describe(open_spans[-1])
    else:
        from .._request import fields_from_environ

        values = fields_from_environ(scope.environ or {})
    values["resp_time"] = round(now - scope.start, 6)
    frame = sys._current_frames().get(scope.thread_id)
    values["timeout_loc"], values["timeout_cause_loc"] = _frames.stack_locations(frame)
    values.update(saturation.fields())
    ctx = state.root_context if state is not None else None
    return Event(event_type, order(event_type, values), ctx, time.time_ns())


def _describe(span: Any) -> str | None:
    """The open span as a reader wants it: the SQL text for a query, else the span's name."""
    if isinstance(span, str):  # an unsampled request's query, counted without a span
        return span[:_SPAN_TEXT_MAX]
    attrs = getattr(span, "attributes", None) or {}
    statement = attrs.get("db.query.text") or attrs.get("db.statement")
    if isinstance(statement, str):
        return statement[:_SPAN_TEXT_MAX]
    name = getattr(span, "name", None)
    return name if isinstance(name, str) else None


_SPAN_TEXT_MAX = 300


def _end_root(root_span: Any, elapsed: float, timeout: float) -> None:
    root_span.set_status(Status(StatusCode.ERROR, "gunicorn worker timeout"))
    root_span.add_event(
        "gunicorn.worker_timeout", {"gunicorn.timeout": timeout, "elapsed_s": round(elapsed, 3)}
    )
    root_span.end()


def flush(budget_ms: int) -> None:
    """Push spans and log records out now, within ``budget_ms`` in total."""
    from opentelemetry._logs import get_logger_provider

    deadline = time.monotonic() + budget_ms / 1000
    for provider in (trace.get_tracer_provider(), get_logger_provider()):
        left = int((deadline - time.monotonic()) * 1000)
        force_flush = getattr(provider, "force_flush", None)
        if left <= 0 or force_flush is None:
            return
        force_flush(left)
