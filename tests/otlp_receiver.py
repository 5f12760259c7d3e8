"""A real OTLP receiver for tests: OTLP/HTTP or OTLP/gRPC on a loopback port, decoded with
``opentelemetry-proto``, so the exporters are exercised exactly as against a collector.

    with HTTPReceiver() as receiver:            # or GRPCReceiver()
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        ...
        logs = receiver.wait_for(lambda r: len(r.logs()) >= 3)

``stop()`` closes the listening socket and every open connection (a stopped collector), and
``start()`` binds the same port again (the collector is back).
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

POLL_INTERVAL = 0.05
T = TypeVar("T")


def free_port() -> int:
    """A port the kernel says is free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as the Python value it carries (ints stay ints, doubles floats)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    resource: dict[str, Any]
    scope: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    start_time_unix_nano: int = 0
    end_time_unix_nano: int = 0
    # The rest of what the wire carries: scope version and schema URL, W3C flags, trace state,
    # status message, and each event as (name, attributes).
    scope_version: str = ""
    schema_url: str = ""
    flags: int = 0
    trace_state: str = ""
    status_message: str = ""
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    dropped_attributes_count: int = 0


@dataclass(frozen=True)
class ReceivedLog:
    resource: dict[str, Any]
    scope: str
    event_name: str
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    time_unix_nano: int
    flags: int = 0  # the W3C trace flags of its span context: 1 = sampled


class Received:
    """Everything a receiver decoded, thread-safe; accessors return snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self._metrics: list[tuple[dict[str, Any], str]] = []
        self.requests: dict[str, int] = {"traces": 0, "logs": 0, "metrics": 0}

    def add_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        spans = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.append(
                        ReceivedSpan(
                            resource=resource,
                            scope=ss.scope.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes=attributes(span.attributes),
                            status_code=span.status.code,
                            start_time_unix_nano=span.start_time_unix_nano,
                            end_time_unix_nano=span.end_time_unix_nano,
                            scope_version=ss.scope.version,
                            schema_url=ss.schema_url,
                            flags=span.flags,
                            trace_state=span.trace_state,
                            status_message=span.status.message,
                            events=tuple((e.name, attributes(e.attributes)) for e in span.events),
                            dropped_attributes_count=span.dropped_attributes_count,
                        )
                    )
        with self._lock:
            self.requests["traces"] += 1
            self._spans.extend(spans)

    def add_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        records = []
        for rl in request.resource_logs:
            resource = attributes(rl.resource.attributes)
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    records.append(
                        ReceivedLog(
                            resource=resource,
                            scope=sl.scope.name,
                            event_name=rec.event_name,
                            severity_number=rec.severity_number,
                            severity_text=rec.severity_text,
                            body=any_value(rec.body),
                            attributes=attributes(rec.attributes),
                            trace_id=rec.trace_id.hex(),
                            span_id=rec.span_id.hex(),
                            time_unix_nano=rec.time_unix_nano,
                            flags=rec.flags & 0xFF,
                        )
                    )
        with self._lock:
            self.requests["logs"] += 1
            self._logs.extend(records)

    def add_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        metrics = [
            (attributes(rm.resource.attributes), m.name)
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        ]
        with self._lock:
            self.requests["metrics"] += 1
            self._metrics.extend(metrics)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def logs(self) -> list[ReceivedLog]:
        with self._lock:
            return list(self._logs)

    def metrics(self) -> list[tuple[dict[str, Any], str]]:
        """(resource attributes, metric name) for every metric received."""
        with self._lock:
            return list(self._metrics)


class _Receiver:
    """What both transports share: the decoded data, the port, start/stop and polling."""

    scheme = "http"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received = Received()

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        return self.received.spans()

    def logs(self) -> list[ReceivedLog]:
        return self.received.logs()

    def wait_for(self, probe: Callable[[_Receiver], T | Literal[False] | None], timeout: float = 15.0) -> T:
        """Poll ``probe(self)`` until it returns something truthy; return that (so never the
        ``None`` or ``False`` of a probe written as ``next(..., None)`` or ``cond and value``)."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"receiver condition not met after {timeout}s: {len(self.spans())} span(s), "
                    f"{len(self.logs())} log record(s), requests {self.received.requests}"
                )
            time.sleep(POLL_INTERVAL)

    def start(self) -> _Receiver:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- OTLP/HTTP ------------------------------------------------------------------------------------

_HTTP_ROUTES: dict[str, tuple[type[Message], type[Message], str]] = {
    "/v1/traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        "add_traces",
    ),
    "/v1/logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        "add_logs",
    ),
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        "add_metrics",
    ),
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, received: Received) -> None:
        self.received = received
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        route = _HTTP_ROUTES.get(self.path.split("?", 1)[0])
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if route is None:
            self._reply(404)
            return
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request_type, response_type, add = route
        message = request_type()
        message.ParseFromString(body)
        getattr(self.server.received, add)(message)
        self._reply(200, response_type().SerializeToString())


class HTTPReceiver(_Receiver):
    """OTLP/HTTP (protobuf) on ``127.0.0.1:port``: ``/v1/traces``, ``/v1/logs``, ``/v1/metrics``."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HTTPReceiver:
        server = _HTTPServer(self.port, self.received)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Keep-alive connections outlive serve_forever; a stopped collector has none.
        with server.conn_lock:
            for conn in list(server.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)


# -- OTLP/gRPC ------------------------------------------------------------------------------------


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        self.received.add_traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        self.received.add_logs(request)
        return logs_service_pb2.ExportLogsServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        self.received.add_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class GRPCReceiver(_Receiver):
    """OTLP/gRPC on ``127.0.0.1:port`` with the trace, logs and metrics services."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._server: Any = None

    def start(self) -> GRPCReceiver:
        import grpc

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self.received), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(self.received), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self.received), server)
        if server.add_insecure_port(f"127.0.0.1:{self.port}") != self.port:
            raise RuntimeError(f"gRPC receiver could not bind 127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=0).wait(5)
