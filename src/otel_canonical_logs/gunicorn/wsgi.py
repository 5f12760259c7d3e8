"""The outermost WSGI layer: gives a line to requests that no root span saw (health checks
answered in ``wsgi.py``, WhiteNoise static files)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import _guard, _runtime, _scope
from .._request import fields_from_environ
from ..event import Event, order

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CanonicalWSGI:
    """Wraps a WSGI app; costs one context-variable set/reset per request when Django answers."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scope = _scope.RequestScope()
        token = _scope.current.set(scope)
        start = time.perf_counter_ns()
        status: list[str] = []

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
            if not scope.root_started:
                self._emit(environ, status, failed, time.perf_counter_ns() - start)

    @staticmethod
    def _emit(environ: dict[str, Any], status: list[str], failed: bool, elapsed_ns: int) -> None:
        try:
            fields = fields_from_environ(environ)
            if status:
                fields["resp_status"] = int(status[0].split(" ", 1)[0])
            elif failed:
                fields["resp_status"] = 500  # Gunicorn answers an exception with a 500
            fields["resp_time"] = round(elapsed_ns * 1e-9, 6)
            _runtime.dispatcher(Event("request", order("request", fields), None, time.time_ns()))
        except Exception as exc:
            _guard.report("wsgi.fallback_event", exc)
