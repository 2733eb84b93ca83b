/* Helpers shared by the Check suites: running a suite with CTest's skip
 * convention, probing the backend under test, fixture paths, reading .npy
 * and JSON fixtures, running small graphs, comparing results, and running
 * the CLI. */
#ifndef PCLIP_TESTUTIL_H
#define PCLIP_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "graph/backend.h"
#include "portclip.h"

/* Exit status that CTest reads as "skipped" (SKIP_RETURN_CODE 77). */
#define PCLIP_TEST_SKIP 77

/* Runs the suite (forking each test) and returns the process exit status. */
int pclip_test_run(Suite *s);

/* Opens `backend` device `device` in a child process (devices are only ever
 * opened after Check's fork) and returns when that works. When the backend is
 * absent (BACKEND_UNAVAILABLE) it prints "skipped: <backend>: <reason>" and
 * exits PCLIP_TEST_SKIP; on any other failure it prints the reason, naming
 * `suite`, and exits 1. */
void pclip_test_probe_backend(const char *suite, const char *backend, int32_t device);

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

/* The backend under test: argv[1] when it does not start with '-', else
 * PCLIP_TEST_BACKEND, else "cpu"; the device is PORTCLIP_DEVICE (default 0)
 * except on the CPU, where the suites pick devices themselves. Returns the
 * index of the first argument after the backend. */
int pclip_test_backend_args(int argc, char **argv, const char **backend, int32_t *device);

/* Parses the JSON fixture "<fixtures>/<rel>"; aborts the test on failure.
 * Caller frees with cJSON_Delete. */
cJSON *pclip_test_load_json(const char *rel);

/* ---- numbers ---- */

/* n floats of a fixed ramp in [-scale, scale] (no RNG: reruns give the same
 * data). Caller frees. */
float *pclip_test_ramp(size_t n, float scale);
/* Normalised mean squared error of t against the reference r:
 * sum (t - r)^2 / sum r^2 (the plain sum when r is all zero). */
double pclip_test_nmse(const float *t, const float *r, size_t n);
/* The largest relative error per row of got [rows, cols] against want,
 * sqrt(sum (got - want)^2 / sum want^2) (denominator 1 for a zero row);
 * NaN or Inf as soon as a row has one. The row is stored in *worst_row when
 * not NULL. */
double pclip_test_row_error(const float *got, const float *want, int64_t rows, int64_t cols,
                            int64_t *worst_row);

/* Compiles g (planned or not) on b, writes the n_in inputs in[i] from
 * data[i], runs it and reads `out` (when not NULL) into y. */
pclip_status pclip_test_run_graph(pclip_backend_t b, pclip__graph *g, int n_in,
                                  pclip__tensor *const *in, const void *const *data,
                                  pclip__tensor *out, float *y);

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
#define ck_assert_status(ctx, got, want)                                                           \
    ck_assert_msg((got) == (want), "status %s, expected %s; last error: %s",                       \
                  pclip_status_name(got), pclip_status_name(want), pclip_ctx_last_error(ctx))

#endif
