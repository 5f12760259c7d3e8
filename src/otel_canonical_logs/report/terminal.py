"""The terminal report (rich tables), readable in 100 columns; colour only on a terminal."""

from __future__ import annotations

from typing import IO, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import fmt

WIDTH = 100
ROWS = 10
SPARK = 48


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich exits with status 1 here, which is --fail-on's "budget broken": let the command
        # decide instead.
        self.quiet = True
        raise BrokenPipeError


def console(stream: IO[str], force_terminal: bool | None = None, record: bool = False) -> Console:
    """Width 100 (or the terminal's, if narrower), colour only when ``stream`` is a terminal (and
    ``NO_COLOR`` is unset)."""
    probe = Console(file=stream, force_terminal=force_terminal)
    width = min(WIDTH, probe.width) if probe.is_terminal else WIDTH
    return _Console(
        file=stream,
        width=width,
        force_terminal=force_terminal,
        highlight=False,
        record=record,
        soft_wrap=False,
    )


def _table(title: str, *columns: tuple[str, str]) -> Table:
    """Columns ``(name, "left" | "right")``; text never wraps (a cell too long is cut with an
    ellipsis: the values are cut to fit 100 columns before, this is the narrow terminal's case)."""
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 0),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    return table


def _squeeze(values: list[float | None], width: int = SPARK) -> list[float | None]:
    """At most ``width`` values: neighbours grouped, the largest of each group kept."""
    if len(values) <= width:
        return values
    size = -(-len(values) // width)
    out: list[float | None] = []
    for i in range(0, len(values), size):
        group = [v for v in values[i : i + size] if v is not None]
        out.append(max(group) if group else None)
    return out


def _short(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _summary(report: dict[str, Any]) -> RenderableType:
    s = report["summary"]
    timed = report["timeline"]["timed"]
    inp = report["input"]
    lines = [
        Text.assemble(("Canonical requests", "bold"), f"  {', '.join(report['sources']) or '-'}"),
        Text(
            f"requests {s['requests']}   "
            + (
                f"from {fmt.moment(s['start'])} to {fmt.moment(s['end'])} UTC ({fmt.span(s['span_s'])})   "
                f"{fmt.number(s['requests_per_s'], 2)} req/s"
                if timed and s["start"] is not None
                else "no timestamps on the lines, so no time span (`docker logs -t` adds them)"
            )
        ),
        Text.assemble(
            "errors ",
            (f"{s['errors']} ({fmt.percent(s['error_rate'])})", "red" if s["errors"] else ""),
            f"   resp_time p50 {fmt.seconds(s['p50'])}  p95 {fmt.seconds(s['p95'])}  "
            f"p99 {fmt.seconds(s['p99'])}  max {fmt.seconds(s['max'])}",
        ),
        Text(
            f"timeouts {s['timeouts']}   stuck {s['stuck']}   partial failures {s['partial_failures']}   "
            f"N+1 in {fmt.percent(s['n1_share'])} of requests   saturation samples {s['saturation_samples']}"
        ),
        Text(
            f"lines {inp['lines']}: canonical {inp['canonical']}, other {inp['other_lines']}, "
            f"malformed {inp['malformed']}, filtered out {inp['filtered_out']}",
            style="dim",
        ),
    ]
    buckets = report["timeline"]["buckets"]
    if buckets:
        p95 = [b["p95"] for b in buckets]
        lines.append(
            Text(
                f"p95 over time {fmt.clock(buckets[0]['t'], timed)} |{fmt.sparkline(_squeeze(p95))}| "
                f"{fmt.clock(buckets[-1]['t'], timed)} peak {fmt.seconds(max(v or 0 for v in p95))}"
            )
        )
    return Group(*lines)


def _routes(report: dict[str, Any]) -> Table:
    table = _table(
        "Routes (by requests; resp_time percentiles; DB = db_time / resp_time)",
        ("route", "left"),
        ("count", "right"),
        ("p50", "right"),
        ("p95", "right"),
        ("p99", "right"),
        ("max", "right"),
        ("err", "right"),
        ("q mean", "right"),
        ("q p95", "right"),
        ("DB", "right"),
        ("N+1", "right"),
    )
    for r in report["routes"][:ROWS]:
        table.add_row(
            _short(r["route"], 24),
            str(r["count"]),
            fmt.seconds(r["p50"]),
            fmt.seconds(r["p95"]),
            fmt.seconds(r["p99"]),
            fmt.seconds(r["max"]),
            Text(fmt.percent(r["error_rate"]), style="red" if r["errors"] else ""),
            fmt.number(r["db_queries_mean"]),
            fmt.number(r["db_queries_p95"], 0),
            fmt.percent(r["db_share"]),
            Text(fmt.percent(r["n1_share"]), style="yellow" if r["n1_requests"] else ""),
        )
    notes = []
    more = len(report["routes"]) - ROWS
    if more > 0:
        notes.append(f"… {more} more routes (--json has them all)")
    if report["routes_folded"]:
        notes.append(f"{report['routes_folded']} routes past the first 200 are in (other routes)")
    if notes:
        table.caption = "; ".join(notes)
    return table


def _n1(report: dict[str, Any]) -> Table:
    table = _table(
        "N+1 offenders (db_n1_loc, else db_dup_loc)",
        ("call site", "left"),
        ("requests", "right"),
        ("N+1 q", "right"),
        ("routes", "left"),
        ("example req_id", "left"),
    )
    for row in report["n_plus_one"][:ROWS]:
        table.add_row(
            _short(row["loc"], 34),
            str(row["count"]),
            str(row["n1_queries"] or row["dup_queries"]),
            _short(", ".join(row["routes"]), 18),
            _short(" ".join(row["examples"][:1]), 32),
        )
    return table


def _exceptions(report: dict[str, Any]) -> Table:
    table = _table(
        "Exceptions (exc_type at exc_loc)",
        ("exc_type", "left"),
        ("exc_loc", "left"),
        ("count", "right"),
        ("routes", "left"),
        ("example req_id", "left"),
    )
    for row in report["exceptions"][:ROWS]:
        table.add_row(
            _short(row["exc_type"], 18),
            _short(row["exc_loc"], 28),
            str(row["count"]),
            _short(", ".join(row["routes"]), 10),
            _short(" ".join(row["examples"][:1]), 32),
        )
    return table


def _timeouts(report: dict[str, Any]) -> Table:
    table = _table(
        "Timeouts and stuck requests (timeout_cause_loc)",
        ("call site", "left"),
        ("timeouts", "right"),
        ("stuck", "right"),
        ("open span", "left"),
        ("example req_id", "left"),
    )
    for row in report["timeouts"][:ROWS]:
        table.add_row(
            _short(row["loc"], 30),
            str(row["timeouts"]),
            str(row["stuck"]),
            _short(row["detail"], 20),
            _short(" ".join(row["examples"][:1]), 32),
        )
    return table


def _slowest(report: dict[str, Any]) -> Table:
    table = _table(
        "Slowest requests",
        ("resp_time", "right"),
        ("route", "left"),
        ("status", "right"),
        ("req_id", "left"),
        ("trace_id", "left"),
    )
    for row in report["slowest"]:
        status = "timeout" if row["event_type"] == "timeout" else str(row["resp_status"] or "-")
        table.add_row(
            fmt.seconds(row["resp_time"]),
            _short(row["route"], 12),
            status,
            _short(row["req_id"], 32),
            _short(row["trace_id"], 32),
        )
    return table


def _saturation(report: dict[str, Any]) -> RenderableType:
    sat = report["saturation"]
    points = sat["points"]
    if not points:
        return Text("Saturation: no saturation events (CANONICAL_LOGS_SATURATION_INTERVAL)", style="dim")
    timed = sat["timed"]
    workers = max(p["g_w_count"] for p in points) or None
    rows = [
        ("busy workers (avg)", [p["g_w_active"] for p in points], workers, fmt.number),
        ("busy workers (max)", [p["g_w_active_max"] for p in points], workers, fmt.number),
        ("backlog (max)", [p["g_backlog"] for p in points], None, fmt.number),
        ("memory MiB (max)", [p["g_mem_mib"] for p in points], None, fmt.number),
    ]
    out: list[RenderableType] = [
        Text(
            f"Saturation over time ({len(points)} points, {fmt.clock(points[0]['t'], timed)} to "
            f"{fmt.clock(points[-1]['t'], timed)}; workers {fmt.number(workers)})",
            style="bold",
        )
    ]
    for label, values, top, show in rows:
        peak = max(values, default=0)
        out.append(Text(f"  {label:<19}|{fmt.sparkline(_squeeze(values), top)}| peak {show(peak)}"))
    return Group(*out)


def _compare(report: dict[str, Any]) -> RenderableType:
    comparison = report["compare"]
    table = _table(
        f"Compared with {', '.join(comparison['baseline']) or 'the baseline'} (current - baseline)",
        ("route", "left"),
        ("p95", "right"),
        ("Δ p95", "right"),
        ("q mean", "right"),
        ("Δ q", "right"),
        ("N+1", "right"),
        ("Δ N+1", "right"),
    )
    for row in comparison["routes"][:ROWS]:
        d95 = row["delta_p95"]
        table.add_row(
            _short(row["route"], 30),
            fmt.seconds(row["p95"]),
            Text(fmt.signed_seconds(d95), style="red" if d95 and d95 > 0 else "green" if d95 else ""),
            fmt.number(row["db_queries_mean"]),
            fmt.number(row["delta_db_queries_mean"]),
            fmt.percent(row["n1_share"]),
            fmt.percent(row["delta_n1_share"]),
        )
    notes = []
    if comparison["new_routes"]:
        notes.append("new: " + ", ".join(comparison["new_routes"][:5]))
    if comparison["gone_routes"]:
        notes.append("gone: " + ", ".join(comparison["gone_routes"][:5]))
    if notes:
        table.caption = "; ".join(notes)
    return table


def _budget(report: dict[str, Any]) -> RenderableType:
    budget = report["budget"]
    if not budget["violations"]:
        return Text(f"Budget {budget['rules']}: kept by every route", style="green")
    lines = [Text(f"Budget {budget['rules']}: broken", style="bold red")]
    for v in budget["violations"]:
        lines.append(Text(f"  {v['route']}: {v['rule']} (is {fmt.number(v['value'], 3)})", style="red"))
    return Group(*lines)


def render(report: dict[str, Any], out: Console) -> None:
    """Print every section of the report that has something to show."""
    out.print(_summary(report))
    out.print()
    sections: list[RenderableType] = [_routes(report)]
    if report["n_plus_one"]:
        sections.append(_n1(report))
    if report["exceptions"]:
        sections.append(_exceptions(report))
    if report["timeouts"]:
        sections.append(_timeouts(report))
    if report["slowest"]:
        sections.append(_slowest(report))
    sections.append(_saturation(report))
    if "compare" in report:
        sections.append(_compare(report))
    if "budget" in report:
        sections.append(_budget(report))
    for section in sections:
        out.print(section)
        out.print()
