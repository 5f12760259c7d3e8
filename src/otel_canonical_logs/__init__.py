"""otel-canonical-logs: one canonical log line per Django request served by Gunicorn."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
