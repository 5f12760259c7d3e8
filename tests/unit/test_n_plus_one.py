"""db_dup_loc: the application frame that issued the most repeated SQL, walked only on a repeat;
db_n1_*: the largest run of one normalised statement after a different one, walked once per run."""

from __future__ import annotations

import logging
import sys

import pytest
from opentelemetry.trace import SpanContext, SpanKind

from otel_canonical_logs import _frames
from otel_canonical_logs._aggregate import RequestAggregate
from otel_canonical_logs.processor import CanonicalLogProcessor
from tests.unit.conftest import Pipeline

SQL = 'SELECT "name" FROM "author" WHERE "id" = %s'


def _query(pipeline: Pipeline, sql: str = SQL) -> None:
    attrs = {"db.system": "sqlite", "db.statement": sql}
    with pipeline.tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=attrs):
        pass


def test_dup_loc_names_the_innermost_application_frame(pipeline: Pipeline) -> None:
    """db_dup_loc is the innermost application frame that ran the SQL text the second time."""
    attrs = {"db.system": "sqlite", "db.statement": SQL}
    lines = []
    with pipeline.request():
        for _ in range(3):
            with pipeline.tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=attrs):
                lines.append(sys._getframe().f_lineno - 1)  # the `with` line, where the span ends
    expected = _frames.location(__file__, lines[1], "test_dup_loc_names_the_innermost_application_frame")
    assert expected == pipeline.fields()[0]["db_dup_loc"]


def test_stack_is_walked_once_per_repeated_statement(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten runs of one SQL text after three unique ones walk the stack twice: once at the text's
    second run (db_dup_loc), once when the run of ten gets N+1 long (db_n1_loc)."""
    walks: list[object] = []
    real = _frames.caller_location

    def counting(frame: object) -> str | None:
        walks.append(frame)
        return real(frame)  # type: ignore[arg-type]

    monkeypatch.setattr(_frames, "caller_location", counting)
    with pipeline.request():
        for n in range(3):
            _query(pipeline, f"SELECT {n}")
        for _ in range(10):
            _query(pipeline)
    assert 2 == len(walks)


def test_no_dup_loc_without_duplicates(pipeline: Pipeline) -> None:
    """A request whose SQL texts are all distinct has no db_dup_loc."""
    with pipeline.request():
        _query(pipeline, "SELECT 1")
        _query(pipeline, "SELECT 2")
    assert "db_dup_loc" not in pipeline.fields()[0]


# -- db_n1_*: runs of one normalised statement after a different one (Sentry's shape) ----------

BOOKS = 'SELECT "id", "author_id" FROM "book"'


def _aggregate(n1_min: int = 5, n1_min_ns: int = 0) -> RequestAggregate:
    return RequestAggregate(None, SpanContext(1, 1, False), 0, n1_min=n1_min, n1_min_ns=n1_min_ns)


def test_a_loop_after_its_source_query_is_an_n_plus_one_run(pipeline: Pipeline) -> None:
    """One query for the books, then one author lookup per book: the run's count, time, text and
    the loop's line; db_dup_* as before."""
    attrs = {"db.system": "sqlite", "db.statement": SQL}
    lines = []
    with pipeline.request():
        _query(pipeline, BOOKS)
        for _ in range(7):
            with pipeline.tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=attrs):
                lines.append(sys._getframe().f_lineno - 1)  # the `with` line, where the span ends
        _query(pipeline, "SELECT 1")
    fields = pipeline.fields()[0]
    assert 7 == fields["db_n1_queries"]
    assert 'SELECT "name" FROM "author" WHERE "id" = ?' == fields["db_n1_sql"]
    here = "test_a_loop_after_its_source_query_is_an_n_plus_one_run"
    assert _frames.location(__file__, lines[4], here) == fields["db_n1_loc"]
    assert isinstance(fields["db_n1_time"], float)
    assert (7, SQL) == (fields["db_dup_queries"], fields["db_dup_sql"])


def test_inlined_values_make_one_run() -> None:
    """Raw SQL with each author's id inlined is one statement, shown normalised."""
    agg = _aggregate()
    agg.add_query(BOOKS, 10)
    for pk in range(1, 21):
        agg.add_query(f"SELECT name FROM author WHERE id = {pk} AND tag IN ({pk}, {pk + 1})", 100)
    run = agg.n_plus_one()
    assert run is not None
    assert (20, 2000) == (run.count, run.time_ns)
    assert "SELECT name FROM author WHERE id = ? AND tag IN (...)" == run.sql


def test_no_run_without_a_source_query() -> None:
    """The request's first statements repeated are not an N+1 run: nothing was looped over."""
    agg = _aggregate()
    for _ in range(6):
        agg.add_query(SQL, 1)
    assert agg.n_plus_one() is None


def test_a_repeated_session_lookup_is_no_run() -> None:
    """A statement run twice, apart or together, is no N+1 run (db_dup_* still counts it)."""
    agg = _aggregate()
    session = 'SELECT "session_data" FROM "django_session" WHERE "session_key" = %s'
    for sql in (session, BOOKS, session, session, "SELECT 1"):
        agg.add_query(sql, 1)
    assert agg.n_plus_one() is None
    assert 3 == agg.top_repeat()[0]  # the session lookup, 3 times: still db_dup_*


def test_runs_shorter_than_the_minimum_are_not_runs() -> None:
    """Four in a row, the default minimum being five, is no run; interleaving breaks a run."""
    agg = _aggregate()
    agg.add_query(BOOKS, 1)
    for _ in range(4):
        agg.add_query(SQL, 1)
    for _ in range(5):
        agg.add_query(BOOKS, 1)
        agg.add_query(SQL, 1)
    assert agg.n_plus_one() is None


def test_the_largest_run_is_reported() -> None:
    """Of two runs, the longer is the one on the line, whichever came first."""
    agg = _aggregate()
    agg.add_query(BOOKS, 1)
    for _ in range(6):
        agg.add_query(SQL, 1)
    agg.add_query(BOOKS, 1)
    for n in range(9):
        agg.add_query(f"SELECT title FROM book WHERE id = {n}", 1)
    agg.add_query(BOOKS, 1)
    for _ in range(5):
        agg.add_query(SQL, 1)
    run = agg.n_plus_one()
    assert run is not None
    assert (9, "SELECT title FROM book WHERE id = ?") == (run.count, run.sql)


def test_transaction_statements_neither_break_nor_join_a_run() -> None:
    """A loop saving each row in its own savepoint is one run of the UPDATE."""
    agg = _aggregate()
    agg.add_query(BOOKS, 1)
    for n in range(5):
        agg.add_query(f'SAVEPOINT "s{n}"', 1)
        agg.add_query("UPDATE book SET title = %s WHERE id = %s", 1)
        agg.add_query(f'RELEASE SAVEPOINT "s{n}"', 1)
    run = agg.n_plus_one()
    assert run is not None and 5 == run.count


def test_the_minimum_time_leaves_fast_runs_out() -> None:
    """With a minimum total time, a run of quick queries is not reported, a slow one is."""
    agg = _aggregate(n1_min_ns=1000)
    agg.add_query(BOOKS, 1)
    for _ in range(5):
        agg.add_query(SQL, 100)  # 500 ns in all
    assert agg.n_plus_one() is None
    agg.add_query(BOOKS, 1)
    for _ in range(5):
        agg.add_query(SQL, 300)
    run = agg.n_plus_one()
    assert run is not None and 1500 == run.time_ns


def test_reading_the_run_does_not_end_it() -> None:
    """A timeout event reads the run going on; the run keeps counting after it."""
    agg = _aggregate()
    agg.add_query(BOOKS, 1)
    for _ in range(5):
        agg.add_query(SQL, 1)
    first = agg.n_plus_one()
    agg.add_query(SQL, 1)
    last = agg.n_plus_one()
    assert first is not None and last is not None
    assert (5, 6) == (first.count, last.count)


def test_past_the_statement_cap_runs_are_still_found() -> None:
    """Texts past CANONICAL_LOGS_DB_MAX_STATEMENTS are not tracked for db_dup_*, yet their runs
    are N+1 runs."""
    agg = RequestAggregate(None, SpanContext(1, 1, False), 0, max_statements=2)
    agg.add_query(BOOKS, 1)
    agg.add_query("SELECT 1", 1)
    for pk in range(8):
        agg.add_query(f"SELECT name FROM author WHERE id = {pk}", 1)
    run = agg.n_plus_one()
    assert run is not None and 8 == run.count
    assert 2 == len(agg.sql)


@pytest.mark.parametrize(("raw", "expected"), [("3", 3), ("1", 5), ("x", 5), ("", 5)])
def test_min_queries_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str, expected: int
) -> None:
    """CANONICAL_LOGS_N1_MIN_QUERIES: at least 2; a bad value is reported by name, the default used."""
    monkeypatch.setenv("CANONICAL_LOGS_N1_MIN_QUERIES", raw)
    with caplog.at_level(logging.WARNING, logger="otel_canonical_logs"):
        processor = CanonicalLogProcessor(lambda event: None)
    assert expected == processor._n1_min
    bad = raw not in ("3", "")
    assert bad == any("CANONICAL_LOGS_N1_MIN_QUERIES" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("raw", "expected"), [("0.25", 250_000_000), ("-1", 0), ("soon", 0), ("inf", 0)])
def test_min_time_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str, expected: int
) -> None:
    """CANONICAL_LOGS_N1_MIN_TIME in seconds; a bad value is reported by name, the default used."""
    monkeypatch.setenv("CANONICAL_LOGS_N1_MIN_TIME", raw)
    with caplog.at_level(logging.WARNING, logger="otel_canonical_logs"):
        processor = CanonicalLogProcessor(lambda event: None)
    assert expected == processor._n1_min_ns
    bad = raw != "0.25"
    assert bad == any("CANONICAL_LOGS_N1_MIN_TIME" in r.getMessage() for r in caplog.records)
