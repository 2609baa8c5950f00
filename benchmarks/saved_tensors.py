"""Bytes a tiny Hugging Face Llama saves for its backward, against flopscope's layer-graph count.

PyTorch's torch.autograd.graph.saved_tensors_hooks sees every tensor autograd keeps for the
backward; each is counted once by its storage (views share one) and given to the decoder layer
whose forward saved it, or to "outside the layers" (embedding, final norm, LM head, loss). The
same model as a config.json goes to `flopscope predict --hf-config ... --recompute none` (no
recompute, one GPU), whose memory.activation_per_layer_bytes is the graph's count for a layer
(src/predict/compute.cpp, saved_activations) and activations_once_bytes the LM head's.

Run by benchmarks/saved-tensors.sh (never in CI: it needs PyTorch and transformers from PyPI).
Prints a table and writes nothing.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flopscope", default="build/release/src/flopscope")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=704)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa")
    return p.parse_args()


def main():
    a = parse()
    dtype = torch.bfloat16  # flopscope counts 16-bit activations
    cfg = transformers.LlamaConfig(
        hidden_size=a.hidden, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
        intermediate_size=a.intermediate, num_hidden_layers=a.layers, vocab_size=a.vocab,
        max_position_embeddings=a.seq, tie_word_embeddings=False, attention_dropout=0.0,
        rms_norm_eps=1e-5, rope_theta=500000.0, attn_implementation=a.attention)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).to(dtype)
    model.train()

    where = {"layer": None}
    layers = model.model.layers
    for i, layer in enumerate(layers):
        layer.register_forward_pre_hook(lambda m, args, i=i: where.__setitem__("layer", i))
        layer.register_forward_hook(lambda m, args, out: where.__setitem__("layer", None))

    seen = {}  # storage pointer -> (layer or None, bytes, dtype, shape)

    def pack(t):
        s = t.untyped_storage()
        key = s.data_ptr()
        if key not in seen and s.nbytes() > 0:
            seen[key] = (where["layer"], s.nbytes(), str(t.dtype).replace("torch.", ""), tuple(t.shape))
        return t

    ids = torch.randint(0, a.vocab, (a.batch, a.seq))
    # The inputs and the weights are kept by the module, not for the backward alone: leave them out.
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=ids, labels=ids)
    for key in list(seen):
        if key in params or key == ids.untyped_storage().data_ptr():
            del seen[key]
    out.loss.backward()

    per_layer = [0] * a.layers
    outside = 0
    for layer, nbytes, _, _ in seen.values():
        if layer is None:
            outside += nbytes
        else:
            per_layer[layer] += nbytes

    with tempfile.TemporaryDirectory() as d:
        hf = dict(cfg.to_dict())
        hf["architectures"] = ["LlamaForCausalLM"]
        hf["model_type"] = "llama"
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            json.dump(hf, f)
        cmd = [a.flopscope, "predict", "--hf-config", path, "--gpu", "h100-sxm", "--gpus", "1", "--micro-batch",
               str(a.batch), "--global-batch", str(a.batch), "--seq", str(a.seq), "--recompute", "none",
               "--attention", "flash" if a.attention == "sdpa" else "unfused", "--precision", "bf16", "--format", "json"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("flopscope: " + r.stderr.strip())
        mem = json.loads(r.stdout)["prediction"]["memory"]

    graph_layer = mem["activation_per_layer_bytes"]
    graph_once = mem["activations_once_bytes"]
    torch_layer = sum(per_layer) / len(per_layer)
    print(f"tiny Llama: d {a.hidden}, {a.heads} heads ({a.kv_heads} kv), ffn {a.intermediate}, {a.layers} layers, "
          f"vocab {a.vocab}, {a.batch} x {a.seq} tokens, bf16, attention {a.attention}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"{'':30s} {'PyTorch saved':>14s} {'flopscope graph':>16s} {'ratio':>7s}")
    print(f"{'a decoder layer (bytes)':30s} {torch_layer:14.0f} {graph_layer:16.0f} {graph_layer / torch_layer:7.3f}")
    print(f"{'outside the layers (bytes)':30s} {outside:14.0f} {graph_once:16.0f} {graph_once / max(outside, 1):7.3f}")
    print("  (PyTorch: measured, every tensor autograd saved, once per storage; flopscope: modelled from the layer "
          "graph; outside the layers flopscope adds the loss's backward's 16-bit logits gradient, which is not saved)")
    print("layer 0's saved tensors (PyTorch):")
    for layer, nbytes, dt, shape in sorted(seen.values(), key=lambda x: -x[1]):
        if layer == 0:
            print(f"  {nbytes:12d}  {dt:9s} {shape}")


if __name__ == "__main__":
    main()
