#!/usr/bin/env bash
# Prepares what a lent GPU machine needs (it has CUDA but no .NET): self-contained linux-x64 publishes of Mtfm.Tests
# (which also holds the engine and the `mtfm` commands, run in-process by the tests) and Mtfm.Bench (cuda-quick and the
# BenchmarkDotNet suites) in ONE folder, sharing the runtime and the engine, packed as gpu-pack/mtfm.tar.xz.
# Left out to stay under the 64 MiB carry limit: DuckDB and SkiaSharp natives (only the CUDA tests run there), and
# BenchmarkDotNet's disassembler (libcapstone) and Windows ETW helpers (amd64/*.dll).
# Then on the device:  run(command="bash scripts/gpu-check.sh", carry=["gpu-pack"])
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-pack && mkdir -p gpu-pack/mtfm gpu-pack/bench.tmp
dotnet publish Mtfm.Tests -c Release -r linux-x64 --self-contained -o gpu-pack/mtfm >/dev/null
dotnet publish Mtfm.Bench -c Release -r linux-x64 --self-contained -o gpu-pack/bench.tmp >/dev/null
# Merge: files both apps have must be identical (same runtime, same engine build); the bench adds its own. The one
# exception: a library DLL both take from different packages (Microsoft.Extensions.* comes with ASP.NET Core to the tests
# and from ML.NET's older packages to the bench): the copy with the higher FileVersion is kept, since .NET binds a
# reference to a lower assembly version to a higher one. Anything else that differs, or a DLL without a FileVersion, fails.
fver() { strings -el "$1" | grep -A1 -x FileVersion | sed -n 2p; }
(
  cd gpu-pack/bench.tmp
  find . -type f | while read -r f; do
    if [[ -e "../mtfm/$f" ]]; then
      cmp -s "$f" "../mtfm/$f" && continue
      a=$(fver "../mtfm/$f"); b=$(fver "$f")
      if [[ $f == *.dll && $f != ./Mtfm.* && -n $a && -n $b ]]; then
        newer=$(printf '%s\n%s\n' "$a" "$b" | sort -V | tail -1)
        [[ $newer == "$b" && $a != "$b" ]] && cp "$f" "../mtfm/$f"
        echo "gpu-pack: $f differs (tests $a, bench $b): kept $newer"
      else
        echo "gpu-pack: $f differs between the Mtfm.Tests and Mtfm.Bench publishes" >&2; exit 1
      fi
    else
      mkdir -p "../mtfm/$(dirname "$f")" && cp "$f" "../mtfm/$f"
    fi
  done
)
rm -rf gpu-pack/bench.tmp
rm -rf gpu-pack/mtfm/libduckdb.so gpu-pack/mtfm/libSkiaSharp.so gpu-pack/mtfm/libcapstone.so gpu-pack/mtfm/amd64
XZ_OPT="-T0 -6" tar -C gpu-pack -cJf gpu-pack/mtfm.tar.xz mtfm
echo "gpu-pack: $(du -sm gpu-pack/mtfm | cut -f1) MiB unpacked"
rm -rf gpu-pack/mtfm
ls -la gpu-pack/mtfm.tar.xz
size=$(stat -c %s gpu-pack/mtfm.tar.xz)
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "gpu-pack: carry $((size / 1048576)) MiB + tracked files $((tracked / 1048576)) MiB (limit 64 MiB)"
if (( size + tracked > 62 * 1048576 )); then echo "gpu-pack: too large for the 64 MiB limit" >&2; exit 1; fi
