#!/usr/bin/env bash
# Runs on a lent GPU machine (see scripts/gpu-pack.sh): every CUDA test on the real device (the "gpu" variants; the
# emulated ones skip there), then compute-sanitizer memcheck and racecheck over the kernel tests, and writes a summary
# table to $OUT/summary.md (plus the xunit XML and logs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mtfm-gpu-out}
mkdir -p "$OUT" /tmp/mtfm-gpu
tar -C /tmp/mtfm-gpu -xJf gpu-pack/tests.tar.xz
T=/tmp/mtfm-gpu/tests/Mtfm.Tests
export MTFM_CUDA_CACHE=/tmp/mtfm-gpu/cache
unset MTFM_CUDA_EMU_LIB
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1

summary() { grep -a "Total:" "$1" | tail -1 | sed 's/\x1b\[[0-9;]*m//g'; }
{
  echo "# Mtfm CUDA check on $(cat "$OUT/gpu.txt"), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| step | result |"
  echo "|---|---|"
  timeout 400 "$T" -namespace Mtfm.Tests.Cuda -xml "$OUT/cuda-tests.xml" > "$OUT/cuda-tests.log" 2>&1
  echo "| CUDA tests on the device | $(summary "$OUT/cuda-tests.log") |"
  if command -v compute-sanitizer >/dev/null 2>&1; then
    for tool in memcheck racecheck; do
      timeout 300 compute-sanitizer --tool $tool --error-exitcode 9 "$T" -class Mtfm.Tests.Cuda.CudaKernelTests \
        -class Mtfm.Tests.Cuda.HstuAttentionKernelTests -class Mtfm.Tests.Cuda.HstuAttentionBackwardTests \
        > "$OUT/sanitizer-$tool.log" 2>&1
      rc=$?
      echo "| compute-sanitizer $tool (kernel tests) | exit $rc; $(grep -a 'ERROR SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1) $(summary "$OUT/sanitizer-$tool.log") |"
    done
  else
    echo "| compute-sanitizer | not found on this machine |"
  fi
  echo "| CUDA benchmarks | no CUDA benchmark suite yet (see the CUDA issue) |"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
