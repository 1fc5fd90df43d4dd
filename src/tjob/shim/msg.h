/* Messages between the shim's processes and the engine's side (see the protocol package, whose
 * constants are in protocol.h): datagrams with fds, init's report lines, the supervisor's
 * handoff, start reply, run.json and end report. */
#ifndef TJOB_MSG_H
#define TJOB_MSG_H
#include <stddef.h>
#include <sys/types.h>

#include "protocol.h"

#define MAX_FDS 4

/* One datagram with up to MAX_FDS fds; 0, or -1 and errno. */
int send_with_fds(int sock, const char *msg, size_t len, const int *fds, int nfds);
/* One datagram and up to `maxfds` fds (close-on-exec); the datagram's length, or -1. */
ssize_t recv_with_fds(int sock, char *buf, size_t size, int *fds, int maxfds, int *nfds);

/* A step that failed: its stage, the system call, errno, and on what (NULL: nothing). */
struct failure {
    const char *stage, *syscall, *target;
    int err;
};
/* Record the call that just failed (errno) in `f`; returns -1 for `return fail(...)`. */
int fail(struct failure *f, const char *stage, const char *syscall, const char *target);
/* "F STAGE SYSCALL ERRNO TARGET" (no newline) into `buf`; its length. */
size_t format_failure(char *buf, size_t size, const struct failure *f);
/* A failure line back into `f`, pointing into `line` (which it changes); -1 if malformed. */
int parse_failure(char *line, struct failure *f);

/* init's reports, one line each. */
struct report {
    char kind; /* TJOB_REPORT_STARTED, _FAILED or _EXITED's letter */
    long value; /* the command's host pid (0: unknown), or its wait status */
    struct failure failure;
};
int report_started(int fd, long pid);
int report_exited(int fd, int wstatus);
int report_failure(int fd, const struct failure *f);
/* A report line (without its newline) into `r`; -1 if malformed. Changes `line`. */
int parse_report(char *line, struct report *r);

/* Lines from a pipe: each report is one write of one short line. */
struct lines {
    int fd;
    size_t used;
    char buf[1024];
};
/* The next whole line already read (without its newline) into `out`; 0 if there is none. */
int buffered_line(struct lines *r, char *out, size_t size);
/* Read what the writer has written; 0 at its end. */
int fill(struct lines *r);
/* Wait for the next line; 0 if the writer ended first. */
int read_line(struct lines *r, char *out, size_t size);

/* The fork server's "DIR\0CAP[\0STDIO]" (`msg` of `len` bytes, NUL-terminated by the caller);
 * `stdio` points at an interactive job's "FLAGS ROWS COLS" (stdio.h), else is NULL. */
int parse_handoff(const char *msg, size_t len, const char **dir, long long *cap,
                  const char **stdio);
/* The supervisor's messages, into `buf`; their length (truncated to `size`). */
size_t format_end_exited(char *buf, size_t size, int wstatus, long pid, double started_at,
                         const char *cut);
size_t format_run(char *buf, size_t size, int supervisor, int init, long pid, double started_at);
size_t format_start_reply(char *buf, size_t size, long pid, double started_at, int supervisor);

#endif
