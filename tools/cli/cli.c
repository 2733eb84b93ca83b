/* What every portclip command shares: the option-table parser (`--x V`,
 * `--x=V`, `--`, repeatable options, range-checked integers, choices), input
 * lists and list files, the one function that reports errors, opening the
 * model and backend a command's flags ask for, and checked writes to stdout.
 *
 * It knows no command by name; main.c holds the command table. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

static const char *current_command; /* for "see 'portclip help CMD'" */

void cli_set_command(const char *name) { current_command = name; }

static int verror(int code, const char *fmt, va_list ap) {
    fputs("portclip: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    if (code == CLI_EXIT_USAGE) {
        if (current_command)
            fprintf(stderr, " (see 'portclip help %s')", current_command);
        else
            fputs(" (see 'portclip help')", stderr);
    }
    fputc('\n', stderr);
    return code;
}

int cli_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(code, fmt, ap);
    va_end(ap);
    return code;
}

_Noreturn void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(CLI_EXIT_USAGE, fmt, ap);
    va_end(ap);
    exit(CLI_EXIT_USAGE);
}

int cli_fail(pclip_ctx_t ctx, pclip_status st) {
    const char *msg = ctx ? pclip_ctx_last_error(ctx) : NULL;
    return cli_error(CLI_EXIT_FAILURE, "%s", msg && *msg ? msg : pclip_status_str(st));
}

/* ---- output ---- */

int cli_stdout_done(int code) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        cli_error(CLI_EXIT_FAILURE, "writing to stdout failed: %s", strerror(e));
        return code ? code : CLI_EXIT_FAILURE;
    }
    return code;
}

_Noreturn void cli_exit(int code) { exit(cli_stdout_done(code)); }

/* ---- input lists ---- */

static _Noreturn void out_of_memory(void) {
    cli_error(CLI_EXIT_FAILURE, "out of memory");
    exit(CLI_EXIT_FAILURE);
}

void cli_list_push(cli_list *l, const char *s) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const char **grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) out_of_memory();
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->count++] = s;
}

int cli_list_read_file(cli_list *l, const char *path, bool keep_empty) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return cli_error(CLI_EXIT_FAILURE, "list file '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    bool bad = !buf || ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        free(buf);
        return cli_error(CLI_EXIT_FAILURE, "list file '%s': cannot read", path);
    }
    buf[n] = '\0';
    char **grown = realloc(l->buffers, (l->n_buffers + 1) * sizeof *grown);
    if (!grown) out_of_memory();
    l->buffers = grown;
    l->buffers[l->n_buffers++] = buf;
    for (char *p = buf; p < buf + n;) {
        char *nl = memchr(p, '\n', (size_t)(buf + n - p));
        char *end = nl ? nl : buf + n;
        *end = '\0';
        if (end > p && end[-1] == '\r') end[-1] = '\0';
        if (*p || keep_empty) cli_list_push(l, p);
        p = end + 1;
    }
    return 0;
}

void cli_list_destroy(cli_list *l) {
    for (size_t i = 0; i < l->n_buffers; i++) free(l->buffers[i]);
    free(l->buffers);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* ---- the options the flags add ---- */

const char *const cli_preprocess_names[] = {
    [PCLIP_PREPROCESS_OPENAI] = "openai", [PCLIP_PREPROCESS_HF] = "hf", NULL};
_Static_assert(PCLIP_PREPROCESS_COUNT == 2, "name every preprocess mode in cli_preprocess_names");

/* One command runs per process, so the shared options live here. */
static struct {
    const char *model;
    const char *backend;
    int32_t device;
    const char *precision;
    cli_list texts_files, images_files;
} shared = {.device = -1};

static const cli_option model_options[] = {
    CLI_STRING("--model", "DIR", "a Hugging Face CLIP model directory", &shared.model),
    CLI_OPTIONS_END};
static const cli_option texts_options[] = {
    CLI_LIST("--texts-file", "FILE",
             "read texts from FILE, one per line, after those given\n"
             "(an empty line is an empty text; - is stdin; repeatable)",
             &shared.texts_files),
    CLI_OPTIONS_END};
static const cli_option images_options[] = {
    CLI_LIST("--images-file", "FILE",
             "read image paths from FILE, one per line, after those given\n"
             "(empty lines skipped; - is stdin; repeatable)",
             &shared.images_files),
    CLI_OPTIONS_END};
static const cli_option backend_options[] = {
    CLI_STRING("--backend", "NAME", "cpu|vulkan|opencl|auto (default: PORTCLIP_BACKEND, else auto)",
               &shared.backend),
    CLI_INT("--device", "N", "device index (default: PORTCLIP_DEVICE, else 0)", &shared.device, 0,
            1000),
    CLI_OPTIONS_END};
/* Commands that open a backend encode on it: they take --precision too. */
static const cli_option precision_options[] = {
    CLI_STRING("--precision", "P",
               "fp32|bf16: matmuls against weights in bf16 with fp32 accumulation\n"
               "(cpu device 0 with AVX512_BF16 or AMX; see README, Precision)\n"
               "(default: PORTCLIP_PRECISION, else fp32)",
               &shared.precision),
    CLI_OPTIONS_END};

#define MAX_TABLES CLI_MAX_TABLES

/* The tables a command takes, in the order its usage lists them. */
int cli_command_tables(const cli_command *cmd, const cli_option *out[CLI_MAX_TABLES]) {
    int n = 0;
    if (cmd->flags & (CLI_NEEDS_MODEL | CLI_MAY_MODEL)) out[n++] = model_options;
    if (cmd->options) out[n++] = cmd->options;
    if (cmd->flags & CLI_TEXT_INPUTS) out[n++] = texts_options;
    if (cmd->flags & CLI_IMAGE_INPUTS) out[n++] = images_options;
    if (cmd->flags & (CLI_NEEDS_BACKEND | CLI_PICKS_BACKEND)) out[n++] = backend_options;
    if (cmd->flags & CLI_NEEDS_BACKEND) out[n++] = precision_options;
    return n;
}

/* ---- usage ---- */

static void print_option(FILE *f, const char *left, const char *help) {
    fprintf(f, "  %-22s ", left);
    for (const char *p = help; *p; p++) {
        fputc(*p, f);
        if (*p == '\n') fprintf(f, "  %-22s ", "");
    }
    fputc('\n', f);
}

void cli_print_help(FILE *f, const cli_command *cmd) {
    fprintf(f, "usage: portclip %s%s%s\n\n%s\n\noptions:\n", cmd->name, cmd->synopsis[0] ? " " : "",
            cmd->synopsis, cmd->summary);
    const cli_option *tables[MAX_TABLES];
    int n = cli_command_tables(cmd, tables);
    for (int t = 0; t < n; t++)
        for (const cli_option *o = tables[t]; o->name; o++) {
            char left[64];
            snprintf(left, sizeof left, "%s%s%s", o->name, o->value ? " " : "",
                     o->value ? o->value : "");
            print_option(f, left, o->help);
        }
    print_option(f, "-h, --help", "this text");
}

/* ---- parsing ---- */

static const cli_option *find_option(const cli_option *const *tables, int n, const char *arg,
                                     size_t len) {
    for (int t = 0; t < n; t++)
        for (const cli_option *o = tables[t]; o->name; o++)
            if (strlen(o->name) == len && strncmp(o->name, arg, len) == 0) return o;
    return NULL;
}

static void set_choice(const cli_option *o, const char *v) {
    for (int i = 0; o->choices[i]; i++)
        if (strcmp(o->choices[i], v) == 0) {
            *(int *)o->dest = i;
            return;
        }
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; o->choices[i] && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'",
                                 i == 0              ? ""
                                 : o->choices[i + 1] ? ", "
                                                     : " or ",
                                 o->choices[i]);
    cli_usage_error("%s must be %s, not '%s'", o->name, list, v);
}

static void set_value(const cli_option *o, const char *v) {
    switch (o->kind) {
    case CLI_OPT_FLAG: *(bool *)o->dest = true; break;
    case CLI_OPT_STRING: *(const char **)o->dest = v; break;
    case CLI_OPT_LIST: cli_list_push(o->dest, v); break;
    case CLI_OPT_CHOICE: set_choice(o, v); break;
    case CLI_OPT_INT: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < o->min || x > o->max)
            cli_usage_error("%s must be an integer from %d to %d, not '%s'", o->name, (int)o->min,
                            (int)o->max, v);
        *(int32_t *)o->dest = (int32_t)x;
        break;
    }
    }
}

static void parse(cli_run *run, const cli_command *cmd, int argc, char **argv) {
    const cli_option *tables[MAX_TABLES];
    int n_tables = cli_command_tables(cmd, tables);
    bool takes_inputs = cmd->flags & (CLI_TEXT_INPUTS | CLI_IMAGE_INPUTS | CLI_WORDS);
    bool only_inputs = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_inputs || a[0] != '-' || strcmp(a, "-") == 0) {
            if (!takes_inputs) cli_usage_error("%s takes no arguments, not '%s'", cmd->name, a);
            cli_list_push(&run->inputs, a);
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_inputs = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_print_help(stdout, cmd);
            cli_exit(CLI_EXIT_OK);
        }
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_option *o = find_option(tables, n_tables, a, len);
        if (!o) cli_usage_error("%s does not take %.*s", cmd->name, (int)len, a);
        if (o->kind == CLI_OPT_FLAG) {
            if (eq) cli_usage_error("%s takes no value", o->name);
            set_value(o, NULL);
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && i + 1 < argc) v = argv[++i];
        if (!v) cli_usage_error("%s needs a value: %s %s", o->name, o->name, o->value);
        set_value(o, v);
    }
    if ((cmd->flags & CLI_NEEDS_MODEL) && !shared.model)
        cli_usage_error("%s needs --model DIR", cmd->name);
    for (int t = 0; t < n_tables; t++)
        for (const cli_option *o = tables[t]; o->name; o++)
            if (o->required && o->kind == CLI_OPT_STRING && !*(const char **)o->dest)
                cli_usage_error("%s needs %s %s", cmd->name, o->name, o->value);
    run->model_dir = shared.model;
    run->backend_name = shared.backend;
    run->device = shared.device;
    run->precision = PCLIP_PRECISION_FP32;
    if (cmd->flags & CLI_NEEDS_BACKEND) {
        /* a bad value is a usage error, from the option or the environment */
        const char *what = "--precision", *v = shared.precision;
        if (!v) {
            what = "PORTCLIP_PRECISION";
            v = getenv(what);
            if (v && !*v) v = NULL;
        }
        if (v && pclip_precision_parse(run->ctx, v, what, &run->precision))
            cli_usage_error("%s", pclip_ctx_last_error(run->ctx));
    }
}

/* ---- set-up from the flags ---- */

int cli_backend_open(cli_run *run, const char *name, pclip_backend_t *out) {
    pclip_status st = pclip_backend_create(run->ctx, name, run->device, out);
    if (!st && (st = pclip_backend_set_precision(*out, run->precision))) {
        pclip_backend_destroy(*out);
        *out = NULL;
    }
    return st ? cli_fail(run->ctx, st) : 0;
}

int cli_run_setup(cli_run *run, const cli_command *cmd, int argc, char **argv) {
    run->cmd = cmd;
    parse(run, cmd, argc, argv);
    const cli_list *files = (cmd->flags & CLI_TEXT_INPUTS)    ? &shared.texts_files
                            : (cmd->flags & CLI_IMAGE_INPUTS) ? &shared.images_files
                                                              : NULL;
    for (size_t i = 0; files && i < files->count; i++)
        if (cli_list_read_file(&run->inputs, files->items[i], cmd->flags & CLI_TEXT_INPUTS))
            return CLI_EXIT_FAILURE;
    if ((cmd->flags & (CLI_TEXT_INPUTS | CLI_IMAGE_INPUTS)) && run->inputs.count == 0)
        cli_usage_error("%s needs at least one %s", cmd->name,
                        (cmd->flags & CLI_TEXT_INPUTS) ? "TEXT" : "IMAGE");
    if (run->model_dir && (cmd->flags & (CLI_NEEDS_MODEL | CLI_MAY_MODEL))) {
        pclip_status st = pclip_model_load_parts(run->ctx, run->model_dir, cmd->parts, &run->model);
        if (st) return cli_fail(run->ctx, st);
    }
    if (cmd->flags & CLI_NEEDS_BACKEND)
        return cli_backend_open(run, run->backend_name, &run->backend);
    return 0;
}

void cli_run_teardown(cli_run *run) {
    pclip_model_destroy(run->model); /* before the backend: it holds graphs compiled on it */
    pclip_backend_destroy(run->backend);
    run->model = NULL;
    run->backend = NULL;
    cli_list_destroy(&run->inputs);
    cli_list_destroy(&shared.texts_files);
    cli_list_destroy(&shared.images_files);
}
