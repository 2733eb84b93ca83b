/* A loaded model written back out as a Hugging Face CLIP model directory
 * that transformers' CLIPModel.from_pretrained and portclip both load: one
 * model.safetensors with the checkpoint's tensors byte for byte, some
 * replaced by float32 ones, plus the directory's config, tokenizer and
 * preprocessor files copied unchanged. It does not train anything. */
#include "model/export.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* The files a model directory may carry besides the weights; config.json
 * must be there, the others are copied when present. */
static const char *const copied_files[] = {"config.json",
                                           "vocab.json",
                                           "merges.txt",
                                           "tokenizer.json",
                                           "tokenizer_config.json",
                                           "special_tokens_map.json",
                                           "preprocessor_config.json"};

static pclip_status copy_file(pclip_ctx_t ctx, const char *from, const char *to) {
    char *text;
    size_t len;
    pclip_status st =
        pclip__read_file(ctx, from, "model file", PCLIP_LIMIT_JSON_BYTES, &text, &len);
    if (st) return st;
    pclip__atomic_file f;
    if (!(st = pclip__atomic_open(ctx, to, &f))) {
        st = pclip__atomic_write(ctx, &f, text, len);
        if (st)
            pclip__atomic_abort(&f);
        else
            st = pclip__atomic_commit(ctx, &f);
    }
    pclip__free(text);
    return st;
}

static bool same_shape(const pclip__st_tensor *t, const pclip__export_tensor *r) {
    size_t count = 1;
    for (int d = 0; d < r->ndim; d++) count *= (size_t)(r->shape[d] < 0 ? 0 : r->shape[d]);
    if (t->count == 1 && count == 1 && t->ndim <= 1 && r->ndim <= 1) return true;
    if (t->ndim != r->ndim) return false;
    for (int d = 0; d < r->ndim; d++)
        if (t->shape[d] != r->shape[d]) return false;
    return true;
}

pclip_status pclip__export_hf_dir(struct pclip_model *m, const char *out_dir, size_t n,
                                  const pclip__export_tensor *rep) {
    pclip_ctx_t ctx = m ? m->ctx : NULL;
    if (!m || !out_dir || (n && !rep))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "export: NULL argument");
    if (m->n_shards == 0)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "export: model '%s' was loaded without its weights", m->dir);
    /* every replacement names a checkpoint tensor of the same shape, once */
    for (size_t i = 0; i < n; i++) {
        const pclip__st_tensor *t = rep[i].name ? pclip__model_find(m, rep[i].name) : NULL;
        if (!t)
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "export: replacement '%s' is not a tensor of model '%s'",
                              rep[i].name ? rep[i].name : "(null)", m->dir);
        if (rep[i].ndim < 0 || rep[i].ndim > PCLIP_LIMIT_TENSOR_DIMS || !same_shape(t, &rep[i]) ||
            (!rep[i].data && t->count)) {
            char want[96], got[96];
            pclip__shape_str(want, sizeof want, t->shape, t->ndim);
            pclip__shape_str(
                got, sizeof got, rep[i].shape,
                rep[i].ndim < 0 || rep[i].ndim > PCLIP_LIMIT_TENSOR_DIMS ? 0 : rep[i].ndim);
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "export: replacement '%s' is %s (or has no data), the checkpoint's "
                              "tensor is %s",
                              rep[i].name, got, want);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(rep[i].name, rep[j].name) == 0)
                return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                                  "export: tensor '%s' is replaced twice", rep[i].name);
    }
    /* the output directory: created when absent, never the model's own */
    struct stat so, sm;
    if (stat(out_dir, &so) != 0) {
        if (errno != ENOENT || mkdir(out_dir, 0777) != 0 || stat(out_dir, &so) != 0) {
            int e = errno;
            return pclip__err(ctx, PCLIP_STATUS_IO, "export: cannot create directory '%s': %s",
                              out_dir, strerror(e));
        }
    }
    if (!S_ISDIR(so.st_mode))
        return pclip__err(ctx, PCLIP_STATUS_IO, "export: '%s' exists and is not a directory",
                          out_dir);
    if (stat(m->dir, &sm) == 0 && sm.st_dev == so.st_dev && sm.st_ino == so.st_ino)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "export: output directory '%s' is the model's own directory '%s'; "
                          "write the new model elsewhere",
                          out_dir, m->dir);

    size_t total = 0;
    for (size_t i = 0; i < m->n_shards; i++) total += m->shards[i]->n_tensors;
    pclip__st_out *outs = pclip__calloc(total ? total : 1, sizeof *outs);
    char *path = NULL;
    pclip_status st = PCLIP_STATUS_OK;
    if (!outs) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "export: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < m->n_shards; i++) {
        for (size_t j = 0; j < m->shards[i]->n_tensors; j++, k++) {
            const pclip__st_tensor *t = &m->shards[i]->tensors[j];
            pclip__st_out *o = &outs[k];
            const pclip__export_tensor *r = NULL;
            for (size_t q = 0; q < n && !r; q++)
                if (strcmp(rep[q].name, t->name) == 0) r = &rep[q];
            o->name = t->name;
            if (r) {
                o->dtype = PCLIP__ST_F32;
                o->ndim = r->ndim;
                for (int d = 0; d < r->ndim; d++) o->shape[d] = r->shape[d];
                o->data = r->data;
            } else {
                o->dtype = t->dtype;
                o->ndim = t->ndim;
                for (int d = 0; d < t->ndim; d++) o->shape[d] = t->shape[d];
                o->data = t->data;
            }
        }
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if (!(path = pclip__path_join(out_dir, "model.safetensors"))) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "export: out of memory");
        goto done;
    }
    if ((st = pclip__st_write(ctx, path, total, outs, meta))) goto done;
    for (size_t i = 0; i < sizeof copied_files / sizeof copied_files[0]; i++) {
        char *from = pclip__path_join(m->dir, copied_files[i]);
        char *to = pclip__path_join(out_dir, copied_files[i]);
        if (!from || !to)
            st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "export: out of memory");
        else if (i == 0 || pclip__file_exists(from))
            st = copy_file(ctx, from, to);
        pclip__free(from);
        pclip__free(to);
        if (st) goto done;
    }
done:
    pclip__free(path);
    pclip__free(outs);
    return st;
}
