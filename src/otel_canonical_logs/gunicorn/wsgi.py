"""The outermost WSGI layer of each Gunicorn worker: arms the timeout watchdog, flags the worker
busy for saturation, and gives a line to requests that no root span saw (health checks answered
in ``wsgi.py``, WhiteNoise static files)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import _guard, _runtime, _scope
from .._request import fields_from_environ
from ..event import Event, order
from . import rejected, saturation
from .watchdog import Watchdog

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _watchdog_for(worker: Any) -> Watchdog | None:
    timeout = float(getattr(getattr(worker, "cfg", None), "timeout", 0) or 0)
    if worker is None or timeout <= 0:
        return None
    kind = type(worker).__name__
    if kind == "SyncWorker":
        return Watchdog(timeout, kill_on_timeout=True)
    if kind == "ThreadWorker":
        return Watchdog(timeout, kill_on_timeout=False)
    return None  # async workers: requests are not threads; no snapshot to take


class CanonicalWSGI:
    """Wraps a worker's WSGI app. Per request: one context-variable set/reset, two dict
    operations for the watchdog and two byte writes for saturation."""

    def __init__(self, app: WSGIApp, worker: Any = None) -> None:
        self.app = app
        self.worker = worker
        self.slot: int = getattr(worker, "_canonical_slot", -1)
        self.watchdog = _watchdog_for(worker)
        # Sync workers beat just before accepting a request: that is when the arbiter's
        # timeout clock starts, so the watchdog's does too.
        tmp = getattr(worker, "tmp", None)
        sync = self.watchdog is not None and self.watchdog.kill_on_timeout
        self._heartbeat: Callable[[], float] | None = tmp.last_update if sync and tmp is not None else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scope = _scope.RequestScope(environ)
        path_info = environ.get("PATH_INFO", "")  # raw: Django rewrites the environ's in place
        token = _scope.current.set(scope)
        rejected.served(environ)  # so Gunicorn's error handler never writes a second line for it
        start = time.perf_counter_ns()
        status: list[str] = []
        watchdog = self.watchdog
        if watchdog is not None:
            since = scope.start
            if self._heartbeat is not None:
                try:  # noqa: SIM105 - cheaper than contextlib.suppress on the request path
                    since = min(since, self._heartbeat())
                except (OSError, ValueError):
                    pass
            watchdog.arm(scope, since)
        saturation.busy(self.slot, 1)

        def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[:] = [status_line]
            return start_response(status_line, headers, exc_info)

        failed = False
        try:
            return self.app(environ, capture)
        except BaseException:
            failed = True
            raise
        finally:
            _scope.current.reset(token)
            saturation.busy(self.slot, -1)
            if watchdog is not None:
                watchdog.disarm(scope)
            if not scope.root_started and not scope.fired:
                self._emit(environ, path_info, status, failed, time.perf_counter_ns() - start)

    @staticmethod
    def _emit(
        environ: dict[str, Any], path_info: str, status: list[str], failed: bool, elapsed_ns: int
    ) -> None:
        try:
            fields = fields_from_environ(environ, path_info)
            if status:
                fields["resp_status"] = int(status[0].split(" ", 1)[0])
            elif failed:
                fields["resp_status"] = 500  # Gunicorn answers an exception with a 500
            fields["resp_time"] = round(elapsed_ns * 1e-9, 6)
            fields.update(saturation.fields())
            _runtime.dispatcher(Event("request", order("request", fields), None, time.time_ns()))
        except Exception as exc:
            _guard.report("wsgi.fallback_event", exc)
