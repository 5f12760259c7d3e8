"""Killed workers lose nothing but their own requests (README, "Guarantees"): sync workers
SIGKILLed under load, on SQLite and PostgreSQL. ``make stress`` cases ``kills-sqlite`` and
``kills-postgres`` kill twenty times.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

from tests.integration.harness import GunicornServer
from tests.integration.reliability import (
    Start,
    event_where,
    get,
    internal_errors,
    kill_workers_under_load,
    workers,
)


def settled_worker_count(server: GunicornServer, want: str, timeout: float = 20) -> str:
    """g_w_count once two lines more than a sampling interval apart both read ``want``."""
    deadline = time.monotonic() + timeout
    got, since = "", None
    while time.monotonic() < deadline:
        rid = uuid.uuid4().hex
        if 200 == get(server, "/ok/", rid).status_code:
            got = event_where(server, "req_id", rid).get("g_w_count", "")
        if got != want:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since > 1.2:
            return got
        time.sleep(0.2)
    return got


def test_sigkilled_workers_under_load(gunicorn: Start, db_env: dict[str, str]) -> None:
    """Two sync workers under steady load, SIGKILLed four times: they are respawned, every answered
    request has exactly its one line, every cut one at most one, nothing is left in /dev/shm, and
    the saturation sample keeps following the workers (two again, then three after TTIN)."""
    server = gunicorn(env=db_env, gunicorn_args=["--workers", "2", "--timeout", "30"])
    settled_worker_count(server, "2")
    tally = kill_workers_under_load(server, kills=4)
    assert (0, 0, 0, 0) == (tally.lost, tally.duplicated, tally.wrong, tally.malformed), tally
    assert tally.sent > 50 and not any(note.startswith("/dev/shm") for note in tally.notes), tally
    assert "2" == settled_worker_count(server, "2")
    assert 2 == len(workers(server.pid))
    os.kill(server.pid, signal.SIGTTIN)  # the sampler still follows the arbiter after the kills
    assert "3" == settled_worker_count(server, "3")
    assert [] == internal_errors(server)
