"""Emits each event as an OpenTelemetry LogRecord with the same keys, correlated to its trace.

The Logs SDK's batch processor queues the record (capped, see ``_export``); nothing here blocks.
"""

from __future__ import annotations

from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.trace import NonRecordingSpan, set_span_in_context

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
    """Hands events to the OTel Logs SDK (whose processors batch and export them)."""

    def __init__(self, provider: LoggerProvider) -> None:
        from .._version import __version__

        self._logger = provider.get_logger("otel_canonical_logs", __version__)

    def __call__(self, event: Event) -> None:
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
