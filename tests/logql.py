"""Just enough of LogQL to say which labels and fields a query reads (for ``make compose-check``).

It tokenises the whole query (a character it does not know is an error) and walks it: stream
selectors ``{a="x"}``, label filters ``| a >= 1 or b = "y"``, line filters ``|= "x"``,
``| unwrap a``, ``by (a, b)``/``without (...)``, and the metric functions around them. Parser
stages (``| logfmt``, ``| json``, ``| line_format`` ...) are refused: the dashboard reads the
records' structured metadata, which needs none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<var>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
  | (?P<duration>\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)\b)
  | (?P<number>\d+(?:\.\d+)?(?:e[-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|=|>|<|\||,|\(|\)|\{|\}|\[|\]|/|\*|\+|-)
    """,
    re.VERBOSE,
)
FUNCTIONS = {
    "rate",
    "count_over_time",
    "bytes_over_time",
    "bytes_rate",
    "sum_over_time",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "first_over_time",
    "last_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "quantile_over_time",
    "absent_over_time",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "sort",
    "sort_desc",
}
MATCHERS = {"=", "!=", "=~", "!~"}
COMPARISONS = {"=", "==", "!=", "=~", "!~", ">", ">=", "<", "<="}
PARSERS = {
    "logfmt",
    "json",
    "pattern",
    "regexp",
    "unpack",
    "line_format",
    "label_format",
    "decolorize",
    "drop",
    "keep",
}


class LogQLError(ValueError):
    pass


@dataclass
class Query:
    """What one query reads."""

    stream_labels: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)
    unwrapped: set[str] = field(default_factory=set)
    grouped: set[str] = field(default_factory=set)
    functions: list[str] = field(default_factory=list)

    @property
    def keys(self) -> set[str]:
        """Every record key the query uses (stream labels apart)."""
        return self.fields | self.unwrapped | self.grouped


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise LogQLError(f"cannot read {expr[pos : pos + 20]!r} at {pos}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def parse(expr: str) -> Query:
    """The labels and fields ``expr`` reads; raises :class:`LogQLError` for what it cannot read.

    >>> q = parse('sum by (req_route) (count_over_time({service_name="x"} | resp_status >= 500 [5m]))')
    >>> sorted(q.keys), sorted(q.stream_labels)
    (['req_route', 'resp_status'], ['service_name'])
    """
    toks = tokens(expr)
    query = Query()
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if text in depth:
            depth[text] += 1
        elif text in closing:
            depth[closing[text]] -= 1
            if depth[closing[text]] < 0:
                raise LogQLError(f"unbalanced {text!r}")
        if text == "{":
            i = _selector(toks, i + 1, query)
            depth["{"] -= 1
            continue
        if text == "|":
            i = _stage(toks, i + 1, query)
            continue
        if text in ("|=", "|~") or (text in ("!=", "!~") and i > 0 and toks[i - 1][1] in ("}", '"')):
            if i + 1 >= len(toks) or toks[i + 1][0] not in ("string", "var"):
                raise LogQLError(f"line filter {text!r} without a string")
            i += 2
            continue
        if kind == "name":
            if text in ("by", "without"):
                i = _names(toks, i + 1, query.grouped)
                continue
            if text in FUNCTIONS:
                query.functions.append(text)
            elif text not in ("and", "or", "unless", "bool", "offset"):
                raise LogQLError(f"unknown name {text!r}")
        i += 1
    if any(depth.values()):
        raise LogQLError(f"unbalanced brackets in {expr!r}")
    if not query.stream_labels:
        raise LogQLError("no stream selector")
    return query


def _selector(toks: list[tuple[str, str]], i: int, query: Query) -> int:
    while i < len(toks) and toks[i][1] != "}":
        if toks[i][1] == ",":
            i += 1
            continue
        if i + 2 >= len(toks) or toks[i][0] != "name" or toks[i + 1][1] not in MATCHERS:
            raise LogQLError(f"bad stream matcher near {toks[i][1]!r}")
        if toks[i + 2][0] not in ("string", "var"):
            raise LogQLError(f"stream matcher {toks[i][1]!r} without a string")
        query.stream_labels.add(toks[i][1])
        i += 3
    if i >= len(toks):
        raise LogQLError("unclosed stream selector")
    return i + 1


def _stage(toks: list[tuple[str, str]], i: int, query: Query) -> int:
    if i >= len(toks) or toks[i][0] != "name":
        raise LogQLError("a pipe without a stage")
    name = toks[i][1]
    if name in PARSERS:
        raise LogQLError(f"parser stage {name!r}: the records' attributes need none")
    if name == "unwrap":
        if i + 1 >= len(toks) or toks[i + 1][0] != "name":
            raise LogQLError("unwrap without a field")
        query.unwrapped.add(toks[i + 1][1])
        return i + 2
    # A label filter: NAME OP VALUE, chained with and / or / ",".
    while True:
        if i + 2 >= len(toks) or toks[i][0] != "name" or toks[i + 1][1] not in COMPARISONS:
            raise LogQLError(f"bad label filter near {toks[i][1]!r}")
        if toks[i + 2][0] not in ("string", "number", "duration", "var"):
            raise LogQLError(f"label filter {toks[i][1]!r} without a value")
        query.fields.add(toks[i][1])
        i += 3
        if i < len(toks) and toks[i][1] in ("and", "or", ","):
            i += 1
            continue
        return i


def _names(toks: list[tuple[str, str]], i: int, into: set[str]) -> int:
    if i >= len(toks) or toks[i][1] != "(":
        raise LogQLError("by/without without a list")
    i += 1
    while i < len(toks) and toks[i][1] != ")":
        if toks[i][1] != ",":
            if toks[i][0] != "name":
                raise LogQLError(f"bad grouping label {toks[i][1]!r}")
            into.add(toks[i][1])
        i += 1
    return i + 1
