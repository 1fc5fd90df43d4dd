/* An exec's supervisor (see execsup.h). Messages: protocol/requests.py (ExecRequest and after). */
#define _GNU_SOURCE
#include "execsup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "command.h"
#include "join.h"
#include "jobfile.h"
#include "jobstdin.h"
#include "logwriter.h"
#include "msg.h"
#include "protocol.h"
#include "util.h"

/* What the exec supervisor holds: the command's exec.bin, its cgroup files, its pipes; with
 * -i/-t its stdin, lent over the attach socket in its directory (jobstdin.c, as a job's). */
struct execsup {
    const char *dir;
    char *blob;
    struct job job;
    int *procs;
    int out[2], err[2], ex[2];
    int in, pty[2]; /* a stdin pipe's read end; the channel the child's pty master comes on */
    struct jobstdin io;
};

/* exec.bin (the job's own, with the exec's argv, env and cwd), and the job's cgroup.procs
 * files, opened here: the child writes to them from inside the job's mount namespace, where
 * no cgroup filesystem is mounted. */
static int load(struct execsup *x, const char *cgroup_root, struct failure *f) {
    char path[PATH_MAX];
    size_t len;
    int fd = -1;
    if (join_path(path, sizeof path, x->dir, TJOB_EXEC_FILE) == 0)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(f, "exec", "open", TJOB_EXEC_FILE);
    x->blob = read_fd(fd, &len);
    close(fd);
    if (!x->blob) return fail(f, "exec", "read", TJOB_EXEC_FILE);
    if (parse_job(x->blob, len, &x->job)) return fail(f, "exec", "parse", TJOB_EXEC_FILE);
    int root = open(cgroup_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return fail(f, "cgroup", "open", cgroup_root);
    x->procs = calloc((size_t)x->job.nprocs + 1, sizeof(int));
    for (int i = 0; x->procs && i < x->job.nprocs; i++) {
        x->procs[i] = openat(root, x->job.procs[i], O_WRONLY | O_CLOEXEC);
        if (x->procs[i] < 0) {
            fail(f, "cgroup", "open", x->job.procs[i]);
            close(root);
            return -1;
        }
    }
    close(root);
    if (!x->procs) return fail(f, "exec", "calloc", NULL);
    if (pipe2(x->ex, O_CLOEXEC)) return fail(f, "exec", "pipe2", NULL);
    char tag;
    if ((x->io.input || x->io.tty) && jobstdin_open(&x->io, x->dir, &x->in, &tag, f)) return -1;
    if (x->io.tty) { /* one stream, from the pty's master (made by the child, in the job) */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, x->pty))
            return fail(f, "exec", "socketpair", NULL);
        return 0;
    }
    if (pipe2(x->out, O_CLOEXEC) || pipe2(x->err, O_CLOEXEC)) return fail(f, "exec", "pipe2", NULL);
    if (fcntl(x->out[0], F_SETPIPE_SZ, PIPE_SIZE) < 0 || fcntl(x->err[0], F_SETPIPE_SZ, PIPE_SIZE) < 0) {
    } /* above pipe-max-size the default size still works */
    return 0;
}

/* In the child, in the job: its stdin, stdout and stderr. With -t, a pty of the job's own
 * devpts (its master goes to the supervisor), as init makes a TTY job's. */
static int child_stdio(struct execsup *x, int stdio[3], struct failure *f) {
    if (!x->io.tty) {
        stdio[0] = x->in, stdio[1] = x->out[1], stdio[2] = x->err[1];
        return 0;
    }
    if (jobstdin_make_pty(x->pty[1], &stdio[0], f)) return -1;
    stdio[1] = stdio[2] = stdio[0];
    return 0;
}

/* Fork the child into the job; its host pid, or -1 and `f`. The child never returns. */
static pid_t spawn(struct execsup *x, int init_pidfd, struct failure *f) {
    if (join_pid_namespace(init_pidfd, f)) return -1;
    pid_t pid = fork(); /* ENOMEM: the job's init is gone, and its PID namespace with it */
    if (pid < 0) return fail(f, "exec", "fork", NULL);
    if (pid == 0) {
        struct failure mine;
        char line[512];
        int stdio[3];
        close_quietly(x->out[0]);
        close_quietly(x->err[0]);
        close(x->ex[0]);
        if (join_job(init_pidfd, &mine) == 0 && child_stdio(x, stdio, &mine) == 0)
            exec_command(&x->job, x->procs, stdio, x->io.tty, x->ex[1]);
        if (write_all(x->ex[1], line, format_failure(line, sizeof line, &mine))) _exit(126);
        _exit(127);
    }
    return pid;
}

/* Copy output into the log until the command exits, then what its pipes still hold (a
 * process it left behind keeps them open: the exec ends with its command, as docker exec's
 * does). The command's wait status. */
static int pump(struct capture *c, int out_r, int err_r, pid_t child, struct jobstdin *io) {
    int pidfd = pidfd_open(child), wstatus = -1;
    struct pollfd p[5] = {{pidfd, POLLIN, 0}, {out_r, POLLIN, 0}, {err_r, POLLIN, 0}};
    if (pidfd < 0) log_error("exec", "pidfd_open"); /* then: until the pipes close */
    /* After the exit: at most a few reads per pipe (more than the 1 MiB each holds), however
     * fast a process left behind writes. */
    for (int exited = 0, rounds = 0; !exited || rounds++ < 8;) {
        jobstdin_poll(io, p + 3); /* both -1 (ignored) but with -i/-t */
        int ready = poll(p, exited ? 3 : 5, exited ? 0 : -1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) log_error("exec", "poll");
        if (ready <= 0) break; /* exited, and nothing more is there now */
        if (p[0].fd >= 0 && p[0].revents) {
            exited = 1;
            p[0].fd = -1;
        }
        for (int i = 1; i < 3; i++) {
            if (p[i].fd >= 0 && p[i].revents && !capture_take(c, i, p[i].fd)) {
                close(p[i].fd);
                p[i].fd = -1;
            }
        }
        if (!exited) jobstdin_ready(io, p + 3);
        if (p[0].fd < 0 && p[1].fd < 0 && p[2].fd < 0) break;
    }
    for (int i = 1; i < 3; i++) close_quietly(p[i].fd);
    close_quietly(pidfd);
    while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
    }
    return wstatus;
}

/* The end, for the engine and any later one: end-report, written whole; the reserve (made
 * once the command ran) gives it room on a full disk. */
static int write_end(const char *dir, const char *end) {
    char reserve[PATH_MAX];
    int rc = write_file(dir, TJOB_END_FILE, end);
    if (rc && join_path(reserve, sizeof reserve, dir, TJOB_RESERVE_FILE) == 0 && unlink(reserve) == 0)
        rc = write_file(dir, TJOB_END_FILE, end);
    if (rc) log_error("exec", "write " TJOB_END_FILE);
    else if (join_path(reserve, sizeof reserve, dir, TJOB_RESERVE_FILE) == 0 && unlink(reserve) &&
             errno != ENOENT) /* the end is written: the room kept for it goes back */
        log_error("exec", "unlink " TJOB_RESERVE_FILE);
    return rc ? 1 : 0;
}

/* The command could not be started: say why in end-report, then close the engine's socket
 * unanswered (its cue to read it). */
static int exec_failed(struct capture *c, const char *dir, const struct failure *f,
                       const char *line, int reply) {
    char end[600];
    if (line) snprintf(end, sizeof end, "%s", line);
    else format_failure(end, sizeof end, f);
    capture_close(c);
    int rc = write_end(dir, end);
    close(reply);
    return rc ? 1 : 2;
}

/* The command runs: answer the engine with its pid and a pidfd of this supervisor. */
static void answer(int reply, pid_t child, double started_at) {
    char text[256];
    format_start_reply(text, sizeof text, (long)child, started_at, (int)getpid());
    int self = pidfd_open(getpid());
    if (self < 0 || send_with_fds(reply, text, strlen(text), &self, 1)) {
        /* The engine gave up or is gone: the command runs all the same; end-report keeps it. */
    }
    close_quietly(self);
    close(reply);
}

int exec_supervise(int reply, int init_pidfd, const char *dir, long long cap, const char *stdio,
                   const char *cgroup_root) {
    const char *title[] = {TJOB_SUPERVISOR_ARGV0, TJOB_EXEC_SUPERVISOR_ARGV1, dir, NULL};
    struct execsup x = {.dir = dir, .out = {-1, -1}, .err = {-1, -1}, .ex = {-1, -1}, .in = -1,
                        .pty = {-1, -1}};
    struct capture c = {.log = -1, .devnull = -1};
    struct failure f;
    keep_only(reply, init_pidfd);
    set_title(title);
    if (setsid() < 0) log_error("exec", "setsid");
    reset_signals();
    if (jobstdin_parse(&x.io, stdio)) return exec_failed(&c, dir, &f, TJOB_REPORT_FAILED, reply);
    if (capture_open(&c, dir, cap, &f) || load(&x, cgroup_root, &f))
        return jobstdin_close(&x.io), exec_failed(&c, dir, &f, NULL, reply);
    pid_t child = spawn(&x, init_pidfd, &f);
    close(init_pidfd);
    close_quietly(x.out[1]);
    close_quietly(x.err[1]);
    close_quietly(x.in);
    close_quietly(x.pty[1]);
    close(x.ex[1]);
    for (int i = 0; i < x.job.nprocs; i++) close(x.procs[i]);
    if (child >= 0 && x.io.tty && jobstdin_take_master(&x.io, x.pty[0]) == 0) {
        x.out[0] = x.io.out_r; /* the pump owns the master's reading end from here */
        x.io.out_r = -1;
    }
    close_quietly(x.pty[0]);
    if (child < 0) return jobstdin_close(&x.io), exec_failed(&c, dir, &f, NULL, reply);
    char line[512];
    ssize_t got;
    do got = read(x.ex[0], line, sizeof line - 1);
    while (got < 0 && errno == EINTR);
    close(x.ex[0]);
    if (got > 0) { /* the child's own failure line (command.c): pass it on */
        line[got] = 0;
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
        }
        close_quietly(x.out[0]);
        close_quietly(x.err[0]);
        jobstdin_close(&x.io);
        return exec_failed(&c, dir, &f, line, reply);
    }
    double started_at = now();
    answer(reply, child, started_at);
    capture_reserve(&c);
    int wstatus = pump(&c, x.out[0], x.err[0], child, &x.io);
    jobstdin_close(&x.io); /* before the end: no attach finds an exec that has ended */
    capture_close(&c);
    char end[256];
    format_end_exited(end, sizeof end, wstatus, (long)child, started_at, c.cut);
    return write_end(dir, end);
}
