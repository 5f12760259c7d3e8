"""``@on_error``: a helper's failure becomes a correlated ``partial_failure`` event and a fallback
value, so the request can still answer (a degraded page instead of a 500)."""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from opentelemetry import trace

from . import _guard, _keep
from ._runtime import runtime
from .event import Event, exception_fields, order

__all__ = ["on_error"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_D = TypeVar("_D")

# Copied from the request's own line so a partial failure can be found without joining.
_FROM_REQUEST = ("req_id", "req_method", "req_path")


class _Decorator(Generic[_D]):
    """What ``on_error(return_value=...)`` returns, typed for sync and ``async def`` functions."""

    def __init__(self, decorate: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        self._decorate = decorate

    @overload
    def __call__(
        self, function: Callable[_P, Coroutine[Any, Any, _R]]
    ) -> Callable[_P, Coroutine[Any, Any, _R | _D]]: ...
    @overload
    def __call__(self, function: Callable[_P, _R]) -> Callable[_P, _R | _D]: ...
    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        return self._decorate(function)


def on_error(*, return_value: _D) -> _Decorator[_D]:
    """Catch any ``Exception`` the decorated function raises and return ``return_value`` instead.

    Each caught exception emits a ``partial_failure`` event (stdout and OTLP) with the request's
    ``req_id``, ``trace_id`` and ``span_id`` and ``exc_*`` fields, is recorded on the current
    span, and adds one to the request line's ``partial_failures``. With Django's
    ``settings.DEBUG`` on, the exception propagates instead. Works on ``async def`` functions.
    The same ``return_value`` object is returned every time: prefer immutable fallbacks.

    Example (``example/shop/helpers.py``)::

        from otel_canonical_logs import on_error

        @on_error(return_value=[])
        def recommendations(book):
            return recommender.similar_to(book)  # a flaky service
    """

    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R | _D]:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await function(*args, **kwargs)
                except Exception as exc:
                    if _debug():
                        raise
                    partial_failure(exc)
                    return return_value

            return cast(Callable[_P, "_R | _D"], async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | _D:
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                if _debug():
                    raise
                partial_failure(exc)
                return return_value

        return wrapper

    return _Decorator(decorate)


def _debug() -> bool:
    """Django's ``settings.DEBUG``, False when Django is absent or not configured."""
    try:
        from django.conf import settings

        if not (os.environ.get("DJANGO_SETTINGS_MODULE") or settings.configured):
            return False
        return bool(settings.DEBUG)
    except Exception:
        return False


def partial_failure(exc: BaseException) -> None:
    """Emit the ``partial_failure`` event for ``exc`` in the current request. Never raises."""
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc)
        state = runtime.request_state()
        values: dict[str, Any] = {}
        if state is not None:
            for key in _FROM_REQUEST:
                if key in state.fields:
                    values[key] = state.fields[key]
            state.fields["partial_failures"] = state.fields.get("partial_failures", 0) + 1
            context = state.root_context
        else:
            context = span.get_span_context()
        if context.is_valid:
            values["trace_id"] = format(context.trace_id, "032x")
            values["span_id"] = format(context.span_id, "016x")
        values.update(exception_fields(exc))
        if state is not None:
            _keep.decide("partial_failure", values, state)
            context = _keep.event_context(state)
        event_context = context if context.is_valid else None
        event = Event("partial_failure", order("partial_failure", values), event_context, time.time_ns())
        runtime.dispatcher(event)
    except Exception as err:
        _guard.report("on_error", err)
