"""Every supported Gunicorn worker type on real Gunicorn, SQLite and PostgreSQL: answered exactly as
without the package, one true line per request, no mixing under concurrency, busy workers seen,
timeouts and stuck requests reported; a worker type the package does not know is left alone."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import (
    GunicornServer,
    events,
    http_session,
)
from tests.integration.test_example_queries import measure

Start = Callable[..., GunicornServer]
TIMEOUT = 2

WSGI, ASGI = "mysite.wsgi", "mysite.asgi:application"
# kind -> (gunicorn arguments, application)
KINDS: dict[str, tuple[list[str], str]] = {
    "sync": (["-k", "sync"], WSGI),
    "gthread": (["-k", "gthread", "--threads", "4"], WSGI),
    "gevent": (["-k", "gevent", "--worker-connections", "64"], WSGI),
    "uvicorn_worker": (["-k", "uvicorn_worker.UvicornWorker"], ASGI),
    "uvicorn.workers": (["-k", "uvicorn.workers.UvicornWorker"], ASGI),
    "asgi": (["-k", "asgi"], ASGI),
}
ASYNC_KINDS = ("uvicorn_worker", "uvicorn.workers", "asgi")

# Paths compared with the same app without the package, and with Django's own query count.
PATHS = (
    "/health",
    "/ok/",
    "/db/",
    "/n-plus-one/",
    "/books/",
    "/books/3/",
    "/books/999999/",
    "/tpl/",
    "/boom/",
    "/async/db/?marker=m",
    "/stream/?chunks=3",
    "/stream/async/?chunks=2",
    "/file/",
)


def _start(
    gunicorn: Start, kind: str, env: dict[str, str], *extra: str, instrument: bool = True
) -> GunicornServer:
    args, app = KINDS[kind]
    return gunicorn(
        env=env,
        wsgi=app,
        instrument=instrument,
        gunicorn_args=[*args, "--timeout", str(TIMEOUT), "--graceful-timeout", "1", *extra],
    )


def _get(server: GunicornServer, path: str, rid: str | None = None, timeout: float = 20) -> requests.Response:
    headers = {"X-Request-ID": rid} if rid else {}
    return http_session().get(server.url(path), headers=headers, timeout=timeout)


def _lines_for(
    server: GunicornServer, rids: list[str], timeout: float = 15, count: int = 1
) -> dict[str, list[dict[str, str]]]:
    """Each request's lines, once every one of ``rids`` has ``count`` of them on stdout."""
    server.wait_for_stdout(lambda ls: all(sum(r in ln for ln in ls) >= count for r in rids), timeout=timeout)
    by_rid: dict[str, list[dict[str, str]]] = {r: [] for r in rids}
    for event in events(server.stdout_lines):
        if event.get("req_id") in by_rid:
            by_rid[event["req_id"]].append(event)
    return by_rid


CRASHES = ("Exception in ASGI application", "Error handling request", "Worker failed to boot")


def _no_internal_errors(server: GunicornServer, bare: GunicornServer | None = None) -> None:
    """No internal error of ours, and no more crash reports than the same app without us."""
    text = server.stderr_text()
    assert LOG_PREFIX not in text, text
    baseline = bare.stderr_text() if bare is not None else ""
    for crash in CRASHES:
        assert text.count(crash) <= baseline.count(crash), text


@pytest.fixture(scope="module")
def in_process(db_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each path run in-process through Django's test client, queries captured over every alias."""
    return measure(db_env, *(p for p in PATHS if p != "/health"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_worker_type_answers_as_without_us_with_one_true_line(
    gunicorn: Start, db_env: dict[str, str], in_process: dict[str, dict[str, Any]], kind: str
) -> None:
    """Status and body equal the bare app's; exactly one line per request; db_queries is Django's."""
    bare = _start(gunicorn, kind, db_env, instrument=False)
    ours = _start(gunicorn, kind, db_env)
    rids = {path: uuid.uuid4().hex for path in PATHS}
    statuses = {}
    for path in PATHS:
        expected, got = _get(bare, path), _get(ours, path, rids[path])
        assert (expected.status_code, expected.content) == (got.status_code, got.content), path
        statuses[path] = expected.status_code
    lines = _lines_for(ours, list(rids.values()))
    for path, rid in rids.items():
        [line] = lines[rid]
        assert "request" == line["event_type"], (path, line)
        assert path.split("?")[0] == line["req_path"]
        assert str(statuses[path]) == line["resp_status"], (path, line)
        if path == "/health":
            assert "db_queries" not in line
        elif statuses[path] == in_process[path]["status"]:  # the same view ran to the same end
            assert in_process[path]["captured"] == int(line.get("db_queries", "0")), (path, line)
        else:  # async code under gevent: Django cannot run it there, with or without us
            assert "gevent" == kind and path.startswith(("/async/", "/stream/async/")), path
            assert "500" == line["resp_status"] and "exc_type" in line, line
    assert "ValueError" == lines[rids["/boom/"]][0]["exc_type"]
    if kind != "gevent":
        assert "m" == lines[rids["/async/db/?marker=m"]][0]["app_marker"]
    assert "trace_id" not in lines[rids["/health"]][0]  # answered before Django: no root span
    _no_internal_errors(ours, bare)


@pytest.mark.parametrize("kind", list(KINDS))
def test_concurrent_burst_never_mixes_context_and_shows_busy_workers(
    gunicorn: Start, db_env: dict[str, str], kind: str
) -> None:
    """16 clients at once, sync and async views: each line carries its own marker, set before and
    after the request waited; a request held for 1.5 s is seen busy by the saturation sample."""
    server = _start(gunicorn, kind, db_env)
    held = uuid.uuid4().hex
    sent: dict[str, str] = {}

    def one(i: int) -> int:
        rid, marker = uuid.uuid4().hex, f"mk{i}"
        sent[rid] = marker
        # Async views run on every worker type but gevent (Django cannot run them there).
        path = "/async/db/" if i % 2 and kind != "gevent" else "/marker/"
        return _get(server, f"{path}?marker={marker}&s=0.05", rid).status_code

    with ThreadPoolExecutor(16) as pool:
        holding = pool.submit(lambda: _get(server, "/marker/?marker=held&s=1.5", held).status_code)
        statuses = list(pool.map(one, range(48)))
        assert 200 == holding.result()
    assert [200] * 48 == statuses
    lines = _lines_for(server, [*sent, held])
    for rid, marker in sent.items():
        [line] = lines[rid]
        assert (marker, marker) == (line["app_marker"], line["app_marker_again"]), line
    [held_line] = lines[held]
    assert ("1", "1") == (held_line["g_w_count"], held_line["g_w_active"]), held_line
    _no_internal_errors(server)


# -- timeouts and stuck requests ----------------------------------------------------------------

# kind -> (path that outlives the timeout without ever being killed, the function it waits in)
STUCK = {
    "gthread": ("/sleep/?s=3.5", "sleep"),
    "gevent": ("/sleep/?s=3.5", "sleep"),
    "uvicorn_worker": ("/async/wait/?s=3.5", "async_wait"),
    "asgi": ("/sleep/?s=3.5", "sleep"),
}
# kind -> path that blocks the worker (sync: the request itself; others: the event loop / hub)
KILLED = {
    "sync": ("/sleep/?s=10", "sleep"),
    "gevent": ("/spin/?s=10", "spin"),
    "uvicorn_worker": ("/async/block/?s=10", "async_block"),
    "asgi": ("/async/block/?s=10", "async_block"),
}


@pytest.mark.parametrize("kind", list(STUCK))
def test_request_past_the_timeout_that_is_never_killed_gets_a_stuck_event_then_its_line(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """One stuck event naming where the request waits, then its line with stuck=true."""
    server = _start(gunicorn, kind, module_sqlite_env)
    path, function = STUCK[kind]
    rid = uuid.uuid4().hex
    assert 200 == _get(server, path, rid).status_code
    stuck, request = _lines_for(server, [rid], count=2)[rid]
    assert ("stuck", "request") == (stuck["event_type"], request["event_type"])
    assert stuck["timeout_loc"].endswith(f":{function}"), stuck
    assert "true" == request["stuck"]
    assert TIMEOUT - 0.1 <= float(stuck["resp_time"]) < TIMEOUT + 1
    _no_internal_errors(server)


@pytest.mark.parametrize("kind", list(KILLED))
def test_request_that_gets_the_worker_killed_leaves_a_timeout_event(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """The worker is killed by the arbiter; the request has exactly one line, a timeout event with
    the frame it was blocked in; the replacement worker serves again."""
    server = _start(gunicorn, kind, module_sqlite_env)
    path, function = KILLED[kind]
    rid = uuid.uuid4().hex
    with contextlib.suppress(requests.RequestException):  # killed before answering
        _get(server, path, rid, timeout=15)
    [event] = _lines_for(server, [rid])[rid]
    assert "timeout" == event["event_type"], event
    assert event["timeout_cause_loc"].startswith("shop/") and event["timeout_cause_loc"].endswith(
        f":{function}"
    ), event
    assert float(event["resp_time"]) < TIMEOUT + 1
    deadline = time.monotonic() + 15
    while "WORKER TIMEOUT" not in server.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "WORKER TIMEOUT" in server.stderr_text()
    assert 200 == _get(server, "/ok/").status_code
    assert 1 == sum(e.get("req_id") == rid for e in events(server.stdout_lines))
    assert LOG_PREFIX not in server.stderr_text()
    assert "Calling end() on an ended span" not in server.stderr_text()  # no SDK noise of ours


# -- worker types the package does not know ------------------------------------------------------


def test_unknown_worker_type_is_left_alone_with_one_warning(
    gunicorn: Start, module_sqlite_env: dict[str, str]
) -> None:
    """A third-party worker type: answered exactly as without the package, one warning naming it,
    no server layer (no line for the health check, no saturation fields)."""
    args = ["-k", "mysite.unknown_worker.UnknownWorker", "--workers", "2"]
    bare = gunicorn(env=module_sqlite_env, gunicorn_args=args, instrument=False)
    ours = gunicorn(env=module_sqlite_env, gunicorn_args=args)
    rid = uuid.uuid4().hex
    for path in ("/health", "/ok/", "/db/", "/boom/", "/stream/?chunks=2"):
        expected, got = _get(bare, path), _get(ours, path, rid if path == "/db/" else None)
        assert (expected.status_code, expected.content) == (got.status_code, got.content), path
    [line] = _lines_for(ours, [rid])[rid]
    assert "10" == line["db_queries"] and "g_w_count" not in line
    assert not any(e["req_path"] == "/health" for e in events(ours.stdout_lines))
    warnings = [ln for ln in ours.stderr_lines() if "otel_canonical_logs" in ln and "UnknownWorker" in ln]
    assert 1 == len(warnings) and "left alone" in warnings[0], warnings
    assert LOG_PREFIX not in ours.stderr_text()


def test_gevent_boots_with_the_settings_module_exported_and_from_a_computed_config(
    gunicorn: Start, module_sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    """gevent with DJANGO_SETTINGS_MODULE in the environment, and gevent chosen by a config file
    the distro cannot read early (a computed worker_class): both serve queries."""
    exported = _start(gunicorn, "gevent", {**module_sqlite_env, "DJANGO_SETTINGS_MODULE": "mysite.settings"})
    config = tmp_path / "gunicorn_conf.py"
    config.write_text('worker_class = "ge" + "vent"\n')
    computed = gunicorn(env=module_sqlite_env, gunicorn_args=["-c", str(config), "--timeout", str(TIMEOUT)])
    for server in (exported, computed):
        rid = uuid.uuid4().hex
        assert 200 == _get(server, "/db/", rid).status_code
        [line] = _lines_for(server, [rid])[rid]
        assert "10" == line["db_queries"]
        assert "Using worker: gevent" in server.stderr_text()
        _no_internal_errors(server)
