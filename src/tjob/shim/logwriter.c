/* The job's log, format TJOBLOG3 (protocol/constants.py has its constants, logstore.py reads it):
 * the magic and the committed end, then frames of header <stream:u8><0:3><length:u32le>
 * <time:u64le>, the payload, and a trailer <crc:u32le><length:u32le> (zlib's CRC-32 of header
 * then payload). The trailer lets a reader step back a frame at a time (`logs --tail`). */
#define _GNU_SOURCE
#include "logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "protocol.h"
#include "util.h"

/* Per read from a pipe: frames of 1 MiB sped up one gRPC follower but cost a thousand of them
 * 30% more server memory; 256 KiB ones slowed the one follower. */
#define CHUNK (512 << 10)

/* Only the pages a burst of output touched are resident, until the job goes quiet. Room for
 * the trailer after the payload: both go in one pwrite. */
static char chunk[CHUNK + TJOB_LOG_TRAILER_SIZE] __attribute__((aligned(4096)));
static int chunk_used;

/* The checksum is zlib's crc32(), the one Python's zlib.crc32 (the reader) calls: 7.1 GB/s
 * here against 2.4 GB/s for the slicing-by-8 table this file had, which cost B2 about a third
 * of a second per GiB of output. CRC32C with SSE4.2 would be as fast in C but needs a package
 * outside the standard library for the reader to check it as fast. */
static uint32_t frame_crc(const unsigned char *header, const char *payload, size_t n) {
    uLong c = crc32(0L, header, TJOB_LOG_HEADER_SIZE);
    return (uint32_t)crc32(c, (const Bytef *)payload, (uInt)n);
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t now_ns(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_REALTIME, &t)) return 0; /* cannot fail; 0 reads as "no time" */
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int capture_open(struct capture *c, const char *dir, long long cap, struct failure *f) {
    char path[PATH_MAX];
    unsigned char head[TJOB_LOG_FILE_HEADER_SIZE] = {0};
    memset(c, 0, sizeof *c);
    c->cap = cap > 0 ? cap : 1LL << 30;
    c->size = TJOB_LOG_FILE_HEADER_SIZE;
    c->log = c->devnull = -1;
    if (join_path(c->reserve, sizeof c->reserve, dir, TJOB_RESERVE_FILE) ||
        join_path(path, sizeof path, dir, TJOB_LOG_FILE))
        return fail(f, "supervisor", "open", TJOB_LOG_FILE);
    /* An empty log may be there already (the engine's blanks.py made it); one with anything
     * in it is another supervisor's. */
    struct stat st;
    c->log = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (c->log < 0) return fail(f, "supervisor", "open", TJOB_LOG_FILE);
    if (fstat(c->log, &st) || st.st_size != 0) {
        close(c->log);
        c->log = -1;
        errno = EEXIST;
        return fail(f, "supervisor", "open", TJOB_LOG_FILE);
    }
    memcpy(head, TJOB_LOG_MAGIC, TJOB_LOG_MAGIC_SIZE);
    put_le(head + TJOB_LOG_MAGIC_SIZE, (uint64_t)c->size, 8);
    if (pwrite_all(c->log, (const char *)head, sizeof head, 0))
        return fail(f, "supervisor", "write", TJOB_LOG_FILE);
    c->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (c->devnull < 0) return fail(f, "supervisor", "open", "/dev/null");
    return 0;
}

void capture_reserve(const struct capture *c) {
    int fd = open(c->reserve, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return; /* no room even now: nothing to keep */
    /* Past the end, as the engine keeps it (jobdir.reserve): the status is written into it. */
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, TJOB_RESERVE_SIZE) && errno == EOPNOTSUPP &&
        posix_fallocate(fd, 0, TJOB_RESERVE_SIZE)) { /* no room: nothing to keep */
    }
    close(fd);
}

/* One frame whose payload (`n` bytes) is in `buf`, with TJOB_LOG_TRAILER_SIZE bytes of room
 * after it: payload and trailer first, then the header (until then all zeros: readers wait),
 * then the committed end. 0, or -1 with errno. */
static int put_frame(struct capture *c, int stream, char *buf, size_t n) {
    unsigned char h[TJOB_LOG_HEADER_SIZE] = {(unsigned char)stream};
    unsigned char end[8];
    off_t body = c->size + TJOB_LOG_HEADER_SIZE;
    size_t total = TJOB_LOG_HEADER_SIZE + n + TJOB_LOG_TRAILER_SIZE;
    put_le(h + 4, n, 4);
    put_le(h + 8, now_ns(), 8);
    put_le((unsigned char *)buf + n, frame_crc(h, buf, n), 4);
    put_le((unsigned char *)buf + n + 4, n, 4);
    if (pwrite_all(c->log, buf, n + TJOB_LOG_TRAILER_SIZE, body) ||
        pwrite(c->log, h, sizeof h, c->size) != (ssize_t)sizeof h)
        return -1;
    put_le(end, (uint64_t)(c->size + (off_t)total), 8);
    /* The committed end only guides backward reads (a stale one costs a short forward walk). */
    if (pwrite(c->log, end, sizeof end, TJOB_LOG_MAGIC_SIZE) != (ssize_t)sizeof end) return -1;
    c->size += (off_t)total;
    return 0;
}

/* Up to the cap: one read into the buffer, then its frame. 1: moved; 0: the pipe ended;
 * -1: the output is cut now (c->cut says why). */
static int move(struct capture *c, int stream, int fd) {
    long long overhead = TJOB_LOG_HEADER_SIZE + TJOB_LOG_TRAILER_SIZE;
    long long room = c->cap - (long long)c->size - overhead;
    if (room <= 0) {
        snprintf(c->cut, sizeof c->cut, "output cut at the %lld-byte cap", c->cap);
        return -1;
    }
    /* read+pwrite, not splice: splice into an ext4 file holds the pipe's lock while it
     * copies page by page, and moves a GiB ~2.5x slower here than this does. */
    size_t want = room < CHUNK ? (size_t)room : CHUNK;
    ssize_t n = read(fd, chunk, want);
    if (n > 4096) chunk_used = 1;
    if (n == 0 || (n < 0 && errno == EIO)) return 0; /* EIO: a pty whose slaves all closed */
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    errno = 0;
    if (n > 0 && put_frame(c, stream, chunk, (size_t)n) == 0) return 1;
    int e = errno ? errno : ENOSPC;
    if (ftruncate(c->log, c->size)) { /* undo the partial frame, if it can be */
    }
    snprintf(c->cut, sizeof c->cut, "output cut short: %s", strerror(e));
    /* The reserve makes room for the mark, the end frame and the status. */
    if (unlink(c->reserve) && errno != ENOENT) log_error("supervisor", "unlink " TJOB_RESERVE_FILE);
    return -1;
}

int capture_take(struct capture *c, int stream, int fd) {
    if (!c->cut[0]) {
        int rc = move(c, stream, fd);
        if (rc >= 0) return rc;
        char mark[TJOB_LOG_TRAILER_SIZE];
        if (put_frame(c, TJOB_STREAM_TRUNCATED, mark, 0) && ftruncate(c->log, c->size)) {
            /* the mark is lost; status.json still says */
        }
    }
    ssize_t n = splice(fd, NULL, c->devnull, NULL, PIPE_SIZE, 0);
    if (n < 0 && errno == EINVAL) n = read(fd, chunk, CHUNK); /* a pty: no splice */
    return n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN));
}

void capture_idle(void) {
    if (madvise(chunk, sizeof chunk, MADV_DONTNEED) == 0) chunk_used = 0;
}

int capture_busy(void) { return chunk_used; }

void capture_close(struct capture *c) {
    /* No fsync of the output (it was here, and cost B2 about half its speed: a GiB written back
     * before the end could be recorded). What a power cut does to it is detectable instead: a
     * frame cut or garbled fails its checksum, a log with no end frame after a recorded end
     * reads with a truncation mark; the status is made durable on its own (status.json). */
    close_quietly(c->log);
    close_quietly(c->devnull);
}
