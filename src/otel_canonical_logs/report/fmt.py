"""Number and time formatting shared by the terminal and HTML pages (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

BLOCKS = " ▁▂▃▄▅▆▇█"


def seconds(value: Any) -> str:
    """A duration for people: ``4.2 ms``, ``1.20 s``; ``-`` when unknown."""
    if value is None:
        return "-"
    value = float(value)
    if value < 1:
        return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def signed_seconds(value: Any) -> str:
    if value is None:
        return "-"
    return ("+" if value > 0 else "-" if value < 0 else "±") + seconds(abs(value))


def percent(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value) * 100
    return f"{value:.1f}%" if value < 10 and value != 0 else f"{value:.0f}%"


def number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    value = float(value)
    return f"{int(value)}" if value == int(value) else f"{value:.{digits}f}"


def moment(t: Any, timed: bool = True) -> str:
    """A bucket's start: UTC time for timestamped lines, the record's ordinal otherwise."""
    if t is None:
        return "-"
    if not timed:
        return f"#{int(t)}"
    return datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%d %H:%M:%S")


def clock(t: Any, timed: bool = True) -> str:
    if not timed:
        return f"#{int(t)}"
    return datetime.fromtimestamp(float(t), UTC).strftime("%H:%M:%S")


def span(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def sparkline(values: list[float | None], top: float | None = None) -> str:
    """One character a value, eight heights (a blank for none or zero).

    >>> sparkline([0, 1, 2, 4])
    ' ▂▄█'
    """
    known = [v for v in values if v is not None]
    peak = top if top is not None else max(known, default=0.0)
    if not peak:
        return "".join(" " if v is None else BLOCKS[0] for v in values)
    out = []
    for v in values:
        if v is None or v <= 0:
            out.append(" ")
        else:
            out.append(BLOCKS[max(1, min(8, round(v / peak * 8)))])
    return "".join(out)
