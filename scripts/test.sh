#!/usr/bin/env bash
# The one test command: installs what the tests need beyond the .NET SDK (cmake, g++, NVRTC 11.2 from Debian
# non-free), builds the native parts (CUDA host emulation, sanitized kernel harness), runs ctest, then every xunit test.
# Usage: bash scripts/test.sh            (from the repository root, on Debian/Ubuntu with the .NET 10 SDK)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need_pkgs=()
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
have_nvrtc() { ldconfig -p 2>/dev/null | grep -qE 'libnvrtc\.so\.(13|12|11\.2)'; }
have_nvrtc || need_pkgs+=(libnvrtc11.2)
# NativeAOT publish of samples/HelloMtfm (PackagedSampleTests) links with clang (any clang-NN will do) against zlib.
command -v clang >/dev/null 2>&1 || compgen -c clang- | grep -qE '^clang-[0-9]+$' || need_pkgs+=(clang)
[ -f /usr/include/zlib.h ] || need_pkgs+=(zlib1g-dev)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if printf '%s\n' "${need_pkgs[@]}" | grep -q nvrtc && [ -f /etc/debian_version ] \
       && ! grep -rqsE '^Components:.*non-free' /etc/apt/sources.list.d/ ; then
      # NVRTC lives in Debian's contrib/non-free components.
      cat > /etc/apt/sources.list.d/mtfm-nonfree.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    echo "test.sh: installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "test.sh: missing ${need_pkgs[*]}. Install them (Debian: enable 'contrib non-free' in your apt sources, then" >&2
    echo "         'sudo apt-get install --no-install-recommends ${need_pkgs[*]}') and run this again." >&2
    exit 1
  fi
fi

# Native parts: CUDA kernels compiled for the host emulation, plus the sanitized kernel-test harness (ctest).
if [ -f CMakeLists.txt ]; then
  cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build/native -j "$(nproc)"
  (cd build/native && ctest --output-on-failure)
  export MTFM_CUDA_EMU_LIB="$root/build/native/libmtfm_cuda_emu.so"
fi

mkdir -p build
dotnet test Mtfm.sln -c Release 2>&1 | tee build/dotnet-test.log
grep -E '^(Passed|Failed)!' build/dotnet-test.log | tail -1 | \
  sed -E 's/.*Failed: *([0-9]+), Passed: *([0-9]+), Skipped: *([0-9]+).*/\2 passed, \1 failed, \3 skipped/'
# A crashed test process can still end in a "Passed!" summary of the tests it finished: never let that pass.
if grep -qE 'Catastrophic failure|Test Run Aborted|The active test run was aborted' build/dotnet-test.log; then
  echo "test.sh: the test process crashed or the run was aborted (see build/dotnet-test.log)" >&2
  exit 1
fi
