/* The image index and search: rankings against PyTorch's embeddings and
 * against embeddings computed here, every dtype, the scan kernels of each
 * SIMD level against each other, the incremental update (new, changed,
 * touched, deleted files), the resume after a `portclip index` killed with
 * SIGKILL in the middle of a build, three shards merged against one build,
 * the lock against a second writer, and bad input: corrupt or truncated
 * database and vector file, another model, an empty index, top-k 0 and
 * top-k past the index. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* flock */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apps/index.h" /* rows and paths read back directly */
#include "testutil.h"

static pclip_ctx_t ctx;
static pclip_model_t model;
static pclip_backend_t cpu;

static void setup(void) {
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &model),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &cpu), PCLIP_STATUS_OK);
}
static void teardown(void) {
    pclip_model_destroy(model);
    pclip_backend_destroy(cpu);
    pclip_ctx_destroy(ctx);
}

/* ---- helpers ---- */

/* pclip_test_tmpdir's buffer is static and reused by pclip_test_exec: copy it */
#define TMPDIR_COPY(name)                                                                          \
    char name[256];                                                                                \
    snprintf(name, sizeof name, "%s", pclip_test_tmpdir())

static void copy_file(const char *src, const char *dst) {
    size_t n;
    char *data = pclip_test_read_file(src, &n);
    FILE *f = fopen(dst, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", dst);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
    free(data);
}

/* The fixture images (sorted names), as a list of strings. */
static const char *const fixture_images[] = {
    "j_32x32.jpg",        "j_47x32.jpg",           "j_cmyk_64x48.jpg",
    "j_grey_64x48.jpg",   "j_landscape_97x61.jpg", "j_portrait_45x80.jpg",
    "j_rgb420_64x48.jpg", "j_rgb444_64x48.jpg",    "p_32x32.png",
    "p_grey1_64x48.png",  "p_grey16_64x48.png",    "p_la8_64x48.png",
    "p_pal8_64x48.png",   "p_rgb_64x48.png",       "p_rgba_portrait_45x80.png",
    "j_odd_37x23.jpg"};
#define N_FIXTURE ((int)(sizeof fixture_images / sizeof fixture_images[0]))

/* Copies n images (cycling through the fixtures, so content repeats for n
 * past N_FIXTURE) to dir/img_NNN.ext; paths[i] gets each path (malloc'd). */
static void make_images(const char *dir, int n, char **paths) {
    for (int i = 0; i < n; i++) {
        const char *name = fixture_images[i % N_FIXTURE];
        char src[64], dst[512];
        snprintf(src, sizeof src, "images/%s", name);
        snprintf(dst, sizeof dst, "%s/img_%03d%s", dir, i, strrchr(name, '.'));
        copy_file(pclip_test_fixture(src), dst);
        paths[i] = strdup(dst);
    }
}

static void free_paths(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
}

static char *join(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 2);
    sprintf(s, "%s/%s", a, b);
    return s;
}

static pclip_status build(const char *index, char *const *paths, int n, pclip_index_dtype dt,
                          pclip_index_report *r) {
    pclip_index_options o = {.dtype = dt, .chunk = 5};
    return pclip_index_update(ctx, index, model, cpu, (const char *const *)paths, n, &o, r);
}

/* Every live row of an index: path -> decoded vector, sorted by path. */
typedef struct entry {
    char *path;
    float v[64];
} entry;

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const entry *)a)->path, ((const entry *)b)->path);
}

static entry *read_all(const char *index, int64_t *count) {
    pclip_index_t x;
    ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
    ck_assert_int_le(x->dim, 64);
    entry *e = calloc((size_t)x->count + 1, sizeof *e);
    int64_t n = 0;
    for (int64_t r = 0; r < x->rows; r++) {
        pclip_status st;
        char *p = pclip__index_path_of_row(x, r, &st);
        ck_assert_int_eq(st, PCLIP_STATUS_OK);
        if (!p) continue;
        ck_assert_int_lt(n, x->count);
        e[n].path = strdup(p);
        pclip__free(p);
        pclip__index_decode_row(x->dtype, x->rows_data + (size_t)r * x->row_bytes, x->dim, e[n].v);
        n++;
    }
    ck_assert_int_eq(n, x->count);
    pclip_index_close(x);
    qsort(e, (size_t)n, sizeof *e, entry_cmp);
    *count = n;
    return e;
}

static void free_entries(entry *e, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(e[i].path);
    free(e);
}

/* Two indexes hold the same paths with the same vectors (up to tol: the
 * encoder's rows differ in the last bits between batch compositions). */
static void assert_same_index(const char *a, const char *b, float tol) {
    int64_t na, nb;
    entry *ea = read_all(a, &na), *eb = read_all(b, &nb);
    ck_assert_int_eq(na, nb);
    int32_t dim = pclip_model_config(model)->projection_dim;
    for (int64_t i = 0; i < na; i++) {
        ck_assert_str_eq(ea[i].path, eb[i].path);
        for (int32_t j = 0; j < dim; j++)
            ck_assert_msg(fabsf(ea[i].v[j] - eb[i].v[j]) <= tol, "%s[%d]: %g in %s, %g in %s",
                          ea[i].path, (int)j, (double)ea[i].v[j], a, (double)eb[i].v[j], b);
    }
    free_entries(ea, na);
    free_entries(eb, nb);
}

/* rows of the embed callback, kept */
static pclip_status keep_rows(void *user, int64_t first, int32_t count, int32_t dim,
                              const float *rows) {
    memcpy((float *)user + first * dim, rows, (size_t)count * (size_t)dim * sizeof *rows);
    return PCLIP_STATUS_OK;
}

static int64_t file_size(const char *path) {
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    return (int64_t)sb.st_size;
}

/* ---- rankings ---- */

/* The index of the PyTorch reference's images ranks them for the reference
 * captions as PyTorch's embeddings do, with PyTorch's cosines. */
START_TEST(test_rank_matches_pytorch) {
    cJSON *ref = pclip_test_load_json("tiny-clip/reference/reference.json");
    cJSON *imgs = cJSON_GetObjectItem(ref, "images"), *caps = cJSON_GetObjectItem(ref, "captions");
    cJSON *cidx = cJSON_GetObjectItem(ref, "caption_indices");
    int ni = cJSON_GetArraySize(imgs), nt = cJSON_GetArraySize(cidx);
    TMPDIR_COPY(dir);
    char *paths[16];
    for (int i = 0; i < ni; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "images/%s", cJSON_GetArrayItem(imgs, i)->valuestring);
        paths[i] = strdup(pclip_test_fixture(rel));
    }
    pclip_test_npy ie, te;
    pclip_test_npy_read(pclip_test_fixture("tiny-clip/reference/image_embeds.npy"), &ie);
    pclip_test_npy_read(pclip_test_fixture("tiny-clip/reference/text_embeds.npy"), &te);
    int32_t dim = (int32_t)ie.shape[1];
    char *index = join(dir, "ix");
    ck_assert_status(ctx, build(index, paths, ni, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_OK);
    pclip_index_t x;
    ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
    const char *texts[32];
    for (int t = 0; t < nt; t++)
        texts[t] = cJSON_GetArrayItem(caps, t)->valuestring; /* text_embeds' rows */
    pclip_index_hit *hits = calloc((size_t)nt * (size_t)ni, sizeof *hits);
    int64_t n_hits;
    ck_assert_status(ctx, pclip_index_search_text(x, model, cpu, texts, nt, ni, hits, &n_hits),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(n_hits, ni);
    for (int t = 0; t < nt; t++) {
        for (int r = 0; r < ni; r++) {
            const pclip_index_hit *h = &hits[t * ni + r];
            int img = -1;
            for (int i = 0; i < ni; i++)
                if (strcmp(h->path, paths[i]) == 0) img = i;
            ck_assert_int_ge(img, 0);
            /* PyTorch's cosine of this text and this image */
            double a = 0, na = 0, nb = 0;
            for (int32_t j = 0; j < dim; j++) {
                double u = te.data[t * dim + j], v = ie.data[img * dim + j];
                a += u * v;
                na += u * u;
                nb += v * v;
            }
            double want = a / sqrt(na * nb);
            ck_assert_msg(fabs(h->score - want) < 2e-5, "text %d rank %d (%s): %g, PyTorch %g", t,
                          r, h->path, (double)h->score, want);
            if (r > 0) ck_assert(h->score <= hits[t * ni + r - 1].score);
        }
    }
    free(hits);
    pclip_index_close(x);
    pclip_test_npy_free(&ie);
    pclip_test_npy_free(&te);
    free(index);
    for (int i = 0; i < ni; i++) free(paths[i]);
    cJSON_Delete(ref);
}
END_TEST

/* For each dtype: the scores of a search equal the cosines of the embeddings
 * computed here (exactly for f32, within the dtype's rounding otherwise), the
 * order is by score, and f16/q8 keep f32's top result. */
START_TEST(test_rank_matches_direct) {
    static const pclip_index_dtype dts[] = {PCLIP_INDEX_F32, PCLIP_INDEX_F16, PCLIP_INDEX_Q8};
    static const float tols[] = {2e-6f, 2e-3f, 2e-2f};
    pclip_index_dtype dt = dts[_i];
    TMPDIR_COPY(dir);
    enum { N = 16 };
    char *paths[N];
    make_images(dir, N, paths);
    char *index = join(dir, "ix");
    pclip_index_report r;
    ck_assert_status(ctx, build(index, paths, N, dt, &r), PCLIP_STATUS_OK);
    ck_assert_int_eq(r.added, N);
    ck_assert_int_eq(r.count, N);
    int32_t dim = pclip_model_config(model)->projection_dim;
    float *emb = malloc((size_t)N * (size_t)dim * sizeof *emb);
    pclip_embed_options eo = {.flags = PCLIP_ENCODE_NORMALIZE};
    ck_assert_status(
        ctx,
        pclip_embed_image_files(model, cpu, (const char *const *)paths, N, &eo, keep_rows, emb),
        PCLIP_STATUS_OK);
    pclip_index_t x;
    ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
    pclip_index_info info;
    pclip_index_get_info(x, &info);
    ck_assert_int_eq(info.dtype, dt);
    ck_assert_int_eq(info.count, N);
    /* image queries: each image's own embedding */
    pclip_index_hit hits[N * N];
    int64_t n_hits;
    ck_assert_status(ctx, pclip_index_search(x, emb, N, dim, N, hits, &n_hits), PCLIP_STATUS_OK);
    ck_assert_int_eq(n_hits, N);
    for (int q = 0; q < N; q++) {
        for (int k = 0; k < N; k++) {
            const pclip_index_hit *h = &hits[q * N + k];
            int i = -1;
            for (int j = 0; j < N; j++)
                if (strcmp(paths[j], h->path) == 0) i = j;
            ck_assert_int_ge(i, 0);
            double want = 0;
            for (int32_t j = 0; j < dim; j++) want += (double)emb[q * dim + j] * emb[i * dim + j];
            ck_assert_msg(fabs(h->score - want) <= tols[_i], "%s: query %d rank %d: %g, direct %g",
                          pclip_index_dtype_name(dt), q, k, (double)h->score, want);
            if (k > 0) ck_assert(h->score <= hits[q * N + k - 1].score);
        }
        /* the image itself (or a file with the same content) comes first */
        double top = 0;
        for (int32_t j = 0; j < dim; j++) top += (double)emb[q * dim + j] * emb[q * dim + j];
        ck_assert(fabs(hits[q * N].score - top) <= tols[_i]);
    }
    pclip_index_close(x);
    free(emb);
    free(index);
    free_paths(paths, N);
}
END_TEST

/* The AVX-512, AVX2 and plain C scans give the same results (dim 24: a
 * masked or scalar tail at every level). */
START_TEST(test_simd_levels_agree) {
    TMPDIR_COPY(dir);
    enum { N = 16 };
    char *paths[N];
    make_images(dir, N, paths);
    static const pclip_index_dtype dts[] = {PCLIP_INDEX_F32, PCLIP_INDEX_F16, PCLIP_INDEX_Q8};
    for (int d = 0; d < 3; d++) {
        char name[16];
        snprintf(name, sizeof name, "ix%d", d);
        char *index = join(dir, name);
        ck_assert_status(ctx, build(index, paths, N, dts[d], NULL), PCLIP_STATUS_OK);
        pclip_index_t x;
        ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
        float q[5 * 24];
        for (int i = 0; i < 5 * 24; i++) q[i] = sinf(0.7f * (float)i + 0.3f);
        static const char *const levels[] = {"scalar", "avx2", "avx512"};
        /* 3 queries: f16/q8 rows dotted as they are; 5: rows converted once */
        for (int nq = 3; nq <= 5; nq += 2) {
            pclip_index_hit ref[5 * 5];
            float ref_scores[5 * 5];
            int64_t ref_rows[5 * 5];
            for (int l = 0; l < 3; l++) {
                setenv("PORTCLIP_CPU_SIMD", levels[l], 1);
                pclip_index_hit hits[5 * 5];
                int64_t n;
                ck_assert_status(ctx, pclip_index_search(x, q, nq, 24, 5, hits, &n),
                                 PCLIP_STATUS_OK);
                ck_assert_int_eq(n, 5);
                for (int i = 0; i < nq * 5; i++) {
                    if (l == 0) {
                        ref[i] = hits[i];
                        ref_scores[i] = hits[i].score;
                        ref_rows[i] = hits[i].row;
                        continue;
                    }
                    /* q8 rows dotted as they are: integer block sums, one
                     * combination, the same bits at every level */
                    float tol = dts[d] == PCLIP_INDEX_Q8 && nq < 4 ? 0.0f : 1e-5f;
                    ck_assert_msg(fabsf(hits[i].score - ref_scores[i]) <=
                                      tol * (1 + fabsf(ref_scores[i])),
                                  "%s %s hit %d: %g, scalar %g", pclip_index_dtype_name(dts[d]),
                                  levels[l], i, (double)hits[i].score, (double)ref_scores[i]);
                    /* same row, unless two scores tie within the rounding */
                    if (hits[i].row != ref_rows[i])
                        ck_assert(fabsf(hits[i].score - ref_scores[i]) <= tol);
                }
            }
            (void)ref;
        }
        unsetenv("PORTCLIP_CPU_SIMD");
        pclip_index_close(x);
        free(index);
    }
    free_paths(paths, N);
}
END_TEST

/* ---- updates ---- */

START_TEST(test_incremental_update) {
    TMPDIR_COPY(dir);
    enum { N = 12 };
    char *paths[N + 1];
    make_images(dir, N + 1, paths); /* the last one is added later */
    char *index = join(dir, "ix");
    pclip_index_report r;
    ck_assert_status(ctx, build(index, paths, N, PCLIP_INDEX_F32, &r), PCLIP_STATUS_OK);
    ck_assert_int_eq(r.added, N);
    /* again, nothing changed */
    ck_assert_status(ctx, build(index, paths, N, PCLIP_INDEX_DTYPE_DEFAULT, &r), PCLIP_STATUS_OK);
    ck_assert_int_eq(r.added, 0);
    ck_assert_int_eq(r.changed, 0);
    ck_assert_int_eq(r.unchanged, N);
    /* paths[0]: new content; paths[1]: same bytes, new time; paths[2]:
     * deleted; paths[N]: new */
    copy_file(pclip_test_fixture("images/p_rgb_adam7_landscape_97x61.png"), paths[0]);
    struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    ck_assert_int_eq(utimensat(AT_FDCWD, paths[1], times, 0), 0);
    ck_assert_int_eq(unlink(paths[2]), 0);
    char *now[N];
    int m = 0;
    for (int i = 0; i <= N; i++)
        if (i != 2) now[m++] = paths[i];
    ck_assert_status(ctx, build(index, now, m, PCLIP_INDEX_DTYPE_DEFAULT, &r), PCLIP_STATUS_OK);
    ck_assert_int_eq(r.added, 1);
    ck_assert_int_eq(r.changed, 1);
    ck_assert_int_eq(r.removed, 1);
    ck_assert_int_eq(r.unchanged, N - 2);
    ck_assert_int_eq(r.count, N);
    /* the same as an index built from scratch; compacted: no dead rows */
    char *fresh = join(dir, "fresh");
    ck_assert_status(ctx, build(fresh, now, m, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_OK);
    assert_same_index(index, fresh, 1e-5f);
    char *vec = join(index, "vectors.bin");
    ck_assert_int_eq(file_size(vec), 64 + N * 24 * 4);
    /* and a search finds the changed file by its new content */
    int32_t dim = 24;
    float q[24];
    pclip_embed_options eo = {.flags = PCLIP_ENCODE_NORMALIZE};
    ck_assert_status(
        ctx,
        pclip_embed_image_files(model, cpu, (const char *const *)&paths[0], 1, &eo, keep_rows, q),
        PCLIP_STATUS_OK);
    pclip_index_t x;
    ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
    pclip_index_hit h;
    int64_t n;
    ck_assert_status(ctx, pclip_index_search(x, q, 1, dim, 1, &h, &n), PCLIP_STATUS_OK);
    ck_assert_str_eq(h.path, paths[0]);
    ck_assert(h.score > 0.9999f);
    pclip_index_close(x);
    /* a file that changes into something unreadable leaves the index */
    copy_file(pclip_test_fixture("bad/truncated.jpg"), paths[3]);
    ck_assert_status(ctx, build(index, now, m, PCLIP_INDEX_DTYPE_DEFAULT, &r), PCLIP_STATUS_OK);
    ck_assert_int_eq(r.skipped, 1);
    ck_assert_int_eq(r.removed, 1);
    ck_assert_int_eq(r.count, N - 1);
    ck_assert_int_eq(file_size(vec), 64 + (N - 1) * 24 * 4);
    free(vec);
    free(fresh);
    free(index);
    free_paths(paths, N + 1);
}
END_TEST

/* Bad files are skipped and reported (or fail the update with strict);
 * the good ones are indexed. */
typedef struct skips {
    int n;
    char all[2048];
} skips;
static void on_skip(void *user, const char *path, const char *reason) {
    skips *s = user;
    s->n++;
    size_t used = strlen(s->all);
    snprintf(s->all + used, sizeof s->all - used, "%s: %s\n", path, reason);
}

START_TEST(test_skips_bad_files) {
    TMPDIR_COPY(dir);
    char *paths[8];
    make_images(dir, 5, paths);
    paths[5] = strdup(pclip_test_fixture("bad/truncated.jpg"));
    paths[6] = strdup(pclip_test_fixture("bad/text.txt"));
    paths[7] = join(dir, "missing.jpg");
    /* bad files in the middle of a batch */
    char *order[8] = {paths[0], paths[5], paths[1], paths[6],
                      paths[2], paths[7], paths[3], paths[4]};
    char *index = join(dir, "ix");
    skips s = {0};
    pclip_index_options o = {.batch_size = 4, .chunk = 3, .skipped = on_skip, .user = &s};
    pclip_index_report r;
    ck_assert_status(
        ctx, pclip_index_update(ctx, index, model, cpu, (const char *const *)order, 8, &o, &r),
        PCLIP_STATUS_OK);
    ck_assert_int_eq(r.skipped, 3);
    ck_assert_int_eq(s.n, 3);
    ck_assert_int_eq(r.count, 5);
    ck_assert_ptr_nonnull(strstr(s.all, "missing.jpg"));
    ck_assert_ptr_nonnull(strstr(s.all, "text.txt"));
    ck_assert_ptr_nonnull(strstr(s.all, "truncated.jpg"));
    char *one = join(dir, "one");
    ck_assert_status(ctx, build(one, paths, 5, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_OK);
    assert_same_index(index, one, 1e-5f);
    /* strict: the first bad file fails the update, naming it */
    char *strict = join(dir, "strict");
    o.strict = 1;
    ck_assert_status(
        ctx, pclip_index_update(ctx, strict, model, cpu, (const char *const *)order, 8, &o, &r),
        PCLIP_STATUS_IO);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "missing.jpg"));
    /* without the missing file: the truncated JPEG fails it */
    order[5] = paths[4];
    ck_assert_status(
        ctx, pclip_index_update(ctx, strict, model, cpu, (const char *const *)order, 7, &o, &r),
        PCLIP_STATUS_BAD_FORMAT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "truncated.jpg"));
    free(strict);
    free(one);
    free(index);
    free_paths(paths, 8);
}
END_TEST

/* Progress: at the start, after each encoder batch, after each commit;
 * done never goes back and ends at total. */
typedef struct progress_log {
    int n;
    int64_t done[32], total;
} progress_log;
static void on_progress(void *user, const pclip_index_progress *p) {
    progress_log *l = user;
    if (l->n < 32) l->done[l->n++] = p->done;
    l->total = p->total;
}

START_TEST(test_progress) {
    TMPDIR_COPY(dir);
    char *paths[10];
    make_images(dir, 10, paths);
    char *index = join(dir, "ix");
    progress_log l = {0};
    pclip_index_options o = {.batch_size = 4, .chunk = 100, .progress = on_progress, .user = &l};
    ck_assert_status(
        ctx, pclip_index_update(ctx, index, model, cpu, (const char *const *)paths, 10, &o, NULL),
        PCLIP_STATUS_OK);
    ck_assert_int_eq(l.total, 10);
    ck_assert_int_eq(l.n, 4);
    static const int64_t want[] = {0, 4, 8, 10};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(l.done[i], want[i]);
    free(index);
    free_paths(paths, 10);
}
END_TEST

/* ---- the CLI: a build killed in the middle resumes ---- */

static int run_cli(const char *const *args, char **out, char **err) {
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)pclip_test_cli();
    for (; args[n - 1]; n++) argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    return pclip_test_exec(argv, out, err);
}

static int64_t index_count(const char *index) {
    pclip_ctx_t c2;
    pclip_ctx_create(&c2);
    pclip_index_t x;
    int64_t n = -1;
    if (pclip_index_open(c2, index, &x) == PCLIP_STATUS_OK) {
        pclip_index_info info;
        pclip_index_get_info(x, &info);
        n = info.count;
        pclip_index_close(x);
    }
    pclip_ctx_destroy(c2);
    return n;
}

START_TEST(test_kill_and_resume) {
    TMPDIR_COPY(dir);
    enum { N = 24 };
    char *paths[N];
    char *imgs = join(dir, "imgs");
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    make_images(imgs, N, paths);
    char *index = join(dir, "ix");
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        setenv("PORTCLIP_INDEX_TEST_DELAY_MS", "150", 1);
        execl(pclip_test_cli(), pclip_test_cli(), "index", "--model",
              pclip_test_fixture("tiny-clip"), "--output", index, "--chunk", "3", "--backend",
              "cpu", imgs, (char *)NULL);
        _exit(127);
    }
    ck_assert_int_gt(pid, 0);
    /* wait for two chunks to be committed, then kill -9 */
    int64_t seen = -1;
    for (int i = 0; i < 400 && seen < 6; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        seen = index_count(index);
    }
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status), "the run ended before it was killed (%d rows)", (int)seen);
    /* what is on disk is a consistent, partial index */
    int64_t partial = index_count(index);
    ck_assert_int_ge(partial, 6);
    ck_assert_int_lt(partial, N);
    /* garbage past the committed rows, as a write cut short leaves it */
    char *vec = join(index, "vectors.bin");
    FILE *f = fopen(vec, "ab");
    fputs("half a row", f);
    fclose(f);
    ck_assert_int_eq(index_count(index), partial);
    /* the next run resumes: only the rest is embedded */
    char *err = NULL;
    const char *args[] = {"index",    "--model", pclip_test_fixture("tiny-clip"),
                          "--output", index,     "--backend",
                          "cpu",      imgs,      NULL};
    ck_assert_int_eq(run_cli(args, NULL, &err), 0);
    char want[64];
    snprintf(want, sizeof want, "%lld added", (long long)(N - partial));
    ck_assert_msg(strstr(err, want) != NULL, "expected '%s' in: %s", want, err);
    free(err);
    ck_assert_int_eq(index_count(index), N);
    ck_assert_int_eq(file_size(vec), 64 + N * 24 * 4);
    /* equal to an index built in one go */
    char *one = join(dir, "one");
    const char *args1[] = {"index",    "--model", pclip_test_fixture("tiny-clip"),
                           "--output", one,       "--backend",
                           "cpu",      "--quiet", imgs,
                           NULL};
    ck_assert_int_eq(run_cli(args1, NULL, NULL), 0);
    assert_same_index(index, one, 1e-5f);
    free(one);
    free(vec);
    free(index);
    free(imgs);
    free_paths(paths, N);
}
END_TEST

/* ---- shards ---- */

START_TEST(test_shards_merge) {
    TMPDIR_COPY(dir);
    enum { N = 20 };
    char *paths[N];
    make_images(dir, N, paths);
    char *shard[3];
    int64_t total = 0;
    for (int k = 0; k < 3; k++) {
        char name[16];
        snprintf(name, sizeof name, "shard%d", k);
        shard[k] = join(dir, name);
        pclip_index_options o = {.dtype = PCLIP_INDEX_F16, .shard_index = k, .shard_count = 3};
        pclip_index_report r;
        ck_assert_status(
            ctx,
            pclip_index_update(ctx, shard[k], model, cpu, (const char *const *)paths, N, &o, &r),
            PCLIP_STATUS_OK);
        ck_assert_int_eq(r.count + r.other_shards, N);
        ck_assert_int_gt(r.count, 0); /* 20 paths: every share gets some */
        total += r.count;
    }
    ck_assert_int_eq(total, N);
    char *merged = join(dir, "merged"), *one = join(dir, "one");
    ck_assert_status(ctx, pclip_index_merge(ctx, merged, (const char *const *)shard, 3),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, build(one, paths, N, PCLIP_INDEX_F16, NULL), PCLIP_STATUS_OK);
    assert_same_index(merged, one, 1e-3f); /* f16: one rounding step at most */
    /* the merged index searches like the one built in one go */
    pclip_index_t a, b;
    ck_assert_status(ctx, pclip_index_open(ctx, merged, &a), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_index_open(ctx, one, &b), PCLIP_STATUS_OK);
    const char *t = "a photo of a cat";
    pclip_index_hit ha[3], hb[3];
    int64_t na, nb;
    ck_assert_status(ctx, pclip_index_search_text(a, model, cpu, &t, 1, 3, ha, &na),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_index_search_text(b, model, cpu, &t, 1, 3, hb, &nb),
                     PCLIP_STATUS_OK);
    for (int i = 0; i < 3; i++) ck_assert(fabsf(ha[i].score - hb[i].score) < 2e-3f);
    pclip_index_close(a);
    pclip_index_close(b);
    /* an output that exists, a path in two shards, other dtypes, other models */
    ck_assert_status(ctx, pclip_index_merge(ctx, merged, (const char *const *)shard, 3),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    char *twice = join(dir, "twice");
    const char *dup[2] = {shard[0], shard[0]};
    ck_assert_status(ctx, pclip_index_merge(ctx, twice, dup, 2), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "is in shard"));
    struct stat sb;
    ck_assert_int_ne(stat(twice, &sb), 0); /* nothing left behind */
    char *f32 = join(dir, "f32");
    ck_assert_status(ctx, build(f32, paths, 3, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_OK);
    const char *mixed[2] = {shard[0], f32};
    ck_assert_status(ctx, pclip_index_merge(ctx, twice, mixed, 2), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "f32"));
    pclip_model_t gelu;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip-gelu"), &gelu),
                     PCLIP_STATUS_OK);
    char *other = join(dir, "other");
    pclip_index_options o = {.dtype = PCLIP_INDEX_F16};
    ck_assert_status(
        ctx, pclip_index_update(ctx, other, gelu, cpu, (const char *const *)paths + 5, 2, &o, NULL),
        PCLIP_STATUS_OK);
    const char *models[2] = {shard[0], other};
    ck_assert_status(ctx, pclip_index_merge(ctx, twice, models, 2), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "tiny-clip-gelu"));
    pclip_model_destroy(gelu);
    free(other);
    free(f32);
    free(twice);
    free(merged);
    free(one);
    for (int k = 0; k < 3; k++) free(shard[k]);
    free_paths(paths, N);
}
END_TEST

/* ---- the CLI end to end ---- */

START_TEST(test_cli_search_json) {
    TMPDIR_COPY(dir);
    char *index = join(dir, "ix");
    const char *args[] = {
        "index", "--model", pclip_test_fixture("tiny-clip"), "--output", index, "--dtype",
        "q8",    "--quiet", pclip_test_fixture("images"),    NULL};
    char *err = NULL, *out = NULL;
    ck_assert_msg(run_cli(args, NULL, &err) == 0, "%s", err);
    free(err);
    const char *sargs[] = {"search",  "--index",
                           index,     "--top-k",
                           "100000",  "--format",
                           "json",    "a photo of a cat",
                           "--image", pclip_test_fixture("images/j_32x32.jpg"),
                           NULL};
    ck_assert_int_eq(run_cli(sargs, &out, &err), 0);
    int64_t count = index_count(index);
    ck_assert_int_gt(count, 40);
    /* one object per line per query, texts first; all rows for a top-k past the index */
    char *line2 = strchr(out, '\n');
    ck_assert_ptr_nonnull(line2);
    *line2++ = '\0';
    cJSON *a = cJSON_Parse(out), *b = cJSON_Parse(line2);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(cJSON_GetObjectItem(a, "query")->valuestring, "a photo of a cat");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(a, "results")), count);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(b, "results"), 0);
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(first, "path")->valuestring, "j_32x32.jpg"));
    ck_assert(cJSON_GetObjectItem(first, "score")->valuedouble > 0.99);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(out);
    free(err);
    /* --top-k 0: a usage error */
    const char *k0[] = {"search", "--index", index, "--top-k", "0", "cat", NULL};
    ck_assert_int_eq(run_cli(k0, NULL, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--top-k"));
    free(err);
    /* another model: an error naming both */
    const char *other[] = {
        "search", "--index", index, "--model", pclip_test_fixture("tiny-clip-gelu"), "cat", NULL};
    ck_assert_int_eq(run_cli(other, &out, &err), 1);
    ck_assert_str_eq(out, "");
    ck_assert_ptr_nonnull(strstr(err, "tiny-clip-gelu"));
    ck_assert_ptr_nonnull(strstr(err, "tiny-clip'"));
    free(out);
    free(err);
    const char *oth_idx[] = {
        "index", "--model", pclip_test_fixture("tiny-clip-gelu"),     "--output",
        index,   "--quiet", pclip_test_fixture("images/j_32x32.jpg"), NULL};
    ck_assert_int_eq(run_cli(oth_idx, NULL, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "tiny-clip-gelu"));
    free(err);
    ck_assert_int_eq(index_count(index), count); /* nothing lost */
    free(index);
}
END_TEST

START_TEST(test_cli_merge) {
    TMPDIR_COPY(dir);
    char *s[3], *merged = join(dir, "merged"), *one = join(dir, "one");
    for (int k = 0; k < 3; k++) {
        char name[16], sh[16];
        snprintf(name, sizeof name, "s%d", k);
        snprintf(sh, sizeof sh, "%d/3", k);
        s[k] = join(dir, name);
        const char *args[] = {
            "index", "--model", pclip_test_fixture("tiny-clip"), "--output", s[k], "--shard",
            sh,      "--quiet", pclip_test_fixture("images"),    NULL};
        ck_assert_int_eq(run_cli(args, NULL, NULL), 0);
    }
    const char *margs[] = {"index", "merge", "--output", merged, s[0], s[1], s[2], NULL};
    char *err = NULL;
    ck_assert_msg(run_cli(margs, NULL, &err) == 0, "%s", err);
    free(err);
    const char *args[] = {"index", "--model", pclip_test_fixture("tiny-clip"), "--output",
                          one,     "--quiet", pclip_test_fixture("images"),    NULL};
    ck_assert_int_eq(run_cli(args, NULL, NULL), 0);
    assert_same_index(merged, one, 1e-5f);
    const char *bad[] = {"index",   "--model", pclip_test_fixture("tiny-clip"), "--output", one,
                         "--shard", "3/3",     pclip_test_fixture("images"),    NULL};
    ck_assert_int_eq(run_cli(bad, NULL, NULL), 2);
    for (int k = 0; k < 3; k++) free(s[k]);
    free(merged);
    free(one);
}
END_TEST

/* ---- the example program ---- */

/* examples/search.c indexes a folder and prints the text's 3 best images:
 * the same as the library's search here, and a second run embeds nothing. */
START_TEST(test_example_search) {
    TMPDIR_COPY(dir);
    char *imgs = join(dir, "imgs"), *index = join(dir, "ix");
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    char *paths[10];
    make_images(imgs, 10, paths);
    char *argv[] = {PCLIP_EXAMPLE_SEARCH,
                    (char *)pclip_test_fixture("tiny-clip"),
                    index,
                    imgs,
                    "a photo of a cat",
                    NULL};
    char *out = NULL, *err = NULL;
    setenv("PORTCLIP_BACKEND", "cpu", 1);
    ck_assert_msg(pclip_test_exec(argv, &out, &err) == 0, "%s", err);
    ck_assert_ptr_nonnull(strstr(out, "indexed 10 images\n"));
    pclip_index_t x;
    ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
    const char *t = "a photo of a cat";
    pclip_index_hit h[3];
    int64_t n;
    ck_assert_status(ctx, pclip_index_search_text(x, model, cpu, &t, 1, 3, h, &n), PCLIP_STATUS_OK);
    char want[4096];
    int used = snprintf(want, sizeof want, "indexed 10 images\n");
    for (int i = 0; i < 3; i++)
        used +=
            snprintf(want + used, sizeof want - (size_t)used, "%.4f %s\n", h[i].score, h[i].path);
    ck_assert_str_eq(out, want);
    pclip_index_close(x);
    free(out);
    free(err);
    ck_assert_int_eq(pclip_test_exec(argv, &out, NULL), 0);
    ck_assert_str_eq(out, want);
    free(out);
    unsetenv("PORTCLIP_BACKEND");
    free(imgs);
    free(index);
    free_paths(paths, 10);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_second_writer_refused) {
    TMPDIR_COPY(dir);
    char *paths[4];
    make_images(dir, 4, paths);
    char *index = join(dir, "ix");
    ck_assert_status(ctx, build(index, paths, 3, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_OK);
    /* another process holds the lock (a child, as a second `portclip index` would) */
    char *lock = join(index, "lock");
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(lock, O_RDWR);
        if (fd < 0 || flock(fd, LOCK_EX) != 0) _exit(1);
        if (write(pipefd[1], "x", 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
    ck_assert_status(ctx, build(index, paths, 4, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_IO);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "another process"));
    /* searching still works meanwhile, and nothing was lost */
    ck_assert_int_eq(index_count(index), 3);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pclip_index_report r;
    ck_assert_status(ctx, build(index, paths, 4, PCLIP_INDEX_F32, &r), PCLIP_STATUS_OK);
    ck_assert_int_eq(r.added, 1);
    close(pipefd[0]);
    close(pipefd[1]);
    free(lock);
    free(index);
    free_paths(paths, 4);
}
END_TEST

static void overwrite(const char *path, const char *data, size_t n, bool truncate_half) {
    if (truncate_half) {
        ck_assert_int_eq(truncate(path, file_size(path) / 2), 0);
        return;
    }
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Each corruption is refused naming the file, by open and by update. */
START_TEST(test_corrupt_files) {
    TMPDIR_COPY(dir);
    char *paths[6];
    make_images(dir, 6, paths);
    char *index = join(dir, "ix");
    ck_assert_status(ctx, build(index, paths, 6, PCLIP_INDEX_Q8, NULL), PCLIP_STATUS_OK);
    char *db = join(index, "index.sqlite"), *vec = join(index, "vectors.bin");
    char *dbk = join(dir, "db.keep"), *veck = join(dir, "vec.keep");
    copy_file(db, dbk);
    copy_file(vec, veck);
    static const char garbage[] = "this is not what was written here, not at all........";
    struct {
        int file; /* 0 db, 1 vec */
        bool half;
        size_t at;
        const char *name;
    } cases[] = {{0, false, 0, "index.sqlite"},
                 {0, true, 0, "index.sqlite"},
                 {1, false, 0, "vectors.bin"},
                 {1, true, 0, "vectors.bin"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        copy_file(dbk, db);
        copy_file(veck, vec);
        overwrite(cases[c].file ? vec : db, garbage, sizeof garbage, cases[c].half);
        pclip_index_t x = NULL;
        pclip_status st = pclip_index_open(ctx, index, &x);
        ck_assert_msg(st != PCLIP_STATUS_OK, "case %zu: corrupt %s opened", c, cases[c].name);
        ck_assert_msg(strstr(pclip_ctx_last_error(ctx), cases[c].name) != NULL,
                      "case %zu: '%s' does not name %s", c, pclip_ctx_last_error(ctx),
                      cases[c].name);
        st = build(index, paths, 6, PCLIP_INDEX_DTYPE_DEFAULT, NULL);
        ck_assert_msg(st != PCLIP_STATUS_OK, "case %zu: update on a corrupt %s", c, cases[c].name);
        ck_assert_msg(strstr(pclip_ctx_last_error(ctx), cases[c].name) != NULL,
                      "case %zu: '%s' does not name %s", c, pclip_ctx_last_error(ctx),
                      cases[c].name);
    }
    /* a q8 vector file of format 1 (one scale per row): refused, naming the
     * file and asking for a rebuild, by search and by update alike */
    copy_file(dbk, db);
    copy_file(veck, vec);
    {
        int fd = open(vec, O_WRONLY);
        ck_assert_int_ge(fd, 0);
        uint32_t v1 = 1;
        ck_assert_int_eq(pwrite(fd, &v1, 4, offsetof(pclip__vec_header, version)), 4);
        close(fd);
        pclip_index_t x1 = NULL;
        ck_assert_status(ctx, pclip_index_open(ctx, index, &x1), PCLIP_STATUS_BAD_FORMAT);
        ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "vectors.bin") &&
                          strstr(pclip_ctx_last_error(ctx), "rebuild"),
                      "'%s'", pclip_ctx_last_error(ctx));
        ck_assert_int_ne(build(index, paths, 6, PCLIP_INDEX_DTYPE_DEFAULT, NULL), PCLIP_STATUS_OK);
        ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "rebuild"));
    }
    /* a folder that is no index at all */
    pclip_index_t x;
    ck_assert_status(ctx, pclip_index_open(ctx, dir, &x), PCLIP_STATUS_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "index.sqlite"));
    free(db);
    free(vec);
    free(dbk);
    free(veck);
    free(index);
    free_paths(paths, 6);
}
END_TEST

START_TEST(test_search_limits) {
    TMPDIR_COPY(dir);
    char *paths[3];
    make_images(dir, 3, paths);
    char *index = join(dir, "ix"), *empty = join(dir, "empty");
    ck_assert_status(ctx, build(index, paths, 3, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_OK);
    ck_assert_status(ctx, build(empty, paths, 0, PCLIP_INDEX_F32, NULL), PCLIP_STATUS_OK);
    pclip_index_t x, e;
    ck_assert_status(ctx, pclip_index_open(ctx, index, &x), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_index_open(ctx, empty, &e), PCLIP_STATUS_OK);
    float q[24] = {1};
    pclip_index_hit h[10];
    int64_t n = -1;
    ck_assert_status(ctx, pclip_index_search(e, q, 1, 24, 5, h, &n), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "empty"));
    ck_assert_status(ctx, pclip_index_search(x, q, 1, 24, 0, h, &n), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_index_search(x, q, 1, 23, 5, h, &n), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip_index_search(x, q, 1, 24, 10, h, &n), PCLIP_STATUS_OK);
    ck_assert_int_eq(n, 3); /* top-k past the index: all of it */
    /* another model: refused naming both */
    pclip_model_t f16;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip-f16"), &f16),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_index_check_model(x, f16), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "tiny-clip-f16"));
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "tiny-clip'"));
    const char *t = "cat";
    ck_assert_status(ctx, pclip_index_search_text(x, f16, cpu, &t, 1, 1, h, &n),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, build(index, paths, 3, PCLIP_INDEX_DTYPE_DEFAULT, NULL), PCLIP_STATUS_OK);
    pclip_index_options o = {.dtype = PCLIP_INDEX_Q8};
    ck_assert_status(
        ctx, pclip_index_update(ctx, index, model, cpu, (const char *const *)paths, 3, &o, NULL),
        PCLIP_STATUS_INVALID_ARGUMENT);
    o = (pclip_index_options){.preprocess = PCLIP_PREPROCESS_HF};
    ck_assert_status(
        ctx, pclip_index_update(ctx, index, model, cpu, (const char *const *)paths, 3, &o, NULL),
        PCLIP_STATUS_INVALID_ARGUMENT);
    /* a folder that holds anything else is not taken for an index */
    ck_assert_status(ctx, build(dir, paths, 3, PCLIP_INDEX_F32, NULL),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "holds other files"));
    o = (pclip_index_options){.shard_index = 3, .shard_count = 3};
    ck_assert_status(
        ctx, pclip_index_update(ctx, index, model, cpu, (const char *const *)paths, 3, &o, NULL),
        PCLIP_STATUS_INVALID_ARGUMENT);
    /* a text that is not UTF-8: refused, naming which text */
    const char *bad[2] = {"cat", "\xff\xfe"};
    ck_assert_status(ctx, pclip_index_search_text(x, model, cpu, bad, 2, 1, h, &n),
                     PCLIP_STATUS_BAD_TEXT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "search: text 2"));
    pclip_model_destroy(f16);
    pclip_index_close(x);
    pclip_index_close(e);
    free(index);
    free(empty);
    free_paths(paths, 3);
}
END_TEST

/* f16 and q8 encodings: exact round trips where they must be, bounded error
 * elsewhere. */
START_TEST(test_row_encodings) {
    ck_assert_uint_eq(pclip__f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(pclip__f32_to_f16(-2.0f), 0xc000);
    ck_assert_uint_eq(pclip__f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(pclip__f32_to_f16(1e6f), 0x7c00);
    ck_assert_uint_eq(pclip__f32_to_f16(5.9604645e-8f), 0x0001);      /* smallest subnormal */
    ck_assert_uint_eq(pclip__f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite half survives a round trip */
        ck_assert_uint_eq(pclip__f32_to_f16(pclip__f16_to_f32((uint16_t)h)), h);
    /* q8: per block of 32, int8 steps of the block's max|x| / 127 and the
     * least-squares scale: no worse than the plain step in the L2 sense,
     * within a step per element; 77 = two blocks and a short one, the
     * magnitudes growing along the row so each block has its own step */
    enum { D = 77 };
    float x[D], y[D];
    uint8_t row[D * 4];
    ck_assert_uint_eq(pclip__index_row_bytes(PCLIP_INDEX_Q8, D), 4 * 3 + D);
    ck_assert_uint_eq(pclip__index_row_bytes(PCLIP_INDEX_Q8, 512), 4 * 16 + 512);
    for (int i = 0; i < D; i++) x[i] = sinf((float)i) * (1.0f + (float)(i * i) / 64.0f);
    pclip__index_encode_row(PCLIP_INDEX_Q8, x, D, row);
    pclip__index_decode_row(PCLIP_INDEX_Q8, row, D, y);
    const int8_t *v = (const int8_t *)(row + 4 * 3);
    float row_amax = 0;
    for (int i = 0; i < D; i++) row_amax = fabsf(x[i]) > row_amax ? fabsf(x[i]) : row_amax;
    for (int b = 0; b < 3; b++) {
        int lo = 32 * b, hi = lo + 32 < D ? lo + 32 : D;
        float amax = 0, step;
        for (int i = lo; i < hi; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        step = amax / 127;
        if (b == 0) ck_assert(step < row_amax / 127 / 4); /* a finer step than one per row */
        double e_ls = 0, e_step = 0;
        for (int i = lo; i < hi; i++) {
            ck_assert_msg(fabsf(x[i] - y[i]) <= step, "q8 element %d: %g decoded %g", i,
                          (double)x[i], (double)y[i]);
            float plain = step * (float)v[i];
            ck_assert(fabsf(x[i] - plain) <= step / 2 + 1e-6f * amax);
            e_ls += (double)(x[i] - y[i]) * (x[i] - y[i]);
            e_step += (double)(x[i] - plain) * (x[i] - plain);
        }
        ck_assert(e_ls <= e_step * (1 + 1e-6));
    }
    /* zeros and a row of one huge value stay finite */
    float z[40] = {0};
    z[35] = 3e38f;
    pclip__index_encode_row(PCLIP_INDEX_Q8, z, 40, row);
    pclip__index_decode_row(PCLIP_INDEX_Q8, row, 40, y);
    for (int i = 0; i < 40; i++) ck_assert(isfinite(y[i]) && (i == 35 ? y[i] > 2e38f : y[i] == 0));
}
END_TEST

/* The q8 kernels straight on rows in memory: every SIMD level gives the same
 * bits as plain C (one query: no row conversion), for dims with whole blocks,
 * a short last block, fewer than 4 blocks and more than the 64 summed at a
 * time; and the scores are the decoded rows' dot products. */
START_TEST(test_q8_kernels_exact) {
    static const int32_t dims[] = {512, 600, 37, 2100};
    static const char *const levels[] = {"scalar", "avx2", "avx512"};
    enum { N = 300, K = 10 };
    for (int di = 0; di < 4; di++) {
        int32_t dim = dims[di];
        size_t rb = pclip__index_row_bytes(PCLIP_INDEX_Q8, dim);
        uint8_t *rows = malloc(N * rb);
        float *x = malloc((size_t)dim * sizeof *x), *y = malloc((size_t)dim * sizeof *y);
        float *q = malloc((size_t)dim * sizeof *q);
        ck_assert(rows && x && y && q);
        for (int32_t i = 0; i < dim; i++) q[i] = cosf(0.37f * (float)i + 0.1f);
        for (int r = 0; r < N; r++) {
            for (int32_t i = 0; i < dim; i++)
                x[i] = sinf(0.91f * (float)(r * dim + i)) * (1.0f + (float)((r + i) % 7));
            pclip__index_encode_row(PCLIP_INDEX_Q8, x, dim, rows + (size_t)r * rb);
        }
        pclip__index_cand ref[K], got[K];
        for (int l = 0; l < 3; l++) {
            setenv("PORTCLIP_CPU_SIMD", levels[l], 1);
            pclip__index_cand *c = l == 0 ? ref : got;
            ck_assert_status(ctx,
                             pclip__index_scan(ctx, rows, N, rb, PCLIP_INDEX_Q8, dim, q, 1, K, c),
                             PCLIP_STATUS_OK);
            for (int i = 0; l > 0 && i < K; i++) {
                ck_assert_msg(got[i].row == ref[i].row && got[i].score == ref[i].score,
                              "dim %d %s hit %d: row %lld %.9g, scalar row %lld %.9g", dim,
                              levels[l], i, (long long)got[i].row, (double)got[i].score,
                              (long long)ref[i].row, (double)ref[i].score);
            }
        }
        unsetenv("PORTCLIP_CPU_SIMD");
        for (int i = 0; i < K; i++) { /* the int16 query: ~3e-5 relative */
            pclip__index_decode_row(PCLIP_INDEX_Q8, rows + (size_t)ref[i].row * rb, dim, y);
            double d = 0, mag = 0;
            for (int32_t j = 0; j < dim; j++) {
                d += (double)q[j] * y[j];
                mag += fabs((double)q[j] * y[j]);
            }
            ck_assert_msg(fabs(ref[i].score - d) <= 1e-4 * mag, "dim %d hit %d: %.9g, decoded %.9g",
                          dim, i, (double)ref[i].score, d);
        }
        free(rows);
        free(x);
        free(y);
        free(q);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("index");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_rank_matches_pytorch);
    tcase_add_loop_test(core, test_rank_matches_direct, 0, 3);
    tcase_add_test(core, test_simd_levels_agree);
    tcase_add_test(core, test_incremental_update);
    tcase_add_test(core, test_skips_bad_files);
    tcase_add_test(core, test_progress);
    tcase_add_test(core, test_kill_and_resume);
    tcase_add_test(core, test_shards_merge);
    tcase_add_test(core, test_cli_search_json);
    tcase_add_test(core, test_cli_merge);
    tcase_add_test(core, test_row_encodings);
    tcase_add_test(core, test_q8_kernels_exact);
    tcase_add_test(core, test_example_search);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_test(limits, test_second_writer_refused);
    tcase_add_test(limits, test_corrupt_files);
    tcase_add_test(limits, test_search_limits);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
