"""The process-wide wiring: one processor and one dispatcher, created by the configurator."""

from __future__ import annotations

from opentelemetry._logs import LoggerProvider

from . import _env
from .processor import CanonicalLogProcessor
from .sinks import Dispatcher, Sink, jsonl, logfmt
from .sinks.otel_logs import OTelLogSink
from .sinks.stdout import StdoutSink

dispatcher = Dispatcher()
processor: CanonicalLogProcessor | None = None


def build(logger_provider: LoggerProvider | None) -> CanonicalLogProcessor:
    """Create the processor and the sinks the environment asks for."""
    global processor
    max_len = _env.env_int(_env.CANONICAL_LOGS_VALUE_MAX, 2048, minimum=32)
    sinks: list[Sink] = []
    if _env.env_bool(_env.CANONICAL_LOGS_STDOUT, True):
        fmt = _env.env_choice(_env.CANONICAL_LOGS_FORMAT, "logfmt", ("logfmt", "json"))
        sinks.append(
            StdoutSink(max_len, encoder=jsonl.encode_bytes if fmt == "json" else logfmt.encode_bytes)
        )
    if logger_provider is not None:
        sinks.append(OTelLogSink(logger_provider, max_len))
    dispatcher.sinks[:] = sinks
    processor = CanonicalLogProcessor(dispatcher)
    return processor
