"""Traces worth keeping: with nothing head-sampled, every request that went wrong arrives at a real
OTLP receiver as its whole trace (the root and every child, counted like the line), its line says
``trace_sampled=true`` and which rule kept it; a fast 200 arrives as no span at all."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import GunicornServer, events, http_session
from tests.otlp_receiver import HTTPReceiver, ReceivedLog, ReceivedSpan

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
STATUS_ERROR = 2


def keep_env(receiver: HTTPReceiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_off",  # nothing head-sampled
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        **extra,
    }


@pytest.fixture
def receiver() -> Iterator[HTTPReceiver]:
    with HTTPReceiver() as started:
        yield started


def _request(server: GunicornServer, path: str) -> tuple[int, dict[str, str]]:
    rid = uuid.uuid4().hex
    response = http_session().get(server.url(path), headers={"X-Request-ID": rid}, timeout=30)
    lines = server.wait_for_stdout(
        lambda ls: any(f'req_id="{rid}"' in x and x.startswith('event_type="request"') for x in ls)
    )
    (line,) = [e for e in events(lines) if e.get("req_id") == rid and e["event_type"] == "request"]
    return response.status_code, line


def _trace(receiver: HTTPReceiver, trace_id: str, count: int) -> list[ReceivedSpan]:
    """The spans of one trace, once ``count`` of them arrived (and no more after a short wait)."""
    spans = receiver.wait_for(
        lambda r: (got := [s for s in r.spans() if s.trace_id == trace_id]) and len(got) >= count and got
    )
    return spans


def _assert_whole(spans: list[ReceivedSpan], line: dict[str, str]) -> None:
    """Root first, every child parented inside the trace, and as many queries, renders and
    outgoing calls as the line counts."""
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    assert root.span_id == line["span_id"]
    assert all(s.parent_span_id in by_id for s in spans if s is not root)
    db = [
        s
        for s in spans
        if s.kind == SPAN_KIND_CLIENT and ("db.system" in s.attributes or "db.system.name" in s.attributes)
    ]
    renders = [s for s in spans if "django.template.name" in s.attributes]
    http_out = [
        s
        for s in spans
        if s.kind == SPAN_KIND_CLIENT
        and ("http.request.method" in s.attributes or "http.method" in s.attributes)
    ]
    assert len(db) == int(line.get("db_queries", 0))
    assert len(renders) == int(line.get("tmpl_renders", 0))
    assert len(http_out) == int(line.get("http_out_calls", 0))
    assert all(s.start_time_unix_nano <= s.end_time_unix_nano for s in spans)


def _log_of(rid: str) -> Callable[[Any], ReceivedLog | None]:
    def probe(r: Any) -> ReceivedLog | None:
        return next((x for x in r.logs() if x.attributes.get("req_id") == rid), None)

    return probe


def _expected_count(line: dict[str, str]) -> int:
    return 1 + sum(int(line.get(k, 0)) for k in ("db_queries", "tmpl_renders", "http_out_calls"))


def test_requests_that_went_wrong_keep_their_whole_trace(
    receiver: HTTPReceiver, gunicorn: Callable[..., GunicornServer], module_sqlite_env: dict[str, str]
) -> None:
    server = gunicorn(
        env={**module_sqlite_env, **keep_env(receiver, CANONICAL_LOGS_KEEP_SLOW="0.5")},
        gunicorn_args=["--workers", "1", "--timeout", "30"],
    )
    cases = {
        "/boom/": "error",
        "/partial/": "partial_failure",
        "/sleep/?s=0.6": "slow",
        "/n-plus-one/": "n_plus_one",
    }
    fast_status, fast = _request(server, "/ok/")
    assert (200, "false") == (fast_status, fast["trace_sampled"]) and "trace_keep" not in fast
    for path, rule in cases.items():
        status, line = _request(server, path)
        assert ("true", rule) == (line["trace_sampled"], line["trace_keep"]), (path, line)
        spans = _trace(receiver, line["trace_id"], _expected_count(line))
        _assert_whole(spans, line)
        record = receiver.wait_for(_log_of(line["req_id"]))
        assert record.flags & 1 and record.attributes["trace_keep"] == rule
        if rule == "error":
            assert status == 500
    assert not [s for s in receiver.spans() if s.trace_id == fast["trace_id"]]


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_kept_trace_has_every_child_of_every_instrumentor(
    receiver: HTTPReceiver, gunicorn: Callable[..., GunicornServer], module_sqlite_env: dict[str, str]
) -> None:
    """Queries and renders (span-less on the fast path) and the requests instrumentor's outgoing
    calls (real spans) all arrive, parented in the request's trace."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        env = keep_env(receiver, CANONICAL_LOGS_KEEP="slow", CANONICAL_LOGS_KEEP_SLOW="0")
        env["EXAMPLE_UPSTREAM_URL"] = f"http://127.0.0.1:{upstream.server_address[1]}/"
        server = gunicorn(env={**module_sqlite_env, **env}, gunicorn_args=["--workers", "1"])
        for path in ("/http-out/", "/receipt/", "/books/", "/n-plus-one/"):
            status, line = _request(server, path)
            assert (200, "true", "slow") == (status, line["trace_sampled"], line["trace_keep"])
            _assert_whole(_trace(receiver, line["trace_id"], _expected_count(line)), line)
    finally:
        upstream.shutdown()


def test_a_timed_out_request_keeps_its_trace_so_far(
    receiver: HTTPReceiver, gunicorn: Callable[..., GunicornServer], module_sqlite_env: dict[str, str]
) -> None:
    """Killed by Gunicorn's timeout: its root (ended at the snapshot, ERROR) and its queries so far
    are exported before the worker dies."""
    server = gunicorn(
        env={**module_sqlite_env, **keep_env(receiver)},
        gunicorn_args=["--workers", "1", "--timeout", "2"],
    )
    rid = uuid.uuid4().hex
    with pytest.raises(Exception):  # noqa: B017 - the connection dies with the worker
        http_session().get(server.url("/slow-query/?s=30"), headers={"X-Request-ID": rid}, timeout=30)
    lines = server.wait_for_stdout(lambda ls: any(f'req_id="{rid}"' in x for x in ls), timeout=20)
    (event,) = [e for e in events(lines) if e.get("req_id") == rid]
    assert ("timeout", "true", "timeout") == (
        event["event_type"],
        event["trace_sampled"],
        event["trace_keep"],
    )
    spans = _trace(receiver, event["trace_id"], 2)
    (root,) = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    assert root.status_code == STATUS_ERROR
    queries = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
    assert len(queries) == int(event["db_queries"]) + 1  # the one still running when it was killed
    assert any(s.status_code == STATUS_ERROR for s in queries)


def test_a_stuck_request_keeps_its_trace_when_it_ends(
    receiver: HTTPReceiver, gunicorn: Callable[..., GunicornServer], module_sqlite_env: dict[str, str]
) -> None:
    server = gunicorn(
        env={**module_sqlite_env, **keep_env(receiver)},
        gunicorn_args=["--workers", "1", "--worker-class", "gthread", "--threads", "2", "--timeout", "1"],
    )
    status, line = _request(server, "/sleep/?s=1.8")
    assert (200, "true") == (status, line["trace_sampled"])
    assert "stuck" in line["trace_keep"].split(",")
    _assert_whole(_trace(receiver, line["trace_id"], _expected_count(line)), line)


def test_head_sampled_requests_only_gain_the_field(
    receiver: HTTPReceiver, gunicorn: Callable[..., GunicornServer], module_sqlite_env: dict[str, str]
) -> None:
    env = keep_env(receiver)
    env["OTEL_TRACES_SAMPLER"] = "always_on"
    server = gunicorn(env={**module_sqlite_env, **env}, gunicorn_args=["--workers", "1"])
    for path in ("/ok/", "/n-plus-one/", "/boom/"):
        _, line = _request(server, path)
        assert "true" == line["trace_sampled"] and "trace_keep" not in line
        _assert_whole(_trace(receiver, line["trace_id"], _expected_count(line)), line)


USER_PROCESSOR = """
import json

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor


class Recorder(SpanProcessor):
    def on_end(self, span):
        with open({path!r}, "a") as out:
            ctx = span.context
            record = [format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), ctx.trace_flags.sampled]
            out.write(json.dumps(record) + "\\n")


def post_fork(server, worker):
    trace.get_tracer_provider().add_span_processor(Recorder())
"""


def test_a_users_own_span_processor_receives_the_kept_spans(
    receiver: HTTPReceiver,
    gunicorn: Callable[..., GunicornServer],
    module_sqlite_env: dict[str, str],
    tmp_path: Path,
) -> None:
    import json

    seen = tmp_path / "seen.jsonl"
    config = tmp_path / "gunicorn_conf.py"
    config.write_text(USER_PROCESSOR.format(path=str(seen)))
    server = gunicorn(
        env={**module_sqlite_env, **keep_env(receiver)},
        # -c, not --config: opentelemetry-instrument would take that one as its own --configurator.
        gunicorn_args=["--workers", "1", "-c", str(config)],
    )
    _, fast = _request(server, "/ok/")
    _, kept = _request(server, "/n-plus-one/")
    expected = _expected_count(kept)
    got = _trace(receiver, kept["trace_id"], expected)
    records = [json.loads(x) for x in seen.read_text().splitlines()]
    mine = [span_id for trace_id, span_id, sampled in records if trace_id == kept["trace_id"] and sampled]
    assert len(mine) == len(got) == expected
    # The root last, as live spans end: a processor that assembles a trace at its root's end sees
    # the whole of it.
    assert kept["span_id"] == mine[-1]
    # Recorded spans reach every processor as they end, not sampled (as the SDK does): the fast
    # request's root too; only a kept request's spans come again, sampled.
    assert [False] == [sampled for trace_id, _, sampled in records if trace_id == fast["trace_id"]]
