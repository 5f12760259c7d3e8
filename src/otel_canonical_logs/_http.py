"""The `req_*` fields of a request, read from what the server hands over (a WSGI environ or an ASGI
scope): the same for Django requests and for those the server layer answers alone. No state."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


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


def fields_from_environ(environ: Mapping[str, Any], path_info: str | None = None) -> dict[str, Any]:
    """``req_*`` fields of one request; the path never carries the query string.

    ``path_info`` is the raw WSGI ``PATH_INFO`` when the caller kept it: Django replaces the
    environ's with its decoded path, which must not be decoded a second time.
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
    return fields


def _header_text(value: bytes) -> str:
    return value.decode("utf-8", "replace") if not value.isascii() else value.decode("ascii")


def fields_from_asgi(scope: Mapping[str, Any]) -> dict[str, Any]:
    """``req_*`` fields of an ASGI HTTP scope (a request that never reached Django's handler)."""
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
    return fields


_ASGI_HEADERS = frozenset({b"x-request-id", b"referer", b"user-agent"})


def fields_from_scope(environ: Mapping[str, Any]) -> dict[str, Any]:
    """``req_*`` fields from what the server layer kept: a WSGI environ or an ASGI scope."""
    if "asgi" in environ and "type" in environ:
        return fields_from_asgi(environ)
    return fields_from_environ(environ)
