#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*)
from the test fixtures: small files, so that the repository stays small and
libFuzzer's -max_len can stay low. Inputs that found bugs live beside them as
regress-* and are never touched by this script. Run from anywhere:

    python3 tests/fuzz/make_seeds.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
CORPUS = os.path.join(HERE, "corpus")
SEPARATOR = b"\n#--merges--#\n"  # as in fuzz_tokenizer_load.c


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def fix(*parts):
    return os.path.join(FIX, *parts)


def read(*parts):
    with open(fix(*parts), "rb") as f:
        return f.read()


def clear_seeds():
    if not os.path.isdir(CORPUS):
        return
    for t in os.listdir(CORPUS):
        for n in os.listdir(os.path.join(CORPUS, t)):
            if n.startswith("seed-"):
                os.remove(os.path.join(CORPUS, t, n))


# ---- safetensors ----

def safetensors(entries, metadata=None, pad_to=8, gap=0):
    """entries: [(name, dtype, shape, bytes)] laid out in order, `gap` bytes apart."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        begin = len(data)
        data += raw + b"\0" * gap
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + len(raw)]}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def small_tensors(variant, limit=24):
    """The fixture's 1-d and 0-d tensors (layer norms, biases, logit_scale,
    position_ids), with their real bytes, up to `limit` of them."""
    b = read(variant, "model.safetensors")
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    base = 8 + n
    picked = []
    for name, e in sorted(h.items()):
        if name == "__metadata__" or len(e["shape"]) > 1:
            continue
        s, t = e["data_offsets"]
        picked.append((name, e["dtype"], e["shape"], b[base + s:base + t]))
        if len(picked) == limit:
            break
    return picked, b[:8 + n]


def safetensors_seeds():
    for v in ["tiny-clip", "tiny-clip-f16", "tiny-clip-bf16"]:
        entries, header_only = small_tensors(v)
        out("safetensors", v + "-small.safetensors", safetensors(entries, {"format": "pt"}))
    # the real header of a whole checkpoint, without its data (offsets outside the file)
    out("safetensors", "tiny-clip-header-only.safetensors", header_only)
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    out("safetensors", "empty.safetensors", safetensors([]))
    out("safetensors", "metadata.safetensors", safetensors([], {"format": "pt", "k": "v"}))
    out("safetensors", "scalar.safetensors", safetensors([("logit_scale", "F32", [], f32[:4])]))
    out("safetensors", "zero-size.safetensors",
        safetensors([("e", "F32", [0, 3], b""), ("x", "F32", [2, 2], f32)]))
    out("safetensors", "gaps.safetensors",
        safetensors([("a", "F16", [2], b"\x00\x3c\x00\xc0"), ("b", "BF16", [1], b"\x80\x3f"),
                     ("c", "I64", [1, 1], struct.pack("<q", 7))], gap=5, pad_to=1))


# ---- config.json, preprocessor_config.json ----

def json_seeds():
    for v in ["tiny-clip", "tiny-clip-f16", "tiny-clip-bf16", "tiny-clip-gelu", "tiny-clip-legacy"]:
        out("config", v + ".json", read(v, "config.json"))
    out("config", "empty-object.json", b"{}")
    out("config", "dict-form.json",
        b'{"model_type":"clip","projection_dim":8,"text_config_dict":{"hidden_size":16,'
        b'"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":100,'
        b'"bos_token_id":98,"eos_token_id":99,"hidden_act":"gelu_new"},"vision_config_dict":'
        b'{"hidden_size":16,"image_size":32,"patch_size":16,"layer_norm_eps":1e-6}}')
    for v in ["tiny-clip", "tiny-clip-legacy"]:
        out("image_config", v + ".json", read(v, "preprocessor_config.json"))
    forms = {
        "legacy-ints": {"size": 224, "crop_size": 224, "do_center_crop": True, "resample": 3,
                        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
        "height-width": {"size": {"height": 40, "width": 30}, "crop_size": {"height": 24, "width": 20},
                         "do_rescale": True, "rescale_factor": 0.00392156862745098, "resample": 2},
        "no-crop": {"size": {"height": 24, "width": 24}, "crop_size": 24, "do_center_crop": False,
                    "do_normalize": False, "image_mean": 0.5, "image_std": 0.25, "resample": 0},
        "crop-shortest": {"size": {"shortest_edge": 18}, "crop_size": {"shortest_edge": 16},
                          "do_convert_rgb": False, "resample": 1},
    }
    for k, v in forms.items():
        out("image_config", k + ".json", json.dumps(v).encode())


# ---- tokenizer ----

def tokenizer_seeds():
    for v in ["tiny-clip", "tiny-clip-legacy"]:
        out("tokenizer_load", v + ".txt", read(v, "vocab.json") + SEPARATOR + read(v, "merges.txt"))
    small_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "b": 3, "a</w>": 4,
                   "b</w>": 5, "ab": 6, "ab</w>": 7}
    out("tokenizer_load", "small.txt",
        json.dumps(small_vocab).encode() + SEPARATOR + b"#version: 0.2\na b\nab </w>\r\na b</w>\n")
    with open(fix("captions.json"), encoding="utf-8") as f:
        captions = json.load(f)
    # every 9th caption (the file walks through the tokenizer's rules), plus
    # a few inputs that are not valid UTF-8 or are long
    for i, c in enumerate(captions[::9]):
        out("tokenize", "caption-%03d.txt" % i, c.encode("utf-8"))
    out("tokenize", "invalid-utf8.txt", b"caf\xc3 \xff\xfe <|endoftext|>")
    out("tokenize", "entities.txt", b"&amp;amp; &#x1F600; &notit; &#0; &#xD800; &#128;")
    out("tokenize", "long-word.txt", b"a" * 600)
    out("tokenize", "empty.txt", b"")


# ---- images ----

def image_seeds():
    names = sorted(os.listdir(fix("images")))
    for n in names:
        if os.path.getsize(fix("images", n)) <= 3000:
            shutil.copyfile(fix("images", n), os.path.join(CORPUS, "image", "seed-" + n))
    for n in ["huge.png", "huge.jpg", "truncated.png", "truncated.jpg", "badcrc.png"]:
        shutil.copyfile(fix("bad", n), os.path.join(CORPUS, "image", "seed-bad-" + n))


if __name__ == "__main__":
    clear_seeds()
    os.makedirs(os.path.join(CORPUS, "image"), exist_ok=True)
    safetensors_seeds()
    json_seeds()
    tokenizer_seeds()
    image_seeds()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, n)) for n in files)
        print("%-15s %3d files, %6d bytes" % (t, len(files), size))
