"""The WSGI and ASGI server layers in-process, around small real applications and the real
pipeline: the line waits for the body, a failing or abandoned body is said, lifespan and websocket
scopes pass through untouched; the worker-type registry; reading a gunicorn command line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_canonical_logs import _gevent
from otel_canonical_logs._http import fields_from_asgi
from otel_canonical_logs.gunicorn import workers
from otel_canonical_logs.gunicorn.asgi import CanonicalASGI
from otel_canonical_logs.gunicorn.wsgi import CanonicalWSGI
from tests.unit.conftest import Pipeline

ENVIRON = {"REQUEST_METHOD": "GET", "PATH_INFO": "/s/", "SCRIPT_NAME": "", "HTTP_X_REQUEST_ID": "r-1"}


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    return None


def _traced_app(pipeline: Pipeline, chunks: list[bytes], fail_at: int | None = None) -> Any:
    """A WSGI app whose root span ends when it returns, before its body is iterated (as Django's)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        with pipeline.request() as span:
            span.set_attribute("http.response.status_code", 200)
            start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            for i, chunk in enumerate(chunks):
                if i == fail_at:
                    raise RuntimeError("body broke")
                yield chunk

        return body()

    return app


def test_line_is_written_when_the_body_is_sent_not_when_the_app_returns(pipeline: Pipeline) -> None:
    """The root span ends first; the line comes once the server asked past the last chunk (the
    body is written), before close(), and only once."""
    layer = CanonicalWSGI(_traced_app(pipeline, [b"a", b"b"]))
    body = layer(dict(ENVIRON), _start_response)
    chunks = iter(body)
    assert [] == pipeline.fields()
    assert [b"a", b"b"] == [next(chunks), next(chunks)]
    assert [] == pipeline.fields()
    with pytest.raises(StopIteration):
        next(chunks)
    [line] = pipeline.fields()
    assert 200 == line["resp_status"] and "resp_aborted" not in line
    body.close()  # type: ignore[attr-defined]
    assert 1 == len(pipeline.fields())


def test_body_left_before_its_end_is_aborted(pipeline: Pipeline) -> None:
    """The server stopped iterating (the client went away): resp_aborted on the one line."""
    layer = CanonicalWSGI(_traced_app(pipeline, [b"a", b"b", b"c"]))
    body = layer(dict(ENVIRON), _start_response)
    next(iter(body))
    body.close()  # type: ignore[attr-defined]
    [line] = pipeline.fields()
    assert True is line["resp_aborted"]


def test_body_that_raises_before_any_chunk_is_a_500_with_its_exception(pipeline: Pipeline) -> None:
    """Nothing was sent, so the server answers 500: the line says so, with the exception."""
    layer = CanonicalWSGI(_traced_app(pipeline, [b"a"], fail_at=0))
    body = layer(dict(ENVIRON), _start_response)
    with pytest.raises(RuntimeError):
        list(body)
    body.close()  # type: ignore[attr-defined]
    [line] = pipeline.fields()
    assert (500, "RuntimeError") == (line["resp_status"], line["exc_type"])
    assert "resp_aborted" not in line


def test_body_that_raises_after_a_chunk_keeps_its_status(pipeline: Pipeline) -> None:
    """Headers went out with the first chunk: the status stays, the exception is on the line."""
    layer = CanonicalWSGI(_traced_app(pipeline, [b"a", b"b"], fail_at=1))
    body = layer(dict(ENVIRON), _start_response)
    with pytest.raises(RuntimeError):
        list(body)
    body.close()  # type: ignore[attr-defined]
    [line] = pipeline.fields()
    assert (200, "body broke") == (line["resp_status"], line["exc_msg"])


def test_request_that_no_span_saw_gets_its_line_at_close(pipeline: Pipeline) -> None:
    """A layer in front of Django answered: the fallback line, written once the body is closed."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return [b""]

    body = CanonicalWSGI(app)(dict(ENVIRON), _start_response)
    assert [] == pipeline.fields()
    list(body)
    body.close()  # type: ignore[attr-defined]
    [line] = pipeline.fields()
    assert ("r-1", "/s/", 204) == (line["req_id"], line["req_path"], line["resp_status"])


def _http_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "method": "GET",
        "path": "/a/",
        "root_path": "",
        "headers": [(b"x-request-id", b"abc"), (b"user-agent", b"t/1")],
    }


def _run_asgi(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_asgi_line_after_the_last_body_message(pipeline: Pipeline) -> None:
    """Root span ended by the app before the body; the line comes after the final message."""
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        with pipeline.request():
            pass
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        seen.append(len(pipeline.fields()))
        await send({"type": "http.response.body", "body": b"y"})

    sent = _run_asgi(CanonicalASGI(app), _http_scope(), [])
    assert [b"x", b"y"] == [m["body"] for m in sent[1:]]
    assert [0] == seen
    [line] = pipeline.fields()
    assert "resp_aborted" not in line


def test_asgi_request_without_a_root_span_gets_its_line(pipeline: Pipeline) -> None:
    """An ASGI layer answered without Django: req_* from the scope, the status it sent."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    _run_asgi(CanonicalASGI(app), _http_scope(), [])
    [line] = pipeline.fields()
    assert ("abc", "/a/", "t/1", 200) == (
        line["req_id"],
        line["req_path"],
        line["req_user_agent"],
        line["resp_status"],
    )


def test_asgi_client_gone_before_the_end_is_aborted(pipeline: Pipeline) -> None:
    """The app saw http.disconnect and stopped: resp_aborted, one line."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        assert "http.disconnect" == (await receive())["type"]

    _run_asgi(CanonicalASGI(app), _http_scope(), [])
    [line] = pipeline.fields()
    assert True is line["resp_aborted"]


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_other_asgi_scopes_pass_through_untouched(pipeline: Pipeline, kind: str) -> None:
    """The app gets the very receive and send callables; no line is written."""
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.extend([scope, receive, send])

    async def receive() -> dict[str, Any]:
        return {"type": f"{kind}.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    scope = {"type": kind}
    asyncio.run(CanonicalASGI(app)(scope, receive, send))
    assert [scope, receive, send] == got
    assert [] == pipeline.fields()


def test_fields_from_an_asgi_scope_decode_utf8_and_drop_unsafe_ids() -> None:
    """Header bytes are UTF-8 (invalid bytes replaced); an unsafe request id is replaced."""
    scope = {
        "method": "POST",
        "root_path": "/app",
        "path": "/café/",
        "headers": [(b"x-request-id", b"bad id"), (b"referer", b"http://r/\xff")],
    }
    fields = fields_from_asgi(scope)
    assert ("POST", "/app/café/", "http://r/\ufffd") == (
        fields["req_method"],
        fields["req_path"],
        fields["req_referrer"],
    )
    assert 32 == len(fields["req_id"]) and fields["req_id"] != "bad id"


# -- the worker-type registry ---------------------------------------------------------------------


def test_worker_kinds_follow_the_mro_and_unknown_types_have_none() -> None:
    """A subclass of a known worker is known; Gunicorn's base Worker alone is not."""
    from gunicorn.workers.base import Worker
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker
    from uvicorn_worker import UvicornWorker

    class Tuned(UvicornWorker):  # type: ignore[misc]
        CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}

    class Custom(Worker):  # type: ignore[misc]
        pass

    assert workers.SYNC is workers.kind_of(SyncWorker)
    assert workers.GTHREAD is workers.kind_of(ThreadWorker)
    assert workers.UVICORN is workers.kind_of(Tuned)
    assert workers.kind_of(Custom) is None


# -- reading the gunicorn command line (for gevent) ------------------------------------------------

GUNICORN = "/venv/bin/gunicorn"


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([GUNICORN, "app.wsgi", "-k", "gevent"], {}, "gevent"),
        ([GUNICORN, "-kgevent", "app.wsgi"], {}, "gevent"),
        ([GUNICORN, "--worker-class=gevent", "app.wsgi"], {}, "gevent"),
        ([GUNICORN, "--worker-class", "sync", "app.wsgi"], {"GUNICORN_CMD_ARGS": "-k gevent"}, "sync"),
        ([GUNICORN, "app.wsgi"], {"GUNICORN_CMD_ARGS": "--worker-class gevent"}, "gevent"),
        ([GUNICORN, "app.wsgi", "--keep-alive", "5"], {}, None),
        (["/venv/bin/celery", "-k", "gevent"], {}, None),
        (["/py/lib/gunicorn/__main__.py", "-k", "gevent", "app.wsgi"], {}, "gevent"),
    ],
)
def test_worker_class_is_read_from_the_command_line(
    argv: list[str], env: dict[str, str], expected: str | None, tmp_path: Path
) -> None:
    """-k and --worker-class in every spelling, GUNICORN_CMD_ARGS below the arguments."""
    assert expected == _gevent.requested_worker_class(argv, env, tmp_path)


def test_worker_class_from_a_config_file_literal_only(tmp_path: Path) -> None:
    """A literal worker_class in ./gunicorn.conf.py or -c FILE counts; a computed one cannot."""
    (tmp_path / "gunicorn.conf.py").write_text('bind = "0:1"\nworker_class = "gevent"\n')
    (tmp_path / "computed.py").write_text('worker_class = "ge" + "vent"\n')
    assert "gevent" == _gevent.requested_worker_class([GUNICORN, "app.wsgi"], {}, tmp_path)
    assert _gevent.requested_worker_class([GUNICORN, "-c", "computed.py", "a"], {}, tmp_path) is None
    assert "sync" == _gevent.requested_worker_class([GUNICORN, "-k", "sync", "a"], {}, tmp_path)


_TOKENS = st.lists(
    st.sampled_from(["app.wsgi", "--bind", "127.0.0.1:8000", "--workers", "3", "--reload", "-t", "30"]),
    max_size=8,
)


@given(before=_TOKENS, after=_TOKENS, worker=st.sampled_from([*sorted(_gevent.GEVENT_NAMES), "sync"]))
def test_the_worker_option_is_found_among_any_other_options(
    before: list[str], after: list[str], worker: str
) -> None:
    """Whatever other options surround it, ``-k WORKER`` is what is read."""
    argv = [GUNICORN, *before, "-k", worker, *after]
    assert worker == _gevent.requested_worker_class(argv, {}, Path("/nonexistent"))


def test_a_blocked_loop_gives_one_timeout_event_even_before_django(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cooperative worker, heartbeat stale, the request still in a layer before Django: one
    timeout event however often the watchdog looks while the loop stays blocked."""
    import time

    from otel_canonical_logs import _scope
    from otel_canonical_logs.gunicorn.watchdog import Watchdog

    # The checks below are the watchdog thread's; its own loop would race them.
    monkeypatch.setattr(Watchdog, "_run", lambda self: None)
    watchdog = Watchdog(100.0, "cooperative", heartbeat=lambda: time.monotonic() - 200)
    scope = _scope.RequestScope(dict(ENVIRON), cpu=False)
    watchdog.arm(scope, scope.start)
    for _ in range(3):
        watchdog._check(time.monotonic())
    [event] = pipeline.fields("timeout")
    assert "r-1" == event["req_id"]
    watchdog.disarm(scope)
