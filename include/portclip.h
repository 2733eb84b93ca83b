/* portclip: CLIP image and text encoders on Vulkan, OpenCL and the CPU.
 *
 * This header is the whole public C API. Every call that can fail returns a
 * pclip_status; results come back through out-parameters, which a failed call
 * leaves untouched. The detailed text of the last failure (which file, which
 * tensor, which argument, what was expected) is kept by the context:
 * pclip_ctx_last_error(). The library never prints and never exits.
 *
 * Objects are opaque pointers ending in _t, created with _create (or _load /
 * _open for things read from disk) and released with _destroy; destroy(NULL)
 * is a no-op. Objects made with a context borrow it: the context must outlive
 * them. One context must not be used from two threads at once.
 */
#ifndef PORTCLIP_H
#define PORTCLIP_H

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
    X(INTERNAL, "internal error")

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

/* ---- context ---- */

typedef struct pclip_ctx *pclip_ctx_t;

/* Creates a context. Returns OUT_OF_MEMORY or OK. */
PCLIP_API pclip_status pclip_ctx_create(pclip_ctx_t *out);
PCLIP_API void pclip_ctx_destroy(pclip_ctx_t ctx);
/* The full text of the most recent failure on this context, or "" if none.
 * borrowed: valid until the next call that uses ctx. */
PCLIP_API const char *pclip_ctx_last_error(pclip_ctx_t ctx);

/* ---- model configuration (config.json) ---- */

typedef enum pclip_act {
    PCLIP_ACT_QUICK_GELU, /* x * sigmoid(1.702 x), OpenAI CLIP */
    PCLIP_ACT_GELU,       /* exact erf GELU */
    PCLIP_ACT_GELU_TANH,  /* tanh approximation ("gelu_new", "gelu_pytorch_tanh") */
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

/* ---- backends and devices ---- */

typedef struct pclip_backend *pclip_backend_t;

/* Opens a compute backend. `name` is "cpu", "vulkan", "opencl" or "auto"; NULL
 * means the PORTCLIP_BACKEND environment variable, or "auto" when unset.
 * `device` < 0 means PORTCLIP_DEVICE, or 0 when unset. `auto` prefers a real
 * GPU (Vulkan, then OpenCL) and falls back to the CPU, recording why
 * (pclip_backend_fallback_reason); a backend named explicitly that cannot
 * start is an error (BACKEND_UNAVAILABLE) saying what was missing.
 * The CPU backend has two devices: 0 is the fast path, 1 the plain C
 * reference that every other path is checked against. */
PCLIP_API pclip_status pclip_backend_create(pclip_ctx_t ctx, const char *name, int32_t device,
                                            pclip_backend_t *out);
PCLIP_API void pclip_backend_destroy(pclip_backend_t b);
/* borrowed: valid until pclip_backend_destroy(b) */
PCLIP_API const char *pclip_backend_name(pclip_backend_t b);
PCLIP_API const char *pclip_backend_device_name(pclip_backend_t b);
/* "" unless `auto` skipped something. */
PCLIP_API const char *pclip_backend_fallback_reason(pclip_backend_t b);

typedef struct pclip_device_desc {
    char backend[16];     /* "cpu", "vulkan", "opencl" */
    int32_t index;        /* for PORTCLIP_DEVICE / --device */
    char name[128];
    char vendor[64];
    char type[32];        /* "cpu", "discrete-gpu", "integrated-gpu", "virtual-gpu", "other" */
    char driver[128];
    char api_version[32];
    uint64_t memory_bytes;
    int32_t subgroup_size;
    char features[256];
    int32_t software;     /* 1 for CPU implementations that `auto` skips */
    int32_t usable;       /* 0: see `why` */
    char why[256];        /* for a backend with no device: what is missing */
} pclip_device_desc;

/* Lists every backend's devices (and one entry per backend that has none,
 * with usable = 0 and the reason). Fills up to `max`; *count gets the total. */
PCLIP_API pclip_status pclip_devices_list(pclip_ctx_t ctx, pclip_device_desc *out, int32_t max,
                                          int32_t *count);
/* 1 when the backend `name` ("cpu", "vulkan", "opencl") is built into this
 * library, else 0 (NULL too). Opens no device: a built backend may still find
 * none (pclip_devices_list says why). */
PCLIP_API int32_t pclip_backend_is_built(const char *name);

/* ---- encoders ---- */

enum {
    PCLIP_ENCODE_NORMALIZE = 1u << 0, /* L2-normalise each output row */
    PCLIP_ENCODE_POOLED = 1u << 1     /* pooled features before the projection */
};

/* Encodes `n` token rows ids[n, context] (from pclip_tokenizer_encode) into
 * out[n, projection_dim] (or [n, text hidden_size] with PCLIP_ENCODE_POOLED).
 * Pooling follows Hugging Face: the argmax of the ids for configs with the
 * legacy eos_token_id 2, else the first eos_token_id. */
PCLIP_API pclip_status pclip_model_encode_text(pclip_model_t model, pclip_backend_t b,
                                               const int32_t *ids, int32_t n, uint32_t flags,
                                               float *out);
/* Encodes `n` preprocessed images pixels[n, 3, S, S] (S = the vision
 * config's image_size) into out[n, projection_dim] (or [n, vision
 * hidden_size] with PCLIP_ENCODE_POOLED). */
PCLIP_API pclip_status pclip_model_encode_images(pclip_model_t model, pclip_backend_t b,
                                                 const float *pixels, int32_t n, uint32_t flags,
                                                 float *out);

/* Images or texts per encoder run of the calls above, and the most that the
 * _batched calls below accept. */
#define PCLIP_ENCODE_BATCH_DEFAULT 32
#define PCLIP_ENCODE_BATCH_MAX 4096

/* The same two calls with the number of rows per encoder run given:
 * batch_size 0 means PCLIP_ENCODE_BATCH_DEFAULT; outside
 * 1..PCLIP_ENCODE_BATCH_MAX it is INVALID_ARGUMENT. A batch whose activations
 * would not fit the device is LIMIT, saying how much it needs. The rows are
 * the same whatever the batch size, up to the rounding of the device's
 * kernels (bit-identical for equal batch sizes). */
PCLIP_API pclip_status pclip_model_encode_text_batched(pclip_model_t model, pclip_backend_t b,
                                                       const int32_t *ids, int32_t n,
                                                       int32_t batch_size, uint32_t flags,
                                                       float *out);
PCLIP_API pclip_status pclip_model_encode_images_batched(pclip_model_t model, pclip_backend_t b,
                                                         const float *pixels, int32_t n,
                                                         int32_t batch_size, uint32_t flags,
                                                         float *out);
/* The checkpoint's logit_scale (a log); logits = exp(logit_scale) * cos. */
PCLIP_API float pclip_model_logit_scale(pclip_model_t model);

/* ---- backend parity (portclip verify) ---- */

/* One row of the parity table: a case (an op with its sizes, or an encoder
 * with a checkpoint) run on a backend and on the CPU reference. */
typedef struct pclip_parity_row {
    char case_name[192];
    double error;     /* normalised mean squared error (ops) or max row relative error (encoders) */
    double tolerance; /* 0: bit-exact */
    int32_t passed;
    char why[256];    /* what failed */
} pclip_parity_row;

/* The number of built-in op cases (the same list the test suite runs). */
PCLIP_API size_t pclip_parity_case_count(void);
/* Runs op case i on `test` and on `ref` (normally the CPU reference: cpu
 * device 1) and compares them. OK when both ran, whether or not they agree
 * (see row->passed). */
PCLIP_API pclip_status pclip_parity_run_case(pclip_ctx_t ctx, pclip_backend_t ref,
                                             pclip_backend_t test, size_t i,
                                             pclip_parity_row *row);
/* Encodes a few built-in texts and synthetic images with `model` on both
 * backends and compares the embeddings row by row (relative error <= 1e-5).
 * rows[0] is the text encoder, rows[1] the image encoder. */
PCLIP_API pclip_status pclip_parity_run_model(pclip_ctx_t ctx, pclip_model_t model,
                                              pclip_backend_t ref, pclip_backend_t test,
                                              pclip_parity_row rows[2]);

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

/* Topic headers, declared with the types above. */
#include "portclip/apps.h"

#endif /* PORTCLIP_H */
