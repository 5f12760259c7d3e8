"""Run the example Django project under real Gunicorn for integration tests.

Every server is a subprocess started in its own session (process group), bound
to a free loopback port, with its stdout and stderr drained by reader threads.
stdout is where canonical log lines go, so it is kept line by line, untouched
(bytes are decoded as UTF-8 with backslash escapes for invalid bytes and only
the trailing ``\\n`` is removed; a stray ``\\r`` stays visible).

Readiness is a poll, never a fixed sleep: ``GET /health`` (answered by the WSGI
wrapper in ``mysite/wsgi.py`` without reaching Django) every 50 ms until it
returns 200. Exactly one such request succeeds per start, so an instrumented
server normally prints one ``/health`` canonical line before the test's own
requests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import gunicorn
import requests

if TYPE_CHECKING:
    import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO_ROOT / "example"
# Tests run with the venv's python, so its directory holds the console scripts.
# Deliberately not resolved: resolving a venv's python symlink leaves the venv.
VENV_BIN = Path(sys.executable).parent

POLL_INTERVAL = 0.05
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# Gunicorn >= 25.1 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or
# $HOME/.gunicorn/gunicorn.ctl by default; parallel servers would fight over that single path.
# Older releases have neither the socket nor the option (the matrix's lowest end runs 23.0).
GUNICORN_VERSION: tuple[int, ...] = tuple(gunicorn.version_info)
NO_CONTROL_SOCKET: list[str] = ["--no-control-socket"] if GUNICORN_VERSION >= (25, 1) else []

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"

_log_dir: Path | None = None
_log_lock = threading.Lock()
_log_counter = 0


def _next_log_path(label: str) -> Path:
    """A fresh file under one temp dir shared by every server of this process."""
    global _log_dir, _log_counter
    with _log_lock:
        if _log_dir is None:
            _log_dir = Path(tempfile.mkdtemp(prefix="canonical-gunicorn-"))
        _log_counter += 1
        return _log_dir / f"{_log_counter:03d}-{label}.stderr.log"


def free_port() -> int:
    """Ask the kernel for a free loopback port (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prepend_path(entry: str, existing: str | None) -> str:
    return entry if not existing else os.pathsep.join([entry, existing])


def _asks_for_gunicorns_asgi_worker(args: Sequence[str]) -> bool:
    pairs = itertools.pairwise(args)
    return any(flag in ("-k", "--worker-class") and value == "asgi" for flag, value in pairs) or any(
        arg in ("-kasgi", "--worker-class=asgi") for arg in args
    )


def http_session() -> requests.Session:
    """A requests session that ignores proxy variables (loopback traffic only)."""
    session = requests.Session()
    session.trust_env = False
    return session


class GunicornServer:
    """The example app (or another WSGI target) under a real Gunicorn subprocess."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        gunicorn_args: Sequence[str] = (),
        instrument: bool = True,
        wsgi: str = "mysite.wsgi",
        cwd: Path = EXAMPLE_DIR,
        bind: str | None = None,
    ) -> None:
        self.extra_env = dict(env or {})
        self.gunicorn_args = list(gunicorn_args)
        self.instrument = instrument
        self.wsgi = wsgi
        self.cwd = Path(cwd)
        self.bind = bind
        self.host = ""
        self.port = 0
        self.command: list[str] = []
        self.environ: dict[str, str] = {}
        self.stderr_log_path: Path | None = None
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        self._stderr_log: IO[str] | None = None
        self._http = http_session()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> GunicornServer:
        if self._proc is not None:
            raise RuntimeError("server already started")
        if self.bind is None:
            self.host, self.port = "127.0.0.1", free_port()
            bind = f"127.0.0.1:{self.port}"
        else:
            bind = self.bind
            self.host, _, port = bind.rpartition(":")
            if not self.host or not port.isdigit():
                raise ValueError(f"bind must be HOST:PORT, got {bind!r}")
            self.port = int(port)

        if _asks_for_gunicorns_asgi_worker(self.gunicorn_args) and gunicorn.version_info < (24,):
            import pytest

            pytest.skip(f"Gunicorn's own asgi worker is new in Gunicorn 24 (this is {gunicorn.__version__})")
        command = [str(VENV_BIN / "gunicorn"), self.wsgi, "--bind", bind, "--workers", "1"]
        command += [*NO_CONTROL_SOCKET, *self.gunicorn_args]
        if self.instrument:
            command.insert(0, str(VENV_BIN / "opentelemetry-instrument"))
        self.command = command

        environ = dict(os.environ)
        # The stock mysite/wsgi.py sets DJANGO_SETTINGS_MODULE itself; the server
        # must get it from there, not from whatever the test process has.
        environ.pop("DJANGO_SETTINGS_MODULE", None)
        environ["PYTHONUNBUFFERED"] = "1"
        # Last in the environment block: opentelemetry-instrument rewrites PYTHONPATH at start-up,
        # and setproctitle, which finds the command line by walking back from the first variable,
        # then cannot change the process titles (Gunicorn's own, and busy/idle).
        environ["PYTHONPATH"] = _prepend_path(str(self.cwd), environ.pop("PYTHONPATH", None))
        environ.update(self.extra_env)
        # Periodic saturation events only where a test asks for them: every other test reads
        # stdout and the OTLP logs as request lines only.
        environ.setdefault("CANONICAL_LOGS_SATURATION_INTERVAL", "0")
        self.environ = environ

        self.stderr_log_path = _next_log_path(f"port{self.port}")
        self._stderr_log = self.stderr_log_path.open("w", encoding="utf-8")
        self._stderr_log.write(f"# command: {command}\n# cwd: {self.cwd}\n")
        self._stderr_log.flush()

        self._proc = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._drain,
                args=(self._proc.stdout, self._stdout, None),
                name=f"gunicorn-{self.port}-stdout",
                daemon=True,
            ),
            threading.Thread(
                target=self._drain,
                args=(self._proc.stderr, self._stderr, self._stderr_log),
                name=f"gunicorn-{self.port}-stderr",
                daemon=True,
            ),
        ]
        for reader in self._readers:
            reader.start()

        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _drain(self, pipe: IO[bytes], sink: list[str], log: IO[str] | None) -> None:
        for raw in iter(pipe.readline, b""):
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            line = raw.decode("utf-8", errors="backslashreplace")
            with self._lock:
                sink.append(line)
            if log is not None:
                log.write(line + "\n")
                log.flush()
        pipe.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last_problem = "no attempt yet"
        health = self.url("/health")
        while True:
            if self._proc is None or self._proc.poll() is not None:
                self._join_readers(timeout=5)
                raise RuntimeError(
                    f"gunicorn exited early with code {self._proc and self._proc.returncode}"
                    f" ({self.command}).\n{self._tail()}"
                )
            try:
                response = self._http.get(health, timeout=(1, 5))
            except requests.RequestException as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last_problem = f"GET /health -> {response.status_code} {response.text[:200]!r}"
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"gunicorn not ready after {READY_TIMEOUT:.0f}s ({last_problem}).\n{self._tail()}"
                )
            time.sleep(POLL_INTERVAL)

    def stop(self) -> int | None:
        """SIGTERM, wait up to 10 s, then SIGKILL the whole process group."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # The arbiter is not reaped yet, so its PID (= our session's
                # PGID) cannot have been reused: the group holds only processes
                # we started, workers included (they would outlive the arbiter).
                self._kill_group(proc.pid)
                proc.wait(timeout=STOP_TIMEOUT)
        self.returncode = proc.returncode
        self._join_readers(timeout=5)
        if self._stderr_log is not None and not self._stderr_log.closed:
            self._stderr_log.close()
        self._http.close()
        return self.returncode

    @staticmethod
    def _kill_group(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def _join_readers(self, timeout: float) -> None:
        for reader in self._readers:
            reader.join(timeout)

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- accessors ---------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, path: str = "/") -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{self.host}:{self.port}{path}"

    @property
    def stdout_lines(self) -> list[str]:
        with self._lock:
            return list(self._stdout)

    def stderr_lines(self) -> list[str]:
        with self._lock:
            return list(self._stderr)

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines())

    def _tail(self, n: int = 40) -> str:
        lines = self.stderr_lines()[-n:]
        where = f" (full log: {self.stderr_log_path})" if self.stderr_log_path else ""
        return f"--- stderr tail{where} ---\n" + "\n".join(lines)

    def wait_for_stdout(self, predicate: Callable[[list[str]], bool], timeout: float = 10) -> list[str]:
        """Poll the captured stdout until predicate(lines) is true; return those lines."""
        deadline = time.monotonic() + timeout
        while True:
            finished = self._proc is not None and not any(r.is_alive() for r in self._readers)
            lines = self.stdout_lines
            if predicate(lines):
                return lines
            if finished or time.monotonic() >= deadline:
                why = "stdout closed" if finished else f"timed out after {timeout}s"
                shown = "\n".join(f"  {i}: {line!r}" for i, line in enumerate(lines))
                raise AssertionError(
                    f"stdout predicate never became true ({why}); {len(lines)} line(s):\n"
                    f"{shown}\n{self._tail(20)}"
                )
            time.sleep(POLL_INTERVAL)


# -- canonical lines ---------------------------------------------------------


def events(lines: Sequence[str]) -> list[dict[str, str]]:
    """Parse every line as a canonical log line; any other stdout line is a failure."""
    from tests.logfmt_strict import decode_line

    parsed: list[dict[str, str]] = []
    for index, line in enumerate(lines):
        try:
            pairs = decode_line(line)
        except ValueError as exc:
            raise AssertionError(f"stdout line {index} is not strict logfmt ({exc}): {line!r}") from None
        if not pairs or pairs[0][0] != "event_type":
            raise AssertionError(
                f"stdout line {index} is not a canonical line (must start with event_type=): {line!r}"
            )
        record = dict(pairs)
        if len(record) != len(pairs):
            keys = [key for key, _ in pairs]
            dupes = sorted({key for key in keys if keys.count(key) > 1})
            raise AssertionError(f"stdout line {index} repeats key(s) {dupes}: {line!r}")
        parsed.append(record)
    return parsed


# -- databases ---------------------------------------------------------------


class PostgresUnavailable(RuntimeError):
    pass


def _pg_connect(dbname: str = "postgres") -> psycopg.Connection[Any]:
    import psycopg

    try:
        return psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user=PG_USER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as user {PG_USER!r} "
            f"(trust auth expected; CI must start it): {exc}"
        ) from exc


def check_postgres() -> None:
    """Raise PostgresUnavailable with a clear message if the server cannot be used."""
    _pg_connect().close()


def manage(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``example/manage.py`` with the venv python; raise with its output on failure."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = _prepend_path(str(EXAMPLE_DIR), environ.get("PYTHONPATH"))
    environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE_DIR,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed with code {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def prepare_database(db: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Create, migrate and seed a fresh database; return the env for the server (with ``extra``,
    which the migration sees too: ``EXAMPLE_ADMIN=1`` adds the admin's tables)."""
    if db == "sqlite":
        directory = tempfile.mkdtemp(prefix="canonical-sqlite-")
        env = {"EXAMPLE_DB": "sqlite", "EXAMPLE_SQLITE_PATH": str(Path(directory) / "db.sqlite3")}
    elif db == "postgres":
        from psycopg import sql

        name = f"canonical_test_{secrets.token_hex(6)}"
        with _pg_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        env = {"EXAMPLE_DB": "postgres", "EXAMPLE_PG_NAME": name}
    else:
        raise ValueError(f"unknown database kind {db!r} (expected 'sqlite' or 'postgres')")
    env.update(extra or {})
    try:
        manage("migrate", "--noinput", env=env)
        manage("seed", env=env)
    except BaseException:
        drop_database(env)
        raise
    return env


def drop_database(env: Mapping[str, str]) -> None:
    """Undo prepare_database: drop the PostgreSQL database or delete the SQLite dir."""
    if env.get("EXAMPLE_DB") == "postgres":
        from psycopg import sql

        name = env["EXAMPLE_PG_NAME"]
        with _pg_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    elif "EXAMPLE_SQLITE_PATH" in env:
        directory = Path(env["EXAMPLE_SQLITE_PATH"]).parent
        if directory.name.startswith("canonical-sqlite-"):
            shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def database(kind: str, extra: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """A migrated, seeded database of ``kind`` for the block; yields the server env."""
    if kind == "postgres":
        try:
            check_postgres()
        except PostgresUnavailable as exc:
            import pytest

            pytest.fail(str(exc), pytrace=False)
    env = prepare_database(kind, extra)
    try:
        yield env
    finally:
        drop_database(env)


@contextmanager
def admin_database(kind: str, password: str) -> Iterator[dict[str, str]]:
    """:func:`database` with the admin's, auth's and sessions' tables (``EXAMPLE_ADMIN``) and a
    superuser ``admin`` who logs in with ``password``; yields the server env."""
    with database(kind, {"EXAMPLE_ADMIN": "1"}) as env:
        superuser = {**env, "DJANGO_SUPERUSER_PASSWORD": password}
        manage(
            "createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com", env=superuser
        )
        yield env
