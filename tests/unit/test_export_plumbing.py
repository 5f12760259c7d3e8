"""Export plumbing: per-process exporters, counted drops at a full queue, one complaint a minute."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_canonical_logs import _export


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("opentelemetry.exporter.x", level, __file__, 1, msg, None, None)


def test_one_complaint_per_interval() -> None:
    """Within the interval only the first complaint passes; the next one says how many were held."""
    clock = FakeClock()
    limiter = _export.RateLimitFilter(60.0, clock)
    first = _record("Failed to export spans batch")
    assert limiter.filter(first)
    assert first.getMessage().startswith("Failed to export spans batch [otel_canonical_logs:")
    clock.now += 59.0
    assert [False, False, False] == [limiter.filter(_record("again")) for _ in range(3)]
    clock.now += 1.0
    later = _record("Failed to export logs batch")
    assert limiter.filter(later)
    assert "3 held back since the last one" in later.getMessage()


def test_debug_and_info_records_are_not_limited() -> None:
    """Records below WARNING pass untouched, and do not use up the complaint."""
    limiter = _export.RateLimitFilter(60.0, FakeClock())
    debug = _record("Reinitializing gRPC channel", logging.DEBUG)
    assert limiter.filter(debug) and limiter.filter(debug)
    assert "Reinitializing gRPC channel" == debug.getMessage()
    assert limiter.filter(_record("Failed"))


def test_filter_goes_first_on_every_export_logger_once() -> None:
    """The shared filter sits first on each export logger, however often it is installed."""
    limiter = _export.limit_export_logging()
    try:
        again = _export.limit_export_logging()
        assert limiter is again
        for name in _export.EXPORT_LOGGERS:
            filters = logging.getLogger(name).filters
            assert limiter is filters[0], name
            assert 1 == filters.count(limiter), name
    finally:
        for logger in logging.Logger.manager.loggerDict.values():
            if isinstance(logger, logging.Logger) and limiter in logger.filters:
                logger.removeFilter(limiter)
        _export._filter = None


class RecordingExporter(SpanExporter):
    """Remembers which process built it and which exported through it."""

    def __init__(self) -> None:
        self.built_in = os.getpid()
        self.exported_in: list[int] = []
        self.shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported_in.append(os.getpid())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut_down = True


def test_forked_child_exports_through_its_own_exporter() -> None:
    """After fork the child builds a fresh exporter on first export; the parent keeps its own."""
    original = RecordingExporter()
    wrapper = _export.PerProcessSpanExporter(original)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        try:
            wrapper.export([])
            current = wrapper.exporter
            ok = current is not original and current.built_in == os.getpid() == current.exported_in[0]
            os.write(write_fd, b"ok" if ok and not original.exported_in else b"bad")
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert b"ok" == answer
    wrapper.export([])
    assert original is wrapper.exporter and [os.getpid()] == original.exported_in


def test_shutdown_in_the_owning_process_reaches_the_exporter() -> None:
    """Shutting the wrapper down shuts down the exporter of this process."""
    original = RecordingExporter()
    _export.PerProcessSpanExporter(original).shutdown()
    assert original.shut_down


class BlockingExporter(SpanExporter):
    """Holds the export thread until released, so the processor's queue can fill up."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


@pytest.fixture
def blocked() -> Iterator[BlockingExporter]:
    exporter = BlockingExporter()
    yield exporter
    exporter.release.set()


def test_spans_at_a_full_queue_are_dropped_and_counted(blocked: BlockingExporter) -> None:
    """With the export thread stuck, the queue holds max_queue_size spans; the rest are counted."""
    processor = _export.CountingBatchSpanProcessor(
        blocked, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=60_000
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    before = _export.dropped()["spans"]
    for _ in range(2):
        tracer.start_span("first batch").end()
    assert blocked.entered.wait(5)
    for _ in range(4 + 3):
        tracer.start_span("queued or dropped").end()
    assert 3 == _export.dropped()["spans"] - before
    blocked.release.set()
    processor.shutdown()
    assert 2 + 4 == blocked.exported


class BlockingLogExporter(InMemoryLogRecordExporter):
    """Holds the export thread until released, then keeps what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, batch: Sequence[Any]) -> Any:
        self.entered.set()
        self.release.wait(10)
        return super().export(batch)


def test_log_records_at_a_full_queue_are_dropped_and_counted() -> None:
    """The log record processor caps its queue the same way and counts what it turns away."""
    exporter = BlockingLogExporter()
    processor = _export.CountingBatchLogRecordProcessor(
        exporter, max_queue_size=3, max_export_batch_size=1, schedule_delay_millis=60_000
    )
    provider = LoggerProvider()
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("test")
    before = _export.dropped()["logs"]
    try:
        logger.emit(body="in flight")
        assert exporter.entered.wait(5)
        for n in range(5):
            logger.emit(body=f"record {n}")
        assert 2 == _export.dropped()["logs"] - before
    finally:
        exporter.release.set()
    processor.shutdown()
    bodies = sorted(str(r.log_record.body) for r in exporter.get_finished_logs())
    assert ["in flight", "record 0", "record 1", "record 2"] == bodies


def test_span_processor_factory_exports_through_the_wrapper() -> None:
    """What the configurator installs still delivers every span to the exporter."""
    exporter = InMemorySpanExporter()
    processor = _export.span_processor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.get_tracer("test").start_span("one").end()
    processor.force_flush()
    assert ["one"] == [s.name for s in exporter.get_finished_spans()]
    processor.shutdown()


class ConfiguredExporter(RecordingExporter):
    def __init__(self, endpoint: str = "default") -> None:
        super().__init__()
        self.endpoint = endpoint


def test_rebuilt_exporter_gets_the_configurators_arguments() -> None:
    """The per-process rebuild passes the same exporter_args_map arguments the SDK used."""
    original = ConfiguredExporter("http://collector:4318")
    processor = _export.span_processor(original, {ConfiguredExporter: {"endpoint": "http://collector:4318"}})
    wrapper = processor.span_exporter
    assert isinstance(wrapper, _export.PerProcessSpanExporter)
    rebuilt = wrapper._factory()
    assert (ConfiguredExporter, "http://collector:4318") == (type(rebuilt), rebuilt.endpoint)
    processor.shutdown()


def test_child_keeps_the_inherited_exporter_when_rebuilding_fails() -> None:
    """A factory that raises in the child is reported, and the inherited exporter is used."""
    original = RecordingExporter()

    def broken() -> SpanExporter:
        raise RuntimeError("no exporter today")

    wrapper = _export.PerProcessSpanExporter(original, broken)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = wrapper.export([])
            used = original.exported_in == [os.getpid()]
            os.write(write_fd, b"ok" if used and result is SpanExportResult.SUCCESS else b"bad")
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert b"ok" == answer


def test_distro_puts_the_process_in_the_resource_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_EXPERIMENTAL_RESOURCE_DETECTORS defaults to process; a user's value is kept."""
    from otel_canonical_logs.distro import CanonicalLogsDistro

    # A private copy of the environment: the distro writes its defaults into os.environ.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
    CanonicalLogsDistro()._configure()
    assert "process" == os.environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"]
    os.environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] = "host"
    CanonicalLogsDistro()._configure()
    assert "host" == os.environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"]


@pytest.mark.parametrize(("protocol", "fork_support", "warned"), [("grpc", "0", True), ("grpc", "1", False)])
def test_grpc_with_fork_support_off_is_warned(
    protocol: str, fork_support: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """gRPC export with GRPC_ENABLE_FORK_SUPPORT=0 (which crashes workers) gets one warning."""
    from otel_canonical_logs.distro import _warn_grpc_fork_support_off

    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "GRPC_ENABLE_FORK_SUPPORT": fork_support}
    with caplog.at_level(logging.WARNING, logger="otel_canonical_logs"):
        _warn_grpc_fork_support_off(env)
    assert warned == any("GRPC_ENABLE_FORK_SUPPORT=0" in r.getMessage() for r in caplog.records)


def test_resource_hash_is_computed_once_and_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached Resource hash equals the SDK's own, and the JSON dump behind it runs once per
    resource, not once per exported span or record."""
    import opentelemetry.sdk.resources as resources
    from opentelemetry.sdk.resources import Resource

    from otel_canonical_logs import _export

    a = Resource({"service.name": "shop", "process.pid": 1})
    expected = hash(a)  # before caching (or cached already by an earlier configure: same value)
    _export.cache_resource_hash()
    dumps = []

    def counting_dumps(*a: Any, **k: Any) -> str:
        dumps.append(1)
        return json.dumps(*a, **k)  # what the resources module imported as its dumps

    monkeypatch.setattr(resources, "dumps", counting_dumps)
    b = Resource({"service.name": "shop", "process.pid": 1})
    c = Resource({"service.name": "shop", "process.pid": 2})
    hashes = [hash(b) for _ in range(5)]
    assert [expected] * 5 == hashes
    assert hash(c) != hash(b) and b == a and c != b
    assert 2 == len(dumps)  # one per resource (b, c)
    assert {a: "x"}[b] == "x"
