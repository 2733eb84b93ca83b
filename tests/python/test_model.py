"""portclip.Model against the PyTorch references of the tiny checkpoint:
embeddings, Hugging Face CLIPModel's logits_per_image, zero-shot classify;
image arrays; errors; lifetimes."""

import gc
import json
import os

import numpy as np
import pytest

import portclip
from conftest import TINY, IMAGES, FIXTURES, BACKEND

# Same bound as tests/check_encoders.c: max |got - ref| / max |ref| per row.
ROW_REL_TOL = 1e-5
PROB_ABS_TOL = 1e-5


def assert_rows_close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    for i in range(want.shape[0]):
        rel = np.abs(got[i] - want[i]).max() / max(np.abs(want[i]).max(), 1e-30)
        assert rel <= ROW_REL_TOL, "%s row %d: relative error %.3g > %g" % (what, i, rel,
                                                                              ROW_REL_TOL)


def image_paths(names):
    return [os.path.join(IMAGES, n) for n in names]


# ---- the Hugging Face example, rewritten ----

def test_hf_clipmodel_example(zeroshot):
    # Hugging Face:
    #   model = CLIPModel.from_pretrained(dir); processor = CLIPProcessor.from_pretrained(dir)
    #   inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    #   outputs = model(**inputs)
    #   logits_per_image = outputs.logits_per_image
    #   probs = logits_per_image.softmax(dim=1)
    # portclip:
    texts = zeroshot["score"]["texts"]
    images = image_paths(zeroshot["images"])
    with portclip.Model(TINY, backend=BACKEND) as model:
        outputs = model.score(images, texts)
        logits_per_image = outputs.logits_per_image
        probs = outputs.probs
    assert logits_per_image.dtype == np.float32 and probs.dtype == np.float32
    assert logits_per_image.shape == (len(images), len(texts))
    assert_rows_close(logits_per_image, zeroshot["score"]["logits"], "logits_per_image")
    assert np.abs(probs - np.array(zeroshot["score"]["probs"])).max() <= PROB_ABS_TOL
    # probs is logits_per_image.softmax(dim=1)
    e = np.exp(logits_per_image - logits_per_image.max(axis=1, keepdims=True))
    assert np.allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-6)
    assert np.array_equal(outputs.logits_per_text, logits_per_image.T)
    # HF's image_embeds / text_embeds are normalised
    assert np.allclose(np.linalg.norm(outputs.image_embeds, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(outputs.text_embeds, axis=1), 1, atol=1e-5)


def test_logits_per_image_all_captions(model, reference):
    want = np.load(os.path.join(TINY, "reference", "logits_per_image.npy"))
    out = model.score(image_paths(reference["images"]), reference["captions"])
    assert_rows_close(out.logits_per_image, want, "logits_per_image")
    assert abs(model.logit_scale - reference["logit_scale"]) < 1e-6


# ---- embeddings ----

def test_embed_texts(model, reference):
    want = np.load(os.path.join(TINY, "reference", "text_embeds.npy"))
    raw = model.embed_texts(reference["captions"], normalize=False)
    assert raw.dtype == np.float32 and raw.flags["C_CONTIGUOUS"]
    assert_rows_close(raw, want, "text_embeds")
    normed = model.embed_texts(reference["captions"])
    assert_rows_close(normed, want / np.linalg.norm(want, axis=1, keepdims=True), "normalised")
    assert model.embed_texts("a photo of a cat").shape == (1, model.dim)
    assert model.embed_texts([]).shape == (0, model.dim)


def test_tokenize(model, reference):
    with open(os.path.join(FIXTURES, reference["tokens"]), encoding="utf-8") as f:
        tokens = json.load(f)
    want = np.array([tokens["ids"][i] for i in reference["caption_indices"]], dtype=np.int32)
    got = model.tokenize(reference["captions"])
    assert got.dtype == np.int32 and np.array_equal(got, want)


def test_embed_images(model, reference):
    want = np.load(os.path.join(TINY, "reference", "image_embeds.npy"))
    raw = model.embed_images(image_paths(reference["images"]), normalize=False)
    assert raw.dtype == np.float32 and raw.shape == want.shape
    assert_rows_close(raw, want, "image_embeds")
    normed = model.embed_images(image_paths(reference["images"]))
    assert np.allclose(np.linalg.norm(normed, axis=1), 1, atol=1e-5)


def test_image_arrays_match_files(model):
    for name in ("j_rgb444_64x48.jpg", "p_rgb_64x48.png", "p_grey8_64x48.png",
                 "p_rgba_64x48.png"):
        path = os.path.join(IMAGES, name)
        arr = portclip.read_image(path)
        assert arr.dtype == np.uint8 and arr.shape[:2] == (48, 64)
        a = model.embed_images([arr[..., 0] if arr.shape[2] == 1 else arr])
        b = model.embed_images([path])
        assert np.array_equal(a, b), name
    # mixed inputs, and a non-contiguous array (a view) is copied, not misread
    arr = portclip.read_image(os.path.join(IMAGES, "p_landscape_97x61.png"))
    view = arr[:, ::-1]
    got = model.embed_images([os.path.join(IMAGES, "p_rgb_64x48.png"), view])
    assert np.array_equal(got[1], model.embed_images(np.ascontiguousarray(view))[0])


def test_classify(model, zeroshot):
    images = image_paths(zeroshot["images"])
    labels = zeroshot["labels"]
    for case in zeroshot["classify"]:
        templates = None if case["name"] == "default" else case["templates"]
        res = model.classify(images, labels, templates=templates)
        assert len(res) == len(images)
        for i, row in enumerate(res):
            assert [l for l, _ in row] != [] and len(row) == len(labels)
            ps = [p for _, p in row]
            assert ps == sorted(ps, reverse=True)
            for label, p in row:
                assert abs(p - case["probs"][i][labels.index(label)]) <= PROB_ABS_TOL, \
                    (case["name"], i, label)
        top = model.classify(images, labels, templates=templates, top_k=2)
        assert [r[:2] for r in res] == top


# ---- errors carry the library's message ----

def test_errors():
    with pytest.raises(portclip.Error) as e:
        portclip.Model(os.path.join(FIXTURES, "no-such-model"))
    assert "no-such-model" in str(e.value) and e.value.status in ("NOT_FOUND", "IO")
    with pytest.raises(portclip.Error) as e:
        portclip.Model(TINY, backend="nosuch")
    assert "nosuch" in str(e.value)
    with pytest.raises(portclip.InvalidArgumentError) as e:
        portclip.Model(TINY, backend="cpu", precision="fp64")
    assert "fp64" in str(e.value)
    with portclip.Model(TINY, backend="cpu") as m:
        with pytest.raises(portclip.Error) as e:
            m.embed_images([os.path.join(FIXTURES, "bad", "garbage.jpg")])
        assert "garbage.jpg" in e.value.message
        with pytest.raises(portclip.Error) as e:
            m.embed_images([os.path.join(IMAGES, "none.png")])
        assert "none.png" in str(e.value)
        with pytest.raises(portclip.BadTextError):
            m.embed_texts([b"\xff\xfe"])
        with pytest.raises(portclip.InvalidArgumentError):
            m.embed_images([np.zeros((4, 4, 2), np.uint8)])
        with pytest.raises(TypeError):
            m.embed_images([np.zeros((4, 4, 3), np.float32)])
        with pytest.raises(portclip.InvalidArgumentError) as e:
            m.classify([os.path.join(IMAGES, "p_rgb_64x48.png")], ["cat", "cat"])
        assert "cat" in str(e.value)
        # the model still works after errors
        assert m.embed_texts(["x"]).shape == (1, m.dim)
    with pytest.raises(portclip.Error, match="closed"):
        m.embed_texts(["x"])


def test_lifetime():
    m = portclip.Model(TINY, backend="cpu")
    assert m.backend == "cpu" and m.precision == "fp32" and m.dim == 24
    assert "tiny-clip" in repr(m)
    m.close()
    m.close()  # twice is fine
    assert "closed" in repr(m)
    # a model dropped without close() is freed by the collector
    for _ in range(3):
        portclip.Model(TINY, backend="cpu").embed_texts(["x"])
    gc.collect()


def _write_head(d, E, dv, dt, proj_b, fc_w, fc_b, ln_w, ln_b, logit_scale):
    """An MLP head directory written by hand (the format of README "Projection
    heads"): zero projection weights, so every row's output is the same."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "head.json"), "w") as f:
        json.dump({"format": "portclip-head", "version": 1, "kind": "mlp", "embed_dim": E,
                   "vision_dim": dv, "text_dim": dt, "dropout": 0.0, "activation": "gelu",
                   "layer_norm_eps": 1e-5}, f)
    tensors = {}
    for tower, width in (("vision", dv), ("text", dt)):
        tensors[tower + ".projection.weight"] = np.zeros((E, width), np.float32)
        tensors[tower + ".projection.bias"] = proj_b
        tensors[tower + ".fc.weight"] = fc_w
        tensors[tower + ".fc.bias"] = fc_b
        tensors[tower + ".layer_norm.weight"] = ln_w
        tensors[tower + ".layer_norm.bias"] = ln_b
    tensors["logit_scale"] = np.array(logit_scale, np.float32)
    header, data, off = {}, b"", 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "head.safetensors"), "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + data)


def test_mlp_head(tmp_path):
    import math
    E = 12
    rng = np.random.default_rng(3)
    proj_b, fc_b, ln_b = (rng.uniform(-0.5, 0.5, E).astype(np.float32) for _ in range(3))
    fc_w = rng.uniform(-0.4, 0.4, (E, E)).astype(np.float32)
    ln_w = (1 + rng.uniform(-0.2, 0.2, E)).astype(np.float32)
    head = str(tmp_path / "head")
    _write_head(head, E, 48, 40, proj_b, fc_w, fc_b, ln_w, ln_b, 2.0)
    # the reference in float64: projected = proj_b for every input
    p = proj_b.astype(np.float64)
    g = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in p])
    h = g @ fc_w.astype(np.float64).T + fc_b + p
    y = (h - h.mean()) / np.sqrt(h.var() + 1e-5) * ln_w + ln_b
    y /= np.linalg.norm(y)
    with portclip.Model(TINY, backend=BACKEND, head=head) as m:
        assert m.dim == E
        assert m.logit_scale == 2.0
        for got in (m.embed_texts(["a cat", "two dogs"]),
                    m.embed_images([os.path.join(IMAGES, "p_rgb_64x48.png")])):
            assert got.shape[1] == E
            for row in got:
                assert np.abs(row - y).max() <= 1e-5 * np.abs(y).max()
    with pytest.raises(portclip.Error) as e:
        portclip.Model(TINY, backend="cpu", head=str(tmp_path / "none"))
    assert "none" in str(e.value)
