/* portclip core: the version, status codes and the context. Included by
 * portclip.h (which says the conventions every topic header follows). */
#ifndef PORTCLIP_CORE_H
#define PORTCLIP_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(PORTCLIP_SHARED)
#define PCLIP_API __declspec(dllexport)
#elif defined(__GNUC__)
#define PCLIP_API __attribute__((visibility("default")))
#else
#define PCLIP_API
#endif

#define PCLIP_VERSION_MAJOR 0
#define PCLIP_VERSION_MINOR 1
#define PCLIP_VERSION_PATCH 0

/* ---- status codes ---- */

/* X(name, message). Codes are only ever appended, never renumbered. */
#define PCLIP_STATUS_LIST(X)                                               \
    X(OK, "success")                                                       \
    X(INVALID_ARGUMENT, "invalid argument")                                \
    X(OUT_OF_MEMORY, "out of memory")                                      \
    X(IO, "file could not be read or written")                             \
    X(NOT_FOUND, "file or item not found")                                 \
    X(BAD_FORMAT, "malformed file")                                        \
    X(UNSUPPORTED, "unsupported format or feature")                        \
    X(LIMIT, "input exceeds a safety limit")                               \
    X(BAD_CONFIG, "model configuration is invalid")                        \
    X(BAD_TENSOR, "checkpoint tensors do not match the configuration")     \
    X(BAD_TEXT, "text is not valid UTF-8")                                 \
    X(BACKEND_UNAVAILABLE, "backend is not available")                     \
    X(DEVICE_LOST, "device lost")                                          \
    X(INTERNAL, "internal error")                                          \
    X(NOT_FINITE, "a result is NaN or infinite")

typedef enum pclip_status {
#define PCLIP_X_ENUM(name, msg) PCLIP_STATUS_##name,
    PCLIP_STATUS_LIST(PCLIP_X_ENUM)
#undef PCLIP_X_ENUM
    PCLIP_STATUS_COUNT
} pclip_status;

/* "PCLIP_STATUS_IO" etc.; "PCLIP_STATUS_UNKNOWN" for a value out of range. */
PCLIP_API const char *pclip_status_name(pclip_status s);
/* A short English sentence for the code; never NULL. */
PCLIP_API const char *pclip_status_str(pclip_status s);

/* "0.1.0" */
PCLIP_API const char *pclip_version(void);
/* The versions of the libraries this build uses, as run (from each library's
 * own function where it has one) or as compiled against (libjpeg-turbo):
 * "oneDNN 2.6.3, libjpeg-turbo 2.1.5, libpng 1.6.39, SQLite 3.40.1".
 * Static storage; never NULL. */
PCLIP_API const char *pclip_library_versions(void);

/* ---- context ---- */

typedef struct pclip_ctx *pclip_ctx_t;

/* Creates a context. Returns OUT_OF_MEMORY or OK. */
PCLIP_API pclip_status pclip_ctx_create(pclip_ctx_t *out);
PCLIP_API void pclip_ctx_destroy(pclip_ctx_t ctx);
/* The full text of the most recent failure on this context, or "" if none.
 * borrowed: valid until the next call that uses ctx. */
PCLIP_API const char *pclip_ctx_last_error(pclip_ctx_t ctx);

/* ---- outputs ---- */

/* Checks, without creating anything, that `path` can be written as an output
 * (.npy and the like): its folder exists and is writable, or it is an
 * existing device, FIFO or "-" (stdout) that is written in place. A directory
 * is refused. For refusing a bad output before any work is done. */
PCLIP_API pclip_status pclip_output_check(pclip_ctx_t ctx, const char *path);
/* Removes the temp file of every output this process is still writing.
 * Async-signal-safe: for a SIGINT/SIGTERM/SIGHUP handler, which should then
 * re-raise the signal. The library installs no signal handler itself. */
PCLIP_API void pclip_output_temps_remove(void);

#ifdef __cplusplus
}
#endif

#endif /* PORTCLIP_CORE_H */
