/* Storage faults for the reliability suite, preloaded into a real service (tests/rig.py, FaultFs).
 *
 * 1. A hard stop between write and sync: every fsync()/fdatasync() whose file path contains
 *    PDM_FSYNC_MATCH (all files when unset) is counted; on entering the PDM_FSYNC_KILL_AT-th one the
 *    process writes "<n> <path>" to PDM_FSYNC_REPORT and kills itself with SIGKILL, so what it wrote
 *    since its last sync was never confirmed, and no clean-up runs. SQLite (WAL, synchronous=FULL)
 *    syncs through these two calls on Linux, and so does os.fsync.
 * 2. A file system that turns read-only (or full) under a running process: while the file
 *    PDM_FAULT_FLAG exists, every write, sync, truncate, create, rename, unlink and mkdir of a path
 *    below PDM_FAULT_DIR fails with the errno the flag file names (EROFS, ENOSPC or EIO; EROFS when
 *    empty), as after the kernel remounted a failing SD card read-only. Reads keep working. A
 *    tmpfs cannot do this itself: remounting it read-only is refused while files are open to write.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static atomic_long syncs;
static long kill_at = -1;
static const char *sync_match;
static const char *sync_report;
static const char *fault_dir;
static const char *fault_flag;

__attribute__((constructor)) static void pdm_fault_fs_init(void) {
    const char *at = getenv("PDM_FSYNC_KILL_AT");
    kill_at = at ? atol(at) : -1;
    sync_match = getenv("PDM_FSYNC_MATCH");
    sync_report = getenv("PDM_FSYNC_REPORT");
    fault_dir = getenv("PDM_FAULT_DIR");
    fault_flag = getenv("PDM_FAULT_FLAG");
}

#define REAL(name) \
    static __typeof__(name) *real_##name; \
    if (real_##name == NULL) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

static void fd_path(int fd, char *path, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, size - 1);
    path[len < 0 ? 0 : len] = '\0';
}

/* The errno to fail with while the fault is on and path is below the fault directory, else 0. */
static int fault_for(const char *path) {
    if (fault_dir == NULL || fault_flag == NULL || path == NULL) return 0;
    if (strncmp(path, fault_dir, strlen(fault_dir)) != 0) return 0;
    int saved = errno;
    int fd = syscall(SYS_openat, AT_FDCWD, fault_flag, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return 0;
    }
    char name[16] = {0};
    ssize_t n = read(fd, name, sizeof name - 1);
    close(fd);
    errno = saved;
    if (n > 0 && strncmp(name, "ENOSPC", 6) == 0) return ENOSPC;
    if (n > 0 && strncmp(name, "EIO", 3) == 0) return EIO;
    return EROFS;
}

static int fault_fd(int fd) {
    if (fault_dir == NULL) return 0;
    char path[4096];
    fd_path(fd, path, sizeof path);
    return fault_for(path);
}

static int fault_at(int dirfd, const char *path) {
    if (fault_dir == NULL || path == NULL) return 0;
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        char full[4096];
        if (path[0] != '/' && getcwd(full, sizeof full) != NULL) {
            strncat(full, "/", sizeof full - strlen(full) - 1);
            strncat(full, path, sizeof full - strlen(full) - 1);
            return fault_for(full);
        }
        return fault_for(path);
    }
    char dir[4096];
    fd_path(dirfd, dir, sizeof dir);
    strncat(dir, "/", sizeof dir - strlen(dir) - 1);
    strncat(dir, path, sizeof dir - strlen(dir) - 1);
    return fault_for(dir);
}

#define FAIL_IF(code) do { int e_ = (code); if (e_) { errno = e_; return -1; } } while (0)

static void sync_point(int fd) {
    char path[4096];
    fd_path(fd, path, sizeof path);
    if (kill_at < 0 || (sync_match != NULL && strstr(path, sync_match) == NULL)) return;
    long n = atomic_fetch_add(&syncs, 1) + 1;
    if (n != kill_at) return;
    if (sync_report != NULL) {
        int out = syscall(SYS_openat, AT_FDCWD, sync_report, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out >= 0) {
            dprintf(out, "%ld %s\n", n, path);
            close(out);
        }
    }
    raise(SIGKILL);
}

int fsync(int fd) {
    REAL(fsync);
    sync_point(fd);
    FAIL_IF(fault_fd(fd));
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    sync_point(fd);
    FAIL_IF(fault_fd(fd));
    return real_fdatasync(fd);
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    FAIL_IF(fd > 2 ? fault_fd(fd) : 0);
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    FAIL_IF(fault_fd(fd));
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64);
    FAIL_IF(fault_fd(fd));
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev);
    FAIL_IF(fd > 2 ? fault_fd(fd) : 0);
    return real_writev(fd, iov, iovcnt);
}

int ftruncate(int fd, off_t length) {
    REAL(ftruncate);
    FAIL_IF(fault_fd(fd));
    return real_ftruncate(fd, length);
}

int ftruncate64(int fd, off_t length) {
    REAL(ftruncate64);
    FAIL_IF(fault_fd(fd));
    return real_ftruncate64(fd, length);
}

static int writes(int flags) {
    return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)) != 0;
}

#define OPEN_LIKE(name) \
    int name(const char *path, int flags, ...) { \
        REAL(name); \
        mode_t mode = 0; \
        if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); } \
        FAIL_IF(writes(flags) ? fault_at(AT_FDCWD, path) : 0); \
        return real_##name(path, flags, mode); \
    }
OPEN_LIKE(open)
OPEN_LIKE(open64)

#define OPENAT_LIKE(name) \
    int name(int dirfd, const char *path, int flags, ...) { \
        REAL(name); \
        mode_t mode = 0; \
        if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); } \
        FAIL_IF(writes(flags) ? fault_at(dirfd, path) : 0); \
        return real_##name(dirfd, path, flags, mode); \
    }
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)

int rename(const char *old, const char *new) {
    REAL(rename);
    FAIL_IF(fault_at(AT_FDCWD, old) ? fault_at(AT_FDCWD, old) : fault_at(AT_FDCWD, new));
    return real_rename(old, new);
}

int renameat(int olddir, const char *old, int newdir, const char *new) {
    REAL(renameat);
    FAIL_IF(fault_at(olddir, old) ? fault_at(olddir, old) : fault_at(newdir, new));
    return real_renameat(olddir, old, newdir, new);
}

int unlink(const char *path) {
    REAL(unlink);
    FAIL_IF(fault_at(AT_FDCWD, path));
    return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat);
    FAIL_IF(fault_at(dirfd, path));
    return real_unlinkat(dirfd, path, flags);
}

int mkdir(const char *path, mode_t mode) {
    REAL(mkdir);
    FAIL_IF(fault_at(AT_FDCWD, path));
    return real_mkdir(path, mode);
}
