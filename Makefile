# Every target works from a fresh clone with nothing installed but Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,report]'
	touch $(STAMP)

venv: $(STAMP)

## demo: run the example app under `opentelemetry-instrument gunicorn` and show its canonical lines
demo: $(STAMP)
	$(BIN)/python example/demo.py

## lint: ruff and mypy (strict on the package and on tests/, which may call untyped libraries)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## test: lint, then the whole test suite (unit + real Gunicorn, SQLite and PostgreSQL)
test: lint
	$(BIN)/python -m pytest

## unit: the unit tests only (seconds; no server, no database)
unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## matrix: the whole suite at the lowest and at the highest supported versions, each installed from
## the built wheel into a fresh virtualenv under .nox/ (noxfile.py; constraints/min.txt, max.txt)
.PHONY: matrix
matrix: $(STAMP)
	$(BIN)/nox -s min max

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis

## compose-check: docker-compose.yml, collector-config/, loki-config/, grafana/ and the Dockerfile agree, every
## dashboard query reads registry keys only (no Docker needed)
.PHONY: compose-check
compose-check: $(STAMP)
	$(BIN)/python -m tests.compose_check

## bench: ours vs bare Django, gunicorn-django-canonical-logs and plain OTel, side by side (bench/RESULTS.md)
.PHONY: bench bench-memory
bench: $(STAMP)
	$(BIN)/python -m bench bench

## bench-memory: worker RSS of ours (full export) before and after 100,000 /db/ requests
bench-memory: $(STAMP)
	$(BIN)/python -m bench memory

## bench-instructions: instructions per request of every configuration under callgrind (deterministic,
## unlike wall-clock); needs valgrind. Compare two trees: `.venv/bin/python -m bench instructions
## --compare-src OLD_CHECKOUT` (bench/instructions.py).
.PHONY: bench-instructions
bench-instructions: $(STAMP)
	$(BIN)/python -m bench instructions

## stress: the long reliability cases (tests/stress/run.py: hostile input, rejected requests, concurrency,
## worker kills, blackholed collector, leaked spans, 100,000-request RSS) and their summary table.
## Needs PostgreSQL like `make test`; `make stress SCALE=0.05` for a quick look.
.PHONY: stress
stress: $(STAMP)
	$(BIN)/python -m tests.stress.run --scale $(or $(SCALE),1)
