"""Context: application fields on the current request's event and root span, nowhere else."""

from __future__ import annotations

import threading
import time

from otel_canonical_logs import Context
from otel_canonical_logs._values import safe_value
from tests.unit.conftest import Pipeline


def test_set_adds_an_app_field(pipeline: Pipeline) -> None:
    """Context.set("plan", "pro") in a request gives app_plan="pro" on its event."""
    with pipeline.request():
        Context.set("plan", "pro")
    [fields] = pipeline.fields()
    assert "pro" == fields["app_plan"]


def test_app_fields_follow_the_canonical_ones(pipeline: Pipeline) -> None:
    """Application fields come after every registry field, in the order they were set."""
    with pipeline.request():
        Context.set("b", 1)
        Context.set("a", 2)
    [fields] = pipeline.fields()
    assert ["app_b", "app_a"] == list(fields)[-2:]


def test_set_outside_a_request_is_a_no_op(pipeline: Pipeline) -> None:
    """Outside a request Context.set/get/time do nothing and raise nothing."""
    Context.set("plan", "pro")
    with Context.time("work"):
        pass
    assert (None, []) == (Context.get("plan"), pipeline.events)


def test_time_sums_repeated_blocks(pipeline: Pipeline) -> None:
    """Two timed blocks of one key add up into app_<key>_time."""
    with pipeline.request():
        for _ in range(2):
            with Context.time("nap"):
                time.sleep(0.02)
    [fields] = pipeline.fields()
    assert 0.04 <= fields["app_nap_time"] < 1


def test_time_records_a_block_that_raises(pipeline: Pipeline) -> None:
    """A timed block that raises still adds its time, and the exception propagates."""
    with pipeline.request():
        try:
            with Context.time("failing"):
                raise KeyError("x")
        except KeyError:
            pass
    [fields] = pipeline.fields()
    assert "app_failing_time" in fields


def test_fields_do_not_outlive_their_request(pipeline: Pipeline) -> None:
    """A field set in one request is absent from the next one."""
    with pipeline.request():
        Context.set("only_first", True)
    with pipeline.request():
        Context.set("second", True)
    first, second = pipeline.fields()
    assert (True, False) == ("app_only_first" in first, "app_only_first" in second)


def test_concurrent_requests_keep_their_own_fields(pipeline: Pipeline) -> None:
    """Requests on sixteen threads at once each get exactly their own value."""
    barrier = threading.Barrier(16)

    def serve(n: int) -> None:
        with pipeline.request():
            Context.set("n", n)
            barrier.wait(timeout=5)
            Context.set("n_after", Context.get("n"))

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(n, n) for n in range(16)] == sorted((f["app_n"], f["app_n_after"]) for f in pipeline.fields())


def test_fields_are_set_on_the_root_span(pipeline: Pipeline) -> None:
    """Each field is also a root span attribute, canonical.<key>, even when set under a child span."""
    with pipeline.request() as root:
        with pipeline.tracer.start_as_current_span("child"):
            Context.set("plan", "pro")
            with Context.time("work"):
                pass
    assert "pro" == root.attributes["canonical.app_plan"]
    assert isinstance(root.attributes["canonical.app_work_time"], float)


def test_keys_are_sanitized(pipeline: Pipeline) -> None:
    """A key with spaces, capitals and punctuation becomes a valid logfmt key."""
    with pipeline.request():
        Context.set("Cart Size!", 3)
    [fields] = pipeline.fields()
    assert 3 == fields["app_cart_size_"]


def test_namespace_prefixes_the_key(pipeline: Pipeline) -> None:
    """namespace="billing" gives billing_<key>, as in gunicorn-django-canonical-logs."""
    with pipeline.request():
        Context.update(context={"plan": "pro", "seats": 4}, namespace="billing")
    [fields] = pipeline.fields()
    assert ("pro", 4) == (fields["billing_plan"], fields["billing_seats"])


def test_canonical_fields_cannot_be_overwritten(pipeline: Pipeline) -> None:
    """Context.set("queries", ..., namespace="db") is ignored: db_queries stays what was measured."""
    with pipeline.request():
        Context.set("queries", 999, namespace="db")
    [fields] = pipeline.fields()
    assert "db_queries" not in fields


def test_none_removes_a_field(pipeline: Pipeline) -> None:
    """Setting None removes the field."""
    with pipeline.request():
        Context.set("plan", "pro")
        Context.set("plan", None)
    [fields] = pipeline.fields()
    assert "app_plan" not in fields


def test_reset_removes_only_application_fields(pipeline: Pipeline) -> None:
    """Context.reset() drops the request's app fields and keeps the canonical ones."""
    with pipeline.request():
        Context.set("plan", "pro")
        Context.reset()
    [fields] = pipeline.fields()
    assert (False, True) == ("app_plan" in fields, "trace_id" in fields)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_of_any_type_are_made_safe() -> None:
    """Non-primitive values become text; unprintable ones and huge ints cannot break a sink."""
    assert ["<unrenderable Unprintable>", "1208925819614629174706176", "[1, 2]", "b\ufffd", 3, 1.5, True] == [
        safe_value(Unprintable()),
        safe_value(2**80),
        safe_value([1, 2]),
        safe_value(b"b\xff"),
        safe_value(3),
        safe_value(1.5),
        safe_value(True),
    ]
