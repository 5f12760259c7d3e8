"""``make compose-check`` passes on the repository and catches the mistakes it is there for."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import compose_check
from tests.compose_check import (
    DASHBOARD,
    ROOT,
    check_collector,
    check_dashboard,
    check_topology,
    load,
    load_dashboard,
)
from tests.logql import LogQLError
from tests.logql import parse as parse_logql

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
    for folder in ("loki-config", "grafana"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "collector-config").mkdir()
    text = (ROOT / "collector-config" / "config.yaml").read_text().replace("0.0.0.0:4318", "0.0.0.0:4319")
    (tmp_path / "collector-config" / "config.yaml").write_text(text)
    assert 1 == compose_check.main(["compose_check", str(tmp_path)])


# -- the dashboard profile ---------------------------------------------------------------------


DashboardFiles = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], Any]


@pytest.fixture
def dashboard_files() -> DashboardFiles:
    """compose, collector config, Loki config, Grafana data sources, dashboard: copies to break."""
    compose, config, _ = load()
    loki, datasources, _, dashboard = load_dashboard()
    return copy.deepcopy((compose, config, loki, datasources, dashboard))


def _dashboard_problems(files: DashboardFiles) -> list[str]:
    compose, config, loki, datasources, dashboard = files
    providers = load_dashboard()[2]
    return check_dashboard(compose, config, loki, datasources, providers, dashboard, ROOT)


def test_the_dashboard_profile_is_consistent() -> None:
    """On the repository's files: no problem, and every panel has a query that was read."""
    compose, config, _ = load()
    loki, datasources, providers, dashboard = load_dashboard()
    assert [] == check_dashboard(compose, config, loki, datasources, providers, dashboard, ROOT)
    queries = [parse_logql(t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert len(queries) >= 15
    assert {"service_name"} == set().union(*(q.stream_labels for q in queries))


@pytest.mark.parametrize(
    ("expr", "keys"),
    [
        (
            'quantile_over_time(0.95, {service_name="$service"} | event_type="request" '
            "| unwrap resp_time [$__auto]) by (req_route)",
            {"event_type", "resp_time", "req_route"},
        ),
        (
            'sum(count_over_time({service_name="s"} | event_type=~"request|timeout" | resp_status >= 500 or '
            'event_type="timeout" [$__range])) / sum(count_over_time({service_name="s"} [5m]))',
            {"event_type", "resp_status"},
        ),
        ('{service_name="s"} |= "boom" != "health" | resp_time > 1.5', {"resp_time"}),
        (
            'topk(10, sum without (db_n1_sql) (rate({service_name="s"} | db_n1_loc != "" [1m])))',
            {"db_n1_sql", "db_n1_loc"},
        ),
    ],
)
def test_logql_reader_finds_every_key(expr: str, keys: set[str]) -> None:
    """Label filters, chained filters, unwrap, by/without: each key the query reads."""
    assert keys == parse_logql(expr).keys


@pytest.mark.parametrize(
    "expr",
    [
        '{service_name="s"} | logfmt | resp_time > 1',
        'sum(count_over_time({service_name="s"} [5m])',
        'frobnicate({service_name="s"})',
        "count_over_time(resp_time [5m])",
        '{service_name="s"} | resp_time >',
        '{service_name="s"} # comment',
    ],
)
def test_logql_reader_refuses_what_it_cannot_vouch_for(expr: str) -> None:
    """A parser stage, unbalanced brackets, an unknown function, no selector, a cut filter."""
    with pytest.raises(LogQLError):
        parse_logql(expr)


def test_a_query_on_a_key_outside_the_registry_is_caught(dashboard_files: DashboardFiles) -> None:
    """A panel reading a field the line does not have is named with the field."""
    dashboard = dashboard_files[4]
    target = dashboard["panels"][6]["targets"][1]
    target["expr"] = target["expr"].replace("unwrap resp_time", "unwrap latency_ms")
    problems = _dashboard_problems(dashboard_files)
    assert any("reads 'latency_ms', not in the field registry" in p for p in problems), problems


def test_a_panel_on_another_data_source_is_caught(dashboard_files: DashboardFiles) -> None:
    """Every panel and query uses the provisioned Loki data source's uid."""
    dashboard_files[4]["panels"][0]["targets"][0]["datasource"] = {"type": "loki", "uid": "elsewhere"}
    problems = _dashboard_problems(dashboard_files)
    assert any("uses data source 'elsewhere'" in p for p in problems), problems


def test_a_collector_not_exporting_to_loki_is_caught(dashboard_files: DashboardFiles) -> None:
    """The logs pipeline must export to Loki's OTLP endpoint on Loki's port."""
    config = dashboard_files[1]
    config["service"]["pipelines"]["logs"]["exporters"].remove("otlphttp/loki")
    config["exporters"]["otlphttp/loki"]["endpoint"] = "http://loki:3200/otlp"
    problems = _dashboard_problems(dashboard_files)
    assert any("does not export to otlphttp/loki" in p for p in problems), problems
    assert any("expected http://loki:3100/otlp" in p for p in problems), problems


def test_a_dashboard_without_a_view_is_caught(dashboard_files: DashboardFiles) -> None:
    """Dropping the saturation panels is reported as a missing view."""
    dashboard = dashboard_files[4]
    dashboard["panels"] = [p for p in dashboard["panels"] if "g_w_active" not in json.dumps(p)]
    problems = _dashboard_problems(dashboard_files)
    assert any("no panel shows saturation" in p for p in problems), problems


def test_a_broken_dashboard_file_fails_the_command(tmp_path: Path) -> None:
    """Invalid JSON in the dashboard: the command exits 1 and says so."""
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("collector-config", "loki-config", "grafana"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / DASHBOARD).write_text("{not json")
    assert 1 == compose_check.main(["compose_check", str(tmp_path)])
