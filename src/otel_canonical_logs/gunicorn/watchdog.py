"""One long-lived OS thread per worker that notices requests running past Gunicorn's timeout.

Sync worker: Gunicorn's arbiter SIGABRTs, then SIGKILLs, a worker whose heartbeat is older than
``timeout``; the heartbeat is refreshed just before each request is accepted. When a request
reaches that age the watchdog snapshots its thread's stack, emits the ``timeout`` event with
everything aggregated so far, ends the root span with ERROR and flushes the exporters, all before
the kill can land. gthread worker: Gunicorn never kills a stuck request, so the watchdog emits one
``stuck`` event and the request's own line follows when (if) it completes, with ``stuck=true``.

Cooperative workers (gevent, the asyncio ones): a request past the timeout that still yields to
the event loop (or hub) is never killed: one ``stuck`` event, as under gthread. A request that
blocks the loop stops the worker's heartbeat, and the arbiter kills the worker ``timeout``
seconds after the last beat: the watchdog, a real OS thread even under gevent, sees the beat go
stale first and emits that request's ``timeout`` event with the blocked stack.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .. import _frames, _guard, _keep, _scope
from .._aggregate import InFlight
from .._runtime import runtime
from ..event import Event, build_event, order
from . import saturation

FLUSH_BUDGET_MS = 400
_logger = logging.getLogger("otel_canonical_logs")
Stack = list[tuple[str, int | None, str]]


def _originals() -> tuple[Callable[..., Any], Callable[[float], None], Callable[[], int]]:
    """(start a thread, sleep, thread ident) as the OS provides them, also under gevent's patches."""
    import _thread

    monkey = sys.modules.get("gevent.monkey")  # gevent patched nothing if nobody imported it
    if monkey is None:
        return _thread.start_new_thread, time.sleep, _thread.get_ident
    return (
        monkey.get_original("_thread", "start_new_thread"),
        monkey.get_original("time", "sleep"),
        monkey.get_original("_thread", "get_ident"),
    )


class Watchdog:
    """Watches the in-flight requests of one worker process; re-armed per request, never respawned.

    Arming is one dict insert on the request thread and disarming one pop; the thread sleeps
    until the earliest deadline (or a tick), so requests pay for no synchronisation.

    ``mode`` is the worker kind's timeout behaviour (``kill``, ``stuck``, ``cooperative``);
    ``heartbeat`` reads the worker's last heartbeat on the monotonic clock (cooperative workers:
    a stale one means the event loop is blocked).
    """

    def __init__(self, timeout: float, mode: str, heartbeat: Callable[[], float] | None = None) -> None:
        self.timeout = timeout
        self.kill_on_timeout = mode == "kill"
        self.tick = min(1.0, max(timeout / 4, 0.05))
        self._heartbeat = heartbeat if mode == "cooperative" else None
        # Fire before the arbiter's own check: it kills at last beat + timeout, and a uvicorn
        # worker's default SIGABRT handling ends it at once.
        self.margin = min(0.5, timeout / 4)
        # id(scope) -> (scope, deadline on the monotonic clock)
        self._inflight: dict[int, tuple[_scope.RequestScope, float]] = {}
        start_thread, self._sleep, get_ident = _originals()
        self.loop_thread = get_ident()  # made in the worker's main thread: the event loop's / hub's
        start_thread(self._run, ())

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
            self._sleep(max(0.001, wake - time.monotonic()))

    def _check(self, now: float) -> float:
        """Fire for every request past its deadline; return when to look again."""
        wake = now + self.tick
        if self._heartbeat is not None and self._inflight:
            try:
                beat = self._heartbeat()
            except (OSError, ValueError):
                beat = now
            blocked_at = beat + self.timeout - self.margin
            if blocked_at <= now:
                self._loop_blocked(now)
            else:
                wake = min(wake, blocked_at)
        for scope, deadline in list(self._inflight.values()):
            if deadline > now:
                wake = min(wake, deadline)
                continue
            if scope.fired:
                continue
            scope.fired = True
            try:
                self._fire("timeout" if self.kill_on_timeout else "stuck", scope, now)
            except Exception as exc:
                _guard.report("gunicorn.watchdog.fire", exc)
        return wake

    def _loop_blocked(self, now: float) -> None:
        """The heartbeat is about to be stale enough for the arbiter to kill the worker."""
        frame = sys._current_frames().get(self.loop_thread)
        # Not one whose timeout event already went out (a request that never reached Django has
        # no aggregate to mark done): the loop stays blocked until the kill, one event is enough.
        scopes = [s for s, _ in list(self._inflight.values()) if not s.timed_out]
        scope = _blocking_scope(scopes, frame)
        if scope is None:
            return
        scope.fired = True
        try:
            self._fire("timeout", scope, now, frame)
        except Exception as exc:
            _guard.report("gunicorn.watchdog.fire", exc)

    def _fire(
        self, event_type: str, scope: _scope.RequestScope, now: float, frame: FrameType | None = None
    ) -> None:
        event = snapshot_event(event_type, scope, now, self.loop_thread, frame)
        state = scope.state
        if event_type == "timeout":
            scope.timed_out = True
            saturation.board.timed_out()
        if state is not None:
            if event_type == "timeout":
                state.done = True  # exactly one event for this request: no request line after it
                _end_root(state, now - scope.start, self.timeout)
            else:
                state.fields["stuck"] = True
        runtime.dispatcher(event)
        if state is not None and event_type == "timeout":
            # Its trace, if kept, goes out with the flush below (the root ended at the snapshot).
            processor = runtime.processor
            if processor is not None:
                processor.deliver(state)
        started = time.monotonic()
        if event_type == "timeout" and not _under_gevent():
            # gevent: the exporters' threads are greenlets of the blocked hub; the line is out.
            flush(FLUSH_BUDGET_MS)
        _logger.warning(
            "otel_canonical_logs: %s event for req_id=%s after %.3f s; exporters flushed in %.0f ms",
            event_type,
            event.fields.get("req_id"),
            now - scope.start,
            (time.monotonic() - started) * 1000,
        )


def _under_gevent() -> bool:
    gevent = sys.modules.get("gevent.monkey")
    return bool(gevent is not None and gevent.is_module_patched("threading"))


def _request_of(frame: FrameType) -> Any:
    try:
        return frame.f_locals.get("request")
    except Exception:
        return None


def _owns(scope: _scope.RequestScope, request: Any) -> bool:
    """Whether Django's request object is the one of this server-side scope."""
    if request is None or scope.environ is None:
        return False
    marker = getattr(request, "scope", None)  # ASGIRequest keeps the ASGI scope dict
    if marker is None:
        marker = getattr(request, "environ", None)  # WSGIRequest keeps the environ
    return marker is scope.environ


def _blocking_scope(scopes: list[_scope.RequestScope], frame: FrameType | None) -> _scope.RequestScope | None:
    """Which in-flight request holds the loop thread: a greenlet running now, the request whose
    Django request object is on the stack, else the only (or oldest) one in flight."""
    if not scopes:
        return None
    for scope in scopes:
        glet = scope.greenlet
        if glet is not None and glet.gr_frame is None and not glet.dead and bool(glet):
            return scope
    while frame is not None:
        request = _request_of(frame)
        if request is not None:
            for scope in scopes:
                if _owns(scope, request):
                    return scope
        frame = frame.f_back
    return min(scopes, key=lambda s: s.start)


def _coroutine_stack(coro: Any) -> Stack:
    """A suspended coroutine chain, outermost first: each awaits the next."""
    stack: Stack = []
    seen = 0
    while coro is not None and seen < 200:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, frame.f_lineno, code.co_name))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        seen += 1
    return stack


def _has_app_frame(stack: Stack) -> bool:
    return any(_frames.is_app_file(f[0]) for f in stack)


def _suspended_task_stack(scope: _scope.RequestScope) -> Stack:
    """The stack of the asyncio task running this request's view, found among the loop's tasks
    by the Django request object its coroutines hold."""
    loop = getattr(scope, "loop", None)
    if loop is None:
        return []
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:
        return []
    best: Stack = []
    for task in tasks:
        coro: Any = task.get_coro()
        chain = coro
        while chain is not None:
            frame = getattr(chain, "cr_frame", None)
            if frame is not None and _owns(scope, _request_of(frame)):
                stack = _coroutine_stack(coro)
                # Django's handler task holds the request too, waiting on the task that runs the
                # view: prefer the stack that went through the view's caller, then the deeper.
                if _has_app_frame(stack) and _rank(stack) > _rank(best):
                    best = stack
                break
            chain = getattr(chain, "cr_await", None)
    return best


def _rank(stack: Stack) -> tuple[bool, int]:
    return any(f[0].endswith(_frames.VIEW_CALLER) for f in stack), len(stack)


def request_stack(scope: _scope.RequestScope, loop_thread: int, frame: FrameType | None = None) -> Stack:
    """Where the request stands now: the blocked loop's stack when it blocks the loop, else its
    greenlet's, its thread's (the thread of ``sync_to_async`` code under ASGI), its task's."""
    if frame is not None:
        return _frames.frame_stack(frame)
    frames = sys._current_frames()
    glet = scope.greenlet
    if glet is not None:
        top = glet.gr_frame
        if top is None and not glet.dead:
            top = frames.get(loop_thread)  # running now
        return _frames.frame_stack(top)
    state = scope.state
    threads = [scope.thread_id]
    if state is not None and state.thread_id != scope.thread_id:
        threads.insert(0, state.thread_id)
    for tid in threads:
        stack = _frames.frame_stack(frames.get(tid))
        if _has_app_frame(stack):
            return stack
    return _suspended_task_stack(scope)


def snapshot_event(
    event_type: str,
    scope: _scope.RequestScope,
    now: float,
    loop_thread: int = 0,
    frame: FrameType | None = None,
) -> Event:
    """What the request had done and what its thread (greenlet, task) is doing now."""
    state = scope.state
    if state is not None:
        values = build_event(event_type, state.root_span, state, server=runtime.server_fields()).fields
        running = state.innermost()
        if running is not None:
            values["timeout_span"] = _describe(running)
    else:
        from .._http import fields_from_scope

        values = fields_from_scope(scope.environ or {}, scope.start)
    values["resp_time"] = round(now - scope.start, 6)
    stack = request_stack(scope, loop_thread or scope.thread_id, frame)
    values["timeout_loc"], values["timeout_cause_loc"] = _frames.locations_of(stack)
    values.update(saturation.board.fields())
    ctx = _keep.event_context(state) if state is not None else None
    return Event(event_type, order(event_type, values), ctx, time.time_ns())


def _describe(span: Any) -> str | None:
    """The open span as a reader wants it: the SQL text for a query, else the span's name."""
    if isinstance(span, InFlight):  # an unsampled request's query or render, without a span
        return span.text[:_SPAN_TEXT_MAX] if isinstance(span.text, str) else None
    attrs = getattr(span, "attributes", None) or {}
    statement = attrs.get("db.query.text") or attrs.get("db.statement")
    if isinstance(statement, str):
        return statement[:_SPAN_TEXT_MAX]
    name = getattr(span, "name", None)
    return name if isinstance(name, str) else None


_SPAN_TEXT_MAX = 300


def _end_root(state: Any, elapsed: float, timeout: float) -> None:
    root_span = state.root_span
    if state.root_end_ns is not None or not root_span.is_recording():
        return  # it ended when the view returned (a streamed body timed out): nothing to end
    root_span.set_status(Status(StatusCode.ERROR, "gunicorn worker timeout"))
    root_span.add_event(
        "gunicorn.worker_timeout", {"gunicorn.timeout": timeout, "elapsed_s": round(elapsed, 3)}
    )
    root_span.end()
    # The worker is about to die with the request's frames still holding Django's span
    # activation; when the interpreter finalizes it, it ends the span a second time and the SDK
    # warns. That second end is ours to expect, not the user's to read. A level, not a filter:
    # under gevent even building the log record fails while greenlets are finalized.
    if _SDK_TRACE_LOGGER.getEffectiveLevel() < logging.ERROR:
        _SDK_TRACE_LOGGER.setLevel(logging.ERROR)
    # setLevel empties the logger's level cache, and refilling it takes logging's module lock:
    # under gevent 24 that lock cannot be taken while greenlets are finalized (the traceback
    # names the SDK's warning). Refilled here, on a healthy thread, the later check needs no lock.
    _SDK_TRACE_LOGGER.isEnabledFor(logging.WARNING)


_SDK_TRACE_LOGGER = logging.getLogger("opentelemetry.sdk.trace")


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
