"""Benchmark driver for otel-canonical-logs: `make bench`, `make bench-memory`, and profiling.

    python bench/run.py bench     [--rounds 4] [--duration 5] [--warmup 1] [--configs a,b,...] [--no-write]
    python bench/run.py memory    [--requests 100000] [--warmup-requests 2000]
    python bench/run.py profile   [--config ours-full] [--path /db/] [--seconds 10]

Every configuration serves the same example app (example/, SQLite) with one `sync` Gunicorn
worker on 127.0.0.1 and a free port, loaded by `wrk -t1 -c1` for a fixed time per endpoint after
a short warm-up. The ASGI pair (bare-asgi, ours-none-asgi) serves the example's mysite.asgi with
one uvicorn_worker.UvicornWorker instead, and is compared with bare-asgi, not with bare. `bench`
starts each configuration afresh in every round and rotates their order from round to round, then
reports medians. Exports go to bench/otlp_sink.py, a local OTLP/HTTP receiver that counts and
discards. Results are written into bench/RESULTS.md between markers; text outside the markers is
kept.

The comparison venvs live in bench/.venvs/ and are reused while their pinned requirements stay
the same; they pin Django, Gunicorn and the OpenTelemetry packages (and, in a venv that runs an
ASGI configuration, Uvicorn and uvicorn-worker) to the versions of the dev venv (.venv), so the
only difference between configurations is the instrumentation.

Measurements wait while a test/lint run or any process outside the bench uses the machine, and a
measurement during which outside processes took more than FOREIGN_LIMIT of a CPU is repeated.
tests/stress/run.py reuses LOGS, ensure_wrk, prepare_db, Sink, Server, CONFIG_BY_KEY and
load_until: keep their signatures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENVS = BENCH / ".venvs"
WORK = BENCH / ".work"
LOGS = WORK / "logs"
EXAMPLE = ROOT / "example"
DEV_BIN = ROOT / ".venv" / "bin"
RESULTS = BENCH / "RESULTS.md"
DB_PATH = WORK / "bench.sqlite3"
ENDPOINTS = ("/ok/", "/db/", "/tpl/")
DB_QUERIES = 10  # queries per /db/ request (example/shop/views.py: db)
ORIGINAL = "gunicorn-django-canonical-logs==0.0.10"
PY_SPY = "py-spy==0.4.3"
WAIT_MAX = 30 * 60  # seconds, in all, to wait for other work on the machine before going ahead
WSGI_APP = "mysite.wsgi"
ASGI_APP = "mysite.asgi:application"
UVICORN_WORKER = "uvicorn_worker.UvicornWorker"
ASGI_PACKAGES = ("uvicorn", "uvicorn-worker")  # what a venv needs to run an ASGI configuration
ASGI_LABEL = "ASGI (uvicorn_worker.UvicornWorker)"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- versions and venvs ------------------------------------------------------------------------


def dev_versions() -> dict[str, str | None]:
    """Versions installed in the dev venv: the pins for the comparison venvs.

    The ASGI packages map to None when the dev venv lacks them (a venv from before they joined
    the `test` extra): only the ASGI configurations need them, and cmd_bench says so.
    """
    if not (DEV_BIN / "python").exists():
        sys.exit("no dev venv at .venv: run `make venv` first")
    names = [
        "django",
        "gunicorn",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation",
        "opentelemetry-instrumentation-django",
        "opentelemetry-exporter-otlp-proto-http",
        "otel-canonical-logs",
        "requests",
    ]
    optional = [*ASGI_PACKAGES, "uvloop", "httptools"]  # the last two: what Uvicorn's "auto" picks
    code = (
        "import json, importlib.metadata as m, sys\n"
        "def version(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({n: version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [DEV_BIN / "python", "-c", code, *names, *optional], check=True, capture_output=True, text=True
    ).stdout
    versions = json.loads(out)
    missing = [n for n in names if versions[n] is None]
    if missing:
        sys.exit(f"the dev venv .venv lacks {', '.join(missing)}: run `make venv`")
    return versions


def venv_requirements(versions: dict[str, str | None]) -> dict[str, list[str]]:
    # requests: imported at module level by the example's shop/api_views.py.
    core = [
        f"django=={versions['django']}",
        f"gunicorn=={versions['gunicorn']}",
        f"requests=={versions['requests']}",
    ]
    contrib = versions["opentelemetry-instrumentation"]
    sdk = versions["opentelemetry-sdk"]
    reqs = {
        "original": [*core, ORIGINAL],
        "otel": [
            *core,
            f"opentelemetry-api=={sdk}",
            f"opentelemetry-sdk=={sdk}",
            f"opentelemetry-distro=={contrib}",
            f"opentelemetry-instrumentation=={contrib}",
            f"opentelemetry-instrumentation-django=={contrib}",
            # Django's SQLite backend calls sqlite3.connect, which this instrumentor wraps.
            f"opentelemetry-instrumentation-sqlite3=={contrib}",
            f"opentelemetry-exporter-otlp-proto-http=={sdk}",
        ],
        "tools": [PY_SPY],
    }
    # A venv that runs an ASGI configuration also gets Uvicorn and its Gunicorn worker, at the
    # dev venv's versions (today both ASGI configurations run in the dev venv itself).
    for name in {c.venv for c in CONFIGS if c.asgi} - {"dev"}:
        reqs[name] += [f"{n}=={versions[n]}" for n in ASGI_PACKAGES]
    return reqs


def ensure_venv(name: str, requirements: list[str]) -> Path:
    """Create bench/.venvs/<name> with exactly these pins, or reuse it if it already has them."""
    path = VENVS / name
    stamp = path / ".bench-requirements"
    wanted = "\n".join(sorted(requirements)) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and (path / "bin" / "python").exists():
        return path / "bin"
    log(f"building venv {path.relative_to(ROOT)}: {' '.join(requirements)}")
    if path.exists():
        shutil.rmtree(path)
    # sys._base_executable: the interpreter behind the dev venv, so every venv runs the same Python.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", path], check=True)
    pip = [path / "bin" / "python", "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True)
    stamp.write_text(wanted)
    return path / "bin"


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


# -- configurations ----------------------------------------------------------------------------


@dataclass
class Config:
    key: str
    label: str
    venv: str  # "dev" (.venv) or a name under bench/.venvs
    instrument: bool = False  # run under opentelemetry-instrument
    env: dict[str, str] = field(default_factory=dict)
    gunicorn_args: list[str] = field(default_factory=list)
    uses_sink: bool = False
    app: str = WSGI_APP  # what Gunicorn serves
    worker_class: str = "sync"
    baseline: str = "bare"  # the configuration its overhead is computed against

    @property
    def asgi(self) -> bool:
        return self.worker_class == UVICORN_WORKER


NONE_EXPORTERS = {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}
SINK = "{sink}"  # replaced by the sink's URL when the server starts

CONFIGS = [
    Config("bare", "bare Django + Gunicorn", "dev"),
    Config(
        "original",
        "gunicorn-django-canonical-logs 0.0.10",
        "original",
        gunicorn_args=["--config", str(BENCH / "configs" / "original_gunicorn.conf.py")],
    ),
    Config("otel-none", "plain OTel, exporters none", "otel", True, dict(NONE_EXPORTERS)),
    Config(
        "otel-otlp",
        "plain OTel, traces over OTLP/HTTP",
        "otel",
        True,
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": SINK,
        },
        uses_sink=True,
    ),
    Config("ours-none", "ours, exporters none (line only)", "dev", True),
    Config(
        "ours-full",
        "ours full, OTLP, 100% sampled",
        "dev",
        True,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": SINK},
        uses_sink=True,
    ),
    Config(
        "ours-full-10",
        "ours full, OTLP, 10% sampled",
        "dev",
        True,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": SINK,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        uses_sink=True,
    ),
    # The ASGI pair: the same app through mysite/asgi.py under one UvicornWorker, measured
    # against its own bare configuration.
    Config(
        "bare-asgi",
        "bare Django + Gunicorn, UvicornWorker",
        "dev",
        app=ASGI_APP,
        worker_class=UVICORN_WORKER,
        baseline="bare-asgi",
    ),
    Config(
        "ours-none-asgi",
        "ours, exporters none (line only), UvicornWorker",
        "dev",
        True,
        app=ASGI_APP,
        worker_class=UVICORN_WORKER,
        baseline="bare-asgi",
    ),
]
CONFIG_BY_KEY = {c.key: c for c in CONFIGS}


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


def venv_bin(config: Config, bins: dict[str, Path]) -> Path:
    return DEV_BIN if config.venv == "dev" else bins[config.venv]


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def others_testing() -> str | None:
    """The command line of a test/lint run that is not ours, if one is running."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if any(Path(w).name in ("pytest", "py.test", "mypy", "ruff") or w == "pytest" for w in words):
            return " ".join(words)[:120]
    return None


FOREIGN_LIMIT = 0.10  # share of one CPU that processes outside the bench may use during a measurement
TICK = os.sysconf("SC_CLK_TCK")


def busy_ticks() -> int:
    """CPU ticks spent busy on the whole machine (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def own_ticks() -> int:
    """CPU ticks of this driver and everything it started (live descendants + reaped children)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        parent[pid] = int(rest[1])
        ticks[pid] = int(rest[11]) + int(rest[12])  # utime + stime
    me = os.getpid()
    total = ticks.get(me, 0)
    frontier = [me]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                total += ticks[child]
                frontier.append(child)
    reaped = os.times()
    return total + round((reaped.children_user + reaped.children_system) * TICK)


class Quiet:
    """Measure only when this 2-core machine is otherwise quiet.

    Before a measurement: wait while a test or lint run is going (pytest, mypy, ruff) or while
    processes outside the bench use more than FOREIGN_LIMIT of a CPU. After it: if they did, the
    caller measures again (at most twice), since the figure would be low for reasons of its own.
    """

    def __init__(self) -> None:
        self.waited = 0.0
        self.remeasured = 0
        self.accepted_noisy: list[str] = []
        self._mark = (0, 0, 0.0)

    @staticmethod
    def foreign_share(seconds: float = 1.0) -> float:
        busy0, own0, t0 = busy_ticks(), own_ticks(), time.monotonic()
        time.sleep(seconds)
        return ((busy_ticks() - busy0) - (own_ticks() - own0)) / TICK / (time.monotonic() - t0)

    def wait(self) -> None:
        waited = 0.0
        while self.waited + waited < WAIT_MAX:
            busy = others_testing()
            share = 0.0 if busy else self.foreign_share(0.5)
            if not busy and share <= FOREIGN_LIMIT:
                break
            if waited % 60 == 0:
                log(f"waiting: {busy or f'other processes use {share:.0%} of a CPU'}")
            time.sleep(5)
            waited += 5
        self.waited += waited

    def begin(self) -> None:
        self._mark = (busy_ticks(), own_ticks(), time.monotonic())

    def end(self) -> float:
        """Share of a CPU that processes outside the bench used since begin()."""
        busy0, own0, t0 = self._mark
        return ((busy_ticks() - busy0) - (own_ticks() - own0)) / TICK / (time.monotonic() - t0)

    def notes(self) -> list[str]:
        out = []
        if self.waited:
            out.append(f"waited {self.waited:.0f} s in all for other work on the machine to finish")
        if self.remeasured:
            out.append(
                f"{self.remeasured} measurement(s) repeated because other processes used more than "
                f"{FOREIGN_LIMIT:.0%} of a CPU during them"
            )
        out += [f"kept after 3 tries, with other load on the machine: {x}" for x in self.accepted_noisy]
        return out


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
            return json.loads(conn.getresponse().read())
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


def stats_delta(after: dict, before: dict) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for path, counts in after.items():
        old = before.get(path, {})
        delta[path] = {k: v - old.get(k, 0) for k, v in counts.items()}
    return delta


class Server:
    """One Gunicorn master + one worker (sync, or the configuration's class); stdout/stderr to files."""

    def __init__(self, config: Config, bins: dict[str, Path], sink: Sink | None) -> None:
        self.config = config
        self.port = free_port()
        bindir = venv_bin(config, bins)
        env = base_env()
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        for key, value in config.env.items():
            if value == SINK:
                if sink is None:
                    raise RuntimeError(f"{config.key} needs the sink")
                value = sink.url
            env[key] = value
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
        ]
        if config.instrument:
            cmd = [bindir / "opentelemetry-instrument", *cmd]
        LOGS.mkdir(parents=True, exist_ok=True)
        self.out_path = LOGS / f"{config.key}.out"
        self.err_path = LOGS / f"{config.key}.err"
        self.lines_before = count_lines(self.out_path)
        self.stdout = open(self.out_path, "ab")  # noqa: SIM115 - a file, never an undrained pipe
        self.stderr = open(self.err_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=EXAMPLE, env=env, stdout=self.stdout, stderr=self.stderr, start_new_session=True
        )
        self.requests = 0  # requests sent to this server (readiness, warm-up, load)
        self._wait_ready()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
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
        """The worker: the only child of the Gunicorn master."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.1)
        raise RuntimeError("no Gunicorn worker found")

    def stop(self) -> None:
        """SIGTERM the master (graceful: the worker flushes its exporters), SIGKILL the group if stuck."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.stdout.close()
        self.stderr.close()

    def lines_written(self) -> int:
        return count_lines(self.out_path) - self.lines_before


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# -- load --------------------------------------------------------------------------------------


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
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
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


def machine_lines() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return [
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), `{cpu}`, "
        f"{mem_kib / 1048576:.1f} GiB RAM, {platform.system()} {platform.release()}",
    ]


def versions_line(versions: dict[str, str], wrk: str | None) -> str:
    wrk_version = "n/a"
    if wrk:
        probe = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        wrk_version = (probe.stdout + probe.stderr).split("\n", 1)[0].split(" [")[0]
    return (
        f"- versions: Python {platform.python_version()}, Django {versions['django']}, "
        f"Gunicorn {versions['gunicorn']}, OTel SDK {versions['opentelemetry-sdk']}, "
        f"OTel contrib {versions['opentelemetry-instrumentation']}, "
        f"otel-canonical-logs {versions['otel-canonical-logs']} (editable, this tree), "
        f"{ORIGINAL}, {wrk_version}"
    )


def command_line(default: str) -> str:
    return default if os.environ.get("MAKELEVEL") else "python " + " ".join(["bench/run.py", *sys.argv[1:]])


# -- RESULTS.md --------------------------------------------------------------------------------

RESULTS_HEADER = """# Benchmark results

Written by `bench/run.py` (`make bench`, `make bench-memory`, `python bench/run.py profile`);
each run replaces its own section between the markers. Text outside the markers is kept.
"""


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else RESULTS_HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    log(f"wrote the {name} section of {RESULTS.relative_to(ROOT)}")


# -- make bench --------------------------------------------------------------------------------


def overhead_us(rps: float, bare_rps: float) -> float:
    return 1e6 / rps - 1e6 / bare_rps


def cmd_bench(args: argparse.Namespace) -> int:
    keys = args.configs.split(",") if args.configs else [c.key for c in CONFIGS]
    unknown = [k for k in keys if k not in CONFIG_BY_KEY]
    if unknown:
        sys.exit(f"--configs: unknown: {unknown}")
    configs = [CONFIG_BY_KEY[k] for k in keys]
    baselines = sorted({c.baseline for c in configs} - set(keys))
    if baselines:
        sys.exit(f"--configs must include the configurations the others are measured against: {baselines}")
    started = dt.datetime.now(dt.UTC)
    wrk = ensure_wrk()
    versions = dev_versions()
    lacking = [n for n in ASGI_PACKAGES if versions[n] is None]
    if lacking and any(c.asgi and c.venv == "dev" for c in configs):
        sys.exit(f"the ASGI configurations need {', '.join(lacking)} in the dev venv: run `make venv`")
    reqs = venv_requirements(versions)
    bins = {name: ensure_venv(name, reqs[name]) for name in {c.venv for c in configs} - {"dev"}}
    prepare_db()
    shutil.rmtree(LOGS, ignore_errors=True)
    quiet = Quiet()
    rps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    sent: dict[str, int] = defaultdict(int)
    lines: dict[str, int] = defaultdict(int)
    exports: dict[str, dict[str, dict[str, int]]] = {}
    errors: dict[str, int] = defaultdict(int)
    sink = Sink() if any(c.uses_sink for c in configs) else None
    log(
        f"{len(configs)} configurations x {len(ENDPOINTS)} endpoints x {args.rounds} rounds, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s each" + (f"; OTLP sink {sink.url}" if sink else "")
    )
    try:
        for rnd in range(args.rounds):
            shift = rnd % len(configs)
            for config in configs[shift:] + configs[:shift]:
                quiet.wait()
                before = sink.stats() if sink and config.uses_sink else None
                server = Server(config, bins, sink)
                try:
                    for path in ENDPOINTS:
                        for attempt in range(3):
                            quiet.wait()
                            warm = run_wrk(wrk, server.url(path), args.warmup)
                            quiet.begin()
                            result = run_wrk(wrk, server.url(path), args.duration)
                            foreign = quiet.end()
                            server.requests += warm.requests + result.requests
                            errors[config.key] += warm.errors + result.errors
                            if foreign <= FOREIGN_LIMIT:
                                break
                            if attempt == 2:
                                quiet.accepted_noisy.append(f"{config.key} {path} ({foreign:.0%} of a CPU)")
                                break
                            quiet.remeasured += 1
                            log(f"{config.key} {path}: other processes used {foreign:.0%} of a CPU; again")
                        rps[config.key][path].append(result.rps)
                        log(f"round {rnd + 1}/{args.rounds} {config.key:14} {path:6} {result.rps:8.1f} req/s")
                finally:
                    server.stop()
                sent[config.key] += server.requests
                lines[config.key] += server.lines_written()
                if sink and before is not None:
                    delta = stats_delta(sink.stats(), before)
                    total = exports.setdefault(config.key, {})
                    for p, counts in delta.items():
                        for k, v in counts.items():
                            total.setdefault(p, {}).setdefault(k, 0)
                            total[p][k] += v
    finally:
        sink_totals = sink.stop() if sink else ""
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    body = render_bench(
        args, configs, versions, wrk, started, elapsed, rps, sent, lines, exports, errors, quiet.notes()
    )
    if sink_totals:
        log(sink_totals.strip().splitlines()[-1])
    print(body)
    if not args.no_write:
        write_section("bench", body)
    return 0


def render_bench(args, configs, versions, wrk, started, elapsed, rps, sent, lines, exports, errors, notes):
    med = {c.key: {p: statistics.median(rps[c.key][p]) for p in ENDPOINTS} for c in configs}
    ovh = {c.key: {p: overhead_us(med[c.key][p], med[c.baseline][p]) for p in ENDPOINTS} for c in configs}
    per_query = {c.key: (ovh[c.key]["/db/"] - ovh[c.key]["/ok/"]) / DB_QUERIES for c in configs}
    wsgi = [c for c in configs if not c.asgi]
    asgi = [c for c in configs if c.asgi]
    out: list[str] = []
    out.append(f"## `make bench` — {started:%Y-%m-%d %H:%M} UTC\n")
    out.append(f"- command: `{command_line('make bench')}` ({elapsed / 60:.1f} min)")
    out.extend(machine_lines())
    out.append(versions_line(versions, wrk))
    worker = "one `sync` Gunicorn worker per configuration"
    if asgi:
        worker += f" (ASGI: one `{UVICORN_WORKER}`)"
    against = " (ASGI pair: rps(bare-asgi) instead)" if asgi else ""
    out.append(
        f"- method: {worker} on 127.0.0.1 (SQLite, `DEBUG` off, "
        f"stdout to a file), `wrk -t1 -c1 -d{args.duration:g}s` per endpoint after a "
        f"{args.warmup:g} s warm-up; each configuration restarted every round, order rotated; "
        f"{args.rounds} rounds; medians. Overhead = 1e6/rps - 1e6/rps(bare){against}, µs per request."
    )
    for note in notes:
        out.append(f"- note: {note}")
    if wsgi:
        out.append("")
        out.extend(bench_table(wsgi, "bare", rps, med, ovh, per_query))
    if asgi:
        out.append("")
        out.append(f"### {ASGI_LABEL}\n")
        loop = "uvloop" if versions.get("uvloop") else "asyncio"
        http = "httptools" if versions.get("httptools") else "h11"
        out.append(
            f"`{ASGI_APP}` (example/mysite/asgi.py) under one `{UVICORN_WORKER}` "
            f"(uvicorn {versions['uvicorn']}, uvicorn-worker {versions['uvicorn-worker']}; "
            f"{loop} event loop, {http} HTTP parser), otherwise as above; Django runs the sync views "
            "in its thread-sensitive executor. Overhead is over bare-asgi, the same app and worker "
            "without instrumentation, not over bare WSGI.\n"
        )
        out.extend(bench_table(asgi, "bare-asgi", rps, med, ovh, per_query))
        if "bare" in med and "bare-asgi" in med:
            cost = [f"`{p}` {overhead_us(med['bare-asgi'][p], med['bare'][p]):+.0f}" for p in ENDPOINTS]
            out.append("")
            out.append(
                "For scale only (not part of the overheads above): bare-asgi over bare (WSGI, `sync`), "
                "µs per request: " + ", ".join(cost) + "."
            )
    out.append("")
    out.append(
        "req/s cells: median (min-max over rounds). Per extra query = (overhead on `/db/` - overhead "
        f"on `/ok/`) / {DB_QUERIES}: `/db/` runs {DB_QUERIES} queries and `/ok/` none, so this is "
        "what each query adds to a request; it also carries the once-per-request cost of the DB "
        "connection (Django's default `CONN_MAX_AGE=0` opens and instruments a new SQLite "
        "connection in every request that queries)."
    )
    if wsgi:
        out.append("")
        out.append("### Targets (issue 6)\n")
        out.extend(render_targets(ovh, {c.key for c in configs}))
    out.append("")
    out.append("### Checks\n")
    out.append("| configuration | requests sent | stdout lines | errors (non-2xx + socket) | OTLP received |")
    out.append("|---|---:|---:|---:|---|")
    for c in configs:
        got = exports.get(c.key, {})
        parts = []
        for path in sorted(got):
            counts = got[path]
            if not counts.get("requests"):
                continue
            item = next((k for k in ("spans", "log_records", "data_points") if k in counts), None)
            detail = f", {counts[item]} {item}" if item else ""
            parts.append(
                f"`{path}` {counts.get('requests', 0)} POSTs, {counts.get('bytes', 0) / 1024:.0f} KiB{detail}"
            )
        out.append(
            f"| {c.key} | {sent[c.key]} | {lines[c.key]} | {errors[c.key]} | "
            + ("; ".join(parts) if parts else "—")
            + " |"
        )
    out.append("")
    out.append(
        "stdout lines: canonical lines written (ours: one per request; the original writes its "
        "line through Gunicorn's access log). Every request — `/ok/` readiness probes, warm-up and "
        "load — is counted in 'requests sent'. Server logs: `bench/.work/logs/`."
    )
    return "\n".join(out) + "\n"


def bench_table(configs, baseline, rps, med, ovh, per_query) -> list[str]:
    """req/s and µs over `baseline` for these configurations, one row each."""
    rows = [
        "| configuration | "
        + " | ".join(f"{p} req/s" for p in ENDPOINTS)
        + " | "
        + " | ".join(f"{p} µs over {baseline}" for p in ENDPOINTS)
        + " | µs per extra query |",
        "|---|" + "---:|" * (2 * len(ENDPOINTS) + 1),
    ]
    for c in configs:
        cells = []
        for p in ENDPOINTS:
            values = rps[c.key][p]
            cells.append(f"{med[c.key][p]:.0f} ({min(values):.0f}-{max(values):.0f})")
        over = ["—" if c.key == baseline else f"{ovh[c.key][p]:+.0f}" for p in ENDPOINTS]
        pq = "—" if c.key == baseline else f"{per_query[c.key]:+.1f}"
        rows.append(f"| {c.key}: {c.label} | " + " | ".join(cells) + " | " + " | ".join(over) + f" | {pq} |")
    return rows


def render_targets(ovh: dict[str, dict[str, float]], have: set[str]) -> list[str]:
    rows = ["| target | measured | verdict |", "|---|---|---|"]

    def row(name: str, needed: set[str], measure) -> None:
        if not needed <= have:
            rows.append(f"| {name} | not measured in this run | — |")
            return
        text, ok = measure()
        rows.append(f"| {name} | {text} | {'PASS' if ok else 'FAIL'} |")

    row(
        "`/ok/`, ours full (100%) ≤ ½ x original",
        {"ours-full", "original"},
        lambda: (
            f"{ovh['ours-full']['/ok/']:+.0f} µs vs ½ x {ovh['original']['/ok/']:+.0f} = "
            f"{ovh['original']['/ok/'] / 2:+.0f} µs",
            ovh["ours-full"]["/ok/"] <= ovh["original"]["/ok/"] / 2,
        ),
    )
    row(
        "`/db/`, ours full (100%) ≤ plain OTel exporting traces",
        {"ours-full", "otel-otlp"},
        lambda: (
            f"{ovh['ours-full']['/db/']:+.0f} µs vs {ovh['otel-otlp']['/db/']:+.0f} µs",
            ovh["ours-full"]["/db/"] <= ovh["otel-otlp"]["/db/"],
        ),
    )
    row(
        "`/db/`, ours full at 10% sampling ≤ original",
        {"ours-full-10", "original"},
        lambda: (
            f"{ovh['ours-full-10']['/db/']:+.0f} µs vs {ovh['original']['/db/']:+.0f} µs",
            ovh["ours-full-10"]["/db/"] <= ovh["original"]["/db/"],
        ),
    )

    def aggregation() -> tuple[str, bool]:
        parts, ok = [], True
        for p in ENDPOINTS:
            mine, theirs = ovh["ours-none"][p], ovh["otel-none"][p]
            ok = ok and mine <= theirs * 1.10
            extra = (mine / theirs - 1) * 100 if theirs > 0 else 0.0
            parts.append(f"`{p}` {mine:+.0f} vs {theirs:+.0f} µs ({extra:+.0f}%)")
        return "; ".join(parts), ok

    row(
        "aggregation: ours none ≤ 1.10 x plain OTel none (each endpoint)",
        {"ours-none", "otel-none"},
        aggregation,
    )
    rows.append(
        "| worker RSS growth over 100,000 `/db/` requests < 2 MiB | see the `make bench-memory` section | — |"
    )
    return rows


# -- make bench-memory -------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1))


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


def cmd_memory(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    wrk = ensure_wrk()
    versions = dev_versions()
    prepare_db()
    quiet = Quiet()
    quiet.wait()
    notes = quiet.notes()
    config = CONFIG_BY_KEY["ours-full"]
    sink = Sink()
    url_path = "/db/"
    samples: list[tuple[int, int]] = []
    try:
        server = Server(config, {}, sink)
        try:
            worker = server.worker_pid()
            url = server.url(url_path)
            warm, rate = load_until(wrk, url, args.warmup_requests, 5, 200)
            log(f"warm-up: {warm} requests, worker {worker} RSS {rss_kib(worker)} KiB")
            time.sleep(6)  # let the batch processors drain their queues
            samples.append((0, rss_kib(worker)))
            total = 0
            step = max(1, args.requests // 5)
            while total < args.requests:
                n, rate = load_until(wrk, url, min(step, args.requests - total), 60, rate)
                total += n
                samples.append((total, rss_kib(worker)))
                log(f"{total} requests: RSS {samples[-1][1]} KiB ({rate:.0f} req/s)")
            time.sleep(6)
            samples.append((total, rss_kib(worker)))
            if server.proc.poll() is not None or server.worker_pid() != worker:
                notes.append("the worker was replaced during the run: RSS figures are not comparable")
        finally:
            server.stop()
        lines = server.lines_written()
    finally:
        sink_out = sink.stop()
    growth = samples[-1][1] - samples[0][1]
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    out = [f"## `make bench-memory` — {started:%Y-%m-%d %H:%M} UTC\n"]
    out.append(f"- command: `{command_line('make bench-memory')}` ({elapsed / 60:.1f} min)")
    out.extend(machine_lines())
    out.append(versions_line(versions, wrk))
    out.append(
        f"- configuration: {config.key} ({config.label}: traces and canonical logs over OTLP/HTTP to "
        f"the local sink, stdout to a file); one sync worker; `wrk -t1 -c1` on `{url_path}` in timed "
        f"chunks; {warm} warm-up requests, then RSS (VmRSS of the worker, /proc/<pid>/status) "
        "after each chunk; the first and last samples are taken after a 6 s pause so the batch "
        "processors have drained."
    )
    for note in notes:
        out.append(f"- note: {note}")
    out.append("")
    out.append("| requests after warm-up | worker VmRSS KiB | Δ KiB |")
    out.append("|---:|---:|---:|")
    for n, kib in samples:
        out.append(f"| {n} | {kib} | {kib - samples[0][1]:+d} |")
    out.append("")
    verdict = "PASS" if growth < 2048 else "FAIL"
    out.append(
        f"**Target: worker RSS grows by less than 2 MiB over 100,000 requests — measured "
        f"{growth / 1024:+.2f} MiB over {samples[-1][0]} requests: {verdict}.** "
        f"{lines} canonical lines written; sink: `{sink_out.strip().splitlines()[-1]}`"
    )
    body = "\n".join(out) + "\n"
    print(body)
    write_section("memory", body)
    return 0 if verdict == "PASS" else 1


# -- profile -----------------------------------------------------------------------------------

# (substring of the full file name, package) - first match wins. Without --native, time in C
# code (sqlite3, socket writes) is charged to the Python frame that called it.
CATEGORIES = (
    ("/otel_canonical_logs/", "ours (otel_canonical_logs)"),
    ("/opentelemetry/sdk/trace/", "OTel SDK: trace"),
    ("/opentelemetry/sdk/_logs/", "OTel SDK: logs"),
    ("/opentelemetry/sdk/metrics/", "OTel SDK: metrics"),
    ("/opentelemetry/sdk/", "OTel SDK: other"),
    ("/opentelemetry/exporter/", "OTLP export (encode + HTTP)"),
    ("/opentelemetry/proto/", "OTLP export (encode + HTTP)"),
    ("/google/protobuf/", "OTLP export (encode + HTTP)"),
    ("/requests/", "OTLP export (encode + HTTP)"),
    ("/urllib3/", "OTLP export (encode + HTTP)"),
    ("/opentelemetry/instrumentation/", "OTel contrib instrumentors"),
    ("/opentelemetry/util/", "OTel contrib instrumentors"),
    ("/opentelemetry/semconv", "OTel contrib instrumentors"),
    ("/wrapt/", "OTel contrib instrumentors"),
    ("/opentelemetry/", "OTel API (context, trace API)"),
    ("/django/", "Django"),
    ("/gunicorn/", "Gunicorn"),
    ("/sqlite3/", "sqlite3 module"),
    ("/example/", "example app"),
    ("/gunicorn_django_canonical_logs/", "gunicorn-django-canonical-logs"),
)
INSTRUMENTATION = ("ours", "OTel", "OTLP", "gunicorn-django")


def category(frame: str) -> str:
    for needle, name in CATEGORIES:
        if needle in frame:
            return name
    return "Python stdlib / other"


def short(frame: str) -> str:
    """'func (/long/path/site-packages/pkg/mod.py)' -> 'func (pkg/mod.py)'."""
    name, _, path = frame.partition(" (")
    for marker in ("site-packages/", f"{ROOT}/src/", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}"


def summarize_profile(raw: Path, us_per_sample: float, top: int = 20) -> tuple[list[str], int]:
    """Collapsed py-spy stacks (--threads --full-filenames --nolineno) -> markdown tables."""
    per_thread: dict[str, int] = defaultdict(int)
    self_cat: dict[str, int] = defaultdict(int)
    incl: dict[str, int] = defaultdict(int)
    self_fn: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text(errors="replace").split("\n"):
        stack, _, count_s = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2 or not count_s.isdigit():
            continue  # --nonblocking can read a torn frame name now and then
        count = int(count_s)
        thread, frames = frames[0], frames[1:]  # --threads puts the thread first
        total += count
        per_thread[thread.split(": ", 1)[-1]] += count
        self_cat[category(frames[-1])] += count
        self_fn[frames[-1]] += count
        for f in set(frames):
            incl[f] += count

    def cells(n: int) -> str:
        return f"{100 * n / total:.1f}% | {n * us_per_sample:.0f}"

    out = ["| thread | share | ≈ µs/request |", "|---|---:|---:|"]
    for t, n in sorted(per_thread.items(), key=lambda kv: -kv[1]):
        out.append(f"| {t} | {cells(n)} |")
    out += ["", "| self time by package | share | ≈ µs/request |", "|---|---:|---:|"]
    for c, n in sorted(self_cat.items(), key=lambda kv: -kv[1]):
        out.append(f"| {c} | {cells(n)} |")
    instr = [(f, n) for f, n in incl.items() if category(f).startswith(INSTRUMENTATION)]
    out += [
        "",
        f"Instrumentation frames (ours, OTel, OTLP) by inclusive time, top {top}:",
        "",
        "| frame | package | inclusive | ≈ µs/request | self % |",
        "|---|---|---:|---:|---:|",
    ]
    for f, n in sorted(instr, key=lambda kv: -kv[1])[:top]:
        self_pct = 100 * self_fn.get(f, 0) / total
        out.append(f"| `{short(f)}` | {category(f)} | {cells(n)} | {self_pct:.1f}% |")
    out += [
        "",
        f"All frames by self time, top {top}:",
        "",
        "| frame | self | ≈ µs/request |",
        "|---|---:|---:|",
    ]
    for f, n in sorted(self_fn.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"| `{short(f)}` | {cells(n)} |")
    return out, total


def cmd_profile(args: argparse.Namespace) -> int:
    wrk = ensure_wrk()
    versions = dev_versions()
    reqs = venv_requirements(versions)
    config = CONFIG_BY_KEY[args.config]
    needed = {"tools"} | ({config.venv} - {"dev"})
    bins = {name: ensure_venv(name, reqs[name]) for name in needed}
    prepare_db()
    quiet = Quiet()
    quiet.wait()
    notes = quiet.notes()
    sink = Sink() if config.uses_sink else None
    WORK.mkdir(parents=True, exist_ok=True)
    slug = f"{config.key}-{args.path.strip('/').replace('/', '_') or 'root'}"
    raw = WORK / f"profile-{slug}.txt"
    svg = BENCH / (args.svg or f"profile-{slug}.svg")
    try:
        server = Server(config, bins, sink)
        try:
            worker = server.worker_pid()
            url = server.url(args.path)
            run_wrk(wrk, url, 2)
            # Load for the whole profile window (two py-spy runs: raw stacks, then the flame graph).
            load = subprocess.Popen(
                [wrk, "-t1", "-c1", f"-d{2 * args.seconds + 8:g}s", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                time.sleep(1)
                spy = [
                    bins["tools"] / "py-spy",
                    "record",
                    "--pid",
                    str(worker),
                    "--duration",
                    str(args.seconds),
                    "--rate",
                    str(args.rate),
                    "--nonblocking",
                ]
                subprocess.run(
                    [*spy, "--threads", "--nolineno", "--full-filenames", "--format", "raw", "-o", raw],
                    check=True,
                    capture_output=True,
                    timeout=args.seconds + 60,
                )
                subprocess.run(
                    [*spy, "--format", "flamegraph", "-o", svg],
                    check=True,
                    capture_output=True,
                    timeout=args.seconds + 60,
                )
            finally:
                load_out, _ = load.communicate(timeout=2 * args.seconds + 60)
            match = re.search(r"Requests/sec:\s+([\d.]+)", load_out)
            load_rps = float(match.group(1)) if match else float("nan")
        finally:
            server.stop()
    finally:
        if sink:
            sink.stop()
    # A sample stands for 1/rate s of thread time; spread over the requests served meanwhile.
    us_per_sample = 1e6 / args.rate / (load_rps * args.seconds)
    table, total = summarize_profile(raw, us_per_sample)
    out = [f"## Profile: {config.key} on `{args.path}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"]
    out.append(
        f"- command: `python bench/run.py profile --config {config.key} --path {args.path} "
        f"--seconds {args.seconds}`; py-spy {PY_SPY.split('==')[1]} at {args.rate} Hz on the "
        f"worker (idle samples excluded, `--nonblocking`) under `wrk -t1 -c1` "
        f"({load_rps:.0f} req/s while sampled); {total} samples"
    )
    out.append(f"- flame graph: `bench/{svg.name}`; raw stacks: `bench/.work/{raw.name}`")
    out.append(versions_line(versions, None))
    for note in notes:
        out.append(f"- note: {note}")
    out.append("")
    out.extend(table)
    body = "\n".join(out) + "\n"
    print(body)
    write_section(f"profile-{slug}", body)
    return 0


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="all configurations side by side (make bench)")
    bench.add_argument("--rounds", type=int, default=4)
    bench.add_argument("--duration", type=int, default=5, help="measured seconds per endpoint")
    bench.add_argument("--warmup", type=int, default=1, help="warm-up seconds per endpoint")
    bench.add_argument(
        "--configs", help="comma-separated keys (default: all): " + ",".join(c.key for c in CONFIGS)
    )
    bench.add_argument("--no-write", action="store_true", help="print the results, leave RESULTS.md alone")
    memory = sub.add_parser("memory", help="worker RSS over 100,000 /db/ requests (make bench-memory)")
    memory.add_argument("--requests", type=int, default=100_000)
    memory.add_argument("--warmup-requests", type=int, default=2_000)
    profile = sub.add_parser("profile", help="py-spy profile of one configuration's worker under load")
    profile.add_argument("--config", default="ours-full", choices=[c.key for c in CONFIGS])
    profile.add_argument("--path", default="/db/")
    profile.add_argument("--seconds", type=int, default=10)
    profile.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    profile.add_argument(
        "--svg", help="flame graph file name under bench/ (default profile-<config>-<path>.svg)"
    )
    args = parser.parse_args()
    # A SIGTERM (timeout, make interrupted) unwinds through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return {"bench": cmd_bench, "memory": cmd_memory, "profile": cmd_profile}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
