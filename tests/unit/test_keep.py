"""The keep rules and their settings: which rules fire for which request, in the documented order,
and what a bad setting does."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.trace import SpanContext, TraceFlags

from otel_canonical_logs import _env
from otel_canonical_logs._aggregate import RequestAggregate
from otel_canonical_logs._keep import RULES, Policy, decide

CTX = SpanContext(0x1, 0x2, False, TraceFlags(0))


def _state(queries: int = 0, same: bool = True, source: bool = True) -> RequestAggregate:
    """``queries`` runs of one lookup (``same``) or of as many different ones, after a query
    of another statement (``source``: the rows looped over)."""
    state = RequestAggregate(None, CTX, 0)
    if source and queries:
        state.add_query("SELECT id FROM book", 10)
    for n in range(queries):
        state.add_query(f"SELECT name FROM author WHERE id = {n}" if same else f"SELECT * FROM t{n}", 10)
    return state


@pytest.mark.parametrize(
    ("event_type", "values", "queries", "expected"),
    [
        ("request", {"resp_status": 200, "resp_time": 0.01}, 0, []),
        ("request", {"resp_status": 503, "resp_time": 0.01}, 0, ["error"]),
        ("timeout", {}, 0, ["timeout"]),
        ("stuck", {}, 0, ["stuck"]),
        ("request", {"stuck": True, "resp_status": 200}, 0, ["stuck"]),
        ("request", {"partial_failures": 2, "resp_status": 200}, 0, ["partial_failure"]),
        ("request", {"resp_time": 2.0}, 0, ["slow"]),
        ("request", {"resp_time": 1.99}, 4, []),
        ("request", {"resp_time": 0.1}, 5, ["n_plus_one"]),
        (
            "request",
            {"resp_status": 500, "resp_time": 3.0, "partial_failures": 1},
            6,
            ["error", "partial_failure", "slow", "n_plus_one"],
        ),
    ],
)
def test_rules_fire_in_order(
    event_type: str, values: dict[str, object], queries: int, expected: list[str]
) -> None:
    assert expected == Policy().fired(event_type, dict(values), _state(queries))


def test_distinct_statements_are_no_n_plus_one() -> None:
    assert [] == Policy().fired("request", {"resp_time": 0.1}, _state(8, same=False))


def test_a_repeated_first_statement_is_no_n_plus_one() -> None:
    """The rule is the N+1 run of ``db_n1_*``: repeats with no other statement before them
    are no loop over earlier rows."""
    assert [] == Policy().fired("request", {"resp_time": 0.1}, _state(8, source=False))


def test_only_the_rules_in_force_fire_and_earlier_ones_are_remembered() -> None:
    state = _state()
    state.record_for(Policy(("stuck", "error")), 1000)
    stuck: dict[str, object] = {}
    decide("stuck", stuck, state)
    assert (True, "stuck") == (stuck["trace_sampled"], stuck["trace_keep"])
    line: dict[str, object] = {"resp_status": 500, "resp_time": 9.0}  # slow is not in force
    decide("request", line, state)
    assert (True, "error,stuck") == (line["trace_sampled"], line["trace_keep"])


def test_an_unsampled_request_without_keeping_says_so_and_a_sampled_one_needs_no_rule() -> None:
    line: dict[str, object] = {"resp_status": 500}
    decide("request", line, _state())
    assert {"resp_status": 500, "trace_sampled": False} == line
    sampled = _state()
    sampled.exported = True
    decide("request", line, sampled)
    assert line["trace_sampled"] is True and "trace_keep" not in line


def test_keep_settings(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(_env.CANONICAL_LOGS_KEEP, " Slow, error ,bogus")
    monkeypatch.setenv(_env.CANONICAL_LOGS_KEEP_SLOW, "-1")
    with caplog.at_level(logging.WARNING, logger="otel_canonical_logs"):
        policy = Policy.from_env()
    assert (frozenset({"slow", "error"}), 2.0) == (policy.rules, policy.slow_s)
    assert {"CANONICAL_LOGS_KEEP: bogus", "CANONICAL_LOGS_KEEP_SLOW='-1'"} <= {
        r.getMessage().split(" not ")[0].split(" is")[0] for r in caplog.records
    }
    monkeypatch.setenv(_env.CANONICAL_LOGS_KEEP, "none")
    assert not Policy.from_env().rules
    monkeypatch.delenv(_env.CANONICAL_LOGS_KEEP)
    assert set(RULES) == Policy.from_env().rules
