/* Joining a running job (issue 16): what an exec'd process does instead of what a job's init
 * builds. The job's init is named by a pidfd; its namespaces and jail are entered, not made. */
#ifndef TJOB_JOIN_H
#define TJOB_JOIN_H

#include "msg.h"

/* In the exec supervisor, before it forks: its children are born in the job's PID namespace
 * (setns(CLONE_NEWPID) moves only future children; the supervisor stays outside). */
int join_pid_namespace(int init_pidfd, struct failure *f);

/* In the forked child: die with the exec supervisor, enter the job's mount, network, UTS and
 * IPC namespaces (its pivoted, read-only root; root and cwd become the namespace's root), and
 * drop what init dropped once per spare (jail_drop_privileges). What the job's command does
 * next, the child does too: exec_command (command.c). */
int join_job(int init_pidfd, struct failure *f);

#endif
