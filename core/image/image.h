/* Private helpers shared by image_decode.c and image_preprocess.c: the byte
 * layout of each Pillow mode and the one place that checks a pclip_image
 * handed in by a caller. */
#ifndef PCLIP_IMAGE_H
#define PCLIP_IMAGE_H

#include "internal.h"

/* Bytes per pixel of each mode as pclip_image stores it (Pillow keeps LA in
 * four bytes, L at 0 and A at 3; we keep the two bytes that carry data). */
static inline int32_t pclip__image_mode_channels(pclip_image_mode mode) {
    switch (mode) {
    case PCLIP_IMAGE_1:
    case PCLIP_IMAGE_L:
    case PCLIP_IMAGE_P: return 1;
    case PCLIP_IMAGE_LA: return 2;
    case PCLIP_IMAGE_RGB: return 3;
    case PCLIP_IMAGE_RGBA:
    case PCLIP_IMAGE_CMYK: return 4;
    default: return 0;
    }
}

/* Pillow's name for the mode ("RGB"), for messages and tests; "?" if invalid. */
static inline const char *pclip__image_mode_name(pclip_image_mode mode) {
    static const char *const names[PCLIP_IMAGE_MODE_COUNT] = {"1",   "L",    "LA",  "P",
                                                              "RGB", "RGBA", "CMYK"};
    return (unsigned)mode < PCLIP_IMAGE_MODE_COUNT ? names[mode] : "?";
}

#endif /* PCLIP_IMAGE_H */
