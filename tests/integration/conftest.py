"""Fixtures for the real-Gunicorn integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.harness import GunicornServer, database


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A migrated, seeded database per module and kind; yields the server env."""
    with database(request.param) as env:
        yield env


@pytest.fixture(scope="module")
def module_sqlite_env() -> Iterator[dict[str, str]]:
    """One SQLite database for a module whose subject is not the database."""
    with database("sqlite") as env:
        yield env


@pytest.fixture
def gunicorn() -> Iterator[Callable[..., GunicornServer]]:
    """Factory: ``gunicorn(**GunicornServer kwargs)`` returns a started server.

    Every server it started is stopped at teardown, whatever the test outcome.
    """
    servers: list[GunicornServer] = []

    def start(**kwargs: Any) -> GunicornServer:
        server = GunicornServer(**kwargs)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        errors = []
        for server in reversed(servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]
