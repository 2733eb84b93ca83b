/* safetensors files: a strict header parser over a read-only memory map, and
 * the conversion of F32/F16/BF16 tensors to float32. */
#ifndef PCLIP_SAFETENSORS_H
#define PCLIP_SAFETENSORS_H

#include "internal.h"

/* Every dtype the format defines; only F32, F16 and BF16 hold weights here. */
#define PCLIP__ST_DTYPES(X)                                                                  \
    X(BOOL, 1) X(U8, 1) X(I8, 1) X(F8_E5M2, 1) X(F8_E4M3, 1) X(I16, 2) X(U16, 2) X(F16, 2)    \
    X(BF16, 2) X(I32, 4) X(U32, 4) X(F32, 4) X(F64, 8) X(I64, 8) X(U64, 8)

typedef enum pclip__st_dtype {
#define PCLIP__X(name, size) PCLIP__ST_##name,
    PCLIP__ST_DTYPES(PCLIP__X)
#undef PCLIP__X
    PCLIP__ST_DTYPE_COUNT
} pclip__st_dtype;

const char *pclip__st_dtype_name(pclip__st_dtype d);
size_t pclip__st_dtype_size(pclip__st_dtype d);

typedef struct pclip__st_tensor {
    char *name;
    pclip__st_dtype dtype;
    int32_t ndim;
    int64_t shape[PCLIP_LIMIT_TENSOR_DIMS];
    uint64_t count;       /* product of shape */
    const uint8_t *data;  /* inside the map; borrowed */
    size_t nbytes;
    const char *file;     /* the file's path; borrowed from its pclip__st_file */
} pclip__st_tensor;

typedef struct pclip__st_file {
    char *path;
    pclip__mmap map;
    pclip__st_tensor *tensors; /* sorted by name */
    size_t n_tensors;
} pclip__st_file;

/* Maps `path` and parses its header: length bound, valid JSON, known dtypes,
 * shapes, offsets inside the data, byte spans equal to dtype size times shape,
 * no overlap, no overflow. */
pclip_status pclip__st_open(pclip_ctx_t ctx, const char *path, pclip__st_file **out);
/* Parses a header held in memory (`data` is the whole file); for tests and fuzzing. */
pclip_status pclip__st_parse(pclip_ctx_t ctx, const char *path, const uint8_t *data, size_t size,
                             pclip__st_file **out);
void pclip__st_close(pclip__st_file *f);
/* Binary search by name; NULL if absent. */
const pclip__st_tensor *pclip__st_find(const pclip__st_file *f, const char *name);

/* Converts a F32/F16/BF16 tensor to float32 in `out` (t->count floats). */
pclip_status pclip__st_to_f32(pclip_ctx_t ctx, const pclip__st_tensor *t, float *out);

float pclip__f16_to_f32(uint16_t h);
float pclip__bf16_to_f32(uint16_t b);

/* ---- writing ---- */

/* One tensor to write: `data` holds count(shape) * dtype size bytes in the
 * file's byte order (little-endian, as the host), copied unchanged, so F16
 * and BF16 tensors of a checkpoint pass through bit for bit. ndim 0 is a
 * scalar (one element). */
typedef struct pclip__st_out {
    const char *name;
    pclip__st_dtype dtype;
    int32_t ndim;
    int64_t shape[PCLIP_LIMIT_TENSOR_DIMS];
    const void *data; /* borrowed */
} pclip__st_out;

/* Writes n tensors to `path` atomically (pclip__atomic_open: temp file, sync,
 * rename; nothing is left at `path` on failure). The header lists the
 * tensors in the data's order, largest dtype first and then by name (as the
 * safetensors crate writes them, so every tensor stays aligned to its dtype
 * without gaps), followed by "__metadata__" when `metadata` is not NULL: a
 * NULL-terminated list of key, value string pairs ({"format", "pt", NULL}).
 * The header is padded with spaces to a multiple of 8 bytes. Empty or
 * duplicate names, shapes over PCLIP_LIMIT_TENSOR_DIMS dimensions, negative
 * sizes and NULL data for a non-empty tensor are INVALID_ARGUMENT. */
pclip_status pclip__st_write(pclip_ctx_t ctx, const char *path, size_t n, const pclip__st_out *t,
                             const char *const *metadata);

#endif
