#!/usr/bin/env bash
# Every run of docs/transfer.md (`make transfer`; root). Each invocation holds $BENCH_LOCK (if set) for a few
# minutes only, so timing runs of other work never overlap these; about 45 minutes in all on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=${OUT:-out/transfer}
lock() { if [ -n "${BENCH_LOCK:-}" ]; then flock "$BENCH_LOCK" "$@"; else "$@"; fi; }
run() { lock "$PY" -m benchmarks.transfer.run --out "$OUT" "$@"; }
C=amser,amser-2k,svd-paper
run --profile lte-weak --count 200 --methods $C --transports paper,keepalive-nagle,keepalive,ws,stream --tag=-c
run --profile lte-weak --count 200 --methods wav,flac --transports paper,keepalive,ws --tag=-a
run --profile lte-weak --count 200 --methods opus16,opus24 --transports paper,keepalive,ws --tag=-o
run --profile 3g --count 30 --transports paper,keepalive,ws
run --profile 2g-edge --count 10 --transports paper,keepalive,ws
run --profile wifi --count 100 --english-only --recognise --transports ws
run --profile 2g-edge --profile 3g --count 10 --english-only --recognise --transports paper,ws
run --dataset asr --profile wifi --count 87 --recognise --transports ws
run --profile lte --profile wifi --count 100 --transports paper,keepalive,ws
mkdir -p "$OUT/encode"
lock "$PY" -m benchmarks.transfer.payloads --manifest ../shared/data/emotion/manifest.tsv --count 200 \
  --out "$OUT/encode/emotion-200.json"
"$PY" -m benchmarks.transfer.report "$OUT" --markdown "$OUT/tables.md" --plot docs/img/transfer.png
