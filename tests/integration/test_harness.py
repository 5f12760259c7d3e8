"""Smoke tests: the example app under plain (uninstrumented) Gunicorn."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.integration.harness import NO_CONTROL_SOCKET, GunicornServer, events, http_session


def test_example_app_under_plain_gunicorn(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    server = gunicorn(env=db_env, instrument=False)
    assert "opentelemetry-instrument" not in " ".join(server.command)
    assert all(arg in server.command for arg in NO_CONTROL_SOCKET)
    http = http_session()

    health = http.get(server.url("/health"), timeout=10)
    assert (health.status_code, health.text) == (200, "ok")
    assert health.headers["Content-Type"].startswith("text/plain")

    expected = {
        "/ok/": 200,
        "/books/": 200,
        "/books/1/": 200,
        "/n-plus-one/": 200,
        "/db/": 200,
        "/tpl/": 200,
        "/debug-cursor/": 200,
        "/sleep/?s=0": 200,
        "/echo-headers/": 200,
        "/boom/": 500,
        "/books/999999/": 404,
    }
    got = {path: http.get(server.url(path), timeout=10).status_code for path in expected}
    assert got == expected, server.stderr_text()

    books = http.get(server.url("/books/"), timeout=10).text
    assert books.count("<li>") == 10
    assert "Small Gods" in books

    pid = server.pid
    server.stop()
    assert server.returncode == 0, server.stderr_text()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # Uninstrumented: nothing in the stack may write to stdout.
    assert server.stdout_lines == []
    assert events(server.stdout_lines) == []


def test_server_fails_loudly_on_a_broken_wsgi_target() -> None:
    server = GunicornServer(instrument=False, wsgi="mysite.no_such_module")
    with pytest.raises(RuntimeError, match="exited early") as excinfo:
        server.start()
    assert "no_such_module" in str(excinfo.value)
    assert not server.is_running()


def test_events_rejects_non_canonical_lines() -> None:
    assert events(['event_type="request" req_path="/ok/" resp_status=200']) == [
        {"event_type": "request", "req_path": "/ok/", "resp_status": "200"}
    ]
    for bad in ["hello world", 'req_path="/ok/" event_type="request"', "", 'event_type="x" a=1 a=2']:
        with pytest.raises(AssertionError):
            events([bad])
