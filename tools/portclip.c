/* portclip: the command-line tool. A thin layer over the library: it parses
 * arguments, reads input lists, calls the public API and prints. Every error
 * goes to stderr naming the bad input, with a non-zero exit; output files are
 * written through a temp file and renamed, so a failed run leaves none.
 *
 * Exit status: 0 success, 1 failure on an input or file, 2 bad usage. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portclip.h"

/* ---- messages ---- */

static _Noreturn void die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("portclip: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(run 'portclip --help' for usage)\n", stderr);
    va_end(ap);
    exit(2);
}

static int fail(pclip_ctx_t ctx, pclip_status st) {
    const char *msg = pclip_ctx_last_error(ctx);
    fprintf(stderr, "portclip: error: %s\n", msg && *msg ? msg : pclip_status_str(st));
    return 1;
}

static const char usage[] =
    "usage: portclip COMMAND [options] [INPUT...]\n"
    "\n"
    "commands:\n"
    "  tokenize   --model DIR TEXT...\n"
    "             one line per text: the context length (77) of space-separated ids\n"
    "  preprocess --model DIR --output OUT.npy [--preprocess openai|hf] IMAGE...\n"
    "             float32 [N,3,S,S] pixel tensors, S = the model's crop size\n"
    "  embed-text --model DIR --output OUT.npy TEXT...\n"
    "             float32 [N,D] text embeddings, rows L2-normalised\n"
    "  embed-image --model DIR --output OUT.npy [--batch-size B] IMAGE...\n"
    "             float32 [N,D] image embeddings, rows L2-normalised\n"
    "  devices    every backend and device found, and why any is unusable\n"
    "  verify     [--model DIR] [--backend B] [--device N]\n"
    "             parity of every backend/device against the CPU reference: a table of\n"
    "             every op case (and, with --model, both encoders); exit 1 on any failure\n"
    "\n"
    "options:\n"
    "  --model DIR          a Hugging Face CLIP model directory\n"
    "  --output FILE        where to write the result (.npy)\n"
    "  --preprocess MODE    openai (default: torchvision's CLIP transform) or hf\n"
    "                       (Hugging Face CLIPImageProcessor)\n"
    "  --no-normalize       embed-*: write the raw projections\n"
    "  --batch-size B       embed-image: images per encoder run (default 32)\n"
    "  --texts-file FILE    read texts from FILE, one per line (after those given)\n"
    "  --images-file FILE   read image paths from FILE, one per line\n"
    "  --backend NAME       cpu|vulkan|opencl|auto (or PORTCLIP_BACKEND)\n"
    "  --device N           device index (or PORTCLIP_DEVICE)\n"
    "  -h, --help           this text\n"
    "  --version            print the version\n";

/* ---- arguments ---- */

typedef struct str_list {
    char **items;
    size_t count, cap;
    char *owned; /* the buffer of a list file, when lines point into it */
} str_list;

static void list_push(str_list *l, char *s) {
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        char **grown = realloc(l->items, l->cap * sizeof *grown);
        if (!grown) {
            fputs("portclip: out of memory\n", stderr);
            exit(1);
        }
        l->items = grown;
    }
    l->items[l->count++] = s;
}

typedef struct options {
    const char *command;
    const char *model;
    const char *output;
    const char *texts_file;
    const char *images_file;
    const char *backend;
    const char *device;
    pclip_preprocess_mode preprocess;
    bool no_normalize;
    int32_t batch_size;
    str_list inputs;
} options;

static const char *take_value(int argc, char **argv, int *i, const char *name) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (arg[n] == '=') return arg + n + 1;
    if (*i + 1 >= argc) die_usage("option %s needs a value", name);
    return argv[++*i];
}

static void parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->preprocess = PCLIP_PREPROCESS_OPENAI;
    o->batch_size = 32;
    bool only_inputs = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define IS_OPT(name) (strcmp(a, name) == 0 || (strncmp(a, name "=", sizeof name) == 0))
        if (only_inputs || a[0] != '-' || strcmp(a, "-") == 0) {
            if (!o->command) o->command = a;
            else list_push(&o->inputs, argv[i]);
        } else if (strcmp(a, "--") == 0) {
            only_inputs = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (strcmp(a, "--version") == 0) {
            printf("portclip %s\n", pclip_version());
            exit(0);
        } else if (IS_OPT("--model")) {
            o->model = take_value(argc, argv, &i, "--model");
        } else if (IS_OPT("--output")) {
            o->output = take_value(argc, argv, &i, "--output");
        } else if (IS_OPT("--texts-file")) {
            o->texts_file = take_value(argc, argv, &i, "--texts-file");
        } else if (IS_OPT("--images-file")) {
            o->images_file = take_value(argc, argv, &i, "--images-file");
        } else if (IS_OPT("--backend")) {
            o->backend = take_value(argc, argv, &i, "--backend");
        } else if (IS_OPT("--device")) {
            o->device = take_value(argc, argv, &i, "--device");
        } else if (strcmp(a, "--no-normalize") == 0) {
            o->no_normalize = true;
        } else if (IS_OPT("--batch-size")) {
            const char *v = take_value(argc, argv, &i, "--batch-size");
            char *end;
            long b = strtol(v, &end, 10);
            if (*end || b < 1 || b > 4096)
                die_usage("--batch-size must be an integer from 1 to 4096, not '%s'", v);
            o->batch_size = (int32_t)b;
        } else if (IS_OPT("--preprocess")) {
            const char *v = take_value(argc, argv, &i, "--preprocess");
            if (strcmp(v, "openai") == 0) o->preprocess = PCLIP_PREPROCESS_OPENAI;
            else if (strcmp(v, "hf") == 0) o->preprocess = PCLIP_PREPROCESS_HF;
            else die_usage("--preprocess must be 'openai' or 'hf', not '%s'", v);
        } else {
            die_usage("unknown option '%s'", a);
        }
#undef IS_OPT
    }
}

/* Appends the lines of `path` to `l` (a trailing "\r" is dropped; empty lines
 * are kept for texts, skipped for paths). */
static int read_list_file(pclip_ctx_t ctx, const char *path, bool keep_empty, str_list *l,
                          char **owned) {
    (void)ctx;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "portclip: error: list file '%s': %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    int bad = !buf || ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        fprintf(stderr, "portclip: error: list file '%s': cannot read\n", path);
        free(buf);
        return 1;
    }
    buf[n] = '\0';
    *owned = buf;
    char *p = buf;
    while (p < buf + n) {
        char *nl = memchr(p, '\n', (size_t)(buf + n - p));
        char *end = nl ? nl : buf + n;
        *end = '\0';
        if (end > p && end[-1] == '\r') end[-1] = '\0';
        if (*p || keep_empty) list_push(l, p);
        p = end + 1;
    }
    return 0;
}

/* ---- commands ---- */

static int cmd_tokenize(pclip_ctx_t ctx, options *o) {
    if (!o->model) die_usage("tokenize needs --model DIR");
    char *owned = NULL;
    if (o->texts_file && read_list_file(ctx, o->texts_file, true, &o->inputs, &owned)) return 1;
    if (o->inputs.count == 0) die_usage("tokenize needs at least one TEXT");
    pclip_model_t model;
    pclip_status st = pclip_model_load_parts(ctx, o->model, PCLIP_MODEL_PART_TOKENIZER, &model);
    if (st) {
        free(owned);
        return fail(ctx, st);
    }
    int32_t n_ctx = pclip_model_config(model)->text.max_position_embeddings;
    int32_t *ids = malloc(o->inputs.count * (size_t)n_ctx * sizeof *ids);
    if (!ids) {
        fputs("portclip: error: out of memory\n", stderr);
        pclip_model_destroy(model);
        free(owned);
        return 1;
    }
    int rc = 0;
    /* Tokenize everything first: a bad text prints nothing on stdout. */
    for (size_t i = 0; i < o->inputs.count && !rc; i++) {
        const char *text = o->inputs.items[i];
        st = pclip_tokenizer_encode(pclip_model_tokenizer(model), text, strlen(text),
                                    ids + i * (size_t)n_ctx, n_ctx, NULL);
        if (st) {
            fprintf(stderr, "portclip: error: text %zu: %s\n", i + 1, pclip_ctx_last_error(ctx));
            rc = 1;
        }
    }
    for (size_t i = 0; i < o->inputs.count && !rc; i++) {
        for (int32_t j = 0; j < n_ctx; j++)
            printf(j ? " %d" : "%d", (int)ids[i * (size_t)n_ctx + (size_t)j]);
        putchar('\n');
    }
    if (!rc && (fflush(stdout) != 0 || ferror(stdout))) {
        fputs("portclip: error: writing to stdout failed\n", stderr);
        rc = 1;
    }
    free(ids);
    pclip_model_destroy(model);
    free(owned);
    return rc;
}

static int cmd_preprocess(pclip_ctx_t ctx, options *o) {
    if (!o->model) die_usage("preprocess needs --model DIR");
    if (!o->output) die_usage("preprocess needs --output OUT.npy");
    char *owned = NULL;
    if (o->images_file && read_list_file(ctx, o->images_file, false, &o->inputs, &owned)) return 1;
    if (o->inputs.count == 0) die_usage("preprocess needs at least one IMAGE");
    pclip_model_t model;
    pclip_status st =
        pclip_model_load_parts(ctx, o->model, PCLIP_MODEL_PART_IMAGE_CONFIG, &model);
    if (st) {
        free(owned);
        return fail(ctx, st);
    }
    const pclip_image_config *cfg = pclip_model_image_config(model);
    int64_t shape[4] = {(int64_t)o->inputs.count, 3, cfg->crop_height, cfg->crop_width};
    size_t per_image = (size_t)3 * (size_t)cfg->crop_height * (size_t)cfg->crop_width;
    float *pixels = malloc(per_image * sizeof *pixels);
    pclip_npy_writer_t w = NULL;
    if (!pixels) {
        st = PCLIP_STATUS_OUT_OF_MEMORY;
        fputs("portclip: error: out of memory\n", stderr);
    } else {
        st = pclip_npy_writer_create(ctx, o->output, shape, 4, &w);
        if (st) fail(ctx, st);
    }
    for (size_t i = 0; i < o->inputs.count && !st; i++) {
        pclip_image *img = NULL;
        st = pclip_image_load(ctx, o->inputs.items[i], &img);
        if (!st) st = pclip_image_preprocess(ctx, img, cfg, o->preprocess, pixels);
        if (!st) st = pclip_npy_writer_append(w, pixels, per_image);
        pclip_image_destroy(img);
        if (st) fail(ctx, st);
    }
    if (!st && (st = pclip_npy_writer_commit(w))) fail(ctx, st);
    pclip_npy_writer_destroy(w);
    free(pixels);
    pclip_model_destroy(model);
    free(owned);
    return st ? 1 : 0;
}

/* ---- backends ---- */

static int open_backend(pclip_ctx_t ctx, const options *o, pclip_backend_t *out) {
    int32_t device = -1;
    if (o->device) {
        char *end;
        long d = strtol(o->device, &end, 10);
        if (*end || d < 0 || d > 1000) die_usage("--device must be a device index, not '%s'", o->device);
        device = (int32_t)d;
    }
    pclip_status st = pclip_backend_create(ctx, o->backend, device, out);
    if (st) return fail(ctx, st);
    return 0;
}

static int cmd_devices(pclip_ctx_t ctx, options *o) {
    (void)o;
    pclip_device_desc devs[64];
    int32_t n = 0;
    pclip_status st = pclip_devices_list(ctx, devs, 64, &n);
    if (st) return fail(ctx, st);
    for (int32_t i = 0; i < n && i < 64; i++) {
        const pclip_device_desc *d = &devs[i];
        if (!d->usable) {
            printf("%-7s -  unusable: %s\n", d->backend, d->why);
            continue;
        }
        printf("%-7s %d  %s\n", d->backend, d->index, d->name);
        printf("           type %s%s, vendor %s, driver %s, api %s\n", d->type,
               d->software ? " (software: auto skips it)" : "", d->vendor[0] ? d->vendor : "-",
               d->driver[0] ? d->driver : "-", d->api_version[0] ? d->api_version : "-");
        printf("           memory %.1f GiB", (double)d->memory_bytes / (1024.0 * 1024 * 1024));
        if (d->subgroup_size) printf(", subgroup %d", d->subgroup_size);
        if (d->features[0]) printf(", features: %s", d->features);
        putchar('\n');
    }
    pclip_backend_t b;
    if (pclip_backend_create(ctx, "auto", -1, &b) == PCLIP_STATUS_OK) {
        printf("auto -> %s: %s", pclip_backend_name(b), pclip_backend_device_name(b));
        if (pclip_backend_fallback_reason(b)[0])
            printf(" (%s)", pclip_backend_fallback_reason(b));
        putchar('\n');
        pclip_backend_destroy(b);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Writes rows [n, d] to `path` as .npy (temp file, then rename). */
static int write_rows(pclip_ctx_t ctx, const char *path, const float *rows, int64_t n, int64_t d) {
    int64_t shape[2] = {n, d};
    pclip_status st = pclip_npy_write_f32(ctx, path, rows, shape, 2);
    return st ? fail(ctx, st) : 0;
}

static int cmd_embed_text(pclip_ctx_t ctx, options *o) {
    if (!o->model) die_usage("embed-text needs --model DIR");
    if (!o->output) die_usage("embed-text needs --output OUT.npy");
    char *owned = NULL;
    if (o->texts_file && read_list_file(ctx, o->texts_file, true, &o->inputs, &owned)) return 1;
    if (o->inputs.count == 0) die_usage("embed-text needs at least one TEXT");
    if (o->inputs.count > INT32_MAX / 1024) die_usage("too many texts");
    int32_t n = (int32_t)o->inputs.count;
    pclip_model_t model = NULL;
    pclip_backend_t backend = NULL;
    int32_t *ids = NULL;
    float *emb = NULL;
    int rc = 1;
    pclip_status st = pclip_model_load_parts(ctx, o->model,
                                             PCLIP_MODEL_PART_TOKENIZER | PCLIP_MODEL_PART_WEIGHTS,
                                             &model);
    if (st) {
        fail(ctx, st);
        goto done;
    }
    const pclip_config *cfg = pclip_model_config(model);
    int32_t n_ctx = cfg->text.max_position_embeddings;
    ids = malloc((size_t)n * (size_t)n_ctx * sizeof *ids);
    emb = malloc((size_t)n * (size_t)cfg->projection_dim * sizeof *emb);
    if (!ids || !emb) {
        fputs("portclip: error: out of memory\n", stderr);
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        const char *text = o->inputs.items[i];
        st = pclip_tokenizer_encode(pclip_model_tokenizer(model), text, strlen(text),
                                    ids + (size_t)i * (size_t)n_ctx, n_ctx, NULL);
        if (st) {
            fprintf(stderr, "portclip: error: text %d: %s\n", i + 1, pclip_ctx_last_error(ctx));
            goto done;
        }
    }
    if (open_backend(ctx, o, &backend)) goto done;
    uint32_t flags = o->no_normalize ? 0 : PCLIP_ENCODE_NORMALIZE;
    if ((st = pclip_model_encode_text(model, backend, ids, n, flags, emb))) {
        fail(ctx, st);
        goto done;
    }
    rc = write_rows(ctx, o->output, emb, n, cfg->projection_dim);
done:
    pclip_model_destroy(model); /* before the backend: it holds graphs compiled on it */
    pclip_backend_destroy(backend);
    free(ids);
    free(emb);
    free(owned);
    return rc;
}

/* ---- image loading on worker threads ---- */

/* A batch of images decoded and preprocessed by worker threads, each with its
 * own context (contexts are not shared between threads). */
typedef struct prep_job {
    const options *o;
    const pclip_image_config *cfg;
    size_t first, count;     /* input indices */
    size_t per_image;        /* floats per image */
    float *pixels;           /* [count, per_image] */
    size_t next;             /* next index to take (under lock) */
    pthread_mutex_t lock;
    size_t failed_index;     /* lowest failing input index, or SIZE_MAX */
    char failed_msg[1200];
} prep_job;

static void *prep_worker(void *arg) {
    prep_job *j = arg;
    pclip_ctx_t ctx;
    if (pclip_ctx_create(&ctx)) return NULL;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        size_t k = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (k >= j->count) break;
        const char *path = j->o->inputs.items[j->first + k];
        pclip_image *img = NULL;
        pclip_status st = pclip_image_load(ctx, path, &img);
        if (!st)
            st = pclip_image_preprocess(ctx, img, j->cfg, j->o->preprocess,
                                        j->pixels + k * j->per_image);
        pclip_image_destroy(img);
        if (st) {
            pthread_mutex_lock(&j->lock);
            if (j->first + k < j->failed_index) {
                j->failed_index = j->first + k;
                snprintf(j->failed_msg, sizeof j->failed_msg, "%s", pclip_ctx_last_error(ctx));
            }
            pthread_mutex_unlock(&j->lock);
        }
    }
    pclip_ctx_destroy(ctx);
    return NULL;
}

static void init_job(prep_job *j, const options *o, const pclip_image_config *cfg, size_t first,
                     size_t n, size_t batch, size_t per_image, float *pixels) {
    *j = (prep_job){.o = o, .cfg = cfg, .first = first, .count = n - first < batch ? n - first : batch,
                    .per_image = per_image, .pixels = pixels, .failed_index = SIZE_MAX};
    pthread_mutex_init(&j->lock, NULL);
}

#define PREP_THREADS 4

/* Runs a batch on PREP_THREADS workers; the caller's thread only waits. */
static void *prep_batch(void *arg) {
    prep_job *j = arg;
    pthread_t t[PREP_THREADS];
    int started = 0;
    int want = j->count < PREP_THREADS ? (int)j->count : PREP_THREADS;
    for (int i = 0; i < want; i++)
        if (pthread_create(&t[started], NULL, prep_worker, j) == 0) started++;
    if (started == 0) prep_worker(j);
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    return NULL;
}

static int cmd_embed_image(pclip_ctx_t ctx, options *o) {
    if (!o->model) die_usage("embed-image needs --model DIR");
    if (!o->output) die_usage("embed-image needs --output OUT.npy");
    char *owned = NULL;
    if (o->images_file && read_list_file(ctx, o->images_file, false, &o->inputs, &owned)) return 1;
    if (o->inputs.count == 0) die_usage("embed-image needs at least one IMAGE");
    pclip_model_t model = NULL;
    pclip_backend_t backend = NULL;
    pclip_npy_writer_t w = NULL;
    float *pixels[2] = {NULL, NULL}, *emb = NULL;
    int rc = 1;
    pclip_status st = pclip_model_load_parts(
        ctx, o->model, PCLIP_MODEL_PART_IMAGE_CONFIG | PCLIP_MODEL_PART_WEIGHTS, &model);
    if (st) {
        fail(ctx, st);
        goto done;
    }
    const pclip_config *cfg = pclip_model_config(model);
    const pclip_image_config *icfg = pclip_model_image_config(model);
    int32_t S = cfg->vision.image_size;
    if (icfg->crop_height != S || icfg->crop_width != S) {
        fprintf(stderr,
                "portclip: error: model '%s': preprocessor_config.json crops to %dx%d but "
                "vision_config.image_size is %d\n",
                o->model, icfg->crop_width, icfg->crop_height, S);
        goto done;
    }
    if (open_backend(ctx, o, &backend)) goto done;
    size_t per_image = (size_t)3 * (size_t)S * (size_t)S;
    size_t B = (size_t)o->batch_size, N = o->inputs.count;
    int64_t D = cfg->projection_dim;
    pixels[0] = malloc(B * per_image * sizeof(float));
    pixels[1] = malloc(B * per_image * sizeof(float));
    emb = malloc(B * (size_t)D * sizeof *emb);
    if (!pixels[0] || !pixels[1] || !emb) {
        fputs("portclip: error: out of memory\n", stderr);
        goto done;
    }
    int64_t shape[2] = {(int64_t)N, D};
    if ((st = pclip_npy_writer_create(ctx, o->output, shape, 2, &w))) {
        fail(ctx, st);
        goto done;
    }
    uint32_t flags = o->no_normalize ? 0 : PCLIP_ENCODE_NORMALIZE;
    /* Batch k+1 is decoded on worker threads while batch k is encoded. */
    prep_job jobs[2];
    int cur = 0;
    init_job(&jobs[0], o, icfg, 0, N, B, per_image, pixels[0]);
    prep_batch(&jobs[0]);
    for (size_t first = 0; first < N; first += B, cur ^= 1) {
        prep_job *j = &jobs[cur];
        pthread_mutex_destroy(&j->lock);
        if (j->failed_index != SIZE_MAX) {
            fprintf(stderr, "portclip: error: %s\n", j->failed_msg);
            goto done;
        }
        pthread_t prefetch;
        bool prefetching = false;
        if (first + B < N) {
            prep_job *nj = &jobs[cur ^ 1];
            init_job(nj, o, icfg, first + B, N, B, per_image, pixels[cur ^ 1]);
            prefetching = pthread_create(&prefetch, NULL, prep_batch, nj) == 0;
            if (!prefetching) prep_batch(nj);
        }
        st = pclip_model_encode_images(model, backend, j->pixels, (int32_t)j->count, flags, emb);
        if (!st) st = pclip_npy_writer_append(w, emb, j->count * (size_t)D);
        if (prefetching) pthread_join(prefetch, NULL);
        if (st) {
            if (first + B < N) pthread_mutex_destroy(&jobs[cur ^ 1].lock);
            fail(ctx, st);
            goto done;
        }
    }
    if ((st = pclip_npy_writer_commit(w))) {
        fail(ctx, st);
        goto done;
    }
    rc = 0;
done:
    pclip_npy_writer_destroy(w);
    pclip_model_destroy(model);
    pclip_backend_destroy(backend);
    free(pixels[0]);
    free(pixels[1]);
    free(emb);
    free(owned);
    return rc;
}

/* ---- verify ---- */

static void print_row(const char *backend, int32_t device, const pclip_parity_row *r) {
    printf("%-7s %-3d %-64s %10.3g %9.3g  %s%s%s\n", backend, (int)device, r->case_name, r->error,
           r->tolerance, r->passed ? "pass" : "FAIL", r->passed ? "" : ": ", r->why);
}

/* Runs every op case (and the encoders, with a model) on one device. Returns
 * the number of failures, or -1 when the device could not be used. */
static int verify_device(pclip_ctx_t ctx, pclip_backend_t ref, const char *backend,
                         int32_t device, pclip_model_t model) {
    pclip_backend_t b;
    pclip_status st = pclip_backend_create(ctx, backend, device, &b);
    if (st) {
        printf("%-7s %-3d %-64s %10s %9s  FAIL: %s\n", backend, (int)device, "(open)", "-", "-",
               pclip_ctx_last_error(ctx));
        return 1;
    }
    int failures = 0;
    size_t n = pclip_parity_case_count();
    for (size_t i = 0; i < n; i++) {
        pclip_parity_row row;
        st = pclip_parity_run_case(ctx, ref, b, i, &row);
        if (st) {
            memset(&row, 0, sizeof row);
            snprintf(row.case_name, sizeof row.case_name, "case %zu", i);
            snprintf(row.why, sizeof row.why, "%s", pclip_ctx_last_error(ctx));
        }
        failures += !row.passed;
        print_row(backend, device, &row);
    }
    if (model) {
        pclip_parity_row rows[2];
        st = pclip_parity_run_model(ctx, model, ref, b, rows);
        if (st) {
            memset(rows, 0, sizeof rows);
            snprintf(rows[0].case_name, sizeof rows[0].case_name, "encoders");
            snprintf(rows[0].why, sizeof rows[0].why, "%s", pclip_ctx_last_error(ctx));
            print_row(backend, device, &rows[0]);
            failures++;
        } else {
            for (int k = 0; k < 2; k++) {
                failures += !rows[k].passed;
                print_row(backend, device, &rows[k]);
            }
        }
    }
    /* the model's graphs on b go with it */
    pclip_backend_destroy(b);
    fflush(stdout);
    return failures;
}

static int cmd_verify(pclip_ctx_t ctx, options *o) {
    pclip_model_t model = NULL;
    pclip_status st;
    if (o->model &&
        (st = pclip_model_load_parts(ctx, o->model,
                                     PCLIP_MODEL_PART_TOKENIZER | PCLIP_MODEL_PART_WEIGHTS, &model)))
        return fail(ctx, st);
    pclip_backend_t ref;
    if ((st = pclip_backend_create(ctx, "cpu", 1, &ref))) {
        pclip_model_destroy(model);
        return fail(ctx, st);
    }
    printf("reference: cpu 1 (%s); %zu op cases per device%s\n", pclip_backend_device_name(ref),
           pclip_parity_case_count(), model ? " + 2 encoder cases" : "");
    printf("%-7s %-3s %-64s %10s %9s  %s\n", "backend", "dev", "case", "error", "tolerance",
           "result");
    int failures = 0, devices = 0;
    if (o->backend && strcmp(o->backend, "auto") != 0) {
        int32_t device = 0;
        if (o->device) device = (int32_t)strtol(o->device, NULL, 10);
        failures += verify_device(ctx, ref, o->backend, device, model);
        devices++;
    } else {
        pclip_device_desc devs[64];
        int32_t n = 0;
        if ((st = pclip_devices_list(ctx, devs, 64, &n))) {
            pclip_backend_destroy(ref);
            pclip_model_destroy(model);
            return fail(ctx, st);
        }
        for (int32_t i = 0; i < n && i < 64; i++) {
            const pclip_device_desc *d = &devs[i];
            if (!d->usable) {
                printf("%-7s -   skipped: %s\n", d->backend, d->why);
                continue;
            }
            if (strcmp(d->backend, "cpu") == 0 && d->index == 1) continue; /* the reference */
            failures += verify_device(ctx, ref, d->backend, d->index, model);
            devices++;
        }
    }
    printf("%d device%s checked, %d failure%s\n", devices, devices == 1 ? "" : "s", failures,
           failures == 1 ? "" : "s");
    pclip_model_destroy(model);
    pclip_backend_destroy(ref);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    options o;
    parse_args(argc, argv, &o);
    if (!o.command) {
        fputs(usage, stderr);
        return 2;
    }
    pclip_ctx_t ctx;
    if (pclip_ctx_create(&ctx)) {
        fputs("portclip: error: out of memory\n", stderr);
        return 1;
    }
    int rc;
    if (strcmp(o.command, "tokenize") == 0) rc = cmd_tokenize(ctx, &o);
    else if (strcmp(o.command, "preprocess") == 0) rc = cmd_preprocess(ctx, &o);
    else if (strcmp(o.command, "embed-text") == 0) rc = cmd_embed_text(ctx, &o);
    else if (strcmp(o.command, "embed-image") == 0) rc = cmd_embed_image(ctx, &o);
    else if (strcmp(o.command, "devices") == 0) rc = cmd_devices(ctx, &o);
    else if (strcmp(o.command, "verify") == 0) rc = cmd_verify(ctx, &o);
    else die_usage("unknown command '%s'", o.command);
    pclip_ctx_destroy(ctx);
    free(o.inputs.items);
    return rc;
}
