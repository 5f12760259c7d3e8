"""Spans that never end cannot grow memory (README, "Guarantees"): root and child spans an
application leaks, and a client hanging up mid-stream, leave the tracked state capped and every
request its own line. ``make stress`` case ``leaks`` runs thousands.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid

import requests

from tests.integration.harness import events
from tests.integration.reliability import (
    Start,
    counts,
    event_where,
    get,
    internal_errors,
    lines_until,
    request_bytes,
)


def test_leaked_spans_keep_tracked_state_capped(gunicorn: Start, sqlite_env: dict[str, str]) -> None:
    """Views that start root and child spans and never end them: each request still gets its
    line, the requests tracked stay at CANONICAL_LOGS_MAX_OPEN_REQUESTS, the evictions are counted,
    and a leaked child span is forgotten with its request."""
    server = gunicorn(env={**sqlite_env, "CANONICAL_LOGS_MAX_OPEN_REQUESTS": "20"})
    rids = [uuid.uuid4().hex for _ in range(12)]
    for rid in rids:
        assert 200 == get(server, "/fault/leak-spans/?roots=5&children=5", rid).status_code
    # Every line since the readiness probes, in order: one per request, none for a leaked root.
    lines = lines_until(server, rids[-1])
    assert rids == [e.get("req_id") for e in events(lines) if e.get("req_path") != "/health"]
    body = counts(server)
    assert 20 == body["open_requests"]  # 19 leaked roots and the /fault/counts/ request itself
    assert 20 == body["tracked_spans"]  # no leaked child span outlives its request
    assert 12 * 5 + 1 - 20 == body["counts"]["dropped.open_request_evicted"]
    assert [] == internal_errors(server)


def test_leaked_root_span_does_not_take_over_the_timeout_event(
    gunicorn: Start, sqlite_env: dict[str, str]
) -> None:
    """A view that starts a root span of its own (a new trace) and then times out: the timeout
    event is still the request's, with its id, path and trace."""
    server = gunicorn(env=sqlite_env, gunicorn_args=["--timeout", "2", "--graceful-timeout", "1"])
    rid = uuid.uuid4().hex
    with contextlib.suppress(requests.RequestException):
        get(server, "/fault/leak-spans/?roots=1&s=10", rid)
    event = event_where(server, "req_id", rid)
    assert ("timeout", "/fault/leak-spans/") == (event["event_type"], event["req_path"])
    assert event["timeout_loc"].endswith(":fault_leak_spans")


def test_client_hanging_up_mid_stream_leaves_nothing_tracked(
    gunicorn: Start, sqlite_env: dict[str, str]
) -> None:
    """A streaming response whose client hangs up after the first chunk (the rest of the
    generator never iterated): one line, no request left tracked, the worker serves on."""
    server = gunicorn(env=sqlite_env)
    rid = uuid.uuid4().hex
    head = request_bytes(b"/fault/stream/?chunks=100&s=0.02", (b"X-Request-ID", rid.encode()))
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(12).startswith(b"HTTP/1.1 200")
    event = event_where(server, "req_id", rid)
    assert ("request", "200") == (event["event_type"], event["resp_status"])
    deadline = time.monotonic() + 10
    while (body := counts(server))["open_requests"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (1, 1) == (body["open_requests"], body["tracked_spans"])  # the /fault/counts/ request
    assert 1 == len([e for e in events(server.stdout_lines) if e["req_id"] == rid])
