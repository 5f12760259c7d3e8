"""Emits each event as an OpenTelemetry LogRecord with the same keys, correlated to its trace.

The Logs SDK's batch processor queues the record (capped, see ``_export``); nothing here blocks.
"""

from __future__ import annotations

from typing import Any

from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.trace import NonRecordingSpan, set_span_in_context

from .._values import SURROGATES
from ..event import Event
from .logfmt import TRUNCATION_MARKER
from .logfmt import _safe_key as safe_key  # the very keys of the logfmt line

_INT64 = range(-(2**63), 2**63)

_SEVERITY = {
    "INFO": SeverityNumber.INFO,
    "WARN": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
}


def severity(event: Event) -> str:
    """ERROR for 5xx, timeouts, stuck requests and partial failures; WARN for 4xx; else INFO."""
    if event.type != "request":
        return "ERROR"
    status = event.status or 0
    if status >= 500:
        return "ERROR"
    return "WARN" if status >= 400 else "INFO"


def _text(value: object) -> str:
    try:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", errors="replace")
        return str.__str__(str(value))
    except Exception:  # a failing __str__, an int too long to print
        return f"<unrenderable {type(value).__name__}>"


class OTelLogSink:
    """Hands events to the OTel Logs SDK (whose processors batch and export them)."""

    def __init__(self, provider: LoggerProvider, max_len: int) -> None:
        from .. import __version__

        self._logger = provider.get_logger("otel_canonical_logs", __version__)
        self._max_len = max_len

    def _attributes(self, event: Event) -> dict[str, Any]:
        """The line's keys and values with their real types: str, bool, int (64-bit), float."""
        cap = self._max_len
        keep = cap - len(TRUNCATION_MARKER)
        attrs: dict[str, Any] = {}
        for key, value in event.fields.items():
            if value is None:
                continue
            kind = type(value)
            if kind is not str and kind is not float and kind is not bool:
                if kind is int and value in _INT64:
                    pass
                elif isinstance(value, bool):
                    value = bool(value)
                elif isinstance(value, int) and int.__index__(value) in _INT64:
                    value = int.__index__(value)
                elif isinstance(value, float):
                    value = float(value)
                else:
                    # What OTLP cannot carry (an int beyond 64 bits, any object) goes as its text.
                    value = _text(value)
            if type(value) is str and len(value) > cap:
                value = value[:keep] + TRUNCATION_MARKER
            if type(value) is str and not value.isascii():
                # A lone surrogate (in an exception message, say) cannot be encoded as UTF-8:
                # the OTLP exporter would drop the attribute and log an error.
                value = value.translate(SURROGATES)
            attrs[safe_key(key)] = value
        return attrs

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
            attributes=self._attributes(event),
            event_name=name,
        )
