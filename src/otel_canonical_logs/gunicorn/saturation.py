"""Saturation fields sampled about once a second by a thread in the arbiter.

State lives in an anonymous shared mapping created in the arbiter before it forks workers:
workers inherit it, nothing is named, so nothing is left in /dev/shm when a worker is SIGKILLed.
Each worker flags itself busy in its own slot; the arbiter counts slots, workers and the listen
queue (``TCP_INFO`` on a LISTEN socket: ``tcpi_unacked`` is the accept-queue length).
"""

from __future__ import annotations

import logging
import mmap
import socket
import struct
import threading
import time
from typing import Any

from .. import _guard

_logger = logging.getLogger("otel_canonical_logs")

_HEADER = struct.Struct("=iiiI")  # workers, active, backlog (-1: unknown), samples taken
SLOTS = 1024
_SLOT_BASE = _HEADER.size
INTERVAL = 1.0
_TCPI_UNACKED = struct.Struct("=I")
_TCPI_UNACKED_OFFSET = 24  # after 8 one-byte fields and rto, ato, snd_mss, rcv_mss
_TCP_INFO_LEN = 104


class Board:
    """The shared mapping and this process's side of it: one per process (``board``).

    The arbiter creates the mapping before it forks (``start_sampler``); each worker inherits it,
    flags itself busy in its own slot (``busy``) and reads the last sample for its events
    (``fields``, registered into the runtime by the Gunicorn integration).
    """

    def __init__(self) -> None:
        self._shm: mmap.mmap | None = None
        self._arbiter: Any = None  # set in the arbiter process, whose sampler runs
        self._busy_lock = threading.Lock()
        self._busy = 0
        self._sample_lock = threading.Lock()

    def create(self) -> None:
        """Create the shared mapping (arbiter, before any fork); idempotent."""
        if self._shm is None:
            self._shm = mmap.mmap(-1, _SLOT_BASE + SLOTS)
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

    def assign_slot(self, worker: Any) -> None:
        """Arbiter side, when a worker object is made: the lowest free slot, zeroed."""
        arbiter = self._arbiter
        used = {getattr(w, "_canonical_slot", -1) for w in getattr(arbiter, "WORKERS", {}).values()}
        slot = next((i for i in range(SLOTS) if i not in used), -1)
        worker._canonical_slot = slot
        if self._shm is not None and slot >= 0:
            self._shm[_SLOT_BASE + slot] = 0

    def busy(self, slot: int, delta: int) -> None:
        """Worker side: count this process's in-flight requests into its slot."""
        shm = self._shm
        if shm is None or slot < 0:
            return
        with self._busy_lock:
            self._busy += delta
            shm[_SLOT_BASE + slot] = min(max(self._busy, 0), 255)

    def sample(self, arbiter: Any) -> None:
        """Take one sample from the arbiter's state into the shared mapping."""
        shm = self._shm
        if shm is None:
            return
        with self._sample_lock:  # the sampler thread and the arbiter's own loop (after spawning)
            _sample(arbiter, shm)

    def sampling(self) -> bool:
        """Whether this process is an arbiter whose sampler runs."""
        return self._arbiter is not None

    def start_sampler(self, arbiter: Any) -> None:
        """Start the sampling thread in the arbiter (it does not survive into forked workers)."""
        self._arbiter = arbiter
        self.create()

        def run() -> None:
            while True:
                try:
                    self.sample(arbiter)
                except Exception as exc:  # keep sampling: a frozen field is worse than a gap
                    _guard.report("gunicorn.saturation", exc)
                time.sleep(INTERVAL)

        threading.Thread(target=run, name="canonical-logs-saturation", daemon=True).start()


board = Board()


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


def _sample(arbiter: Any, shm: mmap.mmap) -> None:
    workers = list(arbiter.WORKERS.values())
    if not workers:
        return  # before the first spawn (or all dead): no sample beats a wrong zero
    live = {getattr(w, "_canonical_slot", -1) for w in workers}
    for slot in range(SLOTS):
        if slot not in live and shm[_SLOT_BASE + slot]:
            shm[_SLOT_BASE + slot] = 0  # a worker that died busy (SIGKILL) is not busy
    active = sum(1 for slot in live if slot >= 0 and shm[_SLOT_BASE + slot])
    backlog = listen_backlog(list(getattr(arbiter, "LISTENERS", [])))
    samples = _HEADER.unpack_from(shm, 0)[3]
    _HEADER.pack_into(shm, 0, len(workers), active, backlog, (samples + 1) & 0xFFFFFFFF)
