"""Fixtures for the real-Gunicorn integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.harness import GunicornServer, database, drop_database, prepare_database
from tests.integration.reliability import internal_errors, wait_for_saturation_sample


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
def sqlite_env() -> Iterator[dict[str, str]]:
    """A migrated, seeded SQLite database of its own, for each test."""
    with database("sqlite") as env:
        yield env


@pytest.fixture(scope="module")
def twins() -> Iterator[tuple[GunicornServer, GunicornServer]]:
    """The example app under ``opentelemetry-instrument gunicorn`` and, beside it, uninstrumented."""
    env = prepare_database("sqlite")
    try:
        with GunicornServer(env=env) as ours, GunicornServer(env=env, instrument=False) as plain:
            wait_for_saturation_sample(ours)  # so that every line of the module has the g_* keys
            yield ours, plain
            assert [] == internal_errors(ours), ours.stderr_text()
    finally:
        drop_database(env)


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
