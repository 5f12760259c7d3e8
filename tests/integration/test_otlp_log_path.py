"""The direct OTLP path of canonical events (``_otlp_logs``) in the SDK's real pipeline: the
distro's batch processor and the real OTLP exporters (HTTP and gRPC) sending to a real receiver.
A collector must get exactly what ``Logger.emit`` would have sent for the same events."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanContext, TraceFlags

from otel_canonical_logs import _export, _otel
from otel_canonical_logs.event import Event
from otel_canonical_logs.sinks.otel_logs import OTelLogSink
from tests.otlp_receiver import GRPCReceiver, HTTPReceiver, ReceivedLog

RESOURCE = Resource.create({"service.name": "shop", "process.command_args": ["gunicorn", "shop.wsgi"]})


def exporter_for(protocol: str, endpoint: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GRPCExporter

        return GRPCExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPExporter

    return HTTPExporter(endpoint=f"{endpoint}/v1/logs")


class PublicOnlyProvider:
    """A logger provider whose loggers show only the public API (``emit``): what a release that
    keeps its internals elsewhere looks like to the sink."""

    class Logger:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def emit(self, **kwargs: Any) -> None:
            self._inner.emit(**kwargs)

    def __init__(self, inner: LoggerProvider) -> None:
        self._inner = inner

    def get_logger(self, *args: Any, **kwargs: Any) -> Any:
        return self.Logger(self._inner.get_logger(*args, **kwargs))


def events(tag: str) -> list[Event]:
    """Events with every kind of value the line carries, a 5xx, a saturation event with no span."""
    sampled = SpanContext(0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174, False, TraceFlags(1))
    unsampled = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(0))
    fields: dict[str, Any] = {
        "event_type": "request",
        "req_id": f"{tag}-1",
        "req_path": "/caf\u00e9/" + "x" * 300,  # lengths over one byte
        "resp_status": 200,
        "resp_time": 0.012345,
        "db_queries": 12_345_678,
        "db_n1_count": -3,
        "big": 2**63 - 1,
        "nan": math.nan,
        "trace_sampled": True,
        "stuck": False,
        "k" * 100: "a long key",
    }
    return [
        Event("request", fields, sampled, 1_764_000_000_000_000_001),
        Event("request", {"event_type": "request", "req_id": f"{tag}-2", "resp_status": 503}, unsampled, 2),
        Event("saturation", {"event_type": "saturation", "req_id": f"{tag}-3", "g_busy": 1}, None, 3),
    ]


def comparable(record: ReceivedLog) -> tuple[Any, ...]:
    attrs = dict(record.attributes)
    attrs["req_id"] = attrs["req_id"].split("-")[-1]
    nan = attrs.pop("nan", None)
    return (
        record.resource,
        record.scope,
        record.event_name,
        record.severity_number,
        record.severity_text,
        record.body,
        attrs,
        nan is None or math.isnan(nan),
        record.trace_id,
        record.span_id,
        record.time_unix_nano,
        record.flags,
    )


@pytest.fixture(params=["http", "grpc"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Any]:
    with GRPCReceiver() if request.param == "grpc" else HTTPReceiver() as rec:
        rec.protocol = request.param  # type: ignore[union-attr]
        yield rec


def send(receiver: Any, provider_of: Any, tag: str) -> tuple[OTelLogSink, list[ReceivedLog]]:
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(
        _export.log_record_processor(exporter_for(receiver.protocol, receiver.endpoint))
    )
    sink = OTelLogSink(provider_of(provider))
    for event in events(tag):
        sink(event)
    provider.force_flush()
    got = receiver.wait_for(
        lambda r: len(mine := [x for x in r.logs() if x.attributes["req_id"].startswith(tag)]) == 3 and mine
    )
    provider.shutdown()
    return sink, sorted(got, key=lambda x: x.attributes["req_id"])


def test_the_collector_gets_what_logger_emit_would_have_sent(receiver: Any) -> None:
    ours_sink, ours = send(receiver, lambda p: p, "direct")
    assert all(_otel.checks().get(name) for name in (_otel.LOGGER_INTERNALS, _otel.LOG_EXPORT_INTERNALS))
    sdk_sink, sdk = send(receiver, PublicOnlyProvider, "sdk")
    assert ours_sink._fast is not None and sdk_sink._fast is None
    assert [comparable(r) for r in ours] == [comparable(r) for r in sdk]
    assert ours[0].attributes["req_path"].startswith("/caf\u00e9/")
    assert (ours[0].flags, ours[1].flags) == (1, 0)


def test_a_processor_added_later_gets_the_sdk_record(receiver: Any) -> None:
    """The direct path is for the distro's own pipeline only: once the user adds a processor, every
    event goes through Logger.emit, so both processors see it."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(
        _export.log_record_processor(exporter_for(receiver.protocol, receiver.endpoint))
    )
    sink = OTelLogSink(provider)
    assert sink._fast is not None
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    for event in events("later"):
        sink(event)
    provider.force_flush()
    receiver.wait_for(lambda r: len([x for x in r.logs() if x.attributes["req_id"].startswith("later")]) == 3)
    assert ["later-1", "later-2", "later-3"] == [
        (r.log_record.attributes or {})["req_id"] for r in memory.get_finished_logs()
    ]
    provider.shutdown()


@pytest.mark.parametrize(
    ("variable", "value", "fast"),
    [
        ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10", False),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10", False),
        ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "11", True),
    ],
)
def test_the_sdks_log_record_limits_apply_as_they_would_through_logger_emit(
    receiver: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fast: bool
) -> None:
    """A length limit sends every event through Logger.emit (which truncates); a count limit only
    the events over it (Logger.emit drops their oldest attributes)."""
    monkeypatch.setenv(variable, value)
    sink, got = send(receiver, lambda p: p, "lim")  # "lim-1": within the 10-character limit
    assert (sink._fast is not None) == fast
    if variable.endswith("LENGTH_LIMIT"):
        assert "/café/xxxx" == got[0].attributes["req_path"]
        assert all(len(v) <= 10 for r in got for v in r.attributes.values() if isinstance(v, str))
    else:
        assert [11, 3, 3] == [len(r.attributes) for r in got]
        assert "event_type" not in got[0].attributes
