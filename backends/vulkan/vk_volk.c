/* volk, the Vulkan meta-loader (Debian's libvulkan-volk-dev ships it as
 * source): compiled into the library so that nothing links against
 * libvulkan. vk_device.c opens libvulkan.so.1 itself (so a test can name a
 * missing one) and hands volk its vkGetInstanceProcAddr. volk's global
 * function pointers have hidden visibility. */
#include <volk.c>
