"""For deployments that cannot change the start command: put ``import
otel_canonical_logs.gunicorn.auto`` in ``gunicorn.conf.py`` and get what
``opentelemetry-instrument gunicorn ...`` gives (distro, configurator, instrumentors, Gunicorn
integration). Harmless when ``opentelemetry-instrument`` already did it."""

from __future__ import annotations

from .._runtime import runtime

if runtime.processor is None:
    from opentelemetry.instrumentation.auto_instrumentation import initialize

    initialize()
