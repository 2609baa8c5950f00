#!/usr/bin/env python3
"""The peer benchmark: flopscope's CPU backend beside PyTorch on the same layer, in one run.

The layer is flopscope's pre-LN GPT layer at a width of gpt3-175b (shapes read from flopscope's
own result, so both run the same layer): x -> LN1 -> QKV (bias) -> scores = Q K^T / sqrt(d_head)
-> causal softmax -> context = P V -> proj (bias) -> + x -> LN2 -> FFN up (bias) -> GeLU (tanh)
-> FFN down (bias) -> + residual, forward and backward (dx and every weight and bias), fp32.

PyTorch runs it twice: with explicit attention (the full s x s scores, masked, softmax, as
flopscope executes it with --causal-block 0) and with scaled_dot_product_attention(is_causal=True).
flopscope runs its default (--causal-block auto: the attention products in row blocks of 256
that skip the masked blocks) unless --causal-block says otherwise. All times are
timed (wall clock, medians of --repeats rounds after one warm-up); flopscope's is its measure result's
layer total (totals.total.time_ms.median). The three run in rounds, one timed layer each per
round, each after one untimed layer (flopscope: one measure process per round, its
verification run the untimed layer), so a
change in a shared machine's load falls on all three alike. Both get the same thread count:
torch.set_num_threads and OMP_NUM_THREADS for flopscope (and OPENBLAS_CORETYPE from
scripts/openblas-coretype.sh, through peer-pytorch.sh).

Before timing, the script checks the two layers are the same: PyTorch's counted matmul FLOPs
(torch.utils.flop_counter, forward + backward, explicit attention, the full square) against
flopscope's GEMM FLOPs of the full square (counted, or for a blocked attention product its
analytic full_square_flops, after checking its counted FLOPs are its executed analytic ones),
which must agree exactly; flopscope's executed GEMM FLOPs are printed beside them.

Run through benchmarks/peer-pytorch.sh (which holds the virtual environment).
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# width:seq:batch, as the issue states the comparison.
DEFAULT_POINTS = ["1/96:512:2", "3/96:2048:1", "12/96:2048:1"]


def run_flopscope(binary, width, seq, batch, repeats, threads, causal_block):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # Its verification run is the warm-up; the ceiling is not needed here.
    cmd = [binary, "measure", "--backend", "cpu", "--width", width, "--seq", str(seq), "--batch", str(batch),
           "--repeats", str(repeats), "--warmup", "0", "--no-ceiling", "--causal-block", causal_block,
           "--format", "json"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout), cmd


class Layer:
    """The layer's parameters and input, seeded, fp32."""

    def __init__(self, d, heads, d_ff, batch, seq, seed=1):
        g = torch.Generator().manual_seed(seed)
        r = lambda *shape, s=0.02: (torch.randn(*shape, generator=g) * s).requires_grad_()
        self.d, self.h, self.dh, self.b, self.s = d, heads, d // heads, batch, seq
        self.p = {
            "ln1.g": (1 + torch.randn(d, generator=g) * 0.1).requires_grad_(), "ln1.b": r(d),
            "w.qkv": r(d, 3 * d), "b.qkv": r(3 * d),
            "w.proj": r(d, d), "b.proj": r(d),
            "ln2.g": (1 + torch.randn(d, generator=g) * 0.1).requires_grad_(), "ln2.b": r(d),
            "w.up": r(d, d_ff), "b.up": r(d_ff),
            "w.down": r(d_ff, d), "b.down": r(d),
        }
        self.x = torch.randn(batch, seq, d, generator=g).requires_grad_()
        self.dy = torch.randn(batch, seq, d, generator=g)

    def forward(self, sdpa):
        p, B, S, H, Dh, d = self.p, self.b, self.s, self.h, self.dh, self.d
        x = self.x
        h = F.layer_norm(x, (d,), p["ln1.g"], p["ln1.b"], 1e-5)
        qkv = torch.addmm(p["b.qkv"], h.view(B * S, d), p["w.qkv"]).view(B, S, 3, H, Dh)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, S, Dh)
        if sdpa:
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(Dh))  # (B, H, S, S)
            mask = torch.ones(S, S, dtype=torch.bool).triu(1)
            probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
            ctx = torch.matmul(probs, v)
        ctx = ctx.transpose(1, 2).reshape(B * S, d)
        x1 = x + torch.addmm(p["b.proj"], ctx, p["w.proj"]).view(B, S, d)
        h2 = F.layer_norm(x1, (d,), p["ln2.g"], p["ln2.b"], 1e-5)
        u = torch.addmm(p["b.up"], h2.view(B * S, d), p["w.up"])
        dn = torch.addmm(p["b.down"], F.gelu(u, approximate="tanh"), p["w.down"])
        return x1 + dn.view(B, S, d)

    def step(self, sdpa):
        for t in list(self.p.values()) + [self.x]:
            t.grad = None
        y = self.forward(sdpa)
        y.backward(self.dy)


def time_torch(layer, sdpa, repeats):
    ms = []
    for _ in range(repeats):
        for t in list(layer.p.values()) + [layer.x]:
            t.grad = None
        t0 = time.perf_counter()
        y = layer.forward(sdpa)
        y.backward(layer.dy)
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms), ms


def torch_matmul_flops(layer):
    with FlopCounterMode(display=False) as fc:
        layer.step(sdpa=False)
    return fc.get_total_flops()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", default=DEFAULT_POINTS, help="width:seq:batch (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--causal-block", default="auto",
                    help="flopscope's --causal-block: auto (256 on the cpu), or N, or 0 for the full square")
    ap.add_argument("--flopscope", default=os.path.join(ROOT, "build", "release", "src", "flopscope"))
    ap.add_argument("--out", help="also write the raw results (JSON) here")
    a = ap.parse_args()
    if not os.access(a.flopscope, os.X_OK):
        print(f"peer-pytorch: no flopscope binary at {a.flopscope} (build it: scripts/run.sh --version)", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    raw = {"torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "threads": a.threads, "repeats": a.repeats, "machine": platform.processor() or platform.machine(),
           "points": []}
    print(f"torch {torch.__version__} ({raw['torch_cpu_capability']}), {a.threads} threads each; "
          f"times: timed, median of {a.repeats} rounds after one warm-up, forward + backward, fp32; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    rows = []
    for point in a.points:
        width, seq, batch = point.split(":")
        seq, batch = int(seq), int(batch)
        fs, cmd = run_flopscope(a.flopscope, width, seq, batch, 1, a.threads, a.causal_block)
        L = fs["layer"]
        d, heads, d_ff = L["d_model"], L["n_heads"], L["d_ff"]
        assert L["d_head"] * heads == d and L["batch"] == batch and L["seq"] == seq, L
        fs_ms = fs["totals"]["total"]["time_ms"]["median"]
        gemms = [o for o in fs["ops"] if o["kind"] in ("gemm", "batched_gemm")]
        for o in gemms:
            if o["counted_flops"] != o["flops"]:
                print(f"peer-pytorch: {point}: {o['name']}: counted FLOPs {o['counted_flops']:.6g} are not the "
                      f"executed analytic {o['flops']:.6g}", file=sys.stderr)
                return 1
        fs_gemm = sum(o.get("full_square_flops", o["counted_flops"]) for o in gemms)  # the full square
        fs_executed = sum(o["counted_flops"] for o in gemms)
        layer = Layer(d, heads, d_ff, batch, seq)
        t_gemm = torch_matmul_flops(layer)
        if t_gemm != fs_gemm:
            print(f"peer-pytorch: {point}: the layers differ: PyTorch's matmul FLOPs {t_gemm:.6g} (counted by "
                  f"torch.utils.flop_counter) against flopscope's GEMM FLOPs {fs_gemm:.6g} (counted)", file=sys.stderr)
            return 1
        # Rounds, each one timed layer of each of the three, so a change in the machine's load
        # (it is shared) falls on all three alike; medians over the rounds.
        layer.step(False)
        layer.step(True)
        fs_all, ex_all, sd_all, fs_ops = [fs_ms], [], [], [fs["ops"]]
        for r in range(a.repeats):
            if r > 0:
                f, _ = run_flopscope(a.flopscope, width, seq, batch, 1, a.threads, a.causal_block)
                fs_all.append(f["totals"]["total"]["time_ms"]["median"])
                fs_ops.append(f["ops"])
            # Each after one untimed step, as flopscope's verification run precedes its timed
            # one: a first step after the other's run pays PyTorch's thread wake-up and allocator.
            layer.step(False)
            ex_all.append(time_torch(layer, False, 1)[0])
            layer.step(True)
            sd_all.append(time_torch(layer, True, 1)[0])
        fs_ms, ex_ms, sd_ms = statistics.median(fs_all), statistics.median(ex_all), statistics.median(sd_all)
        rows.append((point, d, heads, fs_ms, ex_ms, sd_ms))
        raw["points"].append({"point": point, "d_model": d, "heads": heads, "d_ff": d_ff, "batch": batch, "seq": seq,
                              "gemm_flops_full_square": fs_gemm, "gemm_flops_executed_counted": fs_executed,
                              "causal_block": L.get("causal_block"), "flopscope_command": cmd,
                              "flopscope_ms": fs_ms, "flopscope_samples": fs_all,
                              "flopscope_ops_ms": {o["name"]: statistics.median(ops[i]["time_ms"]["median"] for ops in fs_ops)
                                                   for i, o in enumerate(fs["ops"])},
                              "torch_explicit_ms": ex_ms, "torch_explicit_samples": ex_all,
                              "torch_sdpa_ms": sd_ms, "torch_sdpa_samples": sd_all,
                              "device": fs["device"]})
        print(f"{point}: layer d_model {d}, {heads} heads, batch {batch}, seq {seq}; GEMM FLOPs of the full square "
              f"{fs_gemm:.4g} in both (counted; flopscope's blocked attention products: analytic); flopscope "
              f"executed {fs_executed:.4g} (counted, causal block {L.get('causal_block')})", flush=True)
    print()
    print(f"{'width:seq:batch':16s} {'flopscope ms':>13s} {'torch explicit':>15s} {'torch SDPA':>11s} "
          f"{'fs / explicit':>14s} {'fs / SDPA':>10s}")
    for point, d, heads, fs_ms, ex_ms, sd_ms in rows:
        print(f"{point:16s} {fs_ms:13.1f} {ex_ms:15.1f} {sd_ms:11.1f} {fs_ms / ex_ms:14.2f} {fs_ms / sd_ms:10.2f}")
    print("targets at 3/96 and 12/96: flopscope <= 0.8 x explicit, <= 1.2 x SDPA")
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            json.dump(raw, f, indent=1)
        os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
