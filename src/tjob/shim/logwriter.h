/* The job's log (logstore.py's format): output frames, the cap, the cut mark, the reserve. */
#ifndef TJOB_LOGWRITER_H
#define TJOB_LOGWRITER_H
#include <limits.h>
#include <sys/types.h>

#include "msg.h"

#define PIPE_SIZE (1 << 20) /* the output pipes, that a burst need not block the job */

struct capture {
    int log, devnull;
    off_t size;
    long long cap;
    char cut[160]; /* why output was cut; empty while it is not */
    char reserve[PATH_MAX];
};

/* Create `dir`/output.log (it must not exist) with its magic; -1 and `f` on failure. */
int capture_open(struct capture *c, const char *dir, long long cap, struct failure *f);
/* Room for the final status should the disk fill up (best effort). */
void capture_reserve(const struct capture *c);
/* Move what pipe `fd` (stream `stream`) holds into the log, up to the cap; after a cut, into
 * nowhere, so the job never blocks. 0 at the pipe's end. */
int capture_take(struct capture *c, int stream, int fd);
/* Output quiet: give back the pages of the read buffer. */
void capture_idle(void);
/* Whether the read buffer holds pages worth giving back. */
int capture_busy(void);
void capture_close(struct capture *c);

#endif
