"""Measure only when this 2-core machine is otherwise quiet (Quiet and its CPU accounting)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .common import log

WAIT_MAX = 30 * 60  # seconds, in all, to wait for other work on the machine before going ahead


def others_testing() -> str | None:
    """The command line of a test/lint run that is not ours, if one is running."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if any(Path(w).name in ("pytest", "py.test", "mypy", "ruff") or w == "pytest" for w in words):
            return " ".join(words)[:120]
    return None


FOREIGN_LIMIT = 0.10  # share of one CPU that processes outside the bench may use during a measurement
TICK = os.sysconf("SC_CLK_TCK")


def busy_ticks() -> int:
    """CPU ticks spent busy on the whole machine (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def own_ticks() -> int:
    """CPU ticks of this driver and everything it started (live descendants + reaped children)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        parent[pid] = int(rest[1])
        ticks[pid] = int(rest[11]) + int(rest[12])  # utime + stime
    me = os.getpid()
    total = ticks.get(me, 0)
    frontier = [me]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                total += ticks[child]
                frontier.append(child)
    reaped = os.times()
    return total + round((reaped.children_user + reaped.children_system) * TICK)


class Quiet:
    """Measure only when this 2-core machine is otherwise quiet.

    Before a measurement: wait while a test or lint run is going (pytest, mypy, ruff) or while
    processes outside the bench use more than FOREIGN_LIMIT of a CPU. After it: if they did, the
    caller measures again (at most twice), since the figure would be low for reasons of its own.
    """

    def __init__(self) -> None:
        self.waited = 0.0
        self.remeasured = 0
        self.accepted_noisy: list[str] = []
        self._mark = (0, 0, 0.0)

    @staticmethod
    def foreign_share(seconds: float = 1.0) -> float:
        busy0, own0, t0 = busy_ticks(), own_ticks(), time.monotonic()
        time.sleep(seconds)
        return ((busy_ticks() - busy0) - (own_ticks() - own0)) / TICK / (time.monotonic() - t0)

    def wait(self) -> None:
        waited = 0.0
        while self.waited + waited < WAIT_MAX:
            busy = others_testing()
            share = 0.0 if busy else self.foreign_share(0.5)
            if not busy and share <= FOREIGN_LIMIT:
                break
            if waited % 60 == 0:
                log(f"waiting: {busy or f'other processes use {share:.0%} of a CPU'}")
            time.sleep(5)
            waited += 5
        self.waited += waited

    def begin(self) -> None:
        self._mark = (busy_ticks(), own_ticks(), time.monotonic())

    def end(self) -> float:
        """Share of a CPU that processes outside the bench used since begin()."""
        busy0, own0, t0 = self._mark
        return ((busy_ticks() - busy0) - (own_ticks() - own0)) / TICK / (time.monotonic() - t0)

    def notes(self) -> list[str]:
        out = []
        if self.waited:
            out.append(f"waited {self.waited:.0f} s in all for other work on the machine to finish")
        if self.remeasured:
            out.append(
                f"{self.remeasured} measurement(s) repeated because other processes used more than "
                f"{FOREIGN_LIMIT:.0%} of a CPU during them"
            )
        out += [f"kept after 3 tries, with other load on the machine: {x}" for x in self.accepted_noisy]
        return out
