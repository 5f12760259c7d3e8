"""Application-supplied values made safe for every destination: the line, OTLP and span attributes."""

from __future__ import annotations

from typing import Any, cast

# An application value is held until its request ends; this bounds it. The sinks cut values to
# CANONICAL_LOGS_VALUE_MAX for output.
MAX_CHARS = 65536
_TRUNCATED = "...[truncated]"
_INT64 = range(-(2**63), 2**63)
# A lone surrogate (os.fsdecode of a non-UTF-8 file name, a decoded JSON "\ud800") cannot be
# encoded as UTF-8: the OTLP exporter would drop the span attribute and log an error each time.
# ``text.translate(SURROGATES)`` replaces each with U+FFFD.
SURROGATES = {cp: "\ufffd" for cp in range(0xD800, 0xE000)}


def _text(value: str) -> str:
    if not value.isascii():
        value = value.translate(SURROGATES)
    return value if len(value) <= MAX_CHARS else value[: MAX_CHARS - len(_TRUNCATED)] + _TRUNCATED


def safe_value(value: Any) -> str | bool | int | float | None:
    """``value`` as a str, bool, int (64-bit) or float; anything else as its text, never raising.

    ``None`` stays ``None`` (the key is removed). An object whose ``__str__`` raises becomes
    ``<unrenderable TypeName>``; an int beyond 64 bits, which OTLP cannot carry, becomes text.
    """
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is bool or kind is float or value is None:
        return cast("bool | float | None", value)
    if kind is int:
        return cast(int, value) if value in _INT64 else _int_text(value)
    try:
        if isinstance(value, str):
            return _text(str.__str__(value))
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            number = int.__index__(value)
            return number if number in _INT64 else _int_text(number)
        if isinstance(value, float):
            return float.__float__(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return _text(bytes(value).decode("utf-8", errors="replace"))
        return _text(str.__str__(str(value)))
    except Exception:
        return f"<unrenderable {kind.__name__}>"


def _int_text(value: int) -> str:
    try:
        return _text(int.__repr__(value))
    except ValueError:  # beyond sys.get_int_max_str_digits()
        return "<unrenderable int>"
