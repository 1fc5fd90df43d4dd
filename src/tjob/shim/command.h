/* The command's own process, between init's vfork and the exec. */
#ifndef TJOB_COMMAND_H
#define TJOB_COMMAND_H
#include "jobfile.h"

/* Join the job's cgroup (`procs`: its open cgroup.procs files), reset signals, take `stdio`
 * (stdin: -1 for /dev/null; stdout, stderr; with `tty`, stdin is the controlling terminal),
 * drop privileges, chdir, exec. On failure writes init's failure line for the step to `ex_w`
 * (close-on-exec: init reads nothing if the exec succeeds). Never returns. */
void exec_command(const struct job *job, const int *procs, const int stdio[3], int tty, int ex_w)
    __attribute__((noreturn));

#endif
