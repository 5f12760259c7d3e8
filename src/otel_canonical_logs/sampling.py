"""Record every span for the canonical line; export only what the configured sampler picks."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import AlwaysRecordSampler, Decision, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class RecordEverythingSampler(AlwaysRecordSampler):
    """``AlwaysRecordSampler`` that keeps the span's start attributes when the root drops it.

    The SDK's samplers return no attributes with a DROP decision, and ``AlwaysRecordSampler``
    (SDK 1.45) turns that into RECORD_ONLY with the empty set: an unsampled HTTP client span then
    has no ``http.request.method`` and could not be counted. Here the caller's attributes stay.
    """

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"RecordEverything{{{self._root.get_description()}}}"
