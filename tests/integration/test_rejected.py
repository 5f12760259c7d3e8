"""A request Gunicorn rejects still gets exactly one line (README, "Guarantees"): whatever its
parser refuses, a ``pre_request`` hook that raises, and an error Gunicorn only finds after the
application answered. Gunicorn's answer is the same as without the package.
``make stress`` case ``rejected`` sends thousands.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.harness import GUNICORN_VERSION, GunicornServer, events
from tests.integration.reliability import (
    HEX32,
    REJECTED,
    Start,
    counts,
    event_where,
    get,
    internal_errors,
    lines_until,
    raw_http,
    request_bytes,
)

# Keys a request that never reached the application may carry.
REJECTED_KEYS = {
    "event_type",
    "req_id",
    "req_method",
    "req_path",
    "req_referrer",
    "req_user_agent",
    "resp_status",
    "g_w_count",
    "g_w_active",
    "g_backlog",
}


@pytest.mark.parametrize(("data", "status"), list(REJECTED.values()), ids=list(REJECTED))
def test_requests_gunicorn_rejects_get_one_line(
    twins: tuple[GunicornServer, GunicornServer], data: bytes, status: int
) -> None:
    """A request Gunicorn's parser rejects is answered by Gunicorn as without us, gets exactly
    one well-formed request line with that status, and the worker serves on."""
    ours, plain = twins
    before = counts(ours)["pid"]
    previous = uuid.uuid4().hex
    assert 200 == get(ours, "/ok/", previous).status_code
    answer = raw_http(plain, data)
    assert answer[0] is not None, "no answer without us"
    if answer[0] < 400:  # an older Gunicorn's parser lets this one through
        pytest.skip(f"Gunicorn {GUNICORN_VERSION} answers {answer[0]} without us: not rejected")
    # The status of Gunicorn 27 (REJECTED); older releases answer some with another 4xx.
    assert status == answer[0] or GUNICORN_VERSION < (27,), answer
    assert answer == raw_http(ours, data)
    status = answer[0]
    after = uuid.uuid4().hex
    assert 200 == get(ours, "/ok/", after).status_code
    lines = lines_until(ours, after)
    start = next(i for i, line in enumerate(lines) if previous in line)
    [event] = events(lines[start + 1 : -1])
    assert ("request", str(status)) == (event["event_type"], event["resp_status"])
    assert HEX32.fullmatch(event["req_id"]) and set(event) <= REJECTED_KEYS, event
    assert before == counts(ours)["pid"]


def test_rejected_request_with_a_parsed_request_line_names_it(
    twins: tuple[GunicornServer, GunicornServer],
) -> None:
    """When Gunicorn rejects a request after reading its request line and headers (conflicting
    Content-Length), its line carries the method, path and User-Agent, escaped."""
    ours, _ = twins
    data, status = REJECTED["conflicting lengths"]
    marker = uuid.uuid4().hex
    data = data.replace(b'ua" k="v', marker.encode() + b'" k="v')
    assert status == raw_http(ours, data)[0]
    event = event_where(ours, "req_user_agent", marker + '" k="v', needle=marker)
    assert ("POST", "/echo-headers/\u2028", "400") == (
        event["req_method"],
        event["req_path"],
        event["resp_status"],
    )


def test_request_failed_by_a_pre_request_hook_gets_its_line(
    gunicorn: Start, sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    """A user's pre_request hook that raises (Gunicorn answers 500, the application never runs):
    answered as without us, one line with the request's method, path, id and the 500."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "def pre_request(worker, req):\n"
        "    if req.path.startswith('/echo-headers/'):\n"
        "        raise RuntimeError('hook refuses')\n"
    )
    ours = gunicorn(env=sqlite_env, gunicorn_args=["-c", str(conf)])
    plain = gunicorn(env=sqlite_env, gunicorn_args=["-c", str(conf)], instrument=False)
    rid = uuid.uuid4().hex
    head = request_bytes(b"/echo-headers/%22q%22", (b"X-Request-ID", rid.encode()))
    assert (500, raw_http(plain, head)[1]) == raw_http(ours, head)
    event = event_where(ours, "req_id", rid)
    assert ("GET", '/echo-headers/"q"', "500") == (
        event["req_method"],
        event["req_path"],
        event["resp_status"],
    )
    assert set(event) <= REJECTED_KEYS


def test_gunicorns_error_after_a_served_request_adds_no_line(
    gunicorn: Start, sqlite_env: dict[str, str]
) -> None:
    """On a gthread keep-alive connection, a broken chunked body that Gunicorn only trips over
    after the application answered leaves that request with exactly its one line."""
    server = gunicorn(env=sqlite_env, gunicorn_args=["--worker-class", "gthread", "--threads", "2"])
    rid = uuid.uuid4().hex
    head = b"\r\n".join(
        [
            b"POST /echo-headers/ HTTP/1.1",
            b"Host: 127.0.0.1",
            b"X-Request-ID: " + rid.encode(),
            b"Transfer-Encoding: chunked",
            b"",
            b"zz\r\nnot a chunk\r\n\r\n",
        ]
    )
    assert 200 == raw_http(server, head, timeout=5)[0]
    after = uuid.uuid4().hex
    assert 200 == get(server, "/ok/", after).status_code
    mine = [e for e in events(lines_until(server, after)) if e["req_id"] == rid]
    assert [("request", "200")] == [(e["event_type"], e["resp_status"]) for e in mine]
    assert [] == internal_errors(server)
