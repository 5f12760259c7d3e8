"""The OpenTelemetry distro and configurator: environment defaults, sampler, processor wiring."""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry._logs import get_logger_provider
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler
from opentelemetry.trace import get_tracer_provider
from opentelemetry.util._importlib_metadata import EntryPoint

from . import _guard, _runtime
from .sampling import RecordEverythingSampler

_logger = logging.getLogger("otel_canonical_logs")

_ENDPOINT_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)


class CanonicalLogsDistro(BaseDistro):  # type: ignore[misc]
    """Sets defaults with ``os.environ.setdefault`` only: configure, never override the user."""

    def _configure(self, **kwargs: Any) -> None:
        env = os.environ
        env.setdefault("OTEL_PYTHON_CONFIGURATOR", "canonical_logs")
        # The gRPC exporter's channel does not survive Gunicorn's fork; HTTP does.
        env.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        # Export only when the user points us at a collector: the line on stdout needs none,
        # and a missing collector must not fill the terminal with connection errors.
        exporter = "otlp" if any(env.get(v) for v in _ENDPOINT_VARS) else "none"
        env.setdefault("OTEL_TRACES_EXPORTER", exporter)
        env.setdefault("OTEL_LOGS_EXPORTER", exporter)
        env.setdefault("OTEL_METRICS_EXPORTER", exporter)

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        if entry_point.name == "django":
            from .instrumentation import django as django_integration

            django_integration.instrument(entry_point.load(), **kwargs)
            return
        super().load_instrumentor(entry_point, **kwargs)


def _configured_sampler() -> Sampler:
    # The SDK's own resolution of OTEL_TRACES_SAMPLER / _ARG, so every name it knows works here.
    from opentelemetry.sdk._configuration import _get_sampler, _import_sampler

    return _import_sampler(_get_sampler()) or DEFAULT_ON


class CanonicalLogsConfigurator(_OTelSDKConfigurator):
    """The SDK configurator, plus: every span recorded, our processor on the tracer provider."""

    def _configure(self, **kwargs: Any) -> None:
        sampler = kwargs.pop("sampler", None) or _configured_sampler()
        # Record every request for the canonical line; export only what the sampler picks.
        kwargs["sampler"] = RecordEverythingSampler(sampler)
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        with _guard.guard("configure"):
            install()


def install() -> None:
    """Attach the canonical-log processor to the global tracer provider (once)."""
    provider = get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        _logger.warning(
            "otel_canonical_logs: the tracer provider is %s, not the SDK's; no canonical lines",
            type(provider).__name__,
        )
        return
    if _runtime.processor is not None:
        return
    logs = os.environ.get("OTEL_LOGS_EXPORTER", "none").strip().lower() not in ("", "none")
    logger_provider = get_logger_provider() if logs else None
    provider.add_span_processor(_runtime.build(logger_provider))
    from .gunicorn import patch as patch_gunicorn

    patch_gunicorn()
