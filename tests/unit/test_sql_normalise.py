"""The SQL normaliser behind db_n1_*: statements that differ only in their values are one, statements
that differ in anything else stay apart, and no input makes it fail or loop."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from otel_canonical_logs import _sql
from otel_canonical_logs._sql import normalise, normalised

# A statement with one slot for a value, the shape of Django's SQL (quoted identifiers, aliases
# with digits, casts).
TEMPLATES = (
    'SELECT "shop_author"."id", "shop_author"."name" FROM "shop_author" '
    'WHERE "shop_author"."id" = {} LIMIT 21',
    'SELECT U0."id" FROM "shop_book" U0 INNER JOIN "t2" T3 ON (U0."a" = T3."b") WHERE T3."title" = {}',
    "UPDATE shop_book SET title = {} WHERE id = 7",
    "SELECT count(*) FROM n WHERE x::text = {}",
)
integers = st.integers(min_value=-(10**12), max_value=10**12)
# SQL string literals with any text inside, quotes doubled as SQL escapes them.
strings = st.text(max_size=30).map(lambda t: "'" + t.replace("'", "''") + "'")
decimals = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False).map(str)
values = st.one_of(integers.map(lambda n: str(abs(n))), strings, decimals, st.just("%s"), st.just("$1"))


@given(st.sampled_from(TEMPLATES), values, values)
def test_values_inlined_or_bound_give_one_statement(template: str, a: str, b: str) -> None:
    """Two executions that differ only in the value (a number, a string, a placeholder) normalise
    to the same text."""
    assert normalise(template.format(a)) == normalise(template.format(b))


@given(st.lists(integers, min_size=1, max_size=50), st.lists(integers, min_size=1, max_size=50))
def test_in_lists_of_any_length_collapse(xs: list[int], ys: list[int]) -> None:
    """``IN (...)`` lists of any length, inlined or bound, give one text."""
    sql = 'SELECT * FROM "shop_book" WHERE "shop_book"."author_id" IN ({})'
    first = normalise(sql.format(", ".join(str(abs(x)) for x in xs)))
    second = normalise(sql.format(",".join("%s" for _ in ys)))
    assert 'SELECT * FROM "shop_book" WHERE "shop_book"."author_id" IN (...)' == first == second


def test_a_statement_with_values_reads_as_its_shape() -> None:
    """Literals, numbers, hex and placeholders become ``?``; whitespace runs one space."""
    sql = "SELECT *\n  FROM t1 WHERE a = 'it''s' AND b = 3.5e2 AND c = 0x1F AND d = $2 AND e = %(name)s"
    assert "SELECT * FROM t1 WHERE a = ? AND b = ? AND c = ? AND d = ? AND e = ?" == normalise(sql)


@given(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
def test_statements_on_other_columns_stay_apart(left: str, right: str) -> None:
    """Changing an identifier changes the normalised text."""
    template = 'SELECT "{}" FROM "shop_book" WHERE "id" = 5'
    same = normalise(template.format(left)) == normalise(template.format(right))
    assert same == (left == right)


@given(st.text(max_size=300))
def test_normalising_twice_changes_nothing(sql: str) -> None:
    """The normalised text is a fixed point: normalising it again gives it back."""
    once = normalise(sql)
    assert once == normalise(once)


def test_a_long_unterminated_quote_is_linear() -> None:
    """An unbalanced quote followed by many escapes cannot make the scan quadratic."""
    sql = "SELECT '" + "\\'" * 50_000 + "x"
    start = time.perf_counter()
    normalise(sql)
    assert time.perf_counter() - start < 1.0


def test_the_process_cache_is_bounded() -> None:
    """Distinct texts past the cap start the cache over; a text past the size cap is not kept."""
    _sql._CACHE.clear()
    for n in range(_sql.CACHE_MAX + 10):
        normalised(f"SELECT {n} FROM t WHERE c{n} = 1")
    assert len(_sql._CACHE) <= _sql.CACHE_MAX
    huge = "SELECT " + ", ".join(["1"] * _sql.CACHE_TEXT_MAX)
    assert "SELECT " + ", ".join(["?"] * _sql.CACHE_TEXT_MAX) == normalised(huge)
    assert huge not in _sql._CACHE
