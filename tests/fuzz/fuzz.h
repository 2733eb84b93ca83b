/* Shared by the fuzz targets: the libFuzzer entry point's prototype and a
 * context that lives for the whole run (one per process; the targets are
 * single-threaded). */
#ifndef PCLIP_FUZZ_H
#define PCLIP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PCLIP_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define PCLIP_FUZZ_ASAN 1
#endif
#ifdef PCLIP_FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline pclip_ctx_t fuzz_ctx(void) {
    static pclip_ctx_t ctx;
    if (!ctx && pclip_ctx_create(&ctx) != PCLIP_STATUS_OK) abort();
    return ctx;
}

/* A copy of the input that ends right before an inaccessible page. The
 * libraries the parsers hand bytes to (cJSON, libpng, libjpeg) are system
 * builds without ASan, so their reads past the end of libFuzzer's heap copy
 * would go unseen; past this copy they fault. Under ASan the bytes before the
 * copy are poisoned, so our own code's reads before the start still report. */
static inline const uint8_t *fuzz_guarded(const uint8_t *data, size_t size) {
    static uint8_t *region;
    static size_t cap; /* accessible bytes; one guard page follows */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t need = (size + page - 1) / page * page;
    if (need == 0) need = page;
    if (need > cap) {
        if (region) {
#ifdef PCLIP_FUZZ_ASAN
            ASAN_UNPOISON_MEMORY_REGION(region, cap);
#endif
            munmap(region, cap + page);
        }
        region =
            mmap(NULL, need + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED || mprotect(region + need, page, PROT_NONE) != 0) abort();
        cap = need;
    }
    uint8_t *p = region + cap - size;
#ifdef PCLIP_FUZZ_ASAN
    ASAN_UNPOISON_MEMORY_REGION(region, cap);
    ASAN_POISON_MEMORY_REGION(region, cap - size);
#endif
    if (size) memcpy(p, data, size);
    return p;
}

/* An invariant of the code under test is broken: report it as a crash, with
 * the context's last message, so that libFuzzer saves the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz check failed: %s (%s:%d); last error: %s\n", #cond, __FILE__,    \
                    __LINE__, pclip_ctx_last_error(fuzz_ctx()));                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A status the code under test may return on untrusted input: anything but
 * INTERNAL, INVALID_ARGUMENT (the target passes valid arguments) and values
 * outside the enum. */
static inline int fuzz_status_ok(pclip_status st) {
    return (unsigned)st < PCLIP_STATUS_COUNT && st != PCLIP_STATUS_INTERNAL &&
           st != PCLIP_STATUS_INVALID_ARGUMENT;
}

#endif
