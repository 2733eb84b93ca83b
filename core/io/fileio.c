/* Whole-file reads, read-only memory maps, atomic writes (temp file, then
 * rename) and path helpers. POSIX only. */
#define _DEFAULT_SOURCE /* madvise */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ---- reading ---- */

static pclip_status open_regular(pclip_ctx_t ctx, const char *path, const char *what, int *fd_out,
                                 size_t *size_out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
        return pclip__err(ctx, PCLIP_STATUS_IO, "%s '%s': not a regular file", what, path);
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
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "%s '%s': out of memory (%zu bytes)",
                          what, path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            pclip__free(buf);
            close(fd);
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
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return pclip__err(ctx, PCLIP_STATUS_IO, "%s '%s': mmap failed: %s", what, path,
                          strerror(e));
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

void pclip__mmap_release(const void *p, size_t bytes) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice: failure is harmless */
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

/* ---- atomic writes ---- */

pclip_status pclip__atomic_open(pclip_ctx_t ctx, const char *path, pclip__atomic_file *f) {
    memset(f, 0, sizeof *f);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': is a directory", path);
    char suffix[48];
    snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    size_t n = strlen(path);
    f->tmp_path = pclip__malloc(n + strlen(suffix) + 1);
    f->path = pclip__strdup(path);
    if (!f->tmp_path || !f->path) {
        pclip__free(f->tmp_path);
        pclip__free(f->path);
        memset(f, 0, sizeof *f);
        return pclip__err(ctx, PCLIP_STATUS_OUT_OF_MEMORY, "output '%s': out of memory", path);
    }
    memcpy(f->tmp_path, path, n);
    memcpy(f->tmp_path + n, suffix, strlen(suffix) + 1);
    int fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!fp) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(f->tmp_path);
        }
        pclip__free(f->tmp_path);
        pclip__free(f->path);
        memset(f, 0, sizeof *f);
        return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': cannot create: %s", path,
                          strerror(e));
    }
    f->fp = fp;
    return PCLIP_STATUS_OK;
}

pclip_status pclip__atomic_write(pclip_ctx_t ctx, pclip__atomic_file *f, const void *data,
                                 size_t len) {
    if (len && fwrite(data, 1, len, (FILE *)f->fp) != len)
        return pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': write failed: %s", f->path,
                          strerror(errno));
    return PCLIP_STATUS_OK;
}

void pclip__atomic_abort(pclip__atomic_file *f) {
    if (f->fp) fclose((FILE *)f->fp);
    if (f->tmp_path) unlink(f->tmp_path);
    pclip__free(f->tmp_path);
    pclip__free(f->path);
    memset(f, 0, sizeof *f);
}

pclip_status pclip__atomic_commit(pclip_ctx_t ctx, pclip__atomic_file *f) {
    FILE *fp = f->fp;
    int bad = fflush(fp) != 0 || fsync(fileno(fp)) != 0;
    int e = errno;
    bad |= fclose(fp) != 0;
    f->fp = NULL;
    if (!bad && rename(f->tmp_path, f->path) != 0) {
        e = errno;
        bad = 1;
    }
    if (bad) {
        pclip_status st = pclip__err(ctx, PCLIP_STATUS_IO, "output '%s': cannot finish writing: %s",
                                     f->path, strerror(e));
        pclip__atomic_abort(f);
        return st;
    }
    pclip__free(f->tmp_path);
    pclip__free(f->path);
    memset(f, 0, sizeof *f);
    return PCLIP_STATUS_OK;
}
