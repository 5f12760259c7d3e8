"""Shipping to a collector: the example app under ``opentelemetry-instrument gunicorn`` with two
workers, exporting to a real OTLP receiver (tests/otlp_receiver.py) over HTTP and gRPC.

This is the docker-compose topology without Docker: app -> OTLP -> collector.
"""

from __future__ import annotations

import json
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import (
    GunicornServer,
    drop_database,
    events,
    http_session,
    prepare_database,
)
from tests.otlp_receiver import GRPCReceiver, HTTPReceiver, ReceivedLog, ReceivedSpan

SERVICE = "shop"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
SEVERITY_INFO = 9
OUR_MARKER = "[otel_canonical_logs: export problems are logged at most once"
SDK_COMPLAINT = re.compile(r"Transient error|Failed to export|Queue full|Exception while exporting")

Receiver = HTTPReceiver | GRPCReceiver


def export_env(receiver: Receiver, protocol: str, **extra: str) -> dict[str, str]:
    """What a user sets to ship to a collector, plus short batch delays so tests poll briefly."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if protocol == "grpc" else "http/protobuf",
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        # A failed batch gives up after 2 s, so export resumes quickly once the receiver is back.
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        **extra,
    }


def make_receiver(protocol: str) -> Receiver:
    return GRPCReceiver() if protocol == "grpc" else HTTPReceiver()


def worker_pids(server: GunicornServer) -> set[int]:
    return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", server.stderr_text())}


def records_for(receiver: Receiver, req_ids: list[str]) -> list[ReceivedLog]:
    """The received log records of these requests, once every one of them is there."""
    wanted = set(req_ids)
    found = receiver.wait_for(
        lambda r: (
            (got := [x for x in r.logs() if x.attributes.get("req_id") in wanted])
            and {x.attributes["req_id"] for x in got} == wanted
            and got
        )
    )
    return sorted(found, key=lambda x: req_ids.index(x.attributes["req_id"]))


def get(server: GunicornServer, path: str) -> str:
    rid = uuid.uuid4().hex
    response = http_session().get(server.url(path), headers={"X-Request-ID": rid}, timeout=10)
    assert 200 == response.status_code, response.text
    return rid


def assert_clean_stderr(server: GunicornServer) -> None:
    text = server.stderr_text()
    assert LOG_PREFIX not in text, text
    assert not SDK_COMPLAINT.search(text), text


class Deployment:
    """One receiver and one two-worker server exporting to it."""

    def __init__(self, receiver: Receiver, server: GunicornServer) -> None:
        self.receiver = receiver
        self.server = server


@pytest.fixture(scope="module", params=["http", "grpc"])
def deployment(request: pytest.FixtureRequest, db_env: dict[str, str]) -> Iterator[Deployment]:
    """Per protocol and database: a receiver and ``opentelemetry-instrument gunicorn -w 2``."""
    with make_receiver(request.param) as receiver:
        env = {**db_env, **export_env(receiver, request.param)}
        with GunicornServer(env=env, gunicorn_args=["--workers", "2"]) as server:
            yield Deployment(receiver, server)
            assert_clean_stderr(server)


def test_each_request_becomes_a_log_record_joined_to_its_trace(deployment: Deployment) -> None:
    """3 requests with queries: 3 canonical.request records with the line's values, each trace
    received with its SERVER root and DB client spans."""
    server, receiver = deployment.server, deployment.receiver
    req_ids = [get(server, "/n-plus-one/") for _ in range(3)]
    records = records_for(receiver, req_ids)
    lines = {e["req_id"]: e for e in events(server.stdout_lines) if e.get("req_id") in req_ids}

    for record in records:
        attrs = record.attributes
        line = lines[attrs["req_id"]]
        assert ("canonical.request", SEVERITY_INFO, "INFO") == (
            record.event_name,
            record.severity_number,
            record.severity_text,
        )
        assert list(line) == list(attrs)
        assert (200, 6, 5) == (attrs["resp_status"], attrs["db_queries"], attrs["db_dup_queries"])
        assert isinstance(attrs["resp_time"], float) and isinstance(attrs["db_time"], float)
        assert f"{attrs['resp_time']:.3f}" == line["resp_time"]
        assert (line["trace_id"], line["span_id"]) == (record.trace_id, record.span_id)
        assert (attrs["trace_id"], attrs["span_id"]) == (record.trace_id, record.span_id)

        # The default binds this iteration's trace id (ruff B023); mypy infers no lambda with one.
        trace = receiver.wait_for(
            lambda r, tid=record.trace_id: (  # type: ignore[misc]
                [s for s in r.spans() if s.trace_id == tid and not s.parent_span_id]
                and [s for s in r.spans() if s.trace_id == tid]
            )
        )
        (root,) = [s for s in trace if not s.parent_span_id]
        assert (SPAN_KIND_SERVER, record.span_id) == (root.kind, root.span_id)
        db_spans = [s for s in trace if s.kind == SPAN_KIND_CLIENT and _is_db(s)]
        assert attrs["db_queries"] == len(db_spans), [s.name for s in trace]


def _is_db(span: ReceivedSpan) -> bool:
    return "db.system" in span.attributes or "db.system.name" in span.attributes


def test_resource_names_the_service_and_the_worker(deployment: Deployment) -> None:
    """Records and spans carry service.name and the pid of the worker that served them."""
    server, receiver = deployment.server, deployment.receiver
    (record,) = records_for(receiver, [get(server, "/ok/")])
    spans = receiver.wait_for(lambda r: [s for s in r.spans() if s.trace_id == record.trace_id])
    assert SERVICE == record.resource["service.name"]
    assert record.resource["process.pid"] in worker_pids(server)
    assert server.pid == record.resource["process.parent_pid"]
    assert {record.resource["process.pid"]} == {s.resource["process.pid"] for s in spans}
    assert {record.resource["service.instance.id"]} == {s.resource["service.instance.id"] for s in spans}


def test_both_workers_export(deployment: Deployment) -> None:
    """Two requests held at once land on the two sync workers; each exports its own record."""
    server, receiver = deployment.server, deployment.receiver
    pids: set[int] = set()
    # A pair can land on one worker only while the other is still booting: retry a few pairs.
    for _ in range(10):
        with ThreadPoolExecutor(2) as pool:
            req_ids = list(pool.map(lambda _: get(server, "/sleep/?s=0.3"), range(2)))
        pids |= {r.resource["process.pid"] for r in records_for(receiver, req_ids)}
        if len(pids) == 2:
            break
    assert 2 == len(pids) and worker_pids(server) >= pids


def _p50(server: GunicornServer, n: int) -> tuple[float, list[str]]:
    http = http_session()
    times, req_ids = [], []
    for _ in range(n):
        rid = uuid.uuid4().hex
        start = time.perf_counter()
        response = http.get(server.url("/n-plus-one/"), headers={"X-Request-ID": rid}, timeout=10)
        times.append(time.perf_counter() - start)
        assert 200 == response.status_code
        req_ids.append(rid)
    return statistics.median(times), req_ids


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_collector_down_costs_requests_nothing_and_export_resumes(
    protocol: str, gunicorn: Callable[..., GunicornServer]
) -> None:
    """Receiver stopped mid-run: same latency, every stdout line, one complaint per worker;
    receiver back on the same port: records flow again."""
    db = prepare_database("sqlite")
    receiver = make_receiver(protocol).start()
    server: GunicornServer | None = None
    try:
        server = gunicorn(env={**db, **export_env(receiver, protocol)}, gunicorn_args=["--workers", "2"])
        _p50(server, 20)  # warm up both workers and their exporters
        p50_up, up_ids = _p50(server, 60)
        records_for(receiver, up_ids)

        receiver.stop()
        p50_down, down_ids = _p50(server, 60)
        lines = server.wait_for_stdout(lambda ls: all(any(r in ln for ln in ls) for r in down_ids))
        assert set(down_ids) <= {e.get("req_id") for e in events(lines)}
        assert p50_down <= max(2 * p50_up, p50_up + 0.005), (p50_up, p50_down)

        def complaints() -> list[str]:
            return [ln for ln in server.stderr_lines() if SDK_COMPLAINT.search(ln)]

        # Each worker's export thread hits the dead port on its next batch and complains once.
        deadline = time.monotonic() + 15
        while not complaints() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert complaints(), server.stderr_text()
        assert all(OUR_MARKER in ln for ln in complaints()), complaints()
        assert len(complaints()) <= 2, complaints()

        receiver.start()
        back_ids = [get(server, "/n-plus-one/") for _ in range(3)]
        records = records_for(receiver, back_ids)
        assert 3 == len(records)
        assert LOG_PREFIX not in server.stderr_text()
        print(f"\n{protocol}: p50 receiver up {p50_up * 1000:.2f} ms, down {p50_down * 1000:.2f} ms")
    finally:
        if server is not None:
            server.stop()  # while the receiver is up, so the workers' last flush is quick
        receiver.stop()
        drop_database(db)


def test_json_stdout_matches_the_exported_record(
    module_sqlite_env: dict[str, str], gunicorn: Callable[..., GunicornServer]
) -> None:
    """CANONICAL_LOGS_FORMAT=json: one JSON object per line, same keys and values as the record."""
    with HTTPReceiver() as receiver:
        env = {**module_sqlite_env, **export_env(receiver, "http", CANONICAL_LOGS_FORMAT="json")}
        server = gunicorn(env=env)
        rid = get(server, "/n-plus-one/")
        (record,) = records_for(receiver, [rid])
        lines = server.wait_for_stdout(lambda ls: any(rid in ln for ln in ls))
        objects = [json.loads(line) for line in lines]
        (obj,) = [o for o in objects if o.get("req_id") == rid]
        assert list(record.attributes) == list(obj)
        assert (record.trace_id, 6, 200) == (obj["trace_id"], obj["db_queries"], obj["resp_status"])
        assert round(record.attributes["resp_time"], 3) == obj["resp_time"]
        assert_clean_stderr(server)
        server.stop()


def test_stdout_off_still_exports(
    module_sqlite_env: dict[str, str], gunicorn: Callable[..., GunicornServer]
) -> None:
    """CANONICAL_LOGS_STDOUT=false: nothing on stdout, the record still reaches the collector."""
    with HTTPReceiver() as receiver:
        env = {**module_sqlite_env, **export_env(receiver, "http", CANONICAL_LOGS_STDOUT="false")}
        server = gunicorn(env=env)
        (record,) = records_for(receiver, [get(server, "/ok/")])
        assert "canonical.request" == record.event_name
        assert [] == server.stdout_lines
        assert_clean_stderr(server)
        server.stop()  # while the receiver is up, so the workers' last flush is quick


def test_bad_format_is_reported_once_and_logfmt_used(
    module_sqlite_env: dict[str, str], gunicorn: Callable[..., GunicornServer]
) -> None:
    """CANONICAL_LOGS_FORMAT=yaml: one warning naming the variable, logfmt lines on stdout."""
    server = gunicorn(
        env={**module_sqlite_env, "CANONICAL_LOGS_FORMAT": "yaml"}, gunicorn_args=["--workers", "2"]
    )
    rid = get(server, "/ok/")
    lines = server.wait_for_stdout(lambda ls: any(rid in ln for ln in ls))
    assert rid in {e.get("req_id") for e in events(lines)}
    warnings = [ln for ln in server.stderr_lines() if "CANONICAL_LOGS_FORMAT" in ln]
    assert 1 == len(warnings) and "'yaml'" in warnings[0], server.stderr_text()
