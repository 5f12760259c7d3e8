"""Tests for the logfmt sink encoder, judged by the strict decoder in tests/logfmt_strict.py."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

try:
    from otel_canonical_logs.sinks.logfmt import (
        TRUNCATION_MARKER,
        encode,
        encode_bytes,
        sanitize_key,
    )
    from tests.logfmt_strict import decode_line
except ImportError:  # pragma: no cover - only when PYTHONPATH is not set up
    _ROOT = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(_ROOT / "src"), str(_ROOT)]
    from otel_canonical_logs.sinks.logfmt import (
        TRUNCATION_MARKER,
        encode,
        encode_bytes,
        sanitize_key,
    )
    from tests.logfmt_strict import decode_line

KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,99}")
MIN_MAX_LEN = 32
DEFAULT_MAX_LEN = 2048

TRICKY_CHARS = [
    '"', "\\", "\n", "\r", "\t", "\x00", "\x0b", "\x0c", "\x1b", "\x1c", "\x1d",
    "\x1e", "\x7f", "\x85", "\u2028", "\u2029", "\ud800", "\udbff", "\udc00",
    "\udfff", "=", " ", "\ufffd", "\U0001f600", "\u00e9",
]  # fmt: skip
LOOKALIKES = [
    'x" event_type="evil',
    "a=b",
    'k="v"',
    "\\",
    'x\\"',
    '" ',
    "\\u0041",
    "\\ud83d\\ude00",
    "\n" + 'status="500"',
    "...[truncated]",
]

CHARS = st.one_of(
    st.sampled_from(TRICKY_CHARS),
    st.characters(codec=None),
    st.characters(categories=["Cs"]),
)
KEY_CHARS = st.one_of(CHARS, st.sampled_from('abzAZ09_.-=" '))


def texts(chars: st.SearchStrategy[str], min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    # st.text(one_of(characters(...), ...)) merges the alphabets into one flat
    # code point range, which almost never yields a surrogate; lists keep the mix.
    return st.lists(chars, min_size=min_size, max_size=max_size).map("".join)


SMALL_TEXT = st.lists(st.one_of(texts(CHARS), st.sampled_from(LOOKALIKES)), max_size=6).map("".join)
HUGE_TEXT = st.builds(
    lambda chunk, times: (chunk * times)[:10_000],
    texts(CHARS, min_size=1, max_size=8),
    st.integers(min_value=1, max_value=2_500),
)
VALUES = st.one_of(SMALL_TEXT, HUGE_TEXT)
ANY_KEYS = texts(KEY_CHARS, max_size=120)
VALID_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
MAX_LENS = st.one_of(st.none(), st.integers(min_value=-5, max_value=300))

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def expected_value(value: str, max_len: int | None) -> str:
    """The logical value the encoder promises: surrogates replaced, then capped."""
    cleaned = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    limit = max(DEFAULT_MAX_LEN if max_len is None else max_len, MIN_MAX_LEN)
    if len(cleaned) > limit:
        return cleaned[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    return cleaned


def encode_with(event: dict[str, object], max_len: int | None) -> str:
    return encode(event) if max_len is None else encode(event, max_len)


def single_value(value: object, max_len: int = DEFAULT_MAX_LEN) -> str:
    pairs = decode_line(encode({"v": value}, max_len))
    assert len(pairs) == 1
    assert pairs[0][0] == "v"
    return pairs[0][1]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")


class NotAString:
    def __str__(self) -> str:
        return 42  # type: ignore[return-value]


# --- properties -------------------------------------------------------------


def test_generated_text_includes_surrogates_and_line_breaks() -> None:
    """The value and key strategies really do produce lone surrogates and U+2028."""
    for strategy in (SMALL_TEXT, HUGE_TEXT, ANY_KEYS):
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in find(strategy, has_surrogate))
        assert "\u2028" in find(strategy, lambda s: "\u2028" in s)


@PROPERTY_SETTINGS
@given(st.dictionaries(VALID_KEYS, VALUES, max_size=8), MAX_LENS)
def test_roundtrip_preserves_keys_order_and_values(event: dict[str, str], max_len: int | None) -> None:
    """Decoding an encoded event gives back every key in order with its cleaned, capped value."""
    decoded = decode_line(encode_with(dict(event), max_len))
    assert [(k, expected_value(v, max_len)) for k, v in event.items()] == decoded


@PROPERTY_SETTINGS
@given(st.dictionaries(ANY_KEYS, st.just("x"), max_size=8))
def test_arbitrary_keys_are_sanitized(event: dict[str, str]) -> None:
    """Any key comes out as sanitize_key(key), which always matches [a-z][a-z0-9_]* (max 100)."""
    decoded_keys = [k for k, _ in decode_line(encode(dict(event)))]
    assert [sanitize_key(k) for k in event] == decoded_keys
    for key in decoded_keys:
        assert KEY_RE.fullmatch(key), key


@PROPERTY_SETTINGS
@given(ANY_KEYS)
def test_sanitize_key_is_idempotent(key: str) -> None:
    """Sanitizing an already sanitized key changes nothing."""
    once = sanitize_key(key)
    assert once == sanitize_key(once)


@PROPERTY_SETTINGS
@given(
    st.dictionaries(
        ANY_KEYS,
        st.one_of(
            VALUES,
            st.binary(max_size=64),
            st.integers(),
            st.floats(),
            st.booleans(),
            st.none(),
        ),
        max_size=8,
    ),
    MAX_LENS,
)
def test_line_is_one_valid_utf8_line(event: dict[str, object], max_len: int | None) -> None:
    """Any event yields exactly one line, one trailing newline, and strict-UTF-8-valid bytes."""
    line = encode_with(event, max_len)
    present = sum(v is not None for v in event.values())
    assert "\n" == line[-1:]
    assert 1 == line.count("\n")
    assert (1 if present else 0) == len(line[:-1].splitlines())
    assert line == encode_bytes(event, DEFAULT_MAX_LEN if max_len is None else max_len).decode(
        "utf-8", errors="strict"
    )
    assert present == len(decode_line(line))


# --- value rendering --------------------------------------------------------


def test_value_cannot_inject_a_pair() -> None:
    """A value that looks like a closing quote plus a new pair stays a single value."""
    line = encode({"event_type": "ok", "msg": 'x" event_type="evil'})
    assert [("event_type", "ok"), ("msg", 'x" event_type="evil')] == decode_line(line)


def test_escapes_are_exact() -> None:
    """Special characters are escaped with the short JSON forms or lowercase \\u00XX."""
    line = encode({"v": '\\"\n\r\t\x00\x1f\x7f\x85\u2028\u2029\ud800é'})
    assert 'v="\\\\\\"\\n\\r\\t\\u0000\\u001f\\u007f\\u0085\\u2028\\u2029\ufffdé"\n' == line


def test_pairs_are_quoted_and_space_separated() -> None:
    """Every value is quoted and pairs are separated by one space in mapping order."""
    assert 'b="1" a="x y"\n' == encode({"b": 1, "a": "x y"})


def test_bool_renders_lowercase() -> None:
    """Booleans render as true/false rather than 1/0 or True/False."""
    assert 'a="true" b="false"\n' == encode({"a": True, "b": False})


def test_int_renders_decimal() -> None:
    """Integers render in decimal, including negatives and big numbers."""
    assert "-12" == single_value(-12)
    assert str(2**70) == single_value(2**70)


def test_int_enum_renders_as_number() -> None:
    """An IntEnum renders as its number, not its member name."""
    import enum

    class Code(enum.IntEnum):
        OK = 200

    assert "200" == single_value(Code.OK)


def test_int_too_big_for_str_gets_placeholder() -> None:
    """An int beyond Python's max str digits yields a placeholder instead of raising."""
    assert "<unrenderable int>" == single_value(10**5000)


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (1.5, "1.500"),
        (0.0125, "0.013"),  # binary value is slightly above 0.0125
        (1.0005, "1.000"),  # binary value is slightly below 1.0005
        (-0.0004, "-0.000"),
        (0.0, "0.000"),
    ],
)
def test_float_renders_three_decimals(value: float, rendered: str) -> None:
    """Floats render as seconds with millisecond precision, rounding the binary value."""
    assert rendered == single_value(value)


@pytest.mark.parametrize(
    ("value", "rendered"),
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")],
)
def test_float_non_finite(value: float, rendered: str) -> None:
    """Non-finite floats render as nan, inf and -inf."""
    assert rendered == single_value(value)


def test_none_is_omitted() -> None:
    """A None value drops the whole pair."""
    assert 'a="1" c="3"\n' == encode({"a": 1, "b": None, "c": 3})


def test_empty_event_is_bare_newline() -> None:
    """An event with nothing to print is just a newline."""
    assert "\n" == encode({"a": None})


def test_bytes_invalid_utf8_becomes_replacement_char() -> None:
    """Invalid UTF-8 in bytes is replaced with U+FFFD."""
    assert "ok\ufffd\ufffd!" == single_value(b"ok\xff\xfe!")


def test_bytearray_is_decoded_like_bytes() -> None:
    """A bytearray is decoded as UTF-8 like bytes."""
    assert "héllo" == single_value(bytearray("héllo", "utf-8"))


def test_other_objects_use_str() -> None:
    """Objects that are not a known type render with str()."""
    assert "[1, 'a']" == single_value([1, "a"])


def test_str_raising_gets_placeholder() -> None:
    """An object whose __str__ raises becomes a placeholder instead of an exception."""
    assert "<unrenderable Unprintable>" == single_value(Unprintable())


def test_str_returning_non_string_gets_placeholder() -> None:
    """An object whose __str__ returns a non-string becomes a placeholder."""
    assert "<unrenderable NotAString>" == single_value(NotAString())


def test_str_subclass_cannot_skip_escaping() -> None:
    """A str subclass lying about its contents is still escaped."""

    class Liar(str):
        def isascii(self) -> bool:
            return True

        def translate(self, table: object) -> str:
            return str(self)

    assert 'v="a\\nb"\n' == encode({"v": Liar("a\nb")})


# --- capping ----------------------------------------------------------------


def test_cap_keeps_exactly_max_len_characters() -> None:
    """A value over max_len becomes exactly max_len characters ending with the marker."""
    value = single_value("x" * 100, max_len=50)
    assert "x" * (50 - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER == value
    assert 50 == len(value)


def test_value_of_exactly_max_len_is_untouched() -> None:
    """A value exactly max_len long is not truncated."""
    assert "y" * 50 == single_value("y" * 50, max_len=50)


def test_cap_applies_before_escaping() -> None:
    """The cap counts logical characters, so escapes can make the line longer than max_len."""
    value = single_value("\n" * 100, max_len=40)
    assert "\n" * (40 - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER == value


def test_default_cap_is_2048() -> None:
    """Without max_len, values are capped at 2048 characters."""
    assert 2048 == len(single_value("z" * 5000, max_len=2048))
    assert [("v", expected_value("z" * 5000, None))] == decode_line(encode({"v": "z" * 5000}))


def test_tiny_max_len_is_clamped() -> None:
    """A max_len too small for the marker is raised to 32."""
    assert "a" * (32 - len(TRUNCATION_MARKER)) + TRUNCATION_MARKER == single_value("a" * 100, 1)


# --- keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "safe"),
    [
        ("http.status_code", "http_status_code"),
        ("Duration-MS", "duration_ms"),
        ("9lives", "k_9lives"),
        ("_private", "k__private"),
        ("", "k_"),
        ('a="b" c', "a__b__c"),
        ("caf\u00e9", "caf_"),
    ],
)
def test_sanitize_key(key: str, safe: str) -> None:
    """Invalid keys are lowercased, cleaned to [a-z0-9_] and prefixed with k_ when needed."""
    assert safe == sanitize_key(key)


def test_sanitize_key_truncates_to_100() -> None:
    """Keys longer than 100 characters are cut to 100."""
    assert "a" * 100 == sanitize_key("A" * 300)


def test_valid_key_is_unchanged() -> None:
    """A key that is already valid is emitted as is."""
    assert [("trace_id", "abc")] == decode_line(encode({"trace_id": "abc"}))


def test_invalid_key_is_sanitized_in_line() -> None:
    """encode() sanitizes a key that is not already valid."""
    assert 'http_status_code="200" k_9="x"\n' == encode({"http.status_code": 200, "9": "x"})


def test_non_string_key_is_rendered_and_sanitized() -> None:
    """A non-string key is rendered like a value and then sanitized."""
    assert 'k_1="x"\n' == encode({1: "x"})  # type: ignore[dict-item]


# --- the judge itself -------------------------------------------------------


def test_decoder_accepts_bare_and_quoted_values() -> None:
    """The decoder reads bare and quoted values, including a surrogate pair escape."""
    line = 'a=1 b="x y" c= d="\\ud83d\\ude00\\/\\u00e9"\n'
    assert [("a", "1"), ("b", "x y"), ("c", ""), ("d", "\U0001f600/\u00e9")] == decode_line(line)


@pytest.mark.parametrize(
    "line",
    [
        'a="x\ny"',  # raw newline in a quoted value
        'a="\\x41"',  # unknown escape
        'a="abc',  # unterminated quote
        'a=x"y',  # quote inside a bare value
        "a",  # missing '='
        "=x",  # empty key
        "a=1  b=2",  # double space
        "a=1 ",  # trailing space
        'a="1"b=2',  # garbage after the closing quote
        'a="\u2028"',  # raw Unicode line separator
        'a="\x01"',  # raw control character
        'a="\\ud83d"',  # lone surrogate escape
        "a=1\n\n",  # extra newline
    ],
)
def test_decoder_rejects_malformed_lines(line: str) -> None:
    """The strict decoder raises ValueError on each kind of malformation."""
    with pytest.raises(ValueError, match=r"."):
        decode_line(line)
