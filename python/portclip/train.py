"""Projection-head training (portclip train): Model.train() over pclip_train."""

import ctypes
from dataclasses import dataclass, field

from . import _lib
from ._lib import lib

_HEADS = {"linear": 0, "mlp": 1}
_SCHEDULES = {"cosine": 0, "constant": 1}
_PREPROCESS = {"openai": 0, "hf": 1}


@dataclass
class Recall:
    """Recall@1/5/10 of the held-out split after an epoch, both ways."""
    epoch: int
    images: int
    captions: int
    image_to_text: dict
    text_to_image: dict


@dataclass
class TrainResult:
    steps: int
    pairs: int
    train_pairs: int
    val_pairs: int
    images_skipped: int
    feature_cache_hit: bool
    cancelled: bool
    resumed_from: int
    final_loss: float
    recall: Recall = None
    log: list = field(default_factory=list)


def _recall(r):
    if r.epoch <= 0:
        return None
    ks = (1, 5, 10)
    return Recall(int(r.epoch), int(r.images), int(r.captions),
                  {k: float(r.i2t[i]) for i, k in enumerate(ks)},
                  {k: float(r.t2i[i]) for i, k in enumerate(ks)})


def train(model, data, output, head="linear", steps=None, epochs=None, batch_size=None, lr=None,
          weight_decay=None, schedule="cosine", warmup=0, seed=0, shuffle=True,
          val_fraction=None, log=None, checkpoint_every=None, resume=False, strict=False,
          embed_dim=None, dropout=None, image_column=None, caption_column=None,
          image_root=None, on_step=None, on_recall=None):
    """Trains projection heads on the image-caption pairs of `data` (TSV, CSV or
    JSONL) with `model`'s encoders frozen, on the model's backend, and writes
    `output` (README "Training projection heads"; the arguments are the
    command's options, None meaning its default). on_step(dict) is called after
    each optimiser step with step, steps, epoch, loss, lr, logit_scale; returning
    True from it stops the run after a checkpoint (result.cancelled). Returns a
    TrainResult whose log holds every step's dict."""
    c, m, b = model._handles()
    if head not in _HEADS:
        raise _lib.InvalidArgumentError("head must be 'linear' or 'mlp', not %r" % (head,))
    if schedule not in _SCHEDULES:
        raise _lib.InvalidArgumentError("schedule must be 'cosine' or 'constant', not %r"
                                        % (schedule,))
    if steps is not None and epochs is not None:
        raise _lib.InvalidArgumentError("give steps or epochs, not both")
    o = _lib.TrainOptions()
    keep = []  # the encoded strings live as long as the call

    def s(v):
        if v is None:
            return None
        b_ = _lib.fsencode(v)
        keep.append(b_)
        return b_

    o.data, o.output, o.log = s(data), s(output), s(log)
    o.image_column, o.caption_column, o.image_root = s(image_column), s(caption_column), \
        s(image_root)
    o.head = _HEADS[head]
    o.embed_dim = int(embed_dim or 0)
    o.dropout = -1.0 if dropout is None else float(dropout)
    o.steps = int(steps or 0)
    o.epochs = int(epochs or 0)
    o.batch_size = int(batch_size or 0)
    o.lr = float(lr or 0.0)
    o.weight_decay = -1.0 if weight_decay is None else float(weight_decay)
    o.schedule = _SCHEDULES[schedule]
    o.warmup = int(warmup)
    o.seed = int(seed)
    o.no_shuffle = 0 if shuffle else 1
    o.val_fraction = -1.0 if val_fraction is None else float(val_fraction)
    o.checkpoint_every = int(checkpoint_every or 0)
    o.resume = 1 if resume else 0
    o.strict = 1 if strict else 0
    o.preprocess = model._preprocess
    res = TrainResult(0, 0, 0, 0, 0, False, False, 0, float("nan"))
    state = {"stop": False, "error": None}

    def step_cb(user, info):
        i = info.contents
        d = {"step": int(i.step), "steps": int(i.steps), "epoch": int(i.epoch),
             "loss": float(i.loss), "lr": float(i.lr), "logit_scale": float(i.logit_scale)}
        res.log.append(d)
        if on_step is not None and state["error"] is None:
            try:
                if on_step(d):
                    state["stop"] = True
            except BaseException as e:  # raised again after the call
                state["error"], state["stop"] = e, True

    def recall_cb(user, r):
        if on_recall is not None and state["error"] is None:
            try:
                on_recall(_recall(r.contents))
            except BaseException as e:
                state["error"], state["stop"] = e, True

    def cancel_cb(user):
        return 1 if state["stop"] else 0

    cb = _lib.TrainCallbacks()
    cb.step = _lib.TRAIN_STEP_FN(step_cb)
    cb.recall = _lib.TRAIN_RECALL_FN(recall_cb)
    cb.cancel = _lib.TRAIN_CANCEL_FN(cancel_cb)
    out = _lib.TrainResult()
    st = lib.pclip_train(m, b, ctypes.byref(o), ctypes.byref(cb), ctypes.byref(out))
    if state["error"] is not None:
        raise state["error"]
    _lib.check(st, c)
    res.steps, res.pairs = int(out.steps_done), int(out.pairs)
    res.train_pairs, res.val_pairs = int(out.train_pairs), int(out.val_pairs)
    res.images_skipped = int(out.images_skipped)
    res.feature_cache_hit, res.cancelled = bool(out.feature_cache_hit), bool(out.cancelled)
    res.resumed_from, res.final_loss = int(out.resumed_from), float(out.final_loss)
    res.recall = _recall(out.recall)
    return res
