/* .npy output (format version 1.0, little-endian float32, C order), written
 * through a temp file that is renamed into place only when complete. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct pclip_npy_writer {
    pclip_ctx_t ctx;
    pclip__atomic_file file;
    uint64_t expected, written;
};

/* The header dict, padded with spaces and a final newline so that the data
 * starts on a 64-byte boundary, as numpy itself writes it. */
static size_t npy_header(char *buf, size_t cap, const int64_t *shape, int32_t ndim) {
    char dict[512];
    size_t n = (size_t)snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int32_t i = 0; i < ndim; i++)
        n += (size_t)snprintf(dict + n, sizeof dict - n, "%lld,%s", (long long)shape[i],
                              i + 1 < ndim ? " " : "");
    if (ndim > 1) n--; /* (a, b) not (a, b,) ; (a,) keeps its comma */
    n += (size_t)snprintf(dict + n, sizeof dict - n, "), }");
    size_t total = 10 + n + 1;
    size_t padded = (total + 63) / 64 * 64;
    if (padded > cap) return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    buf[8] = (char)(hlen & 0xFF);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', padded - 10 - n - 1);
    buf[padded - 1] = '\n';
    return padded;
}

pclip_status pclip_npy_writer_create(pclip_ctx_t ctx, const char *path, const int64_t *shape,
                                     int32_t ndim, pclip_npy_writer_t *out) {
    if (!path || !out || ndim < 0 || ndim > PCLIP_LIMIT_TENSOR_DIMS || (ndim && !shape))
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "npy writer: bad arguments");
    uint64_t count = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && count > UINT64_MAX / (uint64_t)shape[i]))
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "output '%s': invalid shape", path);
        count *= (uint64_t)shape[i];
    }
    char header[1024];
    size_t hlen = npy_header(header, sizeof header, shape, ndim);
    if (!hlen)
        return pclip__err(ctx, PCLIP_STATUS_INTERNAL, "output '%s': header too long", path);
    struct pclip_npy_writer *w = pclip__calloc(1, sizeof *w);
    if (!w) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "output '%s': out of memory", path);
    w->ctx = ctx;
    w->expected = count;
    pclip_status st = pclip__atomic_open(ctx, path, &w->file);
    if (!st) st = pclip__atomic_write(ctx, &w->file, header, hlen);
    if (st) {
        pclip_npy_writer_destroy(w);
        return st;
    }
    *out = w;
    return PCLIP_STATUS_OK;
}

pclip_status pclip_npy_writer_append(pclip_npy_writer_t w, const float *data, size_t count) {
    if (!w || (count && !data)) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (count > w->expected - w->written)
        return pclip__err(w->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "output '%s': more values than the shape holds", w->file.path);
    /* x86, ARM and the GPUs we target are little-endian: the bytes go as they are. */
    pclip_status st = pclip__atomic_write(w->ctx, &w->file, data, count * sizeof(float));
    if (!st) w->written += count;
    return st;
}

pclip_status pclip_npy_writer_commit(pclip_npy_writer_t w) {
    if (!w) return PCLIP_STATUS_INVALID_ARGUMENT;
    if (w->written != w->expected)
        return pclip__err(w->ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "output '%s': %llu of %llu values written", w->file.path,
                          (unsigned long long)w->written, (unsigned long long)w->expected);
    return pclip__atomic_commit(w->ctx, &w->file);
}

void pclip_npy_writer_destroy(pclip_npy_writer_t w) {
    if (!w) return;
    pclip__atomic_abort(&w->file);
    pclip__free(w);
}

pclip_status pclip_npy_write_f32(pclip_ctx_t ctx, const char *path, const float *data,
                                 const int64_t *shape, int32_t ndim) {
    pclip_npy_writer_t w;
    pclip_status st = pclip_npy_writer_create(ctx, path, shape, ndim, &w);
    if (st) return st;
    uint64_t count = w->expected;
    st = pclip_npy_writer_append(w, data, (size_t)count);
    if (!st) st = pclip_npy_writer_commit(w);
    pclip_npy_writer_destroy(w);
    return st;
}
