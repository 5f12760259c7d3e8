"""The tested version ranges (``_support.TESTED``): what is installed lies inside them, pyproject.toml
declares exactly them, the matrix's constraint files pin versions inside them, and the start-up
warning names whatever lies outside."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from otel_canonical_logs import _support

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return [Requirement(r) for r in requirements]


def _pins(name: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def test_installed_versions_are_inside_the_tested_ranges() -> None:
    """The next release of a dependency is a conscious bump: raise the range in
    ``_support.TESTED`` and pyproject.toml, regenerate constraints/max.txt, run ``make matrix``."""
    installed = _support.installed(_support.ALL)
    assert {"opentelemetry-api", "opentelemetry-sdk", "django", "gunicorn", "wrapt"} <= set(installed)
    outside = _support.untested(installed, _support.ALL)
    assert not outside, "installed versions the nox matrix has never tested:\n" + "\n".join(
        f"  {name} {version} (tested {spec}): raise the range in src/otel_canonical_logs/_support.py"
        " and pyproject.toml, then run `make matrix`"
        for name, version, spec in outside
    )


def test_pyproject_declares_exactly_the_tested_ranges() -> None:
    declared: dict[str, SpecifierSet] = {canonicalize_name(r.name): r.specifier for r in _declared()}
    for name, spec in _support.ALL.items():
        assert name in declared, f"{name} is in _support.ALL but not in pyproject.toml"
        assert declared[name] == SpecifierSet(spec), f"{name}: pyproject {declared[name]}, tested {spec}"
    # Every dependency with an upper bound is one whose range the matrix tests.
    bounded = {name for name, spec in declared.items() if any(s.operator in ("<", "<=", "==") for s in spec)}
    assert bounded <= set(_support.ALL), bounded - set(_support.ALL)


def test_the_matrix_ends_pin_versions_inside_the_tested_ranges() -> None:
    """constraints/min.txt pins the lowest release of each lower bound's series (the bound itself
    for OpenTelemetry), constraints/max.txt versions inside each range; both pin every entry."""
    lowest, highest = _pins("min.txt"), _pins("max.txt")
    for name, spec in _support.ALL.items():
        specifier = SpecifierSet(spec)
        (floor,) = (Version(s.version) for s in specifier if s.operator == ">=")
        for end, pins in (("min", lowest), ("max", highest)):
            assert name in pins, f"constraints/{end}.txt pins no {name}"
            assert specifier.contains(pins[name], prereleases=True), f"{end}: {name} {pins[name]} not {spec}"
        low = lowest[name]
        same_series = low.release[: len(floor.release)] == floor.release and low.pre == floor.pre
        assert same_series, f"min: {name} {low} is not in the {floor} series"
        if name.startswith("opentelemetry"):
            assert low == floor, f"min: {name} {low} is not the lowest release {floor}"
        assert highest[name] >= low


def test_untested_names_each_package_outside_its_range() -> None:
    tested = {"django": ">=4.2,<6", "opentelemetry-instrumentation": ">=0.66b0,<0.67b0"}
    versions = {"django": "6.0", "opentelemetry-instrumentation": "0.66b1", "gunicorn": "99"}
    assert [("django", "6.0", ">=4.2,<6")] == _support.untested(versions, tested)
    versions = {"django": "4.1.13", "opentelemetry-instrumentation": "0.67b0"}
    assert [
        ("django", "4.1.13", ">=4.2,<6"),
        ("opentelemetry-instrumentation", "0.67b0", ">=0.66b0,<0.67b0"),
    ] == _support.untested(versions, tested)
    assert [("django", "not-a-version", ">=4.2,<6")] == _support.untested({"django": "not-a-version"}, tested)


def test_warning_is_one_line_naming_package_version_and_range() -> None:
    line = _support.warning_line([("django", "6.0", ">=4.2,<6"), ("gunicorn", "28.0", ">=23,<28")])
    assert "\n" not in line
    assert "django 6.0 (tested >=4.2,<6), gunicorn 28.0 (tested >=23,<28)" in line


def test_no_warning_on_the_installed_versions(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="otel_canonical_logs"):
        _support.warn_untested()
    assert [] == caplog.records


def test_installed_reads_the_distributions_that_are_imported() -> None:
    import django
    import gunicorn

    versions = _support.installed(["django", "gunicorn", "no-such-distribution"])
    assert {"django", "gunicorn"} == set(versions)
    assert django.get_version() == versions["django"]
    assert gunicorn.__version__ == versions["gunicorn"]
