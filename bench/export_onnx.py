#!/usr/bin/python3
"""Export the benchmark checkpoint to ONNX for ONNX Runtime (bench/peers.sh).

Run with Debian's Python (python3-torch 1.13): /usr/bin/python3.

    export_onnx.py --model DIR --out DIR [--ort-dir DIR] [--force]

Writes, with torch.onnx.export at opset 17 and a dynamic batch axis:
    OUT/vision.onnx          pixel_values [N,3,S,S] float32 -> image_embeds [N,P]
    OUT/text.onnx            input_ids [N,L] int64 -> text_embeds [N,P]
    OUT/bf16-matmul.onnx     one MatMul, bfloat16 inputs and weight (can ONNX
                             Runtime's CPU execution provider run bf16 MatMul?)
    OUT/vision-bf16.onnx     the vision tower with bfloat16 weights and
                             activations (when torch can export it)
    OUT/ids-full.bin         5 rows of bench_clip's full captions, 77 int64 each
                             (ort_clip.js's text input; row r is caption r % 5)
    OUT/export.json          what was exported, from which checkpoint (size and
                             mtime of model.safetensors), and the check below

The towers are the plain PyTorch CLIP forward of bench/torch_clip.py (the
layers of tests/fixtures/make_fixtures.py), on the checkpoint's own weights,
which the graphs carry as initializers. Existing files are kept when
export.json names the same checkpoint (--force exports again).

After exporting, the ONNX models are checked against PyTorch float32 on the
benchmark's inputs (2 images of bench_clip's pixels, 2 rows of full
77-position captions): with --ort-dir (a folder holding
node_modules/onnxruntime-node), `node bench/ort_clip.js check` runs them in ONNX
Runtime itself and prints max |diff| / max |ref| per tower; this script fails
when either is above 1e-4.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_clip as tc  # noqa: E402  (also puts tests/fixtures on sys.path)

OPSET = 17
CHECK_TOL = 1e-4


def tower_module(torch, W, cfg, which, dtype=None):
    """A torch.nn.Module running one tower of torch_clip.py, weights as buffers."""
    fn = tc.text_tower if which == "text" else tc.vision_tower
    prefixes = ("text_model.", "text_projection.") if which == "text" else \
        ("vision_model.", "visual_projection.")
    mine = {k: v for k, v in W.items() if k.startswith(prefixes)}

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.names = sorted(mine)
            for k in self.names:
                t = mine[k] if dtype is None else mine[k].to(dtype)
                self.register_buffer(k.replace(".", "_"), t)

        def forward(self, x):
            return fn({k: getattr(self, k.replace(".", "_")) for k in self.names}, cfg, x)

    return Tower().eval()


def checkpoint_id(model):
    st = os.stat(os.path.join(model, "model.safetensors"))
    return {"model": os.path.abspath(model), "size": st.st_size, "mtime": int(st.st_mtime)}


def export(torch, module, example, path, in_name, out_name):
    # make_fixtures.encoder_layer takes LayerNorm's width from x.shape, which the
    # tracer records as a graph value; ONNX's LayerNormalization needs it
    # constant. While exporting, F.layer_norm gets it as Python ints (the
    # width is fixed; only the batch axis is dynamic). Nothing else changes.
    F = torch.nn.functional
    layer_norm = F.layer_norm

    def static_layer_norm(x, shape, *args, **kw):
        return layer_norm(x, tuple(int(d) for d in shape), *args, **kw)

    F.layer_norm = static_layer_norm
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module, (example,), path, opset_version=OPSET,
                              input_names=[in_name], output_names=[out_name],
                              dynamic_axes={in_name: {0: "N"}, out_name: {0: "N"}},
                              do_constant_folding=True)
    finally:
        F.layer_norm = layer_norm


def inputs(torch, cfg, model, n):
    tc.MODEL_DIR = model
    px, _ = tc.make_input(torch, cfg, "vision", n, None)
    ids, _ = tc.make_input(torch, cfg, "text", n, "full")
    return px, ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ort-dir", help="folder with node_modules/onnxruntime-node: check in ONNX Runtime")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()

    import numpy as np
    import torch
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    os.makedirs(a.out, exist_ok=True)
    meta_path = os.path.join(a.out, "export.json")
    ident = checkpoint_id(a.model)
    meta = {}
    if os.path.exists(meta_path):
        meta = json.load(open(meta_path, encoding="utf-8"))
    names = ("vision.onnx", "text.onnx", "ids-full.bin")
    fresh = (not a.force and meta.get("checkpoint") == ident and meta.get("check", {}).get("ok")
             and all(os.path.exists(os.path.join(a.out, n)) for n in names))
    if fresh:
        print(f"export_onnx: {a.out} holds this checkpoint's export (--force to redo)", file=sys.stderr)
        return 0

    cfg = json.load(open(os.path.join(a.model, "config.json"), encoding="utf-8"))
    W = tc.load_weights(a.model)
    px, ids = inputs(torch, cfg, a.model, 2)
    meta = {"checkpoint": ident, "torch": torch.__version__, "opset": OPSET,
            "image_size": cfg["vision_config"]["image_size"],
            "context_length": cfg["text_config"]["max_position_embeddings"]}
    # the text rows ort_clip.js feeds: bench_clip's full captions (row r: r % 5)
    _, rows = inputs(torch, cfg, a.model, 5)
    rows.numpy().astype(np.int64).tofile(os.path.join(a.out, "ids-full.bin"))

    for which, x, fin, fout in (("vision", px, "pixel_values", "image_embeds"),
                                ("text", ids, "input_ids", "text_embeds")):
        path = os.path.join(a.out, which + ".onnx")
        print(f"export_onnx: {which} tower -> {path}", file=sys.stderr)
        export(torch, tower_module(torch, W, cfg, which), x, path, fin, fout)
        meta[which] = {"file": which + ".onnx", "input": fin, "output": fout,
                       "bytes": os.path.getsize(path)}

    # bf16: one MatMul (the smallest question), then the whole vision tower
    class MM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.randn(768, 768).to(torch.bfloat16))

        def forward(self, x):
            return torch.matmul(x, self.w)

    path = os.path.join(a.out, "bf16-matmul.onnx")
    try:
        export(torch, MM().eval(), torch.randn(2, 768).to(torch.bfloat16), path, "x", "y")
        meta["bf16_matmul"] = {"file": "bf16-matmul.onnx"}
    except Exception as e:  # noqa: BLE001  (recorded, not fatal)
        meta["bf16_matmul"] = {"export_error": f"{type(e).__name__}: {e}"[:2000]}
    path = os.path.join(a.out, "vision-bf16.onnx")
    try:
        export(torch, tower_module(torch, W, cfg, "vision", torch.bfloat16), px.to(torch.bfloat16),
               path, "pixel_values", "image_embeds")
        meta["vision_bf16"] = {"file": "vision-bf16.onnx", "bytes": os.path.getsize(path)}
    except Exception as e:  # noqa: BLE001
        meta["vision_bf16"] = {"export_error": f"{type(e).__name__}: {e}"[:2000]}
    print(f"export_onnx: bf16: {json.dumps({k: meta[k] for k in ('bf16_matmul', 'vision_bf16')})}",
          file=sys.stderr)

    # reference outputs: PyTorch float32, the same forward
    with torch.inference_mode():
        ref = {"vision": tc.vision_tower(W, cfg, px).numpy(), "text": tc.text_tower(W, cfg, ids).numpy()}
    check = {"ok": None}
    if a.ort_dir:
        with tempfile.TemporaryDirectory() as tmp:
            px.numpy().astype(np.float32).tofile(os.path.join(tmp, "vision.in"))
            ids.numpy().astype(np.int64).tofile(os.path.join(tmp, "text.in"))
            for k in ref:
                ref[k].astype(np.float32).tofile(os.path.join(tmp, k + ".ref"))
            spec = {"vision": {"model": os.path.join(a.out, "vision.onnx"), "input": "vision.in",
                               "dtype": "float32", "shape": list(px.shape), "ref": "vision.ref"},
                    "text": {"model": os.path.join(a.out, "text.onnx"), "input": "text.in",
                             "dtype": "int64", "shape": list(ids.shape), "ref": "text.ref"}}
            json.dump(spec, open(os.path.join(tmp, "spec.json"), "w"))
            out = subprocess.run(["node", os.path.join(HERE, "ort_clip.js"), "check", "--dir", tmp,
                                  "--ort-dir", a.ort_dir], capture_output=True, text=True)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                print("export_onnx: the check in ONNX Runtime failed", file=sys.stderr)
                return 1
            res = json.loads(out.stdout.strip().splitlines()[-1])
        check = {"ok": all(res[k] <= CHECK_TOL for k in ref), "ort": res.get("ort"),
                 "vision_rel_err": res["vision"], "text_rel_err": res["text"], "tol": CHECK_TOL}
        print(f"export_onnx: ONNX Runtime {res.get('ort')} against PyTorch float32 (max |diff| / max |ref|): "
              f"vision {res['vision']:.2e}, text {res['text']:.2e}", file=sys.stderr)
    meta["check"] = check
    json.dump(meta, open(meta_path, "w", encoding="utf-8"), indent=1)
    if check["ok"] is False:
        print(f"export_onnx: ONNX outputs differ from PyTorch's by more than {CHECK_TOL}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
