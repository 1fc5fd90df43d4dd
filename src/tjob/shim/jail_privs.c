/* Privileges and limits of the job (issue 13, sections 1, 3 and 4): what init drops once per
 * spare, what the command sets per job, and the seccomp filter it loads last. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"
#include "jail_internal.h"

struct jail_settings jail;

/* No capability can come back at exec: the bounding and inheritable sets empty, no ambient
 * ones, and root (a job with user=None) gains none by being root (SECBIT_NOROOT). init keeps
 * its own effective set: it still sets the hostname, joins cgroups, sizes the scratch. */
static int drop_capabilities(void) {
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL) return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) return -1;
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &head, data)) return -1;
    data[0].inheritable = data[1].inheritable = 0;
    if (syscall(SYS_capset, &head, data)) return -1;
    /* Not SECBIT_NO_SETUID_FIXUP: the command's setuid must still clear its capabilities. Not
     * SECBIT_KEEP_CAPS_LOCKED: ping (iputils) calls PR_SET_KEEPCAPS, harmless without caps. */
    int bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
               SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    return prctl(PR_SET_SECUREBITS, bits, 0, 0, 0);
}

int jail_drop_privileges(void) {
    /* A session keyring of the job's own (anonymous, owned by root, charged to root's key
     * quota, not to the job user's small one), not tjobs' session keyring. */
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0) return -1;
    return drop_capabilities();
}

int jail_set_rlimits(char **limits, int count) {
    static const struct {
        const char *name;
        int resource;
    } known[] = {{"nofile", RLIMIT_NOFILE}, {"core", RLIMIT_CORE},
                 {"fsize", RLIMIT_FSIZE},   {"nproc", RLIMIT_NPROC}};
    for (int i = 0; i < count; i++) {
        char *eq = strchr(limits[i], '='), *colon = eq ? strchr(eq, ':') : NULL;
        size_t k = 0, n = sizeof known / sizeof *known, len = eq ? (size_t)(eq - limits[i]) : 0;
        while (eq && k < n &&
               (strlen(known[k].name) != len || strncmp(limits[i], known[k].name, len)))
            k++;
        if (!colon || k == n) {
            errno = EINVAL;
            return -1;
        }
        /* Lowered only: raising a hard limit needs CAP_SYS_RESOURCE, which tjobs may lack. */
        struct rlimit now, rl = {strtoull(eq + 1, NULL, 10), strtoull(colon + 1, NULL, 10)};
        if (getrlimit(known[k].resource, &now)) return -1;
        if (rl.rlim_max > now.rlim_max) rl.rlim_max = now.rlim_max;
        if (rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
        if (setrlimit(known[k].resource, &rl)) return -1;
    }
    return 0;
}

int jail_load_filter(void) {
    if (!jail.filter.len) return 0;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &jail.filter);
}
