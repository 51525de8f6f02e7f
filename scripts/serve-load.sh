#!/usr/bin/env bash
# Loopback load test of `mtfm serve` (docs/serving.md §7): writes the benchmark checkpoint (synthetic schema with
# 256-event history caps, `small` preset, random init), starts the server, and runs the bounded C# load generator of
# Mtfm.Bench (closed loop, fixed concurrency) with micro-batching on, then off. Usage:
#   scripts/serve-load.sh [seconds=30] [concurrency=8] [candidates=100]     (WARMUP=s: unmeasured load first, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-30}; CONC=${2:-8}; CAND=${3:-100}; PORT=${PORT:-18080}; WARMUP=${WARMUP:-5}
dotnet build Mtfm.sln -c Release >/dev/null
BENCH=Mtfm.Bench/bin/Release/net10.0/Mtfm.Bench.dll
CLI=Mtfm.Cli/bin/Release/net10.0/mtfm.dll
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
dotnet "$BENCH" serve-model "$DIR/model" >/dev/null
run() {
  dotnet "$CLI" serve --model "$DIR/model" --port "$PORT" "$@" 2>"$DIR/serve.log" &
  local pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "mtfm serve $* :"
  timeout $((SECONDS_RUN + WARMUP + 60)) dotnet "$BENCH" serve-load "http://127.0.0.1:$PORT" --concurrency "$CONC" --seconds "$SECONDS_RUN" --candidates "$CAND" --warmup "$WARMUP" --pid "$pid" || true
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^mtfm_(forward_batches|candidates_scored)_total' || true
  kill -TERM "$pid"; wait "$pid" || true
}
run
run --no-micro-batching
