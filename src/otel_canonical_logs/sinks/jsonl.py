"""JSON encoder for canonical events (``CANONICAL_LOGS_FORMAT=json``): one object per line, with
the logfmt line's keys, order and value cap, and real JSON types (ints, floats, booleans).

Output is pure ASCII (``\\uXXXX`` escapes), so no value can break the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .._values import MIN_MAX_LEN, SURROGATES, safe_key, text_of, truncate

__all__ = ["encode", "encode_bytes", "format_bytes"]

_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def _value(value: object, max_len: int) -> Any:
    if type(value) is not str:
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            try:
                int.__repr__(value)  # beyond sys.get_int_max_str_digits() it cannot be written
            except ValueError:
                return f"<unrenderable {type(value).__name__}>"
            return int(value)
        if isinstance(value, float):
            number = float(value)
            # Same precision as the logfmt line; NaN and infinities are not JSON numbers.
            return round(number, 3) if math.isfinite(number) else repr(number)
    text = truncate(text_of(value), max_len)
    if not text.isascii():
        text = text.translate(SURROGATES)  # a strict UTF-8 consumer would reject the escape
    return text


def encode(event: Mapping[str, object], max_len: int = 2048) -> str:
    """Render ``event`` as one JSON object on one line ending in ``"\\n"``; ``None`` is omitted.

    >>> encode({"event_type": "request", "resp_status": 200, "resp_time": 0.0042})
    '{"event_type":"request","resp_status":200,"resp_time":0.004}\\n'
    """
    max_len = max(max_len, MIN_MAX_LEN)
    obj: dict[str, Any] = {}
    for key, value in event.items():
        if value is None:
            continue
        obj[safe_key(key)] = _value(value, max_len)
    return _dumps(obj) + "\n"


def encode_bytes(event: Mapping[str, object], max_len: int = 2048) -> bytes:
    """Same as :func:`encode`, as bytes (ASCII, so also UTF-8)."""
    return encode(event, max_len).encode("ascii")


def format_bytes(fields: Mapping[str, object], max_len: int = 2048) -> bytes:
    """The JSON line of fields the dispatcher has made safe (``_values.normalise``): the bytes
    :func:`encode_bytes` writes for the same fields, with only the float formatting left to do."""
    obj = {
        key: (round(value, 3) if math.isfinite(value) else repr(value)) if type(value) is float else value
        for key, value in fields.items()
    }
    return (_dumps(obj) + "\n").encode("ascii")
