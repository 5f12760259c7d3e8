"""The report as one JSON-able dict (``--json`` prints it; the terminal and HTML pages render it;
``--compare`` reads an earlier one back)."""

from __future__ import annotations

from typing import Any

from .aggregate import OTHER_ROUTES, RELATIVE_ACCURACY, Aggregate, Route, Site, sketch
from .parse import Counts

VERSION = 1
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
TOP_ROUTES = 5
TABLE_ROWS = 20


def _quantiles(merged: Any, top: float) -> dict[str, float | None]:
    if merged.count == 0:
        return {name: None for name in QUANTILES}
    # The sketch's value is within RELATIVE_ACCURACY of the true one; never past the real max.
    return {name: round(min(max(merged.get_quantile_value(q), 0.0), top), 6) for name, q in QUANTILES.items()}


def exact_quantile(histogram: dict[int, int], q: float) -> int | None:
    """The value at rank ``q * (n - 1)`` (rounded down, as the sketch ranks) of value -> count."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = int(q * (total - 1))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > rank:
            return value
    return max(histogram)


def _merged(sketches: Any) -> Any:
    total = sketch()
    for one in sketches:
        total.merge(one)
    return total


def _route_row(name: str, route: Route) -> dict[str, Any]:
    timed = _merged(route.buckets.values())
    q = _quantiles(timed, route.max)
    count = route.count
    return {
        "route": name,
        "count": count,
        **q,
        "max": round(route.max, 6) if timed.count else None,
        "mean": round(route.time_sum / timed.count, 6) if timed.count else None,
        "errors": route.errors,
        "error_rate": route.errors / count if count else 0.0,
        "db_queries_mean": route.db_queries / count if count else 0.0,
        "db_queries_p95": exact_quantile(route.queries, 0.95),
        "db_share": route.db_time / route.time_sum if route.time_sum > 0 else 0.0,
        "n1_requests": route.n1,
        "n1_share": route.n1 / count if count else 0.0,
    }


def _sites(
    table: dict[Any, Site], key_names: tuple[str, ...], queries: str = "", other: str = ""
) -> list[dict[str, Any]]:
    rows = []
    for key, site in sorted(table.items(), key=lambda kv: (-kv[1].count, str(kv[0]))):
        keys = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(key_names, keys, strict=False))
        for name in key_names[len(keys) :]:
            row[name] = ""
        row.update(
            count=site.count,
            detail=site.detail,
            routes=sorted(site.routes, key=lambda r: -site.routes[r])[:3],
            examples=site.examples,
        )
        if queries:
            row[queries] = site.queries
        if other:
            row[other] = site.other
        rows.append(row)
    return rows[:TABLE_ROWS]


def build(agg: Aggregate, counts: Counts, filters: dict[str, Any], sources: list[str]) -> dict[str, Any]:
    """The summary of everything :class:`Aggregate` saw."""
    routes = [_route_row(name, route) for name, route in agg.routes.items()]
    routes.sort(key=lambda r: (-r["count"], r["route"]))
    every_bucket = [s for route in agg.routes.values() for s in route.buckets.values()]
    overall = _merged(every_bucket)
    top = max((r.max for r in agg.routes.values()), default=0.0)
    span = (agg.last - agg.first) if agg.timed and agg.first is not None and agg.last is not None else None
    time_sum = sum(r.time_sum for r in agg.routes.values())
    summary = {
        "requests": agg.requests,
        "start": agg.first if agg.timed else None,
        "end": agg.last if agg.timed else None,
        "span_s": span,
        "requests_per_s": agg.requests / span if span else None,
        "errors": agg.errors,
        "error_rate": agg.errors / agg.requests if agg.requests else 0.0,
        **_quantiles(overall, top),
        "max": round(top, 6) if overall.count else None,
        "mean": round(time_sum / overall.count, 6) if overall.count else None,
        "timeouts": agg.timeouts,
        "stuck": agg.stuck,
        "partial_failures": agg.partial_failures,
        "n1_requests": agg.n1_requests,
        "n1_share": agg.n1_requests / agg.requests if agg.requests else 0.0,
        "saturation_samples": agg.sat_ordinal,
    }
    top_names = [r["route"] for r in routes if r["route"] != OTHER_ROUTES][:TOP_ROUTES]
    buckets = []
    origin = agg.origin or 0.0
    for index in sorted(agg.buckets):
        bucket = agg.buckets[index]
        in_bucket = [r.buckets[index] for r in agg.routes.values() if index in r.buckets]
        merged = _merged(in_bucket)
        # The sketch has no public max; the quantiles are clamped to the largest route max
        # instead (a sketch's value may be up to 1 % over the true one).
        peak = max((r.max for r in agg.routes.values() if index in r.buckets), default=0.0)
        by_route = {}
        for name in top_names:
            one = agg.routes[name].buckets.get(index)
            if one is not None and one.count:
                by_route[name] = {"count": int(one.count), **_quantiles(one, agg.routes[name].max)}
        buckets.append(
            {
                "t": origin + index * agg.width,
                "count": bucket.count,
                **_quantiles(merged, peak),
                "statuses": dict(sorted(bucket.statuses.items())),
                "routes": by_route,
            }
        )
    points = []
    sat_origin = agg.sat_origin or 0.0
    for index in sorted(agg.saturation):
        p = agg.saturation[index]
        points.append(
            {
                "t": sat_origin + index * agg.sat_width,
                "samples": p.samples,
                "g_w_active": round(p.active_sum / p.samples, 3) if p.samples else 0.0,
                "g_w_active_max": p.active_max,
                "g_backlog": p.backlog,
                "g_w_count": p.workers,
                "g_mem_mib": p.mem_mib,
                "g_w_mem_max_mib": p.worker_mem_max_mib,
                "g_requests": p.requests,
                "g_timeouts": p.timeouts,
                "g_restarts": p.restarts,
            }
        )
    slowest = [entry for _, _, entry in sorted(agg.slowest, key=lambda e: (-e[0], e[1]))]
    return {
        "report": VERSION,
        "relative_accuracy": RELATIVE_ACCURACY,
        "sources": sources,
        "filters": filters,
        "input": {
            "lines": counts.lines,
            "canonical": counts.canonical,
            "other_lines": counts.other,
            "malformed": counts.malformed,
            "malformed_examples": counts.malformed_examples,
            "timestamped": counts.timestamped,
            "filtered_out": filters.get("filtered_out", 0),
            "other_events": agg.other_events,
        },
        "summary": summary,
        "routes": routes,
        "routes_folded": len(agg.folded_routes) + (1 if agg.folded_more else 0),
        "n_plus_one": _sites(agg.n1_sites, ("loc",), "n1_queries", "dup_queries"),
        "exceptions": _sites(agg.exceptions, ("exc_type", "exc_loc")),
        "timeouts": _sites(agg.timeout_sites, ("loc",), "timeouts", "stuck"),
        "partial_failures": _sites(agg.partial_sites, ("exc_type",)),
        "slowest": slowest,
        "timeline": {
            "timed": agg.timed,
            "width": agg.width,
            "top_routes": top_names,
            "buckets": buckets,
        },
        "saturation": {
            "timed": agg.timed or agg.sat_ordinal == 0 or agg.first is not None,
            "width": agg.sat_width,
            "points": points,
        },
    }
