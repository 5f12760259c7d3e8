"""Logfmt encoder for canonical log lines: one event in, exactly one injection-proof line out.

Every value is double-quoted and escaped, so no input can add a pair or split the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["TRUNCATION_MARKER", "encode", "encode_bytes", "sanitize_key"]

TRUNCATION_MARKER = "...[truncated]"

_MARKER_LEN = len(TRUNCATION_MARKER)
# Anything shorter would leave almost nothing of the value next to the marker.
_MIN_MAX_LEN = 32
_MAX_KEY_LEN = 100
# Keys usually come from a small fixed vocabulary; the bound only stops
# attacker-chosen attribute names from growing the cache without limit.
_KEY_CACHE_LIMIT = 4096

_VALID_KEY = re.compile(rf"[a-z][a-z0-9_]{{0,{_MAX_KEY_LEN - 1}}}")
_INVALID_KEY_CHARS = re.compile(r"[^a-z0-9_]")


def _build_escape_table() -> dict[int, str]:
    table: dict[int, str] = {cp: f"\\u{cp:04x}" for cp in range(0x20)}
    table[0x7F] = "\\u007f"
    table[ord("\\")] = "\\\\"
    table[ord('"')] = '\\"'
    table[ord("\n")] = "\\n"
    table[ord("\r")] = "\\r"
    table[ord("\t")] = "\\t"
    # str.splitlines() also breaks on these; a raw one would split the line
    # for any consumer that uses Unicode line semantics.
    for cp in (0x85, 0x2028, 0x2029):
        table[cp] = f"\\u{cp:04x}"
    # A lone surrogate cannot be encoded as UTF-8, so the sink write would fail.
    for cp in range(0xD800, 0xE000):
        table[cp] = "\ufffd"
    return table


_ESCAPES = _build_escape_table()

_KEY_CACHE: dict[str, str] = {}


def sanitize_key(key: str) -> str:
    """Map any string to a key matching ``[a-z][a-z0-9_]*`` of at most 100 characters."""
    cleaned = _INVALID_KEY_CHARS.sub("_", key.lower())
    if not cleaned or not ("a" <= cleaned[0] <= "z"):
        cleaned = "k_" + cleaned
    return cleaned[:_MAX_KEY_LEN]


def _safe_key(key: object) -> str:
    if type(key) is str:
        safe = key if _VALID_KEY.fullmatch(key) else sanitize_key(key)
        if len(_KEY_CACHE) < _KEY_CACHE_LIMIT:
            _KEY_CACHE[key] = safe
        return safe
    # Non-str keys are not cached: 1, 1.0 and True hash alike but render differently.
    return sanitize_key(_render(key))


def _render(value: object) -> str:
    try:
        if isinstance(value, str):
            # Exact str, so an overridden isascii()/translate() cannot dodge escaping.
            return str.__str__(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            # int.__repr__ rather than str(): IntEnum and friends would print their name.
            return int.__repr__(value)
        if isinstance(value, float):
            return f"{float(value):.3f}"
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", errors="replace")
        text = str(value)
        return str.__str__(text)
    except Exception:
        # Any __str__ can fail, as do ints beyond sys.get_int_max_str_digits();
        # a log line must never take the request down with it.
        return f"<unrenderable {type(value).__name__}>"


def encode(event: Mapping[str, object], max_len: int = 2048) -> str:
    """Render ``event`` as one logfmt line ending in ``"\\n"``; ``None`` values are omitted."""
    max_len = max(max_len, _MIN_MAX_LEN)
    keep = max_len - _MARKER_LEN
    cache_get = _KEY_CACHE.get
    escapes = _ESCAPES
    parts: list[str] = []
    for key, value in event.items():
        if value is None:
            continue
        safe = cache_get(key) if type(key) is str else None
        if safe is None:
            safe = _safe_key(key)
        # Exact-type checks first: they cover nearly every value in practice.
        if type(value) is str:
            text = value
        elif type(value) is float:
            text = f"{value:.3f}"
        else:
            text = _render(value)
        if len(text) > max_len:
            text = text[:keep] + TRUNCATION_MARKER
        # translate() costs ~0.5 us even on clean ASCII, and most values are clean.
        if not (text.isascii() and text.isprintable() and '"' not in text and "\\" not in text):
            text = text.translate(escapes)
        parts.append(f'{safe}="{text}"')
    return " ".join(parts) + "\n"


def encode_bytes(event: Mapping[str, object], max_len: int = 2048) -> bytes:
    """Same as :func:`encode`, as UTF-8 bytes."""
    return encode(event, max_len).encode("utf-8")
