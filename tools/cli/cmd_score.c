/* portclip score: Hugging Face CLIPModel's logits_per_image for images
 * against texts (exp(logit_scale) * cos), and each row's softmax over the
 * texts, one entry per text in the order given
 * (pclip_zeroshot_create_texts + pclip_zeroshot_image_files). Printed per
 * image as a table or as JSON lines. */
#include <stdlib.h>

#include "cli.h"

/* ---- options ---- */

enum { FORMAT_TEXT, FORMAT_JSON };
static const char *const format_names[] = {"text", "json", NULL};

static struct {
    cli_list texts, texts_files;
    int32_t batch_size;
    int format, preprocess;
    bool skip_bad;
} opt = {.batch_size = 32};

const cli_option cmd_score_options[] = {
    CLI_LIST("--text", "T", "a text to score the images against (repeatable)", &opt.texts),
    CLI_LIST("--texts-file", "FILE",
             "more texts, one per line (an empty line is an empty text;\n"
             "- is stdin; repeatable)",
             &opt.texts_files),
    CLI_CHOICE("--format", "FMT", "text (default: a table per image) or json (one object\n"
               "per line per image)", &opt.format, format_names),
    CLI_INT("--batch-size", "B", "images per encoder run (default 32)", &opt.batch_size, 1, 4096),
    CLI_CHOICE("--preprocess", "MODE", "openai (default) or hf, as for preprocess", &opt.preprocess,
               cli_preprocess_names),
    CLI_FLAG("--skip-bad", "leave out files that cannot be decoded (listed on stderr)",
             &opt.skip_bad),
    CLI_OPTIONS_END};

/* ---- output ---- */

static int64_t printed; /* images printed: a blank line between tables */

static pclip_status print_image(void *user, int64_t index, int32_t count, const float *logits,
                                const float *probs) {
    const char *path = ((const char *const *)user)[index];
    if (opt.format == FORMAT_JSON) {
        fputs("{\"image\": ", stdout);
        cli_json_string(stdout, path);
        fputs(", \"logits\": [", stdout);
        for (int32_t j = 0; j < count; j++) printf("%s%.9g", j ? ", " : "", logits[j]);
        fputs("], \"probs\": [", stdout);
        for (int32_t j = 0; j < count; j++) printf("%s%.9g", j ? ", " : "", probs[j]);
        fputs("]}\n", stdout);
    } else {
        printf("%s%s\n    logit     prob  text\n", printed++ ? "\n" : "", path);
        for (int32_t j = 0; j < count; j++)
            printf("  %7.3f  %6.2f%%  %s\n", logits[j], 100.0 * probs[j], opt.texts.items[j]);
    }
    return ferror(stdout) ? PCLIP_STATUS_IO : PCLIP_STATUS_OK;
}

/* ---- score ---- */

int cmd_score(cli_run *run) {
    int rc = 0;
    for (size_t i = 0; !rc && i < opt.texts_files.count; i++)
        rc = cli_list_read_file(&opt.texts, opt.texts_files.items[i], true);
    if (!rc && opt.texts.count == 0)
        cli_usage_error("score needs texts: --text T (repeatable) or --texts-file FILE");
    if (!rc && opt.texts.count > INT32_MAX) rc = cli_error(CLI_EXIT_FAILURE, "too many texts");
    pclip_zeroshot_t z = NULL;
    cli_images im = {0};
    if (!rc) {
        pclip_status st = pclip_zeroshot_create_texts(run->model, run->backend, opt.texts.items,
                                                      (int32_t)opt.texts.count, &z);
        if (st) rc = cli_fail(run->ctx, st);
    }
    if (!rc) rc = cli_images_collect(run, &im);
    int64_t n_skipped = 0;
    if (!rc) {
        pclip_embed_options eo = {.batch_size = opt.batch_size,
                                  .preprocess = (pclip_preprocess_mode)opt.preprocess,
                                  .skip = opt.skip_bad ? cli_report_skip : NULL,
                                  .skip_user = &n_skipped};
        pclip_status st =
            pclip_zeroshot_image_files(z, im.paths, im.n, &eo, print_image, (void *)im.paths);
        if (st == PCLIP_STATUS_IO && ferror(stdout)) rc = cli_stdout_done(CLI_EXIT_FAILURE);
        else if (st) rc = cli_fail(run->ctx, st);
    }
    if (!rc && n_skipped)
        fprintf(stderr, "portclip: %lld of %lld images skipped\n", (long long)n_skipped,
                (long long)im.n);
    cli_images_destroy(&im);
    pclip_zeroshot_destroy(z);
    cli_list_destroy(&opt.texts);
    cli_list_destroy(&opt.texts_files);
    return rc;
}
