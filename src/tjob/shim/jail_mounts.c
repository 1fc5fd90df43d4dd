/* The job's view of the filesystem (issue 13, section 2), built by init in each spare:
 *
 *   /             the host's root, bound recursively, every mount read-only, nosuid, nodev
 *   /proc         this PID namespace's; Docker's masked paths and ours bound over with
 *                 /dev/null or an empty read-only directory; sys, bus, fs, irq read-only
 *   /sys          a fresh sysfs of this network namespace, read-only; firmware masked
 *   /dev          a read-only tmpfs: null zero full random urandom tty, a devpts instance of
 *                 the job's own (pts/ptmx), fd and std* links, shm
 *   /tmp /var/tmp /run (/run/lock) /dev/shm   private tmpfs, the only writable places; their
 *                 pages are charged to the job's memory cgroup
 *   hidden paths  (jail_setup's "hide" lines) an empty read-only directory, or /dev/null for
 *                 files
 *
 * then pivot_root into it and the old root detached, as bubblewrap and runc do. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "jail.h"
#include "jail_internal.h"

#define STAGE "/tmp"            /* a private tmpfs here holds the new root while it is built */
#define ROOT STAGE "/.tjob-root"
/* Bound read-only over every masked or hidden directory: one filesystem for them all, where a
 * tmpfs each cost a superblock each to make and to tear down (a dozen per job). */
#define EMPTY STAGE "/.tjob-empty"
#define PTY_MAX "64"            /* ptys per job, from the kernel's non-reserved pool */

/* What Docker masks (moby oci/defaults.go), and what the host's kernel build and boot say. */
static const char *const MASKED[] = {
    "proc/kcore",       "proc/keys",        "proc/key-users",  "proc/timer_list",
    "proc/timer_stats", "proc/sched_debug", "proc/latency_stats", "proc/cmdline",
    "proc/config.gz",   "proc/kallsyms",    "proc/sysrq-trigger", "proc/interrupts",
    "proc/acpi",        "proc/asound",      "proc/scsi",       "proc/driver",
    "sys/firmware",     "sys/devices/virtual/powercap", "sys/kernel/security",
};
static const char *const READ_ONLY[] = {"proc/sys", "proc/bus", "proc/fs", "proc/irq"};

/* Writable, empty, the job's own: path, mode. */
static const struct {
    const char *path, *opts;
} SCRATCH[] = {
    {"tmp", "mode=1777"}, {"var/tmp", "mode=1777"}, {"run", "mode=0755"}, {"dev/shm", "mode=1777"},
};
#define NSCRATCH (sizeof SCRATCH / sizeof *SCRATCH)

static const struct {
    const char *name;
    unsigned major, minor;
} DEVICES[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
               {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};

static const char *const LINKS[][2] = {
    {"pts/ptmx", "ptmx"},           {"/proc/self/fd", "fd"},
    {"/proc/self/fd/0", "stdin"},   {"/proc/self/fd/1", "stdout"},
    {"/proc/self/fd/2", "stderr"},
};

static int is_dir(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* `src` bound over `path`, then read-only with `flags` (a bind takes none of its own). */
static int bind_read_only(const char *src, const char *path, unsigned long flags) {
    if (mount(src, path, NULL, MS_BIND, NULL)) return -1;
    return mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, NULL);
}

/* The empty directory over a directory, /dev/null over anything else; missing: skipped. */
static int mask(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
    if (S_ISLNK(st.st_mode)) return 0; /* resolved by the caller: this one leads elsewhere */
    if (S_ISDIR(st.st_mode)) return bind_read_only(EMPTY, path, MS_NOSUID | MS_NODEV | MS_NOEXEC);
    return bind_read_only("/dev/null", path, MS_NOSUID | MS_NOEXEC);
}

static int read_only(const char *path) {
    if (!is_dir(path)) return 0;
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL)) return -1;
    return mount(NULL, path, NULL,
                 MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

/* The host's tree, cloned under ROOT, every mount read-only (mount_setattr: one call for the
 * whole tree, where remounting each submount would take one per line of mountinfo). */
static int bind_host_root(void) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) return -1;
    if (mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=4k")) return -1;
    if (mkdir(ROOT, 0755) || mkdir(EMPTY, 0755) || chmod(EMPTY, 0755)) return -1;
    if (mount("/", ROOT, NULL, MS_BIND | MS_REC, NULL)) return -1;
    /* The clone holds the staging tmpfs and the host's /proc, /sys and /dev trees (autofs,
     * cgroupfs, devpts): each is covered below by the job's own, which a job cannot unmount.
     * Covered, not unmounted: each unmount waits for an RCU grace period, slow where CPUs are
     * few or emulated. */
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                          MOUNT_ATTR_NODEV};
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, ROOT, AT_RECURSIVE, &attr, sizeof attr);
}

static int make_dev(void) {
    const char *dev = ROOT "/dev";
    if (!is_dir(dev)) {
        errno = ENOTDIR;
        return -1;
    }
    if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64"))
        return -1;
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof DEVICES / sizeof *DEVICES; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, DEVICES[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(DEVICES[i].major, DEVICES[i].minor)) ||
            chmod(path, 0666)) /* against init's umask */
            return -1;
    }
    for (size_t i = 0; i < sizeof LINKS / sizeof *LINKS; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, LINKS[i][1]);
        if (symlink(LINKS[i][0], path)) return -1;
    }
    if (mkdir(ROOT "/dev/pts", 0755) || mkdir(ROOT "/dev/shm", 01777)) return -1;
    /* A devpts of the job's own: its ptys are not the host's, and at most PTY_MAX. */
    return mount("devpts", ROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620,gid=5,max=" PTY_MAX);
}

static int make_scratch(void) {
    char path[PATH_MAX];
    for (size_t i = 0; i < NSCRATCH; i++) {
        snprintf(path, sizeof path, "%s/%s", ROOT, SCRATCH[i].path);
        if (is_dir(path) && mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, SCRATCH[i].opts))
            return -1;
    }
    if (is_dir(ROOT "/run") && (mkdir(ROOT "/run/lock", 01777) || chmod(ROOT "/run/lock", 01777)))
        return -1;
    /* Populated: /dev itself read-only from now on (its nodes stay usable). */
    return mount(NULL, ROOT "/dev", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
                 NULL);
}

static int make_proc_sys(void) {
    if (mount("proc", ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) return -1;
    if (mount("sysfs", ROOT "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
        return -1;
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof READ_ONLY / sizeof *READ_ONLY; i++) {
        snprintf(path, sizeof path, "%s/%s", ROOT, READ_ONLY[i]);
        if (read_only(path)) return -1;
    }
    for (size_t i = 0; i < sizeof MASKED / sizeof *MASKED; i++) {
        snprintf(path, sizeof path, "%s/%s", ROOT, MASKED[i]);
        if (mask(path)) return -1;
    }
    return 0;
}

static int hide_paths(void) {
    char path[PATH_MAX];
    for (int i = 0; i < jail.nhide; i++) {
        if (snprintf(path, sizeof path, "%s%s", ROOT, jail.hide[i]) >= (int)sizeof path) continue;
        if (mask(path)) return -1;
    }
    return 0;
}

int jail_enter_root(void) {
    if (bind_host_root() || make_dev() || make_scratch() || make_proc_sys() || hide_paths())
        return -1;
    /* pivot_root(".", "."): the old root ends up stacked on the new one, then detached. */
    if (chdir(ROOT) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) ||
        chdir("/"))
        return -1;
    return 0;
}

int jail_size_scratch(const char *bytes) {
    if (!bytes || !*bytes || strcmp(bytes, "0") == 0) return 0;
    char opts[64], path[PATH_MAX];
    for (size_t i = 0; i < NSCRATCH; i++) {
        snprintf(path, sizeof path, "/%s", SCRATCH[i].path);
        snprintf(opts, sizeof opts, "size=%s", bytes);
        if (is_dir(path) && mount(NULL, path, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts))
            return -1;
    }
    return 0;
}
