"""The core pipeline on real Gunicorn under ``opentelemetry-instrument``, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import EXAMPLE_DIR, GunicornServer, events, http_session

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")
LOC = re.compile(r"[\w/.]+\.py:\d+:\w+")


def _line_of(path: str, needle: str) -> int:
    """1-based line number of the first source line containing ``needle``."""
    for number, line in enumerate((EXAMPLE_DIR / path).read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


class Client:
    """Sends requests with a fresh X-Request-ID each and finds the matching canonical line."""

    def __init__(self, server: GunicornServer) -> None:
        self.server = server
        self.http = http_session()

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str]]:
        rid = headers.pop("X-Request-ID", None) or uuid.uuid4().hex
        response = self.http.get(self.server.url(path), headers={"X-Request-ID": rid, **headers})
        return response.status_code, self.event_for(rid)

    def event_for(self, req_id: str) -> dict[str, str]:
        lines = self.server.wait_for_stdout(lambda ls: any(f'req_id="{req_id}"' in ln for ln in ls))
        matching = [e for e in events(lines) if e.get("req_id") == req_id]
        assert 1 == len(matching), matching
        return matching[0]


def _assert_no_internal_errors(server: GunicornServer) -> None:
    assert LOG_PREFIX not in server.stderr_text(), server.stderr_text()


@pytest.fixture(scope="module")
def server(db_env: dict[str, str]) -> Iterator[GunicornServer]:
    """One instrumented server per database for the read-only checks of this module."""
    with GunicornServer(env=db_env) as srv:
        yield srv
        _assert_no_internal_errors(srv)


@pytest.fixture
def client(server: GunicornServer) -> Client:
    return Client(server)


def test_request_fields(client: Client) -> None:
    """A routed request carries every req_* and resp_* field, and never the query string."""
    status, event = client.get(
        "/books/3/?token=s3cr3t", Referer="https://ref.example/a", **{"User-Agent": "probe/1.0"}
    )
    assert 200 == status
    assert "request" == event["event_type"]
    assert ("GET", "/books/3/", "/books/<int:pk>/") == (
        event["req_method"],
        event["req_path"],
        event["req_route"],
    )
    assert ("https://ref.example/a", "probe/1.0") == (event["req_referrer"], event["req_user_agent"])
    assert ("shop.views.book_detail", "200") == (event["resp_view"], event["resp_status"])
    assert HEX32.fullmatch(event["trace_id"]) and HEX16.fullmatch(event["span_id"])
    assert 0 < float(event["resp_time"]) < 5 and 0 <= float(event["resp_cpu_time"]) < 5
    assert not any("s3cr3t" in line for line in client.server.stdout_lines)


def test_keys_come_in_registry_order(client: Client) -> None:
    """event_type is first and the other keys follow the field registry's order."""
    from otel_canonical_logs.fields import KEYS

    _, event = client.get("/n-plus-one/")
    keys = list(event)
    assert "event_type" == keys[0]
    assert sorted(keys, key=KEYS.index) == keys


def test_n_plus_one_queries_are_counted_as_duplicates(client: Client) -> None:
    """The N+1 view's six queries show as db_queries=6 with five duplicates."""
    _, event = client.get("/n-plus-one/")
    assert ("6", "5") == (event["db_queries"], event["db_dup_queries"])
    assert float(event["db_dup_time"]) <= float(event["db_time"]) <= float(event["resp_time"])
    assert '"shop_author"' in event["db_dup_sql"] and "%s" in event["db_dup_sql"]


def test_duplicates_ignore_parameters(client: Client) -> None:
    """Nine queries with one SQL text and nine different parameters are nine duplicates."""
    _, event = client.get("/db/")
    assert ("10", "9") == (event["db_queries"], event["db_dup_queries"])


def test_debug_cursor_queries_are_counted(client: Client) -> None:
    """Queries through force_debug_cursor (the assertNumQueries path) are counted too."""
    _, event = client.get("/debug-cursor/")
    assert "3" == event["db_queries"]
    assert "db_dup_queries" not in event


def test_absent_data_is_absent(client: Client) -> None:
    """A view with no query and no error has no db_* or exc_* keys."""
    _, event = client.get("/ok/")
    assert [] == [k for k in event if k.startswith(("db_", "exc_"))]


def test_uncaught_exception_fields(client: Client) -> None:
    """An exception raised in a helper names the view as exc_loc and the helper as its cause."""
    status, event = client.get("/boom/")
    assert (500, "500") == (status, event["resp_status"])
    assert ("ValueError", "bad total") == (event["exc_type"], event["exc_msg"])
    view_line = _line_of("shop/views.py", "total = compute_total()")
    assert f"shop/views.py:{view_line}:boom" == event["exc_loc"]
    assert event["exc_cause_loc"].startswith("shop/helpers.py:")
    assert event["exc_cause_loc"].endswith(":compute_total")
    assert LOC.fullmatch(event["exc_cause_loc"])


def test_http404_is_not_an_exception(client: Client) -> None:
    """A handled 404 is a 404 line without exc_* keys, though OTel marks the span an error."""
    status, event = client.get("/books/999999/")
    assert (404, "404") == (status, event["resp_status"])
    assert [] == [k for k in event if k.startswith("exc_")]


def test_request_that_never_reaches_django_gets_a_line(client: Client) -> None:
    """/health, answered in wsgi.py before Django, still has its request line."""
    status, event = client.get("/health", Referer="r")
    assert (200, "200") == (status, event["resp_status"])
    assert ("GET", "/health", "r") == (event["req_method"], event["req_path"], event["req_referrer"])
    assert "resp_view" not in event and "db_queries" not in event


@pytest.mark.parametrize(
    "incoming",
    ["x" * 129, "has space", 'quote"d', "semi;colon", "", "ünïcode"],
)
def test_unsafe_request_ids_are_replaced(client: Client, incoming: str) -> None:
    """An X-Request-ID that is not a sane token is replaced by a generated id, never echoed."""
    marker = uuid.uuid4().hex
    http_session().get(
        client.server.url("/ok/"), headers={"X-Request-ID": incoming.encode(), "User-Agent": marker}
    )
    lines = client.server.wait_for_stdout(lambda ls: any(marker in ln for ln in ls))
    [event] = [e for e in events(lines) if e.get("req_user_agent") == marker]
    assert HEX32.fullmatch(event["req_id"]), event["req_id"]
    if incoming:
        assert incoming not in "\n".join(lines)


def test_sane_request_id_is_kept(client: Client) -> None:
    """A token of letters, digits and -_.: up to 128 characters is used as req_id."""
    rid = "Abc-1_2.3:" + "z" * 118
    _, event = client.get("/ok/", **{"X-Request-ID": rid})
    assert rid == event["req_id"]


def test_one_line_per_request(client: Client) -> None:
    """Twenty requests of every kind produce exactly twenty lines, one per request id."""
    paths = ["/ok/", "/books/", "/n-plus-one/", "/boom/", "/books/999999/", "/health"] * 3 + ["/db/"] * 2
    ids = [uuid.uuid4().hex for _ in paths]
    http = http_session()
    for path, rid in zip(paths, ids, strict=True):
        http.get(client.server.url(path), headers={"X-Request-ID": rid})
    lines = client.server.wait_for_stdout(lambda ls: all(any(r in ln for ln in ls) for r in ids))
    seen = [e["req_id"] for e in events(lines) if e["req_id"] in set(ids)]
    assert sorted(ids) == sorted(seen)


# -- server variants: each needs its own Gunicorn --------------------------------------------


def _n_plus_one(server: GunicornServer) -> dict[str, str]:
    return Client(server).get("/n-plus-one/")[1]


def test_debug_true_counts_every_query(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """With settings.DEBUG on (Django's debug cursor everywhere), the counts are unchanged."""
    srv = gunicorn(env={**db_env, "EXAMPLE_DEBUG": "1"})
    assert ("6", "5") == (_n_plus_one(srv)["db_queries"], _n_plus_one(srv)["db_dup_queries"])
    _assert_no_internal_errors(srv)


def test_our_db_wrapping_without_driver_instrumentors(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """With the sqlite3/psycopg instrumentors disabled, our own wrapping counts each query once."""
    srv = gunicorn(env={**db_env, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlite3,psycopg"})
    event = _n_plus_one(srv)
    assert ("6", "5") == (event["db_queries"], event["db_dup_queries"])
    _assert_no_internal_errors(srv)


def test_without_our_db_instrumentor_nothing_is_counted_twice_or_invented(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """Disabling every DB instrumentor removes db_* keys: the counts come from real spans."""
    disabled = "sqlite3,psycopg,canonical_logs_django_db"
    srv = gunicorn(env={**db_env, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled})
    assert [] == [k for k in _n_plus_one(srv) if k.startswith("db_")]


def test_unsampled_requests_keep_every_field(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """With the trace sampler off, every request still gets its full line."""
    srv = gunicorn(env={**db_env, "OTEL_TRACES_SAMPLER": "always_off"})
    event = _n_plus_one(srv)
    assert ("6", "5", "/n-plus-one/") == (event["db_queries"], event["db_dup_queries"], event["req_route"])


def test_settings_module_in_environment_also_works(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """When DJANGO_SETTINGS_MODULE is set before start, Django is instrumented right away."""
    srv = gunicorn(env={**db_env, "DJANGO_SETTINGS_MODULE": "mysite.settings"})
    assert "/n-plus-one/" == _n_plus_one(srv)["req_route"]


def test_gthread_concurrent_requests_each_get_their_line(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """Sixteen concurrent requests on gthread workers give sixteen whole, distinct lines."""
    args = ["--worker-class", "gthread", "--threads", "4", "--workers", "2"]
    srv = gunicorn(env=db_env, gunicorn_args=args)
    ids = [uuid.uuid4().hex for _ in range(16)]

    def fetch(rid: str) -> int:
        return http_session().get(srv.url("/n-plus-one/"), headers={"X-Request-ID": rid}).status_code

    with ThreadPoolExecutor(16) as pool:
        assert [200] * 16 == list(pool.map(fetch, ids))
    lines = srv.wait_for_stdout(lambda ls: sum(1 for ln in ls if "/n-plus-one/" in ln) >= 16)
    got = [e for e in events(lines) if e["req_path"] == "/n-plus-one/"]
    assert sorted(ids) == sorted(e["req_id"] for e in got)
    assert {("6", "5")} == {(e["db_queries"], e["db_dup_queries"]) for e in got}


def test_excluded_url_keeps_its_non_ascii_path(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """A URL excluded from Django's instrumentation gets the fallback line, its path undamaged.

    Django rewrites the environ's PATH_INFO with the decoded path; the fallback line must use the
    raw one, or ``é`` is decoded twice into U+FFFD.
    """
    srv = gunicorn(env={**db_env, "OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "caf"})
    marker = uuid.uuid4().hex
    http_session().get(srv.url("/caf%C3%A9/"), headers={"User-Agent": marker})
    lines = srv.wait_for_stdout(lambda ls: any(marker in ln for ln in ls))
    [event] = [e for e in events(lines) if e.get("req_user_agent") == marker]
    assert ("/café/", "404") == (event["req_path"], event["resp_status"])
    assert "trace_id" not in event  # no root span saw it: this is the fallback line
