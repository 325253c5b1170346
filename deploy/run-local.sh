#!/usr/bin/env bash
# Two `amser serve` replicas on loopback ports with HAProxy in front, on one machine, for testing
# (docs/operations.md).  Usage: deploy/run-local.sh [PROXY_PORT] [extra amser serve options...]
# Ctrl-C stops everything (each replica drains first).
set -euo pipefail
cd "$(dirname "$0")/.."
AMSER="${AMSER:-.venv/bin/amser}"
PORT="${1:-8000}"
shift || true
command -v haproxy >/dev/null || { echo "haproxy is missing: apt-get install haproxy" >&2; exit 2; }
pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait; }
trap stop EXIT INT TERM
for i in 1 2; do
  "$AMSER" serve --host 127.0.0.1 --port "$((PORT + i))" "$@" &
  pids+=($!)
done
for i in 1 2; do  # the replicas load their models, then answer /readyz
  until curl -sf "http://127.0.0.1:$((PORT + i))/readyz" >/dev/null; do sleep 0.5; done
done
export AMSER_PROXY_BIND="127.0.0.1:$PORT" AMSER_R1="127.0.0.1:$((PORT + 1))" AMSER_R2="127.0.0.1:$((PORT + 2))"
haproxy -f deploy/haproxy.cfg -db &
pids+=($!)
echo "amser behind HAProxy at http://127.0.0.1:$PORT (replicas on $((PORT + 1)) and $((PORT + 2)))"
wait
