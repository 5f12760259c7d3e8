"""otel-canonical-logs: one canonical log line per Django request served by Gunicorn.

The public API: ``Context`` (application fields on the current request's line),
``register_instrumenter`` (enrichers run on every event), ``on_error`` (a helper's failure as a
``partial_failure`` event). Test helpers are in ``otel_canonical_logs.testing``.
"""

from __future__ import annotations

from ._version import __version__
from .context import Context
from .errors import on_error
from .instrumenters import (
    Enricher,
    Instrumenter,
    register_instrumenter,
    unregister_instrumenter,
)

__all__ = [
    "Context",
    "Enricher",
    "Instrumenter",
    "__version__",
    "on_error",
    "register_instrumenter",
    "unregister_instrumenter",
]
