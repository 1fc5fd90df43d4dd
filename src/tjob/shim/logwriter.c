/* The job's log: frames of <stream:u8><crc:3><length:u32le><bytes> after the magic; crc is the
 * low 24 bits of the payload's CRC-32 (zlib's), little-endian (protocol.py, logstore.py). */
#define _GNU_SOURCE
#include "logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "protocol.h"
#include "util.h"

/* Per read from a pipe: frames of 1 MiB sped up one gRPC follower but cost a thousand of them
 * 30% more server memory; 256 KiB ones slowed the one follower. */
#define CHUNK (512 << 10)

/* Only the pages a burst of output touched are resident, until the job goes quiet. */
static char chunk[CHUNK] __attribute__((aligned(4096)));
static int chunk_used;

/* CRC-32 (the polynomial of zlib and Ethernet), eight bytes a step ("slicing-by-8"): the
 * output's checksum costs a fraction of the copy it guards. */
static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
            crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

int capture_open(struct capture *c, const char *dir, long long cap, struct failure *f) {
    char path[PATH_MAX];
    memset(c, 0, sizeof *c);
    c->cap = cap > 0 ? cap : 1LL << 30;
    c->size = TJOB_LOG_HEADER_SIZE;
    c->log = c->devnull = -1;
    if (!crc_table[0][1]) crc_init();
    if (join_path(c->reserve, sizeof c->reserve, dir, TJOB_RESERVE_FILE) ||
        join_path(path, sizeof path, dir, TJOB_LOG_FILE))
        return fail(f, "supervisor", "open", TJOB_LOG_FILE);
    c->log = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (c->log < 0) return fail(f, "supervisor", "open", TJOB_LOG_FILE);
    if (pwrite_all(c->log, TJOB_LOG_MAGIC, TJOB_LOG_HEADER_SIZE, 0))
        return fail(f, "supervisor", "write", TJOB_LOG_FILE);
    c->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (c->devnull < 0) return fail(f, "supervisor", "open", "/dev/null");
    return 0;
}

void capture_reserve(const struct capture *c) {
    int fd = open(c->reserve, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return; /* no room even now: nothing to keep */
    if (posix_fallocate(fd, 0, TJOB_RESERVE_SIZE)) { /* likewise */
    }
    close(fd);
}

static int put_header(struct capture *c, off_t at, int stream, uint32_t len, uint32_t crc) {
    unsigned char h[TJOB_LOG_HEADER_SIZE] = {
        (unsigned char)stream,      (unsigned char)crc, (unsigned char)(crc >> 8),
        (unsigned char)(crc >> 16), (unsigned char)len, (unsigned char)(len >> 8),
        (unsigned char)(len >> 16), (unsigned char)(len >> 24)};
    return pwrite(c->log, h, sizeof h, at) == (ssize_t)sizeof h ? 0 : -1;
}

/* Up to the cap: one read into the buffer, then its frame. 1: moved; 0: the pipe ended;
 * -1: the output is cut now (c->cut says why). */
static int move(struct capture *c, int stream, int fd) {
    long long room = c->cap - (long long)c->size - TJOB_LOG_HEADER_SIZE;
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
    /* The payload goes first and its header after, so a header still all zeros (a hole)
     * tells readers the frame is being written. */
    if (n > 0 && pwrite_all(c->log, chunk, (size_t)n, c->size + TJOB_LOG_HEADER_SIZE) == 0 &&
        put_header(c, c->size, stream, (uint32_t)n, crc32_of((unsigned char *)chunk, (size_t)n)) == 0) {
        c->size += TJOB_LOG_HEADER_SIZE + n;
        return 1;
    }
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
        if (put_header(c, c->size, TJOB_STREAM_TRUNCATED, 0, 0) == 0) c->size += TJOB_LOG_HEADER_SIZE;
        else if (ftruncate(c->log, c->size)) { /* the mark is lost; status.json still says */
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
    /* Every byte of output is on the disk before the end is recorded (a power cut after the
     * end keeps the output it reports). A full disk has already cut the output and said so. */
    if (c->log >= 0 && sync_wanted() && fsync(c->log)) log_error("supervisor", "fsync " TJOB_LOG_FILE);
    close_quietly(c->log);
    close_quietly(c->devnull);
}
