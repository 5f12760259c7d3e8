"""The one value policy (``_values``): whatever an event holds, every sink gets safe keys and
values it can carry, in place and in order, and normalising twice changes nothing more."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from otel_canonical_logs._values import INT64, TRUNCATION_MARKER, normalise, safe_value

KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.just(Unprintable()),
    st.lists(st.integers(), max_size=3),
)
keys = st.one_of(st.text(min_size=0, max_size=120), st.integers(), st.from_regex(KEY, fullmatch=True))


def _carried(value: Any, max_len: int) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) <= max_len and not any(0xD800 <= ord(c) < 0xE000 for c in value)
    return kind in (bool, float) or (kind is int and value in INT64)


@given(st.dictionaries(keys, values, max_size=12), st.integers(min_value=0, max_value=300))
def test_every_key_and_value_is_one_every_sink_carries(fields: dict[Any, Any], max_len: int) -> None:
    event = dict(fields)
    normalise(event, max_len)
    cap = max(max_len, 32)
    assert all(type(k) is str and KEY.fullmatch(k) for k in event)
    assert all(_carried(v, cap) for v in event.values()), event
    again = dict(event)
    normalise(again, max_len)
    assert again == event and list(again) == list(event)


@given(st.dictionaries(st.from_regex(KEY, fullmatch=True), values, max_size=12))
def test_safe_keys_keep_their_order_and_only_none_is_dropped(fields: dict[str, Any]) -> None:
    event = dict(fields)
    normalise(event, 2048)
    assert list(event) == [k for k, v in fields.items() if v is not None]


def test_text_is_cut_with_the_marker_and_odd_values_become_text() -> None:
    event: dict[Any, Any] = {"v": "x" * 100, "big": 2**70, "o": Unprintable(), "b": b"\xff", "Cart Size": 3}
    normalise(event, 40)
    assert event == {
        "v": "x" * (40 - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER,
        "big": str(2**70),
        "o": "<unrenderable Unprintable>",
        "b": "\ufffd",
        "cart_size": 3,
    }
    assert safe_value("\ud800") == "\ufffd"


@given(st.dictionaries(keys, values, max_size=12), st.integers(min_value=0, max_value=300))
def test_the_sinks_fast_formatters_write_what_the_encoders_write(
    fields: dict[Any, Any], max_len: int
) -> None:
    """The stdout sink formats normalised fields (``format_bytes``); the bytes are the standalone
    encoders' for the same fields, in both formats."""
    from otel_canonical_logs.sinks import jsonl, logfmt

    event = dict(fields)
    normalise(event, max_len)
    assert logfmt.format_bytes(event, max_len) == logfmt.encode_bytes(event, max_len)
    assert jsonl.format_bytes(event, max_len) == jsonl.encode_bytes(event, max_len)
