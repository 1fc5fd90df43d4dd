/* The settings jail_setup parsed, shared by the jail's files (not by shim.c). */
#ifndef TJOB_JAIL_INTERNAL_H
#define TJOB_JAIL_INTERNAL_H

#include <linux/filter.h>

struct jail_settings {
    char **hide;
    int nhide;
    struct sock_fprog filter; /* .len 0: no filter (seccomp unconfined) */
};

extern struct jail_settings jail;

/* Compile the "default"/"arch"/"rule" lines into jail.filter; -1 and a message on error. */
int jail_compile_filter(char **lines, int count, char *err, size_t errlen);

#endif
