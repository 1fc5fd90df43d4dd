/* Volumes (issue 13, section 2): host directories the server declared, mounted where a job
 * asks (src/tjob/volumes.py says what the engine checks before).
 *
 * Declared: "volume NAME MODE PATH" lines of the jail's settings (MODE ro or rw). In each
 * spare, before pivot_root, every declared path is cloned with open_tree(OPEN_TREE_CLONE):
 * that one mount, not the mounts below it, private, nosuid, nodev, read-only unless declared
 * writable. The detached clones are held as fds across the pivot (a clone can be attached
 * from its fd after the host's tree is gone; a path could not be).
 *
 * Per job (exec.bin's volume lines "MODE NAME SUBDIR TARGET"): the target is resolved with
 * RESOLVE_NO_SYMLINKS, and created if missing, which succeeds only where the job's root is
 * writable (its scratch: /tmp, /var/tmp, /run); the clone is attached there with move_mount.
 * With a SUBDIR (the client's own directory of a writable volume, "-" for none), that
 * subdirectory, opened without following symlinks and without leaving the volume, is cloned
 * in turn and takes the whole volume's place, which is unmounted: the job never sees other
 * clients' directories. Read-only if MODE says so. Each spare serves one job, so each clone
 * is attached once; a volume asked for again is cloned from where it went first. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"

#define MAX_VOLUMES 64

static struct volume {
    const char *name, *path;
    int writable, fd, first; /* first: this job's first mount of it, once made */
} volumes[MAX_VOLUMES];
static int nvolumes;

int jail_add_volume(char *line) {
    char *mode = strchr(line, ' '), *path = mode ? strchr(mode + 1, ' ') : NULL;
    if (!path || path[1] != '/' || nvolumes == MAX_VOLUMES) return errno = EINVAL, -1;
    *mode++ = *path++ = 0;
    volumes[nvolumes++] = (struct volume){
        .name = line, .path = path, .writable = !strcmp(mode, "rw"), .fd = -1, .first = -1};
    return 0;
}

static int set_attr(int tree, int read_only) {
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (read_only ? MOUNT_ATTR_RDONLY : 0),
        .attr_clr = read_only ? 0 : MOUNT_ATTR_RDONLY,
        .propagation = MS_PRIVATE,
    };
    return (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr);
}

static int clone_tree(int dirfd, const char *path) {
    unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW;
    return (int)syscall(SYS_open_tree, dirfd, path, flags | (*path ? 0 : AT_EMPTY_PATH));
}

int jail_open_volumes(const char **failed) {
    for (int i = 0; i < nvolumes; i++) {
        struct volume *v = &volumes[i];
        *failed = v->path;
        v->fd = clone_tree(AT_FDCWD, v->path);
        if (v->fd < 0 || set_attr(v->fd, !v->writable)) return -1;
    }
    return 0;
}

static int open_beneath(int dirfd, const char *path, unsigned long long resolve) {
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | resolve};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* The target directory, made (with its missing parents) if need be; symlinks refused. */
static int open_target(char *target, const char **call) {
    int fd = open_beneath(AT_FDCWD, target, 0);
    if (fd >= 0 || errno != ENOENT) return fd;
    for (char *slash = strchr(target + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash) *slash = 0;
        int rc = mkdir(target, 0755);
        if (slash) *slash = '/';
        if (rc && errno != EEXIST) return *call = "mkdir", -1;
        if (!slash) break;
    }
    return open_beneath(AT_FDCWD, target, 0);
}

static int attach(int tree, int dir) {
    return (int)syscall(SYS_move_mount, tree, "", dir, "",
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

/* The client's subdirectory of the volume attached at `target` (through `dir`), cloned; the
 * whole volume unmounted. The clone's fd, or -1. */
static int subtree(char *target, const char *sub) {
    int top = open_beneath(AT_FDCWD, target, 0);
    if (top < 0) return -1;
    int fd = open_beneath(top, sub, RESOLVE_BENEATH | RESOLVE_NO_XDEV);
    close(top);
    if (fd < 0) return -1;
    int tree = clone_tree(fd, "");
    close(fd);
    if (tree >= 0 && umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW)) {
        close(tree);
        return -1;
    }
    return tree;
}

/* One "MODE NAME SUBDIR TARGET" line; on failure `*call` names the step. */
static int mount_volume(char *line, const char **call) {
    char *name = strchr(line, ' '), *sub = name ? strchr(name + 1, ' ') : NULL,
         *target = sub ? strchr(sub + 1, ' ') : NULL;
    *call = "parse";
    if (!target || target[1] != '/') return errno = EINVAL, -1;
    *name++ = *sub++ = *target++ = 0;
    int read_only = strcmp(line, "rw") != 0;
    struct volume *v = NULL;
    for (int i = 0; i < nvolumes && !v; i++)
        if (!strcmp(volumes[i].name, name)) v = &volumes[i];
    *call = "volume";
    if (!v || (v->fd < 0 && v->first < 0)) return errno = ENOENT, -1;
    if (!read_only && !v->writable) return errno = EROFS, -1;
    int tree = v->fd, rc = -1, again = v->first >= 0;
    v->fd = -1;
    if (again) { /* asked for twice: a clone of its first mount (the same subdirectory) */
        *call = "open_tree";
        if ((tree = clone_tree(v->first, "")) < 0) return -1;
    }
    *call = "target";
    int dir = open_target(target, call);
    if (dir >= 0 && !again && strcmp(sub, "-") != 0) {
        *call = "move_mount";
        rc = attach(tree, dir);
        close(tree);
        close(dir);
        *call = "subdirectory";
        tree = rc ? -1 : subtree(target, sub);
        *call = "target";
        dir = tree < 0 ? -1 : open_beneath(AT_FDCWD, target, 0);
        rc = -1;
    }
    if (dir >= 0) {
        *call = "mount_setattr";
        rc = set_attr(tree, read_only);
        if (!rc) *call = "move_mount", rc = attach(tree, dir);
        /* The first mount's root, held: a path could lead elsewhere once a later volume
         * is mounted over a parent of it. */
        if (!rc && !again && (v->first = open_beneath(AT_FDCWD, target, 0)) < 0) rc = -1;
        close(dir);
    }
    if (tree >= 0) close(tree);
    return rc;
}

int jail_mount_volumes(char **lines, int count, const char **call, const char **target) {
    for (int i = 0; i < count; i++) {
        /* `target`: the line's last field, for the failure report. */
        const char *t = lines[i];
        for (int spaces = 0; *t && spaces < 3; t++) spaces += *t == ' ';
        *target = t;
        if (mount_volume(lines[i], call)) return -1;
    }
    for (int i = 0; i < nvolumes; i++) { /* not kept open under the command */
        if (volumes[i].fd >= 0) close(volumes[i].fd), volumes[i].fd = -1;
        if (volumes[i].first >= 0) close(volumes[i].first), volumes[i].first = -1;
    }
    return 0;
}
