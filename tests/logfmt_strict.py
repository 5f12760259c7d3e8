"""Strict logfmt decoder (go-logfmt semantics, JSON escapes) used as the judge for the encoder.

It raises ValueError on anything a lenient parser would quietly accept.
"""

from __future__ import annotations

_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_UNICODE_LINE_BREAKS = frozenset("\x85\u2028\u2029")


def _check_raw(ch: str, pos: int) -> None:
    cp = ord(ch)
    if cp < 0x20 or cp == 0x7F:
        raise ValueError(f"raw control character U+{cp:04X} at offset {pos}")
    if ch in _UNICODE_LINE_BREAKS:
        raise ValueError(f"raw line break U+{cp:04X} at offset {pos}")
    if 0xD800 <= cp <= 0xDFFF:
        raise ValueError(f"raw lone surrogate U+{cp:04X} at offset {pos}")


def _read_hex4(line: str, pos: int) -> int:
    digits = line[pos : pos + 4]
    if len(digits) != 4 or not all(d in _HEX_DIGITS for d in digits):
        raise ValueError(f"bad \\u escape at offset {pos - 2}: {digits!r}")
    return int(digits, 16)


def _read_key(line: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(line) and line[pos] != "=":
        ch = line[pos]
        if ch in ' "\\':
            raise ValueError(f"unexpected {ch!r} in key at offset {pos}")
        _check_raw(ch, pos)
        pos += 1
    if pos == start:
        raise ValueError(f"empty key at offset {start}")
    if pos == len(line):
        raise ValueError(f"missing '=' after key {line[start:pos]!r}")
    return line[start:pos], pos + 1


def _read_bare(line: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(line) and line[pos] != " ":
        ch = line[pos]
        if ch in '="\\':
            raise ValueError(f"unexpected {ch!r} in bare value at offset {pos}")
        _check_raw(ch, pos)
        pos += 1
    return line[start:pos], pos


def _read_quoted(line: str, pos: int) -> tuple[str, int]:
    # pos is just past the opening quote.
    out: list[str] = []
    while True:
        if pos >= len(line):
            raise ValueError("unterminated quoted value")
        ch = line[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch != "\\":
            _check_raw(ch, pos)
            out.append(ch)
            pos += 1
            continue
        if pos + 1 >= len(line):
            raise ValueError("unterminated escape at end of line")
        esc = line[pos + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            pos += 2
            continue
        if esc != "u":
            raise ValueError(f"unknown escape \\{esc} at offset {pos}")
        cp = _read_hex4(line, pos + 2)
        pos += 6
        if 0xDC00 <= cp <= 0xDFFF:
            raise ValueError(f"lone low surrogate escape at offset {pos - 6}")
        if 0xD800 <= cp <= 0xDBFF:
            if line[pos : pos + 2] != "\\u":
                raise ValueError(f"lone high surrogate escape at offset {pos - 6}")
            low = _read_hex4(line, pos + 2)
            if not 0xDC00 <= low <= 0xDFFF:
                raise ValueError(f"high surrogate not followed by low at offset {pos - 6}")
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
            pos += 6
        out.append(chr(cp))


def decode_line(line: str) -> list[tuple[str, str]]:
    """Parse one logfmt line into ordered (key, value) pairs, raising ValueError if malformed."""
    if line.endswith("\n"):
        line = line[:-1]
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(line):
        key, pos = _read_key(line, pos)
        if pos < len(line) and line[pos] == '"':
            value, pos = _read_quoted(line, pos + 1)
        else:
            value, pos = _read_bare(line, pos)
        pairs.append((key, value))
        if pos == len(line):
            break
        if line[pos] != " ":
            raise ValueError(f"expected space after value at offset {pos}, got {line[pos]!r}")
        pos += 1
        if pos == len(line):
            raise ValueError("trailing space at end of line")
        if line[pos] == " ":
            raise ValueError(f"double space at offset {pos}")
    return pairs
