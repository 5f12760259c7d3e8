"""``make compose-check`` passes on the repository and catches the mistakes it is there for."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import compose_check
from tests.compose_check import ROOT, check_collector, check_topology, load

Files = tuple[dict[str, Any], dict[str, Any], str]


def test_make_compose_check_passes() -> None:
    """The real target on the real files exits 0 (the venv is not rebuilt for it)."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed", pytrace=False)
    result = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "compose-check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "compose-check: ok" in result.stdout


@pytest.fixture
def files() -> Files:
    compose, config, dockerfile = load()
    return copy.deepcopy(compose), copy.deepcopy(config), dockerfile


def test_pipeline_with_undefined_exporter_is_caught(
    files: Files,
) -> None:
    """A pipeline naming an exporter that is not defined is reported by name."""
    _, config, _ = files
    config["service"]["pipelines"]["logs"]["exporters"].append("otlphttp/backend")
    assert any("'otlphttp/backend', not defined" in p for p in check_collector(config))


def test_pipeline_without_memory_limiter_first_is_caught(
    files: Files,
) -> None:
    """memory_limiter must come first in every pipeline."""
    _, config, _ = files
    config["service"]["pipelines"]["traces"]["processors"] = ["batch", "memory_limiter"]
    assert ["collector: pipeline traces must start with memory_limiter"] == check_collector(config)


def test_app_pointing_elsewhere_is_caught(files: Files) -> None:
    """An app endpoint that is not the collector's receiver for its protocol is reported."""
    compose, config, dockerfile = files
    compose["services"]["app"]["environment"]["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"  # still :4318
    problems = check_topology(compose, config, dockerfile, ROOT)
    assert any("expected http://collector:4317" in p for p in problems), problems


def test_unpublished_receiver_port_and_unmounted_output_are_caught(
    files: Files,
) -> None:
    """Dropping the 4317 port and the output volume is reported for both."""
    compose, config, dockerfile = files
    collector = compose["services"]["collector"]
    collector["ports"] = [p for p in collector["ports"] if "4317" not in str(p)]
    collector["volumes"] = [v for v in collector["volumes"] if "/data" not in str(v)]
    problems = check_topology(compose, config, dockerfile, ROOT)
    assert any("otlp grpc port 4317" in p for p in problems), problems
    assert any("file exporter file/logs" in p for p in problems), problems


def test_unpinned_collector_image_is_caught(files: Files) -> None:
    """The collector image must name a version, not latest."""
    compose, config, dockerfile = files
    compose["services"]["collector"]["image"] = "otel/opentelemetry-collector-contrib:latest"
    assert any("not a pinned" in p for p in check_topology(compose, config, dockerfile, ROOT))


def test_broken_checkout_fails_the_command(tmp_path: Path) -> None:
    """The command exits 1 and names the problem when the files disagree."""
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "collector-config").mkdir()
    text = (ROOT / "collector-config" / "config.yaml").read_text().replace("0.0.0.0:4318", "0.0.0.0:4319")
    (tmp_path / "collector-config" / "config.yaml").write_text(text)
    assert 1 == compose_check.main(["compose_check", str(tmp_path)])
