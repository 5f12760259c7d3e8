"""`make bench-instructions`: instructions per request, a count this machine's load cannot blur.

Wall-clock figures on this shared 2-core machine swing 2-4x between runs. Here each `make bench`
configuration runs its Gunicorn (same venv, environment and arguments as the wall-clock bench,
one worker of its class) under `valgrind --tool=callgrind --trace-children=yes`, and the worker's
instructions are counted between two callgrind dumps around N sequential requests:

1. start the server under valgrind and poll `/ok/` until it answers (minutes: Python runs about
   50x slower under callgrind);
2. warm up every endpoint (--warmup requests each); for a configuration that exports, wait until
   the OTLP sink has seen nothing for --settle seconds, so no warm-up span is exported later;
3. per endpoint: `callgrind_control -d <worker>` (a dump zeroes the counters), N requests one
   after another over one HTTP/1.1 client (it reconnects when the server closes, as `wrk -c1`
   does: the sync worker closes every connection, Uvicorn keeps it; a fresh connection starts
   each window), for an exporting configuration the same wait for the exports, then
   `callgrind_control -d <worker>` again. That dump's total is every instruction the worker ran
   in the window, all its threads summed (callgrind keeps one set of counters for all threads
   unless --separate-threads=yes): the requests, their export, and whatever ran meanwhile;
4. idle (--idle seconds, 0 to skip): a dump, that long without requests, a dump: what the worker
   runs per second only because time passes (Uvicorn's 0.1 s tick, our watchdog's 1 s tick,
   batch-processor timers), outside the GC. A window holds about this rate x its length, a share
   that grows when the machine runs slower; it is subtracted as an estimate. The sync worker
   idles at 0, ours about 7 k/s, a UvicornWorker about 650 k/s: under valgrind a request takes
   about 50x longer than natively, so without the correction Uvicorn's tick would weigh 50x more
   than it does in production (about 1.5 % of an ASGI `/ok/` here).
5. GC: CPython's cyclic collector runs when allocation counts cross its thresholds, and a full
   collection (tens of millions of instructions, up to 6 % of a 100-request window) falls into
   one window and not another depending on where start-up and warm-up left the counters. Each
   dump's instructions inside `gc_collect_main` (inclusive; parsed from the callgrind file) are
   reported apart.

*net* per request = (window total - GC - idle rate x window length) / N: the figure that repeats
from run to run. Overheads over the baseline and before/after comparisons use net; the JSON keeps
every part.

How well it repeats (this machine, N=100): runs of one invocation agree to 0.01 % for the sync,
non-exporting configurations; separate invocations can land a cell up to ~0.4 % apart (bare `/db/`
was seen at 11.51 M, 11.52 M and 11.56 M instructions): a function-level diff puts the difference in
CPython's dict lookups and type-attribute-cache misses (find_name_in_mro), whose collisions follow
object addresses, i.e. everything allocated before. The ASGI pair moves by ~0.3 % (how often the
event loop polls while a sync view runs in its thread depends on timing). The exporting
configurations (otel-otlp, ours-full, ours-full-10) moved by up to 1.4 %: their batch processors
export on timers too (logs every 1 s, spans every 5 s), so the number of OTLP POSTs in a window,
each a few million instructions, follows its length (the tables show the POSTs per window);
ours-full-10 adds its random 10 % sampling. So: compare two trees in one --compare-src run
(interleaved, same start-up), read deltas under ~0.5 % (~1.5 % when exporting) as noise, and use
--repeat K for medians with their spread.

Every server gets PYTHONHASHSEED=0; the OTLP sink runs outside valgrind. callgrind counts
user-space instructions only (no kernel time, no I/O wait).

--src TREE: the configurations that run our package (ours-*: the dev venv under
opentelemetry-instrument) import it from TREE/src instead of this tree's. --compare-src OLD
measures OLD and then --src (default: this tree) in one run and reports before, after and the
difference per configuration and endpoint; configurations that run no code from src/ are measured
once. Each tree's src/ is copied to bench/.work/trees/ first (byte-compiled there), so the
checkouts are never written to and cannot change mid-run. The entry points (our distro,
configurator and instrumentors) are still those the dev venv was installed with; a tree whose
pyproject.toml declares others is flagged in the notes.

The callgrind files stay in bench/.work/callgrind/<configuration>[-t1|-t2][-run<k>]/ (cg.<worker>.<n>:
n = 1 warm-up, then zero point and window per endpoint, then the idle pair); `callgrind_annotate`
on a window's file shows where its instructions went.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .common import DEV_BIN, ENDPOINTS, ROOT, WORK, log
from .results import command_line, machine_lines, versions_line, write_section
from .server import Server, Sink, prepare_db, stats_delta
from .setups import CONFIG_BY_KEY, CONFIGS, Config
from .venvs import prepare_venvs

CALLGRIND = WORK / "callgrind"
TREES = WORK / "trees"
GUNICORN_TIMEOUT = 600  # s: Gunicorn's worker timeout; under valgrind a request can take seconds
READY_TIMEOUT = 15 * 60  # s: start-up under valgrind (imports, Django setup, the first request)
REQUEST_TIMEOUT = 300  # s, per request
SETTLE_MAX = 300  # s: give up waiting for the exports after this long
NOTE = "callgrind counts user-space instructions only (no kernel time, no I/O wait)"


@dataclass
class Tree:
    label: str  # "before" / "after" (--compare-src), "" otherwise
    path: Path  # the checkout
    src: Path  # the copy of its src/ that goes on PYTHONPATH
    commit: str  # short hash, "+dirty" if src/ has uncommitted changes
    slot: str  # "t1", "t2": its directories' names, the same length for both trees (see snapshot)


@dataclass
class Window:
    config: str
    tree: str  # the tree's label; "" for a configuration that runs no code from src/
    endpoint: str
    requests: int
    instructions: int  # the worker's, all threads, over the window
    seconds: float  # wall-clock length of the window (requests + waiting for exports)
    dump: str  # the callgrind file of the window
    gc: int  # of `instructions`, those in the cyclic garbage collector (gc_collect_main, inclusive)
    idle_per_second: float = 0.0  # the same worker's idle rate outside the GC (see Idle); 0: not measured
    posts: dict[str, int] = field(default_factory=dict)  # OTLP POSTs the sink got in the window, by path
    run: int = 1  # which of --repeat runs

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests

    @property
    def gc_per_request(self) -> float:
        return self.gc / self.requests

    @property
    def time_driven(self) -> float:
        """Per request: what the worker's idle rate adds over the window's length (an estimate)."""
        return self.idle_per_second * self.seconds / self.requests

    @property
    def net_per_request(self) -> float:
        """Per request, outside the GC and less the time-driven part: the repeatable figure."""
        return self.per_request - self.gc_per_request - self.time_driven


@dataclass
class Idle:
    config: str
    tree: str
    seconds: float
    instructions: int
    gc: int

    @property
    def per_second(self) -> float:
        """Outside the GC, which the windows' net figures leave out too."""
        return (self.instructions - self.gc) / self.seconds


def uses_src(config: Config) -> bool:
    """Whether the configuration runs our package (the dev venv under opentelemetry-instrument)."""
    return config.venv == "dev" and config.instrument


def snapshot(label: str, path: Path, slot: str) -> Tree:
    """Copy PATH/src to bench/.work/trees/<slot>/src and byte-compile it there.

    Both trees' paths have the same length on purpose: PYTHONPATH (so sys.path and every module's
    __file__) is the only difference between their processes, and strings of other lengths shift
    the heap enough to move CPython's hash and type-cache collisions by a few 0.1 %.
    """
    src = path / "src"
    if not (src / "otel_canonical_logs" / "__init__.py").exists():
        sys.exit(f"{path}: no src/otel_canonical_logs in this tree")
    copy = TREES / slot / "src"
    shutil.rmtree(copy.parent, ignore_errors=True)
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([DEV_BIN / "python", "-m", "compileall", "-q", copy], check=True)
    git = ["git", "-C", str(path)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = head.stdout.strip() or "not a git checkout"
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True)
    if dirty.stdout.strip():
        commit += "+dirty"
    return Tree(label, path, copy, commit, slot)


def entry_points(tree: Path) -> dict[str, dict[str, str]]:
    with open(tree / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f).get("project", {}).get("entry-points", {}))


class Client:
    """Sequential GETs over one HTTP/1.1 connection, reopened whenever the server closes it."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        self.sent = 0

    def get(self, path: str, count: int) -> None:
        self.conn.close()  # every batch starts on a fresh connection, whatever the last one did
        for _ in range(count):
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            response.read()
            self.sent += 1
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status}")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Dump:
    total: int  # instructions since the previous dump
    gc: int  # of which in the cyclic garbage collector
    path: Path  # its file
    at: float  # when it was taken (monotonic; the middle of the callgrind_control call)


GC_FUNCTION = "gc_collect_main"  # CPython's one entry to a collection, any generation (gcmodule.c)
COMPRESSED = re.compile(r"\((\d+)\)(?: (.*))?$")  # "(id) name" defines a name, "(id)" reuses it


def gc_instructions(path: Path) -> int:
    """Inclusive instructions of GC_FUNCTION in a callgrind file: the costs of the calls to it.

    Format (callgrind_format.html): `fn=` opens a function's block, `cfn=` names the callee of the
    next `calls=` line, and the line after that holds the call's inclusive cost (position first).
    """
    names: dict[str, str] = {}
    caller = callee = ""
    total = 0
    call_cost_next = False
    with open(path, errors="replace") as f:
        for line in f:
            if call_cost_next:
                call_cost_next = False
                fields = line.split()
                if callee == GC_FUNCTION and caller != GC_FUNCTION and len(fields) > 1:
                    total += int(fields[1])
            elif line.startswith(("fn=", "cfn=")):
                key, _, spec = line.rstrip("\n").partition("=")
                match = COMPRESSED.match(spec)
                if match:
                    if match.group(2):
                        names[match.group(1)] = match.group(2)
                    spec = names.get(match.group(1), "")
                if key == "fn":
                    caller = spec
                else:
                    callee = spec
            elif line.startswith("calls="):
                call_cost_next = True
    return total


def dump(worker: int, outdir: Path) -> Dump:
    """`callgrind_control -d`: write the worker's counters since the last dump and zero them."""
    pattern = re.compile(rf"cg\.{worker}\.(\d+)$")
    before = {p.name for p in outdir.iterdir()}
    called = time.monotonic()
    subprocess.run(
        ["callgrind_control", "-d", str(worker)],
        check=True,
        capture_output=True,
        timeout=REQUEST_TIMEOUT,
    )
    at = (called + time.monotonic()) / 2
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = {}
        for p in outdir.iterdir():
            match = pattern.match(p.name)
            if match and p.name not in before:
                parts[int(match.group(1))] = p
        if parts:
            newest = parts[max(parts)]
            totals = re.search(r"^totals:\s+(\d+)", newest.read_text(errors="replace"), re.M)
            if totals:
                return Dump(int(totals.group(1)), gc_instructions(newest), newest, at)
        time.sleep(0.2)
    raise RuntimeError(f"callgrind_control -d {worker}: no new dump with totals in {outdir}")


def settle(sink: Sink, since: float, quiet_for: float) -> None:
    """Wait until the sink has received nothing for `quiet_for` s (counted from `since` at least)."""
    last, changed, start = sink.stats(), since, time.monotonic()
    while time.monotonic() - changed < quiet_for:
        if time.monotonic() - start > SETTLE_MAX:
            raise RuntimeError(f"the exports did not stop within {SETTLE_MAX} s")
        time.sleep(0.5)
        now = sink.stats()
        if now != last:
            last, changed = now, time.monotonic()


def measure(
    config: Config,
    tree: Tree | None,
    bins: dict[str, Path],
    sink: Sink | None,
    endpoints: list[str],
    args: argparse.Namespace,
    run: int = 1,
) -> tuple[list[Window], Idle | None]:
    """One configuration (with one tree's src/ if it runs our package): every endpoint, then idle."""
    label = tree.label if tree else ""
    name = config.key + (f"-{label}" if label else "") + (f" #{run}" if args.repeat > 1 else "")
    # Named by slot, not label: the same length for both trees (see snapshot).
    outdir = CALLGRIND / (
        config.key + (f"-{tree.slot}" if tree else "") + (f"-run{run}" if args.repeat > 1 else "")
    )
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "-q",
        "--dump-instr=no",
        "--collect-atstart=yes",
        f"--callgrind-out-file={outdir}/cg.%p",
    ]
    started = time.monotonic()
    log(f"{name}: starting Gunicorn under callgrind")
    server = Server(
        config,
        bins,
        sink,
        wrapper=valgrind,
        extra_env={"PYTHONHASHSEED": "0"},
        pythonpath_first=[tree.src] if tree else [],
        extra_args=["--timeout", str(GUNICORN_TIMEOUT)],
        name=f"instructions-{outdir.name}",
        ready_timeout=READY_TIMEOUT,
        probe_timeout=REQUEST_TIMEOUT,
        stop_timeout=REQUEST_TIMEOUT,
    )
    windows: list[Window] = []
    idle = None
    client = Client(server.port)
    try:
        worker = server.worker_pid()
        log(f"{name}: ready in {time.monotonic() - started:.0f} s (worker {worker}); warming up")
        for path in endpoints:
            client.get(path, args.warmup)
        if sink and config.uses_sink:
            settle(sink, time.monotonic(), args.settle)
        dump(worker, outdir)  # everything up to here: start-up and warm-up
        exporting = sink is not None and config.uses_sink
        for path in endpoints:
            received = sink.stats() if sink and exporting else {}
            zero = dump(worker, outdir)  # the zero point (nothing but idle time since the last one)
            client.get(path, args.requests)
            if sink and exporting:
                settle(sink, time.monotonic(), args.settle)
            end = dump(worker, outdir)
            rel = str(end.path.relative_to(ROOT))
            window = Window(config.key, label, path, args.requests, end.total, end.at - zero.at, rel, end.gc)
            window.run = run
            if sink and exporting:
                delta = stats_delta(sink.stats(), received)
                window.posts = {k.rsplit("/", 1)[-1]: v.get("requests", 0) for k, v in sorted(delta.items())}
            windows.append(window)
            log(
                f"{name:22} {path:6} {window.per_request:12,.0f} instructions/request, "
                f"{window.gc_per_request:10,.0f} in GC ({args.requests} requests, {window.seconds:.1f} s)"
                + (f"; OTLP POSTs {posts(window)}" if window.posts else "")
            )
        if args.idle:
            zero = dump(worker, outdir)
            time.sleep(args.idle)
            end = dump(worker, outdir)
            idle = Idle(config.key, label, end.at - zero.at, end.total, end.gc)
            for window in windows:
                window.idle_per_second = idle.per_second
            log(f"{name:22} idle   {idle.per_second:12,.0f} instructions/s outside the GC")
        for window in windows:
            log(f"{name:22} {window.endpoint:6} {window.net_per_request:12,.0f} net instructions/request")
        if server.worker_pid() != worker:
            raise RuntimeError(f"{name}: the worker was replaced during the run")
    finally:
        client.close()
        server.stop()
    log(f"{name}: done in {time.monotonic() - started:.0f} s")
    return windows, idle


def cmd_instructions(args: argparse.Namespace) -> int:
    keys = args.configs.split(",") if args.configs else [c.key for c in CONFIGS]
    unknown = [k for k in keys if k not in CONFIG_BY_KEY]
    if unknown:
        sys.exit(f"--configs: unknown: {unknown}")
    endpoints = args.endpoints.split(",") if args.endpoints else list(ENDPOINTS)
    if not set(endpoints) <= set(ENDPOINTS):
        sys.exit(f"--endpoints: one or more of {','.join(ENDPOINTS)}")
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: install the Debian package `valgrind`")
    configs = [CONFIG_BY_KEY[k] for k in keys]
    started = dt.datetime.now(dt.UTC)
    versions, bins = prepare_venvs(configs)
    prepare_db()
    after = Path(args.src).resolve() if args.src else ROOT
    if args.compare_src:
        trees = [snapshot("before", Path(args.compare_src).resolve(), "t1"), snapshot("after", after, "t2")]
    else:
        trees = [snapshot("", after, "t1")]
    notes = []
    for tree in trees:
        if entry_points(tree.path) != entry_points(ROOT):
            notes.append(
                f"{tree.path}/pyproject.toml declares other entry points than this tree's; the dev "
                "venv's (this tree's) were used"
            )
    sink = Sink() if any(c.uses_sink for c in configs) else None
    windows: list[Window] = []
    idles: list[Idle] = []
    runs = args.repeat * sum(len(trees) if uses_src(c) else 1 for c in configs)
    log(
        f"{runs} callgrind runs: {', '.join(keys)} x {', '.join(endpoints)}, {args.warmup} warm-up "
        f"+ {args.requests} measured requests each" + (f"; OTLP sink {sink.url}" if sink else "")
    )
    try:
        for run in range(1, args.repeat + 1):
            for config in configs:
                for tree in trees if uses_src(config) else [None]:
                    got, idle = measure(config, tree, bins, sink, endpoints, args, run)
                    windows += got
                    idles += [idle] if idle else []
    finally:
        if sink:
            sink.stop()
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    record = {
        "started": f"{started:%Y-%m-%dT%H:%M:%SZ}",
        "seconds": round(elapsed),
        "command": command_line("make bench-instructions"),
        "requests": args.requests,
        "warmup": args.warmup,
        "trees": [{**asdict(t), "path": str(t.path), "src": str(t.src)} for t in trees],
        "windows": [
            {
                **asdict(w),
                "per_request": w.per_request,
                "gc_per_request": w.gc_per_request,
                "time_driven": w.time_driven,
                "net_per_request": w.net_per_request,
            }
            for w in windows
        ],
        "idle": [{**asdict(i), "per_second": i.per_second} for i in idles],
    }
    json_path = Path(args.json) if args.json else WORK / f"instructions-{started:%Y%m%d-%H%M%S}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=1) + "\n")
    log(f"wrote {json_path}")
    body = render(args, configs, endpoints, trees, windows, idles, versions, started, elapsed, notes)
    print(body)
    if not args.no_write:
        write_section(args.section or ("instructions-compare" if args.compare_src else "instructions"), body)
    return 0


# -- rendering ---------------------------------------------------------------------------------


def valgrind_version() -> str:
    return subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()


def tree_line(tree: Tree) -> str:
    name = f"{tree.label}: " if tree.label else ""
    return f"{name}`{tree.path}` at {tree.commit}"


def render(args, configs, endpoints, trees, windows, idles, versions, started, elapsed, notes) -> str:
    compare = len(trees) == 2
    title = "`make bench-instructions`" + (" — before/after" if compare else "")
    out = [f"## {title} — {started:%Y-%m-%d %H:%M} UTC\n"]
    out.append(f"- command: `{command_line('make bench-instructions')}` ({elapsed / 60:.1f} min)")
    out.extend(machine_lines())
    out.append(versions_line(versions, None).removesuffix(", n/a") + f", {valgrind_version()}")
    src_configs = ", ".join(c.key for c in configs if uses_src(c)) or "none in this run"
    out.append(
        f"- our package ({src_configs}) from {'; '.join(tree_line(t) for t in trees)} "
        "(a copy of its src/ first on PYTHONPATH; the dev venv, example app and other "
        "configurations are this tree's)"
    )
    out.append(
        f"- method: each configuration's Gunicorn as in `make bench` (one worker) under "
        f"`valgrind --tool=callgrind --trace-children=yes`, `--timeout {GUNICORN_TIMEOUT}`, "
        f"PYTHONHASHSEED=0; {args.warmup} warm-up requests per endpoint, then per endpoint "
        f"`callgrind_control -d` on the worker, {args.requests} sequential requests, "
        "`callgrind_control -d`: the second dump's total over the requests, all the worker's "
        "threads (request, exporters, watchdog). Configurations that export wait until the "
        f"OTLP sink has had nothing for {args.settle:g} s before each dump, so the window holds "
        "exactly its own requests' exports. Baseline: bare (the ASGI pair: bare-asgi)."
    )
    if idles:
        by_server: dict[str, list[float]] = {}
        for i in idles:
            by_server.setdefault(i.config + (f"-{i.tree}" if i.tree else ""), []).append(i.per_second)
        rates = ", ".join(
            f"{name} {statistics.median(r):,.0f}" + (f" ({min(r):,.0f}-{max(r):,.0f})" if len(r) > 1 else "")
            for name, r in by_server.items()
        )
        out.append(
            "- time-driven: a window also holds what the worker runs only because time passes "
            "(Uvicorn's 0.1 s tick, our watchdog's 1 s tick, batch-processor timers), about its "
            "idle rate x the window's length, which grows when the machine is slower. Idle rates "
            f"(instructions/s outside the GC, {args.idle:g} s without requests): {rates}."
        )
    out.append(
        "- GC: CPython's cyclic collector runs when allocations cross its thresholds, and a full "
        "collection (tens of millions of instructions) lands in one window and not the next, "
        "by where the start-up left the counters: it is counted apart (`gc_collect_main`, "
        "inclusive). *net* = instructions/request less GC and less the time-driven estimate; "
        "the overheads and comparisons use net."
    )
    if any(w.posts for w in windows):
        out.append(
            "- OTLP POSTs: export requests the sink got during the window. The batch processors "
            "also export on timers (logs every 1 s, spans every 5 s), so how many POSTs carry a "
            "window's records follows how long it ran, and one POST more or less moves an "
            "exporting configuration's figure by up to ~1.5 % at 100 requests (what remains of "
            "wall-clock time in these counts; `--repeat` shows it)."
        )
    out.append(f"- note: {NOTE}")
    for note in notes:
        out.append(f"- note: {note}")
    out.append("")
    table = compare_table if compare else single_table
    out.extend(table(configs, endpoints, windows))
    dumps = sorted({str(Path(w.dump).parent) for w in windows})
    out.append("")
    out.append(f"Callgrind files: {', '.join(f'`{d}/`' for d in dumps)} (`callgrind_annotate` them).")
    return "\n".join(out) + "\n"


Key = tuple[str, str, str]  # configuration, tree label, endpoint


@dataclass
class Cell:
    """One table cell's windows (one per --repeat run): medians, and the spread of net."""

    windows: list[Window]

    def _median(self, attr: str) -> float:
        return statistics.median(getattr(w, attr) for w in self.windows)

    @property
    def per_request(self) -> float:
        return self._median("per_request")

    @property
    def gc_per_request(self) -> float:
        return self._median("gc_per_request")

    @property
    def time_driven(self) -> float:
        return self._median("time_driven")

    @property
    def net_per_request(self) -> float:
        return self._median("net_per_request")

    @property
    def spread(self) -> float:
        """(max - min) / median of net over the runs; 0 for one run."""
        nets = [w.net_per_request for w in self.windows]
        return (max(nets) - min(nets)) / statistics.median(nets)

    @property
    def posts(self) -> str:
        keys = sorted({k for w in self.windows for k, n in w.posts.items() if n})
        return ", ".join(f"{k} " + "/".join(str(w.posts.get(k, 0)) for w in self.windows) for k in keys)


def cells(windows: list[Window]) -> dict[Key, Cell]:
    out: dict[Key, Cell] = {}
    for w in windows:
        out.setdefault((w.config, w.tree, w.endpoint), Cell([])).windows.append(w)
    return out


def net_text(cell: Cell) -> str:
    text = f"{cell.net_per_request:,.0f}"
    return text + (f" (±{cell.spread / 2:.2%})" if len(cell.windows) > 1 else "")


def over(net: dict[Key, float], config: Config, tree: str, endpoint: str) -> float | None:
    """Net instructions per request over the configuration's baseline (same tree if that runs src/)."""
    if config.key == config.baseline:
        return None
    base_tree = tree if uses_src(CONFIG_BY_KEY[config.baseline]) else ""
    mine, base = net.get((config.key, tree, endpoint)), net.get((config.baseline, base_tree, endpoint))
    return None if mine is None or base is None else mine - base


def posts(window: Window) -> str:
    return ", ".join(f"{k} {n}" for k, n in window.posts.items() if n) or "—"


def posts_text(cell: Cell) -> str:
    return cell.posts or "—"


def signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+,.0f}"


def single_table(configs, endpoints, windows) -> list[str]:
    by_key = cells(windows)
    net = {k: w.net_per_request for k, w in by_key.items()}
    runs = max(len(c.windows) for c in by_key.values())
    rows = [
        "Per request: all the worker's instructions, of which in GC, time-driven (estimate), and net"
        + (f"; medians of {runs} runs, net ± half its range" if runs > 1 else "")
        + ".",
        "",
        "| configuration | endpoint | instructions | GC | time-driven | net | net over baseline | baseline "
        "| OTLP POSTs |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in configs:
        for p in endpoints:
            w = by_key.get((c.key, "", p))
            if w is None:
                continue
            extra = over(net, c, "", p)
            base = net.get((c.baseline, "", p))
            pct = f" ({extra / base:+.1%})" if extra is not None and base else ""
            rows.append(
                f"| {c.key} | `{p}` | {w.per_request:,.0f} | {w.gc_per_request:,.0f} | "
                f"{w.time_driven:,.0f} | {net_text(w)} | {signed(extra)}{pct} | "
                + ("—" if c.key == c.baseline else c.baseline)
                + f" | {posts_text(w)} |"
            )
    return rows


def compare_table(configs, endpoints, windows) -> list[str]:
    by_key = cells(windows)
    net = {k: w.net_per_request for k, w in by_key.items()}
    runs = max(len(c.windows) for c in by_key.values())
    rows = [
        "Per request. Δ is on net; *all* is every instruction of the window, GC included"
        + (f"; medians of {runs} runs, net ± half its range" if runs > 1 else "")
        + ".",
        "",
        "| configuration | endpoint | net before | net after | Δ | Δ % | all: before → after "
        "| GC: before → after | OTLP POSTs: before → after | net over baseline: before → after |",
        "|---|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for c in configs:
        for p in endpoints:
            if uses_src(c):
                b, a = by_key.get((c.key, "before", p)), by_key.get((c.key, "after", p))
                if b is None or a is None:
                    continue
                d = a.net_per_request - b.net_per_request
                delta = f"{d:+,.0f} | {d / b.net_per_request:+.2%}"
                ob, oa = over(net, c, "before", p), over(net, c, "after", p)
                base = f"{signed(ob)} → {signed(oa)} (over {c.baseline})"
            else:
                b = a = by_key.get((c.key, "", p))
                if b is None:
                    continue
                delta = "— | —"
                base = "measured once: runs no code from src/"
                if c.key != c.baseline:
                    base = f"{signed(over(net, c, '', p))} (over {c.baseline}); " + base
            rows.append(
                f"| {c.key} | `{p}` | {net_text(b)} | {net_text(a)} | {delta} | "
                f"{b.per_request:,.0f} → {a.per_request:,.0f} | "
                f"{b.gc_per_request:,.0f} → {a.gc_per_request:,.0f} | "
                + (f"{posts_text(b)} → {posts_text(a)}" if b.posts or a.posts else "—")
                + f" | {base} |"
            )
    return rows
