/* Zero-shot classification and scoring: classes as text embeddings (one per
 * label from prompt templates, or one per text as it is), and images scored
 * against them as Hugging Face's CLIPModel computes logits_per_image:
 * exp(logit_scale) * cos(image, class), then a softmax over the classes.
 *
 * The class embeddings are made once, with the model's text tower on the
 * caller's backend; the per-image product ([n, D] x [D, classes], a few
 * thousand multiply-adds per image) runs here on the CPU in double
 * precision, next to the image encoder's millions. It does not print: the
 * CLI formats the results. */
#include <math.h>
#include <string.h>

#include "model/model.h"

/* Prompts tokenized and encoded per text-tower run: bounds the memory of
 * large label sets (1000 labels x 80 templates) without slowing small ones. */
#define ZS_TEXT_CHUNK 256

struct pclip_zeroshot {
    pclip_model_t model; /* borrowed */
    pclip_backend_t b;   /* borrowed */
    int32_t count, dim;
    float scale;   /* exp(logit_scale) */
    float *classes; /* [count, dim], L2-normalised */
};

/* ---- helpers ---- */

static void normalize_row(float *v, int32_t dim) {
    double ss = 0.0;
    for (int32_t k = 0; k < dim; k++) ss += (double)v[k] * v[k];
    /* a zero row stays zero (cos 0 with everything), as torch's x / max(|x|, eps) would */
    double inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
    for (int32_t k = 0; k < dim; k++) v[k] = (float)(v[k] * inv);
}

/* Encodes n prompts, prompt(i) giving the i-th; adds the normalised embedding
 * of prompt i to sums[class_of(i)]. */
typedef const char *(*prompt_fn)(void *user, int64_t i, char *buf, size_t cap, size_t *len);

static pclip_status encode_prompts(pclip_zeroshot_t z, int64_t n, int32_t per_class,
                                   prompt_fn prompt, void *user, float *sums) {
    pclip_model_t m = z->model;
    pclip_tokenizer_t tok = pclip_model_tokenizer(m);
    if (!tok)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "zero-shot: model '%s' was loaded without its tokenizer", m->dir);
    int32_t n_ctx = m->config.text.max_position_embeddings;
    int32_t chunk = n < ZS_TEXT_CHUNK ? (int32_t)n : ZS_TEXT_CHUNK;
    int32_t *ids = pclip__malloc((size_t)chunk * (size_t)n_ctx * sizeof *ids); /* [chunk, ctx] */
    float *emb = pclip__malloc((size_t)chunk * (size_t)z->dim * sizeof *emb);  /* [chunk, dim] */
    size_t cap = 4096;
    char *buf = pclip__malloc(cap);
    pclip_status st = PCLIP_STATUS_OK;
    if (!ids || !emb || !buf)
        st = pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
    for (int64_t base = 0; !st && base < n; base += chunk) {
        int32_t c = n - base < chunk ? (int32_t)(n - base) : chunk;
        for (int32_t i = 0; !st && i < c; i++) {
            size_t len = 0;
            const char *text = prompt(user, base + i, buf, cap, &len);
            if (!text) {
                st = pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
                break;
            }
            st = pclip_tokenizer_encode(tok, text, len, ids + (size_t)i * (size_t)n_ctx, n_ctx,
                                        NULL);
            if (st)
                st = pclip__err(m->ctx, st, "zero-shot: prompt %lld \"%.200s\": %s",
                                (long long)(base + i + 1), text, pclip_ctx_last_error(m->ctx));
        }
        if (!st)
            st = pclip_model_encode_text_batched(m, z->b, ids, c, 0, PCLIP_ENCODE_NORMALIZE, emb);
        for (int32_t i = 0; !st && i < c; i++) {
            float *dst = sums + (size_t)((base + i) / per_class) * (size_t)z->dim;
            for (int32_t k = 0; k < z->dim; k++) dst[k] += emb[(size_t)i * (size_t)z->dim + k];
        }
    }
    pclip__free(buf);
    pclip__free(emb);
    pclip__free(ids);
    return st;
}

static pclip_status zs_new(pclip_model_t m, pclip_backend_t b, int32_t count,
                           pclip_zeroshot_t *out) {
    if (!b) return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "zero-shot: NULL backend");
    if (m->n_shards == 0)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "model '%s' was loaded without its weights", m->dir);
    pclip_zeroshot_t z = pclip__calloc(1, sizeof *z);
    if (z) {
        *z = (struct pclip_zeroshot){.model = m, .b = b, .count = count,
                                     .dim = pclip_model_embed_dim(m),
                                     .scale = expf(pclip_model_logit_scale(m))};
        z->classes = pclip__calloc((size_t)count * (size_t)z->dim, sizeof *z->classes);
    }
    if (!z || !z->classes) {
        pclip__free(z);
        return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
    }
    *out = z;
    return PCLIP_STATUS_OK;
}

static pclip_status zs_finish(pclip_zeroshot_t z, pclip_status st, pclip_zeroshot_t *out) {
    if (st) {
        pclip_zeroshot_destroy(z);
        return st;
    }
    /* CLIP's prompt ensemble: the mean of normalised embeddings, normalised again
     * (the mean's 1/T factor cancels in the normalisation) */
    for (int32_t j = 0; j < z->count; j++) normalize_row(z->classes + (size_t)j * z->dim, z->dim);
    *out = z;
    return PCLIP_STATUS_OK;
}

/* ---- classes from labels and templates ---- */

typedef struct label_prompts {
    const char *const *labels;
    const char *const *templates;
    int32_t n_templates;
    char *heap; /* a prompt too long for the caller's buffer */
} label_prompts;

static const char *label_prompt(void *user, int64_t i, char *buf, size_t cap, size_t *len) {
    label_prompts *lp = user;
    const char *label = lp->labels[i / lp->n_templates];
    const char *t = lp->templates[i % lp->n_templates];
    const char *hole = strstr(t, "{}");
    size_t pre = (size_t)(hole - t), ll = strlen(label), post = strlen(hole + 2);
    size_t need = pre + ll + post + 1;
    char *dst = buf;
    if (need > cap) {
        pclip__free(lp->heap);
        if (!(lp->heap = pclip__malloc(need))) return NULL;
        dst = lp->heap;
    }
    memcpy(dst, t, pre);
    memcpy(dst + pre, label, ll);
    memcpy(dst + pre + ll, hole + 2, post + 1);
    *len = need - 1;
    return dst;
}

pclip_status pclip_zeroshot_create_labels(pclip_model_t m, pclip_backend_t b,
                                          const char *const *labels, int32_t n_labels,
                                          const char *const *templates, int32_t n_templates,
                                          pclip_zeroshot_t *out) {
    if (!m) return PCLIP_STATUS_INVALID_ARGUMENT;
    static const char *const default_template[] = {PCLIP_ZEROSHOT_TEMPLATE_DEFAULT};
    if (!templates && n_templates == 0) templates = default_template, n_templates = 1;
    if (!out || (n_labels > 0 && !labels) || (n_templates > 0 && !templates))
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "classify: NULL labels, templates or output");
    if (n_labels < 1)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "classify: the label list is empty");
    if (n_templates < 1)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "classify: the template list is empty");
    for (int32_t i = 0; i < n_labels; i++) {
        if (!labels[i] || !labels[i][0])
            return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "classify: label %d is empty",
                              (int)i + 1);
        /* a few thousand labels at most: the quadratic check costs nothing next to encoding */
        for (int32_t j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                  "classify: label \"%.200s\" is given twice (labels %d and %d)",
                                  labels[i], (int)j + 1, (int)i + 1);
    }
    for (int32_t i = 0; i < n_templates; i++) {
        const char *t = templates[i];
        const char *hole = t ? strstr(t, "{}") : NULL;
        if (!hole)
            return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "classify: template \"%.200s\" has no {} where the label goes",
                              t ? t : "(null)");
        if (strstr(hole + 2, "{}"))
            return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "classify: template \"%.200s\" has more than one {}", t);
    }
    pclip_zeroshot_t z = NULL;
    pclip_status st = zs_new(m, b, n_labels, &z);
    if (st) return st;
    label_prompts lp = {.labels = labels, .templates = templates, .n_templates = n_templates};
    st = encode_prompts(z, (int64_t)n_labels * n_templates, n_templates, label_prompt, &lp,
                        z->classes);
    pclip__free(lp.heap);
    return zs_finish(z, st, out);
}

/* ---- classes from texts ---- */

static const char *text_prompt(void *user, int64_t i, char *buf, size_t cap, size_t *len) {
    (void)buf, (void)cap;
    const char *t = ((const char *const *)user)[i];
    *len = strlen(t);
    return t;
}

pclip_status pclip_zeroshot_create_texts(pclip_model_t m, pclip_backend_t b,
                                         const char *const *texts, int32_t n,
                                         pclip_zeroshot_t *out) {
    if (!m) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (!out || (n > 0 && !texts))
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "score: NULL texts or output");
    if (n < 1) return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "score: no texts");
    for (int32_t i = 0; i < n; i++)
        if (!texts[i])
            return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT, "score: text %d is NULL",
                              (int)i + 1);
    pclip_zeroshot_t z = NULL;
    pclip_status st = zs_new(m, b, n, &z);
    if (st) return st;
    st = encode_prompts(z, n, 1, text_prompt, (void *)texts, z->classes);
    return zs_finish(z, st, out);
}

void pclip_zeroshot_destroy(pclip_zeroshot_t z) {
    if (!z) return;
    pclip__free(z->classes);
    pclip__free(z);
}

int32_t pclip_zeroshot_class_count(pclip_zeroshot_t z) { return z ? z->count : 0; }

const float *pclip_zeroshot_class_embeddings(pclip_zeroshot_t z) { return z ? z->classes : NULL; }

/* ---- scoring ---- */

/* One image: logits[count] and probs[count] (softmax, max subtracted). */
static void score_row(const pclip_zeroshot_t z, const float *image, float *logits, float *probs) {
    double ss = 0.0;
    for (int32_t k = 0; k < z->dim; k++) ss += (double)image[k] * image[k];
    double inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
    double mx = -INFINITY;
    for (int32_t j = 0; j < z->count; j++) {
        const float *c = z->classes + (size_t)j * z->dim;
        double dot = 0.0;
        for (int32_t k = 0; k < z->dim; k++) dot += (double)image[k] * c[k];
        logits[j] = (float)((double)z->scale * dot * inv);
        if (logits[j] > mx) mx = logits[j];
    }
    if (!probs) return;
    double sum = 0.0;
    for (int32_t j = 0; j < z->count; j++) sum += exp((double)logits[j] - mx);
    for (int32_t j = 0; j < z->count; j++) probs[j] = (float)(exp((double)logits[j] - mx) / sum);
}

pclip_status pclip_zeroshot_logits(pclip_zeroshot_t z, const float *image_embeds, int64_t n,
                                   float *logits, float *probs) {
    if (!z) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (n < 0 || (n > 0 && (!image_embeds || !logits)))
        return pclip__err(z->model->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "zero-shot: NULL embeddings or logits, or n < 0");
    for (int64_t i = 0; i < n; i++)
        score_row(z, image_embeds + (size_t)i * z->dim, logits + (size_t)i * z->count,
                  probs ? probs + (size_t)i * z->count : NULL);
    return PCLIP_STATUS_OK;
}

void pclip_zeroshot_rank(const float *probs, int32_t count, int32_t *order) {
    /* insertion sort: stable, and label counts are small */
    for (int32_t i = 0; i < count; i++) {
        int32_t j = i;
        while (j > 0 && probs[order[j - 1]] < probs[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* ---- image files ---- */

typedef struct files_run {
    pclip_zeroshot_t z;
    const pclip_embed_options *user_opt;
    uint8_t *skipped;  /* [n]: 1 for a file the skip callback got */
    int64_t next_in;   /* the input index of the next embedded row */
    float *out;        /* [2, count]: logits, probs */
    pclip_zeroshot_fn fn;
    void *user;
} files_run;

static void files_skip(void *user, const pclip_image_failure *f) {
    files_run *r = user;
    r->skipped[f->index] = 1;
    r->user_opt->skip(r->user_opt->skip_user, f);
}

static pclip_status files_rows(void *user, int64_t first, int32_t count, int32_t dim,
                               const float *rows) {
    (void)first, (void)dim;
    files_run *r = user;
    for (int32_t i = 0; i < count; i++) {
        if (r->skipped)
            while (r->skipped[r->next_in]) r->next_in++; /* skips of a batch come before its rows */
        score_row(r->z, rows + (size_t)i * r->z->dim, r->out, r->out + r->z->count);
        pclip_status st = r->fn(r->user, r->next_in++, r->z->count, r->out, r->out + r->z->count);
        if (st) return st;
    }
    return PCLIP_STATUS_OK;
}

pclip_status pclip_zeroshot_image_files(pclip_zeroshot_t z, const char *const *paths, int64_t n,
                                        const pclip_embed_options *opt, pclip_zeroshot_fn fn,
                                        void *user) {
    if (!z) return PCLIP_STATUS_INVALID_ARGUMENT;
    pclip_ctx_t ctx = z->model->ctx;
    if (!fn || n < 0 || (n > 0 && !paths))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "zero-shot: NULL callback or paths, or n < 0");
    pclip_embed_options o = opt ? *opt : (pclip_embed_options){0};
    o.flags = 0; /* raw projections: score_row normalises in double */
    files_run r = {.z = z, .user_opt = opt, .fn = fn, .user = user};
    r.out = pclip__malloc((size_t)2 * (size_t)z->count * sizeof *r.out);
    if (o.skip && n > 0) {
        r.skipped = pclip__calloc((size_t)n, 1);
        o.skip = files_skip;
        o.skip_user = &r;
    }
    pclip_status st;
    if (!r.out || (o.skip && n > 0 && !r.skipped))
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "zero-shot: out of memory");
    else
        st = pclip_embed_image_files(z->model, z->b, paths, n, &o, files_rows, &r);
    pclip__free(r.skipped);
    pclip__free(r.out);
    return st;
}

/* ---- text lists on disk ---- */

pclip_status pclip_lines_write(pclip_ctx_t ctx, const char *path, const char *const *lines,
                               int64_t n) {
    if (!path || n < 0 || (n > 0 && !lines))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "lines: NULL path or lines, or n < 0");
    for (int64_t i = 0; i < n; i++)
        if (!lines[i] || strpbrk(lines[i], "\r\n"))
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "'%s': line %lld %s, so the file could not be read back line by line",
                              path, (long long)i + 1,
                              lines[i] ? "holds a line break" : "is NULL");
    pclip__atomic_file f;
    pclip_status st = pclip__atomic_open(ctx, path, &f);
    for (int64_t i = 0; !st && i < n; i++) {
        st = pclip__atomic_write(ctx, &f, lines[i], strlen(lines[i]));
        if (!st) st = pclip__atomic_write(ctx, &f, "\n", 1);
    }
    if (!st) return pclip__atomic_commit(ctx, &f);
    pclip__atomic_abort(&f);
    return st;
}
