/* Exact search as graph ops on a backend: per chunk of the index's rows,
 *   scores [Q, C] = queries [Q, D] @ chunk [C, D]^T   (the matmul op)
 *   best [Q, 2 k'] = topk(scores, k')                 (the topk op)
 * with k' = min(kk, C), then the chunks' candidates are merged on the host
 * by (score descending, row ascending), as the CPU scan ranks them.
 *
 * The chunk is an input, written before each run: f32 rows as they lie in
 * the map, f16 and q8 rows decoded to f32 on the host first (the device
 * holds no copy of the index between searches, so an index larger than the
 * device's memory searches the same way). Chunks are at most CHUNK_BYTES of
 * f32 rows and of scores, and at most 2^24 rows (topk's column indices are
 * floats). Two graphs at most: full chunks and the last, shorter one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/backend.h"
#include "index.h"

#define CHUNK_BYTES ((int64_t)64 << 20)

typedef struct chunk_graph {
    pclip__graph *g;
    pclip__tensor *q, *c, *y;
    pclip__exec *e;
    int64_t rows;
    int32_t k;
} chunk_graph;

static void chunk_free(chunk_graph *cg) {
    pclip__exec_destroy(cg->e);
    pclip__graph_destroy(cg->g);
    memset(cg, 0, sizeof *cg);
}

static pclip_status chunk_build(pclip_ctx_t ctx, pclip_backend_t b, int64_t nq, int32_t dim,
                                int64_t rows, int32_t k, chunk_graph *cg) {
    memset(cg, 0, sizeof *cg);
    pclip_status st = pclip__graph_create(ctx, &cg->g);
    if (st) return st;
    const int64_t qne[2] = {nq, dim}, cne[2] = {rows, dim};
    cg->q = pclip__input(cg->g, "queries", PCLIP__DTYPE_F32, 2, qne);
    cg->c = pclip__input(cg->g, "chunk", PCLIP__DTYPE_F32, 2, cne);
    pclip__tensor *s = pclip__linear(cg->g, "scores", cg->q, cg->c, NULL, PCLIP_ACT_NONE, NULL);
    cg->y = pclip__topk(cg->g, "best", s, k);
    st = cg->y ? pclip__graph_output(cg->g, cg->y) : cg->g->status;
    if (!st) st = pclip__exec_create(b, cg->g, &cg->e);
    if (st) {
        chunk_free(cg);
        return st ? st : PCLIP_STATUS_INTERNAL;
    }
    cg->rows = rows;
    cg->k = k;
    return PCLIP_STATUS_OK;
}

static int cand_cmp(const void *pa, const void *pb) {
    const pclip__index_cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

bool pclip__index_graph_search_fits(int64_t kk) { return kk >= 1 && kk <= PCLIP__TOPK_MAX; }

pclip_status pclip__index_graph_search(pclip_ctx_t ctx, pclip_backend_t b, const uint8_t *rows,
                                       int64_t n, size_t row_bytes, pclip_index_dtype dt,
                                       int32_t dim, const float *queries, int64_t nq, int64_t kk,
                                       int64_t chunk_rows, pclip__index_cand *out) {
    if (!b || kk < 1 || kk > n || nq < 1 || dim < 1 || !pclip__index_graph_search_fits(kk))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "search: bad sizes");
    /* rows per chunk: within CHUNK_BYTES of f32 rows and of scores, at least kk */
    int64_t per = CHUNK_BYTES / ((int64_t)dim * 4);
    int64_t per_q = CHUNK_BYTES / (nq * 4);
    if (per_q < per) per = per_q;
    if (per > PCLIP__TOPK_MAX_COLS) per = PCLIP__TOPK_MAX_COLS;
    if (chunk_rows > 0 && per > chunk_rows) per = chunk_rows;
    if (per < kk) per = kk;
    if (per > n) per = n;
    const int64_t n_chunks = (n + per - 1) / per, last = n - (n_chunks - 1) * per;
    const bool direct = dt == PCLIP_INDEX_F32 && row_bytes == (size_t)dim * sizeof(float);
    float *buf = direct ? NULL : pclip__malloc((size_t)per * (size_t)dim * sizeof *buf);
    /* per query: the best kk so far, then the chunk's (at most kk) */
    pclip__index_cand *all = pclip__malloc((size_t)nq * 2 * (size_t)kk * sizeof *all);
    float *best = pclip__malloc((size_t)nq * 2 * (size_t)kk * sizeof *best);
    int64_t *fill = pclip__calloc((size_t)nq, sizeof *fill);
    chunk_graph full = {0}, tail = {0};
    pclip_status st = PCLIP_STATUS_OK;
    if ((!direct && !buf) || !all || !best || !fill) {
        st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "search: out of memory for %lld queries",
                        (long long)nq);
        goto done;
    }
    st = chunk_build(ctx, b, nq, dim, per, (int32_t)kk, &full);
    if (!st && last != per)
        st = chunk_build(ctx, b, nq, dim, last, (int32_t)(kk < last ? kk : last), &tail);
    for (int64_t ci = 0; ci < n_chunks && !st; ci++) {
        const int64_t first = ci * per, cnt = ci == n_chunks - 1 ? last : per;
        chunk_graph *cg = cnt == per ? &full : &tail;
        const uint8_t *src = rows + (size_t)first * row_bytes;
        if (!direct)
            for (int64_t r = 0; r < cnt; r++)
                pclip__index_decode_row(dt, src + (size_t)r * row_bytes, dim,
                                        buf + (size_t)r * (size_t)dim);
        if ((st = pclip__exec_write(cg->e, cg->q, queries)) ||
            (st = pclip__exec_write(cg->e, cg->c, direct ? (const void *)src : buf)) ||
            (st = pclip__exec_run(cg->e)) || (st = pclip__exec_read(cg->e, cg->y, best)))
            break;
        const int32_t k = cg->k;
        for (int64_t q = 0; q < nq; q++) {
            const float *v = best + (size_t)q * 2 * (size_t)k;
            pclip__index_cand *a = all + (size_t)q * 2 * (size_t)kk;
            for (int32_t i = 0; i < k; i++) {
                float sc = v[i];
                if (sc != sc) sc = -INFINITY; /* as the CPU scan */
                a[fill[q]++] = (pclip__index_cand){sc, first + (int64_t)v[k + i]};
            }
            qsort(a, (size_t)fill[q], sizeof *a, cand_cmp);
            if (fill[q] > kk) fill[q] = kk;
        }
    }
    for (int64_t q = 0; q < nq && !st; q++)
        memcpy(out + (size_t)q * (size_t)kk, all + (size_t)q * 2 * (size_t)kk,
               (size_t)kk * sizeof *out);
done:
    chunk_free(&full);
    chunk_free(&tail);
    pclip__free(buf);
    pclip__free(all);
    pclip__free(best);
    pclip__free(fill);
    return st;
}
