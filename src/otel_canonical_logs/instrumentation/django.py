"""Django hookup: request/response hooks, uncaught exceptions, and deferring instrumentation
until Django's settings are known (the stock ``wsgi.py`` sets them too late otherwise)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from .. import _env, _guard, _scope
from .._http import fields_from_environ
from .._patching import Patches
from .._runtime import runtime

_logger = logging.getLogger("otel_canonical_logs")
_pending: list[Callable[[], None]] = []
_pending_lock = threading.Lock()
_patches = Patches()


class _Options:
    """What ``instrument()`` read from the environment for the hooks."""

    __slots__ = ("user",)

    def __init__(self) -> None:
        self.user = True  # usr_id (CANONICAL_LOGS_USER)


_options = _Options()


def request_hook(span: trace.Span, request: Any) -> None:
    """DjangoInstrumentor's request hook: the ``req_*`` fields from the request's environ."""
    try:
        state = runtime.state_for(span)
        if state is not None:
            scope = _scope.current.get()
            fields = fields_from_environ(request.META, started=scope.start if scope is not None else None)
            # Django has replaced META's PATH_INFO with the decoded path: decoding it again as
            # WSGI's latin-1 text would mangle it (/café/ -> /caf\ufffd/). request.path is it.
            path = getattr(request, "path", None)
            if isinstance(path, str) and path:
                fields["req_path"] = path
            state.fields.update(fields)
            state.environ = request.META
    except Exception as exc:
        _guard.report("django.request_hook", exc)


def response_hook(span: trace.Span, request: Any, response: Any) -> None:
    """DjangoInstrumentor's response hook: the resolved view's dotted name, the user's id."""
    try:
        state = runtime.state_for(span)
        if state is None:
            return
        match = getattr(request, "resolver_match", None)
        view = getattr(match, "_func_path", None) if match is not None else None
        if view:
            state.fields["resp_view"] = view
        if _options.user:
            user_id = loaded_user_id(request)
            if user_id is not None:
                state.fields["usr_id"] = user_id
    except Exception as exc:
        _guard.report("django.response_hook", exc)


_lazy: tuple[type, object] | None = None


def _lazy_object() -> tuple[type, object]:
    global _lazy
    from django.utils.functional import LazyObject, empty

    _lazy = (LazyObject, empty)
    return _lazy


def loaded_user_id(request: Any) -> str | None:
    """The primary key of the authenticated user on ``request``, if the application loaded the
    user; never loads it (no session or user query).

    Django's ``AuthenticationMiddleware`` sets ``request.user`` to a ``SimpleLazyObject`` whose
    ``_wrapped`` stays ``empty`` until the user is first used; ``await request.auser()`` keeps
    the user in ``request._acached_user`` instead. A user set by the application itself
    (``login()``, Django REST framework) is an object already loaded.
    """
    lazy_type, empty = _lazy or _lazy_object()
    attrs = getattr(request, "__dict__", None)
    if not isinstance(attrs, dict):
        return None
    user = attrs.get("user")
    if user is not None and issubclass(type(user), lazy_type):
        wrapped = user._wrapped  # read as LazyObject itself reads it: never sets it up
        user = None if wrapped is empty else wrapped
    if user is None:
        user = attrs.get("_acached_user")
    if user is None or getattr(user, "is_authenticated", False) is not True:
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)


def _on_uncaught_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    # Django sends got_request_exception only for exceptions it turns into a 500 (not for
    # Http404, PermissionDenied or other handled 4xx), from inside the except block.
    try:
        exc = sys.exc_info()[1]
        state = runtime.request_state() if exc is not None else None
        if state is not None:
            state.exc = exc
    except Exception as err:
        _guard.report("django.got_request_exception", err)


def _connect_signals() -> None:
    from django.core.signals import got_request_exception

    got_request_exception.connect(
        _on_uncaught_exception, weak=False, dispatch_uid="otel_canonical_logs.exception"
    )


def settings_ready() -> bool:
    """Whether touching ``django.conf.settings`` now would load the real settings."""
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return True
    from django.conf import settings

    return bool(settings.configured)


def instrument(instrumentor_class: type[Any], **kwargs: Any) -> None:
    """Instrument Django now if its settings are known, else just before ``django.setup()``.

    DjangoInstrumentor reads ``settings.MIDDLEWARE`` when instrumenting; with no settings module
    in the environment it calls ``settings.configure()`` with empty defaults and every request
    then fails. The stock ``wsgi.py`` sets the variable only when it runs, so wait for it.
    """
    kwargs.setdefault("request_hook", request_hook)
    kwargs.setdefault("response_hook", response_hook)
    _options.user = _env.env_bool(_env.CANONICAL_LOGS_USER, True)

    def run() -> None:
        instrumentor_class().instrument(**kwargs)
        _connect_signals()

    if settings_ready():
        run()
        return
    with _pending_lock:
        _pending.append(run)
    _patch_setup()


def _run_pending() -> None:
    with _pending_lock:
        todo = list(_pending)
        _pending.clear()
    for run in todo:
        try:
            run()
        except Exception as exc:
            _guard.report("django.deferred_instrument", exc)


def _patch_setup() -> None:
    import django

    def make(original: Any) -> Any:
        def setup(*args: Any, **kwargs: Any) -> Any:
            _run_pending()
            return original(*args, **kwargs)

        return setup

    if not _patches.patch(django, "setup", make):
        return
    _logger.debug("DJANGO_SETTINGS_MODULE not set yet; Django instrumentation deferred to setup()")
