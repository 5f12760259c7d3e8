"""Application fields and partial failures reach the OTLP log record, not only the stdout line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_canonical_logs import Context, on_error
from otel_canonical_logs._runtime import runtime
from otel_canonical_logs.sinks.otel_logs import OTelLogSink
from tests.unit.conftest import Pipeline


@pytest.fixture
def records(pipeline: Pipeline) -> Iterator[InMemoryLogRecordExporter]:
    """The OTel log sink on the pipeline's dispatcher, exporting into memory."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    runtime.dispatcher.sinks.append(OTelLogSink(provider))
    yield exporter
    provider.shutdown()


def _by_event(exporter: InMemoryLogRecordExporter) -> dict[str, Any]:
    records = [r.log_record for r in exporter.get_finished_logs()]
    return {str((r.attributes or {})["event_type"]): r for r in records}


@on_error(return_value=None)
def _broken() -> None:
    raise OSError("disk")


def test_context_fields_are_typed_record_attributes(
    pipeline: Pipeline, records: InMemoryLogRecordExporter
) -> None:
    """app_* fields are attributes of the request's LogRecord, with their types."""
    with pipeline.request():
        Context.set("cart_items", 3)
        Context.set("plan", "pro")
    attributes = _by_event(records)["request"].attributes
    assert (3, "pro") == (attributes["app_cart_items"], attributes["app_plan"])


def test_partial_failure_is_a_record_of_the_request_trace(
    pipeline: Pipeline, records: InMemoryLogRecordExporter
) -> None:
    """The partial_failure LogRecord has the request's trace id and the exc_* attributes."""
    with pipeline.request() as root:
        _broken()
    record = _by_event(records)["partial_failure"]
    assert (root.get_span_context().trace_id, "OSError") == (record.trace_id, record.attributes["exc_type"])
