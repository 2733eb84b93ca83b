/* Helpers shared by the Check suites: running a suite with CTest's skip
 * convention, fixture paths, reading .npy and JSON fixtures, and running the
 * CLI. */
#ifndef PCLIP_TESTUTIL_H
#define PCLIP_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portclip.h"

/* Exit status that CTest reads as "skipped" (SKIP_RETURN_CODE 77). */
#define PCLIP_TEST_SKIP 77

/* Runs the suite (forking each test) and returns the process exit status. */
int pclip_test_run(Suite *s);

/* "<fixtures>/<rel>", in a static rotating buffer (8 slots). */
const char *pclip_test_fixture(const char *rel);
/* "<shared clip-bpe dir>/<rel>", or NULL when the real CLIP vocabulary is absent. */
const char *pclip_test_shared_bpe(const char *rel);

/* Reads a whole file; aborts the test on failure. Caller frees. */
char *pclip_test_read_file(const char *path, size_t *len);

/* A float32 .npy array. */
typedef struct pclip_test_npy {
    int64_t shape[8];
    int ndim;
    size_t count;
    float *data;
} pclip_test_npy;
/* Reads a little-endian float32 C-order .npy; aborts the test on failure. */
void pclip_test_npy_read(const char *path, pclip_test_npy *out);
void pclip_test_npy_free(pclip_test_npy *a);

/* Makes a fresh empty temporary directory; returns its path (static buffer). */
const char *pclip_test_tmpdir(void);

/* Runs `cmd` through /bin/sh, capturing stdout and stderr into malloc'd
 * strings (either may be NULL to discard). Returns the exit status, or -1. */
int pclip_test_sh(const char *cmd, char **out, char **err);
/* Runs argv[0] with argv (NULL-terminated) without a shell, capturing stdout
 * and stderr (either may be NULL to discard). Returns the exit status, or -1
 * if it did not exit normally. */
int pclip_test_exec(char *const argv[], char **out, char **err);
/* The path of the built CLI. */
const char *pclip_test_cli(void);

/* FNV-1a 64 of bytes, as fixtures record it. */
uint64_t pclip_test_fnv1a64(const void *data, size_t n);

/* Asserts status == want, printing the context's message on mismatch. */
#define ck_assert_status(ctx, got, want)                                                     \
    ck_assert_msg((got) == (want), "status %s, expected %s; last error: %s",                 \
                  pclip_status_name(got), pclip_status_name(want), pclip_ctx_last_error(ctx))

#endif
