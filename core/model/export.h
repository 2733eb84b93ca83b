/* Writing a loaded model back out as a complete Hugging Face CLIP model
 * directory, with some tensors replaced (a trained linear head: new
 * visual_projection, text_projection and logit_scale). */
#ifndef PCLIP_EXPORT_H
#define PCLIP_EXPORT_H

#include "model/model.h"

/* A tensor that replaces the checkpoint's tensor of the same name. */
typedef struct pclip__export_tensor {
    const char *name;
    const float *data; /* count(shape) floats; borrowed */
    int32_t ndim;
    int64_t shape[PCLIP_LIMIT_TENSOR_DIMS];
} pclip__export_tensor;

/* Writes out_dir/model.safetensors holding every tensor of m's checkpoint
 * (one file even when m was sharded; each tensor in its own dtype, bytes
 * unchanged, position_ids included) except the n replacements, written as
 * F32; each replacement must name a checkpoint tensor and have its shape (a
 * scalar may replace [1] and the reverse). config.json is copied unchanged,
 * and so is each of vocab.json, merges.txt, tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json and
 * preprocessor_config.json that m's directory has. Every file is written
 * atomically; out_dir is created when absent (its parent must exist) and
 * may not be m's own directory. On failure the files already written stay
 * (each is whole); the error names the file or tensor. */
pclip_status pclip__export_hf_dir(struct pclip_model *m, const char *out_dir, size_t n,
                                  const pclip__export_tensor *replacements);

#endif
