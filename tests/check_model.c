/* Checkpoint files: config.json, preprocessor_config.json, safetensors
 * headers (strict checks), sharded indexes and whole model directories,
 * including every malformed case the loader must refuse with a message that
 * names the file and the tensor. Checkpoints for the error cases are written
 * here by a small safetensors writer, so each case changes one thing. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "io/safetensors.h"
#include "testutil.h"

static pclip_ctx_t ctx;

static void setup(void) { ck_assert_int_eq(pclip_ctx_create(&ctx), PCLIP_STATUS_OK); }
static void teardown(void) { pclip_ctx_destroy(ctx); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static const char *join(const char *dir, const char *name) {
    static char bufs[4][1024];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

#define ck_assert_err_has(needle)                                                           \
    ck_assert_msg(strstr(pclip_ctx_last_error(ctx), needle) != NULL,                       \
                  "message '%s' lacks '%s'", pclip_ctx_last_error(ctx), needle)

/* ---- a minimal safetensors writer ---- */

typedef struct st_entry {
    char name[160];
    const char *dtype;
    int ndim;
    int64_t shape[4];
} st_entry;

typedef struct st_list {
    st_entry *e;
    size_t n;
} st_list;

static size_t dtype_bytes(const char *dtype) {
    if (strcmp(dtype, "F32") == 0 || strcmp(dtype, "I32") == 0) return 4;
    if (strcmp(dtype, "I64") == 0) return 8;
    return 2;
}

/* Writes the entries contiguously, header padded to 8 bytes; values are a
 * ramp so F32/F16/BF16 conversions can be checked. */
static void st_write(const char *path, const st_list *l) {
    char *hdr = malloc(1 << 20);
    size_t h = 0, off = 0;
    h += (size_t)sprintf(hdr + h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < l->n; i++) {
        const st_entry *e = &l->e[i];
        size_t count = 1;
        h += (size_t)sprintf(hdr + h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e->name, e->dtype);
        for (int d = 0; d < e->ndim; d++) {
            h += (size_t)sprintf(hdr + h, d ? ",%lld" : "%lld", (long long)e->shape[d]);
            count *= (size_t)e->shape[d];
        }
        size_t nb = count * dtype_bytes(e->dtype);
        h += (size_t)sprintf(hdr + h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    hdr[h++] = '}';
    while (h % 8) hdr[h++] = ' ';
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t hl = h;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hl >> (8 * i));
    fwrite(lenb, 1, 8, f);
    fwrite(hdr, 1, h, f);
    for (size_t i = 0; i < l->n; i++) {
        const st_entry *e = &l->e[i];
        size_t count = 1;
        for (int d = 0; d < e->ndim; d++) count *= (size_t)e->shape[d];
        size_t sz = dtype_bytes(e->dtype);
        for (size_t k = 0; k < count; k++) {
            unsigned char b[8] = {0};
            float v = (float)(k % 7) * 0.5f - 1.0f;
            uint32_t bits;
            memcpy(&bits, &v, 4);
            if (strcmp(e->dtype, "F32") == 0) memcpy(b, &v, 4);
            else if (strcmp(e->dtype, "BF16") == 0) b[0] = (unsigned char)(bits >> 16), b[1] = (unsigned char)(bits >> 24);
            else if (strcmp(e->dtype, "F16") == 0) {
                /* the ramp's values are exact in half precision */
                uint32_t sign = bits >> 31, exp = (bits >> 23) & 0xFF, man = bits & 0x7FFFFF;
                uint16_t hv = v == 0 ? 0 : (uint16_t)((sign << 15) | ((exp - 112) << 10) | (man >> 13));
                b[0] = (unsigned char)hv, b[1] = (unsigned char)(hv >> 8);
            } else b[0] = (unsigned char)k;
            fwrite(b, 1, sz, f);
        }
    }
    fclose(f);
    free(hdr);
}

static int collect(const char *name, const int64_t *shape, int ndim, void *user) {
    st_list *l = user;
    st_entry *e = &l->e[l->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = "F32";
    e->ndim = ndim;
    memcpy(e->shape, shape, sizeof e->shape);
    return 0;
}

static const char tiny_config[] =
    "{\"model_type\": \"clip\", \"projection_dim\": 6,\n"
    " \"text_config\": {\"hidden_size\": 8, \"intermediate_size\": 12, \"num_hidden_layers\": 1,\n"
    "   \"num_attention_heads\": 2, \"vocab_size\": 520, \"max_position_embeddings\": 77,\n"
    "   \"bos_token_id\": 518, \"eos_token_id\": 519, \"hidden_act\": \"gelu\"},\n"
    " \"vision_config\": {\"hidden_size\": 10, \"intermediate_size\": 14, \"num_hidden_layers\": 1,\n"
    "   \"num_attention_heads\": 2, \"image_size\": 8, \"patch_size\": 4}}\n";

/* The full tensor list of tiny_config, F32. Caller frees l->e. */
static st_list tiny_tensors(void) {
    pclip_config c;
    const char *dir = pclip_test_tmpdir();
    write_text(join(dir, "config.json"), tiny_config);
    ck_assert_status(ctx, pclip_config_load(ctx, join(dir, "config.json"), &c), PCLIP_STATUS_OK);
    st_list l = {calloc(256, sizeof(st_entry)), 0};
    pclip__clip_tensors(&c, collect, &l);
    return l;
}

/* A model directory with config.json and model.safetensors only. */
static const char *tiny_model_dir(const st_list *l) {
    const char *dir = pclip_test_tmpdir();
    write_text(join(dir, "config.json"), tiny_config);
    st_write(join(dir, "model.safetensors"), l);
    return dir;
}

/* ---- config.json ---- */

START_TEST(test_config_defaults) {
    const char *dir = pclip_test_tmpdir();
    write_text(join(dir, "config.json"), "{}");
    pclip_config c;
    ck_assert_status(ctx, pclip_config_load(ctx, join(dir, "config.json"), &c), PCLIP_STATUS_OK);
    /* Hugging Face's CLIPConfig defaults: ViT-B/32 */
    ck_assert_int_eq(c.text.hidden_size, 512);
    ck_assert_int_eq(c.text.num_heads, 8);
    ck_assert_int_eq(c.text.vocab_size, 49408);
    ck_assert_int_eq(c.text.eos_token_id, 49407);
    ck_assert_int_eq(c.text.act, PCLIP_ACT_QUICK_GELU);
    ck_assert_int_eq(c.vision.hidden_size, 768);
    ck_assert_int_eq(c.vision.patch_size, 32);
    ck_assert_int_eq(c.vision.image_size, 224);
    ck_assert_int_eq(c.projection_dim, 512);
    ck_assert_float_eq_tol(c.text.layer_norm_eps, 1e-5f, 1e-12f);
}
END_TEST

START_TEST(test_config_fields) {
    const char *dir = pclip_test_tmpdir();
    write_text(join(dir, "config.json"),
               "{\"model_type\": \"clip\", \"projection_dim\": 768, \"text_config\": "
               "{\"hidden_size\": 768, \"num_attention_heads\": 12, \"eos_token_id\": 2, "
               "\"bos_token_id\": 0, \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-6, "
               "\"pad_token_id\": null}, \"vision_config_dict\": {\"hidden_size\": 1024, "
               "\"num_hidden_layers\": 24, \"num_attention_heads\": 16, \"patch_size\": 14, "
               "\"image_size\": 336}, \"vision_config\": {\"hidden_size\": 1}}");
    pclip_config c;
    ck_assert_status(ctx, pclip_config_load(ctx, join(dir, "config.json"), &c), PCLIP_STATUS_OK);
    ck_assert_int_eq(c.projection_dim, 768);
    ck_assert_int_eq(c.text.hidden_size, 768);
    ck_assert_int_eq(c.text.eos_token_id, 2);
    ck_assert_int_eq(c.text.pad_token_id, 1); /* null keeps the default */
    ck_assert_int_eq(c.text.act, PCLIP_ACT_GELU);
    ck_assert_float_eq_tol(c.text.layer_norm_eps, 1e-6f, 1e-13f);
    /* vision_config_dict wins over vision_config, as in transformers */
    ck_assert_int_eq(c.vision.hidden_size, 1024);
    ck_assert_int_eq(c.vision.num_layers, 24);
    ck_assert_int_eq(c.vision.patch_size, 14);
    ck_assert_int_eq(c.vision.image_size, 336);
}
END_TEST

START_TEST(test_config_fixture) {
    pclip_config c;
    const char *p = pclip_test_fixture("tiny-clip/config.json");
    ck_assert_status(ctx, pclip_config_load(ctx, p, &c), PCLIP_STATUS_OK);
    ck_assert_int_eq(c.text.hidden_size, 40);
    ck_assert_int_eq(c.vision.hidden_size, 48);
    ck_assert_int_eq(c.vision.patch_size, 8);
    ck_assert_int_eq(c.projection_dim, 24);
    pclip_config legacy;
    p = pclip_test_fixture("tiny-clip-legacy/config.json");
    ck_assert_status(ctx, pclip_config_load(ctx, p, &legacy), PCLIP_STATUS_OK);
    ck_assert_int_eq(legacy.text.eos_token_id, 2);
    ck_assert_int_eq(legacy.text.bos_token_id, 0);
}
END_TEST

typedef struct bad_config {
    const char *json;
    pclip_status status;
    const char *needle;
} bad_config;

static const bad_config bad_configs[] = {
    {"", PCLIP_STATUS_BAD_FORMAT, "empty"},
    {"{\"text_config\": {", PCLIP_STATUS_BAD_FORMAT, "not valid JSON"},
    {"[1, 2]", PCLIP_STATUS_BAD_CONFIG, "expected a JSON object"},
    {"{} trailing", PCLIP_STATUS_BAD_FORMAT, "after the JSON"},
    {"{\"projection_dim\": 5, \"projection_dim\": 6}", PCLIP_STATUS_BAD_FORMAT, "duplicate key 'projection_dim'"},
    {"{\"text_config\": {\"hidden_size\": 8, \"hidden_size\": 8}}", PCLIP_STATUS_BAD_FORMAT, "duplicate key"},
    {"{\"model_type\": \"siglip\"}", PCLIP_STATUS_UNSUPPORTED, "siglip"},
    {"{\"text_config\": {\"hidden_size\": 500, \"num_attention_heads\": 8}}", PCLIP_STATUS_BAD_CONFIG, "not divisible"},
    {"{\"text_config\": {\"hidden_size\": 0}}", PCLIP_STATUS_BAD_CONFIG, "hidden_size"},
    {"{\"text_config\": {\"hidden_size\": 512.5}}", PCLIP_STATUS_BAD_CONFIG, "hidden_size"},
    {"{\"text_config\": {\"hidden_size\": \"512\"}}", PCLIP_STATUS_BAD_CONFIG, "must be an integer"},
    {"{\"text_config\": {\"hidden_size\": 1e300}}", PCLIP_STATUS_BAD_CONFIG, "hidden_size"},
    {"{\"text_config\": {\"num_hidden_layers\": -3}}", PCLIP_STATUS_BAD_CONFIG, "num_hidden_layers"},
    {"{\"vision_config\": {\"image_size\": 225}}", PCLIP_STATUS_BAD_CONFIG, "not a multiple of patch_size"},
    {"{\"vision_config\": {\"num_channels\": 1}}", PCLIP_STATUS_UNSUPPORTED, "num_channels"},
    {"{\"vision_config\": {\"hidden_act\": \"swish\"}}", PCLIP_STATUS_UNSUPPORTED, "swish"},
    {"{\"text_config\": {\"eos_token_id\": 60000}}", PCLIP_STATUS_BAD_CONFIG, "outside vocab_size"},
    {"{\"text_config\": 5}", PCLIP_STATUS_BAD_CONFIG, "text_config"},
    {"{\"text_config\": {\"layer_norm_eps\": -1}}", PCLIP_STATUS_BAD_CONFIG, "layer_norm_eps"},
    /* sizes that would need terabytes are refused before anything is allocated */
    {"{\"text_config\": {\"hidden_size\": 16384, \"intermediate_size\": 131072, "
     "\"num_hidden_layers\": 256, \"num_attention_heads\": 16}}", PCLIP_STATUS_LIMIT, "MiB"},
    {"{\"vision_config\": {\"hidden_size\": 100000}}", PCLIP_STATUS_BAD_CONFIG, "hidden_size"},
};

START_TEST(test_config_bad) {
    const bad_config *b = &bad_configs[_i];
    const char *dir = pclip_test_tmpdir();
    const char *path = join(dir, "config.json");
    write_text(path, b->json);
    pclip_config c;
    memset(&c, 0x5A, sizeof c);
    pclip_config before = c;
    pclip_status st = pclip_config_load(ctx, path, &c);
    ck_assert_msg(st == b->status, "case %d (%s): status %s, want %s: %s", _i, b->json,
                  pclip_status_name(st), pclip_status_name(b->status), pclip_ctx_last_error(ctx));
    ck_assert_err_has(b->needle);
    ck_assert_err_has("config.json");
    ck_assert_msg(memcmp(&c, &before, sizeof c) == 0, "output changed on failure");
}
END_TEST

START_TEST(test_config_missing_file) {
    pclip_config c;
    ck_assert_status(ctx, pclip_config_load(ctx, "/nonexistent/config.json", &c),
                     PCLIP_STATUS_NOT_FOUND);
    ck_assert_err_has("/nonexistent/config.json");
    const char *dir = pclip_test_tmpdir();
    ck_assert_status(ctx, pclip_config_load(ctx, dir, &c), PCLIP_STATUS_IO);
    ck_assert_err_has("directory");
}
END_TEST

/* ---- preprocessor_config.json ---- */

START_TEST(test_image_config_forms) {
    const char *dir = pclip_test_tmpdir();
    const char *p = join(dir, "preprocessor_config.json");
    pclip_image_config c;
    write_text(p, "{\"size\": {\"shortest_edge\": 256}, \"crop_size\": {\"height\": 240, \"width\": 224},"
                  " \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.25, 0.5, 1], \"resample\": 2,"
                  " \"do_center_crop\": false, \"rescale_factor\": 0.5}");
    ck_assert_status(ctx, pclip_image_config_load(ctx, p, &c), PCLIP_STATUS_OK);
    ck_assert_int_eq(c.shortest_edge, 256);
    ck_assert_int_eq(c.crop_height, 240);
    ck_assert_int_eq(c.crop_width, 224);
    ck_assert_float_eq(c.std[0], 0.25f);
    ck_assert_int_eq(c.resample, PCLIP_RESAMPLE_BILINEAR);
    ck_assert_int_eq(c.do_center_crop, 0);
    ck_assert_int_eq(c.do_resize, 1);
    ck_assert_double_eq(c.rescale_factor, 0.5);
    /* legacy CLIPFeatureExtractor: integers */
    write_text(p, "{\"size\": 224, \"crop_size\": 224, \"feature_extractor_type\": \"CLIPFeatureExtractor\"}");
    ck_assert_status(ctx, pclip_image_config_load(ctx, p, &c), PCLIP_STATUS_OK);
    ck_assert_int_eq(c.shortest_edge, 224);
    ck_assert_int_eq(c.crop_height, 224);
    ck_assert_int_eq(c.crop_width, 224);
    ck_assert_float_eq(c.mean[0], 0.48145466f);
    ck_assert_double_eq(c.rescale_factor, 1.0 / 255.0);
    /* height/width resize */
    write_text(p, "{\"size\": {\"height\": 200, \"width\": 300}, \"crop_size\": 100}");
    ck_assert_status(ctx, pclip_image_config_load(ctx, p, &c), PCLIP_STATUS_OK);
    ck_assert_int_eq(c.shortest_edge, 0);
    ck_assert_int_eq(c.resize_height, 200);
    ck_assert_int_eq(c.resize_width, 300);
    ck_assert_int_eq(c.crop_height, 100);
    /* the fixtures' two forms */
    ck_assert_status(ctx, pclip_image_config_load(ctx, pclip_test_fixture("tiny-clip/preprocessor_config.json"), &c), PCLIP_STATUS_OK);
    ck_assert_int_eq(c.shortest_edge, 32);
    ck_assert_int_eq(c.crop_width, 32);
    ck_assert_status(ctx, pclip_image_config_load(ctx, pclip_test_fixture("tiny-clip-legacy/preprocessor_config.json"), &c), PCLIP_STATUS_OK);
    ck_assert_int_eq(c.shortest_edge, 32);
    ck_assert_int_eq(c.crop_height, 32);
}
END_TEST

START_TEST(test_image_config_bad) {
    static const bad_config cases[] = {
        {"{\"size\": {\"longest_edge\": 5}}", PCLIP_STATUS_BAD_CONFIG, "shortest_edge"},
        {"{\"size\": 0}", PCLIP_STATUS_BAD_CONFIG, "'size'"},
        {"{\"size\": 100000}", PCLIP_STATUS_BAD_CONFIG, "'size'"},
        {"{\"crop_size\": \"224\"}", PCLIP_STATUS_BAD_CONFIG, "crop_size"},
        {"{\"image_std\": [1, 0, 1]}", PCLIP_STATUS_BAD_CONFIG, "image_std"},
        {"{\"image_mean\": [1, 1]}", PCLIP_STATUS_BAD_CONFIG, "image_mean"},
        {"{\"resample\": 9}", PCLIP_STATUS_BAD_CONFIG, "resample"},
        {"{\"do_resize\": 1}", PCLIP_STATUS_BAD_CONFIG, "do_resize"},
    };
    const char *dir = pclip_test_tmpdir();
    const char *p = join(dir, "preprocessor_config.json");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(p, cases[i].json);
        pclip_image_config c;
        pclip_status st = pclip_image_config_load(ctx, p, &c);
        ck_assert_msg(st == cases[i].status, "%s: %s", cases[i].json, pclip_ctx_last_error(ctx));
        ck_assert_err_has(cases[i].needle);
        ck_assert_err_has("preprocessor_config.json");
    }
}
END_TEST

/* ---- safetensors headers ---- */

/* Builds a file image: 8-byte length, the header text, then `data_len` bytes. */
static uint8_t *st_image(const char *header, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    uint8_t *b = calloc(1, *size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

static pclip_status st_parse_text(const char *header, size_t data_len) {
    size_t size;
    uint8_t *b = st_image(header, data_len, &size);
    pclip__st_file *f = NULL;
    pclip_status st = pclip__st_parse(ctx, "x.safetensors", b, size, &f);
    if (!st) {
        ck_assert_ptr_nonnull(f);
        pclip__st_close(f);
    }
    free(b);
    return st;
}

START_TEST(test_safetensors_good) {
    size_t size;
    uint8_t *b = st_image("{\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
                          "\"a\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]},"
                          "\"z\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[32,32]},"
                          "\"__metadata__\":{\"format\":\"pt\"}}   ",
                          32, &size);
    pclip__st_file *f;
    ck_assert_status(ctx, pclip__st_parse(ctx, "x.safetensors", b, size, &f), PCLIP_STATUS_OK);
    ck_assert_uint_eq(f->n_tensors, 3);
    const pclip__st_tensor *t = pclip__st_find(f, "b");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, PCLIP__ST_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert_uint_eq(t->nbytes, 24);
    t = pclip__st_find(f, "a");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_uint_eq(t->count, 1);
    ck_assert_ptr_null(pclip__st_find(f, "c"));
    pclip__st_close(f);
    free(b);
}
END_TEST

static const struct {
    const char *header;
    size_t data;
    const char *needle;
} bad_headers[] = {
    {"[1]", 0, "does not start with '{'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "not valid JSON"},
    {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'Q4'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "needs 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, "outside"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "outside"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "exactly"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "two non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate key 'a'"},
    {"{\"a\":5}", 0, "not an object"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__"},
    {"xx", 0, "does not start with '{'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}  {", 4, "after the JSON"},
};

START_TEST(test_safetensors_bad) {
    pclip_status st = st_parse_text(bad_headers[_i].header, bad_headers[_i].data);
    ck_assert_msg(st == PCLIP_STATUS_BAD_FORMAT, "case %d: %s", _i, pclip_status_name(st));
    ck_assert_err_has(bad_headers[_i].needle);
    ck_assert_err_has("x.safetensors");
}
END_TEST

START_TEST(test_safetensors_lengths) {
    pclip__st_file *f;
    uint8_t small[7] = {0};
    ck_assert_status(ctx, pclip__st_parse(ctx, "x.safetensors", small, sizeof small, &f),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("too short");
    /* a header length far past the limit: refused without reading further */
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    ck_assert_status(ctx, pclip__st_parse(ctx, "x.safetensors", huge, sizeof huge, &f),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("over the limit");
    /* within the limit but past the end of the file (truncated) */
    uint8_t trunc[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    ck_assert_status(ctx, pclip__st_parse(ctx, "x.safetensors", trunc, sizeof trunc, &f),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("truncated");
}
END_TEST

START_TEST(test_dtype_conversion) {
    ck_assert_float_eq(pclip__f16_to_f32(0x3C00), 1.0f);
    ck_assert_float_eq(pclip__f16_to_f32(0xC000), -2.0f);
    ck_assert_float_eq(pclip__f16_to_f32(0x0001), 5.9604644775390625e-8f); /* smallest subnormal */
    ck_assert_float_eq(pclip__f16_to_f32(0x7BFF), 65504.0f);
    ck_assert(isinf(pclip__f16_to_f32(0x7C00)));
    ck_assert(isnan(pclip__f16_to_f32(0x7E00)));
    ck_assert_float_eq(pclip__bf16_to_f32(0x3F80), 1.0f);
    ck_assert_float_eq(pclip__bf16_to_f32(0xC040), -3.0f);
}
END_TEST

/* ---- model directories ---- */

START_TEST(test_model_fixtures) {
    static const char *const dirs[] = {"tiny-clip", "tiny-clip-legacy", "tiny-clip-f16",
                                       "tiny-clip-bf16", "tiny-clip-sharded"};
    float *ref = NULL;
    size_t ref_n = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        pclip_model_t m;
        ck_assert_status(ctx, pclip_model_load(ctx, pclip_test_fixture(dirs[d]), &m),
                         PCLIP_STATUS_OK);
        /* 2 layers x 16 tensors x 2 towers + 14 others */
        ck_assert_uint_eq(pclip_model_tensor_count(m), 2 * 16 * 2 + 14);
        ck_assert_ptr_nonnull(pclip_model_tokenizer(m));
        ck_assert_int_eq(pclip_model_image_config(m)->crop_height, 32);
        /* every dtype converts to the same values, up to its rounding */
        const pclip__st_tensor *t = pclip__model_find(m, "text_model.encoder.layers.1.mlp.fc1.weight");
        ck_assert_ptr_nonnull(t);
        float *v = malloc(t->count * sizeof *v);
        ck_assert_status(ctx, pclip__st_to_f32(ctx, t, v), PCLIP_STATUS_OK);
        if (!ref) {
            ref = v;
            ref_n = t->count;
        } else {
            ck_assert_uint_eq(t->count, ref_n);
            double tol = strstr(dirs[d], "bf16") ? 1.0 / 128 : strstr(dirs[d], "f16") ? 1.0 / 1024 : 0;
            for (size_t i = 0; i < ref_n; i++)
                ck_assert_msg(fabs(v[i] - ref[i]) <= tol * fabs(ref[i]) + 1e-7,
                              "%s: element %zu is %g, F32 has %g", dirs[d], i, v[i], ref[i]);
            free(v);
        }
        pclip_model_destroy(m);
    }
    free(ref);
}
END_TEST

START_TEST(test_model_written) {
    st_list l = tiny_tensors();
    const char *dir = tiny_model_dir(&l);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_OK);
    ck_assert_uint_eq(pclip_model_tensor_count(m), l.n);
    ck_assert_ptr_null(pclip_model_tokenizer(m));
    pclip_model_destroy(m);
    /* the integer position_ids buffers of older checkpoints are ignored */
    st_entry *e = &l.e[l.n++];
    snprintf(e->name, sizeof e->name, "text_model.embeddings.position_ids");
    e->dtype = "I64";
    e->ndim = 2;
    e->shape[0] = 1, e->shape[1] = 77;
    dir = tiny_model_dir(&l);
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_OK);
    pclip_model_destroy(m);
    /* logit_scale stored as [1] */
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.e[i].name, "logit_scale") == 0) l.e[i].ndim = 1, l.e[i].shape[0] = 1;
    dir = tiny_model_dir(&l);
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_OK);
    pclip_model_destroy(m);
    free(l.e);
}
END_TEST

static void expect_bad_model(st_list *l, pclip_status want, const char *needle1, const char *needle2) {
    const char *dir = tiny_model_dir(l);
    pclip_model_t m = (pclip_model_t)0x1;
    pclip_status st = pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m);
    ck_assert_msg(st == want, "status %s: %s", pclip_status_name(st), pclip_ctx_last_error(ctx));
    ck_assert_ptr_eq(m, (pclip_model_t)0x1);
    ck_assert_err_has(needle1);
    ck_assert_err_has(needle2);
    ck_assert_err_has("model.safetensors");
}

START_TEST(test_model_missing_tensor) {
    st_list l = tiny_tensors();
    /* drop the vision fc2 bias of layer 0 */
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.e[i].name, "vision_model.encoder.layers.0.mlp.fc2.bias") == 0)
            l.e[i] = l.e[--l.n];
    expect_bad_model(&l, PCLIP_STATUS_BAD_TENSOR, "missing", "vision_model.encoder.layers.0.mlp.fc2.bias");
    free(l.e);
}
END_TEST

START_TEST(test_model_extra_tensor) {
    st_list l = tiny_tensors();
    st_entry *e = &l.e[l.n++];
    snprintf(e->name, sizeof e->name, "text_model.encoder.layers.7.mlp.fc1.weight");
    e->dtype = "F32";
    e->ndim = 1;
    e->shape[0] = 3;
    expect_bad_model(&l, PCLIP_STATUS_BAD_TENSOR, "does not have", "layers.7.mlp.fc1.weight");
    free(l.e);
}
END_TEST

START_TEST(test_model_misshaped_tensor) {
    st_list l = tiny_tensors();
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.e[i].name, "text_projection.weight") == 0) l.e[i].shape[0] = 7;
    expect_bad_model(&l, PCLIP_STATUS_BAD_TENSOR, "text_projection.weight is [7, 8]", "needs [6, 8]");
    free(l.e);
}
END_TEST

START_TEST(test_model_bad_dtype) {
    st_list l = tiny_tensors();
    l.e[3].dtype = "I32";
    expect_bad_model(&l, PCLIP_STATUS_BAD_TENSOR, "not F32, F16 or BF16", l.e[3].name);
    free(l.e);
}
END_TEST

START_TEST(test_model_dir_errors) {
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load(ctx, "/nonexistent-model-dir", &m), PCLIP_STATUS_NOT_FOUND);
    ck_assert_err_has("/nonexistent-model-dir/config.json");
    /* config but no weights */
    const char *dir = pclip_test_tmpdir();
    write_text(join(dir, "config.json"), tiny_config);
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_NOT_FOUND);
    ck_assert_err_has("model.safetensors");
    write_text(join(dir, "pytorch_model.bin"), "pickle");
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_NOT_FOUND);
    ck_assert_err_has("pytorch_model.bin");
    /* empty and garbage weights */
    write_text(join(dir, "model.safetensors"), "");
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("empty");
    write_text(join(dir, "model.safetensors"), "garbage garbage garbage");
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("model.safetensors");
    /* tokenizer files missing */
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_TOKENIZER, &m),
                     PCLIP_STATUS_NOT_FOUND);
    ck_assert_err_has("vocab.json");
}
END_TEST

START_TEST(test_model_truncated_weights) {
    st_list l = tiny_tensors();
    const char *dir = tiny_model_dir(&l);
    const char *p = join(dir, "model.safetensors");
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_eq(truncate(p, sb.st_size - 10), 0);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("outside");
    free(l.e);
}
END_TEST

START_TEST(test_model_sharded) {
    st_list l = tiny_tensors();
    const char *dir = pclip_test_tmpdir();
    write_text(join(dir, "config.json"), tiny_config);
    st_list a = {l.e, l.n / 2}, b = {l.e + l.n / 2, l.n - l.n / 2};
    st_write(join(dir, "s1.safetensors"), &a);
    st_write(join(dir, "s2.safetensors"), &b);
    char *idx = malloc(1 << 16);
    size_t n = (size_t)sprintf(idx, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
    for (size_t i = 0; i < l.n; i++)
        n += (size_t)sprintf(idx + n, "%s\"%s\": \"%s\"", i ? ", " : "", l.e[i].name,
                             i < l.n / 2 ? "s1.safetensors" : "s2.safetensors");
    sprintf(idx + n, "}}");
    write_text(join(dir, "model.safetensors.index.json"), idx);
    pclip_model_t m;
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_OK);
    ck_assert_uint_eq(pclip_model_tensor_count(m), l.n);
    pclip_model_destroy(m);
    /* a map that names the wrong shard */
    char *wrong = strstr(idx, "s2.safetensors");
    wrong[1] = '1';
    write_text(join(dir, "model.safetensors.index.json"), idx);
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("weight_map puts tensor");
    /* a shard outside the directory */
    write_text(join(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"logit_scale\": \"../x.safetensors\"}}");
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("must name a file");
    /* a missing shard */
    write_text(join(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"logit_scale\": \"s3.safetensors\"}}");
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_NOT_FOUND);
    ck_assert_err_has("s3.safetensors");
    /* the same tensor in two shards */
    st_write(join(dir, "s3.safetensors"), &a);
    write_text(join(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s3.safetensors\"}}");
    ck_assert_status(ctx, pclip_model_load_parts(ctx, dir, PCLIP_MODEL_PART_WEIGHTS, &m),
                     PCLIP_STATUS_BAD_FORMAT);
    ck_assert_err_has("in both");
    free(idx);
    free(l.e);
}
END_TEST

/* Every allocation in loading a model directory may fail: each must end in a
 * clean OUT_OF_MEMORY (or a message-bearing error), never a crash or a leak. */
START_TEST(test_model_alloc_failures) {
    const char *dir = pclip_test_fixture("tiny-clip");
    pclip_model_t m = NULL;
    long n;
    for (n = 1; n < 100000; n++) {
        pclip__alloc_fail_at(n);
        pclip_status st = pclip_model_load(ctx, dir, &m);
        pclip__alloc_fail_at(0);
        if (st == PCLIP_STATUS_OK) break;
        ck_assert_msg(st == PCLIP_STATUS_OUT_OF_MEMORY,
                      "allocation %ld: %s: %s", n, pclip_status_name(st), pclip_ctx_last_error(ctx));
    }
    ck_assert_ptr_nonnull(m);
    ck_assert_int_gt(n, 10);
    pclip_model_destroy(m);
}
END_TEST

/* ---- .npy output ---- */

START_TEST(test_npy_roundtrip) {
    const char *dir = pclip_test_tmpdir();
    const char *p = join(dir, "out.npy");
    float v[6] = {1, 2, 3, 4, 5, -6.5f};
    int64_t shape[2] = {2, 3};
    ck_assert_status(ctx, pclip_npy_write_f32(ctx, p, v, shape, 2), PCLIP_STATUS_OK);
    pclip_test_npy a;
    pclip_test_npy_read(p, &a);
    ck_assert_int_eq(a.ndim, 2);
    ck_assert_int_eq(a.shape[0], 2);
    ck_assert_int_eq(a.shape[1], 3);
    ck_assert_mem_eq(a.data, v, sizeof v);
    pclip_test_npy_free(&a);
    size_t len;
    char *raw = pclip_test_read_file(p, &len);
    ck_assert_uint_eq((len - 24) % 64, 0); /* data 64-byte aligned like numpy's */
    ck_assert_ptr_nonnull(strstr(raw + 10, "'shape': (2, 3), }"));
    free(raw);
    int64_t one[1] = {6};
    ck_assert_status(ctx, pclip_npy_write_f32(ctx, p, v, one, 1), PCLIP_STATUS_OK);
    raw = pclip_test_read_file(p, &len);
    ck_assert_ptr_nonnull(strstr(raw + 10, "'shape': (6,), }"));
    free(raw);
}
END_TEST

START_TEST(test_npy_incomplete_keeps_old_file) {
    const char *dir = pclip_test_tmpdir();
    const char *p = join(dir, "out.npy");
    write_text(p, "previous");
    int64_t shape[2] = {4, 3};
    pclip_npy_writer_t w;
    float v[3] = {0};
    ck_assert_status(ctx, pclip_npy_writer_create(ctx, p, shape, 2, &w), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_npy_writer_append(w, v, 3), PCLIP_STATUS_OK);
    ck_assert_status(ctx, pclip_npy_writer_commit(w), PCLIP_STATUS_INVALID_ARGUMENT);
    ck_assert_err_has("3 of 12");
    pclip_npy_writer_destroy(w);
    char *raw = pclip_test_read_file(p, NULL);
    ck_assert_str_eq(raw, "previous");
    free(raw);
    /* no temp file is left behind */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    char *out;
    ck_assert_int_eq(pclip_test_sh(cmd, &out, NULL), 0);
    ck_assert_str_eq(out, "out.npy\n");
    free(out);
    /* writing into a directory that does not exist */
    ck_assert_status(ctx, pclip_npy_write_f32(ctx, "/nonexistent-dir/x.npy", v, shape, 1),
                     PCLIP_STATUS_IO);
    ck_assert_err_has("/nonexistent-dir/x.npy");
}
END_TEST

int main(void) {
    Suite *s = suite_create("model");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, teardown);
    tcase_add_test(core, test_config_defaults);
    tcase_add_test(core, test_config_fields);
    tcase_add_test(core, test_config_fixture);
    tcase_add_test(core, test_image_config_forms);
    tcase_add_test(core, test_safetensors_good);
    tcase_add_test(core, test_dtype_conversion);
    tcase_add_test(core, test_model_fixtures);
    tcase_add_test(core, test_model_written);
    tcase_add_test(core, test_model_sharded);
    tcase_add_test(core, test_npy_roundtrip);
    suite_add_tcase(s, core);
    TCase *limits = tcase_create("limits");
    tcase_add_checked_fixture(limits, setup, teardown);
    tcase_set_timeout(limits, 300);
    tcase_add_loop_test(limits, test_config_bad, 0, (int)(sizeof bad_configs / sizeof bad_configs[0]));
    tcase_add_test(limits, test_config_missing_file);
    tcase_add_test(limits, test_image_config_bad);
    tcase_add_loop_test(limits, test_safetensors_bad, 0, (int)(sizeof bad_headers / sizeof bad_headers[0]));
    tcase_add_test(limits, test_safetensors_lengths);
    tcase_add_test(limits, test_model_missing_tensor);
    tcase_add_test(limits, test_model_extra_tensor);
    tcase_add_test(limits, test_model_misshaped_tensor);
    tcase_add_test(limits, test_model_bad_dtype);
    tcase_add_test(limits, test_model_dir_errors);
    tcase_add_test(limits, test_model_truncated_weights);
    tcase_add_test(limits, test_model_alloc_failures);
    tcase_add_test(limits, test_npy_incomplete_keeps_old_file);
    suite_add_tcase(s, limits);
    return pclip_test_run(s);
}
