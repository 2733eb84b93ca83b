/* Core API: status names and messages, the context's error text, atomic
 * writes and .npy output. */
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
    ck_assert_uint_eq(pclip__utf8_decode((const uint8_t *)"\xED\xA0\x80", 3, &cp), 0); /* surrogate */
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

int main(void) {
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_status_names);
    tcase_add_test(tc, test_ctx_error_text);
    tcase_add_test(tc, test_utf8_strict);
    suite_add_tcase(s, tc);
    return pclip_test_run(s);
}
