/* portclip search: exact cosine top-k of texts (and of images, --image)
 * against an index, as a readable list or one JSON object per line per
 * query. The model is the one that built the index (its folder as recorded
 * in the index) unless --model names another copy; a different model is an
 * error naming both. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

/* ---- options ---- */

static const char *const format_names[] = {"text", "json", NULL};

static struct {
    const char *index;
    int32_t top_k;
    int format;
    cli_list images;
} opt = {.top_k = 10};

const cli_option cmd_search_options[] = {
    CLI_REQUIRED("--index", "INDEX", "the index folder (portclip index --output)", &opt.index),
    CLI_INT("--top-k", "K",
            "results per query (default 10); more than the index holds\n"
            "gives all of them",
            &opt.top_k, 1, INT32_MAX),
    CLI_CHOICE("--format", "FMT", "text (default) or json (one object per line per query)",
               &opt.format, format_names),
    CLI_LIST("--image", "IMAGE", "an image query (repeatable); after the texts in the output",
             &opt.images),
    CLI_OPTIONS_END};

/* ---- output ---- */

static int print_json(FILE *f, const char *query, const pclip_index_hit *hits, int64_t n) {
    cJSON *o = cJSON_CreateObject(), *arr = NULL;
    bool ok = o && cJSON_AddStringToObject(o, "query", query) &&
              (arr = cJSON_AddArrayToObject(o, "results"));
    for (int64_t i = 0; ok && i < n; i++) {
        cJSON *r = cJSON_CreateObject();
        ok = r && cJSON_AddItemToArray(arr, r) &&
             cJSON_AddStringToObject(r, "path", hits[i].path) &&
             cJSON_AddNumberToObject(r, "score", (double)hits[i].score);
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return cli_error(CLI_EXIT_FAILURE, "out of memory");
    fprintf(f, "%s\n", s);
    free(s);
    return CLI_EXIT_OK;
}

static void print_text(FILE *f, const char *query, const pclip_index_hit *hits, int64_t n) {
    fprintf(f, "%s\n", query);
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "  %3lld  %.4f  %s\n", (long long)i + 1, (double)hits[i].score, hits[i].path);
}

/* ---- search ---- */

static int run_search(cli_run *run) {
    pclip_ctx_t ctx = run->ctx;
    size_t n_text = run->inputs.count, n_img = opt.images.count;
    if (n_text + n_img == 0) cli_usage_error("search needs a TEXT or --image IMAGE");
    pclip_index_t idx = NULL;
    pclip_status st = pclip_index_open(ctx, opt.index, &idx);
    if (st) return cli_fail(ctx, st);
    pclip_index_info info;
    pclip_index_get_info(idx, &info);
    int rc = CLI_EXIT_OK;
    pclip_index_hit *hits = NULL;
    if (info.count == 0) {
        rc = cli_error(CLI_EXIT_FAILURE, "index '%s' is empty: nothing to search", opt.index);
        goto done;
    }
    if (!run->model) { /* the index's own model */
        st = pclip_model_load(ctx, info.model_dir, &run->model);
        if (st) {
            rc = cli_error(CLI_EXIT_FAILURE,
                           "index '%s' was made with model '%s', which cannot be loaded (%s); "
                           "give its folder with --model",
                           opt.index, info.model_dir, pclip_ctx_last_error(ctx));
            goto done;
        }
        /* and its head, unless --head names another */
        const char *head = run->head_dir ? run->head_dir : info.head_dir;
        if (head && (st = pclip_model_set_head(run->model, head))) {
            rc = cli_fail(ctx, st);
            goto done;
        }
    }
    if ((st = pclip_index_check_model(idx, run->model))) {
        rc = cli_fail(ctx, st);
        goto done;
    }
    int64_t k = opt.top_k < info.count ? opt.top_k : info.count; /* past the index: all of it */
    size_t nq = n_text > n_img ? n_text : n_img;
    if (!(hits = malloc(nq * (size_t)k * sizeof *hits))) {
        rc = cli_error(CLI_EXIT_FAILURE, "out of memory for --top-k %lld", (long long)k);
        goto done;
    }
    /* texts in one scan, then images in one scan; the output is kept until
     * every query has run, so a failing query leaves stdout empty */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) {
        rc = cli_error(CLI_EXIT_FAILURE, "out of memory");
        goto done;
    }
    for (int pass = 0; pass < 2 && !rc; pass++) {
        size_t n = pass == 0 ? n_text : n_img;
        const char *const *q = pass == 0 ? run->inputs.items : opt.images.items;
        if (n == 0) continue;
        int64_t n_hits = 0;
        st = pass == 0 ? pclip_index_search_text(idx, run->model, run->backend, q, (int64_t)n, k,
                                                 hits, &n_hits)
                       : pclip_index_search_images(idx, run->model, run->backend, q, (int64_t)n, k,
                                                   hits, &n_hits);
        if (st) {
            rc = cli_fail(ctx, st);
            break;
        }
        for (size_t i = 0; i < n && !rc; i++) {
            if (opt.format == 1)
                rc = print_json(mem, q[i], hits + i * (size_t)k, n_hits);
            else
                print_text(mem, q[i], hits + i * (size_t)k, n_hits);
        }
    }
    if (fclose(mem) != 0 && !rc) rc = cli_error(CLI_EXIT_FAILURE, "out of memory");
    if (!rc) fwrite(buf, 1, len, stdout);
    free(buf);
done:
    free(hits);
    pclip_index_close(idx);
    return rc;
}

int cmd_search(cli_run *run) {
    int rc = run_search(run);
    cli_list_destroy(&opt.images);
    return rc;
}
