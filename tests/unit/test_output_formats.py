"""The JSON stdout format, the OTel LogRecord sink's attributes, and CANONICAL_LOGS_FORMAT."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.trace import SpanContext, TraceFlags

from otel_canonical_logs import _env
from otel_canonical_logs.event import Event
from otel_canonical_logs.sinks import Dispatcher, jsonl, logfmt
from otel_canonical_logs.sinks.otel_logs import OTelLogSink, severity
from tests.logfmt_strict import decode_line

FIELDS: dict[str, object] = {
    "event_type": "request",
    "req_id": "abc",
    "trace_id": "0f6555a5a34c09f7e247d3353a045a29",
    "req_path": '/x"y\n\u2028',
    "resp_status": 200,
    "resp_time": 0.0042,
    "db_queries": 6,
    "stuck": True,
    "app_Odd-Key": "v",
    "app_none": None,
}


def test_json_line_has_the_logfmt_keys_in_the_same_order() -> None:
    """Same keys (sanitised alike), same order; None is left out in both."""
    line = jsonl.encode(FIELDS)
    logfmt_keys = [k for k, _ in decode_line(logfmt.encode(FIELDS).rstrip("\n"))]
    assert logfmt_keys == list(json.loads(line))


def test_json_values_keep_their_types() -> None:
    """Ints are numbers, floats have the line's millisecond precision, booleans are booleans."""
    obj = json.loads(jsonl.encode(FIELDS))
    assert (200, 0.004, 6, True) == (obj["resp_status"], obj["resp_time"], obj["db_queries"], obj["stuck"])
    assert '/x"y\n\u2028' == obj["req_path"]


def test_json_values_are_capped_like_the_line() -> None:
    """A long value is cut to the same length with the same marker as on the logfmt line."""
    obj = json.loads(jsonl.encode({"event_type": "request", "v": "x" * 500}, 64))
    expected = decode_line(logfmt.encode({"v": "x" * 500}, 64).rstrip("\n"))[0][1]
    assert expected == obj["v"]
    assert 64 == len(obj["v"]) and obj["v"].endswith(logfmt.TRUNCATION_MARKER)


def test_json_odd_values_never_raise() -> None:
    """NaN, huge ints, bytes, lone surrogates and unprintable objects still give one valid line."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    line = jsonl.encode(
        {"a": float("nan"), "b": 10**5000, "c": b"\xff", "d": "\ud800", "e": Unprintable(), "f": float("inf")}
    )
    obj = json.loads(line)
    assert ("nan", "<unrenderable int>", "\ufffd", "\ufffd", "<unrenderable Unprintable>", "inf") == (
        obj["a"],
        obj["b"],
        obj["c"],
        obj["d"],
        obj["e"],
        obj["f"],
    )


VALUES = st.one_of(
    st.text(),
    st.lists(st.characters(categories=["Cs"]), max_size=3).map("".join),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=20), VALUES, max_size=8), st.integers(min_value=0, max_value=200))
def test_json_is_always_exactly_one_ascii_line(event: dict[str, object], max_len: int) -> None:
    """Any event becomes one ASCII line holding one JSON object."""
    line = jsonl.encode(event, max_len)
    assert line.endswith("\n") and 1 == len(line.splitlines()) and line.isascii()
    assert isinstance(json.loads(line), dict)


def _sink() -> tuple[Dispatcher, InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    # Through a dispatcher: it makes the values safe (and cut to 64 here), the sink only formats.
    return Dispatcher([OTelLogSink(provider)], max_len=64), exporter


CTX = SpanContext(0x0F6555A5A34C09F7E247D3353A045A29, 0xA6AA10B1783E8667, False, TraceFlags(1))


def test_log_record_attributes_have_real_types_and_the_lines_keys() -> None:
    """The record's attributes are the line's keys with ints, floats and booleans kept as such."""
    sink, exporter = _sink()
    sink(Event("request", dict(FIELDS, app_big=2**70, resp_view="v" * 100), CTX, 123))
    (record,) = exporter.get_finished_logs()
    attrs = dict(record.log_record.attributes or {})
    line_keys = [
        k for k, _ in decode_line(logfmt.encode(dict(FIELDS, app_big=1, resp_view="v")).rstrip("\n"))
    ]
    assert sorted(line_keys) == sorted(attrs)
    assert (200, 0.0042, 6, True) == (
        attrs["resp_status"],
        attrs["resp_time"],
        attrs["db_queries"],
        attrs["stuck"],
    )
    assert str(2**70) == attrs["app_big"]
    view = attrs["resp_view"]
    assert isinstance(view, str) and 64 == len(view) and view.endswith(logfmt.TRUNCATION_MARKER)


def test_log_record_carries_event_name_trace_and_time() -> None:
    """Event name canonical.<type>, the request's trace and span ids, the event's timestamp."""
    sink, exporter = _sink()
    sink(Event("request", dict(FIELDS), CTX, 123))
    (record,) = exporter.get_finished_logs()
    log = record.log_record
    assert ("canonical.request", CTX.trace_id, CTX.span_id, 123) == (
        log.event_name,
        log.trace_id,
        log.span_id,
        log.timestamp,
    )


@pytest.mark.parametrize(
    ("event_type", "status", "expected"),
    [
        ("request", 200, "INFO"),
        ("request", 302, "INFO"),
        ("request", 404, "WARN"),
        ("request", 500, "ERROR"),
        ("timeout", None, "ERROR"),
        ("stuck", None, "ERROR"),
        ("partial_failure", None, "ERROR"),
    ],
)
def test_severity(event_type: str, status: int | None, expected: str) -> None:
    """INFO for success, WARN for 4xx, ERROR for 5xx, timeouts, stuck requests, partial failures."""
    fields: dict[str, object] = {"event_type": event_type}
    if status is not None:
        fields["resp_status"] = status
    assert expected == severity(Event(event_type, fields, None, 0))


def test_bad_format_is_reported_by_name_and_logfmt_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown CANONICAL_LOGS_FORMAT is named in one warning and logfmt is used."""
    monkeypatch.setenv(_env.CANONICAL_LOGS_FORMAT, "yaml")
    with caplog.at_level(logging.WARNING, logger="otel_canonical_logs"):
        value = _env.env_choice(_env.CANONICAL_LOGS_FORMAT, "logfmt", ("logfmt", "json"))
    assert "logfmt" == value
    assert 1 == len(caplog.records) and "CANONICAL_LOGS_FORMAT='yaml'" in caplog.records[0].getMessage()


def test_format_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON, json and ' json ' all pick the JSON format."""
    monkeypatch.setenv(_env.CANONICAL_LOGS_FORMAT, " JSON ")
    assert "json" == _env.env_choice(_env.CANONICAL_LOGS_FORMAT, "logfmt", ("logfmt", "json"))
