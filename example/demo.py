"""`make demo`: migrate SQLite, start the example under `opentelemetry-instrument gunicorn` on
127.0.0.1:8000, send a few requests, print the canonical lines, stop. No collector needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ADDRESS = os.environ.get("DEMO_BIND", "127.0.0.1:8000")
PATHS = ["/health", "/ok/", "/books/", "/books/3/", "/books/999999/", "/n-plus-one/", "/tpl/", "/boom/"]


def get(path: str) -> int:
    request = urllib.request.Request(f"http://{ADDRESS}{path}", headers={"User-Agent": "demo/1.0"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def main() -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault(
        "EXAMPLE_SQLITE_PATH", str(Path(tempfile.mkdtemp(prefix="canonical-demo-")) / "db.sqlite3")
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the stock wsgi.py sets it, as in most projects
    manage = dict(env, DJANGO_SETTINGS_MODULE="mysite.settings")
    for command in (["migrate", "-v", "0"], ["seed"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=HERE,
            env=manage,
            check=True,
            stderr=subprocess.DEVNULL,
        )

    print(f"$ opentelemetry-instrument gunicorn mysite.wsgi --bind {ADDRESS}\n", flush=True)
    server = subprocess.Popen(
        [
            BIN / "opentelemetry-instrument",
            BIN / "gunicorn",
            "mysite.wsgi",
            "--bind",
            ADDRESS,
            "--no-control-socket",
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get("/health") == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"gunicorn did not start on {ADDRESS} (is the port free?)", file=sys.stderr)
                return 1
            time.sleep(0.1)
        statuses = [get(path) for path in PATHS]
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    for path, status in zip(PATHS, statuses, strict=True):
        print(f"GET {path} -> {status}")
    print("\ncanonical lines on stdout:\n")
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
