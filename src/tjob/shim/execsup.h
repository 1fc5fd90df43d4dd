/* An exec's supervisor (issue 16): a job's supervisor in small, for one more command run
 * inside a running job. Outside the job's namespaces and cgroup, like a job's supervisor; its
 * one child joins the job's (join.c) and runs as the job's command does (command.c). */
#ifndef TJOB_EXECSUP_H
#define TJOB_EXECSUP_H

/* The life of an exec supervisor, forked by the zygote: `dir` (the exec's directory, holding
 * its exec.bin) and `cap` from the fork server's handoff; `reply` the engine's socket;
 * `init_pidfd` the job's init; `stdio` -i/-t's "FLAGS ROWS COLS" (jobstdin.h; NULL: none: stdin
 * is /dev/null). Starts the command, answers the engine (protocol.StartReply
 * with a pidfd of itself; on failure the socket is closed and end-report says why), copies the
 * output into dir/output.log, and writes the end (protocol.EndReport) into dir/end-report.
 * Returns the exit status. */
int exec_supervise(int reply, int init_pidfd, const char *dir, long long cap, const char *stdio,
                   const char *cgroup_root);

#endif
