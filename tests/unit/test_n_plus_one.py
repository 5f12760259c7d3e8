"""db_dup_loc: the application frame that issued the most repeated SQL, walked only on a repeat."""

from __future__ import annotations

import sys

import pytest
from opentelemetry.trace import SpanKind

from otel_canonical_logs import _frames
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
    """Ten runs of one SQL text and three unique ones walk the stack exactly once."""
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
    assert 1 == len(walks)


def test_no_dup_loc_without_duplicates(pipeline: Pipeline) -> None:
    """A request whose SQL texts are all distinct has no db_dup_loc."""
    with pipeline.request():
        _query(pipeline, "SELECT 1")
        _query(pipeline, "SELECT 2")
    assert "db_dup_loc" not in pipeline.fields()[0]
