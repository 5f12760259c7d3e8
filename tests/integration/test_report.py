"""``canonical-logs report`` over what the example app writes under real Gunicorn (logfmt and
JSON): a timeout, N+1 views, errors, 404s, saturation events, Gunicorn's own lines mixed in. Its
figures are checked against the client's own record of what it sent and got, and against the
lines read by the strict decoder (percentiles within the sketch's relative accuracy)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.harness import GunicornServer, database, http_session
from tests.integration.reliability import internal_errors
from tests.logfmt_strict import decode_line

TIMEOUT = 2
# (path, times): the N+1 views, errors, 404s, a spread of latencies, one timeout.
PLAN = [
    ("/ok/", 12),
    ("/books/", 8),
    ("/n-plus-one/", 6),
    ("/n1/loop/", 4),
    ("/boom/", 3),
    ("/books/999999/", 2),
    ("/sleep/?s=0.02", 3),
    ("/sleep/?s=0.15", 2),
    ("/sleep/?s=10", 1),
]


@dataclass
class Run:
    """One server's lines as a collector would keep them, and what the client saw."""

    path: Path
    statuses: dict[str, list[int | None]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ ")


def _serve(env: dict[str, str], fmt: str, out: Path) -> Run:
    """Start the app, send PLAN, keep every stdout line with the time it was read (as `docker
    logs -t` does) and Gunicorn's stderr lines after them."""
    run = Run(out)
    server = GunicornServer(
        env={**env, "CANONICAL_LOGS_FORMAT": fmt, "CANONICAL_LOGS_SATURATION_INTERVAL": "0.2"},
        gunicorn_args=["--timeout", str(TIMEOUT), "--graceful-timeout", "1", "--workers", "2"],
    )
    stamped: list[str] = []
    seen = 0

    def collect() -> None:
        nonlocal seen
        lines = server.stdout_lines
        now = _stamp()
        stamped.extend(now + line for line in lines[seen:])
        seen = len(lines)

    with server:
        session = http_session()
        for path, times in PLAN:
            for _ in range(times):
                try:
                    status: int | None = session.get(
                        server.url(path), headers={"X-Request-ID": uuid.uuid4().hex}, timeout=30
                    ).status_code
                except requests.ConnectionError:
                    status = None
                run.statuses.setdefault(path, []).append(status)
                collect()
        expected = sum(times for _, times in PLAN)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            collect()
            kinds = [_fields(line)["event_type"] for line in stamped if "event_type" in line]
            if (
                sum(k in ("request", "timeout") for k in kinds) >= expected + 1
                and kinds.count("saturation") >= 3
            ):
                break
            time.sleep(0.05)
        assert [] == internal_errors(server), server.stderr_text()
    collect()
    run.lines = stamped
    out.write_text("\n".join([*stamped, *server.stderr_lines()]) + "\n", encoding="utf-8")
    return run


def _fields(stamped: str) -> dict[str, Any]:
    """The line without its timestamp, read independently of the report: the strict logfmt
    decoder, or json.loads."""
    line = stamped.split(" ", 1)[1]
    if line.startswith("{"):
        loaded: dict[str, Any] = json.loads(line)
        return loaded
    return dict(decode_line(line))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    with database("sqlite") as env:
        folder = tmp_path_factory.mktemp("report")
        yield {fmt: _serve(env, fmt, folder / f"{fmt}.log") for fmt in ("logfmt", "json")}


def _report(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "otel_canonical_logs", "report", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def _rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_report_figures_match_the_client_and_the_lines(runs: dict[str, Run], fmt: str) -> None:
    """Requests, errors, timeouts, N+1 and exceptions as the client counted them; percentiles
    as the lines say, within 1 %."""
    run = runs[fmt]
    rep = _report(str(run.path))
    records = [_fields(line) for line in run.lines]
    requests_ = [r for r in records if r["event_type"] in ("request", "timeout")]
    sent = sum(len(v) for v in run.statuses.values())
    # Every request the client sent, plus the harness's one /health readiness request.
    assert sent + 1 == rep["summary"]["requests"] == len(requests_)
    assert 0 == rep["input"]["malformed"]
    assert rep["input"]["other_lines"] > 0  # Gunicorn's own lines
    client_errors = sum(1 for v in run.statuses.values() for s in v if s is None or s >= 500)
    assert client_errors == rep["summary"]["errors"]
    # The worker is killed: no answer, or the 500 Gunicorn sends for it.
    assert run.statuses["/sleep/?s=10"][0] in (None, 500)
    assert 1 == rep["summary"]["timeouts"]
    (timeout,) = rep["timeouts"]
    assert timeout["loc"].startswith("shop/views.py:") and timeout["loc"].endswith(":sleep")
    times = [float(r["resp_time"]) for r in requests_]
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert _rank(times, q) == pytest.approx(rep["summary"][name], rel=0.01)
    routes = {r["route"]: r for r in rep["routes"]}
    assert len(run.statuses["/boom/"]) == routes["/boom/"]["errors"] == routes["/boom/"]["count"]
    assert 1.0 == routes["/n-plus-one/"]["n1_share"] == routes["/n1/loop/"]["n1_share"]
    assert 0.0 == routes["/ok/"]["n1_share"]
    sleeps = [float(r["resp_time"]) for r in requests_ if r.get("req_route") == "/sleep/"]
    assert _rank(sleeps, 0.95) == pytest.approx(routes["/sleep/"]["p95"], rel=0.01)
    assert len(run.statuses["/books/999999/"]) == routes["/books/<int:pk>/"]["count"]
    n1_sites = {row["loc"]: row for row in rep["n_plus_one"]}
    n1_requests = len(run.statuses["/n-plus-one/"]) + len(run.statuses["/n1/loop/"])
    assert n1_requests == sum(row["count"] for row in n1_sites.values())
    assert any(loc.startswith("shop/line_views.py:") for loc in n1_sites)
    exceptions = {row["exc_type"]: row["count"] for row in rep["exceptions"]}
    assert {"ValueError": len(run.statuses["/boom/"])} == exceptions
    assert rep["summary"]["saturation_samples"] >= 3
    assert rep["summary"]["span_s"] > 0


def test_logfmt_and_json_give_the_same_shape(runs: dict[str, Run]) -> None:
    """The two formats of the same plan: the same routes, counts and error counts."""
    a, b = (_report(str(runs[fmt].path)) for fmt in ("logfmt", "json"))
    shape = [(r["route"], r["count"], r["errors"], r["n1_requests"]) for r in a["routes"]]
    assert shape == [(r["route"], r["count"], r["errors"], r["n1_requests"]) for r in b["routes"]]


def test_budget_on_the_real_lines(runs: dict[str, Run]) -> None:
    """The timed-out /sleep/ route breaks max>1 (exit 1); a loose budget is kept (exit 0)."""
    path = str(runs["logfmt"].path)
    broken = subprocess.run(
        [sys.executable, "-m", "otel_canonical_logs", "report", path, "--fail-on", "max>1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 1 == broken.returncode
    assert "/sleep/: max>1" in broken.stdout
    kept = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_canonical_logs",
            "report",
            path,
            "--fail-on",
            "p99>60",
            "--route",
            "/ok/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == kept.returncode, kept.stdout + kept.stderr


# -- the page in a real browser ----------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
# What Chromium prints for every console message (console.error, a CSP violation, a failed load)
# with --enable-logging=stderr --v=0.
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit non-interlaced PNG (what Chromium
    writes), filters undone: no imaging library needed."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + size
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0) and colour in (2, 6), (depth, colour, interlace)
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[i] = (row[i] + best) & 0xFF
        rows.append(bytes(row[j] for k in range(0, stride, bpp) for j in range(k, k + 3)))
        previous = row
    return width, height, rows


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)"
)
def test_the_page_renders_in_chromium_without_console_messages(runs: dict[str, Run], tmp_path: Path) -> None:
    """The --html page of the real lines, in headless Chromium: no console message at all (no
    error, no blocked load), the charts in the DOM, and a screenshot with the charts' colours."""
    # The detector first: a page that logs an error and loads an image must be caught.
    control = tmp_path / "control.html"
    control.write_text(
        '<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="default-src \'none\'">'
        '<img src="http://127.0.0.1:9/x.png"><p>control</p>'
    )
    assert CONSOLE.search(_chromium(control.as_uri(), "--dump-dom").stderr), "console detector is blind"

    page = tmp_path / "report.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_canonical_logs",
            "report",
            str(runs["logfmt"].path),
            "--html",
            str(page),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr
    dom = _chromium(page.as_uri(), "--dump-dom")
    assert [] == CONSOLE.findall(dom.stderr)
    assert dom.stdout.count("<svg") >= 5, dom.stdout[:2000]
    for title in (
        "resp_time percentiles over time",
        "requests by status over time",
        "saturation: busy workers",
    ):
        assert title in dom.stdout
    assert "/n-plus-one/" in dom.stdout

    shot = tmp_path / "shot.png"
    taken = _chromium(page.as_uri(), f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars")
    assert [] == CONSOLE.findall(taken.stderr)
    width, height, rows = _pixels(shot.read_bytes())
    assert (1280, 900) == (width, height)
    colours: dict[bytes, int] = {}
    for row in rows[::2]:
        for x in range(0, len(row), 6):
            pixel = row[x : x + 3]
            colours[pixel] = colours.get(pixel, 0) + 1
    total = sum(colours.values())
    white = colours.get(b"\xff\xff\xff", 0)
    assert white < 0.97 * total, "the screenshot is blank"
    # The 2xx bars (#16a34a) and the p95 line (#dc2626) are drawn.
    assert colours.get(bytes.fromhex("16a34a"), 0) > 50
    assert colours.get(bytes.fromhex("dc2626"), 0) > 5
