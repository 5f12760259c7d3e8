"""Fixtures for the real-Gunicorn integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.harness import (
    GunicornServer,
    PostgresUnavailable,
    check_postgres,
    drop_database,
    prepare_database,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A migrated, seeded database per module and kind; yields the server env."""
    if request.param == "postgres":
        try:
            check_postgres()
        except PostgresUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
    env = prepare_database(request.param)
    try:
        yield env
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
