"""The field registry is the single source of the key order, the README table and the SPEC keys."""

from __future__ import annotations

from pathlib import Path

from otel_canonical_logs.fields import (
    FIELDS,
    KEYS,
    SATURATION_FIELDS,
    SATURATION_KEYS,
    markdown_table,
    saturation_markdown_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"

# The keys of the SPEC's field table, in its order.
SPEC_KEYS = [
    "event_type",
    "req_id",
    "trace_id",
    "span_id",
    "req_method",
    "req_path",
    "req_route",
    "req_referrer",
    "req_user_agent",
    "resp_view",
    "resp_status",
    "resp_time",
    "resp_cpu_time",
    "db_queries",
    "db_time",
    "db_dup_queries",
    "db_dup_time",
    "db_dup_sql",
    "db_dup_loc",
    "tmpl_renders",
    "tmpl_time",
    "http_out_calls",
    "http_out_time",
    "cache_calls",
    "cache_time",
    "partial_failures",
    "exc_type",
    "exc_msg",
    "exc_loc",
    "exc_cause_loc",
    "exc_template",
    "timeout_loc",
    "timeout_cause_loc",
    "timeout_span",
    "stuck",
    "g_w_count",
    "g_w_active",
    "g_backlog",
]


def test_readme_table_is_generated_from_the_registry() -> None:
    """The table between the README's field markers is exactly what the registry renders."""
    text = README.read_text()
    start = text.index("<!-- fields:start -->\n") + len("<!-- fields:start -->\n")
    end = text.index("<!-- fields:end -->")
    assert markdown_table() == text[start:end]


def test_readme_saturation_table_is_generated_from_the_registry() -> None:
    """The saturation event's table in the README is exactly what its registry renders."""
    text = README.read_text()
    marker = "<!-- saturation-fields:start -->\n"
    start = text.index(marker) + len(marker)
    end = text.index("<!-- saturation-fields:end -->")
    assert saturation_markdown_table() == text[start:end]


def test_saturation_event_has_the_specs_keys_in_order() -> None:
    """The saturation event's keys are the SPEC's, in its order, each valid and registered once."""
    from otel_canonical_logs.sinks.logfmt import sanitize_key

    spec = ["g_w_count", "g_w_active", "g_w_active_max", "g_backlog", "g_mem_mib", "g_w_mem_max_mib"]
    assert [*spec, "g_requests", "g_timeouts", "g_restarts"] == list(SATURATION_KEYS)
    assert [f.key for f in SATURATION_FIELDS] == [sanitize_key(f.key) for f in SATURATION_FIELDS]
    assert "saturation" in FIELDS[0].doc


# Keys added by issues after the SPEC's table (each names the issue that asked for it).
ISSUE_KEYS = {
    "resp_aborted": 11,  # the client went away before the body was sent in full
    "trace_sampled": 14,  # the trace is exported (head-sampled or kept)
    "trace_keep": 14,  # the keep rules that exported an unsampled trace
    "req_bytes": 15,  # the request's Content-Length
    "req_queue_time": 15,  # queued before the worker started it (X-Request-Start)
    "usr_id": 15,  # the user the application loaded
    "resp_bytes": 15,  # body bytes sent
    "db_n1_queries": 15,  # N+1 runs, as Sentry's detector finds them
    "db_n1_time": 15,
    "db_n1_sql": 15,
    "db_n1_loc": 15,
}


def test_registry_has_every_spec_key_in_spec_order() -> None:
    """Every SPEC key is registered once, in the SPEC's order, event_type first; the only other
    keys are the ones later issues added."""
    assert SPEC_KEYS == [k for k in KEYS if k not in ISSUE_KEYS]
    assert set(ISSUE_KEYS) <= set(KEYS)
    assert len(set(KEYS)) == len(KEYS)


def test_registry_keys_are_valid_logfmt_keys() -> None:
    """Keys are lowercase identifiers, so the encoder never has to rewrite them."""
    from otel_canonical_logs.sinks.logfmt import sanitize_key

    assert [f.key for f in FIELDS] == [sanitize_key(f.key) for f in FIELDS]
