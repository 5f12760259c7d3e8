"""One request's aggregate: what its child spans and the fast paths measured, and the arithmetic
that adds it up. The processor maps spans to aggregates; the instrumentation reports what it
measured (``add_query``, ``add``, ``begin``/``end``); the event reads the totals (``event.py``,
driven by the field registry)."""

from __future__ import annotations

import sys
import threading
import time
from time import time_ns
from typing import Any

from opentelemetry.trace import SpanContext

from . import _frames, _otel, _sql
from .fields import CATEGORIES

# What Django sends (or logs) to manage transactions, on every backend it ships: counted as
# queries, never the N+1 smell.
_TRANSACTION_STATEMENTS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")
_ZERO = dict.fromkeys(CATEGORIES, 0)
DEFAULT_MAX_STATEMENTS = 500
DEFAULT_N1_MIN_QUERIES = 5
# The records of a request not recorded: shared and never appended to (every append happens only
# once ``records`` is set, and ``record_for``/``defer_queries`` give the request its own lists).
_NOTHING: list[Any] = []


class SqlStat:
    """Executions and total time of one SQL text within a request."""

    __slots__ = ("count", "loc", "norm", "time_ns")

    def __init__(self, norm: str) -> None:
        self.count = 0
        self.time_ns = 0
        # Application frame of its second run (path:line:function); the N+1 call site.
        self.loc: str | None = None
        # The text normalised (``_sql``): what an N+1 run of it is recognised by.
        self.norm = norm


class N1Run:
    """An N+1 run: consecutive executions of one normalised statement after another statement."""

    __slots__ = ("count", "loc", "sql", "time_ns")

    def __init__(self, sql: str, count: int, time_ns: int, loc: str | None) -> None:
        self.sql = sql
        self.count = count
        self.time_ns = time_ns
        self.loc = loc


class InFlight:
    """An operation measured without a span (the fast path's query or render): while it runs,
    what a timeout snapshot names if it never returns; in a request recorded for keeping, also
    what its span is made of if the trace is kept (``_keep.py``)."""

    __slots__ = ("end_ns", "error", "kind", "parent", "source", "start_ns", "tb", "text")

    def __init__(self, text: object, kind: str = "db", source: Any = None) -> None:
        self.text = text
        self.kind = kind  # "db" or "tmpl"
        # db: the connection's dbapi CursorTracer; tmpl: the render's depth (0: outermost).
        self.source = source
        self.start_ns = 0
        self.end_ns = 0
        # The span (or the enclosing span-less render, an InFlight) it ran under.
        self.parent: Any = None
        self.error: BaseException | None = None
        # The error's traceback as it left the operation (it grows as the error propagates).
        self.tb: Any = None


class RequestAggregate:
    """Everything one request has produced so far; freed when its line is written."""

    __slots__ = (
        "counts",
        "cpu_start",
        "delivered",
        "done",
        "ended",
        "environ",
        "exc",
        "exported",
        "fields",
        "in_flight",
        "keep",
        "kept",
        "max_records",
        "max_statements",
        "n1",
        "n1_min",
        "n1_min_ns",
        "ops",
        "query_slot",
        "records",
        "renders",
        "root_context",
        "root_end_ns",
        "root_span",
        "run_count",
        "run_loc",
        "run_norm",
        "run_ns",
        "run_source",
        "scope",
        "spans",
        "spans_wanted",
        "sql",
        "start_ns",
        "thread_id",
        "times",
    )

    def __init__(
        self,
        root_span: Any,
        root_context: SpanContext,
        start_ns: int,
        max_statements: int = DEFAULT_MAX_STATEMENTS,
        n1_min: int = DEFAULT_N1_MIN_QUERIES,
        n1_min_ns: int = 0,
    ) -> None:
        self.root_span = root_span
        self.root_context = root_context
        self.start_ns = start_ns
        self.thread_id = threading.get_ident()
        # None where the thread's CPU clock is shared (greenlets, an event loop's thread).
        self.cpu_start: float | None = time.thread_time()
        # Fields set directly by the request path (req_*, resp_view, app_*), in arrival order.
        self.fields: dict[str, Any] = {}
        # Operations and their total time (ns) per roll-up category of the field registry.
        self.counts = _ZERO.copy()
        self.times = _ZERO.copy()
        self.sql: dict[str, SqlStat] = {}
        self.max_statements = max_statements
        # N+1 runs (Sentry's shape): the run of one normalised statement going on now — whether
        # another statement came before it (its source), its length, time and, once it is
        # ``n1_min`` long, the loop's frame — and the largest run that qualified so far.
        self.n1_min = n1_min
        self.n1_min_ns = n1_min_ns
        self.run_norm: str | None = None
        self.run_source = False
        self.run_count = 0
        self.run_ns = 0
        self.run_loc: str | None = None
        self.n1: N1Run | None = None
        self.exc: BaseException | None = None
        # The request's WSGI environ, for instrumenters' call(req, resp, environ).
        self.environ: Any = None
        # Child spans (by span id) and span-less operations (by themselves) started and not yet
        # ended, in start order: a timeout snapshot names the innermost one (the query that hung).
        self.in_flight: dict[object, Any] = {}
        # The fast path's query while it runs (django_db._run puts it in ``in_flight``).
        self.query_slot: InFlight | None = None  # made by the first such query
        # Set once the request's event went out early (a timeout): the root's end emits nothing.
        self.done = False
        # Whether the request's spans go anywhere: its trace is sampled and (see the processor)
        # some span processor besides ours receives spans. Read per query and per render: when
        # False they are timed and counted without spans.
        self.spans_wanted = bool(root_context.trace_flags.sampled)
        # Set when the request is over and its line written: later queries are no longer its own.
        # The root span may end earlier (a streamed body is sent after the view returned): then
        # ``root_end_ns`` is set and the server layer finishes the request when the body is sent.
        self.ended = False
        self.root_end_ns: int | None = None
        # The server layer's RequestScope (gunicorn/wsgi.py, gunicorn/asgi.py), when one saw it.
        self.scope: Any = None
        # Whether the trace is exported as it goes (head-sampled, and some processor but ours
        # receives spans); else, with ``keep`` (the keep policy) set, the request is recorded —
        # its ended child spans in ``spans``, its span-less operations in ``ops`` — so that its
        # whole trace can be exported at the end if a keep rule fires (``kept``: the rules).
        self.exported = self.spans_wanted
        self.keep: Any = None
        self.kept: list[str] | None = None
        self.delivered = False
        # Lists of their own only once the request is recorded (``record_for``): no allocation
        # for the others.
        self.spans: list[Any] = _NOTHING
        self.ops: list[InFlight] = _NOTHING
        self.renders: list[InFlight] = _NOTHING  # the span-less renders running now, innermost last
        self.max_records = 1000
        # Whether span-less operations are recorded (times, parent, error) in ``ops``: for
        # keeping, or — an exported request's queries (``defer_queries``) — to be made into
        # spans when the request ends instead of live spans.
        self.records = False

    def record_for(self, policy: Any, max_records: int) -> None:
        """Record this request (child spans, span-less operations) for the keep ``policy``."""
        self.keep = policy
        self.max_records = max_records
        self.records = True
        self.spans, self.ops, self.renders = [], [], []

    def defer_queries(self, max_records: int) -> None:
        """Record this exported request's queries, whose spans are made at its end (or each time
        ``max_records`` of them are waiting) from the records: a query is a leaf, so no live
        span is needed while it runs."""
        self.max_records = max_records
        self.records = True
        self.ops, self.renders = [], []

    # -- what the instrumentation reports ------------------------------------------------------

    def add(self, category: str, elapsed: int, timed: bool = True) -> None:
        """One operation of a roll-up category (``tmpl``, ``http_out``, ``cache``); ``timed``
        false for one whose time is already in another's (a render inside a render)."""
        self.counts[category] += 1
        if timed:
            self.times[category] += elapsed

    def add_query(self, statement: object, elapsed: int) -> None:
        """One query: totals, per SQL text for the repeats (``db_dup_*``), and the run of its
        normalised text for N+1 runs (``db_n1_*``).

        Called on the thread that ran the query, right after it, so the caller's frames are
        still on the stack for the call site of a repeat. A text is normalised once per request
        (and per process, ``_sql.normalised``); the stack is walked at a text's second run and
        once per N+1 run, when it gets ``n1_min`` long.
        """
        self.counts["db"] += 1
        self.times["db"] += elapsed
        if not isinstance(statement, str) or statement.startswith(_TRANSACTION_STATEMENTS):
            return
        stat = self.sql.get(statement)
        if stat is None:
            if len(self.sql) >= self.max_statements:
                norm = _sql.normalised(statement)
            else:
                stat = self.sql[statement] = SqlStat(_sql.normalised(statement))
                norm = stat.norm
        else:
            norm = stat.norm
        if stat is not None:
            stat.count += 1
            stat.time_ns += elapsed
            if stat.count == 2:
                # Only a repeat pays for a stack walk.
                stat.loc = _frames.caller_location(sys._getframe(1))
        if norm == self.run_norm:
            self.run_count += 1
            self.run_ns += elapsed
            if self.run_count == self.n1_min and self.run_source:
                self.run_loc = _frames.caller_location(sys._getframe(1))
            return
        if self.run_count >= self.n1_min:
            self._end_run()
        # A statement before this one (its source) makes the run that starts here an N+1 run
        # once it is long enough; a request's first statement starts none.
        self.run_source = self.run_norm is not None
        self.run_norm = norm
        self.run_count = 1
        self.run_ns = elapsed
        self.run_loc = None

    def _end_run(self) -> None:
        """The run going on has ended at ``n1_min`` queries or more."""
        self.n1 = self._largest_run()

    def _largest_run(self) -> N1Run | None:
        """The largest qualified run: the one going on, if it qualifies and is larger."""
        best = self.n1
        norm = self.run_norm
        if (
            norm is None
            or not self.run_source
            or self.run_count < self.n1_min
            or self.run_ns < self.n1_min_ns
            or (best is not None and (self.run_count, self.run_ns) <= (best.count, best.time_ns))
        ):
            return best
        return N1Run(norm, self.run_count, self.run_ns, self.run_loc)

    def begin(self, text: object, kind: str = "db", ctx: Any = None, source: Any = None) -> InFlight:
        """A span-less operation starts (``text``: what a snapshot shows, the SQL or the
        render's name; ``ctx``: the current OTel context); pass what it returns to :meth:`end`."""
        op = InFlight(text, kind, source)
        self.in_flight[op] = op
        if self.records:
            op.start_ns = time_ns()
            renders = self.renders
            op.parent = renders[-1] if renders else (_otel.span_in(ctx) if ctx is not None else None)
            if kind == "tmpl":
                renders.append(op)
        return op

    def end(self, op: InFlight, error: BaseException | None = None) -> None:
        self.in_flight.pop(op, None)
        if self.records:
            op.end_ns = time_ns()
            if error is not None:
                op.error, op.tb = error, error.__traceback__
            if op.kind == "tmpl" and self.renders and self.renders[-1] is op:
                self.renders.pop()
            self.record(op)

    def record(self, item: Any) -> None:
        """Keep an ended child span or span-less operation for a trace that may be kept."""
        target = self.ops if isinstance(item, InFlight) else self.spans
        if len(self.ops) + len(self.spans) < self.max_records:
            target.append(item)
        else:
            self.counts_dropped()

    def counts_dropped(self) -> None:
        from . import _guard

        _guard.count("dropped.keep_record_cap")

    def innermost(self) -> Any:
        """The operation started last and still running: a span, or an :class:`InFlight`."""
        running = list(self.in_flight.values())
        return running[-1] if running else None

    # -- what the event reads ------------------------------------------------------------------

    def top_repeat(self) -> tuple[int, int, str, str | None]:
        """(queries of repeated SQL texts, their time, the most repeated text, its call site)."""
        dup_count = dup_ns = 0
        top_sql, top_count, top_loc = "", 1, None
        for sql, stat in self.sql.items():
            if stat.count > 1:
                dup_count += stat.count
                dup_ns += stat.time_ns
                if stat.count > top_count:
                    top_sql, top_count, top_loc = sql, stat.count, stat.loc
        return dup_count, dup_ns, top_sql, top_loc

    def n_plus_one(self) -> N1Run | None:
        """The largest N+1 run of the request so far, the one still going on included."""
        return self._largest_run()
