"""In-process query counts of the example views, checked with Django's own tools.

Django is configured in a child process (this file run as a script) so the
pytest process never calls ``django.setup()`` with the example settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "example"


def _measure() -> None:
    """Script mode: request each path with django.test.Client, print JSON to stdout."""
    sys.path.insert(0, str(EXAMPLE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    import django

    django.setup()
    from contextlib import ExitStack

    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(raise_request_exception=False)
    report = {}
    for path in sys.argv[1:]:
        raw: list[dict[str, object]] = []

        def record(  # a Django execute wrapper
            execute: Any, sql: str, params: Any, many: bool, context: Any, raw: list[dict[str, object]] = raw
        ) -> Any:
            raw.append({"sql": sql, "params": list(params or ())})
            return execute(sql, params, many, context)

        with ExitStack() as stack:
            # Every alias, as the line counts every connection.
            captures = [stack.enter_context(CaptureQueriesContext(c)) for c in connections.all()]
            stack.enter_context(connection.execute_wrapper(record))
            response = client.get(path)
            # A streamed body runs its queries while it is sent: consume it inside the capture.
            body = b"".join(response) if response.streaming else response.content
        report[path] = {
            "status": response.status_code,
            "captured": sum(len(c.captured_queries) for c in captures),
            "raw": raw,
            "body_bytes": len(body),
        }
    json.dump(report, sys.stdout)


def measure(db_env: dict[str, str], *paths: str) -> dict[str, dict[str, Any]]:
    env = dict(os.environ, **db_env, DJANGO_SETTINGS_MODULE="mysite.settings")
    result = subprocess.run(
        [sys.executable, __file__, *paths],
        cwd=EXAMPLE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return report


def test_query_counts(db_env: dict[str, str]) -> None:
    report = measure(db_env, "/db/", "/n-plus-one/", "/books/", "/ok/", "/tpl/", "/debug-cursor/")

    db = report["/db/"]
    assert db["status"] == 200
    assert db["captured"] == 10
    texts = [q["sql"] for q in db["raw"]]
    assert len(texts) == 10
    assert "COUNT(*)" in texts[0]
    assert len(set(texts[1:])) == 1 and texts[0] != texts[1]
    # Same SQL text, different parameters.
    assert len({json.dumps(q["params"]) for q in db["raw"][1:]}) == 9

    n1 = report["/n-plus-one/"]
    assert n1["status"] == 200
    assert n1["captured"] == 6
    texts = [q["sql"] for q in n1["raw"]]
    assert len(set(texts[1:])) == 1 and texts[0] != texts[1]

    assert report["/books/"]["captured"] == 1
    assert report["/ok/"]["captured"] == 0
    assert report["/tpl/"]["captured"] == 0
    assert report["/debug-cursor/"]["captured"] == 3


if __name__ == "__main__":
    _measure()
