"""One pass over the canonical records into bounded state: exact counts and sums, a DDSketch per
route and time bucket for the percentiles, capped tables of call sites.

Memory does not grow with the input: at most ``ROUTE_LIMIT`` routes (the rest are one row), at
most ``MAX_BUCKETS`` time buckets (two neighbours merge when there would be more), at most
``SITE_LIMIT`` rows per table, a few example ``req_id`` each.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ddsketch import LogCollapsingLowestDenseDDSketch

from .parse import Record

RELATIVE_ACCURACY = 0.01
BIN_LIMIT = 512
ROUTE_LIMIT = 200
SITE_LIMIT = 1000
MAX_BUCKETS = 96
EXAMPLES = 3
SLOWEST = 10
OTHER_ROUTES = "(other routes)"
NO_ROUTE = "(no route)"

_ID_SEGMENT = re.compile(
    r"(?<=/)(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[^/]*\d[^/]*\d[^/]*\d[^/]*)(?=/|$)"
)


def sketch() -> LogCollapsingLowestDenseDDSketch:
    """Every sketch has the same mapping, so any two merge without loss."""
    return LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=BIN_LIMIT)


def collapse_path(path: str) -> str:
    """A path with its id-like segments (numbers, UUIDs, long hex, anything with 3+ digits) as
    ``<id>``, for lines without ``req_route``.

    >>> collapse_path("/books/12/reviews/5f0c1a2b3c4d5e6f7a8b/")
    '/books/<id>/reviews/<id>/'
    """
    return _ID_SEGMENT.sub("<id>", path)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


@dataclass(slots=True)
class Site:
    """One call site of a table (N+1 loop, exception, timeout): counts and a few examples."""

    count: int = 0
    queries: int = 0
    other: int = 0
    detail: str = ""
    routes: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def hit(self, route: str, req_id: Any) -> None:
        self.count += 1
        if len(self.routes) < 20 or route in self.routes:
            self.routes[route] = self.routes.get(route, 0) + 1
        if req_id and len(self.examples) < EXAMPLES:
            self.examples.append(str(req_id))


@dataclass(slots=True)
class Route:
    count: int = 0
    errors: int = 0
    time_sum: float = 0.0
    max: float = 0.0
    db_queries: int = 0
    db_time: float = 0.0
    n1: int = 0
    # resp_time per time bucket (merged into one for the route's own percentiles).
    buckets: dict[int, Any] = field(default_factory=dict)
    # db_queries is an integer: its exact distribution, value -> requests (a few hundred values).
    queries: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Bucket:
    """Counters of one time bucket (the percentiles are the routes' bucket sketches merged)."""

    count: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class SaturationPoint:
    samples: int = 0
    active_sum: float = 0.0
    active_max: float = 0.0
    backlog: float = 0.0
    workers: float = 0.0
    mem_mib: float = 0.0
    worker_mem_max_mib: float = 0.0
    requests: float = 0.0
    timeouts: float = 0.0
    restarts: float = 0.0

    def merge(self, other: SaturationPoint) -> None:
        self.samples += other.samples
        self.active_sum += other.active_sum
        self.active_max = max(self.active_max, other.active_max)
        self.backlog = max(self.backlog, other.backlog)
        self.workers = max(self.workers, other.workers)
        self.mem_mib = max(self.mem_mib, other.mem_mib)
        self.worker_mem_max_mib = max(self.worker_mem_max_mib, other.worker_mem_max_mib)
        self.requests += other.requests
        self.timeouts += other.timeouts
        self.restarts += other.restarts


def _status_class(event_type: str, status: float | None) -> str:
    if event_type == "timeout":
        return "timeout"
    if status is None:
        return "none"
    return f"{int(status) // 100}xx" if 100 <= status < 600 else "other"


class Aggregate:
    """The report's state; :meth:`add` each record, then :mod:`.summary` reads it."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.folded_routes: set[str] = set()
        self.folded_more = False
        self.buckets: dict[int, Bucket] = {}
        self.saturation: dict[int, SaturationPoint] = {}
        # Bucket width in seconds (or in records, when the lines carry no timestamps).
        self.width = 1.0
        self.sat_width = 1.0
        self.origin: float | None = None
        self.sat_origin: float | None = None
        self.first: float | None = None
        self.last: float | None = None
        self.timed = True
        self.requests = 0
        self.errors = 0
        self.timeouts = 0
        self.stuck = 0
        self.partial_failures = 0
        self.n1_requests = 0
        self.other_events = 0
        self.untimed = 0
        self.ordinal = 0
        self.sat_ordinal = 0
        self.n1_sites: dict[str, Site] = {}
        self.exceptions: dict[tuple[str, str], Site] = {}
        self.timeout_sites: dict[str, Site] = {}
        self.partial_sites: dict[str, Site] = {}
        self.dropped_sites = 0
        self.slowest: list[tuple[float, int, dict[str, Any]]] = []
        self._path_routes: dict[str, str] = {}

    # -- records -------------------------------------------------------------------------------

    def add_all(self, records: Iterable[tuple[float | None, Record]]) -> None:
        for stamp, fields in records:
            self.add(stamp, fields)

    def add(self, stamp: float | None, fields: Record) -> None:
        event_type = fields.get("event_type")
        if event_type == "request" or event_type == "timeout":
            self._request(stamp, fields, event_type)
        elif event_type == "saturation":
            self._saturation(stamp, fields)
        elif event_type == "stuck":
            self.stuck += 1
            self._site(self.timeout_sites, _loc(fields), fields, self.route_of(fields)).other += 1
        elif event_type == "partial_failure":
            self.partial_failures += 1
            key = str(fields.get("exc_type") or fields.get("exc_loc") or "?")
            site = self._site(self.partial_sites, key, fields)
            if site.count == 1:
                site.detail = str(fields.get("exc_loc") or "")
        else:
            self.other_events += 1

    def route_of(self, fields: Record) -> str:
        route = fields.get("req_route")
        if route:
            return str(route)
        path = fields.get("req_path")
        if not path:
            return NO_ROUTE
        path = str(path)
        collapsed = self._path_routes.get(path)
        if collapsed is None:
            collapsed = collapse_path(path)
            if len(self._path_routes) < 10_000:
                self._path_routes[path] = collapsed
        return collapsed

    def _time(self, stamp: float | None) -> float:
        """The record's place on the time axis: its timestamp, or its ordinal when the first
        record had none (then the whole report is by order, not by time)."""
        self.ordinal += 1
        if stamp is None:
            self.untimed += 1
            if self.requests == 0:
                self.timed = False
        if not self.timed:
            return float(self.ordinal)
        if stamp is None:
            return self.last or 0.0
        if self.first is None or stamp < self.first:
            self.first = stamp
        if self.last is None or stamp > self.last:
            self.last = stamp
        return stamp

    def _request(self, stamp: float | None, fields: Record, event_type: str) -> None:
        t = self._time(stamp)
        self.requests += 1
        name = self.route_of(fields)
        route = self.routes.get(name)
        if route is None:
            if len(self.routes) >= ROUTE_LIMIT:
                if len(self.folded_routes) < SITE_LIMIT:
                    self.folded_routes.add(name)
                else:
                    self.folded_more = True
                name = OTHER_ROUTES
                route = self.routes.get(name)
            if route is None:
                route = self.routes[name] = Route()
        raw_status = fields.get("resp_status")
        try:
            status: float | None = float(raw_status) if raw_status is not None else None
        except (TypeError, ValueError):
            status = None
        failed = event_type == "timeout" or (status is not None and status >= 500)
        raw_time = fields.get("resp_time")
        try:
            resp_time: float | None = float(raw_time) if raw_time is not None else None
        except (TypeError, ValueError):
            resp_time = None
        if resp_time is not None and not (0 <= resp_time < 1e12):
            resp_time = None  # NaN, infinities, negative: not a duration
        route.count += 1
        if failed:
            route.errors += 1
            self.errors += 1
        index = self._bucket_index(t)
        bucket = self.buckets.get(index)
        if bucket is None:
            bucket = self.buckets[index] = Bucket()
        bucket.count += 1
        cls = _status_class(event_type, status)
        bucket.statuses[cls] = bucket.statuses.get(cls, 0) + 1
        if resp_time is not None:
            route.time_sum += resp_time
            if resp_time > route.max:
                route.max = resp_time
            by_bucket = route.buckets.get(index)
            if by_bucket is None:
                by_bucket = route.buckets[index] = sketch()
            by_bucket.add(resp_time)
            if len(self.slowest) < SLOWEST or resp_time > self.slowest[0][0]:
                entry = (resp_time, self.ordinal, _slow_entry(fields, name, event_type, stamp))
                if len(self.slowest) < SLOWEST:
                    heapq.heappush(self.slowest, entry)
                else:
                    heapq.heapreplace(self.slowest, entry)
        try:
            queries = int(fields.get("db_queries") or 0)
        except (TypeError, ValueError):
            queries = 0
        route.db_queries += queries
        histogram = route.queries
        if queries in histogram:
            histogram[queries] += 1
        elif len(histogram) < SITE_LIMIT:
            histogram[queries] = 1
        else:
            # Past a thousand distinct counts the nearest kept one stands in (never seen in practice).
            nearest = min(histogram, key=lambda q: abs(q - queries))
            histogram[nearest] += 1
        db_time = _num(fields.get("db_time"))
        if db_time is not None:
            route.db_time += db_time
        n1 = _num(fields.get("db_n1_queries"))
        loc = fields.get("db_n1_loc")
        if not n1:
            dup = _num(fields.get("db_dup_queries"))
            if dup and fields.get("db_dup_loc"):
                # No N+1 run on the line (an older version, or repeats that are not one run):
                # the duplicated SQL's site still shows the loop.
                n1, loc = None, None
                site = self._site(self.n1_sites, str(fields["db_dup_loc"]), fields, name)
                site.other += int(dup)
                if not site.detail:
                    site.detail = str(fields.get("db_dup_sql") or "")
        if n1:
            route.n1 += 1
            self.n1_requests += 1
            site = self._site(self.n1_sites, str(loc or "?"), fields, name)
            site.queries += int(n1)
            if not site.detail:
                site.detail = str(fields.get("db_n1_sql") or "")
        exc_type = fields.get("exc_type")
        if exc_type:
            key = (str(exc_type), str(fields.get("exc_loc") or ""))
            site = self._site(self.exceptions, key, fields, name)
            if not site.detail:
                site.detail = str(fields.get("exc_msg") or "")
        if event_type == "timeout":
            self.timeouts += 1
            site = self._site(self.timeout_sites, _loc(fields), fields, name)
            site.queries += 1
            if not site.detail:
                site.detail = str(fields.get("timeout_span") or "")

    def _site(self, table: dict[Any, Site], key: Any, fields: Record, route: str = "") -> Site:
        site = table.get(key)
        if site is None:
            if len(table) >= SITE_LIMIT:
                self.dropped_sites += 1
                key = "(other sites)"
                site = table.get(key)
            if site is None:
                site = table[key] = Site()
        site.hit(route, fields.get("req_id"))
        return site

    def _saturation(self, stamp: float | None, fields: Record) -> None:
        self.sat_ordinal += 1
        t = stamp if stamp is not None else float(self.sat_ordinal)
        if stamp is not None and (self.first is None or stamp < self.first):
            self.first = stamp
        if stamp is not None and (self.last is None or stamp > self.last):
            self.last = stamp
        if self.sat_origin is None:
            self.sat_origin = t
        if t < self.sat_origin:
            shift = math.ceil((self.sat_origin - t) / self.sat_width)
            self.sat_origin -= shift * self.sat_width
            self.saturation = {i + shift: p for i, p in self.saturation.items()}
            while max(self.saturation, default=0) >= MAX_BUCKETS:
                self.saturation = _halve(self.saturation, _merge_points)
                self.sat_width *= 2
        index = int((t - self.sat_origin) // self.sat_width)
        while index >= MAX_BUCKETS:
            self.saturation = _halve(self.saturation, _merge_points)
            self.sat_width *= 2
            index = int((t - self.sat_origin) // self.sat_width)
        point = SaturationPoint(
            samples=1,
            active_sum=_num(fields.get("g_w_active")) or 0.0,
            active_max=_num(fields.get("g_w_active_max")) or 0.0,
            backlog=_num(fields.get("g_backlog")) or 0.0,
            workers=_num(fields.get("g_w_count")) or 0.0,
            mem_mib=_num(fields.get("g_mem_mib")) or 0.0,
            worker_mem_max_mib=_num(fields.get("g_w_mem_max_mib")) or 0.0,
            requests=_num(fields.get("g_requests")) or 0.0,
            timeouts=_num(fields.get("g_timeouts")) or 0.0,
            restarts=_num(fields.get("g_restarts")) or 0.0,
        )
        existing = self.saturation.get(index)
        if existing is None:
            self.saturation[index] = point
        else:
            existing.merge(point)

    def _bucket_index(self, t: float) -> int:
        if self.origin is None:
            self.origin = t
        if t < self.origin:
            # Earlier than the first bucket (files given newest first, workers' lines interleaved):
            # the buckets move up so that one starts before it.
            shift = math.ceil((self.origin - t) / self.width)
            self.origin -= shift * self.width
            self.buckets = {i + shift: b for i, b in self.buckets.items()}
            for route in self.routes.values():
                route.buckets = {i + shift: b for i, b in route.buckets.items()}
            while max(self.buckets, default=0) >= MAX_BUCKETS:
                self._double()
        index = int((t - self.origin) // self.width)
        while index >= MAX_BUCKETS:
            self._double()
            index = int((t - self.origin) // self.width)
        return index

    def _double(self) -> None:
        self.width *= 2
        self.buckets = _halve(self.buckets, _merge_buckets)
        for route in self.routes.values():
            route.buckets = _halve(route.buckets, _merge_sketches)


def _merge_buckets(a: Bucket, b: Bucket) -> Bucket:
    a.count += b.count
    for k, v in b.statuses.items():
        a.statuses[k] = a.statuses.get(k, 0) + v
    return a


def _merge_sketches(a: Any, b: Any) -> Any:
    a.merge(b)
    return a


def _merge_points(a: SaturationPoint, b: SaturationPoint) -> SaturationPoint:
    a.merge(b)
    return a


def _halve(buckets: dict[int, Any], merge: Any) -> dict[int, Any]:
    merged: dict[int, Any] = {}
    for index in sorted(buckets):
        target = index // 2
        if target in merged:
            merged[target] = merge(merged[target], buckets[index])
        else:
            merged[target] = buckets[index]
    return merged


def _loc(fields: Record) -> str:
    return str(fields.get("timeout_cause_loc") or fields.get("timeout_loc") or "?")


def _slow_entry(fields: Record, route: str, event_type: str, stamp: float | None) -> dict[str, Any]:
    return {
        "resp_time": _num(fields.get("resp_time")),
        "event_type": event_type,
        "route": route,
        "resp_status": fields.get("resp_status"),
        "db_queries": fields.get("db_queries"),
        "req_id": fields.get("req_id"),
        "trace_id": fields.get("trace_id"),
        "time": stamp,
    }
