"""`python -m bench profile`: py-spy on one configuration's worker under wrk, summarized.

Named profiling, not profile: `python bench/otlp_sink.py` runs with bench/ first on sys.path,
where a profile.py would hide the standard library's module of that name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from .common import BENCH, PY_SPY, ROOT, WORK
from .quiet import Quiet
from .results import versions_line, write_section
from .server import Server, Sink, ensure_wrk, prepare_db, run_wrk
from .setups import CONFIG_BY_KEY
from .venvs import dev_versions, ensure_venv, venv_requirements

# (substring of the full file name, package) - first match wins. Without --native, time in C
# code (sqlite3, socket writes) is charged to the Python frame that called it.
CATEGORIES = (
    ("/otel_canonical_logs/", "ours (otel_canonical_logs)"),
    ("/opentelemetry/sdk/trace/", "OTel SDK: trace"),
    ("/opentelemetry/sdk/_logs/", "OTel SDK: logs"),
    ("/opentelemetry/sdk/metrics/", "OTel SDK: metrics"),
    ("/opentelemetry/sdk/", "OTel SDK: other"),
    ("/opentelemetry/exporter/", "OTLP export (encode + HTTP)"),
    ("/opentelemetry/proto/", "OTLP export (encode + HTTP)"),
    ("/google/protobuf/", "OTLP export (encode + HTTP)"),
    ("/requests/", "OTLP export (encode + HTTP)"),
    ("/urllib3/", "OTLP export (encode + HTTP)"),
    ("/opentelemetry/instrumentation/", "OTel contrib instrumentors"),
    ("/opentelemetry/util/", "OTel contrib instrumentors"),
    ("/opentelemetry/semconv", "OTel contrib instrumentors"),
    ("/wrapt/", "OTel contrib instrumentors"),
    ("/opentelemetry/", "OTel API (context, trace API)"),
    ("/django/", "Django"),
    ("/gunicorn/", "Gunicorn"),
    ("/sqlite3/", "sqlite3 module"),
    ("/example/", "example app"),
    ("/gunicorn_django_canonical_logs/", "gunicorn-django-canonical-logs"),
)
INSTRUMENTATION = ("ours", "OTel", "OTLP", "gunicorn-django")


def category(frame: str) -> str:
    for needle, name in CATEGORIES:
        if needle in frame:
            return name
    return "Python stdlib / other"


def short(frame: str) -> str:
    """'func (/long/path/site-packages/pkg/mod.py)' -> 'func (pkg/mod.py)'."""
    name, _, path = frame.partition(" (")
    for marker in ("site-packages/", f"{ROOT}/src/", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}"


def summarize_profile(raw: Path, us_per_sample: float, top: int = 20) -> tuple[list[str], int]:
    """Collapsed py-spy stacks (--threads --full-filenames --nolineno) -> markdown tables."""
    per_thread: dict[str, int] = defaultdict(int)
    self_cat: dict[str, int] = defaultdict(int)
    incl: dict[str, int] = defaultdict(int)
    self_fn: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text(errors="replace").split("\n"):
        stack, _, count_s = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2 or not count_s.isdigit():
            continue  # --nonblocking can read a torn frame name now and then
        count = int(count_s)
        thread, frames = frames[0], frames[1:]  # --threads puts the thread first
        total += count
        per_thread[thread.split(": ", 1)[-1]] += count
        self_cat[category(frames[-1])] += count
        self_fn[frames[-1]] += count
        for f in set(frames):
            incl[f] += count

    def cells(n: int) -> str:
        return f"{100 * n / total:.1f}% | {n * us_per_sample:.0f}"

    out = ["| thread | share | ≈ µs/request |", "|---|---:|---:|"]
    for t, n in sorted(per_thread.items(), key=lambda kv: -kv[1]):
        out.append(f"| {t} | {cells(n)} |")
    out += ["", "| self time by package | share | ≈ µs/request |", "|---|---:|---:|"]
    for c, n in sorted(self_cat.items(), key=lambda kv: -kv[1]):
        out.append(f"| {c} | {cells(n)} |")
    instr = [(f, n) for f, n in incl.items() if category(f).startswith(INSTRUMENTATION)]
    out += [
        "",
        f"Instrumentation frames (ours, OTel, OTLP) by inclusive time, top {top}:",
        "",
        "| frame | package | inclusive | ≈ µs/request | self % |",
        "|---|---|---:|---:|---:|",
    ]
    for f, n in sorted(instr, key=lambda kv: -kv[1])[:top]:
        self_pct = 100 * self_fn.get(f, 0) / total
        out.append(f"| `{short(f)}` | {category(f)} | {cells(n)} | {self_pct:.1f}% |")
    out += [
        "",
        f"All frames by self time, top {top}:",
        "",
        "| frame | self | ≈ µs/request |",
        "|---|---:|---:|",
    ]
    for f, n in sorted(self_fn.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"| `{short(f)}` | {cells(n)} |")
    return out, total


def cmd_profile(args: argparse.Namespace) -> int:
    wrk = ensure_wrk()
    versions = dev_versions()
    reqs = venv_requirements(versions)
    config = CONFIG_BY_KEY[args.config]
    needed = {"tools"} | ({config.venv} - {"dev"})
    bins = {name: ensure_venv(name, reqs[name]) for name in needed}
    prepare_db()
    quiet = Quiet()
    quiet.wait()
    notes = quiet.notes()
    sink = Sink() if config.uses_sink else None
    WORK.mkdir(parents=True, exist_ok=True)
    slug = f"{config.key}-{args.path.strip('/').replace('/', '_') or 'root'}"
    raw = WORK / f"profile-{slug}.txt"
    svg = BENCH / (args.svg or f"profile-{slug}.svg")
    try:
        server = Server(config, bins, sink)
        try:
            worker = server.worker_pid()
            url = server.url(args.path)
            run_wrk(wrk, url, 2)
            # Load for the whole profile window (two py-spy runs: raw stacks, then the flame graph).
            load = subprocess.Popen(
                [wrk, "-t1", "-c1", f"-d{2 * args.seconds + 8:g}s", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                time.sleep(1)
                spy = [
                    bins["tools"] / "py-spy",
                    "record",
                    "--pid",
                    str(worker),
                    "--duration",
                    str(args.seconds),
                    "--rate",
                    str(args.rate),
                    "--nonblocking",
                ]
                subprocess.run(
                    [*spy, "--threads", "--nolineno", "--full-filenames", "--format", "raw", "-o", raw],
                    check=True,
                    capture_output=True,
                    timeout=args.seconds + 60,
                )
                subprocess.run(
                    [*spy, "--format", "flamegraph", "-o", svg],
                    check=True,
                    capture_output=True,
                    timeout=args.seconds + 60,
                )
            finally:
                load_out, _ = load.communicate(timeout=2 * args.seconds + 60)
            match = re.search(r"Requests/sec:\s+([\d.]+)", load_out)
            load_rps = float(match.group(1)) if match else float("nan")
        finally:
            server.stop()
    finally:
        if sink:
            sink.stop()
    # A sample stands for 1/rate s of thread time; spread over the requests served meanwhile.
    us_per_sample = 1e6 / args.rate / (load_rps * args.seconds)
    table, total = summarize_profile(raw, us_per_sample)
    out = [f"## Profile: {config.key} on `{args.path}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"]
    out.append(
        f"- command: `python -m bench profile --config {config.key} --path {args.path} "
        f"--seconds {args.seconds}`; py-spy {PY_SPY.split('==')[1]} at {args.rate} Hz on the "
        f"worker (idle samples excluded, `--nonblocking`) under `wrk -t1 -c1` "
        f"({load_rps:.0f} req/s while sampled); {total} samples"
    )
    out.append(f"- flame graph: `bench/{svg.name}`; raw stacks: `bench/.work/{raw.name}`")
    out.append(versions_line(versions, None))
    for note in notes:
        out.append(f"- note: {note}")
    out.append("")
    out.extend(table)
    body = "\n".join(out) + "\n"
    print(body)
    write_section(f"profile-{slug}", body)
    return 0
