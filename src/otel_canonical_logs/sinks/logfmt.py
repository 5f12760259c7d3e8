"""Logfmt encoder for canonical log lines: one event in, exactly one injection-proof line out.

Every value is double-quoted and escaped, so no input can add a pair or split the line.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._values import KEY_CACHE, MIN_MAX_LEN, TRUNCATION_MARKER, safe_key, sanitize_key, text_of, truncate

__all__ = ["TRUNCATION_MARKER", "encode", "encode_bytes", "format_bytes", "sanitize_key"]

_MARKER_LEN = len(TRUNCATION_MARKER)


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


def _render(value: object) -> str:
    if isinstance(value, float):
        try:
            return f"{float(value):.3f}"
        except Exception:
            return f"<unrenderable {type(value).__name__}>"
    return text_of(value)


def encode(event: Mapping[str, object], max_len: int = 2048) -> str:
    """Render ``event`` as one logfmt line ending in ``"\\n"``; ``None`` values are omitted."""
    max_len = max(max_len, MIN_MAX_LEN)
    keep = max_len - _MARKER_LEN
    cache_get = KEY_CACHE.get
    escapes = _ESCAPES
    parts: list[str] = []
    for key, value in event.items():
        if value is None:
            continue
        safe = cache_get(key) if type(key) is str else None
        if safe is None:
            safe = safe_key(key)
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


def format_bytes(fields: Mapping[str, object], max_len: int = 2048) -> bytes:
    """The line of fields the dispatcher has made safe (``_values.normalise``: safe keys; str,
    bool, 64-bit int and float values, already cut): only formatting and escaping are left, and
    the bytes are those :func:`encode_bytes` writes for the same fields."""
    escapes = _ESCAPES
    parts: list[str] = []
    for key, value in fields.items():
        text: str
        if type(value) is str:
            text = value
        elif type(value) is float:
            text = f"{value:.3f}"
            if len(text) > max_len:  # 1e300 is 300 digits at this precision
                text = truncate(text, max(max_len, MIN_MAX_LEN))
        elif type(value) is bool:
            text = "true" if value else "false"
        else:
            text = int.__repr__(value)
        if not (text.isascii() and text.isprintable() and '"' not in text and "\\" not in text):
            text = text.translate(escapes)
        parts.append(f'{key}="{text}"')
    return (" ".join(parts) + "\n").encode("utf-8")
