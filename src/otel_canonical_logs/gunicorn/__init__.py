"""Gunicorn integration, attached without any change to the user's Gunicorn config."""

from __future__ import annotations

import logging
from typing import Any

from .. import _guard
from .wsgi import CanonicalWSGI

_logger = logging.getLogger("otel_canonical_logs")

__all__ = ["CanonicalWSGI", "patch"]


def patch() -> None:
    """Wrap every Gunicorn worker's WSGI app so requests that never reach Django get a line."""
    try:
        from gunicorn.workers.base import Worker
    except ImportError:
        return
    original = Worker.load_wsgi
    if getattr(original, "_otel_canonical_logs", False):
        return

    def load_wsgi(self: Any) -> None:
        original(self)
        try:
            if not isinstance(self.wsgi, CanonicalWSGI):
                self.wsgi = CanonicalWSGI(self.wsgi)
        except Exception as exc:
            _guard.report("gunicorn.load_wsgi", exc)

    load_wsgi._otel_canonical_logs = True  # type: ignore[attr-defined]
    Worker.load_wsgi = load_wsgi
