/* Image inputs to a list of files: a file named by the caller is kept as it
 * is, a folder is read recursively and gives the images under it, told by
 * their first bytes (JPEG or PNG, as the decoder accepts), never by the file
 * name.
 *
 * Each folder is listed completely and closed before its subfolders are read,
 * so the depth of a tree never costs open file descriptors. Every folder is
 * read once, identified by device and inode: a symlink that leads back into a
 * folder being read (a loop) or to one already read is skipped, with the
 * reason, as are files that cannot be read, special files (FIFOs, devices,
 * sockets: never opened) and files that are not images. */
#define _DEFAULT_SOURCE /* DT_* and d_type */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Folders deeper than this below an input are skipped, with the reason. */
#define COLLECT_MAX_DEPTH 128

typedef struct path_vec {
    char **items;
    int64_t count, cap;
} path_vec;

typedef struct skipped_entry {
    char *path;
    char *reason; /* pclip_collect_skip_reason, and strerror where there is one */
    pclip_collect_skip why;
} skipped_entry;

struct pclip_path_list {
    path_vec paths;
    skipped_entry *skipped;
    int64_t n_skipped, cap_skipped;
};

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct walker {
    pclip_ctx_t ctx;
    struct pclip_path_list *list;
    uint32_t flags;
    dir_id *seen; /* every folder read so far */
    size_t n_seen, cap_seen;
    dir_id *stack; /* the folders being read, outermost first */
    size_t depth;
} walker;

static pclip_status oom(pclip_ctx_t ctx, const char *path) {
    return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "collecting images under '%s': out of memory",
                      path);
}

static bool vec_push(path_vec *v, char *s) {
    if (v->count == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        char **p = pclip__realloc(v->items, (size_t)cap * sizeof *p);
        if (!p) return false;
        v->items = p;
        v->cap = cap;
    }
    v->items[v->count++] = s;
    return true;
}

/* Takes ownership of path (freed on failure). */
static pclip_status add_path(walker *w, char *path) {
    if (!path || !vec_push(&w->list->paths, path)) {
        pclip__free(path);
        return oom(w->ctx, "a folder");
    }
    return PCLIP_STATUS_OK;
}

/* Takes ownership of path; err is the errno that says why, or 0. */
static pclip_status add_skipped(walker *w, char *path, pclip_collect_skip why, int err) {
    struct pclip_path_list *l = w->list;
    const char *base = pclip_collect_skip_reason(why);
    char *reason = pclip__malloc(strlen(base) + (err ? strlen(strerror(err)) + 2 : 0) + 1);
    if (!path || !reason) {
        pclip__free(path);
        pclip__free(reason);
        return oom(w->ctx, "a folder");
    }
    strcpy(reason, base);
    if (err) {
        strcat(reason, ": ");
        strcat(reason, strerror(err));
    }
    if (l->n_skipped == l->cap_skipped) {
        int64_t cap = l->cap_skipped ? l->cap_skipped * 2 : 16;
        skipped_entry *p = pclip__realloc(l->skipped, (size_t)cap * sizeof *p);
        if (!p) {
            pclip__free(path);
            pclip__free(reason);
            return oom(w->ctx, "a folder");
        }
        l->skipped = p;
        l->cap_skipped = cap;
    }
    l->skipped[l->n_skipped++] = (skipped_entry){path, reason, why};
    return PCLIP_STATUS_OK;
}

static bool same_dir(dir_id a, dir_id b) { return a.dev == b.dev && a.ino == b.ino; }

/* JPEG (FF D8 FF) or PNG (its 8-byte signature), as pclip_image_decode tells
 * them. Opened without blocking; the caller made sure it is a regular file. */
static pclip_collect_skip sniff(const char *path, int *err) {
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        *err = errno;
        return PCLIP_COLLECT_UNREADABLE;
    }
    uint8_t head[8];
    size_t got = 0;
    while (got < sizeof head) {
        ssize_t r = read(fd, head + got, sizeof head - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            *err = errno;
            close(fd);
            return PCLIP_COLLECT_UNREADABLE;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF)
        return PCLIP_COLLECT_INCLUDED;
    if (got == sizeof head && memcmp(head, png, sizeof png) == 0) return PCLIP_COLLECT_INCLUDED;
    return PCLIP_COLLECT_NOT_IMAGE;
}

/* "dir" + "/" + "name", with one slash however many dir ends with. */
static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    bool slash = !(n == 1 && dir[0] == '/');
    size_t len = n + (slash ? 1 : 0) + strlen(name);
    char *s = pclip__malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, dir, n);
    if (slash) s[n] = '/';
    strcpy(s + n + (slash ? 1 : 0), name);
    return s;
}

static pclip_status walk_dir(walker *w, const char *path, dir_id id);

/* One entry of a folder, which may be anything. Takes ownership of path. */
static pclip_status walk_entry(walker *w, char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return add_skipped(w, path, PCLIP_COLLECT_UNREADABLE, errno);
    if (S_ISDIR(st.st_mode)) {
        dir_id id = {st.st_dev, st.st_ino};
        pclip_status s = walk_dir(w, path, id);
        pclip__free(path);
        return s;
    }
    if (!S_ISREG(st.st_mode)) return add_skipped(w, path, PCLIP_COLLECT_SPECIAL, 0);
    int err = 0;
    pclip_collect_skip why = sniff(path, &err);
    if (why == PCLIP_COLLECT_INCLUDED) return add_path(w, path);
    return add_skipped(w, path, why, err);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Lists path's entries (sorted, hidden ones left out unless asked), closes
 * it, then walks each. path is borrowed. */
static pclip_status walk_dir(walker *w, const char *path, dir_id id) {
    for (size_t i = 0; i < w->depth; i++)
        if (same_dir(w->stack[i], id))
            return add_skipped(w, pclip__strdup(path), PCLIP_COLLECT_LOOP, 0);
    for (size_t i = 0; i < w->n_seen; i++)
        if (same_dir(w->seen[i], id))
            return add_skipped(w, pclip__strdup(path), PCLIP_COLLECT_DUPLICATE, 0);
    if (w->depth >= COLLECT_MAX_DEPTH)
        return add_skipped(w, pclip__strdup(path), PCLIP_COLLECT_TOO_DEEP, 0);

    if (w->n_seen == w->cap_seen) {
        size_t cap = w->cap_seen ? w->cap_seen * 2 : 64;
        dir_id *p = pclip__realloc(w->seen, cap * sizeof *p);
        if (!p) return oom(w->ctx, path);
        w->seen = p;
        w->cap_seen = cap;
    }
    w->seen[w->n_seen++] = id;

    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        return add_skipped(w, pclip__strdup(path), PCLIP_COLLECT_UNREADABLE, e);
    }
    path_vec names = {0};
    pclip_status s = PCLIP_STATUS_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            int e = errno;
            if (e) s = add_skipped(w, pclip__strdup(path), PCLIP_COLLECT_UNREADABLE, e);
            break;
        }
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) continue;
        if (nm[0] == '.' && !(w->flags & PCLIP_COLLECT_HIDDEN)) continue;
        char *copy = pclip__strdup(nm);
        if (!copy || !vec_push(&names, copy)) {
            pclip__free(copy);
            s = oom(w->ctx, path);
            break;
        }
    }
    closedir(d);
    if (!s && names.count > 1)
        qsort(names.items, (size_t)names.count, sizeof *names.items, cmp_name);

    w->stack[w->depth++] = id;
    for (int64_t i = 0; i < names.count && !s; i++) s = walk_entry(w, join(path, names.items[i]));
    w->depth--;
    for (int64_t i = 0; i < names.count; i++) pclip__free(names.items[i]);
    pclip__free(names.items);
    return s;
}

static int cmp_path(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

pclip_status pclip_collect_images(pclip_ctx_t ctx, const char *const *inputs, int64_t n,
                                  uint32_t flags, pclip_path_list_t *out) {
    if (!out || n < 0 || (n > 0 && !inputs) || (flags & ~(uint32_t)PCLIP_COLLECT_HIDDEN)) {
        if (out) *out = NULL;
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                          "collect images: NULL output or inputs, n < 0, or unknown flags");
    }
    *out = NULL;
    for (int64_t i = 0; i < n; i++)
        if (!inputs[i] || !inputs[i][0])
            return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT,
                              "collect images: input %lld is an empty path", (long long)i);
    struct pclip_path_list *l = pclip__calloc(1, sizeof *l);
    dir_id *stack = pclip__malloc(COLLECT_MAX_DEPTH * sizeof *stack);
    if (!l || !stack) {
        pclip__free(l);
        pclip__free(stack);
        return oom(ctx, n > 0 ? inputs[0] : "");
    }
    walker w = {.ctx = ctx, .list = l, .flags = flags, .stack = stack};
    pclip_status s = PCLIP_STATUS_OK;
    for (int64_t i = 0; i < n && !s; i++) {
        struct stat st;
        /* Only folders are expanded; anything else is the caller's to read,
         * and reading it reports what is wrong with it. */
        if (stat(inputs[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            s = add_path(&w, pclip__strdup(inputs[i]));
            continue;
        }
        int64_t from = l->paths.count;
        s = walk_dir(&w, inputs[i], (dir_id){st.st_dev, st.st_ino});
        /* A folder's images come in the byte order of their paths. */
        if (!s && l->paths.count - from > 1)
            qsort(l->paths.items + from, (size_t)(l->paths.count - from), sizeof *l->paths.items,
                  cmp_path);
    }
    pclip__free(w.seen);
    pclip__free(stack);
    if (s) {
        pclip_path_list_destroy(l);
        return s;
    }
    *out = l;
    return PCLIP_STATUS_OK;
}

int64_t pclip_path_list_count(pclip_path_list_t l) { return l ? l->paths.count : 0; }

const char *const *pclip_path_list_paths(pclip_path_list_t l) {
    return l ? (const char *const *)l->paths.items : NULL;
}

int64_t pclip_path_list_skipped_count(pclip_path_list_t l) { return l ? l->n_skipped : 0; }

const char *pclip_path_list_skipped(pclip_path_list_t l, int64_t i, pclip_collect_skip *why,
                                    const char **reason) {
    if (!l || i < 0 || i >= l->n_skipped) return NULL;
    if (why) *why = l->skipped[i].why;
    if (reason) *reason = l->skipped[i].reason;
    return l->skipped[i].path;
}

const char *pclip_collect_skip_reason(pclip_collect_skip why) {
    switch (why) {
    case PCLIP_COLLECT_INCLUDED: return "an image";
    case PCLIP_COLLECT_NOT_IMAGE: return "not a JPEG or PNG file";
    case PCLIP_COLLECT_UNREADABLE: return "cannot be read";
    case PCLIP_COLLECT_SPECIAL: return "not a regular file (FIFO, device or socket)";
    case PCLIP_COLLECT_LOOP: return "a symlink loop (the folder contains itself)";
    case PCLIP_COLLECT_DUPLICATE: return "a folder already read through another path";
    case PCLIP_COLLECT_TOO_DEEP: return "nested too deep";
    }
    return "?";
}

void pclip_path_list_destroy(pclip_path_list_t l) {
    if (!l) return;
    for (int64_t i = 0; i < l->paths.count; i++) pclip__free(l->paths.items[i]);
    pclip__free(l->paths.items);
    for (int64_t i = 0; i < l->n_skipped; i++) {
        pclip__free(l->skipped[i].path);
        pclip__free(l->skipped[i].reason);
    }
    pclip__free(l->skipped);
    pclip__free(l);
}
