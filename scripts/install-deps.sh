#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages flopscope builds with, when any are missing.
#
# As root: apt-get update and install, non-interactively. Otherwise: prints the exact
# apt-get command to run and exits 1. Prints nothing and exits 0 when everything is present,
# so scripts/run.sh and scripts/test.sh call it on every run.
#
# The CUDA toolkit is not an apt package here: nvcc compiles kernels/ on every build, GPU or
# not, so it must already be installed (/usr/local/cuda/bin/nvcc, or nvcc on PATH).
set -euo pipefail

# make: the generator the presets use (cmake only recommends it).
# libyaml-cpp-dev, libtomlplusplus-dev: the job files' parsers (NeMo YAML, torchtitan TOML).
packages=(cmake make g++ git libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libgtest-dev libopenblas-dev
          libyaml-cpp-dev libtomlplusplus-dev)
# --fuzz: also clang with its sanitizer and libFuzzer runtimes (scripts/fuzz.sh).
if [[ "${1:-}" == "--fuzz" ]]; then
  packages+=(clang libclang-rt-14-dev)
fi
# --slurm: also Slurm and munge, for tests/slurm/test-slurm.sh (it starts its own daemons; the
# packages' services are not started by the install where policy-rc.d forbids it, as in CI).
if [[ "${1:-}" == "--slurm" ]]; then
  packages+=(slurm-wlm munge)
fi
kMinCmake=3.25  # CMakePresets.json version 6

say() { printf 'install-deps: %s\n' "$*" >&2; }

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'; }

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  say "this script knows Debian and Ubuntu (dpkg, apt-get); install these yourself: ${packages[*]}"
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -eq 0 ]]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for p in "${missing[@]}"; do
      installed "$p" || { say "apt-get did not install $p"; exit 1; }
    done
  else
    say "missing packages: ${missing[*]}"
    say "run as root:  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

# CMake presets version 6 need CMake 3.25 (Debian 12 has 3.25.1; Ubuntu 22.04's 3.22 is too old).
cmake_version=$(cmake --version | sed -n 's/^cmake version \([0-9][0-9.]*\).*/\1/p')
if [[ $(printf '%s\n%s\n' "$kMinCmake" "$cmake_version" | sort -V | head -n1) != "$kMinCmake" ]]; then
  say "CMake $cmake_version is too old: CMakePresets.json needs $kMinCmake or newer"
  say "install a newer one (Kitware's apt repository at https://apt.kitware.com, or: pip install 'cmake>=$kMinCmake')"
  exit 1
fi

# The CUDA toolkit.
if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  :
elif command -v nvcc >/dev/null 2>&1; then
  :
else
  say "the CUDA toolkit is missing: no /usr/local/cuda/bin/nvcc and no nvcc on PATH."
  say "flopscope compiles its CUDA kernels on every build, even on machines without a GPU (a GPU is only"
  say "needed to run them). Install the CUDA toolkit 12 or newer from NVIDIA's apt repository"
  say "(https://developer.nvidia.com/cuda-downloads: Linux > x86_64 > Debian > deb (network), then"
  say "'apt-get install cuda-toolkit'), so that /usr/local/cuda/bin/nvcc exists; no driver is needed to build."
  exit 1
fi
