/* Whole-file reads, private in-memory copies of checkpoints, outputs (temp
 * file then rename, or written in place when the target is not a regular
 * file), the registry of live temp files that a signal handler may remove,
 * and path helpers. POSIX (Linux) only.
 *
 * Inputs are opened without blocking and must be regular files, so a FIFO or
 * a device given as an image, config or checkpoint is refused at once rather
 * than hanging. Checkpoints are read (read(2)) into private memory instead of
 * being mapped: a file truncated while it loads is a clean error, not SIGBUS,
 * and a file rewritten after load cannot change the numbers. */
#define _GNU_SOURCE /* O_NOFOLLOW, getrandom */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- reading ---- */

static pclip_status open_regular(pclip_ctx_t ctx, const char *path, const char *what, int *fd_out,
                                 size_t *size_out) {
    /* O_NONBLOCK: opening a FIFO with no writer must not wait for one */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return pclip__err(ctx, e == ENOENT ? PCLIP_STATUS_NOT_FOUND : PCLIP_STATUS_IO,
                          "%s '%s': cannot open: %s", what, path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_IO, "%s '%s': cannot stat: %s", what, path,
                          strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_IO, "%s '%s': is a directory, not a file", what, path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_IO, "%s '%s': not a regular file (%s)", what, path,
                          S_ISFIFO(st.st_mode)                        ? "a FIFO or pipe"
                          : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                          : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                                       : "not a plain file");
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX / 2) {
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "%s '%s': too large", what, path);
    }
    *fd_out = fd;
    *size_out = (size_t)st.st_size;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__read_file(pclip_ctx_t ctx, const char *path, const char *what, size_t limit,
                              char **out, size_t *out_len) {
    int fd = -1;
    size_t size = 0;
    pclip_status st = open_regular(ctx, path, what, &fd, &size);
    if (st) return st;
    if (size > limit) {
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_LIMIT, "%s '%s': %zu bytes, over the limit of %zu",
                          what, path, size, limit);
    }
    char *buf = pclip__malloc(size + 1);
    if (!buf) {
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "%s '%s': out of memory (%zu bytes for its contents)", what, path,
                          size + 1);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            pclip__free(buf);
            close(fd);
            if (r == 0)
                return pclip__err(ctx, PCLIP_STATUS_IO,
                                  "%s '%s': the file shrank from %zu to %zu bytes while it was "
                                  "read (changed by another process?)",
                                  what, path, size, got);
            return pclip__err(ctx, PCLIP_STATUS_IO, "%s '%s': read failed: %s", what, path,
                              strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    if (out_len) *out_len = size;
    return PCLIP_STATUS_OK;
}

/* read() into anonymous memory rather than mmap of the file: the copy is
 * private, so truncating or rewriting the file later changes nothing, and a
 * file that shrinks while it is read is a short read (an error), where a map
 * would raise SIGBUS on the missing pages. Measured on the ViT-B/32-shaped
 * bench checkpoint (README): the copy costs about as long as the first touch
 * of the map's pages did. */
pclip_status pclip__mmap_open(pclip_ctx_t ctx, const char *path, const char *what,
                              pclip__mmap *out) {
    int fd = -1;
    size_t size = 0;
    pclip_status st = open_regular(ctx, path, what, &fd, &size);
    if (st) return st;
    if (size == 0) {
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_BAD_FORMAT, "%s '%s': file is empty", what, path);
    }
    /* anonymous pages: page-aligned (tensor data keeps the file's alignment)
     * and given back whole on close */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY,
                          "%s '%s': out of memory (%zu bytes to hold the file)", what, path, size);
    }
    /* huge pages where the kernel allows them: a fault per 2 MiB instead of
     * per 4 KiB makes the copy several times faster */
    madvise(p, size, MADV_HUGEPAGE);
    size_t got = 0;
    while (got < size) {
        size_t chunk = size - got < ((size_t)1 << 30) ? size - got : ((size_t)1 << 30);
        ssize_t r = read(fd, (uint8_t *)p + got, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            munmap(p, size);
            close(fd);
            if (r == 0)
                return pclip__err(ctx, PCLIP_STATUS_IO,
                                  "%s '%s': the file shrank from %zu to %zu bytes while it was "
                                  "read (truncated or replaced by another process?)",
                                  what, path, size, got);
            return pclip__err(ctx, PCLIP_STATUS_IO, "%s '%s': read failed: %s", what, path,
                              strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    mprotect(p, size, PROT_READ); /* a stray write is a crash, not a silent change */
    out->data = p;
    out->size = size;
    return PCLIP_STATUS_OK;
}

void pclip__mmap_close(pclip__mmap *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

char *pclip__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a > 0 && dir[a - 1] != '/';
    char *p = pclip__malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a++] = '/';
    memcpy(p + a, name, b + 1);
    return p;
}

bool pclip__file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- the registry of live temp files ---- */

/* Temp files being written, for pclip_output_temps_remove(), which a signal
 * handler may call: fixed slots of plain memory, a slot's path written before
 * its flag is set (release) and read only after the flag is seen (acquire),
 * so the handler never sees a half-written path and needs no lock. */
#define TEMP_SLOTS 32
static struct {
    atomic_int state; /* 0 free, 1 being filled, 2 live */
    char path[PATH_MAX];
} temp_slots[TEMP_SLOTS];

/* Returns the slot + 1, or 0 when none is free (then that file is not
 * removed on a signal: more than TEMP_SLOTS outputs at once). */
static int temp_register(const char *path) {
    if (strlen(path) >= PATH_MAX) return 0;
    for (int i = 0; i < TEMP_SLOTS; i++) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&temp_slots[i].state, &expect, 1)) {
            memcpy(temp_slots[i].path, path, strlen(path) + 1);
            atomic_store_explicit(&temp_slots[i].state, 2, memory_order_release);
            return i + 1;
        }
    }
    return 0;
}

static void temp_unregister(int slot) {
    if (slot > 0 && slot <= TEMP_SLOTS) atomic_store(&temp_slots[slot - 1].state, 0);
}

void pclip_output_temps_remove(void) {
    for (int i = 0; i < TEMP_SLOTS; i++)
        if (atomic_load_explicit(&temp_slots[i].state, memory_order_acquire) == 2)
            unlink(temp_slots[i].path); /* async-signal-safe */
}

/* ---- outputs ---- */

/* Where writing `path` really goes. Symlinks are followed (a relative link
 * from the link's folder) so that a link to a file has its target replaced
 * beside the target, and the link stays. /dev/stdout, /dev/fd/N and
 * /proc/self/fd/N are the process's own descriptor N: written to directly.
 * On success *resolved is allocated, *fd_alias is N or -1. */
static pclip_status resolve_output(pclip_ctx_t ctx, const char *path, char **resolved,
                                   int *fd_alias) {
    *fd_alias = -1;
    char *cur = pclip__strdup(path);
    if (!cur) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "output '%s': out of memory", path);
    for (int hops = 0;; hops++) {
        static const char *const fd_dirs[] = {"/dev/fd/", "/proc/self/fd/"};
        for (int k = 0; k < 2; k++) {
            size_t n = strlen(fd_dirs[k]);
            if (strncmp(cur, fd_dirs[k], n) == 0 && cur[n]) {
                char *end;
                long fd = strtol(cur + n, &end, 10);
                if (!*end && fd >= 0 && fd < INT_MAX) {
                    *fd_alias = (int)fd;
                    *resolved = cur;
                    return PCLIP_STATUS_OK;
                }
            }
        }
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) break; /* a missing file is created */
        if (hops == 40) {
            pclip__free(cur);
            return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': too many levels of symlinks",
                              path);
        }
        char link[PATH_MAX];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) {
            int e = errno;
            pclip__free(cur);
            return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': cannot read the link: %s", path,
                              strerror(e));
        }
        link[n] = '\0';
        char *next;
        const char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) {
            next = pclip__strdup(link);
        } else {
            size_t dl = (size_t)(slash - cur) + 1;
            next = pclip__malloc(dl + (size_t)n + 1);
            if (next) {
                memcpy(next, cur, dl);
                memcpy(next + dl, link, (size_t)n + 1);
            }
        }
        pclip__free(cur);
        if (!next)
            return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "output '%s': out of memory", path);
        cur = next;
    }
    *resolved = cur;
    return PCLIP_STATUS_OK;
}

/* The mode a new file gets: 0666 less the umask. The umask is read from
 * /proc (Linux 4.7+) because umask(2) cannot read it without setting it, a
 * race with other threads creating files; 022 when /proc cannot tell. */
static mode_t new_file_mode(void) {
    mode_t mask = 022;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = '\0';
            const char *u = strstr(buf, "\nUmask:");
            if (u) mask = (mode_t)strtol(u + 7, NULL, 8) & 0777;
        }
    }
    return 0666 & ~mask;
}

/* "<dir>/<base>.tmp.<16 hex digits>": random, so nobody can plant a link at
 * the name in advance (and O_EXCL|O_NOFOLLOW refuses one anyway); the base is
 * cut so that the name fits NAME_MAX beside a 255-byte output name. */
static char *temp_name(const char *target) {
    const char *slash = strrchr(target, '/');
    size_t dl = slash ? (size_t)(slash - target) + 1 : 0;
    const char *base = target + dl;
    size_t bl = strlen(base);
    enum { SUFFIX = 5 + 16 }; /* ".tmp." + hex */
    if (bl > NAME_MAX - SUFFIX) bl = NAME_MAX - SUFFIX;
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15u ^ (uint64_t)getpid() << 32 ^
             (uint64_t)(uintptr_t)&ts;
    }
    char *t = pclip__malloc(dl + bl + SUFFIX + 1);
    if (!t) return NULL;
    memcpy(t, target, dl + bl);
    snprintf(t + dl + bl, SUFFIX + 1, ".tmp.%016llx", (unsigned long long)r);
    return t;
}

static void atomic_clear(pclip__atomic_file *f) {
    pclip__free(f->tmp_path);
    pclip__free(f->path);
    pclip__free(f->target);
    memset(f, 0, sizeof *f);
}

/* Opens a target that is not a regular file (device, FIFO, terminal, our own
 * descriptor) to be written in place. */
static pclip_status open_direct(pclip_ctx_t ctx, pclip__atomic_file *f, int fd_alias) {
    int fd;
    if (fd_alias >= 0) {
        fd = fcntl(fd_alias, F_DUPFD_CLOEXEC, 3);
    } else {
        /* O_NONBLOCK: a FIFO with no reader fails (ENXIO) instead of waiting */
        fd = open(f->target, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    }
    if (fd < 0) {
        int e = errno;
        return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': cannot open for writing: %s%s",
                          f->path, strerror(e),
                          e == ENXIO ? " (a FIFO with no reader?)" : "");
    }
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        int e = errno;
        close(fd);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "output '%s': cannot open: %s",
                          f->path, strerror(e));
    }
    f->fp = fp;
    f->direct = true;
    return PCLIP_STATUS_OK;
}

/* Resolves `path` and checks what writing it would do, without creating
 * anything: *direct says it would be written in place. */
static pclip_status check_target(pclip_ctx_t ctx, const char *path, char **target, int *fd_alias,
                                 bool *direct, struct stat *old, bool *exists) {
    if (!path || !*path)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "output: empty file name");
    if (strcmp(path, "-") == 0) {
        *target = pclip__strdup("-");
        if (!*target) return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "out of memory");
        *fd_alias = STDOUT_FILENO;
        *direct = true;
        *exists = false;
        return PCLIP_STATUS_OK;
    }
    pclip_status st = resolve_output(ctx, path, target, fd_alias);
    if (st) return st;
    *direct = *fd_alias >= 0;
    *exists = false;
    if (*direct) return PCLIP_STATUS_OK;
    if (stat(*target, old) == 0) {
        *exists = true;
        if (S_ISDIR(old->st_mode)) {
            pclip__free(*target);
            return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': is a directory", path);
        }
        *direct = !S_ISREG(old->st_mode);
        if (!*direct && access(*target, W_OK) != 0 && errno == EROFS) {
            pclip__free(*target);
            return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': read-only file system", path);
        }
        if (*direct) return PCLIP_STATUS_OK;
    } else if (errno != ENOENT) {
        int e = errno;
        pclip__free(*target);
        return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': %s", path, strerror(e));
    }
    /* the folder must exist and be writable: the temp file goes there */
    const char *slash = strrchr(*target, '/');
    char *dir = slash ? pclip__strndup(*target, slash == *target ? 1 : (size_t)(slash - *target))
                      : pclip__strdup(".");
    if (!dir) {
        pclip__free(*target);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    struct stat ds;
    int e = 0;
    if (stat(dir, &ds) != 0) e = errno;
    else if (!S_ISDIR(ds.st_mode)) e = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0) e = errno;
    if (e) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': cannot write in folder '%s': %s", path,
                        dir, strerror(e));
        pclip__free(dir);
        pclip__free(*target);
        return st;
    }
    pclip__free(dir);
    return PCLIP_STATUS_OK;
}

pclip_status pclip_output_check(pclip_ctx_t ctx, const char *path) {
    char *target = NULL;
    int fd_alias = -1;
    bool direct = false, exists = false;
    struct stat old;
    pclip_status st = check_target(ctx, path, &target, &fd_alias, &direct, &old, &exists);
    if (st) return st;
    if (direct && fd_alias < 0 && access(target, W_OK) != 0) {
        int e = errno;
        st = pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': not writable: %s", path, strerror(e));
    } else if (direct && fd_alias >= 0 && fcntl(fd_alias, F_GETFD) < 0) {
        st = pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': descriptor %d is not open", path,
                        fd_alias);
    }
    pclip__free(target);
    return st;
}

pclip_status pclip__atomic_open(pclip_ctx_t ctx, const char *path, pclip__atomic_file *f) {
    memset(f, 0, sizeof *f);
    int fd_alias = -1;
    bool direct = false, exists = false;
    struct stat old;
    pclip_status st = check_target(ctx, path, &f->target, &fd_alias, &direct, &old, &exists);
    if (st) {
        f->target = NULL; /* freed by check_target */
        return st;
    }
    if (!(f->path = pclip__strdup(path))) {
        atomic_clear(f);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "output '%s': out of memory", path);
    }
    if (direct) {
        st = open_direct(ctx, f, fd_alias);
        if (st) atomic_clear(f);
        return st;
    }
    f->mode = exists ? (old.st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID)) : new_file_mode();
    f->uid = exists ? (long)old.st_uid : -1;
    f->gid = exists ? (long)old.st_gid : -1;
    int fd = -1, e = 0;
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        pclip__free(f->tmp_path);
        if (!(f->tmp_path = temp_name(f->target))) {
            atomic_clear(f);
            return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "output '%s': out of memory", path);
        }
        /* registered before it exists, so that no signal finds it unlisted */
        f->slot = temp_register(f->tmp_path);
        fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                  0600);
        e = errno;
        if (fd < 0) {
            temp_unregister(f->slot);
            f->slot = 0;
        }
        if (fd < 0 && e != EEXIST) break;
    }
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!fp) {
        if (fd >= 0) {
            e = errno;
            close(fd);
            unlink(f->tmp_path);
            temp_unregister(f->slot);
        }
        atomic_clear(f);
        return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': cannot create a temp file: %s",
                          path, strerror(e));
    }
    f->fp = fp;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__atomic_write(pclip_ctx_t ctx, pclip__atomic_file *f, const void *data,
                                 size_t len) {
    if (!f->fp)
        return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "output: write after close");
    if (len && fwrite(data, 1, len, (FILE *)f->fp) != len) {
        int e = errno;
        return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': write failed: %s", f->path,
                          strerror(e));
    }
    return PCLIP_STATUS_OK;
}

void pclip__atomic_abort(pclip__atomic_file *f) {
    if (f->fp) fclose((FILE *)f->fp);
    if (f->tmp_path) unlink(f->tmp_path);
    temp_unregister(f->slot);
    atomic_clear(f);
}

pclip_status pclip__atomic_commit(pclip_ctx_t ctx, pclip__atomic_file *f) {
    FILE *fp = f->fp;
    if (!fp) return pclip__err(ctx, PCLIP_STATUS_INVALID_ARGUMENT, "output: commit after close");
    const char *step = "write";
    int e = 0;
    if (fflush(fp) != 0 || ferror(fp)) e = errno ? errno : EIO;
    if (!e && !f->direct) {
        /* the old file's mode and owner (the owner only where allowed) */
        if (fchmod(fileno(fp), f->mode) != 0) e = errno, step = "set the mode of";
        if (!e && f->uid >= 0 && fchown(fileno(fp), (uid_t)f->uid, (gid_t)f->gid) != 0 &&
            errno != EPERM)
            e = errno, step = "set the owner of";
        if (!e && fsync(fileno(fp)) != 0) e = errno, step = "sync";
    } else if (!e && fsync(fileno(fp)) != 0 && errno != EINVAL && errno != EROFS &&
               errno != ENOTSUP) {
        e = errno, step = "sync"; /* pipes and most devices cannot sync: not an error */
    }
    f->fp = NULL;
    if (fclose(fp) != 0 && !e) e = errno, step = "close";
    if (!e && !f->direct && rename(f->tmp_path, f->target) != 0) e = errno, step = "rename";
    if (e) {
        pclip_status st = pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': cannot %s it: %s",
                                     f->path, step, strerror(e));
        pclip__atomic_abort(f);
        return st;
    }
    temp_unregister(f->slot);
    if (!f->direct) {
        /* the rename itself, on disk: the folder's entry (failure: still renamed) */
        const char *slash = strrchr(f->target, '/');
        char *dir = slash ? pclip__strndup(f->target, slash == f->target ? 1
                                                                         : (size_t)(slash - f->target))
                          : pclip__strdup(".");
        int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        pclip__free(dir);
    }
    atomic_clear(f);
    return PCLIP_STATUS_OK;
}
