"""A failure inside the request changes nothing for the request, and it keeps its line (README,
"Guarantees"): a raising enricher, ``Context`` values no sink can carry as they are, template and
database errors, an exception message holding a lone surrogate; on SQLite and PostgreSQL, each
compared with the uninstrumented twin, the odd values followed to the OTLP record and span.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.harness import GunicornServer
from tests.integration.reliability import Start, counts, event_where, get, internal_errors
from tests.otlp_receiver import HTTPReceiver

FAULTY = {
    "raising enricher": "/enrich-boom/",
    "unencodable Context values": "/fault/context/",
    "exception in a template": "/receipt/?broken=heading",
    "exception in an included template": "/receipt/?broken=line",
    "DB error, caught": "/fault/db-error/",
    "DB error, uncaught": "/fault/db-error/?uncaught=1",
    "exception in a helper": "/boom/",
    "non-UTF-8 file name in the exception": "/fault/file-name/",
}


@pytest.fixture(scope="module")
def fault_twins(db_env: dict[str, str]) -> Iterator[tuple[GunicornServer, GunicornServer, HTTPReceiver]]:
    """Per database: the example app with its enrichers (one raises), exporting to a real OTLP
    receiver; and its uninstrumented twin."""
    env = {**db_env, "EXAMPLE_INSTRUMENTERS": "1"}
    with HTTPReceiver() as receiver:
        export = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
        with (
            GunicornServer(env={**env, **export}) as ours,
            GunicornServer(env=env, instrument=False) as plain,
        ):
            yield ours, plain, receiver


@pytest.mark.parametrize("path", list(FAULTY.values()), ids=list(FAULTY))
def test_faulty_request_is_answered_as_without_us_and_has_its_line(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver], path: str
) -> None:
    """Whatever goes wrong inside the request, its status and body are those of the
    uninstrumented app, and its line is written with that status."""
    ours, plain, _ = fault_twins
    rid = uuid.uuid4().hex
    theirs = get(plain, path)
    mine = get(ours, path, rid)
    assert (theirs.status_code, theirs.content) == (mine.status_code, mine.content)
    event = event_where(ours, "req_id", rid)
    assert ("request", str(mine.status_code)) == (event["event_type"], event["resp_status"])


def test_raising_enricher_is_undone_counted_and_logged_once(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """An enricher raising on every request: each line is written without its changes, every
    failure is counted, and stderr has one internal-error report for it."""
    ours, _, _ = fault_twins
    kind = "enricher.shop.instrumenters.flaky_enricher"
    already = counts(ours)["counts"].get(kind, 0)
    rids = [uuid.uuid4().hex for _ in range(3)]
    for rid in rids:
        assert 200 == get(ours, "/enrich-boom/", rid).status_code
    assert ["dev"] * 3 == [event_where(ours, "req_id", rid)["app_release"] for rid in rids]
    assert already + 3 == counts(ours)["counts"][kind]
    assert [kind] == [kind for line in internal_errors(ours) if kind in line]


def test_unencodable_context_values_reach_every_sink(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """Context.set with a lone surrogate, an object whose __str__ raises, invalid UTF-8 bytes,
    NaN and a 100-bit int: the line, the OTLP record and the root span all carry them, made safe
    (the exporter would drop an attribute holding a lone surrogate)."""
    ours, _, receiver = fault_twins
    rid = uuid.uuid4().hex
    assert 200 == get(ours, f"/fault/context/?marker={rid}", rid).status_code
    expected = {
        "app_surrogate": "a\ufffdb",
        "app_no_text": "<unrenderable _NoText>",
        "app_raw_bytes": "\ufffd\ufffd\x00ok",
        "app_huge": str(2**100),
        "app_marker": rid,
    }
    event = event_where(ours, "req_id", rid)
    assert expected == {key: event[key] for key in expected}
    assert "nan" == event["app_nan"]
    record = receiver.wait_for(
        lambda r: next((x for x in r.logs() if x.attributes.get("req_id") == rid), None)
    )
    assert expected == {key: record.attributes.get(key) for key in expected}
    root = receiver.wait_for(
        lambda r: next((s for s in r.spans() if s.attributes.get("canonical.app_marker") == rid), None)
    )
    assert expected == {key: root.attributes.get("canonical." + key) for key in expected}


def test_exception_message_with_a_lone_surrogate_is_exported(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """An uncaught error whose message holds a lone surrogate (a file name that is not UTF-8):
    the line and the OTLP record both carry the message, the surrogate replaced."""
    ours, _, receiver = fault_twins
    rid = uuid.uuid4().hex
    assert 500 == get(ours, "/fault/file-name/", rid).status_code
    expected = "no report named report-\ufffd.csv"
    assert expected == event_where(ours, "req_id", rid)["exc_msg"]
    record = receiver.wait_for(
        lambda r: next((x for x in r.logs() if x.attributes.get("req_id") == rid), None)
    )
    assert expected == record.attributes.get("exc_msg")


def test_error_status_with_a_lone_surrogate_costs_no_other_trace(
    gunicorn: Start, sqlite_env: dict[str, str]
) -> None:
    """A request whose uncaught error message holds a lone surrogate (which OTel puts into the root
    span's status) exports with the requests batched beside it: every trace arrives, its own too."""
    with HTTPReceiver() as receiver:
        # One batch for all: exported when the 2 s schedule delay is up, or at shutdown.
        export = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "2000"}
        server = gunicorn(env={**sqlite_env, **export})
        paths = ["/ok/"] * 3 + ["/fault/file-name/"] + ["/ok/"] * 3
        rids = [uuid.uuid4().hex for _ in paths]
        for path, rid in zip(paths, rids, strict=True):
            get(server, path, rid)
        traces = {event_where(server, "req_id", rid)["trace_id"] for rid in rids}
        received = receiver.wait_for(lambda r: traces <= {s.trace_id for s in r.spans()} and traces)
        assert 7 == len(received)
        server.stop()  # while the receiver is up: the worker's last flush is quick


def test_db_error_mid_request_is_on_the_line(
    fault_twins: tuple[GunicornServer, GunicornServer, HTTPReceiver],
) -> None:
    """A query failing between two good ones is counted with them; uncaught, it is the line's
    exception."""
    ours, _, _ = fault_twins
    caught, uncaught = uuid.uuid4().hex, uuid.uuid4().hex
    assert 200 == get(ours, "/fault/db-error/", caught).status_code
    assert 500 == get(ours, "/fault/db-error/?uncaught=1", uncaught).status_code
    event = event_where(ours, "req_id", caught)
    assert int(event["db_queries"]) >= 3 and not any(k.startswith("exc_") for k in event)
    event = event_where(ours, "req_id", uncaught)
    assert event["exc_type"] in ("OperationalError", "ProgrammingError")
    assert "shop_no_such_table" in event["exc_msg"]
    assert event["exc_loc"].startswith("shop/views.py:") and event["exc_loc"].endswith(":fault_db_error")
