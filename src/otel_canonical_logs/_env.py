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

CANONICAL_LOGS_N1_MIN_QUERIES = "CANONICAL_LOGS_N1_MIN_QUERIES"
"""How long a run of consecutive executions of one normalised statement, after a different
statement, must be to be an N+1 run (``db_n1_*``; default 5, at least 2)."""

CANONICAL_LOGS_N1_MIN_TIME = "CANONICAL_LOGS_N1_MIN_TIME"
"""The total time, in seconds, an N+1 run's queries must take to count (default 0: any)."""

CANONICAL_LOGS_USER = "CANONICAL_LOGS_USER"
"""``true`` (default) puts the authenticated user's primary key on the line (``usr_id``) when the
application loaded ``request.user`` itself; ``false`` leaves it off."""

CANONICAL_LOGS_KEEP = "CANONICAL_LOGS_KEEP"
"""The rules that keep (export, complete) the trace of a request the head sampler did not sample,
comma-separated: ``error``, ``timeout``, ``stuck``, ``partial_failure``, ``slow``, ``n_plus_one``
(default: all of them); ``none`` turns keeping off."""

CANONICAL_LOGS_KEEP_SLOW = "CANONICAL_LOGS_KEEP_SLOW"
"""The ``slow`` keep rule's threshold: ``resp_time`` in seconds at or above which a request's trace
is kept (default 2)."""

CANONICAL_LOGS_KEEP_MAX_SPANS = "CANONICAL_LOGS_KEEP_MAX_SPANS"
"""How many child spans and span-less operations one unsampled request records for keeping
(default 1000); past that they are still counted on the line, and the kept trace says so."""

CANONICAL_LOGS_SATURATION_INTERVAL = "CANONICAL_LOGS_SATURATION_INTERVAL"
"""Seconds between the Gunicorn arbiter's ``saturation`` events (default 10, fractions allowed,
at least 0.1); ``0`` turns them off."""

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


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    """Read a number setting (>= ``minimum``); a bad value is reported by name and the default used."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        _logger.warning("%s=%r is not a number >= %s; using the default %s", name, raw, minimum, default)
        return default
    return value


def env_list(name: str, default: tuple[str, ...], choices: tuple[str, ...]) -> tuple[str, ...]:
    """Read a comma-separated subset of ``choices`` (``none``: the empty set), in ``choices``'
    order; unknown names are reported by name and left out."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    names = {part.strip().lower() for part in raw.split(",") if part.strip()}
    if names == {"none"}:
        return ()
    unknown = sorted(names - set(choices))
    if unknown:
        _logger.warning("%s: %s not one of %s; ignored", name, ", ".join(unknown), "/".join(choices))
    return tuple(c for c in choices if c in names)


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
