"""The query spans of a head-sampled request, made when the request ends from what was recorded
while each query ran, arrive at a real OTLP receiver as the very spans the live path sends: the
same name, kind, attributes, scope, flags, trace state, status, exception event and parent, in
the request's time. One server takes the deferred path (the SDK's batch processor only), the
other the live one (a span processor of the user's that acts when a span starts); a recorder in
each says which path every query span took, so neither comparison can pass by accident."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import GunicornServer, events, http_session
from tests.integration.test_workers import ASYNC_KINDS, KINDS
from tests.otlp_receiver import HTTPReceiver, ReceivedSpan

SPAN_KIND_CLIENT = 3

# A recorder of how every ended span was made — a live span's attributes are the SDK's
# ``BoundedAttributes``, those of a span made from a record a plain dict — and when it was handed
# over, on the worker's clock (the spans' own). ``Starter`` also acts
# when a span starts (as a user's processor may), which keeps every query span live.
RECORDER = """
import json
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.attributes import BoundedAttributes


class Recorder(SpanProcessor):
    def on_end(self, span):
        with open({path!r}, "a") as out:
            live = isinstance(span._attributes, BoundedAttributes)
            record = [format(span.context.span_id, "016x"), live, time.time_ns()]
            out.write(json.dumps(record) + "\\n")


class Starter(Recorder):
    def on_start(self, span, parent_context=None):
        pass


def post_fork(server, worker):
    trace.get_tracer_provider().add_span_processor({cls}())
"""

# Each path, and how many of its queries are a transaction's end (COMMIT, ROLLBACK): Django runs
# them as driver calls, not cursor executions, and counts them; dbapi makes no span of them.
PATHS = (
    ("/db/", 0),  # ten queries, nine with the same text
    ("/truth/generic/", 0),  # queries run inside the template's render: their parent is the render
    ("/fault/db-error/", 1),  # a query that fails (status, exception event), rolled back
    ("/stream/?chunks=3", 0),  # one query per chunk, sent after the view returned
)


@pytest.fixture(scope="module")
def receiver() -> Iterator[HTTPReceiver]:
    with HTTPReceiver() as started:
        yield started


def _server(
    gunicorn: Callable[..., GunicornServer],
    env: dict[str, str],
    receiver: HTTPReceiver,
    config: Path,
    *args: str,
    wsgi: str = "mysite.wsgi",
) -> GunicornServer:
    return gunicorn(
        wsgi=wsgi,
        env={
            **env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        # -c, not --config: opentelemetry-instrument would take that one as its own --configurator.
        gunicorn_args=["--workers", "1", "-c", str(config), *args],
    )


def _recorded(seen: Path) -> dict[str, tuple[bool, int]]:
    """Each span the recorder saw: whether it was live, when it was handed over."""
    return {r[0]: (r[1], r[2]) for r in map(json.loads, seen.read_text().splitlines())}


def _recorder_server(
    gunicorn: Callable[..., GunicornServer],
    env: dict[str, str],
    receiver: HTTPReceiver,
    tmp_path: Path,
    cls: str,
    *args: str,
    wsgi: str = "mysite.wsgi",
) -> tuple[GunicornServer, Path]:
    seen = tmp_path / f"{cls}.jsonl"
    config = tmp_path / f"{cls}_conf.py"
    config.write_text(RECORDER.format(path=str(seen), cls=cls))
    return _server(gunicorn, env, receiver, config, *args, wsgi=wsgi), seen


def _trace(
    server: GunicornServer, receiver: HTTPReceiver, path: str, spanless: int
) -> tuple[dict[str, str], list[ReceivedSpan]]:
    rid = uuid.uuid4().hex
    http_session().get(server.url(path), headers={"X-Request-ID": rid}, timeout=30).raise_for_status()
    lines = server.wait_for_stdout(
        lambda ls: any(f'req_id="{rid}"' in x and x.startswith('event_type="request"') for x in ls)
    )
    (line,) = [e for e in events(lines) if e.get("req_id") == rid and e["event_type"] == "request"]
    expected = 1 + int(line.get("db_queries", 0)) - spanless + int(line.get("tmpl_renders", 0))
    spans = receiver.wait_for(
        lambda r: (
            (got := [s for s in r.spans() if s.trace_id == line["trace_id"]]) and len(got) >= expected and got
        )
    )
    return line, spans


def _shape(spans: list[ReceivedSpan]) -> list[tuple[Any, ...]]:
    """Each query span as everything but its ids and times, its parent by name, in start order;
    an exception event's stack trace by its last line (its frames name the server's paths)."""
    by_id = {s.span_id: s for s in spans}
    shapes = []
    for s in sorted(spans, key=lambda s: s.start_time_unix_nano):
        if s.kind != SPAN_KIND_CLIENT:
            continue
        event_shapes = tuple(
            (
                name,
                {
                    k: (v.strip().splitlines()[-1] if k == "exception.stacktrace" else v)
                    for k, v in attrs.items()
                },
            )
            for name, attrs in s.events
        )
        shapes.append(
            (
                s.name,
                s.attributes,
                s.resource.get("service.name"),
                s.scope,
                s.scope_version,
                s.schema_url,
                s.flags,
                s.trace_state,
                s.status_code,
                s.status_message,
                event_shapes,
                s.dropped_attributes_count,
                by_id[s.parent_span_id].name,
            )
        )
    return shapes


def _within_parents(spans: list[ReceivedSpan], line: dict[str, str]) -> None:
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        if s.kind != SPAN_KIND_CLIENT:
            continue
        parent = by_id[s.parent_span_id]
        assert parent.trace_id == s.trace_id == line["trace_id"]
        assert s.start_time_unix_nano <= s.end_time_unix_nano
        if parent.span_id != line["span_id"]:  # a render: the query ran inside it
            assert parent.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano
            assert s.end_time_unix_nano <= parent.end_time_unix_nano


def test_deferred_query_spans_are_the_live_ones(
    receiver: HTTPReceiver,
    gunicorn: Callable[..., GunicornServer],
    module_sqlite_env: dict[str, str],
    tmp_path: Path,
) -> None:
    servers = {
        cls: _recorder_server(gunicorn, module_sqlite_env, receiver, tmp_path, cls)
        for cls in ("Recorder", "Starter")
    }
    rendered_parent = False
    for path, spanless in PATHS:
        got = {}
        for cls, (server, seen) in servers.items():
            line, spans = _trace(server, receiver, path, spanless)
            queries = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
            assert len(queries) == int(line["db_queries"]) - spanless > 0, path
            _within_parents(spans, line)
            recorded = _recorded(seen)
            # Deferred without a processor that acts at start; live with one.
            assert {recorded[s.span_id][0] for s in queries} == {cls == "Starter"}, (cls, path)
            got[cls] = _shape(spans)
        assert got["Recorder"] == got["Starter"], path
        rendered_parent |= any(shape[-1].startswith("render ") for shape in got["Recorder"])
        if path.startswith("/fault/"):
            assert any(shape[8] == 2 and shape[10] for shape in got["Recorder"]), "the failed query"
    assert rendered_parent, "a query ran inside a render"


def test_a_request_of_many_queries_holds_at_most_the_cap(
    receiver: HTTPReceiver,
    gunicorn: Callable[..., GunicornServer],
    module_sqlite_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """With ``CANONICAL_LOGS_KEEP_MAX_SPANS=4``, the ten queries of ``/db/`` are handed over four
    at a time as the request runs: when any query starts, fewer than four ended ones are waiting,
    and every query still arrives, made from its record."""
    cap = 4
    env = {**module_sqlite_env, "CANONICAL_LOGS_KEEP_MAX_SPANS": str(cap)}
    server, seen = _recorder_server(gunicorn, env, receiver, tmp_path, "Recorder")
    line, spans = _trace(server, receiver, "/db/", 0)
    queries = sorted((s for s in spans if s.kind == SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano)
    assert len(queries) == int(line["db_queries"]) == 10
    recorded = _recorded(seen)
    assert not any(recorded[q.span_id][0] for q in queries), "every one made from its record"
    handed = {q.span_id: recorded[q.span_id][1] for q in queries}
    for q in queries:
        t = q.start_time_unix_nano
        waiting = [p for p in queries if p.end_time_unix_nano <= t < handed[p.span_id]]
        assert len(waiting) < cap, (t, len(waiting))
    # Not all at the end: the first ones were handed over before the last query started.
    assert handed[queries[0].span_id] < queries[-1].start_time_unix_nano


def test_a_timed_out_sampled_request_sends_its_queries_so_far(
    receiver: HTTPReceiver,
    gunicorn: Callable[..., GunicornServer],
    module_sqlite_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Killed by Gunicorn's timeout, a head-sampled request's recorded queries are made into spans
    before the worker dies: the one that ended, and the one still running (ERROR, ended at the
    snapshot, inside its root)."""
    server, seen = _recorder_server(
        gunicorn, module_sqlite_env, receiver, tmp_path, "Recorder", "--timeout", "2"
    )
    rid = uuid.uuid4().hex
    with pytest.raises(Exception):  # noqa: B017 - the connection dies with the worker
        http_session().get(server.url("/slow-query/?s=30"), headers={"X-Request-ID": rid}, timeout=30)
    lines = server.wait_for_stdout(lambda ls: any(f'req_id="{rid}"' in x for x in ls), timeout=20)
    (event,) = [e for e in events(lines) if e.get("req_id") == rid]
    assert (event["event_type"], event["trace_sampled"]) == ("timeout", "true")
    assert "trace_keep" not in event
    finished = int(event["db_queries"])
    spans = receiver.wait_for(
        lambda r: (
            (got := [s for s in r.spans() if s.trace_id == event["trace_id"]])
            and len(got) >= finished + 2
            and got
        )
    )
    (root,) = [s for s in spans if s.span_id == event["span_id"]]
    queries = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
    assert len(queries) == finished + 1
    recorded = _recorded(seen)
    assert not any(recorded[q.span_id][0] for q in queries)
    (running,) = [q for q in queries if q.status_code == 2]
    assert running.status_message.startswith("still running")
    assert "WITH RECURSIVE" in str(running.attributes.get("db.statement"))
    for q in queries:
        assert q.parent_span_id == root.span_id
        assert root.start_time_unix_nano <= q.start_time_unix_nano <= q.end_time_unix_nano
        assert q.end_time_unix_nano <= root.end_time_unix_nano


def test_a_requests_query_spans_reach_the_exporter_before_its_root(
    receiver: HTTPReceiver,
    gunicorn: Callable[..., GunicornServer],
    module_sqlite_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The SDK's batch processor comes before ours in the provider's list, so it is handed a
    request's root before our ``on_end`` runs: the deferred query spans are handed over when the
    root ends, before any ``on_end``, so that the exporter queues them ahead of the root, as live
    spans that end first. In batches of one span, the receiver gets spans in the order they were
    queued: every query of a request arrives before its root. (Queued after it, a batch exported
    in between carried the root alone, and a reader of the receiver saw a trace without its
    queries.)"""
    env = {**module_sqlite_env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1"}
    server, seen = _recorder_server(gunicorn, env, receiver, tmp_path, "Recorder")
    for path, spanless in PATHS[:3]:  # the streamed body's queries run after its root has ended
        line, spans = _trace(server, receiver, path, spanless)
        queries = [s.span_id for s in spans if s.kind == SPAN_KIND_CLIENT]
        assert queries and not any(_recorded(seen)[q][0] for q in queries), path
        arrived = [s.span_id for s in receiver.spans() if s.trace_id == line["trace_id"]]
        assert line["span_id"] == arrived[-1], path
        # Each once: none handed over both when the root ended and again after it.
        expected = 1 + int(line["db_queries"]) - spanless + int(line.get("tmpl_renders", 0))
        assert len(set(arrived)) == len(arrived) == expected, path


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "sync"])
def test_every_worker_type_makes_the_query_spans_from_records(
    receiver: HTTPReceiver,
    gunicorn: Callable[..., GunicornServer],
    module_sqlite_env: dict[str, str],
    tmp_path: Path,
    kind: str,
) -> None:
    """On each worker type (sync is the tests above), a sampled request's queries — from a sync
    view, and on the ASGI workers from async code (the async ORM, ``sync_to_async``) — arrive
    made from their records, as many as the line counts, each inside its root."""
    args, app = KINDS[kind]
    server, seen = _recorder_server(
        gunicorn, module_sqlite_env, receiver, tmp_path, "Recorder", *args, wsgi=app
    )
    paths = ["/db/", "/async/db/?marker=m"] if kind in ASYNC_KINDS else ["/db/"]
    for path in paths:
        line, spans = _trace(server, receiver, path, 0)
        queries = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
        assert len(queries) == int(line["db_queries"]) > 0, path
        _within_parents(spans, line)
        recorded = _recorded(seen)
        assert not any(recorded[q.span_id][0] for q in queries), (kind, path)


# The Django database instrumentor re-instrumented in the worker with a tracer provider of the
# user's own, whose exporter writes each span it gets to a file.
OWN_PROVIDER = """
import json

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from otel_canonical_logs.instrumentation.django_db import DjangoDatabaseInstrumentor


class ToFile(SpanExporter):
    def export(self, spans):
        with open({path!r}, "a") as out:
            for span in spans:
                parent = span.parent.span_id if span.parent else 0
                record = [format(span.context.trace_id, "032x"), format(parent, "016x"), span.kind.name]
                out.write(json.dumps(record) + "\\n")
        return SpanExportResult.SUCCESS


def post_fork(server, worker):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ToFile()))
    DjangoDatabaseInstrumentor().uninstrument()
    DjangoDatabaseInstrumentor().instrument(tracer_provider=provider)
"""


def test_an_instrumentor_given_its_own_provider_keeps_its_live_query_spans(
    receiver: HTTPReceiver,
    gunicorn: Callable[..., GunicornServer],
    module_sqlite_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``DjangoDatabaseInstrumentor().instrument(tracer_provider=X)``: a sampled request's query
    spans go where X sends them, as live spans, and none is made from a record for the global
    provider's exporter (made spans are handed to the global provider's processors)."""
    seen = tmp_path / "own.jsonl"
    config = tmp_path / "own_conf.py"
    config.write_text(OWN_PROVIDER.format(path=str(seen)))
    server = _server(gunicorn, module_sqlite_env, receiver, config)
    # Ten queries, none expected at the receiver: it waits for the root alone (the queries made
    # from records, were there any, would reach it first).
    line, spans = _trace(server, receiver, "/db/", 10)
    mine = [r for r in map(json.loads, seen.read_text().splitlines()) if r[0] == line["trace_id"]]
    assert [[line["trace_id"], line["span_id"], "CLIENT"]] * int(line["db_queries"]) == mine
    assert [] == [s for s in spans if s.kind == SPAN_KIND_CLIENT]
