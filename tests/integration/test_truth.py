"""The line tells the truth on every cursor path and on a third-party app (the Django admin): each
request's db_queries equals what Django's own CaptureQueriesContext counts over every alias for the
same request run in-process, on SQLite and PostgreSQL; tmpl_renders equals Django's
template_rendered count; location fields never name code outside the project.

Run as a script, this file is the in-process measurement (Django configured in a child process,
so the pytest process never calls ``django.setup()`` with the example settings)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import (
    EXAMPLE_DIR,
    REPO_ROOT,
    GunicornServer,
    admin_database,
    events,
    http_session,
)
from tests.otlp_receiver import HTTPReceiver

Start = Callable[..., GunicornServer]
PASSWORD = "truth-pw-1"

CURSOR_PATHS = (
    "/truth/iterator/?alias=default",
    "/truth/iterator/?alias=other",
    "/truth/atomic/",
    "/truth/nested/",
    "/truth/bulk/",
    "/truth/select-for-update/",
    "/truth/raw/",
    "/truth/on-commit/",
    "/truth/generic/",
    "/truth/regex/3/",
    "/books/",
    "/tpl/",
)
CHANGELIST = "/admin/shop/book/?author__id__exact=1&q=a"
CHANGE = "/admin/shop/book/1/change/"


# -- the in-process measurement (script mode) -----------------------------------------------------


def _script() -> None:
    sys.path.insert(0, str(EXAMPLE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    import django

    django.setup()
    from contextlib import ExitStack

    from django.db import connections
    from django.test import Client
    from django.test.signals import template_rendered
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()  # makes Django send template_rendered for every render
    renders: list[str] = []
    template_rendered.connect(lambda sender, template, **kw: renders.append(str(template.name)), weak=False)
    client = Client(raise_request_exception=False)
    report: list[dict[str, Any]] = []

    def run(method: str, path: str, data: dict[str, str] | None = None) -> Any:
        renders.clear()
        with ExitStack() as stack:
            captures = [stack.enter_context(CaptureQueriesContext(c)) for c in connections.all()]
            response = client.post(path, data or {}) if method == "POST" else client.get(path)
            body = b"".join(response) if response.streaming else response.content
        report.append(
            {
                "method": method,
                "path": path,
                "status": response.status_code,
                "queries": sum(len(c.captured_queries) for c in captures),
                "sql": [q["sql"] for c in captures for q in c.captured_queries],
                "renders": len(renders),
            }
        )
        return body

    for path in CURSOR_PATHS:
        run("GET", path)
    for method, path, data in _admin_steps(None):
        run(method, path, data)
    json.dump(report, sys.stdout)


def _admin_steps(session: Any) -> Iterator[tuple[str, str, dict[str, str] | None]]:
    """The admin visit both measurements make: login form, login, filtered and searched
    changelist, change form, save. ``session`` (a requests session) gets the CSRF token."""
    yield "GET", "/admin/login/?next=/admin/", None
    login = {"username": "admin", "password": PASSWORD, "next": "/admin/"}
    yield "POST", "/admin/login/?next=/admin/", {**login, **_csrf(session)}
    yield "GET", CHANGELIST, None
    yield "GET", CHANGE, None
    save = {"title": "A Wizard of Earthsea", "author": "1", "_save": "Save"}
    yield "POST", CHANGE, {**save, **_csrf(session)}


def _csrf(session: Any) -> dict[str, str]:
    if session is None:
        return {}  # Django's test client does not check CSRF
    return {"csrfmiddlewaretoken": session.cookies.get("csrftoken", "")}


def _measure(env: dict[str, str]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, __file__],
        cwd=EXAMPLE_DIR,
        env=dict(os.environ, **env, DJANGO_SETTINGS_MODULE="mysite.settings", PYTHONPATH=str(REPO_ROOT)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    measured: list[dict[str, Any]] = json.loads(result.stdout)
    return measured


# -- the same requests on real Gunicorn -------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def truth_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A migrated, seeded database with the admin's tables and a superuser."""
    with admin_database(request.param, PASSWORD) as env:
        yield env


def _served(server: GunicornServer) -> list[dict[str, Any]]:
    """Every request of the measurement, on the server, each with its own X-Request-ID."""
    http = http_session()
    sent: list[dict[str, Any]] = []

    def send(method: str, path: str, data: dict[str, str] | None) -> None:
        rid = uuid.uuid4().hex
        headers = {"X-Request-ID": rid}
        if method == "POST":
            response = http.post(
                server.url(path), data=data, headers=headers, allow_redirects=False, timeout=20
            )
        else:
            response = http.get(server.url(path), headers=headers, allow_redirects=False, timeout=20)
        sent.append({"method": method, "path": path, "rid": rid, "status": response.status_code})

    for path in CURSOR_PATHS:
        send("GET", path, None)
    for method, path, data in _admin_steps(http):
        send(method, path, data)
    return sent


@pytest.mark.parametrize("exported", [False, True], ids=["line-only", "every-trace"])
def test_every_cursor_path_and_the_admin_count_as_django_counts(
    gunicorn: Start, truth_env: dict[str, str], exported: bool
) -> None:
    """Per request: same status, db_queries = CaptureQueriesContext over every alias, tmpl_renders =
    template_rendered; transaction statements never the most repeated SQL; locations are ours.
    With every trace exported, also: each request's trace at a real OTLP receiver has a query
    span for every statement Django captured but a transaction's end (a driver call, no span)."""
    expected = _measure(truth_env)
    with contextlib.ExitStack() as stack:
        env = dict(truth_env)
        if exported:
            receiver = stack.enter_context(HTTPReceiver())
            env |= {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
        server = gunicorn(env=env)
        served = _served(server)
        _check_counts(server, expected, served)
        if exported:
            _check_query_spans(truth_env["EXAMPLE_DB"], server, receiver, expected, served)
            server.stop()  # while the receiver is up: the exit's last export finds it


def _check_query_spans(
    vendor: str,
    server: GunicornServer,
    receiver: HTTPReceiver,
    expected: list[dict[str, Any]],
    served: list[dict[str, Any]],
) -> None:
    lines = {e["req_id"]: e for e in events(server.stdout_lines) if "req_id" in e}
    # What Django logs of a transaction but runs as a driver call, not a cursor execution: a
    # transaction's end, and on PostgreSQL its start (autocommit off; SQLite executes "BEGIN").
    transaction_calls = {"COMMIT", "ROLLBACK"} | ({"BEGIN"} if vendor == "postgres" else set())
    want = {}
    for measured, sent in zip(expected, served, strict=True):
        line = lines[sent["rid"]]
        assert "true" == line["trace_sampled"], line
        spanless = sum(sql in transaction_calls for sql in measured["sql"])
        want[line["trace_id"]] = (sent["path"], measured["queries"] - spanless)

    def counts(r: Any) -> dict[str, int]:
        got = dict.fromkeys(want, 0)
        for span in r.spans():
            if span.kind == 3 and span.trace_id in got:  # CLIENT: a query
                got[span.trace_id] += 1
        return got

    with contextlib.suppress(AssertionError):  # a short trace is named below
        receiver.wait_for(lambda r: all(counts(r)[t] >= n for t, (_, n) in want.items()))
    got = counts(receiver)
    assert [] == [(path, n, got[t]) for t, (path, n) in want.items() if got[t] != n]


def _check_counts(
    server: GunicornServer, expected: list[dict[str, Any]], served: list[dict[str, Any]]
) -> None:
    rids = [s["rid"] for s in served]
    lines = server.wait_for_stdout(lambda ls: all(any(r in ln for ln in ls) for r in rids), timeout=20)
    by_rid = {e["req_id"]: e for e in events(lines) if "req_id" in e}
    mismatches = []
    for want, got in zip(expected, served, strict=True):
        assert (want["method"], want["path"]) == (got["method"], got["path"])
        line = by_rid[got["rid"]]
        measured = (got["status"], int(line.get("db_queries", 0)), int(line.get("tmpl_renders", 0)))
        if (want["status"], want["queries"], want["renders"]) != measured:
            mismatches.append((want["method"], want["path"], want, line))
        assert line.get("db_dup_sql", "x").split()[0] not in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT")
        for key in ("db_dup_loc", "exc_loc", "exc_cause_loc"):
            where = line.get(key)
            assert where is None or not any(bad in where for bad in _OUTSIDE), (key, where)
    assert [] == [
        (m, p, w["status"], w["queries"], w["renders"], w["sql"], line) for m, p, w, line in mismatches
    ]
    assert 302 == served[-1]["status"]  # the change form saved
    generic = by_rid[served[CURSOR_PATHS.index("/truth/generic/")]["rid"]]
    template_line = _line_of("shop/templates/shop/generic_list.html", "book.author.name")
    assert f"shop/generic_list.html:{template_line}" == generic["db_dup_loc"]
    regex = by_rid[served[CURSOR_PATHS.index("/truth/regex/3/")]["rid"]]
    assert r"/truth/regex/(?P<pk>\d+)/" == regex["req_route"]
    # The readiness probe is the first request the worker served: saturation is already there.
    first = events(lines)[0]
    assert "/health" == first["req_path"] and "g_w_count" in first, first
    assert LOG_PREFIX not in server.stderr_text()
    assert "Calling end() on an ended span" not in server.stderr_text()


_OUTSIDE = ("site-packages", "/bin/", ".venv", "<frozen", "python3.")


def _line_of(path: str, needle: str) -> int:
    for number, text in enumerate((EXAMPLE_DIR / path).read_text().splitlines(), start=1):
        if needle in text:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


if __name__ == "__main__":
    _script()
