#!/usr/bin/env bash
# Instructions per request of one sync worker of ours (opentelemetry-instrument, exporters none),
# counted by valgrind's callgrind: repeatable to ~0.1 % whatever else the machine does, unlike
# wall-clock figures. The worker serves N1 then N2 requests in two runs; the difference / (N2-N1)
# is the per-request cost, start-up cancelled out. PYTHONHASHSEED=0 keeps dict layouts equal.
#
#   bench/instructions.sh [SRC_ROOT] [PATH]     e.g. bench/instructions.sh /tmp/old-checkout /db/
#
# SRC_ROOT: a checkout whose src/ is measured (default: this tree); the example app is always this
# tree's, so two checkouts are compared on the same app. Needs valgrind and curl.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="${1:-$here}/src"
path="${2:-/ok/}"
bin="$here/.venv/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PYTHONHASHSEED=0 PYTHONPATH="$src:$here/example" EXAMPLE_SQLITE_PATH="$work/db.sqlite3"
(cd "$here/example" && DJANGO_SETTINGS_MODULE=mysite.settings "$bin/python" manage.py migrate -v0 \
    && DJANGO_SETTINGS_MODULE=mysite.settings "$bin/python" manage.py seed >/dev/null 2>&1)

run() {  # run N: prints the worker's instruction total
    local n=$1 out="$work/run$1" port=$((20000 + RANDOM % 20000))
    mkdir -p "$out"
    (cd "$here/example" && exec valgrind --tool=callgrind --trace-children=yes -q \
        --callgrind-out-file="$out/cg.%p" "$bin/python" "$bin/opentelemetry-instrument" \
        "$bin/gunicorn" mysite.wsgi -b "127.0.0.1:$port" --workers 1 --no-control-socket \
        --timeout 300 >"$out/stdout" 2>"$out/stderr") &
    local pid=$!
    for _ in $(seq 600); do curl -s -o /dev/null "127.0.0.1:$port/health" && break; sleep 0.5; done
    for _ in $(seq "$n"); do curl -s -o /dev/null "127.0.0.1:$port$path"; done
    kill -TERM "$pid"; wait "$pid" || true
    for f in "$out"/cg.*; do
        if [ "${f##*.}" != "$pid" ]; then awk '/^(summary|totals):/ {print $2; exit}' "$f"; fi
    done
}
low=$(run 50); high=$(run 250)
echo "$path $(( (high - low) / 200 )) instructions per request (src: $src)"
