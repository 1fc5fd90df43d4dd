/* PID 1 of the aarch64 guest (tests/aarch64/run.sh), from an initramfs holding only itself,
 * /tjob-shim, /compat-probe (AArch32) and /jail-settings, all static: no userland of the
 * guest's arch is needed. It mounts /proc and /dev, runs `tjob-shim selftest seccomp
 * /compat-probe < /jail-settings`, prints the marker line with its exit status on the
 * console, and powers the machine off. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#define MARKER "TJOB-AARCH64-SELFTEST-EXIT"

static int setup(void) {
    struct utsname uts;
    /* /dev: the console (the initramfs has no device nodes) and /dev/null (the exec probe). */
    if (mkdir("/dev", 0755) && errno != EEXIST) return -1;
    if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL)) return -1;
    int console = open("/dev/console", O_RDWR);
    if (console < 0 || dup2(console, 0) < 0 || dup2(console, 1) < 0 || dup2(console, 2) < 0)
        return -1;
    if (mkdir("/proc", 0555) && errno != EEXIST) return -1;
    if (mount("proc", "/proc", "proc", 0, NULL) || uname(&uts)) return -1;
    printf("guest: %s %s %s\n", uts.sysname, uts.release, uts.machine);
    return fflush(stdout) ? -1 : 0;
}

/* The selftest's exit status, or 128 + the signal that ended it, or 255 (it did not run). */
static int selftest(void) {
    pid_t pid = fork();
    if (pid < 0) return 255;
    if (pid == 0) {
        int in = open("/jail-settings", O_RDONLY);
        if (in >= 0 && dup2(in, 0) == 0)
            execl("/tjob-shim", "tjob-shim", "selftest", "seccomp", "/compat-probe", (char *)NULL);
        perror("guest: /tjob-shim");
        _exit(255);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return 255;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void) {
    int rc = 255;
    if (setup()) perror("guest: setup");
    else rc = selftest();
    /* On a line of its own: the kernel's messages may share the console. */
    printf("\n" MARKER "=%d\n", rc);
    if (fflush(stdout)) rc = 255;
    sync();
    reboot(RB_POWER_OFF); /* PSCI SYSTEM_OFF: qemu exits */
    perror("guest: reboot");
    return rc; /* PID 1 exiting panics the kernel; with panic=-1 qemu ends too */
}
