/* `tjob-shim selftest ...`: the shim's half of the protocol tests (tests/test_protocol.py). */
#ifndef TJOB_SELFTEST_H
#define TJOB_SELFTEST_H

int selftest(int argc, char **argv);

/* `tjob-shim selftest seccomp` (selftest_seccomp.c): the jobs' filter probed on this machine. */
int selftest_seccomp(void);

#endif
