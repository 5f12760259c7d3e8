"""``canonical-logs report`` on lines written by the project's encoders: its figures against the
same figures computed exactly here, its filters, inputs, budgets, comparisons and pages."""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from otel_canonical_logs.report import aggregate, cli
from otel_canonical_logs.report.html import page
from otel_canonical_logs.sinks import jsonl, logfmt
from tests.logfmt_strict import decode_line

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC).timestamp()
ROUTES = ["/books/", "/books/<int:pk>/", "/n-plus-one/", "/boom/"]


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        route = rng.choice(ROUTES)
        event: dict[str, Any] = {
            "event_type": "request",
            "req_id": f"r{i:05d}",
            "trace_id": f"{i:032x}",
            "req_method": "GET",
            "req_path": route.replace("<int:pk>", str(rng.randint(1, 99))),
            "req_route": route,
            "resp_status": rng.choice([200, 200, 200, 404, 500]) if route != "/boom/" else 500,
            "resp_time": rng.lognormvariate(-4, 1) + 0.001,
            "db_queries": rng.randint(0, 40),
            "db_time": rng.random() / 100,
        }
        if route == "/n-plus-one/":
            event.update(db_n1_queries=event["db_queries"], db_n1_loc="shop/views.py:40:n_plus_one")
        if event["resp_status"] == 500:
            event.update(exc_type="ZeroDivisionError", exc_loc="shop/views.py:77:boom")
        if i % 50 == 49:
            event = {
                "event_type": "timeout",
                "req_id": f"r{i:05d}",
                "req_route": "/slow-query/",
                "resp_time": 2.0,
                "timeout_cause_loc": "shop/views.py:108:slow_query",
            }
        out.append(event)
    return out


def write_lines(path: Path, events: Sequence[dict[str, Any]], times: Sequence[float] | None = None) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i, event in enumerate(events):
            prefix = f"{stamp(times[i])} " if times is not None else ""
            out.write(prefix + logfmt.encode(event))
            if i % 10 == 0:
                out.write("[2026-11-27 10:00:00 +0000] [42] [INFO] Booting worker with pid: 42\n")


def report(*args: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = cli.run([*args, "--json"], out)
    return code, json.loads(out.getvalue())


def exact_quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def as_read(events: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The events as the lines say them (floats to 3 decimals), by the strict decoder."""
    return [dict(decode_line(logfmt.encode(e).rstrip("\n"))) for e in events]


def test_figures_equal_an_exact_computation(tmp_path: Path) -> None:
    """Counts, error rates, mean queries, N+1 shares exactly; percentiles within the sketch's 1%."""
    events = make_events(3000)
    path = tmp_path / "lines.log"
    write_lines(path, events, [START + i * 0.5 for i in range(len(events))])
    code, rep = report(str(path))
    assert 0 == code
    lines = as_read(events)
    times = [float(e["resp_time"]) for e in lines]
    failed = [e for e in lines if e["event_type"] == "timeout" or int(e.get("resp_status", 0)) >= 500]
    s = rep["summary"]
    assert len(lines) == s["requests"]
    assert len(failed) == s["errors"]
    assert len(failed) / len(lines) == pytest.approx(s["error_rate"])
    assert sum(e["event_type"] == "timeout" for e in lines) == s["timeouts"]
    assert (len(events) - 1) * 0.5 == pytest.approx(s["span_s"], abs=1e-3)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert exact_quantile(times, q) == pytest.approx(s[name], rel=0.01)
    assert max(times) == s["max"]
    assert 300 == rep["input"]["other_lines"]
    assert 0 == rep["input"]["malformed"]
    by_route = {r["route"]: r for r in rep["routes"]}
    for route in [*ROUTES, "/slow-query/"]:
        mine = [e for e in lines if e["req_route"] == route]
        row = by_route[route]
        assert len(mine) == row["count"]
        errors = sum(e["event_type"] == "timeout" or int(e.get("resp_status", 0)) >= 500 for e in mine)
        assert errors / len(mine) == pytest.approx(row["error_rate"])
        queries = [int(e.get("db_queries", 0)) for e in mine]
        assert sum(queries) / len(mine) == pytest.approx(row["db_queries_mean"])
        assert exact_quantile(queries, 0.95) == row["db_queries_p95"]
        assert sum(int(e.get("db_n1_queries", 0)) > 0 for e in mine) / len(mine) == pytest.approx(
            row["n1_share"]
        )
        route_times = [float(e["resp_time"]) for e in mine]
        assert exact_quantile(route_times, 0.95) == pytest.approx(row["p95"], rel=0.01)
        db_time = sum(float(e.get("db_time", 0)) for e in mine)
        assert db_time / sum(route_times) == pytest.approx(row["db_share"], rel=1e-6)
    (n1,) = rep["n_plus_one"]
    assert "shop/views.py:40:n_plus_one" == n1["loc"]
    assert sum(int(e.get("db_n1_queries", 0)) > 0 for e in lines) == n1["count"]
    assert sum(int(e.get("db_n1_queries", 0)) for e in lines) == n1["n1_queries"]
    exc = {(r["exc_type"], r["exc_loc"]): r["count"] for r in rep["exceptions"]}
    assert {("ZeroDivisionError", "shop/views.py:77:boom"): sum("exc_type" in e for e in lines)} == exc
    slowest = sorted(lines, key=lambda e: -float(e["resp_time"]))[:10]
    assert [float(e["resp_time"]) for e in slowest] == [r["resp_time"] for r in rep["slowest"]]


def test_json_lines_give_the_same_report(tmp_path: Path) -> None:
    """The same events as CANONICAL_LOGS_FORMAT=json lines: the same summary and routes."""
    events = make_events(800)
    text_path, json_path = tmp_path / "a.log", tmp_path / "b.log"
    write_lines(text_path, events)
    json_path.write_text("".join(jsonl.encode(e) for e in events))
    _, a = report(str(text_path))
    _, b = report(str(json_path))
    assert a["summary"] == b["summary"]
    assert a["routes"] == b["routes"]


def test_time_buckets_stay_bounded_and_cover_every_request(tmp_path: Path) -> None:
    """A week of lines: at most MAX_BUCKETS buckets, whose counts add up to the requests."""
    events = make_events(2000)
    path = tmp_path / "week.log"
    write_lines(path, events, [START + i * 300 for i in range(len(events))])
    _, rep = report(str(path))
    buckets = rep["timeline"]["buckets"]
    assert len(buckets) <= aggregate.MAX_BUCKETS
    assert rep["summary"]["requests"] == sum(b["count"] for b in buckets)
    assert rep["summary"]["requests"] == sum(sum(b["statuses"].values()) for b in buckets)


def test_routes_past_the_limit_are_one_row(tmp_path: Path) -> None:
    """Distinct routes beyond ROUTE_LIMIT are counted in one "(other routes)" row."""
    n = aggregate.ROUTE_LIMIT + 50
    events = [
        {"event_type": "request", "req_route": f"/r{i}/", "resp_status": 200, "resp_time": 0.01}
        for i in range(n)
    ]
    path = tmp_path / "many.log"
    write_lines(path, events)
    _, rep = report(str(path))
    assert aggregate.ROUTE_LIMIT + 1 == len(rep["routes"])
    other = next(r for r in rep["routes"] if r["route"] == aggregate.OTHER_ROUTES)
    assert 50 == other["count"] == rep["routes_folded"]


def test_paths_without_a_route_collapse_their_ids(tmp_path: Path) -> None:
    """No req_route (a 404): the path with its ids as <id> is the route."""
    events = [
        {
            "event_type": "request",
            "req_path": f"/orders/{i}/items/{uid}/",
            "resp_status": 404,
            "resp_time": 0.002,
        }
        for i, uid in enumerate(
            ["3f2b1c4d5e6f7a8b9c0d", "a3bb189e-8bf9-3888-9912-ace4e6543002", "ab12cd34ef56"]
        )
    ]
    path = tmp_path / "paths.log"
    write_lines(path, events)
    _, rep = report(str(path))
    assert [("/orders/<id>/items/<id>/", 3)] == [(r["route"], r["count"]) for r in rep["routes"]]


def test_since_until_route_and_status_filters(tmp_path: Path) -> None:
    """Each filter keeps exactly the records it names; the rest are counted as filtered out."""
    events = make_events(1000)
    times = [START + i for i in range(len(events))]
    path = tmp_path / "f.log"
    write_lines(path, events, times)
    lines = as_read(events)
    since, until = stamp(START + 100), stamp(START + 400)
    _, rep = report(str(path), "--since", since, "--until", until)
    assert 300 == rep["summary"]["requests"]
    assert 700 == rep["input"]["filtered_out"]
    _, rep = report(str(path), "--route", "/books/*")
    assert sum(e["req_route"].startswith("/books/") for e in lines) == rep["summary"]["requests"]
    assert {"/books/", "/books/<int:pk>/"} == {r["route"] for r in rep["routes"]}
    _, rep = report(str(path), "--status", "5xx")
    assert sum(int(e.get("resp_status", 0)) >= 500 for e in lines) == rep["summary"]["requests"]
    _, rep = report(str(path), "--status", "404,timeout")
    expected = sum(e.get("resp_status") == "404" or e["event_type"] == "timeout" for e in lines)
    assert expected == rep["summary"]["requests"]


def test_gz_and_stdin(tmp_path: Path) -> None:
    """A .gz file and the same lines on stdin give the plain file's report."""
    events = make_events(300)
    plain = tmp_path / "p.log"
    write_lines(plain, events)
    packed = tmp_path / "p.log.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    _, expected = report(str(plain))
    _, from_gz = report(str(packed))
    assert expected["routes"] == from_gz["routes"]
    result = subprocess.run(
        [sys.executable, "-m", "otel_canonical_logs", "report", "--json"],
        input=plain.read_bytes(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert expected["routes"] == json.loads(result.stdout)["routes"]


def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_canonical_logs", "report", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fail_on_exit_codes(tmp_path: Path) -> None:
    """Exit 1 and the broken route named when a budget is broken, 0 when kept, 2 for a bad budget."""
    events = [
        {
            "event_type": "request",
            "req_route": "/slow/",
            "resp_status": 200,
            "resp_time": 0.9,
            "db_queries": 5,
        },
        {
            "event_type": "request",
            "req_route": "/fast/",
            "resp_status": 200,
            "resp_time": 0.01,
            "db_queries": 40,
        },
    ]
    path = tmp_path / "b.log"
    write_lines(path, events * 20)
    broken = _cli(str(path), "--fail-on", "p95>0.5")
    assert 1 == broken.returncode, broken.stderr
    assert "/slow/: p95>0.5" in broken.stdout
    assert "/fast/: p95" not in broken.stdout
    queries = _cli(str(path), "--fail-on", "db_queries>30", "--json")
    assert 1 == queries.returncode
    assert [{"route": "/fast/", "rule": "db_queries>30", "value": 40.0}] == json.loads(queries.stdout)[
        "budget"
    ]["violations"]
    kept = _cli(str(path), "--fail-on", "p95>1,db_queries>50,error_rate>1%")
    assert 0 == kept.returncode, kept.stdout + kept.stderr
    assert "kept by every route" in kept.stdout
    bad = _cli(str(path), "--fail-on", "p95 is too slow")
    assert 2 == bad.returncode
    assert "cannot read budget" in bad.stderr
    unknown = _cli(str(path), "--fail-on", "latency>1")
    assert 2 == unknown.returncode
    assert "unknown budget metric 'latency'" in unknown.stderr
    assert 2 == _cli(str(tmp_path / "missing.log")).returncode
    unwritable = _cli(str(path), "--html", str(tmp_path / "no-such-folder" / "r.html"))
    assert 2 == unwritable.returncode
    assert "cannot write" in unwritable.stderr


def test_compare_with_a_log_file_and_with_a_json_summary(tmp_path: Path) -> None:
    """Per-route deltas of p95, mean queries and N+1 share, the same from either baseline form."""

    def lines(t: float, q: int, n1: bool) -> list[dict[str, Any]]:
        extra = {"db_n1_queries": q, "db_n1_loc": "v.py:1:f"} if n1 else {}
        return [
            {
                "event_type": "request",
                "req_route": "/a/",
                "resp_status": 200,
                "resp_time": t,
                "db_queries": q,
                **extra,
            }
        ] * 40

    before, after = tmp_path / "before.log", tmp_path / "after.log"
    write_lines(
        before, [*lines(0.100, 30, True), {"event_type": "request", "req_route": "/gone/", "resp_time": 0.1}]
    )
    write_lines(
        after, [*lines(0.020, 3, False), {"event_type": "request", "req_route": "/new/", "resp_time": 0.1}]
    )
    _, from_log = report(str(after), "--compare", str(before))
    baseline_json = tmp_path / "before.json"
    assert 0 == cli.run([str(before), "--json", str(baseline_json)], io.StringIO())
    _, from_json = report(str(after), "--compare", str(baseline_json))
    for comparison in (from_log["compare"], from_json["compare"]):
        (row,) = comparison["routes"]
        assert "/a/" == row["route"]
        assert -0.08 == pytest.approx(row["delta_p95"], rel=0.02)
        assert -27 == pytest.approx(row["delta_db_queries_mean"])
        assert -1.0 == pytest.approx(row["delta_n1_share"])
        assert ["/new/"] == comparison["new_routes"]
        assert ["/gone/"] == comparison["gone_routes"]
    assert from_log["compare"]["routes"] == from_json["compare"]["routes"]


def test_malformed_and_foreign_lines_are_counted(tmp_path: Path) -> None:
    """Malformed canonical lines and other logs are skipped and counted, the rest reported."""
    path = tmp_path / "mixed.log"
    good = logfmt.encode({"event_type": "request", "req_route": "/a/", "resp_status": 200, "resp_time": 0.01})
    path.write_bytes(
        good.encode()
        + b'event_type="request" resp_status="2\n'
        + b"\xff\xfe not utf-8 at all\n"
        + b'{"event_type": "request", "resp_time": \n'
        + b"Traceback (most recent call last):\n"
        + good.encode()
    )
    _, rep = report(str(path))
    assert {"lines": 6, "canonical": 2, "other_lines": 2, "malformed": 2} == {
        k: rep["input"][k] for k in ("lines", "canonical", "other_lines", "malformed")
    }
    assert 2 == rep["summary"]["requests"]


def test_lines_without_timestamps_are_reported_in_order(tmp_path: Path) -> None:
    """No timestamps: no time span or rate, the charts by record order, the rest as usual."""
    path = tmp_path / "bare.log"
    write_lines(path, make_events(200))
    _, rep = report(str(path))
    assert rep["summary"]["span_s"] is None
    assert rep["summary"]["requests_per_s"] is None
    assert rep["timeline"]["timed"] is False
    assert 200 == rep["summary"]["requests"]


def test_saturation_events_make_the_timeline(tmp_path: Path) -> None:
    """Saturation events: averages of g_w_active, maxima of g_w_active_max and g_backlog."""
    events = [
        {"event_type": "saturation", "g_w_count": 4, "g_w_active": a, "g_w_active_max": m, "g_backlog": b}
        for a, m, b in [(0.5, 1, 0), (3.5, 4, 12), (2.0, 3, 2)]
    ]
    path = tmp_path / "sat.log"
    write_lines(path, events, [START, START + 10, START + 20])
    _, rep = report(str(path))
    points = rep["saturation"]["points"]
    assert [0.5, 3.5, 2.0] == [p["g_w_active"] for p in points]
    assert [0, 12, 2] == [p["g_backlog"] for p in points]
    assert 3 == rep["summary"]["saturation_samples"]


def test_terminal_fits_100_columns_and_is_plain_off_a_terminal(tmp_path: Path) -> None:
    """Not a TTY: no escape sequences, no line over 100 columns; --color always adds colour."""
    path = tmp_path / "t.log"
    write_lines(path, make_events(500), [START + i for i in range(500)])
    plain = _cli(str(path))
    assert 0 == plain.returncode, plain.stderr
    assert "\x1b[" not in plain.stdout
    assert max(len(line) for line in plain.stdout.splitlines()) <= 100
    for title in ("Routes", "N+1 offenders", "Exceptions", "Timeouts and stuck", "Slowest requests"):
        assert title in plain.stdout
    assert "\x1b[" in _cli(str(path), "--color", "always").stdout


def test_hostile_values_are_escaped_in_the_page(tmp_path: Path) -> None:
    """Markup from the lines is text on the page; the page loads nothing and runs nothing."""
    hostile = '<script>alert(1)</script><img src="http://x/">'
    events = [
        {
            "event_type": "request",
            "req_route": hostile,
            "resp_status": 500,
            "resp_time": 0.01,
            "exc_type": hostile,
        }
    ]
    path = tmp_path / "h.log"
    write_lines(path, events)
    _, rep = report(str(path))
    html = page(rep)
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r"<[^>]*\s(?:src|href)\s*=", html)  # no tag loads anything
    assert "default-src 'none'" in html


def test_without_the_report_extra_the_command_says_what_to_install() -> None:
    """ddsketch missing: exit 2 and the pip command, not a traceback."""
    code = (
        "import sys; sys.modules['ddsketch'] = None\n"
        "from otel_canonical_logs.report.cli import main; sys.exit(main(['report']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, input=""
    )
    assert 2 == result.returncode
    assert "pip install 'otel-canonical-logs[report]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_entry_point_is_main() -> None:
    """[project.scripts] canonical-logs names a callable that runs main()."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["canonical-logs"].partition(":")
    assert ("otel_canonical_logs.report.cli", "entry") == (module, name)
    target = getattr(__import__(module, fromlist=[name]), name)
    with pytest.raises(SystemExit) as stopped:
        sys.argv = ["canonical-logs", "report", "--help"]
        target()
    assert 0 == stopped.value.code


def test_stuck_and_partial_failure_events_are_counted_not_requests(tmp_path: Path) -> None:
    """A stuck event is a row of the timeouts table (its request line comes later), not a request."""
    events: list[dict[str, Any]] = [
        {
            "event_type": "stuck",
            "req_id": "s1",
            "req_route": "/spin/",
            "timeout_cause_loc": "shop/a.py:9:spin",
        },
        {"event_type": "request", "req_id": "s1", "req_route": "/spin/", "resp_status": 200, "stuck": True},
        {"event_type": "partial_failure", "req_id": "s2", "exc_type": "KeyError", "exc_loc": "shop/b.py:3:f"},
    ]
    path = tmp_path / "stuck.log"
    write_lines(path, events)
    _, rep = report(str(path))
    assert (1, 1, 1, 0) == tuple(
        rep["summary"][k] for k in ("requests", "stuck", "partial_failures", "timeouts")
    )
    (row,) = rep["timeouts"]
    assert ("shop/a.py:9:spin", 0, 1, ["/spin/"], ["s1"]) == (
        row["loc"],
        row["timeouts"],
        row["stuck"],
        row["routes"],
        row["examples"],
    )
    assert [("KeyError", 1)] == [(r["exc_type"], r["count"]) for r in rep["partial_failures"]]


def test_files_given_newest_first_still_make_one_timeline(tmp_path: Path) -> None:
    """The later file first: the buckets cover both in time order, and every request is in one."""
    events = make_events(600)
    older, newer = tmp_path / "app.log.1", tmp_path / "app.log"
    write_lines(older, events[:300], [START + i * 10 for i in range(300)])
    write_lines(newer, events[300:], [START + 3000 + i * 10 for i in range(300)])
    _, in_order = report(str(older), str(newer))
    _, reversed_ = report(str(newer), str(older))
    for rep in (in_order, reversed_):
        buckets = rep["timeline"]["buckets"]
        assert len(buckets) <= aggregate.MAX_BUCKETS
        assert 600 == sum(b["count"] for b in buckets)
        assert buckets[0]["t"] <= START < buckets[0]["t"] + rep["timeline"]["width"]
        assert [b["t"] for b in buckets] == sorted(b["t"] for b in buckets)
    assert in_order["summary"] == reversed_["summary"]


def test_a_closed_pipe_keeps_the_verdict(tmp_path: Path) -> None:
    """`report | head`: stdout gone mid-report is exit 0, or 1 when a budget is broken (rich's own
    handler would exit 1 either way)."""
    path = tmp_path / "p.log"
    write_lines(path, make_events(200))
    code = (
        "import io, sys\n"
        "from otel_canonical_logs.report.cli import run\n"
        "class Gone(io.StringIO):\n"
        "    def write(self, text):\n"
        "        raise BrokenPipeError\n"
        "sys.exit(run(sys.argv[1:], Gone()))\n"
    )
    kept = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert (0, "") == (kept.returncode, kept.stderr)
    broken = subprocess.run(
        [sys.executable, "-c", code, str(path), "--fail-on", "p50>0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (1, "") == (broken.returncode, broken.stderr)
