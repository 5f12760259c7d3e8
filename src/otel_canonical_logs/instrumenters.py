"""Enrichers: application code that adds fields to each event just before the sinks write it.

Two forms, both registered with :func:`register_instrumenter`:

- a plain callable, given the event's fields (an ordered, mutable dict), that may add keys;
- an *instrumenter* as in gunicorn-django-canonical-logs: an object whose ``setup()`` runs once
  per worker process after Gunicorn forks it, and whose ``call(req, resp, environ)`` runs for each
  ``request``, ``timeout`` and ``stuck`` event and adds fields with ``Context``.

Each runs guarded: one that raises is skipped for that event (its changes are undone), counted
and logged once, and the event is still written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar, overload

from . import _guard
from .event import Event

__all__ = ["Enricher", "Instrumenter", "register_instrumenter", "unregister_instrumenter"]

Enricher = Callable[[dict[str, Any]], None]
"""A plain callable given each event's fields; it may add keys (``app_region="eu"``)."""


class Instrumenter(Protocol):
    """The instrumenter interface of gunicorn-django-canonical-logs 0.0.10."""

    def setup(self) -> None:
        """Called once per worker process, after Gunicorn forks it."""

    def call(self, req: Any, resp: Any, environ: Any) -> None:
        """Called for each ``request``/``timeout``/``stuck`` event; adds fields with ``Context``."""


# The fields of the event being enriched: where ``Context`` writes while an enricher runs.
current_fields: ContextVar[dict[str, Any] | None] = ContextVar("otel_canonical_logs_enriching", default=None)

# The original called instrumenters for request and timeout events only.
_INSTRUMENTER_EVENTS = frozenset({"request", "timeout", "stuck"})

_T = TypeVar("_T")


class _Entry:
    __slots__ = ("instrumenter", "key", "kind", "setup_pid", "target")

    def __init__(self, key: object, target: Any, instrumenter: bool) -> None:
        self.key = key
        self.target = target
        self.instrumenter = instrumenter
        self.setup_pid = 0
        owner = target if isinstance(target, type) or not instrumenter else type(target)
        name = getattr(owner, "__qualname__", None) or type(owner).__name__
        self.kind = f"enricher.{getattr(owner, '__module__', '?')}.{name}"


_lock = threading.Lock()
_entries: tuple[_Entry, ...] = ()  # replaced, never mutated: enrich() reads it without the lock
_ready_pid = 0  # the process in which every instrumenter's setup() has run
_forked = False


@overload
def register_instrumenter(obj: None = None) -> Callable[[_T], _T]: ...
@overload
def register_instrumenter(obj: _T) -> _T: ...
def register_instrumenter(obj: Any = None) -> Any:
    """Register an enricher: a plain callable, or an instrumenter class (or instance).

    Usable as a decorator, with or without parentheses; returns its argument unchanged.
    Registering the same class again (by module and name) replaces the earlier one::

        from otel_canonical_logs import Context, register_instrumenter

        @register_instrumenter
        class TenantInstrumenter:
            def setup(self):  # once per worker, after fork
                ...

            def call(self, req, resp, environ):  # per event
                Context.set("tenant", (environ or {}).get("HTTP_X_TENANT"))

        @register_instrumenter
        def add_release(fields):
            fields["app_release"] = RELEASE
    """
    if obj is None:
        return register_instrumenter
    if isinstance(obj, type):
        try:
            instance = obj()
        except Exception as exc:
            _guard.report(f"enricher.{obj.__module__}.{obj.__qualname__}.__init__", exc)
            return obj
        if callable(getattr(instance, "call", None)):
            entry = _Entry(f"{obj.__module__}.{obj.__qualname__}", instance, instrumenter=True)
        elif callable(instance):
            entry = _Entry(obj, instance, instrumenter=False)
        else:
            raise TypeError(f"{obj.__qualname__} has no call(req, resp, environ) method")
    elif callable(getattr(obj, "call", None)):
        cls = type(obj)
        entry = _Entry(f"{cls.__module__}.{cls.__qualname__}", obj, instrumenter=True)
    elif callable(obj):
        entry = _Entry(obj, obj, instrumenter=False)
    else:
        raise TypeError(f"cannot register {obj!r}: expected a callable or an instrumenter")
    global _entries, _ready_pid
    with _lock:
        _entries = (*(e for e in _entries if e.key != entry.key), entry)
    if entry.instrumenter:
        if _in_gunicorn_master():
            _ready_pid = 0  # set up after fork; or at the next event, should this process serve
        else:
            _setup(entry)
    return obj


def unregister_instrumenter(obj: Any) -> None:
    """Remove an enricher registered with :func:`register_instrumenter` (for tests).

    An instrumenter's ``teardown()`` runs if it has one.
    """
    global _entries
    keys: list[Any] = [obj]  # a list: the callable need not be hashable
    if isinstance(obj, type) or callable(getattr(obj, "call", None)):
        cls = obj if isinstance(obj, type) else type(obj)
        keys.append(f"{cls.__module__}.{cls.__qualname__}")
    with _lock:
        removed = [e for e in _entries if e.key in keys]
        _entries = tuple(e for e in _entries if e.key not in keys)
    for entry in removed:
        teardown = getattr(entry.target, "teardown", None)
        if entry.instrumenter and callable(teardown):
            with _guard.guard(entry.kind + ".teardown"):
                teardown()


def _in_gunicorn_master() -> bool:
    # Gunicorn's Arbiter sets SERVER_SOFTWARE before it loads a --preload app. Instrumenters
    # registered there are set up in each worker after fork, as the original did in post_fork.
    return not _forked and os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")


def _setup(entry: _Entry) -> None:
    pid = os.getpid()
    if entry.setup_pid == pid:
        return
    entry.setup_pid = pid
    setup = getattr(entry.target, "setup", None)
    if callable(setup):
        with _guard.guard(entry.kind + ".setup"):
            setup()


def _setup_all() -> None:
    global _ready_pid
    _ready_pid = os.getpid()
    for entry in _entries:
        if entry.instrumenter:
            _setup(entry)


def _after_fork_in_child() -> None:
    global _forked
    _forked = True
    _setup_all()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- per event ---------------------------------------------------------------------------------


def enrich(event: Event) -> None:
    """Run every registered enricher on ``event``'s fields, in registration order. Never raises."""
    entries = _entries
    if not entries:
        return
    try:
        if _ready_pid != os.getpid():
            _setup_all()  # a process that never forked, or a preloaded app's first event
        fields = event.fields
        token = current_fields.set(fields)
        try:
            args: tuple[Any, Any, Any] | None = None
            for entry in entries:
                before = dict(fields)
                try:
                    if not entry.instrumenter:
                        entry.target(fields)
                    elif event.type in _INSTRUMENTER_EVENTS:
                        if args is None:
                            args = _instrumenter_args(event)
                        entry.target.call(*args)
                except Exception as exc:
                    fields.clear()
                    fields.update(before)
                    _guard.report(entry.kind, exc)
        finally:
            current_fields.reset(token)
        _event_type_first(event)
    except Exception as exc:
        _guard.report("enrich", exc)


def _event_type_first(event: Event) -> None:
    """Restore what no enricher may change: event_type first, with the event's type."""
    fields = event.fields
    if next(iter(fields), None) != "event_type" or fields["event_type"] != event.type:
        rest = {k: v for k, v in fields.items() if k != "event_type"}
        fields.clear()
        fields["event_type"] = event.type
        fields.update(rest)


# -- what instrumenters written for gunicorn-django-canonical-logs are given --------------------


class LegacyRequest:
    """The attributes of Gunicorn's ``Request`` that instrumenters read, from the request's environ."""

    __slots__ = ("headers", "method", "path", "query", "scheme", "uri", "version")

    def __init__(self, fields: Mapping[str, Any], environ: Mapping[str, Any] | None) -> None:
        env = environ or {}
        self.method = env.get("REQUEST_METHOD") or fields.get("req_method")
        self.path = fields.get("req_path") or env.get("PATH_INFO")
        self.query = env.get("QUERY_STRING", "")
        self.uri = env.get("RAW_URI") or (f"{self.path}?{self.query}" if self.query else self.path)
        self.scheme = env.get("wsgi.url_scheme", "http")
        protocol = str(env.get("SERVER_PROTOCOL", "HTTP/1.1"))
        major, _, minor = protocol.partition("/")[2].partition(".")
        self.version = (int(major), int(minor)) if major.isdigit() and minor.isdigit() else (1, 1)
        self.headers = [
            (name[5:].replace("_", "-"), str(value))
            for name, value in env.items()
            if isinstance(name, str) and name.startswith("HTTP_")
        ]


class LegacyResponse:
    """The attributes of Gunicorn's ``Response`` that instrumenters read."""

    __slots__ = ("headers", "status", "status_code")

    def __init__(self, status_code: Any) -> None:
        self.status_code = status_code
        self.status = str(status_code) if status_code is not None else None
        self.headers: list[tuple[str, str]] = []


def _environ_from_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    environ = {"REQUEST_METHOD": fields.get("req_method"), "PATH_INFO": fields.get("req_path")}
    for key, name in (
        ("req_id", "HTTP_X_REQUEST_ID"),
        ("req_referrer", "HTTP_REFERER"),
        ("req_user_agent", "HTTP_USER_AGENT"),
    ):
        if key in fields:
            environ[name] = fields[key]
    return {k: v for k, v in environ.items() if v is not None}


def _instrumenter_args(event: Event) -> tuple[Any, Any, Any]:
    """``(req, resp, environ)`` as the original passed them; no response or environ on timeouts."""
    fields = event.fields
    environ = event.environ
    if event.type != "request":
        return LegacyRequest(fields, environ), None, None
    if environ is None:
        environ = _environ_from_fields(fields)
    return LegacyRequest(fields, environ), LegacyResponse(fields.get("resp_status")), environ
