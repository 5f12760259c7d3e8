"""The distro under the real ``opentelemetry-instrument``: defaults set, the user's settings kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

PROBE = """
import json, os
from opentelemetry import trace
from otel_canonical_logs._runtime import runtime
provider = trace.get_tracer_provider()
print(json.dumps({
    "sampler": provider.sampler.get_description(),
    "processor": runtime.processor is not None,
    "env": {k: os.environ.get(k) for k in (
        "OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_PYTHON_CONFIGURATOR")},
}))
"""


def _probe(**env: str) -> dict:  # type: ignore[type-arg]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_without_an_endpoint_nothing_is_exported() -> None:
    """No OTLP endpoint: every exporter defaults to none, so a missing collector is silent."""
    got = _probe()
    assert {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    } == {k: got["env"][k] for k in ("OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_METRICS_EXPORTER")}
    assert ("http/protobuf", "canonical_logs", True) == (
        got["env"]["OTEL_EXPORTER_OTLP_PROTOCOL"],
        got["env"]["OTEL_PYTHON_CONFIGURATOR"],
        got["processor"],
    )


def test_with_an_endpoint_exporters_default_to_otlp() -> None:
    """Pointing OTEL_EXPORTER_OTLP_ENDPOINT at a collector turns OTLP export of traces and
    canonical logs on; metrics stay off."""
    got = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert ("otlp", "otlp", "none") == (
        got["env"]["OTEL_TRACES_EXPORTER"],
        got["env"]["OTEL_LOGS_EXPORTER"],
        got["env"]["OTEL_METRICS_EXPORTER"],
    )


def test_metrics_are_exported_only_when_asked_for() -> None:
    """A user who asks for metrics gets them: OTEL_METRICS_EXPORTER=otlp is kept."""
    got = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_METRICS_EXPORTER="otlp")
    assert "otlp" == got["env"]["OTEL_METRICS_EXPORTER"]


def test_user_settings_are_never_overridden() -> None:
    """Values the user set stay as they are."""
    got = _probe(OTEL_TRACES_EXPORTER="console", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    assert ("console", "grpc") == (
        got["env"]["OTEL_TRACES_EXPORTER"],
        got["env"]["OTEL_EXPORTER_OTLP_PROTOCOL"],
    )


def test_configured_sampler_decides_export_and_everything_is_recorded() -> None:
    """The user's sampler is kept inside ours, which records every span for the line."""
    got = _probe(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1")
    assert got["sampler"].startswith("RecordEverything{ParentBased{root:TraceIdRatioBased{0.1}")
