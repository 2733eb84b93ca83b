/* portclip backends: choosing a backend and device, the device list, the
 * encoders that run on a backend, and backend parity (portclip verify).
 * Included by portclip.h; the conventions written there hold here. */
#ifndef PORTCLIP_BACKEND_H
#define PORTCLIP_BACKEND_H

#include "portclip/model.h"

#ifdef __cplusplus
extern "C" {
#endif

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
    char precisions[32];  /* precisions it runs, space-separated: "fp32 bf16" */
    /* why a precision is missing ("bf16: needs ..."); "" when none is */
    char precision_why[160];
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

/* ---- precision ---- */

/* The arithmetic of the matmuls against weights (the nn.Linear layers and
 * the patch embedding). FP32 everywhere is the default. BF16 stores those
 * weights as bfloat16 and multiplies bf16 activations by them with fp32
 * accumulation and fp32 results; FP16 stores them as IEEE half and
 * multiplies fp32 activations by them with fp32 accumulation. In both,
 * LayerNorm, softmax, attention (scores, statistics and both of its
 * products), activations, residuals and the outputs stay fp32. The loss is
 * measured in README.md ("Precision"). */
typedef enum pclip_precision {
    PCLIP_PRECISION_FP32 = 0,
    PCLIP_PRECISION_BF16 = 1, /* CPU fast device (0) with AVX512_BF16 or AMX */
    PCLIP_PRECISION_FP16 = 2, /* Vulkan devices with 16-bit storage buffers */
    PCLIP_PRECISION_COUNT
} pclip_precision;

/* "fp32", "bf16", "fp16"; "?" outside the enum. */
PCLIP_API const char *pclip_precision_name(pclip_precision p);
/* Parses "fp32", "bf16" or "fp16" (as written, lower case) into *out. `what` names
 * where the text came from in the error ("--precision", "PORTCLIP_PRECISION");
 * anything else is INVALID_ARGUMENT listing the choices. */
PCLIP_API pclip_status pclip_precision_parse(pclip_ctx_t ctx, const char *text, const char *what,
                                             pclip_precision *out);
/* Sets the precision of every graph compiled on `b` from now on; graphs that
 * models compiled there at another precision are dropped (they compile again
 * on next use). A precision the device cannot run is UNSUPPORTED, saying what
 * is missing (for BF16 on the CPU: the instruction set; for FP16 on Vulkan:
 * the device feature; on another backend or the CPU reference device: that
 * it runs fp32 only), and leaves the precision
 * as it was. A new backend runs FP32. */
PCLIP_API pclip_status pclip_backend_set_precision(pclip_backend_t b, pclip_precision p);
PCLIP_API pclip_precision pclip_backend_precision(pclip_backend_t b);

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
/* The checkpoint's logit_scale (a log), or the MLP head's when one is set
 * (pclip_model_set_head); logits = exp(logit_scale) * cos. */
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

#ifdef __cplusplus
}
#endif

#endif /* PORTCLIP_BACKEND_H */
