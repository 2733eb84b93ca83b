/* portclip: the command-line tool. A thin layer over the library: it parses
 * arguments, reads input lists, calls the public API and prints. Every error
 * goes to stderr naming the bad input, with a non-zero exit; output files are
 * written through a temp file and renamed, so a failed run leaves none.
 *
 * Exit status: 0 success, 1 failure on an input or file, 2 bad usage. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portclip.h"

/* ---- messages ---- */

static void die_usage(const char *fmt, ...) {
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
    "\n"
    "options:\n"
    "  --model DIR          a Hugging Face CLIP model directory\n"
    "  --output FILE        where to write the result (.npy)\n"
    "  --preprocess MODE    openai (default: torchvision's CLIP transform) or hf\n"
    "                       (Hugging Face CLIPImageProcessor)\n"
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
    else die_usage("unknown command '%s'", o.command);
    pclip_ctx_destroy(ctx);
    free(o.inputs.items);
    return rc;
}
