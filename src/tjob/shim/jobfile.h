/* exec.bin, as the engine writes it (protocol.ExecJob: the field order is documented there). */
#ifndef TJOB_JOBFILE_H
#define TJOB_JOBFILE_H
#include <stddef.h>

struct job {
    char *hostname, *cwd, *uid, *gid; /* uid and gid TJOB_KEEP_ID: stay root */
    int nprocs, argc, envc;
    char **procs, **argv, **envp; /* NULL-terminated */
    char *scratch;                /* bytes for each scratch tmpfs ("0": as mounted) */
    int nrlimits;
    char **rlimits; /* "NAME=SOFT:HARD" */
    int nvolumes;
    char **volumes; /* "MODE NAME SUBDIR TARGET" (jail_volumes.c) */
};

/* Fields of `buf` (which must outlive `job`) into `job`; -1 and errno EINVAL if malformed,
 * ENOMEM if the lists do not fit. */
int parse_job(char *buf, size_t len, struct job *job);
/* The inverse, for `tjob-shim selftest`: exec.bin's bytes on `fd`. */
int write_job(int fd, const struct job *job);

#endif
