/* portclip classify: zero-shot classification of images against labels
 * (pclip_zeroshot_create_labels + pclip_zeroshot_image_files), printed per
 * image as a table, JSON lines or TSV, best label first. Also the JSON and
 * TSV string writers score shares.
 *
 * Bad arguments (no labels, an empty or duplicate label, a template without
 * one "{}") are usage errors found here before anything is encoded. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- JSON and TSV strings ---- */

/* Length of the valid UTF-8 sequence at s (strict: no overlongs, surrogates
 * or values past U+10FFFF), or 0. */
static size_t utf8_valid(const unsigned char *s) {
    unsigned char c = s[0];
    size_t n;
    unsigned v, min;
    if (c >= 0xC2 && c <= 0xDF) n = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0; /* also stops at the terminating NUL */
        v = (v << 6) | (s[i] & 0x3F);
    }
    return v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) ? 0 : n;
}

void cli_json_string(FILE *f, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        unsigned char c = *s;
        if (c == '"' || c == '\\') {
            fputc('\\', f), fputc(c, f), s++;
        } else if (c < 0x20 || c == 0x7F) {
            const char *short_form = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (short_form) fputs(short_form, f);
            else fprintf(f, "\\u%04x", c);
            s++;
        } else if (c < 0x80) {
            fputc(c, f), s++;
        } else {
            size_t n = utf8_valid(s);
            if (n) fwrite(s, 1, n, f), s += n;
            else fputs("\\ufffd", f), s++; /* a path's stray byte: JSON has no bytes */
        }
    }
    fputc('"', f);
}

void cli_tsv_field(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '\\': fputs("\\\\", f); break;
        case '\t': fputs("\\t", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        default: fputc(*s, f);
        }
}

/* ---- options ---- */

enum { FORMAT_TEXT, FORMAT_JSON, FORMAT_TSV };
static const char *const format_names[] = {"text", "json", "tsv", NULL};

static struct {
    const char *labels, *labels_file;
    cli_list templates, templates_files;
    int32_t top_k, batch_size;
    int format, preprocess;
    bool skip_bad;
} opt = {.batch_size = 32};

const cli_option cmd_classify_options[] = {
    CLI_STRING("--labels", "A,B,...", "the labels, comma-separated", &opt.labels),
    CLI_STRING("--labels-file", "FILE",
               "the labels, one per line (empty lines skipped; - is stdin)", &opt.labels_file),
    CLI_LIST("--template", "T",
             "a prompt with {} where the label goes (repeatable: the\n"
             "prompts of a label are averaged, CLIP's prompt ensemble);\n"
             "default \"" PCLIP_ZEROSHOT_TEMPLATE_DEFAULT "\"; '{}' uses the labels as they are",
             &opt.templates),
    CLI_LIST("--templates-file", "FILE", "more templates, one per line (empty lines skipped)",
             &opt.templates_files),
    CLI_INT("--top-k", "K", "print the K most probable labels (default: all; more\n"
            "than there are labels prints all)", &opt.top_k, 1, INT32_MAX),
    CLI_CHOICE("--format", "FMT",
               "text (default: a table per image), json (one object per\n"
               "line per image) or tsv (image, rank, label, prob, logit)",
               &opt.format, format_names),
    CLI_INT("--batch-size", "B", "images per encoder run (default 32)", &opt.batch_size, 1, 4096),
    CLI_CHOICE("--preprocess", "MODE", "openai (default) or hf, as for preprocess", &opt.preprocess,
               cli_preprocess_names),
    CLI_FLAG("--skip-bad", "leave out files that cannot be decoded (listed on stderr)",
             &opt.skip_bad),
    CLI_OPTIONS_END};

/* ---- labels and templates ---- */

static void split_labels(cli_list *l, char *s) {
    if (!*s) return; /* --labels "": no labels at all */
    for (char *p = s;; p++) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        cli_list_push(l, p);
        if (!comma) break;
        p = comma;
    }
}

/* The checks pclip_zeroshot_create_labels makes, as usage errors naming the option. */
static void check_labels(const cli_list *labels, const char *from) {
    if (labels->count == 0) cli_usage_error("%s: the label list is empty", from);
    for (size_t i = 0; i < labels->count; i++) {
        if (!labels->items[i][0]) cli_usage_error("%s: label %zu is empty", from, i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels->items[i], labels->items[j]) == 0)
                cli_usage_error("%s: label '%s' is given twice (labels %zu and %zu)", from,
                                labels->items[i], j + 1, i + 1);
    }
}

static void check_templates(const cli_list *templates) {
    for (size_t i = 0; i < templates->count; i++) {
        const char *t = templates->items[i];
        const char *hole = strstr(t, "{}");
        if (!hole) cli_usage_error("--template '%s' has no {} where the label goes", t);
        if (strstr(hole + 2, "{}")) cli_usage_error("--template '%s' has more than one {}", t);
    }
}

/* ---- output ---- */

static int64_t printed; /* images printed: a blank line between tables */

typedef struct printer {
    const char *const *paths;
    const cli_list *labels;
    int32_t *order; /* [count] */
    int32_t top_k;
} printer;

static pclip_status print_image(void *user, int64_t index, int32_t count, const float *logits,
                                const float *probs) {
    printer *p = user;
    const char *path = p->paths[index];
    pclip_zeroshot_rank(probs, count, p->order);
    int32_t k = p->top_k > 0 && p->top_k < count ? p->top_k : count;
    if (opt.format == FORMAT_JSON) {
        fputs("{\"image\": ", stdout);
        cli_json_string(stdout, path);
        fputs(", \"predictions\": [", stdout);
        for (int32_t r = 0; r < k; r++) {
            int32_t j = p->order[r];
            fputs(r ? ", {\"label\": " : "{\"label\": ", stdout);
            cli_json_string(stdout, p->labels->items[j]);
            printf(", \"prob\": %.9g, \"logit\": %.9g}", probs[j], logits[j]);
        }
        fputs("]}\n", stdout);
    } else if (opt.format == FORMAT_TSV) {
        for (int32_t r = 0; r < k; r++) {
            int32_t j = p->order[r];
            cli_tsv_field(stdout, path);
            printf("\t%d\t", (int)r + 1);
            cli_tsv_field(stdout, p->labels->items[j]);
            printf("\t%.9g\t%.9g\n", probs[j], logits[j]);
        }
    } else {
        printf("%s%s\n     prob    logit  label\n", printed++ ? "\n" : "", path);
        for (int32_t r = 0; r < k; r++) {
            int32_t j = p->order[r];
            printf("  %6.2f%%  %7.3f  %s\n", 100.0 * probs[j], logits[j], p->labels->items[j]);
        }
    }
    return ferror(stdout) ? PCLIP_STATUS_IO : PCLIP_STATUS_OK;
}

/* ---- classify ---- */

int cmd_classify(cli_run *run) {
    cli_list labels = {0};
    const char *from = opt.labels ? "--labels" : "--labels-file";
    char *labels_copy = NULL;
    if (!opt.labels == !opt.labels_file)
        cli_usage_error("classify needs the labels: --labels A,B,... or --labels-file FILE");
    if (opt.labels) {
        if (!(labels_copy = strdup(opt.labels))) return cli_error(CLI_EXIT_FAILURE, "out of memory");
        split_labels(&labels, labels_copy);
    } else if (cli_list_read_file(&labels, opt.labels_file, false)) {
        cli_list_destroy(&labels);
        return CLI_EXIT_FAILURE;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < opt.templates_files.count; i++)
        rc = cli_list_read_file(&opt.templates, opt.templates_files.items[i], false);
    if (!rc) {
        check_labels(&labels, from);
        check_templates(&opt.templates);
        if (labels.count > INT32_MAX || opt.templates.count > INT32_MAX)
            rc = cli_error(CLI_EXIT_FAILURE, "too many labels or templates");
    }
    pclip_zeroshot_t z = NULL;
    cli_images im = {0};
    int32_t *order = malloc(labels.count * sizeof *order);
    if (!rc && !order) rc = cli_error(CLI_EXIT_FAILURE, "out of memory");
    if (!rc) {
        pclip_status st = pclip_zeroshot_create_labels(
            run->model, run->backend, labels.items, (int32_t)labels.count,
            opt.templates.count ? opt.templates.items : NULL, (int32_t)opt.templates.count, &z);
        if (st) rc = cli_fail(run->ctx, st);
    }
    if (!rc) rc = cli_images_collect(run, &im);
    int64_t n_skipped = 0;
    if (!rc) {
        printer p = {.paths = im.paths, .labels = &labels, .order = order, .top_k = opt.top_k};
        pclip_embed_options eo = {.batch_size = opt.batch_size,
                                  .preprocess = (pclip_preprocess_mode)opt.preprocess,
                                  .skip = opt.skip_bad ? cli_report_skip : NULL,
                                  .skip_user = &n_skipped};
        pclip_status st = pclip_zeroshot_image_files(z, im.paths, im.n, &eo, print_image, &p);
        if (st == PCLIP_STATUS_IO && ferror(stdout)) rc = cli_stdout_done(CLI_EXIT_FAILURE);
        else if (st) rc = cli_fail(run->ctx, st);
    }
    if (!rc && n_skipped)
        fprintf(stderr, "portclip: %lld of %lld images skipped\n", (long long)n_skipped,
                (long long)im.n);
    cli_images_destroy(&im);
    pclip_zeroshot_destroy(z);
    free(order);
    free(labels_copy);
    cli_list_destroy(&labels);
    cli_list_destroy(&opt.templates);
    cli_list_destroy(&opt.templates_files);
    return rc;
}
