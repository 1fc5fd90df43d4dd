/* tjob-shim: the zygote, and each job's supervisor and init, as one small C program.
 *
 * The fork server (Python) starts one zygote; the zygote forks a spare supervisor ahead of
 * each job. Being C, a running job costs two small processes instead of two copies of an
 * interpreter, and forking or ending one copies or frees a few page tables, not a Python heap.
 *
 *     zygote (zygote.c): forks spares on request from the fork server
 *       +- supervisor (supervisor.c, logwriter.c; host namespaces, outside the job cgroup):
 *          output pipes -> framed log; reports the end
 *            +- init (init.c): PID 1 of new PID/mount/net/UTS/IPC namespaces; reaps, forwards
 *                 +- the command (command.c): joins the job cgroup, drops privileges, execs
 *
 * Every message and constant that crosses a process boundary is in src/tjob/protocol/;
 * protocol.h is generated from it at build time, and msg.c / jobfile.c encode and decode.
 * `tjob-shim selftest` exposes those to the tests. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jail.h"
#include "protocol.h"
#include "selftest.h"
#include "util.h"
#include "zygote.h"

static char *copy(const char *s) {
    char *c = strdup(s);
    if (!c) {
        perror("tjob-shim: strdup");
        exit(1);
    }
    return c;
}

int main(int argc, char **argv) {
    char err[256];
    if (argc >= 2 && strcmp(argv[1], "selftest") == 0) return selftest(argc - 2, argv + 2);
    if (argc == 3 && strcmp(argv[1], "jail-check") == 0) { /* the engine's start-up check */
        if (jail_setup(argv[2], err, sizeof err) || jail_check(err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        return 0;
    }
    if ((argc != 7 && argc != 8) || strcmp(argv[1], TJOB_ZYGOTE_ARGV1) != 0) {
        fprintf(stderr, "usage: tjob-shim zygote CTL_FD CGROUP_ROOT PYTHON CODE CONF [JAIL]\n"
                        "(started by tjob's launcher, not by hand)\n");
        return 2;
    }
    /* The jail's settings: parsed, and the filter compiled, once, before the title overwrites
     * argv; every spare inherits them. */
    if (argc == 8 && jail_setup(argv[7], err, sizeof err)) {
        fprintf(stderr, "tjob-shim: %s\n", err);
        return 2;
    }
    /* Copies: the processes' titles (protocol.SUPERVISOR_ARGV) overwrite argv. */
    struct recorder rec = {copy(argv[4]), copy(argv[5]), copy(argv[6])};
    const char *root = copy(argv[3]);
    int ctl = atoi(argv[2]);
    static const char *const title[] = {TJOB_SUPERVISOR_ARGV0, TJOB_ZYGOTE_ARGV1, NULL};
    title_init(argc, argv);
    set_title(title);
    return zygote(ctl, root, &rec);
}
