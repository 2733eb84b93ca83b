/* Private helpers shared by the library's files: the context and its error
 * text, the allocator every allocation goes through, overflow-checked sizes,
 * the safety limits, and small file helpers. Nothing here is public API. */
#ifndef PCLIP_INTERNAL_H
#define PCLIP_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portclip.h"

/* ---- limits: every bound on untrusted input lives here ---- */

#define PCLIP_LIMIT_JSON_BYTES ((size_t)64 << 20)            /* config, vocab, index files */
#define PCLIP_LIMIT_JSON_DEPTH 64 /* nesting of [ and {, checked before the parser recurses */
#define PCLIP_LIMIT_TEXT_FILE_BYTES ((size_t)64 << 20)       /* merges.txt */
#define PCLIP_LIMIT_SAFETENSORS_HEADER ((uint64_t)100000000) /* as the safetensors crate */
#define PCLIP_LIMIT_TENSOR_DIMS 8
#define PCLIP_LIMIT_SHARDS 1024
#define PCLIP_LIMIT_IMAGE_PIXELS ((int64_t)2 * 89478485) /* Pillow's bomb error threshold */
#define PCLIP_LIMIT_IMAGE_FILE_BYTES ((size_t)1 << 30)
#define PCLIP_LIMIT_VOCAB 1000000
#define PCLIP_LIMIT_MERGES 1000000
/* a text longer is cut (it is truncated anyway) */
#define PCLIP_LIMIT_TEXT_BYTES ((size_t)1 << 20)
/* config sizes: generous for any real CLIP (ViT-bigG: width 1664, 48 layers) */
#define PCLIP_LIMIT_WIDTH 16384
#define PCLIP_LIMIT_LAYERS 256
#define PCLIP_LIMIT_HEADS 1024
#define PCLIP_LIMIT_CONTEXT 4096
#define PCLIP_LIMIT_IMAGE_SIDE 4096
#define PCLIP_LIMIT_MODEL_BYTES ((uint64_t)64 << 30)

/* ---- context ---- */

#define PCLIP_ERROR_TEXT 1024

struct pclip_ctx {
    char last_error[PCLIP_ERROR_TEXT];
};

/* Records a printf-style message as the context's last error and returns
 * `status`, so that `return pclip__err(ctx, PCLIP_STATUS_IO, "...")` reads well.
 * ctx may be NULL (the message is dropped). */
pclip_status pclip__err(pclip_ctx_t ctx, pclip_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Prepends "prefix: " to the current message (to add the file name on the way up). */
void pclip__err_prefix(pclip_ctx_t ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void pclip__err_clear(pclip_ctx_t ctx);

/* Keeps the current error text across clean-up that may record errors of its
 * own: save it, clean up, restore it, so the caller sees the first failure. */
typedef struct pclip__err_kept {
    char text[PCLIP_ERROR_TEXT];
} pclip__err_kept;
void pclip__err_keep(pclip_ctx_t ctx, pclip__err_kept *kept);
void pclip__err_restore(pclip_ctx_t ctx, const pclip__err_kept *kept);

/* ---- small helpers shared across layers ---- */

/* "[2, 3, 4]" into buf, cut to n bytes. */
void pclip__shape_str(char *buf, size_t n, const int64_t *shape, int ndim);
/* qsort/bsearch comparator for an array of `const char *`. */
int pclip__cmp_str_ptr(const void *a, const void *b);
/* n rounded up to a multiple of a (a > 0). */
static inline uint64_t pclip__align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

/* ---- environment variables: one strict reader ---- */

/* Reads the integer variable `name`. Unset or empty: *out = dflt. A value
 * that is not a whole decimal integer in min..max (junk, spaces, overflow) is
 * INVALID_ARGUMENT naming the variable, its value and the range; *out is then
 * left as it was. */
pclip_status pclip__env_int(pclip_ctx_t ctx, const char *name, int64_t min, int64_t max,
                            int64_t dflt, int64_t *out);
/* Reads the variable `name` as one of n words (exact match): *out is its
 * index. Unset or empty: *out = dflt. Any other value is INVALID_ARGUMENT
 * naming the variable, its value and the accepted words. */
pclip_status pclip__env_choice(pclip_ctx_t ctx, const char *name, const char *const *choices,
                               int n, int dflt, int *out);
/* Reads `name` as exactly n comma-separated integers, each in min..max
 * ("8,16"). Unset or empty: *set = false and out is untouched. Anything else
 * is INVALID_ARGUMENT naming the variable and the expected form. */
pclip_status pclip__env_ints(pclip_ctx_t ctx, const char *name, int n, int64_t min, int64_t max,
                             int64_t *out, bool *set);

#define PCLIP_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) pclip__assert_fail(#cond, __FILE__, __LINE__);                                \
    } while (0)
void pclip__assert_fail(const char *expr, const char *file, int line);

/* ---- memory: every allocation goes through these (a test hook can fail them) ---- */

void *pclip__malloc(size_t n);
void *pclip__calloc(size_t count, size_t size);
void *pclip__realloc(void *p, size_t n);
void pclip__free(void *p);
char *pclip__strdup(const char *s);
char *pclip__strndup(const char *s, size_t n);

/* Test hook: the N-th allocation from now fails (0 = never). Not thread-safe. */
void pclip__alloc_fail_at(long n);
/* Allocations still to come before the armed failure: 0 once it has happened
 * (or when none is armed). Tells a call that succeeded without reaching the
 * failure from one that swallowed it. */
long pclip__alloc_fail_pending(void);

/* out = a * b, false on overflow of size_t. */
static inline bool pclip__mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}
/* out = a * b * c, false on overflow. */
static inline bool pclip__mul3_size(size_t a, size_t b, size_t c, size_t *out) {
    size_t ab;
    return pclip__mul_size(a, b, &ab) && pclip__mul_size(ab, c, out);
}

/* ---- files ---- */

/* Reads a whole regular file into a NUL-terminated buffer. Refuses
 * directories, FIFOs, devices (opened without blocking, so a FIFO never
 * hangs), missing files and files over `limit` bytes, with a message naming
 * `path`. `what` names the role of the file ("config", "image"). */
pclip_status pclip__read_file(pclip_ctx_t ctx, const char *path, const char *what, size_t limit,
                              char **out, size_t *out_len);

/* A whole regular file read into private, read-only anonymous memory (no
 * longer a file map, despite the name: the file may be truncated or rewritten
 * later without effect). A file that shrinks while it is read is an IO error. */
typedef struct pclip__mmap {
    const uint8_t *data;
    size_t size;
} pclip__mmap;
pclip_status pclip__mmap_open(pclip_ctx_t ctx, const char *path, const char *what,
                              pclip__mmap *out);
void pclip__mmap_close(pclip__mmap *m);

/* "dir/name", allocated. NULL on allocation failure. */
char *pclip__path_join(const char *dir, const char *name);
bool pclip__file_exists(const char *path);

/* Output files. A regular file (new or existing; symlinks are followed, and
 * the target is replaced beside itself) is written to a temp file
 * "<target>.tmp.<16 random hex>" created O_EXCL|O_NOFOLLOW with mode 0600,
 * given the old file's mode and owner (or 0666 less the umask) when complete,
 * synced and renamed over the target. A target that exists and is not a
 * regular file (device, FIFO, terminal), "-" (stdout), /dev/stdout and
 * /dev/fd/N are written in place, never replaced. Live temp files are listed
 * for pclip_output_temps_remove() (the CLI's signal handler). Every write,
 * sync and close error is reported, naming the output. */
typedef struct pclip__atomic_file {
    void *fp;       /* FILE * */
    char *tmp_path; /* NULL when written in place */
    char *path;     /* as given, for messages */
    char *target;   /* where the bytes go, symlinks resolved */
    bool direct;    /* written in place */
    int slot;       /* in the temp-file registry, + 1; 0 when none */
    unsigned mode;  /* given to the temp file before the rename */
    long uid, gid;  /* the old file's owner, -1 when new */
} pclip__atomic_file;
pclip_status pclip__atomic_open(pclip_ctx_t ctx, const char *path, pclip__atomic_file *f);
pclip_status pclip__atomic_write(pclip_ctx_t ctx, pclip__atomic_file *f, const void *data,
                                 size_t len);
/* Flushes, syncs and renames (or flushes and closes, in place); on any
 * failure removes the temp file. */
pclip_status pclip__atomic_commit(pclip_ctx_t ctx, pclip__atomic_file *f);
/* Removes the temp file (after a failure). Safe after commit and twice. */
void pclip__atomic_abort(pclip__atomic_file *f);

/* ---- parsing from memory ---- */

/* The parsers behind pclip_config_load, pclip_image_config_load and
 * pclip_tokenizer_load, on bytes already in memory (they need not be
 * NUL-terminated); the names are only used in messages. For tests and the
 * fuzzers; the _load functions read the files and call these. */
pclip_status pclip__config_parse(pclip_ctx_t ctx, const char *file, const char *text, size_t len,
                                 pclip_config *out);
pclip_status pclip__image_config_parse(pclip_ctx_t ctx, const char *file, const char *text,
                                       size_t len, pclip_image_config *out);
pclip_status pclip__tokenizer_parse(pclip_ctx_t ctx, const char *vocab_name, const char *vtext,
                                    size_t vlen, const char *merges_name, const char *mtext,
                                    size_t mlen, pclip_tokenizer_t *out);

/* ---- UTF-8 ---- */

/* Decodes one code point from s[0..len); returns its byte length, or 0 for an
 * invalid sequence (overlong, surrogate, beyond U+10FFFF, truncated). */
size_t pclip__utf8_decode(const uint8_t *s, size_t len, int32_t *cp);
/* Encodes cp into out (4 bytes room); returns the byte count. */
size_t pclip__utf8_encode(int32_t cp, uint8_t *out);

#endif /* PCLIP_INTERNAL_H */
