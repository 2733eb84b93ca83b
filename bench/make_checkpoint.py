#!/usr/bin/python3
"""Write the benchmark checkpoint: a Hugging Face CLIP directory shaped like
openai/clip-vit-base-patch32 (its exact config.json and preprocessor_config.json)
with random f32 weights.

    /usr/bin/python3 bench/make_checkpoint.py OUT_DIR [--clip-bpe DIR] [--force]

The tokenizer files are the real CLIP BPE vocabulary from ../shared/data/clip-bpe
(linked, not copied) when it is there, else the project's tiny fixture vocabulary
(its ids are all < 49408, and <|endoftext|> is its largest id, so the legacy
eos_token_id 2 argmax pooling of the real config still finds it).

The output lives in a build directory (bench/run.sh uses build-bench/), never
in the repository. A run that finds an up-to-date directory (same generator
version and vocabulary) does nothing, so bench/run.sh can call it every time.
model.safetensors is written to a temp file and renamed last: an interrupted
run never leaves a directory that looks complete.

Reuses tests/fixtures/make_fixtures.py (safetensors writer, state-dict layout,
preprocessor and tokenizer config writers) rather than copying it.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.dont_write_bytecode = True  # leave no __pycache__ in tests/fixtures
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
import make_fixtures as mf  # noqa: E402

GENERATOR_VERSION = 1
DEFAULT_BPE = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "clip-bpe"))
TINY_VOCAB = os.path.join(REPO, "tests", "fixtures", "tiny-clip")


def _tower_common():
    # PretrainedConfig fields transformers 4.16 wrote into every sub-config
    return {
        "_name_or_path": "", "add_cross_attention": False, "architectures": None,
        "bad_words_ids": None, "chunk_size_feed_forward": 0, "cross_attention_hidden_size": None,
        "decoder_start_token_id": None, "diversity_penalty": 0.0, "do_sample": False,
        "early_stopping": False, "encoder_no_repeat_ngram_size": 0, "finetuning_task": None,
        "forced_bos_token_id": None, "forced_eos_token_id": None,
        "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "is_decoder": False,
        "is_encoder_decoder": False, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
        "length_penalty": 1.0, "max_length": 20, "min_length": 0, "no_repeat_ngram_size": 0,
        "num_beam_groups": 1, "num_beams": 1, "num_return_sequences": 1,
        "output_attentions": False, "output_hidden_states": False, "output_scores": False,
        "prefix": None, "problem_type": None, "pruned_heads": {}, "remove_invalid_values": False,
        "repetition_penalty": 1.0, "return_dict": True, "return_dict_in_generate": False,
        "sep_token_id": None, "task_specific_params": None, "temperature": 1.0,
        "tie_encoder_decoder": False, "tie_word_embeddings": True, "tokenizer_class": None,
        "top_k": 50, "top_p": 1.0, "torch_dtype": None, "torchscript": False,
        "transformers_version": "4.16.0.dev0", "use_bfloat16": False,
    }


def vit_b32_config():
    """openai/clip-vit-base-patch32's config.json, value for value."""
    text = _tower_common()
    text.update({
        "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
        "hidden_act": "quick_gelu", "hidden_size": 512, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 2048, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77, "model_type": "clip_text_model",
        "num_attention_heads": 8, "num_hidden_layers": 12, "pad_token_id": 1,
        "projection_dim": 512, "vocab_size": 49408,
    })
    vision = _tower_common()
    vision.update({
        "attention_dropout": 0.0, "bos_token_id": None, "dropout": 0.0, "eos_token_id": None,
        "hidden_act": "quick_gelu", "hidden_size": 768, "image_size": 224,
        "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072,
        "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 12,
        "num_hidden_layers": 12, "pad_token_id": None, "patch_size": 32, "projection_dim": 512,
    })
    return {
        "_name_or_path": "openai/clip-vit-base-patch32", "architectures": ["CLIPModel"],
        "initializer_factor": 1.0, "logit_scale_init_value": 2.6592, "model_type": "clip",
        "projection_dim": 512, "text_config": text, "text_config_dict": None,
        "transformers_version": None, "vision_config": vision, "vision_config_dict": None,
    }


def layout(cfg):
    """The fixture's state-dict layout, with its module-level sizes set to this config."""
    t, v = cfg["text_config"], cfg["vision_config"]
    saved = (dict(mf.TEXT), dict(mf.VISION), mf.PROJ)
    try:
        mf.TEXT.update(hidden=t["hidden_size"], inter=t["intermediate_size"],
                       layers=t["num_hidden_layers"], heads=t["num_attention_heads"],
                       pos=t["max_position_embeddings"])
        mf.VISION.update(hidden=v["hidden_size"], inter=v["intermediate_size"],
                         layers=v["num_hidden_layers"], heads=v["num_attention_heads"],
                         image=v["image_size"], patch=v["patch_size"], channels=3)
        mf.PROJ = cfg["projection_dim"]
        return mf.state_dict_layout(t["vocab_size"])
    finally:
        mf.TEXT.clear(); mf.TEXT.update(saved[0])
        mf.VISION.clear(); mf.VISION.update(saved[1])
        mf.PROJ = saved[2]


# Standard deviations chosen so that activations stay O(1) through 12
# pre-LayerNorm blocks (no overflow, no denormals: the timing must not depend
# on odd values). Random weights cost exactly what trained ones cost.
STD = dict(attn=0.02, fc=0.02, emb=0.02, emb1=0.02, pemb=0.01, patch=0.02, proj=0.02, bias=0.01)


def make_weights(cfg, seed=0xB32):
    rng = np.random.default_rng(seed)
    ws = {}
    for name, shape, kind in layout(cfg):
        if kind == "posid":
            ws[name] = np.arange(shape[1], dtype=np.int64).reshape(shape)
        elif kind == "logit":
            ws[name] = np.array(cfg["logit_scale_init_value"], dtype=np.float32)
        elif kind == "lnw":
            ws[name] = (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        elif kind == "lnb":
            ws[name] = (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        else:
            ws[name] = (STD[kind] * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    return ws


def stamp_for(bpe_dir):
    return {"generator_version": GENERATOR_VERSION, "vocab": bpe_dir or "tiny-fixture"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--clip-bpe", default=DEFAULT_BPE)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    bpe = os.path.abspath(args.clip_bpe)
    have_bpe = all(os.path.isfile(os.path.join(bpe, f)) for f in ("vocab.json", "merges.txt"))
    stamp = stamp_for(bpe if have_bpe else None)
    stamp_path = os.path.join(out, "bench_checkpoint.json")
    complete = all(os.path.isfile(os.path.join(out, f)) for f in
                   ("config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
                    "model.safetensors"))
    if not args.force and complete and os.path.isfile(stamp_path):
        with open(stamp_path, encoding="utf-8") as f:
            if json.load(f) == stamp:
                print(f"checkpoint: {out} is up to date")
                return

    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    for f in ("model.safetensors", "bench_checkpoint.json", "vocab.json", "merges.txt"):
        p = os.path.join(out, f)
        if os.path.lexists(p):
            os.remove(p)
    cfg = vit_b32_config()
    mf.write_json(os.path.join(out, "config.json"), cfg)
    mf.write_json(os.path.join(out, "preprocessor_config.json"), mf.preprocessor_legacy(224, 224))

    # tokenizer files
    if have_bpe:
        for f in ("vocab.json", "merges.txt"):
            os.symlink(os.path.join(bpe, f), os.path.join(out, f))
        vocab_src = "real CLIP BPE vocabulary (%s, linked)" % bpe
    else:
        for f in ("vocab.json", "merges.txt"):
            with open(os.path.join(TINY_VOCAB, f), "rb") as src:
                mf.write_bytes(os.path.join(out, f), src.read())
        vocab_src = "tiny fixture vocabulary (no %s)" % bpe
    with open(os.path.join(out, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    assert max(vocab.values()) < cfg["text_config"]["vocab_size"]
    assert vocab[mf.EOT] == max(vocab.values()), "legacy argmax pooling needs <|endoftext|> largest"
    tc, st = mf.tokenizer_files(vocab, legacy=False)
    tc["name_or_path"] = "openai/clip-vit-base-patch32"
    mf.write_json(os.path.join(out, "tokenizer_config.json"), tc)
    mf.write_json(os.path.join(out, "special_tokens_map.json"), st)

    # weights: the fixture's writer, F32, HF state-dict names
    ws = make_weights(cfg)
    tensors = {n: mf.encode_tensor(a, "F32") for n, a in ws.items()}
    n_params = sum(int(a.size) for a in ws.values() if a.dtype == np.float32)
    del ws
    blob = mf.safetensors_bytes(tensors)
    del tensors
    tmp = os.path.join(out, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, os.path.join(out, "model.safetensors"))
    mf.write_json(stamp_path, stamp)
    print(f"checkpoint: wrote {out} ({n_params / 1e6:.1f}M f32 parameters, "
          f"{len(blob) / 2**20:.0f} MiB, {vocab_src}) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
