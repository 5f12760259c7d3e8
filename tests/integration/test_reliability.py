"""Reliability and security on real Gunicorn under ``opentelemetry-instrument``: hostile input,
faults in and around the application, concurrency and killed workers.

Each test checks one promise of the README's "Guarantees" section. Where the promise is that a
request behaves exactly as without the package, the same request also goes to an uninstrumented
twin (``instrument=False``) and the two answers are compared byte for byte. Every stdout line is
judged by the strict logfmt decoder (``events``). The helpers and the load cases (``concurrent_markers``,
``kill_workers_under_load``, ...) that ``make stress`` (tests/stress/run.py) reuses with larger
counts are in tests/integration/reliability.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils.encoding import repercent_broken_unicode

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import (
    EXAMPLE_DIR,
    VENV_BIN,
    GunicornServer,
    database,
    drop_database,
    events,
    free_port,
    http_session,
    prepare_database,
)
from tests.integration.reliability import (
    FIELD_LIMIT,
    HEX32,
    REJECTED,
    VALUE_MAX,
    Blackhole,
    Start,
    capped,
    concurrent_markers,
    counts,
    event_where,
    get,
    internal_errors,
    kill_workers_under_load,
    lines_until,
    raw_http,
    request_bytes,
    wait_for_saturation_sample,
    workers,
    wsgi_text,
)
from tests.otlp_receiver import HTTPReceiver

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


@pytest.fixture
def sqlite_env() -> Iterator[dict[str, str]]:
    """A migrated, seeded SQLite database of its own."""
    with database("sqlite") as env:
        yield env


# -- hostile input ------------------------------------------------------------------------------

HOSTILE_VALUES = {
    "quotes": b'say "hi" it\'s "quoted"',
    "backslashes": b"C:\\temp\\new\\",
    "lone trailing backslash": b"\\",
    "escaped-looking text": b'\\" \\n \\u0000 \\\\',
    "tab": b"before\tafter",
    "unicode line separators": "a\u2028b\u2029c\u0085d".encode(),
    "invalid utf-8": b"\xff\xfe\xc3\x28\xa0\xa1\xed\xa0\x80\xf0\x28\x8c\xbc end",
    "raw latin-1 next-line byte": b"a\x85b",
    "logfmt key injection": b'x" event_type="timeout" req_id="forged',
    "key=value look-alikes": b"a=b c=d resp_status=200 =",
    "percent-encoded controls": b"%00%0d%0a%1b",
    "emoji and combining marks": "\U0001f600 e\u0301 \u202e evil".encode(),
}


@pytest.fixture(scope="module")
def twins() -> Iterator[tuple[GunicornServer, GunicornServer]]:
    """The example app under ``opentelemetry-instrument gunicorn`` and, beside it, uninstrumented."""
    env = prepare_database("sqlite")
    try:
        with GunicornServer(env=env) as ours, GunicornServer(env=env, instrument=False) as plain:
            wait_for_saturation_sample(ours)  # so that every line of the module has the g_* keys
            yield ours, plain
            assert [] == internal_errors(ours), ours.stderr_text()
    finally:
        drop_database(env)


@pytest.fixture(scope="module")
def benign_keys(twins: tuple[GunicornServer, GunicornServer]) -> set[str]:
    """The keys of the line of an ordinary request with a User-Agent and a Referer."""
    ours, _ = twins
    rid = uuid.uuid4().hex
    head = request_bytes(
        b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", b"ua"), (b"Referer", b"r")
    )
    assert 200 == raw_http(ours, head)[0]
    return set(event_where(ours, "req_id", rid))


@pytest.mark.parametrize("raw", list(HOSTILE_VALUES.values()), ids=list(HOSTILE_VALUES))
def test_hostile_header_values_round_trip(
    twins: tuple[GunicornServer, GunicornServer], benign_keys: set[str], raw: bytes
) -> None:
    """A hostile User-Agent and Referer: the request is answered as without us, the line parses
    strictly with no extra key, and both values read back as sent (invalid UTF-8 replaced)."""
    ours, plain = twins
    rid = uuid.uuid4().hex
    head = request_bytes(
        b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", raw), (b"Referer", raw)
    )
    assert raw_http(plain, head) == raw_http(ours, head)
    event = event_where(ours, "req_id", rid)
    assert benign_keys == set(event)
    assert (wsgi_text(raw), wsgi_text(raw)) == (event["req_user_agent"], event["req_referrer"])


def test_hostile_values_in_json_lines_round_trip(gunicorn: Start, sqlite_env: dict[str, str]) -> None:
    """With CANONICAL_LOGS_FORMAT=json, every hostile value leaves each stdout line one JSON
    object with the same keys as an ordinary request's, the values read back as sent."""
    server = gunicorn(env={**sqlite_env, "CANONICAL_LOGS_FORMAT": "json"})
    sent = {}
    for raw in [*HOSTILE_VALUES.values(), b'"\\' * 3000]:
        rid = uuid.uuid4().hex
        head = request_bytes(
            b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", raw), (b"Referer", b"r")
        )
        assert 200 == raw_http(server, head)[0]
        sent[rid] = capped(wsgi_text(raw))
    lines = server.wait_for_stdout(lambda ls: all(any(rid in ln for ln in ls) for rid in sent))
    objects = [json.loads(line) for line in lines]  # every line, the readiness probe's too
    got = {o["req_id"]: o for o in objects if o.get("req_id") in sent}
    assert sent == {rid: got[rid]["req_user_agent"] for rid in sent}
    assert 1 == len({tuple(o) for o in got.values()})


def test_header_at_gunicorns_size_limit_is_capped(
    twins: tuple[GunicornServer, GunicornServer], benign_keys: set[str]
) -> None:
    """A User-Agent as long as Gunicorn accepts (8190-byte header line) of quotes, backslashes
    and ``k=v`` is served as without us and comes back cut to 2048 characters, marker included."""
    ours, plain = twins
    rid = uuid.uuid4().hex
    value = (b'"\\ k=v ' * FIELD_LIMIT)[: FIELD_LIMIT - len(b"User-Agent: \r\n") - 1] + b"!"
    head = request_bytes(
        b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", value), (b"Referer", b"r")
    )
    status, body = raw_http(ours, head)
    assert (200, body) == (status, raw_http(plain, head)[1])
    event = event_where(ours, "req_id", rid)
    assert benign_keys == set(event)
    assert capped(value.decode()) == event["req_user_agent"]
    assert VALUE_MAX == len(event["req_user_agent"])


def test_control_and_non_utf8_bytes_in_the_path(twins: tuple[GunicornServer, GunicornServer]) -> None:
    """Percent-encoded control bytes, line breaks, quotes and invalid UTF-8 in the path: answered
    as without us; req_path is Django's request.path, the query string is nowhere on stdout."""
    ours, plain = twins
    rid = uuid.uuid4().hex
    path = b"/echo-headers/%00%01%07%1b%7f%0d%0aevent_type=%22timeout%22%20%5c%e2%80%a8%c2%85%ff%fe%ed%a0%80"
    head = request_bytes(path + b"?token=%00s3cr3t", (b"X-Request-ID", rid.encode()))
    assert raw_http(plain, head) == raw_http(ours, head)
    event = event_where(ours, "req_id", rid)
    # Django's request.path: percent-decoded, with bytes that are not UTF-8 kept percent-encoded.
    assert repercent_broken_unicode(urllib.parse.unquote_to_bytes(path)).decode() == event["req_path"]
    assert ("request", "404") == (event["event_type"], event["resp_status"])
    assert not any("s3cr3t" in line for line in ours.stdout_lines)


NON_ASCII_PATHS = {
    "latin-1 range": b"/echo-headers/caf%C3%A9-na%C3%AFve-%C3%9F/",
    "beyond latin-1": b"/echo-headers/%E6%97%A5%E6%9C%AC/",
    "mixed with invalid bytes": b"/echo-headers/%C3%A9%FF%C3%8E%80/",
}


@pytest.mark.parametrize("path", list(NON_ASCII_PATHS.values()), ids=list(NON_ASCII_PATHS))
def test_non_ascii_path_reads_as_django_decodes_it(
    twins: tuple[GunicornServer, GunicornServer], path: bytes
) -> None:
    """A path of UTF-8 letters (percent-encoded, as clients send them) is on the line as
    Django's request.path, whatever the letters: café stays café."""
    ours, _ = twins
    rid = uuid.uuid4().hex
    assert 404 == raw_http(ours, request_bytes(path, (b"X-Request-ID", rid.encode())))[0]
    expected = repercent_broken_unicode(urllib.parse.unquote_to_bytes(path)).decode()
    assert expected == event_where(ours, "req_id", rid)["req_path"]


UNSAFE_REQUEST_IDS = {
    "too long": [b"a" * 129],
    "far too long": [b"b" * 8000],
    "spaces": [b"two words"],
    "quotes": [b'say"what'],
    "tab": [b"tab\there"],
    "invalid utf-8": [b"abc\xff\xfe"],
    "logfmt key injection": [b'x" event_type="timeout" req_id="forged-request-id'],
    "key=value": [b"req_id=forged-request-id"],
    "repeated header": [b"first-request-id", b"second-request-id"],
}


@pytest.mark.parametrize("values", list(UNSAFE_REQUEST_IDS.values()), ids=list(UNSAFE_REQUEST_IDS))
def test_unsafe_request_ids_are_replaced_never_echoed(
    twins: tuple[GunicornServer, GunicornServer], values: list[bytes]
) -> None:
    """An X-Request-ID that is not one sane token (sent once or repeated) is replaced by a
    generated id, and its raw text appears nowhere on stdout."""
    ours, plain = twins
    marker = uuid.uuid4().hex
    head = request_bytes(
        b"/echo-headers/", (b"User-Agent", marker.encode()), *((b"X-Request-ID", v) for v in values)
    )
    assert raw_http(plain, head) == raw_http(ours, head)
    event = event_where(ours, "req_user_agent", marker)
    assert HEX32.fullmatch(event["req_id"]), event["req_id"]
    texts = [v.decode("utf-8", "replace") for v in values]
    echoed = [(t, k) for e in events(ours.stdout_lines) for k, v in e.items() for t in texts if t in v]
    assert [] == echoed


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
    assert (status, raw_http(plain, data)[1]) == raw_http(ours, data)
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


# -- faults in the application ----------------------------------------------------------------

FAULTY = {
    "raising enricher": "/enrich-boom/",
    "unencodable Context values": "/fault/context/",
    "exception in a template": "/receipt/?broken=heading",
    "exception in an included template": "/receipt/?broken=line",
    "DB error, caught": "/fault/db-error/",
    "DB error, uncaught": "/fault/db-error/?uncaught=1",
    "exception in a helper": "/boom/",
    "non-UTF-8 file name in the exception": "/fault/file-name/",
}


@pytest.fixture(scope="module")
def fault_twins(db_env: dict[str, str]) -> Iterator[tuple[GunicornServer, GunicornServer, HTTPReceiver]]:
    """Per database: the example app with its enrichers (one raises), exporting to a real OTLP
    receiver; and its uninstrumented twin."""
    env = {**db_env, "EXAMPLE_INSTRUMENTERS": "1"}
    with HTTPReceiver() as receiver:
        export = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
        with (
            GunicornServer(env={**env, **export}) as ours,
            GunicornServer(env=env, instrument=False) as plain,
        ):
            yield ours, plain, receiver


@pytest.mark.parametrize("path", list(FAULTY.values()), ids=list(FAULTY))
def test_faulty_request_is_answered_as_without_us_and_has_its_line(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver], path: str
) -> None:
    """Whatever goes wrong inside the request, its status and body are those of the
    uninstrumented app, and its line is written with that status."""
    ours, plain, _ = fault_twins
    rid = uuid.uuid4().hex
    theirs = get(plain, path)
    mine = get(ours, path, rid)
    assert (theirs.status_code, theirs.content) == (mine.status_code, mine.content)
    event = event_where(ours, "req_id", rid)
    assert ("request", str(mine.status_code)) == (event["event_type"], event["resp_status"])


def test_raising_enricher_is_undone_counted_and_logged_once(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """An enricher raising on every request: each line is written without its changes, every
    failure is counted, and stderr has one internal-error report for it."""
    ours, _, _ = fault_twins
    kind = "enricher.shop.instrumenters.flaky_enricher"
    already = counts(ours)["counts"].get(kind, 0)
    rids = [uuid.uuid4().hex for _ in range(3)]
    for rid in rids:
        assert 200 == get(ours, "/enrich-boom/", rid).status_code
    assert ["dev"] * 3 == [event_where(ours, "req_id", rid)["app_release"] for rid in rids]
    assert already + 3 == counts(ours)["counts"][kind]
    assert [kind] == [kind for line in internal_errors(ours) if kind in line]


def test_unencodable_context_values_reach_every_sink(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """Context.set with a lone surrogate, an object whose __str__ raises, invalid UTF-8 bytes,
    NaN and a 100-bit int: the line, the OTLP record and the root span all carry them, made safe
    (the exporter would drop an attribute holding a lone surrogate)."""
    ours, _, receiver = fault_twins
    rid = uuid.uuid4().hex
    assert 200 == get(ours, f"/fault/context/?marker={rid}", rid).status_code
    expected = {
        "app_surrogate": "a\ufffdb",
        "app_no_text": "<unrenderable _NoText>",
        "app_raw_bytes": "\ufffd\ufffd\x00ok",
        "app_huge": str(2**100),
        "app_marker": rid,
    }
    event = event_where(ours, "req_id", rid)
    assert expected == {key: event[key] for key in expected}
    assert "nan" == event["app_nan"]
    record = receiver.wait_for(
        lambda r: next((x for x in r.logs() if x.attributes.get("req_id") == rid), None)
    )
    assert expected == {key: record.attributes.get(key) for key in expected}
    root = receiver.wait_for(
        lambda r: next((s for s in r.spans() if s.attributes.get("canonical.app_marker") == rid), None)
    )
    assert expected == {key: root.attributes.get("canonical." + key) for key in expected}


def test_exception_message_with_a_lone_surrogate_is_exported(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """An uncaught error whose message holds a lone surrogate (a file name that is not UTF-8):
    the line and the OTLP record both carry the message, the surrogate replaced."""
    ours, _, receiver = fault_twins
    rid = uuid.uuid4().hex
    assert 500 == get(ours, "/fault/file-name/", rid).status_code
    expected = "no report named report-\ufffd.csv"
    assert expected == event_where(ours, "req_id", rid)["exc_msg"]
    record = receiver.wait_for(
        lambda r: next((x for x in r.logs() if x.attributes.get("req_id") == rid), None)
    )
    assert expected == record.attributes.get("exc_msg")


def test_error_status_with_a_lone_surrogate_costs_no_other_trace(
    gunicorn: Start, sqlite_env: dict[str, str]
) -> None:
    """A request whose uncaught error message holds a lone surrogate (which OTel puts into the root
    span's status) exports with the requests batched beside it: every trace arrives, its own too."""
    with HTTPReceiver() as receiver:
        # One batch for all: exported when the 2 s schedule delay is up, or at shutdown.
        export = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "2000"}
        server = gunicorn(env={**sqlite_env, **export})
        paths = ["/ok/"] * 3 + ["/fault/file-name/"] + ["/ok/"] * 3
        rids = [uuid.uuid4().hex for _ in paths]
        for path, rid in zip(paths, rids, strict=True):
            get(server, path, rid)
        traces = {event_where(server, "req_id", rid)["trace_id"] for rid in rids}
        received = receiver.wait_for(lambda r: traces <= {s.trace_id for s in r.spans()} and traces)
        assert 7 == len(received)
        server.stop()  # while the receiver is up: the worker's last flush is quick


def test_db_error_mid_request_is_on_the_line(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """A query failing between two good ones is counted with them; uncaught, it is the line's
    exception."""
    ours, _, _ = fault_twins
    caught, uncaught = uuid.uuid4().hex, uuid.uuid4().hex
    assert 200 == get(ours, "/fault/db-error/", caught).status_code
    assert 500 == get(ours, "/fault/db-error/?uncaught=1", uncaught).status_code
    event = event_where(ours, "req_id", caught)
    assert int(event["db_queries"]) >= 3 and not any(k.startswith("exc_") for k in event)
    event = event_where(ours, "req_id", uncaught)
    assert event["exc_type"] in ("OperationalError", "ProgrammingError")
    assert "shop_no_such_table" in event["exc_msg"]
    assert event["exc_loc"].startswith("shop/views.py:") and event["exc_loc"].endswith(":fault_db_error")


# -- stdout closed or broken -------------------------------------------------------------------


class Detached:
    """``opentelemetry-instrument gunicorn`` with stdin/stdout as a shell would leave them
    (``<&- >&-``: closed), or stdout a pipe nobody reads; stderr to a file."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, shell_redirects: str = "", stdout: Any = None
    ) -> None:
        self.port = free_port()
        command = [
            str(VENV_BIN / "opentelemetry-instrument"),
            str(VENV_BIN / "gunicorn"),
            "mysite.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--no-control-socket",
        ]
        if shell_redirects:
            command = ["sh", "-c", f'exec "$@" {shell_redirects}', "sh", *command]
        environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        environ.update(env, PYTHONPATH=str(EXAMPLE_DIR), PYTHONUNBUFFERED="1")
        self.stderr_path = log_dir / "gunicorn.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=EXAMPLE_DIR,
            env=environ,
            stdin=subprocess.DEVNULL if not shell_redirects else None,
            stdout=stdout,
            stderr=self._stderr,
            start_new_session=True,
        )
        self.host = "127.0.0.1"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if 200 == http_session().get(self.url("/ok/"), timeout=5).status_code:
                    return
            time.sleep(0.05)
        raise AssertionError(f"not ready: {self.stderr_path.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._stderr.close()


def _serve_through_lost_stdout(server: Detached, n: int) -> dict[str, Any]:
    http = http_session()
    statuses = [http.get(server.url("/n-plus-one/"), timeout=10).status_code for _ in range(n)]
    assert [200] * n == statuses
    body: dict[str, Any] = http.get(server.url("/fault/counts/"), timeout=10).json()
    return body


def test_closed_stdout_loses_lines_counted_never_writes_elsewhere(
    sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    """Started with stdin and stdout closed (``<&- >&-``): every request is served, every line is
    counted as lost, and none is written into whatever file later took descriptor 1."""
    server = Detached(sqlite_env, tmp_path, shell_redirects="<&- >&-")
    try:
        server.wait_ready()
        body = _serve_through_lost_stdout(server, 20)
        # /ok/ readiness, 20 requests; the /fault/counts/ line itself comes after the count.
        assert 21 <= body["counts"]["dropped.stdout_write"]
        fd1 = Path(f"/proc/{body['pid']}/fd/1")
        assert not fd1.exists() or fd1.stat().st_size == 0 or not fd1.is_file(), os.readlink(fd1)
        assert LOG_PREFIX not in server.stderr_path.read_text()
    finally:
        server.stop()


def test_broken_stdout_pipe_loses_lines_counted(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    """stdout a pipe whose reader has gone: every request is served by the same worker and every
    line is counted as lost."""
    server = Detached(sqlite_env, tmp_path, stdout=subprocess.PIPE)
    try:
        assert server.proc.stdout is not None
        server.proc.stdout.close()  # the reader goes away: each write now fails with EPIPE
        server.wait_ready()
        first = _serve_through_lost_stdout(server, 5)
        second = _serve_through_lost_stdout(server, 20)
        assert first["pid"] == second["pid"]
        assert 20 <= second["counts"]["dropped.stdout_write"] - first["counts"]["dropped.stdout_write"]
        assert LOG_PREFIX not in server.stderr_path.read_text()
    finally:
        server.stop()


# -- collector blackholed ----------------------------------------------------------------------


# Small queues so a short run overflows them; a short export timeout so shutdown is quick.
SMALL_QUEUES = {
    "OTEL_BSP_MAX_QUEUE_SIZE": "64",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
    "OTEL_BLRP_MAX_QUEUE_SIZE": "64",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "16",
    "OTEL_BSP_SCHEDULE_DELAY": "50",
    "OTEL_BLRP_SCHEDULE_DELAY": "50",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
}


def latencies(servers: list[GunicornServer], path: str, n: int) -> list[tuple[list[float], list[str]]]:
    """Wall times of ``n`` sequential requests to each server, taking turns so that the machine's
    ups and downs fall on all alike (all must answer 200), and their request ids."""
    http = http_session()
    out: list[tuple[list[float], list[str]]] = [([], []) for _ in servers]
    for _ in range(n):
        for server, (times, rids) in zip(servers, out, strict=True):
            rid = uuid.uuid4().hex
            started = time.perf_counter()
            response = http.get(server.url(path), headers={"X-Request-ID": rid}, timeout=30)
            times.append(time.perf_counter() - started)
            assert 200 == response.status_code
            rids.append(rid)
    return out


def test_blackholed_collector_costs_requests_nothing(gunicorn: Start, sqlite_env: dict[str, str]) -> None:
    """A collector that accepts connections and never answers: requests keep the latency they
    have with a live collector, all get their stdout line, and what does not fit the capped
    queues is dropped and counted."""
    hole = Blackhole()
    try:
        with HTTPReceiver() as receiver:
            args = ["--graceful-timeout", "3"]
            live = gunicorn(
                env={**sqlite_env, **SMALL_QUEUES, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
            )
            dark = gunicorn(
                env={**sqlite_env, **SMALL_QUEUES, "OTEL_EXPORTER_OTLP_ENDPOINT": hole.endpoint},
                gunicorn_args=args,
            )
            latencies([live, dark], "/db/", 20)  # warm up; the dark exporter is stuck by now
            (live_times, _), (dark_times, rids) = latencies([live, dark], "/db/", 150)
        p50_live, p50_dark = statistics.median(live_times), statistics.median(dark_times)
        assert p50_dark <= max(1.5 * p50_live, p50_live + 0.005), (p50_live, p50_dark)
        assert max(dark_times) < 1.0, max(dark_times)  # never waits for an export attempt (2 s)
        dark.wait_for_stdout(lambda ls: all(any(r in ln for ln in ls) for r in rids))
        dropped = counts(dark)["counts"]
        assert dropped.get("dropped.otlp_spans", 0) > 0 and dropped.get("dropped.otlp_logs", 0) > 0, dropped
        assert 0 < hole.accepted
        assert [] == internal_errors(dark)
    finally:
        hole.close()


# -- state that never ends ---------------------------------------------------------------------


def test_leaked_spans_keep_tracked_state_capped(gunicorn: Start, sqlite_env: dict[str, str]) -> None:
    """Views that start root and child spans and never end them: each request still gets its
    line, the requests tracked stay at CANONICAL_LOGS_MAX_OPEN_REQUESTS, the evictions are counted,
    and a leaked child span is forgotten with its request."""
    server = gunicorn(env={**sqlite_env, "CANONICAL_LOGS_MAX_OPEN_REQUESTS": "20"})
    rids = [uuid.uuid4().hex for _ in range(12)]
    for rid in rids:
        assert 200 == get(server, "/fault/leak-spans/?roots=5&children=5", rid).status_code
    assert [rid for rid in rids] == [event_where(server, "req_id", rid)["req_id"] for rid in rids]
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


# -- concurrency -------------------------------------------------------------------------------


def test_gthread_markers_never_mix(gunicorn: Start, sqlite_env: dict[str, str]) -> None:
    """400 requests from 16 concurrent clients on one gthread worker with 4 threads, each setting
    its own marker with Context.set: exactly 400 lines, each with its own marker."""
    server = gunicorn(env=sqlite_env, gunicorn_args=["--worker-class", "gthread", "--threads", "4"])
    tally = concurrent_markers(server, total=400, clients=16)
    assert (400, 0, 0, 0, 0) == (tally.lines, tally.lost, tally.duplicated, tally.wrong, tally.malformed), (
        tally
    )
    assert [] == internal_errors(server)


# -- killed workers ----------------------------------------------------------------------------


def settled_worker_count(server: GunicornServer, want: str, timeout: float = 20) -> str:
    """g_w_count once two lines more than a sampling interval apart both read ``want``."""
    deadline = time.monotonic() + timeout
    got, since = "", None
    while time.monotonic() < deadline:
        rid = uuid.uuid4().hex
        if 200 == get(server, "/ok/", rid).status_code:
            got = event_where(server, "req_id", rid).get("g_w_count", "")
        if got != want:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since > 1.2:
            return got
        time.sleep(0.2)
    return got


def test_sigkilled_workers_under_load(gunicorn: Start, db_env: dict[str, str]) -> None:
    """Two sync workers under steady load, SIGKILLed four times: they are respawned, every answered
    request has exactly its one line, every cut one at most one, nothing is left in /dev/shm, and
    the saturation sample keeps following the workers (two again, then three after TTIN)."""
    server = gunicorn(env=db_env, gunicorn_args=["--workers", "2", "--timeout", "30"])
    settled_worker_count(server, "2")
    tally = kill_workers_under_load(server, kills=4)
    assert (0, 0, 0, 0) == (tally.lost, tally.duplicated, tally.wrong, tally.malformed), tally
    assert tally.sent > 50 and not any(note.startswith("/dev/shm") for note in tally.notes), tally
    assert "2" == settled_worker_count(server, "2")
    assert 2 == len(workers(server.pid))
    os.kill(server.pid, signal.SIGTTIN)  # the sampler still follows the arbiter after the kills
    assert "3" == settled_worker_count(server, "3")
    assert [] == internal_errors(server)


def test_readme_guarantees_name_tests_that_exist() -> None:
    """Every test the README's "Guarantees" section cites exists, in this file or the one named."""
    readme = (EXAMPLE_DIR.parent / "README.md").read_text()
    section = readme.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    here = Path(__file__).read_text()
    cited = re.findall(r"`R::(test_\w+)`", section)
    assert len(cited) >= 15 and [] == [name for name in cited if f"def {name}(" not in here]
    for path, name in re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", section):
        assert f"def {name}(" in (EXAMPLE_DIR.parent / path).read_text(), (path, name)
