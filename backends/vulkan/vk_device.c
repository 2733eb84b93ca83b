/* The Vulkan backend's devices: the loader (libvulkan.so.1, opened at run
 * time through volk), the instance with the Khronos validation layer when
 * PORTCLIP_VK_VALIDATION=1, the device list behind `portclip devices`,
 * opening and closing a device, the one VkResult -> pclip_status mapping,
 * and one-shot submissions (uploads, debug copies).
 *
 * Validation: every validation warning or error the layer reports (through a
 * debug messenger, installed for instance creation too) is kept by the
 * backend state, and the next backend call fails with its text; tests
 * therefore prove that a run is validation-clean. Synchronization validation
 * is on as well, so a missing barrier is a failure too.
 *
 * Not here: memory (vk_memory.c), pipelines and shaders (vk_ops.c),
 * compiled graphs (vk_exec.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"

/* ---- errors ---- */

const char *pclip__vk_result_name(VkResult r) {
    switch (r) {
    // clang-format off
#define N(x) case x: return #x;
    N(VK_SUCCESS)
    N(VK_NOT_READY)
    N(VK_TIMEOUT)
    N(VK_INCOMPLETE)
    N(VK_ERROR_OUT_OF_HOST_MEMORY)
    N(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    N(VK_ERROR_INITIALIZATION_FAILED)
    N(VK_ERROR_DEVICE_LOST)
    N(VK_ERROR_MEMORY_MAP_FAILED)
    N(VK_ERROR_LAYER_NOT_PRESENT)
    N(VK_ERROR_EXTENSION_NOT_PRESENT)
    N(VK_ERROR_FEATURE_NOT_PRESENT)
    N(VK_ERROR_INCOMPATIBLE_DRIVER)
    N(VK_ERROR_TOO_MANY_OBJECTS)
    N(VK_ERROR_FORMAT_NOT_SUPPORTED)
    N(VK_ERROR_FRAGMENTED_POOL)
    N(VK_ERROR_UNKNOWN)
    N(VK_ERROR_OUT_OF_POOL_MEMORY)
    N(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    N(VK_ERROR_FRAGMENTATION)
    N(VK_ERROR_INVALID_SHADER_NV)
#undef N
    // clang-format on
    default: return "VkResult (unknown)";
    }
}

pclip_status pclip__vk_result(pclip__vk *s, VkResult r, const char *what) {
    pclip_status st;
    switch (r) {
    case VK_SUCCESS: return PCLIP_STATUS_OK;
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_FRAGMENTED_POOL:
    case VK_ERROR_FRAGMENTATION: st = PCLIP_STATUS_OUT_OF_MEMORY; break;
    case VK_ERROR_DEVICE_LOST:
    case VK_TIMEOUT: st = PCLIP_STATUS_DEVICE_LOST; break;
    case VK_ERROR_INITIALIZATION_FAILED:
    case VK_ERROR_INCOMPATIBLE_DRIVER:
    case VK_ERROR_LAYER_NOT_PRESENT:
    case VK_ERROR_EXTENSION_NOT_PRESENT:
    case VK_ERROR_FEATURE_NOT_PRESENT: st = PCLIP_STATUS_BACKEND_UNAVAILABLE; break;
    case VK_ERROR_TOO_MANY_OBJECTS: st = PCLIP_STATUS_LIMIT; break;
    default: st = PCLIP_STATUS_INTERNAL; break;
    }
    if (st == PCLIP_STATUS_DEVICE_LOST && !s->lost) {
        s->lost = true;
        snprintf(s->lost_why, sizeof s->lost_why, "%s: %s", what, pclip__vk_result_name(r));
    }
    return pclip__err(s->ctx, st, "vulkan: %s: %s", what, pclip__vk_result_name(r));
}

static atomic_int validation_total;

int32_t pclip__vk_validation_total(void) { return atomic_load(&validation_total); }

pclip_status pclip__vk_check(pclip__vk *s) {
    if (s->n_messages) {
        int32_t n = s->n_messages;
        s->n_messages = 0;
        return pclip__err(s->ctx, PCLIP_STATUS_INTERNAL,
                          "vulkan: validation layer reported %d message%s; the first: %s", n,
                          n == 1 ? "" : "s", s->message);
    }
    if (s->lost)
        return pclip__err(s->ctx, PCLIP_STATUS_DEVICE_LOST,
                          "vulkan: the device was lost earlier (%s); destroy the backend",
                          s->lost_why);
    return PCLIP_STATUS_OK;
}

/* ---- the loader ---- */

static pthread_mutex_t loader_lock = PTHREAD_MUTEX_INITIALIZER;
static bool loader_ready, instance_fns_ready;

/* Opens libvulkan.so.1 (PORTCLIP_VK_LOADER names another file, for tests)
 * and points volk at it, once per process. */
static pclip_status loader_init(pclip_ctx_t ctx) {
    pclip_status st = PCLIP_STATUS_OK;
    pthread_mutex_lock(&loader_lock);
    if (!loader_ready) {
        const char *name = getenv("PORTCLIP_VK_LOADER");
        if (!name || !*name) name = "libvulkan.so.1";
        /* kept open for the life of the process: volk's pointers live in it */
        void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        PFN_vkGetInstanceProcAddr gipa = NULL;
        if (lib) *(void **)&gipa = dlsym(lib, "vkGetInstanceProcAddr");
        if (!gipa) {
            const char *why = dlerror();
            st = pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                            "vulkan: no Vulkan loader (%s) found: %s", name,
                            why ? why : "no vkGetInstanceProcAddr in it");
            if (lib) dlclose(lib);
        } else {
            volkInitializeCustom(gipa);
            loader_ready = true;
        }
    }
    pthread_mutex_unlock(&loader_lock);
    if (!st && !vkEnumerateInstanceVersion)
        st = pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                        "vulkan: the Vulkan loader supports only Vulkan 1.0 (1.1 needed)");
    return st;
}

/* ---- instances ---- */

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                 VkDebugUtilsMessageTypeFlagsEXT type,
                                                 const VkDebugUtilsMessengerCallbackDataEXT *data,
                                                 void *user) {
    pclip__vk *s = user;
    if (!(type & VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT) ||
        severity < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)
        return VK_FALSE;
    atomic_fetch_add(&validation_total, 1);
    if (s->n_messages++ == 0)
        snprintf(s->message, sizeof s->message, "%s",
                 data && data->pMessage ? data->pMessage : "(no text)");
    return VK_FALSE;
}

/* The lookups below return 1 (present), 0 (absent) or -1 (out of memory:
 * every allocation failure must surface as OUT_OF_MEMORY). */
static int has_layer(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return 0;
    VkLayerProperties *p = pclip__calloc(n, sizeof *p);
    if (!p) return -1;
    int found = 0;
    if (vkEnumerateInstanceLayerProperties(&n, p) >= 0)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(p[i].layerName, name) == 0;
    pclip__free(p);
    return found;
}

static int has_instance_ext(const char *layer, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, NULL) != VK_SUCCESS || n == 0) return 0;
    VkExtensionProperties *p = pclip__calloc(n, sizeof *p);
    if (!p) return -1;
    int found = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, p) >= 0)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(p[i].extensionName, name) == 0;
    pclip__free(p);
    return found;
}

static pclip_status oom(pclip_ctx_t ctx) {
    return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
}

#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

/* An instance for `s` (s->validation: with the layer and a messenger). */
static pclip_status instance_create(pclip__vk *s) {
    pclip_ctx_t ctx = s->ctx;
    pclip_status st = loader_init(ctx);
    if (st) return st;
    uint32_t loader_api = VK_API_VERSION_1_0;
    vkEnumerateInstanceVersion(&loader_api);
    if (loader_api < VK_API_VERSION_1_1)
        return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                          "vulkan: the Vulkan loader supports only Vulkan 1.0 (1.1 needed)");
    const char *exts[4];
    uint32_t n_exts = 0;
    VkInstanceCreateFlags flags = 0;
    int have = has_instance_ext(NULL, "VK_KHR_portability_enumeration");
    if (have < 0) return oom(ctx);
    if (have) {
        exts[n_exts++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }
    const char *layers[1] = {VALIDATION_LAYER};
    VkValidationFeatureEnableEXT enables[] = {
        VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
    VkValidationFeaturesEXT features = {
        .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
        .enabledValidationFeatureCount = 1,
        .pEnabledValidationFeatures = enables,
    };
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT,
        .pfnUserCallback = on_message,
        .pUserData = s,
    };
    if (s->validation) {
        if ((have = has_layer(VALIDATION_LAYER)) < 0) return oom(ctx);
        if (!have)
            return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                              "vulkan: PORTCLIP_VK_VALIDATION=1 but the %s layer is not installed "
                              "(Debian: vulkan-validationlayers)",
                              VALIDATION_LAYER);
        if ((have = has_instance_ext(VALIDATION_LAYER, VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) < 0)
            return oom(ctx);
        if (!have)
            return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                              "vulkan: PORTCLIP_VK_VALIDATION=1 but the layer lacks %s",
                              VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
        exts[n_exts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
        if ((have = has_instance_ext(VALIDATION_LAYER, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME)) <
            0)
            return oom(ctx);
        if (have) {
            exts[n_exts++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
            mci.pNext = &features;
        }
    }
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "portclip",
        .pEngineName = "portclip",
        .engineVersion =
            VK_MAKE_API_VERSION(0, PCLIP_VERSION_MAJOR, PCLIP_VERSION_MINOR, PCLIP_VERSION_PATCH),
        /* the newest version we know; devices are still required to have 1.1 only */
        .apiVersion = loader_api < VK_API_VERSION_1_3 ? loader_api : VK_API_VERSION_1_3,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = s->validation ? &mci : NULL,
        .flags = flags,
        .pApplicationInfo = &app,
        .enabledLayerCount = s->validation ? 1 : 0,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = n_exts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, &s->instance);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
        return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                          "vulkan: no Vulkan device (driver) found (vkCreateInstance: "
                          "VK_ERROR_INCOMPATIBLE_DRIVER; check the ICD files or "
                          "VK_ICD_FILENAMES / VK_DRIVER_FILES)");
    if (r != VK_SUCCESS) {
        s->instance = VK_NULL_HANDLE;
        return pclip__vk_result(s, r, "vkCreateInstance");
    }
    /* volk's instance-level pointers are the loader's trampolines, the same
     * for every instance: loading them once is enough */
    pthread_mutex_lock(&loader_lock);
    if (!instance_fns_ready) volkLoadInstanceOnly(s->instance);
    instance_fns_ready = true;
    pthread_mutex_unlock(&loader_lock);
    if (s->validation) {
        PFN_vkCreateDebugUtilsMessengerEXT create =
            (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                s->instance, "vkCreateDebugUtilsMessengerEXT");
        s->destroy_messenger = (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
            s->instance, "vkDestroyDebugUtilsMessengerEXT");
        mci.pNext = NULL;
        if (!create || !s->destroy_messenger)
            return pclip__err(ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                              "vulkan: vkCreateDebugUtilsMessengerEXT is missing");
        r = create(s->instance, &mci, NULL, &s->messenger);
        if (r != VK_SUCCESS) return pclip__vk_result(s, r, "vkCreateDebugUtilsMessengerEXT");
    }
    return PCLIP_STATUS_OK;
}

static void instance_destroy(pclip__vk *s) {
    if (s->messenger) s->destroy_messenger(s->instance, s->messenger, NULL);
    s->messenger = VK_NULL_HANDLE;
    if (s->instance) vkDestroyInstance(s->instance, NULL);
    s->instance = VK_NULL_HANDLE;
}

/* ---- physical devices ---- */

static bool in_list(const VkExtensionProperties *p, uint32_t n, const char *name) {
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(p[i].extensionName, name) == 0) return true;
    return false;
}

/* Fills c for pd; *usable false when the device cannot run us (Vulkan < 1.1
 * or no compute queue). */
static pclip_status caps_read(pclip_ctx_t ctx, VkPhysicalDevice pd, uint32_t instance_api,
                              pclip__vk_caps *c, bool *usable) {
    memset(c, 0, sizeof *c);
    *usable = false;
    vkGetPhysicalDeviceProperties(pd, &c->props);
    c->api = c->props.apiVersion < instance_api ? c->props.apiVersion : instance_api;
    if (c->api < VK_API_VERSION_1_1) return PCLIP_STATUS_OK;
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qf[64];
    if (nq > 64) nq = 64;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    c->queue_family = UINT32_MAX;
    for (uint32_t i = 0; i < nq && c->queue_family == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT && qf[i].queueCount > 0) c->queue_family = i;
    if (c->queue_family == UINT32_MAX) return PCLIP_STATUS_OK;

    uint32_t n_ext = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n_ext, NULL) != VK_SUCCESS) n_ext = 0;
    VkExtensionProperties *ext = pclip__calloc(n_ext + 1, sizeof *ext);
    if (!ext) return oom(ctx);
    if (n_ext && vkEnumerateDeviceExtensionProperties(pd, NULL, &n_ext, ext) < 0) n_ext = 0;
    const bool v12 = c->api >= VK_API_VERSION_1_2;
    const bool driver_ext = v12 || in_list(ext, n_ext, "VK_KHR_driver_properties");
    const bool f16_ext = v12 || in_list(ext, n_ext, "VK_KHR_shader_float16_int8");
    c->memory_budget = in_list(ext, n_ext, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    c->coopmat_khr = in_list(ext, n_ext, "VK_KHR_cooperative_matrix");
    c->coopmat_nv = in_list(ext, n_ext, "VK_NV_cooperative_matrix");
    c->portability_subset = in_list(ext, n_ext, "VK_KHR_portability_subset");
    pclip__free(ext);

    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, .pNext = &sg};
    if (driver_ext) sg.pNext = &drv;
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &m3};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    c->subgroup_size = sg.subgroupSize;
    c->subgroup_ballot = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                         (sg.supportedOperations & VK_SUBGROUP_FEATURE_BALLOT_BIT);
    c->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                        (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
                        (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
    c->max_alloc = m3.maxMemoryAllocationSize;
    if (driver_ext) {
        memcpy(c->driver_name, drv.driverName, sizeof c->driver_name);
        memcpy(c->driver_info, drv.driverInfo, sizeof c->driver_info);
        c->driver_name[sizeof c->driver_name - 1] = c->driver_info[sizeof c->driver_info - 1] = 0;
    }

    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        .pNext = f16_ext ? &f16 : NULL};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                    .pNext = &s16};
    vkGetPhysicalDeviceFeatures2(pd, &f2);
    c->fp16_arith = f16_ext && f16.shaderFloat16;
    c->fp16_storage = s16.storageBuffer16BitAccess;
    vkGetPhysicalDeviceMemoryProperties(pd, &c->mem);
    *usable = true;
    return PCLIP_STATUS_OK;
}

static const char *vendor_name(uint32_t id, char *buf, size_t n) {
    switch (id) {
    case 0x1002: return "AMD";
    case 0x10DE: return "NVIDIA";
    case 0x8086: return "Intel";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "Imagination";
    case 0x106B: return "Apple";
    case 0x10005: return "Mesa";
    default: snprintf(buf, n, "0x%04x", id); return buf;
    }
}

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

static void info_fill(const pclip__vk_caps *c, pclip__device_info *d) {
    memset(d, 0, sizeof *d);
    char vbuf[16];
    snprintf(d->name, sizeof d->name, "%s", c->props.deviceName);
    snprintf(d->vendor, sizeof d->vendor, "%s", vendor_name(c->props.vendorID, vbuf, sizeof vbuf));
    snprintf(d->type, sizeof d->type, "%s", type_name(c->props.deviceType));
    if (c->driver_name[0])
        snprintf(d->driver, sizeof d->driver, "%s %s", c->driver_name, c->driver_info);
    else
        snprintf(d->driver, sizeof d->driver, "driver version 0x%08x", c->props.driverVersion);
    uint32_t v = c->props.apiVersion;
    snprintf(d->api_version, sizeof d->api_version, "Vulkan %u.%u.%u", VK_API_VERSION_MAJOR(v),
             VK_API_VERSION_MINOR(v), VK_API_VERSION_PATCH(v));
    for (uint32_t h = 0; h < c->mem.memoryHeapCount; h++)
        if (c->mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT &&
            c->mem.memoryHeaps[h].size > d->memory_bytes)
            d->memory_bytes = c->mem.memoryHeaps[h].size;
    d->subgroup_size = (int32_t)c->subgroup_size;
    snprintf(d->features, sizeof d->features, "%s%s%s%s%sshared=%uKiB max-binding=%lluMiB",
             c->fp16_arith ? "fp16-arithmetic " : "", c->fp16_storage ? "fp16-storage " : "",
             c->subgroup_arith ? "subgroup-arithmetic " : "",
             c->coopmat_khr  ? "cooperative-matrix "
             : c->coopmat_nv ? "cooperative-matrix-nv "
                             : "",
             c->memory_budget ? "memory-budget " : "",
             c->props.limits.maxComputeSharedMemorySize / 1024,
             (unsigned long long)(c->props.limits.maxStorageBufferRange >> 20));
    /* a CPU implementation (lavapipe, SwiftShader): `auto` skips it */
    d->software = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    snprintf(d->precisions, sizeof d->precisions, "fp32%s", c->fp16_storage ? " fp16" : "");
    snprintf(d->precision_why, sizeof d->precision_why, "bf16: runs on the cpu backend only%s",
             c->fp16_storage ? "" : "; fp16: the device lacks storageBuffer16BitAccess");
}

#define MAX_PHYS 16

/* The usable physical devices of s->instance, in the loader's order. */
static pclip_status devices_enumerate(pclip__vk *s, VkPhysicalDevice *out, pclip__vk_caps *caps,
                                      int32_t *count) {
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(s->instance, &n, NULL);
    if (r != VK_SUCCESS) return pclip__vk_result(s, r, "vkEnumeratePhysicalDevices");
    VkPhysicalDevice all[MAX_PHYS];
    if (n > MAX_PHYS) n = MAX_PHYS;
    r = vkEnumeratePhysicalDevices(s->instance, &n, all);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return pclip__vk_result(s, r, "vkEnumeratePhysicalDevices");
    uint32_t api = VK_API_VERSION_1_0;
    vkEnumerateInstanceVersion(&api);
    if (api > VK_API_VERSION_1_3) api = VK_API_VERSION_1_3;
    int32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool usable;
        pclip_status st = caps_read(s->ctx, all[i], api, &caps[k], &usable);
        if (st) return st;
        if (usable) out[k++] = all[i];
    }
    if (k == 0 && n == 0)
        return pclip__err(s->ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                          "vulkan: no Vulkan device (driver) found");
    if (k == 0)
        return pclip__err(s->ctx, PCLIP_STATUS_BACKEND_UNAVAILABLE,
                          "vulkan: no Vulkan device (driver) found with Vulkan 1.1 and a compute "
                          "queue (%u older device%s)",
                          n, n == 1 ? "" : "s");
    *count = k;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__vk_precision_check(void *state, pclip_precision p) {
    pclip__vk *s = state;
    if (p == PCLIP_PRECISION_FP32) return PCLIP_STATUS_OK;
    if (p == PCLIP_PRECISION_FP16) {
        if (s->caps.fp16_storage) return PCLIP_STATUS_OK;
        return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                          "vulkan: precision fp16 needs 16-bit storage buffers "
                          "(storageBuffer16BitAccess), which %s lacks",
                          s->caps.props.deviceName);
    }
    return pclip__err(s->ctx, PCLIP_STATUS_UNSUPPORTED,
                      "vulkan: precision %s is not supported (fp32 and fp16 only; bf16 runs on "
                      "the cpu backend, device 0)",
                      pclip_precision_name(p));
}

pclip_status pclip__vk_list_devices(pclip_ctx_t ctx, pclip__device_info *out, int32_t max,
                                    int32_t *count) {
    pclip__vk s = {.ctx = ctx};
    VkPhysicalDevice pd[MAX_PHYS];
    pclip__vk_caps *caps = pclip__calloc(MAX_PHYS, sizeof *caps);
    if (!caps) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    int32_t n = 0;
    pclip_status st = instance_create(&s);
    if (!st) st = devices_enumerate(&s, pd, caps, &n);
    for (int32_t i = 0; !st && i < n && i < max; i++) info_fill(&caps[i], &out[i]);
    if (!st) *count = n;
    instance_destroy(&s);
    pclip__free(caps);
    return st;
}

/* ---- opening a device ---- */

static pclip_status device_create(pclip__vk *s) {
    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = s->caps.queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    const char *exts[3];
    uint32_t n_exts = 0;
    if (s->caps.portability_subset) exts[n_exts++] = "VK_KHR_portability_subset";
    if (s->caps.memory_budget) exts[n_exts++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;
    /* 16-bit storage (core in 1.1) where the device has it: the fp16
     * weights of precision fp16 (the matmul *_f16 variants); with it,
     * shaderFloat16 (core in 1.2, else its extension) for the fp16 products
     * of the *_f16a variants */
    const bool f16a = s->caps.fp16_storage && s->caps.fp16_arith;
    if (f16a && s->caps.api < VK_API_VERSION_1_2) exts[n_exts++] = "VK_KHR_shader_float16_int8";
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        .shaderFloat16 = VK_TRUE};
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        .pNext = f16a ? &f16 : NULL,
        .storageBuffer16BitAccess = s->caps.fp16_storage ? VK_TRUE : VK_FALSE};
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = s->caps.fp16_storage ? &s16 : NULL,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .enabledExtensionCount = n_exts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateDevice(s->phys, &dci, NULL, &s->dev);
    if (r != VK_SUCCESS) {
        s->dev = VK_NULL_HANDLE;
        return pclip__vk_result(s, r, "vkCreateDevice");
    }
    volkLoadDeviceTable(&s->vk, s->dev);
    s->vk.vkGetDeviceQueue(s->dev, s->caps.queue_family, 0, &s->queue);

    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = s->caps.queue_family,
    };
    if ((r = s->vk.vkCreateCommandPool(s->dev, &pci, NULL, &s->pool)))
        return pclip__vk_result(s, r, "vkCreateCommandPool");
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = s->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    if ((r = s->vk.vkAllocateCommandBuffers(s->dev, &cai, &s->once_cmd)))
        return pclip__vk_result(s, r, "vkAllocateCommandBuffers");
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if ((r = s->vk.vkCreateFence(s->dev, &fci, NULL, &s->once_fence)))
        return pclip__vk_result(s, r, "vkCreateFence");

    /* the one descriptor-set layout: sources 0..3, result 4 */
    VkDescriptorSetLayoutBinding b[PCLIP__VK_BINDINGS];
    for (uint32_t i = 0; i < PCLIP__VK_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = PCLIP__VK_BINDINGS,
        .pBindings = b,
    };
    if ((r = s->vk.vkCreateDescriptorSetLayout(s->dev, &lci, NULL, &s->set_layout)))
        return pclip__vk_result(s, r, "vkCreateDescriptorSetLayout");
    VkPushConstantRange pc = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .offset = 0,
        .size = PCLIP__VK_PUSH_BYTES,
    };
    VkPipelineLayoutCreateInfo plci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &s->set_layout,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pc,
    };
    if ((r = s->vk.vkCreatePipelineLayout(s->dev, &plci, NULL, &s->layout)))
        return pclip__vk_result(s, r, "vkCreatePipelineLayout");
    return pclip__vk_buffer_create(s, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, false,
                                   "a placeholder binding", &s->dummy);
}

pclip_status pclip__vk_create(pclip_ctx_t ctx, int32_t device, void **out) {
    pclip__vk *s = pclip__calloc(1, sizeof *s);
    if (!s) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    s->ctx = ctx;
    /* the variables of the table in vk.h; a bad value fails the open */
    int64_t validation = 0, max_alloc_mib = 0, max_binding_mib = 0;
    s->timeout_ms = -1;
    pclip_status st = pclip__env_int(ctx, "PORTCLIP_VK_VALIDATION", 0, 1, 0, &validation);
    if (!st) st = pclip__env_int(ctx, "PORTCLIP_VK_MAX_ALLOC_MIB", 0, 1 << 24, 0, &max_alloc_mib);
    if (!st)
        st = pclip__env_int(ctx, "PORTCLIP_VK_MAX_BINDING_MIB", 0, 1 << 24, 0, &max_binding_mib);
    if (!st)
        st = pclip__env_int(ctx, "PORTCLIP_VK_TIMEOUT_MS", 0, (int64_t)1 << 40, -1,
                            &s->timeout_ms);
    if (st) pclip__err_prefix(ctx, "vulkan");
    s->validation = validation == 1;
    s->test_max_alloc = (uint64_t)max_alloc_mib << 20;
    VkPhysicalDevice pd[MAX_PHYS];
    pclip__vk_caps *caps = st ? NULL : pclip__calloc(MAX_PHYS, sizeof *caps);
    int32_t n = 0;
    if (!st && !caps) st = pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "vulkan: out of memory");
    if (!st) st = instance_create(s);
    if (!st) st = devices_enumerate(s, pd, caps, &n);
    if (!st && (device < 0 || device >= n))
        st = pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                        "vulkan: device %d does not exist (%d device%s)", device, n,
                        n == 1 ? "" : "s");
    if (!st) {
        s->phys = pd[device];
        s->caps = caps[device];
        const VkPhysicalDeviceLimits *lim = &s->caps.props.limits;
        /* every pipeline binds an op's sources and its result */
        if (lim->maxPerStageDescriptorStorageBuffers < PCLIP__VK_BINDINGS)
            st = pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                            "vulkan: %s allows %u storage buffers per shader stage; portclip "
                            "binds %d",
                            s->caps.props.deviceName, lim->maxPerStageDescriptorStorageBuffers,
                            PCLIP__VK_BINDINGS);
        /* the planner places arena tensors at multiples of PCLIP__ALIGN */
        else if (lim->minStorageBufferOffsetAlignment > PCLIP__ALIGN)
            st = pclip__err(ctx, PCLIP_STATUS_UNSUPPORTED,
                            "vulkan: %s needs storage-buffer offsets aligned to %llu bytes; the "
                            "graph planner aligns tensors to %d",
                            s->caps.props.deviceName,
                            (unsigned long long)lim->minStorageBufferOffsetAlignment, PCLIP__ALIGN);
        s->align =
            lim->minStorageBufferOffsetAlignment > 16 ? lim->minStorageBufferOffsetAlignment : 16;
        s->max_range = lim->maxStorageBufferRange;
        uint64_t cap = (uint64_t)max_binding_mib << 20;
        if (cap && cap < s->max_range) s->max_range = cap;
    }
    pclip__free(caps);
    if (!st) st = device_create(s);
    if (!st) st = pclip__vk_tuning_init(s);
    if (!st) st = pclip__vk_check(s); /* messages from creating the instance or device */
    if (st) {
        pclip__err_kept kept;
        pclip__err_keep(ctx, &kept);
        pclip__vk_destroy(s);
        pclip__err_restore(ctx, &kept);
        return st;
    }
    *out = s;
    return PCLIP_STATUS_OK;
}

void pclip__vk_destroy(void *state) {
    pclip__vk *s = state;
    if (!s) return;
    if (s->dev) {
        /* waits even for a run that timed out: nothing is destroyed in use */
        s->vk.vkDeviceWaitIdle(s->dev);
        pclip__vk_pipelines_destroy(s);
        pclip__vk_memory_destroy(s);
        pclip__vk_buffer_destroy(s, &s->dummy);
        if (s->layout) s->vk.vkDestroyPipelineLayout(s->dev, s->layout, NULL);
        if (s->set_layout) s->vk.vkDestroyDescriptorSetLayout(s->dev, s->set_layout, NULL);
        if (s->once_fence) s->vk.vkDestroyFence(s->dev, s->once_fence, NULL);
        if (s->pool) s->vk.vkDestroyCommandPool(s->dev, s->pool, NULL);
        s->vk.vkDestroyDevice(s->dev, NULL);
    }
    instance_destroy(s);
    pclip__free(s);
}

/* ---- one-shot submissions ---- */

#define ONCE_TIMEOUT_NS (120ull * 1000 * 1000 * 1000)

pclip_status pclip__vk_begin_once(pclip__vk *s) {
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    return pclip__vk_result(s, s->vk.vkBeginCommandBuffer(s->once_cmd, &bi),
                            "vkBeginCommandBuffer");
}

pclip_status pclip__vk_submit_once(pclip__vk *s, const char *what) {
    VkResult r = s->vk.vkEndCommandBuffer(s->once_cmd);
    if (r) return pclip__vk_result(s, r, "vkEndCommandBuffer");
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &s->once_cmd,
    };
    if ((r = s->vk.vkQueueSubmit(s->queue, 1, &si, s->once_fence)))
        return pclip__vk_result(s, r, "vkQueueSubmit");
    r = s->vk.vkWaitForFences(s->dev, 1, &s->once_fence, VK_TRUE, ONCE_TIMEOUT_NS);
    if (r == VK_TIMEOUT) {
        pclip__vk_result(s, r, what);
        return pclip__err(s->ctx, PCLIP_STATUS_DEVICE_LOST,
                          "vulkan: %s did not finish within %llu s; the device is treated as lost",
                          what, ONCE_TIMEOUT_NS / 1000000000ull);
    }
    if (r) return pclip__vk_result(s, r, "vkWaitForFences");
    return pclip__vk_result(s, s->vk.vkResetFences(s->dev, 1, &s->once_fence), "vkResetFences");
}
