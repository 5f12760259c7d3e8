"""The request line's N+1 runs, queue time, body sizes and user on real Gunicorn, each checked
against an independent measurement: Django's own record of the queries run in-process, the
client's clock and the bytes the client received, the same requests without the field."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import (
    EXAMPLE_DIR,
    GunicornServer,
    admin_database,
    database,
    events,
    http_session,
)
from tests.integration.reliability import counts
from tests.integration.test_example_queries import measure
from tests.integration.test_workers import KINDS

Start = Callable[..., GunicornServer]
PASSWORD = "line-pw-1"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A seeded database with the auth and session tables and one user who can log in."""
    with admin_database(request.param, PASSWORD) as env:
        yield env


def _start(gunicorn: Start, kind: str, env: dict[str, str]) -> GunicornServer:
    args, app = KINDS[kind]
    return gunicorn(env=env, wsgi=app, gunicorn_args=[*args, "--timeout", "20"])


def _line(server: GunicornServer, rid: str) -> dict[str, str]:
    lines = server.wait_for_stdout(lambda ls: any(rid in ln for ln in ls), timeout=15)
    [line] = [e for e in events(lines) if e.get("req_id") == rid]
    return line


def _send(
    server: GunicornServer,
    path: str,
    session: requests.Session | None = None,
    method: str = "GET",
    **kwargs: Any,
) -> tuple[requests.Response, dict[str, str]]:
    rid = uuid.uuid4().hex
    http = session or http_session()
    headers = {"X-Request-ID": rid, **kwargs.pop("headers", {})}
    response = http.request(method, server.url(path), headers=headers, timeout=20, **kwargs)
    return response, _line(server, rid)


def _line_of(path: str, needle: str) -> int:
    for number, text in enumerate((EXAMPLE_DIR / path).read_text().splitlines(), start=1):
        if needle in text:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def _longest_run(sqls: list[str]) -> int:
    """The longest run of one text after a different one, in Django's own record."""
    best = run = 0
    for i, sql in enumerate(sqls):
        run = run + 1 if i and sql == sqls[i - 1] else 1
        if i + 1 - run > 0:  # some other statement came first
            best = max(best, run)
    return best


def _clean(server: GunicornServer) -> None:
    assert LOG_PREFIX not in server.stderr_text(), server.stderr_text()


# -- N+1 runs ---------------------------------------------------------------------------------


def test_an_n_plus_one_loop_among_other_queries_gives_the_run_and_the_loop_line(
    gunicorn: Start, admin_env: dict[str, str]
) -> None:
    """db_n1_queries is the loop's run in Django's own record (one query per book, with queries
    before and after), db_n1_loc the loop's line, db_n1_sql the statement's shape."""
    expected = measure(admin_env, "/n1/loop/")["/n1/loop/"]
    sqls = [q["sql"] for q in expected["raw"]]
    books = _longest_run(sqls)
    assert books >= 5 and len(sqls) > books + 2  # a real loop, other queries around it
    looped = max(set(sqls), key=sqls.count)
    server = _start(gunicorn, "sync", admin_env)
    response, line = _send(server, "/n1/loop/")
    assert 200 == response.status_code
    assert str(expected["captured"]) == line["db_queries"]
    assert str(books) == line["db_n1_queries"]
    where = _line_of("shop/line_views.py", "# the N+1 loop")
    assert f"shop/line_views.py:{where}:n1_loop" == line["db_n1_loc"]
    assert re.sub(r"%s|\b\d+\b", "?", looped) == line["db_n1_sql"]
    assert 0 <= float(line["db_n1_time"]) <= float(line["db_time"])
    assert str(books) == line["db_dup_queries"]  # db_dup_* as before
    _clean(server)


def test_raw_sql_with_inlined_ids_is_one_normalised_statement(
    gunicorn: Start, admin_env: dict[str, str]
) -> None:
    """Each author query has its id in the text, so db_dup_* sees only the texts whose id comes
    back; the whole loop is one N+1 run of the normalised statement."""
    expected = measure(admin_env, "/n1/raw/")["/n1/raw/"]
    sqls = [q["sql"] for q in expected["raw"]]
    inlined = [s for s in sqls if s.startswith("SELECT name FROM shop_author WHERE id = ")]
    assert len(inlined) >= 5 and len(set(sqls)) < len(sqls)  # some ids repeat, as authors do
    server = _start(gunicorn, "sync", admin_env)
    _, line = _send(server, "/n1/raw/")
    assert str(len(inlined)) == line["db_n1_queries"]
    assert "SELECT name FROM shop_author WHERE id = ?" == line["db_n1_sql"]
    where = _line_of("shop/line_views.py", "# the raw loop")
    assert f"shop/line_views.py:{where}:n1_raw" == line["db_n1_loc"]
    assert str(len(sqls)) == line["db_queries"]
    _clean(server)


def _login(server: GunicornServer) -> requests.Session:
    """A client session logged in through the admin's login form."""
    http = http_session()
    http.get(server.url("/admin/login/"), timeout=20)
    form = {
        "username": "admin",
        "password": PASSWORD,
        "next": "/admin/",
        "csrfmiddlewaretoken": http.cookies.get("csrftoken", ""),
    }
    response = http.post(
        server.url("/admin/login/?next=/admin/"), data=form, allow_redirects=False, timeout=20
    )
    assert 302 == response.status_code, response.text[:500]
    return http


def test_a_repeated_session_lookup_is_no_n_plus_one(gunicorn: Start, admin_env: dict[str, str]) -> None:
    """The session read twice is a repeated SQL text (db_dup_*), not an N+1 run."""
    server = _start(gunicorn, "sync", admin_env)
    http = _login(server)
    _, line = _send(server, "/session-twice/", http)
    assert int(line["db_dup_queries"]) >= 2, line
    assert "django_session" in line["db_dup_sql"]
    assert not [key for key in line if key.startswith("db_n1_")], line
    _clean(server)


# -- usr_id ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "path"), [("sync", "/whoami/"), ("asgi", "/whoami/async/")])
def test_usr_id_only_when_the_app_loaded_the_user_and_never_an_extra_query(
    gunicorn: Start, admin_env: dict[str, str], kind: str, path: str
) -> None:
    """Logged in: the view that uses the user has usr_id (the pk the view itself saw); a view
    that does not has none; db_queries is the same with CANONICAL_LOGS_USER=false."""
    import django

    if path == "/whoami/async/" and django.VERSION < (5, 0):
        pytest.skip(
            f"the async view awaits request.auser(), new in Django 5.0 (this is {django.__version__})"
        )
    on = _start(gunicorn, kind, admin_env)
    off = _start(gunicorn, kind, {**admin_env, "CANONICAL_LOGS_USER": "false"})
    http = _login(on)  # the session is in the database both servers share
    seen: dict[str, list[dict[str, str]]] = {target: [] for target in (path, "/ok/", "/n1/loop/")}
    pk = ""
    for server in (on, off):
        for target, lines in seen.items():
            response, line = _send(server, target, http)
            assert 200 == response.status_code, (target, response.text[:300])
            lines.append(line)
            if target == path:
                pk = response.text.strip().split("=", 1)[1]
                assert pk not in ("", "None"), response.text
    for target, (with_field, without) in seen.items():
        assert with_field.get("db_queries") == without.get("db_queries"), (target, with_field, without)
        assert "usr_id" not in without
    assert pk == seen[path][0]["usr_id"]
    assert "usr_id" not in seen["/ok/"][0] and "db_queries" not in seen["/ok/"][0]
    assert "usr_id" not in seen["/n1/loop/"][0]
    _clean(on)
    _clean(off)


# -- req_queue_time ------------------------------------------------------------------------------

DELAY = 0.25
FORMATS: dict[str, Callable[[float], str]] = {
    "t=µs": lambda t: f"t={int(t * 1e6)}",
    "t=ms": lambda t: f"t={int(t * 1e3)}",
    "t=s.fff": lambda t: f"t={t:.3f}",
    "µs": lambda t: str(int(t * 1e6)),
    "ms": lambda t: str(int(t * 1e3)),
    "s.fff": lambda t: f"{t:.3f}",
}


@pytest.fixture(scope="module")
def plain_env() -> Iterator[dict[str, str]]:
    with database("sqlite") as env:
        yield env


@pytest.mark.parametrize("kind", list(KINDS))
def test_queue_time_in_every_format_is_the_injected_delay(
    gunicorn: Start, plain_env: dict[str, str], kind: str
) -> None:
    """A stamp DELAY seconds old gives req_queue_time between DELAY and DELAY plus the client's
    whole round trip, in each format and header; skew is clamped or left off and counted."""
    server = _start(gunicorn, kind, plain_env)
    for header in ("X-Request-Start", "X-Queue-Start"):
        for name, render in FORMATS.items():
            rid = uuid.uuid4().hex
            sent = time.time()
            start = time.monotonic()
            value = render(sent - DELAY)
            http_session().get(server.url("/ok/"), headers={"X-Request-ID": rid, header: value}, timeout=20)
            round_trip = time.monotonic() - start
            queued = float(_line(server, rid)["req_queue_time"])
            assert DELAY - 0.002 <= queued <= DELAY + round_trip + 0.002, (header, name, value, queued)
    _, ahead = _send(server, "/ok/", headers={"X-Request-Start": f"t={time.time() + 0.5:.3f}"})
    assert "0.000" == ahead["req_queue_time"]
    for missing in ({}, {"X-Request-Start": "soon"}):
        _, line = _send(server, "/ok/", headers=missing)
        assert "req_queue_time" not in line
    before = counts(server)["counts"].get("dropped.queue_time_skew", 0)
    _, old = _send(server, "/ok/", headers={"X-Request-Start": f"t={time.time() - 7200:.3f}"})
    assert "req_queue_time" not in old
    assert before + 1 == counts(server)["counts"]["dropped.queue_time_skew"]
    _clean(server)


# -- resp_bytes, req_bytes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_resp_bytes_is_what_the_client_received(
    gunicorn: Start, plain_env: dict[str, str], kind: str
) -> None:
    """Plain, streamed, file and HEAD responses, and one answered before Django: resp_bytes is
    the body the client read; req_bytes the body it sent."""
    server = _start(gunicorn, kind, plain_env)
    cases = [
        ("GET", "/ok/"),
        ("GET", "/tpl/"),
        ("GET", "/stream/?chunks=3"),
        ("GET", "/stream/async/?chunks=2") if kind != "gevent" else ("GET", "/stream/?chunks=5"),
        ("GET", "/file/"),
        ("HEAD", "/ok/"),
        ("HEAD", "/stream/?chunks=3"),
    ]
    for method, path in cases:
        response, line = _send(server, path, method=method)
        assert 200 == response.status_code, (method, path)
        assert str(len(response.content)) == line["resp_bytes"], (method, path, line)
        assert (method == "HEAD") == (0 == len(response.content))
    body = b"x" * 1234
    response, line = _send(server, "/ok/", method="POST", data=body)
    assert ("1234", str(len(response.content))) == (line["req_bytes"], line["resp_bytes"])
    assert "req_bytes" not in _send(server, "/ok/")[1]
    health = http_session().get(server.url("/health"), timeout=20)  # answered before Django
    lines = server.wait_for_stdout(lambda ls: sum('req_path="/health"' in ln for ln in ls) >= 2)
    line = [e for e in events(lines) if e.get("req_path") == "/health"][-1]
    assert str(len(health.content)) == line["resp_bytes"]
    _clean(server)
