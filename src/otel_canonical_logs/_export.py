"""OTLP export plumbing for a pre-fork server: one exporter per process, capped queues whose drops
are counted, and export failures logged at most once a minute instead of once a batch."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from . import _guard, _otel
from ._patching import Patches
from ._values import SURROGATES

COMPLAINT_INTERVAL = 60.0

DROPPED_SPANS = "dropped.otlp_spans"
DROPPED_LOGS = "dropped.otlp_logs"
SUPPRESSED = "export.complaints_suppressed"

# The loggers through which the SDK and the OTLP exporters report a failed or dropped export.
# Each logs once per failed batch (plus every retry), which a down collector turns into a flood.
EXPORT_LOGGERS = (
    "opentelemetry.sdk._shared_internal",  # batch processors: exporter raised, queue full
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk._logs._internal.export",
    "opentelemetry.sdk.metrics._internal.export",  # periodic metric reader
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
)
_EXPORTER_PREFIX = "opentelemetry.exporter."


# -- one exporter per process ---------------------------------------------------------------------


class _PerProcess:
    """Holds the exporter of the process that uses it.

    The configurator runs in Gunicorn's arbiter, before the fork. A worker never uses the
    exporter it inherits (its gRPC channel or HTTP connection pool belongs to the arbiter): the
    first export in a new process builds a fresh one from the same class, which reads the same
    ``OTEL_EXPORTER_OTLP_*`` settings, so a worker's gRPC channel is made after the fork and is its
    own. The arbiter exports its ``saturation`` events on the one it built, across the forks that
    follow (tests/integration/test_saturation.py, at both ends of the version matrix). Exports of
    one processor run one at a time (the batch processor's export lock), so the swap needs no lock
    of its own.
    """

    def __init__(self, exporter: Any, factory: Callable[[], Any] | None = None) -> None:
        self._exporter = exporter
        self._factory: Callable[[], Any] = factory or type(exporter)
        self._pid = os.getpid()

    @property
    def exporter(self) -> Any:
        """The exporter this process uses (built on first use after a fork)."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            try:
                self._exporter = self._factory()
            except Exception as exc:  # keep exporting through the inherited one
                _guard.report("export.rebuild_after_fork", exc)
        return self._exporter

    def _shutdown(self) -> None:
        # In a child that never exported, the exporter is the parent's: leave it alone.
        if self._pid == os.getpid():
            self._exporter.shutdown()

    def _force_flush(self, timeout_millis: int) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))


class PerProcessSpanExporter(_PerProcess, SpanExporter):
    """A :class:`SpanExporter` rebuilt in each forked worker on its first export."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result: SpanExportResult = self.exporter.export(spans)
        return result

    def shutdown(self) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._force_flush(timeout_millis)


class PerProcessLogRecordExporter(_PerProcess, LogRecordExporter):
    """A :class:`LogRecordExporter` rebuilt in each forked worker on its first export."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result: LogRecordExportResult = self.exporter.export(batch)
        return result

    def shutdown(self) -> None:
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._force_flush(timeout_millis)


# -- the resource's hash, once ---------------------------------------------------------------------

_RESOURCE_HASH = "_otel_canonical_logs_hash"
_patches = Patches()


def cache_resource_hash() -> None:
    """Make ``Resource.__hash__`` compute once per resource instead of once per exported item.

    The OTLP encoders group every span and log record by resource, hashing it each time, and the
    SDK's ``Resource.__hash__`` (1.45) serialises all attributes with ``json.dumps`` to do so:
    ≈4 µs per span and per log record with the process detector's 13 attributes, paid in the
    export thread while it holds the GIL. A resource's attributes are immutable, so the hash is
    too; equality is untouched. Idempotent.
    """
    from opentelemetry.sdk.resources import Resource

    if not _otel.resource_hash_cacheable():
        return  # the SDK's own hash, per item

    def make(original: Any) -> Any:
        def __hash__(self: Resource) -> int:
            cached = self.__dict__.get(_RESOURCE_HASH)
            if cached is None:
                cached = self.__dict__[_RESOURCE_HASH] = original(self)
            return cached  # type: ignore[no-any-return]

        return __hash__

    _patches.patch(Resource, "__hash__", make)


# -- capped queues, counted drops -----------------------------------------------------------------


_queue_full = _otel.batch_queue_full


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch span processor; a span arriving at a full queue is dropped and counted.

    Dropping it here, on the request thread, skips the SDK's per-drop warning (a log call per
    span while the collector is down); the queue stays capped at ``OTEL_BSP_MAX_QUEUE_SIZE``.
    """

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return  # not exported: the SDK's processor would drop it too
        if _queue_full(self):
            _guard.count(DROPPED_SPANS)
            return
        description = span.status.description
        if description is not None and not description.isascii():
            span = _encodable_status(span, description)
        super().on_end(span)


def _encodable_status(span: ReadableSpan, description: str) -> ReadableSpan:
    """The span with a status description the OTLP encoder accepts.

    OTel puts an uncaught exception's message into the span's status; one holding a lone
    surrogate (an f-string with an os.fsdecode'd file name) makes the encoder reject the whole
    batch, and every other span in it is lost. Attribute values are encoded one by one (a bad
    one loses only itself), the status is not.
    """
    fixed = description.translate(SURROGATES)
    if fixed == description:
        return span
    return copy_span(span, status=Status(span.status.status_code, fixed))


_SAME: Any = object()


def copy_span(
    span: ReadableSpan, *, context: Any = _SAME, parent: Any = _SAME, status: Any = _SAME
) -> ReadableSpan:
    """A finished span with its context, parent or status replaced, everything else the same."""
    return ReadableSpan(
        name=span.name,
        context=span.context if context is _SAME else context,
        parent=span.parent if parent is _SAME else parent,
        resource=span.resource,
        attributes=span.attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status if status is _SAME else status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class CountingBatchLogRecordProcessor(BatchLogRecordProcessor):
    """The SDK's batch log record processor; a record arriving at a full queue is dropped and
    counted. The queue stays capped at ``OTEL_BLRP_MAX_QUEUE_SIZE``."""

    # The exporter it was built around, when the distro built it (``log_record_processor``), and
    # whether canonical events can be queued here already encoded (``takes_pending``).
    otlp_exporter: Any = None
    pending_ok = False

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if _queue_full(self):
            _guard.count(DROPPED_LOGS)
            return
        super().on_emit(log_record)

    def takes_pending(self) -> bool:
        """Whether canonical events can be queued here already encoded (``emit_pending``): the
        SDK's batch queue is where this release keeps it, and the exporter's encoder is ours."""
        from . import _otlp_logs

        return self.otlp_exporter is not None and _otlp_logs.install_encoder(self, self.otlp_exporter)

    def emit_pending(self, item: Any) -> None:
        """Queue a canonical event for the exporter's encoder (``_otlp_logs.PendingLog``); the same
        cap, the same count of drops as ``on_emit``."""
        if _queue_full(self):
            _guard.count(DROPPED_LOGS)
            return
        self._batch_processor.emit(item)


ExporterArgs = Mapping[type, Mapping[str, Any]]


def _rebuild(exporter: Any, args_map: ExporterArgs | None) -> Callable[[], Any]:
    # Exactly what the SDK's configurator did in the arbiter: exporter_class(**exporter_args).
    cls = type(exporter)
    args = dict((args_map or {}).get(cls, {}))
    return lambda: cls(**args)


def span_processor(exporter: SpanExporter, args_map: ExporterArgs | None = None) -> BatchSpanProcessor:
    """What the configurator wraps each span exporter in (``args_map``: its exporter_args_map)."""
    return CountingBatchSpanProcessor(PerProcessSpanExporter(exporter, _rebuild(exporter, args_map)))


def log_record_processor(
    exporter: LogRecordExporter, args_map: ExporterArgs | None = None
) -> CountingBatchLogRecordProcessor:
    """What the configurator wraps each log record exporter in."""
    processor = CountingBatchLogRecordProcessor(
        PerProcessLogRecordExporter(exporter, _rebuild(exporter, args_map))
    )
    processor.otlp_exporter = exporter
    try:
        processor.pending_ok = processor.takes_pending()
    except Exception as exc:  # the SDK's path, then
        _guard.report("otlp_logs.install", exc)
    return processor


def dropped() -> dict[str, int]:
    """Spans and log records dropped at a full export queue so far in this process."""
    counts = _guard.error_counts()
    return {"spans": counts.get(DROPPED_SPANS, 0), "logs": counts.get(DROPPED_LOGS, 0)}


# -- one complaint a minute -----------------------------------------------------------------------


class RateLimitFilter(logging.Filter):
    """Lets one export complaint (WARNING and above) through per ``interval`` seconds, across
    every logger it is attached to, and counts the ones it holds back.

    The complaint that gets through says how many were held back since the previous one and how
    many spans and log records were dropped so far, so nothing is lost but the repetition.
    """

    def __init__(self, interval: float = COMPLAINT_INTERVAL, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next_allowed: float | None = None
        self._held_back = 0
        if hasattr(os, "register_at_fork"):
            reset = weakref.WeakMethod(self._after_fork)

            def after_in_child() -> None:
                if (method := reset()) is not None:
                    method()

            os.register_at_fork(after_in_child=after_in_child)

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time would stay held forever in the child.
        self._lock = threading.Lock()
        self._next_allowed = None
        self._held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        with self._lock:
            now = self._clock()
            if self._next_allowed is not None and now < self._next_allowed:
                self._held_back += 1
                held_back = -1
            else:
                held_back, self._held_back = self._held_back, 0
                self._next_allowed = now + self.interval
        if held_back < 0:
            _guard.count(SUPPRESSED)
            return False
        try:
            message = record.getMessage()
        except Exception:
            return True
        drops = dropped()
        record.msg = (
            f"{message} [otel_canonical_logs: export problems are logged at most once every "
            f"{self.interval:g}s per process; {held_back} held back since the last one; dropped so far: "
            f"{drops['spans']} spans, {drops['logs']} log records]"
        )
        record.args = None
        return True


_filter: RateLimitFilter | None = None


def limit_export_logging(interval: float = COMPLAINT_INTERVAL) -> RateLimitFilter:
    """Attach the one shared :class:`RateLimitFilter` to every export logger (idempotent)."""
    global _filter
    if _filter is None:
        _filter = RateLimitFilter(interval)
    names = set(EXPORT_LOGGERS)
    names.update(n for n in list(logging.Logger.manager.loggerDict) if n.startswith(_EXPORTER_PREFIX))
    for name in sorted(names):
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            # First, so that a filter returning False early (the SDK's DuplicateFilter) does not
            # hide complaints from our count.
            logger.filters.insert(0, _filter)
    return _filter
