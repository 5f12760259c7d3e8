"""SQL text normalised for N+1 detection: literals, numbers and placeholders become ``?``,
``IN (...)`` lists collapse, whitespace runs become one space. Raw SQL with inlined values then
matches the same statement with placeholders: ``WHERE id = 7`` and ``WHERE id = %s`` are one."""

from __future__ import annotations

import re

# One pass, left to right, so a quote inside a number or a digit inside a string is never seen
# twice: quoted strings (SQL's '' and MySQL's backslash escapes; an unterminated one runs to the
# end, so no later quote starts a scan of its own: linear in the text), numbered and named
# placeholders, hex, then numbers that are not part of an identifier (``U0``, ``"col1"`` stay).
_VALUES = re.compile(
    r"""'(?:[^'\\]++|\\[\s\S]|'')*+(?:'|\Z)"""
    r"|\$\d++"
    r"|%(?:\(\w++\))?s"
    r"|(?<![\w:]):[A-Za-z_]\w*+"
    r"|\b0[xX][0-9a-fA-F]++\b"
    r"|(?<![\w$.])\d++(?:\.\d++)?(?:[eE][-+]?\d++)?"
)
_IN_LIST = re.compile(r"\bIN\s*+\(\s*+\?(?:\s*+,\s*+\?)*+\s*+\)", re.IGNORECASE)
_SPACE = re.compile(r"\s++")

# Normalised texts by raw text, for every request of the process: an ORM's statements are the
# same texts request after request, so a request pays a dictionary look-up, not three regular
# expressions. Bounded (raw SQL with inlined values has no end of distinct texts): past the cap
# it starts over.
_CACHE: dict[str, str] = {}
CACHE_MAX = 4096
CACHE_TEXT_MAX = 8192  # longer texts (a bulk insert with inlined rows) are not kept


def normalise(sql: str) -> str:
    """The statement's shape: ``SELECT * FROM t WHERE id IN (1, 2) AND name = 'x'`` gives
    ``SELECT * FROM t WHERE id IN (...) AND name = ?``."""
    text = _VALUES.sub("?", sql)
    if "?" in text:
        text = _IN_LIST.sub("IN (...)", text)
    return _SPACE.sub(" ", text).strip()


def normalised(sql: str) -> str:
    """:func:`normalise`, remembered across requests."""
    text = _CACHE.get(sql)
    if text is None:
        text = normalise(sql)
        if len(sql) <= CACHE_TEXT_MAX:
            if len(_CACHE) >= CACHE_MAX:
                _CACHE.clear()
            _CACHE[sql] = text
    return text
