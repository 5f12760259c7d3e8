"""Hostile input cannot break or forge a line (README, "Guarantees"): header values, paths and
X-Request-ID values made of quoting, escaping and encoding trouble, and a header as long as
Gunicorn accepts. Each request also goes to the uninstrumented twin and must be answered the same,
byte for byte; each line parses strictly and has no key an ordinary request's line lacks.
Random ones by the thousand: ``make stress`` case ``hostile``.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest
from django.utils.encoding import repercent_broken_unicode

from tests.integration.harness import GunicornServer, events
from tests.integration.reliability import (
    FIELD_LIMIT,
    HEX32,
    VALUE_MAX,
    Start,
    capped,
    event_where,
    raw_http,
    request_bytes,
    wsgi_text,
)

HOSTILE_VALUES = {
    "quotes": b'say "hi" it\'s "quoted"',
    "backslashes": b"C:\\temp\\new\\",
    "lone trailing backslash": b"\\",
    "escaped-looking text": b'\\" \\n \\u0000 \\\\',
    "tab": b"before\tafter",
    "unicode line separators": "a\u2028b\u2029c\u0085d".encode(),
    "invalid utf-8": b"\xff\xfe\xc3\x28\xa0\xa1\xed\xa0\x80\xf0\x28\x8c\xbc end",
    "raw latin-1 next-line byte": b"a\x85b",
    "logfmt key injection": b'x" event_type="timeout" req_id="forged',
    "key=value look-alikes": b"a=b c=d resp_status=200 =",
    "percent-encoded controls": b"%00%0d%0a%1b",
    "emoji and combining marks": "\U0001f600 e\u0301 \u202e evil".encode(),
}


@pytest.fixture(scope="module")
def benign_keys(twins: tuple[GunicornServer, GunicornServer]) -> set[str]:
    """The keys of the line of an ordinary request with a User-Agent and a Referer."""
    ours, _ = twins
    rid = uuid.uuid4().hex
    head = request_bytes(
        b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", b"ua"), (b"Referer", b"r")
    )
    assert 200 == raw_http(ours, head)[0]
    return set(event_where(ours, "req_id", rid))


@pytest.mark.parametrize("raw", list(HOSTILE_VALUES.values()), ids=list(HOSTILE_VALUES))
def test_hostile_header_values_round_trip(
    twins: tuple[GunicornServer, GunicornServer], benign_keys: set[str], raw: bytes
) -> None:
    """A hostile User-Agent and Referer: the request is answered as without us, the line parses
    strictly with no extra key, and both values read back as sent (invalid UTF-8 replaced)."""
    ours, plain = twins
    rid = uuid.uuid4().hex
    head = request_bytes(
        b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", raw), (b"Referer", raw)
    )
    assert raw_http(plain, head) == raw_http(ours, head)
    event = event_where(ours, "req_id", rid)
    assert benign_keys == set(event)
    assert (wsgi_text(raw), wsgi_text(raw)) == (event["req_user_agent"], event["req_referrer"])


def test_hostile_values_in_json_lines_round_trip(gunicorn: Start, sqlite_env: dict[str, str]) -> None:
    """With CANONICAL_LOGS_FORMAT=json, every hostile value leaves each stdout line one JSON
    object with the same keys as an ordinary request's, the values read back as sent."""
    server = gunicorn(env={**sqlite_env, "CANONICAL_LOGS_FORMAT": "json"})
    sent = {}
    for raw in [*HOSTILE_VALUES.values(), b'"\\' * 3000]:
        rid = uuid.uuid4().hex
        head = request_bytes(
            b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", raw), (b"Referer", b"r")
        )
        assert 200 == raw_http(server, head)[0]
        sent[rid] = capped(wsgi_text(raw))
    lines = server.wait_for_stdout(lambda ls: all(any(rid in ln for ln in ls) for rid in sent))
    objects = [json.loads(line) for line in lines]  # every line, the readiness probe's too
    got = {o["req_id"]: o for o in objects if o.get("req_id") in sent}
    assert sent == {rid: got[rid]["req_user_agent"] for rid in sent}
    assert 1 == len({tuple(o) for o in got.values()})


def test_header_at_gunicorns_size_limit_is_capped(
    twins: tuple[GunicornServer, GunicornServer], benign_keys: set[str]
) -> None:
    """A User-Agent as long as Gunicorn accepts (8190-byte header line) of quotes, backslashes
    and ``k=v`` is served as without us and comes back cut to 2048 characters, marker included."""
    ours, plain = twins
    rid = uuid.uuid4().hex
    value = (b'"\\ k=v ' * FIELD_LIMIT)[: FIELD_LIMIT - len(b"User-Agent: \r\n") - 1] + b"!"
    head = request_bytes(
        b"/echo-headers/", (b"X-Request-ID", rid.encode()), (b"User-Agent", value), (b"Referer", b"r")
    )
    status, body = raw_http(ours, head)
    assert (200, body) == (status, raw_http(plain, head)[1])
    event = event_where(ours, "req_id", rid)
    assert benign_keys == set(event)
    assert capped(value.decode()) == event["req_user_agent"]
    assert VALUE_MAX == len(event["req_user_agent"])


def test_control_and_non_utf8_bytes_in_the_path(twins: tuple[GunicornServer, GunicornServer]) -> None:
    """Percent-encoded control bytes, line breaks, quotes and invalid UTF-8 in the path: answered
    as without us; req_path is Django's request.path, the query string is nowhere on stdout."""
    ours, plain = twins
    rid = uuid.uuid4().hex
    path = b"/echo-headers/%00%01%07%1b%7f%0d%0aevent_type=%22timeout%22%20%5c%e2%80%a8%c2%85%ff%fe%ed%a0%80"
    head = request_bytes(path + b"?token=%00s3cr3t", (b"X-Request-ID", rid.encode()))
    assert raw_http(plain, head) == raw_http(ours, head)
    event = event_where(ours, "req_id", rid)
    # Django's request.path: percent-decoded, with bytes that are not UTF-8 kept percent-encoded.
    assert repercent_broken_unicode(urllib.parse.unquote_to_bytes(path)).decode() == event["req_path"]
    assert ("request", "404") == (event["event_type"], event["resp_status"])
    assert not any("s3cr3t" in line for line in ours.stdout_lines)


NON_ASCII_PATHS = {
    "latin-1 range": b"/echo-headers/caf%C3%A9-na%C3%AFve-%C3%9F/",
    "beyond latin-1": b"/echo-headers/%E6%97%A5%E6%9C%AC/",
    "mixed with invalid bytes": b"/echo-headers/%C3%A9%FF%C3%8E%80/",
}


@pytest.mark.parametrize("path", list(NON_ASCII_PATHS.values()), ids=list(NON_ASCII_PATHS))
def test_non_ascii_path_reads_as_django_decodes_it(
    twins: tuple[GunicornServer, GunicornServer], path: bytes
) -> None:
    """A path of UTF-8 letters (percent-encoded, as clients send them) is on the line as
    Django's request.path, whatever the letters: café stays café."""
    ours, _ = twins
    rid = uuid.uuid4().hex
    assert 404 == raw_http(ours, request_bytes(path, (b"X-Request-ID", rid.encode())))[0]
    expected = repercent_broken_unicode(urllib.parse.unquote_to_bytes(path)).decode()
    assert expected == event_where(ours, "req_id", rid)["req_path"]


UNSAFE_REQUEST_IDS = {
    "too long": [b"a" * 129],
    "far too long": [b"b" * 8000],
    "spaces": [b"two words"],
    "quotes": [b'say"what'],
    "tab": [b"tab\there"],
    "invalid utf-8": [b"abc\xff\xfe"],
    "logfmt key injection": [b'x" event_type="timeout" req_id="forged-request-id'],
    "key=value": [b"req_id=forged-request-id"],
    "repeated header": [b"first-request-id", b"second-request-id"],
}


@pytest.mark.parametrize("values", list(UNSAFE_REQUEST_IDS.values()), ids=list(UNSAFE_REQUEST_IDS))
def test_unsafe_request_ids_are_replaced_never_echoed(
    twins: tuple[GunicornServer, GunicornServer], values: list[bytes]
) -> None:
    """An X-Request-ID that is not one sane token (sent once or repeated) is replaced by a
    generated id, and its raw text appears nowhere on stdout."""
    ours, plain = twins
    marker = uuid.uuid4().hex
    head = request_bytes(
        b"/echo-headers/", (b"User-Agent", marker.encode()), *((b"X-Request-ID", v) for v in values)
    )
    assert raw_http(plain, head) == raw_http(ours, head)
    event = event_where(ours, "req_user_agent", marker)
    assert HEX32.fullmatch(event["req_id"]), event["req_id"]
    texts = [v.decode("utf-8", "replace") for v in values]
    echoed = [(t, k) for e in events(ours.stdout_lines) for k, v in e.items() for t in texts if t in v]
    assert [] == echoed
