/* Core API: status names and messages, the context's error text, UTF-8,
 * giving back the pages of a file map, and the strict reader of environment
 * variables. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

/* ---- core ---- */

START_TEST(test_status_names) {
    ck_assert_str_eq(pclip_status_name(PCLIP_STATUS_OK), "PCLIP_STATUS_OK");
    ck_assert_str_eq(pclip_status_name(PCLIP_STATUS_BAD_FORMAT), "PCLIP_STATUS_BAD_FORMAT");
    ck_assert_str_eq(pclip_status_name(PCLIP_STATUS_COUNT), "PCLIP_STATUS_UNKNOWN");
    for (int s = 0; s < PCLIP_STATUS_COUNT; s++) {
        ck_assert_ptr_nonnull(strstr(pclip_status_name((pclip_status)s), "PCLIP_STATUS_"));
        ck_assert_int_gt(strlen(pclip_status_str((pclip_status)s)), 3);
    }
    ck_assert_str_eq(pclip_status_str((pclip_status)-1), "unknown status");
}
END_TEST

START_TEST(test_ctx_error_text) {
    pclip_ctx_t ctx = NULL;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    ck_assert_str_eq(pclip_ctx_last_error(ctx), "");
    ck_assert_int_eq(pclip__err(ctx, PCLIP_STATUS_IO, "file '%s': %d", "x.json", 7),
                     PCLIP_STATUS_IO);
    ck_assert_str_eq(pclip_ctx_last_error(ctx), "file 'x.json': 7");
    pclip__err_prefix(ctx, "model '%s'", "dir");
    ck_assert_str_eq(pclip_ctx_last_error(ctx), "model 'dir': file 'x.json': 7");
    pclip_ctx_destroy(ctx);
    pclip_ctx_destroy(NULL);
}
END_TEST

START_TEST(test_utf8_strict) {
    int32_t cp;
    ck_assert_uint_eq(pclip__utf8_decode((const uint8_t *)"\xC3\xA9", 2, &cp), 2);
    ck_assert_int_eq(cp, 0xE9);
    ck_assert_uint_eq(pclip__utf8_decode((const uint8_t *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    ck_assert_int_eq(cp, 0x1F600);
    ck_assert_uint_eq(pclip__utf8_decode((const uint8_t *)"\xC0\xAF", 2, &cp), 0); /* overlong */
    ck_assert_uint_eq(pclip__utf8_decode((const uint8_t *)"\xED\xA0\x80", 3, &cp),
                      0); /* surrogate */
    ck_assert_uint_eq(pclip__utf8_decode((const uint8_t *)"\xF4\x90\x80\x80", 4, &cp), 0);
    ck_assert_uint_eq(pclip__utf8_decode((const uint8_t *)"\xE2\x82", 2, &cp), 0); /* truncated */
    uint8_t buf[4];
    for (int32_t c = 0; c <= 0x10FFFF; c += 97) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        size_t n = pclip__utf8_encode(c, buf);
        ck_assert_uint_eq(pclip__utf8_decode(buf, n, &cp), n);
        ck_assert_int_eq(cp, c);
    }
}
END_TEST

/* The checkpoint copy (pclip__mmap) is private: rewriting or truncating the
 * file after it was opened changes nothing that was read. */
START_TEST(test_mmap_private) {
    const size_t bytes = (size_t)64 * 4096;
    char path[512];
    snprintf(path, sizeof path, "%s/private.bin", pclip_test_tmpdir());
    uint32_t *pattern = malloc(bytes);
    for (size_t i = 0; i < bytes / 4; i++) pattern[i] = (uint32_t)(i * 2654435761u);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(pattern, 1, bytes, f), bytes);
    fclose(f);
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip__mmap map;
    ck_assert_int_eq(pclip__mmap_open(ctx, path, "test", &map), PCLIP_STATUS_OK);
    ck_assert_uint_eq(map.size, bytes);
    /* rewritten in place, then cut to one byte */
    f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    char zeros[4096] = {0};
    for (size_t i = 0; i < bytes / sizeof zeros; i++) fwrite(zeros, 1, sizeof zeros, f);
    fclose(f);
    ck_assert_int_eq(memcmp(map.data, pattern, bytes), 0);
    ck_assert_int_eq(truncate(path, 1), 0);
    ck_assert_int_eq(memcmp(map.data, pattern, bytes), 0);
    pclip__mmap_close(&map);
    pclip_ctx_destroy(ctx);
    free(pattern);
    remove(path);
}
END_TEST

/* ---- environment variables ---- */

#define ENV "PCLIP_TEST_ENV_VALUE"

START_TEST(test_env_int) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    int64_t v = 5;
    unsetenv(ENV);
    ck_assert_int_eq(pclip__env_int(ctx, ENV, 1, 10, 7, &v), PCLIP_STATUS_OK);
    ck_assert_int_eq(v, 7);
    setenv(ENV, "", 1); /* empty: the default too */
    ck_assert_int_eq(pclip__env_int(ctx, ENV, 1, 10, 8, &v), PCLIP_STATUS_OK);
    ck_assert_int_eq(v, 8);
    static const struct {
        const char *value;
        int64_t want;
    } good[] = {{"1", 1}, {"10", 10}, {"+3", 3}, {"007", 7}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        setenv(ENV, good[i].value, 1);
        ck_assert_int_eq(pclip__env_int(ctx, ENV, 1, 10, 0, &v), PCLIP_STATUS_OK);
        ck_assert_int_eq(v, good[i].want);
    }
    setenv(ENV, "-4", 1);
    ck_assert_int_eq(pclip__env_int(ctx, ENV, -5, 5, 0, &v), PCLIP_STATUS_OK);
    ck_assert_int_eq(v, -4);
    pclip_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_env_choice) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    static const char *const words[] = {"scalar", "avx2", "avx512"};
    int v = -1;
    unsetenv(ENV);
    ck_assert_int_eq(pclip__env_choice(ctx, ENV, words, 3, 2, &v), PCLIP_STATUS_OK);
    ck_assert_int_eq(v, 2);
    setenv(ENV, "avx2", 1);
    ck_assert_int_eq(pclip__env_choice(ctx, ENV, words, 3, 2, &v), PCLIP_STATUS_OK);
    ck_assert_int_eq(v, 1);
    int64_t pair[2] = {0, 0};
    bool set = true;
    unsetenv(ENV);
    ck_assert_int_eq(pclip__env_ints(ctx, ENV, 2, 1, 64, pair, &set), PCLIP_STATUS_OK);
    ck_assert(!set);
    setenv(ENV, "16,8", 1);
    ck_assert_int_eq(pclip__env_ints(ctx, ENV, 2, 1, 64, pair, &set), PCLIP_STATUS_OK);
    ck_assert(set);
    ck_assert_int_eq(pair[0], 16);
    ck_assert_int_eq(pair[1], 8);
    unsetenv(ENV);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* Junk, spaces, overflow and values out of range are errors naming the
 * variable, its value and what it accepts; the output keeps its value. */
START_TEST(test_env_malformed) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    /* junk, spaces, hex, fractions, signs alone, out of range, overflow */
    // clang-format off
    static const char *const bad[] = {"abc", " ", " 3", "3 ", "3x", "0x10", "1.5",
                                      "-", "+", "11", "0", "-1", "99999999999999999999"};
    // clang-format on
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 42;
        setenv(ENV, bad[i], 1);
        ck_assert_msg(pclip__env_int(ctx, ENV, 1, 10, 5, &v) == PCLIP_STATUS_INVALID_ARGUMENT,
                      "'%s' accepted", bad[i]);
        ck_assert_int_eq(v, 42);
        char want[128];
        snprintf(want, sizeof want, ENV "='%s' is not an integer in 1..10", bad[i]);
        ck_assert_str_eq(pclip_ctx_last_error(ctx), want);
    }
    static const char *const words[] = {"tiled", "direct"};
    int w = 9;
    setenv(ENV, "Tiled", 1);
    ck_assert_int_eq(pclip__env_choice(ctx, ENV, words, 2, 0, &w), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(w, 9);
    ck_assert_str_eq(pclip_ctx_last_error(ctx), ENV "='Tiled' is not one of tiled, direct");
    static const char *const bad_lists[] = {"8", "8,", "8,16,4", "8;16", ",8,16", "8,0", "8, 16"};
    for (size_t i = 0; i < sizeof bad_lists / sizeof bad_lists[0]; i++) {
        int64_t pair[2] = {3, 3};
        bool set = true;
        setenv(ENV, bad_lists[i], 1);
        ck_assert_msg(pclip__env_ints(ctx, ENV, 2, 1, 64, pair, &set) ==
                          PCLIP_STATUS_INVALID_ARGUMENT,
                      "'%s' accepted", bad_lists[i]);
        ck_assert(!set);
        ck_assert_int_eq(pair[0], 3);
        ck_assert_msg(strstr(pclip_ctx_last_error(ctx), ENV) &&
                          strstr(pclip_ctx_last_error(ctx), "2 comma-separated integers in 1..64"),
                      "'%s'", pclip_ctx_last_error(ctx));
    }
    unsetenv(ENV);
    pclip_ctx_destroy(ctx);
}
END_TEST

/* A garbage PORTCLIP_DEVICE fails backend creation, naming it. */
START_TEST(test_env_device) {
    pclip_ctx_t ctx;
    ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK);
    pclip_backend_t b = NULL;
    setenv("PORTCLIP_DEVICE", "1x", 1);
    ck_assert_int_eq(pclip_backend_create(ctx, "cpu", -1, &b), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(b);
    ck_assert_str_eq(pclip_ctx_last_error(ctx),
                     "PORTCLIP_DEVICE='1x' is not an integer in 0..1000");
    unsetenv("PORTCLIP_DEVICE");
    pclip_ctx_destroy(ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_status_names);
    tcase_add_test(tc, test_ctx_error_text);
    tcase_add_test(tc, test_utf8_strict);
    tcase_add_test(tc, test_mmap_private);
    tcase_add_test(tc, test_env_int);
    tcase_add_test(tc, test_env_choice);
    suite_add_tcase(s, tc);
    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_env_malformed);
    tcase_add_test(limits, test_env_device);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
