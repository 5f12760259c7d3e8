"""The saturation board's pure pieces: the interval setting, the counters a worker writes and the
arbiter sums, memory from /proc, the process titles with and without setproctitle."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from otel_canonical_logs._env import CANONICAL_LOGS_SATURATION_INTERVAL
from otel_canonical_logs._runtime import runtime
from otel_canonical_logs.event import Event
from otel_canonical_logs.gunicorn import proctitle, saturation
from otel_canonical_logs.instrumenters import register_instrumenter, unregister_instrumenter
from otel_canonical_logs.sinks.otel_logs import severity


@pytest.mark.parametrize(
    ("raw", "expected", "warned"),
    [
        (None, 10.0, False),
        ("0", 0.0, False),
        ("0.5", 0.5, False),
        ("30", 30.0, False),
        ("often", 10.0, True),
        ("-1", 10.0, True),
        ("inf", 10.0, True),
        ("0.01", 0.1, True),
    ],
)
def test_interval_setting(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    raw: str | None,
    expected: float,
    warned: bool,
) -> None:
    """Seconds, fractions allowed, 0 is off, at least 0.1; a bad value is named and the default used."""
    if raw is None:
        monkeypatch.delenv(CANONICAL_LOGS_SATURATION_INTERVAL, raising=False)
    else:
        monkeypatch.setenv(CANONICAL_LOGS_SATURATION_INTERVAL, raw)
    with caplog.at_level(logging.WARNING, logger="otel_canonical_logs"):
        assert expected == saturation.event_interval()
    assert warned == any(CANONICAL_LOGS_SATURATION_INTERVAL in r.getMessage() for r in caplog.records)


class _Worker:
    def __init__(self, slot: int) -> None:
        self._canonical_slot = slot


class _Arbiter:
    def __init__(self) -> None:
        self.WORKERS: dict[int, Any] = {}
        self.LISTENERS: list[Any] = []


def _board(monkeypatch: pytest.MonkeyPatch, workers: int) -> tuple[saturation.Board, _Arbiter]:
    """A board as the arbiter sets it up (without its thread), ``workers`` slots assigned."""
    monkeypatch.setenv(CANONICAL_LOGS_SATURATION_INTERVAL, "10")
    board = saturation.Board()
    arbiter = _Arbiter()
    board._arbiter = arbiter
    board.create()
    board._counting = True
    assert board._words is not None
    board._interval = saturation._Interval(board._words, time.monotonic_ns())
    for pid in range(100, 100 + workers):
        worker = _Worker(-1)
        board.assign_slot(worker)
        arbiter.WORKERS[pid] = worker
    return board, arbiter


def _worker(board: saturation.Board, slot: int) -> saturation.Board:
    """A worker's side of the same mapping, as a forked worker inherits it."""
    worker = saturation.Board()
    worker._shm, worker._words, worker._counting = board._shm, board._words, board._counting
    worker.serve(slot)
    return worker


def _close(board: saturation.Board, arbiter: _Arbiter) -> dict[str, Any]:
    assert board._interval is not None
    live = {w._canonical_slot for w in arbiter.WORKERS.values()}
    return board._interval.close(time.monotonic_ns(), live, board._shm)


def test_counts_and_peak_of_one_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two slots busy at once, three requests finished: counted once each, then the next interval
    starts from zero."""
    board, arbiter = _board(monkeypatch, 2)
    one, two = _worker(board, 0), _worker(board, 1)
    one.busy(0, 1)
    two.busy(1, 1)
    two.busy(1, -1)
    two.busy(1, 1)
    two.busy(1, -1)
    one.busy(0, -1)
    first = _close(board, arbiter)
    assert (2, 3, 0, 0) == (
        first["g_w_active_max"],
        first["g_requests"],
        first["g_timeouts"],
        first["g_restarts"],
    )
    second = _close(board, arbiter)
    assert (0, 0, 0.0) == (second["g_w_active_max"], second["g_requests"], second["g_w_active"])


def test_busy_time_is_the_time_between_start_and_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interval's busy time is the request's, measured around it on the same clock."""
    board, _ = _board(monkeypatch, 1)
    assert board._interval is not None
    start = board._interval.start
    outer_start = time.monotonic_ns()
    board.busy(0, 1)
    time.sleep(0.05)  # the quantity measured, not a wait for something to happen
    board.busy(0, -1)
    outer = time.monotonic_ns() - outer_start
    closed = time.monotonic_ns()
    values = board._interval.close(closed, {0}, board._shm)
    busy_ns = values["g_w_active"] * (closed - start)
    assert outer - 1e6 <= busy_ns <= outer + 1e6  # the average is rounded to 3 decimals


def test_a_worker_busy_across_the_boundary_counts_in_both_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request still in flight at the close: its time so far in this interval, the rest in the
    next, and the next interval's peak is at least that busy worker."""
    board, arbiter = _board(monkeypatch, 2)
    board.busy(0, 1)
    first = _close(board, arbiter)
    second = _close(board, arbiter)
    board.busy(0, -1)
    third = _close(board, arbiter)
    assert (1, 1, 1) == (first["g_w_active_max"], second["g_w_active_max"], third["g_w_active_max"])
    assert first["g_w_active"] > 0 and second["g_w_active"] > 0.9  # busy all through the second
    assert (0, 0, 1) == (first["g_requests"], second["g_requests"], third["g_requests"])


def test_a_worker_killed_busy_and_mid_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that died busy, its record left mid-update: counted as one restart, its busy time
    ends when it is reaped, and its slot is read without waiting on it."""
    board, arbiter = _board(monkeypatch, 2)
    _worker(board, 1).busy(1, 1)
    words = board._words
    assert words is not None
    record = saturation._RECORDS + 1 * saturation._WORDS
    words[record + saturation._SEQ] += 1  # SIGKILLed between the two sequence increments
    dead = arbiter.WORKERS.pop(101)
    board.exited([dead])
    reaped = time.monotonic_ns()
    values = _close(board, arbiter)
    assert 1 == values["g_restarts"]
    assert 0 == words[record + saturation._SINCE] and 0 == words[record + saturation._SEQ] % 2
    # The busy stretch stopped at the reap, not at the close.
    assert board._interval is not None
    assert words[record + saturation._BUSY_NS] <= reaped - board._interval.start + 1e6
    assert 0 == _close(board, arbiter)["g_w_active"]


def test_an_exit_reported_while_the_lock_is_held_waits_for_it_not_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gunicorn 23 reaps in its SIGCHLD handler, which can run in the arbiter's main thread while
    that thread holds the sample lock (assigning a slot to the worker it is about to fork): the
    exit is queued, not waited for, and counted as the lock is released, its busy time stopped at
    the reap. Waiting there deadlocked the arbiter: no killed worker was ever replaced."""
    board, arbiter = _board(monkeypatch, 2)
    busy_from = time.monotonic_ns()
    _worker(board, 1).busy(1, 1)
    dead = arbiter.WORKERS.pop(101)
    times: dict[str, int] = {}

    def spawn_interrupted_by_the_reap() -> None:
        with board._locked():  # as assign_slot and sample hold it
            board.exited([dead])  # the handler, on the same thread
            times["reaped"] = time.monotonic_ns()
            time.sleep(0.05)  # still held: the busy time must not run on to the release

    thread = threading.Thread(target=spawn_interrupted_by_the_reap, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "exited() waited for a lock its own thread holds"
    values = _close(board, arbiter)
    assert 1 == values["g_restarts"]
    words, shm = board._words, board._shm
    assert words is not None and shm is not None
    record = saturation._RECORDS + 1 * saturation._WORDS
    assert 0 == words[record + saturation._SINCE] and 0 == shm[saturation._FLAGS + 1]
    assert words[record + saturation._BUSY_NS] <= times["reaped"] - busy_from


def test_a_reused_slot_keeps_its_last_owners_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new worker in the slot of one that exited: the old one's requests are still counted."""
    board, arbiter = _board(monkeypatch, 1)
    first = _worker(board, 0)
    first.busy(0, 1)
    first.busy(0, -1)
    arbiter.WORKERS.pop(100)
    replacement = _Worker(-1)
    board.assign_slot(replacement)
    arbiter.WORKERS[200] = replacement
    assert 0 == replacement._canonical_slot
    second = _worker(board, 0)
    for _ in range(2):
        second.busy(0, 1)
        second.busy(0, -1)
    assert 3 == _close(board, arbiter)["g_requests"]


def test_requests_gunicorn_rejected_and_timeouts_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 400 Gunicorn answered itself is a finished request; a watchdog's timeout is counted, and
    the timed-out request, unwound by Gunicorn's SIGABRT, is not a finished one."""
    board, arbiter = _board(monkeypatch, 1)
    worker = _worker(board, 0)
    worker.count_request(0)
    worker.busy(0, 1)
    worker.timed_out()
    worker.busy(0, -1, finished=False)
    values = _close(board, arbiter)
    assert (1, 1) == (values["g_requests"], values["g_timeouts"])


def test_nothing_is_counted_when_the_events_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interval 0: the busy byte of the per-request sample only, no counters written."""
    board, _ = _board(monkeypatch, 1)
    board._counting = False
    board.busy(0, 1)
    assert board._shm is not None and 1 == board._shm[saturation._FLAGS]
    board.busy(0, -1)
    words = board._words
    assert words is not None
    assert [0] * saturation._WORDS == list(
        words[saturation._RECORDS : saturation._RECORDS + saturation._WORDS]
    )


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_memory_reads_the_resident_size_from_proc() -> None:
    """RSS from statm agrees with VmRSS from status; a process that is gone is left out."""
    pid = os.getpid()
    before = _vm_rss(pid)
    as_worker = saturation.memory([], [pid])
    as_arbiter = saturation.memory([pid], [])
    after = _vm_rss(pid)
    low, high = min(before, after) / saturation._MIB - 0.5, max(before, after) / saturation._MIB + 0.5
    assert low <= as_worker["g_w_mem_max_mib"] <= high and low <= as_worker["g_mem_mib"] <= high
    assert low <= as_arbiter["g_mem_mib"] <= high and "g_w_mem_max_mib" not in as_arbiter
    assert saturation.rss_bytes(2**22 + 1) is None  # above the kernel's pid_max: never a process


def test_title_follows_the_name_gunicorn_gives() -> None:
    """The state is appended to Gunicorn's title, read again after Gunicorn renames the process."""
    titles = ["gunicorn: master [app]"]
    title = proctitle.Title(follow=True, functions=lambda: (lambda: titles[-1], titles.append))
    title.show("backlog=0")
    title.show("backlog=0")
    title.show("backlog=2")
    titles.append("gunicorn: master [app.2]")  # Gunicorn's reload
    title.show("backlog=2")
    assert [
        "gunicorn: master [app]",
        "gunicorn: master [app] backlog=0",
        "gunicorn: master [app] backlog=2",
        "gunicorn: master [app.2]",
        "gunicorn: master [app.2] backlog=2",
    ] == titles


def test_worker_title_base_is_read_once() -> None:
    """A worker's title is Gunicorn's first name for it, then one set per state change."""
    calls: list[str] = []
    title = proctitle.Title(follow=False, functions=lambda: (lambda: "gunicorn: worker [app]", calls.append))
    for state in ("idle", "busy", "idle"):
        title.show(state)
    assert [
        "gunicorn: worker [app] idle",
        "gunicorn: worker [app] busy",
        "gunicorn: worker [app] idle",
    ] == calls


def test_without_setproctitle_titles_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """setproctitle not importable: no title functions, and a board counts exactly as with it."""
    monkeypatch.setitem(sys.modules, "setproctitle", None)  # import raises ImportError
    assert proctitle._functions() is None
    title = proctitle.Title()
    assert not title.available
    title.show("busy")  # nothing to call: no error
    monkeypatch.setattr(saturation, "Title", proctitle.Title)
    board, arbiter = _board(monkeypatch, 1)
    assert not board._title.available
    board.serve(0)
    board.busy(0, 1)
    board.busy(0, -1)
    assert 1 == _close(board, arbiter)["g_requests"]


def test_saturation_events_are_info_and_not_enriched() -> None:
    """The arbiter's event goes out at INFO and without the application's enrichers."""
    seen: list[str] = []
    written: list[Event] = []

    def enricher(fields: dict[str, Any]) -> None:
        seen.append(fields["event_type"])

    register_instrumenter(enricher)
    previous = list(runtime.dispatcher.sinks)
    runtime.dispatcher.sinks[:] = [written.append]
    try:
        runtime.dispatcher(Event("saturation", {"event_type": "saturation", "g_requests": 3}, None, 0))
        runtime.dispatcher(Event("request", {"event_type": "request"}, None, 0))
    finally:
        runtime.dispatcher.sinks[:] = previous
        unregister_instrumenter(enricher)
    assert ["request"] == seen
    assert ["saturation", "request"] == [e.type for e in written]
    assert "INFO" == severity(written[0])
