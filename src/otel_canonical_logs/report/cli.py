"""``canonical-logs report``: the command line (the report's libraries are imported only here, so
that a missing ``report`` extra is one clear sentence)."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import IO, Any

from .parse import Counts, Record, open_input, read

INSTALL_HINT = (
    "canonical-logs report needs the report extra (ddsketch, rich): pip install 'otel-canonical-logs[report]'"
)
EXIT_OK, EXIT_BUDGET, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _moment(text: str) -> float:
    """``--since``/``--until``: ISO 8601 (UTC unless it says otherwise) or Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time or Unix seconds: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _statuses(text: str) -> list[tuple[int, int] | str]:
    """``500``, ``5xx``, ``500-599`` or ``timeout``, comma-separated."""
    specs: list[tuple[int, int] | str] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "timeout":
            specs.append(part)
        elif len(part) == 3 and part[0].isdigit() and part[1:] == "xx":
            specs.append((int(part[0]) * 100, int(part[0]) * 100 + 99))
        elif "-" in part:
            low, _, high = part.partition("-")
            if not (low.isdigit() and high.isdigit()):
                raise argparse.ArgumentTypeError(f"not a status range: {part!r}")
            specs.append((int(low), int(high)))
        elif part.isdigit():
            specs.append((int(part), int(part)))
        else:
            raise argparse.ArgumentTypeError(f"not a status, class (5xx), range or 'timeout': {part!r}")
    return specs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="canonical-logs report",
        description=(
            "Summarise canonical log lines (logfmt or JSON, among any other log lines): per route "
            "latency, errors, queries and N+1 loops, exceptions, timeouts, saturation."
        ),
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="log files (.gz too); none or - for stdin")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")
    p.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="the summary as JSON on stdout (or into FILE)"
    )
    p.add_argument("--since", type=_moment, help="only records at or after this time (needs timestamps)")
    p.add_argument("--until", type=_moment, help="only records before this time (needs timestamps)")
    p.add_argument("--route", action="append", metavar="PATTERN", help="only these routes (glob; repeatable)")
    p.add_argument(
        "--status", type=_statuses, metavar="SPEC", help="only these statuses: 500, 5xx, 500-599, timeout"
    )
    p.add_argument(
        "--compare",
        metavar="BASELINE",
        help="per-route deltas against a baseline (log file or --json output)",
    )
    p.add_argument(
        "--fail-on", metavar="BUDGETS", help="exit 1 when a route breaks one: 'p95>0.5,db_queries>30'"
    )
    p.add_argument(
        "--min-count", type=int, default=1, help="--fail-on ignores routes with fewer requests (1)"
    )
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="terminal colour")
    return p


def _filter(
    records: Iterable[tuple[float | None, Record]],
    args: argparse.Namespace,
    dropped: list[int],
    route_of: Any,
) -> Iterator[tuple[float | None, Record]]:
    since, until, routes, statuses = args.since, args.until, args.route, args.status
    for stamp, fields in records:
        if (since is not None or until is not None) and (
            stamp is None or (since is not None and stamp < since) or (until is not None and stamp >= until)
        ):
            dropped[0] += 1
            continue
        if fields.get("event_type") != "saturation":
            if routes and not any(fnmatch.fnmatchcase(route_of(fields), pattern) for pattern in routes):
                dropped[0] += 1
                continue
            if statuses and not _status_matches(fields, statuses):
                dropped[0] += 1
                continue
        yield stamp, fields


def _status_matches(fields: Record, specs: list[tuple[int, int] | str]) -> bool:
    if fields.get("event_type") == "timeout":
        return "timeout" in specs
    try:
        status = int(fields.get("resp_status"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return any(not isinstance(s, str) and s[0] <= status <= s[1] for s in specs)


def _streams(names: list[str], stack: ExitStack) -> Iterator[IO[str]]:
    for name in names:
        try:
            stream = open_input(name)
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        yield stack.enter_context(stream) if name != "-" else stream


def summarise(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Read the inputs through the filters into the summary dict."""
    from .aggregate import Aggregate
    from .summary import build

    agg = Aggregate()
    counts = Counts()
    dropped = [0]
    with ExitStack() as stack:
        records = read(_streams(names, stack), counts)
        agg.add_all(_filter(records, args, dropped, agg.route_of))
    filters: dict[str, Any] = {
        "since": args.since,
        "until": args.until,
        "route": args.route,
        "status": [list(s) if isinstance(s, tuple) else s for s in args.status] if args.status else None,
        "filtered_out": dropped[0],
    }
    return build(agg, counts, filters, names)


def _baseline(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """An earlier ``--json`` summary as it is, or a log file summarised with the same filters."""
    try:
        with open_input(name) as stream:
            head = stream.read(64)
            if head.lstrip().startswith('{"report"') or head.lstrip().startswith('{\n  "report"'):
                loaded: dict[str, Any] = json.loads(head + stream.read())
                return loaded
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    except ValueError:
        raise UsageError(f"{name} starts like a --json summary but is not one") from None
    return summarise([name], args)


def run(argv: list[str], stdout: IO[str]) -> int:
    args = parser().parse_args(argv)
    try:
        import ddsketch  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return EXIT_USAGE
    from . import budget

    rules = None
    if args.fail_on:
        try:
            rules = budget.parse_rules(args.fail_on)
        except budget.BudgetError as exc:
            print(f"canonical-logs report: {exc}", file=sys.stderr)
            return EXIT_USAGE
    names = args.files or ["-"]
    try:
        report = summarise(names, args)
        if args.compare:
            report["compare"] = budget.compare(report, _baseline(args.compare, args))
    except UsageError as exc:
        print(f"canonical-logs report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    broken: list[dict[str, Any]] = []
    if rules is not None:
        broken = budget.violations(report["routes"], rules, args.min_count)
        report["budget"] = {"rules": args.fail_on, "violations": broken}
    try:
        if args.html:
            from .html import page

            with open(args.html, "w", encoding="utf-8") as out:
                out.write(page(report))
        if args.json:
            text = json.dumps(report, indent=2, default=str) + "\n"
            if args.json == "-":
                stdout.write(text)
            else:
                with open(args.json, "w", encoding="utf-8") as out:
                    out.write(text)
    except OSError as exc:
        print(f"canonical-logs report: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    code = EXIT_BUDGET if broken else EXIT_OK
    if args.json != "-":
        from .terminal import console, render

        force = {"auto": None, "always": True, "never": False}[args.color]
        try:
            render(report, console(stdout, force_terminal=force))
        except BrokenPipeError:
            # `canonical-logs report ... | head`: the reader is gone; the verdict stands.
            _silence_stdout()
    return code


def _silence_stdout() -> None:
    """Later writes to a closed stdout (the interpreter's last flush) go nowhere, silently."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """``canonical-logs report ...`` (``argv`` without the program name)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print("usage: canonical-logs report [FILE ...] [options]  (canonical-logs report --help)")
        return EXIT_OK
    if not argv or argv[0] != "report":
        print(
            "usage: canonical-logs report [FILE ...] [options]  (canonical-logs report --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        return run(argv[1:], sys.stdout)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The ``canonical-logs`` console script."""
    sys.exit(main())
