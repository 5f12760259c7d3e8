"""Canonical events written straight to OTLP protobuf bytes, without an SDK LogRecord.

The SDK's way costs about 0.7 M instructions per event (issue 14's measurements): ``Logger.emit``
builds a LogRecord, cleans each of its ~50 attributes into ``BoundedAttributes``, the batch
processor copies it into a ReadableLogRecord, and the exporter's encoder builds one protobuf
object per attribute, per value and per record, groups the records by hashing their resource,
and serialises. A canonical event needs none of that: its keys and values are already what OTLP
carries (the dispatcher normalised them: str, bool, 64-bit int, float), so this module writes the
wire format directly (a cached key prefix and one length per attribute).

The path stays the SDK's where it matters: the event is queued on the configured
``BatchLogRecordProcessor`` (its queue cap, schedule, fork handling, flush and shutdown), and sent
by the configured OTLP exporter (its endpoint, headers, compression, retries, TLS, size limit).
Only the exporter's ``encode_logs`` is replaced, by one that writes our pending events and hands
anything else to the original. :func:`fast_path` decides once, at start-up, whether the pipeline
is one it knows (one batch processor, ours, around a patched OTLP exporter, default limits); the
sink then checks per event that nothing was added since. Otherwise events take ``Logger.emit``.

Field numbers are opentelemetry-proto's (``logs/v1/logs.proto``, ``common/v1/common.proto``,
``resource/v1/resource.proto``); tests/unit/test_otlp_logs.py decodes what this writes with the
generated classes and compares it with the SDK encoder's output for the same record.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import _guard
from ._patching import Patches
from ._values import INT64, SURROGATES, text_of

_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack
_MASK64 = (1 << 64) - 1
_ONE_BYTE = [bytes((n,)) for n in range(128)]


def varint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf writes lengths and varint fields (``n`` ≥ 0)."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the payload's length, the payload."""
    n = len(payload)
    return tag + (_ONE_BYTE[n] if n < 0x80 else varint(n)) + payload


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: what the line writes, U+FFFD
        return text.translate(SURROGATES).encode(errors="replace")


# -- AnyValue (common.proto): 1 string, 2 bool, 3 int64, 4 double, 5 array, 6 kvlist, 7 bytes ----

_TRUE = b"\x10\x01"
_FALSE = b"\x10\x00"


def any_value(value: Any) -> bytes:
    """``value`` as an encoded ``AnyValue`` message; what OTLP cannot carry becomes its text."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", _utf8(value))
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        if value in INT64:
            return b"\x18" + varint(value & _MASK64)
        return _field(b"\x0a", _utf8(text_of(value)))
    if kind is float:
        return b"\x21" + _pack_double(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _field(b"\x3a", bytes(value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_key_value(str(k), v, b"\x0a") for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return _field(b"\x2a", b"".join(_field(b"\x0a", any_value(v)) for v in value))
    if value is None:
        return b""  # an AnyValue with nothing set, as the SDK's encoder writes None
    if isinstance(value, str):  # subclasses: their exact text, as the line writes them
        return _field(b"\x0a", _utf8(str.__str__(value)))
    if isinstance(value, int):  # an IntEnum: its number (bool cannot be subclassed)
        return any_value(int.__index__(value))
    if isinstance(value, float):
        return b"\x21" + _pack_double(float(value))
    return _field(b"\x0a", _utf8(text_of(value)))


# -- KeyValue: 1 key, 2 value; as a repeated field of its parent under the parent's tag ----------

# Encoded ``KeyValue.key`` per key: canonical keys come from a small vocabulary.
_KEY_HEADS: dict[str, bytes] = {}
_KEY_HEADS_LIMIT = 4096


def _key_head(key: str) -> bytes:
    head = _field(b"\x0a", _utf8(key))
    if len(_KEY_HEADS) < _KEY_HEADS_LIMIT:
        _KEY_HEADS[key] = head
    return head


def _key_value(key: str, value: Any, tag: bytes) -> bytes:
    head = _KEY_HEADS.get(key) or _key_head(key)
    return _field(tag, head + _field(b"\x12", any_value(value)))


# Two-byte starts of a one-byte-length field, by tag and length; the AnyValue of a short string
# (value tag, length, string tag, length) by the string's length; of a small int by the int.
_TAGGED = {tag: [tag + _ONE_BYTE[n] for n in range(128)] for tag in (b"\x32", b"\x0a")}
_SHORT_STR = [bytes((0x12, n + 2, 0x0A, n)) for n in range(126)]
_SMALL_INT = [b"\x12\x02\x18" + _ONE_BYTE[n] for n in range(128)]
_KV_TRUE = b"\x12\x02\x10\x01"
_KV_FALSE = b"\x12\x02\x10\x00"


def attributes(items: Iterable[tuple[str, Any]], tag: bytes) -> bytes:
    """Encoded repeated ``KeyValue`` fields under ``tag`` (6 in a LogRecord, 1 in a Resource).

    Runs for every attribute of every exported event, so the usual cases (a short str, a small
    int, a float, a bool, a key under 100 bytes: every length one byte) are four pieces from
    tables joined once at the end; the rest take :func:`_key_value`.
    """
    parts: list[bytes] = []
    add = parts.extend
    heads = _KEY_HEADS
    starts = _TAGGED[tag]
    for key, value in items:
        head = heads.get(key) or _key_head(key)
        hl = len(head)
        kind = type(value)
        if hl > 100:  # a long key (a resource's, an application's): lengths may take 2 bytes
            pass
        elif kind is str:
            try:
                data = value.encode()
            except UnicodeEncodeError:
                data = _utf8(value)
            size = hl + len(data) + 4  # the key, then value tag, length, string tag, length
            if size < 0x80:
                add((starts[size], head, _SHORT_STR[len(data)], data))
                continue
        elif kind is int:
            if 0 <= value < 0x80:
                add((starts[hl + 4], head, _SMALL_INT[value]))
                continue
        elif kind is float:
            add((starts[hl + 11], head, b"\x12\x09\x21", _pack_double(value)))
            continue
        elif kind is bool:
            add((starts[hl + 4], head, _KV_TRUE if value else _KV_FALSE))
            continue
        parts.append(_key_value(key, value, tag))
    return b"".join(parts)


# -- LogRecord (logs.proto) ------------------------------------------------------------------------

# Severity number and text (2, 3), body (5) and event name (12), by (number, text, name): an
# event's are one of a handful.
_CONSTANT_PARTS: dict[tuple[int, str, str], bytes] = {}


def _constant_parts(severity_number: int, severity_text: str, name: str) -> bytes:
    key = (severity_number, severity_text, name)
    parts = _CONSTANT_PARTS.get(key)
    if parts is None:
        encoded_name = _utf8(name)
        parts = (
            b"\x10"
            + varint(severity_number)
            + _field(b"\x1a", _utf8(severity_text))
            + _field(b"\x2a", _field(b"\x0a", encoded_name))
            + _field(b"\x62", encoded_name)
        )
        if len(_CONSTANT_PARTS) < 64:
            _CONSTANT_PARTS[key] = parts
    return parts


def log_record(
    time_ns: int,
    observed_ns: int,
    severity_number: int,
    severity_text: str,
    name: str,
    fields: Mapping[str, Any],
    trace_id: int = 0,
    span_id: int = 0,
    flags: int = 0,
) -> bytes:
    """One encoded ``LogRecord``: 1 time, 2 severity number, 3 severity text, 5 body (``name``),
    6 attributes, 8 flags, 9 trace id, 10 span id, 11 observed time, 12 event name (``name``)."""
    out = (
        b"\x09"
        + _pack_fixed64(time_ns)
        + b"\x59"
        + _pack_fixed64(observed_ns)
        + _constant_parts(severity_number, severity_text, name)
        + attributes(fields.items(), b"\x32")
    )
    if trace_id:
        out += b"\x45" + _pack_fixed32(flags) + b"\x4a\x10" + trace_id.to_bytes(16, "big")
        out += b"\x52\x08" + span_id.to_bytes(8, "big")
    return out


def resource(attrs: Mapping[str, Any]) -> bytes:
    """An encoded ``Resource``: 1 attributes."""
    return attributes(((str(k), v) for k, v in attrs.items()), b"\x0a")


def scope(name: str, version: str | None) -> bytes:
    """An encoded ``InstrumentationScope``: 1 name, 2 version."""
    out = _field(b"\x0a", _utf8(name))
    if version:
        out += _field(b"\x12", _utf8(version))
    return out


def resource_logs(
    resource_bytes: bytes, schema_url: str | None, scopes: Iterable[tuple[bytes, Sequence[bytes]]]
) -> bytes:
    """One encoded ``ResourceLogs`` (1 resource, 2 scope logs, 3 schema url) from its resource's
    encoding and, per scope, the scope's encoding and its records' (``ScopeLogs``: 1 scope,
    2 log records)."""
    parts = [_field(b"\x0a", resource_bytes)]
    for scope_bytes, records in scopes:
        body = _field(b"\x0a", scope_bytes) + b"".join([_field(b"\x12", r) for r in records])
        parts.append(_field(b"\x12", body))
    if schema_url:
        parts.append(_field(b"\x1a", _utf8(schema_url)))
    return b"".join(parts)


def export_request(groups: Iterable[bytes]) -> bytes:
    """An encoded ``ExportLogsServiceRequest``: 1 resource logs (each already encoded). Two such
    encodings concatenated are one request holding both's resource logs (protobuf merges
    repeated fields), which is how a batch mixing our events and other records is sent."""
    return b"".join([_field(b"\x0a", g) for g in groups])


# -- the pending event and the exporter's encoder ------------------------------------------------


class PendingLog:
    """A canonical event queued on the batch processor, encoded when its batch is exported (in the
    processor's thread, off the request's path)."""

    __slots__ = (
        "fields",
        "name",
        "observed_ns",
        "resource",
        "scope",
        "severity_number",
        "severity_text",
        "span_context",
        "time_ns",
    )

    def __init__(
        self,
        fields: Mapping[str, Any],
        name: str,
        severity_number: int,
        severity_text: str,
        span_context: Any,
        time_ns: int,
        observed_ns: int,
        resource: Any,
        scope: Any,
    ) -> None:
        self.fields = fields
        self.name = name
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.span_context = span_context  # an OTel SpanContext, or None
        self.time_ns = time_ns
        self.observed_ns = observed_ns
        self.resource = resource
        self.scope = scope

    def encode(self) -> bytes:
        context = self.span_context
        if context is None:
            trace_id = span_id = flags = 0
        else:
            trace_id, span_id, flags = context.trace_id, context.span_id, int(context.trace_flags)
        return log_record(
            self.time_ns,
            self.observed_ns,
            self.severity_number,
            self.severity_text,
            self.name,
            self.fields,
            trace_id,
            span_id,
            flags,
        )

    def readable(self) -> Any:
        """The same event as the SDK's ReadableLogRecord (the fallback when encoding fails)."""
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import ReadableLogRecord
        from opentelemetry.trace import NonRecordingSpan, set_span_in_context

        context = None
        if self.span_context is not None:
            context = set_span_in_context(NonRecordingSpan(self.span_context))
        record = LogRecord(
            timestamp=self.time_ns,
            observed_timestamp=self.observed_ns,
            context=context,
            severity_text=self.severity_text,
            severity_number=SeverityNumber(self.severity_number),
            body=self.name,
            attributes=dict(self.fields),
            event_name=self.name,
        )
        return ReadableLogRecord(log_record=record, resource=self.resource, instrumentation_scope=self.scope)


class _Encodings:
    """Encoded resources and scopes, by identity (a worker has one of each; a fork adds one)."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    def resource(self, res: Any) -> bytes:
        held = self._resources.get(id(res))
        if held is None or held[0] is not res:
            if len(self._resources) > 16:
                self._resources.clear()
            held = self._resources[id(res)] = (res, resource(res.attributes))
        return held[1]

    def scope(self, sc: Any) -> bytes:
        held = self._scopes.get(id(sc))
        if held is None or held[0] is not sc:
            if len(self._scopes) > 16:
                self._scopes.clear()
            held = self._scopes[id(sc)] = (sc, scope(sc.name, sc.version))
        return held[1]


_encodings = _Encodings()
ENCODE_FAILED = "otlp_logs.encode"


def encode_pending(batch: Sequence[PendingLog]) -> tuple[bytes, list[Any]]:
    """Our events as an encoded request, and those that failed to encode as SDK records (which
    the original encoder then writes: an event is never lost to our encoder)."""
    # By resource, then by scope, in first-seen order: the SDK encoder's grouping.
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    failed: list[Any] = []
    for item in batch:
        try:
            record = item.encode()
        except Exception as exc:
            _guard.report(ENCODE_FAILED, exc)
            failed.append(item.readable())
            continue
        by_resource = groups.get(id(item.resource))
        if by_resource is None:
            by_resource = groups[id(item.resource)] = (item.resource, {})
        by_scope = by_resource[1].get(id(item.scope))
        if by_scope is None:
            by_scope = by_resource[1][id(item.scope)] = (item.scope, [])
        by_scope[1].append(record)
    encoded = [
        resource_logs(
            _encodings.resource(res),
            getattr(res, "schema_url", None),
            [(_encodings.scope(sc), records) for sc, records in scopes.values()],
        )
        for res, scopes in groups.values()
    ]
    return export_request(encoded), failed


def _make_encode_logs(original: Callable[[Any], Any], as_message: bool) -> Callable[[Any], Any]:
    """The exporter module's ``encode_logs``: our pending events written here, anything else (and
    any event that failed to encode) by the original."""

    def encode_logs(batch: Sequence[Any]) -> Any:
        ours = [item for item in batch if type(item) is PendingLog]
        if not ours:
            return original(batch)
        payload, failed = encode_pending(ours)
        others = [item for item in batch if type(item) is not PendingLog] + failed
        if others:
            payload = original(others).SerializeToString() + payload
        if as_message:  # gRPC's stub serialises the request message itself
            return _request_class().FromString(payload)
        return _Serialised(payload)

    return encode_logs


class _Serialised:
    """What the HTTP exporter needs of ``encode_logs``'s result: its bytes."""

    __slots__ = ("_payload",)

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def SerializeToString(self) -> bytes:
        return self._payload


def _request_class() -> Any:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    return ExportLogsServiceRequest


# The OTLP log exporters whose module-level encode_logs we replace, and whether each needs a
# protobuf message back (gRPC) or only bytes (HTTP).
EXPORTER_MODULES = {
    "opentelemetry.exporter.otlp.proto.http._log_exporter": False,
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter": True,
}
_patches = Patches()


def install_encoder(processor: Any, exporter: Any) -> bool:
    """Give ``exporter``'s module our ``encode_logs`` (once); whether events can be queued on
    ``processor`` for it. An exporter of another kind, or internals not as expected, keep the SDK
    path."""
    import sys

    from . import _otel

    module_name = type(exporter).__module__
    as_message = EXPORTER_MODULES.get(module_name)
    module = sys.modules.get(module_name)
    if as_message is None or module is None:
        return False  # not an OTLP exporter (console, a vendor's): Logger.emit
    if not _otel.log_export_internals(processor, module):
        return False
    _patches.patch(module, "encode_logs", lambda original: _make_encode_logs(original, as_message))
    return True


def uninstall_encoder() -> None:
    _patches.undo()


def internal_metrics_on() -> bool:
    """The SDK's own metrics (``Logger.emit`` counts each record), which only its path records."""
    return os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() == "true"
