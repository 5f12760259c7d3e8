"""``Context``: the application's own fields on the current request's canonical line."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context

from . import _guard
from ._runtime import runtime
from ._values import safe_value, sanitize_key
from .fields import BY_KEY
from .instrumenters import current_fields

__all__ = ["SPAN_ATTRIBUTE_PREFIX", "Context"]

DEFAULT_NAMESPACE = "app"
SPAN_ATTRIBUTE_PREFIX = "canonical."
"""Each field set through ``Context`` is also an attribute of the request's root span, under
this prefix: ``Context.set("plan", "pro")`` sets ``canonical.app_plan="pro"``."""

_sum_lock = threading.Lock()


@lru_cache(maxsize=1024)
def _field_key(key: str, namespace: str) -> str | None:
    """The line's key for ``key`` in ``namespace``; None for a canonical field's key."""
    full = sanitize_key(f"{namespace}_{key}")
    return None if full in BY_KEY else full


def _target() -> tuple[dict[str, Any], Any] | None:
    """Where fields go now: (fields, root span) of the current request, or of the event being
    enriched; None outside both."""
    fields = current_fields.get()
    if fields is not None:
        return fields, None
    state = runtime.request_state(otel_context.get_current())
    if state is None:
        return None
    return state.fields, state.root_span


def _store(target: tuple[dict[str, Any], Any], key: str, value: Any) -> None:
    fields, span = target
    if value is None:
        fields.pop(key, None)
        return
    fields[key] = value
    if span is not None and span.is_recording():
        span.set_attribute(SPAN_ATTRIBUTE_PREFIX + key, value)


def _resolve(key: Any, namespace: Any) -> str | None:
    full = _field_key(str(key), str(namespace))
    if full is None:
        _guard.count("dropped.context_reserved_key")
    return full


class Context:
    """Fields for the current request's canonical line, its OTLP record and its root span.

    Per request: safe under threads (``gthread``) and asyncio, reset for every request, and a
    harmless no-op outside one. Keys become logfmt keys (``Context.set("Cart Size", 3)`` gives
    ``app_cart_size="3"``); values of any type are accepted and written as text when they are not
    a str, bool, int or float. A key that would name a canonical field (``namespace="db"``,
    ``key="queries"``) is ignored: measured fields cannot be overwritten.

    Example (``example/shop/views.py``)::

        from otel_canonical_logs import Context

        def checkout(request):
            Context.set("cart_items", len(cart))
            with Context.time("pricing"):  # app_pricing_time, summed over repeats
                total = price(cart)
    """

    __slots__ = ()

    @staticmethod
    def set(key: str, value: Any, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Set ``<namespace>_<key>`` (``app_<key>`` by default); ``None`` removes it."""
        _set_fields(((key, value),), namespace)

    @staticmethod
    def update(
        *, context: Mapping[str, Any], namespace: str = DEFAULT_NAMESPACE, beginning: bool = False
    ) -> None:
        """Set several fields at once. ``beginning`` is accepted for compatibility and ignored:
        application fields always follow the canonical ones."""
        _set_fields(context.items(), namespace)

    @staticmethod
    def get(key: str, *, namespace: str = DEFAULT_NAMESPACE) -> Any:
        """The value set for ``key`` in the current request, or None."""
        try:
            target = _target()
            full = _field_key(str(key), str(namespace))
            return target[0].get(full) if target is not None and full is not None else None
        except Exception as exc:
            _guard.report("context.get", exc)
            return None

    @staticmethod
    def time(key: str, *, namespace: str = DEFAULT_NAMESPACE) -> Timer:
        """Time a block into ``<namespace>_<key>_time`` (seconds), summed over repeats::

        with Context.time("pricing"):
            total = price(cart)
        """
        return Timer(key, namespace)

    @staticmethod
    def reset() -> None:
        """Remove every field set through ``Context`` in the current request. Never needed:
        each request starts empty. Kept for code written for gunicorn-django-canonical-logs."""
        try:
            target = _target()
            if target is not None:
                fields = target[0]
                for key in [k for k in fields if k not in BY_KEY]:
                    del fields[key]
        except Exception as exc:
            _guard.report("context.reset", exc)


class Timer:
    """The context manager returned by :meth:`Context.time`; reusable, not re-entrant."""

    __slots__ = ("_key", "_namespace", "_start", "_target")

    def __init__(self, key: str, namespace: str) -> None:
        self._key = key
        self._namespace = namespace
        self._target: tuple[dict[str, Any], Any] | None = None
        self._start = 0.0

    def __enter__(self) -> None:
        try:
            self._target = _target()
        except Exception as exc:
            self._target = None
            _guard.report("context.time", exc)
        self._start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        target, self._target = self._target, None
        if target is None:
            return
        try:
            full = _resolve(f"{self._key}_time", self._namespace)
            if full is None:
                return
            fields = target[0]
            with _sum_lock:  # threads of one request may time the same key
                previous = fields.get(full)
                if type(previous) is not float:
                    previous = 0.0
                total = previous + elapsed
                fields[full] = total
            _store(target, full, total)
        except Exception as err:
            _guard.report("context.time", err)


def _set_fields(items: Iterable[tuple[str, Any]], namespace: str) -> None:
    """Store each ``(key, value)`` on the current request, if there is one; never raises."""
    try:
        target = _target()
        if target is None:
            return
        for key, value in items:
            full = _resolve(key, namespace)
            if full is not None:
                _store(target, full, safe_value(value))
    except Exception as exc:
        _guard.report("context.set", exc)
