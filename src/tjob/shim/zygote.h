/* The zygote: forks spare supervisors for the fork server. */
#ifndef TJOB_ZYGOTE_H
#define TJOB_ZYGOTE_H
#include "supervisor.h"

/* Forks a spare supervisor for each (chan, busy) pair of fds that arrives on `ctl`; returns
 * when `ctl` closes (the fork server is gone). */
int zygote(int ctl, const char *cgroup_root, const struct recorder *rec);

#endif
