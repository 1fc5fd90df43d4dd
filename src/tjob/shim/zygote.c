/* The zygote: one small C process that forks the spares, so that no interpreter forks. */
#define _GNU_SOURCE
#include "zygote.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "execsup.h"
#include "msg.h"
#include "protocol.h"
#include "util.h"

/* An exec into a running job (issue 16): "e" + its handoff, with the engine's reply socket and
 * a pidfd of the job's init. The fds are closed by the caller. */
static void fork_exec(int ctl, const char *handoff, size_t len, const int fds[2], const char *root) {
    const char *dir, *stdio;
    long long cap;
    if (parse_handoff(handoff, len, &dir, &cap, &stdio)) {
        log_error("zygote", "malformed exec request");
        return; /* the engine sees its socket close unanswered */
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(ctl);
        _exit(exec_supervise(fds[0], fds[1], dir, cap, stdio, root));
    }
    if (pid < 0) log_error("zygote", "fork");
}

int zygote(int ctl, const char *cgroup_root, const struct recorder *rec) {
    keep_only(ctl, -1);
    if (signal(SIGCHLD, SIG_IGN) == SIG_ERR) { /* spares are reaped by the kernel */
        log_error("zygote", "signal");
        return 1;
    }
    for (;;) {
        char msg[PATH_MAX + 32];
        int fds[2], nfds;
        ssize_t n = recv_with_fds(ctl, msg, sizeof msg - 1, fds, 2, &nfds);
        if (n <= 0) return 0;
        msg[n] = 0;
        if (nfds == 2 && n > 1 && msg[0] == TJOB_EXEC_REQUEST[0])
            fork_exec(ctl, msg + 1, (size_t)n - 1, fds, cgroup_root);
        if (nfds == 2 && (size_t)n == strlen(TJOB_SPARE_REQUEST) &&
            memcmp(msg, TJOB_SPARE_REQUEST, (size_t)n) == 0) {
            pid_t pid = fork();
            if (pid == 0) {
                close(ctl);
                _exit(supervise(fds[0], fds[1], cgroup_root, rec));
            }
            /* No spare: handing it a job fails, and the fork server starts another zygote. */
            if (pid < 0) log_error("zygote", "fork");
        }
        for (int i = 0; i < nfds; i++) close(fds[i]);
    }
}
