"""portclip.Model: a CLIP model directory opened on a backend, with texts and
images to embeddings, zero-shot classification and Hugging Face-style scores.

Arrays come back as numpy float32 in C order. A Model is used by one thread at
a time (as the C model is).
"""

import ctypes
import os

import numpy as np

from . import _lib
from ._lib import lib, check

__all__ = ["Model", "ScoreOutput", "read_image"]

_PREPROCESS = {"openai": 0, "hf": 1}
_NORMALIZE = 1  # PCLIP_ENCODE_NORMALIZE
# images preprocessed and encoded per step: bounds the float pixels held at once
_IMAGE_STEP = 32


class ScoreOutput:
    """What Model.score returns, named as Hugging Face's CLIPOutput:
    logits_per_image [n_images, n_texts] (exp(logit_scale) * cosine),
    logits_per_text (its transpose), probs (softmax over the texts, per image),
    and the L2-normalised image_embeds and text_embeds."""

    __slots__ = ("logits_per_image", "logits_per_text", "probs", "image_embeds", "text_embeds")

    def __init__(self, logits_per_image, probs, image_embeds, text_embeds):
        self.logits_per_image = logits_per_image
        self.logits_per_text = np.ascontiguousarray(logits_per_image.T)
        self.probs = probs
        self.image_embeds = image_embeds
        self.text_embeds = text_embeds

    def __repr__(self):
        return "ScoreOutput(logits_per_image=%r, probs=%r)" % (self.logits_per_image, self.probs)


def _as_list(x, single_types):
    """A list of inputs; one input on its own becomes a list of one."""
    if isinstance(x, single_types):
        return [x]
    if isinstance(x, np.ndarray):
        return [x] if x.dtype == np.uint8 and x.ndim in (2, 3) else list(x)
    return list(x)


def _image_from_array(a):
    """A pclip_image borrowing a uint8 array: HxW (grey), HxWx3 (RGB) or
    HxWx4 (RGBA). Returns the struct and the array it borrows."""
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
        raise TypeError("portclip: an image array must be numpy uint8, HxWx3 (RGB), "
                        "HxWx4 (RGBA) or HxW (grey); got %s"
                        % (a.dtype if isinstance(a, np.ndarray) else type(a).__name__))
    if a.ndim == 2:
        mode, ch = _lib.IMAGE_L, 1
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        mode, ch = (_lib.IMAGE_RGB if a.shape[2] == 3 else _lib.IMAGE_RGBA), a.shape[2]
    else:
        raise _lib.error(1, "portclip: an image array must be HxWx3 (RGB), HxWx4 (RGBA) or HxW "
                         "(grey); got shape %s" % (a.shape,))
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise _lib.error(1, "portclip: an image array is empty (shape %s)" % (a.shape,))
    a = np.ascontiguousarray(a)
    img = _lib.Image()
    img.height, img.width, img.channels, img.mode = a.shape[0], a.shape[1], ch, mode
    img.pixels = a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
    return img, a


def read_image(path):
    """Decodes a JPEG or PNG file as Pillow's Image.open does (same bytes) and
    returns its pixels as uint8 [H, W, C] (C = 1 for grey, 3 for RGB, 4 for
    RGBA; other modes (palette, CMYK, grey with alpha) as stored).
    Raises portclip.Error naming the file if it cannot be decoded."""
    ctx = _lib.Context()
    try:
        p = ctypes.POINTER(_lib.Image)()
        check(lib.pclip_image_load(ctx.handle, _lib.fsencode(path), ctypes.byref(p)), ctx.handle)
        try:
            im = p.contents
            n = im.height * im.width * im.channels
            buf = np.ctypeslib.as_array(im.pixels, shape=(n,)).copy()
            return buf.reshape(im.height, im.width, im.channels)
        finally:
            lib.pclip_image_destroy(p)
    finally:
        ctx.close()


class Model:
    """A Hugging Face CLIP model directory (config.json, model.safetensors,
    vocab.json, merges.txt, preprocessor_config.json) loaded on a backend.

    backend: "cpu", "vulkan", "opencl" or "auto"; None means PORTCLIP_BACKEND,
    else "auto". device: the device number (None: PORTCLIP_DEVICE, else 0).
    precision: "fp32", "bf16" or "fp16" (None: PORTCLIP_PRECISION, else fp32).
    preprocess: "openai" (the default: OpenAI CLIP's torchvision pipeline) or
    "hf" (CLIPImageProcessor). batch_size: rows per encoder run (0: 32).
    head: a directory with an MLP projection head (head.json,
    head.safetensors; `portclip train --head mlp`) used instead of the
    checkpoint's projections; dim is then the head's embed_dim.

    Use it as a context manager, or call close(): the weights and the device
    are released then (and, as a backup, when the object is collected)."""

    def __init__(self, dir, backend=None, device=None, precision=None, preprocess="openai",
                 batch_size=0, head=None):
        self._ctx = self._model = self._backend = None
        if preprocess not in _PREPROCESS:
            raise _lib.error(1, "portclip: preprocess must be 'openai' or 'hf', not %r"
                             % (preprocess,))
        self._preprocess = _PREPROCESS[preprocess]
        self._batch = int(batch_size)
        self.dir = os.fspath(dir)
        self._ctx = _lib.Context()
        c = self._ctx.handle
        try:
            m = ctypes.c_void_p()
            check(lib.pclip_model_load(c, _lib.fsencode(dir), ctypes.byref(m)), c)
            self._model = m
            if head is not None:
                check(lib.pclip_model_set_head(m, _lib.fsencode(head)), c)
            b = ctypes.c_void_p()
            name = None if backend is None else backend.encode()
            check(lib.pclip_backend_create(c, name, -1 if device is None else int(device),
                                           ctypes.byref(b)), c)
            self._backend = b
            what = "precision"
            if precision is None:
                what, precision = "PORTCLIP_PRECISION", os.environ.get("PORTCLIP_PRECISION")
            if precision:
                pr = ctypes.c_int()
                check(lib.pclip_precision_parse(c, precision.encode(), what.encode(),
                                                ctypes.byref(pr)), c)
                check(lib.pclip_backend_set_precision(b, pr.value), c)
        except BaseException:
            self.close()
            raise
        cfg = lib.pclip_model_config(m).contents
        self.dim = int(lib.pclip_model_embed_dim(m))
        self._context_len = cfg.text.max_position_embeddings
        self._image_size = cfg.vision.image_size
        self._icfg = lib.pclip_model_image_config(m)

    # ---- lifetime ----

    def close(self):
        """Frees the device and the weights; later calls raise portclip.Error.
        Calling it again does nothing."""
        if self._backend:
            lib.pclip_backend_destroy(self._backend)
            self._backend = None
        if self._model:
            lib.pclip_model_destroy(self._model)
            self._model = None
        if self._ctx:
            self._ctx.close()
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _handles(self):
        if not self._model:
            raise _lib.error(1, "portclip: the model %s is closed" % self.dir)
        return self._ctx.handle, self._model, self._backend

    # ---- facts ----

    @property
    def backend(self):
        """The backend's name ("cpu", "vulkan", "opencl")."""
        return _lib.fsdecode(lib.pclip_backend_name(self._handles()[2]))

    @property
    def device(self):
        return _lib.fsdecode(lib.pclip_backend_device_name(self._handles()[2]))

    @property
    def precision(self):
        return _lib.fsdecode(lib.pclip_precision_name(
            lib.pclip_backend_precision(self._handles()[2])))

    @property
    def logit_scale(self):
        """The checkpoint's logit_scale, or the head's (a log: logits =
        exp(logit_scale) * cos)."""
        return float(lib.pclip_model_logit_scale(self._handles()[1]))

    def __repr__(self):
        if not self._model:
            return "<portclip.Model %s (closed)>" % self.dir
        return "<portclip.Model %s on %s (%s), dim %d>" % (self.dir, self.backend, self.device,
                                                          self.dim)

    # ---- texts ----

    def tokenize(self, texts):
        """The token ids int32 [N, context_length] the text tower reads
        (OpenAI CLIP's tokenizer: start, ids, end, then 0s; cut to fit)."""
        c, m, _ = self._handles()
        texts = _as_list(texts, (str, bytes))
        tok = lib.pclip_model_tokenizer(m)
        L = self._context_len
        ids = np.zeros((len(texts), L), dtype=np.int32)
        for i, t in enumerate(texts):
            b = _lib.text_bytes(t)
            row = ids[i].ctypes.data_as(_lib.c_int32_p)
            check(lib.pclip_tokenizer_encode(tok, b, len(b), row, L, None), c)
        return ids

    def embed_texts(self, texts, normalize=True):
        """float32 [N, dim]: the text tower's projections, L2-normalised unless
        normalize=False. One str on its own gives [1, dim]."""
        c, m, b = self._handles()
        ids = self.tokenize(texts)
        n = ids.shape[0]
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n:
            check(lib.pclip_model_encode_text_batched(
                m, b, ids.ctypes.data_as(_lib.c_int32_p), n, self._batch,
                _NORMALIZE if normalize else 0, out.ctypes.data_as(_lib.c_float_p)), c)
        return out

    # ---- images ----

    def _pixels(self, images):
        """Preprocessed float32 [n, 3, S, S] for image paths or arrays."""
        c, _, _ = self._handles()
        cfg = self._icfg.contents
        S = self._image_size
        if cfg.crop_height != S or cfg.crop_width != S:
            raise _lib.error(8, "portclip: %s: preprocessor_config.json crops %dx%d but the "
                             "vision tower reads %dx%d" % (self.dir, cfg.crop_width,
                                                          cfg.crop_height, S, S))
        px = np.zeros((len(images), 3, S, S), dtype=np.float32)
        for i, im in enumerate(images):
            dst = px[i].ctypes.data_as(_lib.c_float_p)
            if isinstance(im, np.ndarray):
                img, keep = _image_from_array(im)
                check(lib.pclip_image_preprocess(c, ctypes.byref(img), self._icfg,
                                                 self._preprocess, dst), c)
                del keep
                continue
            p = ctypes.POINTER(_lib.Image)()
            check(lib.pclip_image_load(c, _lib.fsencode(im), ctypes.byref(p)), c)
            try:
                check(lib.pclip_image_preprocess(c, p, self._icfg, self._preprocess, dst), c)
            finally:
                lib.pclip_image_destroy(p)
        return px

    def embed_images(self, images, normalize=True):
        """float32 [N, dim]: the vision tower's projections of image files
        (paths: JPEG or PNG, decoded as Pillow does) or uint8 arrays (HxWx3 RGB,
        HxWx4 RGBA, HxW grey), preprocessed as the model's
        preprocessor_config.json says; L2-normalised unless normalize=False.
        One path or one array on its own gives [1, dim]."""
        c, m, b = self._handles()
        images = _as_list(images, (str, bytes, os.PathLike))
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        step = max(self._batch or _IMAGE_STEP, 1)
        for s in range(0, len(images), step):
            px = self._pixels(images[s:s + step])
            n = px.shape[0]
            check(lib.pclip_model_encode_images_batched(
                m, b, px.ctypes.data_as(_lib.c_float_p), n, self._batch,
                _NORMALIZE if normalize else 0, out[s:s + n].ctypes.data_as(_lib.c_float_p)), c)
        return out

    # ---- zero-shot ----

    def _zeroshot(self, z, image_embeds):
        c = self._ctx.handle
        n = image_embeds.shape[0]
        k = lib.pclip_zeroshot_class_count(z)
        logits = np.zeros((n, k), dtype=np.float32)
        probs = np.zeros((n, k), dtype=np.float32)
        if n:
            check(lib.pclip_zeroshot_logits(z, image_embeds.ctypes.data_as(_lib.c_float_p), n,
                                            logits.ctypes.data_as(_lib.c_float_p),
                                            probs.ctypes.data_as(_lib.c_float_p)), c)
        classes = np.ctypeslib.as_array(lib.pclip_zeroshot_class_embeddings(z),
                                        shape=(k, self.dim)).copy()
        return logits, probs, classes

    def train(self, data, output, **options):
        """Trains projection heads on the image-caption pairs of `data` with this
        model's encoders frozen, on its backend, and writes `output` (a model
        directory for head="linear", a head folder for head="mlp"); the options
        are portclip train's (portclip.train.train has the list). Returns a
        portclip.train.TrainResult."""
        from .train import train
        return train(self, data, output, **options)

    def score(self, images, texts):
        """Scores images against texts as Hugging Face's CLIPModel does:
        returns a ScoreOutput whose logits_per_image[i, j] is
        exp(logit_scale) * cos(image i, text j) and probs its softmax over the
        texts (logits_per_image.softmax(dim=1))."""
        c, m, b = self._handles()
        texts = _as_list(texts, (str, bytes))
        if not texts:
            raise _lib.error(1, "portclip: score needs at least one text")
        emb = self.embed_images(images, normalize=True)
        arr, keep = _lib.strings(texts, _lib.text_bytes)
        z = ctypes.c_void_p()
        check(lib.pclip_zeroshot_create_texts(m, b, arr, len(texts), ctypes.byref(z)), c)
        try:
            logits, probs, classes = self._zeroshot(z, emb)
        finally:
            lib.pclip_zeroshot_destroy(z)
        del keep
        return ScoreOutput(logits, probs, emb, classes)

    def classify(self, images, labels, templates=None, top_k=None):
        """Zero-shot classification: one class per label, made from the
        prompt templates (None: "a photo of a {}."; several: CLIP's prompt
        ensemble; ["{}"]: the labels as they are). Returns, per image, a list
        of (label, probability) pairs, most probable first, at most top_k of
        them (None: all)."""
        c, m, b = self._handles()
        labels = _as_list(labels, (str, bytes))
        templates = [] if templates is None else _as_list(templates, (str, bytes))
        if top_k is not None and int(top_k) < 1:
            raise _lib.error(1, "portclip: top_k must be at least 1, not %r" % (top_k,))
        emb = self.embed_images(images, normalize=True)
        la, keep1 = _lib.strings(labels, _lib.text_bytes)
        ta, keep2 = _lib.strings(templates, _lib.text_bytes)
        z = ctypes.c_void_p()
        check(lib.pclip_zeroshot_create_labels(m, b, la, len(labels), ta if templates else None,
                                               len(templates), ctypes.byref(z)), c)
        try:
            _, probs, _ = self._zeroshot(z, emb)
        finally:
            lib.pclip_zeroshot_destroy(z)
        del keep1, keep2
        k = len(labels) if top_k is None else min(int(top_k), len(labels))
        out = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:k]
            out.append([(labels[j], float(row[j])) for j in order])
        return out
