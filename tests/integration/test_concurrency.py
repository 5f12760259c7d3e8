"""Concurrent requests never see each other's fields (README, "Guarantees"): threads of one
gthread worker, each request with its own ``Context`` marker. ``make stress`` case ``concurrency``
runs ten times as many.
"""

from __future__ import annotations

from tests.integration.reliability import Start, concurrent_markers, internal_errors


def test_gthread_markers_never_mix(gunicorn: Start, sqlite_env: dict[str, str]) -> None:
    """400 requests from 16 concurrent clients on one gthread worker with 4 threads, each setting
    its own marker with Context.set: exactly 400 lines, each with its own marker."""
    server = gunicorn(env=sqlite_env, gunicorn_args=["--worker-class", "gthread", "--threads", "4"])
    tally = concurrent_markers(server, total=400, clients=16)
    assert (400, 0, 0, 0, 0) == (tally.lines, tally.lost, tally.duplicated, tally.wrong, tally.malformed), (
        tally
    )
    assert [] == internal_errors(server)
