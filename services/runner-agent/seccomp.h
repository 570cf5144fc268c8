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

/* Reuse of crun's compiled filter. crun compiles the profile with libseccomp
 * at every start (a few ms of CPU, and the 150-rule section parsed into its
 * heap, which its forks then copy on write). Once one sandbox started, the
 * runner-agent keeps the BPF program crun compiled for it (crun writes it to
 * <crun root>/<container id>/seccomp.bpf) and gives later bundles with the
 * same profile that program as the annotation run.oci.seccomp_bpf_data
 * (crun(1)) with an empty rule list: the same filter, the same notify
 * listener and flags, without the compile. Thread-safe; the cache lives as
 * long as the process. */

/* The canonical text of a seccomp section without its per-run listenerPath:
 * what the compiled program depends on. Caller frees; NULL on out-of-memory. */
char *seccomp_filter_key(const json_t *seccomp);
/* The base64 program learned for key (caller frees), or NULL if none. */
char *seccomp_bpf_cached(const char *key);
/* Reads the program crun compiled for key from path and keeps it. Returns 0,
 * -EBADMSG if the file is not a BPF program (empty, not whole instructions,
 * over BPF_MAXINSNS), or another negative errno. */
int seccomp_bpf_learn(const char *key, const char *path);
/* Forgets what was learned (tests). */
void seccomp_bpf_forget(void);
