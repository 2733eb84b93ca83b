/* The backend registry, selection (PORTCLIP_BACKEND / PORTCLIP_DEVICE,
 * `auto`) and the device list behind `portclip devices`. Compiled graphs,
 * params and the checks around every backend call live in exec.c. */
#include "graph/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the registry ---- */

#ifdef PCLIP_HAVE_VULKAN
extern const pclip__backend_ops pclip__vulkan_backend_ops; /* backends/vulkan */
#endif
#ifdef PCLIP_HAVE_OPENCL
extern const pclip__backend_ops pclip__opencl_backend_ops; /* backends/opencl */
#endif

/* In the order `auto` prefers them. GPU backends join this list when built. */
static const pclip__backend_ops *const registry[] = {
#ifdef PCLIP_HAVE_VULKAN
    &pclip__vulkan_backend_ops,
#endif
#ifdef PCLIP_HAVE_OPENCL
    &pclip__opencl_backend_ops,
#endif
    &pclip__cpu_backend_ops,
};
#define N_BACKENDS ((int)(sizeof registry / sizeof registry[0]))

/* Backend names the project knows, built into this library or not. */
static const char *const known_names[] = {"cpu", "vulkan", "opencl"};

static const pclip__backend_ops *find_backend(const char *name) {
    for (int i = 0; i < N_BACKENDS; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

static bool known_backend(const char *name) {
    for (size_t i = 0; i < sizeof known_names / sizeof known_names[0]; i++)
        if (strcmp(known_names[i], name) == 0) return true;
    return false;
}

#define MAX_DEVICES 16

static pclip_status open_device(pclip_ctx_t ctx, const pclip__backend_ops *ops, int32_t device,
                                struct pclip_backend **out) {
    if (ops->version != PCLIP__BACKEND_VERSION)
        return pclip__err(ctx, PCLIP_STATUS_INTERNAL, "%s: backend table version %d, expected %d",
                          ops->name, ops->version, PCLIP__BACKEND_VERSION);
    pclip__device_info infos[MAX_DEVICES];
    int32_t count = 0;
    pclip_status st = ops->list_devices(ctx, infos, MAX_DEVICES, &count);
    if (st) return st;
    if (count == 0)
        return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE, "%s: no device found",
                          ops->name);
    if (device < 0 || device >= count || device >= MAX_DEVICES)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s: device %d does not exist (%d device%s: 0..%d)", ops->name, device,
                          count, count == 1 ? "" : "s", count - 1);
    struct pclip_backend *b = pclip__calloc(1, sizeof *b);
    if (!b) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s: out of memory", ops->name);
    b->ctx = ctx;
    b->ops = ops;
    b->device = device;
    b->info = infos[device];
    st = ops->create(ctx, device, &b->state);
    if (st) {
        pclip__free(b);
        return st;
    }
    *out = b;
    return PCLIP_STATUS_OK;
}

/* `auto`: the first backend with a real (non-software) device, else the CPU. */
static pclip_status open_auto(pclip_ctx_t ctx, int32_t device, struct pclip_backend **out) {
    char why[512] = "";
    size_t used = 0;
    for (int i = 0; i < N_BACKENDS; i++) {
        const pclip__backend_ops *ops = registry[i];
        if (strcmp(ops->name, "cpu") == 0) continue;
        pclip__device_info infos[MAX_DEVICES];
        int32_t count = 0;
        pclip_status st = ops->list_devices(ctx, infos, MAX_DEVICES, &count);
        const char *reason = st ? pclip_ctx_last_error(ctx) : "only software devices";
        for (int32_t d = 0; !st && d < count && d < MAX_DEVICES; d++) {
            if (infos[d].software) continue;
            if (open_device(ctx, ops, d, out) == PCLIP_STATUS_OK) return PCLIP_STATUS_OK;
            reason = pclip_ctx_last_error(ctx);
        }
        if (!st && count == 0) reason = "no device";
        /* Backends name themselves in their own errors; do not say it twice. */
        size_t name_len = strlen(ops->name);
        if (strncmp(reason, ops->name, name_len) == 0 && strncmp(reason + name_len, ": ", 2) == 0)
            reason += name_len + 2;
        if (used < sizeof why)
            used += (size_t)snprintf(why + used, sizeof why - used, "%s%s: %s", used ? "; " : "",
                                     ops->name, reason);
    }
    for (size_t k = 0; k < sizeof known_names / sizeof known_names[0]; k++) {
        if (find_backend(known_names[k]) || used >= sizeof why) continue;
        used += (size_t)snprintf(why + used, sizeof why - used, "%s%s: not built into this library",
                                 used ? "; " : "", known_names[k]);
    }
    pclip_status st = open_device(ctx, &pclip__cpu_backend_ops, device, out);
    if (st) return st;
    snprintf((*out)->fallback_reason, sizeof (*out)->fallback_reason, "%s", why);
    return PCLIP_STATUS_OK;
}

pclip_status pclip_backend_create(pclip_ctx_t ctx, const char *name, int32_t device,
                                  pclip_backend_t *out) {
    if (!out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "pclip_backend_create: NULL out");
    const char *source = "backend";
    if (!name || !*name) {
        name = getenv("PORTCLIP_BACKEND");
        source = "PORTCLIP_BACKEND";
        if (!name || !*name) name = "auto";
    }
    if (device < 0) {
        int64_t v;
        pclip_status st = pclip__env_int(ctx, "PORTCLIP_DEVICE", 0, 1000, 0, &v);
        if (st) return st;
        device = (int32_t)v;
    }
    if (strcmp(name, "auto") == 0) return open_auto(ctx, device, out);
    const pclip__backend_ops *ops = find_backend(name);
    if (!ops) {
        if (known_backend(name))
            return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                              "%s '%s': not built into this library", source, name);
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s '%s' is unknown (cpu, vulkan, opencl or auto)", source, name);
    }
    return open_device(ctx, ops, device, out);
}

pclip_status pclip__backend_add_user(struct pclip_backend *b, void *owner,
                                     void (*drop)(void *owner, struct pclip_backend *b)) {
    for (int32_t i = 0; i < b->n_users; i++)
        if (b->users[i].owner == owner) return PCLIP_STATUS_OK;
    if (b->n_users == PCLIP__MAX_BACKEND_USERS)
        return pclip__err(b->ctx, PCLIP_STATUS_LIMIT,
                          "%s: more than %d models use this backend at once", b->ops->name,
                          PCLIP__MAX_BACKEND_USERS);
    b->users[b->n_users++] = (pclip__backend_user){owner, drop};
    return PCLIP_STATUS_OK;
}

void pclip__backend_remove_user(struct pclip_backend *b, void *owner) {
    for (int32_t i = 0; i < b->n_users; i++)
        if (b->users[i].owner == owner) {
            b->users[i] = b->users[--b->n_users];
            return;
        }
}

void pclip_backend_destroy(pclip_backend_t b) {
    if (!b) return;
    /* Graphs compiled on this backend go first; drop() unregisters its owner. */
    while (b->n_users > 0) {
        pclip__backend_user u = b->users[b->n_users - 1];
        u.drop(u.owner, b);
        pclip__backend_remove_user(b, u.owner);
    }
    b->ops->destroy(b->state);
    pclip__free(b);
}

/* ---- precision ---- */

static const char *const precision_names[] = {[PCLIP_PRECISION_FP32] = "fp32",
                                              [PCLIP_PRECISION_BF16] = "bf16",
                                              [PCLIP_PRECISION_FP16] = "fp16"};
_Static_assert(sizeof precision_names / sizeof precision_names[0] == PCLIP_PRECISION_COUNT,
               "name every precision");

const char *pclip_precision_name(pclip_precision p) {
    return (unsigned)p < PCLIP_PRECISION_COUNT ? precision_names[p] : "?";
}

pclip_status pclip_precision_parse(pclip_ctx_t ctx, const char *text, const char *what,
                                   pclip_precision *out) {
    if (!what) what = "precision";
    if (!text || !out)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "%s: NULL argument", what);
    for (int i = 0; i < PCLIP_PRECISION_COUNT; i++)
        if (strcmp(text, precision_names[i]) == 0) {
            *out = (pclip_precision)i;
            return PCLIP_STATUS_OK;
        }
    return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                      "%s must be 'fp32', 'bf16' or 'fp16', not '%s'", what, text);
}

pclip_status pclip_backend_set_precision(pclip_backend_t b, pclip_precision p) {
    if (!b) return PCLIP_STATUS_INVALID_ARGUMENT;
    if ((unsigned)p >= PCLIP_PRECISION_COUNT)
        return pclip__err(b->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "%s: precision %d is not a pclip_precision", b->ops->name, (int)p);
    if (p == b->precision) return PCLIP_STATUS_OK;
    if (p != PCLIP_PRECISION_FP32) {
        if (!b->ops->precision_check)
            return pclip__err(b->ctx, PCLIP_STATUS_UNSUPPORTED,
                              "%s: precision %s is not supported on this backend yet (fp32 "
                              "only; bf16 runs on the cpu backend, device 0; fp16 on vulkan)",
                              b->ops->name, pclip_precision_name(p));
        pclip_status st = b->ops->precision_check(b->state, p);
        if (st) return st;
    }
    /* graphs compiled at the old precision go; their owners compile again */
    while (b->n_users > 0) {
        pclip__backend_user u = b->users[b->n_users - 1];
        u.drop(u.owner, b);
        pclip__backend_remove_user(b, u.owner);
    }
    b->precision = p;
    return PCLIP_STATUS_OK;
}

pclip_precision pclip_backend_precision(pclip_backend_t b) {
    return b ? b->precision : PCLIP_PRECISION_FP32;
}

const char *pclip_backend_name(pclip_backend_t b) { return b->ops->name; }
const char *pclip_backend_device_name(pclip_backend_t b) { return b->info.name; }
const char *pclip_backend_fallback_reason(pclip_backend_t b) { return b->fallback_reason; }

pclip_status pclip_devices_list(pclip_ctx_t ctx, pclip_device_desc *out, int32_t max,
                                int32_t *count) {
    if (!count || (max > 0 && !out))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "pclip_devices_list: NULL argument");
    int32_t n = 0;
    for (size_t k = 0; k < sizeof known_names / sizeof known_names[0]; k++) {
        const pclip__backend_ops *ops = find_backend(known_names[k]);
        pclip__device_info infos[MAX_DEVICES];
        int32_t found = 0;
        pclip_status st = PCLIP_STATUS_OK;
        if (ops) st = ops->list_devices(ctx, infos, MAX_DEVICES, &found);
        if (!ops || st || found == 0) {
            if (n < max) {
                pclip_device_desc *d = &out[n];
                memset(d, 0, sizeof *d);
                snprintf(d->backend, sizeof d->backend, "%s", known_names[k]);
                d->index = -1;
                snprintf(d->why, sizeof d->why, "%s",
                         !ops ? "not built into this library"
                              : st ? pclip_ctx_last_error(ctx) : "no device found");
            }
            n++;
            continue;
        }
        for (int32_t i = 0; i < found && i < MAX_DEVICES; i++, n++) {
            if (n >= max) continue;
            pclip_device_desc *d = &out[n];
            *d = infos[i];
            snprintf(d->backend, sizeof d->backend, "%s", ops->name);
            d->index = i;
            d->why[0] = '\0';
            d->usable = 1;
            if (!d->precisions[0]) snprintf(d->precisions, sizeof d->precisions, "fp32");
            if (!ops->precision_check && !d->precision_why[0])
                snprintf(d->precision_why, sizeof d->precision_why,
                         "bf16: not supported on this backend yet; fp16: likewise");
        }
    }
    pclip__err_clear(ctx);
    *count = n;
    return PCLIP_STATUS_OK;
}

/* ---- what this library was built with ---- */

int32_t pclip_backend_is_built(const char *name) {
    return name && find_backend(name) ? 1 : 0;
}
