#!/usr/bin/env bash
# The peer benchmark: the same pre-LN GPT layer, forward and backward in fp32, timed in PyTorch
# (explicit attention, and scaled_dot_product_attention with is_causal) and in flopscope's CPU
# backend, in one run; prints each median and the ratios per width (benchmarks/peer_pytorch.py).
#
#   benchmarks/peer-pytorch.sh --install   creates the virtual environment and installs PyTorch
#                                          from PyPI into it, then runs
#   benchmarks/peer-pytorch.sh [args]      runs (args go to peer_pytorch.py: --points, --repeats,
#                                          --threads, --flopscope, --causal-block)
#
# The environment is build/peer-venv (PEER_VENV overrides). PyTorch's default Linux wheel
# depends on the nvidia-* CUDA packages and triton (gigabytes). The benchmark runs on the CPU,
# so torch is installed with --no-deps, with its pure-Python dependencies, and with only the
# four CUDA libraries its shared objects link against that the CUDA toolkit flopscope builds
# with does not provide (cuFile, cuSPARSELt, NVSHMEM and a newer NCCL, about 500 MB); the rest
# (cudart, cuBLAS, cuDNN, ...) load from /usr/local/cuda/lib64. About 2 GB in all. Never run in
# CI (it downloads from PyPI). flopscope is build/release/src/flopscope unless --flopscope names
# another binary.
set -euo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${PEER_VENV:-$root/build/peer-venv}
if [[ "${1:-}" == "--install" ]]; then
  shift
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet --no-deps torch
  "$venv/bin/pip" install --quiet filelock typing-extensions sympy mpmath networkx jinja2 MarkupSafe fsspec numpy
  # The versions torch 2.15.0 names (its Requires-Dist), for the libraries it links against.
  "$venv/bin/pip" install --quiet --no-deps nvidia-cusparselt-cu13==0.8.1 nvidia-nvshmem-cu13==3.7.2 \
    nvidia-nccl-cu13==2.30.7 nvidia-cufile
  "$venv/bin/python" -c 'import torch; print("installed torch", torch.__version__, "(CPU:", torch.backends.cpu.get_cpu_capability(), ")")' >&2
fi
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "peer-pytorch: no PyTorch in $venv; run benchmarks/peer-pytorch.sh --install first" >&2
  exit 2
fi
source "$root/scripts/openblas-coretype.sh"  # OpenBLAS kernels for this CPU (0.3.21 falls back to SSE3 on new ones)
exec "$venv/bin/python" "$root/benchmarks/peer_pytorch.py" "$@"
