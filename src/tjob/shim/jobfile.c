/* exec.bin: NUL-terminated fields (protocol.ExecJob); a list is its length, then its items. */
#define _GNU_SOURCE
#include "jobfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "util.h"

struct cursor {
    char *p, *end;
};

static char *next(struct cursor *c) {
    if (c->p >= c->end) return NULL;
    char *field = c->p;
    size_t n = strnlen(field, (size_t)(c->end - field));
    if (field + n == c->end) return NULL; /* no NUL before the end */
    c->p += n + 1;
    return field;
}

static int list(struct cursor *c, int *count, char ***items) {
    char *n = next(c), *end;
    if (!n) return -1;
    long v = strtol(n, &end, 10);
    if (*end || end == n || v < 0 || v > TJOB_MAX_LIST) return -1;
    *count = (int)v;
    *items = calloc((size_t)v + 1, sizeof(char *));
    if (!*items) return -2;
    for (int i = 0; i < *count; i++)
        if (!((*items)[i] = next(c))) return -1;
    return 0;
}

/* A decimal count, or TJOB_KEEP_ID. */
int parse_job(char *buf, size_t len, struct job *job) {
    struct cursor c = {buf, buf + len};
    memset(job, 0, sizeof *job);
    char *magic = next(&c);
    int rc = -1;
    if (magic && strcmp(magic, TJOB_EXEC_MAGIC) == 0 && (job->hostname = next(&c)) &&
        (job->cwd = next(&c)) && (job->uid = next(&c)) && (job->gid = next(&c)) &&
        (rc = list(&c, &job->nprocs, &job->procs)) == 0 &&
        (rc = list(&c, &job->argc, &job->argv)) == 0 &&
        (rc = list(&c, &job->envc, &job->envp)) == 0)
        rc = (job->scratch = next(&c)) ? list(&c, &job->nrlimits, &job->rlimits) : -1;
    if (rc == 0) rc = list(&c, &job->nvolumes, &job->volumes);
    /* New fields are parsed here, in protocol.ExecJob's order. */
    if (rc == 0 && (c.p != c.end || job->argc == 0)) rc = -1;
    if (rc) errno = rc == -2 ? ENOMEM : EINVAL;
    return rc ? -1 : 0;
}

static int put(int fd, const char *field) { return write_all(fd, field, strlen(field) + 1); }

static int put_list(int fd, int count, char **items) {
    char n[16];
    snprintf(n, sizeof n, "%d", count);
    if (put(fd, n)) return -1;
    for (int i = 0; i < count; i++)
        if (put(fd, items[i])) return -1;
    return 0;
}

int write_job(int fd, const struct job *job) {
    if (put(fd, TJOB_EXEC_MAGIC) || put(fd, job->hostname) || put(fd, job->cwd) ||
        put(fd, job->uid) || put(fd, job->gid) || put_list(fd, job->nprocs, job->procs) ||
        put_list(fd, job->argc, job->argv) || put_list(fd, job->envc, job->envp) ||
        put(fd, job->scratch) || put_list(fd, job->nrlimits, job->rlimits) ||
        put_list(fd, job->nvolumes, job->volumes))
        return -1;
    return 0;
}
