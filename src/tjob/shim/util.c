/* Small helpers every part of the shim uses. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

void close_quietly(int fd) {
    if (fd >= 0) close(fd);
}

int write_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int pwrite_all(int fd, const char *buf, size_t len, off_t at) {
    while (len) {
        ssize_t n = pwrite(fd, buf, len, at);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) errno = ENOSPC;
        if (n <= 0) return -1;
        buf += n;
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

char *read_fd(int fd, size_t *len) {
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) return NULL;
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0) break;
        used += (size_t)n;
        if (used == cap) {
            cap *= 2;
            char *more = realloc(buf, cap + 1);
            if (!more) free(buf);
            buf = more;
        }
    }
    buf[used] = 0;
    *len = used;
    return buf;
}

int join_path(char *buf, size_t size, const char *dir, const char *name) {
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n >= 0 && (size_t)n < size) return 0;
    errno = ENAMETOOLONG;
    return -1;
}

static int write_named(const char *dir, const char *name, const char *text, int sync);

/* The names made or renamed in `dir` put on the disk: 0, or -1 with errno. */
static int sync_dir(const char *dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

int write_file(const char *dir, const char *name, const char *text) {
    return write_named(dir, name, text, sync_wanted());
}

int write_file_whole(const char *dir, const char *name, const char *text) {
    return write_named(dir, name, text, 0);
}

static int write_named(const char *dir, const char *name, const char *text, int sync) {
    char path[PATH_MAX], tmp[PATH_MAX + sizeof TJOB_TMP_SUFFIX];
    if (join_path(path, sizeof path, dir, name)) return -1;
    int n = snprintf(tmp, sizeof tmp, "%s" TJOB_TMP_SUFFIX, path); /* fits: tmp is that longer */
    if (n < 0) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    /* Whole or not at all (`sync`: even across a power cut: fsync before the rename, and
     * the directory after it). */
    int rc = write_all(fd, text, strlen(text));
    if (!rc && sync) rc = fsync(fd);
    if (close(fd) && !rc) rc = -1;
    if (!rc) rc = rename(tmp, path);
    if (rc) {
        int e = errno;
        if (unlink(tmp) && errno != ENOENT) { /* nothing more to do: the caller reports e */
        }
        errno = e;
        return -1;
    }
    return sync ? sync_dir(dir) : 0;
}

int finish_file(const char *dir, const char *name, int sync) {
    char path[PATH_MAX];
    if (join_path(path, sizeof path, dir, name)) return -1;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    /* ext4 gives back the blocks kept past the end (fallocate KEEP_SIZE) even at the same
     * length. */
    int rc = fstat(fd, &st) || ftruncate(fd, st.st_size) || (sync && fsync(fd)) ? -1 : 0;
    close(fd);
    return rc || !sync ? rc : sync_dir(dir);
}

int sync_wanted(void) {
    /* protocol.SYNC_ENV, set by an engine made with durable=False (inherited from its
     * launcher); read once. */
    static int wanted = -1;
    if (wanted < 0) {
        const char *v = getenv(TJOB_SYNC_ENV);
        wanted = !(v && strcmp(v, "0") == 0);
    }
    return wanted;
}

double now(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts)) return 0; /* cannot fail for CLOCK_REALTIME */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void reset_signals(void) {
    static const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        if (signal(sigs[i], SIG_DFL) == SIG_ERR) log_error("signals", "signal");
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL)) log_error("signals", "sigprocmask");
}

void keep_only(int a, int b) {
    int lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo < 3) lo = hi;
    /* close_range fails only on bad arguments, which these are not. */
    if (lo > 3 && close_range(3, (unsigned)lo - 1, 0)) log_error("fds", "close_range");
    if (hi > lo + 1 && close_range((unsigned)lo + 1, (unsigned)hi - 1, 0))
        log_error("fds", "close_range");
    if (close_range((unsigned)hi + 1, ~0U, 0)) log_error("fds", "close_range");
}

static char *title;
static size_t title_room;

void title_init(int argc, char **argv) {
    /* The kernel lays argv out contiguously; use only the part that is. */
    char *end = argv[0];
    for (int i = 0; i < argc && argv[i] == end; i++) end = argv[i] + strlen(argv[i]) + 1;
    title = argv[0];
    title_room = (size_t)(end - argv[0]);
}

void set_title(const char *const *words) {
    size_t at = 0;
    memset(title, 0, title_room);
    for (; *words; words++) {
        size_t n = strlen(*words) + 1;
        if (at + n > title_room) break;
        memcpy(title + at, *words, n);
        at += n;
    }
}

void log_error(const char *stage, const char *call) {
    /* Best effort: stderr is a log file, and nothing better can be done if it fails. */
    dprintf(2, "tjob-shim: %s: %s: %s\n", stage, call, strerror(errno));
}
