"""portclip.Index: an image index folder (the one `portclip index` writes),
updated from image files and folders and searched by text, image or vector.

Searches are exact (cosine over every image). An open index is a snapshot:
update() reopens it afterwards.
"""

import ctypes
import os
from collections import namedtuple

import numpy as np

from . import _lib
from ._lib import lib, check
from .model import Model, _PREPROCESS

__all__ = ["Index", "Hit"]

Hit = namedtuple("Hit", "path score row")
Hit.__doc__ = "One search result: the image file, its cosine similarity, its row."

_DTYPES = {None: 0, "f32": 1, "f16": 2, "q8": 3}


class Index:
    """The index folder `path`, with `model` for updates and for text and
    image queries (vector queries need none). An index that exists is opened
    at once (an error if it is corrupt or, with a model, made by another
    model); one that does not is created by the first update().
    Use it as a context manager, or call close()."""

    def __init__(self, path, model=None):
        self._own_ctx = None
        self._idx = None
        if model is not None and not isinstance(model, Model):
            raise TypeError("portclip: Index model must be a portclip.Model")
        self.path = os.fspath(path)
        self.model = model
        if model is None:
            self._own_ctx = _lib.Context()
        if os.path.exists(self.path):
            self._open()

    @classmethod
    def open(cls, path, model=None):
        """Opens an existing index: NotFoundError (the library's message) if
        there is none."""
        self = cls(path, model)
        if not self._idx:
            try:
                self._open()
            except BaseException:
                self.close()
                raise
        return self

    def _ctx(self):
        if self.model is not None:
            return self.model._handles()[0]
        if not self._own_ctx or not self._own_ctx.handle:
            raise _lib.error(1, "portclip: the index %s is closed" % self.path)
        return self._own_ctx.handle

    def _open(self):
        c = self._ctx()
        h = ctypes.c_void_p()
        check(lib.pclip_index_open(c, _lib.fsencode(self.path), ctypes.byref(h)), c)
        try:
            if self.model is not None:
                check(lib.pclip_index_check_model(h, self.model._handles()[1]), c)
        except BaseException:
            lib.pclip_index_close(h)
            raise
        self._idx = h

    def _need_open(self):
        if not self._idx:
            raise _lib.error(4, "portclip: %s: no index there yet (update() creates it)"
                             % self.path)
        return self._idx

    def _need_model(self, what):
        if self.model is None:
            raise _lib.error(1, "portclip: %s needs the Index to have a model" % what)
        return self.model._handles()

    # ---- lifetime ----

    def close(self):
        if self._idx:
            lib.pclip_index_close(self._idx)
            self._idx = None
        if self._own_ctx:
            self._own_ctx.close()
            self._own_ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    # ---- facts ----

    def info(self):
        """A dict: count, dim, dtype ("f32", "f16", "q8"), preprocess
        ("openai", "hf"), model_dir, model_id and head_dir (the MLP
        projection head it was made with, or None)."""
        i = _lib.IndexInfo()
        lib.pclip_index_get_info(self._need_open(), ctypes.byref(i))
        pre = {v: k for k, v in _PREPROCESS.items()}
        return {"count": i.count, "dim": i.dim,
                "dtype": _lib.fsdecode(lib.pclip_index_dtype_name(i.dtype)),
                "preprocess": pre.get(i.preprocess, str(i.preprocess)),
                "model_dir": _lib.fsdecode(i.model_dir), "model_id": _lib.fsdecode(i.model_id),
                "head_dir": _lib.fsdecode(i.head_dir) if i.head_dir else None}

    def __len__(self):
        return self.info()["count"] if self._idx else 0

    # ---- update ----

    def update(self, inputs, dtype=None, preprocess=None, batch_size=0, chunk=0, strict=False,
               progress=None):
        """Makes the index hold exactly the images among `inputs` (files, and
        folders read recursively): new and changed files are embedded,
        unchanged ones kept, missing ones dropped; work is committed every
        `chunk` images (0: 1024), so an interrupted update resumes.
        dtype: "f32", "f16" or "q8" for a new index (None: the index's own,
        f32 when new). preprocess: None (the model's), "openai" or "hf".
        progress: None, or called as progress(done, total, skipped, seconds)
        at the start, after each encoder batch and after each commit.
        Returns a dict: added, changed, unchanged, removed, skipped, count,
        and skipped_files, a list of (path, reason) for the files left out."""
        c, m, b = self._need_model("update")
        if dtype not in _DTYPES:
            raise _lib.error(1, "portclip: dtype must be 'f32', 'f16' or 'q8', not %r" % (dtype,))
        if preprocess is not None and preprocess not in _PREPROCESS:
            raise _lib.error(1, "portclip: preprocess must be 'openai' or 'hf', not %r"
                             % (preprocess,))
        inputs = [inputs] if isinstance(inputs, (str, bytes, os.PathLike)) else list(inputs)
        skipped = []
        arr, keep = _lib.strings(inputs, _lib.fsencode)
        lst = ctypes.c_void_p()
        check(lib.pclip_collect_images(c, arr, len(inputs), 0, ctypes.byref(lst)), c)
        try:
            for i in range(lib.pclip_path_list_skipped_count(lst)):
                reason = ctypes.c_char_p()
                p = lib.pclip_path_list_skipped(lst, i, None, ctypes.byref(reason))
                skipped.append((_lib.fsdecode(p), _lib.fsdecode(reason.value or b"")))

            def on_skip(user, path, reason):
                skipped.append((_lib.fsdecode(path), _lib.fsdecode(reason)))

            def on_progress(user, p):
                p = ctypes.cast(p, ctypes.POINTER(_lib.IndexProgress)).contents
                progress(p.done, p.total, p.skipped, p.seconds)

            skip_fn = _lib.INDEX_SKIP_FN(on_skip)
            progress_fn = _lib.INDEX_PROGRESS_FN(on_progress) if progress else None
            opt = _lib.IndexOptions()
            opt.dtype = _DTYPES[dtype]
            opt.batch_size = int(batch_size)
            opt.preprocess = (self.model._preprocess if preprocess is None
                              else _PREPROCESS[preprocess])
            opt.chunk = int(chunk)
            opt.strict = 1 if strict else 0
            opt.skipped = skip_fn
            if progress_fn:
                opt.progress = progress_fn
            rep = _lib.IndexReport()
            n = lib.pclip_path_list_count(lst)
            st = lib.pclip_index_update(c, _lib.fsencode(self.path), m, b,
                                        lib.pclip_path_list_paths(lst), n,
                                        ctypes.byref(opt), ctypes.byref(rep))
            check(st, c)
        finally:
            lib.pclip_path_list_destroy(lst)
        del keep
        # the open snapshot predates the update: reopen
        if self._idx:
            lib.pclip_index_close(self._idx)
            self._idx = None
        self._open()
        out = {f: getattr(rep, f) for f, _ in _lib.IndexReport._fields_}
        out["skipped_files"] = skipped
        return out

    # ---- search ----

    def _hits(self, hits, n_queries, k, got):
        # query q's results are hits[q * k, q * k + got)
        out = []
        for q in range(n_queries):
            out.append([Hit(_lib.fsdecode(h.path), float(h.score), int(h.row))
                        for h in hits[q * k:q * k + got]])
        return out

    def search(self, text=None, *, image=None, vector=None, k=10):
        """The k images most similar to the query, best first, as Hit(path,
        score, row) tuples. Give one of: text (a str, or a list of them),
        image (a path or uint8 array, or a list), vector (float [dim] or
        [n, dim]; normalised here). One query gives a list of hits; a list
        of queries (or a 2-D vector array) gives one list per query."""
        given = [x is not None for x in (text, image, vector)]
        if sum(given) != 1:
            raise _lib.error(1, "portclip: search needs exactly one of text, image, vector")
        idx = self._need_open()
        k = int(k)
        if text is not None:
            c, m, b = self._need_model("search by text")
            single = isinstance(text, (str, bytes))
            qs = [text] if single else list(text)
            arr, keep = _lib.strings(qs, _lib.text_bytes)
            fn = lib.pclip_index_search_text
        elif image is not None:
            c, m, b = self._need_model("search by image")
            single = isinstance(image, (str, bytes, os.PathLike)) or (
                isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.dtype == np.uint8)
            qs = [image] if single else list(image)
            if any(isinstance(q, np.ndarray) for q in qs):
                if self.info()["preprocess"] != ("hf" if self.model._preprocess else "openai"):
                    raise _lib.error(1, "portclip: image arrays are preprocessed as the model "
                                     "says, which is not how the index %s was made" % self.path)
                hits = self.search(vector=self.model.embed_images(qs), k=k)
                return hits[0] if single else hits
            arr, keep = _lib.strings(qs, _lib.fsencode)
            fn = lib.pclip_index_search_images
        else:
            c = self._ctx()
            v = np.ascontiguousarray(vector, dtype=np.float32)
            single = v.ndim == 1
            v = v.reshape(1, -1) if single else v
            if v.ndim != 2:
                raise _lib.error(1, "portclip: a query vector must be [dim] or [n, dim], "
                                 "not shape %s" % (v.shape,))
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            v = np.ascontiguousarray(v / np.where(norm > 0, norm, 1), dtype=np.float32)
            nq = v.shape[0]
            hits = (_lib.IndexHit * max(nq * max(k, 1), 1))()
            got = ctypes.c_int64()
            check(lib.pclip_index_search(idx, v.ctypes.data_as(_lib.c_float_p), nq,
                                         v.shape[1], k, hits, ctypes.byref(got)), c)
            out = self._hits(hits, nq, k, got.value)
            return out[0] if single else out
        nq = len(qs)
        hits = (_lib.IndexHit * max(nq * max(k, 1), 1))()
        got = ctypes.c_int64()
        check(fn(idx, m, b, arr, nq, k, hits, ctypes.byref(got)), c)
        del keep
        out = self._hits(hits, nq, k, got.value)
        return out[0] if single else out
