"""Benchmark driver for otel-canonical-logs: `make bench`, `make bench-memory`, profiling, callgrind.

Run from the repository root as `python -m bench <command>` (bench/__main__.py lists them).

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

The modules:

- common: paths, shared constants, log()
- setups: Config, CONFIGS, CONFIG_BY_KEY (what each configuration runs)
- venvs: the comparison venvs and the dev venv's versions
- quiet: Quiet, waiting for a quiet machine and spotting outside load
- server: the SQLite file, the OTLP sink, Gunicorn servers, wrk
- results: bench/RESULTS.md sections and the `make bench` tables
- wallclock, memory, profiling: the `bench`, `memory` and `profile` commands
- instructions: the `instructions` command (callgrind counts, `make bench-instructions`)

tests/stress/run.py imports bench.server and bench.setups (see bench/server.py).
"""
