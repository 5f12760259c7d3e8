"""The public API and the richer fields on real Gunicorn: Context, instrumenters and enrichers,
on_error, templates, outgoing HTTP calls, Redis cache calls and N+1 call sites."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import (
    EXAMPLE_DIR,
    GunicornServer,
    drop_database,
    events,
    http_session,
    prepare_database,
)
from tests.integration.test_pipeline import Client

REDIS = ("127.0.0.1", 6379)
FLAKY = "enricher.shop.instrumenters.flaky_enricher"


def _line_of(path: str, needle: str) -> int:
    for number, line in enumerate((EXAMPLE_DIR / path).read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def _internal_errors(server: GunicornServer) -> list[str]:
    return [line for line in server.stderr_lines() if LOG_PREFIX in line]


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A local HTTP server (loopback) for the example's outgoing calls."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def api_env(upstream: str) -> Iterator[dict[str, str]]:
    """SQLite database, the example's instrumenters on, an upstream and Redis for the example."""
    env = prepare_database("sqlite")
    env.update(
        EXAMPLE_INSTRUMENTERS="1",
        EXAMPLE_UPSTREAM_URL=upstream,
        EXAMPLE_REDIS_URL=f"redis://{REDIS[0]}:{REDIS[1]}/15",
    )
    try:
        yield env
    finally:
        drop_database(env)


@pytest.fixture(scope="module")
def server(api_env: dict[str, str]) -> Iterator[GunicornServer]:
    """One gthread worker with 16 threads: requests of this module can truly overlap."""
    args = ["--worker-class", "gthread", "--threads", "16", "--workers", "1"]
    with GunicornServer(env=api_env, gunicorn_args=args) as srv:
        yield srv
        # The example's flaky enricher is the only internal error allowed, logged once at most.
        assert [] == [line for line in _internal_errors(srv) if FLAKY not in line], srv.stderr_text()


@pytest.fixture
def client(server: GunicornServer) -> Client:
    return Client(server)


# -- Context ---------------------------------------------------------------------------------


def test_context_set_and_time(client: Client) -> None:
    """Context.set gives app_cart_items; two Context.time blocks give one app_pricing_time."""
    status, event = client.get("/checkout/")
    assert (200, "3") == (status, event["app_cart_items"])
    assert 0 <= float(event["app_pricing_time"]) <= float(event["resp_time"])


def test_context_time_sums_the_timed_block(client: Client) -> None:
    """app_nap_time is at least the time slept inside Context.time."""
    _, event = client.get("/context/?tag=t&nap=0.1")
    assert 0.1 <= float(event["app_nap_time"]) <= float(event["resp_time"])


def test_concurrent_gthread_requests_keep_their_own_context(server: GunicornServer) -> None:
    """Sixteen overlapping requests on one gthread worker each carry only their own value."""
    tags = [uuid.uuid4().hex for _ in range(16)]
    nap = 0.5

    def fetch(tag: str) -> int:
        url = server.url(f"/context/?tag={tag}&nap={nap}")
        return http_session().get(url, headers={"X-Request-ID": tag}).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        assert [200] * 16 == list(pool.map(fetch, tags))
    elapsed = time.monotonic() - started
    lines = server.wait_for_stdout(lambda ls: all(any(t in ln for ln in ls) for t in tags))
    got = {e["req_id"]: e for e in events(lines) if e.get("req_id") in set(tags)}
    assert {t: (t, t) for t in tags} == {t: (got[t]["app_tag"], got[t]["app_tag_after"]) for t in tags}
    assert elapsed < 16 * nap / 2, f"requests did not overlap ({elapsed:.2f}s)"


def test_context_is_reset_between_requests(client: Client) -> None:
    """Fields one request set are absent from the next request's line."""
    client.get("/context/?tag=first&odd=1")
    _, event = client.get("/context/?tag=second")
    assert [] == [k for k in event if k.startswith("billing_") or k in ("app_object", "app_huge")]


def test_odd_keys_and_values_keep_the_line_whole(client: Client) -> None:
    """Keys are sanitized and values of any type are written safely; canonical keys are protected."""
    _, event = client.get("/context/?tag=x&odd=1")
    assert 'quote" back\\slash\nnewline' == event["app_odd_key__"]
    assert ("<unrenderable Unprintable>", str(2**80)) == (event["app_object"], event["app_huge"])
    assert ("pro", False) == (event["billing_plan"], "db_queries" in event)


# -- instrumenters and enrichers ---------------------------------------------------------------


def test_instrumenter_written_for_the_original_project_works(client: Client) -> None:
    """The example's WorkerInstrumenter (only its import changed) adds fields through Context."""
    _, event = client.get("/checkout/", **{"X-Tenant": "acme"})
    assert ("GET /checkout/ 200", "acme") == (event["app_seen"], event["app_tenant"])


def test_instrumenter_setup_ran_once_in_the_worker(client: Client) -> None:
    """setup() ran once, in the worker serving the request, not in the arbiter."""
    _, event = client.get("/ok/")
    assert ("1", event["app_worker_pid"]) == (event["app_setups"], event["app_setup_pid"])
    assert str(client.server.pid) != event["app_worker_pid"]


def test_instrumenters_see_requests_that_never_reach_django(client: Client) -> None:
    """/health, answered before Django, still goes through the instrumenter with req and resp."""
    _, event = client.get("/health")
    assert "GET /health 200" == event["app_seen"]


def test_native_enricher_adds_a_field(client: Client) -> None:
    """A plain callable registered with register_instrumenter adds app_release."""
    _, event = client.get("/ok/")
    assert "dev" == event["app_release"]


def test_raising_enricher_does_not_cost_the_line(client: Client) -> None:
    """An enricher that raises is skipped and its change undone; the line and other fields remain."""
    for _ in range(2):
        status, event = client.get("/enrich-boom/")
        assert (200, "200", "dev") == (status, event["resp_status"], event["app_release"])
        assert "GET /enrich-boom/ 200" == event["app_seen"]
    assert 1 == sum(FLAKY in line for line in _internal_errors(client.server))


def test_preloaded_instrumenters_are_set_up_after_fork(
    gunicorn: Callable[..., GunicornServer], api_env: dict[str, str]
) -> None:
    """With --preload, setup() runs in each worker after fork, never in the arbiter."""
    srv = gunicorn(env=api_env, gunicorn_args=["--preload", "--workers", "2"])
    client = Client(srv)
    seen = [client.get("/ok/")[1] for _ in range(6)]
    assert {("1", True)} == {(e["app_setups"], e["app_setup_pid"] == e["app_worker_pid"]) for e in seen}
    assert str(srv.pid) not in {e["app_setup_pid"] for e in seen}


# -- on_error ----------------------------------------------------------------------------------


def test_on_error_emits_correlated_partial_failures(client: Client) -> None:
    """Two failing helper calls give two partial_failure lines correlated to a 200 request line."""
    rid = uuid.uuid4().hex
    status = client.http.get(client.server.url("/partial/"), headers={"X-Request-ID": rid}).status_code
    lines = client.server.wait_for_stdout(lambda ls: any(f'request" req_id="{rid}"' in ln for ln in ls))
    mine = [e for e in events(lines) if e["req_id"] == rid]
    [request] = [e for e in mine if e["event_type"] == "request"]
    failures = [e for e in mine if e["event_type"] == "partial_failure"]
    assert (200, "2", 2) == (status, request["partial_failures"], len(failures))
    keys = ("trace_id", "span_id")
    assert [tuple(request[k] for k in keys)] * 2 == [tuple(f[k] for k in keys) for f in failures]
    helper_line = _line_of("shop/helpers.py", "return tuple(_ask_recommender(title))")
    assert [f"shop/helpers.py:{helper_line}:recommendations"] * 2 == [f["exc_loc"] for f in failures]
    assert {"RecommenderDown"} == {f["exc_type"] for f in failures}
    assert failures[0]["exc_cause_loc"].endswith(":_ask_recommender")


def test_on_error_reraises_with_debug(
    gunicorn: Callable[..., GunicornServer], api_env: dict[str, str]
) -> None:
    """With settings.DEBUG the helper's exception propagates: a 500 and no partial_failure."""
    srv = gunicorn(env={**api_env, "EXAMPLE_DEBUG": "1"})
    status, event = Client(srv).get("/partial/")
    assert (500, "RecommenderDown") == (status, event["exc_type"])
    assert [] == [e for e in events(srv.stdout_lines) if e["event_type"] == "partial_failure"]


# -- templates -----------------------------------------------------------------------------------


def test_template_renders_include_includes(client: Client) -> None:
    """A template including a partial three times is four renders; time within the request's."""
    _, event = client.get("/receipt/")
    assert "4" == event["tmpl_renders"]
    assert 0 < float(event["tmpl_time"]) <= float(event["resp_time"])


def test_template_error_inside_an_include_names_the_included_template(client: Client) -> None:
    """A callable raising in an {% include %}d template names that template and line."""
    status, event = client.get("/receipt/?broken=line")
    line = _line_of("shop/templates/shop/partials/receipt_line.html", "line.total")
    assert (500, "ValueError") == (status, event["exc_type"])
    assert f"shop/partials/receipt_line.html:{line}" == event["exc_template"]
    assert event["exc_cause_loc"].endswith(":price_with_tax")


def test_template_error_in_the_top_template(client: Client) -> None:
    """A callable raising in the rendered template itself names it and the line."""
    _, event = client.get("/receipt/?broken=heading")
    line = _line_of("shop/templates/shop/receipt.html", "receipt.heading")
    assert ("LookupError", f"shop/receipt.html:{line}") == (event["exc_type"], event["exc_template"])


def test_other_exceptions_have_no_template(client: Client) -> None:
    """An exception raised outside any template has no exc_template."""
    _, event = client.get("/boom/")
    assert ("ValueError", False) == (event["exc_type"], "exc_template" in event)


# -- outgoing calls --------------------------------------------------------------------------------


def test_outgoing_http_calls(client: Client) -> None:
    """Two requests calls to a local server give http_out_calls=2, counted apart from the DB."""
    status, event = client.get("/http-out/")
    assert (200, "2") == (status, event["http_out_calls"])
    assert 0 < float(event["http_out_time"]) <= float(event["resp_time"])
    assert [] == [k for k in event if k.startswith("db_")]


def _redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


def test_redis_cache_calls(client: Client) -> None:
    """A set and a get on Django's Redis cache give cache_calls=2, not database queries."""
    if not _redis_up():
        pytest.skip(f"no Redis at {REDIS[0]}:{REDIS[1]}")
    status, event = client.get("/cache/")
    assert (200, "2") == (status, event["cache_calls"])
    assert 0 < float(event["cache_time"]) <= float(event["resp_time"])
    assert "db_queries" not in event


# -- N+1 call sites ---------------------------------------------------------------------------------


def test_db_dup_loc_names_the_line_that_repeats_the_query(
    gunicorn: Callable[..., GunicornServer], db_env: dict[str, str]
) -> None:
    """On both databases, db_dup_loc is the view line whose loop issues the repeated SQL."""
    srv = gunicorn(env=db_env)
    _, event = Client(srv).get("/n-plus-one/")
    line = _line_of("shop/views.py", 'b.author.name}" for b in books')
    function = "<listcomp>" if sys.version_info < (3, 12) else "n_plus_one"
    assert f"shop/views.py:{line}:{function}" == event["db_dup_loc"]
