/* The job's init, PID 1 of new PID/mount/net/UTS/IPC namespaces: a flat list of steps, each
 * reporting the call that failed. Runs in the spare before the job is known, up to the wait
 * for it; then starts the command, forwards signals to it and reaps. */
#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "command.h"
#include "jail.h"
#include "jobfile.h"
#include "jobstdin.h"
#include "msg.h"
#include "protocol.h"
#include "util.h"

static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static int unshare_namespaces(struct failure *f) {
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC))
        return fail(f, "namespaces", "unshare", NULL);
    return 0;
}

/* The new mount namespace to the supervisor, which holds it until it exits: this process's
 * exit then leaves the job's fifty-odd mounts in place, and the command's end is reported
 * without waiting for them to be torn down (unmounting waits for RCU grace periods). Best
 * effort: a supervisor that closed the channel (it failed, or the spare was never used) is
 * found out by receive_job, and without it the mounts go with this process, as before. */
static void lend_mounts(int chan) {
    int ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (ns < 0) return;
    if (send_with_fds(chan, TJOB_INIT_MOUNTS, 1, &ns, 1)) { /* see above */
    }
    close(ns);
}

/* The jail's root (jail_mounts.c): a private, read-only view of the host entered with
 * pivot_root, /proc of this PID namespace, a read-only /sys of this network namespace, a
 * minimal /dev, private scratch tmpfs, hidden paths. After allow_ping: /proc/sys is read-only
 * in it. */
static int enter_root(struct failure *f) {
    if (jail_enter_root()) return fail(f, "namespaces", "jail_enter_root", NULL);
    return 0;
}

/* The server's volumes, cloned from the host's tree while it is there (jail_volumes.c). */
static int open_volumes(struct failure *f) {
    const char *path = NULL;
    if (jail_open_volumes(&path)) return fail(f, "volume", "open_tree", path);
    return 0;
}

/* No capabilities, locked securebits, a session keyring of the job's own (jail_privs.c). */
static int drop_privileges(struct failure *f) {
    if (jail_drop_privileges()) return fail(f, "privileges", "jail_drop_privileges", NULL);
    return 0;
}

/* A new network namespace has only lo, and it starts down. */
static int loopback_up(struct failure *f) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return fail(f, "namespaces", "socket", "lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (rc) fail(f, "namespaces", "ioctl", "lo");
    close(s);
    return rc ? -1 : 0;
}

/* Any group may use ICMP echo sockets in this job-only network namespace (best effort: an
 * older kernel has no such file). */
static int allow_ping(struct failure *f) {
    (void)f;
    int fd = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    if (write_all(fd, "0 2147483647", 12)) log_error("namespaces", "write ping_group_range");
    close(fd);
    return 0;
}

/* The command's pid as the host sees it, through the host's /proc (opened before ours was
 * mounted over it), while the command cannot have been reaped yet; 0 if unknown. */
static long host_pid_of_child(int host_proc) {
    char me[32], path[96], text[64];
    if (host_proc < 0) return 0;
    ssize_t n = readlinkat(host_proc, "self", me, sizeof me - 1);
    if (n <= 0) return 0;
    me[n] = 0;
    snprintf(path, sizeof path, "%s/task/%s/children", me, me);
    int fd = openat(host_proc, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = 0;
    return atol(text);
}

/* What init holds between the steps. */
struct init {
    int chan, rep_w, host_proc, cgroups;
    int in_r, out_w, err_w, tty, *procs; /* in_r: -1 (/dev/null) but for an interactive job */
    char *blob;
    struct job job;
};

/* The job: its pipes and exec.bin, from the supervisor (an interactive job: and its stdin, a
 * pipe or the pty's slave). 1 if the spare was never used. */
static int receive_job(struct init *in, struct failure *f) {
    char msg[16];
    int fds[4], nfds;
    ssize_t n = recv_with_fds(in->chan, msg, sizeof msg, fds, 4, &nfds);
    in->tty = n == 1 && msg[0] == TJOB_INIT_JOB_TTY[0];
    int piped = n == 1 && msg[0] == TJOB_INIT_JOB_STDIN[0];
    if (n <= 0 || nfds != (in->tty ? 1 : piped ? 4 : 3)) {
        for (int i = 0; i < nfds; i++) close(fds[i]);
        close(in->chan);
        return 1;
    }
    if (in->tty) { /* the pty's slave is all three; its master goes back to the supervisor */
        fds[2] = fds[0];
        int rc = jobstdin_make_pty(in->chan, &in->in_r, f);
        close(in->chan);
        if (rc) return close(fds[2]), -1;
        in->out_w = fcntl(in->in_r, F_DUPFD_CLOEXEC, 3);
        in->err_w = fcntl(in->in_r, F_DUPFD_CLOEXEC, 3);
        if (in->out_w < 0 || in->err_w < 0) return close(fds[2]), fail(f, "tty", "fcntl", NULL);
    } else {
        close(in->chan);
        in->out_w = fds[0];
        in->err_w = fds[1];
        if (piped) in->in_r = fds[3];
    }
    size_t len;
    in->blob = read_fd(fds[2], &len);
    close(fds[2]);
    if (!in->blob) return fail(f, "init", "read", TJOB_EXEC_FILE);
    if (parse_job(in->blob, len, &in->job)) return fail(f, "init", "parse", TJOB_EXEC_FILE);
    if (jail_size_scratch(in->job.scratch)) return fail(f, "init", "scratch", in->job.scratch);
    const char *call, *target;
    if (jail_mount_volumes(in->job.volumes, in->job.nvolumes, &call, &target))
        return fail(f, "volume", call, target);
    return 0;
}

static int set_hostname(struct init *in, struct failure *f) {
    if (sethostname(in->job.hostname, strlen(in->job.hostname)))
        return fail(f, "init", "sethostname", in->job.hostname);
    return 0;
}

/* cgroup.procs of each of the job's cgroups, opened here: the command writes to them. */
static int open_cgroups(struct init *in, struct failure *f) {
    in->procs = calloc((size_t)in->job.nprocs + 1, sizeof(int));
    if (!in->procs) return fail(f, "init", "calloc", NULL);
    for (int i = 0; i < in->job.nprocs; i++) {
        in->procs[i] = openat(in->cgroups, in->job.procs[i], O_WRONLY | O_CLOEXEC);
        if (in->procs[i] < 0) return fail(f, "cgroup", "open", in->job.procs[i]);
    }
    close(in->cgroups);
    return 0;
}

static volatile pid_t command_pid;

static void forward(int sig) {
    int saved = errno;
    if (command_pid > 0) kill(command_pid, sig);
    errno = saved;
}

/* Reap until the command ends; its wait status is the last report. */
static int reap(pid_t child, long host_pid, int rep_w) {
    command_pid = child;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof FORWARDED / sizeof *FORWARDED; i++)
        if (sigaction(FORWARDED[i], &sa, NULL)) log_error("init", "sigaction");
    if (report_started(rep_w, host_pid)) return 1;
    for (;;) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        if (pid == child) return report_exited(rep_w, status) ? 1 : 0;
    }
}

/* vfork the command and learn whether its exec worked; then reap. */
static int start_command(struct init *in, struct failure *f) {
    int ex[2];
    if (pipe2(ex, O_CLOEXEC)) return fail(f, "init", "pipe2", NULL);
    /* vfork: no page tables to copy, nothing to tear down at exec; init waits meanwhile. The
     * child only writes its own stack, its fd table, and `environ`, which init no longer uses. */
    pid_t child = vfork();
    if (child < 0) return fail(f, "init", "vfork", NULL);
    if (child == 0)
        exec_command(&in->job, in->procs, (int[3]){in->in_r, in->out_w, in->err_w}, in->tty, ex[1]);
    close(ex[1]);
    close_quietly(in->in_r);
    close(in->out_w);
    close(in->err_w);
    for (int i = 0; i < in->job.nprocs; i++) close(in->procs[i]);
    long host_pid = host_pid_of_child(in->host_proc);
    close_quietly(in->host_proc);
    char failure[512];
    ssize_t got;
    do got = read(ex[0], failure, sizeof failure - 2);
    while (got < 0 && errno == EINTR);
    close(ex[0]);
    if (got > 0) { /* the command's own failure line: pass it on */
        failure[got] = '\n';
        if (waitpid(child, NULL, 0) < 0) log_error("init", "waitpid");
        return write_all(in->rep_w, failure, (size_t)got + 1) ? 1 : 0;
    }
    return reap(child, host_pid, in->rep_w);
}

int run_init(int chan, int rep_w, const char *cgroup_root) {
    static const char *const title[] = {TJOB_SUPERVISOR_ARGV0, TJOB_INIT_ARGV1, NULL};
    set_title(title);
    struct init in = {.chan = chan, .rep_w = rep_w, .in_r = -1, .out_w = -1, .err_w = -1};
    struct failure f;
    int rc;
    /* If the supervisor dies, nobody records this job: take the namespace down with it. (Had it
     * died before this call, `chan` reads as closed below and init ends there.) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) {
        fail(&f, "init", "prctl", NULL);
        goto failed;
    }
    in.host_proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* -1: pid unknown */
    in.cgroups = open(cgroup_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (in.cgroups < 0) {
        fail(&f, "cgroup", "open", cgroup_root);
        goto failed;
    }
    /* The namespaces and the jail: built ahead of the job, in the spare. Further steps that
     * need no job go after these, each `int step(struct failure *)`. */
    if (unshare_namespaces(&f)) goto failed;
    lend_mounts(chan);
    if (loopback_up(&f) || allow_ping(&f) || open_volumes(&f) || enter_root(&f) ||
        drop_privileges(&f))
        goto failed;
    /* The job. */
    rc = receive_job(&in, &f);
    if (rc > 0) return 0; /* a spare that was never used */
    if (rc < 0 || set_hostname(&in, &f) || open_cgroups(&in, &f)) goto failed;
    rc = start_command(&in, &f);
    if (rc >= 0) return rc;
failed:
    return report_failure(rep_w, &f) ? 2 : 1;
}
