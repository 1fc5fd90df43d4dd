/* `compat-probe NAME`: one call of `tjob-shim selftest seccomp`'s 32-bit list, made by an
 * AArch32 program (built for armhf, run on the aarch64 guest's compat ABI); exits with the
 * call's errno, 0 if it worked. The arguments are those of the selftest's i386 list
 * (src/tjob/shim/selftest_seccomp.c): NULL pointers, harmless values. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct call {
    const char *name;
    long nr, a, b, c;
} calls[] = {
    {"getpid", SYS_getpid, 0, 0, 0},
    {"personality-query", SYS_personality, -1, 0, 0}, /* 0xffffffff: a query */
    {"unshare-user", SYS_unshare, CLONE_NEWUSER, 0, 0},
    {"setns", SYS_setns, -1, 0, 0},
    {"mount", SYS_mount, 0, 0, 0},
    {"keyctl", SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0},
    {"bpf", SYS_bpf, BPF_MAP_CREATE, 0, 0},
    {"perf_event_open", SYS_perf_event_open, 0, 0, 0},
    {"userfaultfd", SYS_userfaultfd, O_CLOEXEC, 0, 0},
    {"io_uring_setup", SYS_io_uring_setup, 1, 0, 0},
    {"personality-set", SYS_personality, READ_IMPLIES_EXEC, 0, 0},
    {"socket-vsock", SYS_socket, AF_VSOCK, SOCK_STREAM, 0},
    {"reboot", SYS_reboot, 0, 0, 0},
    {"clone3", SYS_clone3, 0, 0, 0},
};

int main(int argc, char **argv) {
    for (size_t i = 0; argc == 2 && i < sizeof calls / sizeof *calls; i++)
        if (strcmp(argv[1], calls[i].name) == 0) {
            const struct call *c = &calls[i];
            return syscall(c->nr, c->a, c->b, c->c, 0, 0) < 0 ? errno : 0;
        }
    fprintf(stderr, "usage: compat-probe NAME (a name of selftest_seccomp.c's compat list)\n");
    return 255;
}
