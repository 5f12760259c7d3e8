"""Paths and constants every part of the bench shares, and its log function."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENVS = BENCH / ".venvs"
WORK = BENCH / ".work"
EXAMPLE = ROOT / "example"
DEV_BIN = ROOT / ".venv" / "bin"
RESULTS = BENCH / "RESULTS.md"
DB_PATH = WORK / "bench.sqlite3"
ENDPOINTS = ("/ok/", "/db/", "/tpl/")
DB_QUERIES = 10  # queries per /db/ request (example/shop/views.py: db)
ORIGINAL = "gunicorn-django-canonical-logs==0.0.10"
PY_SPY = "py-spy==0.4.3"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
