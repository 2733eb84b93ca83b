/* Image files to embeddings: the batcher (image/batch.c) decodes and
 * preprocesses batch k+1 on worker threads while this thread encodes batch k
 * with the model's vision tower, and each batch's rows go to the caller's
 * callback in input order. With opt->skip, files that fail are handed to it
 * and left out instead of stopping the run.
 *
 * It does not write files: the caller's callback decides where rows go (an
 * .npy writer, an index, a feature cache). */

#include "model/model.h"

pclip_status pclip_embed_image_files(pclip_model_t m, pclip_backend_t b, const char *const *paths,
                                     int64_t n, const pclip_embed_options *opt,
                                     pclip_embed_rows_fn fn, void *user) {
    if (!m) return PCLIP_STATUS_INVALID_ARGUMENT;
    pclip_embed_options o = opt ? *opt : (pclip_embed_options){0};
    if (!b || !fn || n < 0 || (n > 0 && !paths))
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "embed: NULL backend, callback or paths, or n < 0");
    if (o.batch_size == 0) o.batch_size = PCLIP_ENCODE_BATCH_DEFAULT;
    if (o.batch_size < 1 || o.batch_size > PCLIP_ENCODE_BATCH_MAX)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "embed: batch size %d is outside 1..%d", (int)o.batch_size,
                          PCLIP_ENCODE_BATCH_MAX);
    if (m->n_shards == 0)
        return pclip__err(m->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "model '%s' was loaded without its weights", m->dir);
    const pclip_tower_config *vc = &m->config.vision;
    const pclip_image_config *ic = &m->image_config;
    if (ic->crop_height != vc->image_size || ic->crop_width != vc->image_size)
        return pclip__err(m->ctx, PCLIP_STATUS_BAD_CONFIG,
                          "model '%s': preprocessor_config.json crops to %dx%d but "
                          "vision_config.image_size is %d",
                          m->dir, (int)ic->crop_width, (int)ic->crop_height, (int)vc->image_size);
    if (n == 0) return PCLIP_STATUS_OK;
    int32_t dim = (o.flags & PCLIP_ENCODE_POOLED) ? vc->hidden_size : pclip_model_embed_dim(m);
    int32_t rows_max = n < o.batch_size ? (int32_t)n : o.batch_size;
    float *rows = pclip__malloc((size_t)rows_max * (size_t)dim * sizeof *rows); /* [batch, dim] */
    if (!rows) return pclip__err(m->ctx, PCLIP_STATUS_OUT_OF_MEMORY, "embed: out of memory");
    const pclip_image_batcher_options bo = {.batch_size = o.batch_size,
                                            .threads = o.threads,
                                            .preprocess = o.preprocess,
                                            .skip_bad = o.skip != NULL};
    int64_t out_row = 0; /* rows handed to fn so far */
    pclip_image_batcher_t bt = NULL;
    pclip_status st = pclip_image_batcher_create(m->ctx, paths, n, ic, &bo, &bt);
    while (!st) {
        int64_t first;
        int32_t count;
        const float *pixels; /* [count, 3, S, S] */
        /* hands over batch k and starts decoding batch k + 1 */
        if ((st = pclip_image_batcher_next(bt, &first, &count, &pixels)) || !pixels) break;
        if (o.skip) {
            int32_t n_failed = 0;
            const pclip_image_failure *failed = pclip_image_batcher_failures(bt, &n_failed);
            for (int32_t i = 0; i < n_failed; i++) o.skip(o.skip_user, &failed[i]);
            first = out_row; /* rows are numbered among the embedded ones */
        }
        if (count == 0) continue; /* every file of this batch failed */
        st = pclip_model_encode_images_batched(m, b, pixels, count, o.batch_size, o.flags, rows);
        if (st) break;
        pclip__err_clear(m->ctx);
        if ((st = fn(user, first, count, dim, rows))) {
            if (!*pclip_ctx_last_error(m->ctx))
                pclip__err(m->ctx, st, "embed: the row callback refused rows %lld..%lld (%s)",
                           (long long)first, (long long)(first + count - 1),
                           pclip_status_name(st));
        }
        out_row += count;
    }
    pclip_image_batcher_destroy(bt);
    pclip__free(rows);
    return st;
}
