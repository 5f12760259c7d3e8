"""Emits each event as an OpenTelemetry LogRecord with the same keys, correlated to its trace.

The Logs SDK's batch processor queues the record (capped, see ``_export``); nothing here blocks.
With the distro's own pipeline the record is written straight to OTLP bytes (``_otlp_logs``).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.trace import NonRecordingSpan, set_span_in_context

from .. import _guard, _otlp_logs
from ..event import Event

_SEVERITY = {
    "INFO": SeverityNumber.INFO,
    "WARN": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
}


def severity(event: Event) -> str:
    """ERROR for 5xx, timeouts, stuck requests and partial failures; WARN for 4xx; else INFO
    (saturation events too)."""
    if event.type == "saturation":
        return "INFO"
    if event.type != "request":
        return "ERROR"
    status = event.status or 0
    if status >= 500:
        return "ERROR"
    return "WARN" if status >= 400 else "INFO"


class OTelLogSink:
    """Hands events to the OTel Logs pipeline: written straight to OTLP bytes and queued on the
    batch processor when the pipeline is the one the distro built (``_otlp_logs``), else through
    ``Logger.emit`` (whose processors batch and export them)."""

    def __init__(self, provider: LoggerProvider) -> None:
        from .._version import __version__

        self._logger = provider.get_logger("otel_canonical_logs", __version__)
        self._fast: _FastPath | None = None
        try:
            self._fast = _FastPath.of(self._logger)
        except Exception as exc:
            _guard.report("otlp_logs.fast_path", exc)

    def __call__(self, event: Event) -> None:
        fast = self._fast
        if fast is not None and fast.takes(event.fields):
            fast.emit(event)
            return
        name = f"canonical.{event.type}"
        context = None
        if event.span_context is not None:
            context = set_span_in_context(NonRecordingSpan(event.span_context))
        sev = severity(event)
        self._logger.emit(
            timestamp=event.time_ns,
            context=context,
            severity_number=_SEVERITY[sev],
            severity_text=sev,
            body=name,
            # The line's keys and values, with their real types (the dispatcher made them safe).
            attributes=event.fields,
            event_name=name,
        )


class _FastPath:
    """The pipeline ``Logger.emit`` would run, when it is exactly the distro's: the SDK logger,
    enabled, with default limits, its one processor our batch processor around an OTLP exporter
    whose encoder ``_otlp_logs`` replaced. Checked per event: no processor added since."""

    __slots__ = ("_is_enabled", "_logger", "_max_attributes", "_multi", "_processor", "_processors")

    def __init__(self, logger: Any, multi: Any, processors: tuple[Any, ...], max_attributes: int) -> None:
        self._logger = logger
        self._multi = multi
        self._processors = processors
        self._processor = processors[0]
        self._max_attributes = max_attributes
        self._is_enabled = logger._is_enabled

    @classmethod
    def of(cls, logger: Any) -> _FastPath | None:
        from .. import _otel
        from .._export import CountingBatchLogRecordProcessor

        pipeline = _otel.logger_pipeline(logger)
        if pipeline is None:
            return None
        multi, processors, limits = pipeline
        if (
            len(processors) != 1
            or type(processors[0]) is not CountingBatchLogRecordProcessor
            or limits.max_log_record_attribute_length is not None
            or _otlp_logs.internal_metrics_on()
            or not processors[0].pending_ok
        ):
            return None  # a pipeline of the user's: every processor gets the SDK's record
        count = limits.max_log_record_attributes  # None: no limit
        return cls(logger, multi, processors, count if isinstance(count, int) else 1 << 31)

    def takes(self, fields: dict[str, Any]) -> bool:
        return (
            self._multi._log_record_processors is self._processors
            and len(fields) <= self._max_attributes
            and self._is_enabled()
        )

    def emit(self, event: Event) -> None:
        sev = severity(event)
        logger = self._logger
        self._processor.emit_pending(
            _otlp_logs.PendingLog(
                event.fields,
                f"canonical.{event.type}",
                _SEVERITY[sev].value,
                sev,
                event.span_context,
                event.time_ns,
                time.time_ns(),
                logger.resource,
                logger.instrumentation_scope,
            )
        )
