/* A job's supervisor (see supervisor.h). Messages: the protocol package (src/tjob/protocol/). */
#define _GNU_SOURCE
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"
#include "jobstdin.h"
#include "logwriter.h"
#include "msg.h"
#include "protocol.h"
#include "util.h"

#define IDLE_MS 1000 /* output quiet this long: give the buffer's pages back */

/* The processes and channels of one supervisor. */
struct sup {
    int chan, busy, reply;   /* to the fork server; its cue; the engine's reply socket */
    int to_init, init_pidfd; /* init's job channel; a pidfd of init */
    int claim;               /* the job directory, locked until output.log is claimed */
    pid_t me, init;
    struct lines reports; /* init's report lines */
    const char *dir;
    const struct recorder *rec;
};

/* Report the job's end to the fork server; if it does not answer that it recorded it (it is
 * gone with the engine, or declined), leave the report in the job's directory for the next
 * engine to record (conmon's exit file): no process outlives the supervisor to do it, so any
 * number of ends cost nothing while no engine runs. `reply`: the engine's socket, still owed
 * an answer (a failed start): closing it tells the engine to look there. */
static int report_end(struct sup *s, const char *end, int reply) {
    char ack = 0;
    int fds[1] = {reply};
    int sent = send_with_fds(s->chan, end, strlen(end), fds, reply >= 0) == 0;
    if (sent && recv(s->chan, &ack, 1, 0) == 1 && ack == TJOB_ACK_RECORDED[0]) {
        /* The launcher put status.json in place and woke its waiter: the reserve's blocks
         * past it are given back (on a full disk, the room for the engine's record of the
         * end, made once this process exits), and it is made durable, here. */
        if (finish_file(s->dir, TJOB_STATUS_FILE, sync_wanted()) && errno != ENOENT)
            log_error("supervisor", "finish " TJOB_STATUS_FILE);
        return 0;
    }
    close(s->chan);
    char reserve[PATH_MAX];
    int rc = write_file(s->dir, TJOB_END_FILE, end);
    if (rc && join_path(reserve, sizeof reserve, s->dir, TJOB_RESERVE_FILE) == 0 &&
        unlink(reserve) == 0) /* a full disk (blocks or inodes): spend the reserve */
        rc = write_file(s->dir, TJOB_END_FILE, end);
    if (rc) log_error("supervisor", "write " TJOB_END_FILE);
    close_quietly(reply);
    return rc ? 1 : 0;
}

/* A spare: init forked into new namespaces, waiting for the job. -1 on failure (logged). */
static int make_spare(struct sup *s, const char *cgroup_root) {
    int rep[2], to_init[2];
    if (pipe2(rep, O_CLOEXEC)) return log_error("spare", "pipe2"), -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, to_init))
        return log_error("spare", "socketpair"), -1;
    if (unshare(CLONE_NEWPID)) return log_error("spare", "unshare"), -1;
    s->me = getpid();
    s->init = fork();
    if (s->init < 0) return log_error("spare", "fork"), -1;
    if (s->init == 0) {
        close(s->chan);
        close(s->busy);
        close(rep[0]);
        close(to_init[0]);
        _exit(run_init(to_init[1], rep[1], cgroup_root));
    }
    close(to_init[1]);
    close(rep[1]);
    s->to_init = to_init[0];
    s->reports.fd = rep[0];
    s->init_pidfd = pidfd_open(s->init);
    if (s->init_pidfd < 0) return log_error("spare", "pidfd_open"), -1;
    return 0;
}

/* The log, exec.bin and the output pipes (a TTY job: the pty, one stream: `out` is its master
 * and slave, `err` stays -1); an interactive job's stdin into `in` (jobstdin.h); -1 and `f`
 * on failure. */
static int prepare_job(struct sup *s, struct capture *c, struct jobstdin *io, int out[2],
                       int err[2], int *in, char *tag, int *exec_fd, struct failure *f) {
    char path[PATH_MAX];
    int failed = capture_open(c, s->dir, c->cap, f);
    close_quietly(s->claim); /* output.log has its header: the job is this supervisor's */
    if (failed) return -1;
    if (join_path(path, sizeof path, s->dir, TJOB_EXEC_FILE) == 0)
        *exec_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*exec_fd < 0) return fail(f, "supervisor", "open", TJOB_EXEC_FILE);
    if ((io->input || io->tty) && jobstdin_open(io, s->dir, in, tag, f)) return -1;
    if (io->tty) return 0; /* init makes the pty: one stream, read from its master */
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return fail(f, "supervisor", "pipe2", NULL);
    /* Above pipe-max-size the default size still works. */
    if (fcntl(out[0], F_SETPIPE_SZ, PIPE_SIZE) < 0 || fcntl(err[0], F_SETPIPE_SZ, PIPE_SIZE) < 0) {
    }
    return 0;
}

/* Init's mount namespace (lend_mounts, init.c), its first message: held open until this
 * supervisor exits (the fd is left open on purpose), so that init's exit does not tear down
 * the job's mounts before the command's end is reported; they go once it is recorded. An
 * init that failed before lending it has closed its end, and reports why. */
static void hold_mounts(struct sup *s) {
    char tag;
    int ns = -1, n = 0;
    if (recv_with_fds(s->to_init, &tag, 1, &ns, 1, &n) == 1 && n == 1 &&
        tag == TJOB_INIT_MOUNTS[0])
        return;
    if (n == 1) close(ns);
}

/* Whether the job is still this supervisor's to start. A later engine records the end of a
 * job whose launcher died after handing it over (adopt.py) holding the job directory's lock,
 * from before it looks for this supervisor by its mark (set_title) until the end is written.
 * Here the lock is held from this check until output.log has its header, which says to that
 * engine that a supervisor took the job: one of the two goes first. */
static int claim_job(struct sup *s) {
    s->claim = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->claim < 0) return 1; /* the start fails on its own, and says why */
    if (flock(s->claim, LOCK_EX)) log_error("supervisor", "flock");
    if (faccessat(s->claim, TJOB_STATUS_FILE, F_OK, 0)) return 1;
    close(s->claim);
    return 0;
}

/* Hand init the job: its output pipes and exec.bin (and an interactive job's stdin). Into
 * `first`, init's first report (that the command runs, or why not), the supervisor's own
 * failure, or "" if init died silently. */
static void hand_to_init(struct sup *s, struct capture *c, struct jobstdin *io, int out[2],
                         int err[2], char *first, size_t size) {
    struct failure f;
    char tag = TJOB_INIT_JOB[0];
    int in = -1, exec_fd = -1;
    int ok = prepare_job(s, c, io, out, err, &in, &tag, &exec_fd, &f) == 0;
    if (ok) {
        hold_mounts(s);
        int fds[4] = {out[1], err[1], exec_fd, in}, tty[1] = {exec_fd};
        ok = io->tty ? send_with_fds(s->to_init, &tag, 1, tty, 1) == 0
                     : send_with_fds(s->to_init, &tag, 1, fds, in >= 0 ? 4 : 3) == 0;
        if (!ok) fail(&f, "supervisor", "sendmsg", "init");
    }
    if (ok && io->tty && jobstdin_take_master(io, s->to_init) == 0) {
        out[0] = io->out_r; /* the pump owns the master's reading end from here */
        io->out_r = -1;
    }
    close_quietly(in);
    close_quietly(out[1]);
    close_quietly(err[1]);
    close_quietly(exec_fd);
    close(s->to_init); /* an init still waiting for its job ends, without a report */
    /* Init's report comes first: it may have failed before the job came (its namespaces).
     * Without the job it ends (its channel is closed), so this never waits on an idle init. */
    if (read_line(&s->reports, first, size)) return;
    if (ok) first[0] = 0; /* init died before it said why */
    else format_failure(first, size, &f);
}

/* Copy output into the log until both pipes close and init's reports end; the command's wait
 * status, or -1 if init never reported one (it was SIGKILLed: a stop). */
static int pump(struct capture *c, int out_r, int err_r, struct lines *reports,
                struct jobstdin *io) {
    struct pollfd p[5] = {{reports->fd, POLLIN, 0}, {out_r, POLLIN, 0}, {err_r, POLLIN, 0}};
    int wstatus = -1;
    while (p[0].fd >= 0 || p[1].fd >= 0 || p[2].fd >= 0) {
        jobstdin_poll(io, p + 3); /* both -1 (ignored) but for an interactive job */
        int ready = poll(p, 5, capture_busy() ? IDLE_MS : -1);
        if (ready == 0) {
            capture_idle();
            continue;
        }
        if (ready < 0) {
            if (errno == EINTR) continue;
            log_error("supervisor", "poll");
            break;
        }
        if (p[0].revents) {
            char line[64];
            struct report r;
            if (!fill(reports)) p[0].fd = -1;
            while (buffered_line(reports, line, sizeof line))
                if (parse_report(line, &r) == 0 && r.kind == TJOB_REPORT_EXITED[0])
                    wstatus = (int)r.value;
        }
        for (int i = 1; i < 3; i++) {
            if (p[i].fd >= 0 && p[i].revents && !capture_take(c, i, p[i].fd)) {
                close(p[i].fd);
                p[i].fd = -1;
            }
        }
        jobstdin_ready(io, p + 3);
    }
    return wstatus;
}

static void wait_init(struct sup *s) {
    if (waitpid(s->init, NULL, 0) < 0) log_error("supervisor", "waitpid");
    close(s->init_pidfd);
}

/* The job never ran: say why, to the fork server (which answers the engine). */
static int start_failed(struct sup *s, struct capture *c, struct jobstdin *io,
                        const char *first, int out[2], int err[2]) {
    struct report r;
    char line[600], end[600];
    snprintf(line, sizeof line, "%s", first);
    if (line[0] && parse_report(line, &r) == 0 && r.kind == TJOB_REPORT_FAILED[0])
        format_failure(end, sizeof end, &r.failure);
    else
        snprintf(end, sizeof end, TJOB_REPORT_FAILED); /* init died before it said why */
    close_quietly(out[0]);
    close_quietly(err[0]);
    jobstdin_close(io);
    close(s->busy);
    wait_init(s);
    capture_close(c);
    close(s->reports.fd);
    return report_end(s, end, s->reply);
}

/* The command runs: record where to find it, then answer the engine. */
static void started(struct sup *s, long pid, double started_at) {
    char text[256];
    /* Before the reply: once start() returns, a later engine can find the job running.
     * Without it (a full disk) the job runs, but a restarted engine finds it lost. Not
     * fsynced (a short job's end waited for the disk): it says where living processes are,
     * and a power cut leaves none; an engine after one finds the job lost (adopt.py). */
    format_run(text, sizeof text, (int)s->me, (int)s->init, pid, started_at);
    if (write_file_whole(s->dir, TJOB_RUN_FILE, text))
        log_error("supervisor", "write " TJOB_RUN_FILE);
    int self_pidfd = pidfd_open(s->me);
    format_start_reply(text, sizeof text, pid, started_at, (int)s->me);
    int pidfds[2] = {self_pidfd, s->init_pidfd};
    if (self_pidfd < 0 || send_with_fds(s->reply, text, strlen(text), pidfds, 2)) {
        /* The engine gave up or is gone: the job runs all the same, and run.json finds it. */
    }
    close(s->reply);
    close_quietly(self_pidfd);
    close(s->busy); /* the fork server's cue to build the next spare */
}

int supervise(int chan, int busy, const char *cgroup_root, const struct recorder *rec) {
    static const char *const spare_title[] = {TJOB_SUPERVISOR_ARGV0, TJOB_SUPERVISOR_ARGV1, NULL};
    struct sup s = {.chan = chan, .busy = busy, .reply = -1, .claim = -1, .rec = rec};
    keep_only(chan, busy);
    set_title(spare_title);
    if (setsid() < 0) log_error("spare", "setsid");
    reset_signals();
    if (make_spare(&s, cgroup_root)) _exit(1);

    char msg[PATH_MAX + 32];
    int nfds;
    long long cap;
    ssize_t n = recv_with_fds(chan, msg, sizeof msg - 1, &s.reply, 1, &nfds);
    if (n <= 0 || nfds != 1) { /* never used: init sees the end and exits */
        close(s.to_init);
        wait_init(&s);
        return 0;
    }
    msg[n] = 0;
    const char *stdio;
    struct jobstdin io;
    if (parse_handoff(msg, (size_t)n, &s.dir, &cap, &stdio) || jobstdin_parse(&io, stdio)) {
        log_error("supervisor", "malformed handoff");
        return 1; /* the fork server sees the channel close: the job is lost */
    }
    /* The documented mark (protocol.SUPERVISOR_ARGV): the job's id is its directory's name. */
    const char *slash = strrchr(s.dir, '/');
    const char *title[] = {TJOB_SUPERVISOR_ARGV0, TJOB_SUPERVISOR_ARGV1, slash ? slash + 1 : s.dir, NULL};
    set_title(title);
    if (!claim_job(&s)) { /* its end is recorded: nothing of it ran, nothing will */
        close(s.to_init);
        wait_init(&s);
        return 0;
    }

    struct capture c = {.cap = cap};
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    char first[600];
    struct report r;
    hand_to_init(&s, &c, &io, out, err, first, sizeof first);
    if (first[0] != TJOB_REPORT_STARTED[0] || parse_report(first, &r))
        return start_failed(&s, &c, &io, first, out, err);
    double started_at = now();
    started(&s, r.value, started_at);
    /* Room for the final status should the disk fill up (the output is then cut, and this is
     * unlinked). Made now, after the reply: it is not on the way to starting the job. */
    capture_reserve(&c);

    int wstatus = pump(&c, out[0], err[0], &s.reports, &io);
    jobstdin_close(&io); /* before the end is reported: no attach finds a job that has ended */
    close(s.reports.fd);
    wait_init(&s);
    capture_close(&c);
    char end[256];
    format_end_exited(end, sizeof end, wstatus, r.value, started_at, c.cut);
    return report_end(&s, end, -1);
}
