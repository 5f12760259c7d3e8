"""A collector that never answers costs requests nothing (README, "Guarantees"): latency as with a
live collector, every line written, what does not fit the capped queues dropped and counted.
``make stress`` case ``blackhole`` runs it with the SDK's default queue sizes; a collector that
goes away and comes back is in tests/integration/test_export.py.
"""

from __future__ import annotations

import statistics
import time
import uuid

from tests.integration.harness import GunicornServer, http_session
from tests.integration.reliability import Blackhole, Start, counts, internal_errors
from tests.otlp_receiver import HTTPReceiver

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
