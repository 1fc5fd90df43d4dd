/* The jail's settings, and the seccomp filter compiled from them with libseccomp (issue 13,
 * section 3). The profile is parsed in Python (src/tjob/jail.py, Docker's JSON format) into
 * lines this file compiles once, in the zygote: every spare inherits the BPF program, and
 * each command loads it with one seccomp(2) call. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail.h"
#include "jail_internal.h"

static int parse_action(const char *name, const char *arg, uint32_t *action) {
    int n = atoi(arg);
    if (strcmp(name, "allow") == 0) *action = SCMP_ACT_ALLOW;
    else if (strcmp(name, "errno") == 0) *action = SCMP_ACT_ERRNO((uint16_t)n);
    else if (strcmp(name, "kill_thread") == 0) *action = SCMP_ACT_KILL_THREAD;
    else if (strcmp(name, "kill_process") == 0) *action = SCMP_ACT_KILL_PROCESS;
    else if (strcmp(name, "trap") == 0) *action = SCMP_ACT_TRAP;
    else if (strcmp(name, "trace") == 0) *action = SCMP_ACT_TRACE((uint16_t)n);
    else if (strcmp(name, "log") == 0) *action = SCMP_ACT_LOG;
    else return -1;
    return 0;
}

static int parse_op(const char *name, enum scmp_compare *op) {
    static const struct {
        const char *name;
        enum scmp_compare op;
    } ops[] = {{"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE},
               {"eq", SCMP_CMP_EQ}, {"ge", SCMP_CMP_GE}, {"gt", SCMP_CMP_GT},
               {"masked_eq", SCMP_CMP_MASKED_EQ}};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcmp(name, ops[i].name) == 0) {
            *op = ops[i].op;
            return 0;
        }
    return -1;
}

/* "rule ACTION ERRNO SYSCALL [INDEX:OP:VALUE:VALUE2]...": 0 added or skipped, -1 malformed,
 * else libseccomp's negative errno. */
static int add_rule(scmp_filter_ctx ctx, char *line, uint32_t deflt) {
    char *save = NULL, *words[4 + 6];
    int n = 0;
    for (char *w = strtok_r(line, " ", &save); w && n < 10; w = strtok_r(NULL, " ", &save))
        words[n++] = w;
    uint32_t action;
    if (n < 4 || parse_action(words[1], words[2], &action)) return -1;
    int nr = seccomp_syscall_resolve_name(words[3]);
    if (nr == __NR_SCMP_ERROR || action == deflt) return 0; /* unknown here, as Docker does */
    struct scmp_arg_cmp cmp[6];
    for (int i = 4; i < n; i++) {
        char *idx = words[i], *op = strchr(idx, ':'), *v1 = op ? strchr(op + 1, ':') : NULL,
             *v2 = v1 ? strchr(v1 + 1, ':') : NULL;
        if (!v2) return -1;
        *op++ = *v1++ = *v2++ = 0;
        cmp[i - 4] = (struct scmp_arg_cmp){.arg = (unsigned)atoi(idx),
                                           .datum_a = strtoull(v1, NULL, 0),
                                           .datum_b = strtoull(v2, NULL, 0)};
        if (parse_op(op, &cmp[i - 4].op)) return -1;
    }
    int rc = seccomp_rule_add_array(ctx, action, nr, (unsigned)(n - 4), cmp);
    return rc == -EACCES ? 0 : rc;
}

/* The compiled program into jail.filter (seccomp_export_bpf writes to an fd: a memfd). */
static int export(scmp_filter_ctx ctx) {
    int fd = memfd_create("tjob-seccomp", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = seccomp_export_bpf(ctx, fd);
    off_t size = rc ? 0 : lseek(fd, 0, SEEK_END);
    struct sock_filter *prog = size > 0 ? malloc((size_t)size) : NULL;
    if (!rc && (!prog || pread(fd, prog, (size_t)size, 0) != size)) rc = -EIO;
    close(fd);
    if (rc) {
        free(prog);
        return rc;
    }
    jail.filter.filter = prog;
    jail.filter.len = (unsigned short)((size_t)size / sizeof *prog);
    return 0;
}

static int compile_filter(char **lines, int count, char *err, size_t errlen) {
    uint32_t deflt = 0;
    int have_default = 0;
    for (int i = 0; i < count; i++)
        if (strncmp(lines[i], "default ", 8) == 0) {
            char *a = lines[i] + 8, *e = strchr(a, ' ');
            if (!e) break;
            *e++ = 0;
            have_default = parse_action(a, e, &deflt) == 0;
        }
    if (!have_default) return 0; /* no "default" line: seccomp unconfined */
    /* The kernel must have seccomp filters: PR_GET_SECCOMP fails with EINVAL without them. */
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0) {
        snprintf(err, errlen, "this kernel has no seccomp: %s", strerror(errno));
        return -1;
    }
    scmp_filter_ctx ctx = seccomp_init(deflt);
    if (!ctx) {
        snprintf(err, errlen, "seccomp_init failed");
        return -1;
    }
    int rc = 0;
    const char *what = "";
    /* Syscalls of an ABI the profile does not list (x32 on x86_64): EPERM, not a kill. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(EPERM));
    if (!rc) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); /* a binary tree */
    for (int i = 0; i < count && !rc; i++) {
        what = lines[i];
        if (strncmp(lines[i], "arch ", 5) == 0) {
            uint32_t arch = seccomp_arch_resolve_name(lines[i] + 5);
            rc = arch ? seccomp_arch_add(ctx, arch) : -EINVAL;
            if (rc == -EEXIST) rc = 0;
        } else if (strncmp(lines[i], "rule ", 5) == 0) {
            char copy[512];
            snprintf(copy, sizeof copy, "%s", lines[i]);
            rc = add_rule(ctx, copy, deflt);
            if (rc == -1) rc = -EINVAL;
        }
    }
    if (!rc) {
        what = "export";
        rc = export(ctx);
    }
    seccomp_release(ctx);
    if (rc) snprintf(err, errlen, "seccomp: %s: %s", what, strerror(-rc));
    return rc ? -1 : 0;
}

/* Everything `fd` gives until its end, in a malloc'd buffer; NULL if out of memory. */
static char *read_all(int fd, size_t *used) {
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    for (ssize_t n = 1; buf && n > 0; *used += n > 0 ? (size_t)n : 0) {
        if (*used == cap) {
            char *more = realloc(buf, cap *= 2);
            if (!more) free(buf);
            buf = more;
            if (!buf) break;
        }
        do n = read(fd, buf + *used, cap - *used);
        while (n < 0 && errno == EINTR);
    }
    return buf;
}

/* Compiled in a child: libseccomp leaves the heap strewn with freed blocks, which every
 * spare's init would copy (glibc's malloc writes to them) at ~0.4 MiB a job. The child sends
 * "K", the program's length and the program, or "E" and the error. */
int jail_compile_filter(char **lines, int count, char *err, size_t errlen) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC)) return snprintf(err, errlen, "pipe: %s", strerror(errno)), -1;
    pid_t child = fork();
    if (child < 0) return snprintf(err, errlen, "fork: %s", strerror(errno)), -1;
    if (child == 0) {
        close(pipefd[0]);
        int ok = compile_filter(lines, count, err, errlen) == 0;
        unsigned short len = jail.filter.len;
        int sent = ok ? write(pipefd[1], "K", 1) == 1 &&
                            write(pipefd[1], &len, sizeof len) == (ssize_t)sizeof len &&
                            write(pipefd[1], jail.filter.filter, len * sizeof(struct sock_filter)) ==
                                (ssize_t)(len * sizeof(struct sock_filter))
                      : dprintf(pipefd[1], "E%s", err) > 0;
        _exit(sent ? 0 : 1);
    }
    close(pipefd[1]);
    size_t used = 0;
    char *buf = read_all(pipefd[0], &used);
    close(pipefd[0]);
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR) continue;
    unsigned short len = 0;
    if (buf && used >= 1 + sizeof len && buf[0] == 'K') {
        memcpy(&len, buf + 1, sizeof len);
        size_t size = len * sizeof(struct sock_filter);
        if (used == 1 + sizeof len + size) {
            jail.filter.len = len;
            jail.filter.filter = len ? malloc(size) : NULL;
            if (!len || jail.filter.filter) {
                if (len) memcpy(jail.filter.filter, buf + 1 + sizeof len, size);
                free(buf);
                return 0;
            }
        }
    }
    if (buf && used > 1 && buf[0] == 'E') snprintf(err, errlen, "%.*s", (int)(used - 1), buf + 1);
    else snprintf(err, errlen, "seccomp: the compiler process failed");
    free(buf);
    jail.filter.len = 0;
    return -1;
}

int jail_setup(const char *settings, char *err, size_t errlen) {
    char *text = strdup(settings); /* a copy: the zygote's title overwrites argv */
    int count = 1;
    for (char *p = text; *p; p++) count += *p == '\n';
    char **lines = calloc((size_t)count + 1, sizeof *lines);
    jail.hide = calloc((size_t)count + 1, sizeof *jail.hide);
    if (!text || !lines || !jail.hide) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "hide /", 6) == 0) jail.hide[jail.nhide++] = l + 5;
        else if (strncmp(l, "volume ", 7) == 0) {
            if (jail_add_volume(l + 7)) return snprintf(err, errlen, "bad line: %s", l), -1;
        } else lines[n++] = l;
    }
    int rc = jail_compile_filter(lines, n, err, errlen);
    free(lines);
    return rc;
}

/* The engine's start-up check, in a child: the whole jail built as for a job (new mount
 * namespace, the root, privileges, the filter), so that a kernel lacking any of it is a clear
 * error when the engine starts, not a failure of every job. */
int jail_check(char *err, size_t errlen) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC)) return -1;
    pid_t child = fork();
    if (child < 0) return -1;
    if (child == 0) {
        const char *stage = "namespaces";
        /* A network namespace too, as init has: sysfs is one superblock per namespace, and
         * mounting it over the host's own is refused (EBUSY). */
        int ok = unshare(CLONE_NEWNS | CLONE_NEWNET) == 0;
        const char *volume = NULL;
        if (ok) stage = "volume", ok = jail_open_volumes(&volume) == 0;
        if (!ok && volume) stage = volume;
        if (ok) stage = "read-only root", ok = jail_enter_root() == 0;
        if (ok) stage = "privileges", ok = jail_drop_privileges() == 0;
        if (ok) stage = "no_new_privs", ok = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0;
        if (ok) stage = "seccomp filter", ok = jail_load_filter() == 0;
        if (!ok) dprintf(pipefd[1], "jail check: %s: %s", stage, strerror(errno));
        _exit(ok ? 0 : 1);
    }
    close(pipefd[1]);
    ssize_t n = read(pipefd[0], err, errlen - 1);
    close(pipefd[0]);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) continue;
    err[n > 0 ? n : 0] = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (n <= 0) snprintf(err, errlen, "jail check: the child died (status %d)", status);
    return -1;
}
