"""Reading canonical lines back: logfmt or JSON, anywhere in a log stream, with the timestamp a
log collector put in front of them.

No third-party code: the logfmt libraries on PyPI took 97-180 µs a line here, against about 4 µs
for :func:`parse_logfmt` (README, "How fast"); values with escapes are decoded by the standard
library's JSON decoder, whose escapes are the encoder's.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["Counts", "MalformedLine", "Record", "open_input", "parse_line", "parse_logfmt", "read"]

LOGFMT_MARK = 'event_type="'
JSON_MARK = '{"event_type":'
_KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")
# RFC 3339 / ISO 8601 as `docker logs -t`, `kubectl logs --timestamps` and `journalctl -o
# short-iso` put before each line (nanoseconds allowed, `Z`, `+00:00` or `+0000`).
_STAMP = re.compile(
    r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?",
    re.ASCII,
)
_decode_string = json.JSONDecoder(strict=True).decode
_decode_object = _decode_string


class MalformedLine(ValueError):
    """A line that looks canonical (it has the ``event_type`` mark) but does not parse."""


Record = dict[str, Any]


def _value(raw: str) -> str:
    if "\\" in raw:
        # The encoder's escapes (\\ \" \n \r \t \uXXXX) are JSON's; JSON also refuses a raw
        # control character, which the encoder never writes.
        try:
            text: str = _decode_string('"' + raw + '"')
        except ValueError:
            raise MalformedLine("bad escape") from None
        return text
    if '"' in raw:
        raise MalformedLine("unescaped quote")
    return raw


def parse_logfmt(text: str, known: set[str] | None = None) -> dict[str, str]:
    """The pairs of one canonical logfmt line (``key="value"`` separated by one space, the form
    :func:`otel_canonical_logs.sinks.logfmt.encode` writes); raises :class:`MalformedLine`.

    >>> parse_logfmt('event_type="request" resp_status="200" db_dup_sql="\\\\"t\\\\""')
    {'event_type': 'request', 'resp_status': '200', 'db_dup_sql': '"t"'}
    """
    if len(text) < 4 or text[-1] != '"':
        raise MalformedLine('not key="value" pairs')
    keys = known if known is not None else set()
    if "\x00" not in text and "\x01" not in text:
        # The usual way (C speed): with its escaped backslashes and quotes set aside (a valid line
        # has no raw control character), every quote left is a pair's, so two replacements make
        # the line a JSON object, whose escapes are the encoder's. It is the pairs exactly when
        # each pair has its two quotes and every key is a key; otherwise the careful way below
        # says what is wrong.
        escaped = "\\" in text
        work = text.replace("\\\\", "\x00").replace('\\"', "\x01") if escaped else text
        if '=" ' not in work:
            body = work[:-1].replace('="', '":"').replace('" ', '","')
            if escaped:
                body = body.replace("\x00", "\\\\").replace("\x01", '\\"')
            try:
                quick = _decode_object('{"' + body + '"}')
            except ValueError:
                quick = None
            if (
                type(quick) is dict
                and work.count('"') == 2 * len(quick)
                and (keys.issuperset(quick) or all(_KEY.fullmatch(k) for k in quick))
            ):
                if len(keys) < 4096:
                    keys.update(quick)
                return quick
    pairs: dict[str, str] = {}
    pending = ""
    # Outside a value a quote and a space come only at a pair's end, or as the opening quote of a
    # value that starts with a space (the part is then still ``key=``); an inner quote is \", so a
    # part that ends in an odd number of backslashes was cut inside its value.
    for piece in text[:-1].split('" '):
        part = pending + '" ' + piece if pending else piece
        if '="' not in part or (part[-1:] == "\\" and (len(part) - len(part.rstrip("\\"))) % 2):
            pending = part
            continue
        pending = ""
        key, sep, raw = part.partition('="')
        if not sep:
            raise MalformedLine('not key="value" pairs')
        if key not in keys:
            if not _KEY.fullmatch(key):
                raise MalformedLine(f"bad key {key[:40]!r}")
            if len(keys) < 4096:
                keys.add(key)
        pairs[key] = _value(raw)
    if pending:
        raise MalformedLine("unterminated value")
    return pairs


def _timestamp(prefix: str, cache: dict[str, float]) -> float | None:
    match = _STAMP.search(prefix)
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    second_key = f"{day}T{clock}{zone or ''}"
    whole = cache.get(second_key)
    if whole is None:
        tz = zone or "+00:00"
        if tz == "Z":
            tz = "+00:00"
        elif len(tz) == 5:
            tz = tz[:3] + ":" + tz[3:]
        try:
            moment = datetime.fromisoformat(f"{day}T{clock}{tz}")
        except ValueError:
            return None
        whole = moment.astimezone(UTC).timestamp()
        if len(cache) > 100_000:
            cache.clear()
        cache[second_key] = whole
    return whole + (float("0." + fraction) if fraction else 0.0)


@dataclass(slots=True)
class Counts:
    """What the reader saw: every input line is exactly one of canonical, other or malformed."""

    lines: int = 0
    canonical: int = 0
    other: int = 0
    malformed: int = 0
    # Canonical lines with a timestamp in front of them.
    timestamped: int = 0
    malformed_examples: list[str] = field(default_factory=list)


def parse_line(
    line: str, known: set[str] | None = None, stamps: dict[str, float] | None = None
) -> tuple[float | None, Record] | None:
    """``(timestamp or None, fields)`` of a canonical line, ``None`` for any other line; raises
    :class:`MalformedLine` for a line with the canonical mark that does not parse.

    A prefix before the mark (a collector's timestamp, ``app-1  | ``) is allowed; the line's own
    trailing newline may be there or not.
    """
    line = line.rstrip("\r\n")
    at = line.find(LOGFMT_MARK)
    is_json = False
    if at < 0:
        at = line.find(JSON_MARK)
        if at < 0:
            return None
        is_json = True
    elif at > 0 and line[at - 1] not in " \t|:]":
        # "xevent_type=..." is not our key; maybe a JSON line holds the mark inside a string.
        json_at = line.find(JSON_MARK)
        if json_at < 0:
            return None
        at, is_json = json_at, True
    if is_json:
        try:
            fields = json.loads(line[at:])
        except ValueError:
            raise MalformedLine("bad JSON") from None
        if not isinstance(fields, dict) or not isinstance(fields.get("event_type"), str):
            raise MalformedLine("not a canonical JSON object")
    else:
        fields = parse_logfmt(line[at:], known)
    stamp = _timestamp(line[:at], stamps if stamps is not None else {}) if at else None
    return stamp, fields


def open_input(name: str) -> IO[str]:
    """A text stream of a file (``.gz`` decompressed), or of stdin for ``-``; bytes that are not
    UTF-8 become backslash escapes so that no input stops the report."""
    if name == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="backslashreplace")
    path = Path(name)
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="backslashreplace")
    return path.open(encoding="utf-8", errors="backslashreplace", newline="\n")


def read(streams: Iterable[IO[str]], counts: Counts) -> Iterator[tuple[float | None, Record]]:
    """Every canonical record of the streams in order; other and malformed lines only counted."""
    known: set[str] = set()
    stamps: dict[str, float] = {}
    for stream in streams:
        for line in stream:
            counts.lines += 1
            try:
                parsed = parse_line(line, known, stamps)
            except (MalformedLine, RecursionError):
                counts.malformed += 1
                if len(counts.malformed_examples) < 3:
                    counts.malformed_examples.append(line[:200].rstrip("\r\n"))
                continue
            if parsed is None:
                counts.other += 1
                continue
            counts.canonical += 1
            if parsed[0] is not None:
                counts.timestamped += 1
            yield parsed
