"""The one registry of canonical fields: key, type, order and OpenTelemetry attribute sources.

The logfmt key order, the OTLP attributes and the README table are all derived from ``FIELDS``,
so they cannot disagree. A new field is one entry here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Field:
    """One canonical field."""

    key: str
    type: type
    doc: str
    # Span attributes that carry this field on a root SERVER span, newest semantic convention
    # first; used when the request path did not set the field directly.
    attrs: tuple[str, ...] = ()
    unit: str = ""
    # The request aggregate's roll-up category this field reports (``RequestAggregate.add``): an
    # int field is the number of operations, a float field their total time in seconds. Both
    # are on the line once the category has one operation.
    rollup: str = ""


FIELDS: tuple[Field, ...] = (
    Field(
        "event_type",
        str,
        "`request`, `timeout`, `stuck`, `partial_failure` or `saturation` (periodic, fields of "
        "its own); always first",
    ),
    Field("req_id", str, "incoming `X-Request-ID` when it is a sane token, else generated"),
    Field("trace_id", str, "trace id of the request's root span (hex)"),
    Field("span_id", str, "span id of the request's root span (hex)"),
    Field(
        "trace_sampled",
        bool,
        "the request's trace is exported: head-sampled, or kept by a rule (`trace_keep`)",
    ),
    Field(
        "trace_keep",
        str,
        "keep rules that exported a trace the head sampler did not sample: `error`, `timeout`, "
        "`stuck`, `partial_failure`, `slow`, `n_plus_one` (comma-separated)",
    ),
    Field("req_method", str, "HTTP method", ("http.request.method", "http.method")),
    Field("req_path", str, "URL path, never the query string", ("url.path",)),
    Field("req_route", str, "matched URL pattern, e.g. `/books/<int:pk>/`", ("http.route",)),
    Field("req_referrer", str, "the `Referer` header"),
    Field("req_user_agent", str, "the `User-Agent` header", ("user_agent.original", "http.user_agent")),
    Field("req_bytes", int, "request body size from its `Content-Length` header, when it has one"),
    Field(
        "req_queue_time",
        float,
        "time from the proxy receiving the request (`X-Request-Start` or `X-Queue-Start`: `t=` and "
        "seconds, milliseconds or microseconds) to the worker starting it",
        unit="s",
    ),
    Field(
        "usr_id",
        str,
        "primary key of the authenticated user, when the application loaded `request.user` itself",
    ),
    Field("resp_view", str, "dotted name of the Django view"),
    Field(
        "resp_status",
        int,
        "response status",
        ("http.response.status_code", "http.status_code"),
    ),
    Field("resp_time", float, "wall time of the request, up to the last byte of its body", unit="s"),
    Field(
        "resp_cpu_time",
        float,
        "CPU time of the request's thread (sync and gthread workers: a greenlet or an event loop "
        "shares its thread's clock)",
        unit="s",
    ),
    Field("resp_bytes", int, "body bytes sent to the client (streamed bodies too; 0 for `HEAD`)"),
    Field("resp_aborted", bool, "the body was not sent in full: the client went away first"),
    Field("db_queries", int, "database queries", rollup="db"),
    Field("db_time", float, "total time of the database queries", unit="s", rollup="db"),
    Field("db_dup_queries", int, "queries whose SQL text (placeholders, not params) ran more than once"),
    Field("db_dup_time", float, "total time of those duplicated queries", unit="s"),
    Field("db_dup_sql", str, "the most repeated SQL text (truncated)"),
    Field("db_dup_loc", str, "application frame that issued the most repeated SQL"),
    Field(
        "db_n1_queries",
        int,
        "queries of the largest N+1 run: consecutive executions of one normalised statement after "
        "a different one, at least `CANONICAL_LOGS_N1_MIN_QUERIES` long",
    ),
    Field("db_n1_time", float, "total time of that run's queries", unit="s"),
    Field(
        "db_n1_sql",
        str,
        "that run's statement normalised: literals and placeholders `?`, `IN (...)` (truncated)",
    ),
    Field("db_n1_loc", str, "application frame of the loop that issued the run"),
    Field("tmpl_renders", int, "template renders", rollup="tmpl"),
    Field("tmpl_time", float, "total time of the template renders", unit="s", rollup="tmpl"),
    Field("http_out_calls", int, "outgoing HTTP calls", rollup="http_out"),
    Field("http_out_time", float, "total time of the outgoing HTTP calls", unit="s", rollup="http_out"),
    Field("cache_calls", int, "cache client calls", rollup="cache"),
    Field("cache_time", float, "total time of the cache client calls", unit="s", rollup="cache"),
    Field("partial_failures", int, "`partial_failure` events emitted during the request"),
    Field("exc_type", str, "class name of the uncaught exception"),
    Field("exc_msg", str, "message of the uncaught exception"),
    Field("exc_loc", str, "`path:line:function` where it could last have been handled"),
    Field("exc_cause_loc", str, "`path:line:function` where it was raised"),
    Field("exc_template", str, "`name:line` of the template node that raised"),
    Field("timeout_loc", str, "timeouts: outermost application frame from the view inward"),
    Field("timeout_cause_loc", str, "timeouts: innermost application frame"),
    Field("timeout_span", str, "timeouts: the child span still open at the snapshot"),
    Field("stuck", bool, "on a `request` line that earlier emitted a `stuck` event"),
    Field("g_w_count", int, "Gunicorn workers"),
    Field("g_w_active", int, "Gunicorn workers busy with a request"),
    Field("g_backlog", int, "connections waiting in the listen queue"),
)

# The periodic ``saturation`` event the Gunicorn arbiter writes (no request: none of the fields
# above but ``event_type``), in its key order. Three keys are the request lines' too, summed up
# over the interval instead of sampled.
SATURATION_FIELDS: tuple[Field, ...] = (
    Field("g_w_count", int, "Gunicorn workers at the end of the interval"),
    Field(
        "g_w_active",
        float,
        "workers busy with a request, averaged over the interval: the time each had one or more "
        "requests in flight, from every request's start and end, divided by the interval",
    ),
    Field("g_w_active_max", int, "the most workers busy at once during the interval"),
    Field("g_backlog", int, "the longest listen queue sampled during the interval"),
    Field("g_mem_mib", float, "resident memory of the arbiter and all its workers, summed", unit="MiB"),
    Field("g_w_mem_max_mib", float, "resident memory of the largest worker", unit="MiB"),
    Field("g_requests", int, "requests finished during the interval, all workers"),
    Field("g_timeouts", int, "`timeout` events during the interval"),
    Field("g_restarts", int, "workers that exited during the interval"),
)

KEYS: tuple[str, ...] = tuple(f.key for f in FIELDS)
SATURATION_KEYS: tuple[str, ...] = tuple(f.key for f in SATURATION_FIELDS)
# The aggregate's roll-up categories, in registry order.
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(f.rollup for f in FIELDS if f.rollup))
BY_KEY: dict[str, Field] = {f.key: f for f in FIELDS}
APP_PREFIX = "app_"


def _rows(fields: tuple[Field, ...]) -> list[str]:
    rows = ["| key | type | meaning |", "|---|---|---|"]
    for f in fields:
        kind = f.type.__name__ + (f" {f.unit}" if f.unit else "")
        rows.append(f"| `{f.key}` | {kind} | {f.doc} |")
    return rows


def markdown_table() -> str:
    """The README field table, generated from the registry."""
    rows = _rows(FIELDS)
    rows.append("| `app_*` | any | fields the application sets with `Context.set` / `Context.time` |")
    return "\n".join(rows) + "\n"


def saturation_markdown_table() -> str:
    """The README table of the ``saturation`` event's fields."""
    return "\n".join(_rows(SATURATION_FIELDS)) + "\n"


if __name__ == "__main__":  # python -m otel_canonical_logs.fields [saturation]
    sys.stdout.write(saturation_markdown_table() if sys.argv[1:] == ["saturation"] else markdown_table())
