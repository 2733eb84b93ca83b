/* Training data (core/train/data.c) and the feature cache
 * (core/train/features.c): the CSV (RFC 4180 quoting, ',' and '|'), TSV and
 * JSON Lines readers with column mapping, path resolution and every error
 * (each naming file:line); the pooled features against the model's own
 * pooled output (bit-exact, same CPU device and batch size) and against
 * PyTorch (tests/fixtures/tiny-clip/reference: relative error per row
 * <= 1e-5, the encoder suites' tolerance); the cache file written, hit
 * (bit-identical, no encoder run), rebuilt when corrupt, short, foreign or
 * of another key; images that are missing or undecodable (skipped, or an
 * error with strict); and the train/validation split by image.
 *
 * CPU only: the encoders themselves are parity-tested on every backend by
 * check_encoders. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "train/data.h"
#include "train/features.h"

/* relative error per row against PyTorch, as check_encoders */
#define ROW_REL_TOL 1e-5

static pclip_ctx_t ctx;
static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

/* ---- helpers ---- */

static char *dup_tmpdir(void) { return strdup(pclip_test_tmpdir()); }

/* Removes a folder of dup_tmpdir with everything in it, and frees the name. */
static void drop_tmpdir(char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(pclip_test_sh(cmd, NULL, NULL), 0);
    free(dir);
}

/* Writes n bytes to dir/name; returns the path (caller frees). */
static char *write_file(const char *dir, const char *name, const void *data, size_t n) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static char *write_text(const char *dir, const char *name, const char *text) {
    return write_file(dir, name, text, strlen(text));
}

static pclip__dataset *read_ok(const char *path, const pclip__dataset_options *o) {
    pclip__dataset *ds = NULL;
    ck_assert_status(ctx, pclip__dataset_read(ctx, path, o, &ds), PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(ds);
    return ds;
}

/* The read fails with `want`, its message holding "path:line:" (line > 0)
 * or the path (line 0), and `part`. */
static void read_fails(const char *path, const pclip__dataset_options *o, pclip_status want,
                       int line, const char *part) {
    pclip__dataset *ds = (pclip__dataset *)(uintptr_t)1; /* must stay untouched */
    pclip_status st = pclip__dataset_read(ctx, path, o, &ds);
    const char *msg = pclip_ctx_last_error(ctx);
    ck_assert_msg(st == want, "%s: status %s, expected %s; message: %s", path,
                  pclip_status_name(st), pclip_status_name(want), msg);
    ck_assert_ptr_eq(ds, (pclip__dataset *)(uintptr_t)1);
    char where[600];
    if (line > 0)
        snprintf(where, sizeof where, "%s:%d:", path, line);
    else
        snprintf(where, sizeof where, "%s", path);
    ck_assert_msg(strstr(msg, where), "message '%s' does not name '%s'", msg, where);
    ck_assert_msg(strstr(msg, part), "message '%s' does not say '%s'", msg, part);
}

/* "<fixtures>/train-data/<name>" in a rotating static buffer */
static const char *data_fixture(const char *name) {
    static char buf[4][512];
    static int k;
    char rel[256];
    snprintf(rel, sizeof rel, "train-data/%s", name);
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s", pclip_test_fixture(rel));
    return buf[k];
}

/* the folder of a path, with its '/' */
static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    return strndup(path, s ? (size_t)(s - path) + 1 : 0);
}

static void expect_image(const pclip__dataset *ds, int64_t pair, const char *dir,
                         const char *name) {
    char want[1024];
    if (name[0] == '/')
        snprintf(want, sizeof want, "%s", name);
    else
        snprintf(want, sizeof want, "%s%s", dir, name);
    ck_assert_str_eq(ds->pairs[pair].path, want);
    ck_assert_str_eq(ds->images[ds->pairs[pair].image], want);
}

/* ---- readers ---- */

START_TEST(test_csv_quoting) {
    const char *path = data_fixture("quoting.csv");
    pclip__dataset *ds = read_ok(path, NULL);
    char *dir = dir_of(path);
    ck_assert_int_eq(ds->format, PCLIP__DATA_CSV);
    ck_assert_int_eq(ds->sep, ',');
    ck_assert_int_eq(ds->n_pairs, 5);
    const char *captions[] = {"a, b", "say \"hi\"", "two\nlines",
                              "a caption with a \"quote\" inside", "last"};
    const int64_t lines[] = {2, 3, 4, 6, 7};
    const char *images[] = {"a.jpg", "b.jpg", "a.jpg", "c d.jpg", "/abs/e.jpg"};
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(ds->pairs[i].caption, captions[i]);
        ck_assert_int_eq(ds->pairs[i].line, lines[i]);
        expect_image(ds, i, dir, images[i]);
    }
    /* a.jpg once, with its first line */
    ck_assert_int_eq(ds->n_images, 4);
    ck_assert_int_eq(ds->pairs[0].image, ds->pairs[2].image);
    ck_assert_int_eq(ds->image_line[ds->pairs[0].image], 2);
    ck_assert_int_eq(ds->n_bad_rows, 0);
    free(dir);
    pclip__dataset_destroy(ds);
}
END_TEST

/* A BOM, CR LF line ends, CR LF inside quotes (kept), blank lines and a
 * last line without its line end. */
START_TEST(test_csv_crlf_bom) {
    char *dir = dup_tmpdir();
    const char text[] = "\xEF\xBB\xBFimage,caption\r\na.jpg,\"x\r\ny\"\r\n\r\nb.jpg,z\r\n\r\n"
                        "c.jpg,last";
    char *path = write_file(dir, "crlf.csv", text, sizeof text - 1);
    pclip__dataset *ds = read_ok(path, NULL);
    ck_assert_int_eq(ds->n_pairs, 3);
    ck_assert_str_eq(ds->pairs[0].caption, "x\r\ny");
    ck_assert_str_eq(ds->pairs[1].caption, "z");
    ck_assert_str_eq(ds->pairs[2].caption, "last");
    ck_assert_int_eq(ds->pairs[0].line, 2);
    ck_assert_int_eq(ds->pairs[1].line, 5);
    ck_assert_int_eq(ds->pairs[2].line, 7);
    char want[600];
    snprintf(want, sizeof want, "%s/c.jpg", dir);
    ck_assert_str_eq(ds->pairs[2].path, want);
    pclip__dataset_destroy(ds);
    free(path);
    drop_tmpdir(dir);
}
END_TEST

START_TEST(test_tsv) {
    const char *path = data_fixture("pairs.tsv");
    pclip__dataset *ds = read_ok(path, NULL);
    char *dir = dir_of(path);
    ck_assert_int_eq(ds->format, PCLIP__DATA_TSV);
    ck_assert_int_eq(ds->sep, '\t');
    ck_assert_int_eq(ds->n_pairs, 3);
    ck_assert_int_eq(ds->n_images, 2);
    ck_assert_str_eq(ds->pairs[0].caption, "a photo of a cat");
    ck_assert_str_eq(ds->pairs[1].caption, "\"x\""); /* no quoting in TSV */
    ck_assert_str_eq(ds->pairs[2].caption, "it's");
    expect_image(ds, 1, dir, "../images/p_32x32.png");
    free(dir);
    pclip__dataset_destroy(ds);
}
END_TEST

/* flickr30k's results.csv: '|' with a space after it, other column names,
 * several captions per image. */
START_TEST(test_pipe_flickr) {
    const char *path = data_fixture("results.csv");
    pclip__dataset_options o = {.image_column = "image_name", .caption_column = "comment"};
    pclip__dataset *ds = read_ok(path, &o);
    char *dir = dir_of(path);
    ck_assert_int_eq(ds->format, PCLIP__DATA_CSV);
    ck_assert_int_eq(ds->sep, '|');
    ck_assert_int_eq(ds->n_pairs, 5);
    ck_assert_int_eq(ds->n_images, 2);
    const char *captions[] = {"A photo of a cat .", "Two words, with a comma .",
                              "A man in a \"Sea Shepherd\" shirt .",
                              " Two spaces before this one .", "x"};
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(ds->pairs[i].caption, captions[i]);
        ck_assert_int_eq(ds->pairs[i].line, i + 2);
        expect_image(ds, i, dir, i < 3 ? "j_rgb444_64x48.jpg" : "p_32x32.png");
        ck_assert_int_eq(ds->pairs[i].image, i < 3 ? 0 : 1);
    }
    pclip__dataset_destroy(ds);
    /* the default names are not there: the message lists the columns, trimmed */
    read_fails(path, NULL, PCLIP_STATUS_BAD_FORMAT, 1,
               "no image column 'image' in the header; its columns (separator '|') are: "
               "'image_name', 'comment_number', 'comment'");
    o.caption_column = "caption";
    read_fails(path, &o, PCLIP_STATUS_BAD_FORMAT, 1, "no caption column 'caption'");
    /* an explicit separator wins over the sniffing: one column then */
    o = (pclip__dataset_options){.sep = ',', .image_column = "image_name",
                                 .caption_column = "comment"};
    read_fails(path, &o, PCLIP_STATUS_BAD_FORMAT, 1,
               "'image_name| comment_number| comment'");
    free(dir);
}
END_TEST

START_TEST(test_jsonl) {
    const char *path = data_fixture("pairs.jsonl");
    pclip__dataset *ds = read_ok(path, NULL);
    char *dir = dir_of(path);
    ck_assert_int_eq(ds->format, PCLIP__DATA_JSONL);
    ck_assert_int_eq(ds->n_pairs, 3);
    ck_assert_str_eq(ds->pairs[0].caption, "a photo of a cat");
    ck_assert_str_eq(ds->pairs[1].caption, "x");
    ck_assert_str_eq(ds->pairs[2].caption, "caf\xC3\xA9 \"quoted\"");
    ck_assert_int_eq(ds->pairs[0].line, 1);
    ck_assert_int_eq(ds->pairs[1].line, 3); /* after the blank line */
    ck_assert_int_eq(ds->pairs[2].line, 4);
    expect_image(ds, 2, dir, "../images/j_grey_64x48.jpg");
    pclip__dataset_destroy(ds);
    /* other keys as the columns */
    char *tmp = dup_tmpdir();
    char *p2 = write_text(tmp, "m.jsonl", "{\"file\": \"a.png\", \"text\": \"t\", \"image\": 3}\n");
    pclip__dataset_options o = {.image_column = "file", .caption_column = "text"};
    ds = read_ok(p2, &o);
    ck_assert_int_eq(ds->n_pairs, 1);
    ck_assert_str_eq(ds->pairs[0].caption, "t");
    pclip__dataset_destroy(ds);
    free(p2);
    drop_tmpdir(tmp);
    free(dir);
}
END_TEST

/* Names that say nothing: the content decides. */
START_TEST(test_sniffing) {
    char *dir = dup_tmpdir();
    char *p = write_text(dir, "a.txt", "image,caption\na.jpg,\"x, y\"\n");
    pclip__dataset *ds = read_ok(p, NULL);
    ck_assert_int_eq(ds->format, PCLIP__DATA_CSV);
    ck_assert_str_eq(ds->pairs[0].caption, "x, y");
    pclip__dataset_destroy(ds);
    free(p);
    p = write_text(dir, "b.dat", "image\tcaption\na.jpg\tx, y\n");
    ds = read_ok(p, NULL);
    ck_assert_int_eq(ds->format, PCLIP__DATA_TSV);
    ck_assert_str_eq(ds->pairs[0].caption, "x, y");
    pclip__dataset_destroy(ds);
    free(p);
    p = write_text(dir, "c", "\n  {\"image\": \"a.jpg\", \"caption\": \"j\"}\n");
    ds = read_ok(p, NULL);
    ck_assert_int_eq(ds->format, PCLIP__DATA_JSONL);
    ck_assert_int_eq(ds->pairs[0].line, 2);
    pclip__dataset_destroy(ds);
    free(p);
    /* a .csv that holds tabs only is read as TSV; .tsv with '|' as '|' */
    p = write_text(dir, "d.csv", "image\tcaption\na.jpg\t\"q\"\n");
    ds = read_ok(p, NULL);
    ck_assert_int_eq(ds->format, PCLIP__DATA_TSV);
    ck_assert_str_eq(ds->pairs[0].caption, "\"q\"");
    pclip__dataset_destroy(ds);
    free(p);
    p = write_text(dir, "e.tsv", "image|caption\na.jpg| b\n");
    ds = read_ok(p, NULL);
    ck_assert_int_eq(ds->sep, '|');
    ck_assert_str_eq(ds->pairs[0].caption, "b");
    pclip__dataset_destroy(ds);
    free(p);
    /* the format given wins over the extension */
    p = write_text(dir, "f.csv", "{\"image\": \"a.jpg\", \"caption\": \"k\"}\n");
    pclip__dataset_options o = {.format = PCLIP__DATA_JSONL};
    ds = read_ok(p, &o);
    ck_assert_str_eq(ds->pairs[0].caption, "k");
    pclip__dataset_destroy(ds);
    free(p);
    drop_tmpdir(dir);
}
END_TEST

/* Paths relative to the data file's folder, whatever the working folder. */
START_TEST(test_paths) {
    char *dir = dup_tmpdir();
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ck_assert_int_eq(mkdir(sub, 0777), 0);
    free(write_text(sub, "d.csv", "image,caption\na.jpg,x\n./b.jpg,y\n/abs/c.jpg,z\n"));
    ck_assert_int_eq(chdir(dir), 0); /* Check forks each test */
    pclip__dataset *ds = read_ok("sub/d.csv", NULL);
    ck_assert_str_eq(ds->pairs[0].path, "sub/a.jpg");
    ck_assert_str_eq(ds->pairs[1].path, "sub/./b.jpg");
    ck_assert_str_eq(ds->pairs[2].path, "/abs/c.jpg");
    pclip__dataset_destroy(ds);
    ck_assert_int_eq(chdir(sub), 0);
    ds = read_ok("d.csv", NULL);
    ck_assert_str_eq(ds->pairs[0].path, "a.jpg");
    ck_assert_str_eq(ds->pairs[2].path, "/abs/c.jpg");
    pclip__dataset_destroy(ds);
    /* image_root: relative paths from there instead (with or without its '/') */
    pclip__dataset_options o = {.image_root = "/photos/all"};
    ds = read_ok("d.csv", &o);
    ck_assert_str_eq(ds->pairs[0].path, "/photos/all/a.jpg");
    ck_assert_str_eq(ds->pairs[2].path, "/abs/c.jpg");
    pclip__dataset_destroy(ds);
    o.image_root = "imgs/";
    ds = read_ok("d.csv", &o);
    ck_assert_str_eq(ds->pairs[1].path, "imgs/./b.jpg");
    pclip__dataset_destroy(ds);
    o.image_root = "";
    read_fails("d.csv", &o, PCLIP_STATUS_INVALID_ARGUMENT, 0, "empty image folder");
    drop_tmpdir(dir);
}
END_TEST

START_TEST(test_skip_bad_rows) {
    char *dir = dup_tmpdir();
    char *p = write_text(dir, "s.csv",
                         "image,caption\na.jpg,good\nb.jpg\n,no image\nc.jpg,  \nd.jpg,fine\n");
    read_fails(p, NULL, PCLIP_STATUS_BAD_FORMAT, 3, "1 field, the header has 2");
    pclip__dataset_options o = {.skip_bad_rows = 1};
    pclip__dataset *ds = read_ok(p, &o);
    ck_assert_int_eq(ds->n_pairs, 2);
    ck_assert_str_eq(ds->pairs[1].caption, "fine");
    ck_assert_int_eq(ds->pairs[1].line, 6);
    ck_assert_int_eq(ds->n_images, 2);
    ck_assert_int_eq(ds->n_bad_rows, 3);
    ck_assert_int_eq(ds->bad_rows[0].line, 3);
    ck_assert_int_eq(ds->bad_rows[1].line, 4);
    ck_assert_int_eq(ds->bad_rows[2].line, 5);
    ck_assert_ptr_nonnull(strstr(ds->bad_rows[1].why, "empty image"));
    ck_assert_ptr_nonnull(strstr(ds->bad_rows[2].why, "empty caption"));
    pclip__dataset_destroy(ds);
    free(p);
    /* JSON lines: a missing key is a bad row too; every row bad is an error */
    p = write_text(dir, "s.jsonl", "{\"image\": \"a.jpg\"}\n{\"image\": 1, \"caption\": \"x\"}\n");
    read_fails(p, &o, PCLIP_STATUS_BAD_FORMAT, 0, "no usable rows (all 2 were left out");
    free(p);
    drop_tmpdir(dir);
}
END_TEST

/* ---- errors ---- */

static const struct bad_case {
    const char *name, *text;
    size_t len; /* 0: strlen */
    pclip_status status;
    int line; /* 0: the message names the file without a line */
    const char *part;
} bad_cases[] = {
    {"empty.csv", "", 0, PCLIP_STATUS_BAD_FORMAT, 0, "the file is empty"},
    {"bom.csv", "\xEF\xBB\xBF", 0, PCLIP_STATUS_BAD_FORMAT, 0, "the file is empty"},
    {"header.csv", "image,caption\n", 0, PCLIP_STATUS_BAD_FORMAT, 0, "a header but no rows"},
    {"header_blank.tsv", "image\tcaption\n\n\n", 0, PCLIP_STATUS_BAD_FORMAT, 0,
     "a header but no rows"},
    {"blank.csv", "\n\r\n", 0, PCLIP_STATUS_BAD_FORMAT, 0, "no header line"},
    {"utf8.csv", "image,caption\na.jpg,caf\xC3\n", 0, PCLIP_STATUS_BAD_TEXT, 2,
     "invalid UTF-8 (byte 0xc3 at column 10"},
    {"overlong.tsv", "image\tcaption\na.jpg\tok\nb.jpg\t\xC0\xAF\n", 0, PCLIP_STATUS_BAD_TEXT, 3,
     "invalid UTF-8"},
    {"latin1.jsonl", "{\"image\": \"a.jpg\", \"caption\": \"caf\xE9\"}\n", 0, PCLIP_STATUS_BAD_TEXT,
     1, "invalid UTF-8"},
    {"nul.csv", "image,caption\na.jpg,x\0y\n", 24, PCLIP_STATUS_BAD_FORMAT, 2, "a NUL byte"},
    {"utf16.csv", "\xFF\xFEi\0m\0", 6, PCLIP_STATUS_BAD_FORMAT, 1, "UTF-16"},
    {"cr.csv", "image,caption\ra.jpg,x\r", 0, PCLIP_STATUS_BAD_FORMAT, 1,
     "a carriage return not followed by a line feed"},
    {"cr2.tsv", "image\tcaption\na.jpg\tx\ry\n", 0, PCLIP_STATUS_BAD_FORMAT, 2,
     "carriage return"},
    {"nocol.csv", "img,caption\na.jpg,x\n", 0, PCLIP_STATUS_BAD_FORMAT, 1,
     "no image column 'image' in the header; its columns (separator ',') are: 'img', 'caption'"},
    {"twice.csv", "image,caption,image\na.jpg,x,b.jpg\n", 0, PCLIP_STATUS_BAD_FORMAT, 1,
     "the image column 'image' appears twice in the header (columns 1 and 3)"},
    {"nocap.csv", "image,caption\na.jpg,x\nb.jpg,\n", 0, PCLIP_STATUS_BAD_FORMAT, 3,
     "empty caption (column 'caption')"},
    {"noimg.tsv", "image\tcaption\n\tx\n", 0, PCLIP_STATUS_BAD_FORMAT, 2,
     "empty image (column 'image')"},
    {"quoted_empty.csv", "image,caption\na.jpg,\"\"\n", 0, PCLIP_STATUS_BAD_FORMAT, 2,
     "empty caption"},
    {"short.csv", "image,caption\na.jpg\n", 0, PCLIP_STATUS_BAD_FORMAT, 2,
     "1 field, the header has 2 (separator ',')"},
    {"long.csv", "image,caption\na.jpg,x,y\n", 0, PCLIP_STATUS_BAD_FORMAT, 2,
     "3 fields, the header has 2"},
    {"pipe_short.csv", "image| n| caption\na.jpg| 4   A dog runs .\n", 0,
     PCLIP_STATUS_BAD_FORMAT, 2, "2 fields, the header has 3 (separator '|')"},
    {"open.csv", "image,caption\na.jpg,ok\nb.jpg,\"never\nclosed\n", 0, PCLIP_STATUS_BAD_FORMAT, 3,
     "a quoted field is never closed"},
    {"after.csv", "image,caption\na.jpg,\"x\"y\n", 0, PCLIP_STATUS_BAD_FORMAT, 2,
     "text after the closing quote of field 2"},
    {"after_multi.csv", "image,caption\na.jpg,\"x\ny\"z\n", 0, PCLIP_STATUS_BAD_FORMAT, 3,
     "text after the closing quote"},
    {"syntax.jsonl", "{\"image\": \"a\", \"caption\": \"x\"}\n{\"image\": \n", 0,
     PCLIP_STATUS_BAD_FORMAT, 2, "not valid JSON"},
    {"notobj.jsonl", "{\"image\": \"a\", \"caption\": \"x\"}\n\"str\"\n", 0,
     PCLIP_STATUS_BAD_FORMAT, 2, "not a JSON object"},
    {"nokey.jsonl", "\n{\"image\": \"a\"}\n", 0, PCLIP_STATUS_BAD_FORMAT, 2,
     "no key \"caption\""},
    {"notstr.ndjson", "{\"image\": \"a\", \"caption\": 5}\n", 0, PCLIP_STATUS_BAD_FORMAT, 1,
     "the value of \"caption\" is not a string"},
    {"null.jsonl", "{\"image\": null, \"caption\": \"x\"}\n", 0, PCLIP_STATUS_BAD_FORMAT, 1,
     "the value of \"image\" is not a string"},
    {"dup.jsonl", "{\"image\": \"a\", \"caption\": \"x\", \"image\": \"b\"}\n", 0,
     PCLIP_STATUS_BAD_FORMAT, 1, "duplicate key 'image'"},
    {"nulesc.jsonl", "{\"image\": \"a\", \"caption\": \"x\\u0000y\"}\n", 0,
     PCLIP_STATUS_BAD_FORMAT, 1, "\\u0000"},
    {"emptycap.jsonl", "{\"image\": \"a\", \"caption\": \" \"}\n", 0, PCLIP_STATUS_BAD_FORMAT, 1,
     "empty caption"},
    {"array.json", "[{\"image\": \"a\", \"caption\": \"x\"}]\n", 0, PCLIP_STATUS_BAD_FORMAT, 1,
     "a JSON array; the data must be JSON Lines"},
    {"blank.jsonl", "\n  \n", 0, PCLIP_STATUS_BAD_FORMAT, 0, "no records"},
};
#define N_BAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

START_TEST(test_bad_files) {
    const struct bad_case *c = &bad_cases[_i];
    char *dir = dup_tmpdir();
    char *p = write_file(dir, c->name, c->text, c->len ? c->len : strlen(c->text));
    read_fails(p, NULL, c->status, c->line, c->part);
    free(p);
    drop_tmpdir(dir);
}
END_TEST

/* A record over 1 MiB is refused (LIMIT); one just under it is read. */
START_TEST(test_long_records) {
    char *dir = dup_tmpdir();
    size_t big = PCLIP__DATA_LIMIT_RECORD_BYTES + 10;
    char *text = malloc(big + 64);
    int k = sprintf(text, "image,caption\na.jpg,");
    memset(text + k, 'w', big);
    strcpy(text + k + big, "\n");
    char *p = write_text(dir, "big.csv", text);
    read_fails(p, NULL, PCLIP_STATUS_LIMIT, 2, "a record longer than");
    free(p);
    /* the same inside quotes */
    k = sprintf(text, "image,caption\na.jpg,\"");
    memset(text + k, 'w', big);
    strcpy(text + k + big, "\"\n");
    p = write_text(dir, "bigq.csv", text);
    read_fails(p, NULL, PCLIP_STATUS_LIMIT, 2, "a record longer than");
    free(p);
    k = sprintf(text, "{\"image\": \"a\", \"caption\": \"");
    memset(text + k, 'w', big);
    strcpy(text + k + big, "\"}\n");
    p = write_text(dir, "big.jsonl", text);
    read_fails(p, NULL, PCLIP_STATUS_LIMIT, 1, "a line longer than");
    free(p);
    /* just under the limit */
    size_t ok = PCLIP__DATA_LIMIT_RECORD_BYTES - 100;
    k = sprintf(text, "image,caption\na.jpg,");
    memset(text + k, 'w', ok);
    strcpy(text + k + ok, "\nb.jpg,short\n");
    p = write_text(dir, "under.csv", text);
    pclip__dataset *ds = read_ok(p, NULL);
    ck_assert_int_eq(ds->n_pairs, 2);
    ck_assert_uint_eq(strlen(ds->pairs[0].caption), ok);
    ck_assert_int_eq(ds->pairs[1].line, 3);
    pclip__dataset_destroy(ds);
    free(p);
    free(text);
    drop_tmpdir(dir);
}
END_TEST

START_TEST(test_bad_arguments) {
    const char *path = data_fixture("pairs.csv");
    pclip__dataset *ds = NULL;
    pclip__dataset_options o = {.sep = ';'};
    ck_assert_status(ctx, pclip__dataset_read(ctx, path, &o, &ds), PCLIP_STATUS_INVALID_ARGUMENT);
    o = (pclip__dataset_options){.image_column = "x", .caption_column = "x"};
    ck_assert_status(ctx, pclip__dataset_read(ctx, path, &o, &ds), PCLIP_STATUS_INVALID_ARGUMENT);
    o = (pclip__dataset_options){.format = PCLIP__DATA_FORMAT_COUNT};
    ck_assert_status(ctx, pclip__dataset_read(ctx, path, &o, &ds), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip__dataset_read(ctx, NULL, NULL, &ds),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(ds);
    read_fails(data_fixture("no-such-file.csv"), NULL, PCLIP_STATUS_NOT_FOUND, 0, "cannot open");
    char *dir = dup_tmpdir();
    read_fails(dir, NULL, PCLIP_STATUS_IO, 0, "is a directory");
    drop_tmpdir(dir);
    pclip__dataset_destroy(NULL);
}
END_TEST

/* An allocation failure anywhere in a read is OUT_OF_MEMORY, never a crash
 * or a leak (the sanitizer build checks the leaks). */
START_TEST(test_read_alloc_failures) {
    const char *paths[] = {data_fixture("quoting.csv"), data_fixture("results.csv"),
                           data_fixture("pairs.jsonl")};
    pclip__dataset_options o[] = {{0}, {.image_column = "image_name", .caption_column = "comment"},
                                  {0}};
    for (int f = 0; f < 3; f++) {
        bool passed = false;
        for (long n = 1; n < 2000 && !passed; n++) {
            pclip__dataset *ds = NULL;
            pclip__alloc_fail_at(n);
            pclip_status st = pclip__dataset_read(ctx, paths[f], &o[f], &ds);
            bool failed_alloc = pclip__alloc_fail_pending() == 0;
            pclip__alloc_fail_at(0);
            if (st == PCLIP_STATUS_OK) {
                ck_assert_msg(!failed_alloc, "%s: allocation %ld failed yet the read passed",
                              paths[f], n);
                passed = true;
            } else {
                ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY, "%s: allocation %ld: %s (%s)",
                              paths[f], n, pclip_status_name(st), pclip_ctx_last_error(ctx));
                ck_assert_ptr_null(ds);
            }
            pclip__dataset_destroy(ds);
        }
        ck_assert_msg(passed, "%s: never passed", paths[f]);
    }
}
END_TEST

/* ---- features ---- */

static pclip_model_t load_tiny(void) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture("tiny-clip"), &m),
                     PCLIP_STATUS_OK);
    return m;
}

static pclip_backend_t cpu(void) {
    pclip_backend_t b;
    ck_assert_status(ctx, pclip_backend_create(ctx, "cpu", 0, &b), PCLIP_STATUS_OK);
    return b;
}

typedef struct progress_log {
    int calls;
    int64_t last_done[2], last_total[2];
    bool monotonic;
} progress_log;

static void on_progress(void *user, int64_t done, int64_t total, const char *what) {
    progress_log *p = user;
    int k = strcmp(what, "texts") == 0;
    ck_assert_msg(k || strcmp(what, "images") == 0, "progress phase '%s'", what);
    if (p->calls == 0) p->monotonic = true;
    if (done < p->last_done[k] || done > total) p->monotonic = false;
    p->last_done[k] = done;
    p->last_total[k] = total;
    p->calls++;
}

static pclip__features *features_ok(pclip_model_t m, pclip_backend_t b, const pclip__dataset *ds,
                                    const char *cache, progress_log *log) {
    pclip__features_options o = {.progress = on_progress, .user = log};
    pclip__features *f = NULL;
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, cache, &o, &f), PCLIP_STATUS_OK);
    ck_assert_ptr_nonnull(f);
    return f;
}

typedef struct rows_sink {
    float *dst;
    int32_t dim;
    int64_t rows;
} rows_sink;

static pclip_status collect_rows(void *user, int64_t first, int32_t count, int32_t dim,
                                 const float *rows) {
    rows_sink *s = user;
    ck_assert_int_eq(dim, s->dim);
    ck_assert_int_eq(first, s->rows);
    memcpy(s->dst + first * dim, rows, (size_t)count * dim * sizeof *rows);
    s->rows += count;
    return PCLIP_STATUS_OK;
}

static int json_index(const cJSON *arr, const char *s) {
    int i = 0;
    for (const cJSON *x = arr->child; x; x = x->next, i++)
        if (strcmp(x->valuestring, s) == 0) return i;
    return -1;
}

/* The pooled rows against the model's own pooled output (same device and
 * batch size: bit-exact) and against PyTorch's reference (<= 1e-5 per row). */
START_TEST(test_features_match_encoder) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    pclip__dataset *ds = read_ok(data_fixture("pairs.csv"), NULL);
    progress_log log = {0};
    pclip__features *f = features_ok(m, b, ds, NULL, &log);
    const pclip_config *c = pclip_model_config(m);
    ck_assert_int_eq(f->dv, c->vision.hidden_size);
    ck_assert_int_eq(f->dt, c->text.hidden_size);
    ck_assert_int_eq(f->n_images, 5);
    ck_assert_int_eq(f->n_pairs, 6);
    ck_assert_int_eq(f->n_skipped, 0);
    ck_assert_int_eq(f->cache_hit, 0);
    ck_assert_int_eq(f->cache_written, 0);
    ck_assert_ptr_null(f->cache_path);
    ck_assert(log.monotonic);
    ck_assert_int_eq(log.last_done[0], 5);
    ck_assert_int_eq(log.last_total[0], 5);
    ck_assert_int_eq(log.last_done[1], 6);
    ck_assert_int_eq(log.last_total[1], 6);
    for (int64_t p = 0; p < 6; p++) {
        ck_assert_int_eq(f->pair_source[p], p);
        ck_assert_int_eq(f->pair_text[p], p);
        ck_assert_int_eq(f->pair_image[p], ds->pairs[p].image);
    }
    for (int64_t i = 0; i < 5; i++) {
        ck_assert_int_eq(f->image_source[i], i);
        ck_assert_int_eq(f->image_row[i], i);
    }

    /* the model's own pooled output */
    float *want = malloc((size_t)6 * f->dt * sizeof(float));
    float *img = malloc((size_t)5 * f->dv * sizeof(float));
    rows_sink sink = {img, f->dv, 0};
    pclip_embed_options eo = {.flags = PCLIP_ENCODE_POOLED};
    ck_assert_status(ctx,
                     pclip_embed_image_files(m, b, (const char *const *)ds->images, 5, &eo,
                                             collect_rows, &sink),
                     PCLIP_STATUS_OK);
    ck_assert_int_eq(sink.rows, 5);
    ck_assert_msg(memcmp(img, f->image_feats, (size_t)5 * f->dv * sizeof(float)) == 0,
                  "image features differ from the encoder's pooled output");
    int32_t n_ctx = c->text.max_position_embeddings;
    int32_t *ids = malloc((size_t)6 * n_ctx * sizeof *ids);
    for (int p = 0; p < 6; p++)
        ck_assert_status(ctx,
                         pclip_tokenizer_encode(pclip_model_tokenizer(m), ds->pairs[p].caption,
                                                strlen(ds->pairs[p].caption), ids + p * n_ctx,
                                                n_ctx, NULL),
                         PCLIP_STATUS_OK);
    ck_assert_status(ctx,
                     pclip_model_encode_text_batched(m, b, ids, 6, 32, PCLIP_ENCODE_POOLED, want),
                     PCLIP_STATUS_OK);
    ck_assert_msg(memcmp(want, f->text_feats, (size_t)6 * f->dt * sizeof(float)) == 0,
                  "text features differ from the encoder's pooled output");
    free(img);

    /* against PyTorch */
    cJSON *ref = pclip_test_load_json("tiny-clip/reference/reference.json");
    pclip_test_npy tp, ip;
    pclip_test_npy_read(pclip_test_fixture("tiny-clip/reference/text_pooled.npy"), &tp);
    pclip_test_npy_read(pclip_test_fixture("tiny-clip/reference/image_pooled.npy"), &ip);
    ck_assert_int_eq(tp.shape[1], f->dt);
    ck_assert_int_eq(ip.shape[1], f->dv);
    for (int64_t p = 0; p < f->n_pairs; p++) {
        int r = json_index(cJSON_GetObjectItem(ref, "captions"), ds->pairs[p].caption);
        ck_assert_msg(r >= 0, "caption '%s' not in the reference", ds->pairs[p].caption);
        double e = pclip_test_row_error(f->text_feats + p * f->dt, tp.data + (size_t)r * f->dt, 1,
                                        f->dt, NULL);
        ck_assert_msg(e <= ROW_REL_TOL, "text '%s': relative error %g > %g", ds->pairs[p].caption,
                      e, ROW_REL_TOL);
    }
    for (int64_t i = 0; i < f->n_images; i++) {
        const char *name = strrchr(ds->images[f->image_source[i]], '/') + 1;
        int r = json_index(cJSON_GetObjectItem(ref, "images"), name);
        ck_assert_msg(r >= 0, "image '%s' not in the reference", name);
        double e = pclip_test_row_error(f->image_feats + i * f->dv, ip.data + (size_t)r * f->dv,
                                        1, f->dv, NULL);
        ck_assert_msg(e <= ROW_REL_TOL, "image '%s': relative error %g > %g", name, e,
                      ROW_REL_TOL);
    }
    pclip_test_npy_free(&tp);
    pclip_test_npy_free(&ip);
    cJSON_Delete(ref);
    free(ids);
    free(want);
    pclip__features_destroy(f);
    pclip__dataset_destroy(ds);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

/* Every array and the skipped list of a and b are equal (bit for bit). */
static void expect_same(const pclip__features *a, const pclip__features *b) {
    ck_assert_str_eq(a->key, b->key);
    ck_assert_int_eq(a->dv, b->dv);
    ck_assert_int_eq(a->dt, b->dt);
    ck_assert_int_eq(a->n_images, b->n_images);
    ck_assert_int_eq(a->n_pairs, b->n_pairs);
    ck_assert_int_eq(a->n_dataset_images, b->n_dataset_images);
    ck_assert(memcmp(a->image_feats, b->image_feats, (size_t)a->n_images * a->dv * 4) == 0);
    ck_assert(memcmp(a->text_feats, b->text_feats, (size_t)a->n_pairs * a->dt * 4) == 0);
    ck_assert(memcmp(a->pair_image, b->pair_image, (size_t)a->n_pairs * 8) == 0);
    ck_assert(memcmp(a->pair_text, b->pair_text, (size_t)a->n_pairs * 8) == 0);
    ck_assert(memcmp(a->pair_source, b->pair_source, (size_t)a->n_pairs * 8) == 0);
    ck_assert(memcmp(a->image_source, b->image_source, (size_t)a->n_images * 8) == 0);
    ck_assert(memcmp(a->image_row, b->image_row, (size_t)a->n_dataset_images * 8) == 0);
    ck_assert_int_eq(a->n_skipped, b->n_skipped);
    for (int64_t k = 0; k < a->n_skipped; k++) {
        ck_assert_int_eq(a->skipped[k].image, b->skipped[k].image);
        ck_assert_int_eq(a->skipped[k].line, b->skipped[k].line);
        ck_assert_int_eq(a->skipped[k].pairs, b->skipped[k].pairs);
        ck_assert_str_eq(a->skipped[k].path, b->skipped[k].path);
        ck_assert_str_eq(a->skipped[k].message, b->skipped[k].message);
    }
}

static void expect_hit(pclip_model_t m, pclip_backend_t b, const pclip__dataset *ds,
                       const char *cache, const pclip__features *want) {
    progress_log log = {0};
    pclip__features *f = features_ok(m, b, ds, cache, &log);
    ck_assert_msg(f->cache_hit == 1, "no cache hit; note: %s", f->cache_note);
    ck_assert_int_eq(f->cache_written, 0);
    ck_assert_int_eq(log.calls, 0); /* the encoders did not run */
    ck_assert_str_eq(f->cache_note, "");
    ck_assert_str_eq(f->cache_path, want->cache_path);
    expect_same(f, want);
    pclip__features_destroy(f);
}

/* Rebuilt from a damaged cache file: the same features, the note saying why. */
static void expect_rebuilt(pclip_model_t m, pclip_backend_t b, const pclip__dataset *ds,
                           const char *cache, const pclip__features *want, const char *why) {
    progress_log log = {0};
    pclip__features *f = features_ok(m, b, ds, cache, &log);
    ck_assert_int_eq(f->cache_hit, 0);
    ck_assert_msg(f->cache_written == 1, "not written: %s", f->cache_note);
    ck_assert_int_gt(log.calls, 0);
    ck_assert_msg(strstr(f->cache_note, why) && strstr(f->cache_note, "rebuilt"),
                  "note '%s' does not say '%s'", f->cache_note, why);
    expect_same(f, want);
    pclip__features_destroy(f);
    expect_hit(m, b, ds, cache, want);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *data = pclip_test_read_file(from, &n);
    FILE *f = fopen(to, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    free(data);
}

/* Flips one bit of byte `off` of the file (from its end when off < 0). */
static void flip(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, off, off < 0 ? SEEK_END : SEEK_SET), 0);
    long at = ftell(f);
    int c = fgetc(f);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(f, at, SEEK_SET), 0);
    fputc(c ^ 0x10, f);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_features_cache) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    pclip__dataset *ds = read_ok(data_fixture("pairs.csv"), NULL);
    char *tmp = dup_tmpdir();
    char cache[600];
    snprintf(cache, sizeof cache, "%s/out/features", tmp); /* made with its parent */
    progress_log log = {0};
    pclip__features *f = features_ok(m, b, ds, cache, &log);
    ck_assert_int_eq(f->cache_hit, 0);
    ck_assert_int_eq(f->cache_written, 1);
    ck_assert_str_eq(f->cache_note, "");
    ck_assert_uint_eq(strlen(f->key), 32);
    char want_path[700];
    snprintf(want_path, sizeof want_path, "%s/features-%s.bin", cache, f->key);
    ck_assert_str_eq(f->cache_path, want_path);
    ck_assert_int_gt(log.calls, 0);
    /* the file: its header, then exactly the sections */
    struct stat st;
    ck_assert_int_eq(stat(f->cache_path, &st), 0);
    ck_assert_int_eq(st.st_size, PCLIP__FEATURES_HEADER + 5 * 8 + 0 + (5 * f->dv + 6 * f->dt) * 4);
    /* no temp file left beside it */
    char listing[1024];
    snprintf(listing, sizeof listing, "ls -A '%s' | wc -l", cache);
    char *out = NULL;
    ck_assert_int_eq(pclip_test_sh(listing, &out, NULL), 0);
    ck_assert_int_eq(atoi(out), 1);
    free(out);

    expect_hit(m, b, ds, cache, f);

    flip(f->cache_path, -1); /* the last float */
    expect_rebuilt(m, b, ds, cache, f, "contents are corrupt (checksum)");
    flip(f->cache_path, 56); /* n_pairs in the header */
    expect_rebuilt(m, b, ds, cache, f, "its header is corrupt");
    ck_assert_int_eq(truncate(f->cache_path, st.st_size - 4), 0);
    expect_rebuilt(m, b, ds, cache, f, "sizes do not add up");
    free(write_file(cache, strrchr(f->cache_path, '/') + 1, "PCLIPFTC", 8));
    expect_rebuilt(m, b, ds, cache, f, "shorter than its header");
    char junk[300];
    memset(junk, 'x', sizeof junk);
    free(write_file(cache, strrchr(f->cache_path, '/') + 1, junk, sizeof junk));
    expect_rebuilt(m, b, ds, cache, f, "not a feature cache");

    /* another dataset's cache under this name */
    pclip__dataset *other = read_ok(data_fixture("pairs.tsv"), NULL);
    progress_log log2 = {0};
    pclip__features *g = features_ok(m, b, other, cache, &log2);
    ck_assert_str_ne(g->key, f->key);
    ck_assert_str_ne(g->cache_path, f->cache_path);
    copy_file(g->cache_path, f->cache_path);
    expect_rebuilt(m, b, ds, cache, f, "made for other data or another model");
    expect_hit(m, b, other, cache, g); /* its own file is untouched */

    /* a cache file that cannot be written: the features still come */
    ck_assert_int_eq(unlink(f->cache_path), 0);
    ck_assert_int_eq(mkdir(f->cache_path, 0777), 0);
    progress_log log3 = {0};
    pclip__features *h = features_ok(m, b, ds, cache, &log3);
    ck_assert_int_eq(h->cache_hit, 0);
    ck_assert_int_eq(h->cache_written, 0);
    ck_assert_msg(strstr(h->cache_note, "not cached"), "note: %s", h->cache_note);
    expect_same(h, f);
    pclip__features_destroy(h);

    /* a cache folder that cannot be made is an error, before any work */
    char bad[700];
    char *file = write_text(tmp, "plain", "x");
    snprintf(bad, sizeof bad, "%s/sub", file);
    pclip__features *none = NULL;
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, bad, NULL, &none), PCLIP_STATUS_IO);
    ck_assert_ptr_null(none);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), file));
    free(file);

    pclip__features_destroy(g);
    pclip__dataset_destroy(other);
    pclip__features_destroy(f);
    pclip__dataset_destroy(ds);
    drop_tmpdir(tmp);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

/* The key follows the images' size and time and the captions. */
START_TEST(test_features_key) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    char *tmp = dup_tmpdir();
    char a[600], cache[600];
    snprintf(a, sizeof a, "%s/a.jpg", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    copy_file(pclip_test_fixture("images/j_rgb444_64x48.jpg"), a);
    char pb[600];
    snprintf(pb, sizeof pb, "%s/b.png", tmp);
    copy_file(pclip_test_fixture("images/p_32x32.png"), pb);
    char *data = write_text(tmp, "k.csv", "image,caption\na.jpg,a photo of a cat\nb.png,x\n");
    pclip__dataset *ds = read_ok(data, NULL);
    progress_log log = {0};
    pclip__features *f1 = features_ok(m, b, ds, cache, &log);
    ck_assert_int_eq(f1->cache_written, 1);
    expect_hit(m, b, ds, cache, f1);
    /* the same files through another relative path: the same key */
    ck_assert_int_eq(chdir(tmp), 0); /* Check forks each test */
    ck_assert_int_eq(mkdir("w", 0777), 0);
    ck_assert_int_eq(chdir("w"), 0);
    pclip__dataset *rel = read_ok("../k.csv", NULL);
    ck_assert_str_eq(rel->images[0], "../a.jpg");
    pclip__features *fr = features_ok(m, b, rel, cache, &log);
    ck_assert_int_eq(fr->cache_hit, 1);
    ck_assert_str_eq(fr->key, f1->key);
    pclip__features_destroy(fr);
    pclip__dataset_destroy(rel);
    /* the image's time moves: another key */
    struct timespec ts[2] = {{1000000000, 5}, {1000000000, 5}};
    ck_assert_int_eq(utimensat(AT_FDCWD, a, ts, 0), 0);
    pclip__features *f2 = features_ok(m, b, ds, cache, &log);
    ck_assert_str_ne(f2->key, f1->key);
    ck_assert_int_eq(f2->cache_hit, 0);
    ck_assert_int_eq(f2->cache_written, 1);
    ck_assert(memcmp(f1->image_feats, f2->image_feats, (size_t)2 * f1->dv * 4) == 0);
    /* one nanosecond later: another key again */
    ts[0].tv_nsec = ts[1].tv_nsec = 6;
    ck_assert_int_eq(utimensat(AT_FDCWD, a, ts, 0), 0);
    pclip__features *f3 = features_ok(m, b, ds, cache, &log);
    ck_assert_str_ne(f3->key, f2->key);
    /* a caption changes */
    pclip__dataset_destroy(ds);
    free(write_text(tmp, "k.csv", "image,caption\na.jpg,a photo of a dog\nb.png,x\n"));
    ds = read_ok(data, NULL);
    pclip__features *f4 = features_ok(m, b, ds, cache, &log);
    ck_assert_str_ne(f4->key, f3->key);
    ck_assert_int_eq(f4->cache_hit, 0);
    ck_assert(memcmp(f3->image_feats, f4->image_feats, (size_t)2 * f1->dv * 4) == 0);
    ck_assert(memcmp(f3->text_feats + f3->dt, f4->text_feats + f4->dt, (size_t)f1->dt * 4) == 0);
    ck_assert(memcmp(f3->text_feats, f4->text_feats, (size_t)f1->dt * 4) != 0);
    /* the preprocessing mode is part of the key */
    pclip__features_options o = {.preprocess = PCLIP_PREPROCESS_HF};
    pclip__features *f5 = NULL;
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, cache, &o, &f5), PCLIP_STATUS_OK);
    ck_assert_str_ne(f5->key, f4->key);
    pclip__features_destroy(f5);
    pclip__features_destroy(f1);
    pclip__features_destroy(f2);
    pclip__features_destroy(f3);
    pclip__features_destroy(f4);
    pclip__dataset_destroy(ds);
    free(data);
    drop_tmpdir(tmp);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

/* The data of test_features_skipped in dir: two good images, a missing one
 * and one that is not an image, each used twice. */
static char *write_skip_data(const char *dir) {
    char text[4096];
    char good1[512], good2[512], garbage[512];
    snprintf(good1, sizeof good1, "%s", pclip_test_fixture("images/j_rgb444_64x48.jpg"));
    snprintf(good2, sizeof good2, "%s", pclip_test_fixture("images/p_32x32.png"));
    snprintf(garbage, sizeof garbage, "%s", pclip_test_fixture("bad/garbage.jpg"));
    snprintf(text, sizeof text,
             "image,caption\n%s,a photo of a cat\nmissing.jpg,lost one\n%s,garbage\n%s,x\n"
             "missing.jpg,lost two\n%s,garbage again\n%s,it's\n",
             good1, garbage, good2, garbage, good1);
    return write_text(dir, "s.csv", text);
}

START_TEST(test_features_skipped) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    char *tmp = dup_tmpdir();
    char *data = write_skip_data(tmp);
    pclip__dataset *ds = read_ok(data, NULL);
    ck_assert_int_eq(ds->n_images, 4);
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    progress_log log = {0};
    pclip__features *f = features_ok(m, b, ds, cache, &log);
    ck_assert_int_eq(f->n_images, 2);
    ck_assert_int_eq(f->n_pairs, 3);
    ck_assert_int_eq(f->cache_written, 1);
    const int64_t rows[] = {0, -1, -1, 1}, sources[] = {0, 3, 6}, pair_img[] = {0, 1, 0};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(f->image_row[i], rows[i]);
    for (int p = 0; p < 3; p++) {
        ck_assert_int_eq(f->pair_source[p], sources[p]);
        ck_assert_int_eq(f->pair_image[p], pair_img[p]);
    }
    ck_assert_int_eq(f->n_skipped, 2);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.jpg", tmp);
    ck_assert_int_eq(f->skipped[0].image, 1);
    ck_assert_str_eq(f->skipped[0].path, missing);
    ck_assert_int_eq(f->skipped[0].line, 3);
    ck_assert_int_eq(f->skipped[0].pairs, 2);
    ck_assert_ptr_nonnull(strstr(f->skipped[0].message, missing));
    ck_assert_ptr_nonnull(strstr(f->skipped[0].message, "No such file"));
    ck_assert_int_eq(f->skipped[1].image, 2);
    ck_assert_int_eq(f->skipped[1].line, 4);
    ck_assert_int_eq(f->skipped[1].pairs, 2);
    ck_assert_ptr_nonnull(strstr(f->skipped[1].message, "garbage.jpg"));
    /* progress counted the bad image among the done ones */
    ck_assert_int_eq(log.last_done[0], 3);
    ck_assert_int_eq(log.last_total[0], 3);
    ck_assert_int_eq(log.last_done[1], 3);

    /* the kept rows are the reference's */
    cJSON *ref = pclip_test_load_json("tiny-clip/reference/reference.json");
    pclip_test_npy tp, ip;
    pclip_test_npy_read(pclip_test_fixture("tiny-clip/reference/text_pooled.npy"), &tp);
    pclip_test_npy_read(pclip_test_fixture("tiny-clip/reference/image_pooled.npy"), &ip);
    for (int64_t p = 0; p < f->n_pairs; p++) {
        const char *cap = ds->pairs[f->pair_source[p]].caption;
        int r = json_index(cJSON_GetObjectItem(ref, "captions"), cap);
        ck_assert_int_ge(r, 0);
        ck_assert(pclip_test_row_error(f->text_feats + p * f->dt, tp.data + (size_t)r * f->dt, 1,
                                       f->dt, NULL) <= ROW_REL_TOL);
    }
    for (int64_t i = 0; i < f->n_images; i++) {
        const char *name = strrchr(ds->images[f->image_source[i]], '/') + 1;
        int r = json_index(cJSON_GetObjectItem(ref, "images"), name);
        ck_assert_int_ge(r, 0);
        ck_assert(pclip_test_row_error(f->image_feats + i * f->dv, ip.data + (size_t)r * f->dv, 1,
                                       f->dv, NULL) <= ROW_REL_TOL);
    }
    pclip_test_npy_free(&tp);
    pclip_test_npy_free(&ip);
    cJSON_Delete(ref);

    /* a hit gives the same skipped list, from the file */
    expect_hit(m, b, ds, cache, f);

    /* strict: the first bad file fails the call, named */
    pclip__features_options o = {.strict = 1};
    pclip__features *none = NULL;
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, NULL, &o, &none),
                     PCLIP_STATUS_NOT_FOUND);
    ck_assert_ptr_null(none);
    const char *msg = pclip_ctx_last_error(ctx);
    ck_assert_msg(strstr(msg, missing) && strstr(msg, "line 3"), "message: %s", msg);
    /* strict with only the undecodable image */
    char text[2048];
    snprintf(text, sizeof text, "image,caption\n%s,a\n%s,b\n",
             pclip_test_fixture("images/p_32x32.png"), pclip_test_fixture("bad/garbage.jpg"));
    char *data2 = write_text(tmp, "g.csv", text);
    pclip__dataset *ds2 = read_ok(data2, NULL);
    pclip_status st = pclip__features_compute(m, b, ds2, NULL, &o, &none);
    ck_assert_int_ne(st, PCLIP_STATUS_OK);
    ck_assert_ptr_null(none);
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), "garbage.jpg"), "message: %s",
                  pclip_ctx_last_error(ctx));
    pclip__dataset_destroy(ds2);
    free(data2);

    pclip__features_destroy(f);
    pclip__dataset_destroy(ds);
    free(data);
    drop_tmpdir(tmp);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

/* No image readable: an error, naming the data file and the first reason. */
START_TEST(test_features_none_readable) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    char *tmp = dup_tmpdir();
    char sub[600];
    snprintf(sub, sizeof sub, "%s/folder", tmp);
    ck_assert_int_eq(mkdir(sub, 0777), 0);
    char text[2048];
    snprintf(text, sizeof text, "image,caption\nfolder,a\nnope.png,b\n%s,c\n",
             pclip_test_fixture("bad/truncated.png"));
    char *data = write_text(tmp, "n.csv", text);
    pclip__dataset *ds = read_ok(data, NULL);
    pclip__features *none = NULL;
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, NULL, NULL, &none), PCLIP_STATUS_IO);
    ck_assert_ptr_null(none);
    const char *msg = pclip_ctx_last_error(ctx);
    ck_assert_msg(strstr(msg, data) && strstr(msg, "none of its 3 images") &&
                      strstr(msg, "not a regular file"),
                  "message: %s", msg);
    pclip__dataset_destroy(ds);
    free(data);
    drop_tmpdir(tmp);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

START_TEST(test_features_bad_arguments) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    pclip__dataset *ds = read_ok(data_fixture("pairs.csv"), NULL);
    pclip__features *f = NULL;
    ck_assert_status(ctx, pclip__features_compute(m, NULL, ds, NULL, NULL, &f),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip__features_compute(m, b, NULL, NULL, NULL, &f),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, "", NULL, &f),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    pclip__features_options o = {.batch_size = -1};
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, NULL, &o, &f),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    o = (pclip__features_options){.preprocess = PCLIP_PREPROCESS_COUNT};
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, NULL, &o, &f),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(f);
    /* a model without weights */
    pclip_model_t tok;
    ck_assert_status(ctx,
                     pclip_model_load_parts(ctx, pclip_test_fixture("tiny-clip"),
                                            PCLIP_MODEL_PART_TOKENIZER, &tok),
                     PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip__features_compute(tok, b, ds, NULL, NULL, &f),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "without its weights"));
    pclip_model_destroy(tok);
    pclip__features_destroy(NULL);
    pclip__dataset_destroy(ds);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

/* Batch sizes that split the data differently give the same rows up to the
 * kernels' rounding, and a batch of 1 the same progress end. */
START_TEST(test_features_batch_sizes) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    pclip__dataset *ds = read_ok(data_fixture("pairs.csv"), NULL);
    progress_log log = {0};
    pclip__features *f = features_ok(m, b, ds, NULL, &log);
    for (int32_t bs = 1; bs <= 4; bs += 3) {
        progress_log l2 = {0};
        pclip__features_options o = {.batch_size = bs, .progress = on_progress, .user = &l2};
        pclip__features *g = NULL;
        ck_assert_status(ctx, pclip__features_compute(m, b, ds, NULL, &o, &g), PCLIP_STATUS_OK);
        ck_assert(l2.monotonic);
        ck_assert_int_eq(l2.last_done[1], 6);
        ck_assert(pclip_test_row_error(g->image_feats, f->image_feats, g->n_images, g->dv, NULL) <=
                  1e-6);
        ck_assert(pclip_test_row_error(g->text_feats, f->text_feats, g->n_pairs, g->dt, NULL) <=
                  1e-6);
        ck_assert_str_eq(g->key, f->key); /* the batch size is not part of the key */
        pclip__features_destroy(g);
    }
    pclip__features_destroy(f);
    pclip__dataset_destroy(ds);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

/* Allocation N fails, for N = 1, 2, ... through a computation that writes
 * the cache (bad images among the good) and through a cache hit: each
 * failure is a clean OUT_OF_MEMORY with a message and no result; the first
 * run that meets no failure gives the clean run's features. No leak
 * (LeakSanitizer in the sanitizer build) and no crash. */
START_TEST(test_features_alloc_failures) {
    pclip_model_t m = load_tiny();
    pclip_backend_t b = cpu();
    char *tmp = dup_tmpdir();
    char *data = write_skip_data(tmp);
    pclip__dataset *ds = read_ok(data, NULL);
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    pclip__features_options o = {.threads = 1};
    pclip__features *clean = NULL;
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, cache, &o, &clean), PCLIP_STATUS_OK);
    /* The last allocation of a computation is the folder name in
     * pclip__atomic_commit (io/fileio.c), for syncing the folder after the
     * rename; fileio.c leaves that sync out when it cannot have it (the file
     * is complete and renamed): the one failure a call may swallow. */
    ck_assert_int_eq(unlink(clean->cache_path), 0);
    pclip__features *count = NULL;
    pclip__alloc_fail_at(LONG_MAX);
    ck_assert_status(ctx, pclip__features_compute(m, b, ds, cache, &o, &count), PCLIP_STATUS_OK);
    long last_alloc = LONG_MAX - pclip__alloc_fail_pending();
    pclip__alloc_fail_at(0);
    pclip__features_destroy(count);
    for (int hit = 0; hit < 2; hit++) {
        long n, failures = 0;
        for (n = 1; n < 100000; n++) {
            if (!hit) unlink(clean->cache_path);
            pclip__features *f = NULL;
            pclip__alloc_fail_at(n);
            pclip_status st = pclip__features_compute(m, b, ds, cache, &o, &f);
            bool fired = pclip__alloc_fail_pending() == 0;
            pclip__alloc_fail_at(0);
            if (st == PCLIP_STATUS_OK && !hit && n == last_alloc && fired) {
                pclip__features_destroy(f); /* the folder sync left out, as said above */
                continue;
            }
            if (st == PCLIP_STATUS_OK) {
                ck_assert_msg(!fired, "allocation %ld failed, yet the call returned OK", n);
                ck_assert_int_eq(f->cache_hit, hit);
                ck_assert_int_eq(f->cache_written, !hit);
                expect_same(f, clean);
                pclip__features_destroy(f);
                break;
            }
            failures++;
            ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY, "%s, allocation %ld: %s (%s)",
                          hit ? "hit" : "miss", n, pclip_status_name(st),
                          pclip_ctx_last_error(ctx));
            ck_assert_msg(pclip_ctx_last_error(ctx)[0], "allocation %ld: no message", n);
            ck_assert_ptr_null(f);
        }
        ck_assert_int_lt(n, 100000);
        ck_assert_int_gt(failures, 10);
    }
    pclip__features_destroy(clean);
    pclip__dataset_destroy(ds);
    free(data);
    drop_tmpdir(tmp);
    pclip_backend_destroy(b);
    pclip_model_destroy(m);
}
END_TEST

/* ---- the split ---- */

/* 100 images with 3 captions each, the pairs interleaved */
static pclip__features *fake_features(int64_t images, int64_t per) {
    pclip__features *f = calloc(1, sizeof *f);
    f->n_images = images;
    f->n_pairs = images * per;
    f->pair_image = malloc((size_t)(f->n_pairs ? f->n_pairs : 1) * sizeof(int64_t));
    for (int64_t p = 0; p < f->n_pairs; p++) f->pair_image[p] = (p * 7) % images;
    return f;
}

static void fake_destroy(pclip__features *f) {
    free(f->pair_image);
    free(f);
}

static void check_split(const pclip__features *f, const pclip__split *s, int64_t want_val_images) {
    ck_assert_int_eq(s->n_val_images, want_val_images);
    ck_assert_int_eq(s->n_train + s->n_val, f->n_pairs);
    char *side = calloc((size_t)f->n_images, 1); /* 1 train, 2 val */
    char *seen = calloc((size_t)f->n_pairs, 1);
    for (int k = 0; k < 2; k++) {
        const int64_t *list = k ? s->val : s->train;
        int64_t n = k ? s->n_val : s->n_train;
        for (int64_t i = 0; i < n; i++) {
            int64_t p = list[i];
            ck_assert(p >= 0 && p < f->n_pairs);
            if (i) ck_assert_int_gt(p, list[i - 1]);
            ck_assert(!seen[p]);
            seen[p] = 1;
            char want = (char)(k + 1);
            char *sd = &side[f->pair_image[p]];
            ck_assert_msg(*sd == 0 || *sd == want, "image %lld has captions on both sides",
                          (long long)f->pair_image[p]);
            *sd = want;
        }
    }
    int64_t val_images = 0;
    for (int64_t i = 0; i < f->n_images; i++) val_images += side[i] == 2;
    ck_assert_int_eq(val_images, want_val_images);
    free(side);
    free(seen);
}

START_TEST(test_split) {
    pclip__features *f = fake_features(100, 3);
    pclip__split *a = NULL, *b = NULL;
    ck_assert_status(ctx, pclip__features_split(ctx, f, 0.1, 42, &a), PCLIP_STATUS_OK);
    check_split(f, a, 10);
    ck_assert_int_eq(a->n_val, 30);
    ck_assert_status(ctx, pclip__features_split(ctx, f, 0.1, 42, &b), PCLIP_STATUS_OK);
    ck_assert(memcmp(a->val, b->val, (size_t)a->n_val * 8) == 0);
    ck_assert(memcmp(a->train, b->train, (size_t)a->n_train * 8) == 0);
    pclip__split_destroy(b);
    /* other seeds, other splits */
    int differ = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        ck_assert_status(ctx, pclip__features_split(ctx, f, 0.1, seed, &b), PCLIP_STATUS_OK);
        check_split(f, b, 10);
        differ += memcmp(a->val, b->val, (size_t)a->n_val * 8) != 0;
        pclip__split_destroy(b);
    }
    ck_assert_int_ge(differ, 3);
    pclip__split_destroy(a);
    /* fractions at the edges */
    const struct {
        double frac;
        int64_t images;
    } edges[] = {{0.0, 0}, {0.001, 1}, {0.25, 25}, {0.999, 99}, {0.126, 13}};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
        ck_assert_status(ctx, pclip__features_split(ctx, f, edges[k].frac, 7, &a),
                         PCLIP_STATUS_OK);
        check_split(f, a, edges[k].images);
        pclip__split_destroy(a);
    }
    ck_assert_status(ctx, pclip__features_split(ctx, f, 0.0, 7, &a), PCLIP_STATUS_OK);
    ck_assert_int_eq(a->n_train, 300);
    for (int64_t p = 0; p < 300; p++) ck_assert_int_eq(a->train[p], p);
    pclip__split_destroy(a);
    /* bad fractions; one image cannot be split */
    a = NULL;
    const double bad[] = {1.0, -0.1, NAN, 2.0};
    for (size_t k = 0; k < 4; k++)
        ck_assert_status(ctx, pclip__features_split(ctx, f, bad[k], 1, &a),
                         PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(a);
    pclip__features *one = fake_features(1, 4);
    ck_assert_status(ctx, pclip__features_split(ctx, one, 0.2, 1, &a),
                     PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(pclip_ctx_last_error(ctx), "at least 2 images"));
    ck_assert_status(ctx, pclip__features_split(ctx, one, 0.0, 1, &a), PCLIP_STATUS_OK);
    ck_assert_int_eq(a->n_train, 4);
    pclip__split_destroy(a);
    fake_destroy(one);
    fake_destroy(f);
    pclip__split_destroy(NULL);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_data");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_csv_quoting);
    tcase_add_test(core, test_csv_crlf_bom);
    tcase_add_test(core, test_tsv);
    tcase_add_test(core, test_pipe_flickr);
    tcase_add_test(core, test_jsonl);
    tcase_add_test(core, test_sniffing);
    tcase_add_test(core, test_paths);
    tcase_add_test(core, test_skip_bad_rows);
    tcase_add_test(core, test_features_match_encoder);
    tcase_add_test(core, test_features_cache);
    tcase_add_test(core, test_features_key);
    tcase_add_test(core, test_features_skipped);
    tcase_add_test(core, test_features_batch_sizes);
    tcase_add_test(core, test_split);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_add_loop_test(limits, test_bad_files, 0, N_BAD);
    tcase_add_test(limits, test_long_records);
    tcase_add_test(limits, test_bad_arguments);
    tcase_add_test(limits, test_read_alloc_failures);
    tcase_add_test(limits, test_features_none_readable);
    tcase_add_test(limits, test_features_bad_arguments);
    tcase_add_test(limits, test_features_alloc_failures);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
