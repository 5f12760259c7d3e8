"""Gunicorn integration, attached by patching Gunicorn's classes: no config edit, no hook
function replaced, so the user's own hooks (``post_fork``, ``worker_abort``, ...) run untouched."""

from __future__ import annotations

import logging
from typing import Any

from .. import _guard, event
from . import rejected, saturation
from .wsgi import CanonicalWSGI

_logger = logging.getLogger("otel_canonical_logs")

__all__ = ["CanonicalWSGI", "patch"]


def _patched(cls: Any, name: str, make: Any) -> None:
    original = getattr(cls, name)
    if getattr(original, "_otel_canonical_logs", False):
        return
    replacement = make(original)
    replacement._otel_canonical_logs = True
    replacement.__wrapped__ = original
    setattr(cls, name, replacement)


def patch() -> None:
    """Attach to Gunicorn if it is installed: WSGI wrapper, watchdog, saturation sampler."""
    try:
        from gunicorn.arbiter import Arbiter
        from gunicorn.workers.base import Worker
    except ImportError:
        return

    def make_start(original: Any) -> Any:
        def start(self: Any) -> Any:
            result = original(self)
            with _guard.guard("gunicorn.arbiter_start"):
                saturation.start_sampler(self)
            return result

        return start

    def make_init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            with _guard.guard("gunicorn.worker_init"):
                saturation.assign_slot(self)

        return __init__

    def make_load_wsgi(original: Any) -> Any:
        def load_wsgi(self: Any) -> None:
            original(self)
            with _guard.guard("gunicorn.load_wsgi"):
                if not isinstance(self.wsgi, CanonicalWSGI):
                    self.wsgi = CanonicalWSGI(self.wsgi, self)

        return load_wsgi

    _patched(Arbiter, "start", make_start)
    _patched(Worker, "__init__", make_init)
    _patched(Worker, "load_wsgi", make_load_wsgi)
    # Requests Gunicorn rejects before the application sees them (400, 414, 431...) get a line too.
    from gunicorn import util

    _patched(Worker, "handle_error", rejected.make_handle_error)
    _patched(util, "write_error", rejected.make_write_error)
    event.server_fields = saturation.fields
