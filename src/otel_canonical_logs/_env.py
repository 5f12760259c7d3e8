"""Every environment variable the package reads, in one place, each with what it does."""

from __future__ import annotations

import logging
import os

_logger = logging.getLogger("otel_canonical_logs")

CANONICAL_LOGS_VALUE_MAX = "CANONICAL_LOGS_VALUE_MAX"
"""Maximum length, in characters, of one value on the line (default 2048); longer values are cut
and end with a truncation marker."""

CANONICAL_LOGS_STDOUT = "CANONICAL_LOGS_STDOUT"
"""``true`` (default) writes each event as one logfmt line on stdout; ``false`` turns stdout off."""

CANONICAL_LOGS_FORMAT = "CANONICAL_LOGS_FORMAT"
"""How each event is written on stdout: ``logfmt`` (default) or ``json`` (one JSON object per line,
same keys, order and value cap, with real JSON numbers and booleans)."""

CANONICAL_LOGS_MAX_OPEN_REQUESTS = "CANONICAL_LOGS_MAX_OPEN_REQUESTS"
"""How many requests whose root span has not ended are tracked per process (default 1000); past
that, the oldest is dropped and counted, so a leaked root span cannot grow memory."""

CANONICAL_LOGS_DB_MAX_STATEMENTS = "CANONICAL_LOGS_DB_MAX_STATEMENTS"
"""How many distinct SQL texts one request tracks for duplicate detection (default 500); queries
past that are still counted in ``db_queries``/``db_time``."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """Read a positive integer setting; a bad value is reported by name and the default used."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        _logger.warning("%s=%r is not an integer >= %d; using the default %d", name, raw, minimum, default)
        return default
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """Read a setting that is one of ``choices`` (case-insensitive); a bad value is reported by
    name and the default used."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in choices:
        return value
    _logger.warning("%s=%r is not one of %s; using the default %s", name, raw, "/".join(choices), default)
    return default


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean setting; a bad value is reported by name and the default used."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    _logger.warning("%s=%r is not a boolean (true/false); using the default %s", name, raw, default)
    return default
