/* `tjob-shim selftest WHAT [ARGS]`: decodes what the Python side encoded, with the code the
 * shim runs, and encodes it again, so tests/test_protocol.py checks both directions:
 *   constants          every protocol.h constant, NAME=value (strings in hex)
 *   handoff            stdin: DIR\0CAP            -> stdout: the same, re-encoded
 *   exec               stdin: exec.bin            -> stdout: the same, re-encoded
 *   reports            stdin: init's report lines -> stdout: each re-encoded by init's code
 *   end WSTATUS PID STARTED_AT CUT    -> stdout: the supervisor's end report
 *   run SUP INIT PID STARTED_AT       -> stdout: run.json
 *   reply PID STARTED_AT SUP          -> stdout: the start reply
 *   seccomp [PROGRAM]  stdin: jail settings       -> stdout: PASS/FAIL per check of the jobs'
 *                      seccomp filter on this machine (selftest_seccomp.c) */
#define _GNU_SOURCE
#include "selftest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobfile.h"
#include "jobstdin.h"
#include "msg.h"
#include "protocol.h"
#include "util.h"

static void print_hex(const char *name, const char *v, size_t n) {
    printf("%s=", name);
    for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)v[i]);
    printf("\n");
}

static int constants(void) {
#define I(name) printf(#name "=%lld\n", (long long)TJOB_##name);
#define S(name) print_hex(#name, TJOB_##name, sizeof TJOB_##name - 1);
    TJOB_PROTOCOL_TABLE(I, S)
#undef I
#undef S
    return fflush(stdout) ? 1 : 0;
}

static char *input(size_t *len) {
    char *buf = read_fd(0, len);
    if (!buf) perror("tjob-shim selftest: read");
    return buf;
}

static int handoff(void) {
    size_t len;
    char *buf = input(&len);
    const char *dir, *stdio;
    long long cap;
    struct jobstdin io;
    if (!buf || parse_handoff(buf, len, &dir, &cap, &stdio) || jobstdin_parse(&io, stdio)) return 1;
    printf("%s%c%lld", dir, 0, cap);
    if (stdio) printf("%c%s%s %u %u", 0, io.input ? "i" : "", io.tty ? "t" : "", io.rows, io.cols);
    return fflush(stdout) ? 1 : 0;
}

static int exec_file(void) {
    size_t len;
    char *buf = input(&len);
    struct job job;
    if (!buf || parse_job(buf, len, &job)) return 1;
    return write_job(1, &job) ? 1 : 0;
}

static int reports(void) {
    struct lines in = {.fd = 0};
    char line[600];
    struct report r;
    while (read_line(&in, line, sizeof line)) {
        if (parse_report(line, &r)) return 1;
        int rc = r.kind == TJOB_REPORT_STARTED[0] ? report_started(1, r.value)
                 : r.kind == TJOB_REPORT_EXITED[0] ? report_exited(1, (int)r.value)
                                                   : report_failure(1, &r.failure);
        if (rc) return 1;
    }
    return 0;
}

int selftest(int argc, char **argv) {
    char text[600];
    size_t n = 0;
    if (argc == 1 && strcmp(argv[0], "constants") == 0) return constants();
    if (argc == 1 && strcmp(argv[0], "handoff") == 0) return handoff();
    if (argc == 1 && strcmp(argv[0], "exec") == 0) return exec_file();
    if (argc == 1 && strcmp(argv[0], "reports") == 0) return reports();
    if ((argc == 1 || argc == 2) && strcmp(argv[0], "seccomp") == 0)
        return selftest_seccomp(argc == 2 ? argv[1] : NULL);
    if (argc == 5 && strcmp(argv[0], "end") == 0)
        n = format_end_exited(text, sizeof text, atoi(argv[1]), atol(argv[2]), atof(argv[3]),
                              argv[4]);
    else if (argc == 5 && strcmp(argv[0], "run") == 0)
        n = format_run(text, sizeof text, atoi(argv[1]), atoi(argv[2]), atol(argv[3]),
                       atof(argv[4]));
    else if (argc == 4 && strcmp(argv[0], "reply") == 0)
        n = format_start_reply(text, sizeof text, atol(argv[1]), atof(argv[2]), atoi(argv[3]));
    else {
        fprintf(stderr, "usage: tjob-shim selftest constants|handoff|exec|reports|end|run|reply|"
                        "seccomp\n");
        return 2;
    }
    return write_all(1, text, n) ? 1 : 0;
}
