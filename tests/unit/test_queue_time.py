"""req_queue_time from X-Request-Start / X-Queue-Start: every format proxies send, the unit told
apart by magnitude, small skew clamped, absurd values left off and counted; req_bytes and the
no-body rule of resp_bytes."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_canonical_logs import _guard
from otel_canonical_logs._http import (
    body_bytes,
    content_length,
    fields_from_asgi,
    fields_from_environ,
    queue_time,
    request_start,
)

# From 2001 to 2200, in microseconds: every instant a proxy can stamp.
instants_us = st.integers(min_value=978_307_200_000_000, max_value=7_258_118_400_000_000)


@given(instants_us, st.booleans())
def test_microseconds(us: int, prefixed: bool) -> None:
    """``t=<µs>`` (Apache's ``%t``) and a bare µs number read as that instant."""
    value = f"t={us}" if prefixed else str(us)
    assert request_start(value) == pytest.approx(us / 1e6, abs=1e-6)


@given(instants_us, st.booleans())
def test_milliseconds(us: int, prefixed: bool) -> None:
    """``t=<ms>`` (HAProxy) and a bare ms number (Heroku's router) read as that instant."""
    ms = us // 1000
    value = f"t={ms}" if prefixed else str(ms)
    assert request_start(value) == pytest.approx(ms / 1e3, abs=1e-6)


@given(instants_us, st.booleans(), st.integers(min_value=0, max_value=6))
def test_seconds_with_a_fraction(us: int, prefixed: bool, places: int) -> None:
    """``t=<s.fff>`` (nginx's ``$msec``) and bare seconds, with any number of decimals."""
    seconds = f"{us / 1e6:.{places}f}"
    value = f"t={seconds}" if prefixed else seconds
    assert request_start(value) == pytest.approx(float(seconds), abs=1e-6)


@given(instants_us, st.sampled_from([" D=1234", ",x", ";", "  ", "\t"]))
def test_what_follows_the_number_is_ignored(us: int, tail: str) -> None:
    """Fields after the timestamp (Apache's ``D=``) do not stop it being read."""
    assert request_start(f"  t={us}{tail}") == pytest.approx(us / 1e6, abs=1e-6)


@pytest.mark.parametrize(
    "value",
    ["", "t=", "abc", "t=-5", "t=1e15", "t=12", "t=0", "nan", "1700000000.5.5", "1700000000x", "t=١٢٣"],
)
def test_not_a_timestamp(value: str) -> None:
    """Anything else is no timestamp (too small to be after 2000, signed, exponent, junk)."""
    assert request_start(value) is None


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused(value: str) -> None:
    """No header value makes the parser raise; what it accepts is after the year 2000."""
    started = request_start(value)
    assert started is None or started >= 946_684_800.0


@given(st.floats(min_value=0, max_value=3599.99))
def test_a_wait_under_an_hour_is_the_difference(waited: float) -> None:
    """Up to an hour, the wait is our start minus the proxy's stamp."""
    assert queue_time(1_700_000_000.0, 1_700_000_000.0 + waited) == pytest.approx(waited, abs=1e-6)


@given(st.floats(min_value=0, max_value=1.0))
def test_a_proxy_clock_up_to_a_second_ahead_gives_zero(ahead: float) -> None:
    """Small skew (the proxy's clock a little ahead of ours) is clamped at 0."""
    assert 0.0 == queue_time(1_700_000_000.0 + ahead, 1_700_000_000.0)


@given(st.one_of(st.floats(min_value=1.001, max_value=1e9), st.floats(min_value=-1e9, max_value=-3600.0)))
def test_absurd_skew_is_refused(ahead: float) -> None:
    """Ahead by more than a second, or an hour or more behind: no wait can be told."""
    assert queue_time(1_700_000_000.0 + ahead, 1_700_000_000.0) is None


def test_the_field_measures_the_injected_delay() -> None:
    """A request stamped 0.25 s ago, in each header and format, has req_queue_time 0.25 s."""
    now = time.time()
    stamped = now - 0.25
    for header in ("HTTP_X_REQUEST_START", "HTTP_X_QUEUE_START"):
        for value in (
            f"t={int(stamped * 1e6)}",
            f"t={int(stamped * 1e3)}",
            f"t={stamped:.3f}",
            str(int(stamped * 1e3)),
        ):
            fields = fields_from_environ({"PATH_INFO": "/", header: value})
            assert fields["req_queue_time"] == pytest.approx(0.25, abs=0.05), (header, value)


def test_the_wait_ends_when_the_worker_started_the_request() -> None:
    """``started`` (monotonic) is when the worker took the request: time since is not queueing."""
    stamped = time.time() - 0.5
    started = time.monotonic() - 0.3  # the worker took it 0.3 s ago, 0.2 s after the proxy
    fields = fields_from_environ({"HTTP_X_REQUEST_START": f"t={stamped:.6f}"}, started=started)
    assert fields["req_queue_time"] == pytest.approx(0.2, abs=0.05)


def test_absurd_skew_is_counted_and_left_off() -> None:
    """A stamp two hours old gives no field and one ``dropped.queue_time_skew``."""
    before = _guard.error_counts().get("dropped.queue_time_skew", 0)
    fields = fields_from_environ({"HTTP_X_REQUEST_START": f"t={time.time() - 7200:.3f}"})
    assert "req_queue_time" not in fields
    assert before + 1 == _guard.error_counts()["dropped.queue_time_skew"]


def test_x_queue_start_is_read_when_x_request_start_is_unreadable() -> None:
    """The first header that parses is the one used."""
    stamped = time.time() - 0.1
    environ = {"HTTP_X_REQUEST_START": "garbage", "HTTP_X_QUEUE_START": f"t={stamped:.3f}"}
    assert fields_from_environ(environ)["req_queue_time"] == pytest.approx(0.1, abs=0.05)


def test_asgi_scope_headers() -> None:
    """The same fields from an ASGI scope's headers."""
    stamped = time.time() - 0.2
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"x-request-start", f"t={int(stamped * 1e6)}".encode()), (b"content-length", b"12")],
    }
    fields = fields_from_asgi(scope)
    assert fields["req_queue_time"] == pytest.approx(0.2, abs=0.05)
    assert 12 == fields["req_bytes"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("123", 123),
        (" 42 ", 42),
        (b"7", 7),
        ("", None),
        ("-1", None),
        ("1e3", None),
        ("²", None),
        ("9" * 20, None),
    ],
)
def test_content_length(value: str | bytes, expected: int | None) -> None:
    """Content-Length values that are a byte count, and only those."""
    assert expected == content_length(value)


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("GET", 200, 10),
        ("HEAD", 200, 0),
        ("GET", 204, 0),
        ("GET", 304, 0),
        ("GET", 101, 0),
        ("POST", 500, 10),
        ("GET", None, 10),
    ],
)
def test_body_bytes(method: str, status: int | None, expected: int) -> None:
    """Servers send no body for HEAD and for 1xx/204/304, whatever the application produced."""
    assert expected == body_bytes(method, status, 10)
