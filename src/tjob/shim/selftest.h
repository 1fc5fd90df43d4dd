/* `tjob-shim selftest ...`: the shim's half of the protocol tests (tests/test_protocol.py). */
#ifndef TJOB_SELFTEST_H
#define TJOB_SELFTEST_H

int selftest(int argc, char **argv);

/* `tjob-shim selftest seccomp [PROGRAM]` (selftest_seccomp.c): the jobs' filter probed on this
 * machine; PROGRAM makes the calls of its 32-bit ABI where that needs another program. */
int selftest_seccomp(const char *program);

#endif
