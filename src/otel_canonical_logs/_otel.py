"""Every private detail of OpenTelemetry (and of wrapt and psycopg's instrumentation) this package
relies on, in one place. Each is checked once, when first needed, against what it is expected to
be; where it is not (a release changed it), the public path is taken instead: slower or a little
less precise, never broken. ``checks()`` says which path each one took (for tests and the note
the distro logs at debug level)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

_logger = logging.getLogger("otel_canonical_logs")
_checked: dict[str, bool] = {}  # name -> whether the private detail is what we expect


def _record(name: str, ok: bool) -> bool:
    if not ok and _checked.get(name) is not False:
        _logger.debug("otel_canonical_logs: %s is not as expected; using the public path", name)
    _checked[name] = ok
    return ok


def checks() -> dict[str, bool]:
    """Which private details were found as expected (True) or replaced by the public path."""
    return dict(_checked)


# -- the context keys of the current span and of suppressed instrumentation -----------------------


def _span_key() -> str | None:
    """The context key under which the API stores the current span (read per query)."""
    try:
        from opentelemetry.trace.propagation import _SPAN_KEY

        probe = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
        ok = trace.set_span_in_context(probe).get(_SPAN_KEY) is probe
        return _SPAN_KEY if _record("trace.propagation._SPAN_KEY", ok) else None
    except Exception:
        _record("trace.propagation._SPAN_KEY", False)
        return None


SPAN_KEY = _span_key()


def span_in(ctx: Any) -> Any:
    """The current span of ``ctx``, or None (the public path, when ``SPAN_KEY`` is None)."""
    if SPAN_KEY is not None:
        return ctx.get(SPAN_KEY)
    span = trace.get_current_span(ctx)
    return None if span is trace.INVALID_SPAN else span


def _suppress_key() -> str | None:
    try:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        key = otel_context._SUPPRESS_INSTRUMENTATION_KEY
        with suppress_instrumentation():
            ok = isinstance(key, str) and bool(otel_context.get_current().get(key))
        return key if _record("context._SUPPRESS_INSTRUMENTATION_KEY", ok) else None
    except Exception:
        _record("context._SUPPRESS_INSTRUMENTATION_KEY", False)
        return None


SUPPRESS_KEY = _suppress_key()


def suppressed(ctx: Any) -> bool:
    """Whether instrumentation is suppressed in ``ctx`` (``suppress_instrumentation()``)."""
    if SUPPRESS_KEY is not None:
        return bool(ctx.get(SUPPRESS_KEY))
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    return not is_instrumentation_enabled()


# -- the SDK -------------------------------------------------------------------------------------


def span_processors(provider: Any) -> Callable[[], tuple[Any, ...] | None]:
    """A reader of the span processors a tracer provider runs; it returns None when they
    cannot be known (then callers assume some other processor wants the spans)."""
    multi = getattr(provider, "_active_span_processor", None)
    ok = isinstance(getattr(multi, "_span_processors", None), tuple)
    if not _record("sdk.trace.TracerProvider._active_span_processor._span_processors", ok):
        return lambda: None
    return lambda: getattr(multi, "_span_processors", None)


def span_attributes(span: Any) -> Mapping[str, Any]:
    """A finished span's attributes for reading, as the plain dict the SDK keeps them in.

    ``ReadableSpan.attributes`` is a read-only view over ``BoundedAttributes``, whose ``get``
    runs in Python and raises and catches ``KeyError`` for each missing key; the processor reads
    a handful of keys per span, most of them absent. The public view where the layout differs.
    """
    plain = getattr(getattr(span, "_attributes", None), "_dict", None)
    if type(plain) is dict:
        return plain
    return span.attributes or {}


def batch_queue_full(processor: Any) -> bool:
    """Whether an SDK batch processor's queue is full (read per span and per log record).

    The SDK keeps the queue in a ``deque(maxlen=max_queue_size)`` on its ``_batch_processor``;
    where a release keeps it elsewhere this says False: nothing is counted as dropped here, and
    the SDK still caps the queue and drops on its own.
    """
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    maxlen = getattr(queue, "maxlen", None)
    return maxlen is not None and len(queue) >= maxlen  # type: ignore[arg-type]


LOGGER_INTERNALS = "sdk._logs.Logger internals"
LOG_EXPORT_INTERNALS = "sdk BatchProcessor.emit and the OTLP log exporter's encode_logs"


def logger_pipeline(logger: Any) -> tuple[Any, Any, Any] | None:
    """What ``Logger.emit`` would use, for the direct path of canonical events (``_otlp_logs``):
    the logger's multi-processor, the tuple of processors it holds, and its limits (the log record
    ones, ``OTEL_LOGRECORD_ATTRIBUTE_*`` or their global fallbacks); None where a release keeps
    them elsewhere (the events then take ``Logger.emit``)."""
    multi = getattr(logger, "_multi_log_record_processor", None)
    processors = getattr(multi, "_log_record_processors", None)
    limits = getattr(logger, "_log_record_limits", None)
    ok = (
        type(processors) is tuple
        and callable(getattr(logger, "_is_enabled", None))
        and hasattr(limits, "max_log_record_attributes")
        and hasattr(limits, "max_log_record_attribute_length")
        and hasattr(logger, "resource")
        and hasattr(logger, "instrumentation_scope")
    )
    return (multi, processors, limits) if _record(LOGGER_INTERNALS, ok) else None


def log_export_internals(processor: Any, exporter_module: Any) -> bool:
    """Whether a batch log processor queues through ``_batch_processor.emit`` and the OTLP log
    exporter's module encodes through a module-level ``encode_logs`` (which ``_otlp_logs``
    replaces)."""
    batch = getattr(processor, "_batch_processor", None)
    ok = callable(getattr(batch, "emit", None)) and callable(getattr(exporter_module, "encode_logs", None))
    return _record(LOG_EXPORT_INTERNALS, ok)


def disabled_meter_configurator() -> Any:
    """The SDK's configurator of disabled meters, or None when this SDK has none."""
    try:
        from opentelemetry.sdk.metrics._internal import _disable_meter_configurator
    except Exception:
        _record("sdk.metrics._internal._disable_meter_configurator", False)
        return None
    ok = _record("sdk.metrics._internal._disable_meter_configurator", callable(_disable_meter_configurator))
    return _disable_meter_configurator if ok else None


def configured_sampler() -> Any:
    """The sampler ``OTEL_TRACES_SAMPLER``/``_ARG`` name, resolved the SDK's own way (every name it
    knows works); None when this SDK's resolver is not there (the caller uses the default)."""
    try:
        from opentelemetry.sdk._configuration import _get_sampler, _import_sampler
    except Exception:
        _record("sdk._configuration._get_sampler", False)
        return None
    if not _record("sdk._configuration._get_sampler", callable(_get_sampler) and callable(_import_sampler)):
        return None
    return _import_sampler(_get_sampler())


def resource_hash_cacheable() -> bool:
    """Whether ``Resource`` instances can cache their hash (a hashable class with a ``__dict__``)."""
    try:
        from opentelemetry.sdk.resources import Resource

        ok = callable(Resource.__hash__) and hasattr(Resource.get_empty(), "__dict__")
    except Exception:
        ok = False
    return _record("sdk.resources.Resource.__hash__", ok)


# -- opentelemetry-instrumentation-dbapi -----------------------------------------------------------


DEFERRED_QUERY_SPANS = "sdk TracerProvider sampler, span limits and id generator"


def _keeps_sampled_children(sampler: Any) -> bool:
    """Whether ``sampler`` samples every child of a sampled local parent, with its parent's trace
    state and no attributes of its own: the SDK's ParentBased (default children sampler),
    always-on, trace-id ratio (the root's trace id, the root's verdict), and the distro's
    record-everything wrapper around any of them."""
    from opentelemetry.sdk.trace.sampling import (
        AlwaysRecordSampler,
        Decision,
        ParentBased,
        StaticSampler,
        TraceIdRatioBased,
    )

    from .sampling import RecordEverythingSampler

    def is_plain(obj: Any, cls: Any) -> bool:
        return isinstance(obj, cls) and getattr(type(obj), "should_sample", None) is cls.should_sample

    if is_plain(sampler, RecordEverythingSampler) or is_plain(sampler, AlwaysRecordSampler):
        sampler = sampler._root
    if is_plain(sampler, ParentBased):
        sampler = sampler._local_parent_sampled
    if is_plain(sampler, StaticSampler):
        return bool(sampler._decision is Decision.RECORD_AND_SAMPLE)
    return is_plain(sampler, TraceIdRatioBased)


def deferred_query_spans(provider: Any) -> bool:
    """Whether a query span of a sampled request can be made when the request ends, from what
    was recorded while the query ran, and be the span the provider's tracer would have made
    live: a sampler that samples every child of a sampled parent (``_keeps_sampled_children``),
    span limits no query span reaches (no value length limit; room for dbapi's attributes and an
    exception event), the provider's id generator, and neither the SDK's internal metrics nor
    dbapi's own (semantic-convention opt-in ``database``), which only the live path records.
    Whether the provider's span processors allow it is asked per request (``start_free``)."""
    import os

    from opentelemetry.sdk.trace import SpanLimits

    try:
        limits = provider._span_limits
        ok = (
            isinstance(limits, SpanLimits)
            and callable(getattr(provider.id_generator, "generate_span_id", None))
            and _keeps_sampled_children(provider.sampler)
        )
    except Exception:
        ok = False
    if not _record(DEFERRED_QUERY_SPANS, ok):
        return False
    opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return (
        limits.max_span_attribute_length is None
        and limits.max_attribute_length is None
        and _at_least(limits.max_span_attributes, 32)
        and _at_least(limits.max_events, 1)
        and _at_least(limits.max_event_attributes, 4)
        and os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() != "true"
        and "database" not in opt_in.lower()
        and dbapi_lean()
    )


def _at_least(limit: int | None, needed: int) -> bool:
    return limit is None or limit >= needed


def start_free(processor: Any) -> bool:
    """Whether a span processor does nothing when a span starts or is ending (the SDK's batch
    and simple processors, or one that does not override ``on_start``/``_on_ending``): it then
    cannot tell a span made live from one made when its request ended."""
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    known = (SpanProcessor, BatchSpanProcessor, SimpleSpanProcessor)
    cls = type(processor)
    return all(
        getattr(cls, hook, None) in [getattr(k, hook, None) for k in known]
        for hook in ("on_start", "_on_ending")
    )


def dbapi_lean() -> bool:
    """Whether dbapi's span naming and attribute population can be reused without its
    ``traced_execution`` (``CursorTracer.get_operation_name``, ``_populate_span``,
    ``_record_metrics``, ``_db_api_integration``; ``DatabaseApiIntegration._tracer``)."""
    name = "instrumentation.dbapi.CursorTracer internals"
    if name in _checked:
        return _checked[name]
    try:
        from opentelemetry.instrumentation.dbapi import CursorTracer, DatabaseApiIntegration

        integration = DatabaseApiIntegration("otel_canonical_logs.check", "sqlite")
        tracer: CursorTracer[Any] = CursorTracer(integration)
        methods = ("get_operation_name", "_populate_span", "_record_metrics")
        ok = (
            all(callable(getattr(tracer, n, None)) for n in methods)
            and tracer._db_api_integration is integration
            and hasattr(integration._tracer, "start_span")
        )
    except Exception:
        ok = False
    return _record(name, ok)


# -- wrapt and the driver instrumentors -----------------------------------------------------------


def wrapper_of(fn: Any) -> Any:
    """The wrapper function of a ``wrapt.FunctionWrapper`` (its ``_self_wrapper``), or None."""
    wrapper = getattr(fn, "_self_wrapper", None)
    if wrapper is None:
        return None
    ok = callable(wrapper) and hasattr(fn, "__wrapped__")
    return wrapper if _record("wrapt.FunctionWrapper._self_wrapper", ok) else None


def original_cursor_factory(raw: Any, factory: Any) -> Any:
    """The cursor factory a psycopg instrumentor replaced on ``raw``: its saved original
    (``instrument_connection``), else the traced factory's base class (``wrap_connect``)."""
    original = getattr(raw, "_otel_orig_cursor_factory", None)
    if original is not None:
        return original
    bases: tuple[Any, ...] = getattr(factory, "__mro__", ())
    return bases[1] if len(bases) > 2 else None
