"""The arbiter's periodic ``saturation`` events on real Gunicorn, checked against the client's own
count and clock, ``/proc`` and a real OTLP receiver."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.integration.harness import GUNICORN_VERSION, GunicornServer, events
from tests.integration.reliability import REJECTED, get, internal_errors, raw_http, workers
from tests.otlp_receiver import HTTPReceiver

Start = Callable[..., GunicornServer]
INTERVAL = 0.5
WORKER_TYPES = {
    "sync": [],
    "gthread": ["-k", "gthread", "--threads", "2"],
    "gevent": ["-k", "gevent"],
    # One connection per gthread worker at a time: two held requests go to two workers.
    "gthread-1": ["-k", "gthread", "--threads", "1", "--worker-connections", "1", "--keep-alive", "0"],
    "uvicorn": ["-k", "uvicorn_worker.UvicornWorker"],
}
ASGI_TYPES = frozenset({"uvicorn"})


def _server(gunicorn: Start, env: dict[str, str], kind: str = "sync", *args: str) -> GunicornServer:
    env = {**env, "CANONICAL_LOGS_SATURATION_INTERVAL": str(INTERVAL)}
    app = "mysite.asgi:application" if kind in ASGI_TYPES else "mysite.wsgi"
    return gunicorn(env=env, wsgi=app, gunicorn_args=["--workers", "2", *WORKER_TYPES[kind], *args])


def _saturation(server: GunicornServer) -> list[dict[str, str]]:
    return [e for e in events(server.stdout_lines) if e["event_type"] == "saturation"]


def _next_events(server: GunicornServer, count: int = 1, timeout: float = 15) -> list[dict[str, str]]:
    """The next ``count`` saturation events written from now on."""
    seen = len(_saturation(server))
    server.wait_for_stdout(
        lambda ls: sum('event_type="saturation"' in ln for ln in ls) >= seen + count, timeout=timeout
    )
    return _saturation(server)[seen : seen + count]


def _rss_mib(pid: int) -> float:
    """VmRSS from ``/proc/<pid>/status`` (the event reads ``statm``: another file, same kernel count)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("kind", ["sync", "gthread", "gevent", "uvicorn"])
def test_requests_per_interval_add_up_to_the_requests_sent(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """Two workers under load from four clients: the events' g_requests add up to every request
    the server answered (the ones sent, and the harness's readiness probe)."""
    server = _server(gunicorn, module_sqlite_env, kind)
    sent = 200
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: get(server, "/ok/").status_code, range(sent)))
    assert [200] * sent == statuses
    # Two events after the last answer: every request has finished in a closed interval.
    _next_events(server, 2)
    probes = sum(1 for e in events(server.stdout_lines) if e.get("req_path") == "/health")
    saturation = _saturation(server)
    assert sent + probes == sum(int(e["g_requests"]) for e in saturation)
    assert all("2" == e["g_w_count"] for e in saturation[1:]), saturation
    busiest = max(saturation, key=lambda e: int(e["g_requests"]))
    assert float(busiest["g_w_active"]) > 0 and int(busiest["g_w_active_max"]) >= 1, busiest
    assert ("0", "0") == (busiest["g_timeouts"], busiest["g_restarts"])
    assert [] == internal_errors(server), server.stderr_text()


@pytest.mark.parametrize("kind", ["sync", "gthread-1"])
def test_busy_time_matches_the_clients_clock_and_both_workers_reach_the_max(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """Both workers held busy by a 1.5 s request each: some interval has g_w_active_max=2 and an
    average of about 2, and the busy time summed over the events is the two requests' time as
    the client measured it."""
    if kind == "gthread-1" and GUNICORN_VERSION < (24,):
        # Checked without the package: Gunicorn 23.0.0 -k gthread --threads 1 --worker-connections 1
        # never answers a request (the one connection slot is never free for it).
        version = ".".join(map(str, GUNICORN_VERSION))
        pytest.skip(f"Gunicorn {version} serves nothing with gthread and --worker-connections 1")
    server = _server(gunicorn, module_sqlite_env, kind)
    _next_events(server, 2)  # the readiness probe's busy time is in a closed interval
    before = len(_saturation(server))

    def held(_: int) -> float:
        started = time.monotonic()
        assert 200 == get(server, "/sleep/?s=1.5").status_code
        return time.monotonic() - started

    with ThreadPoolExecutor(2) as pool:
        client_seconds = sum(pool.map(held, range(2)))
    _next_events(server, 2)
    during = _saturation(server)[before:]
    assert 2 == max(int(e["g_w_active_max"]) for e in during), during
    assert max(float(e["g_w_active"]) for e in during) >= 1.9, during
    busy_seconds = sum(float(e["g_w_active"]) for e in during) * INTERVAL
    # The server's busy time is inside the client's: the request travels and is parsed first.
    assert client_seconds - 0.25 <= busy_seconds <= client_seconds + 0.05, (busy_seconds, client_seconds)
    assert [] == internal_errors(server), server.stderr_text()


def test_short_requests_from_two_clients_reach_the_max(
    gunicorn: Start, module_sqlite_env: dict[str, str]
) -> None:
    """Requests of a few milliseconds, two at a time: g_w_active_max sees both workers busy at
    once, which a once-a-second sample of the busy count would all but never catch."""
    server = _server(gunicorn, module_sqlite_env)
    deadline = time.monotonic() + 1.5
    with ThreadPoolExecutor(2) as pool:

        def hammer(_: int) -> int:
            done = 0
            while time.monotonic() < deadline:
                assert 200 == get(server, "/ok/").status_code
                done += 1
            return done

        sent = sum(pool.map(hammer, range(2)))
    after = _next_events(server, 2)
    saturation = _saturation(server)
    assert 2 == max(int(e["g_w_active_max"]) for e in saturation), saturation
    assert 0 == int(after[-1]["g_requests"]) and 0 == float(after[-1]["g_w_active"]), after
    assert sent <= sum(int(e["g_requests"]) for e in saturation) <= sent + 3


def test_requests_gunicorn_rejects_are_counted(gunicorn: Start, module_sqlite_env: dict[str, str]) -> None:
    """Requests Gunicorn answers itself (400, 414, 431, ...) are finished requests too: each
    has its line and is in g_requests."""
    server = _server(gunicorn, module_sqlite_env)
    answered = [raw_http(server, data)[0] for data, _ in REJECTED.values()]
    # Gunicorn 27's statuses; older releases answer some with another status (test_rejected.py
    # compares each with Gunicorn's answer without us).
    assert [status for _, status in REJECTED.values()] == answered or GUNICORN_VERSION < (27,)
    _next_events(server, 2)
    lines = [e for e in events(server.stdout_lines) if e["event_type"] == "request"]
    assert len(REJECTED) + 1 == len(lines)  # and the readiness probe
    assert len(lines) == sum(int(e["g_requests"]) for e in _saturation(server))


def test_a_timed_out_request_shows_in_timeouts_and_restarts(
    gunicorn: Start, module_sqlite_env: dict[str, str]
) -> None:
    """A sync request past --timeout: its timeout event is counted once in g_timeouts, the worker
    Gunicorn kills once in g_restarts, and the request is not a finished one."""
    server = _server(gunicorn, module_sqlite_env, "sync", "--timeout", "1", "--graceful-timeout", "1")
    _next_events(server)
    seen = len(_saturation(server))
    rid = uuid.uuid4().hex
    with contextlib.suppress(requests.ConnectionError):
        get(server, "/sleep/?s=10", rid)
    server.wait_for_stdout(lambda ls: any(f'req_id="{rid}"' in ln for ln in ls))
    deadline = time.monotonic() + 15
    while sum(int(e["g_restarts"]) for e in _saturation(server)[seen:]) < 1:
        assert time.monotonic() < deadline, _saturation(server)[seen:]
        time.sleep(0.05)
    after = _saturation(server)[seen:] + _next_events(server, 2)
    [timeout] = [e for e in events(server.stdout_lines) if e.get("req_id") == rid]
    assert "timeout" == timeout["event_type"]
    assert (1, 1, 0) == (
        sum(int(e["g_timeouts"]) for e in after),
        sum(int(e["g_restarts"]) for e in after),
        sum(int(e["g_requests"]) for e in after),
    ), after


def test_memory_is_the_sum_of_the_processes_rss(gunicorn: Start, module_sqlite_env: dict[str, str]) -> None:
    """g_mem_mib is the RSS of the arbiter and its workers, g_w_mem_max_mib the largest worker's,
    as /proc reads them just before and just after the event."""
    server = _server(gunicorn, module_sqlite_env)
    for _ in range(10):
        get(server, "/ok/")
    _next_events(server)

    def reading() -> tuple[float, float]:
        pids = sorted(workers(server.pid))
        assert 2 == len(pids)
        sizes = [_rss_mib(pid) for pid in pids]
        return _rss_mib(server.pid) + sum(sizes), max(sizes)

    total_before, largest_before = reading()
    [event] = _next_events(server)
    total_after, largest_after = reading()
    slack = 1.0  # MiB: an idle server's RSS moves by a few pages between two readings
    total, largest = float(event["g_mem_mib"]), float(event["g_w_mem_max_mib"])
    assert min(total_before, total_after) - slack <= total <= max(total_before, total_after) + slack
    assert min(largest_before, largest_after) - slack <= largest <= max(largest_before, largest_after) + slack
    assert largest * 2 < total  # two workers and the arbiter, each tens of MiB


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_a_sigkilled_worker_shows_in_restarts(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """A worker SIGKILLed while it serves a request: one event counts one restart, the busy time
    stops at the kill, and the events go on with two workers again."""
    server = _server(gunicorn, module_sqlite_env, kind)
    _next_events(server)
    victim = min(workers(server.pid))
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(get, server, "/sleep/?s=5", uuid.uuid4().hex) for _ in range(2)]
        time.sleep(0.5)  # both requests are in flight
        seen = len(_saturation(server))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while victim in workers(server.pid) or len(workers(server.pid)) != 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.05)
        after = _next_events(server, 3)
        for future in pending:
            with contextlib.suppress(requests.ConnectionError):  # the killed worker's client
                future.result()
    restarts = [int(e["g_restarts"]) for e in _saturation(server)[seen:]]
    assert 1 == sum(restarts), restarts
    assert "2" == after[-1]["g_w_count"]
    # Only the survivor's sleep keeps a worker busy once the victim is gone.
    assert all(float(e["g_w_active"]) <= 1.01 for e in after[1:]), after


def test_saturation_record_reaches_the_otlp_receiver(
    gunicorn: Start, module_sqlite_env: dict[str, str]
) -> None:
    """Each stdout event is also an OTLP log record named canonical.saturation, at INFO, with the
    same values as typed attributes and no trace context."""
    with HTTPReceiver() as receiver:
        env = {
            **module_sqlite_env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
        server = _server(gunicorn, env)
        for _ in range(5):
            get(server, "/ok/")
        [line] = _next_events(server)
        records = receiver.wait_for(
            lambda r: [
                log
                for log in r.logs()
                if log.event_name == "canonical.saturation"
                and log.attributes["g_mem_mib"] == float(line["g_mem_mib"])
            ]
        )
        server.stop()  # while the receiver is up: the exit's last export finds it
    [record] = records
    assert ("INFO", "canonical.saturation", "") == (
        record.severity_text,
        record.body,
        record.trace_id.strip("0"),
    )
    assert {
        k: str(v) if not isinstance(v, float) else f"{v:.3f}" for k, v in record.attributes.items()
    } == line
    assert isinstance(record.attributes["g_requests"], int) and isinstance(
        record.attributes["g_w_active"], float
    )
    assert server.pid == record.resource["process.pid"]  # from the arbiter


def test_interval_zero_turns_the_events_off(gunicorn: Start, module_sqlite_env: dict[str, str]) -> None:
    """CANONICAL_LOGS_SATURATION_INTERVAL=0: requests get their lines, no saturation event comes."""
    env = {**module_sqlite_env, "CANONICAL_LOGS_SATURATION_INTERVAL": "0"}
    server = gunicorn(env=env, gunicorn_args=["--workers", "2"])
    rid = uuid.uuid4().hex
    get(server, "/ok/", rid)
    server.wait_for_stdout(lambda ls: any(rid in ln for ln in ls))
    time.sleep(1.5)  # nothing to poll for: three would-be intervals of 0.5 s pass
    assert [] == _saturation(server)


def test_a_bad_interval_is_reported_and_the_default_used(
    gunicorn: Start, module_sqlite_env: dict[str, str]
) -> None:
    """A value that is not a number >= 0 is named in one warning; the server serves as usual."""
    env = {**module_sqlite_env, "CANONICAL_LOGS_SATURATION_INTERVAL": "often"}
    server = gunicorn(env=env)
    assert 200 == get(server, "/ok/").status_code
    assert "CANONICAL_LOGS_SATURATION_INTERVAL='often' is not a number >= 0.0; using the default 10.0" in (
        server.stderr_text()
    )


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_process_titles_show_busy_idle_and_the_backlog(
    gunicorn: Start, module_sqlite_env: dict[str, str]
) -> None:
    """With setproctitle installed, ps shows each worker busy or idle and the arbiter's backlog."""
    pytest.importorskip("setproctitle")
    server = gunicorn(env=module_sqlite_env)
    [worker] = workers(server.pid)

    def until(pid: int, ending: str) -> str:
        deadline = time.monotonic() + 5
        while not (title := _title(pid)).endswith(ending) and time.monotonic() < deadline:
            time.sleep(0.02)
        return title

    assert until(worker, " idle").startswith("gunicorn: worker [")
    with ThreadPoolExecutor(3) as pool:
        held = pool.submit(get, server, "/sleep/?s=2")
        assert until(worker, " busy").endswith("] busy")
        queued = [pool.submit(get, server, "/ok/") for _ in range(2)]
        assert until(server.pid, " backlog=2").startswith("gunicorn: master [")
        assert 200 == held.result().status_code and [200, 200] == [q.result().status_code for q in queued]
    assert until(worker, " idle").endswith("] idle")
    assert until(server.pid, " backlog=0").endswith(" backlog=0")


def test_grpc_export_from_the_arbiter_and_from_workers_forked_after_it(
    gunicorn: Start, module_sqlite_env: dict[str, str]
) -> None:
    """With OTLP over gRPC the arbiter exports its events on its own channel, and a worker forked
    after that (a SIGKILLed one's replacement) still exports its request lines on its own."""
    from tests.otlp_receiver import GRPCReceiver

    with GRPCReceiver() as receiver:
        env = {
            **module_sqlite_env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
        server = _server(gunicorn, env)
        receiver.wait_for(lambda r: [log for log in r.logs() if log.event_name == "canonical.saturation"])
        killed = workers(server.pid)
        for victim in killed:
            os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while len(workers(server.pid) - killed) < 2:
            assert time.monotonic() < deadline, "the killed workers were not replaced"
            time.sleep(0.05)
        rids = {uuid.uuid4().hex for _ in range(6)}
        for rid in rids:
            assert 200 == get(server, "/ok/", rid).status_code
        receiver.wait_for(
            lambda r: (
                rids
                <= {log.attributes.get("req_id") for log in r.logs() if log.event_name == "canonical.request"}
            )
        )
        before = len([log for log in receiver.logs() if log.event_name == "canonical.saturation"])
        receiver.wait_for(
            lambda r: len([log for log in r.logs() if log.event_name == "canonical.saturation"]) > before + 1
        )
        server.stop()  # while the receiver is up: the exit's last export finds it
    assert [] == internal_errors(server), server.stderr_text()
