"""`make bench-memory`: worker RSS of ours (full export) over 100,000 /db/ requests."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from pathlib import Path

from .common import log
from .quiet import Quiet
from .results import command_line, machine_lines, versions_line, write_section
from .server import Server, Sink, ensure_wrk, load_until, prepare_db
from .setups import CONFIG_BY_KEY
from .venvs import dev_versions


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1))


def cmd_memory(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    wrk = ensure_wrk()
    versions = dev_versions()
    prepare_db()
    quiet = Quiet()
    quiet.wait()
    notes = quiet.notes()
    config = CONFIG_BY_KEY[args.config]
    sink = Sink()
    url_path = "/db/"
    samples: list[tuple[int, int]] = []
    try:
        server = Server(config, {}, sink)
        try:
            worker = server.worker_pid()
            url = server.url(url_path)
            warm, rate = load_until(wrk, url, args.warmup_requests, 5, 200)
            log(f"warm-up: {warm} requests, worker {worker} RSS {rss_kib(worker)} KiB")
            time.sleep(6)  # let the batch processors drain their queues
            samples.append((0, rss_kib(worker)))
            total = 0
            step = max(1, args.requests // 5)
            while total < args.requests:
                n, rate = load_until(wrk, url, min(step, args.requests - total), 60, rate)
                total += n
                samples.append((total, rss_kib(worker)))
                log(f"{total} requests: RSS {samples[-1][1]} KiB ({rate:.0f} req/s)")
            time.sleep(6)
            samples.append((total, rss_kib(worker)))
            if server.proc.poll() is not None or server.worker_pid() != worker:
                notes.append("the worker was replaced during the run: RSS figures are not comparable")
        finally:
            server.stop()
        lines = server.lines_written()
    finally:
        sink_out = sink.stop()
    growth = samples[-1][1] - samples[0][1]
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    out = [f"## `make bench-memory` — {started:%Y-%m-%d %H:%M} UTC\n"]
    out.append(f"- command: `{command_line('make bench-memory')}` ({elapsed / 60:.1f} min)")
    out.extend(machine_lines())
    out.append(versions_line(versions, wrk))
    out.append(
        f"- configuration: {config.key} ({config.label}: traces and canonical logs over OTLP/HTTP to "
        f"the local sink, stdout to a file); one sync worker; `wrk -t1 -c1` on `{url_path}` in timed "
        f"chunks; {warm} warm-up requests, then RSS (VmRSS of the worker, /proc/<pid>/status) "
        "after each chunk; the first and last samples are taken after a 6 s pause so the batch "
        "processors have drained."
    )
    for note in notes:
        out.append(f"- note: {note}")
    out.append("")
    out.append("| requests after warm-up | worker VmRSS KiB | Δ KiB |")
    out.append("|---:|---:|---:|")
    for n, kib in samples:
        out.append(f"| {n} | {kib} | {kib - samples[0][1]:+d} |")
    out.append("")
    verdict = "PASS" if growth < 2048 else "FAIL"
    out.append(
        f"**Target: worker RSS grows by less than 2 MiB over 100,000 requests — measured "
        f"{growth / 1024:+.2f} MiB over {samples[-1][0]} requests: {verdict}.** "
        f"{lines} canonical lines written; sink: `{sink_out.strip().splitlines()[-1]}`"
    )
    body = "\n".join(out) + "\n"
    print(body)
    write_section("memory" if args.config == "ours-full" else f"memory-{args.config}", body)
    return 0 if verdict == "PASS" else 1
