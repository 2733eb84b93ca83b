/* The context, status names and messages, the error text, the one strict
 * reader of PORTCLIP_* environment variables, and the allocator that every
 * allocation in the library goes through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- status ---- */

const char *pclip_status_name(pclip_status s) {
    static const char *const names[] = {
#define PCLIP_X_NAME(name, msg) "PCLIP_STATUS_" #name,
        PCLIP_STATUS_LIST(PCLIP_X_NAME)
#undef PCLIP_X_NAME
    };
    _Static_assert(sizeof names / sizeof names[0] == PCLIP_STATUS_COUNT, "status names");
    if ((unsigned)s >= PCLIP_STATUS_COUNT) return "PCLIP_STATUS_UNKNOWN";
    return names[s];
}

const char *pclip_status_str(pclip_status s) {
    static const char *const msgs[] = {
#define PCLIP_X_MSG(name, msg) msg,
        PCLIP_STATUS_LIST(PCLIP_X_MSG)
#undef PCLIP_X_MSG
    };
    _Static_assert(sizeof msgs / sizeof msgs[0] == PCLIP_STATUS_COUNT, "status messages");
    if ((unsigned)s >= PCLIP_STATUS_COUNT) return "unknown status";
    return msgs[s];
}

const char *pclip_version(void) {
#define PCLIP_STR2(x) #x
#define PCLIP_STR(x) PCLIP_STR2(x)
    return PCLIP_STR(PCLIP_VERSION_MAJOR) "." PCLIP_STR(PCLIP_VERSION_MINOR) "." PCLIP_STR(
        PCLIP_VERSION_PATCH);
}

/* ---- context ---- */

pclip_status pclip_ctx_create(pclip_ctx_t *out) {
    if (!out) return PCLIP_STATUS_INVALID_ARGUMENT;
    struct pclip_ctx *ctx = pclip__calloc(1, sizeof *ctx);
    if (!ctx) return PCLIP_STATUS_OUT_OF_MEMORY;
    *out = ctx;
    return PCLIP_STATUS_OK;
}

void pclip_ctx_destroy(pclip_ctx_t ctx) { pclip__free(ctx); }

const char *pclip_ctx_last_error(pclip_ctx_t ctx) { return ctx ? ctx->last_error : ""; }

pclip_status pclip__err(pclip_ctx_t ctx, pclip_status status, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
        va_end(ap);
    }
    return status;
}

void pclip__err_prefix(pclip_ctx_t ctx, const char *fmt, ...) {
    if (!ctx) return;
    char prefix[PCLIP_ERROR_TEXT];
    char old[PCLIP_ERROR_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, ctx->last_error, sizeof old);
    size_t n = strlen(prefix);
    if (n + 2 >= sizeof ctx->last_error) n = sizeof ctx->last_error - 3;
    memcpy(ctx->last_error, prefix, n);
    memcpy(ctx->last_error + n, ": ", 2);
    size_t room = sizeof ctx->last_error - n - 3;
    size_t m = strlen(old);
    if (m > room) m = room;
    memcpy(ctx->last_error + n + 2, old, m);
    ctx->last_error[n + 2 + m] = '\0';
}

void pclip__err_clear(pclip_ctx_t ctx) {
    if (ctx) ctx->last_error[0] = '\0';
}

/* ---- small helpers ---- */

void pclip__shape_str(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t u = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && u < n; i++)
        u += (size_t)snprintf(buf + u, n - u, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (u < n) snprintf(buf + u, n - u, "]");
}

int pclip__cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- environment variables ---- */

/* One decimal integer at *p, ending at a ',' or the end; advances *p. */
static bool parse_int(const char **p, int64_t min, int64_t max, int64_t *out) {
    const char *s = *p;
    bool neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    if (*s < '0' || *s > '9') return false;
    int64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        int d = *s - '0';
        if (v > (INT64_MAX - d) / 10) return false; /* overflow */
        v = v * 10 + d;
    }
    if (*s && *s != ',') return false;
    if (neg) v = -v;
    if (v < min || v > max) return false;
    *out = v;
    *p = s;
    return true;
}

pclip_status pclip__env_int(pclip_ctx_t ctx, const char *name, int64_t min, int64_t max,
                            int64_t dflt, int64_t *out) {
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = dflt;
        return PCLIP_STATUS_OK;
    }
    const char *p = v;
    int64_t x;
    if (!parse_int(&p, min, max, &x) || *p)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s='%s' is not an integer in %lld..%lld", name, v, (long long)min,
                          (long long)max);
    *out = x;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__env_choice(pclip_ctx_t ctx, const char *name, const char *const *choices,
                               int n, int dflt, int *out) {
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = dflt;
        return PCLIP_STATUS_OK;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(v, choices[i]) == 0) {
            *out = i;
            return PCLIP_STATUS_OK;
        }
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                 choices[i]);
    return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "%s='%s' is not one of %s", name, v,
                      list);
}

pclip_status pclip__env_ints(pclip_ctx_t ctx, const char *name, int n, int64_t min, int64_t max,
                             int64_t *out, bool *set) {
    const char *v = getenv(name);
    *set = false;
    if (!v || !*v) return PCLIP_STATUS_OK;
    int64_t vals[16];
    const char *p = v;
    int k = 0;
    for (; k < n && k < 16; k++) {
        if (k && *p++ != ',') break;
        if (!parse_int(&p, min, max, &vals[k])) break;
    }
    if (k != n || *p)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s='%s' is not %d comma-separated integers in %lld..%lld", name, v, n,
                          (long long)min, (long long)max);
    memcpy(out, vals, (size_t)n * sizeof *out);
    *set = true;
    return PCLIP_STATUS_OK;
}

/* ---- internal invariants ---- */

void pclip__assert_fail(const char *expr, const char *file, int line) {
    /* A broken internal invariant: there is no state worth saving. */
    fprintf(stderr, "portclip: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

/* ---- allocator ---- */

static long alloc_countdown; /* 0 = never fail */

void pclip__alloc_fail_at(long n) { alloc_countdown = n; }

long pclip__alloc_fail_pending(void) { return alloc_countdown; }

static bool alloc_should_fail(void) {
    if (alloc_countdown <= 0) return false;
    return --alloc_countdown == 0;
}

void *pclip__malloc(size_t n) {
    if (alloc_should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *pclip__calloc(size_t count, size_t size) {
    if (alloc_should_fail()) return NULL;
    if (count == 0 || size == 0) count = size = 1;
    return calloc(count, size);
}

void *pclip__realloc(void *p, size_t n) {
    if (alloc_should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void pclip__free(void *p) { free(p); }

char *pclip__strndup(const char *s, size_t n) {
    char *d = pclip__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *pclip__strdup(const char *s) { return pclip__strndup(s, strlen(s)); }

void pclip__err_keep(pclip_ctx_t ctx, pclip__err_kept *kept) {
    kept->text[0] = '\0';
    if (ctx) memcpy(kept->text, ctx->last_error, sizeof kept->text);
}

void pclip__err_restore(pclip_ctx_t ctx, const pclip__err_kept *kept) {
    if (ctx) memcpy(ctx->last_error, kept->text, sizeof ctx->last_error);
}
