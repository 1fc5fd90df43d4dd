/* An interactive job's stdin and its attach socket (see jobstdin.h). As conmon keeps a
 * container's stdin and console and serves them on an attach socket, the supervisor keeps the
 * job's (a pty is made by init, inside the jail, in the job's own devpts: as runc makes a
 * container's console inside it and sends the master out); unlike conmon it copies nothing: it lends the descriptor itself (SCM_RIGHTS) to one
 * writer at a time, so the pipe's own flow control reaches the writer. */
#define _GNU_SOURCE
#include "jobstdin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "logwriter.h"
#include "protocol.h"
#include "util.h"

int jobstdin_parse(struct jobstdin *io, const char *text) {
    memset(io, 0, sizeof *io);
    io->in_w = io->out_r = io->listen = io->conn = io->dir = -1;
    if (!text) return 0;
    char flags[4];
    unsigned rows, cols;
    int used = 0;
    if (sscanf(text, "%3s %u %u%n", flags, &rows, &cols, &used) != 3 || text[used] ||
        rows > TJOB_WINSIZE_MAX || cols > TJOB_WINSIZE_MAX)
        return -1;
    if (strcmp(flags, "i") && strcmp(flags, "t") && strcmp(flags, "it")) return -1;
    io->input = strchr(flags, 'i') != NULL;
    io->tty = strchr(flags, 't') != NULL;
    io->pipe = !io->tty;
    io->rows = (unsigned short)rows;
    io->cols = (unsigned short)cols;
    return 0;
}

/* `/proc/self/fd/DIR/NAME`: a socket path short whatever the state directory's length. */
static void socket_address(const struct jobstdin *io, struct sockaddr_un *a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "/proc/self/fd/%d/%s", io->dir, TJOB_ATTACH_SOCKET);
}

static int listen_on(struct jobstdin *io, const char *dir, struct failure *f) {
    struct sockaddr_un a;
    io->dir = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (io->dir < 0) return fail(f, "supervisor", "open", dir);
    io->listen = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (io->listen < 0) return fail(f, "supervisor", "socket", TJOB_ATTACH_SOCKET);
    socket_address(io, &a);
    if (bind(io->listen, (struct sockaddr *)&a, sizeof a))
        return fail(f, "supervisor", "bind", TJOB_ATTACH_SOCKET);
    if (fchmodat(io->dir, TJOB_ATTACH_SOCKET, 0600, 0))
        return fail(f, "supervisor", "chmod", TJOB_ATTACH_SOCKET);
    if (listen(io->listen, 16)) return fail(f, "supervisor", "listen", TJOB_ATTACH_SOCKET);
    return 0;
}

int jobstdin_make_pty(int chan, int *slave, struct failure *f) {
    int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), unlock = 0;
    if (master < 0) return fail(f, "tty", "open", "/dev/pts/ptmx");
    int rc = -1;
    if (ioctl(master, TIOCSPTLCK, &unlock)) fail(f, "tty", "ioctl", "TIOCSPTLCK");
    else if ((*slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
        fail(f, "tty", "ioctl", "TIOCGPTPEER");
    else if (send_with_fds(chan, TJOB_INIT_JOB_TTY, 1, &master, 1))
        fail(f, "tty", "sendmsg", "supervisor");
    else rc = 0;
    close(master);
    return rc;
}

int jobstdin_take_master(struct jobstdin *io, int chan) {
    char tag;
    int nfds;
    if (recv_with_fds(chan, &tag, 1, &io->in_w, 1, &nfds) != 1 || nfds != 1) {
        if (nfds == 1) close(io->in_w);
        io->in_w = -1;
        return -1; /* init failed first: its report says why */
    }
    struct winsize ws = {.ws_row = io->rows ? io->rows : 24, .ws_col = io->cols ? io->cols : 80};
    if (ioctl(io->in_w, TIOCSWINSZ, &ws)) log_error("supervisor", "ioctl TIOCSWINSZ");
    io->out_r = fcntl(io->in_w, F_DUPFD_CLOEXEC, 3);
    if (io->out_r < 0) return log_error("supervisor", "fcntl"), -1;
    return 0;
}

int jobstdin_open(struct jobstdin *io, const char *dir, int *in, char *tag, struct failure *f) {
    *in = -1;
    if (listen_on(io, dir, f)) return -1;
    if (io->tty) { /* init makes the pty, in the job's own devpts (jobstdin_make_pty) */
        *tag = TJOB_INIT_JOB_TTY[0];
        return 0;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC)) return fail(f, "supervisor", "pipe2", "stdin");
    /* As the output pipes: a writer moves more a step (above pipe-max-size the default works). */
    if (fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE) < 0) {
    }
    *in = p[0];
    io->in_w = p[1];
    *tag = TJOB_INIT_JOB_STDIN[0];
    return 0;
}

void jobstdin_poll(const struct jobstdin *io, struct pollfd *p) {
    p[0] = (struct pollfd){io->listen, POLLIN, 0};
    p[1] = (struct pollfd){io->conn, POLLIN, 0};
}

/* Only the engine's own user may take the job's stdin (the socket is 0600 in a private
 * directory too). */
static int trusted(int sock) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    return getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == geteuid();
}

static void answer(int sock, const char *what, int fd) {
    int fds[1] = {fd};
    if (send_with_fds(sock, what, 1, fds, fd >= 0)) { /* the peer is gone: nothing to do */
    }
}

static void accept_writer(struct jobstdin *io) {
    int c = accept4(io->listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return; /* a peer gone before it was accepted, or no descriptor left */
    if (!trusted(c)) {
        close(c);
    } else if (io->conn >= 0) {
        answer(c, TJOB_LEASE_BUSY, -1);
        close(c);
    } else if (io->in_w < 0) {
        answer(c, TJOB_LEASE_CLOSED, -1);
        close(c);
    } else {
        answer(c, TJOB_LEASE_GRANTED, io->in_w);
        io->conn = c;
        io->detached = 0;
    }
}

/* The lease ends: a pipe is closed unless its holder detached (its readers see EOF). */
static void release(struct jobstdin *io, int eof) {
    close(io->conn);
    io->conn = -1;
    if (io->pipe && io->in_w >= 0 && (eof || !io->detached)) {
        close(io->in_w);
        io->in_w = -1;
    }
}

void jobstdin_ready(struct jobstdin *io, const struct pollfd *p) {
    if (p[1].fd >= 0 && p[1].revents) {
        char what = 0;
        ssize_t n = recv(io->conn, &what, 1, 0);
        /* Released at once, before a new writer (queued since) is accepted. */
        if (n == 1 && what == TJOB_LEASE_DETACH[0]) io->detached = 1, release(io, 0);
        else if (n == 1 && what == TJOB_LEASE_EOF[0]) release(io, 1);
        else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) release(io, 0);
    }
    if (p[0].fd >= 0 && p[0].revents) accept_writer(io);
}

void jobstdin_close(struct jobstdin *io) {
    if (io->dir >= 0 && unlinkat(io->dir, TJOB_ATTACH_SOCKET, 0) && errno != ENOENT)
        log_error("supervisor", "unlink " TJOB_ATTACH_SOCKET);
    close_quietly(io->listen);
    close_quietly(io->conn);
    close_quietly(io->in_w);
    close_quietly(io->out_r);
    close_quietly(io->dir);
    io->listen = io->conn = io->in_w = io->out_r = io->dir = -1;
}
