/* Joining a running job's namespaces and jail (see join.h): runc's nsexec and nsenter, with a
 * pidfd (Linux 5.8+) so that every namespace is entered at once from the same process, and a
 * recycled pid can never be entered. */
#define _GNU_SOURCE
#include "join.h"

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>

#include "jail.h"

#define JOB_NAMESPACES (CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)

int join_pid_namespace(int init_pidfd, struct failure *f) {
    if (setns(init_pidfd, CLONE_NEWPID)) return fail(f, "exec", "setns", "pid");
    return 0;
}

int join_job(int init_pidfd, struct failure *f) {
    /* Its output pipes would be read by nobody: go with the supervisor, as a job's init does. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) return fail(f, "exec", "prctl", NULL);
    if (setns(init_pidfd, JOB_NAMESPACES)) return fail(f, "exec", "setns", NULL);
    if (jail_drop_privileges()) return fail(f, "privileges", "jail_drop_privileges", NULL);
    return 0;
}
