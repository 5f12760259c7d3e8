"""The versions of every library whose internals this package reaches into that the nox matrix
(noxfile.py: the lowest and the highest end) has tested, in one place.

pyproject.toml declares exactly these ranges (tests/unit/test_support.py compares the two), the
start-up warning reads them, and the version-range test fails when an installed version is outside
one. Moving a range is a conscious act: change it here and in pyproject.toml, regenerate
``constraints/max.txt``, run ``make matrix``.

A lower bound names a release series (``>=4.2``): the matrix tests it at the newest patch release of
that series for Django, psycopg and wrapt (patch releases carry fixes only), and at the exact
release for OpenTelemetry, whose betas change internals (``constraints/min.txt``). An upper bound is
the first release not tested.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping

_logger = logging.getLogger("otel_canonical_logs")

_OTEL_API = ">=1.45.0,<1.46"
_OTEL_CONTRIB = ">=0.66b0,<0.67b0"

TESTED: dict[str, str] = {
    # The package's own dependencies.
    "opentelemetry-api": _OTEL_API,
    "opentelemetry-sdk": _OTEL_API,
    "opentelemetry-exporter-otlp": _OTEL_API,
    "opentelemetry-instrumentation": _OTEL_CONTRIB,
    "opentelemetry-instrumentation-django": _OTEL_CONTRIB,
    "opentelemetry-instrumentation-dbapi": _OTEL_CONTRIB,
    "opentelemetry-instrumentation-asgi": _OTEL_CONTRIB,
    "django": ">=4.2,<6",
    "gunicorn": ">=23,<28",
    "wrapt": ">=1.14,<3",
    # What the suite runs beside them (the test extra): driver instrumentors whose wrappers
    # django_db takes off Django's connections, the server layers' worker types.
    "opentelemetry-instrumentation-sqlite3": _OTEL_CONTRIB,
    "opentelemetry-instrumentation-psycopg": _OTEL_CONTRIB,
    "opentelemetry-instrumentation-requests": _OTEL_CONTRIB,
    "opentelemetry-instrumentation-redis": _OTEL_CONTRIB,
    "opentelemetry-proto": _OTEL_API,
    "psycopg": ">=3.1,<3.4",
    "uvicorn": ">=0.30,<0.55",
    "uvicorn-worker": ">=0.2,<0.5",
    "gevent": ">=24.2,<27",
}

# The ``report`` extra's libraries: tested by the matrix too, and declared with these ranges, but
# never named by the start-up warning (the request path never imports them).
REPORT: dict[str, str] = {
    "ddsketch": ">=3.0,<4",
    "rich": ">=13.7,<16",
}
ALL: dict[str, str] = {**TESTED, **REPORT}


def installed(names: Iterable[str] = TESTED) -> dict[str, str]:
    """The installed version of each of ``names`` that is installed (the first distribution of
    that name on sys.path, the one that is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def untested(versions: Mapping[str, str], tested: Mapping[str, str] = TESTED) -> list[tuple[str, str, str]]:
    """``(distribution, version, tested range)`` for each of ``versions`` outside its range."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    outside = []
    for name, version in sorted(versions.items()):
        spec = tested.get(name)
        if spec is None:
            continue
        try:
            ok = SpecifierSet(spec).contains(Version(version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            outside.append((name, version, spec))
    return outside


def warning_line(outside: list[tuple[str, str, str]]) -> str:
    listed = ", ".join(f"{name} {version} (tested {spec})" for name, version, spec in outside)
    return (
        f"otel_canonical_logs: never tested with {listed}; running anyway, on the public-API "
        "fallbacks wherever an internal it relies on differs"
    )


def warn_untested() -> None:
    """One warning line on stderr (through the package's logger) when any installed version is
    outside the tested range; nothing otherwise."""
    outside = untested(installed())
    if outside:
        _logger.warning("%s", warning_line(outside))
