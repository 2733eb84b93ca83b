/* portclip: the command-line tool. This file holds the command table (name,
 * function, what to set up, usage), the global options (--help, --version),
 * `portclip help` and the dispatch. Each command lives in a cmd_*.c file; the
 * parser, error reporting and set-up shared by all are in cli.c.
 *
 * Exit status: 0 success, 1 a bad input or a failed run, 2 bad usage. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* ---- the command table ---- */

static int cmd_help(cli_run *run);

static const cli_command commands[] = {
    {"tokenize", cmd_tokenize, CLI_NEEDS_MODEL | CLI_TEXT_INPUTS, PCLIP_MODEL_PART_TOKENIZER,
     "--model DIR [--texts-file FILE] TEXT...",
     "one line per text on stdout: the context length (77) of space-separated ids\n"
     "(start, ids, end, then 0; long texts keep start + 75 ids + end)",
     NULL},
    {"preprocess", cmd_preprocess, CLI_NEEDS_MODEL | CLI_IMAGE_INPUTS,
     PCLIP_MODEL_PART_IMAGE_CONFIG,
     "--model DIR --output OUT.npy [--preprocess openai|hf] IMAGE|DIR...",
     "float32 [N,3,S,S] pixel tensors, S = the model's crop size; OUT.paths.txt\n"
     "lists each row's file (folders are read recursively)", cmd_preprocess_options},
    {"embed-text", cmd_embed_text,
     CLI_NEEDS_MODEL | CLI_NEEDS_BACKEND | CLI_HEAD | CLI_TEXT_INPUTS,
     PCLIP_MODEL_PART_TOKENIZER | PCLIP_MODEL_PART_WEIGHTS,
     "--model DIR --output OUT.npy [--head DIR] [--no-normalize] TEXT...",
     "float32 [N,D] text embeddings, rows L2-normalised", cmd_embed_text_options},
    {"embed-image", cmd_embed_image,
     CLI_NEEDS_MODEL | CLI_NEEDS_BACKEND | CLI_HEAD | CLI_IMAGE_INPUTS,
     PCLIP_MODEL_PART_IMAGE_CONFIG | PCLIP_MODEL_PART_WEIGHTS,
     "--model DIR --output OUT.npy [--head DIR] [--batch-size B] [--skip-bad] IMAGE|DIR...",
     "float32 [N,D] image embeddings, rows L2-normalised; OUT.paths.txt\n"
     "lists each row's file (folders are read recursively)", cmd_embed_image_options},
    {"classify", cmd_classify,
     CLI_NEEDS_MODEL | CLI_NEEDS_BACKEND | CLI_HEAD | CLI_IMAGE_INPUTS,
     PCLIP_MODEL_PART_ALL,
     "--model DIR (--labels A,B,... | --labels-file FILE) [--template T]... [--top-k K] "
     "[--format text|json|tsv] IMAGE|DIR...",
     "zero-shot classification: per image, the labels by probability\n"
     "(softmax over the labels of exp(logit_scale) * cos(image, prompt))",
     cmd_classify_options},
    {"score", cmd_score,
     CLI_NEEDS_MODEL | CLI_NEEDS_BACKEND | CLI_HEAD | CLI_IMAGE_INPUTS,
     PCLIP_MODEL_PART_ALL,
     "--model DIR (--text T... | --texts-file FILE) [--format text|json] IMAGE|DIR...",
     "CLIPModel's logits_per_image (exp(logit_scale) * cos) of each image\n"
     "against each text, and its softmax over the texts",
     cmd_score_options},
    {"index", cmd_index, CLI_MAY_MODEL | CLI_NEEDS_BACKEND | CLI_HEAD | CLI_WORDS,
     PCLIP_MODEL_PART_ALL,
     "--model DIR --output INDEX [--dtype f32|f16|q8] [--shard K/N] PATH...  |  "
     "merge --output INDEX SHARD...",
     "builds or updates an image index over files and folders: only new or\n"
     "changed files are embedded, deleted ones dropped, an interrupted run\n"
     "resumes; 'index merge' combines shards into a new index",
     cmd_index_options},
    {"search", cmd_search, CLI_MAY_MODEL | CLI_NEEDS_BACKEND | CLI_HEAD | CLI_WORDS,
     PCLIP_MODEL_PART_ALL,
     "--index INDEX [--model DIR] [--top-k K] [--format text|json] (TEXT... | --image IMAGE)",
     "exact cosine top-k of each query over the index; JSON: one object per\n"
     "line per query, {\"query\": Q, \"results\": [{\"path\": P, \"score\": S}...]}",
     cmd_search_options},
    {"train", cmd_train, CLI_NEEDS_MODEL | CLI_NEEDS_BACKEND, PCLIP_MODEL_PART_ALL,
     "--model DIR --data FILE --output OUTDIR [--head linear|mlp] [--steps N | --epochs E] "
     "[--batch-size B] [--lr X] [--weight-decay W] [--schedule cosine|constant] [--warmup N] "
     "[--seed S] [--no-shuffle] [--val-fraction F] [--log LOG.jsonl] [--checkpoint-every N] "
     "[--resume]",
     "trains projection heads on image-caption pairs with both encoders frozen\n"
     "(features cached); OUTDIR: a Hugging Face model directory (linear) or a\n"
     "head folder for --head (mlp)",
     cmd_train_options},
    {"devices", cmd_devices, 0, 0, "", "every backend and device found, and why any is unusable",
     NULL},
    {"verify", cmd_verify, CLI_MAY_MODEL | CLI_PICKS_BACKEND | CLI_HEAD,
     PCLIP_MODEL_PART_TOKENIZER | PCLIP_MODEL_PART_WEIGHTS,
     "[--model DIR [--head DIR]] [--backend NAME] [--device N]",
     "parity of every backend/device against the CPU reference: a table of every\n"
     "op case (and, with --model, both encoders, through --head when given);\n"
     "exit 1 on any failure",
     NULL},
    {"help", cmd_help, CLI_WORDS, 0, "[COMMAND]",
     "the usage of every command, or of one with its options", NULL},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

/* ---- help and version ---- */

static void print_usage(FILE *f) {
    fputs("usage: portclip COMMAND [options] [INPUT...]\n\ncommands:\n", f);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const cli_command *c = &commands[i];
        if (c->synopsis[0])
            fprintf(f, "  %-12s %s\n  %-12s ", c->name, c->synopsis, "");
        else
            fprintf(f, "  %-12s ", c->name);
        for (const char *p = c->summary; *p; p++) {
            fputc(*p, f);
            if (*p == '\n') fprintf(f, "  %-12s ", "");
        }
        fputc('\n', f);
    }
    fputs("\nglobal options (before the command):\n"
          "  -h, --help   this text\n"
          "  --version    the version, the backends built into the library and the\n"
          "               versions of the libraries it uses\n"
          "\n"
          "'portclip help COMMAND' or 'portclip COMMAND --help' lists a command's options.\n"
          "Backend and device also come from PORTCLIP_BACKEND and PORTCLIP_DEVICE.\n",
          f);
}

static void print_version(void) {
    static const char *const names[] = {"cpu", "vulkan", "opencl"};
    printf("portclip %s\nbackends:", pclip_version());
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (pclip_backend_is_built(names[i])) printf(" %s", names[i]);
    bool any_absent = false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!pclip_backend_is_built(names[i])) {
            printf("%s%s", any_absent ? ", " : " (not built: ", names[i]);
            any_absent = true;
        }
    puts(any_absent ? ")" : "");
    printf("libraries: %s\n", pclip_library_versions());
}

static int cmd_help(cli_run *run) {
    if (run->inputs.count == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    cli_set_command(NULL); /* a usage error here points at `portclip help` */
    if (run->inputs.count > 1) cli_usage_error("help takes one COMMAND");
    const cli_command *cmd = find_command(run->inputs.items[0]);
    if (!cmd) cli_usage_error("unknown command '%s'", run->inputs.items[0]);
    cli_print_help(stdout, cmd);
    return CLI_EXIT_OK;
}

/* ---- the OpenMP wait policy ---- */

/* OpenMP threads that finish their part of a parallel region spin for a
 * while waiting for the next one (libgomp: 300000 turns of its spin loop,
 * about 3 ms). On an idle machine that saves a wake-up; beside other busy
 * processes the spinning takes the cores from the thread everyone waits for,
 * and from the image decoders. A short spin (3000 turns, about 30 us by
 * libgomp's own estimate) keeps the first and ends the second; sleeping at
 * once (OMP_WAIT_POLICY=PASSIVE) costs batch 1 about a fifth of its speed on
 * an idle machine (bench/RESULTS.md, "A busy machine"). libgomp reads
 * OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded, before main();
 * so when the user set neither, the tool runs itself again, once, with
 * GOMP_SPINCOUNT set (the second run finds it set: no loop). The user's
 * setting, even an empty one, wins. If the program cannot be run again (no
 * /proc), it goes on with libgomp's default. */
#define CLI_GOMP_SPINCOUNT "3000"

static void omp_wait_policy_reexec(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", CLI_GOMP_SPINCOUNT, 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* not run again: libgomp's default stays */
}

/* ---- dispatch ---- */

int main(int argc, char **argv) {
    omp_wait_policy_reexec(argv);
    cli_signals_install();
    if (argc < 2) {
        print_usage(stderr);
        return cli_error(CLI_EXIT_USAGE, "no command given");
    }
    const char *a = argv[1];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        print_usage(stdout);
        cli_exit(CLI_EXIT_OK);
    }
    if (strcmp(a, "--version") == 0) {
        print_version();
        cli_exit(CLI_EXIT_OK);
    }
    /* Hidden: what the build turns into portclip.1 and the bash completion. */
    if (strcmp(a, "help") == 0 && argc == 3 && strcmp(argv[2], "--man") == 0) {
        cli_print_man(stdout, commands, N_COMMANDS);
        cli_exit(CLI_EXIT_OK);
    }
    if (strcmp(a, "help") == 0 && argc == 3 && strcmp(argv[2], "--bash-completion") == 0) {
        cli_print_bash_completion(stdout, commands, N_COMMANDS);
        cli_exit(CLI_EXIT_OK);
    }
    if (a[0] == '-') cli_usage_error("unknown option '%s' (options go after the command)", a);
    const cli_command *cmd = find_command(a);
    if (!cmd) cli_usage_error("unknown command '%s'", a);
    cli_set_command(cmd->name);
    cli_run run = {0};
    if (pclip_ctx_create(&run.ctx)) return cli_error(CLI_EXIT_FAILURE, "out of memory");
    int rc = cli_run_setup(&run, cmd, argc - 1, argv + 1);
    if (rc == 0) rc = cmd->fn(&run);
    cli_run_teardown(&run);
    pclip_ctx_destroy(run.ctx);
    return cli_stdout_done(rc);
}
