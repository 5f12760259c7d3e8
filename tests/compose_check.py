"""``make compose-check``: docker-compose.yml, collector-config/config.yaml, the Dockerfile and
the ``dashboard`` profile's files (loki-config/, grafana/) agree.

Docker is not needed: the files are parsed and cross-checked. Every pipeline references defined
components, the app's OTLP endpoint is the collector's receiver, ports and volumes line up; the
collector's Loki exporter, Loki's config and Grafana's data source name the same Loki; the
dashboard is valid JSON whose every query (LogQL, parsed by tests/logql.py) reads only keys of
the field registry and uses the provisioned data source.

    python -m tests.compose_check [REPO_ROOT]
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from otel_canonical_logs.fields import KEYS, SATURATION_KEYS
from tests.logql import LogQLError
from tests.logql import parse as parse_logql

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = "docker-compose.yml"
COLLECTOR_CONFIG = "collector-config/config.yaml"
SECTIONS = {"receivers": "receivers", "processors": "processors", "exporters": "exporters"}
PINNED_COLLECTOR = re.compile(r"otel/opentelemetry-collector-contrib:\d+\.\d+\.\d+$")
OTLP_PORTS = {"grpc": 4317, "http": 4318}
LOKI_CONFIG = "loki-config/loki.yaml"
DATASOURCES = "grafana/provisioning/datasources/loki.yaml"
DASHBOARD_PROVIDERS = "grafana/provisioning/dashboards/canonical.yaml"
DASHBOARD = "grafana/dashboards/canonical-requests.json"
LOKI_EXPORTER = "otlphttp/loki"
PINNED = re.compile(r"[\w./-]+:\d+\.\d+\.\d+$")
# Loki's stream label for the resource's service.name; and the label Loki sets on a sample whose
# `unwrap` failed (a key missing or not a number), which `| __error__=""` drops. Everything else a
# query reads must be a key of the registry.
STREAM_LABELS = {"service_name"}
LOKI_LABELS = {"__error__"}
REGISTRY = set(KEYS) | set(SATURATION_KEYS)
# What the dashboard must show, as (what, a key its queries must read).
VIEWS = {
    "latency by route": "req_route",
    "latency": "resp_time",
    "error rate": "resp_status",
    "N+1 offenders": "db_n1_loc",
    "exceptions": "exc_type",
    "timeouts": "timeout_cause_loc",
    "saturation": "g_w_active",
    "backlog": "g_backlog",
}


def load(root: Path = ROOT) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Parse docker-compose.yml and the collector config, read the Dockerfile."""
    compose = yaml.safe_load((root / COMPOSE).read_text(encoding="utf-8"))
    collector = yaml.safe_load((root / COLLECTOR_CONFIG).read_text(encoding="utf-8"))
    dockerfile = (root / "Dockerfile").read_text(encoding="utf-8")
    return compose, collector, dockerfile


def _words(command: Any) -> list[str]:
    """A compose/Docker command (string or list, possibly ``sh -c "..."``) as shell words."""
    if command is None:
        return []
    parts = shlex.split(command) if isinstance(command, str) else [str(p) for p in command]
    words: list[str] = []
    for part in parts:
        words.extend(shlex.split(part) if " " in part else [part])
    return words


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _published(service: Mapping[str, Any]) -> dict[int, int]:
    """container port -> host port, for ``"HOST:CONTAINER"`` entries."""
    ports: dict[int, int] = {}
    for entry in service.get("ports") or []:
        text = str(entry).split("/", 1)[0]
        host, _, container = text.rpartition(":")
        ports[int(container)] = int(host.rpartition(":")[2] or container)
    return ports


def _mounts(service: Mapping[str, Any]) -> list[tuple[str, PurePosixPath]]:
    """(source, target) for ``"SOURCE:TARGET[:MODE]"`` volumes."""
    mounts = []
    for entry in service.get("volumes") or []:
        source, target = str(entry).split(":")[:2]
        mounts.append((source, PurePosixPath(target)))
    return mounts


def _port_of(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def check_collector(config: Mapping[str, Any]) -> list[str]:
    """Problems inside the collector config on its own."""
    problems: list[str] = []
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    for signal in ("logs", "traces"):
        if signal not in pipelines:
            problems.append(f"collector: no {signal} pipeline")
    used: set[tuple[str, str]] = set()
    for name, pipeline in pipelines.items():
        for section in SECTIONS:
            refs = pipeline.get(section) or []
            if not refs:
                problems.append(f"collector: pipeline {name} has no {section}")
            for ref in refs:
                used.add((section, ref))
                if ref not in (config.get(section) or {}):
                    problems.append(f"collector: pipeline {name} uses {section[:-1]} {ref!r}, not defined")
        processors = pipeline.get("processors") or []
        if processors[:1] != ["memory_limiter"]:
            problems.append(f"collector: pipeline {name} must start with memory_limiter")
        if "batch" not in processors:
            problems.append(f"collector: pipeline {name} has no batch processor")
        exporters = pipeline.get("exporters") or []
        if name in ("logs", "traces"):
            kinds = {ref.split("/", 1)[0] for ref in exporters}
            for kind in ("debug", "file"):
                if kind not in kinds:
                    problems.append(f"collector: pipeline {name} has no {kind} exporter")
    for section in SECTIONS:
        for name in config.get(section) or {}:
            if (section, name) not in used:
                problems.append(f"collector: {section[:-1]} {name!r} is defined but in no pipeline")
    for ext in service.get("extensions") or []:
        if ext not in (config.get("extensions") or {}):
            problems.append(f"collector: service uses extension {ext!r}, not defined")
    protocols = ((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    for protocol, port in OTLP_PORTS.items():
        endpoint = (protocols.get(protocol) or {}).get("endpoint", "")
        if not endpoint or _port_of(endpoint) != port:
            problems.append(f"collector: otlp {protocol} receiver must listen on {port}, has {endpoint!r}")
    return problems


def _receiver_ports(config: Mapping[str, Any]) -> dict[str, int]:
    protocols = ((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    return {p: _port_of(v["endpoint"]) for p, v in protocols.items() if v and v.get("endpoint")}


def _file_paths(config: Mapping[str, Any]) -> Iterable[tuple[str, PurePosixPath]]:
    for name, exporter in (config.get("exporters") or {}).items():
        if name.split("/", 1)[0] == "file" and exporter and exporter.get("path"):
            yield name, PurePosixPath(exporter["path"])


def check_topology(
    compose: Mapping[str, Any], config: Mapping[str, Any], dockerfile: str, root: Path
) -> list[str]:
    """Problems between docker-compose.yml, the collector config and the Dockerfile."""
    problems: list[str] = []
    services = compose.get("services") or {}
    missing = [s for s in ("app", "db", "collector") if s not in services]
    if missing:
        return [f"compose: missing service(s) {missing}"]
    app, db, collector = services["app"], services["db"], services["collector"]

    image = str(collector.get("image", ""))
    if not PINNED_COLLECTOR.match(image):
        problems.append(f"compose: collector image {image!r} is not a pinned contrib version")

    # The collector reads the config file this check reads.
    config_arg = next(
        (w.split("=", 1)[1] for w in _words(collector.get("command")) if w.startswith("--config=")), ""
    )
    mounts = _mounts(collector)
    sources = {str(target): source for source, target in mounts}
    source = sources.get(config_arg)
    if source is None:
        problems.append(f"compose: collector --config={config_arg!r} is not a mounted file")
    elif (root / source).resolve() != (root / COLLECTOR_CONFIG).resolve():
        problems.append(f"compose: collector config mounted from {source!r}, not ./{COLLECTOR_CONFIG}")

    # File exporters write inside a bind-mounted folder, so the output lands on the host.
    for name, path in _file_paths(config):
        if not any(path.is_relative_to(target) and str(target) != config_arg for _, target in mounts):
            problems.append(f"compose: file exporter {name} writes {path}, which no collector volume holds")

    # OTLP ports: the receivers' ports are published.
    published = _published(collector)
    for protocol, port in _receiver_ports(config).items():
        if port not in published:
            problems.append(f"compose: collector does not publish the otlp {protocol} port {port}")

    # The app points at the collector's receiver for the protocol it uses.
    env = _env(app)
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    url = urlsplit(endpoint)
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    wanted = _receiver_ports(config).get("grpc" if protocol == "grpc" else "http")
    if url.hostname != "collector" or url.port != wanted:
        problems.append(
            f"compose: app OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r}, expected http://collector:{wanted}"
        )
    if not env.get("OTEL_SERVICE_NAME"):
        problems.append("compose: app sets no OTEL_SERVICE_NAME")
    depends = app.get("depends_on") or {}
    for needed in ("collector", "db"):
        if needed not in depends:
            problems.append(f"compose: app does not depend on {needed}")

    # The app uses PostgreSQL in the db service, with the database the db service creates.
    if env.get("EXAMPLE_DB") != "postgres" or env.get("EXAMPLE_PG_HOST") != "db":
        problems.append("compose: app must run with EXAMPLE_DB=postgres and EXAMPLE_PG_HOST=db")
    if env.get("EXAMPLE_PG_NAME") != _env(db).get("POSTGRES_DB"):
        problems.append("compose: app EXAMPLE_PG_NAME differs from db POSTGRES_DB")
    if "postgres" not in str(db.get("image", "")):
        problems.append("compose: db is not a postgres image")

    # Started with opentelemetry-instrument gunicorn, 2 workers, on the port that is published.
    build = app.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context", ".")
    if not (root / str(context) / "Dockerfile").is_file():
        problems.append(f"compose: app build context {context!r} has no Dockerfile")
    words = _words(app.get("command")) or _dockerfile_cmd(dockerfile)
    try:
        start = words.index("opentelemetry-instrument")
    except ValueError:
        problems.append("compose: app is not started with opentelemetry-instrument")
        start = -1
    if start >= 0 and words[start + 1 : start + 2] != ["gunicorn"]:
        problems.append("compose: app runs opentelemetry-instrument without gunicorn")
    if _option(words, "--workers", "-w") != "2":
        problems.append("compose: app gunicorn does not run 2 workers")
    bind = _option(words, "--bind", "-b") or ""
    app_port = int(bind.rpartition(":")[2]) if bind else 8000
    if app_port not in _published(app):
        problems.append(f"compose: app listens on {app_port}, which it does not publish")
    exposed = re.findall(r"^EXPOSE\s+(\d+)", dockerfile, re.MULTILINE)
    if str(app_port) not in exposed:
        problems.append(f"Dockerfile: EXPOSE {exposed} does not include the app port {app_port}")
    if "opentelemetry-instrument" not in _dockerfile_cmd(dockerfile):
        problems.append("Dockerfile: CMD does not start opentelemetry-instrument gunicorn")
    return problems


def _dockerfile_cmd(dockerfile: str) -> list[str]:
    match = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile, re.MULTILINE)
    return [str(w) for w in yaml.safe_load(match.group(1))] if match else []


def _option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def load_dashboard(root: Path = ROOT) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Any]:
    """Loki's config, Grafana's data sources and dashboard providers, and the dashboard JSON
    (``None`` when it is not valid JSON)."""
    loki = yaml.safe_load((root / LOKI_CONFIG).read_text(encoding="utf-8"))
    datasources = yaml.safe_load((root / DATASOURCES).read_text(encoding="utf-8"))
    providers = yaml.safe_load((root / DASHBOARD_PROVIDERS).read_text(encoding="utf-8"))
    try:
        dashboard = json.loads((root / DASHBOARD).read_text(encoding="utf-8"))
    except ValueError:
        dashboard = None
    return loki, datasources, providers, dashboard


def _panels(dashboard: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []  # inside a collapsed row


def check_queries(dashboard: Any, datasource_uid: str, service_name: str) -> list[str]:
    """Problems of the dashboard on its own: its title, data sources and every query."""
    if not isinstance(dashboard, dict):
        return [f"dashboard: {DASHBOARD} is not valid JSON"]
    problems: list[str] = []
    if dashboard.get("title") != "Canonical requests":
        problems.append(f"dashboard: title is {dashboard.get('title')!r}, not 'Canonical requests'")
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    service = variables.get("service")
    if service is None or service.get("query") != service_name:
        problems.append(
            f"dashboard: variable 'service' must default to the app's OTEL_SERVICE_NAME {service_name!r}"
        )
    read: set[str] = set()
    panels = list(_panels(dashboard))
    if not panels:
        problems.append("dashboard: no panels")
    for panel in panels:
        title = panel.get("title", "?")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"dashboard: panel {title!r} has no query")
        for source in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
            uid = (source or {}).get("uid") if isinstance(source, dict) else source
            if uid != datasource_uid:
                problems.append(
                    f"dashboard: panel {title!r} uses data source {uid!r}, not {datasource_uid!r}"
                )
        for target in targets:
            expr = target.get("expr", "")
            try:
                query = parse_logql(expr)
            except LogQLError as exc:
                problems.append(f"dashboard: panel {title!r}: {exc}: {expr}")
                continue
            for label in sorted(query.stream_labels - STREAM_LABELS):
                problems.append(f"dashboard: panel {title!r} selects on {label!r}, not a Loki stream label")
            for key in sorted(query.keys - REGISTRY - LOKI_LABELS - (query.grouped & STREAM_LABELS)):
                problems.append(f"dashboard: panel {title!r} reads {key!r}, not in the field registry")
            read |= query.keys
    for view, key in VIEWS.items():
        if key not in read:
            problems.append(f"dashboard: no panel shows {view} (no query reads {key})")
    return problems


def check_dashboard(
    compose: Mapping[str, Any],
    config: Mapping[str, Any],
    loki: Mapping[str, Any],
    datasources: Mapping[str, Any],
    providers: Mapping[str, Any],
    dashboard: Any,
    root: Path,
) -> list[str]:
    """Problems of the ``dashboard`` profile: compose services, Loki, Grafana, the collector's
    Loki exporter and the dashboard's queries."""
    problems: list[str] = []
    services = compose.get("services") or {}
    missing = [s for s in ("loki", "grafana") if s not in services]
    if missing:
        return [f"compose: missing dashboard service(s) {missing}"]
    loki_service, grafana = services["loki"], services["grafana"]
    for name, service in (("loki", loki_service), ("grafana", grafana)):
        if "dashboard" not in (service.get("profiles") or []):
            problems.append(f"compose: {name} is not in the 'dashboard' profile")
        if not PINNED.match(str(service.get("image", ""))):
            problems.append(f"compose: {name} image {service.get('image')!r} is not a pinned version")
    for name in ("app", "db", "collector"):
        if (services.get(name) or {}).get("profiles"):
            problems.append(f"compose: {name} must run without a profile")

    # Loki reads the config checked here and listens where the others send and read.
    config_arg = next(
        (w.split("=", 1)[1] for w in _words(loki_service.get("command")) if w.startswith("-config.file=")), ""
    )
    sources = {str(target): source for source, target in _mounts(loki_service)}
    source = sources.get(config_arg)
    if source is None or (root / source).resolve() != (root / LOKI_CONFIG).resolve():
        problems.append(f"compose: loki -config.file={config_arg!r} is not ./{LOKI_CONFIG} mounted")
    loki_port = int((loki.get("server") or {}).get("http_listen_port", 3100))
    if loki_port not in _published(loki_service):
        problems.append(f"compose: loki does not publish its port {loki_port}")
    limits = loki.get("limits_config") or {}
    if limits.get("allow_structured_metadata") is False:
        problems.append("loki: allow_structured_metadata is off; OTLP records would be refused")
    schemas = (loki.get("schema_config") or {}).get("configs") or []
    if not schemas or schemas[-1].get("schema") != "v13" or schemas[-1].get("store") != "tsdb":
        problems.append("loki: the newest schema must be v13 on tsdb (structured metadata)")

    # The collector sends the logs pipeline to that Loki over OTLP/HTTP.
    exporter = (config.get("exporters") or {}).get(LOKI_EXPORTER)
    logs = (((config.get("service") or {}).get("pipelines") or {}).get("logs") or {}).get("exporters") or []
    if exporter is None:
        problems.append(f"collector: no {LOKI_EXPORTER} exporter")
    else:
        url = urlsplit(str(exporter.get("endpoint", "")))
        if (url.hostname, url.port, url.path.rstrip("/")) != ("loki", loki_port, "/otlp"):
            problems.append(
                f"collector: {LOKI_EXPORTER} endpoint {exporter.get('endpoint')!r}, "
                f"expected http://loki:{loki_port}/otlp"
            )
    if LOKI_EXPORTER not in logs:
        problems.append(f"collector: the logs pipeline does not export to {LOKI_EXPORTER}")

    # Grafana: its provisioning and dashboards are the folders checked here.
    mounts = {str(target): source for source, target in _mounts(grafana)}
    if (root / mounts.get("/etc/grafana/provisioning", "-")).resolve() != (
        root / "grafana/provisioning"
    ).resolve():
        problems.append("compose: grafana does not mount ./grafana/provisioning at /etc/grafana/provisioning")
    path = str(((providers.get("providers") or [{}])[0].get("options") or {}).get("path", ""))
    dashboards = mounts.get(path)
    if dashboards is None or (root / dashboards).resolve() != (root / DASHBOARD).parent.resolve():
        problems.append(
            f"compose: grafana's dashboard provider reads {path!r}, where ./grafana/dashboards is not mounted"
        )
    loki_sources = [d for d in datasources.get("datasources") or [] if d.get("type") == "loki"]
    if len(loki_sources) != 1:
        problems.append("grafana: exactly one Loki data source must be provisioned")
        return problems
    datasource = loki_sources[0]
    url = urlsplit(str(datasource.get("url", "")))
    if (url.hostname, url.port) != ("loki", loki_port):
        problems.append(
            f"grafana: data source url {datasource.get('url')!r}, expected http://loki:{loki_port}"
        )
    service_name = _env(services.get("app") or {}).get("OTEL_SERVICE_NAME", "")
    problems.extend(check_queries(dashboard, str(datasource.get("uid", "")), service_name))
    return problems


def check(root: Path = ROOT) -> list[str]:
    """Every problem found, as one sentence each; empty when all is consistent."""
    compose, config, dockerfile = load(root)
    return (
        check_collector(config)
        + check_topology(compose, config, dockerfile, root)
        + check_dashboard(compose, config, *load_dashboard(root), root)
    )


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else ROOT
    problems = check(root)
    for problem in problems:
        print(f"compose-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"compose-check: ok ({COMPOSE}, {COLLECTOR_CONFIG}, Dockerfile, {LOKI_CONFIG}, grafana/ agree)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
