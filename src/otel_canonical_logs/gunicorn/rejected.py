"""Requests that Gunicorn answers itself, before the application sees them, still get their line.

A request line or header its parser rejects (400, 414, 431, ...), or a ``pre_request`` hook that
raises, ends in ``Worker.handle_error``, which writes the error response through
``gunicorn.util.write_error``. Wrapping both gives one ``request`` line with what is known: the
status Gunicorn sent, and the ``req_*`` fields when the request line was parsed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _guard
from .._http import fields_from_environ
from .._runtime import runtime
from ..event import Event, order
from . import saturation

_local = threading.local()

# The headers fields_from_environ reads, as Gunicorn's parser names them.
_HEADERS = {"X-REQUEST-ID": "HTTP_X_REQUEST_ID", "REFERER": "HTTP_REFERER", "USER-AGENT": "HTTP_USER_AGENT"}


def served(environ: dict[str, Any]) -> None:
    """Called by the WSGI layer for each request it sees: that request has its line already.

    Gunicorn's ``environ["wsgi.input"]`` is the request's ``body``, so ``handle_error`` can tell
    a request the application saw from one it never reached. One reference per thread, replaced
    by the next request.
    """
    _local.body = environ.get("wsgi.input")


def make_handle_error(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``Worker.handle_error(req, client, addr, exc)``: Gunicorn's own handling runs
    unchanged; then, for a request the application never saw, its line is written."""

    def handle_error(self: Any, req: Any, client: Any, addr: Any, exc: BaseException) -> Any:
        _local.status = None
        _local.capturing = True
        try:
            return original(self, req, client, addr, exc)
        finally:
            _local.capturing = False
            try:
                if _emit(req, exc, _local.status):
                    saturation.board.count_request(getattr(self, "_canonical_slot", -1))
            except Exception as err:
                _guard.report("gunicorn.handle_error", err)

    return handle_error


def make_write_error(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``gunicorn.util.write_error``: note the status it sends while ``handle_error`` runs."""

    def write_error(sock: Any, status_int: Any, reason: Any, mesg: Any) -> Any:
        if getattr(_local, "capturing", False):
            _local.status = status_int
        return original(sock, status_int, reason, mesg)

    return write_error


def _emit(req: Any, exc: BaseException, status: Any) -> bool:
    """Write the line of a request the application never saw; whether there was one."""
    served_body = getattr(_local, "body", None)
    _local.body = None
    if req is not None and served_body is not None and getattr(req, "body", None) is served_body:
        return False  # the application saw this request: its line is written already
    if req is None or not hasattr(req, "headers"):
        # InvalidHeader carries the request it was parsing (its line was read); other parse
        # errors carry none, or only the raw request line, which is not trusted for fields.
        candidate = getattr(exc, "req", None)
        req = candidate if hasattr(candidate, "headers") and hasattr(candidate, "method") else None
    fields = fields_from_environ(_environ(req))
    if req is None:
        fields.pop("req_method", None)
        fields.pop("req_path", None)
    if isinstance(status, int):
        fields["resp_status"] = status
    fields.update(saturation.board.fields())
    runtime.dispatcher(Event("request", order("request", fields), None, time.time_ns()))
    return True


def _environ(req: Any) -> dict[str, Any]:
    """The part of a WSGI environ that ``fields_from_environ`` reads, from a parsed request."""
    if req is None:
        return {}
    from gunicorn.util import unquote_to_wsgi_str

    environ: dict[str, Any] = {"REQUEST_METHOD": req.method}
    path = getattr(req, "path", None)
    if isinstance(path, str):
        environ["PATH_INFO"] = unquote_to_wsgi_str(path)
    for name, value in getattr(req, "headers", None) or ():
        key = _HEADERS.get(name)
        if key is not None:
            # Repeated headers are joined as Gunicorn's environ joins them.
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
