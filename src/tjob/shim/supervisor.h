/* A job's supervisor: outside the job's namespaces and cgroup, holds its output pipes,
 * writes its log and reports its end. */
#ifndef TJOB_SUPERVISOR_H
#define TJOB_SUPERVISOR_H

/* The zygote's recorder arguments (`python -I -c CODE CONF`): supervisors of earlier releases
 * exec'd it to record an end; these leave protocol.END_FILE instead. Kept so the zygote's argv,
 * which identifies those earlier supervisors, stays the same. */
struct recorder {
    const char *python, *code, *conf;
};

/* The life of a spare supervisor: build the job's namespaces and init, wait on `chan` for a
 * job, start it, reply to the engine, copy the job's output into its log, report the end.
 * `busy` is closed once the job runs. Returns the exit status. */
int supervise(int chan, int busy, const char *cgroup_root, const struct recorder *rec);

#endif
