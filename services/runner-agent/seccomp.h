/* The seccomp profile of every sandbox, as the OCI `linux.seccomp` object crun
 * compiles with libseccomp. Default allow with an explicit deny list of what an
 * agent never needs (EPERM), clone3 answering ENOSYS so libc falls back to
 * clone(2), whose flags are filterable, and only the x86_64 ABI (i386 and x32
 * system calls are killed as a bad architecture). Pure functions, thread-safe. */
#pragma once
#include <jansson.h>

/* Returns a new JSON object (caller owns), or NULL on out-of-memory. */
json_t *seccomp_profile_new(void);

/* Adds an SCMP_ACT_NOTIFY rule for each name in the NULL-terminated list and
 * sets listenerPath (the unix socket crun hands the notify fd to), for
 * platform-level capture. profile is borrowed. Returns 0 or -ENOMEM. */
int seccomp_profile_add_notify(json_t *profile, const char *const *names, const char *listener_path);

/* The syscall names denied outright (NULL-terminated), for tests and docs. */
extern const char *const seccomp_denied_syscalls[];
