"""The comparison venvs under bench/.venvs, pinned to the dev venv's versions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .common import DEV_BIN, ORIGINAL, PY_SPY, ROOT, VENVS, log
from .setups import ASGI_PACKAGES, CONFIGS, Config


def dev_versions() -> dict[str, str | None]:
    """Versions installed in the dev venv: the pins for the comparison venvs.

    The ASGI packages map to None when the dev venv lacks them (a venv from before they joined
    the `test` extra): only the ASGI configurations need them, and cmd_bench says so.
    """
    if not (DEV_BIN / "python").exists():
        sys.exit("no dev venv at .venv: run `make venv` first")
    names = [
        "django",
        "gunicorn",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation",
        "opentelemetry-instrumentation-django",
        "opentelemetry-exporter-otlp-proto-http",
        "otel-canonical-logs",
        "requests",
    ]
    optional = [*ASGI_PACKAGES, "uvloop", "httptools"]  # the last two: what Uvicorn's "auto" picks
    code = (
        "import json, importlib.metadata as m, sys\n"
        "def version(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({n: version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [DEV_BIN / "python", "-c", code, *names, *optional], check=True, capture_output=True, text=True
    ).stdout
    versions: dict[str, str | None] = json.loads(out)
    missing = [n for n in names if versions[n] is None]
    if missing:
        sys.exit(f"the dev venv .venv lacks {', '.join(missing)}: run `make venv`")
    return versions


def venv_requirements(versions: dict[str, str | None]) -> dict[str, list[str]]:
    # requests: imported at module level by the example's shop/api_views.py.
    core = [
        f"django=={versions['django']}",
        f"gunicorn=={versions['gunicorn']}",
        f"requests=={versions['requests']}",
    ]
    contrib = versions["opentelemetry-instrumentation"]
    sdk = versions["opentelemetry-sdk"]
    reqs = {
        "original": [*core, ORIGINAL],
        "otel": [
            *core,
            f"opentelemetry-api=={sdk}",
            f"opentelemetry-sdk=={sdk}",
            f"opentelemetry-distro=={contrib}",
            f"opentelemetry-instrumentation=={contrib}",
            f"opentelemetry-instrumentation-django=={contrib}",
            # Django's SQLite backend calls sqlite3.connect, which this instrumentor wraps.
            f"opentelemetry-instrumentation-sqlite3=={contrib}",
            f"opentelemetry-exporter-otlp-proto-http=={sdk}",
        ],
        "tools": [PY_SPY],
    }
    # A venv that runs an ASGI configuration also gets Uvicorn and its Gunicorn worker, at the
    # dev venv's versions (today both ASGI configurations run in the dev venv itself).
    for name in {c.venv for c in CONFIGS if c.asgi} - {"dev"}:
        reqs[name] += [f"{n}=={versions[n]}" for n in ASGI_PACKAGES]
    return reqs


def ensure_venv(name: str, requirements: list[str]) -> Path:
    """Create bench/.venvs/<name> with exactly these pins, or reuse it if it already has them."""
    path = VENVS / name
    stamp = path / ".bench-requirements"
    wanted = "\n".join(sorted(requirements)) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and (path / "bin" / "python").exists():
        return path / "bin"
    log(f"building venv {path.relative_to(ROOT)}: {' '.join(requirements)}")
    if path.exists():
        shutil.rmtree(path)
    # sys._base_executable: the interpreter behind the dev venv, so every venv runs the same Python.
    base: str = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True)
    stamp.write_text(wanted)
    return path / "bin"


def prepare_venvs(configs: list[Config]) -> tuple[dict[str, str | None], dict[str, Path]]:
    """The dev venv's versions, and a bin directory per other venv the configurations run in;
    exits if an ASGI configuration needs what the dev venv lacks."""
    versions = dev_versions()
    lacking = [n for n in ASGI_PACKAGES if versions[n] is None]
    if lacking and any(c.asgi and c.venv == "dev" for c in configs):
        sys.exit(f"the ASGI configurations need {', '.join(lacking)} in the dev venv: run `make venv`")
    reqs = venv_requirements(versions)
    bins = {name: ensure_venv(name, reqs[name]) for name in {c.venv for c in configs} - {"dev"}}
    return versions, bins


def venv_bin(config: Config, bins: dict[str, Path]) -> Path:
    return DEV_BIN if config.venv == "dev" else bins[config.venv]
