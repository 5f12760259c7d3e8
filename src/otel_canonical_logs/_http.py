"""The `req_*` fields of a request, read from what the server hands over (a WSGI environ or an ASGI
scope): the same for Django requests and for those the server layer answers alone. No state
(an absurd ``X-Request-Start`` is counted, ``dropped.queue_time_skew``)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

from . import _guard

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# X-Request-Start / X-Queue-Start: ``t=`` and a number of seconds, milliseconds or microseconds
# since the epoch (``t=1700000000.123``, ``t=1700000000123``, ``1700000000123456``).
_TIMESTAMP = re.compile(r"\s*(?:[tT]=)?(\d{1,20}(?:\.\d{1,9})?)(?:[\s,;]|\Z)", re.ASCII)
_Y2000 = 946_684_800.0  # a timestamp read in the finest unit that lands after this is in that unit
QUEUE_AHEAD_MAX = 1.0  # a proxy clock this far ahead of ours is skew: the wait is 0
QUEUE_TIME_MAX = 3600.0
_QUEUE_HEADERS = ("HTTP_X_REQUEST_START", "HTTP_X_QUEUE_START")


def wsgi_str(value: str) -> str:
    """PEP 3333 hands bytes over as latin-1 text; recover the UTF-8 the client most likely sent."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


def request_id(incoming: str | None) -> str:
    """The incoming ``X-Request-ID`` when it is a sane token, else a new random one."""
    if incoming and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()


def request_start(value: str) -> float | None:
    """When the proxy received the request, in seconds since the epoch, from an
    ``X-Request-Start`` value: ``t=`` optional, then seconds (with a fraction), milliseconds or
    microseconds, told apart by magnitude; anything after the number (Apache's `` D=``) is
    ignored. None if it is not such a value."""
    match = _TIMESTAMP.match(value)
    if match is None:
        return None
    number = float(match.group(1))
    for scale in (1e-6, 1e-3, 1.0):
        seconds = number * scale
        if seconds >= _Y2000:
            return seconds
    return None


def queue_time(received: float, started: float) -> float | None:
    """Seconds the request waited from ``received`` (the proxy's clock) to ``started`` (ours):
    0 when the proxy's clock is ahead by up to a second; None when the two clocks cannot both be
    right (ahead by more, or an hour or more apart)."""
    waited = started - received
    if waited < 0:
        return 0.0 if waited >= -QUEUE_AHEAD_MAX else None
    return waited if waited < QUEUE_TIME_MAX else None


def _queue_field(values: tuple[Any, ...], started: float | None, fields: dict[str, Any]) -> None:
    """``req_queue_time`` from the first header value that parses; ``started``: when the worker
    started the request (``time.monotonic()``), if earlier than now."""
    for value in values:
        received = request_start(value) if isinstance(value, str) else None
        if received is not None:
            now = time.time()
            if started is not None:
                now -= max(0.0, time.monotonic() - started)
            waited = queue_time(received, now)
            if waited is None:
                _guard.count("dropped.queue_time_skew")
            else:
                fields["req_queue_time"] = round(waited, 6)
            return


def content_length(value: object) -> int | None:
    """A ``Content-Length`` value as an int, if it is one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        value = value.strip()
        if 0 < len(value) <= 19 and value.isascii() and value.isdigit():
            return int(value)
    return None


def body_bytes(method: object, status: int | None, sent: int) -> int:
    """Body bytes the client received of ``sent``: none for a ``HEAD`` request or a 1xx, 204 or
    304 response, whatever the application produced (every server drops them, RFC 9110)."""
    if method == "HEAD" or status in (204, 304) or (status is not None and status < 200):
        return 0
    return sent


def fields_from_environ(
    environ: Mapping[str, Any], path_info: str | None = None, started: float | None = None
) -> dict[str, Any]:
    """``req_*`` fields of one request; the path never carries the query string.

    ``path_info`` is the raw WSGI ``PATH_INFO`` when the caller kept it: Django replaces the
    environ's with its decoded path, which must not be decoded a second time. ``started``: when
    the worker started the request (``time.monotonic()``), for ``req_queue_time``.
    """
    raw_path = environ.get("PATH_INFO", "") if path_info is None else path_info
    fields: dict[str, Any] = {
        "req_id": request_id(environ.get("HTTP_X_REQUEST_ID")),
        "req_method": environ.get("REQUEST_METHOD"),
        "req_path": wsgi_str(environ.get("SCRIPT_NAME", "") + raw_path) or "/",
    }
    referrer = environ.get("HTTP_REFERER")
    if referrer:
        fields["req_referrer"] = wsgi_str(referrer)
    agent = environ.get("HTTP_USER_AGENT")
    if agent:
        fields["req_user_agent"] = wsgi_str(agent)
    length = environ.get("CONTENT_LENGTH")
    if length:
        size = content_length(length)
        if size is not None:
            fields["req_bytes"] = size
    if "HTTP_X_REQUEST_START" in environ or "HTTP_X_QUEUE_START" in environ:
        _queue_field(tuple(environ.get(h) for h in _QUEUE_HEADERS), started, fields)
    return fields


def _header_text(value: bytes) -> str:
    return value.decode("utf-8", "replace") if not value.isascii() else value.decode("ascii")


def fields_from_asgi(scope: Mapping[str, Any], started: float | None = None) -> dict[str, Any]:
    """``req_*`` fields of an ASGI HTTP scope (a request that never reached Django's handler);
    ``started`` as for :func:`fields_from_environ`."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        if name in _ASGI_HEADERS and name not in headers:
            headers[name] = value
    rid = headers.get(b"x-request-id")
    fields: dict[str, Any] = {
        "req_id": request_id(_header_text(rid) if rid is not None else None),
        "req_method": scope.get("method"),
        "req_path": (scope.get("root_path", "") or "") + (scope.get("path", "") or "") or "/",
    }
    referrer = headers.get(b"referer")
    if referrer:
        fields["req_referrer"] = _header_text(referrer)
    agent = headers.get(b"user-agent")
    if agent:
        fields["req_user_agent"] = _header_text(agent)
    length = headers.get(b"content-length")
    if length:
        size = content_length(length)
        if size is not None:
            fields["req_bytes"] = size
    queued = tuple(_header_text(headers[h]) for h in _ASGI_QUEUE_HEADERS if h in headers)
    if queued:
        _queue_field(queued, started, fields)
    return fields


_ASGI_QUEUE_HEADERS = (b"x-request-start", b"x-queue-start")
_ASGI_HEADERS = frozenset(
    {b"x-request-id", b"referer", b"user-agent", b"content-length", *_ASGI_QUEUE_HEADERS}
)


def fields_from_scope(environ: Mapping[str, Any], started: float | None = None) -> dict[str, Any]:
    """``req_*`` fields from what the server layer kept: a WSGI environ or an ASGI scope."""
    if "asgi" in environ and "type" in environ:
        return fields_from_asgi(environ, started)
    return fields_from_environ(environ, started=started)
