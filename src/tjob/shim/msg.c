/* Messages between the shim's processes and the engine's side; formats are the protocol package's. */
#define _GNU_SOURCE
#include "msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

int send_with_fds(int sock, const char *msg, size_t len, const int *fds, int nfds) {
    char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds < 0 || nfds > MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    if (nfds) {
        memset(control, 0, sizeof control);
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

ssize_t recv_with_fds(int sock, char *buf, size_t size, int *fds, int maxfds, int *nfds) {
    char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                        .msg_controllen = sizeof control};
    ssize_t n;
    do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *nfds = 0;
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int got[MAX_FDS];
        if (count > MAX_FDS) count = MAX_FDS; /* the control buffer holds no more */
        memcpy(got, CMSG_DATA(c), sizeof(int) * (size_t)count);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = got[i];
            else close(got[i]);
        }
    }
    return n;
}

/* ------------------------------------------------------------------ failures and reports */

int fail(struct failure *f, const char *stage, const char *syscall, const char *target) {
    f->stage = stage;
    f->syscall = syscall;
    f->target = target;
    f->err = errno ? errno : EIO;
    return -1;
}

/* May run in a vforked child: only the stack and `buf` are written. */
size_t format_failure(char *buf, size_t size, const struct failure *f) {
    const char *t = f->target && *f->target ? f->target : TJOB_NO_TARGET;
    int n = snprintf(buf, size, TJOB_REPORT_FAILED " %s %s %d ", f->stage, f->syscall, f->err);
    if (n < 0) return 0;
    size_t at = (size_t)n < size ? (size_t)n : size - 1;
    for (size_t i = 0; t[i] && i < TJOB_TARGET_MAX && at + 1 < size; i++)
        buf[at++] = t[i] == '\n' ? ' ' : t[i];
    buf[at] = 0;
    return at;
}

static char *word(char **p) {
    char *w = strsep(p, " ");
    return w && *w ? w : NULL;
}

int parse_failure(char *line, struct failure *f) {
    char *p = line, *tag = word(&p), *stage = word(&p), *call = word(&p), *err = word(&p);
    if (!tag || strcmp(tag, TJOB_REPORT_FAILED) || !stage || !call || !err || !p) return -1;
    char *end;
    long e = strtol(err, &end, 10);
    if (*end || e < 0 || e > 4095) return -1;
    *f = (struct failure){.stage = stage, .syscall = call, .target = p, .err = (int)e};
    return 0;
}

static int report_line(int fd, const char *line, size_t len) {
    char buf[512];
    if (len > sizeof buf - 1) len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len] = '\n';
    return write_all(fd, buf, len + 1); /* one write: the reader takes whole lines */
}

int report_started(int fd, long pid) {
    char line[32];
    int n = pid > 0 ? snprintf(line, sizeof line, TJOB_REPORT_STARTED " %ld", pid)
                    : snprintf(line, sizeof line, TJOB_REPORT_STARTED " -");
    return report_line(fd, line, (size_t)n);
}

int report_exited(int fd, int wstatus) {
    char line[32];
    int n = snprintf(line, sizeof line, TJOB_REPORT_EXITED " %d", wstatus);
    return report_line(fd, line, (size_t)n);
}

int report_failure(int fd, const struct failure *f) {
    char line[512];
    return report_line(fd, line, format_failure(line, sizeof line, f));
}

int parse_report(char *line, struct report *r) {
    memset(r, 0, sizeof *r);
    r->kind = line[0];
    if (line[0] == TJOB_REPORT_FAILED[0]) return parse_failure(line, &r->failure);
    if (line[0] != TJOB_REPORT_STARTED[0] && line[0] != TJOB_REPORT_EXITED[0]) return -1;
    if (line[1] != ' ') return -1;
    if (line[0] == TJOB_REPORT_STARTED[0] && strcmp(line + 2, "-") == 0) return 0;
    char *end;
    errno = 0;
    r->value = strtol(line + 2, &end, 10);
    return *end || end == line + 2 || errno ? -1 : 0;
}

int buffered_line(struct lines *r, char *out, size_t size) {
    char *nl = memchr(r->buf, '\n', r->used);
    if (!nl) return 0;
    size_t n = (size_t)(nl - r->buf), keep = n < size - 1 ? n : size - 1;
    memcpy(out, r->buf, keep);
    out[keep] = 0;
    r->used -= n + 1;
    memmove(r->buf, nl + 1, r->used);
    return 1;
}

int fill(struct lines *r) {
    if (r->used == sizeof r->buf) r->used = 0; /* a line too long to be ours */
    ssize_t got;
    do got = read(r->fd, r->buf + r->used, sizeof r->buf - r->used);
    while (got < 0 && errno == EINTR);
    if (got <= 0) return 0;
    r->used += (size_t)got;
    return 1;
}

int read_line(struct lines *r, char *out, size_t size) {
    while (!buffered_line(r, out, size))
        if (!fill(r)) return 0;
    return 1;
}

/* ------------------------------------------------------------------ the supervisor's messages */

int parse_handoff(const char *msg, size_t len, const char **dir, long long *cap,
                  const char **stdio) {
    size_t dirlen = strnlen(msg, len);
    if (dirlen == 0 || dirlen + 1 >= len) return -1;
    const char *num = msg + dirlen + 1;
    size_t numlen = strnlen(num, len - dirlen - 1);
    *stdio = NULL;
    if (dirlen + 1 + numlen < len) { /* an interactive job's "\0FLAGS ROWS COLS" */
        *stdio = num + numlen + 1;
        if (!**stdio) return -1;
    }
    char *end;
    errno = 0;
    *cap = strtoll(num, &end, 10);
    if (errno || *end || *cap < 0 || end == num) return -1;
    *dir = msg;
    return 0;
}

static size_t clamp(int n, size_t size) {
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

size_t format_end_exited(char *buf, size_t size, int wstatus, long pid, double started_at,
                         const char *cut) {
    return clamp(snprintf(buf, size, TJOB_REPORT_EXITED " %d %ld %.17g %s", wstatus, pid,
                          started_at, cut),
                 size);
}

static void pid_json(char *buf, size_t size, long pid) {
    if (pid > 0) snprintf(buf, size, "%ld", pid);
    else snprintf(buf, size, "null");
}

size_t format_run(char *buf, size_t size, int supervisor, int init, long pid, double started_at) {
    char p[24];
    pid_json(p, sizeof p, pid);
    return clamp(snprintf(buf, size,
                          "{\"v\": %d, \"supervisor_pid\": %d, \"init_pid\": %d, \"pid\": %s, "
                          "\"started_at\": %.17g}",
                          TJOB_PROTOCOL_VERSION, supervisor, init, p, started_at),
                 size);
}

size_t format_start_reply(char *buf, size_t size, long pid, double started_at, int supervisor) {
    char p[24];
    pid_json(p, sizeof p, pid);
    return clamp(snprintf(buf, size,
                          "{\"v\": %d, \"ok\": true, \"pid\": %s, \"started_at\": %.17g, "
                          "\"supervisor_pid\": %d}",
                          TJOB_PROTOCOL_VERSION, p, started_at, supervisor),
                 size);
}
