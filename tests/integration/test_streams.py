"""Streamed responses on real Gunicorn: the line is written once the body has been sent, its
resp_time is the client's time to the last byte, queries inside the generator count, a stream cut
by the worker timeout leaves a timeout event inside the generator, a client that hangs up is said."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable

import pytest
import requests

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import (
    EXAMPLE_DIR,
    GunicornServer,
    events,
    http_session,
)
from tests.integration.test_workers import KINDS, TIMEOUT

Start = Callable[..., GunicornServer]


def _start(gunicorn: Start, kind: str, env: dict[str, str]) -> GunicornServer:
    args, app = KINDS[kind]
    return gunicorn(
        env=env, wsgi=app, gunicorn_args=[*args, "--timeout", str(TIMEOUT), "--graceful-timeout", "1"]
    )


def _events_of(server: GunicornServer, rid: str, timeout: float = 15) -> list[dict[str, str]]:
    lines = server.wait_for_stdout(lambda ls: any(rid in ln for ln in ls), timeout=timeout)
    return [e for e in events(lines) if e.get("req_id") == rid]


STREAMS = {
    "sync": "/stream/?chunks=3&s=0.5",
    "gthread": "/stream/?chunks=3&s=0.5",
    "gevent": "/stream/?chunks=3&s=0.5",
    "uvicorn_worker": "/stream/async/?chunks=3&s=0.5",
    "asgi": "/stream/async/?chunks=3&s=0.5",
}


@pytest.mark.parametrize("kind", list(STREAMS))
def test_streamed_body_is_timed_to_its_last_byte_and_its_queries_count(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """No line while the body is still coming; then one, whose resp_time is within 50 ms of the
    client's time to the last byte, with the generator's three queries."""
    server = _start(gunicorn, kind, module_sqlite_env)
    rid = uuid.uuid4().hex
    started = time.perf_counter()
    with http_session().get(
        server.url(STREAMS[kind]), headers={"X-Request-ID": rid}, stream=True, timeout=20
    ) as response:
        chunks = response.iter_content(chunk_size=None)
        first = next(chunks)
        assert first.startswith(b"chunk 0")
        assert not any(rid in line for line in server.stdout_lines)  # the body is not sent yet
        body = first + b"".join(chunks)
    client_time = time.perf_counter() - started
    assert 3 == body.count(b"chunk ")
    [line] = _events_of(server, rid)
    assert "request" == line["event_type"] and "200" == line["resp_status"]
    assert abs(float(line["resp_time"]) - client_time) < 0.05, (line["resp_time"], client_time)
    assert "3" == line["db_queries"]
    assert "resp_aborted" not in line
    assert LOG_PREFIX not in server.stderr_text()


# kind -> (a stream that outlives --timeout and gets the worker killed, the line it waits at)
CUT = {
    "sync": ("/stream/?chunks=20&s=0.5", "            time.sleep(pause)\n"),
    "uvicorn_worker": ("/stream/async/?chunks=5&s=3&block=1", "                time.sleep(pause)\n"),
}


@pytest.mark.parametrize("kind", list(CUT))
def test_stream_cut_by_the_worker_timeout_gets_a_timeout_event_inside_the_generator(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """A stream that gets its worker killed mid-body (sync: past --timeout; Uvicorn: a generator
    that blocks the event loop): its one line is the timeout event, located in the generator,
    with the queries the chunks before it ran."""
    server = _start(gunicorn, kind, module_sqlite_env)
    path, waits_at = CUT[kind]
    rid = uuid.uuid4().hex
    received = b""
    with contextlib.suppress(requests.RequestException):  # the worker dies mid-body
        with http_session().get(
            server.url(path), headers={"X-Request-ID": rid}, stream=True, timeout=20
        ) as response:
            for chunk in response.iter_content(chunk_size=None):
                received += chunk
    assert received.count(b"chunk ") < 20
    [event] = _events_of(server, rid)
    assert "timeout" == event["event_type"]
    source = (EXAMPLE_DIR / "shop/async_views.py").read_text()
    sleep_line = source[: source.index(waits_at)].count("\n") + 1
    assert f"shop/async_views.py:{sleep_line}:body" == event["timeout_cause_loc"]
    # What the generator had run when the snapshot was taken; the kill comes a little later.
    assert 1 <= int(event["db_queries"]) <= max(received.count(b"chunk "), 1) + 1
    assert float(event["resp_time"]) < TIMEOUT + 1
    assert LOG_PREFIX not in server.stderr_text()


@pytest.mark.parametrize("kind", ["sync", "uvicorn_worker"])
def test_client_hanging_up_mid_stream_gets_one_line_that_says_so(
    gunicorn: Start, module_sqlite_env: dict[str, str], kind: str
) -> None:
    """The client reads the first chunk and closes the connection: one line, resp_aborted=true."""
    import django

    if kind != "sync" and django.VERSION < (5, 0):
        # Django 4.2's ASGI handler never reads http.disconnect while it streams, and Uvicorn
        # drops the body messages sent after it without an error: nothing can tell (README).
        pytest.skip(f"Django {django.__version__}: an ASGI client's hang-up mid-stream shows from Django 5")
    server = _start(gunicorn, kind, module_sqlite_env)
    rid = uuid.uuid4().hex
    path = "/stream/?chunks=30&s=0.05" if kind == "sync" else "/stream/async/?chunks=30&s=0.05"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {rid}\r\n\r\n".encode())
        assert b"chunk 0" in _read_until(sock, b"chunk 0")
    [line] = _events_of(server, rid)
    assert ("request", "true") == (line["event_type"], line.get("resp_aborted")), line
    assert 30 > int(line["db_queries"]) >= 1
    assert LOG_PREFIX not in server.stderr_text()
    # The worker serves on.
    assert 200 == http_session().get(server.url("/ok/"), timeout=10).status_code


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while marker not in data and time.monotonic() < deadline:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return data
