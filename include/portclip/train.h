/* portclip training: new projection heads on image-caption pairs, with both
 * encoders frozen. Included by portclip.h; the conventions written there
 * (statuses, contexts, ownership, destroy(NULL)) hold here.
 *
 * A run reads the data file, computes the pooled features of every image and
 * caption once (cached in OUTDIR/training/, reused by the next run with the
 * same model and files), then trains from the cache: per step, the heads'
 * forward, the symmetric contrastive loss of CLIP, its gradients and one
 * torch.optim.AdamW update, all graph ops on the chosen backend. The heads:
 *   linear  CLIP's own visual_projection and text_projection (initialised
 *           from the checkpoint) and logit_scale; the result is a complete
 *           Hugging Face model directory in OUTDIR.
 *   mlp     per tower a new head (Linear, GELU, Linear, dropout, residual,
 *           LayerNorm) to embed_dim; the result is OUTDIR/head.json and
 *           OUTDIR/head.safetensors, used through pclip_model_set_head.
 * logit_scale is trained too, without weight decay, and clamped to at most
 * ln(100) after each update, as CLIP does. */
#ifndef PORTCLIP_TRAIN_H
#define PORTCLIP_TRAIN_H

#include "portclip/apps.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pclip_head_kind { PCLIP_HEAD_LINEAR = 0, PCLIP_HEAD_MLP = 1 } pclip_head_kind;
typedef enum pclip_lr_schedule {
    PCLIP_SCHEDULE_COSINE = 0,  /* linear warm-up, then cosine decay to 0 at the last step */
    PCLIP_SCHEDULE_CONSTANT = 1 /* linear warm-up, then constant */
} pclip_lr_schedule;

/* Zero means the default for every field (written after each). */
typedef struct pclip_train_options {
    const char *data;           /* TSV, CSV (header) or JSONL file of image-caption pairs */
    const char *image_column;   /* NULL: "image" */
    const char *caption_column; /* NULL: "caption" */
    const char *image_root;     /* NULL: relative image paths from the data file's folder */
    char separator;             /* 0: from the file name and header; or ',' '\t' '|' */
    const char *output;         /* OUTDIR (created) */
    const char *log;            /* NULL: no log; else one JSON object per step */
    pclip_head_kind head;       /* PCLIP_HEAD_LINEAR */
    int32_t embed_dim;          /* mlp: 0 = the model's projection_dim */
    double dropout;             /* mlp: < 0 = 0.1 (0 turns it off; set -1 for the default) */
    int64_t steps;              /* optimiser steps; 0: epochs decide */
    int32_t epochs;             /* 0: 10 when steps is 0 as well */
    int32_t batch_size;         /* 0: 64 (at most the training pairs) */
    double lr;                  /* 0: 1e-4 (linear), 1e-3 (mlp) */
    double weight_decay;        /* < 0: 0.01 (0 turns it off; set -1 for the default) */
    pclip_lr_schedule schedule; /* cosine */
    int64_t warmup;             /* warm-up steps; 0: none */
    uint64_t seed;              /* shuffling, the split, mlp init and dropout */
    int32_t no_shuffle;         /* non-zero: every epoch in file order */
    double val_fraction;        /* < 0: 0.1; 0: no held-out split (images, not pairs) */
    int64_t checkpoint_every;   /* steps between checkpoints; 0: each epoch's end */
    int32_t resume;             /* non-zero: continue from OUTDIR/training/checkpoint.bin */
    int32_t strict;             /* non-zero: a missing or unreadable image is an error */
    pclip_preprocess_mode preprocess;
    int32_t feature_batch; /* images/texts per encoder batch; 0: 32 */
} pclip_train_options;

/* Fills the defaults (the zero and negative markers above) in place. */
PCLIP_API void pclip_train_options_default(pclip_train_options *o);

typedef struct pclip_train_step_info {
    int64_t step; /* 1-based */
    int64_t steps;
    int32_t epoch; /* 1-based */
    double loss;   /* before this step's update */
    double lr;     /* used by this step */
    double logit_scale; /* after this step's update (the log) */
} pclip_train_step_info;

/* Recall@k of the held-out split, both ways (images to their captions,
 * captions to their image): the share of queries whose match is among the
 * k best. */
typedef struct pclip_train_recall {
    int32_t epoch;
    int64_t images, captions;
    double i2t[3], t2i[3]; /* at k = 1, 5, 10 */
} pclip_train_recall;

typedef struct pclip_train_callbacks {
    void *user;
    /* feature extraction: done of total items (images, then captions) */
    void (*progress)(void *user, const char *what, int64_t done, int64_t total);
    /* an image left out (not strict), with the reason */
    void (*skipped)(void *user, const char *path, const char *reason);
    void (*step)(void *user, const pclip_train_step_info *s);
    void (*recall)(void *user, const pclip_train_recall *r);
    /* polled between steps: non-zero saves a checkpoint and stops (the call
     * then returns PCLIP_STATUS_OK with out->cancelled set) */
    int (*cancel)(void *user);
} pclip_train_callbacks;

typedef struct pclip_train_result {
    int64_t steps_done;
    int64_t pairs, train_pairs, val_pairs, images_skipped;
    int32_t feature_cache_hit; /* non-zero: features came from the cache */
    int32_t cancelled;         /* stopped by the cancel callback, checkpoint saved */
    int32_t resumed_from;      /* the checkpoint's step, when resumed */
    double final_loss;
    pclip_train_recall recall; /* the last evaluation (epoch 0: none) */
} pclip_train_result;

/* Trains on b and writes OUTDIR. A NaN or infinite loss stops the run with
 * BAD_FORMAT naming the step, keeping the last checkpoint. out may be NULL. */
PCLIP_API pclip_status pclip_train(pclip_model_t model, pclip_backend_t b,
                                   const pclip_train_options *opt,
                                   const pclip_train_callbacks *cb, pclip_train_result *out);

#ifdef __cplusplus
}
#endif

#endif /* PORTCLIP_TRAIN_H */
