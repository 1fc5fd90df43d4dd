/* An interactive job's stdin (issue 16): a pipe, or a pseudo-terminal from the job's own devpts,
 * whose write end / master the supervisor keeps and lends to one writer at a time over the
 * attach socket in the job's directory (protocol/constants.py, "the attach channel"). */
#ifndef TJOB_JOBSTDIN_H
#define TJOB_JOBSTDIN_H
#include <poll.h>
#include <sys/types.h>

#include "msg.h"

struct jobstdin {
    int input, tty;         /* what the handoff asked for (both 0: not interactive) */
    int pipe;               /* stdin is a pipe (not a TTY) */
    unsigned short rows, cols;
    int in_w;               /* the pipe's write end or the pty master; -1 once stdin is closed */
    int out_r;              /* a TTY's output: the master, read by the pump as stdout */
    int listen, conn;       /* the attach socket, and the writer holding the lease (-1: none) */
    int detached;           /* the holder asked to leave stdin open */
    int dir;                /* the job's directory (O_PATH), where the socket is */
};

/* Parse the handoff's "FLAGS ROWS COLS" (NULL: not interactive) into `io`; -1 if malformed. */
int jobstdin_parse(struct jobstdin *io, const char *text);
/* The attach socket in `dir`, and a pipe's read end into `in` (a TTY: -1; init makes the pty).
 * `tag`: the init message to send the job with. -1 and `f` on failure. */
int jobstdin_open(struct jobstdin *io, const char *dir, int *in, char *tag, struct failure *f);
/* Init, in the jail: a pty of the job's devpts; its master sent back on `chan`, its slave
 * into `slave`. -1 and `f` on failure. */
int jobstdin_make_pty(int chan, int *slave, struct failure *f);
/* The supervisor: the master init sent on `chan`, set to the asked window size; -1 if init
 * sent none (it failed, and reports why). */
int jobstdin_take_master(struct jobstdin *io, int chan);
/* The two descriptors to poll (listening socket, lease holder): into p[0], p[1]. */
void jobstdin_poll(const struct jobstdin *io, struct pollfd *p);
/* Serve what p[0], p[1] (as filled by jobstdin_poll, with revents) say is ready. */
void jobstdin_ready(struct jobstdin *io, const struct pollfd *p);
/* The job ended: close everything, remove the socket. */
void jobstdin_close(struct jobstdin *io);

#endif
