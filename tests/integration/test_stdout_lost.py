"""Losing stdout loses only lines, and they are counted (README, "Guarantees"): stdout closed at
start (``<&- >&-``) or a pipe whose reader has gone; the server is started by hand (``Detached``)
because the harness always reads stdout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from otel_canonical_logs._guard import LOG_PREFIX
from tests.integration.harness import EXAMPLE_DIR, NO_CONTROL_SOCKET, VENV_BIN, free_port, http_session


class Detached:
    """``opentelemetry-instrument gunicorn`` with stdin/stdout as a shell would leave them
    (``<&- >&-``: closed), or stdout a pipe nobody reads; stderr to a file."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, shell_redirects: str = "", stdout: Any = None
    ) -> None:
        self.port = free_port()
        command = [
            str(VENV_BIN / "opentelemetry-instrument"),
            str(VENV_BIN / "gunicorn"),
            "mysite.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            *NO_CONTROL_SOCKET,
        ]
        if shell_redirects:
            command = ["sh", "-c", f'exec "$@" {shell_redirects}', "sh", *command]
        environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        environ.update(env, PYTHONPATH=str(EXAMPLE_DIR), PYTHONUNBUFFERED="1")
        self.stderr_path = log_dir / "gunicorn.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=EXAMPLE_DIR,
            env=environ,
            stdin=subprocess.DEVNULL if not shell_redirects else None,
            stdout=stdout,
            stderr=self._stderr,
            start_new_session=True,
        )
        self.host = "127.0.0.1"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if 200 == http_session().get(self.url("/ok/"), timeout=5).status_code:
                    return
            time.sleep(0.05)
        raise AssertionError(f"not ready: {self.stderr_path.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._stderr.close()


def _serve_through_lost_stdout(server: Detached, n: int) -> dict[str, Any]:
    http = http_session()
    statuses = [http.get(server.url("/n-plus-one/"), timeout=10).status_code for _ in range(n)]
    assert [200] * n == statuses
    body: dict[str, Any] = http.get(server.url("/fault/counts/"), timeout=10).json()
    return body


def test_closed_stdout_loses_lines_counted_never_writes_elsewhere(
    sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    """Started with stdin and stdout closed (``<&- >&-``): every request is served, every line is
    counted as lost, and none is written into whatever file later took descriptor 1."""
    server = Detached(sqlite_env, tmp_path, shell_redirects="<&- >&-")
    try:
        server.wait_ready()
        body = _serve_through_lost_stdout(server, 20)
        # /ok/ readiness, 20 requests; the /fault/counts/ line itself comes after the count.
        assert 21 <= body["counts"]["dropped.stdout_write"]
        fd1 = Path(f"/proc/{body['pid']}/fd/1")
        assert not fd1.exists() or fd1.stat().st_size == 0 or not fd1.is_file(), os.readlink(fd1)
        assert LOG_PREFIX not in server.stderr_path.read_text()
    finally:
        server.stop()


def test_broken_stdout_pipe_loses_lines_counted(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    """stdout a pipe whose reader has gone: every request is served by the same worker and every
    line is counted as lost."""
    server = Detached(sqlite_env, tmp_path, stdout=subprocess.PIPE)
    try:
        assert server.proc.stdout is not None
        server.proc.stdout.close()  # the reader goes away: each write now fails with EPIPE
        server.wait_ready()
        first = _serve_through_lost_stdout(server, 5)
        second = _serve_through_lost_stdout(server, 20)
        assert first["pid"] == second["pid"]
        assert 20 <= second["counts"]["dropped.stdout_write"] - first["counts"]["dropped.stdout_write"]
        assert LOG_PREFIX not in server.stderr_path.read_text()
    finally:
        server.stop()
