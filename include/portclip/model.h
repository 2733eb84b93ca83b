/* portclip models: config.json and preprocessor_config.json, the CLIP
 * tokenizer, images (decode and preprocess), the model directory, and .npy
 * output. Included by portclip.h; the conventions written there (statuses,
 * contexts, ownership, destroy(NULL)) hold here. */
#ifndef PORTCLIP_MODEL_H
#define PORTCLIP_MODEL_H

#include "portclip/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- model configuration (config.json) ---- */

/* One list for configs and the op graph (whose kernels switch on these
 * values); a config never holds PCLIP_ACT_NONE. */
typedef enum pclip_act {
    PCLIP_ACT_NONE = 0,       /* identity: a graph op without activation */
    PCLIP_ACT_QUICK_GELU = 1, /* x * sigmoid(1.702 x), OpenAI CLIP */
    PCLIP_ACT_GELU = 2,       /* exact erf GELU */
    PCLIP_ACT_GELU_TANH = 3,  /* tanh approximation ("gelu_new", "gelu_pytorch_tanh") */
    PCLIP_ACT_COUNT
} pclip_act;

/* One transformer tower. Missing config fields take Hugging Face's defaults. */
typedef struct pclip_tower_config {
    int32_t hidden_size;
    int32_t intermediate_size;
    int32_t num_layers;
    int32_t num_heads;
    float layer_norm_eps;
    pclip_act act;
    /* text tower only */
    int32_t vocab_size;
    int32_t max_position_embeddings; /* context length, 77 for CLIP */
    int32_t bos_token_id;
    int32_t eos_token_id; /* 2 = legacy: pool at argmax(ids) */
    int32_t pad_token_id;
    /* vision tower only */
    int32_t image_size;
    int32_t patch_size;
    int32_t num_channels;
} pclip_tower_config;

typedef struct pclip_config {
    pclip_tower_config text;
    pclip_tower_config vision;
    int32_t projection_dim;
    float logit_scale_init; /* only a default; the checkpoint's logit_scale wins */
} pclip_config;

/* Reads and validates a Hugging Face CLIPConfig (config.json). Sizes that make
 * no sense (zero, gigantic, heads that do not divide the width, images that
 * are not a multiple of the patch) are refused with BAD_CONFIG. */
PCLIP_API pclip_status pclip_config_load(pclip_ctx_t ctx, const char *path, pclip_config *out);

/* ---- image preprocessing configuration (preprocessor_config.json) ---- */

typedef enum pclip_resample {
    PCLIP_RESAMPLE_NEAREST = 0, /* Pillow's numbering */
    PCLIP_RESAMPLE_LANCZOS = 1,
    PCLIP_RESAMPLE_BILINEAR = 2,
    PCLIP_RESAMPLE_BICUBIC = 3,
    PCLIP_RESAMPLE_BOX = 4,
    PCLIP_RESAMPLE_HAMMING = 5,
    PCLIP_RESAMPLE_COUNT
} pclip_resample;

typedef enum pclip_preprocess_mode {
    PCLIP_PREPROCESS_OPENAI, /* torchvision on Pillow: resize, crop (round half even), RGB */
    PCLIP_PREPROCESS_HF,     /* CLIPImageProcessor: RGB, resize, crop (floor) */
    PCLIP_PREPROCESS_COUNT
} pclip_preprocess_mode;

typedef struct pclip_image_config {
    int32_t shortest_edge; /* resize target for the shorter side; 0 = use height/width */
    int32_t resize_height, resize_width; /* used when shortest_edge is 0 */
    int32_t crop_height, crop_width;
    int32_t do_resize, do_center_crop, do_normalize, do_rescale, do_convert_rgb;
    double rescale_factor; /* 1/255 */
    float mean[3];
    float std[3];
    pclip_resample resample;
} pclip_image_config;

/* Reads preprocessor_config.json, both the modern form ({"shortest_edge": N},
 * {"height": H, "width": W}) and the legacy integer `size`/`crop_size`. */
PCLIP_API pclip_status pclip_image_config_load(pclip_ctx_t ctx, const char *path,
                                               pclip_image_config *out);
/* OpenAI CLIP's defaults: 224, bicubic, CLIP's mean and std. */
PCLIP_API void pclip_image_config_default(pclip_image_config *out);

/* ---- tokenizer ---- */

typedef struct pclip_tokenizer *pclip_tokenizer_t;

/* Loads a CLIP BPE tokenizer from vocab.json and merges.txt. */
PCLIP_API pclip_status pclip_tokenizer_load(pclip_ctx_t ctx, const char *vocab_path,
                                            const char *merges_path, pclip_tokenizer_t *out);
PCLIP_API void pclip_tokenizer_destroy(pclip_tokenizer_t tok);

/* Token id of <|startoftext|> and <|endoftext|>. */
PCLIP_API int32_t pclip_tokenizer_bos(pclip_tokenizer_t tok);
PCLIP_API int32_t pclip_tokenizer_eos(pclip_tokenizer_t tok);

/* Tokenizes `len` bytes of UTF-8 text as OpenAI CLIP's SimpleTokenizer does and
 * writes exactly `context_len` ids: start, the text's ids, end, then 0s. A text
 * too long keeps start + (context_len - 2) ids + end. `n_tokens`, if not NULL,
 * receives the count of ids before the padding. Invalid UTF-8 is BAD_TEXT.
 * context_len must be at least 2. Only the first 1 MiB of a text is
 * tokenized (75 ids come from far less). A token missing from vocab.json maps
 * to <|endoftext|>'s id. One tokenizer must not encode in two threads at once
 * (it keeps a word cache). */
PCLIP_API pclip_status pclip_tokenizer_encode(pclip_tokenizer_t tok, const char *text,
                                              size_t len, int32_t *ids, int32_t context_len,
                                              int32_t *n_tokens);

/* ---- images ---- */

/* Pixel layout of a decoded image, as Pillow names its modes. */
typedef enum pclip_image_mode {
    PCLIP_IMAGE_1,    /* 1-bit, stored as 0 / 255 per byte */
    PCLIP_IMAGE_L,    /* grey */
    PCLIP_IMAGE_LA,   /* grey + alpha */
    PCLIP_IMAGE_P,    /* palette indices, palette in `palette` */
    PCLIP_IMAGE_RGB,
    PCLIP_IMAGE_RGBA,
    PCLIP_IMAGE_CMYK, /* Pillow's CMYK: ink amounts, 255 = full ink */
    PCLIP_IMAGE_MODE_COUNT
} pclip_image_mode;

typedef struct pclip_image {
    int32_t width, height;
    int32_t channels;      /* bytes per pixel: 1, 2, 3 or 4 */
    pclip_image_mode mode;
    uint8_t *pixels;       /* [height, width, channels], owned */
    uint8_t palette[256 * 3]; /* PCLIP_IMAGE_P only: RGB entries */
    int32_t palette_size;
} pclip_image;

/* Decodes a JPEG or PNG file as Pillow's Image.open would (same pixel bytes,
 * same mode; EXIF orientation ignored), refusing images over Pillow's
 * decompression-bomb limit before allocating. 16-bit grey PNGs are scaled to 8
 * bits (Pillow clips them). Free with pclip_image_destroy(). */
PCLIP_API pclip_status pclip_image_load(pclip_ctx_t ctx, const char *path, pclip_image **out);
PCLIP_API pclip_status pclip_image_decode(pclip_ctx_t ctx, const void *data, size_t size,
                                          const char *name, pclip_image **out);
PCLIP_API void pclip_image_destroy(pclip_image *img);

/* Preprocesses one image for the vision tower: resize, center crop, RGB,
 * rescale and normalize, bit-exact to the chosen reference. Writes float32
 * [3, crop_height, crop_width] to `out`. */
PCLIP_API pclip_status pclip_image_preprocess(pclip_ctx_t ctx, const pclip_image *img,
                                              const pclip_image_config *cfg,
                                              pclip_preprocess_mode mode, float *out);

/* ---- model directory ---- */

typedef struct pclip_model *pclip_model_t;

/* Loads a Hugging Face CLIP model directory: config.json,
 * model.safetensors (or a sharded model.safetensors.index.json),
 * preprocessor_config.json (optional: OpenAI's defaults), vocab.json and
 * merges.txt. Every tensor is checked against the config; missing, extra or
 * mis-shaped tensors are named in the error. */
PCLIP_API pclip_status pclip_model_load(pclip_ctx_t ctx, const char *dir, pclip_model_t *out);

/* Parts of a model directory, for callers that need only some of it
 * (tokenizing needs no weights). config.json is always read. */
enum {
    PCLIP_MODEL_PART_TOKENIZER = 1u << 0,    /* vocab.json, merges.txt */
    PCLIP_MODEL_PART_IMAGE_CONFIG = 1u << 1, /* preprocessor_config.json */
    PCLIP_MODEL_PART_WEIGHTS = 1u << 2,      /* *.safetensors, checked against the config */
    PCLIP_MODEL_PART_ALL = 7u
};
PCLIP_API pclip_status pclip_model_load_parts(pclip_ctx_t ctx, const char *dir, uint32_t parts,
                                              pclip_model_t *out);
PCLIP_API void pclip_model_destroy(pclip_model_t model);

/* borrowed: valid until pclip_model_destroy(model) */
PCLIP_API const pclip_config *pclip_model_config(pclip_model_t model);
PCLIP_API const pclip_image_config *pclip_model_image_config(pclip_model_t model);
/* NULL when the tokenizer part was not loaded. */
PCLIP_API pclip_tokenizer_t pclip_model_tokenizer(pclip_model_t model);
/* The number of weight tensors loaded (0 without the weights part). */
PCLIP_API size_t pclip_model_tensor_count(pclip_model_t model);

/* ---- MLP projection heads ---- */

/* Makes every later embedding, classification, score, index and search with
 * `model` run the MLP projection head in directory `dir` (head.json and
 * head.safetensors, as `portclip train --head mlp` writes them; README:
 * "Projection heads") on the pooled features instead of the checkpoint's
 * visual_projection and text_projection, and use the head's logit_scale.
 * Embeddings then have pclip_model_embed_dim(model) columns. The head's
 * vision_dim and text_dim must equal the model's hidden sizes. dir NULL
 * removes the head. On failure the model keeps the head it had (or none).
 * Compiled graphs are dropped and rebuilt at the next call; the model's
 * identity (pclip_model_identity, index checks) includes the head. */
PCLIP_API pclip_status pclip_model_set_head(pclip_model_t model, const char *dir);
/* The directory of the head in use, or NULL. borrowed: valid until the next
 * pclip_model_set_head or pclip_model_destroy. */
PCLIP_API const char *pclip_model_head(pclip_model_t model);
/* Columns of an embedding: the head's embed_dim, or config projection_dim. */
PCLIP_API int32_t pclip_model_embed_dim(pclip_model_t model);

/* ---- arrays on disk ---- */

/* Writes a float32 C-order .npy file atomically (temp file, then rename): on
 * failure the previous file at `path`, if any, is left as it was. */
PCLIP_API pclip_status pclip_npy_write_f32(pclip_ctx_t ctx, const char *path, const float *data,
                                           const int64_t *shape, int32_t ndim);

/* The same, streamed: create with the final shape, append the values in C
 * order in any number of parts, then commit. Destroying a writer that was not
 * committed removes its temp file and leaves `path` untouched. */
typedef struct pclip_npy_writer *pclip_npy_writer_t;
PCLIP_API pclip_status pclip_npy_writer_create(pclip_ctx_t ctx, const char *path,
                                               const int64_t *shape, int32_t ndim,
                                               pclip_npy_writer_t *out);
PCLIP_API pclip_status pclip_npy_writer_append(pclip_npy_writer_t w, const float *data,
                                               size_t count);
/* Fails (and writes nothing) unless exactly the shape's element count was appended. */
PCLIP_API pclip_status pclip_npy_writer_commit(pclip_npy_writer_t w);
PCLIP_API void pclip_npy_writer_destroy(pclip_npy_writer_t w);

#ifdef __cplusplus
}
#endif

#endif /* PORTCLIP_MODEL_H */
