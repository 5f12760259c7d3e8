"""The package as users get it: the nox matrix builds the wheel, installs it and names it in
``CANONICAL_LOGS_WHEEL``; then every file of src/otel_canonical_logs must be in it (``py.typed``
included), its entry points must be pyproject's, and the tests must import the installed copy."""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import os
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "otel_canonical_logs"
WHEEL = os.environ.get("CANONICAL_LOGS_WHEEL", "")

needs_wheel = pytest.mark.skipif(
    not WHEEL, reason="the nox matrix builds the wheel and names it in CANONICAL_LOGS_WHEEL"
)


def _declared_entry_points() -> dict[str, dict[str, str]]:
    """pyproject's entry points by group, its ``[project.scripts]`` as ``console_scripts``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups: dict[str, dict[str, str]] = dict(project["entry-points"])
    if project.get("scripts"):
        groups["console_scripts"] = dict(project["scripts"])
    return groups


def test_installed_entry_points_are_pyprojects_and_load() -> None:
    """What ``opentelemetry-instrument`` finds: our distro, configurator and instrumentors."""
    for group, declared in _declared_entry_points().items():
        ours = {
            ep.name: ep
            for ep in importlib.metadata.entry_points(group=group)
            if ep.dist is not None and ep.dist.metadata["Name"] == "otel-canonical-logs"
        }
        assert declared == {name: ep.value for name, ep in ours.items()}, group
        for ep in ours.values():
            assert callable(ep.load()), ep


@needs_wheel
def test_the_wheel_holds_every_file_of_the_package() -> None:
    with zipfile.ZipFile(WHEEL) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(wheel.read(entry_points).decode())
    source = {
        f"otel_canonical_logs/{path.relative_to(SRC).as_posix()}"
        for path in SRC.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "otel_canonical_logs/py.typed" in source
    assert set() == source - names, "files of src/otel_canonical_logs missing from the wheel"
    packaged = {group: dict(parser[group]) for group in parser.sections()}
    assert _declared_entry_points() == packaged


@needs_wheel
def test_the_tests_import_the_installed_wheel_not_the_checkout() -> None:
    import otel_canonical_logs

    module = Path(otel_canonical_logs.__file__).resolve()
    assert SRC.resolve() not in module.parents, module
    assert Path(sysconfig.get_paths()["purelib"]).resolve() in module.parents, module
    assert str(ROOT / "src") not in sys.path
    dist = importlib.metadata.distribution("otel-canonical-logs")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    assert direct_url.get("url", "").endswith(Path(WHEEL).name), direct_url
    assert not direct_url.get("dir_info", {}).get("editable"), direct_url
