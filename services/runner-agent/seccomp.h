/* The seccomp profile of every sandbox, as the OCI `linux.seccomp` object crun
 * compiles with libseccomp. Default allow with an explicit deny list of what an
 * agent never needs (EPERM), clone3 answering ENOSYS so libc falls back to
 * clone(2), whose flags are filterable, socket families other than AF_UNIX,
 * AF_INET, AF_INET6 and NETLINK_ROUTE answering EAFNOSUPPORT, and only the x86_64 ABI (i386 and x32
 * system calls are killed as a bad architecture). Pure functions, thread-safe. */
#pragma once
#include <jansson.h>

/* Returns a new JSON object (caller owns), or NULL on out-of-memory.
 * capture_exec_add_to_linux() then adds the exec notify rules and listenerPath. */
json_t *seccomp_profile_new(void);

/* The syscall names denied outright (NULL-terminated), for tests and docs. */
extern const char *const seccomp_denied_syscalls[];
