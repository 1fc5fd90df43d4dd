/* A job's supervisor: outside the job's namespaces and cgroup, holds its output pipes,
 * writes its log and reports its end. */
#ifndef TJOB_SUPERVISOR_H
#define TJOB_SUPERVISOR_H

/* What the fallback recorder needs: `python -I -c CODE CONF DIR REPORT [REPLY_FD]`. */
struct recorder {
    const char *python, *code, *conf;
};

/* The life of a spare supervisor: build the job's namespaces and init, wait on `chan` for a
 * job, start it, reply to the engine, copy the job's output into its log, report the end.
 * `busy` is closed once the job runs. Returns the exit status. */
int supervise(int chan, int busy, const char *cgroup_root, const struct recorder *rec);

#endif
