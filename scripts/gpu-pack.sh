#!/usr/bin/env bash
# Prepares what a lent GPU machine needs (it has CUDA but no .NET): a self-contained linux-x64 publish of Mtfm.Tests
# (which also holds the engine and the `mtfm` commands, run in-process by the tests), packed as gpu-pack/tests.tar.xz.
# DuckDB and SkiaSharp natives are left out (only the CUDA tests run there) to stay under the 64 MiB carry limit.
# Then on the device:  run(command="bash scripts/gpu-check.sh", carry=["gpu-pack"])
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-pack && mkdir -p gpu-pack/tests
dotnet publish Mtfm.Tests -c Release -r linux-x64 --self-contained -o gpu-pack/tests >/dev/null
rm -f gpu-pack/tests/libduckdb.so gpu-pack/tests/libSkiaSharp.so
tar -C gpu-pack -cJf gpu-pack/tests.tar.xz tests
rm -rf gpu-pack/tests
ls -la gpu-pack/tests.tar.xz
