"""The report's reader: every line the project's encoders write comes back as the same fields;
anything else is counted, never a crash."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_canonical_logs.report.parse import Counts, MalformedLine, parse_line, parse_logfmt, read
from otel_canonical_logs.sinks import jsonl, logfmt
from tests.logfmt_strict import decode_line

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
events = st.builds(
    lambda event_type, rest: {"event_type": event_type, **rest},
    st.text(),
    st.dictionaries(st.text(min_size=1).filter(lambda k: k != "event_type"), values, max_size=12),
)


@settings(max_examples=400)
@given(events)
def test_every_logfmt_line_parses_to_the_strict_decoders_fields(event: dict[str, object]) -> None:
    """parse_line(encode(event)) is what the strict go-logfmt judge reads from the same line."""
    line = logfmt.encode(event, 256)
    expected = dict(decode_line(line.rstrip("\n")))
    parsed = parse_line(line)
    assert parsed is not None
    assert (None, expected) == parsed


@settings(max_examples=300)
@given(events)
def test_every_json_line_parses_to_its_object(event: dict[str, object]) -> None:
    """parse_line(jsonl.encode(event)) is json.loads of the line, types and all."""
    line = jsonl.encode(event, 256)
    assert (None, json.loads(line)) == parse_line(line)


@given(events, st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)))
def test_a_collectors_timestamp_in_front_is_read(event: dict[str, object], moment: datetime) -> None:
    """`docker logs -t` puts RFC 3339 with nanoseconds in front; the fields are unchanged."""
    moment = moment.replace(tzinfo=UTC)
    prefix = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z "
    line = logfmt.encode(event, 256)
    parsed = parse_line(prefix + line)
    assert parsed is not None
    stamp, fields = parsed
    assert dict(decode_line(line.rstrip("\n"))) == fields
    assert stamp == pytest.approx(moment.timestamp() + 123e-9, abs=1e-6)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("2026-11-27T10:00:00Z ", "2026-11-27T10:00:00+00:00"),
        ("2026-11-27T11:00:00+01:00 ", "2026-11-27T10:00:00+00:00"),
        ("2026-11-27T05:00:00-0500 host gunicorn[12]: ", "2026-11-27T10:00:00+00:00"),
        ("app-1  | 2026-11-27 10:00:00,250 ", "2026-11-27T10:00:00.250+00:00"),
    ],
)
def test_timestamp_forms(prefix: str, expected: str) -> None:
    """docker/kubectl (Z), offsets with and without a colon (journald), a space and a comma."""
    parsed = parse_line(prefix + 'event_type="request" resp_status="200"\n')
    assert parsed is not None
    assert datetime.fromisoformat(expected).timestamp() == pytest.approx(parsed[0])


@given(st.lists(st.text(), max_size=30))
def test_garbage_text_never_crashes_and_every_line_is_counted(lines: list[str]) -> None:
    """Any text at all: each line is canonical, other or malformed, exactly once."""
    counts = Counts()
    stream = io.StringIO("".join(line.replace("\n", " ") + "\n" for line in lines))
    records = list(read([stream], counts))
    assert len(lines) == counts.lines
    assert counts.lines == counts.canonical + counts.other + counts.malformed
    assert len(records) == counts.canonical


@given(events, st.data())
def test_damaged_lines_are_counted_not_raised(event: dict[str, object], data: st.DataObject) -> None:
    """A canonical line cut short or with a byte changed either still parses or is malformed."""
    line = logfmt.encode(event, 256).rstrip("\n")
    cut = data.draw(st.integers(min_value=0, max_value=len(line)))
    char = data.draw(st.sampled_from(['"', "\\", " ", "=", "x", "\x00"]))
    damaged = [line[:cut], line[:cut] + char + line[cut:]]
    counts = Counts()
    list(read([io.StringIO("\n".join(damaged) + "\n")], counts))
    assert 2 == counts.lines == counts.canonical + counts.other + counts.malformed


@pytest.mark.parametrize(
    "line",
    [
        'event_type="request',
        'event_type="request" resp_status=200',
        'event_type="request"  resp_status="200"',
        'event_type="req"uest"',
        'event_type="request" Bad="1"',
        'event_type="request" x="\\q"',
        'event_type="a\\"',
        '{"event_type": 1}',
        '{"event_type":"request", ',
    ],
)
def test_malformed_lines_raise_malformed(line: str) -> None:
    """Lines with the canonical mark that are not what the encoders write."""
    with pytest.raises(MalformedLine):
        parse_line(line)


@pytest.mark.parametrize(
    "line",
    [
        "[2026-11-27 10:00:00 +0000] [42] [INFO] Booting worker with pid: 42",
        '127.0.0.1 - - [27/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12',
        "",
        'myevent_type="request"',
    ],
)
def test_other_log_lines_are_not_canonical(line: str) -> None:
    """Gunicorn's own lines, access lines, blank lines: skipped (``None``), not malformed."""
    assert parse_line(line) is None


def test_an_escaped_quote_before_a_space_stays_in_the_value() -> None:
    """`\\" ` inside a value does not end it; `\\\\" ` does."""
    event = {"event_type": "request", "db_dup_sql": 'SELECT "a" FROM t', "exc_msg": "path C:\\"}
    line = logfmt.encode(event)
    assert {
        "event_type": "request",
        "db_dup_sql": 'SELECT "a" FROM t',
        "exc_msg": "path C:\\",
    } == parse_logfmt(line.rstrip("\n"))
