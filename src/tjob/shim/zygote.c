/* The zygote: one small C process that forks the spares, so that no interpreter forks. */
#define _GNU_SOURCE
#include "zygote.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "msg.h"
#include "protocol.h"
#include "util.h"

int zygote(int ctl, const char *cgroup_root, const struct recorder *rec) {
    keep_only(ctl, -1);
    if (signal(SIGCHLD, SIG_IGN) == SIG_ERR) { /* spares are reaped by the kernel */
        log_error("zygote", "signal");
        return 1;
    }
    for (;;) {
        char msg[8];
        int fds[2], nfds;
        ssize_t n = recv_with_fds(ctl, msg, sizeof msg, fds, 2, &nfds);
        if (n <= 0) return 0;
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
