"""JSON encoder for canonical events (``CANONICAL_LOGS_FORMAT=json``): one object per line, with
the logfmt line's keys, order and value cap, and real JSON types (ints, floats, booleans).

Output is pure ASCII (``\\uXXXX`` escapes), so no value can break the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .logfmt import TRUNCATION_MARKER
from .logfmt import _safe_key as safe_key  # the very keys of the logfmt line

__all__ = ["encode", "encode_bytes"]

_MIN_MAX_LEN = 32
# A lone surrogate would be escaped as-is and rejected by strict UTF-8 consumers.
_SURROGATES = {cp: "\ufffd" for cp in range(0xD800, 0xE000)}
_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def _text(value: object) -> str:
    try:
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", errors="replace")
        return str.__str__(str(value))
    except Exception:
        return f"<unrenderable {type(value).__name__}>"


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
    text = _text(value)
    if len(text) > max_len:
        text = text[: max_len - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    if not text.isascii():
        text = text.translate(_SURROGATES)
    return text


def encode(event: Mapping[str, object], max_len: int = 2048) -> str:
    """Render ``event`` as one JSON object on one line ending in ``"\\n"``; ``None`` is omitted.

    >>> encode({"event_type": "request", "resp_status": 200, "resp_time": 0.0042})
    '{"event_type":"request","resp_status":200,"resp_time":0.004}\\n'
    """
    max_len = max(max_len, _MIN_MAX_LEN)
    obj: dict[str, Any] = {}
    for key, value in event.items():
        if value is None:
            continue
        obj[safe_key(key)] = _value(value, max_len)
    return _dumps(obj) + "\n"


def encode_bytes(event: Mapping[str, object], max_len: int = 2048) -> bytes:
    """Same as :func:`encode`, as bytes (ASCII, so also UTF-8)."""
    return encode(event, max_len).encode("ascii")
