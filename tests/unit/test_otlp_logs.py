"""The direct OTLP encoding of canonical events (``_otlp_logs``) against the SDK's own encoder:
the same record, decoded with opentelemetry-proto's generated classes, must be the same message."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from otel_canonical_logs import _guard, _otlp_logs

KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True)
TEXT = st.text(st.characters(codec="utf-8"), max_size=300)
VALUES = st.one_of(
    TEXT,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
FIELDS = st.dictionaries(KEYS, VALUES, max_size=60)
IDS = st.tuples(st.integers(min_value=0, max_value=2**128 - 1), st.integers(min_value=0, max_value=2**64 - 1))
RESOURCE = Resource.create({"service.name": "shop", "process.pid": 4242, "process.command_args": ["a", "b"]})
SCOPE = InstrumentationScope("otel_canonical_logs", "0.1.0")


def pending(
    fields: dict[str, Any], ids: tuple[int, int] = (0, 0), flags: int = 0, **kw: Any
) -> _otlp_logs.PendingLog:
    trace_id, span_id = ids
    context = None
    if trace_id and span_id:
        context = SpanContext(trace_id, span_id, False, TraceFlags(flags))
    return _otlp_logs.PendingLog(
        fields,
        kw.get("name", "canonical.request"),
        kw.get("severity_number", SeverityNumber.WARN.value),
        kw.get("severity_text", "WARN"),
        context,
        kw.get("time_ns", 1_764_000_000_123_456_789),
        kw.get("observed_ns", 1_764_000_000_223_456_789),
        kw.get("resource", RESOURCE),
        kw.get("scope", SCOPE),
    )


def sdk_record(item: _otlp_logs.PendingLog) -> ReadableLogRecord:
    """The record Logger.emit would have made for the same event: the fallback's record, which
    tests/integration/test_otlp_log_path.py compares with Logger.emit's through real exporters."""
    record: ReadableLogRecord = item.readable()
    return record


def ours(items: list[_otlp_logs.PendingLog]) -> ExportLogsServiceRequest:
    payload, failed = _otlp_logs.encode_pending(items)
    assert failed == []
    request: ExportLogsServiceRequest = ExportLogsServiceRequest.FromString(payload)
    return request


@settings(max_examples=300, deadline=None)
@given(
    fields=FIELDS,
    ids=IDS,
    flags=st.sampled_from([0, 1]),
    sev=st.sampled_from(list(SeverityNumber)),
    name=st.sampled_from(["canonical.request", "canonical.timeout", "canonical.saturation"]),
)
def test_a_record_decodes_to_what_the_sdk_encoder_writes(
    fields: dict[str, Any], ids: tuple[int, int], flags: int, sev: SeverityNumber, name: str
) -> None:
    item = pending(fields, ids, flags, severity_number=sev.value, severity_text=sev.name, name=name)
    assert ours([item]) == encode_logs([sdk_record(item)])


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(FIELDS, min_size=1, max_size=8))
def test_a_batch_over_two_resources_and_two_scopes_matches_the_sdk(batch: list[dict[str, Any]]) -> None:
    other_resource = Resource.create({"service.name": "shop", "process.pid": 4243})
    other_scope = InstrumentationScope("otel_canonical_logs", "0.2.0")
    items = [
        pending(f, resource=other_resource if i % 3 == 1 else RESOURCE, scope=other_scope if i % 2 else SCOPE)
        for i, f in enumerate(batch)
    ]
    expected = encode_logs([sdk_record(item) for item in items])
    got = ours(items)
    # Same groups, same records per group; our groups come in first-seen order as the SDK's do.
    assert got == expected


def test_values_beyond_the_normalised_types_encode_as_the_sdk_encodes_them_or_as_text() -> None:
    fields: dict[str, Any] = {"nan": math.nan, "inf": -math.inf, "big": 2**70, "none_here": "x"}
    got = ours([pending(fields)]).resource_logs[0].scope_logs[0].log_records[0]
    values = {kv.key: kv.value for kv in got.attributes}
    assert math.isnan(values["nan"].double_value)
    assert values["inf"].double_value == -math.inf
    assert values["big"].string_value == str(2**70)  # what the line writes for an int beyond int64


def test_lone_surrogates_become_replacement_characters_not_a_lost_batch() -> None:
    got = ours([pending({"path": "/caf\udce9"})]).resource_logs[0].scope_logs[0].log_records[0]
    assert got.attributes[0].value.string_value == "/caf\ufffd"


def test_an_event_that_fails_to_encode_is_handed_to_the_sdk_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(_otlp_logs.PendingLog):
        __slots__ = ()

        def encode(self) -> bytes:
            raise RuntimeError("boom")

    good, model = pending({"a": 1}), pending({"b": 2})
    bad = Broken(**{name: getattr(model, name) for name in _otlp_logs.PendingLog.__slots__})
    reported: list[str] = []
    monkeypatch.setattr(_guard, "report", lambda kind, exc: reported.append(kind))
    payload, failed = _otlp_logs.encode_pending([good, bad])
    assert reported == [_otlp_logs.ENCODE_FAILED]
    assert len(failed) == 1
    merged = ExportLogsServiceRequest.FromString(encode_logs(failed).SerializeToString() + payload)
    keys = sorted(
        kv.key
        for rl in merged.resource_logs
        for sl in rl.scope_logs
        for r in sl.log_records
        for kv in r.attributes
    )
    assert keys == ["a", "b"]


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_matches_protobuf(n: int) -> None:
    from google.protobuf.internal.encoder import _VarintBytes

    assert _otlp_logs.varint(n) == _VarintBytes(n)
