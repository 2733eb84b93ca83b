#!/usr/bin/python3
"""The PyTorch side of portclip's benchmark (bench/run.sh), and its report.

Run with Debian's Python (python3-torch 1.13): /usr/bin/python3.

    torch_clip.py run --model DIR --workload vision|text-full|text-short|text-short-trunc|load
                      [--batch N] [--mode eager|freeze|ofi|mkldnn] [--seconds S] [--label NAME]
    torch_clip.py info                       which BLAS, which OpenBLAS kernels, threads
    torch_clip.py check --model DIR --portclip DIR   compare with bench_clip check's outputs
    torch_clip.py report RESULTS.jsonl --model DIR [--markdown OUT]

The model is the plain PyTorch CLIP forward of tests/fixtures/make_fixtures.py
(its encoder_layer, activation and pool_indices: pre-LayerNorm blocks, causal
mask for text, end-of-text pooling, class token and post_layernorm for
images, projections), on the checkpoint's own safetensors weights, read
tensor by tensor into torch tensors (no transformers, no safetensors package).
Everything runs under torch.inference_mode() with torch.set_num_threads(cores).

Precision (run --precision): fp32, the default; bf16 (eager only) with
--bf16 convert (the weights and activations converted with .to(torch.bfloat16):
every op in bfloat16) or --bf16 autocast (torch.autocast("cpu",
dtype=torch.bfloat16) around the float32 forward: linear, matmul and conv in
bfloat16, weights cast per call); a bf16 record adds fp32_worst_cos and
fp32_max_err, the L2-normalised embeddings against this process's own float32
ones on the same input.

Modes: eager (the functions as written); freeze (torch.jit.trace of the
tower, then torch.jit.freeze); ofi (freeze, then torch.jit.optimize_for_inference,
which here decomposes linear into matmul + add rather than moving it to oneDNN);
mkldnn (eager, with nn.Linear on oneDNN through torch.utils.mkldnn's route).
Workloads mirror bench_clip's: same pixels, same captions, same timing rules
(one first call, ~1 s of warm-up, timed calls until --seconds and
--min-iters). text-short-trunc gives PyTorch the short caption cut to its own
length (as Hugging Face's tokenizer with padding="longest" would), for
reference; the other text workloads give it the full 77-position rows, as
OpenAI's clip.tokenize does.
"""

import argparse
import ctypes
import json
import os
import resource
import statistics
import struct
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in tests/fixtures
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))

SHORT_CAPTION = "a photo of a cat"


def full_caption(r, long_sentence):
    """bench_clip.c's full_caption(): r % 5 copies of "photo ", then the long sentence x4."""
    return "photo " * (r % 5) + long_sentence * 4


def fill_pixels(n):
    """bench_clip.c's fill_pixels(): x_i = LCG(i) / 2^31 * 4 - 2, in double, then float32."""
    import numpy as np
    i = np.arange(n, dtype=np.uint64)
    v = (i * np.uint64(1103515245) + np.uint64(12345)) & np.uint64(0x7FFFFFFF)
    return (v.astype(np.float64) / 2147483648.0 * 4.0 - 2.0).astype(np.float32)


def machine_busy_s():
    """Busy CPU seconds of the whole machine (bench_clip.c's machine_busy_s)."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def self_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def maxrss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ----------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------

def load_weights(model_dir):
    """name -> float32 torch tensor, read straight from model.safetensors into
    each tensor's storage (peak memory: the weights once, no second copy)."""
    import torch
    dtypes = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}
    path = os.path.join(model_dir, "model.safetensors")
    W = {}
    with open(path, "rb", buffering=0) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        base = 8 + n
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if info["dtype"] not in dtypes:
                continue  # integer position_ids buffers
            dt, size = dtypes[info["dtype"]]
            a, b = info["data_offsets"]
            t = torch.empty(info["shape"], dtype=dt)
            assert b - a == t.numel() * size, name
            f.seek(base + a)
            view = memoryview(t.reshape(-1).view(torch.uint8).numpy())
            got = 0
            while got < len(view):
                k = f.readinto(view[got:])
                if not k:
                    raise IOError(f"{path}: short read in {name}")
                got += k
            W[name] = t if dt == torch.float32 else t.float()
    return W


# ----------------------------------------------------------------------------
# the forward pass (the fixture's layers, one tower at a time)
# ----------------------------------------------------------------------------

def text_tower(W, cfg, ids):
    import torch
    import make_fixtures as mf
    F = torch.nn.functional
    tc = cfg["text_config"]
    B, T = ids.shape
    D = tc["hidden_size"]
    x = W["text_model.embeddings.token_embedding.weight"][ids] + \
        W["text_model.embeddings.position_embedding.weight"][:T]
    mask = torch.full((T, T), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)
    act = mf.activation(tc["hidden_act"])
    for i in range(tc["num_hidden_layers"]):
        x = mf.encoder_layer(W, f"text_model.encoder.layers.{i}.", x, tc["num_attention_heads"], act,
                             tc["layer_norm_eps"], mask)
    x = F.layer_norm(x, (D,), W["text_model.final_layer_norm.weight"],
                     W["text_model.final_layer_norm.bias"], tc["layer_norm_eps"])
    idx = mf.pool_indices(ids, tc["eos_token_id"])
    return F.linear(x[torch.arange(B), idx], W["text_projection.weight"])


def vision_tower(W, cfg, px):
    import torch
    import make_fixtures as mf
    F = torch.nn.functional
    vc = cfg["vision_config"]
    D = vc["hidden_size"]
    M = px.shape[0]
    pe = F.conv2d(px, W["vision_model.embeddings.patch_embedding.weight"], stride=vc["patch_size"])
    pe = pe.flatten(2).transpose(1, 2)
    cls = W["vision_model.embeddings.class_embedding"].expand(M, 1, D)
    x = torch.cat([cls, pe], dim=1) + W["vision_model.embeddings.position_embedding.weight"]
    x = F.layer_norm(x, (D,), W["vision_model.pre_layrnorm.weight"], W["vision_model.pre_layrnorm.bias"],
                     vc["layer_norm_eps"])
    act = mf.activation(vc["hidden_act"])
    for i in range(vc["num_hidden_layers"]):
        x = mf.encoder_layer(W, f"vision_model.encoder.layers.{i}.", x, vc["num_attention_heads"], act,
                             vc["layer_norm_eps"], None)
    pooled = F.layer_norm(x[:, 0], (D,), W["vision_model.post_layernorm.weight"],
                          W["vision_model.post_layernorm.bias"], vc["layer_norm_eps"])
    return F.linear(pooled, W["visual_projection.weight"])


def make_encoder(W, cfg, which, mode, example):
    """-> callable(input) -> projected embeddings."""
    import torch
    fn = text_tower if which == "text" else vision_tower
    prefixes = ("text_model.", "text_projection.") if which == "text" else \
        ("vision_model.", "visual_projection.")
    mine = {k: v for k, v in W.items() if k.startswith(prefixes)}
    if mode == "eager":
        return lambda x: fn(mine, cfg, x)
    if mode == "mkldnn":
        return mkldnn_encoder(torch, fn, mine, cfg)

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.names = sorted(mine)
            for i, k in enumerate(self.names):
                self.register_buffer(f"w{i}", mine[k])

        def forward(self, x):
            return fn({k: getattr(self, f"w{i}") for i, k in enumerate(self.names)}, cfg, x)

    m = Tower().eval()
    with torch.jit.optimized_execution(True):
        traced = torch.jit.trace(m, (example,), check_trace=False)
        frozen = torch.jit.freeze(traced)
        if mode == "ofi":
            frozen = torch.jit.optimize_for_inference(frozen)
    return frozen


def mkldnn_encoder(torch, fn, W, cfg):
    """The eager forward with every nn.Linear on oneDNN (PyTorch's own
    torch.utils.mkldnn route: weights converted with .to_mkldnn() once,
    torch._C._nn.mkldnn_linear per call) instead of OpenBLAS."""
    F = torch.nn.functional
    dense_linear = F.linear
    Wm = dict(W)
    for k, v in W.items():
        if v.dim() == 2 and k.endswith(("proj.weight", "fc1.weight", "fc2.weight", "projection.weight")):
            Wm[k] = v.to_mkldnn()
            b = k[:-len("weight")] + "bias"
            if b in W:
                Wm[b] = W[b].to_mkldnn()

    def linear(x, w, b=None):
        if not w.is_mkldnn:
            return dense_linear(x, w, b)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to_mkldnn()
        y = torch._C._nn.mkldnn_linear(x2, w, b) if b is not None else \
            torch._C._nn.mkldnn_linear(x2, w, None)
        return y.to_dense().reshape(*shape[:-1], w.shape[0])

    F.linear = linear  # this process runs only this encoder
    return lambda x: fn(Wm, cfg, x)


# ----------------------------------------------------------------------------
# BLAS / thread information
# ----------------------------------------------------------------------------

def blas_info():
    """Which BLAS torch really loaded, and for OpenBLAS which kernels (core) it runs."""
    info = {}
    try:
        from threadpoolctl import threadpool_info
        pools = threadpool_info()
        info["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "filepath",
                                                       "version", "threading_layer", "architecture",
                                                       "num_threads")} for p in pools]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if ".so" in line and any(s in line for s in ("blas", "lapack", "gomp", "dnnl",
                                                                "jemalloc", "tcmalloc"))})
    info["mapped"] = libs
    for lib in libs:
        if "openblas" in lib or ("libblas" in lib and "openblas" in os.path.realpath(lib)):
            try:
                h = ctypes.CDLL(lib)
                h.openblas_get_config.restype = ctypes.c_char_p
                h.openblas_get_corename.restype = ctypes.c_char_p
                info["openblas_config"] = h.openblas_get_config().decode()
                info["openblas_corename"] = h.openblas_get_corename().decode()
                info["openblas_num_threads"] = h.openblas_get_num_threads()
                break
            except (OSError, AttributeError):
                pass
    return info


def aten_capability(torch):
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return None


def setup_torch():
    import torch
    threads = int(os.environ.get("BENCH_THREADS", "0")) or len(os.sched_getaffinity(0))
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    return torch, threads, default_threads


def env_summary():
    keys = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS",
            "GOMP_SPINCOUNT", "LD_PRELOAD", "LD_LIBRARY_PATH", "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA")
    return {k: os.environ[k] for k in keys if k in os.environ}


# ----------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------

def make_input(torch, cfg, which, batch, caption):
    import make_fixtures as mf
    if which == "vision":
        vc = cfg["vision_config"]
        S = vc["image_size"]
        px = fill_pixels(batch * 3 * S * S).reshape(batch, 3, S, S)
        return torch.from_numpy(px), 0
    vocab = json.load(open(os.path.join(MODEL_DIR, "vocab.json"), encoding="utf-8"))
    tok = mf.SimpleTokenizer(vocab, mf.read_merges(os.path.join(MODEL_DIR, "merges.txt")))
    L = cfg["text_config"]["max_position_embeddings"]
    rows = []
    for r in range(batch):
        text = full_caption(r, mf.LONG_SENTENCE) if caption == "full" else SHORT_CAPTION
        rows.append(tok.tokenize(text, L))
    n_tok = max(sum(1 for t in row if t) for row in rows)
    if caption == "full":
        assert all(row[-1] == vocab[mf.EOT] for row in rows), "full captions must fill 77 positions"
    if caption == "trunc":
        rows = [row[:n_tok] for row in rows]
    return torch.tensor(rows, dtype=torch.int64), n_tok


MODEL_DIR = None


def cmd_run(a):
    global MODEL_DIR
    MODEL_DIR = a.model
    torch, threads, default_threads = setup_torch()
    cfg = json.load(open(os.path.join(a.model, "config.json"), encoding="utf-8"))
    t0 = time.perf_counter()
    W = load_weights(a.model)
    load_s = time.perf_counter() - t0
    rec = {"impl": "torch", "config": a.label, "mode": a.mode, "threads": threads,
           "torch_default_threads": default_threads, "torch": torch.__version__, "env": env_summary()}
    if a.workload == "load":
        with torch.inference_mode():
            px, _ = make_input(torch, cfg, "vision", 1, None)
            ids, _ = make_input(torch, cfg, "text", 1, "full")
            t = time.perf_counter()
            enc_v = make_encoder(W, cfg, "vision", a.mode, px)
            enc_v(px)
            t1 = time.perf_counter()
            enc_v(px)
            t2 = time.perf_counter()
            enc_t = make_encoder(W, cfg, "text", a.mode, ids)
            enc_t(ids)
            t3 = time.perf_counter()
            enc_t(ids)
            t4 = time.perf_counter()
        rec.update(kind="load", load_s=load_s, first_vision_s=t1 - t, second_vision_s=t2 - t1,
                   first_text_s=t3 - t2, second_text_s=t4 - t3, maxrss_kb=maxrss_kb(),
                   blas=blas_info())
        print(json.dumps(rec))
        return
    which = "vision" if a.workload == "vision" else "text"
    caption = {"text-full": "full", "text-short": "short", "text-short-trunc": "trunc"}.get(a.workload)
    with torch.inference_mode():
        x, n_tok = make_input(torch, cfg, which, a.batch, caption)
        ref = None
        if a.precision == "bf16":
            if a.mode != "eager":
                sys.exit("torch_clip.py: --precision bf16 runs with --mode eager only")
            # the same input in float32 first: the bf16 embeddings' reference
            ref = make_encoder(W, cfg, which, "eager", x)(x).double()
        t = time.perf_counter()
        if a.precision == "bf16" and a.bf16 == "convert":
            # weights and activations in bfloat16 (the pixels too; ids stay int64)
            W = {k: v.to(torch.bfloat16) for k, v in W.items()}
            if which == "vision":
                x = x.to(torch.bfloat16)
            enc = make_encoder(W, cfg, which, "eager", x)
        elif a.precision == "bf16":
            # torch.autocast: weights fp32, linear/matmul/conv cast to bfloat16 per call
            enc32 = make_encoder(W, cfg, which, "eager", x)

            def enc(inp):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return enc32(inp)
        else:
            enc = make_encoder(W, cfg, which, a.mode, x)
        y = enc(x)
        first_s = time.perf_counter() - t
        warm = 0
        t = time.perf_counter()
        while True:
            y = enc(x)
            warm += 1
            if time.perf_counter() - t >= a.warmup:
                break
        samples = []
        total = 0.0
        busy0, self0, wall0 = machine_busy_s(), self_cpu_s(), time.perf_counter()
        while (total < a.seconds or len(samples) < a.min_iters) and len(samples) < 100000:
            s = time.perf_counter()
            y = enc(x)
            dt = time.perf_counter() - s
            samples.append(dt)
            total += dt
    wall = time.perf_counter() - wall0
    others = max(0.0, (machine_busy_s() - busy0 - (self_cpu_s() - self0)) / (wall * os.cpu_count()))
    if ref is not None:
        yn = torch.nn.functional.normalize(y.double(), dim=-1)
        rn = torch.nn.functional.normalize(ref, dim=-1)
        rec.update(bf16=a.bf16, fp32_worst_cos=float((yn * rn).sum(-1).min()),
                   fp32_max_err=float((yn - rn).abs().max()))
    rec.update(precision=a.precision)
    rec.update(kind="timed", workload=a.workload, others_cpu=round(others, 3), batch=a.batch, tokens=n_tok,
               seq=int(x.shape[1]) if which == "text" else 0, first_s=first_s, load_s=load_s,
               warmup_iters=warm, checksum=float(y.double().sum()), maxrss_kb=maxrss_kb(),
               samples_s=samples, median_s=statistics.median(samples), blas=blas_info())
    print(json.dumps(rec))


def cmd_info(a):
    torch, threads, default_threads = setup_torch()
    out = {"kind": "torch-info", "config": a.label, "torch": torch.__version__, "threads": threads,
           "torch_default_threads": default_threads,
           "aten_cpu_capability": aten_capability(torch),
           "env": env_summary()}
    x = torch.randn(64, 64)
    (x @ x).sum()  # make sure the BLAS is loaded
    out["blas"] = blas_info()
    print(json.dumps(out))


def cmd_check(a):
    global MODEL_DIR
    MODEL_DIR = a.model
    import numpy as np
    import make_fixtures as mf
    torch, threads, _ = setup_torch()
    cfg = json.load(open(os.path.join(a.model, "config.json"), encoding="utf-8"))
    W = load_weights(a.model)
    with torch.inference_mode():
        S = cfg["vision_config"]["image_size"]
        px = torch.from_numpy(fill_pixels(2 * 3 * S * S).reshape(2, 3, S, S))
        vocab = json.load(open(os.path.join(a.model, "vocab.json"), encoding="utf-8"))
        tok = mf.SimpleTokenizer(vocab, mf.read_merges(os.path.join(a.model, "merges.txt")))
        L = cfg["text_config"]["max_position_embeddings"]
        ids = torch.tensor([tok.tokenize(full_caption(0, mf.LONG_SENTENCE), L),
                            tok.tokenize(SHORT_CAPTION, L)], dtype=torch.int64)
        Wd = {k: v.double() for k, v in W.items()}
        ref = {"images": vision_tower(Wd, cfg, px.double()).numpy(),
               "text": text_tower(Wd, cfg, ids).numpy()}
        f32 = {"images": vision_tower(W, cfg, px).double().numpy(),
               "text": text_tower(W, cfg, ids).double().numpy()}
    res = {"impl": "check"}
    for k in ("images", "text"):
        got = np.load(os.path.join(a.portclip, k + ".npy")).astype(np.float64)
        scale = np.abs(ref[k]).max()
        res[k] = {"portclip_vs_f64": float(np.abs(got - ref[k]).max() / scale),
                  "torch_f32_vs_f64": float(np.abs(f32[k] - ref[k]).max() / scale)}
    print(json.dumps(res))


# ----------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------

def flops(cfg, which, batch, seq, pooled_last=False):
    """FLOPs (2 per multiply-add) of one forward of `batch` inputs: every
    matmul, the attention products (the full T x T square, as computed),
    patch embedding and projection; norms and activations are not counted.
    pooled_last: the last layer's out-projection and MLP run on the pooled
    row only (portclip), so they count once per input, not T times."""
    if which == "vision":
        c = cfg["vision_config"]
        D, Fd, Lyr, P, S = (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
                            c["patch_size"], c["image_size"])
        n_patch = (S // P) ** 2
        T = n_patch + 1
        macs = n_patch * D * 3 * P * P
    else:
        c = cfg["text_config"]
        D, Fd, Lyr = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
        T = seq
        macs = 0
    layer = 4 * T * D * D + 2 * T * D * Fd + 2 * T * T * D
    macs += Lyr * layer
    if pooled_last and Lyr > 0:
        macs -= (T - 1) * (D * D + 2 * D * Fd)
    macs += D * cfg["projection_dim"]
    return 2.0 * macs * batch


def load_jsonl(path):
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def fmt_rate(x):
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def cmd_report(a):
    cfg = json.load(open(os.path.join(a.model, "config.json"), encoding="utf-8"))
    recs = load_jsonl(a.results)
    peak = next((r for r in recs if r.get("kind") == "peak"), None)
    meta = next((r for r in recs if r.get("kind") == "meta"), {})
    timed = [r for r in recs if r.get("kind") == "timed"]
    loads = [r for r in recs if r.get("kind") == "load"]
    infos = [r for r in recs if r.get("kind") == "torch-info"]
    checks = [r for r in recs if r.get("impl") == "check"]
    lines = []
    P = lines.append
    if meta:
        P(f"Run {meta.get('date', '?')} on {meta.get('cpu', '?')} ({meta.get('nproc', '?')} CPUs), "
          f"tree {meta.get('git', '?')}, {meta.get('seconds', '?')} s timed per workload.\n")

    workloads = [("vision", 1), ("vision", 8), ("vision", 32), ("text-full", 1), ("text-full", 32),
                 ("text-short", 1), ("text-short", 32), ("text-short-trunc", 1),
                 ("text-short-trunc", 32)]
    units = {"vision": "images/s", "text-full": "texts/s", "text-short": "texts/s",
             "text-short-trunc": "texts/s"}
    explore = [r for r in timed if r["config"].startswith("explore:")]
    timed = [r for r in timed if not r["config"].startswith("explore:")]
    configs = []
    for r in timed:
        key = (r["impl"], r["config"])
        if key not in configs:
            configs.append(key)

    def get(impl, conf, wl, b):
        for r in timed:
            if (r["impl"], r["config"], r["workload"], r["batch"]) == (impl, conf, wl, b):
                return r
        return None

    def busy_mark(r):
        o = r.get("others_cpu", 0)
        return f" !{o * 100:.0f}%" if o > 0.10 else ""

    def rate(r):
        s = sorted(r["samples_s"])
        return r["batch"] / r["median_s"], r["batch"] / s[-1], r["batch"] / s[0]

    def seq_of(r):
        if r["workload"] == "vision":
            return 0
        if r["impl"] == "torch":
            return r["seq"]
        t = r["tokens"]  # portclip encodes up to the last end-of-text, rounded up to 8
        return min(cfg["text_config"]["max_position_embeddings"], (t + 7) // 8 * 8)

    peak_all = peak["avx512_gflops_all"] if peak and peak["avx512_gflops_all"] else \
        (peak["avx2_gflops_all"] if peak else 0)

    P("### Throughput (median, [min-max] over the timed calls)\n")
    P("`!N%`: other processes used N % of the CPUs while this figure was timed.\n")
    hdr = "| workload | batch | " + " | ".join(f"{i} {c}" for i, c in configs) + " |"
    P(hdr)
    P("|" + "---|" * (2 + len(configs)))
    for wl, b in workloads:
        cells = []
        any_ = False
        for impl, conf in configs:
            r = get(impl, conf, wl, b)
            if r:
                any_ = True
                m, lo, hi = rate(r)
                cells.append(f"{fmt_rate(m)} [{fmt_rate(lo)}-{fmt_rate(hi)}]{busy_mark(r)}")
            else:
                cells.append("-")
        if any_:
            P(f"| {wl} ({units[wl]}) | {b} | " + " | ".join(cells) + " |")
    P("")

    # best torch per workload, and the headline ratios
    def best_torch(wl, b, pred=lambda conf: True):
        best = None
        for impl, conf in configs:
            if impl != "torch" or not pred(conf):
                continue
            r = get(impl, conf, wl, b)
            if r and (best is None or rate(r)[0] > rate(best)[0]):
                best = r
        return best

    goals = {("vision", 32): 1.25, ("vision", 1): 2.0, ("text-full", 32): 1.2,
             ("text-short", 1): 5.0, ("text-short", 32): 5.0}
    pc_main = next((c for i, c in configs if i == "portclip" and "avx2" not in c), None)
    pc_avx2 = next((c for i, c in configs if i == "portclip" and "avx2" in c), None)
    P(f"### Ratios: portclip / best PyTorch (speed), share of the FMA peak "
      f"({peak_all:.0f} GFLOP/s measured, AVX-512, all cores)\n")
    P("| workload | batch | portclip | best PyTorch (config) | ratio | goal | met | "
      "portclip %peak | PyTorch %peak | portclip AVX2 | best PyTorch AVX2 (config) | AVX2 ratio |")
    P("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl, b in workloads:
        if wl == "text-short-trunc":
            continue
        pr = get("portclip", pc_main, wl, b) if pc_main else None
        bt = best_torch(wl, b, lambda c: "trunc" not in c)
        if not pr or not bt:
            continue
        pm, tm = rate(pr)[0], rate(bt)[0]
        ratio = pm / tm
        goal = goals.get((wl, b))
        gp = lambda r: flops(cfg, "vision" if wl == "vision" else "text", b, seq_of(r),
                             r["impl"] == "portclip") * \
            (b / r["median_s"] / b) / 1e9 / peak_all * 100 if peak_all else float("nan")
        a2 = get("portclip", pc_avx2, wl, b) if pc_avx2 else None
        bt2 = best_torch(wl, b, lambda c: "haswell" in c.lower())
        a2s = fmt_rate(rate(a2)[0]) if a2 else "-"
        bt2s = f"{fmt_rate(rate(bt2)[0])} ({bt2['config']})" if bt2 else "-"
        r2 = f"{rate(a2)[0] / rate(bt2)[0]:.2f}x" if a2 and bt2 else "-"
        P(f"| {wl} | {b} | {fmt_rate(pm)}{busy_mark(pr)} | {fmt_rate(tm)}{busy_mark(bt)} ({bt['config']}) | "
          f"{ratio:.2f}x | "
          f"{f'>= {goal:g}x' if goal else '-'} | "
          f"{('yes' if ratio >= goal else 'NO') if goal else '-'} | {gp(pr):.0f} % | {gp(bt):.0f} % | "
          f"{a2s} | {bt2s} | {r2} |")
    P("")

    P("### Peak RSS (MiB, whole process: weights, runtime, activations)\n")
    P(hdr)
    P("|" + "---|" * (2 + len(configs)))
    rss_rows = []
    for wl, b in workloads:
        cells, any_ = [], False
        for impl, conf in configs:
            r = get(impl, conf, wl, b)
            cells.append(f"{r['maxrss_kb'] / 1024:.0f}" if r else "-")
            any_ = any_ or bool(r)
        if any_:
            P(f"| {wl} | {b} | " + " | ".join(cells) + " |")
        pr = get("portclip", pc_main, wl, b) if pc_main else None
        tr = [get(i, c, wl, b) for i, c in configs if i == "torch" and "trunc" not in c]
        tr = [r for r in tr if r]
        if pr and tr and wl != "text-short-trunc":
            rss_rows.append((wl, b, pr["maxrss_kb"], min(r["maxrss_kb"] for r in tr)))
    P("")

    P("### Load (warm page cache; median [min-max] over fresh processes, seconds)\n")
    P("| impl | config | runs | load | first vision encode (b=1) | 2nd vision | "
      "first text encode (b=1) | 2nd text | peak RSS MiB |")
    P("|---|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in loads:
        groups.setdefault((r["impl"], r["config"]), []).append(r)

    def mm(vals):
        return f"{statistics.median(vals):.3f} [{min(vals):.3f}-{max(vals):.3f}]"
    load_med = {}
    for (impl, conf), rs in groups.items():
        load_med[(impl, conf)] = statistics.median(r["load_s"] for r in rs)
        P(f"| {impl} | {conf} | {len(rs)} | {mm([r['load_s'] for r in rs])} | "
          f"{mm([r['first_vision_s'] for r in rs])} | {mm([r['second_vision_s'] for r in rs])} | "
          f"{mm([r['first_text_s'] for r in rs])} | {mm([r['second_text_s'] for r in rs])} | "
          f"{statistics.median(r['maxrss_kb'] for r in rs) / 1024:.0f} |")
    P("")

    pl_rss = [statistics.median(r["maxrss_kb"] for r in rs) for (i, c), rs in groups.items()
              if i == "portclip" and "avx2" not in c]
    tl_rss = [statistics.median(r["maxrss_kb"] for r in rs) for (i, c), rs in groups.items()
              if i == "torch"]
    if pl_rss and tl_rss:
        rss_rows.append(("load + first vision + first text", 1, pl_rss[0], min(tl_rss)))

    P("### Goals (issue 6)\n")
    P("| goal | measured | met |")
    P("|---|---|---|")
    for (wl, b), g in goals.items():
        pr = get("portclip", pc_main, wl, b) if pc_main else None
        bt = best_torch(wl, b, lambda c: "trunc" not in c)
        if pr and bt:
            ratio = rate(pr)[0] / rate(bt)[0]
            P(f"| {wl} batch {b}: >= {g:g}x tuned PyTorch | {ratio:.2f}x ({fmt_rate(rate(pr)[0])} vs "
              f"{fmt_rate(rate(bt)[0])} {bt['config']}) | {'yes' if ratio >= g else 'NO'} |")
    if rss_rows:
        worse = [(wl, b, p, t) for wl, b, p, t in rss_rows if p >= t]
        P(f"| peak RSS below PyTorch's for the same work | "
          f"{len(rss_rows) - len(worse)}/{len(rss_rows)} workloads below; "
          + ("; ".join(f"{wl} b{b}: {p / 1024:.0f} vs {t / 1024:.0f} MiB" for wl, b, p, t in worse)
             if worse else "all below") + f" | {'yes' if not worse else 'NO'} |")
    pl = [v for (i, c), v in load_med.items() if i == "portclip" and "avx2" not in c]
    if pl:
        P(f"| load of the f32 checkpoint < 0.2 s (warm cache) | {pl[0]:.3f} s "
          f"(pclip_model_load) | {'yes' if pl[0] < 0.2 else 'NO'} |")
    if pc_avx2:
        bad = []
        for wl, b in workloads:
            a2 = get("portclip", pc_avx2, wl, b)
            bt2 = best_torch(wl, b, lambda c: "haswell" in c.lower())
            if a2 and bt2 and rate(a2)[0] <= rate(bt2)[0]:
                bad.append(f"{wl} b{b}")
        P(f"| AVX2 path beats PyTorch forced to AVX2 (OPENBLAS_CORETYPE=Haswell) | "
          f"{'all workloads' if not bad else 'slower on: ' + ', '.join(bad)} | "
          f"{'yes' if not bad else 'NO'} |")
    P("")

    if explore:
        P("### PyTorch settings sweep (--explore; median items/s)\n")
        ex_conf = []
        for r in explore:
            if r["config"] not in ex_conf:
                ex_conf.append(r["config"])
        ex_wl = []
        for r in explore:
            if (r["workload"], r["batch"]) not in ex_wl:
                ex_wl.append((r["workload"], r["batch"]))
        P("| setting | " + " | ".join(f"{w} b{b}" for w, b in ex_wl) + " | peak RSS MiB (max) |")
        P("|---|" + "---|" * (len(ex_wl) + 1))
        for c in ex_conf:
            cells, rss = [], 0
            for w, b in ex_wl:
                r = next((r for r in explore if (r["config"], r["workload"], r["batch"]) == (c, w, b)), None)
                cells.append(f"{fmt_rate(rate(r)[0])} [{fmt_rate(rate(r)[1])}-{fmt_rate(rate(r)[2])}]"
                             f"{busy_mark(r)}" if r else "-")
                rss = max(rss, r["maxrss_kb"] if r else 0)
            P(f"| {c[len('explore:'):]} | " + " | ".join(cells) + f" | {rss / 1024:.0f} |")
        P("")

    P("### FLOPs per call and the measured peak\n")
    if peak:
        P(f"FMA peak (bench_clip peak, {peak['threads']} threads): AVX-512 "
          f"{peak['avx512_gflops_1']:.0f} GFLOP/s on one core, {peak['avx512_gflops_all']:.0f} on all; "
          f"AVX2 {peak['avx2_gflops_1']:.0f} / {peak['avx2_gflops_all']:.0f}.")
    P("FLOPs (2 per multiply-add, matmuls + attention products + patch embedding + projection): "
      f"vision {flops(cfg, 'vision', 1, 0) / 1e9:.2f} GFLOP/image; text "
      f"{flops(cfg, 'text', 1, 77) / 1e9:.2f} GFLOP/row at 77 positions, "
      f"{flops(cfg, 'text', 1, 8) / 1e9:.3f} at 8. portclip runs the last layer's out-projection "
      "and MLP on the pooled row only (exact: nothing else reads the other rows), so its "
      f"%peak counts {flops(cfg, 'vision', 1, 0, True) / 1e9:.2f} GFLOP/image, "
      f"{flops(cfg, 'text', 1, 77, True) / 1e9:.2f} per text row at 77 positions and "
      f"{flops(cfg, 'text', 1, 8, True) / 1e9:.3f} at 8.")
    P("")
    if checks:
        c = checks[-1]
        P("Outputs checked against PyTorch float64 (max |diff| / max |ref|): "
          f"portclip images {c['images']['portclip_vs_f64']:.1e}, text {c['text']['portclip_vs_f64']:.1e}; "
          f"PyTorch float32 images {c['images']['torch_f32_vs_f64']:.1e}, "
          f"text {c['text']['torch_f32_vs_f64']:.1e}.")
        P("")
    for inf in infos:
        b = inf.get("blas", {})
        arch = [p.get("architecture") for p in b.get("threadpools", []) if isinstance(p, dict)
                and p.get("internal_api") == "openblas"]
        P(f"- PyTorch config `{inf.get('config')}`: BLAS {', '.join(b.get('mapped', []))}; "
          f"OpenBLAS core {b.get('openblas_corename', arch)} ({b.get('openblas_config', 'n/a')}); "
          f"env {json.dumps(inf.get('env', {}))}")
    if meta:
        P("")
        P(f"Load average before / after: {meta.get('load_before', '?')} / {meta.get('load_after', '?')}")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--workload", required=True,
                   choices=["vision", "text-full", "text-short", "text-short-trunc", "load"])
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--mode", default="eager", choices=["eager", "freeze", "ofi", "mkldnn"])
    r.add_argument("--seconds", type=float, default=4.0)
    r.add_argument("--warmup", type=float, default=1.0)
    r.add_argument("--min-iters", type=int, default=5)
    r.add_argument("--label", default="default")
    r.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: eager only; the record adds the worst cosine of the L2-normalised "
                        "embeddings to this process's own float32 ones (fp32_worst_cos, fp32_max_err)")
    r.add_argument("--bf16", default="convert", choices=["convert", "autocast"],
                   help="convert: weights and activations .to(torch.bfloat16); autocast: "
                        "torch.autocast('cpu', dtype=torch.bfloat16) around the float32 forward")
    i = sub.add_parser("info")
    i.add_argument("--label", default="default")
    c = sub.add_parser("check")
    c.add_argument("--model", required=True)
    c.add_argument("--portclip", required=True)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--model", required=True)
    p.add_argument("--markdown")
    a = ap.parse_args()
    {"run": cmd_run, "info": cmd_info, "check": cmd_check, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
