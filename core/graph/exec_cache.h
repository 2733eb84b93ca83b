/* A cache of compiled graphs, keyed by (backend, key string), with a
 * least-recently-used bound on how many it keeps. The model's encoders, exact
 * search and the trainer keep their graphs here instead of each writing its
 * own bookkeeping.
 *
 * It builds a graph on a miss through the caller's builder, plans and
 * compiles it, and registers itself with the backend (pclip__backend_add_user)
 * so that pclip_backend_destroy drops every graph compiled there. It does
 * not decide what a key means, and it is not thread-safe: one cache belongs to
 * one owner, used from one thread at a time. */
#ifndef PCLIP_EXEC_CACHE_H
#define PCLIP_EXEC_CACHE_H

#include "graph/backend.h"

#define PCLIP__EXEC_KEY_MAX 64 /* bytes of a key, NUL included */
#define PCLIP__EXEC_CACHE_IO 8 /* tensor handles a builder may name */
#define PCLIP__EXEC_CACHE_MAX 256

/* One compiled graph. `io` holds the tensors the builder named (its inputs and
 * outputs, in an order the builder and its caller agree on). */
typedef struct pclip__cached_graph {
    struct pclip_backend *backend;
    char key[PCLIP__EXEC_KEY_MAX];
    uint64_t last_used;
    pclip__graph *graph;
    pclip__exec *exec;
    pclip__tensor *io[PCLIP__EXEC_CACHE_IO];
} pclip__cached_graph;

/* Fills the empty graph `g` and names its inputs and outputs in io[] (all
 * NULL on entry). A failure returns its status with the message in the
 * context; the cache then destroys g. */
typedef pclip_status (*pclip__graph_build_fn)(void *user, pclip__graph *g, pclip__tensor **io);

typedef struct pclip__exec_cache_stats {
    int64_t hits;      /* gets answered from the cache */
    int64_t compiles;  /* graphs built and compiled */
    int64_t evictions; /* graphs dropped to make room */
    int64_t dropped;   /* graphs dropped because their backend went away */
    int32_t live;      /* graphs held now */
} pclip__exec_cache_stats;

typedef struct pclip__exec_cache pclip__exec_cache;

/* A cache keeping at most `capacity` graphs (1..PCLIP__EXEC_CACHE_MAX).
 * ctx is borrowed and receives the messages of failed gets. */
pclip_status pclip__exec_cache_create(pclip_ctx_t ctx, int32_t capacity, pclip__exec_cache **out);
/* Drops every graph and unregisters from every backend. NULL: no-op. */
void pclip__exec_cache_destroy(pclip__exec_cache *c);

/* The graph compiled on `b` for `key`: the cached one, or a new one from
 * build(user, ...) that evicts the least recently used when the cache is full.
 * A graph whose planned activations would not fit the device's memory is
 * refused with LIMIT before anything is allocated on the device.
 * *out is borrowed: valid until the next get on this cache, its destruction
 * or the backend's. */
pclip_status pclip__exec_cache_get(pclip__exec_cache *c, struct pclip_backend *b, const char *key,
                                   pclip__graph_build_fn build, void *user,
                                   pclip__cached_graph **out);

void pclip__exec_cache_stats_get(const pclip__exec_cache *c, pclip__exec_cache_stats *out);

#endif
