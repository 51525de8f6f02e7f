#!/usr/bin/env bash
# NativeAOT sample scorer figures for BENCHMARKS.md ("NativeAOT sample scorer"): packs Mtfm.Engine(.Native) into
# artifacts/packages, builds samples/HelloMtfm from them (JIT) and publishes it with NativeAOT, trains the sample's
# model once, then runs `score <model> <one request>` RUNS times per build: wall time from process start to exit after
# the first (only) score, and peak resident memory (/usr/bin/time). Prints sizes and medians.
# Usage: bash scripts/aot-sample-bench.sh [RUNS=7]     (needs clang or clang-NN, zlib1g-dev, /usr/bin/time)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
runs=${1:-7}
ver="0.1.0-bench.$(date -u +%Y%m%d%H%M%S)"
work=$(mktemp -d)
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}
trap 'rm -rf "$work" "$cache/mtfm.engine/$ver" "$cache/mtfm.engine.native/$ver"' EXIT
clang=""
command -v clang >/dev/null 2>&1 || clang="-p:CppCompilerAndLinker=$(compgen -c clang- | grep -E '^clang-[0-9]+$' | sort -V | tail -1)"
for p in Mtfm.Engine.Native Mtfm.Engine; do
  dotnet pack "$p/$p.csproj" -c Release --artifacts-path "$work/art" -o "$work/feed" -p:Version="$ver" -p:ContinuousIntegrationBuild=true >/dev/null
done
mkdir -p "$work/app"
cp samples/HelloMtfm/Program.cs samples/HelloMtfm/HelloMtfm.csproj "$work/app/"
cat > "$work/app/nuget.config" <<CFG
<?xml version="1.0" encoding="utf-8"?>
<configuration><packageSources><add key="bench" value="$work/feed" /></packageSources></configuration>
CFG
cd "$work/app"
dotnet build -c Release -p:MtfmVersion="$ver" >/dev/null
echo "JIT app folder: $(find bin/Release/net10.0 -type f | xargs stat -c %s | awk '{s+=$1} END {print s}') bytes in $(find bin/Release/net10.0 -type f | wc -l) files, plus the shared .NET runtime"
start=$(date +%s)
dotnet publish -c Release -r linux-x64 -p:PublishAot=true -p:IlcInstructionSet=native -p:MtfmVersion="$ver" $clang -o "$work/aot" >/dev/null
echo "NativeAOT publish: $(( $(date +%s) - start )) s"
dotnet bin/Release/net10.0/HelloMtfm.dll train "$work/model" >/dev/null 2>&1
# One request as a JSON-lines file.
printf '%s\n' '{"user":"u0","scenario":"feed","time":1735952400,"features":{"user_id":0,"hour":0},"events":[{"sequence":"click","time":1735851600,"features":{"item_id":12,"category":0,"scenario":"feed"}}],"candidates":[{"item_id":12,"category":3},{"item_id":40,"category":5}]}' > "$work/one.jsonl"
echo "native binary: $(stat -c %s "$work/aot/HelloMtfm") bytes (symbols apart: HelloMtfm.dbg $(stat -c %s "$work/aot/HelloMtfm.dbg") bytes)"
measure() { # label, command...
  local label=$1; shift
  local t=() m=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -o "$work/time.txt" -f "%e %M" "$@" >/dev/null 2>&1
    out=$(tail -1 "$work/time.txt")
    t+=("${out% *}"); m+=("${out#* }")
  done
  med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  echo "$label: start to first score (process wall time) median $(med "${t[@]}") s [$(printf '%s ' "${t[@]}")], peak RSS median $(med "${m[@]}") KB"
}
measure "JIT (dotnet HelloMtfm.dll)" dotnet bin/Release/net10.0/HelloMtfm.dll score "$work/model" "$work/one.jsonl"
measure "NativeAOT (./HelloMtfm)" "$work/aot/HelloMtfm" score "$work/model" "$work/one.jsonl"
