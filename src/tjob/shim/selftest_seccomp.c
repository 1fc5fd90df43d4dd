/* `tjob-shim selftest seccomp [PROGRAM]`: the jobs' seccomp filter, compiled and loaded by the
 * very code the zygote and the command run (jail_setup, jail_load_filter), then probed on this
 * machine: tests/test_seccomp_selftest.py on the host (x86_64), tests/aarch64/run.sh on
 * aarch64 under qemu. stdin: the jail settings (src/tjob/jail.py's lines). One PASS or FAIL
 * line per check on stdout; the exit status is 0 only if every check passed.
 *
 * Each probe runs in a child of its own twice: first without the filter (the control), then
 * under it. A denial counts only if the control's answer differs from the filter's (root gets
 * EPERM from no kernel check the probes reach, so an EPERM under the filter is the filter's);
 * an allowed call must work both times. Needs root; the probes' mounts stay in a mount
 * namespace made here. Then some of the calls again through the machine's 32-bit ABI, which the
 * filter covers too (see `compat` below). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/quota.h>
#include <sys/socket.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail.h"
#include "selftest.h"
#include "util.h"

#define NONE "/tjob-selftest-none" /* a path that does not exist: controls fail harmlessly */
#define ALLOWED 0

/* errno after a call that returned `rc` (0 if it succeeded). */
static int res(long rc) { return rc < 0 ? errno : 0; }

static int p_getpid(void) { return getpid() > 0 ? 0 : EINVAL; }

static int p_files(void) {
    char buf[64];
    int fds[2];
    errno = EIO;
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof buf) <= 0 || pipe(fds)) return errno;
    if (write(fds[1], "x", 1) != 1 || read(fds[0], buf, 1) != 1 || buf[0] != 'x') return errno;
    return 0;
}

/* 0 if `pid` exits with `code`. */
static int reap(pid_t pid, int code) {
    int status;
    if (waitpid(pid, &status, 0) != pid) return errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == code ? 0 : ECHILD;
}

static int p_fork(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(7);
    return pid < 0 ? errno : reap(pid, 7);
}

static void *thread_main(void *arg) { return arg; }

/* glibc tries clone3 first (ENOSYS under the filter), then clone with thread flags. */
static int p_thread(void) {
    static int token;
    pthread_t t;
    void *out = NULL;
    int rc = pthread_create(&t, NULL, thread_main, &token);
    if (!rc) rc = pthread_join(t, &out);
    return rc ? rc : out == &token ? 0 : EINVAL;
}

/* This program again (`selftest constants`): exec, and a static binary's start-up. */
static int p_exec(void) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0 && dup2(null, 1) == 1)
            execl("/proc/self/exe", "tjob-shim", "selftest", "constants", (char *)NULL);
        _exit(127);
    }
    return pid < 0 ? errno : reap(pid, 0);
}

static int p_personality_query(void) { return res(personality(0xffffffff)); }
static int p_unshare_files(void) { return res(unshare(CLONE_FILES)); }
static int p_socket_inet(void) { return res(socket(AF_INET, SOCK_DGRAM, 0)); }

static int p_unshare_user(void) { return res(unshare(CLONE_NEWUSER)); }
static int p_unshare_ns(void) { return res(unshare(CLONE_NEWNS)); }

static int p_clone_user(void) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    return pid < 0 ? errno : reap((pid_t)pid, 0);
}

static int p_clone3(void) { return res(syscall(SYS_clone3, NULL, 0)); }
static int p_setns(void) { return res(syscall(SYS_setns, -1, 0)); }
static int p_mount(void) { return res(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)); }
static int p_umount(void) { return res(umount2(NONE, 0)); }
static int p_pivot_root(void) { return res(syscall(SYS_pivot_root, NONE, NONE)); }
static int p_fsopen(void) { return res(syscall(SYS_fsopen, "tmpfs", 0)); }

static int p_keyctl(void) {
    return res(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
}

static int p_add_key(void) {
    return res(syscall(SYS_add_key, "user", "tjob-selftest", "x", 1, KEY_SPEC_PROCESS_KEYRING));
}

static int p_request_key(void) { /* no callout: no upcall, ENOKEY without the filter */
    return res(syscall(SYS_request_key, "user", "tjob-selftest", NULL, 0));
}

static int p_bpf(void) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = attr.value_size = 4;
    attr.max_entries = 1;
    return res(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

static int p_perf(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.disabled = attr.exclude_kernel = 1;
    return res(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

static int p_userfaultfd(void) { return res(syscall(SYS_userfaultfd, O_CLOEXEC)); }

static int p_io_uring(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    return res(syscall(SYS_io_uring_setup, 1, &params));
}

static int p_finit_module(void) { return res(syscall(SYS_finit_module, -1, "", 0)); }
static int p_personality_set(void) { return res(personality(READ_IMPLIES_EXEC)); }
static int p_acct(void) { return res(acct(NONE)); }
static int p_swapon(void) { return res(swapon(NONE, 0)); }
static int p_reboot(void) { return res(syscall(SYS_reboot, 0, 0, 0, NULL)); } /* bad magic */
static int p_settimeofday(void) { return res(syscall(SYS_settimeofday, NULL, NULL)); }

static int p_adjtimex(void) { /* modes 0: a read, yet denied (tjob's profile) */
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    return res(adjtimex(&tx));
}

static int p_open_by_handle(void) { return res(syscall(SYS_open_by_handle_at, -1, NULL, 0)); }
static int p_quotactl(void) { return res(quotactl(QCMD(Q_GETFMT, USRQUOTA), NONE, 0, NULL)); }
static int p_socket_vsock(void) { return res(socket(AF_VSOCK, SOCK_STREAM, 0)); }

#ifdef __x86_64__
/* getpid through the x32 ABI (syscall number | __X32_SYSCALL_BIT). */
static int p_x32(void) { return res(syscall(0x40000000 | SYS_getpid)); }
#endif

static const struct probe {
    const char *what;
    int (*run)(void);
    int want; /* ALLOWED, or the errno the filter answers */
} probes[] = {
    {"getpid", p_getpid, ALLOWED},
    {"open, read, pipe, write", p_files, ALLOWED},
    {"fork and wait", p_fork, ALLOWED},
    {"pthread_create", p_thread, ALLOWED},
    {"execve (this program)", p_exec, ALLOWED},
    {"personality(0xffffffff), a query", p_personality_query, ALLOWED},
    {"unshare(CLONE_FILES)", p_unshare_files, ALLOWED},
    {"socket(AF_INET)", p_socket_inet, ALLOWED},
    {"unshare(CLONE_NEWUSER)", p_unshare_user, EPERM},
    {"unshare(CLONE_NEWNS)", p_unshare_ns, EPERM},
    {"clone(CLONE_NEWUSER)", p_clone_user, EPERM},
    {"clone3", p_clone3, ENOSYS},
    {"setns", p_setns, EPERM},
    {"mount", p_mount, EPERM},
    {"umount2", p_umount, EPERM},
    {"pivot_root", p_pivot_root, EPERM},
    {"fsopen", p_fsopen, EPERM},
    {"keyctl", p_keyctl, EPERM},
    {"add_key", p_add_key, EPERM},
    {"request_key", p_request_key, EPERM},
    {"bpf", p_bpf, EPERM},
    {"perf_event_open", p_perf, EPERM},
    {"userfaultfd", p_userfaultfd, EPERM},
    {"io_uring_setup", p_io_uring, EPERM},
    {"finit_module", p_finit_module, EPERM},
    {"personality(READ_IMPLIES_EXEC)", p_personality_set, EPERM},
    {"acct", p_acct, EPERM},
    {"swapon", p_swapon, EPERM},
    {"reboot", p_reboot, EPERM},
    {"settimeofday", p_settimeofday, EPERM},
    {"adjtimex", p_adjtimex, EPERM},
    {"open_by_handle_at", p_open_by_handle, EPERM},
    {"quotactl", p_quotactl, EPERM},
    {"socket(AF_VSOCK)", p_socket_vsock, EPERM},
#ifdef __x86_64__
    {"getpid through the x32 ABI", p_x32, EPERM},
#endif
};
#define NPROBES (sizeof probes / sizeof *probes)

/* The machine's 32-bit ABI, which the filter lists too ("arch x86", "arch arm"): some calls
 * again through it. On x86_64, `int $0x80` from this process (i386 numbers below; no pointer
 * could be below 4 GiB, so pointers are NULL and the controls answer EFAULT); on aarch64, an
 * AArch32 program named by `selftest seccomp PROGRAM` (tests/aarch64/compat-probe.c):
 * `PROGRAM NAME` makes call NAME and exits with its errno. */
static const struct compat {
    const char *name;
    int want;
    long i386[6]; /* the syscall number, then ebx, ecx, edx, esi, edi */
} compat[] = {
    {"getpid", ALLOWED, {20}},
    {"personality-query", ALLOWED, {136, 0xffffffff}},
    {"unshare-user", EPERM, {310, CLONE_NEWUSER}},
    {"setns", EPERM, {346, -1}},
    {"mount", EPERM, {21}},
    {"keyctl", EPERM, {288, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING}},
    {"bpf", EPERM, {357, BPF_MAP_CREATE}},
    {"perf_event_open", EPERM, {336}},
    {"userfaultfd", EPERM, {374, O_CLOEXEC}},
    {"io_uring_setup", EPERM, {425, 1}},
    {"personality-set", EPERM, {136, READ_IMPLIES_EXEC}},
    {"socket-vsock", EPERM, {359, AF_VSOCK, SOCK_STREAM}},
    {"reboot", EPERM, {88}},
    {"clone3", ENOSYS, {435}},
};
#define NCOMPAT (sizeof compat / sizeof *compat)
static const char *compat_program;

#if defined(__x86_64__)
#define COMPAT_ABI "i386"
static int compat_call(const void *arg) {
    const long *r = ((const struct compat *)arg)->i386;
    long rc;
    /* The kernel zeroes r8-r11 on the way back from int $0x80. */
    __asm__ volatile("int $0x80"
                     : "=a"(rc)
                     : "a"(r[0]), "b"(r[1]), "c"(r[2]), "d"(r[3]), "S"(r[4]), "D"(r[5])
                     : "memory", "r8", "r9", "r10", "r11");
    return (int)rc < 0 ? -(int)rc : 0;
}
#else
#define COMPAT_ABI "AArch32"
static int compat_call(const void *arg) {
    const char *name = ((const struct compat *)arg)->name;
    if (compat_program) execl(compat_program, compat_program, name, (char *)NULL);
    return compat_program ? errno : ENOEXEC;
}
#endif

static int native_call(const void *arg) { return ((const struct probe *)arg)->run(); }

/* The probe's answer from a child: its errno (0: it worked), or minus the signal it died of. */
static int in_child(int (*call)(const void *), const void *arg) {
    if (fflush(stdout)) return -SIGPIPE;
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        int e = call(arg);
        _exit(e < 0 || e > 255 ? 255 : e);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return errno;
    return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

static const char *answer(int e, char *buf, size_t len) {
    if (e < 0) snprintf(buf, len, "killed by signal %d", -e);
    else if (e == 0) snprintf(buf, len, "it worked");
    else if (strerrorname_np(e)) snprintf(buf, len, "%s", strerrorname_np(e));
    else snprintf(buf, len, "errno %d", e);
    return buf;
}

static int check(const char *what, int want, int control, int got) {
    char c[64], g[64], w[64];
    int ok = got == want && (want == ALLOWED ? control == 0 : control != want);
    if (ok) printf("PASS %s: %s", what, answer(got, g, sizeof g));
    else printf("FAIL %s: %s, want %s", what, answer(got, g, sizeof g), answer(want, w, sizeof w));
    printf(" (without the filter: %s)\n", answer(control, c, sizeof c));
    return ok;
}

/* Whether our own /proc/self/status has `line`. */
static int status_has(const char *line) {
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    char *text = fd < 0 ? NULL : read_fd(fd, &len);
    int found = text && strstr(text, line) != NULL;
    free(text);
    close_quietly(fd);
    printf("%s /proc/self/status has \"%.*s\"\n", found ? "PASS" : "FAIL",
           (int)strcspn(line + 1, "\n"), line + 1);
    return found;
}

static int fail(const char *stage, const char *why) {
    printf("FAIL %s: %s\n", stage, why);
    return 1;
}

int selftest_seccomp(const char *program) {
    char err[256], what[64];
    int control[NPROBES + NCOMPAT], failed = 0;
    struct utsname uts;
    size_t len;
    char *settings = read_fd(0, &len);
    if (!settings || uname(&uts)) return fail("setup", strerror(errno));
    if (jail_setup(settings, err, sizeof err)) return fail("jail_setup", err);
    if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
        return fail("a mount namespace of its own (root?)", strerror(errno));
    compat_program = program;
    for (size_t i = 0; i < NPROBES; i++) control[i] = in_child(native_call, &probes[i]);
    for (size_t i = 0; i < NCOMPAT; i++) control[NPROBES + i] = in_child(compat_call, &compat[i]);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return fail("no_new_privs", strerror(errno));
    if (jail_load_filter()) return fail("jail_load_filter", strerror(errno));
    for (size_t i = 0; i < NPROBES; i++)
        failed += !check(probes[i].what, probes[i].want, control[i],
                         in_child(native_call, &probes[i]));
    for (size_t i = 0; i < NCOMPAT; i++) {
        snprintf(what, sizeof what, "%s (%s ABI)", compat[i].name, COMPAT_ABI);
        failed += !check(what, compat[i].want, control[NPROBES + i],
                         in_child(compat_call, &compat[i]));
    }
    failed += !status_has("\nSeccomp:\t2\n") + !status_has("\nNoNewPrivs:\t1\n");
    printf("seccomp selftest on %s: %zu checks, %d failed\n", uts.machine, NPROBES + NCOMPAT + 2,
           failed);
    return fflush(stdout) || failed ? 1 : 0;
}
