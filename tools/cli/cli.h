/* The parts every portclip command shares: the command and option tables, the
 * option parser, input lists, the one error-reporting function, opening the
 * model and backend a command's flags ask for, and checked output to stdout.
 *
 * It holds no command: each lives in its own cmd_*.c file, and main.c lists
 * them. Nothing here computes anything; that is the library's job. */
#ifndef PCLIP_CLI_H
#define PCLIP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "portclip.h"

/* ---- exit codes ---- */

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1, /* a bad input: unreadable file, bad model, failed run */
    CLI_EXIT_USAGE = 2    /* unknown command or option, missing or bad value */
};

/* ---- option tables ---- */

typedef enum cli_opt_kind {
    CLI_OPT_FLAG,   /* no value; sets a bool */
    CLI_OPT_STRING, /* a value; the last one given wins */
    CLI_OPT_LIST,   /* a value; repeatable, each appended to a cli_list */
    CLI_OPT_INT,    /* an integer from min to max, into an int32_t */
    CLI_OPT_CHOICE  /* one of `choices`; its index into an int */
} cli_opt_kind;

typedef struct cli_option {
    const char *name;  /* "--batch-size" */
    const char *value; /* what the value is called in the usage ("B"); NULL for a flag */
    const char *help;  /* one line; "\n" starts another */
    cli_opt_kind kind;
    void *dest;                 /* bool, const char *, cli_list, int32_t or int, by kind */
    int32_t min, max;           /* CLI_OPT_INT */
    const char *const *choices; /* CLI_OPT_CHOICE: NULL-terminated */
    bool required;
    bool output; /* an output file: checked (pclip_output_check) before any work */
} cli_option;

/* Table entries, by kind; a table ends with CLI_OPTIONS_END. */
#define CLI_FLAG(n, h, d)                                                                          \
    { .name = (n), .help = (h), .kind = CLI_OPT_FLAG, .dest = (d) }
#define CLI_STRING(n, v, h, d)                                                                     \
    { .name = (n), .value = (v), .help = (h), .kind = CLI_OPT_STRING, .dest = (d) }
#define CLI_REQUIRED(n, v, h, d)                                                                   \
    {                                                                                              \
        .name = (n), .value = (v), .help = (h), .kind = CLI_OPT_STRING, .dest = (d),               \
        .required = true                                                                           \
    }
/* A required output file (.npy and the like), refused before any work is
 * done when it cannot be written. */
#define CLI_OUTPUT(n, v, h, d)                                                                     \
    {                                                                                              \
        .name = (n), .value = (v), .help = (h), .kind = CLI_OPT_STRING, .dest = (d),               \
        .required = true, .output = true                                                           \
    }
#define CLI_LIST(n, v, h, d)                                                                       \
    { .name = (n), .value = (v), .help = (h), .kind = CLI_OPT_LIST, .dest = (d) }
#define CLI_INT(n, v, h, d, lo, hi)                                                                \
    {                                                                                              \
        .name = (n), .value = (v), .help = (h), .kind = CLI_OPT_INT, .dest = (d), .min = (lo),     \
        .max = (hi)                                                                                \
    }
#define CLI_CHOICE(n, v, h, d, names)                                                              \
    {                                                                                              \
        .name = (n), .value = (v), .help = (h), .kind = CLI_OPT_CHOICE, .dest = (d),               \
        .choices = (names)                                                                         \
    }
#define CLI_OPTIONS_END                                                                            \
    { .name = NULL }

/* ---- input lists ---- */

typedef struct cli_list {
    const char **items;
    size_t count, cap;
    char **buffers; /* list files' contents, which items point into */
    size_t n_buffers;
} cli_list;

/* The longest line a list file may have (a text is cut at 1 MiB anyway). */
#define CLI_LIST_LINE_MAX (1 << 20)

void cli_list_push(cli_list *l, const char *s);
/* Appends the lines of `path` ("-": stdin; pipes and FIFOs are fine) to `l`,
 * streamed: a trailing "\r" is dropped; empty lines are kept as empty texts
 * when `keep_empty`, else skipped. A line with a NUL byte, invalid UTF-8 or
 * over CLI_LIST_LINE_MAX bytes is an error naming the file and line.
 * Reports a failure and returns CLI_EXIT_FAILURE, or 0. */
int cli_list_read_file(cli_list *l, const char *path, bool keep_empty);
void cli_list_destroy(cli_list *l);

/* ---- the command table ---- */

/* What main.c sets up before a command runs, and what its usage lists. */
enum {
    CLI_NEEDS_MODEL = 1u << 0,   /* --model DIR, required; the model is loaded with `parts` */
    CLI_MAY_MODEL = 1u << 1,     /* --model DIR, optional; loaded with `parts` when given */
    CLI_NEEDS_BACKEND = 1u << 2, /* --backend, --device; the backend is opened */
    CLI_PICKS_BACKEND = 1u << 3, /* --backend, --device; the command opens backends itself */
    CLI_TEXT_INPUTS = 1u << 4,   /* TEXT... and --texts-file; at least one */
    CLI_IMAGE_INPUTS = 1u << 5,  /* IMAGE... and --images-file; at least one */
    CLI_WORDS = 1u << 6,         /* positional arguments of the command's own, any number */
    CLI_HEAD = 1u << 7           /* --head DIR: the model runs that MLP projection head */
};

typedef struct cli_run cli_run;

typedef struct cli_command {
    const char *name;
    int (*fn)(cli_run *run);   /* returns an exit code */
    uint32_t flags;            /* CLI_NEEDS_* and friends */
    uint32_t parts;            /* PCLIP_MODEL_PART_* for CLI_NEEDS_MODEL / CLI_MAY_MODEL */
    const char *synopsis;      /* what follows "portclip NAME" */
    const char *summary;       /* one line for `portclip help` */
    const cli_option *options; /* the command's own (NULL: none); the flags add the shared ones */
} cli_command;

/* One command's run: the parsed shared options and what was opened for it. */
struct cli_run {
    const cli_command *cmd;
    pclip_ctx_t ctx;
    const char *model_dir;    /* --model, or NULL */
    const char *backend_name; /* --backend, or NULL: PORTCLIP_BACKEND */
    int32_t device;           /* --device, or -1: PORTCLIP_DEVICE */
    /* --precision, else PORTCLIP_PRECISION, else fp32 */
    pclip_precision precision;
    cli_list inputs;          /* positional arguments, then the list files' lines */
    const char *head_dir;     /* --head, or NULL (set on the model when it is loaded) */
    pclip_model_t model;      /* loaded when the flags ask for it */
    pclip_backend_t backend;  /* opened when the flags ask for it */
};

/* Parses argv[1..] (argv[0] is the command's name) with the command's table
 * and the shared options its flags add, then loads the model and opens the
 * backend as the flags say. `--help` prints the command's usage and exits;
 * usage errors exit 2. Returns 0, or the exit code of a failure it reported. */
int cli_run_setup(cli_run *run, const cli_command *cmd, int argc, char **argv);
/* Destroys what cli_run_setup opened (the model before its backend). */
void cli_run_teardown(cli_run *run);

/* Opens the backend named by --backend/--device (or the environment) and
 * sets run->precision on it. */
int cli_backend_open(cli_run *run, const char *name, pclip_backend_t *out);

/* The option tables a command takes (its own and those its flags add), in
 * the order its usage lists them; returns how many. */
#define CLI_MAX_TABLES 7
int cli_command_tables(const cli_command *cmd, const cli_option *out[CLI_MAX_TABLES]);

/* The usage of one command: synopsis, summary and every option it takes. */
void cli_print_help(FILE *f, const cli_command *cmd);

/* The --preprocess values, indexed by pclip_preprocess_mode. */
extern const char *const cli_preprocess_names[];

/* ---- generated documentation (docs.c) ---- */

/* The manual page portclip(1) in roff, from the command table: the same
 * synopses, summaries and option help as `portclip help CMD`. */
void cli_print_man(FILE *f, const cli_command *cmds, size_t n);
/* A bash completion script for the commands, their options, the choices of
 * the options that have them and the backend names. */
void cli_print_bash_completion(FILE *f, const cli_command *cmds, size_t n);

/* ---- errors ---- */

/* The one place errors are reported: "portclip: error: MESSAGE" on stderr;
 * usage errors add where to read the usage (of the current command, when
 * there is one). Returns `code`. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes s with control characters (C0, DEL, C1) and bytes that are not
 * UTF-8 escaped as \\xNN / \\uNNNN: file names reach the terminal harmless.
 * cli_error escapes its whole message through it. */
void cli_fputs_escaped(FILE *f, const char *s);
bool cli_utf8_valid(const char *s, size_t n);
/* SIGINT, SIGTERM and SIGHUP remove the temp files of outputs being written
 * (pclip_output_temps_remove) and then end the process by the same signal. */
void cli_signals_install(void);
/* cli_error(CLI_EXIT_USAGE, ...), then exit(2). */
_Noreturn void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports a failed library call by the context's last error (or the status's
 * sentence); returns CLI_EXIT_FAILURE. */
int cli_fail(pclip_ctx_t ctx, pclip_status st);
/* The command named in usage errors; set by main.c once it is known. */
void cli_set_command(const char *name);

/* ---- output ---- */

/* Flushes stdout and reports a failed write; returns CLI_EXIT_FAILURE then,
 * else `code` (also CLI_EXIT_FAILURE when stderr could not be written). */
int cli_stdout_done(int code);
/* exit(cli_stdout_done(code)). */
_Noreturn void cli_exit(int code);

/* ---- image inputs (cmd_embed.c) ---- */

/* The image files of a command's inputs: files as given, folders walked
 * (recursively, sorted, images recognised by content). */
typedef struct cli_images {
    const char *const *paths; /* [n], borrowed from list or the inputs */
    int64_t n;
    pclip_path_list_t list; /* owns the paths */
} cli_images;
/* Reports a failure (or no image at all) and returns its exit code, or 0. */
int cli_images_collect(cli_run *run, cli_images *out);
void cli_images_destroy(cli_images *im);
/* An embed `skip` callback: "portclip: skipped: MESSAGE" on stderr; user is an
 * int64_t count of the files skipped. */
void cli_report_skip(void *user, const pclip_image_failure *f);
/* "OUT.paths.txt" for OUT, allocated; NULL when out of memory. */
char *cli_paths_file(const char *output);

/* ---- JSON and TSV output (cmd_classify.c) ---- */

/* Writes s as a JSON string (quotes included): ", \ and control characters
 * escaped, other valid UTF-8 as it is, each byte of invalid UTF-8 as U+FFFD. */
void cli_json_string(FILE *f, const char *s);
/* Writes s for a TSV field: \, tab, line feed and carriage return as \\, \t,
 * \n and \r; everything else as it is. */
void cli_tsv_field(FILE *f, const char *s);

/* ---- the commands (one file per family) ---- */

int cmd_tokenize(cli_run *run);
int cmd_preprocess(cli_run *run);
extern const cli_option cmd_preprocess_options[];
int cmd_embed_text(cli_run *run);
extern const cli_option cmd_embed_text_options[];
int cmd_embed_image(cli_run *run);
extern const cli_option cmd_embed_image_options[];
int cmd_classify(cli_run *run);
extern const cli_option cmd_classify_options[];
int cmd_score(cli_run *run);
extern const cli_option cmd_score_options[];
int cmd_devices(cli_run *run);
int cmd_verify(cli_run *run);
int cmd_index(cli_run *run);
extern const cli_option cmd_index_options[];
int cmd_search(cli_run *run);
extern const cli_option cmd_train_options[];
int cmd_train(cli_run *run);
extern const cli_option cmd_search_options[];

#endif
