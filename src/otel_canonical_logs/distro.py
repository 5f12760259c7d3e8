"""The OpenTelemetry distro and configurator: environment defaults, sampler, processor wiring."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry._logs import get_logger_provider
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler
from opentelemetry.trace import get_tracer_provider
from opentelemetry.util._importlib_metadata import EntryPoint

from . import _export, _gevent, _guard, _otel, _support
from ._runtime import runtime
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
        # First, before the configurator and instrumentors import anything more: gevent workers
        # need gevent's patches in place before Django and the SDK create locks and threads.
        with _guard.guard("configure.gevent"):
            _gevent.patch_early()
        # One line on stderr when an installed version is one the matrix never tested.
        with _guard.guard("configure.versions"):
            _support.warn_untested()
        env.setdefault("OTEL_PYTHON_CONFIGURATOR", "canonical_logs")
        # HTTP needs nothing from the worker beyond a socket; gRPC works too (each worker builds
        # its own channel after fork, see _export) but starts gRPC's own threads in every worker.
        env.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        # Export only when the user points us at a collector: the line on stdout needs none,
        # and a missing collector must not fill the terminal with connection errors.
        exporter = "otlp" if any(env.get(v) for v in _ENDPOINT_VARS) else "none"
        env.setdefault("OTEL_TRACES_EXPORTER", exporter)
        env.setdefault("OTEL_LOGS_EXPORTER", exporter)
        # Metrics only when asked for: the line carries each request's status and timings, and
        # the Django instrumentor's per-request histogram and counter cost about 55 µs when
        # recorded. OTEL_METRICS_EXPORTER=otlp turns them on.
        env.setdefault("OTEL_METRICS_EXPORTER", "none")
        # process.pid (and parent pid, runtime) in the resource. The SDK re-runs process-dependent
        # detectors in the child after fork, so each Gunicorn worker exports its own pid and
        # service.instance.id, not the arbiter's.
        env.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "process")
        _warn_grpc_fork_support_off(env)

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        if entry_point.name == "django":
            from .instrumentation import django as django_integration

            django_integration.instrument(entry_point.load(), **kwargs)
            return
        super().load_instrumentor(entry_point, **kwargs)


_GRPC_PROTOCOL_VARS = (
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
)


def _warn_grpc_fork_support_off(env: Mapping[str, str]) -> None:
    # The SDK builds its exporters, gRPC channels included, in Gunicorn's arbiter; with gRPC's
    # fork support switched off, grpcio (1.85) crashes the forked workers with SIGSEGV.
    grpc = any(env.get(v, "").strip().lower() == "grpc" for v in _GRPC_PROTOCOL_VARS)
    if grpc and env.get("GRPC_ENABLE_FORK_SUPPORT", "").strip().lower() in ("0", "false", "no", "off"):
        _logger.warning(
            "otel_canonical_logs: GRPC_ENABLE_FORK_SUPPORT=%s with the OTLP gRPC exporter crashes pre-fork "
            "server workers; leave it unset (or 1), or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            env["GRPC_ENABLE_FORK_SUPPORT"],
        )


def _configured_sampler() -> Sampler:
    # The SDK's own resolution of OTEL_TRACES_SAMPLER / _ARG, so every name it knows works here.
    return _otel.configured_sampler() or DEFAULT_ON


def _metrics_go_nowhere() -> bool:
    env = os.environ
    exporters = env.get("OTEL_METRICS_EXPORTER", "none").strip().lower()
    return exporters in ("", "none") and not env.get("OTEL_PYTHON_METER_CONFIGURATOR")


class CanonicalLogsConfigurator(_OTelSDKConfigurator):
    """The SDK configurator, plus: every span recorded, our processor on the tracer provider."""

    def _configure(self, **kwargs: Any) -> None:
        sampler = kwargs.pop("sampler", None) or _configured_sampler()
        # Record every request for the canonical line; export only what the sampler picks.
        kwargs["sampler"] = RecordEverythingSampler(sampler)
        # Batch processors with capped queues and counted drops, around exporters rebuilt in
        # each forked worker (see _export); a caller's own choice wins.
        args_map = kwargs.get("exporter_args_map")
        kwargs.setdefault(
            "export_span_processor", functools.partial(_export.span_processor, args_map=args_map)
        )
        kwargs.setdefault(
            "export_log_record_processor", functools.partial(_export.log_record_processor, args_map=args_map)
        )
        if "meter_configurator" not in kwargs and _metrics_go_nowhere():
            # Django's instrumentor records two metrics per request; with no metric exporter the
            # SDK would still build a measurement for each. Disabled meters make them no-ops.
            disabled = _otel.disabled_meter_configurator()
            if disabled is not None:
                kwargs["meter_configurator"] = disabled
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        with _guard.guard("configure.export_logging"):
            _export.limit_export_logging()
        with _guard.guard("configure.resource_hash"):
            _export.cache_resource_hash()
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
    if runtime.processor is not None:
        return
    logs = os.environ.get("OTEL_LOGS_EXPORTER", "none").strip().lower() not in ("", "none")
    logger_provider = get_logger_provider() if logs else None
    processor = runtime.build(logger_provider)
    provider.add_span_processor(processor)
    processor.watch(provider)
    from .gunicorn import patch as patch_gunicorn

    patch_gunicorn()
