"""Benchmark driver for otel-canonical-logs: `make bench`, `make bench-memory`, and profiling.

    python -m bench bench     [--rounds 4] [--duration 5] [--warmup 1] [--configs a,b,...] [--no-write]
    python -m bench memory    [--requests 100000] [--warmup-requests 2000]
    python -m bench profile   [--config ours-full] [--path /db/] [--seconds 10]
    python -m bench instructions [--configs a,b,...] [--endpoints /ok/,...] [--requests 100]
                                 [--src TREE] [--compare-src OLD_TREE] [--no-write]

Run from the repository root; the package docstring (bench/__init__.py) describes the method.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .common import ENDPOINTS
from .instructions import cmd_instructions
from .memory import cmd_memory
from .profiling import cmd_profile
from .setups import CONFIGS
from .wallclock import cmd_bench


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="all configurations side by side (make bench)")
    bench.add_argument("--rounds", type=int, default=4)
    bench.add_argument("--duration", type=int, default=5, help="measured seconds per endpoint")
    bench.add_argument("--warmup", type=int, default=1, help="warm-up seconds per endpoint")
    bench.add_argument(
        "--configs", help="comma-separated keys (default: all): " + ",".join(c.key for c in CONFIGS)
    )
    bench.add_argument("--no-write", action="store_true", help="print the results, leave RESULTS.md alone")
    memory = sub.add_parser("memory", help="worker RSS over 100,000 /db/ requests (make bench-memory)")
    memory.add_argument("--requests", type=int, default=100_000)
    memory.add_argument("--warmup-requests", type=int, default=2_000)
    memory.add_argument(
        "--config",
        default="ours-full",
        choices=[c.key for c in CONFIGS],
        help="ours-full-10: 90%% unsampled, every /db/ trace kept (its N+1)",
    )
    profile = sub.add_parser("profile", help="py-spy profile of one configuration's worker under load")
    profile.add_argument("--config", default="ours-full", choices=[c.key for c in CONFIGS])
    profile.add_argument("--path", default="/db/")
    profile.add_argument("--seconds", type=int, default=10)
    profile.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    profile.add_argument(
        "--svg", help="flame graph file name under bench/ (default profile-<config>-<path>.svg)"
    )
    instr = sub.add_parser(
        "instructions",
        help="instructions per request under callgrind, every configuration (make bench-instructions)",
        description="Instructions per request of each configuration's worker, counted by callgrind "
        "(see bench/instructions.py).",
    )
    instr.add_argument(
        "--configs", help="comma-separated keys (default: all): " + ",".join(c.key for c in CONFIGS)
    )
    instr.add_argument("--endpoints", help="comma-separated (default: all): " + ",".join(ENDPOINTS))
    instr.add_argument("--requests", type=int, default=100, help="measured requests per endpoint")
    instr.add_argument("--warmup", type=int, default=30, help="warm-up requests per endpoint")
    instr.add_argument(
        "--settle",
        type=float,
        default=10,
        help="configurations that export: seconds without an export before each dump",
    )
    instr.add_argument(
        "--idle", type=float, default=10, help="seconds of the idle measurement per server (0: skip it)"
    )
    instr.add_argument(
        "--repeat", type=int, default=1, help="runs of every measurement (tables: medians and spread)"
    )
    instr.add_argument(
        "--src", help="a checkout whose src/ the ours-* configurations run (default: this tree)"
    )
    instr.add_argument(
        "--compare-src",
        metavar="OLD_CHECKOUT",
        help="also measure this checkout's src/ as 'before' (--src or this tree is 'after') and compare",
    )
    instr.add_argument(
        "--json", help="raw figures to this file (default bench/.work/instructions-<time>.json)"
    )
    instr.add_argument(
        "--section", help="RESULTS.md section name (default: instructions, or instructions-compare)"
    )
    instr.add_argument("--no-write", action="store_true", help="print the results, leave RESULTS.md alone")
    args = parser.parse_args()
    # A SIGTERM (timeout, make interrupted) unwinds through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    commands = {
        "bench": cmd_bench,
        "memory": cmd_memory,
        "profile": cmd_profile,
        "instructions": cmd_instructions,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
