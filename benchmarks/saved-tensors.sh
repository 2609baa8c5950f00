#!/usr/bin/env bash
# The saved-tensors benchmark: the bytes a tiny Hugging Face Llama's autograd saves for its
# backward (torch.autograd.graph.saved_tensors_hooks), per decoder layer and outside the layers,
# beside what `flopscope predict` counts from its layer graph for the same config.json
# (benchmarks/saved_tensors.py). On the CPU; never in CI (PyTorch and transformers from PyPI).
#
#   benchmarks/saved-tensors.sh --install   adds transformers to the PyTorch environment that
#                                           benchmarks/peer-pytorch.sh --install makes, then runs
#   benchmarks/saved-tensors.sh [args]      runs (args go to saved_tensors.py: --hidden, --heads,
#                                           --kv-heads, --intermediate, --layers, --vocab, --seq,
#                                           --batch, --attention, --flopscope)
set -euo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${PEER_VENV:-$root/build/peer-venv}
if [[ "${1:-}" == "--install" ]]; then
  shift
  "$venv/bin/pip" install --quiet transformers
fi
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import torch, transformers' 2>/dev/null; then
  echo "saved-tensors: no PyTorch and transformers in $venv; run benchmarks/peer-pytorch.sh --install, then" \
       "benchmarks/saved-tensors.sh --install" >&2
  exit 2
fi
exec "$venv/bin/python" "$root/benchmarks/saved_tensors.py" --flopscope "$root/build/release/src/flopscope" "$@"
