"""The one way internal errors are contained: logged once per kind, counted, never raised."""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_logger = logging.getLogger("otel_canonical_logs")

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def _after_fork() -> None:
    # A thread of the parent (the Gunicorn arbiter's sampler) may have held it at the fork.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

# Tests install a hook here so that a swallowed internal error fails the test instead of hiding.
on_internal_error: Callable[[str, BaseException], None] | None = None

LOG_PREFIX = "otel_canonical_logs internal error"


def report(kind: str, exc: BaseException) -> None:
    """Count an internal error of ``kind``; log it with its traceback the first time only."""
    try:
        with _lock:
            _counts[kind] += 1
            first = _counts[kind] == 1
        if first:
            _logger.error(
                "%s in %s (logged once; later ones are only counted): %r",
                LOG_PREFIX,
                kind,
                exc,
                exc_info=exc,
            )
        hook = on_internal_error
        if hook is not None:
            hook(kind, exc)
    except Exception:
        pass


@contextmanager
def guard(kind: str) -> Iterator[None]:
    """Run a block whose failure must not reach the host: ``with guard("sink.stdout"): ...``."""
    try:
        yield
    except Exception as exc:
        report(kind, exc)


def error_counts() -> dict[str, int]:
    """Internal errors seen so far in this process, by kind."""
    with _lock:
        return dict(_counts)


def count(kind: str, n: int = 1) -> None:
    """Count an expected loss (a dropped event, an evicted request) without logging it."""
    with _lock:
        _counts[kind] += n
