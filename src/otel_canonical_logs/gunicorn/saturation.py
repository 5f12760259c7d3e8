"""Saturation: the per-request ``g_*`` sample, and the arbiter's periodic ``saturation`` event.

State lives in an anonymous shared mapping created in the arbiter before it forks workers:
workers inherit it, nothing is named, so nothing is left in /dev/shm when a worker is SIGKILLed.

Each worker owns one slot and is its only writer: a busy byte (requests in flight) and a record
of counters — requests finished, busy nanoseconds (the time it had at least one request in flight,
summed at each request's end), the start of its current busy stretch, timeout events, and the
most workers it saw busy at once when it became busy. A sequence number around each update lets
the arbiter read a record whole without a lock between processes. The arbiter's thread samples
the slots, the workers and the listen queue (``TCP_INFO`` on a LISTEN socket: ``tcpi_unacked`` is
the accept-queue length) about once a second for the request lines, and every
``CANONICAL_LOGS_SATURATION_INTERVAL`` seconds sums the counters' changes into one event:
``g_w_active`` is the busy time divided by the interval, exact, not a sample.
"""

from __future__ import annotations

import logging
import mmap
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import _env, _guard
from .._runtime import runtime
from ..event import Event
from ..fields import SATURATION_KEYS
from .proctitle import Title

_logger = logging.getLogger("otel_canonical_logs")

_HEADER = struct.Struct("=iiiI")  # workers, active, backlog (-1: unknown), samples taken
SLOTS = 1024
INTERVAL = 1.0  # the request lines' sample
MIN_EVENT_INTERVAL = 0.1
# The mapping as unsigned 64-bit words: the header's two words, then the arbiter's ones.
_EPOCH = 2  # the saturation interval's number (peaks are tagged with it)
_IN_USE = 3  # slots in use: one past the highest slot assigned so far
_FLAGS = 64  # byte offset of the busy bytes, one per slot
_RECORDS = (_FLAGS + SLOTS) // 8  # word offset of the slot records
_WORDS = 8  # per record: 64 bytes, one cache line, so workers never share one
# Word offsets within a record.
_SEQ, _BUSY_NS, _SINCE, _REQUESTS, _TIMEOUTS, _PEAK = range(6)
_PEAK_BITS = 16  # a peak is (epoch << 16) | workers busy: a later epoch's always compares higher
_PEAK_MASK = (1 << _PEAK_BITS) - 1
_SIZE = (_RECORDS + SLOTS * _WORDS) * 8
_READ_TRIES = 100
_TCPI_UNACKED = struct.Struct("=I")
_TCPI_UNACKED_OFFSET = 24  # after 8 one-byte fields and rto, ato, snd_mss, rcv_mss
_TCP_INFO_LEN = 104
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MIB = 1024 * 1024


def event_interval() -> float:
    """``CANONICAL_LOGS_SATURATION_INTERVAL`` in seconds: 0 (off), or at least 0.1."""
    name = _env.CANONICAL_LOGS_SATURATION_INTERVAL
    value = _env.env_float(name, 10.0, minimum=0.0)
    if 0 < value < MIN_EVENT_INTERVAL:
        _logger.warning("%s=%r is below %s; using %s", name, value, MIN_EVENT_INTERVAL, MIN_EVENT_INTERVAL)
        return MIN_EVENT_INTERVAL
    return value


class Board:
    """The shared mapping and this process's side of it: one per process (``board``).

    The arbiter creates the mapping before it forks (``start_sampler``); each worker inherits it,
    counts its requests into its own slot (``busy``) and reads the last sample for its events
    (``fields``, registered into the runtime by the Gunicorn integration).
    """

    def __init__(self) -> None:
        self._shm: mmap.mmap | None = None
        self._words: memoryview | None = None  # the mapping as 64-bit words
        self._arbiter: Any = None  # set in the arbiter process, whose sampler runs
        self._owner = 0  # the arbiter's pid
        self._busy_lock = threading.Lock()
        self._busy = 0
        self._slot = -1  # this worker's slot
        self._counting = False  # saturation events are on: workers keep the slot's counters
        self._title = Title(follow=False)
        self._titled = self._title.available
        # This worker's copy of its record (it is the record's only writer).
        self._seq = self._since = self._busy_ns = self._requests = self._peak = 0
        self._sample_lock = threading.Lock()
        self._interval: _Interval | None = None
        # Workers seen exiting (when, their slots), not yet folded into the interval: see exited().
        self._exits: deque[tuple[int, list[int]]] = deque()

    def create(self) -> None:
        """Create the shared mapping (arbiter, before any fork); idempotent."""
        if self._shm is None:
            self._shm = mmap.mmap(-1, _SIZE)
            self._words = memoryview(self._shm).cast("Q")
            _HEADER.pack_into(self._shm, 0, 0, 0, -1, 0)

    def fields(self) -> dict[str, int]:
        """The last sample, for an event; empty outside Gunicorn or before the first sample."""
        shm = self._shm
        if shm is None:
            return {}
        workers, active, backlog, samples = _HEADER.unpack_from(shm, 0)
        if not samples:
            return {}
        out = {"g_w_count": workers, "g_w_active": active}
        if backlog >= 0:
            out["g_backlog"] = backlog
        return out

    # -- the worker's side ----------------------------------------------------------------------

    def serve(self, slot: int) -> None:
        """Worker side, once its server layer is made: this process writes ``slot``; idle title."""
        self._slot = slot
        if self._shm is not None and slot >= 0:
            with self._busy_lock:
                self._title.show("busy" if self._busy > 0 else "idle")

    def busy(self, slot: int, delta: int, finished: bool = True) -> None:
        """Worker side: a request starts (``delta`` 1) or ends (-1) in this process's slot;
        ``finished``: an ending request counts in ``g_requests`` (not one whose worker timed out).

        The process keeps its own copy of its record, so each word is one store, not a read and
        a store; only the end of a busy stretch (two words) is bracketed by the sequence number.
        """
        shm = self._shm
        if shm is None or slot < 0:
            return
        with self._busy_lock:
            before = self._busy
            self._busy = busy = before + delta
            shm[_FLAGS + slot] = busy if 0 <= busy <= 255 else min(max(busy, 0), 255)
            words = self._words
            if self._counting and words is not None:
                record = _RECORDS + slot * _WORDS
                if delta > 0:
                    if before <= 0 < busy:  # idle to busy
                        self._since = now = time.monotonic_ns()
                        words[record + _SINCE] = now
                        in_use = words[_IN_USE]
                        # Its own byte is written already: every worker busy now is counted.
                        peak = words[_EPOCH] << _PEAK_BITS | (in_use - shm[_FLAGS : _FLAGS + in_use].count(0))
                        if self._peak < peak:
                            self._peak = peak
                            words[record + _PEAK] = peak
                else:
                    if finished:
                        self._requests += 1
                        words[record + _REQUESTS] = self._requests
                    if busy <= 0 < before and self._since:  # busy to idle
                        self._seq += 2
                        words[record + _SEQ] = self._seq - 1
                        self._busy_ns += time.monotonic_ns() - self._since
                        words[record + _BUSY_NS] = self._busy_ns
                        self._since = 0
                        words[record + _SINCE] = 0
                        words[record + _SEQ] = self._seq
            if (before <= 0) != (busy <= 0) and self._titled:
                self._title.show("busy" if busy > 0 else "idle")

    def count_request(self, slot: int) -> None:
        """Worker side: a request the server answered without the application (Gunicorn's 400s)."""
        words = self._words
        if not self._counting or words is None or slot < 0:
            return
        with self._busy_lock:
            self._requests += 1
            words[_RECORDS + slot * _WORDS + _REQUESTS] = self._requests

    def timed_out(self) -> None:
        """Worker side, from its watchdog thread (the field's only writer): a ``timeout`` event."""
        words, slot = self._words, self._slot
        if self._counting and words is not None and slot >= 0:
            words[_RECORDS + slot * _WORDS + _TIMEOUTS] += 1

    # -- the arbiter's side ---------------------------------------------------------------------

    def assign_slot(self, worker: Any) -> None:
        """Arbiter side, when a worker object is made: the lowest free slot, its last owner's
        counters folded into the interval, then zeroed."""
        arbiter = self._arbiter
        used = {getattr(w, "_canonical_slot", -1) for w in getattr(arbiter, "WORKERS", {}).values()}
        slot = next((i for i in range(SLOTS) if i not in used), -1)
        worker._canonical_slot = slot
        shm, words = self._shm, self._words
        if shm is None or words is None or slot < 0:
            return
        with self._locked():
            interval = self._interval
            if interval is not None:
                interval.harvest_dead(slot, time.monotonic_ns())
            shm[_FLAGS + slot] = 0
            record = _RECORDS + slot * _WORDS
            for word in range(record, record + _WORDS):
                words[word] = 0
            if interval is not None:
                interval.forget(slot)
            words[_IN_USE] = max(words[_IN_USE], slot + 1)

    def exited(self, workers: list[Any]) -> None:
        """Arbiter side: these workers exited (reaped, or found gone); their clocks stop now.

        Never waits for the sample lock. Gunicorn before 24 reaps its workers in its SIGCHLD
        handler, which Python runs in the arbiter's main thread between any two bytecodes: also
        while that very thread holds the sample lock (in ``assign_slot`` or ``sample``, around a
        spawn), where waiting for it would block the arbiter for good, with no worker ever
        replaced again. So the exit is queued, with its time, and folded into the interval under
        the lock: here if the lock is free, else by its holder as it releases it, or at the
        sampler thread's next tick.
        """
        if self._interval is None or not workers:
            return
        self._exits.append((time.monotonic_ns(), [getattr(w, "_canonical_slot", -1) for w in workers]))
        if self._sample_lock.acquire(blocking=False):
            try:
                self._fold_exits()
            finally:
                self._sample_lock.release()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The sample lock, with the exits queued before it and while it was held folded in."""
        with self._sample_lock:
            self._fold_exits()
            try:
                yield
            finally:
                self._fold_exits()

    def _fold_exits(self) -> None:
        # With the sample lock held. popleft, not iteration: exited() may append meanwhile.
        interval, shm = self._interval, self._shm
        while self._exits:
            now, slots = self._exits.popleft()
            if interval is None:
                continue
            interval.restarts += len(slots)
            for slot in slots:
                if 0 <= slot < SLOTS:
                    interval.harvest_dead(slot, now)
                    if shm is not None:
                        shm[_FLAGS + slot] = 0  # died busy: no longer counted busy

    def sample(self, arbiter: Any) -> None:
        """Take one sample from the arbiter's state into the shared mapping."""
        shm = self._shm
        if shm is None:
            return
        with self._locked():  # the sampler thread and the arbiter's own loop (after spawning)
            backlog = _sample(arbiter, shm)
            if self._interval is not None:
                self._interval.backlog = max(self._interval.backlog, backlog)

    def sampling(self) -> bool:
        """Whether this process is an arbiter whose sampler runs."""
        return self._arbiter is not None

    def start_sampler(self, arbiter: Any) -> None:
        """Start the sampling thread in the arbiter (it does not survive into forked workers).

        Under gevent (patched in the arbiter) the thread is a greenlet, which a forked worker
        inherits: it ends there at its first wake, in a process that is not the arbiter.
        """
        self._arbiter = arbiter
        self._owner = os.getpid()
        self.create()
        every = event_interval()
        if every > 0 and self._words is not None:
            self._counting = True  # inherited by every worker forked from now on
            self._interval = _Interval(self._words, time.monotonic_ns())
        tick = min(INTERVAL, every / 4) if every > 0 else INTERVAL
        titles = Title(follow=True)

        def run() -> None:
            due = time.monotonic() + every
            while os.getpid() == self._owner:
                try:
                    self.sample(arbiter)
                    if titles.available:
                        titles.show(_backlog_title(self._shm))
                    if every > 0 and time.monotonic() >= due:
                        due = max(due + every, time.monotonic() + every / 2)
                        self.emit(arbiter)
                except Exception as exc:  # keep sampling: a frozen field is worse than a gap
                    _guard.report("gunicorn.saturation", exc)
                wake = min(due, time.monotonic() + tick) if every > 0 else time.monotonic() + tick
                time.sleep(max(0.0, wake - time.monotonic()))

        threading.Thread(target=run, name="canonical-logs-saturation", daemon=True).start()

    def emit(self, arbiter: Any) -> None:
        """Close the interval and write its ``saturation`` event on every sink (arbiter side)."""
        interval = self._interval
        if interval is None:
            return
        with self._locked():
            workers = dict(getattr(arbiter, "WORKERS", {}))
            live = {getattr(w, "_canonical_slot", -1) for w in workers.values()}
            values = interval.close(time.monotonic_ns(), live, self._shm)
        values["g_w_count"] = len(workers)
        values.update(memory([os.getpid()], list(workers)))
        fields = {"event_type": "saturation"}
        fields.update((key, values[key]) for key in SATURATION_KEYS if values.get(key) is not None)
        runtime.dispatcher(Event("saturation", fields, None, time.time_ns()))


board = Board()


class _Interval:
    """The arbiter's running saturation interval: what it read of each slot, what it summed."""

    def __init__(self, words: memoryview, now: int) -> None:
        self.words = words
        self.start = now
        self.busy_ns = 0
        self.requests = 0
        self.timeouts = 0
        self.restarts = 0
        self.backlog = -1
        self.epoch = words[_EPOCH]  # this interval's number, which workers tag their peaks with
        self.peak = 0  # the most workers busy at once: at the start, or when one became busy
        # slot -> (busy ns including the running stretch, requests, timeouts) when last read
        self.seen: dict[int, tuple[int, int, int]] = {}

    def _read(self, slot: int, now: int, dead: bool) -> tuple[int, int, int] | None:
        """A slot's counters, read whole (its sequence number even and unchanged)."""
        words = self.words
        record = _RECORDS + slot * _WORDS
        for _ in range(_READ_TRIES):
            seq = words[record + _SEQ]
            busy_ns, since, requests = (
                words[record + _BUSY_NS],
                words[record + _SINCE],
                words[record + _REQUESTS],
            )
            if seq & 1 == 0 and words[record + _SEQ] == seq:
                break
        else:
            if not dead:
                return None  # a live worker mid-update every time: read it next interval
            words[record + _SEQ] += 1  # killed mid-update: nobody writes it any more
        if since and dead:  # it died busy: its busy stretch ends now
            busy_ns += max(0, now - since)
            words[record + _BUSY_NS], words[record + _SINCE] = busy_ns, 0
            since = 0
        if since:
            busy_ns += max(0, now - since)
        return busy_ns, requests, words[record + _TIMEOUTS]

    def _harvest(self, slot: int, now: int, dead: bool) -> None:
        counters = self._read(slot, now, dead)
        if counters is None:
            return
        busy_ns, requests, timeouts = counters
        last_busy, last_requests, last_timeouts = self.seen.get(slot, (0, 0, 0))
        self.busy_ns += max(0, busy_ns - last_busy)
        self.requests += max(0, requests - last_requests)
        self.timeouts += max(0, timeouts - last_timeouts)
        self.seen[slot] = counters
        mark = self.words[_RECORDS + slot * _WORDS + _PEAK]
        if mark >> _PEAK_BITS == self.epoch:
            self.peak = max(self.peak, mark & _PEAK_MASK)

    def harvest_dead(self, slot: int, now: int) -> None:
        self._harvest(slot, now, dead=True)

    def forget(self, slot: int) -> None:
        self.seen.pop(slot, None)

    def close(self, now: int, live: set[int], shm: Any) -> dict[str, Any]:
        """The interval's values; the next one starts now."""
        words = self.words
        # The next interval's number first: a worker that still tags its peak with this one
        # became busy before the count below, which includes it.
        words[_EPOCH] = self.epoch + 1
        in_use = min(words[_IN_USE], SLOTS)
        busy_now = 0
        for slot in range(in_use):
            alive = slot in live
            if alive and shm[_FLAGS + slot]:
                busy_now += 1
            self._harvest(slot, now, dead=not alive)
        elapsed = max(now - self.start, 1)
        values: dict[str, Any] = {
            "g_w_active": round(self.busy_ns / elapsed, 3),
            "g_w_active_max": max(self.peak, busy_now),
            "g_requests": self.requests,
            "g_timeouts": self.timeouts,
            "g_restarts": self.restarts,
        }
        if self.backlog >= 0:
            values["g_backlog"] = self.backlog
        self.start, self.busy_ns, self.requests, self.timeouts, self.restarts = now, 0, 0, 0, 0
        self.backlog = -1
        self.epoch += 1
        self.peak = busy_now  # busy as the next interval starts: its peak is at least that
        return values


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process, from ``/proc/<pid>/statm``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def memory(arbiters: list[int], workers: list[int]) -> dict[str, float]:
    """``g_mem_mib`` (every process named) and ``g_w_mem_max_mib`` (the largest worker)."""
    sizes = {pid: rss_bytes(pid) for pid in (*arbiters, *workers)}
    known = [size for size in sizes.values() if size is not None]
    out: dict[str, float] = {}
    if known:
        out["g_mem_mib"] = round(sum(known) / _MIB, 3)
    worker_sizes = [size for pid in workers if (size := sizes.get(pid)) is not None]
    if worker_sizes:
        out["g_w_mem_max_mib"] = round(max(worker_sizes) / _MIB, 3)
    return out


def _backlog_title(shm: mmap.mmap | None) -> str:
    backlog = _HEADER.unpack_from(shm, 0)[2] if shm is not None else -1
    return f"backlog={backlog}" if backlog >= 0 else "backlog=?"


def listen_backlog(listeners: Any) -> int:
    """Connections waiting in the accept queues of the TCP listeners; -1 if none is TCP."""
    total, known = 0, False
    for listener in listeners:
        sock = getattr(listener, "sock", listener)
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            continue  # UNIX sockets have no TCP_INFO
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            continue
        total += _TCPI_UNACKED.unpack_from(info, _TCPI_UNACKED_OFFSET)[0]
        known = True
    return total if known else -1


def _sample(arbiter: Any, shm: mmap.mmap) -> int:
    """One sample into the header; returns the backlog it read (-1: unknown or no workers)."""
    workers = list(arbiter.WORKERS.values())
    if not workers:
        return -1  # before the first spawn (or all dead): no sample beats a wrong zero
    live = {getattr(w, "_canonical_slot", -1) for w in workers}
    for slot in range(SLOTS):
        if slot not in live and shm[_FLAGS + slot]:
            shm[_FLAGS + slot] = 0  # a worker that died busy (SIGKILL) is not busy
    active = sum(1 for slot in live if slot >= 0 and shm[_FLAGS + slot])
    backlog = listen_backlog(list(getattr(arbiter, "LISTENERS", [])))
    samples = _HEADER.unpack_from(shm, 0)[3]
    _HEADER.pack_into(shm, 0, len(workers), active, backlog, (samples + 1) & 0xFFFFFFFF)
    return backlog
