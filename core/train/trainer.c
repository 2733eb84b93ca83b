/* pclip_train: data file -> cached features -> steps of the heads' graph ->
 * a model directory (linear) or a head folder (mlp).
 *
 * Everything a run does is a function of its options and the step count, so
 * a checkpoint holds only the step, the params with their AdamW moments and
 * the log's length: epoch e's order is a permutation drawn from (seed, e),
 * a step's dropout masks from (seed, step), the split from the seed. A
 * resumed run therefore repeats, bit for bit, what the first run would have
 * done. The checkpoint also records the settings that shape the run; a
 * resume with other settings is refused, naming the first that differs. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "features.h"
#include "heads.h"
#include "model/encoders.h"
#include "model/export.h"
#include "model/head.h"
#include "model/model.h"

#define CKPT_MAGIC "PCLIPCKP"
#define CKPT_VERSION 1u
#define SETTINGS_MAX 1024

void pclip_train_options_default(pclip_train_options *o) {
    if (!o) return;
    if (o->embed_dim <= 0) o->embed_dim = 0; /* the model's, filled when it is known */
    if (o->dropout < 0) o->dropout = 0.1;
    if (o->epochs <= 0 && o->steps <= 0) o->epochs = 10;
    if (o->batch_size <= 0) o->batch_size = 64;
    if (o->lr <= 0) o->lr = o->head == PCLIP_HEAD_MLP ? 1e-3 : 1e-4;
    if (o->weight_decay < 0) o->weight_decay = 0.01;
    if (o->val_fraction < 0) o->val_fraction = 0.1;
    if (o->feature_batch <= 0) o->feature_batch = 32;
}

typedef struct trainer {
    pclip_ctx_t ctx;
    pclip_model_t model;
    pclip_backend_t b;
    pclip_train_options o;
    const pclip_train_callbacks *cb;
    pclip_train_result *res;
    pclip__features *feat;
    pclip__split *split;
    const int64_t *train, *val; /* kept pair numbers (the split's) */
    int64_t n_train, n_val;
    int64_t *order; /* this epoch's order of train */
    int32_t order_epoch;
    pclip__heads *h;
    float *bi, *bt; /* a batch's features */
    int32_t batch;
    int64_t spe, total; /* steps per epoch, steps in all */
    char *tdir, *ckpt;
    char settings[SETTINGS_MAX];
    FILE *log;
    int64_t log_bytes;
} trainer;

/* ---- small helpers ---- */

typedef struct progress_relay {
    const pclip_train_callbacks *cb;
} progress_relay;

static void relay_progress(void *user, int64_t done, int64_t total, const char *what) {
    const progress_relay *r = user;
    r->cb->progress(r->cb->user, what, done, total);
}

static uint64_t mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static char *path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *p = pclip__malloc(la + lb + 2);
    if (p) {
        memcpy(p, a, la);
        p[la] = '/';
        memcpy(p + la + 1, b, lb + 1);
    }
    return p;
}

static pclip_status make_dir(pclip_ctx_t ctx, const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return PCLIP_STATUS_OK;
        return pclip__err(ctx, PCLIP_STATUS_IO, "train: '%s' exists and is not a folder", dir);
    }
    return pclip__err(ctx, PCLIP_STATUS_IO, "train: cannot create folder '%s': %s", dir,
                      strerror(errno));
}

/* The rate of 1-based step `step`, as transformers' schedules compute it
 * (get_cosine_schedule_with_warmup, get_constant_schedule_with_warmup) for
 * its 0-based current_step = step - 1. */
static double lr_at(const trainer *t, int64_t step) {
    const pclip_train_options *o = &t->o;
    const int64_t cur = step - 1;
    if (cur < o->warmup) return o->lr * (double)cur / (double)(o->warmup > 1 ? o->warmup : 1);
    if (o->schedule == PCLIP_SCHEDULE_CONSTANT) return o->lr;
    const int64_t span = t->total - o->warmup;
    const double progress = (double)(cur - o->warmup) / (double)(span > 1 ? span : 1);
    return o->lr * 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
}

/* ---- the heads' first values ---- */

static pclip_status init_heads(trainer *t) {
    pclip__heads *h = t->h;
    pclip_status st = PCLIP_STATUS_OK;
    float *buf = NULL;
    for (int32_t i = 0; !st && i < h->n_prm; i++) {
        pclip__head_param *p = &h->prm[i];
        if (!(buf = pclip__malloc((size_t)p->n * sizeof *buf)))
            return pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
        if (p->tower < 0) {
            buf[0] = h->kind == PCLIP_HEAD_LINEAR ? pclip_model_logit_scale(t->model)
                                                   : 2.6592600f; /* ln(1 / 0.07), CLIP's start */
        } else if (h->kind == PCLIP_HEAD_LINEAR) {
            const float *w = pclip__weight_f32(t->model, p->name, NULL);
            if (!w) st = pclip__weights_status(t->model);
            else memcpy(buf, w, (size_t)p->n * sizeof *buf);
        } else if (strstr(p->name, "layer_norm")) {
            const float v = strstr(p->name, ".weight") ? 1.0f : 0.0f;
            for (int64_t k = 0; k < p->n; k++) buf[k] = v;
        } else {
            /* torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
             * the weight and the bias, from our own generator */
            const int64_t fan_in = strstr(p->name, ".fc.") ? h->e : p->tower ? h->dt : h->dv;
            const double bound = 1.0 / sqrt((double)fan_in);
            uint64_t s = t->o.seed ^ 0x5EEDull ^ ((uint64_t)i << 32);
            for (int64_t k = 0; k < p->n; k++)
                buf[k] = (float)((((double)(mix64(&s) >> 11) * 0x1.0p-53) * 2.0 - 1.0) * bound);
        }
        if (!st) st = pclip__heads_write(h, p, 0, buf);
        pclip__free(buf);
        buf = NULL;
    }
    return st;
}

/* ---- checkpoints ---- */

static uint64_t fnv64(uint64_t hsh, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) hsh = (hsh ^ p[i]) * 0x100000001B3ull;
    return hsh;
}

typedef struct ckpt_header {
    char magic[8];
    uint32_t version, n_params;
    int64_t step, log_bytes;
    char settings[SETTINGS_MAX];
} ckpt_header;

static pclip_status ckpt_save(trainer *t, int64_t step) {
    pclip__atomic_file f;
    pclip_status st = pclip__atomic_open(t->ctx, t->ckpt, &f);
    if (st) return st;
    ckpt_header hd;
    memset(&hd, 0, sizeof hd);
    memcpy(hd.magic, CKPT_MAGIC, 8);
    hd.version = CKPT_VERSION;
    hd.n_params = (uint32_t)t->h->n_prm;
    hd.step = step;
    hd.log_bytes = t->log_bytes;
    memcpy(hd.settings, t->settings, sizeof hd.settings);
    uint64_t sum = fnv64(0xCBF29CE484222325ull, &hd, sizeof hd);
    st = pclip__atomic_write(t->ctx, &f, &hd, sizeof hd);
    float *buf = NULL;
    for (int32_t i = 0; !st && i < t->h->n_prm; i++) {
        pclip__head_param *p = &t->h->prm[i];
        char name[64];
        memcpy(name, p->name, sizeof name);
        if (!(buf = pclip__malloc((size_t)p->n * sizeof *buf))) {
            st = pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
            break;
        }
        sum = fnv64(sum, name, sizeof name);
        st = pclip__atomic_write(t->ctx, &f, name, sizeof name);
        for (int which = 0; !st && which < 3; which++) {
            st = pclip__heads_read(t->h, p, which, buf);
            if (!st) {
                sum = fnv64(sum, buf, (size_t)p->n * sizeof *buf);
                st = pclip__atomic_write(t->ctx, &f, buf, (size_t)p->n * sizeof *buf);
            }
        }
        pclip__free(buf);
        buf = NULL;
    }
    if (!st) st = pclip__atomic_write(t->ctx, &f, &sum, sizeof sum);
    if (!st) st = pclip__atomic_commit(t->ctx, &f);
    else pclip__atomic_abort(&f);
    if (st) pclip__err_prefix(t->ctx, "train: writing the checkpoint");
    return st;
}

/* The first "key=value" of a that b does not have, for the refusal. */
static void settings_diff(const char *a, const char *b, char *out, size_t n) {
    const char *p = a;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        const char *q = b;
        bool same = false, found = false;
        while (*q) {
            const char *qe = strchr(q, ';');
            size_t ql = qe ? (size_t)(qe - q) : strlen(q);
            if (ql > klen && q[klen] == '=' && !memcmp(q, p, klen)) {
                found = true;
                same = ql == len && !memcmp(q, p, len);
                if (!same)
                    snprintf(out, n, "%.*s (now %.*s)", (int)len, p, (int)(ql - klen - 1),
                             q + klen + 1);
                break;
            }
            q += ql + (qe ? 1 : 0);
        }
        if (!found) snprintf(out, n, "%.*s", (int)len, p);
        if (!same) return;
        p += len + (end ? 1 : 0);
    }
    snprintf(out, n, "(none found)");
}

static pclip_status ckpt_load(trainer *t, int64_t *step) {
    char *data = NULL;
    size_t size = 0;
    pclip_status st = pclip__read_file(t->ctx, t->ckpt, "checkpoint", (size_t)1 << 36, &data,
                                       &size);
    if (st) {
        pclip__err_prefix(t->ctx, "train: --resume");
        return st;
    }
    ckpt_header hd;
    const char *bad = NULL;
    if (size < sizeof hd + 8) bad = "it is too short";
    else {
        memcpy(&hd, data, sizeof hd);
        uint64_t want = 0, sum = 0;
        memcpy(&want, data + size - 8, 8);
        sum = fnv64(0xCBF29CE484222325ull, data, size - 8);
        if (memcmp(hd.magic, CKPT_MAGIC, 8) || hd.version != CKPT_VERSION)
            bad = "it is not a portclip training checkpoint of this version";
        else if (sum != want) bad = "its checksum does not match (a damaged file)";
        else if (hd.n_params != (uint32_t)t->h->n_prm) bad = "it holds other heads";
        hd.settings[SETTINGS_MAX - 1] = 0;
    }
    if (bad) {
        pclip__free(data);
        return pclip__err(t->ctx, PCLIP_STATUS_BAD_FORMAT, "train: checkpoint '%s': %s", t->ckpt,
                          bad);
    }
    if (strcmp(hd.settings, t->settings)) {
        char why[256];
        settings_diff(hd.settings, t->settings, why, sizeof why);
        pclip__free(data);
        return pclip__err(t->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "train: checkpoint '%s' was written with other settings: %s; resume "
                          "with the same options, or start again without --resume",
                          t->ckpt, why);
    }
    size_t off = sizeof hd;
    for (int32_t i = 0; !st && i < t->h->n_prm; i++) {
        pclip__head_param *p = &t->h->prm[i];
        const size_t bytes = (size_t)p->n * sizeof(float);
        if (off + 64 + 3 * bytes > size - 8 || strncmp((const char *)data + off, p->name, 64)) {
            st = pclip__err(t->ctx, PCLIP_STATUS_BAD_FORMAT,
                            "train: checkpoint '%s' does not hold '%s' where expected", t->ckpt,
                            p->name);
            break;
        }
        off += 64;
        for (int which = 0; !st && which < 3; which++, off += bytes) {
            float *buf = pclip__malloc(bytes);
            if (!buf) st = pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
            if (buf) memcpy(buf, data + off, bytes);
            if (!st) st = pclip__heads_write(t->h, p, which, buf);
            pclip__free(buf);
        }
    }
    if (!st && off != size - 8)
        st = pclip__err(t->ctx, PCLIP_STATUS_BAD_FORMAT, "train: checkpoint '%s' has %zu stray bytes",
                        t->ckpt, size - 8 - off);
    if (!st) {
        *step = hd.step;
        t->log_bytes = hd.log_bytes;
    }
    pclip__free(data);
    return st;
}

/* ---- results ---- */

static pclip_status export_result(trainer *t) {
    pclip__heads *h = t->h;
    pclip_status st = PCLIP_STATUS_OK;
    pclip__export_tensor ex[PCLIP__HEADS_MAX_PARAMS];
    memset(ex, 0, sizeof ex);
    int32_t n = 0;
    for (int32_t i = 0; !st && i < h->n_prm; i++) {
        pclip__head_param *p = &h->prm[i];
        float *buf = pclip__malloc((size_t)p->n * sizeof *buf);
        if (!buf) {
            st = pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
            break;
        }
        ex[n].name = p->name;
        ex[n].data = buf;
        ex[n].ndim = p->tower < 0 ? 0 : p->ndim; /* logit_scale is a scalar, as in HF */
        ex[n].shape[0] = p->ne[0];
        ex[n].shape[1] = p->ne[1];
        n++;
        st = pclip__heads_read(h, p, 0, buf);
    }
    if (!st && h->kind == PCLIP_HEAD_LINEAR) {
        st = pclip__export_hf_dir(t->model, t->o.output, (size_t)n, ex);
    } else if (!st) {
        pclip__head *hd = NULL;
        st = pclip__head_create(t->ctx, h->e, h->dv, h->dt, &hd);
        for (int32_t i = 0; !st && i < n; i++) {
            const pclip__head_param *p = &h->prm[i];
            if (p->tower < 0) {
                hd->logit_scale = ex[i].data[0];
                continue;
            }
            pclip__head_tower *tw = p->tower ? &hd->text : &hd->vision;
            const char *leaf = strchr(p->name, '.') + 1;
            float *dst = !strcmp(leaf, "projection.weight") ? tw->proj_w
                         : !strcmp(leaf, "projection.bias") ? tw->proj_b
                         : !strcmp(leaf, "fc.weight")       ? tw->fc_w
                         : !strcmp(leaf, "fc.bias")         ? tw->fc_b
                         : !strcmp(leaf, "layer_norm.weight") ? tw->ln_w
                                                              : tw->ln_b;
            memcpy(dst, ex[i].data, (size_t)p->n * sizeof *dst);
        }
        if (!st) {
            hd->dropout = (double)h->dropout;
            hd->layer_norm_eps = (double)h->ln_eps;
            st = pclip__head_save(t->ctx, t->o.output, hd);
        }
        pclip__head_destroy(hd);
    }
    for (int32_t i = 0; i < n; i++) pclip__free((void *)ex[i].data);
    return st;
}

/* The dot product of two embeddings (float: the scores are ranked, not reported). */
static float dot(const float *a, const float *b, int32_t n) {
    float acc[16] = {0}; /* 16 lanes the compiler can keep in vector registers */
    int32_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[k + j] * b[k + j];
    float s = 0;
    for (; k < n; k++) s += a[k] * b[k];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

/* Recall@1/5/10 of the held-out pairs, both ways, with the heads as they are. */
static pclip_status evaluate(trainer *t, int32_t epoch) {
    if (t->n_val == 0) return PCLIP_STATUS_OK;
    const pclip__features *f = t->feat;
    const int32_t e = t->h->e;
    /* the held-out images (each once) and captions */
    int64_t *img = pclip__malloc((size_t)t->n_val * sizeof *img);
    int64_t *cap_img = pclip__malloc((size_t)t->n_val * sizeof *cap_img); /* caption -> image slot */
    float *fi = pclip__malloc((size_t)t->n_val * (size_t)f->dv * sizeof *fi);
    float *ft = pclip__malloc((size_t)t->n_val * (size_t)f->dt * sizeof *ft);
    float *ei = pclip__malloc((size_t)t->n_val * (size_t)e * sizeof *ei);
    float *et = pclip__malloc((size_t)t->n_val * (size_t)e * sizeof *et);
    pclip_status st = PCLIP_STATUS_OK;
    if (!img || !cap_img || !fi || !ft || !ei || !et)
        st = pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
    int64_t n_img = 0;
    int64_t *slot_of = pclip__malloc((size_t)(f->n_images + 1) * sizeof *slot_of);
    if (!slot_of && !st) st = pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
    for (int64_t i = 0; slot_of && i < f->n_images; i++) slot_of[i] = -1;
    for (int64_t i = 0; !st && i < t->n_val; i++) {
        const int64_t pr = t->val[i], im = f->pair_image[pr];
        if (slot_of[im] < 0) {
            slot_of[im] = n_img;
            img[n_img] = im;
            memcpy(fi + n_img * f->dv, f->image_feats + im * f->dv, (size_t)f->dv * sizeof *fi);
            n_img++;
        }
        cap_img[i] = slot_of[im];
        memcpy(ft + i * f->dt, f->text_feats + f->pair_text[pr] * f->dt, (size_t)f->dt * sizeof *ft);
    }
    pclip__free(slot_of);
    if (!st) st = pclip__heads_embed(t->h, fi, NULL, n_img, t->batch, ei, NULL);
    if (!st) st = pclip__heads_embed(t->h, NULL, ft, t->n_val, t->batch, NULL, et);
    static const int ks[3] = {1, 5, 10};
    pclip_train_recall r = {.epoch = epoch, .images = n_img, .captions = t->n_val};
    /* one pass over the image x caption scores, a row at a time: own[c] is
     * caption c's score with its image; an image's rank is the captions of
     * other images above its best own one, a caption's the images above its
     * own one (ties count for the query) */
    float *own = pclip__malloc((size_t)t->n_val * sizeof *own);
    float *row = pclip__malloc((size_t)t->n_val * sizeof *row);
    int64_t *rank_t = pclip__calloc((size_t)t->n_val, sizeof *rank_t);
    if (!st && (!own || !row || !rank_t))
        st = pclip__err(t->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
    for (int64_t c = 0; !st && c < t->n_val; c++) own[c] = dot(ei + cap_img[c] * e, et + c * e, e);
    for (int64_t i = 0; !st && i < n_img; i++) {
        float best_own = -INFINITY;
        for (int64_t c = 0; c < t->n_val; c++) {
            row[c] = cap_img[c] == i ? own[c] : dot(ei + i * e, et + c * e, e);
            if (cap_img[c] == i && row[c] > best_own) best_own = row[c];
        }
        int64_t rank = 0;
        for (int64_t c = 0; c < t->n_val; c++) {
            if (cap_img[c] == i) continue;
            rank += row[c] > best_own;
            rank_t[c] += row[c] > own[c];
        }
        for (int k = 0; k < 3; k++) r.i2t[k] += rank < ks[k];
    }
    for (int64_t c = 0; !st && c < t->n_val; c++)
        for (int k = 0; k < 3; k++) r.t2i[k] += rank_t[c] < ks[k];
    pclip__free(own);
    pclip__free(row);
    pclip__free(rank_t);
    if (!st) {
        for (int k = 0; k < 3; k++) {
            r.i2t[k] /= (double)n_img;
            r.t2i[k] /= (double)t->n_val;
        }
        if (t->res) t->res->recall = r;
        if (t->cb && t->cb->recall) t->cb->recall(t->cb->user, &r);
    }
    pclip__free(img);
    pclip__free(cap_img);
    pclip__free(fi);
    pclip__free(ft);
    pclip__free(ei);
    pclip__free(et);
    return st;
}

/* ---- the loop ---- */

static pclip_status epoch_order(trainer *t, int32_t epoch) {
    if (t->order_epoch == epoch) return PCLIP_STATUS_OK;
    for (int64_t i = 0; i < t->n_train; i++) t->order[i] = t->train[i];
    if (!t->o.no_shuffle) {
        uint64_t s = t->o.seed ^ 0x0DDBA11ull ^ ((uint64_t)epoch * 0x9E3779B97F4A7C15ull);
        for (int64_t i = t->n_train - 1; i > 0; i--) {
            const int64_t j = (int64_t)(mix64(&s) % (uint64_t)(i + 1));
            const int64_t tmp = t->order[i];
            t->order[i] = t->order[j];
            t->order[j] = tmp;
        }
    }
    t->order_epoch = epoch;
    return PCLIP_STATUS_OK;
}

static pclip_status log_step(trainer *t, const pclip_train_step_info *si) {
    if (!t->log) return PCLIP_STATUS_OK;
    int n = fprintf(t->log,
                    "{\"step\": %lld, \"epoch\": %d, \"loss\": %.9g, \"lr\": %.9g, "
                    "\"logit_scale\": %.9g}\n",
                    (long long)si->step, (int)si->epoch, si->loss, si->lr, si->logit_scale);
    if (n < 0 || fflush(t->log) != 0)
        return pclip__err(t->ctx, PCLIP_STATUS_IO, "train: writing the log '%s': %s", t->o.log,
                          strerror(errno));
    t->log_bytes += n;
    return PCLIP_STATUS_OK;
}

static pclip_status run_steps(trainer *t, int64_t done) {
    pclip_status st = PCLIP_STATUS_OK;
    const pclip__features *f = t->feat;
    pclip__head_param *ls = pclip__heads_find(t->h, "logit_scale");
    int64_t last_ckpt = done;
    while (!st && done < t->total) {
        if (t->cb && t->cb->cancel && t->cb->cancel(t->cb->user)) {
            st = ckpt_save(t, done);
            if (!st && t->res) t->res->cancelled = 1;
            return st;
        }
        const int32_t epoch = (int32_t)(done / t->spe);
        const int64_t bidx = done % t->spe;
        epoch_order(t, epoch);
        const int64_t first = bidx * t->batch;
        const int32_t n = (int32_t)(t->n_train - first < t->batch ? t->n_train - first : t->batch);
        for (int32_t r = 0; r < n; r++) {
            const int64_t pr = t->order[first + r];
            memcpy(t->bi + (int64_t)r * f->dv, f->image_feats + f->pair_image[pr] * f->dv,
                   (size_t)f->dv * sizeof(float));
            memcpy(t->bt + (int64_t)r * f->dt, f->text_feats + f->pair_text[pr] * f->dt,
                   (size_t)f->dt * sizeof(float));
        }
        const int64_t step = done + 1;
        const double lr = lr_at(t, step);
        float loss = 0, scale = 0;
        st = pclip__heads_step(t->h, t->bi, t->bt, n, lr, t->o.weight_decay, step, t->o.seed, &loss);
        if (st) break;
        if (!isfinite(loss)) {
            return pclip__err(t->ctx, PCLIP_STATUS_NOT_FINITE,
                              "train: step %lld: the loss is %s; stopping (lower --lr?). The last "
                              "checkpoint (step %lld) is kept in '%s'",
                              (long long)step, isnan(loss) ? "NaN" : "infinite",
                              (long long)last_ckpt, t->ckpt);
        }
        if ((st = pclip__heads_read(t->h, ls, 0, &scale))) break;
        done = step;
        pclip_train_step_info si = {.step = step, .steps = t->total, .epoch = epoch + 1,
                                    .loss = loss, .lr = lr, .logit_scale = scale};
        if ((st = log_step(t, &si))) break;
        if (t->cb && t->cb->step) t->cb->step(t->cb->user, &si);
        if (t->res) {
            t->res->steps_done = done;
            t->res->final_loss = loss;
        }
        const bool epoch_end = done % t->spe == 0 || done == t->total;
        if (epoch_end && (st = evaluate(t, epoch + 1))) break;
        const bool ckpt_now = t->o.checkpoint_every > 0 ? done % t->o.checkpoint_every == 0
                                                        : done % t->spe == 0;
        if (ckpt_now && done < t->total) {
            if ((st = ckpt_save(t, done))) break;
            last_ckpt = done;
        }
    }
    if (!st) st = ckpt_save(t, done);
    return st;
}

static pclip_status open_log(trainer *t, bool resume) {
    if (!t->o.log) return PCLIP_STATUS_OK;
    if (resume) {
        /* drop whatever the log got after the checkpoint: those steps run again */
        if (truncate(t->o.log, (off_t)t->log_bytes) != 0 && !(errno == ENOENT && t->log_bytes == 0))
            return pclip__err(t->ctx, PCLIP_STATUS_IO, "train: cannot cut the log '%s' back to "
                              "the checkpoint: %s", t->o.log, strerror(errno));
        t->log = fopen(t->o.log, "a");
    } else {
        t->log_bytes = 0;
        t->log = fopen(t->o.log, "w");
    }
    if (!t->log)
        return pclip__err(t->ctx, PCLIP_STATUS_IO, "train: cannot open the log '%s': %s", t->o.log,
                          strerror(errno));
    return PCLIP_STATUS_OK;
}

static void settings_make(trainer *t) {
    const pclip_train_options *o = &t->o;
    snprintf(t->settings, sizeof t->settings,
             "features=%s;head=%s;embed_dim=%d;dropout=%.17g;batch_size=%d;steps=%lld;lr=%.17g;"
             "weight_decay=%.17g;schedule=%s;warmup=%lld;seed=%llu;shuffle=%d;val_fraction=%.17g;"
             "pairs=%lld",
             t->feat->key, o->head == PCLIP_HEAD_MLP ? "mlp" : "linear", (int)t->h->e, o->dropout,
             (int)t->batch, (long long)t->total, o->lr, o->weight_decay,
             o->schedule == PCLIP_SCHEDULE_CONSTANT ? "constant" : "cosine", (long long)o->warmup,
             (unsigned long long)o->seed, !o->no_shuffle, o->val_fraction,
             (long long)t->n_train);
}

static void trainer_free(trainer *t) {
    if (t->log) fclose(t->log);
    pclip__heads_destroy(t->h);
    pclip__features_destroy(t->feat);
    pclip__split_destroy(t->split);
    pclip__free(t->order);
    pclip__free(t->bi);
    pclip__free(t->bt);
    pclip__free(t->tdir);
    pclip__free(t->ckpt);
}

static pclip_status check_options(pclip_ctx_t ctx, const pclip_train_options *o) {
    if (!o->data || !*o->data)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "train: no data file");
    if (!o->output || !*o->output)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "train: no output folder");
    if (o->head != PCLIP_HEAD_LINEAR && o->head != PCLIP_HEAD_MLP)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "train: unknown head kind %d",
                          (int)o->head);
    if (!(o->lr > 0 && o->lr < 1e3))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "train: --lr %g is not in (0, 1000)",
                          o->lr);
    if (!(o->weight_decay >= 0 && o->weight_decay < 1e3))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "train: --weight-decay %g is not in [0, 1000)", o->weight_decay);
    if (!(o->dropout >= 0 && o->dropout < 1))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "train: dropout %g is not in [0, 1)",
                          o->dropout);
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "train: --val-fraction %g is not in [0, 1)", o->val_fraction);
    if (o->batch_size < 2 || o->batch_size > (1 << 16))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "train: --batch-size %d is not in 2..65536", (int)o->batch_size);
    if (o->steps < 0 || o->epochs < 0 || o->warmup < 0 || o->checkpoint_every < 0 ||
        o->embed_dim < 0 || o->embed_dim > (1 << 16))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "train: steps, epochs, warm-up, checkpoint interval and embed_dim must "
                          "not be negative (embed_dim at most 65536)");
    if (o->schedule != PCLIP_SCHEDULE_COSINE && o->schedule != PCLIP_SCHEDULE_CONSTANT)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "train: unknown schedule %d",
                          (int)o->schedule);
    return PCLIP_STATUS_OK;
}

pclip_status pclip_train(pclip_model_t model, pclip_backend_t b, const pclip_train_options *opt,
                         const pclip_train_callbacks *cb, pclip_train_result *out) {
    if (!model) return PCLIP_STATUS_INVALID_ARGUMENT;
    pclip_ctx_t ctx = model->ctx;
    if (!b || !opt) return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "train: NULL argument");
    trainer t;
    memset(&t, 0, sizeof t);
    t.ctx = ctx;
    t.model = model;
    t.b = b;
    t.o = *opt;
    t.cb = cb;
    t.order_epoch = -1;
    pclip_train_result res;
    memset(&res, 0, sizeof res);
    t.res = &res;
    pclip_train_options_default(&t.o);
    pclip_status st = check_options(ctx, &t.o);
    if (st) return st;
    if (!t.o.embed_dim || t.o.head == PCLIP_HEAD_LINEAR) t.o.embed_dim = model->config.projection_dim;
    if (!(t.tdir = path_join(t.o.output, "training")) || !(t.ckpt = path_join(t.tdir, "checkpoint.bin")))
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
    /* what would fail at the end is refused before any work */
    if (!st && t.o.log) st = pclip_output_check(ctx, t.o.log);
    if (!st) st = make_dir(ctx, t.o.output);
    if (!st && t.o.head == PCLIP_HEAD_LINEAR) {
        struct stat so, sm;
        if (stat(t.o.output, &so) == 0 && stat(model->dir, &sm) == 0 && so.st_dev == sm.st_dev &&
            so.st_ino == sm.st_ino)
            st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                            "train: --output '%s' is the model's own folder; a linear head is "
                            "written as a new model directory: give another folder",
                            t.o.output);
    }
    if (!st) st = make_dir(ctx, t.tdir);
    if (st) goto done;
    /* data and features */
    {
        pclip__dataset *ds = NULL;
        pclip__dataset_options dopt = {.image_column = t.o.image_column,
                                       .caption_column = t.o.caption_column,
                                       .image_root = t.o.image_root,
                                       .sep = t.o.separator};
        st = pclip__dataset_read(ctx, t.o.data, &dopt, &ds);
        progress_relay relay = {cb};
        pclip__features_options fopt = {.strict = t.o.strict,
                                        .batch_size = t.o.feature_batch,
                                        .preprocess = t.o.preprocess,
                                        .progress = cb && cb->progress ? relay_progress : NULL,
                                        .user = &relay};
        if (!st) st = pclip__features_compute(model, b, ds, t.tdir, &fopt, &t.feat);
        pclip__dataset_destroy(ds);
        if (st) goto done;
    }
    const pclip__features *f = t.feat;
    res.pairs = f->n_pairs;
    res.images_skipped = f->n_skipped;
    res.feature_cache_hit = f->cache_hit;
    for (int64_t i = 0; cb && cb->skipped && i < f->n_skipped; i++)
        cb->skipped(cb->user, f->skipped[i].path, f->skipped[i].message);
    /* a held-out split needs two images at least: with one, everything trains */
    const double val_fraction = f->n_images < 2 ? 0.0 : t.o.val_fraction;
    if ((st = pclip__features_split(ctx, t.feat, val_fraction, t.o.seed, &t.split))) goto done;
    t.train = t.split->train;
    t.val = t.split->val;
    t.n_train = t.split->n_train;
    t.n_val = t.split->n_val;
    if (!(t.order = pclip__malloc((size_t)(t.n_train + 1) * sizeof *t.order))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
        goto done;
    }
    res.train_pairs = t.n_train;
    res.val_pairs = t.n_val;
    if (t.n_train < 2) {
        st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                        "train: '%s' leaves %lld training pair%s (%lld readable, %lld held out); "
                        "at least 2 are needed",
                        t.o.data, (long long)t.n_train, t.n_train == 1 ? "" : "s",
                        (long long)f->n_pairs, (long long)t.n_val);
        goto done;
    }
    t.batch = t.o.batch_size < t.n_train ? t.o.batch_size : (int32_t)t.n_train;
    /* a last batch of one pair has no negatives: it is left out of the epoch */
    t.spe = t.n_train / t.batch + (t.n_train % t.batch >= 2);
    t.total = t.o.steps > 0 ? t.o.steps : (int64_t)t.o.epochs * t.spe;
    if (!(t.bi = pclip__malloc((size_t)t.batch * (size_t)f->dv * sizeof(float))) ||
        !(t.bt = pclip__malloc((size_t)t.batch * (size_t)f->dt * sizeof(float)))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "train: out of memory");
        goto done;
    }
    if ((st = pclip__heads_create(ctx, b, t.o.head, f->dv, f->dt, t.o.embed_dim,
                                  (float)t.o.dropout, &t.h)))
        goto done;
    settings_make(&t);
    int64_t done_steps = 0;
    if (t.o.resume) {
        st = ckpt_load(&t, &done_steps);
        res.resumed_from = (int32_t)done_steps;
    } else {
        st = init_heads(&t);
    }
    if (!st) st = open_log(&t, t.o.resume != 0);
    if (!st) st = run_steps(&t, done_steps);
    if (!st && !res.cancelled) st = export_result(&t);
done:
    trainer_free(&t);
    if (!st && out) *out = res;
    return st;
}
