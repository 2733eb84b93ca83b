#!/usr/bin/python3
"""The PyTorch side of the projection-head training benchmark (issue 15).

Run with Debian's Python (python3-torch 1.13): /usr/bin/python3.

    torch_train.py [--mlp] [--batch 256] [--seconds S] [--mode MODE] [--embed-dim E]
    torch_train.py --explore [--mlp] [--seconds S]    every mode in turn, one line each

One training step from cached features, the same step as portclip's `train`
and tests/fixtures/make_fixtures.py's training reference:

    img = normalize(head_v(fi)), txt = normalize(head_t(ft)),
    logits = logit_scale.exp() * img @ txt.T,
    loss = (CE(logits, arange) + CE(logits.T, arange)) / 2,
    zero_grad, backward, torch.optim.AdamW step (lr 1e-4, weight decay 0.1 on the
    heads and 0 on logit_scale, betas 0.9/0.999, eps 1e-8), then
    logit_scale.clamp_(max=ln 100) under no_grad.

Heads: linear (default): visual_projection 768->512 and text_projection
512->512 without bias (ViT-B/32's sizes); --mlp: per tower Linear(D, E) ->
GELU -> Linear(E, E) -> Dropout(0) -> + residual -> LayerNorm(E), E = 512.
Features: random normal, batch 256 (768 image, 512 text), fixed seed; the same
batch every step (a feature cache in memory).

Modes (all float32, torch.set_num_threads(cores)):
  eager          the step as written; AdamW single-tensor path (foreach=None
                 is False in torch 1.13); zero_grad(set_to_none=True)
  foreach        eager, AdamW(foreach=True) (multi-tensor path)
  jit            forward + loss through torch.jit.script (profiling executor;
                 backward from the scripted graph's autodiff), AdamW single-tensor
(The TensorExpr fuser on the CPU, torch._C._jit_override_can_fuse_on_cpu(True),
fails here with "LLVM Backend not found": Debian's torch is built without LLVM.)
The default mode is the fastest measured here (see bench/RESULTS.md).

Timing: one first step, ~--warmup s of warm-up steps, then timed steps until
--seconds and --min-iters; steps_per_s = timed steps / their summed time. The
JSON line also says which BLAS and allocator the process loaded (LD_PRELOAD of
jemalloc/tcmalloc and LD_LIBRARY_PATH to OpenBLAS are the caller's choice) and
how much of the CPUs other processes used meanwhile (others_cpu).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from torch_clip import blas_info, env_summary, machine_busy_s, maxrss_kb, self_cpu_s  # noqa: E402

MODES = ["eager", "foreach", "jit"]
DEFAULT_MODE = "eager"
DIM_IMAGE, DIM_TEXT, DIM_EMBED = 768, 512, 512
LR, WEIGHT_DECAY, BETAS, EPS = 1e-4, 0.1, (0.9, 0.999), 1e-8
CLAMP = math.log(100)


def allocator():
    """The malloc replacement mapped into this process, or "glibc"."""
    for line in open("/proc/self/maps"):
        for name in ("jemalloc", "tcmalloc", "mimalloc"):
            if name in line and ".so" in line:
                return name
    return "glibc"


def build(torch, a):
    """-> (step function returning the loss tensor, parameters)."""
    nn, F = torch.nn, torch.nn.functional
    g = torch.Generator().manual_seed(1234)
    fi = torch.randn(a.batch, DIM_IMAGE, generator=g)
    ft = torch.randn(a.batch, DIM_TEXT, generator=g)
    labels = torch.arange(a.batch)
    scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    if a.mlp:
        class Head(nn.Module):
            def __init__(self, d: int, e: int):
                super().__init__()
                self.projection = nn.Linear(d, e)
                self.gelu = nn.GELU()
                self.fc = nn.Linear(e, e)
                self.dropout = nn.Dropout(0.0)
                self.layer_norm = nn.LayerNorm(e)

            def forward(self, x):
                projected = self.projection(x)
                h = self.fc(self.gelu(projected))
                h = self.dropout(h) + projected
                return self.layer_norm(h)

        torch.manual_seed(0)
        hv, ht = Head(DIM_IMAGE, a.embed_dim), Head(DIM_TEXT, a.embed_dim)
        heads = list(hv.parameters()) + list(ht.parameters())

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.hv, self.ht = hv, ht

            def forward(self, fi, ft, scale, labels):
                img = F.normalize(self.hv(fi), dim=-1)
                txt = F.normalize(self.ht(ft), dim=-1)
                logits = scale.exp() * img @ txt.t()
                return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

        model = Model().train()
    else:
        wv = nn.Parameter(torch.randn(a.embed_dim, DIM_IMAGE, generator=g) * DIM_IMAGE ** -0.5)
        wt = nn.Parameter(torch.randn(a.embed_dim, DIM_TEXT, generator=g) * DIM_TEXT ** -0.5)
        heads = [wv, wt]

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.wv, self.wt = wv, wt

            def forward(self, fi, ft, scale, labels):
                img = F.normalize(fi @ self.wv.t(), dim=-1)
                txt = F.normalize(ft @ self.wt.t(), dim=-1)
                logits = scale.exp() * img @ txt.t()
                return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

        model = Model()

    if a.mode == "jit":
        model = torch.jit.script(model)
    opt = torch.optim.AdamW([{"params": heads, "weight_decay": WEIGHT_DECAY},
                             {"params": [scale], "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS, foreach=(a.mode == "foreach") or None)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(fi, ft, scale, labels)
        loss.backward()
        opt.step()
        with torch.no_grad():
            scale.clamp_(max=CLAMP)
        return loss

    return step, heads + [scale]


def run(a):
    import torch
    threads = a.threads or os.cpu_count()
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    step, params = build(torch, a)
    t = time.perf_counter()
    first_loss = float(step())
    first_s = time.perf_counter() - t
    warm = 0
    t = time.perf_counter()
    while True:
        step()
        warm += 1
        if time.perf_counter() - t >= a.warmup:
            break
    samples = []
    total = 0.0
    busy0, self0, wall0 = machine_busy_s(), self_cpu_s(), time.perf_counter()
    while (total < a.seconds or len(samples) < a.min_iters) and len(samples) < 1000000:
        s = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - s
        samples.append(dt)
        total += dt
    wall = time.perf_counter() - wall0
    others = max(0.0, (machine_busy_s() - busy0 - (self_cpu_s() - self0)) / (wall * os.cpu_count()))
    last = float(loss)
    if not math.isfinite(last) or not last < first_loss:
        raise SystemExit(f"torch_train.py: the loss did not fall ({first_loss} -> {last})")
    return {"impl": "pytorch", "torch": torch.__version__, "threads": threads,
            "steps_per_s": len(samples) / total, "batch": a.batch,
            "head": "mlp" if a.mlp else "linear", "embed_dim": a.embed_dim, "mode": a.mode,
            "torch_default_threads": default_threads, "timed_steps": len(samples),
            "median_step_s": statistics.median(samples), "first_step_s": first_s, "warmup_steps": warm,
            "others_cpu": round(others, 3), "loss_first": first_loss, "loss_last": last,
            "params": sum(p.numel() for p in params), "allocator": allocator(), "env": env_summary(),
            "blas": blas_info(), "maxrss_kb": maxrss_kb()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlp", action="store_true", help="MLP heads instead of the linear projections")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--embed-dim", type=int, default=DIM_EMBED)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (default %(default)s)")
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="default: os.cpu_count()")
    ap.add_argument("--mode", choices=MODES, default=DEFAULT_MODE)
    ap.add_argument("--explore", action="store_true", help="run every mode, each in its own process")
    a = ap.parse_args()
    if a.batch < 2 or a.embed_dim < 1 or a.seconds <= 0 or a.warmup < 0 or a.threads < 0:
        ap.error("--batch must be at least 2, --embed-dim and --seconds positive")
    if a.explore:
        import subprocess
        base = [sys.executable, os.path.abspath(__file__), "--batch", str(a.batch), "--embed-dim",
                str(a.embed_dim), "--seconds", str(a.seconds), "--warmup", str(a.warmup),
                "--min-iters", str(a.min_iters), "--threads", str(a.threads)] + (["--mlp"] if a.mlp else [])
        for m in MODES:
            subprocess.run(base + ["--mode", m], check=True)
        return
    print(json.dumps(run(a)), flush=True)


if __name__ == "__main__":
    main()
