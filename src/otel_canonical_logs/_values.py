"""The one value policy: what a key or a value may be on the line, the OTLP record and the root
span. Every destination carries the same things: a key matching ``[a-z][a-z0-9_]*`` (at most 100
characters), and a value that is a str (no lone surrogates, capped with a marker), a bool, a
64-bit int or a float. Anything else becomes its text, and text that cannot be produced becomes
``<unrenderable TypeName>``; nothing here raises.

The dispatcher applies :func:`normalise` once per event, after the enrichers ran: the sinks only
format. The encoders (``sinks/logfmt``, ``sinks/jsonl``) are also usable on their own, so they
use the same helpers for whatever they are given.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any, cast

# An application value is held until its request ends; this bounds it. The dispatcher cuts values
# to CANONICAL_LOGS_VALUE_MAX for output.
MAX_CHARS = 65536
TRUNCATION_MARKER = "...[truncated]"
# Anything shorter would leave almost nothing of the value next to the marker.
MIN_MAX_LEN = 32
INT64 = range(-(2**63), 2**63)
# A lone surrogate (os.fsdecode of a non-UTF-8 file name, a decoded JSON "\ud800") cannot be
# encoded as UTF-8: the OTLP exporter would drop the attribute, a strict consumer the line.
# ``text.translate(SURROGATES)`` replaces each with U+FFFD.
SURROGATES = {cp: "\ufffd" for cp in range(0xD800, 0xE000)}

_MAX_KEY_LEN = 100
_VALID_KEY = re.compile(rf"[a-z][a-z0-9_]{{0,{_MAX_KEY_LEN - 1}}}")
_INVALID_KEY_CHARS = re.compile(r"[^a-z0-9_]")
# Keys usually come from a small fixed vocabulary; the bound only stops attacker-chosen
# attribute names from growing the cache without limit.
_KEY_CACHE_LIMIT = 4096
KEY_CACHE: dict[str, str] = {}
# Keys already in their safe form (the registry's, the application's once seen): an event whose
# keys are all in here needs no key checked one by one.
SAFE_KEYS: set[str] = set()


# -- keys ----------------------------------------------------------------------------------------


def sanitize_key(key: str) -> str:
    """Map any string to a key matching ``[a-z][a-z0-9_]*`` of at most 100 characters."""
    cleaned = _INVALID_KEY_CHARS.sub("_", key.lower())
    if not cleaned or not ("a" <= cleaned[0] <= "z"):
        cleaned = "k_" + cleaned
    return cleaned[:_MAX_KEY_LEN]


def safe_key(key: object) -> str:
    """The key as every destination writes it (cached for str keys)."""
    if type(key) is str:
        safe = KEY_CACHE.get(key)
        if safe is None:
            safe = key if _VALID_KEY.fullmatch(key) else sanitize_key(key)
            if len(KEY_CACHE) < _KEY_CACHE_LIMIT:
                KEY_CACHE[key] = safe
                if safe == key:
                    SAFE_KEYS.add(key)
        return safe
    # Non-str keys are not cached: 1, 1.0 and True hash alike but render differently.
    return sanitize_key(text_of(key))


# -- values --------------------------------------------------------------------------------------


def text_of(value: object) -> str:
    """``value`` as text, never raising: ``<unrenderable TypeName>`` when that fails.

    A str subclass gives its exact str (an overridden ``__str__`` cannot dodge escaping); an int
    its digits (``int.__repr__``: an IntEnum would print its name); bytes are decoded as UTF-8.
    """
    try:
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return int.__repr__(value)  # raises beyond sys.get_int_max_str_digits()
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", errors="replace")
        return str.__str__(str(value))
    except Exception:
        return f"<unrenderable {type(value).__name__}>"


def truncate(text: str, max_len: int) -> str:
    """``text`` cut to ``max_len`` characters, the last of them the truncation marker."""
    if len(text) <= max_len:
        return text
    return text[: max_len - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def _text(value: str, max_len: int = MAX_CHARS) -> str:
    if not value.isascii():
        value = value.translate(SURROGATES)
    return truncate(value, max_len)


def safe_value(value: Any, max_len: int = MAX_CHARS) -> str | bool | int | float | None:
    """``value`` as a str (at most ``max_len`` characters), bool, int (64-bit) or float; anything
    else as its text, never raising. ``None`` stays ``None`` (the key is removed)."""
    kind = type(value)
    if kind is str:
        return _text(value, max_len)
    if kind is bool or kind is float or value is None:
        return cast("bool | float | None", value)
    if kind is int:
        return cast(int, value) if value in INT64 else _text(text_of(value), max_len)
    try:
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            number = int.__index__(value)
            return number if number in INT64 else _text(text_of(number), max_len)
        if isinstance(value, float):
            return float.__float__(value)
    except Exception:
        return f"<unrenderable {kind.__name__}>"
    return _text(text_of(value), max_len)


def normalise(fields: MutableMapping[Any, Any], max_len: int) -> None:
    """Make an event's fields what every sink can carry, in place (keys keep their positions):
    safe keys, safe values cut to ``max_len``, no ``None``. One pass over the usual event (str
    keys already safe, str/int/float/bool values), which changes nothing."""
    max_len = max(max_len, MIN_MAX_LEN)
    drop = False
    for key, value in fields.items():  # assigning to an existing key keeps the dict's size
        kind = type(value)
        if kind is str:
            if len(value) > max_len or not value.isascii():
                fields[key] = _text(value, max_len)
        elif kind is not float and kind is not bool and not (kind is int and value in INT64):
            if value is None:
                drop = True
            else:
                fields[key] = safe_value(value, max_len)
    renamed = not SAFE_KEYS.issuperset(fields) and any(
        type(key) is not str or safe_key(key) != key for key in fields
    )
    if drop:
        for key in [k for k, v in fields.items() if v is None]:
            del fields[key]
    if renamed:
        items = list(fields.items())
        fields.clear()
        for key, value in items:
            # Two keys the same once made safe: the later value, in the earlier's place.
            fields[safe_key(key)] = value
