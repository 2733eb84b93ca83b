/* Test support for sanitizer builds only (LD_PRELOAD'ed by CTest into the
 * Vulkan tests when PORTCLIP_SANITIZE is on; see tests/CMakeLists.txt).
 *
 * The Vulkan loader unloads the driver and the layers when an instance is
 * destroyed. LeakSanitizer then sees memory that lavapipe keeps in its
 * globals (allocated once per load, never freed) as leaked, and it cannot
 * name the frames of an unloaded library, so no suppression can match
 * them. Keeping these libraries loaded (RTLD_NODELETE) makes the first kind
 * reachable again and lets tests/vulkan_lsan.supp name the validation
 * layer, which does leak a few objects internally. A library that is not
 * installed is skipped; nothing here changes what the tests run. */
#define _GNU_SOURCE
#include <dlfcn.h>

__attribute__((constructor)) static void keep_vulkan_libraries_loaded(void) {
    static const char *const libs[] = {"libvulkan_lvp.so", "libVkLayer_khronos_validation.so",
                                       "libVkLayer_MESA_device_select.so"};
    for (unsigned i = 0; i < sizeof libs / sizeof libs[0]; i++)
        dlopen(libs[i], RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
}
