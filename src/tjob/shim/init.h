/* The job's init: PID 1 of the job's namespaces. */
#ifndef TJOB_INIT_H
#define TJOB_INIT_H

/* Build the namespaces, wait on `chan` for the job (its pipes and exec.bin), start the
 * command, forward signals to it, reap, and report on `rep_w` (protocol: init's reports).
 * Returns init's exit status. */
int run_init(int chan, int rep_w, const char *cgroup_root);

#endif
