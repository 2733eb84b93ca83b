/* pclip_library_versions: the third-party libraries this build runs on, so
 * that `portclip --version` (and bug reports) can name them without the CLI
 * including their headers. */
#include <stdio.h> /* before jpeglib.h, which needs FILE */

#include <dnnl.h>
#include <jpeglib.h>
#include <png.h>
#include <sqlite3.h>

#include "internal.h"

#define PCLIP_VSTR2(x) #x
#define PCLIP_VSTR(x) PCLIP_VSTR2(x)

const char *pclip_library_versions(void) {
    /* The inputs never change within a process: formatting twice writes the
     * same bytes, so concurrent first calls are harmless. */
    static char text[160];
    const dnnl_version_t *d = dnnl_version();
    png_uint_32 p = png_access_version_number(); /* xyyzz: 10639 is 1.6.39 */
#ifdef LIBJPEG_TURBO_VERSION
    const char *jpeg = "libjpeg-turbo " PCLIP_VSTR(LIBJPEG_TURBO_VERSION);
#else
    const char *jpeg = "libjpeg " PCLIP_VSTR(JPEG_LIB_VERSION);
#endif
    snprintf(text, sizeof text, "oneDNN %d.%d.%d, %s, libpng %u.%u.%u, SQLite %s", d->major,
             d->minor, d->patch, jpeg, (unsigned)(p / 10000), (unsigned)(p / 100 % 100),
             (unsigned)(p % 100), sqlite3_libversion());
    return text;
}
