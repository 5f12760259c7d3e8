"""How fast and how big ``canonical-logs report`` is on a day of one busy worker's lines.

    python -m bench.report_speed generate FILE [--lines 1000000] [--hours 24] [--seed 1]
    python -m bench.report_speed time FILE [--runs 3]
    python -m bench.report_speed parsers FILE

``parsers`` times the PyPI logfmt parsers that are installed (``logfmt``, ``logfmtkv``; neither is
a dependency: ``pip install logfmt logfmtkv`` for this) against the report's own on the file's
first 2,000 canonical lines, and checks that they read the same pairs.

``generate`` writes lines with the project's own encoder (sinks/logfmt.py): request lines over
eight routes (an N+1 view, errors, 404s, a few timeouts and stuck requests), a saturation event
every 10 s, a Gunicorn line now and then, each with the RFC 3339 timestamp `docker logs -t` puts
in front. ``time`` runs the report on it (``python -m otel_canonical_logs report FILE``, output
discarded) and prints wall time and peak RSS of each run and their medians.
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otel_canonical_logs.sinks.logfmt import encode

START = datetime(2026, 11, 27, 0, 0, tzinfo=UTC).timestamp()
ROUTES: list[tuple[str, str, str, float, float, int]] = [
    # route, path example, view, weight, median seconds, queries
    ("/books/", "/books/", "shop.views.book_list", 30, 0.012, 3),
    ("/books/<int:pk>/", "/books/{n}/", "shop.views.book_detail", 25, 0.008, 2),
    ("/n-plus-one/", "/n-plus-one/", "shop.views.n_plus_one", 8, 0.045, 21),
    ("/api/cart/", "/api/cart/", "shop.api_views.cart", 15, 0.015, 4),
    ("/api/checkout/", "/api/checkout/", "shop.api_views.checkout", 5, 0.090, 9),
    ("/search/", "/search/", "shop.views.search", 10, 0.060, 1),
    ("/slow-query/", "/slow-query/", "shop.views.slow_query", 1, 0.800, 1),
    ("/boom/", "/boom/", "shop.views.boom", 1, 0.004, 0),
]
AUTHOR_SQL = 'SELECT "shop_author"."id", "shop_author"."name" FROM "shop_author" WHERE "shop_author"."id"'
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "python-requests/2.32"]


def _stamp(t: float) -> str:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(t * 1e9) % 1_000_000_000:09d}Z"


def _request(rng: random.Random, t: float, period: float) -> dict[str, Any]:
    route, path, view, _, median, queries = rng.choices(ROUTES, weights=[r[3] for r in ROUTES])[0]
    load = 1.5 + 0.5 * math.sin((t - START) / period * 6.283)
    resp_time = rng.lognormvariate(0, 0.6) * median * load
    status = 200
    event: dict[str, Any] = {
        "event_type": "request",
        "req_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "trace_sampled": rng.random() < 0.1,
        "req_method": "POST" if "checkout" in route else "GET",
        "req_path": path.format(n=rng.randint(1, 5000)),
        "req_route": route,
        "req_user_agent": rng.choice(AGENTS),
        "resp_view": view,
        "resp_status": status,
        "resp_time": resp_time,
        "resp_cpu_time": resp_time * 0.4,
        "resp_bytes": rng.randint(200, 40000),
    }
    if queries:
        n = queries + (rng.randint(0, 30) if "n-plus-one" in route else 0)
        event["db_queries"] = n
        event["db_time"] = resp_time * 0.5
    if "n-plus-one" in route:
        run = event["db_queries"] - 1
        event.update(
            db_dup_queries=run,
            db_dup_time=resp_time * 0.4,
            db_dup_sql=AUTHOR_SQL + " = %s LIMIT 21",
            db_dup_loc="shop/views.py:40:n_plus_one",
            db_n1_queries=run,
            db_n1_time=resp_time * 0.4,
            db_n1_sql=AUTHOR_SQL + " = ?",
            db_n1_loc="shop/views.py:40:n_plus_one",
        )
    event["tmpl_renders"] = 1
    event["tmpl_time"] = resp_time * 0.1
    roll = rng.random()
    if "boom" in route or roll < 0.004:
        event["resp_status"] = 500
        event["exc_type"] = "ZeroDivisionError" if "boom" in route else "OperationalError"
        event["exc_msg"] = "division by zero" if "boom" in route else "database is locked"
        event["exc_loc"] = "shop/views.py:77:boom" if "boom" in route else "shop/api_views.py:31:checkout"
    elif roll < 0.03:
        event["resp_status"] = 404
    elif roll < 0.06:
        event["resp_status"] = 302
    event.update(g_w_count=4, g_w_active=rng.randint(1, 4), g_backlog=0)
    if "slow-query" in route and rng.random() < 0.05:
        event["event_type"] = "timeout"
        event.pop("resp_status")
        event["resp_time"] = 30.0
        event.update(
            timeout_loc="shop/views.py:108:slow_query",
            timeout_cause_loc="shop/views.py:108:slow_query",
            timeout_span="SELECT pg_sleep(%s)",
        )
    return event


def generate(path: Path, lines: int, seed: int, hours: float = 24) -> None:
    rng = random.Random(seed)
    step = hours * 3600 / lines
    next_saturation = START + 10
    t = START
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            t += step
            if t >= next_saturation:
                load = 2 + 1.5 * math.sin((t - START) / (hours * 3600) * 6.283)
                sat = {
                    "event_type": "saturation",
                    "g_w_count": 4,
                    "g_w_active": round(min(4.0, rng.uniform(0.5, 1.2) * load), 3),
                    "g_w_active_max": min(4, round(load + rng.random())),
                    "g_backlog": max(0, round((load - 3.2) * 20 * rng.random())),
                    "g_mem_mib": 310 + rng.random() * 20,
                    "g_w_mem_max_mib": 70 + rng.random() * 5,
                    "g_requests": round(10 / step),
                    "g_timeouts": 0,
                    "g_restarts": 0,
                }
                out.write(f"{_stamp(t)} {encode(sat)}")
                next_saturation += 10
                continue
            if i % 5000 == 0:
                out.write(
                    f"{_stamp(t)} [2026-11-27 00:00:00 +0000] [42] [INFO] Booting worker with pid: 42\n"
                )
                continue
            out.write(f"{_stamp(t)} {encode(_request(rng, t, hours * 3600))}")


def time_runs(path: Path, runs: int) -> None:
    walls, peaks = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "otel_canonical_logs", "report", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        # ru_maxrss of the children is the largest child so far; each run is measured on its own
        # by /usr/bin/time in the README's command, this is the same figure when runs are alike.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        walls.append(wall)
        peaks.append(max(peak, before) / 1024)
        print(f"run: {wall:.2f} s, peak RSS so far {peaks[-1]:.0f} MiB", flush=True)
    print(f"median of {runs}: {statistics.median(walls):.2f} s; peak RSS {max(peaks):.0f} MiB")


def parsers(path: Path) -> None:
    import importlib
    import importlib.metadata
    import timeit

    from otel_canonical_logs.report.parse import parse_logfmt

    lines = []
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            at = line.find('event_type="')
            if at >= 0:
                lines.append(line[at:].rstrip("\n"))
            if len(lines) == 2000:
                break
    plain = [line for line in lines if "\\" not in line]
    escaped = [line for line in lines if "\\" in line]
    known: set[str] = set()  # the keys seen, as the report's reader keeps them
    candidates: dict[str, Any] = {"ours (report/parse.py)": lambda x: parse_logfmt(x, known)}
    for name, call in (
        ("logfmt", lambda m: lambda x: next(iter(m.parse([x])))),
        ("logfmtkv", lambda m: m.parse),
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:
            print(f"{name}: not installed")
            continue
        candidates[f"{name} {importlib.metadata.version(name)}"] = call(module)
    reference = [parse_logfmt(line) for line in lines]
    size = sum(map(len, lines)) / len(lines)
    print(f"{len(lines)} lines ({len(escaped)} with escapes), {size:.0f} characters each")
    for name, parse in candidates.items():
        assert [dict(parse(line)) for line in lines[:500]] == reference[:500], name
        for label, sample in (("all", lines), ("no escape", plain), ("escapes", escaped)):
            if not sample:
                continue
            best = min(timeit.repeat(lambda s=sample, p=parse: [p(x) for x in s], number=1, repeat=5))
            print(f"{name:<24} {label:<10} {best / len(sample) * 1e6:6.1f} µs a line")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report_speed", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("file", type=Path)
    gen.add_argument("--lines", type=int, default=1_000_000)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--hours", type=float, default=24.0, help="the time the lines span")
    timing = sub.add_parser("time")
    timing.add_argument("file", type=Path)
    timing.add_argument("--runs", type=int, default=3)
    sub.add_parser("parsers").add_argument("file", type=Path)
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.file, args.lines, args.seed, args.hours)
    elif args.command == "parsers":
        parsers(args.file)
    else:
        time_runs(args.file, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
