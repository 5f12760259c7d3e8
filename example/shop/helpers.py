"""Helpers for the shop views. ``compute_total`` fails on purpose for /boom/."""


def compute_total(prices: list[int] | None = None) -> int:
    total = sum(prices or [])
    if total <= 0:
        raise ValueError("bad total")
    return total
