"""A tiny local OTLP/HTTP receiver for the benchmark: accepts every export and discards it.

    python bench/otlp_sink.py [--port N]     # prints "listening 127.0.0.1:<port>" once ready

POST /v1/traces, /v1/logs, /v1/metrics -> 200 with an empty protobuf body (an empty
Export*ServiceResponse), answered from a thread per connection with HTTP/1.1 keep-alive, so the
exporters under test never wait on it. It counts requests and bytes per path and, when the
`opentelemetry-proto` package is importable, the spans / log records / metric data points inside
them (upb decoding: a few microseconds per export). GET /stats returns the counters as JSON; on
SIGTERM or SIGINT it prints them and exits. Loopback only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import zlib
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:  # Only to count items inside the exports; bytes and requests are counted without it.
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
except ImportError:  # pragma: no cover - the dev venv has it
    ExportTraceServiceRequest = ExportLogsServiceRequest = ExportMetricsServiceRequest = None


def _count_spans(body: bytes) -> int:
    msg = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)


def _count_logs(body: bytes) -> int:
    msg = ExportLogsServiceRequest.FromString(body)
    return sum(len(sl.log_records) for rl in msg.resource_logs for sl in rl.scope_logs)


def _count_points(body: bytes) -> int:
    msg = ExportMetricsServiceRequest.FromString(body)
    total = 0
    for rm in msg.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


# path -> (item name, counter); unknown paths are still answered 200 and counted.
_ITEMS = {
    "/v1/traces": ("spans", _count_spans),
    "/v1/logs": ("log_records", _count_logs),
    "/v1/metrics": ("data_points", _count_points),
}

_lock = threading.Lock()
_stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def snapshot() -> dict[str, dict[str, int]]:
    with _lock:
        return {path: dict(counts) for path, counts in _stats.items()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporters' requests.Session expects

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?", 1)[0]
        items = -1
        item = _ITEMS.get(path)
        if item is not None and ExportTraceServiceRequest is not None and body:
            try:
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                raw = gzip.decompress(body) if encoding == "gzip" else body
                if encoding == "deflate":
                    raw = zlib.decompress(body)
                items = item[1](raw)
            except Exception:
                items = -1
        with _lock:
            counts = _stats[path]
            counts["requests"] += 1
            counts["bytes"] += len(body)
            if item is not None and items >= 0:
                counts[item[0]] += items
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/stats":
            self.send_error(404)
            return
        data = json.dumps(snapshot(), sort_keys=True).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per export would only cost time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    print(f"listening 127.0.0.1:{server.server_address[1]}", flush=True)
    stop.wait()
    server.shutdown()
    print("otlp_sink totals: " + json.dumps(snapshot(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
