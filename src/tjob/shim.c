/* tjob-shim: the zygote, and each job's supervisor and init, as one small C program.
 *
 * The fork server (Python) starts one zygote; the zygote forks a spare supervisor ahead of
 * each job. Being C, a running job costs two small processes instead of two copies of an
 * interpreter, and forking or ending one copies or frees a few page tables, not a Python heap.
 *
 *     zygote: forks spares on request from the fork server
 *       +- supervisor (host namespaces, outside the job cgroup): output pipes -> framed log
 *            +- init: PID 1 of new PID/mount/net/UTS/IPC namespaces; reaps, forwards signals
 *                 +- the command: joins the job cgroup, drops privileges, then execs
 *
 * Messages: fork server -> zygote: "s" with a spare's channel and busy pipe attached; fork
 * server -> supervisor (channel): "DIR\0CAP" with the engine's reply socket attached;
 * supervisor -> init: the job's pipes and its exec.bin (written by the engine) as fds;
 * init -> supervisor: lines on a pipe ("S <pid>", "F <stage> <errno> <target>", "X <status>");
 * supervisor -> fork server (channel): the end, "X <wstatus> <pid> <started_at> <cut>", or "F
 * <init's line>" with the reply socket; the fork server records it and answers "k". Without
 * that answer (the fork server is gone), the supervisor execs Python to record it itself.
 * The log format is logstore.py's: frames of <stream:u8><pad:3><length:u32le><bytes>.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shim/jail.h"

#define PIPE_SIZE (1 << 20)
/* Per read from a pipe: frames of 1 MiB sped up one gRPC follower but cost a thousand of them
 * 30% more server memory; 256 KiB ones slowed the one follower. */
#define CHUNK (512 << 10)
#define IDLE_MS 1000      /* output quiet this long: give the buffer's pages back */
#define HEADER_SIZE 8
#define LOG_MAGIC "TJOBLOG1" /* logstore.MAGIC, as long as a header */
#define RESERVE_SIZE 16384   /* jobdir.RESERVE_FILE's size */
#define STREAM_TRUNCATED 3

static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static void close_quietly(int fd) {
    if (fd >= 0) close(fd);
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_with_fds(int sock, const char *msg, size_t len, const int *fds, int nfds) {
    char control[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(control, 0, sizeof control);
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

/* One datagram and up to `maxfds` fds (close-on-exec); the datagram's length, or -1. */
static ssize_t recv_with_fds(int sock, char *buf, size_t size, int *fds, int maxfds, int *nfds) {
    char control[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                        .msg_controllen = sizeof control};
    ssize_t n;
    do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *nfds = 0;
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int got[4];
        memcpy(got, CMSG_DATA(c), sizeof(int) * (size_t)count);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = got[i];
            else close(got[i]);
        }
    }
    return n;
}

/* ----------------------------------------------------------------------------- the command */

/* exec.bin: NUL-terminated fields: hostname, cwd, uid, gid ("-" = keep root), the count and
 * paths of the cgroup files to join (relative to the cgroup root), argc and argv, envc and env;
 * then (jail, issue 13; absent in older files) the scratch tmpfs size in bytes, and the count
 * and "NAME=SOFT:HARD" rlimits. */
struct job {
    char *hostname, *cwd, *uid, *gid;
    int nprocs, argc, envc;
    char **procs, **argv, **envp;
    char *scratch; /* jail */
    int nrlimits;
    char **rlimits;
};

static char *read_fd(int fd, size_t *len) {
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) return NULL;
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0) break;
        used += (size_t)n;
        if (used == cap) {
            cap *= 2;
            char *more = realloc(buf, cap + 1);
            if (!more) free(buf);
            buf = more;
        }
    }
    buf[used] = 0;
    *len = used;
    return buf;
}

/* Fields into `job`, or -1 if the blob is malformed. */
static int parse_job(char *buf, size_t len, struct job *job) {
    char *p = buf, *end = buf + len;
#define NEXT(var)                                  \
    do {                                           \
        if (p >= end) return -1;                   \
        (var) = p;                                 \
        p += strnlen(p, (size_t)(end - p)) + 1;    \
    } while (0)
#define LIST(count, arr)                                         \
    do {                                                         \
        char *n_;                                                \
        NEXT(n_);                                                \
        (count) = atoi(n_);                                      \
        if ((count) < 0 || (count) > 1 << 20) return -1;         \
        (arr) = calloc((size_t)(count) + 1, sizeof(char *));     \
        if (!(arr)) return -1;                                   \
        for (int i_ = 0; i_ < (count); i_++) NEXT((arr)[i_]);    \
    } while (0)
    NEXT(job->hostname);
    NEXT(job->cwd);
    NEXT(job->uid);
    NEXT(job->gid);
    LIST(job->nprocs, job->procs);
    LIST(job->argc, job->argv);
    LIST(job->envc, job->envp);
    job->scratch = NULL; /* jail: optional trailing fields */
    job->nrlimits = 0;
    if (p < end) {
        NEXT(job->scratch);
        LIST(job->nrlimits, job->rlimits);
    }
#undef NEXT
#undef LIST
    return job->argc > 0 ? 0 : -1;
}

/* execvpe with the job's PATH, as Python's os.execvpe does it: unlike glibc's, it never runs
 * a file that is not an executable with /bin/sh. Returns only on failure, errno set: the first
 * error other than "not found", else the last. */
static void exec_path(char **argv, char **envp) {
    const char *file = argv[0], *path = "/bin:/usr/bin";
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return;
    }
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    int saved = 0, last = ENOENT;
    size_t flen = strlen(file);
    for (const char *dir = path;; dir++) {
        const char *end = strchrnul(dir, ':');
        size_t dlen = (size_t)(end - dir);
        char full[PATH_MAX];
        if (dlen + flen + 2 <= sizeof full) {
            memcpy(full, dir, dlen);
            full[dlen] = '/';
            memcpy(full + dlen + 1, file, flen + 1);
            execve(dlen ? full : file, argv, envp);
            last = errno;
            if (last != ENOENT && last != ENOTDIR && !saved) saved = last;
        }
        if (!*end) break;
        dir = end;
    }
    errno = saved ? saved : last;
}

/* In the command's process: join the cgroup, reset signals, drop privileges, exec. On failure
 * writes "<stage> <errno> <target>" to `ex_w`. Never returns. */
static void exec_command(struct job *job, int *procs, int out_w, int err_w, int ex_w) {
    const char *stage = "cgroup", *target = "-";
    for (int i = 0; i < job->nprocs; i++)
        if (write(procs[i], "0", 1) != 1) goto fail;
    stage = "setup";
    /* exec keeps ignored signals (Python ignores SIGPIPE and SIGXFSZ): start from defaults. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) goto fail;
    stage = "rlimits";
    if (jail_set_rlimits(job->rlimits, job->nrlimits)) goto fail; /* jail: as root */
    if (strcmp(job->gid, "-") != 0) {
        stage = "user";
        target = job->uid;
        if (setgroups(0, NULL) || setgid((gid_t)atol(job->gid)) || setuid((uid_t)atol(job->uid)))
            goto fail;
    }
    stage = "setup";
    target = "-";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) goto fail;
    stage = "chdir";
    target = job->cwd;
    if (chdir(job->cwd)) goto fail;
    stage = "seccomp";
    target = "-";
    if (jail_load_filter()) goto fail; /* jail: last before exec */
    stage = "exec";
    target = job->argv[0];
    exec_path(job->argv, job->envp);
fail:;
    int e = errno ? errno : EIO;
    char line[300];
    int n = snprintf(line, sizeof line, "%s %d ", stage, e);
    for (const char *t = target; *t && n < 200 + 20; t++) line[n++] = *t == '\n' ? ' ' : *t;
    write_all(ex_w, line, (size_t)n);
    _exit(127);
}

/* ----------------------------------------------------------------------------- init (PID 1) */

static volatile pid_t command_pid;

static void forward(int sig) {
    int saved = errno;
    if (command_pid > 0) kill(command_pid, sig);
    errno = saved;
}

static void report(int fd, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
    write_all(fd, line, (size_t)n);
}

/* New mount, network, UTS and IPC namespaces, loopback up; then the jail's mounts (shim/
 * jail_mounts.c): a private read-only view of the host, /proc of this PID namespace, a
 * read-only /sys of this network namespace, a minimal /dev, private scratch tmpfs. */
static int enter_job_namespaces(void) {
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)) return -1;
    /* A new network namespace has only lo, and it starts down. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    if (rc) return -1;
    /* Any group may use ICMP echo sockets in this job-only network namespace (best effort). */
    int f = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);
    if (f >= 0) {
        write_all(f, "0 2147483647", 12);
        close(f);
    }
    return jail_enter_root(); /* jail: after the sysctl above, as /proc/sys is read-only */
}

/* The command's pid as the host sees it, through the host's /proc (opened before ours was
 * mounted over it), while the command cannot have been reaped yet; 0 if unknown. */
static long host_pid_of_child(int host_proc) {
    char me[32], path[96], text[64];
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

static int run_init(int chan, int rep_w, const char *cgroup_root) {
    /* If the supervisor dies, nobody records this job: take the namespace down with it. (Had it
     * died before this call, `chan` reads as closed below and init ends there.) */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    int host_proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int cgroups = open(cgroup_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (enter_job_namespaces()) {
        report(rep_w, "F namespaces %d -\n", errno);
        return 1;
    }
    if (jail_drop_privileges()) { /* jail: capabilities, securebits, keyring, cmdline */
        report(rep_w, "F privileges %d -\n", errno);
        return 1;
    }
    char msg[16];
    int fds[3], nfds;
    ssize_t n = recv_with_fds(chan, msg, sizeof msg, fds, 3, &nfds);
    close(chan);
    if (n <= 0 || nfds != 3) return 0; /* a spare that was never used */
    int out_w = fds[0], err_w = fds[1];
    size_t len;
    char *blob = read_fd(fds[2], &len);
    close(fds[2]);
    struct job job;
    if (!blob || parse_job(blob, len, &job)) {
        report(rep_w, "F setup %d -\n", EINVAL);
        return 1;
    }
    if (jail_size_scratch(job.scratch)) { /* jail: per-job tmpfs size */
        report(rep_w, "F scratch %d -\n", errno);
        return 1;
    }
    int *procs = calloc((size_t)job.nprocs + 1, sizeof(int));
    if (sethostname(job.hostname, strlen(job.hostname))) {
        report(rep_w, "F cgroup %d -\n", errno);
        return 1;
    }
    for (int i = 0; i < job.nprocs; i++) {
        procs[i] = openat(cgroups, job.procs[i], O_WRONLY | O_CLOEXEC);
        if (procs[i] < 0) {
            report(rep_w, "F cgroup %d -\n", errno);
            return 1;
        }
    }
    close(cgroups);
    int ex[2];
    if (pipe2(ex, O_CLOEXEC)) {
        report(rep_w, "F setup %d -\n", errno);
        return 1;
    }
    /* vfork: no page tables to copy, nothing to tear down at exec; init waits meanwhile. The
     * child only writes its own stack, its fd table, and `environ`, which init no longer uses. */
    pid_t child = vfork();
    if (child < 0) {
        report(rep_w, "F setup %d -\n", errno);
        return 1;
    }
    if (child == 0) exec_command(&job, procs, out_w, err_w, ex[1]);
    close(ex[1]);
    close(out_w);
    close(err_w);
    for (int i = 0; i < job.nprocs; i++) close(procs[i]);
    long host_pid = host_pid_of_child(host_proc);
    close(host_proc);
    char failure[512];
    ssize_t got;
    do got = read(ex[0], failure, sizeof failure - 1);
    while (got < 0 && errno == EINTR);
    close(ex[0]);
    if (got > 0) {
        failure[got] = 0;
        waitpid(child, NULL, 0);
        report(rep_w, "F %s\n", failure);
        return 0;
    }
    command_pid = child;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof FORWARDED / sizeof *FORWARDED; i++)
        sigaction(FORWARDED[i], &sa, NULL);
    if (host_pid > 0) report(rep_w, "S %ld\n", host_pid);
    else report(rep_w, "S -\n");
    for (;;) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        if (pid == child) {
            report(rep_w, "X %d\n", status);
            return 0;
        }
    }
}

/* ----------------------------------------------------------------------------- supervisor */

/* Lines from init: each report is one write of one short line. */
struct lines {
    int fd;
    size_t used;
    char buf[1024];
};

/* The next whole line already read (without its newline) into `out`; 0 if there is none. */
static int buffered_line(struct lines *r, char *out, size_t size) {
    char *nl = memchr(r->buf, '\n', r->used);
    if (!nl) return 0;
    size_t n = (size_t)(nl - r->buf), keep = n < size - 1 ? n : size - 1;
    memcpy(out, r->buf, keep);
    out[keep] = 0;
    r->used -= n + 1;
    memmove(r->buf, nl + 1, r->used);
    return 1;
}

/* Read what init has written; 0 at its end. */
static int fill(struct lines *r) {
    if (r->used == sizeof r->buf) r->used = 0; /* a line too long to be ours */
    ssize_t got;
    do got = read(r->fd, r->buf + r->used, sizeof r->buf - r->used);
    while (got < 0 && errno == EINTR);
    if (got <= 0) return 0;
    r->used += (size_t)got;
    return 1;
}

/* Wait for the next line; 0 if init ended first. */
static int read_line(struct lines *r, char *out, size_t size) {
    while (!buffered_line(r, out, size))
        if (!fill(r)) return 0;
    return 1;
}

/* Moves output into the log until the cap or a write error; then marks the cut and drains
 * the pipes into nowhere, so the job never blocks. */
/* Only the pages a burst of output touched are resident, until the job goes quiet. */
static char chunk[CHUNK] __attribute__((aligned(4096)));
static int chunk_used;

struct capture {
    int log, devnull;
    off_t size;
    long long cap;
    char cut[160];
    char reserve[PATH_MAX];
};

static int pwrite_all(int fd, const char *buf, size_t len, off_t at) {
    while (len) {
        ssize_t n = pwrite(fd, buf, len, at);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) errno = ENOSPC;
        if (n <= 0) return -1;
        buf += n;
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

static int put_header(struct capture *c, off_t at, int stream, uint32_t len) {
    unsigned char h[HEADER_SIZE] = {(unsigned char)stream, 0, 0, 0, (unsigned char)len,
                                    (unsigned char)(len >> 8), (unsigned char)(len >> 16),
                                    (unsigned char)(len >> 24)};
    return pwrite(c->log, h, HEADER_SIZE, at) == HEADER_SIZE ? 0 : -1;
}

/* Move what pipe `fd` holds; 0 at its end. The payload goes first and its header after, so a
 * header still all zeros (a hole) tells readers the frame is being written. */
static int take(struct capture *c, int stream, int fd) {
    if (!c->cut[0]) {
        long long room = c->cap - (long long)c->size - HEADER_SIZE;
        if (room > 0) {
            /* read+pwrite, not splice: splice into an ext4 file holds the pipe's lock while it
             * copies page by page, and moves a GiB ~2.5x slower here than this does. */
            size_t want = room < CHUNK ? (size_t)room : CHUNK;
            ssize_t n = read(fd, chunk, want);
            if (n > 4096) chunk_used = 1;
            if (n == 0) return 0;
            if (n < 0 && errno == EINTR) return 1;
            if (n > 0 && pwrite_all(c->log, chunk, (size_t)n, c->size + HEADER_SIZE) == 0 &&
                put_header(c, c->size, stream, (uint32_t)n) == 0) {
                c->size += HEADER_SIZE + n;
                return 1;
            }
            int e = errno ? errno : ENOSPC;
            (void)!ftruncate(c->log, c->size); /* undo the partial frame, if it can be */
            snprintf(c->cut, sizeof c->cut, "output cut short: %s", strerror(e));
            /* The reserve makes room for the mark, the end frame and the status. */
            unlink(c->reserve);
        } else {
            snprintf(c->cut, sizeof c->cut, "output cut at the %lld-byte cap", c->cap);
        }
        if (put_header(c, c->size, STREAM_TRUNCATED, 0) == 0) c->size += HEADER_SIZE;
        else (void)!ftruncate(c->log, c->size);
    }
    ssize_t n = splice(fd, NULL, c->devnull, NULL, PIPE_SIZE, 0);
    return n > 0 || (n < 0 && errno == EINTR);
}

/* Copy output into the log until both pipes close and init's reports end; the command's wait
 * status, or -1 if init never reported one (it was SIGKILLed: a stop). */
static int pump(struct capture *c, int out_r, int err_r, struct lines *reports) {
    struct pollfd p[3] = {{reports->fd, POLLIN, 0}, {out_r, POLLIN, 0}, {err_r, POLLIN, 0}};
    int wstatus = -1;
    while (p[0].fd >= 0 || p[1].fd >= 0 || p[2].fd >= 0) {
        int ready = poll(p, 3, chunk_used ? IDLE_MS : -1);
        if (ready == 0) {
            madvise(chunk, sizeof chunk, MADV_DONTNEED);
            chunk_used = 0;
            continue;
        }
        if (ready < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[0].revents) {
            char line[64];
            if (!fill(reports)) p[0].fd = -1;
            while (buffered_line(reports, line, sizeof line))
                if (line[0] == 'X') wstatus = atoi(line + 2);
        }
        for (int i = 1; i < 3; i++) {
            if (p[i].fd >= 0 && p[i].revents && !take(c, i, p[i].fd)) {
                close(p[i].fd);
                p[i].fd = -1;
            }
        }
    }
    return wstatus;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Atomically: readers see the whole file or none. */
static int write_file(const char *dir, const char *name, const char *text) {
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    int rc = write_all(fd, text, strlen(text));
    close(fd);
    return rc ? rc : rename(tmp, path);
}

static void reset_signals(void) {
    int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Keep only fds 0-2 (stderr is the engine's spawner.log) and `a` and `b` (which may be -1). */
static void keep_only(int a, int b) {
    int lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo < 3) lo = hi;
    if (lo > 3) close_range(3, (unsigned)lo - 1, 0);
    if (hi > lo + 1) close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
    close_range((unsigned)hi + 1, ~0U, 0);
}

/* What the fallback recorder needs: `python -I -c CODE CONF DIR REPORT [REPLY_FD]`. */
struct recorder {
    const char *python, *code, *conf;
};

/* Report the job's end to the fork server; if it does not answer that it recorded it, record
 * it in Python here. `reply`: the engine's socket, still owed an answer (a failed start). */
static int report_end(int chan, const struct recorder *r, const char *dir, const char *end,
                      int reply) {
    char ack = 0;
    int fds[1] = {reply};
    int sent = send_with_fds(chan, end, strlen(end), fds, reply >= 0) == 0;
    if (sent && recv(chan, &ack, 1, 0) == 1 && ack == 'k') return 0;
    close(chan);
    char fd_text[16] = "";
    if (reply >= 0) {
        if (reply != 3) {
            dup2(reply, 3); /* no CLOEXEC on the copy */
            close(reply);
        } else {
            fcntl(3, F_SETFD, 0);
        }
        strcpy(fd_text, "3");
    }
    char *argv[] = {(char *)r->python, "-I", "-c", (char *)r->code, (char *)r->conf, (char *)dir,
                    (char *)end, reply >= 0 ? fd_text : NULL, NULL};
    execv(r->python, argv);
    perror("tjob-shim: exec of the recorder");
    return 1;
}

/* The life of a spare supervisor: build the job's namespaces and init, wait on `chan` for a
 * job, start it, reply to the engine, copy the job's output into its log, report the end. */
static int supervise(int chan, int busy, const char *cgroup_root, const struct recorder *rec) {
    keep_only(chan, busy);
    setsid();
    reset_signals();
    int rep[2], to_init[2];
    if (pipe2(rep, O_CLOEXEC) || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, to_init) ||
        unshare(CLONE_NEWPID))
        _exit(1);
    pid_t me = getpid();
    pid_t init = fork();
    if (init < 0) _exit(1);
    if (init == 0) {
        close(chan);
        close(busy);
        close(rep[0]);
        close(to_init[0]);
        _exit(run_init(to_init[1], rep[1], cgroup_root));
    }
    close(to_init[1]);
    close(rep[1]);
    int init_pidfd = pidfd_open(init);

    char msg[PATH_MAX + 32];
    int reply = -1, nfds;
    ssize_t n = recv_with_fds(chan, msg, sizeof msg - 1, &reply, 1, &nfds);
    if (n <= 0 || nfds != 1) { /* never used: init sees the end and exits */
        close(to_init[0]);
        waitpid(init, NULL, 0);
        return 0;
    }
    msg[n] = 0;
    const char *dir = msg;
    size_t dirlen = strlen(dir);
    long long cap = (size_t)n > dirlen + 1 ? atoll(msg + dirlen + 1) : 0;

    struct capture c = {.cap = cap > 0 ? cap : 1LL << 30};
    char path[PATH_MAX];
    snprintf(c.reserve, sizeof c.reserve, "%s/reserve", dir);
    snprintf(path, sizeof path, "%s/output.log", dir);
    c.log = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (c.log >= 0 && pwrite_all(c.log, LOG_MAGIC, HEADER_SIZE, 0)) {
        close(c.log);
        c.log = -1;
    }
    c.size = HEADER_SIZE;
    c.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/exec.bin", dir);
    int exec_fd = open(path, O_RDONLY | O_CLOEXEC);
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    struct lines reports = {.fd = rep[0]};
    char first[600] = "";
    if (c.log >= 0 && exec_fd >= 0 && pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0) {
        fcntl(out[0], F_SETPIPE_SZ, PIPE_SIZE); /* above pipe-max-size the default still works */
        fcntl(err[0], F_SETPIPE_SZ, PIPE_SIZE);
        int fds[3] = {out[1], err[1], exec_fd};
        send_with_fds(to_init[0], "j", 1, fds, 3); /* init gone? its report says why */
        read_line(&reports, first, sizeof first);
    } else {
        snprintf(first, sizeof first, "F setup %d -", errno);
    }
    close_quietly(out[1]);
    close_quietly(err[1]);
    close_quietly(exec_fd);
    close(to_init[0]);
    if (first[0] != 'S') {
        close_quietly(out[0]);
        close_quietly(err[0]);
        close(busy);
        waitpid(init, NULL, 0);
        close(init_pidfd);
        close_quietly(c.log);
        close(rep[0]);
        char end[sizeof first + 4];
        snprintf(end, sizeof end, "F %s", first);
        return report_end(chan, rec, dir, end, reply);
    }
    long pid = atol(first + 2);
    double started_at = now();
    char pid_text[24] = "null", text[256];
    if (pid > 0) snprintf(pid_text, sizeof pid_text, "%ld", pid);
    /* Before the reply: once start() returns, a later engine can find the job running. */
    snprintf(text, sizeof text,
             "{\"supervisor_pid\": %d, \"init_pid\": %d, \"pid\": %s, \"started_at\": %.17g}",
             (int)me, (int)init, pid_text, started_at);
    write_file(dir, "run.json", text);
    int self_pidfd = pidfd_open(me);
    snprintf(text, sizeof text,
             "{\"ok\": true, \"pid\": %s, \"started_at\": %.17g, \"supervisor_pid\": %d}",
             pid_text, started_at, (int)me);
    int pidfds[2] = {self_pidfd, init_pidfd};
    send_with_fds(reply, text, strlen(text), pidfds, 2); /* the engine may be gone: no matter */
    close(reply);
    close(self_pidfd);
    close(busy); /* the fork server's cue to build the next spare */
    /* Room for the final status should the disk fill up (the output is then cut, and this is
     * unlinked). Made now, after the reply: it is not on the way to starting the job. */
    int reserve = open(c.reserve, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (reserve >= 0) {
        posix_fallocate(reserve, 0, RESERVE_SIZE); /* no room even now: nothing to keep */
        close(reserve);
    }

    int wstatus = pump(&c, out[0], err[0], &reports);
    close(rep[0]);
    waitpid(init, NULL, 0);
    close(init_pidfd);
    close(c.log);
    close(c.devnull);
    char end[256];
    snprintf(end, sizeof end, "X %d %ld %.17g %s", wstatus, pid, started_at, c.cut);
    return report_end(chan, rec, dir, end, -1);
}

/* Forks a spare supervisor for each (chan, busy) pair of fds that arrives on `ctl`; exits when
 * `ctl` closes (the fork server is gone). */
static int zygote(int ctl, const char *cgroup_root, const struct recorder *rec) {
    keep_only(ctl, -1);
    signal(SIGCHLD, SIG_IGN); /* spares are reaped by the kernel */
    for (;;) {
        char msg[8];
        int fds[2], nfds;
        ssize_t n = recv_with_fds(ctl, msg, sizeof msg, fds, 2, &nfds);
        if (n <= 0) return 0;
        if (nfds == 2 && fork() == 0) {
            close(ctl);
            _exit(supervise(fds[0], fds[1], cgroup_root, rec));
        }
        for (int i = 0; i < nfds; i++) close(fds[i]);
    }
}

int main(int argc, char **argv) {
    char err[256];
    if (argc == 3 && strcmp(argv[1], "jail-check") == 0) { /* jail: the engine's start-up check */
        if (jail_setup(argv[2], NULL, 0, err, sizeof err) || jail_check(err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        return 0;
    }
    if ((argc != 7 && argc != 8) || strcmp(argv[1], "zygote") != 0) {
        fprintf(stderr, "usage: tjob-shim zygote CTL_FD CGROUP_ROOT PYTHON CODE CONF [JAIL]\n"
                        "(started by tjob's fork server, not by hand)\n");
        return 2;
    }
    if (argc == 8 && jail_setup(argv[7], argv, argc, err, sizeof err)) { /* jail: settings */
        fprintf(stderr, "tjob-shim: %s\n", err);
        return 2;
    }
    struct recorder rec = {argv[4], argv[5], argv[6]};
    return zygote(atoi(argv[2]), argv[3], &rec);
}
