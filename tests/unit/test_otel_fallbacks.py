"""Each private detail of OpenTelemetry, wrapt or psycopg's instrumentation that ``_otel`` checks:
when it is missing (a release changed it), the public path is taken and the result is still right."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from otel_canonical_logs import _otel
from otel_canonical_logs.processor import CanonicalLogProcessor
from otel_canonical_logs.sampling import RecordEverythingSampler


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test decides again, from what it left of the private details."""
    monkeypatch.setattr(_otel, "_checked", {})


def test_span_key_missing_takes_the_public_current_span(monkeypatch: pytest.MonkeyPatch) -> None:
    import opentelemetry.trace.propagation as propagation

    with monkeypatch.context() as patched:
        patched.delattr(propagation, "_SPAN_KEY")
        assert _otel._span_key() is None
    assert _otel.checks() == {"trace.propagation._SPAN_KEY": False}
    monkeypatch.setattr(_otel, "SPAN_KEY", None)  # what the module then runs with
    tracer = TracerProvider().get_tracer("t")
    assert _otel.span_in(otel_context.get_current()) is None
    with tracer.start_as_current_span("s") as span:
        assert _otel.span_in(otel_context.get_current()) is span


def test_suppress_key_missing_takes_is_instrumentation_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        patched.delattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY")
        assert _otel._suppress_key() is None
    monkeypatch.setattr(_otel, "SUPPRESS_KEY", None)
    assert not _otel.suppressed(otel_context.get_current())
    with suppress_instrumentation():
        assert _otel.suppressed(otel_context.get_current())


def test_unknown_span_processor_layout_assumes_the_spans_are_wanted() -> None:
    """Without the SDK's tuple of processors the processor cannot tell that it is alone: a sampled
    request keeps making spans (nothing is lost, it only costs more)."""

    class Provider:
        _active_span_processor = object()  # no _span_processors

    reader = _otel.span_processors(Provider())
    assert reader() is None
    assert _otel.checks() == {"sdk.trace.TracerProvider._active_span_processor._span_processors": False}
    processor = CanonicalLogProcessor(lambda event: None)
    processor.watch(Provider())
    assert processor._spans_go_elsewhere()
    # The SDK's own provider: known layout, and this processor alone.
    provider = TracerProvider()
    provider.add_span_processor(processor)
    processor.watch(provider)
    assert not processor._spans_go_elsewhere()


def test_provider_without_the_sdk_layout_keeps_live_query_spans() -> None:
    """A provider whose sampler, limits or id generator are not where the SDK keeps them: an
    exported request's queries keep their live spans (nothing changes but the cost)."""

    class Provider:
        _active_span_processor = TracerProvider()._active_span_processor  # known processor layout

    assert not _otel.deferred_query_spans(Provider())
    assert _otel.checks()[_otel.DEFERRED_QUERY_SPANS] is False
    processor = CanonicalLogProcessor(lambda event: None)
    processor.watch(Provider())
    assert not processor._defers_queries()
    # The SDK's own provider, with its batch-like processors only: deferred.
    provider = TracerProvider(sampler=RecordEverythingSampler(ALWAYS_ON))
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    processor.watch(provider)
    assert processor._defers_queries()


def test_span_attributes_without_the_sdk_layout_read_the_public_view() -> None:
    class Span:
        attributes = {"db.system": "sqlite"}

    assert {"db.system": "sqlite"} == dict(_otel.span_attributes(Span()))


def test_missing_meter_configurator_leaves_metrics_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    import opentelemetry.sdk.metrics._internal as metrics_internal

    assert _otel.disabled_meter_configurator() is not None
    monkeypatch.delattr(metrics_internal, "_disable_meter_configurator")
    assert _otel.disabled_meter_configurator() is None
    assert _otel.checks()["sdk.metrics._internal._disable_meter_configurator"] is False


def test_missing_sampler_resolver_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import opentelemetry.sdk._configuration as configuration

    from otel_canonical_logs.distro import _configured_sampler

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert "AlwaysOff" in type(_configured_sampler()).__name__
    monkeypatch.delattr(configuration, "_get_sampler")
    assert _otel.configured_sampler() is None
    assert _otel.checks()["sdk._configuration._get_sampler"] is False
    assert "ParentBased" in type(_configured_sampler()).__name__


def test_resource_hash_is_left_alone_when_resources_cannot_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.resources import Resource

    from otel_canonical_logs import _export

    def broken() -> Any:
        raise RuntimeError("a different SDK")

    monkeypatch.setattr(Resource, "get_empty", staticmethod(broken))
    before = Resource.__dict__["__hash__"]
    _export.cache_resource_hash()
    assert Resource.__dict__["__hash__"] is before
    assert _otel.checks() == {"sdk.resources.Resource.__hash__": False}


@pytest.fixture
def spans() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=RecordEverythingSampler(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_dbapi_internals_missing_take_traced_execution(
    monkeypatch: pytest.MonkeyPatch, spans: tuple[Any, InMemorySpanExporter]
) -> None:
    """Without ``CursorTracer._populate_span`` the lean span path is off: queries go through
    dbapi's public ``traced_execution`` and still make their CLIENT span with the statement."""
    from opentelemetry.instrumentation.dbapi import CursorTracer

    from otel_canonical_logs.instrumentation import django_db

    assert _otel.dbapi_lean()
    with monkeypatch.context() as patched:
        patched.setattr(_otel, "_checked", {})
        patched.delattr(CursorTracer, "_populate_span")
        lean = _otel.dbapi_lean()
    assert lean is False
    # What the instrumentor then runs with (traced_execution, which this dbapi still has).
    monkeypatch.setattr(django_db._settings, "lean", lean)

    provider, exporter = spans
    monkeypatch.setattr(django_db._settings, "options", {"tracer_provider": provider})
    monkeypatch.setattr(django_db._settings, "active", True)
    raw = sqlite3.connect(":memory:")

    class Connection:  # what the execute wrapper reads of Django's DatabaseWrapper
        vendor = "sqlite"
        connection = raw

    class Cursor:  # ... and of its CursorWrapper
        cursor = raw.cursor()

    def execute(sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        return context["cursor"].cursor.execute(sql)

    try:
        context = {"connection": Connection(), "cursor": Cursor()}
        result = django_db._query(execute, "SELECT 1", None, False, context)
        assert [(1,)] == result.fetchall()
    finally:
        raw.close()
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.CLIENT and "SELECT 1" in str(dict(span.attributes or {}).values())


def test_function_wrapper_without_self_wrapper_is_not_bypassed() -> None:
    """A driver ``connect`` whose wrapt layout is unknown keeps its instrumentor's wrapper."""

    class Module:
        @staticmethod
        def connect() -> str:
            return "theirs"

    before = Module.connect
    from otel_canonical_logs.instrumentation import django_db

    django_db._bypass_driver_tracing(Module)
    assert Module.connect is before
    assert _otel.wrapper_of(before) is None


def test_function_wrapper_of_another_layout_is_not_bypassed() -> None:
    """A ``_self_wrapper`` without ``__wrapped__`` (a wrapt that keeps the wrapped function elsewhere)
    is not taken apart: the driver's own ``connect`` wrapper stays in place."""
    import wrapt

    from otel_canonical_logs.instrumentation import django_db

    def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    class Other:  # what a different wrapt might build: the wrapper, but no __wrapped__
        _self_wrapper = staticmethod(traced)

        def __call__(self) -> str:
            return "theirs"

    class Module:
        connect = Other()

    before = Module.connect
    django_db._bypass_driver_tracing(Module)
    assert Module.connect is before
    assert _otel.checks() == {"wrapt.FunctionWrapper._self_wrapper": False}
    # wrapt's own FunctionWrapper: the layout the bypass relies on.
    _otel._checked.clear()
    assert _otel.wrapper_of(wrapt.FunctionWrapper(len, traced)) is traced
    assert _otel.checks() == {"wrapt.FunctionWrapper._self_wrapper": True}


def test_cursor_factory_without_the_saved_original_uses_the_traced_factorys_base() -> None:
    class Base:
        pass

    class Traced(Base):
        pass

    class Raw:
        pass

    assert _otel.original_cursor_factory(Raw(), Traced) is Base
    assert _otel.original_cursor_factory(Raw(), Base) is None  # no base to go back to: left as is
    saved = Raw()
    saved._otel_orig_cursor_factory = Base  # type: ignore[attr-defined]
    assert _otel.original_cursor_factory(saved, Traced) is Base


def test_every_private_detail_is_as_expected_on_the_tested_versions() -> None:
    """On the versions the suite runs, each check takes the fast path (so the fallbacks above are
    the exception they are meant to be)."""
    assert _otel._span_key() is not None
    assert _otel._suppress_key() is not None
    assert _otel.dbapi_lean()
    assert _otel.resource_hash_cacheable()
    assert _otel.disabled_meter_configurator() is not None
    provider = TracerProvider()
    assert _otel.span_processors(provider)() == ()
    _log_pipeline_checks()
    assert all(_otel.checks().values()), _otel.checks()
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_batch_queue_of_an_unknown_layout_is_never_full() -> None:
    """Where the SDK keeps its batch queue elsewhere, no drop is counted here (the SDK still caps)."""
    from collections import deque

    class Known:
        class _batch_processor:  # the SDK's attribute name
            _queue = deque([1, 2], maxlen=2)

    class Unknown:
        queue = deque([1, 2], maxlen=2)

    assert _otel.batch_queue_full(Known())
    assert not _otel.batch_queue_full(Unknown())


def _log_events(tag: str) -> list[Any]:
    from opentelemetry.trace import SpanContext, TraceFlags

    from otel_canonical_logs.event import Event

    context = SpanContext(0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174, False, TraceFlags(1))
    return [
        Event("request", {"event_type": "request", "req_id": f"{tag}-{i}", "resp_status": 200}, context, i)
        for i in range(3)
    ]


def test_logger_internals_missing_take_logger_emit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A logger that shows only the public ``emit``: events go through it, whole."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from otel_canonical_logs.sinks.otel_logs import OTelLogSink

    class PublicOnly:
        def __init__(self, inner: Any) -> None:
            self.emit = getattr(inner, "emit", None)

    assert _otel.logger_pipeline(PublicOnly(object())) is None
    assert _otel.checks() == {_otel.LOGGER_INTERNALS: False}
    provider = LoggerProvider(shutdown_on_exit=False)
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("otel_canonical_logs")
    monkeypatch.setattr(provider, "get_logger", lambda *a, **k: PublicOnly(logger))
    sink = OTelLogSink(provider)
    assert sink._fast is None
    for event in _log_events("public"):
        sink(event)
    got = [
        ((r.log_record.attributes or {})["req_id"], r.log_record.event_name)
        for r in memory.get_finished_logs()
    ]
    assert [(f"public-{i}", "canonical.request") for i in range(3)] == got


def test_log_export_internals_missing_take_logger_emit(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OTLP log exporter module without a module-level ``encode_logs`` (a release that encodes
    another way): the distro's processor queues the SDK's records, which reach the collector."""
    import sys
    import types

    from opentelemetry.exporter.otlp.proto.http import _log_exporter
    from opentelemetry.sdk._logs import LoggerProvider

    from otel_canonical_logs import _export
    from otel_canonical_logs.sinks.otel_logs import OTelLogSink
    from tests.otlp_receiver import HTTPReceiver

    assert not _otel.log_export_internals(object(), _log_exporter)
    assert _otel.checks() == {_otel.LOG_EXPORT_INTERNALS: False}
    with HTTPReceiver() as receiver:
        provider = LoggerProvider(shutdown_on_exit=False)
        exporter = _log_exporter.OTLPLogExporter(endpoint=f"{receiver.endpoint}/v1/logs")
        with monkeypatch.context() as patched:
            patched.setitem(sys.modules, _log_exporter.__name__, types.ModuleType(_log_exporter.__name__))
            processor = _export.log_record_processor(exporter)
        assert not processor.pending_ok
        provider.add_log_record_processor(processor)
        sink = OTelLogSink(provider)
        assert sink._fast is None
        for event in _log_events("encoded-by-sdk"):
            sink(event)
        provider.force_flush()
        got = receiver.wait_for(lambda r: len(r.logs()) == 3 and r.logs())
        provider.shutdown()
    assert [f"encoded-by-sdk-{i}" for i in range(3)] == sorted(r.attributes["req_id"] for r in got)


# Each check ``_otel`` records, and the test above that takes its fallback (the private detail
# removed or replaced) and shows the result is still right.
FALLBACK_TESTS = {
    "trace.propagation._SPAN_KEY": test_span_key_missing_takes_the_public_current_span,
    "context._SUPPRESS_INSTRUMENTATION_KEY": test_suppress_key_missing_takes_is_instrumentation_enabled,
    "sdk.trace.TracerProvider._active_span_processor._span_processors": (
        test_unknown_span_processor_layout_assumes_the_spans_are_wanted
    ),
    "sdk.metrics._internal._disable_meter_configurator": (
        test_missing_meter_configurator_leaves_metrics_as_configured
    ),
    "sdk._configuration._get_sampler": test_missing_sampler_resolver_falls_back_to_the_default,
    "sdk.resources.Resource.__hash__": test_resource_hash_is_left_alone_when_resources_cannot_cache,
    "instrumentation.dbapi.CursorTracer internals": test_dbapi_internals_missing_take_traced_execution,
    "wrapt.FunctionWrapper._self_wrapper": test_function_wrapper_of_another_layout_is_not_bypassed,
    _otel.LOGGER_INTERNALS: test_logger_internals_missing_take_logger_emit,
    _otel.LOG_EXPORT_INTERNALS: test_log_export_internals_missing_take_logger_emit,
    _otel.DEFERRED_QUERY_SPANS: test_provider_without_the_sdk_layout_keeps_live_query_spans,
}


def _log_pipeline_checks() -> None:
    """The distro's log pipeline, built as the configurator builds it: both log checks run."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider

    from otel_canonical_logs import _export
    from otel_canonical_logs.sinks.otel_logs import OTelLogSink

    provider = LoggerProvider(shutdown_on_exit=False)
    processor = _export.log_record_processor(OTLPLogExporter(endpoint="http://127.0.0.1:9/v1/logs"))
    provider.add_log_record_processor(processor)
    assert OTelLogSink(provider)._fast is not None
    provider.shutdown()


def test_every_check_has_a_fallback_test() -> None:
    """Every check the adapter records, run on the installed versions, is one of FALLBACK_TESTS
    (a new private detail comes with its fallback test; tests/integration/test_untested_versions.py
    forces them all at once under real Gunicorn)."""
    import wrapt

    _otel._span_key()
    _otel._suppress_key()
    _otel.span_processors(TracerProvider())
    _otel.disabled_meter_configurator()
    _otel.configured_sampler()
    _otel.resource_hash_cacheable()
    _otel.dbapi_lean()
    _otel.deferred_query_spans(TracerProvider())
    _otel.wrapper_of(wrapt.FunctionWrapper(len, lambda wrapped, instance, args, kwargs: None))
    _log_pipeline_checks()
    assert set(FALLBACK_TESTS) == set(_otel.checks())
    assert all(_otel.checks().values()), _otel.checks()
