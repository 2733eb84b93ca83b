/* portclip: CLIP image and text encoders on Vulkan, OpenCL and the CPU.
 *
 * This header is the one a program includes: versions, status codes and the
 * context are here; the rest is in topic headers included at the end
 * (portclip/model.h: configs, tokenizer, images, model directory, .npy
 * output; portclip/backend.h: backends, devices, encoders, parity;
 * portclip/apps.h: image files to embeddings; portclip/train.h: training
 * projection heads). Every call that can fail returns a
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

/* The topics, in dependency order; each may also be included on its own. */
#include "portclip/core.h"    /* version, status codes, context */
#include "portclip/model.h"   /* configs, tokenizer, images, model directory, .npy output */
#include "portclip/backend.h" /* backends, devices, encoders, parity */
#include "portclip/apps.h"    /* image files to embeddings */
#include "portclip/train.h"   /* projection heads trained on image-caption pairs */

#endif /* PORTCLIP_H */
