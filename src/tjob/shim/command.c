/* The command's own process: runs in init's vfork child, so it writes only its stack, its fd
 * table and `environ` (which init no longer uses), and reports through `ex_w`. */
#define _GNU_SOURCE
#include "command.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "jail.h"
#include "msg.h"
#include "protocol.h"
#include "util.h"

/* execvpe with the job's PATH, as Python's os.execvpe does it: unlike glibc's, it never runs
 * a file that is not an executable with /bin/sh. Returns only on failure, errno set: the first
 * error other than "not found", else the last. */
static void exec_path(char **argv, char **envp) {
    const char *file = argv[0], *path = "/bin:/usr/bin";
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return;
    }
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    int saved = 0, last = ENOENT;
    size_t flen = strlen(file);
    for (const char *dir = path;; dir++) {
        const char *end = strchrnul(dir, ':');
        size_t dlen = (size_t)(end - dir);
        char full[PATH_MAX];
        if (dlen + flen + 2 <= sizeof full) {
            memcpy(full, dir, dlen);
            full[dlen] = '/';
            memcpy(full + dlen + 1, file, flen + 1);
            execve(dlen ? full : file, argv, envp);
            last = errno;
            if (last != ENOENT && last != ENOTDIR && !saved) saved = last;
        }
        if (!*end) break;
        dir = end;
    }
    errno = saved ? saved : last;
}

static int join_cgroup(const struct job *job, const int *procs, struct failure *f) {
    for (int i = 0; i < job->nprocs; i++)
        if (write(procs[i], "0", 1) != 1) return fail(f, "cgroup", "write", job->procs[i]);
    return 0;
}

/* exec keeps ignored signals (Python ignores SIGPIPE and SIGXFSZ): start from defaults. */
static int default_signals(struct failure *f) {
    for (int sig = 1; sig < NSIG; sig++) {
        /* glibc keeps some numbers for itself (SIGCANCEL, SIGSETXID): EINVAL, harmless. */
        if (sig != SIGKILL && sig != SIGSTOP && signal(sig, SIG_DFL) == SIG_ERR &&
            errno != EINVAL)
            return fail(f, "setup", "signal", NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL)) return fail(f, "setup", "sigprocmask", NULL);
    return 0;
}

static int take_stdio(const int stdio[3], int tty, struct failure *f) {
    if (setsid() < 0) return fail(f, "setup", "setsid", NULL);
    int in = stdio[0] >= 0 ? stdio[0] : open("/dev/null", O_RDONLY);
    if (in < 0) return fail(f, "setup", "open", "/dev/null");
    if (dup2(in, 0) < 0 || dup2(stdio[1], 1) < 0 || dup2(stdio[2], 2) < 0)
        return fail(f, "setup", "dup2", NULL);
    /* The pty is the new session's controlling terminal: job control, ^C as SIGINT. */
    if (tty && ioctl(0, TIOCSCTTY, 0)) return fail(f, "setup", "ioctl", "TIOCSCTTY");
    return 0;
}

static int drop_privileges(const struct job *job, struct failure *f) {
    /* As root: a soft limit may be raised only before the uid changes. */
    if (jail_set_rlimits(job->rlimits, job->nrlimits))
        return fail(f, "rlimits", "setrlimit", NULL);
    if (strcmp(job->gid, TJOB_KEEP_ID) != 0) {
        if (setgroups(0, NULL)) return fail(f, "user", "setgroups", job->uid);
        if (setgid((gid_t)atol(job->gid))) return fail(f, "user", "setgid", job->gid);
        if (setuid((uid_t)atol(job->uid))) return fail(f, "user", "setuid", job->uid);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return fail(f, "setup", "prctl", NULL);
    return 0;
}

void exec_command(const struct job *job, const int *procs, const int stdio[3], int tty, int ex_w) {
    struct failure f;
    if (join_cgroup(job, procs, &f) == 0 && default_signals(&f) == 0 &&
        take_stdio(stdio, tty, &f) == 0 && drop_privileges(job, &f) == 0) {
        if (chdir(job->cwd)) {
            fail(&f, "chdir", "chdir", job->cwd);
        } else if (jail_load_filter()) { /* last before exec: nothing after it needs a call */
            fail(&f, "seccomp", "seccomp", NULL);
        } else {
            exec_path(job->argv, job->envp);
            fail(&f, "exec", "exec", job->argv[0]);
        }
    }
    char line[512];
    /* Init reads this line; if it cannot be written, init reads nothing, and the job is
     * recorded as the command having run and exited 127. */
    if (write_all(ex_w, line, format_failure(line, sizeof line, &f))) _exit(126);
    _exit(127);
}
