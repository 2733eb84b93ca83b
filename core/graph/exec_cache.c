/* Compiled graphs kept per (backend, key), least recently used dropped first,
 * and dropped with their backend. The cache registers itself once with each
 * backend it compiles on; pclip_backend_destroy calls back drop_backend, and
 * pclip__exec_cache_destroy unregisters, so neither side outlives the other's
 * pointers. It knows nothing of what a graph computes. */
#include <stdio.h>
#include <string.h>

#include "graph/exec_cache.h"

struct pclip__exec_cache {
    pclip_ctx_t ctx; /* borrowed */
    int32_t capacity;
    pclip__cached_graph *slots; /* [capacity]; graph == NULL: empty */
    uint64_t clock;
    struct pclip_backend *backends[PCLIP__MAX_BACKEND_USERS]; /* registered with */
    int32_t n_backends;
    pclip__exec_cache_stats stats;
};

/* ---- slots ---- */

static void drop_slot(pclip__exec_cache *c, pclip__cached_graph *s) {
    if (!s->graph) return;
    pclip__exec_destroy(s->exec);
    pclip__graph_destroy(s->graph);
    memset(s, 0, sizeof *s);
    c->stats.live--;
}

/* ---- backend registration ---- */

/* Called by pclip_backend_destroy: forget every graph compiled on b. */
static void drop_backend(void *owner, struct pclip_backend *b) {
    pclip__exec_cache *c = owner;
    for (int32_t i = 0; i < c->capacity; i++)
        if (c->slots[i].graph && c->slots[i].backend == b) {
            drop_slot(c, &c->slots[i]);
            c->stats.dropped++;
        }
    for (int32_t i = 0; i < c->n_backends; i++)
        if (c->backends[i] == b) c->backends[i--] = c->backends[--c->n_backends];
}

static pclip_status use_backend(pclip__exec_cache *c, struct pclip_backend *b) {
    for (int32_t i = 0; i < c->n_backends; i++)
        if (c->backends[i] == b) return PCLIP_STATUS_OK;
    if (c->n_backends == PCLIP__MAX_BACKEND_USERS)
        return pclip__err(c->ctx, PCLIP_STATUS_LIMIT,
                          "exec cache: graphs kept on more than %d backends at once",
                          PCLIP__MAX_BACKEND_USERS);
    pclip_status st = pclip__backend_add_user(b, c, drop_backend);
    if (!st) c->backends[c->n_backends++] = b;
    return st;
}

/* ---- the cache ---- */

pclip_status pclip__exec_cache_create(pclip_ctx_t ctx, int32_t capacity, pclip__exec_cache **out) {
    if (!out || capacity < 1 || capacity > PCLIP__EXEC_CACHE_MAX)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "exec cache: capacity %d is outside 1..%d", (int)capacity,
                          PCLIP__EXEC_CACHE_MAX);
    pclip__exec_cache *c = pclip__calloc(1, sizeof *c);
    if (c) c->slots = pclip__calloc((size_t)capacity, sizeof *c->slots);
    if (!c || !c->slots) {
        pclip__free(c);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "exec cache: out of memory");
    }
    c->ctx = ctx;
    c->capacity = capacity;
    *out = c;
    return PCLIP_STATUS_OK;
}

void pclip__exec_cache_destroy(pclip__exec_cache *c) {
    if (!c) return;
    for (int32_t i = 0; i < c->capacity; i++) drop_slot(c, &c->slots[i]);
    for (int32_t i = 0; i < c->n_backends; i++) pclip__backend_remove_user(c->backends[i], c);
    pclip__free(c->slots);
    pclip__free(c);
}

/* The planned arena must fit the device: a graph that cannot is refused
 * before the backend tries to allocate it. */
static pclip_status check_fits(pclip__exec_cache *c, struct pclip_backend *b, const char *key,
                               const pclip__graph *g) {
    uint64_t have = b->info.memory_bytes;
    if (have == 0 || (uint64_t)g->arena_bytes <= have) return PCLIP_STATUS_OK;
    return pclip__err(c->ctx, PCLIP_STATUS_LIMIT,
                      "graph '%s': its activations need %llu MiB, more than the %llu MiB of "
                      "device '%s'; use a smaller batch",
                      key, (unsigned long long)(g->arena_bytes >> 20),
                      (unsigned long long)(have >> 20), b->info.name);
}

pclip_status pclip__exec_cache_get(pclip__exec_cache *c, struct pclip_backend *b, const char *key,
                                   pclip__graph_build_fn build, void *user,
                                   pclip__cached_graph **out) {
    if (!c || !b || !key || !build || !out)
        return pclip__err(c ? c->ctx : NULL, PCLIP_STATUS_INVALID_ARGUMENT,
                          "exec cache: NULL argument");
    if (strlen(key) >= PCLIP__EXEC_KEY_MAX)
        return pclip__err(c->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "exec cache: key '%.40s...' is longer than %d bytes", key,
                          PCLIP__EXEC_KEY_MAX - 1);
    pclip__cached_graph *victim = &c->slots[0];
    for (int32_t i = 0; i < c->capacity; i++) {
        pclip__cached_graph *s = &c->slots[i];
        if (s->graph && s->backend == b && strcmp(s->key, key) == 0) {
            s->last_used = ++c->clock;
            c->stats.hits++;
            *out = s;
            return PCLIP_STATUS_OK;
        }
        if (!s->graph)
            victim = s;
        else if (victim->graph && s->last_used < victim->last_used)
            victim = s;
    }
    pclip_status st = use_backend(c, b);
    if (st) return st;
    pclip__cached_graph fresh = {.backend = b};
    snprintf(fresh.key, sizeof fresh.key, "%s", key);
    if ((st = pclip__graph_create(c->ctx, &fresh.graph))) return st;
    st = build(user, fresh.graph, fresh.io);
    /* a builder chain can end with a result yet a sticky failure inside */
    if (!st) st = fresh.graph->status;
    if (!st) st = pclip__graph_plan(fresh.graph);
    if (!st) st = check_fits(c, b, key, fresh.graph);
    if (!st) {
        /* room first: the victim's device memory goes back before the new
         * graph allocates its own */
        if (victim->graph) {
            drop_slot(c, victim);
            c->stats.evictions++;
        }
        st = pclip__exec_create(b, fresh.graph, &fresh.exec);
    }
    if (st) {
        pclip__graph_destroy(fresh.graph);
        return st;
    }
    fresh.last_used = ++c->clock;
    *victim = fresh;
    c->stats.compiles++;
    c->stats.live++;
    *out = victim;
    return PCLIP_STATUS_OK;
}

void pclip__exec_cache_stats_get(const pclip__exec_cache *c, pclip__exec_cache_stats *out) {
    if (c && out) *out = c->stats;
}
