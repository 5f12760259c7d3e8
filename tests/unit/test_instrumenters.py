"""Enrichers: plain callables and gunicorn-django-canonical-logs instrumenters, each run guarded."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from otel_canonical_logs import Context, register_instrumenter, unregister_instrumenter
from otel_canonical_logs._runtime import runtime
from otel_canonical_logs.event import Event, order
from otel_canonical_logs.instrumenters import LegacyRequest, LegacyResponse
from tests.unit.conftest import Pipeline


@pytest.fixture
def registered() -> Iterator[list[Any]]:
    """Whatever a test appends here is unregistered at teardown."""
    items: list[Any] = []
    try:
        yield items
    finally:
        for item in items:
            unregister_instrumenter(item)


def _register(registered: list[Any], obj: Any) -> Any:
    registered.append(obj)
    return register_instrumenter(obj)


def _emit(event_type: str = "request", **fields: Any) -> dict[str, Any]:
    event = Event(event_type, order(event_type, fields), None, time.time_ns())
    runtime.dispatcher(event)
    return event.fields


def test_plain_callable_adds_a_field(pipeline: Pipeline, registered: list[Any]) -> None:
    """A registered callable is given each event's fields and may add one."""

    def add_region(fields: dict[str, Any]) -> None:
        fields["app_region"] = "eu"

    _register(registered, add_region)
    with pipeline.request():
        pass
    assert "eu" == pipeline.fields()[0]["app_region"]


def test_raising_enricher_is_skipped_and_its_changes_undone(
    pipeline: Pipeline, registered: list[Any], fail_on_internal_errors: list[Any]
) -> None:
    """An enricher that raises after changing fields leaves the event as it was; the next one runs."""

    def tamper_then_fail(fields: dict[str, Any]) -> None:
        fields["resp_status"] = 999
        fields["app_tampered"] = True
        raise RuntimeError("boom")

    def add_region(fields: dict[str, Any]) -> None:
        fields["app_region"] = "eu"

    _register(registered, tamper_then_fail)
    _register(registered, add_region)
    fields = _emit(resp_status=200)
    kinds = [kind for kind, _ in fail_on_internal_errors]
    fail_on_internal_errors.clear()
    assert {"event_type": "request", "resp_status": 200, "app_region": "eu"} == fields
    assert [True] == [kind.endswith(".tamper_then_fail") for kind in kinds]


def test_event_type_stays_first(registered: list[Any]) -> None:
    """An enricher cannot remove or move event_type, nor leave a value a sink cannot carry."""

    def rebuild(fields: dict[str, Any]) -> None:
        fields.pop("event_type")
        fields["app_obj"] = object
        fields["app_none"] = None

    _register(registered, rebuild)
    fields = _emit(req_id="r1")
    assert (["event_type", "req_id", "app_obj"], "<class 'object'>") == (list(fields), fields["app_obj"])


class OriginalInstrumenter:
    """Written for gunicorn-django-canonical-logs: setup() once, call(req, resp, environ) per event."""

    def __init__(self) -> None:
        self.setup_pids: list[int] = []
        self.calls: list[tuple[Any, Any, Any]] = []
        self.torn_down = False

    def setup(self) -> None:
        self.setup_pids.append(os.getpid())

    def call(self, req: Any, resp: Any, environ: Any) -> None:
        self.calls.append((req, resp, environ))
        Context.set("seen", f"{req.method} {req.path} {resp.status_code if resp else '-'}")

    def teardown(self) -> None:
        self.torn_down = True


def test_original_instrumenter_adds_fields_through_context(registered: list[Any]) -> None:
    """An instrumenter's call() sets fields with Context, as it did in the original project."""
    _register(registered, OriginalInstrumenter)
    fields = _emit(req_method="GET", req_path="/a/", resp_status=201)
    assert "GET /a/ 201" == fields["app_seen"]


def test_instrumenter_class_is_instantiated_and_set_up_once(registered: list[Any]) -> None:
    """Registering the class creates one instance whose setup() runs once in this process."""
    instance = OriginalInstrumenter()
    _register(registered, instance)
    _emit()
    _emit()
    assert [os.getpid()] == instance.setup_pids


def test_instrumenter_gets_the_request_environ(registered: list[Any]) -> None:
    """call() is given Gunicorn-like req/resp objects and the request's environ."""
    instance = _register(registered, OriginalInstrumenter())
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/p/", "QUERY_STRING": "a=1", "HTTP_X_TENANT": "acme"}
    event = Event("request", order("request", {"req_path": "/p/", "resp_status": 204}), None, 0, environ)
    runtime.dispatcher(event)
    [(req, resp, got_environ)] = instance.calls
    assert isinstance(req, LegacyRequest) and isinstance(resp, LegacyResponse)
    assert ("POST", "/p/", "a=1", [("X-TENANT", "acme")], 204) == (
        req.method,
        req.path,
        req.query,
        req.headers,
        resp.status_code,
    )
    assert environ is got_environ


def test_instrumenter_gets_no_response_on_timeouts(registered: list[Any]) -> None:
    """On a timeout event call() gets resp=None and environ=None, as the original passed them."""
    instance = _register(registered, OriginalInstrumenter())
    _emit("timeout", req_method="GET", req_path="/slow/")
    [(_, resp, environ)] = instance.calls
    assert (None, None) == (resp, environ)


def test_instrumenters_are_not_called_for_partial_failures(registered: list[Any]) -> None:
    """A partial_failure event runs plain callables only, as the original ran no instrumenter."""
    instance = _register(registered, OriginalInstrumenter())
    _emit("partial_failure", exc_type="ValueError")
    assert [] == instance.calls


def test_decorator_forms_return_their_argument(registered: list[Any]) -> None:
    """@register_instrumenter and @register_instrumenter() both return the class unchanged."""

    class A(OriginalInstrumenter):
        pass

    class B(OriginalInstrumenter):
        pass

    registered.extend([A, B])
    assert (A, B) == (register_instrumenter(A), register_instrumenter()(B))


def test_registering_a_class_again_replaces_it(registered: list[Any]) -> None:
    """The same class registered twice (a module imported twice) runs once per event."""
    calls: list[int] = []

    class Counting:
        def setup(self) -> None:
            pass

        def call(self, req: Any, resp: Any, environ: Any) -> None:
            calls.append(1)

    _register(registered, Counting)
    _register(registered, Counting)
    _emit()
    assert [1] == calls


def test_unregister_calls_teardown() -> None:
    """unregister_instrumenter runs the instrumenter's teardown() and stops calling it."""
    instance = register_instrumenter(OriginalInstrumenter())
    unregister_instrumenter(instance)
    _emit()
    assert (True, []) == (instance.torn_down, instance.calls)


def test_setup_waits_for_the_fork_in_a_gunicorn_master(
    registered: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered in Gunicorn's arbiter (a --preload app), setup() does not run there at once."""
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")
    instance = _register(registered, OriginalInstrumenter())
    assert [] == instance.setup_pids


def test_deferred_setup_runs_before_the_first_event(
    registered: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that registered as an arbiter but serves events itself sets up before calling."""
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")
    instance = _register(registered, OriginalInstrumenter())
    _emit()
    assert ([os.getpid()], 1) == (instance.setup_pids, len(instance.calls))


def test_setup_runs_in_the_child_after_fork(registered: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """After os.fork the child runs setup() before anything else; the parent does not."""
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")
    instance = _register(registered, OriginalInstrumenter())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what setup() recorded, then leave at once
        os.write(write_end, repr(instance.setup_pids == [os.getpid()]).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        assert ("True", []) == (pipe.read(), instance.setup_pids)
