"""A release the package was never tested with, under real Gunicorn: one warning line at start-up
naming it, and lines as right as on the tested versions even where every private detail the
package relies on is gone (the public-API fallbacks)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from otel_canonical_logs import _support
from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import EXAMPLE_DIR, REPO_ROOT, GunicornServer, events, http_session
from tests.integration.test_export import export_env, records_for
from tests.otlp_receiver import HTTPReceiver
from tests.unit.test_otel_fallbacks import FALLBACK_TESTS

# Requests whose lines cover each patched path: none, queries (an N+1 run, a write), a template,
# an error.
PATHS = ["/ok/", "/n-plus-one/", "/db/", "/tpl/", "/books/1/", "/boom/"]
# What differs from one run to the next whatever the versions (ids, timings, and the arbiter's
# saturation sample, g_*, of the moment the request ran: busy workers, listen queue).
VARIES = ("_id", "_time", "trace_sampled", "_start")
SAMPLED = ("g_",)


def _dist_info(root: Path, name: str, version: str, entry_points: str = "") -> None:
    """What importlib.metadata reads of an installed distribution: nothing to import."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points)


def _pythonpath(*entries: Path) -> str:
    outer = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(EXAMPLE_DIR), *map(str, entries), *([outer] if outer else [])])


def _lines(server: GunicornServer) -> dict[str, dict[str, str]]:
    http = http_session()
    ids = {}
    for path in PATHS:
        rid = uuid.uuid4().hex
        http.get(server.url(path), headers={"X-Request-ID": rid}, timeout=30)
        ids[rid] = path
    lines = server.wait_for_stdout(lambda ls: sum(any(r in ln for r in ids) for ln in ls) >= len(ids))
    by_path = {ids[e["req_id"]]: e for e in events(lines) if e.get("req_id") in ids}
    assert set(PATHS) == set(by_path)
    return by_path


def _stable(event: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in event.items() if not k.endswith(VARIES)}


def _same_lines(expected: dict[str, dict[str, str]], got: dict[str, dict[str, str]]) -> None:
    differ = {
        path: sorted(
            (key, expected[path].get(key), got[path].get(key))
            for key in set(_stable(expected[path])) | set(_stable(got[path]))
            if expected[path].get(key) != got[path].get(key) and not key.startswith(SAMPLED)
        )
        for path in PATHS
    }
    assert not any(differ.values()), {path: d for path, d in differ.items() if d}


def _warnings(server: GunicornServer) -> list[str]:
    return [line for line in server.stderr_lines() if "never tested with" in line]


@pytest.fixture(scope="module")
def tested(module_sqlite_env: dict[str, str]) -> dict[str, dict[str, str]]:
    """The lines on the installed (tested) versions: no version warning, the fast paths."""
    with GunicornServer(env=module_sqlite_env) as server:
        lines = _lines(server)
        assert [] == _warnings(server), server.stderr_text()
        assert LOG_PREFIX not in server.stderr_text()
    return lines


def test_untested_version_warns_once_and_everything_still_works(
    module_sqlite_env: dict[str, str], tested: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    """Django 6.0 as the installed version (its metadata only; the real Django is imported): one
    line on stderr, from the arbiter (not one per worker), names it, its version and the tested
    range; the lines are unchanged."""
    _dist_info(tmp_path, "Django", "6.0")
    env = {**module_sqlite_env, "PYTHONPATH": _pythonpath(tmp_path)}
    with GunicornServer(env=env, gunicorn_args=["--workers", "2"]) as server:
        lines = _lines(server)
        warnings = _warnings(server)
        stderr = server.stderr_text()
    assert 1 == len(warnings), stderr
    assert f"django 6.0 (tested {_support.TESTED['django']})" in warnings[0]
    assert LOG_PREFIX not in stderr
    _same_lines(tested, lines)


def test_every_fallback_forced_lines_stay_correct(
    module_sqlite_env: dict[str, str], tested: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    """Every private detail ``_otel`` checks made absent at once (tests/integration/
    forced_fallbacks.py): each check is seen taking its public path, and the lines are the same as
    on the fast paths, query counts, N+1 run, template and error fields included."""
    _dist_info(
        tmp_path,
        "forced-fallbacks",
        "0",
        "[opentelemetry_distro]\nforced_fallbacks = tests.integration.forced_fallbacks:Distro\n",
    )
    with HTTPReceiver() as receiver:
        env = {
            **module_sqlite_env,
            **export_env(receiver, "http"),
            "PYTHONPATH": _pythonpath(tmp_path, REPO_ROOT),
            "OTEL_PYTHON_DISTRO": "forced_fallbacks",
        }
        with GunicornServer(env=env) as server:
            lines = _lines(server)
            stderr = server.stderr_lines()
        # The log records, through Logger.emit now: the line's keys, in its order.
        records = records_for(receiver, [line["req_id"] for line in lines.values()])
    assert [list(line) for line in lines.values()] == [list(r.attributes) for r in records]
    forced = {
        line.removeprefix("forced_fallbacks: ") for line in stderr if line.startswith("forced_fallbacks: ")
    }
    assert set(FALLBACK_TESTS) == forced, "\n".join(stderr)
    assert not any(LOG_PREFIX in line for line in stderr), "\n".join(stderr)
    _same_lines(tested, lines)
    assert "6" == lines["/n-plus-one/"]["db_queries"] and "5" == lines["/n-plus-one/"]["db_dup_queries"]
