"""Finding and loading libportclip.so, the C declarations (ctypes), and the
exceptions that carry the library's messages.

Nothing here is compiled: the C API is declared with ctypes, so the package
installs as plain Python files beside the shared library.
"""

import ctypes
import os
import sysconfig

__all__ = ["lib", "Error", "check", "library_path"]

# ---- exceptions ----


class Error(Exception):
    """A portclip call failed. `status` is the library's status name
    ("INVALID_ARGUMENT", ...), `code` its number and `message` the library's
    text (pclip_ctx_last_error) naming the file, argument or device."""

    def __init__(self, message, status="INTERNAL", code=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class InvalidArgumentError(Error, ValueError):
    pass


class OutOfMemoryError(Error, MemoryError):
    pass


class IoError(Error):
    pass


class NotFoundError(Error):
    pass


class BadFormatError(Error):
    pass


class UnsupportedError(Error):
    pass


class LimitError(Error):
    pass


class BadConfigError(Error):
    pass


class BadTensorError(Error):
    pass


class BadTextError(Error, ValueError):
    pass


class BackendUnavailableError(Error):
    pass


class DeviceLostError(Error):
    pass


class InternalError(Error):
    pass


# In the order of PCLIP_STATUS_LIST (include/portclip/core.h): codes are only
# ever appended there, so a new code simply maps to the base class here.
_STATUS = [
    ("OK", None),
    ("INVALID_ARGUMENT", InvalidArgumentError),
    ("OUT_OF_MEMORY", OutOfMemoryError),
    ("IO", IoError),
    ("NOT_FOUND", NotFoundError),
    ("BAD_FORMAT", BadFormatError),
    ("UNSUPPORTED", UnsupportedError),
    ("LIMIT", LimitError),
    ("BAD_CONFIG", BadConfigError),
    ("BAD_TENSOR", BadTensorError),
    ("BAD_TEXT", BadTextError),
    ("BACKEND_UNAVAILABLE", BackendUnavailableError),
    ("DEVICE_LOST", DeviceLostError),
    ("INTERNAL", InternalError),
    ("NOT_FINITE", Error),
]

# ---- finding the library ----

_NAMES = ("libportclip.so.0", "libportclip.so")


def _candidates():
    env = os.environ.get("PORTCLIP_LIBRARY")
    if env:
        # named explicitly: use it or fail, never something else
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    # installed: PREFIX/lib/python3/dist-packages/portclip -> PREFIX/lib[/<multiarch>]
    dirs = [here]
    prefix_lib = os.path.normpath(os.path.join(here, "..", "..", ".."))
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs.append(os.path.join(prefix_lib, multiarch))
    dirs += [prefix_lib, os.path.join(os.path.dirname(prefix_lib), "lib64")]
    # the build tree: python/portclip -> the source root -> build/
    root = os.path.normpath(os.path.join(here, "..", ".."))
    dirs += [os.path.join(root, "build")]
    for d in dirs:
        for n in _NAMES:
            p = os.path.join(d, n)
            if os.path.exists(p):
                yield p
    # last, the dynamic linker's own search (LD_LIBRARY_PATH, ld.so.cache)
    yield from _NAMES


def _short_spin():
    """As the portclip tool does: when neither OMP_WAIT_POLICY nor
    GOMP_SPINCOUNT is set, libgomp's idle threads should spin about 30 us
    (GOMP_SPINCOUNT=3000) instead of about 3 ms before they sleep, so that on
    a busy machine they do not take the cores from the threads that the others
    wait for (README, "On a busy machine"). libgomp reads its variables once,
    when it is loaded: this sets the variable for that moment only, and only
    when this process has not loaded libgomp yet (PyTorch or an OpenMP BLAS
    may have: then their settings stay). Returns the name it set, for _load to
    take out of the environment again."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return None
    try:
        ctypes.CDLL("libgomp.so.1", mode=getattr(os, "RTLD_NOLOAD", 4) | ctypes.RTLD_LOCAL)
        return None  # already loaded: it has read its settings
    except OSError:
        pass
    os.environ["GOMP_SPINCOUNT"] = "3000"
    return "GOMP_SPINCOUNT"


def _load():
    tried = []
    added = _short_spin()
    try:
        for path in _candidates():
            try:
                return ctypes.CDLL(path), path
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
    finally:
        if added:
            # the caller's environment as it was: child processes do not inherit it
            os.environ.pop(added, None)
    raise ImportError(
        "portclip: cannot load libportclip.so; set PORTCLIP_LIBRARY to its path. Tried: "
        + "; ".join(tried))


lib, library_path = _load()

# ---- C types ----

c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_float_p = ctypes.POINTER(ctypes.c_float)
c_char_pp = ctypes.POINTER(ctypes.c_char_p)


class TowerConfig(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in
                ("hidden_size", "intermediate_size", "num_layers", "num_heads")] + [
        ("layer_norm_eps", ctypes.c_float), ("act", ctypes.c_int)] + [
        (n, ctypes.c_int32) for n in
        ("vocab_size", "max_position_embeddings", "bos_token_id", "eos_token_id",
         "pad_token_id", "image_size", "patch_size", "num_channels")]


class Config(ctypes.Structure):
    _fields_ = [("text", TowerConfig), ("vision", TowerConfig),
                ("projection_dim", ctypes.c_int32), ("logit_scale_init", ctypes.c_float)]


class ImageConfig(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in
                ("shortest_edge", "resize_height", "resize_width", "crop_height", "crop_width",
                 "do_resize", "do_center_crop", "do_normalize", "do_rescale",
                 "do_convert_rgb")] + [
        ("rescale_factor", ctypes.c_double), ("mean", ctypes.c_float * 3),
        ("std", ctypes.c_float * 3), ("resample", ctypes.c_int)]


class Image(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int32), ("height", ctypes.c_int32),
                ("channels", ctypes.c_int32), ("mode", ctypes.c_int),
                ("pixels", ctypes.POINTER(ctypes.c_uint8)),
                ("palette", ctypes.c_uint8 * 768), ("palette_size", ctypes.c_int32)]


IMAGE_L, IMAGE_RGB, IMAGE_RGBA = 1, 4, 5

class IndexProgress(ctypes.Structure):
    _fields_ = [("done", ctypes.c_int64), ("total", ctypes.c_int64),
                ("skipped", ctypes.c_int64), ("seconds", ctypes.c_double)]


INDEX_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
INDEX_SKIP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)


class IndexOptions(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("batch_size", ctypes.c_int32),
                ("threads", ctypes.c_int32), ("preprocess", ctypes.c_int),
                ("chunk", ctypes.c_int32), ("shard_index", ctypes.c_int32),
                ("shard_count", ctypes.c_int32), ("strict", ctypes.c_int32),
                ("progress", INDEX_PROGRESS_FN), ("skipped", INDEX_SKIP_FN),
                ("user", ctypes.c_void_p)]


class IndexReport(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in
                ("added", "changed", "unchanged", "removed", "skipped", "other_shards", "count")]


class IndexInfo(ctypes.Structure):
    _fields_ = [("count", ctypes.c_int64), ("dim", ctypes.c_int32), ("dtype", ctypes.c_int),
                ("preprocess", ctypes.c_int), ("model_dir", ctypes.c_char_p),
                ("model_id", ctypes.c_char_p), ("head_dir", ctypes.c_char_p)]


class IndexHit(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("score", ctypes.c_float), ("row", ctypes.c_int64)]


TRAIN_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
                                     ctypes.c_int64)
TRAIN_SKIP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)


class TrainStepInfo(ctypes.Structure):
    _fields_ = [("step", ctypes.c_int64), ("steps", ctypes.c_int64), ("epoch", ctypes.c_int32),
                ("loss", ctypes.c_double), ("lr", ctypes.c_double),
                ("logit_scale", ctypes.c_double)]


class TrainRecall(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int32), ("images", ctypes.c_int64),
                ("captions", ctypes.c_int64), ("i2t", ctypes.c_double * 3),
                ("t2i", ctypes.c_double * 3)]


TRAIN_STEP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(TrainStepInfo))
TRAIN_RECALL_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(TrainRecall))
TRAIN_CANCEL_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class TrainOptions(ctypes.Structure):
    _fields_ = [("data", ctypes.c_char_p), ("image_column", ctypes.c_char_p),
                ("caption_column", ctypes.c_char_p), ("image_root", ctypes.c_char_p),
                ("separator", ctypes.c_char), ("output", ctypes.c_char_p),
                ("log", ctypes.c_char_p), ("head", ctypes.c_int), ("embed_dim", ctypes.c_int32),
                ("dropout", ctypes.c_double), ("steps", ctypes.c_int64),
                ("epochs", ctypes.c_int32), ("batch_size", ctypes.c_int32),
                ("lr", ctypes.c_double), ("weight_decay", ctypes.c_double),
                ("schedule", ctypes.c_int), ("warmup", ctypes.c_int64),
                ("seed", ctypes.c_uint64), ("no_shuffle", ctypes.c_int32),
                ("val_fraction", ctypes.c_double), ("checkpoint_every", ctypes.c_int64),
                ("resume", ctypes.c_int32), ("strict", ctypes.c_int32),
                ("preprocess", ctypes.c_int), ("feature_batch", ctypes.c_int32)]


class TrainCallbacks(ctypes.Structure):
    _fields_ = [("user", ctypes.c_void_p), ("progress", TRAIN_PROGRESS_FN),
                ("skipped", TRAIN_SKIP_FN), ("step", TRAIN_STEP_FN),
                ("recall", TRAIN_RECALL_FN), ("cancel", TRAIN_CANCEL_FN)]


class TrainResult(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in
                ("steps_done", "pairs", "train_pairs", "val_pairs", "images_skipped")] + [
        (n, ctypes.c_int32) for n in ("feature_cache_hit", "cancelled", "resumed_from")] + [
        ("final_loss", ctypes.c_double), ("recall", TrainRecall)]


# ---- declarations ----

_p = ctypes.c_void_p
_i32, _i64, _u32, _st = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint32, ctypes.c_int
_s = ctypes.c_char_p


def _decl(name, restype, *argtypes):
    try:
        f = getattr(lib, name)
    except AttributeError:
        raise ImportError("portclip: %s has no %s: it is older than this package; point "
                          "PORTCLIP_LIBRARY at the library built with it" % (library_path, name))
    f.restype = restype
    f.argtypes = list(argtypes)


_decl("pclip_version", _s)
_decl("pclip_status_name", _s, _st)
_decl("pclip_ctx_create", _st, ctypes.POINTER(_p))
_decl("pclip_ctx_destroy", None, _p)
_decl("pclip_ctx_last_error", _s, _p)
_decl("pclip_model_load", _st, _p, _s, ctypes.POINTER(_p))
_decl("pclip_model_destroy", None, _p)
_decl("pclip_model_config", ctypes.POINTER(Config), _p)
_decl("pclip_model_image_config", ctypes.POINTER(ImageConfig), _p)
_decl("pclip_model_tokenizer", _p, _p)
_decl("pclip_model_logit_scale", ctypes.c_float, _p)
_decl("pclip_model_set_head", _st, _p, _s)
_decl("pclip_model_embed_dim", _i32, _p)
_decl("pclip_tokenizer_encode", _st, _p, _s, ctypes.c_size_t, c_int32_p, _i32, c_int32_p)
_decl("pclip_backend_create", _st, _p, _s, _i32, ctypes.POINTER(_p))
_decl("pclip_backend_destroy", None, _p)
_decl("pclip_backend_name", _s, _p)
_decl("pclip_backend_device_name", _s, _p)
_decl("pclip_backend_fallback_reason", _s, _p)
_decl("pclip_precision_parse", _st, _p, _s, _s, ctypes.POINTER(_st))
_decl("pclip_precision_name", _s, _st)
_decl("pclip_backend_set_precision", _st, _p, _st)
_decl("pclip_backend_precision", _st, _p)
_decl("pclip_model_encode_text_batched", _st, _p, _p, c_int32_p, _i32, _i32, _u32, c_float_p)
_decl("pclip_model_encode_images_batched", _st, _p, _p, c_float_p, _i32, _i32, _u32, c_float_p)
_decl("pclip_image_load", _st, _p, _s, ctypes.POINTER(ctypes.POINTER(Image)))
_decl("pclip_image_destroy", None, ctypes.POINTER(Image))
_decl("pclip_image_preprocess", _st, _p, ctypes.POINTER(Image), ctypes.POINTER(ImageConfig), _st,
      c_float_p)
_decl("pclip_zeroshot_create_labels", _st, _p, _p, c_char_pp, _i32, c_char_pp, _i32,
      ctypes.POINTER(_p))
_decl("pclip_zeroshot_create_texts", _st, _p, _p, c_char_pp, _i32, ctypes.POINTER(_p))
_decl("pclip_zeroshot_destroy", None, _p)
_decl("pclip_zeroshot_class_count", _i32, _p)
_decl("pclip_zeroshot_class_embeddings", c_float_p, _p)
_decl("pclip_zeroshot_logits", _st, _p, c_float_p, _i64, c_float_p, c_float_p)
_decl("pclip_collect_images", _st, _p, c_char_pp, _i64, _u32, ctypes.POINTER(_p))
_decl("pclip_path_list_count", _i64, _p)
_decl("pclip_path_list_paths", c_char_pp, _p)
_decl("pclip_path_list_skipped_count", _i64, _p)
_decl("pclip_path_list_skipped", _s, _p, _i64, ctypes.POINTER(_st), ctypes.POINTER(_s))
_decl("pclip_path_list_destroy", None, _p)
_decl("pclip_index_update", _st, _p, _s, _p, _p, c_char_pp, _i64,
      ctypes.POINTER(IndexOptions), ctypes.POINTER(IndexReport))
_decl("pclip_index_open", _st, _p, _s, ctypes.POINTER(_p))
_decl("pclip_index_close", None, _p)
_decl("pclip_index_get_info", None, _p, ctypes.POINTER(IndexInfo))
_decl("pclip_index_dtype_name", _s, _st)
_decl("pclip_index_check_model", _st, _p, _p)
_decl("pclip_index_search", _st, _p, c_float_p, _i64, _i32, _i64, ctypes.POINTER(IndexHit),
      ctypes.POINTER(_i64))
_decl("pclip_index_search_text", _st, _p, _p, _p, c_char_pp, _i64, _i64,
      ctypes.POINTER(IndexHit), ctypes.POINTER(_i64))
_decl("pclip_train", _st, _p, _p, ctypes.POINTER(TrainOptions), ctypes.POINTER(TrainCallbacks),
      ctypes.POINTER(TrainResult))
_decl("pclip_index_search_images", _st, _p, _p, _p, c_char_pp, _i64, _i64,
      ctypes.POINTER(IndexHit), ctypes.POINTER(_i64))

# ---- helpers ----


def error(status, message):
    """The exception for a status (an int) and a message."""
    if 0 < status < len(_STATUS):
        name, cls = _STATUS[status]
    else:
        name, cls = "UNKNOWN", Error
    return cls(message or name.lower().replace("_", " "), name, status)


def check(status, ctx):
    """Raises the exception for a non-OK status with ctx's last error."""
    if status:
        msg = lib.pclip_ctx_last_error(ctx) if ctx else None
        raise error(status, fsdecode(msg) if msg else "")


def fsencode(s):
    """A path (str, bytes or os.PathLike) as bytes for C."""
    return os.fsencode(s)


def fsdecode(b):
    return os.fsdecode(b) if isinstance(b, bytes) else b


def strings(items, encode):
    """A char *[] for a list of strings, and the bytes that it borrows (keep
    both alive for the call)."""
    data = [encode(x) for x in items]
    arr = (ctypes.c_char_p * max(len(data), 1))(*data)
    return arr, data


def text_bytes(t):
    if isinstance(t, bytes):
        return t
    if not isinstance(t, str):
        raise TypeError("portclip: a text must be str or bytes, not %s" % type(t).__name__)
    return t.encode("utf-8", "surrogatepass")


class Context:
    """A pclip_ctx_t owned by one Python object."""

    def __init__(self):
        self.handle = None
        h = ctypes.c_void_p()
        if lib.pclip_ctx_create(ctypes.byref(h)):
            raise OutOfMemoryError("portclip: out of memory creating a context", "OUT_OF_MEMORY", 2)
        self.handle = h

    def close(self):
        if self.handle:
            lib.pclip_ctx_destroy(self.handle)
            self.handle = None

    def __del__(self):
        self.close()

