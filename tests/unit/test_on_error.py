"""on_error: the fallback value, a correlated partial_failure event, and a count on the request."""

from __future__ import annotations

import asyncio

from otel_canonical_logs import on_error
from tests.unit.conftest import Pipeline


def _fail(message: str) -> None:
    raise ValueError(message)


@on_error(return_value="fallback")
def lookup(message: str) -> str:
    _fail(message)
    return "found"


def test_returns_the_fallback(pipeline: Pipeline) -> None:
    """The decorated function's exception is swallowed and return_value returned."""
    with pipeline.request():
        assert "fallback" == lookup("down")


def test_returns_the_result_when_nothing_fails(pipeline: Pipeline) -> None:
    """Without an exception the function's own result comes back and nothing is emitted."""

    @on_error(return_value=0)
    def fine() -> int:
        return 7

    with pipeline.request():
        assert 7 == fine()
    assert ([], "partial_failures" in pipeline.fields()[0]) == (pipeline.fields("partial_failure"), False)


def test_emits_a_partial_failure_correlated_to_the_request(pipeline: Pipeline) -> None:
    """The partial_failure event carries the request's trace_id and span_id and the exc_* fields."""
    with pipeline.request():
        lookup("down")
    [failure] = pipeline.fields("partial_failure")
    [request] = pipeline.fields()
    assert (request["trace_id"], request["span_id"]) == (failure["trace_id"], failure["span_id"])
    assert ("ValueError", "down") == (failure["exc_type"], failure["exc_msg"])
    assert failure["exc_loc"].endswith(":lookup") and failure["exc_cause_loc"].endswith(":_fail")
    assert "event_type" == next(iter(failure))


def test_counts_partial_failures_on_the_request_line(pipeline: Pipeline) -> None:
    """Each caught exception adds one to the request's partial_failures."""
    with pipeline.request():
        lookup("a")
        lookup("b")
    assert 2 == pipeline.fields()[0]["partial_failures"]


def test_records_the_exception_on_the_current_span(pipeline: Pipeline) -> None:
    """The exception becomes an exception event of the span current when it was caught."""
    with pipeline.request() as root:
        lookup("down")
    assert ["exception"] == [e.name for e in root.events]


def test_outside_a_request_still_emits(pipeline: Pipeline) -> None:
    """Outside a request the fallback is returned and the event has no req_id or trace ids."""
    assert "fallback" == lookup("down")
    [failure] = pipeline.fields("partial_failure")
    assert [] == [k for k in ("req_id", "trace_id", "span_id") if k in failure]


def test_async_functions_are_supported(pipeline: Pipeline) -> None:
    """An async def helper returns the fallback from its awaited coroutine."""

    @on_error(return_value=None)
    async def fetch() -> str:
        raise TimeoutError("slow")

    with pipeline.request():
        assert None is asyncio.run(fetch())
    assert "TimeoutError" == pipeline.fields("partial_failure")[0]["exc_type"]


def test_keeps_the_function_name() -> None:
    """The wrapper looks like the function it decorates (functools.wraps)."""
    assert ("lookup", __name__) == (lookup.__name__, lookup.__module__)
