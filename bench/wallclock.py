"""`make bench`: every configuration under wrk, side by side, in rotated rounds."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import defaultdict

from .common import ENDPOINTS, log
from .quiet import FOREIGN_LIMIT, Quiet
from .results import render_bench, write_section
from .server import Server, Sink, clear_logs, ensure_wrk, prepare_db, run_wrk, stats_delta
from .setups import CONFIG_BY_KEY, CONFIGS
from .venvs import prepare_venvs


def cmd_bench(args: argparse.Namespace) -> int:
    keys = args.configs.split(",") if args.configs else [c.key for c in CONFIGS]
    unknown = [k for k in keys if k not in CONFIG_BY_KEY]
    if unknown:
        sys.exit(f"--configs: unknown: {unknown}")
    configs = [CONFIG_BY_KEY[k] for k in keys]
    baselines = sorted({c.baseline for c in configs} - set(keys))
    if baselines:
        sys.exit(f"--configs must include the configurations the others are measured against: {baselines}")
    started = dt.datetime.now(dt.UTC)
    wrk = ensure_wrk()
    versions, bins = prepare_venvs(configs)
    prepare_db()
    clear_logs()
    quiet = Quiet()
    rps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    sent: dict[str, int] = defaultdict(int)
    lines: dict[str, int] = defaultdict(int)
    exports: dict[str, dict[str, dict[str, int]]] = {}
    errors: dict[str, int] = defaultdict(int)
    sink = Sink() if any(c.uses_sink for c in configs) else None
    log(
        f"{len(configs)} configurations x {len(ENDPOINTS)} endpoints x {args.rounds} rounds, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s each" + (f"; OTLP sink {sink.url}" if sink else "")
    )
    try:
        for rnd in range(args.rounds):
            shift = rnd % len(configs)
            for config in configs[shift:] + configs[:shift]:
                quiet.wait()
                before = sink.stats() if sink and config.uses_sink else None
                server = Server(config, bins, sink)
                try:
                    for path in ENDPOINTS:
                        for attempt in range(3):
                            quiet.wait()
                            warm = run_wrk(wrk, server.url(path), args.warmup)
                            quiet.begin()
                            result = run_wrk(wrk, server.url(path), args.duration)
                            foreign = quiet.end()
                            server.requests += warm.requests + result.requests
                            errors[config.key] += warm.errors + result.errors
                            if foreign <= FOREIGN_LIMIT:
                                break
                            if attempt == 2:
                                quiet.accepted_noisy.append(f"{config.key} {path} ({foreign:.0%} of a CPU)")
                                break
                            quiet.remeasured += 1
                            log(f"{config.key} {path}: other processes used {foreign:.0%} of a CPU; again")
                        rps[config.key][path].append(result.rps)
                        log(f"round {rnd + 1}/{args.rounds} {config.key:14} {path:6} {result.rps:8.1f} req/s")
                finally:
                    server.stop()
                sent[config.key] += server.requests
                lines[config.key] += server.lines_written()
                if sink and before is not None:
                    delta = stats_delta(sink.stats(), before)
                    total = exports.setdefault(config.key, {})
                    for p, counts in delta.items():
                        for k, v in counts.items():
                            total.setdefault(p, {}).setdefault(k, 0)
                            total[p][k] += v
    finally:
        sink_totals = sink.stop() if sink else ""
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    body = render_bench(
        args, configs, versions, wrk, started, elapsed, rps, sent, lines, exports, errors, quiet.notes()
    )
    if sink_totals:
        log(sink_totals.strip().splitlines()[-1])
    print(body)
    if not args.no_write:
        write_section("bench", body)
    return 0
