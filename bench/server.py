"""Processes: the SQLite file, the OTLP sink, one Gunicorn server per configuration, and wrk.

tests/stress/run.py reuses LOGS (it rebinds bench.server.LOGS to a directory of its own), ensure_wrk,
prepare_db, Sink, Server, load_until and bench.setups.CONFIG_BY_KEY: keep their signatures.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .common import BENCH, DB_PATH, DEV_BIN, EXAMPLE, WORK, log
from .setups import SINK, Config
from .venvs import venv_bin

LOGS = WORK / "logs"  # server and sink output; tests/stress/run.py points it elsewhere


def clear_logs() -> None:
    shutil.rmtree(LOGS, ignore_errors=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is missing: install the Debian package `wrk` (apt-get install -y wrk)")
    log("installing wrk (apt-get)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get did not install wrk")
    return found


def prepare_db() -> None:
    """Migrate and seed the SQLite file every configuration reads (once; reused afterwards)."""
    stamp = WORK / "bench.sqlite3.ok"
    if DB_PATH.exists() and stamp.exists():
        return
    WORK.mkdir(parents=True, exist_ok=True)
    DB_PATH.unlink(missing_ok=True)
    env = base_env()
    for command in (["migrate", "-v", "0"], ["seed"]):
        subprocess.run(
            [DEV_BIN / "python", "manage.py", *command],
            cwd=EXAMPLE,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    stamp.write_text("ok\n")


def base_env() -> dict[str, str]:
    """The inherited environment minus anything that would change what is measured."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "CANONICAL_LOGS_", "EXAMPLE_", "GUNICORN_"))
        and k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    # Set for every configuration alike: plain OTel's DjangoInstrumentor and the original's
    # post_fork hook both read settings before wsgi.py runs (ours would not need it).
    # bench_settings = the example's settings, plus a stand-in for the few names the example
    # imports from our package where the package is not installed (see the module).
    env["DJANGO_SETTINGS_MODULE"] = "bench_settings"
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH / "pythonpath"), str(EXAMPLE)])
    env["EXAMPLE_DB"] = "sqlite"
    env["EXAMPLE_SQLITE_PATH"] = str(DB_PATH)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """bench/otlp_sink.py as a separate process."""

    def __init__(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.out_path = LOGS / "otlp_sink.out"
        self.out = open(self.out_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [DEV_BIN / "python", BENCH / "otlp_sink.py"],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            cwd=BENCH,
        )
        deadline = time.monotonic() + 20
        self.port = 0
        while time.monotonic() < deadline and not self.port:
            match = re.search(r"listening 127\.0\.0\.1:(\d+)", self.out_path.read_text())
            if match:
                self.port = int(match.group(1))
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
        if not self.port:
            self.stop()
            sys.exit(f"the OTLP sink did not start; see {self.out_path}")
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, dict[str, int]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/stats")
            stats: dict[str, dict[str, int]] = json.loads(conn.getresponse().read())
            return stats
        finally:
            conn.close()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        return self.out_path.read_text()


def stats_delta(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for path, counts in after.items():
        old = before.get(path, {})
        delta[path] = {k: v - old.get(k, 0) for k, v in counts.items()}
    return delta


class Server:
    """One Gunicorn master + one worker (sync, or the configuration's class); stdout/stderr to files."""

    def __init__(
        self,
        config: Config,
        bins: dict[str, Path],
        sink: Sink | None,
        *,
        wrapper: Sequence[str | Path] = (),
        extra_env: dict[str, str] | None = None,
        pythonpath_first: Sequence[Path] = (),
        extra_args: Sequence[str] = (),
        name: str | None = None,
        ready_timeout: float = 60,
        probe_timeout: float = 5,
        stop_timeout: float = 40,
    ) -> None:
        """Start the server and wait until it answers `/ok/`.

        The keyword options are for running it under a tool (bench/instructions.py: valgrind):
        `wrapper` goes in front of the command, `extra_env` over the environment,
        `pythonpath_first` before the bench's PYTHONPATH, `extra_args` after Gunicorn's own;
        `name` (default: the configuration's key) names the log files.
        """
        self.config = config
        self.port = free_port()
        self.stop_timeout = stop_timeout
        bindir = venv_bin(config, bins)
        env = base_env()
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        for key, value in config.env.items():
            if value == SINK:
                if sink is None:
                    raise RuntimeError(f"{config.key} needs the sink")
                value = sink.url
            env[key] = value
        env.update(extra_env or {})
        if pythonpath_first:
            env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath_first), env["PYTHONPATH"]])
        cmd: list[str | Path] = [
            bindir / "gunicorn",
            config.app,
            "--chdir",
            EXAMPLE,
            "--workers",
            "1",
            "--worker-class",
            config.worker_class,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--no-control-socket",
            "--log-level",
            "warning",
            *config.gunicorn_args,
            *extra_args,
        ]
        if config.instrument:
            cmd = [bindir / "opentelemetry-instrument", *cmd]
        cmd = [*wrapper, *cmd]
        LOGS.mkdir(parents=True, exist_ok=True)
        name = name or config.key
        self.out_path = LOGS / f"{name}.out"
        self.err_path = LOGS / f"{name}.err"
        self.lines_before = count_lines(self.out_path)
        self.stdout = open(self.out_path, "ab")  # noqa: SIM115 - a file, never an undrained pipe
        self.stderr = open(self.err_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=EXAMPLE, env=env, stdout=self.stdout, stderr=self.stderr, start_new_session=True
        )
        self.requests = 0  # requests sent to this server (readiness, warm-up, load)
        self._wait_ready(ready_timeout, probe_timeout)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _wait_ready(self, timeout: float, probe_timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=probe_timeout)
                conn.request("GET", "/ok/")
                status = conn.getresponse().status
                conn.close()
                self.requests += 1
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        tail = self.err_path.read_text(errors="replace").strip().splitlines()[-5:]
        sys.exit(
            f"{self.config.key}: Gunicorn did not answer on port {self.port}; {self.err_path} ends with:\n"
            + "\n".join(tail)
        )

    def worker_pid(self) -> int:
        """The worker: the only child of the Gunicorn master (a child of any of its threads)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = []
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                try:
                    children += (task / "children").read_text().split()
                except OSError:  # a thread that just ended
                    continue
            if children:
                return int(children[0])
            time.sleep(0.1)
        raise RuntimeError("no Gunicorn worker found")

    def stop(self) -> None:
        """SIGTERM the master (graceful: the worker flushes its exporters), SIGKILL the group if stuck."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.stdout.close()
        self.stderr.close()

    def lines_written(self) -> int:
        return count_lines(self.out_path) - self.lines_before


# The arbiter's periodic saturation events share stdout with the request lines: not counted.
_SATURATION = (b"event_type=saturation", b'"event_type":"saturation"')


def count_lines(path: Path) -> int:
    """Lines in the server's stdout, less our saturation events."""
    if not path.exists():
        return 0
    lines = 0
    with open(path, "rb") as f:
        for line in f:
            head = line[:32]  # event_type is always the first key
            if not any(marker in head for marker in _SATURATION):
                lines += 1
    return lines


@dataclass
class WrkResult:
    rps: float
    requests: int
    seconds: float
    errors: int  # non-2xx/3xx responses + socket errors


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(wrk: str, url: str, seconds: float) -> WrkResult:
    out = subprocess.run(
        [wrk, "-t1", "-c1", f"-d{max(1, round(seconds))}s", url],  # whole seconds only
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    if found is None or done is None:
        raise RuntimeError(f"unexpected wrk output: {out!r}")
    rps = float(found.group(1))
    requests = int(done.group(1))
    elapsed = _ms(done.group(2), done.group(3)) / 1e3
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return WrkResult(rps, requests, elapsed, errors)


def load_until(wrk: str, url: str, target: int, chunk_s: float, rate: float) -> tuple[int, float]:
    """Run wrk in timed chunks until `target` requests have been served; returns (count, rate)."""
    done = 0
    while done < target:
        seconds = max(1.0, min(chunk_s, (target - done) / max(rate, 1.0)))
        result = run_wrk(wrk, url, seconds)
        if result.errors:
            raise RuntimeError(f"{result.errors} errors from wrk on {url}")
        done += result.requests
        rate = result.rps
    return done, rate
