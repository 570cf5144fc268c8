#include "seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/macro.h"

/* Denied outright with EPERM: filesystem and namespace administration,
 * debugging other processes, kernel keyrings, eBPF, module and kexec loading,
 * io_uring (its own syscall surface outside this filter), perf, userfaultfd
 * (exploit helper), handle-based opens (bypass path checks), clock changes,
 * swap, reboot, accounting, quotas, kernel log, port I/O. */
const char *const seccomp_denied_syscalls[] = {
        "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
        "fsconfig", "fsmount", "fspick", "mount_setattr",
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
        "bpf", "keyctl", "add_key", "request_key",
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
        "setns", "io_uring_setup", "io_uring_enter", "io_uring_register",
        "perf_event_open", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
        "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "swapon", "swapoff",
        "reboot", "acct", "quotactl", "quotactl_fd", "lookup_dcookie", "fanotify_init",
        "iopl", "ioperm", "syslog", "vhangup", "nfsservctl", "uselib", "_sysctl",
        NULL,
};

/* Namespace flags of clone(2) (CLONE_NEWTIME is 0x80, which clone reads as
 * the exit signal, so it only appears for unshare). */
static const unsigned long clone_ns_flags[] = {CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                               CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET};
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static json_t *rule(const char *name, int errno_ret) {
        return json_pack("{s:[s],s:s,s:i}", "names", name, "action", "SCMP_ACT_ERRNO", "errnoRet", errno_ret);
}

/* name denied with EPERM when (arg[index] & mask) == value */
static json_t *rule_masked(const char *name, unsigned index, unsigned long mask, unsigned long value) {
        json_t *r = rule(name, EPERM);
        if (r)
                json_object_set_new(r, "args", json_pack("[{s:i,s:I,s:I,s:s}]", "index", (int)index,
                                                         "value", (json_int_t)mask, "valueTwo",
                                                         (json_int_t)value, "op", "SCMP_CMP_MASKED_EQ"));
        return r;
}

static json_t *rule_gt(const char *name, unsigned index, unsigned long value) {
        json_t *r = rule(name, EPERM);
        if (r)
                json_object_set_new(r, "args", json_pack("[{s:i,s:I,s:s}]", "index", (int)index, "value",
                                                         (json_int_t)value, "op", "SCMP_CMP_GT"));
        return r;
}

/* name fails with errno_ret when arg[index] op value */
static json_t *rule_cmp(const char *name, int errno_ret, unsigned index, const char *op, unsigned long value) {
        json_t *r = rule(name, errno_ret);
        if (r)
                json_object_set_new(r, "args", json_pack("[{s:i,s:I,s:s}]", "index", (int)index, "value",
                                                         (json_int_t)value, "op", op));
        return r;
}

/* The socket families an agent needs: local, IPv4, IPv6 and, for glibc's
 * getaddrinfo(AI_ADDRCONFIG) and `ip addr`, NETLINK_ROUTE. Everything else
 * (AF_PACKET, AF_VSOCK, AF_ALG, AF_BLUETOOTH, AF_KEY, other netlink protocols,
 * families newer than this list) is kernel attack surface no agent uses. */
static bool family_allowed(unsigned long f) {
        return f == AF_UNIX || f == AF_INET || f == AF_INET6 || f == AF_NETLINK;
}

/* Families at or above this are refused by one GE rule, so a family added to
 * a later kernel, or a domain with high bits set, is refused too. */
#define SECCOMP_FAMILY_CEILING 64

/* socket() and socketpair() of any other family fail with EAFNOSUPPORT, what
 * a kernel built without that family answers, so programs fall back as they
 * would there. The allow list is written as one rule per refused family (the
 * rules of one call are ORed; libseccomp cannot AND two tests of one argument
 * to express a range). */
static void add_socket_family_rules(json_t *sys) {
        static const char *const calls[] = {"socket", "socketpair"};
        for (size_t c = 0; c < ELEMENTSOF(calls); c++) {
                for (unsigned long f = 0; f < SECCOMP_FAMILY_CEILING; f++)
                        if (!family_allowed(f))
                                json_array_append_new(sys, rule_cmp(calls[c], EAFNOSUPPORT, 0, "SCMP_CMP_EQ", f));
                json_array_append_new(sys, rule_cmp(calls[c], EAFNOSUPPORT, 0, "SCMP_CMP_GE",
                                                    SECCOMP_FAMILY_CEILING));
        }
        /* netlink: only NETLINK_ROUTE (both tests in one rule are ANDed) */
        json_t *r = rule("socket", EAFNOSUPPORT);
        if (r)
                json_object_set_new(r, "args", json_pack("[{s:i,s:I,s:s},{s:i,s:I,s:s}]",
                                                         "index", 0, "value", (json_int_t)AF_NETLINK,
                                                         "op", "SCMP_CMP_EQ",
                                                         "index", 2, "value", (json_int_t)NETLINK_ROUTE,
                                                         "op", "SCMP_CMP_NE"));
        json_array_append_new(sys, r);
        json_array_append_new(sys, rule_cmp("socketpair", EAFNOSUPPORT, 0, "SCMP_CMP_EQ", AF_NETLINK));
}

json_t *seccomp_profile_new(void) {
        json_t *sys = json_array();
        if (!sys)
                return NULL;
        json_t *names = json_array();
        for (const char *const *n = seccomp_denied_syscalls; *n; n++)
                json_array_append_new(names, json_string(*n));
        json_array_append_new(sys, json_pack("{s:o,s:s,s:i}", "names", names, "action", "SCMP_ACT_ERRNO",
                                             "errnoRet", EPERM));

        /* clone3 passes its flags in memory, out of a filter's reach: ENOSYS
         * makes glibc fall back to clone(2), where each namespace flag is a rule
         * (rules of one syscall are ORed; libseccomp cannot AND two tests of
         * one argument) */
        json_array_append_new(sys, rule("clone3", ENOSYS));
        for (size_t i = 0; i < ELEMENTSOF(clone_ns_flags); i++) {
                json_array_append_new(sys, rule_masked("clone", 0, clone_ns_flags[i], clone_ns_flags[i]));
                json_array_append_new(sys, rule_masked("unshare", 0, clone_ns_flags[i], clone_ns_flags[i]));
        }
        json_array_append_new(sys, rule_masked("unshare", 0, CLONE_NEWTIME, CLONE_NEWTIME));

        /* device nodes: mknod of a fifo or socket stays possible */
        json_array_append_new(sys, rule_masked("mknod", 1, S_IFMT, S_IFCHR));
        json_array_append_new(sys, rule_masked("mknod", 1, S_IFMT, S_IFBLK));
        json_array_append_new(sys, rule_masked("mknodat", 2, S_IFMT, S_IFCHR));
        json_array_append_new(sys, rule_masked("mknodat", 2, S_IFMT, S_IFBLK));

        /* personality: only PER_LINUX (0) and PER_LINUX32 (8) and the small
         * values below; ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and the query
         * 0xffffffff are refused (the range test needs two comparisons of one
         * argument, which libseccomp cannot AND) */
        json_array_append_new(sys, rule_gt("personality", 0, 8));

        add_socket_family_rules(sys);

        return json_pack("{s:s,s:[s],s:o}", "defaultAction", "SCMP_ACT_ALLOW", "architectures",
                         "SCMP_ARCH_X86_64", "syscalls", sys);
}

/* ------------------------------------------------ compiled filter reuse */

static pthread_mutex_t bpf_lock = PTHREAD_MUTEX_INITIALIZER;
static char *bpf_key;  /* seccomp_filter_key() of the learned program */
static char *bpf_b64;  /* the program, base64 as crun's annotation takes it */

char *seccomp_filter_key(const json_t *seccomp) {
        json_t *copy = json_deep_copy(seccomp);
        if (!copy)
                return NULL;
        json_object_del(copy, "listenerPath");
        char *key = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(copy);
        return key;
}

char *seccomp_bpf_cached(const char *key) {
        char *b64 = NULL;
        pthread_mutex_lock(&bpf_lock);
        if (bpf_key && key && !strcmp(bpf_key, key))
                b64 = strdup(bpf_b64);
        pthread_mutex_unlock(&bpf_lock);
        return b64;
}

int seccomp_bpf_learn(const char *key, const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        size_t insn = sizeof(struct sock_filter);
        if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (size_t)st.st_size % insn != 0 ||
            (size_t)st.st_size > BPF_MAXINSNS * insn)
                return -EBADMSG;
        size_t len = (size_t)st.st_size;
        _cleanup_free_ unsigned char *prog = malloc(len);
        _cleanup_free_ char *b64 = malloc(4 * ((len + 2) / 3) + 1);
        _cleanup_free_ char *k = strdup(key);
        if (!prog || !b64 || !k)
                return -ENOMEM;
        for (size_t got = 0; got < len;) {
                ssize_t n = read(fd, prog + got, len - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EBADMSG; /* shrank under us */
                got += (size_t)n;
        }
        EVP_EncodeBlock((unsigned char *)b64, prog, (int)len);
        pthread_mutex_lock(&bpf_lock);
        free(bpf_key);
        free(bpf_b64);
        bpf_key = TAKE_PTR(k);
        bpf_b64 = TAKE_PTR(b64);
        pthread_mutex_unlock(&bpf_lock);
        return 0;
}

void seccomp_bpf_forget(void) {
        pthread_mutex_lock(&bpf_lock);
        free(bpf_key);
        free(bpf_b64);
        bpf_key = bpf_b64 = NULL;
        pthread_mutex_unlock(&bpf_lock);
}
