"""bench/RESULTS.md: its sections, and the rendering of `make bench`'s."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

from .common import DB_QUERIES, ENDPOINTS, ORIGINAL, RESULTS, ROOT, log
from .setups import ASGI_APP, UVICORN_WORKER

ASGI_LABEL = "ASGI (uvicorn_worker.UvicornWorker)"


def machine_lines() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return [
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), `{cpu}`, "
        f"{mem_kib / 1048576:.1f} GiB RAM, {platform.system()} {platform.release()}",
    ]


def versions_line(versions: dict[str, str], wrk: str | None) -> str:
    wrk_version = "n/a"
    if wrk:
        probe = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        wrk_version = (probe.stdout + probe.stderr).split("\n", 1)[0].split(" [")[0]
    return (
        f"- versions: Python {platform.python_version()}, Django {versions['django']}, "
        f"Gunicorn {versions['gunicorn']}, OTel SDK {versions['opentelemetry-sdk']}, "
        f"OTel contrib {versions['opentelemetry-instrumentation']}, "
        f"otel-canonical-logs {versions['otel-canonical-logs']} (editable, this tree), "
        f"{ORIGINAL}, {wrk_version}"
    )


def command_line(default: str) -> str:
    return default if os.environ.get("MAKELEVEL") else "python -m " + " ".join(["bench", *sys.argv[1:]])


# -- RESULTS.md --------------------------------------------------------------------------------

RESULTS_HEADER = """# Benchmark results

Written by `python -m bench` (`make bench`, `make bench-memory`, `make bench-instructions`,
`python -m bench profile`); each run replaces its own section between the markers. Text outside
the markers is kept.
"""


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else RESULTS_HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    log(f"wrote the {name} section of {RESULTS.relative_to(ROOT)}")


def overhead_us(rps: float, bare_rps: float) -> float:
    return 1e6 / rps - 1e6 / bare_rps


def render_bench(args, configs, versions, wrk, started, elapsed, rps, sent, lines, exports, errors, notes):
    med = {c.key: {p: statistics.median(rps[c.key][p]) for p in ENDPOINTS} for c in configs}
    ovh = {c.key: {p: overhead_us(med[c.key][p], med[c.baseline][p]) for p in ENDPOINTS} for c in configs}
    per_query = {c.key: (ovh[c.key]["/db/"] - ovh[c.key]["/ok/"]) / DB_QUERIES for c in configs}
    wsgi = [c for c in configs if not c.asgi]
    asgi = [c for c in configs if c.asgi]
    out: list[str] = []
    out.append(f"## `make bench` — {started:%Y-%m-%d %H:%M} UTC\n")
    out.append(f"- command: `{command_line('make bench')}` ({elapsed / 60:.1f} min)")
    out.extend(machine_lines())
    out.append(versions_line(versions, wrk))
    worker = "one `sync` Gunicorn worker per configuration"
    if asgi:
        worker += f" (ASGI: one `{UVICORN_WORKER}`)"
    against = " (ASGI pair: rps(bare-asgi) instead)" if asgi else ""
    out.append(
        f"- method: {worker} on 127.0.0.1 (SQLite, `DEBUG` off, "
        f"stdout to a file), `wrk -t1 -c1 -d{args.duration:g}s` per endpoint after a "
        f"{args.warmup:g} s warm-up; each configuration restarted every round, order rotated; "
        f"{args.rounds} rounds; medians. Overhead = 1e6/rps - 1e6/rps(bare){against}, µs per request."
    )
    for note in notes:
        out.append(f"- note: {note}")
    if wsgi:
        out.append("")
        out.extend(bench_table(wsgi, "bare", rps, med, ovh, per_query))
    if asgi:
        out.append("")
        out.append(f"### {ASGI_LABEL}\n")
        loop = "uvloop" if versions.get("uvloop") else "asyncio"
        http = "httptools" if versions.get("httptools") else "h11"
        out.append(
            f"`{ASGI_APP}` (example/mysite/asgi.py) under one `{UVICORN_WORKER}` "
            f"(uvicorn {versions['uvicorn']}, uvicorn-worker {versions['uvicorn-worker']}; "
            f"{loop} event loop, {http} HTTP parser), otherwise as above; Django runs the sync views "
            "in its thread-sensitive executor. Overhead is over bare-asgi, the same app and worker "
            "without instrumentation, not over bare WSGI.\n"
        )
        out.extend(bench_table(asgi, "bare-asgi", rps, med, ovh, per_query))
        if "bare" in med and "bare-asgi" in med:
            cost = [f"`{p}` {overhead_us(med['bare-asgi'][p], med['bare'][p]):+.0f}" for p in ENDPOINTS]
            out.append("")
            out.append(
                "For scale only (not part of the overheads above): bare-asgi over bare (WSGI, `sync`), "
                "µs per request: " + ", ".join(cost) + "."
            )
    out.append("")
    out.append(
        "req/s cells: median (min-max over rounds). Per extra query = (overhead on `/db/` - overhead "
        f"on `/ok/`) / {DB_QUERIES}: `/db/` runs {DB_QUERIES} queries and `/ok/` none, so this is "
        "what each query adds to a request; it also carries the once-per-request cost of the DB "
        "connection (Django's default `CONN_MAX_AGE=0` opens and instruments a new SQLite "
        "connection in every request that queries)."
    )
    if wsgi:
        out.append("")
        out.append("### Targets (issue 6)\n")
        out.extend(render_targets(ovh, {c.key for c in configs}))
    out.append("")
    out.append("### Checks\n")
    out.append("| configuration | requests sent | stdout lines | errors (non-2xx + socket) | OTLP received |")
    out.append("|---|---:|---:|---:|---|")
    for c in configs:
        got = exports.get(c.key, {})
        parts = []
        for path in sorted(got):
            counts = got[path]
            if not counts.get("requests"):
                continue
            item = next((k for k in ("spans", "log_records", "data_points") if k in counts), None)
            detail = f", {counts[item]} {item}" if item else ""
            parts.append(
                f"`{path}` {counts.get('requests', 0)} POSTs, {counts.get('bytes', 0) / 1024:.0f} KiB{detail}"
            )
        out.append(
            f"| {c.key} | {sent[c.key]} | {lines[c.key]} | {errors[c.key]} | "
            + ("; ".join(parts) if parts else "—")
            + " |"
        )
    out.append("")
    out.append(
        "stdout lines: canonical lines written (ours: one per request; the original writes its "
        "line through Gunicorn's access log). Every request — `/ok/` readiness probes, warm-up and "
        "load — is counted in 'requests sent'. Server logs: `bench/.work/logs/`."
    )
    return "\n".join(out) + "\n"


def bench_table(configs, baseline, rps, med, ovh, per_query) -> list[str]:
    """req/s and µs over `baseline` for these configurations, one row each."""
    rows = [
        "| configuration | "
        + " | ".join(f"{p} req/s" for p in ENDPOINTS)
        + " | "
        + " | ".join(f"{p} µs over {baseline}" for p in ENDPOINTS)
        + " | µs per extra query |",
        "|---|" + "---:|" * (2 * len(ENDPOINTS) + 1),
    ]
    for c in configs:
        cells = []
        for p in ENDPOINTS:
            values = rps[c.key][p]
            cells.append(f"{med[c.key][p]:.0f} ({min(values):.0f}-{max(values):.0f})")
        over = ["—" if c.key == baseline else f"{ovh[c.key][p]:+.0f}" for p in ENDPOINTS]
        pq = "—" if c.key == baseline else f"{per_query[c.key]:+.1f}"
        rows.append(f"| {c.key}: {c.label} | " + " | ".join(cells) + " | " + " | ".join(over) + f" | {pq} |")
    return rows


def render_targets(ovh: dict[str, dict[str, float]], have: set[str]) -> list[str]:
    rows = ["| target | measured | verdict |", "|---|---|---|"]

    def row(name: str, needed: set[str], measure) -> None:
        if not needed <= have:
            rows.append(f"| {name} | not measured in this run | — |")
            return
        text, ok = measure()
        rows.append(f"| {name} | {text} | {'PASS' if ok else 'FAIL'} |")

    row(
        "`/ok/`, ours full (100%) ≤ ½ x original",
        {"ours-full", "original"},
        lambda: (
            f"{ovh['ours-full']['/ok/']:+.0f} µs vs ½ x {ovh['original']['/ok/']:+.0f} = "
            f"{ovh['original']['/ok/'] / 2:+.0f} µs",
            ovh["ours-full"]["/ok/"] <= ovh["original"]["/ok/"] / 2,
        ),
    )
    row(
        "`/db/`, ours full (100%) ≤ plain OTel exporting traces",
        {"ours-full", "otel-otlp"},
        lambda: (
            f"{ovh['ours-full']['/db/']:+.0f} µs vs {ovh['otel-otlp']['/db/']:+.0f} µs",
            ovh["ours-full"]["/db/"] <= ovh["otel-otlp"]["/db/"],
        ),
    )
    row(
        "`/db/`, ours full at 10% sampling ≤ original",
        {"ours-full-10", "original"},
        lambda: (
            f"{ovh['ours-full-10']['/db/']:+.0f} µs vs {ovh['original']['/db/']:+.0f} µs",
            ovh["ours-full-10"]["/db/"] <= ovh["original"]["/db/"],
        ),
    )

    def aggregation() -> tuple[str, bool]:
        parts, ok = [], True
        for p in ENDPOINTS:
            mine, theirs = ovh["ours-none"][p], ovh["otel-none"][p]
            ok = ok and mine <= theirs * 1.10
            extra = (mine / theirs - 1) * 100 if theirs > 0 else 0.0
            parts.append(f"`{p}` {mine:+.0f} vs {theirs:+.0f} µs ({extra:+.0f}%)")
        return "; ".join(parts), ok

    row(
        "aggregation: ours none ≤ 1.10 x plain OTel none (each endpoint)",
        {"ours-none", "otel-none"},
        aggregation,
    )
    rows.append(
        "| worker RSS growth over 100,000 `/db/` requests < 2 MiB | see the `make bench-memory` section | — |"
    )
    return rows
