/* Small helpers every part of the shim uses: whole writes, files, fds, the process title. */
#ifndef TJOB_UTIL_H
#define TJOB_UTIL_H
#include <stddef.h>
#include <sys/types.h>

int pidfd_open(pid_t pid);
void close_quietly(int fd);
int write_all(int fd, const char *buf, size_t len);
int pwrite_all(int fd, const char *buf, size_t len, off_t at);
/* All of `fd` into a malloc'd, NUL-terminated buffer (its length in *len), or NULL. */
char *read_fd(int fd, size_t *len);
/* `dir/name` into `buf`; -1 and ENAMETOOLONG if it does not fit. */
int join_path(char *buf, size_t size, const char *dir, const char *name);
/* `dir/name` := `text`, atomically (readers see the whole file or none, across a power cut
 * too), its name fsynced (it survives a power cut); -1 and errno. */
int write_file(const char *dir, const char *name, const char *text);
/* Like write_file, but nothing is fsynced (readers see the whole file or none): run.json,
 * which says where living processes are, and a power cut leaves none. */
int write_file_whole(const char *dir, const char *name, const char *text);
/* dir/name's blocks past its end given back, then (if `sync`) it and dir (its name) fsynced:
 * 0, or -1 with errno. */
int finish_file(const char *dir, const char *name, int sync);
/* Whether files are fsynced (an engine made with durable=False says no). */
int sync_wanted(void);
double now(void);
/* What the fork server set (SIGCHLD and SIGINT ignored) back to defaults; an empty mask.
 * SIGPIPE stays ignored, as Python left it. */
void reset_signals(void);
/* Keep only fds 0-2 and `a` and `b` (either may be -1). */
void keep_only(int a, int b);
/* Remember the argv area (main, before anything), then overwrite it with `words` (NULL-ended):
 * /proc/PID/cmdline then reads as those words. Pointers into argv are invalid afterwards. */
void title_init(int argc, char **argv);
void set_title(const char *const *words);
/* "tjob-shim: STAGE: CALL: strerror(errno)" on stderr (the engine's spawner.log). */
void log_error(const char *stage, const char *call);

#endif
