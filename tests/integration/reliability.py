"""What the reliability tests share with each other and with ``make stress`` (tests/stress/run.py).

Each reliability test checks one promise of the README's "Guarantees" section on real Gunicorn
under ``opentelemetry-instrument``; the tests are grouped by promise in
tests/integration/test_hostile_input.py, test_rejected.py, test_app_faults.py,
test_stdout_lost.py, test_collector_down.py, test_leaks.py, test_concurrency.py and
test_worker_death.py. Where the promise is that a request behaves exactly as without the
package, the same request also goes to an uninstrumented twin (``instrument=False``, the
``twins`` fixture in conftest.py) and the two answers are compared byte for byte. Every stdout
line is judged by the strict logfmt decoder (``events``).

Here: talking to a server (raw requests, waiting for a line, the worker's counts), the requests
Gunicorn rejects, a collector that never answers, and the load cases (``concurrent_markers``,
``kill_workers_under_load``) that ``make stress`` reruns with larger counts, judged into a
``Tally``. No ``test_`` prefix: pytest does not collect this module.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import GunicornServer, events, http_session
from tests.logfmt_strict import decode_line

Start = Callable[..., GunicornServer]

HEX32 = re.compile(r"[0-9a-f]{32}")
REQ_ID = re.compile(r'req_id="([^"]*)"')  # as logfmt writes it, always quoted
VALUE_MAX = 2048  # CANONICAL_LOGS_VALUE_MAX default
TRUNCATED = "...[truncated]"
# Gunicorn's limit_request_field_size default: one header line, its name and CRLF included.
FIELD_LIMIT = 8190


# -- talking to a server -----------------------------------------------------------------------


def request_bytes(
    path: bytes = b"/echo-headers/", *headers: tuple[bytes, bytes], method: bytes = b"GET"
) -> bytes:
    """A raw HTTP/1.1 request, byte for byte what the test says: nothing is validated or fixed."""
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def raw_http(server: GunicornServer, data: bytes, timeout: float = 10) -> tuple[int | None, bytes]:
    """Send ``data`` on a new connection; the response's status and body (None: no response)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before reading it all
            sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None, b""


def lines_until(server: GunicornServer, marker: str, timeout: float = 15) -> list[str]:
    """Captured stdout up to and including the line of the request whose req_id is ``marker``."""
    needle = f'req_id="{marker}"'
    lines = server.wait_for_stdout(lambda ls: any(needle in ln for ln in ls), timeout=timeout)
    return lines[: next(i for i, ln in enumerate(lines) if needle in ln) + 1]


def event_where(
    server: GunicornServer, key: str, value: str, timeout: float = 15, needle: str | None = None
) -> dict[str, str]:
    """The one canonical line whose ``key`` is ``value`` (every stdout line strictly parsed),
    waited for until a line contains ``needle`` (by default ``key="value"``, as written)."""
    needle = needle or f'{key}="{value}"'
    lines = server.wait_for_stdout(lambda ls: any(needle in ln for ln in ls), timeout=timeout)
    matching = [e for e in events(lines) if e.get(key) == value]
    assert 1 == len(matching), matching
    return matching[0]


def get(server: GunicornServer, path: str, rid: str | None = None, timeout: float = 30) -> requests.Response:
    headers = {"X-Request-ID": rid} if rid else {}
    return http_session().get(server.url(path), headers=headers, timeout=timeout)


def counts(server: GunicornServer) -> dict[str, Any]:
    """What the serving worker counted (``/fault/counts/``: internal errors and expected losses,
    requests and spans it tracks, its pid)."""
    body: dict[str, Any] = get(server, "/fault/counts/").json()
    return body


def internal_errors(server: GunicornServer) -> list[str]:
    return [line for line in server.stderr_lines() if LOG_PREFIX in line]


def workers(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def wsgi_text(raw: bytes) -> str:
    """What a header value becomes on the line: Gunicorn trims it, the bytes are read as UTF-8
    with invalid sequences replaced."""
    return raw.strip(b" \t").decode("utf-8", errors="replace")


def capped(text: str) -> str:
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - len(TRUNCATED)] + TRUNCATED


def wait_for_saturation_sample(server: GunicornServer, timeout: float = 10) -> None:
    """Until a request's line carries the arbiter's first saturation sample (about a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rid = uuid.uuid4().hex
        get(server, "/ok/", rid)
        if "g_w_count" in event_where(server, "req_id", rid):
            return
        time.sleep(0.1)
    raise AssertionError("no saturation sample")


# -- what a load case saw ----------------------------------------------------------------------


@dataclass
class Tally:
    """What a load case saw: requests sent, canonical lines found, and what went wrong."""

    sent: int = 0
    lines: int = 0
    lost: int = 0  # completed requests without their line
    duplicated: int = 0  # requests with more than one line (killed ones: more than one)
    malformed: int = 0  # stdout lines the strict decoder rejects
    wrong: int = 0  # lines whose values are not the request's own
    rss_growth_kib: int | None = None
    notes: list[str] = field(default_factory=list)


def strict_events(lines: list[str]) -> tuple[list[dict[str, str]], int]:
    """Every line that decodes strictly as a canonical line, and how many did not."""
    parsed, malformed = [], 0
    for line in lines:
        try:
            pairs = decode_line(line)
        except ValueError:
            malformed += 1
            continue
        if not pairs or pairs[0][0] != "event_type" or len(dict(pairs)) != len(pairs):
            malformed += 1
            continue
        parsed.append(dict(pairs))
    return parsed, malformed


# -- requests Gunicorn rejects -----------------------------------------------------------------

REJECTED = {
    "bad request line": (b"GARBAGE\r\n\r\n", 400),
    "bad HTTP version": (b"GET /echo-headers/ HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 400),
    "request line too long": (request_bytes(b"/" + b"a" * 5000), 414),
    "header too large": (request_bytes(b"/echo-headers/", (b"User-Agent", b"u" * FIELD_LIMIT)), 431),
    "too many headers": (request_bytes(b"/echo-headers/", *((b"X-H%d" % i, b"v") for i in range(101))), 431),
    "invalid header name": (request_bytes(b"/echo-headers/", (b"Bad Header", b"v")), 400),
    "NUL in a header": (request_bytes(b"/echo-headers/", (b"User-Agent", b"a\x00b")), 400),
    "bare CR in a header": (request_bytes(b"/echo-headers/", (b"User-Agent", b"a\rb")), 400),
    "escape byte in a header": (request_bytes(b"/echo-headers/", (b"Referer", b"\x1b[31mred")), 400),
    "obsolete line folding": (request_bytes(b"/echo-headers/", (b"User-Agent", b"a\r\n folded")), 400),
    "conflicting lengths": (
        request_bytes(
            b"/echo-headers/%e2%80%a8",
            (b"User-Agent", b'ua" k="v'),
            (b"Content-Length", b"1"),
            (b"Content-Length", b"2"),
            method=b"POST",
        ),
        400,
    ),
}


# -- a collector that never answers ------------------------------------------------------------


class Blackhole:
    """A collector that accepts TCP connections and never reads or answers (at most 256 held)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)
            if len(self._held) > 256:
                self._held.pop(0).close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()
        self._thread.join(5)


# -- concurrency -------------------------------------------------------------------------------


def concurrent_markers(server: GunicornServer, total: int, clients: int, deadline_s: float = 120) -> Tally:
    """``total`` /context/ requests from ``clients`` threads, each request setting its own marker
    with Context.set and reading it back after a nap; every line must carry its own marker."""
    tags = [uuid.uuid4().hex for _ in range(total)]
    tally = Tally(sent=total)
    stop_at = time.monotonic() + deadline_s
    local = threading.local()

    def fetch(tag: str) -> int | None:
        if time.monotonic() > stop_at:
            return None
        if not hasattr(local, "http"):
            local.http = http_session()
        url = server.url(f"/context/?tag={tag}&nap=0.002")
        return int(local.http.get(url, headers={"X-Request-ID": tag}, timeout=30).status_code)

    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(fetch, tags))
    completed = {tag for tag, status in zip(tags, statuses, strict=True) if status == 200}
    tally.notes.append(f"{len(completed)} answered 200")
    with contextlib.suppress(AssertionError):
        server.wait_for_stdout(lambda ls: sum(1 for ln in ls if "/context/" in ln) >= len(completed), 30)
    parsed, tally.malformed = strict_events(server.stdout_lines)
    mine = [e for e in parsed if e.get("req_id") in completed]
    tally.lines = len(mine)
    seen: dict[str, int] = {}
    for event in mine:
        seen[event["req_id"]] = seen.get(event["req_id"], 0) + 1
        if not event["req_id"] == event.get("app_tag") == event.get("app_tag_after"):
            tally.wrong += 1
    tally.lost = len(completed - set(seen)) + (total - len(completed))
    tally.duplicated = sum(1 for n in seen.values() if n > 1)
    return tally


# -- killed workers ----------------------------------------------------------------------------


KILL_PATHS = ("/db/", "/sleep/?s=0.05", "/ok/", "/n-plus-one/")


def kill_workers_under_load(
    server: GunicornServer, kills: int, clients: int = 4, interval: float = 0.4, max_requests: int = 5000
) -> Tally:
    """Steady load from ``clients`` threads while a worker is SIGKILLed ``kills`` times, each
    time after the previous one was replaced. Completed requests must have exactly one line,
    killed ones at most one; the tally also checks /dev/shm and the worker count afterwards."""
    shm_before = set(os.listdir("/dev/shm"))
    stop = threading.Event()
    results: list[tuple[str, int | None]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 30 + kills * 5

    def client(index: int) -> None:
        http = http_session()
        n = 0
        while not stop.is_set() and time.monotonic() < deadline:
            rid = uuid.uuid4().hex
            path = KILL_PATHS[(index + n) % len(KILL_PATHS)]
            n += 1
            try:
                status: int | None = http.get(
                    server.url(path), headers={"X-Request-ID": rid}, timeout=10
                ).status_code
            except requests.RequestException:
                status = None
                http = http_session()
            with lock:
                results.append((rid, status))
                if len(results) >= max_requests:
                    stop.set()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    tally = Tally()
    killed = 0
    try:
        for round_ in range(kills):
            time.sleep(interval)
            current = workers(server.pid)
            victim = sorted(current)[round_ % len(current)]
            os.kill(victim, signal.SIGKILL)
            killed += 1
            respawned = time.monotonic() + 15
            while (
                victim in workers(server.pid) or len(workers(server.pid)) < 2
            ) and time.monotonic() < respawned:
                time.sleep(0.02)
        time.sleep(interval)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    tally.sent = len(results)
    completed = {rid for rid, status in results if status is not None}
    failed = {rid for rid, status in results if status is None}
    with contextlib.suppress(AssertionError):  # a line still missing then is lost
        server.wait_for_stdout(lambda ls: completed <= set(REQ_ID.findall("\n".join(ls))), 30)
    time.sleep(0.5)  # a cut request may or may not have a line: give a late one time to show
    parsed, tally.malformed = strict_events(server.stdout_lines)
    per_rid: dict[str, list[dict[str, str]]] = {}
    for event in parsed:
        per_rid.setdefault(event.get("req_id", ""), []).append(event)
    tally.lines = sum(len(per_rid.get(rid, [])) for rid, _ in results)
    tally.lost = sum(1 for rid in completed if not per_rid.get(rid))
    tally.duplicated = sum(1 for rid in completed | failed if len(per_rid.get(rid, [])) > 1)
    statuses = dict(results)
    tally.wrong = sum(
        1
        for rid in completed
        for e in per_rid.get(rid, [])
        if (e["event_type"], e.get("resp_status")) != ("request", str(statuses[rid]))
    )
    tally.notes.append(f"{killed} kills, {len(failed)} requests cut by a kill")
    if set(os.listdir("/dev/shm")) - shm_before:
        tally.notes.append(f"/dev/shm gained {sorted(set(os.listdir('/dev/shm')) - shm_before)}")
    return tally
