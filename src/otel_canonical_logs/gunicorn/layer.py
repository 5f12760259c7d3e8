"""What the WSGI and ASGI server layers share: the worker they serve, its watchdog and busy flag,
and how a request's line is written when the layer ends it."""

from __future__ import annotations

import time
from typing import Any

from .. import _scope
from .._runtime import runtime
from ..event import Event, order
from . import saturation
from .watchdog import Watchdog
from .workers import WorkerKind


class ServerLayer:
    """The outermost layer around one worker's application."""

    def __init__(self, app: Any, worker: Any, kind: WorkerKind) -> None:
        self.app = app
        self.worker = worker
        self.kind = kind
        self.slot: int = getattr(worker, "_canonical_slot", -1)
        self._busy = saturation.board.busy
        if worker is not None:
            saturation.board.serve(self.slot)
        self.watchdog = watchdog_for(worker, kind) if worker is not None else None


def watchdog_for(worker: Any, kind: WorkerKind) -> Watchdog | None:
    """The worker's watchdog, if Gunicorn has a timeout for it."""
    timeout = float(getattr(getattr(worker, "cfg", None), "timeout", 0) or 0)
    if worker is None or timeout <= 0:
        return None
    tmp = getattr(worker, "tmp", None)
    heartbeat = getattr(tmp, "last_update", None)
    return Watchdog(timeout, kind.timeout, heartbeat)


def emit_unseen(
    fields: dict[str, Any],
    status: int | None,
    failed: bool,
    elapsed_ns: int,
    complete: bool,
    resp_bytes: int | None = None,
) -> None:
    """The line of a request no root span saw (a layer in front of Django answered it): the
    ``req_*`` fields the server layer read, the status it sent (500 for an exception)."""
    if resp_bytes is not None:
        fields["resp_bytes"] = resp_bytes
    if status:
        fields["resp_status"] = status
    elif failed:
        fields["resp_status"] = 500  # the server answers an exception with a 500
    fields["resp_time"] = round(elapsed_ns * 1e-9, 6)
    if not complete and not failed:
        fields["resp_aborted"] = True
    fields.update(saturation.board.fields())
    runtime.dispatcher(Event("request", order("request", fields), None, time.time_ns()))


def end_request(
    scope: _scope.RequestScope,
    complete: bool,
    error: BaseException | None,
    status: int | None = None,
    resp_bytes: int | None = None,
) -> None:
    """Finish the request's aggregate when its root span ended before the body was sent;
    ``status``: what the server answered instead of the application's status, if it did;
    ``resp_bytes``: the body bytes sent, when known."""
    state = scope.state
    if state is None:
        return
    if resp_bytes is not None and not state.ended:
        state.fields["resp_bytes"] = resp_bytes
    if state.root_end_ns is None:
        return  # no root span, or it has not ended yet: its own end writes the line
    extra: dict[str, Any] = {}
    if status is not None:
        extra["resp_status"] = status
    if error is not None and state.exc is None and isinstance(error, Exception):
        state.exc = error  # raised while the body was produced, after the view returned
    elif not complete and error is None:
        extra["resp_aborted"] = True
    processor = runtime.processor
    if processor is not None:
        processor.finish(state, time.time_ns(), extra)
