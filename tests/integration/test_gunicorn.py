"""Gunicorn integration on real Gunicorn: timeouts, stuck requests, saturation, the user's hooks."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import EXAMPLE_DIR, GunicornServer, events, http_session

Start = Callable[..., GunicornServer]
TIMEOUT = 2


def _line_of(path: str, needle: str) -> int:
    for number, line in enumerate((EXAMPLE_DIR / path).read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def _send(server: GunicornServer, path: str, rid: str, timeout: float = 30) -> int | None:
    """GET with an X-Request-ID; None when the worker died before answering."""
    try:
        return (
            http_session().get(server.url(path), headers={"X-Request-ID": rid}, timeout=timeout).status_code
        )
    except requests.ConnectionError:
        return None


def _events_for(
    server: GunicornServer, rid: str, count: int = 1, timeout: float = 15
) -> list[dict[str, str]]:
    lines = server.wait_for_stdout(lambda ls: sum(rid in ln for ln in ls) >= count, timeout=timeout)
    return [e for e in events(lines) if e["req_id"] == rid]


def _workers(server: GunicornServer) -> set[int]:
    path = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    return {int(p) for p in path.read_text().split()}


def _no_internal_errors(server: GunicornServer) -> None:
    assert LOG_PREFIX not in server.stderr_text(), server.stderr_text()


def _sync(gunicorn: Start, env: dict[str, str], *args: str) -> GunicornServer:
    return gunicorn(env=env, gunicorn_args=["--timeout", str(TIMEOUT), "--graceful-timeout", "1", *args])


def test_sync_timeout_emits_one_timeout_event_and_no_request_line(
    gunicorn: Start, db_env: dict[str, str]
) -> None:
    """A view sleeping past the timeout gets exactly one timeout line locating the sleep."""
    server = _sync(gunicorn, db_env)
    rid = uuid.uuid4().hex
    _send(server, "/sleep/?s=10", rid)
    [event] = _events_for(server, rid)
    assert "timeout" == event["event_type"]
    assert ("/sleep/", "/sleep/") == (event["req_path"], event["req_route"])
    line = _line_of("shop/views.py", "time.sleep(min(seconds, 60.0))")
    assert f"shop/views.py:{line}:sleep" == event["timeout_loc"] == event["timeout_cause_loc"]
    assert TIMEOUT - 0.1 <= float(event["resp_time"]) < TIMEOUT + 1
    assert len(event["trace_id"]) == 32
    # The worker is replaced and serves again; still one line for the timed-out request.
    assert 200 == _send(server, "/ok/", uuid.uuid4().hex)
    assert 1 == len([e for e in events(server.stdout_lines) if e["req_id"] == rid])
    _no_internal_errors(server)


def test_timeout_when_the_app_ignores_sigabrt(gunicorn: Start, db_env: dict[str, str]) -> None:
    """A view that ignores SIGABRT is SIGKILLed by Gunicorn and still has its timeout line."""
    server = _sync(gunicorn, db_env)
    rid = uuid.uuid4().hex
    assert _send(server, "/stubborn/?s=10", rid) is None  # killed: no response at all
    [event] = _events_for(server, rid)
    assert "timeout" == event["event_type"]
    line = _line_of("shop/views.py", 'time.sleep(min(float(request.GET.get("s", "0")), 60.0))')
    assert f"shop/views.py:{line}:stubborn" == event["timeout_loc"]
    deadline = time.monotonic() + 10
    while "was sent SIGKILL" not in server.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "was sent SIGKILL" in server.stderr_text()


def test_timeout_during_a_query_names_the_query(gunicorn: Start, db_env: dict[str, str]) -> None:
    """A timeout while the database is busy shows that query and what ran before it."""
    server = _sync(gunicorn, db_env)
    rid = uuid.uuid4().hex
    _send(server, "/slow-query/?s=8", rid)
    [event] = _events_for(server, rid)
    assert "timeout" == event["event_type"]
    expected = "SELECT pg_sleep(%s)" if db_env["EXAMPLE_DB"] == "postgres" else "WITH RECURSIVE n(i)"
    assert event["timeout_span"].startswith(expected)
    assert "1" == event["db_queries"]  # the quick count that finished before
    assert event["timeout_loc"].startswith("shop/views.py:") and event["timeout_loc"].endswith(":slow_query")


def test_gthread_stuck_request_gets_a_stuck_event_then_its_line(
    gunicorn: Start, db_env: dict[str, str]
) -> None:
    """Under gthread a request past the timeout emits one stuck event; its line follows, stuck=true."""
    server = gunicorn(
        env=db_env, gunicorn_args=["--timeout", str(TIMEOUT), "-k", "gthread", "--threads", "2"]
    )
    rid = uuid.uuid4().hex
    assert 200 == _send(server, f"/sleep/?s={TIMEOUT + 1.5}", rid)
    stuck, request = _events_for(server, rid, count=2)
    assert ("stuck", "request") == (stuck["event_type"], request["event_type"])
    assert stuck["timeout_loc"].endswith(":sleep") and "true" == request["stuck"]
    assert stuck["trace_id"] == request["trace_id"]
    _no_internal_errors(server)


def test_worker_count_and_activity(gunicorn: Start, db_env: dict[str, str]) -> None:
    """With two workers, one held busy, later lines carry g_w_count=2 and g_w_active>=1."""
    server = gunicorn(env=db_env, gunicorn_args=["--workers", "2"])
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(_send, server, "/sleep/?s=3", uuid.uuid4().hex)
        time.sleep(1.5)  # more than one sampling interval with the sleeper in flight
        _, event = _get_event(server, "/ok/")
        assert 200 == busy.result()
    assert ("2", "0") == (event["g_w_count"], event["g_backlog"])
    assert 1 <= int(event["g_w_active"]) <= 2


def _get_event(server: GunicornServer, path: str) -> tuple[int | None, dict[str, str]]:
    rid = uuid.uuid4().hex
    status = _send(server, path, rid)
    return status, _events_for(server, rid)[0]


def test_backlog_rises_behind_a_busy_worker(gunicorn: Start, db_env: dict[str, str]) -> None:
    """Connections queued behind one busy sync worker show up in g_backlog."""
    server = gunicorn(env=db_env)
    with ThreadPoolExecutor(6) as pool:
        pool.submit(_send, server, "/sleep/?s=2.5", uuid.uuid4().hex)
        time.sleep(0.3)  # let the slow request be accepted first; the rest must queue behind it
        ids = [uuid.uuid4().hex for _ in range(5)]
        list(pool.map(lambda rid: _send(server, "/ok/", rid), ids))
    backlogs = [int(e["g_backlog"]) for e in events(server.stdout_lines) if e["req_id"] in ids]
    assert max(backlogs) >= 3, backlogs


def test_unix_socket_bind_keeps_the_sampler_alive(
    gunicorn: Start, db_env: dict[str, str], tmp_path: Path
) -> None:
    """A UNIX-socket listener beside TCP does not stop sampling; requests over it get lines."""
    sock_path = tmp_path / "g.sock"
    server = gunicorn(env=db_env, gunicorn_args=["--bind", f"unix:{sock_path}"])
    rid = uuid.uuid4().hex
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(sock_path))
        head = f"GET /ok/ HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: {rid}\r\nConnection: close\r\n\r\n"
        client.sendall(head.encode())
        assert client.recv(100).startswith(b"HTTP/1.1 200")
    [event] = _events_for(server, rid)
    assert ("/ok/", "200") == (event["req_path"], event["resp_status"])
    # A sampler that died on the UNIX listener would leave the count frozen at 1.
    assert "1" == _settled_count(server, "1")
    os.kill(server.pid, signal.SIGTTIN)
    assert "2" == _settled_count(server, "2")
    _no_internal_errors(server)


def test_users_hooks_and_access_log_keep_working(
    gunicorn: Start, db_env: dict[str, str], tmp_path: Path
) -> None:
    """A config defining Gunicorn hooks and an access log: theirs all run and our lines appear."""
    marks = tmp_path / "hooks.txt"
    access = tmp_path / "access.log"
    conf = tmp_path / "gunicorn.conf.py"
    hooks = {
        "when_ready": "server",
        "post_fork": "server, worker",
        "pre_request": "worker, req",
        "post_request": "worker, req, environ, resp",
        "worker_abort": "worker",
        "worker_exit": "server, worker",
        "on_exit": "server",
    }
    conf.write_text(
        textwrap.dedent(f"""
        accesslog = {str(access)!r}
        timeout = {TIMEOUT}
        graceful_timeout = 1

        def _mark(name):
            with open({str(marks)!r}, "a") as f:
                f.write(name + "\\n")
        """)
        + "".join(f"\ndef {h}({params}):\n    _mark({h!r})\n" for h, params in hooks.items())
    )
    server = gunicorn(env=db_env, gunicorn_args=["-c", str(conf)])
    _, event = _get_event(server, "/n-plus-one/")
    assert "6" == event["db_queries"]
    _send(server, "/sleep/?s=10", uuid.uuid4().hex)  # a timeout: worker_abort runs
    server.wait_for_stdout(lambda ls: any("timeout" in ln for ln in ls))
    assert 200 == _send(server, "/ok/", uuid.uuid4().hex)
    server.stop()
    assert set(hooks) == set(marks.read_text().split())
    assert "/n-plus-one/" in access.read_text()


def test_config_helper_without_opentelemetry_instrument(
    gunicorn: Start, db_env: dict[str, str], tmp_path: Path
) -> None:
    """Plain `gunicorn -c conf` whose config imports our helper prints the same lines."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import otel_canonical_logs.gunicorn.auto  # noqa: F401\n")
    server = gunicorn(env=db_env, instrument=False, gunicorn_args=["-c", str(conf)])
    _, event = _get_event(server, "/n-plus-one/")
    assert ("6", "/n-plus-one/") == (event["db_queries"], event["req_route"])


def test_sigkilled_workers_leave_nothing_in_dev_shm(gunicorn: Start, db_env: dict[str, str]) -> None:
    """SIGKILLing workers repeatedly adds no /dev/shm entry; respawned workers keep counting."""
    before = set(os.listdir("/dev/shm"))
    server = gunicorn(env=db_env, gunicorn_args=["--workers", "2"])
    for _ in range(3):
        old = _workers(server)
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while len(_workers(server) - old) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    status, _ = _get_event(server, "/ok/")
    assert 200 == status
    assert set() == set(os.listdir("/dev/shm")) - before


def test_ttin_and_hup_keep_the_worker_count_right(gunicorn: Start, db_env: dict[str, str]) -> None:
    """TTIN adds a worker, HUP reloads to the configured two, TTOU removes one: g_w_count follows."""
    server = gunicorn(env=db_env, gunicorn_args=["--workers", "2"])
    assert "2" == _settled_count(server, "2")
    os.kill(server.pid, signal.SIGTTIN)
    assert "3" == _settled_count(server, "3")
    os.kill(server.pid, signal.SIGHUP)  # reload: back to the configured number
    assert "2" == _settled_count(server, "2")
    os.kill(server.pid, signal.SIGTTOU)
    assert "1" == _settled_count(server, "1")
    _no_internal_errors(server)


def _settled_count(server: GunicornServer, want: str) -> str:
    """g_w_count once it has read ``want`` on two lines more than a sampling interval apart."""
    deadline = time.monotonic() + 20
    got, since = "", None
    while time.monotonic() < deadline:
        status, event = _get_event(server, "/ok/")
        got = event.get("g_w_count", "")
        if status != 200 or got != want:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since > 1.2:
            return got
        time.sleep(0.2)
    return got
