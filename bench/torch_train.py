#!/usr/bin/python3
"""The PyTorch side of the projection-head training benchmark (issue 15).

Run with Debian's Python (python3-torch 1.13): /usr/bin/python3.

    torch_train.py [--mlp] [--batch 256] [--seconds S] [--mode eager|foreach|jit]
                   [--embed-dim E] [--threads N] [--env tuned|plain]
                   [--allocator glibc|jemalloc|tcmalloc] [--openblas-dir DIR]
    torch_train.py --explore [...]     every mode in turn, one line each

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

Modes (all float32, torch.set_num_threads(--threads, default os.cpu_count())):
  eager     the step as written; AdamW's single-tensor path (torch 1.13 turns
            foreach=None into False); zero_grad(set_to_none=True)
  foreach   eager with AdamW(foreach=True), the multi-tensor path
  jit       the forward and the loss through torch.jit.script (profiling
            executor; backward from the scripted graph's autodiff)
eager is the default: foreach took about as long, jit 0-20 % longer (one thread,
3 interleaved rounds on a loaded machine; CPU time per step, linear: eager 9-12
ms, foreach 9-11, jit 11-14; mlp: 17-25, 19-22, 20-23). The TensorExpr fuser on
the CPU (torch._C._jit_override_can_fuse_on_cpu) fails with "LLVM Backend not
found": Debian's torch is built without LLVM.

Settings (--env tuned, the default): the process runs itself again with the
settings that were fastest for PyTorch here (bench/run.sh's tuned PyTorch, and
this step's own measurements):
  * OpenBLAS's OpenMP flavour through LD_LIBRARY_PATH (one thread pool, ATen's)
    when Debian's libopenblas0-openmp is installed, or from --openblas-dir DIR;
    without it python3-torch runs on the reference BLAS (about 20x slower). A
    LD_LIBRARY_PATH that already names an OpenBLAS is kept.
  * OPENBLAS_CORETYPE removed, so that OpenBLAS runs the kernels it picks for
    the CPU (AVX-512 "Cooperlake" here: 25-35 % less CPU time per step than the
    AVX2 "Haswell" kernels); --openblas-coretype NAME sets one instead.
  * glibc malloc told to keep freed memory (MALLOC_TRIM_THRESHOLD_=-1,
    MALLOC_MMAP_THRESHOLD_=1 GiB: no fresh pages, no page faults per step),
    unless set already or LD_PRELOAD is set; --allocator jemalloc|tcmalloc
    preloads that library (LD_PRELOAD) if Debian has it installed, and fails
    otherwise (nothing is installed).
--env plain runs with the environment as it is.

Timing: one first step, ~--warmup s of warm-up steps, then timed steps until
--seconds and --min-iters; steps_per_s = timed steps / their summed wall time,
cpu_s_per_step = this process's CPU time per timed step. The JSON line also
says which BLAS and allocator the process loaded and how much of the CPUs
other processes used meanwhile (others_cpu): with two threads on two busy
cores every OpenMP barrier waits for a preempted thread, and steps_per_s falls
by 10-100x, so compare figures taken on a quiet machine.
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
LIBDIR = "/usr/lib/x86_64-linux-gnu"
ALLOCATORS = {"jemalloc": "libjemalloc.so.2 (Debian: libjemalloc2)",
              "tcmalloc": "libtcmalloc_minimal.so.4 (Debian: libtcmalloc-minimal4)"}
REEXEC = "PORTCLIP_TORCH_TRAIN_ENV"
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


def tuned_env(a):
    """-> the environment for the timed process (see the module comment), or
    raises SystemExit(2) when --allocator names a library that is not installed."""
    env = dict(os.environ)
    env[REEXEC] = a.env
    if a.env == "plain":
        return env
    ob = a.openblas_dir or os.path.join(LIBDIR, "openblas-openmp")
    if a.openblas_dir and not os.path.isfile(os.path.join(ob, "libblas.so.3")):
        print(f"torch_train.py: --openblas-dir {ob}: no libblas.so.3 there", file=sys.stderr)
        sys.exit(2)
    if "openblas" not in env.get("LD_LIBRARY_PATH", "") and os.path.isfile(os.path.join(ob, "libblas.so.3")):
        env["LD_LIBRARY_PATH"] = ob + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env.pop("OPENBLAS_CORETYPE", None)
    if a.openblas_coretype:
        env["OPENBLAS_CORETYPE"] = a.openblas_coretype
    if a.allocator != "glibc":
        lib = os.path.join(LIBDIR, ALLOCATORS[a.allocator].split()[0])
        if not os.path.isfile(lib):
            raise SystemExit(f"torch_train.py: --allocator {a.allocator}: {lib} is not installed "
                             f"({ALLOCATORS[a.allocator].split(' ', 1)[1][1:-1]})")
        env["LD_PRELOAD"] = lib + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    elif "LD_PRELOAD" not in env:
        env.setdefault("MALLOC_TRIM_THRESHOLD_", "-1")
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "1073741824")
    return env


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
    self_s = self_cpu_s() - self0
    others = max(0.0, (machine_busy_s() - busy0 - self_s) / (wall * os.cpu_count()))
    last = float(loss)
    if not math.isfinite(last) or not last < first_loss:
        raise SystemExit(f"torch_train.py: the loss did not fall ({first_loss} -> {last})")
    return {"impl": "pytorch", "torch": torch.__version__, "threads": threads,
            "steps_per_s": len(samples) / total, "batch": a.batch,
            "head": "mlp" if a.mlp else "linear", "embed_dim": a.embed_dim, "mode": a.mode,
            "torch_default_threads": default_threads, "timed_steps": len(samples),
            "median_step_s": statistics.median(samples), "first_step_s": first_s, "warmup_steps": warm,
            "cpu_s_per_step": self_s / len(samples), "others_cpu": round(others, 3), "loss_first": first_loss, "loss_last": last,
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
    ap.add_argument("--env", choices=["tuned", "plain"], default="tuned")
    ap.add_argument("--allocator", choices=["glibc"] + list(ALLOCATORS), default="glibc")
    ap.add_argument("--openblas-dir", default="", help="a folder holding OpenBLAS's libblas.so.3")
    ap.add_argument("--openblas-coretype", default="", help="--env tuned: OPENBLAS_CORETYPE (default: unset)")
    ap.add_argument("--explore", action="store_true", help="run every mode, each in its own process")
    a = ap.parse_args()
    if a.batch < 2 or a.embed_dim < 1 or a.seconds <= 0 or a.warmup < 0 or a.threads < 0:
        ap.error("--batch must be at least 2, --embed-dim and --seconds positive")
    argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    if a.explore:
        import subprocess
        argv.remove("--explore")
        for m in MODES:
            subprocess.run(argv + ["--mode", m], check=True)  # the last --mode wins
        return
    if os.environ.get(REEXEC) is None:
        sys.stdout.flush()
        os.execve(sys.executable, argv, tuned_env(a))
    rec = run(a)
    rec["settings"] = os.environ[REEXEC] + ("" if a.allocator == "glibc" else "+" + a.allocator)
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
