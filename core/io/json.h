/* JSON helpers over cJSON for the checkpoint's small files: parsing with a
 * duplicate-key check, and typed field readers whose errors name the file and
 * the key. cJSON keeps numbers as doubles and keeps duplicate keys, so both
 * are checked here explicitly. */
#ifndef PCLIP_JSON_H
#define PCLIP_JSON_H

#include <cjson/cJSON.h>

#include "internal.h"

/* Parses `len` bytes (need not be NUL-terminated). Rejects invalid JSON,
 * trailing non-space bytes and, at every object level, duplicate keys.
 * `file` names the source in messages. */
pclip_status pclip__json_parse(pclip_ctx_t ctx, const char *file, const char *text, size_t len,
                               cJSON **out);
/* Reads and parses a whole file (bounded by PCLIP_LIMIT_JSON_BYTES). */
pclip_status pclip__json_load(pclip_ctx_t ctx, const char *path, const char *what, cJSON **out);

/* Field readers. A missing key or a JSON null leaves *out as it was (the
 * default) and succeeds; a present value of the wrong type or out of range is
 * BAD_CONFIG with "file: key 'name' ..." in the message. */
pclip_status pclip__json_int(pclip_ctx_t ctx, const char *file, const cJSON *obj, const char *key,
                             int64_t min, int64_t max, int32_t *out);
pclip_status pclip__json_int64(pclip_ctx_t ctx, const char *file, const cJSON *obj,
                               const char *key, int64_t min, int64_t max, int64_t *out);
pclip_status pclip__json_double(pclip_ctx_t ctx, const char *file, const cJSON *obj,
                                const char *key, double min, double max, double *out);
pclip_status pclip__json_bool(pclip_ctx_t ctx, const char *file, const cJSON *obj, const char *key,
                              int32_t *out);
/* *out is borrowed from obj; NULL stays NULL when missing. */
pclip_status pclip__json_string(pclip_ctx_t ctx, const char *file, const cJSON *obj,
                                const char *key, const char **out);

/* True when the number is an integer in [min, max]. */
bool pclip__json_is_int(const cJSON *item, int64_t min, int64_t max);

#endif
