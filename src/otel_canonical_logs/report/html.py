"""``--html``: one self-contained page, the report's tables and charts drawn as inline SVG.

No script, no font, no image, no request of any kind: the Content-Security-Policy says so and a
browser enforces it. Every text from the lines is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from . import fmt

COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
STATUS_COLORS = {
    "2xx": "#16a34a",
    "3xx": "#0891b2",
    "4xx": "#eab308",
    "5xx": "#dc2626",
    "timeout": "#7f1d1d",
    "none": "#9ca3af",
    "other": "#6b7280",
}
W, H = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
CSP = "default-src 'none'; style-src 'unsafe-inline'"

Series = tuple[str, str, Sequence[float | None]]


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _ticks(top: float) -> list[float]:
    """Four or five round gridline values from 0 up to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(f * magnitude for f in (1, 2, 2.5, 5, 10) if f * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _frame(
    title: str, xs: Sequence[str], top: float, show: Callable[[float], str]
) -> tuple[list[str], float]:
    ticks = _ticks(top)
    top = ticks[-1]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">',
        f"<title>{_e(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="#fafafa"/>',
    ]
    for tick in ticks:
        y = _y(tick, top)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_e(show(tick))}</text>'
        )
    if xs:
        last = len(xs) - 1
        for i in sorted({0, last // 2, last}):
            anchor = "start" if i == 0 and last else "end" if i == last and last else "middle"
            x = LEFT if anchor == "start" else W - RIGHT if anchor == "end" else _x(i, len(xs))
            parts.append(
                f'<text x="{x:.1f}" y="{H - 8}" text-anchor="{anchor}" class="tick">{_e(xs[i])}</text>'
            )
    return parts, top


def _x(i: int, n: int) -> float:
    inner = W - LEFT - RIGHT
    return LEFT + (inner * (i + 0.5) / n if n else 0)


def _y(v: float, top: float) -> float:
    inner = H - TOP - BOTTOM
    return TOP + inner - inner * (v / top if top else 0)


def line_chart(title: str, xs: Sequence[str], series: Sequence[Series], show: Callable[[float], str]) -> str:
    """Lines over time: each series a polyline (broken where a value is missing) with a dot a
    point, and a legend."""
    top = max((v for _, _, values in series for v in values if v is not None), default=0.0)
    parts, top = _frame(title, xs, top, show)
    n = len(xs)
    for name, color, values in series:
        run: list[str] = []
        runs: list[list[str]] = [run]
        for i, v in enumerate(values):
            if v is None:
                run = []
                runs.append(run)
                continue
            run.append(f"{_x(i, n):.1f},{_y(v, top):.1f}")
        for points in runs:
            if len(points) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}">'
                    f"<title>{_e(name)}</title></polyline>"
                )
            for point in points:
                x, y = point.split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{color}"/>')
    parts.append("</svg>")
    return _figure(title, "".join(parts), [(name, color) for name, color, _ in series])


def stacked_bars(
    title: str, xs: Sequence[str], stacks: Sequence[dict[str, int]], colors: dict[str, str]
) -> str:
    """One bar a bucket, its parts stacked in ``colors``' order."""
    top = float(max((sum(s.values()) for s in stacks), default=0))
    parts, top = _frame(title, xs, top, fmt.number)
    n = len(xs)
    width = max(1.0, (W - LEFT - RIGHT) / max(n, 1) * 0.8)
    used: list[str] = []
    for i, stack in enumerate(stacks):
        base = 0.0
        for name in colors:
            count = stack.get(name, 0)
            if not count:
                continue
            if name not in used:
                used.append(name)
            y0, y1 = _y(base, top), _y(base + count, top)
            x = _x(i, n) - width / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{y1:.1f}" width="{width:.1f}" height="{y0 - y1:.1f}" '
                f'fill="{colors[name]}"><title>{_e(xs[i])} {_e(name)}: {count}</title></rect>'
            )
            base += count
    parts.append("</svg>")
    return _figure(title, "".join(parts), [(name, colors[name]) for name in used])


def _figure(title: str, svg: str, legend: list[tuple[str, str]]) -> str:
    keys = "".join(
        f'<span class="key"><span class="swatch" style="background:{color}"></span>{_e(name)}</span>'
        for name, color in legend
    )
    return f'<figure><figcaption>{_e(title)}</figcaption>{svg}<div class="legend">{keys}</div></figure>'


def _table(caption: str, head: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    if not rows:
        return ""
    th = "".join(f'<th class="{"n" if i in numeric else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"n" if i in numeric else ""}">{_e(c)}</td>' for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return (
        f"<section><h2>{_e(caption)}</h2><table><thead><tr>{th}</tr></thead>"
        f"<tbody>{body}</tbody></table></section>"
    )


def _charts(report: dict[str, Any]) -> str:
    timeline = report["timeline"]
    timed = timeline["timed"]
    buckets = timeline["buckets"]
    xs = [fmt.clock(b["t"], timed) for b in buckets]
    out = []
    if buckets:
        out.append(
            line_chart(
                "resp_time percentiles over time",
                xs,
                [
                    (name, COLORS[i], [b[name] for b in buckets])
                    for i, name in enumerate(("p50", "p95", "p99"))
                ],
                fmt.seconds,
            )
        )
        routes = timeline["top_routes"]
        if routes:
            out.append(
                line_chart(
                    "p95 over time, top routes",
                    xs,
                    [
                        (
                            route,
                            COLORS[i % len(COLORS)],
                            [(b["routes"].get(route) or {}).get("p95") for b in buckets],
                        )
                        for i, route in enumerate(routes)
                    ],
                    fmt.seconds,
                )
            )
        out.append(
            stacked_bars("requests by status over time", xs, [b["statuses"] for b in buckets], STATUS_COLORS)
        )
    sat = report["saturation"]
    points = sat["points"]
    if points:
        sxs = [fmt.clock(p["t"], sat["timed"]) for p in points]
        out.append(
            line_chart(
                "saturation: busy workers",
                sxs,
                [
                    ("busy (avg)", COLORS[0], [p["g_w_active"] for p in points]),
                    ("busy (max)", COLORS[1], [p["g_w_active_max"] for p in points]),
                    ("workers", COLORS[6], [p["g_w_count"] for p in points]),
                ],
                fmt.number,
            )
        )
        out.append(
            line_chart(
                "saturation: listen backlog (max)",
                sxs,
                [("g_backlog", COLORS[4], [p["g_backlog"] for p in points])],
                fmt.number,
            )
        )
    return '<div class="charts">' + "".join(out) + "</div>"


def _summary(report: dict[str, Any]) -> str:
    s = report["summary"]
    inp = report["input"]
    cards = [
        ("requests", str(s["requests"])),
        ("time span", fmt.span(s["span_s"])),
        ("requests/s", fmt.number(s["requests_per_s"], 2)),
        ("error rate", fmt.percent(s["error_rate"])),
        ("p50", fmt.seconds(s["p50"])),
        ("p95", fmt.seconds(s["p95"])),
        ("p99", fmt.seconds(s["p99"])),
        ("timeouts", str(s["timeouts"])),
        ("N+1 share", fmt.percent(s["n1_share"])),
    ]
    html = "".join(
        f'<div class="card"><div class="label">{_e(k)}</div><div class="value">{_e(v)}</div></div>'
        for k, v in cards
    )
    when = (
        f"{fmt.moment(s['start'])} to {fmt.moment(s['end'])} UTC"
        if report["timeline"]["timed"] and s["start"] is not None
        else "the lines carry no timestamps: charts are by record order"
    )
    note = (
        f"{inp['lines']} lines: {inp['canonical']} canonical, {inp['other_lines']} other, "
        f"{inp['malformed']} malformed, {inp['filtered_out']} filtered out · {when}"
    )
    return f'<div class="cards">{html}</div><p class="note">{_e(note)}</p>'


def _tables(report: dict[str, Any]) -> str:
    parts = [
        _table(
            "Routes",
            [
                "route",
                "count",
                "p50",
                "p95",
                "p99",
                "max",
                "error %",
                "queries mean",
                "queries p95",
                "DB share",
                "N+1 share",
            ],
            [
                [
                    r["route"],
                    r["count"],
                    fmt.seconds(r["p50"]),
                    fmt.seconds(r["p95"]),
                    fmt.seconds(r["p99"]),
                    fmt.seconds(r["max"]),
                    fmt.percent(r["error_rate"]),
                    fmt.number(r["db_queries_mean"]),
                    fmt.number(r["db_queries_p95"], 0),
                    fmt.percent(r["db_share"]),
                    fmt.percent(r["n1_share"]),
                ]
                for r in report["routes"]
            ],
            set(range(1, 11)),
        ),
        _table(
            "N+1 offenders",
            ["call site", "requests", "N+1 queries", "SQL", "routes", "example req_id"],
            [
                [
                    r["loc"],
                    r["count"],
                    r["n1_queries"] or r["dup_queries"],
                    r["detail"],
                    ", ".join(r["routes"]),
                    " ".join(r["examples"]),
                ]
                for r in report["n_plus_one"]
            ],
            {1, 2},
        ),
        _table(
            "Exceptions",
            ["exc_type", "exc_loc", "count", "message", "routes", "example req_id"],
            [
                [
                    r["exc_type"],
                    r["exc_loc"],
                    r["count"],
                    r["detail"],
                    ", ".join(r["routes"]),
                    " ".join(r["examples"]),
                ]
                for r in report["exceptions"]
            ],
            {2},
        ),
        _table(
            "Timeouts and stuck requests",
            ["timeout_cause_loc", "timeouts", "stuck", "open span", "example req_id"],
            [
                [r["loc"], r["timeouts"], r["stuck"], r["detail"], " ".join(r["examples"])]
                for r in report["timeouts"]
            ],
            {1, 2},
        ),
        _table(
            "Slowest requests",
            ["resp_time", "route", "status", "req_id", "trace_id"],
            [
                [
                    fmt.seconds(r["resp_time"]),
                    r["route"],
                    "timeout" if r["event_type"] == "timeout" else r["resp_status"],
                    r["req_id"],
                    r["trace_id"],
                ]
                for r in report["slowest"]
            ],
            {0},
        ),
    ]
    if "compare" in report:
        parts.append(
            _table(
                "Compared with " + ", ".join(report["compare"]["baseline"]),
                ["route", "p95", "Δ p95", "queries mean", "Δ queries", "N+1 share", "Δ N+1 share"],
                [
                    [
                        r["route"],
                        fmt.seconds(r["p95"]),
                        fmt.signed_seconds(r["delta_p95"]),
                        fmt.number(r["db_queries_mean"]),
                        fmt.number(r["delta_db_queries_mean"]),
                        fmt.percent(r["n1_share"]),
                        fmt.percent(r["delta_n1_share"]),
                    ]
                    for r in report["compare"]["routes"]
                ],
                set(range(1, 7)),
            )
        )
    if "budget" in report:
        budget = report["budget"]
        parts.append(
            _table(
                f"Budget {budget['rules']}: " + ("broken" if budget["violations"] else "kept"),
                ["route", "rule", "value"],
                [[v["route"], v["rule"], fmt.number(v["value"], 3)] for v in budget["violations"]],
                {2},
            )
            or f"<section><h2>{_e('Budget ' + budget['rules'] + ': kept by every route')}</h2></section>"
        )
    return "".join(parts)


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#111827;background:#fff}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:24px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{border:1px solid #e5e7eb;border-radius:6px;padding:6px 12px;min-width:90px}
.label{color:#6b7280;font-size:12px}.value{font-size:18px;font-weight:600}.note{color:#6b7280;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}
.tick{font-size:10px;fill:#6b7280}.legend{font-size:12px}.key{margin-right:12px;white-space:nowrap}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top;max-width:420px;
overflow-wrap:anywhere}th{background:#f3f4f6}.n{text-align:right;white-space:nowrap}
"""


def page(report: dict[str, Any]) -> str:
    """The whole page as one string."""
    sources = ", ".join(report["sources"]) or "stdin"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Canonical requests: {_e(sources)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Canonical requests <small>{_e(sources)}</small></h1>"
        f"{_summary(report)}{_charts(report)}{_tables(report)}"
        "</body></html>\n"
    )
