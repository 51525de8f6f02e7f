#!/usr/bin/env bash
# Runs the whole test suite N times in a row on a fresh clone of HEAD while a second clone rebuilds the solution from
# scratch in a loop, so both cores stay busy: a test that depends on timing, load or inlining shows up here.
#   scripts/flake-check.sh [runs=5] [workdir=/tmp/mtfm-flake]
# Needs what scripts/test.sh installs (cmake, g++; NVRTC optional). Prints one line per run and exits non-zero if any
# run failed or its test process crashed.
set -euo pipefail
RUNS=${1:-5}; WORK=${2:-/tmp/mtfm-flake}
root=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$WORK"; mkdir -p "$WORK"
git clone -q "$root" "$WORK/tests"; git clone -q "$root" "$WORK/load"
cd "$WORK/tests"
cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build/native -j "$(nproc)" >/dev/null
export MTFM_CUDA_EMU_LIB="$WORK/tests/build/native/libmtfm_cuda_emu.so"
# The clones live elsewhere: point the tests at the shared data beside this checkout (../shared), as CI's clone finds it.
if [[ -z ${MTFM_SHARED:-} && -d "$root/../shared/data" ]]; then export MTFM_SHARED="$(cd "$root/../shared" && pwd)"; fi
dotnet build Mtfm.sln -c Release >/dev/null
( cd "$WORK/load"; while [ ! -f "$WORK/done" ]; do dotnet build Mtfm.sln -c Release --no-incremental >/dev/null 2>&1 || true; done ) &
load=$!
bad=0
for i in $(seq 1 "$RUNS"); do
  start=$(date +%s)
  rc=0; dotnet test Mtfm.Tests -c Release --no-build > "$WORK/run$i.log" 2>&1 || rc=$?
  if grep -qE 'Catastrophic failure|Test Run Aborted' "$WORK/run$i.log"; then rc=99; fi
  [ "$rc" -eq 0 ] || bad=1
  echo "run $i: rc $rc, $(( $(date +%s) - start )) s, $(grep -E '^(Passed|Failed)!' "$WORK/run$i.log" | tail -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
done
touch "$WORK/done"; wait "$load" || true
exit $bad
