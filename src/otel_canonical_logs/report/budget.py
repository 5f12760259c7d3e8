"""``--fail-on`` budgets per route and ``--compare`` deltas against a baseline summary (pure)."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Budget name -> the route row's key.
METRICS = {
    "p50": "p50",
    "p95": "p95",
    "p99": "p99",
    "max": "max",
    "mean": "mean",
    "error_rate": "error_rate",
    "errors": "errors",
    "count": "count",
    "db_queries": "db_queries_mean",
    "db_queries_p95": "db_queries_p95",
    "db_share": "db_share",
    "n1_share": "n1_share",
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(r"\s*([a-z0-9_]+)\s*(>=|<=|>|<)\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(%?)\s*", re.I)
COMPARED = ("p95", "db_queries_mean", "n1_share")


class BudgetError(ValueError):
    """A ``--fail-on`` text that is not a list of ``metric>number``."""


@dataclass(frozen=True, slots=True)
class Rule:
    metric: str
    op: str
    limit: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"


def parse_rules(text: str) -> list[Rule]:
    """``'p95>0.5,db_queries>30'`` as rules; a rule is broken when the route's value satisfies
    it (``error_rate>1%`` is ``error_rate>0.01``).

    >>> parse_rules("p95>0.5, db_queries>=30")
    [Rule(metric='p95', op='>', limit=0.5), Rule(metric='db_queries', op='>=', limit=30.0)]
    """
    rules = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _RULE.fullmatch(part)
        if match is None:
            raise BudgetError(f"cannot read budget {part.strip()!r}: expected METRIC>NUMBER, e.g. p95>0.5")
        metric, op, number, percent = match.groups()
        metric = metric.lower()
        if metric not in METRICS:
            raise BudgetError(f"unknown budget metric {metric!r}; one of {', '.join(METRICS)}")
        limit = float(number) / (100 if percent else 1)
        rules.append(Rule(metric, op, limit))
    if not rules:
        raise BudgetError("no budget given")
    return rules


def violations(routes: list[dict[str, Any]], rules: list[Rule], min_count: int = 1) -> list[dict[str, Any]]:
    """Every (route, rule) whose value breaks the rule, for routes with at least ``min_count``
    requests."""
    broken = []
    for row in routes:
        if row["count"] < min_count:
            continue
        for rule in rules:
            value = row.get(METRICS[rule.metric])
            if value is not None and _OPS[rule.op](float(value), rule.limit):
                broken.append({"route": row["route"], "rule": str(rule), "value": value})
    return broken


def compare(current: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Per-route deltas (current minus baseline) of p95, mean queries and N+1 share, for the
    routes in both; the routes only in one of them by name."""
    before = {r["route"]: r for r in baseline.get("routes", [])}
    now = {r["route"]: r for r in current.get("routes", [])}
    rows = []
    for name, row in now.items():
        old = before.get(name)
        if old is None:
            continue
        entry: dict[str, Any] = {"route": name, "count": row["count"], "baseline_count": old["count"]}
        for key in COMPARED:
            a, b = old.get(key), row.get(key)
            entry[key] = b
            entry[f"baseline_{key}"] = a
            entry[f"delta_{key}"] = (b - a) if a is not None and b is not None else None
        rows.append(entry)
    rows.sort(key=lambda e: -(abs(e["delta_p95"] or 0.0)))
    base_summary = baseline.get("summary", {})
    return {
        "baseline": baseline.get("sources", []),
        "summary": {
            key: {"baseline": base_summary.get(key), "current": current["summary"].get(key)}
            for key in ("requests", "error_rate", "p50", "p95", "p99", "n1_share")
        },
        "routes": rows,
        "new_routes": sorted(set(now) - set(before)),
        "gone_routes": sorted(set(before) - set(now)),
    }
