/* What every portclip command shares: the option-table parser (`--x V`,
 * `--x=V`, `--`, repeatable options, range-checked integers, choices), input
 * lists and list files, the one function that reports errors, opening the
 * model and backend a command's flags ask for, and checked writes to stdout.
 *
 * It knows no command by name; main.c holds the command table. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- errors ---- */

static const char *current_command; /* for "see 'portclip help CMD'" */

void cli_set_command(const char *name) { current_command = name; }

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) return *cp = s[0], 1;
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (!len || len > n || s[0] > 0xF4) return 0;
    uint32_t c = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

bool cli_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_len(p + i, n - i, &cp);
        if (!k) return false;
        i += k;
    }
    return true;
}

void cli_fputs_escaped(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_len(p + i, n - i, &cp);
        if (k == 0 || cp < 0x20 || cp == 0x7F) { /* C0 controls, DEL, stray bytes */
            fprintf(f, "\\x%02x", p[i]);
            i++;
        } else if (cp >= 0x80 && cp <= 0x9F) { /* C1 controls (CSI is U+009B) */
            fprintf(f, "\\u%04x", (unsigned)cp);
            i += k;
        } else {
            fwrite(p + i, 1, k, f);
            i += k;
        }
    }
}

static int verror(int code, const char *fmt, va_list ap) {
    /* the whole message escaped: file names and texts in it come from users */
    char small[1024], *msg = small;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small && (msg = malloc((size_t)n + 1)) != NULL)
        vsnprintf(msg, (size_t)n + 1, fmt, again);
    va_end(again);
    if (!msg) msg = small; /* out of memory: the message cut */
    fputs("portclip: error: ", stderr);
    cli_fputs_escaped(stderr, n < 0 ? fmt : msg);
    if (msg != small) free(msg);
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
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        cli_error(CLI_EXIT_FAILURE, "writing to stdout failed: %s",
                  e ? strerror(e) : "write error");
        if (!code) code = CLI_EXIT_FAILURE;
    }
    /* stderr cannot report its own failure: the exit status does */
    if ((fflush(stderr) != 0 || ferror(stderr)) && !code) code = CLI_EXIT_FAILURE;
    return code;
}

/* ---- signals ---- */

static void on_signal(int sig) {
    pclip_output_temps_remove(); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig); /* delivered once this handler returns: the conventional status */
}

void cli_signals_install(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* one handler at a time */
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        /* a signal ignored by whoever started us (nohup) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

_Noreturn void cli_exit(int code) { exit(cli_stdout_done(code)); }

/* ---- input lists ---- */

static _Noreturn void out_of_memory(size_t items) {
    cli_error(CLI_EXIT_FAILURE, "out of memory growing the input list to %zu entries (%zu bytes)",
              items, items * sizeof(char *));
    exit(CLI_EXIT_FAILURE);
}

void cli_list_push(cli_list *l, const char *s) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const char **grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) out_of_memory(cap);
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->count++] = s;
}

/* Where a list file's lines are copied: blocks of 1 MiB (a longer line gets
 * its own), kept in the list's buffers because its items point into them. */
#define LIST_BLOCK ((size_t)1 << 20)
typedef struct list_arena {
    char *next;
    size_t room;
} list_arena;

static char *list_store(cli_list *l, list_arena *a, const char *p, size_t n) {
    if (n + 1 > a->room) {
        size_t size = n + 1 > LIST_BLOCK ? n + 1 : LIST_BLOCK;
        char *block = malloc(size);
        char **grown = block ? realloc(l->buffers, (l->n_buffers + 1) * sizeof *grown) : NULL;
        if (!grown) {
            free(block);
            return NULL;
        }
        l->buffers = grown;
        l->buffers[l->n_buffers++] = block;
        a->next = block;
        a->room = size;
    }
    char *dst = a->next;
    memcpy(dst, p, n);
    dst[n] = '\0';
    a->next += n + 1;
    a->room -= n + 1;
    return dst;
}

/* One line of a list file, checked: no NUL byte, valid UTF-8, not too long. */
static int list_line(cli_list *l, const char *path, size_t line_no, char *p, size_t n,
                     bool keep_empty, list_arena *arena) {
    if (n > 0 && p[n - 1] == '\r') n--;
    if (memchr(p, '\0', n))
        return cli_error(CLI_EXIT_FAILURE, "list file '%s': line %zu: contains a NUL byte", path,
                         line_no);
    if (!cli_utf8_valid(p, n))
        return cli_error(CLI_EXIT_FAILURE, "list file '%s': line %zu: not valid UTF-8", path,
                         line_no);
    if (n == 0 && !keep_empty) return 0;
    char *copy = list_store(l, arena, p, n);
    if (!copy)
        return cli_error(CLI_EXIT_FAILURE, "list file '%s': out of memory at line %zu (%zu bytes)",
                         path, line_no, n + 1);
    cli_list_push(l, copy);
    return 0;
}

int cli_list_read_file(cli_list *l, const char *path, bool keep_empty) {
    /* streamed: one line in memory at a time, at most CLI_LIST_LINE_MAX bytes
     * (a pipe or FIFO is fine here: its lines arrive as they are written) */
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return cli_error(CLI_EXIT_FAILURE, "list file '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0, line_no = 1;
    list_arena arena = {NULL, 0};
    char *line = malloc(cap);
    int rc = line ? 0 : cli_error(CLI_EXIT_FAILURE, "list file '%s': out of memory", path);
    char chunk[1 << 16];
    for (;;) {
        if (rc) break;
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = cli_error(CLI_EXIT_FAILURE, "list file '%s': cannot read: %s", path,
                           strerror(errno));
            break;
        }
        if (r == 0) {
            if (len) rc = list_line(l, path, line_no, line, len, keep_empty, &arena);
            break;
        }
        for (const char *p = chunk, *end = chunk + r; p < end && !rc;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t take = (size_t)((nl ? nl : end) - p);
            if (memchr(p, '\0', take)) { /* at once: a file of NULs is not buffered */
                rc = cli_error(CLI_EXIT_FAILURE, "list file '%s': line %zu: contains a NUL byte",
                               path, line_no);
                break;
            }
            if (len + take > CLI_LIST_LINE_MAX) {
                rc = cli_error(CLI_EXIT_FAILURE, "list file '%s': line %zu: longer than %d bytes",
                               path, line_no, CLI_LIST_LINE_MAX);
                break;
            }
            if (len + take > cap) {
                while (len + take > cap) cap *= 2;
                char *grown = realloc(line, cap);
                if (!grown) {
                    rc = cli_error(CLI_EXIT_FAILURE, "list file '%s': out of memory (%zu bytes)",
                                   path, cap);
                    break;
                }
                line = grown;
            }
            memcpy(line + len, p, take);
            len += take;
            p += take;
            if (nl) {
                rc = list_line(l, path, line_no++, line, len, keep_empty, &arena);
                len = 0;
                p++;
            }
        }
    }
    free(line);
    if (fd != STDIN_FILENO) close(fd);
    return rc;
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
    const char *head;
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
               "fp32|bf16|fp16: matmuls against weights in bf16 (cpu device 0 with\n"
               "AVX512_BF16 or AMX) or fp16 (vulkan with 16-bit storage), fp32\n"
               "accumulation; see README, Precision\n"
               "(default: PORTCLIP_PRECISION, else fp32)",
               &shared.precision),
    CLI_OPTIONS_END};

/* Commands that embed can run an MLP projection head instead of CLIP's. */
static const cli_option head_options[] = {
    CLI_STRING("--head", "DIR",
               "an MLP projection head (head.json, head.safetensors; from\n"
               "'portclip train --head mlp') in place of the model's projections",
               &shared.head),
    CLI_OPTIONS_END};

#define MAX_TABLES CLI_MAX_TABLES

/* The tables a command takes, in the order its usage lists them. */
int cli_command_tables(const cli_command *cmd, const cli_option *out[CLI_MAX_TABLES]) {
    int n = 0;
    if (cmd->flags & (CLI_NEEDS_MODEL | CLI_MAY_MODEL)) out[n++] = model_options;
    if (cmd->flags & CLI_HEAD) out[n++] = head_options;
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
    run->head_dir = shared.head;
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
    /* a bad output is refused before the model is loaded */
    const cli_option *tables[MAX_TABLES];
    int n_tables = cli_command_tables(cmd, tables);
    for (int t = 0; t < n_tables; t++)
        for (const cli_option *o = tables[t]; o->name; o++) {
            const char *out = o->output ? *(const char **)o->dest : NULL;
            pclip_status st = out ? pclip_output_check(run->ctx, out) : PCLIP_STATUS_OK;
            if (st) return cli_fail(run->ctx, st);
        }
    if (run->model_dir && (cmd->flags & (CLI_NEEDS_MODEL | CLI_MAY_MODEL))) {
        pclip_status st = pclip_model_load_parts(run->ctx, run->model_dir, cmd->parts, &run->model);
        if (!st && run->head_dir) st = pclip_model_set_head(run->model, run->head_dir);
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
