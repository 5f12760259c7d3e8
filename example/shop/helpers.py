"""Helpers for the shop views. ``compute_total`` fails on purpose for /boom/, ``recommendations``
for /partial/ (caught by ``on_error``)."""

from otel_canonical_logs import on_error


def compute_total(prices: list[int] | None = None) -> int:
    total = sum(prices or [])
    if total <= 0:
        raise ValueError("bad total")
    return total


class RecommenderDown(ConnectionError):
    """What a flaky recommendation service raises."""


def _ask_recommender(title: str) -> list[str]:
    raise RecommenderDown(f"recommender unavailable for {title!r}")


@on_error(return_value=())
def recommendations(title: str) -> tuple[str, ...]:
    """Titles similar to ``title``; an empty tuple (and a partial_failure event) when the service fails."""
    return tuple(_ask_recommender(title))


def price_with_tax(cents: int) -> int:
    """Price including tax, in cents; called from the receipt template, fails on a negative price."""
    if cents < 0:
        raise ValueError(f"negative price {cents}")
    return cents * 120 // 100
