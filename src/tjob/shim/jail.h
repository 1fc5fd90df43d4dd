/* The job's jail (issue 13): what init builds around the command before it execs.
 *
 * Server-wide settings arrive once, as the zygote's last argument (jail_setup, in the zygote:
 * the seccomp filter is compiled to BPF there, once, and every spare inherits it); init builds
 * the read-only root in each spare ahead of its job (jail_enter_root, jail_drop_privileges);
 * per-job settings (scratch size, rlimits) come in exec.bin and are applied by init and the
 * command (jail_size_scratch, jail_set_rlimits), the filter last, right before exec
 * (jail_load_filter). Each returns 0, or -1 with errno set. */
#ifndef TJOB_JAIL_H
#define TJOB_JAIL_H

#include <stddef.h>

/* Parse the settings (lines: "hide PATH", "default ACTION ERRNO", "arch NAME", "rule ACTION
 * ERRNO SYSCALL [INDEX:OP:VALUE:VALUE2]..."; see src/tjob/jail.py) and compile the filter.
 * On error, -1 and a message in `err`. */
int jail_setup(const char *settings, char *err, size_t errlen);

/* In a child, the whole jail as for a job; -1 and a message in `err` if the kernel refuses. */
int jail_check(char *err, size_t errlen);

/* In init, after unshare(CLONE_NEWNS ...): the read-only root, /dev, /proc, scratch, hidden
 * paths; pivot_root into it. */
int jail_enter_root(void);

/* In init: capability bounding/ambient/inheritable sets cleared, securebits locked, a fresh
 * session keyring. */
int jail_drop_privileges(void);

/* In init, per job: each scratch tmpfs sized to `bytes` (0: left as mounted). */
int jail_size_scratch(const char *bytes);

/* Volumes (jail_volumes.c). jail_setup: one "volume NAME MODE PATH" line (kept, not copied).
 * In init, before jail_enter_root: each declared path cloned, held as an fd; on failure
 * `*failed` is the path. Per job, in the pivoted root: "MODE NAME SUBDIR TARGET" lines
 * mounted; on failure `*call` names the step, `*target` the line's target. */
int jail_add_volume(char *line);
int jail_open_volumes(const char **failed);
int jail_mount_volumes(char **lines, int count, const char **call, const char **target);

/* In the command, as root: "NAME=SOFT:HARD" for NAME in nofile, core, fsize, nproc. */
int jail_set_rlimits(char **limits, int count);

/* In the command, last before exec (after no_new_privs): the filter, if there is one. */
int jail_load_filter(void);

#endif
