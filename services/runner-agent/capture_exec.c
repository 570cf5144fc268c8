#include "capture_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "events.h"
#include "exec_identity.h"
#include "run_policy.h"

#define ARGV_MAX_ENTRIES 4096
#define PAYLOAD_MAX 65536     /* crun's state JSON sent with the fd */
#define AUXV_MAX 1024         /* x86_64 auxv is ~400 bytes */
#define CONFIRM_TIMEOUT_US 200000 /* an exec still not done by then failed (or the node is very busy) */
#define CONFIRM_SPIN 2000     /* polls before sleeping: most execs complete within microseconds */

static struct metric metric_exec_events = {
        .name = "paddock_runner_capture_exec_events_total",
        .help = "exec events captured by seccomp user notification", .type = METRIC_COUNTER};
static struct metric metric_exec_refused = {
        .name = "paddock_runner_capture_exec_refused_total",
        .help = "exec attempts answered with the kernel's errno (missing or non-executable file)",
        .type = METRIC_COUNTER};
static struct metric metric_exec_unconfirmed = {
        .name = "paddock_runner_capture_exec_unconfirmed_total",
        .help = "exec events whose executed file could not be confirmed (exec failed, or the program ended first)",
        .type = METRIC_COUNTER};
static struct metric metric_direct_connects = {
        .name = "paddock_runner_capture_direct_connects_total",
        .help = "connect() calls from a sandbox to an address outside its loopback (refused, ENETUNREACH)",
        .type = METRIC_COUNTER};
static struct metric metric_exec_errors = {
        .name = "paddock_runner_capture_exec_errors_total",
        .help = "exec notifications that could not be read (the call was refused)", .type = METRIC_COUNTER};

void capture_exec_metrics_register(void) {
        metrics_register(&metric_exec_events);
        metrics_register(&metric_exec_refused);
        metrics_register(&metric_exec_unconfirmed);
        metrics_register(&metric_exec_errors);
        metrics_register(&metric_direct_connects);
}

struct capture_exec {
        struct run_events *ev;
        struct run_policy *policy;  /* borrowed; NULL or no command rule that can ask or deny: no decisions */
        struct exec_identity *identity; /* image programs by content, built on first need */
        char *sock_path;
        char *workspace;        /* host path of the run's workspace, shown as /workspace */
        int listen_fd, conn_fd, notify_fd, stop_fd;
        struct seccomp_notif_sizes sizes;
        struct seccomp_notif *req;
        struct seccomp_notif_resp *resp;
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool first_emitted, done;
        capture_exec_first_fn on_first;   /* set before crun starts, read by the thread */
        void *on_first_userdata;
        bool first_seen;                  /* the thread's own: on_first called */
        bool skip_init_exec;              /* a pooled sandbox: its first exec is the pool's init (pool.h) */
        uint64_t n_events, n_refused, n_direct;
};

/* ------------------------------------------------------------ JSON helpers */

/* Length of one valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s, size_t len) {
        unsigned char c = s[0];
        if (c < 0x80)
                return 1;
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
                n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                n = 3;
                lo = c == 0xE0 ? 0xA0 : 0x80;
                hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
                n = 4;
                lo = c == 0xF0 ? 0x90 : 0x80;
                hi = c == 0xF4 ? 0x8F : 0xBF;
        } else
                return 0;
        if (len < n || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
        return n;
}

json_t *capture_json_string(const char *s, size_t len) {
        json_t *j = json_stringn(s, len);
        if (j)
                return j;
        /* argv and file names are bytes, not text: keep them readable */
        _cleanup_free_ char *out = malloc(len * 3 + 1);
        if (!out)
                return NULL;
        size_t w = 0;
        for (size_t i = 0; i < len;) {
                size_t n = s[i] ? utf8_len((const unsigned char *)s + i, len - i) : 0;
                if (n == 0) {
                        memcpy(out + w, "\xEF\xBF\xBD", 3);
                        w += 3;
                        i++;
                } else {
                        memcpy(out + w, s + i, n);
                        w += n;
                        i += n;
                }
        }
        return json_stringn(out, w);
}

/* ---------------------------------------------------------- OCI profile */

static const char *const notify_names[] = {"execve", "execveat", "connect"};

/* Index in notify_names, or -1. */
static int notify_index(const char *n) {
        for (size_t i = 0; i < ELEMENTSOF(notify_names); i++)
                if (!strcmp(n, notify_names[i]))
                        return (int)i;
        return -1;
}

int capture_exec_add_to_seccomp(json_t *seccomp, const char *listener_path) {
        json_t *syscalls = json_object_get(seccomp, "syscalls");
        if (!json_is_array(syscalls)) {
                syscalls = json_array();
                if (!syscalls || json_object_set_new(seccomp, "syscalls", syscalls) < 0)
                        return -ENOMEM;
        }
        bool notify[ELEMENTSOF(notify_names)] = {true, true, true};
        for (size_t i = 0; i < json_array_size(syscalls);) {
                json_t *rule = json_array_get(syscalls, i);
                const char *action = json_string_value(json_object_get(rule, "action"));
                json_t *names = json_object_get(rule, "names");
                bool allow = action && !strcmp(action, "SCMP_ACT_ALLOW");
                for (size_t k = 0; json_is_array(names) && k < json_array_size(names);) {
                        const char *n = json_string_value(json_array_get(names, k));
                        int ni = n ? notify_index(n) : -1;
                        if (ni >= 0) {
                                if (allow) {
                                        json_array_remove(names, k);
                                        continue;
                                }
                                /* a deny stays authoritative: no notify on top of it */
                                notify[ni] = false;
                        }
                        k++;
                }
                if (allow && json_is_array(names) && json_array_size(names) == 0) {
                        json_array_remove(syscalls, i);
                        continue;
                }
                i++;
        }
        json_t *names = json_array();
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(notify_names); i++)
                if (notify[i])
                        json_array_append_new(names, json_string(notify_names[i]));
        if (json_array_size(names) > 0)
                json_array_append_new(syscalls, json_pack("{s:o,s:s}", "names", names, "action",
                                                          "SCMP_ACT_NOTIFY"));
        else
                json_decref(names);
        if (json_object_set_new(seccomp, "listenerPath", json_string(listener_path)) < 0)
                return -ENOMEM;
        return 0;
}

int capture_exec_add_to_linux(json_t *linux_, const char *run_dir) {
        json_t *seccomp = json_object_get(linux_, "seccomp");
        if (!seccomp) {
                /* minimal profile until the bundle has its own: allow all but observe exec */
                seccomp = json_pack("{s:s,s:[s,s,s],s:[]}", "defaultAction", "SCMP_ACT_ALLOW",
                                    "architectures", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                    "syscalls");
                if (!seccomp || json_object_set_new(linux_, "seccomp", seccomp) < 0)
                        return -ENOMEM;
        }
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", run_dir, CAPTURE_EXEC_SOCKET) < 0)
                return -ENOMEM;
        return capture_exec_add_to_seccomp(seccomp, path);
}

/* ---------------------------------------------------------- /proc readers */

/* Reads len bytes of the target's memory at addr, never crossing into an
 * unmapped page in one pread. Returns bytes read (short at an unmapped page). */
static size_t mem_read(int memfd, uint64_t addr, void *buf, size_t len) {
        size_t done = 0;
        while (done < len) {
                size_t chunk = 4096 - ((addr + done) & 4095);
                if (chunk > len - done)
                        chunk = len - done;
                ssize_t n = pread(memfd, (char *)buf + done, chunk, (off_t)(addr + done));
                if (n <= 0)
                        break;
                done += (size_t)n;
        }
        return done;
}

/* Reads a NUL-terminated string of at most max bytes into out (size max + 1).
 * Returns its length, or -EFAULT if unreadable; *cut is set when longer. */
static ssize_t mem_read_str(int memfd, uint64_t addr, char *out, size_t max, bool *cut) {
        size_t len = 0;
        *cut = false;
        while (len < max) {
                size_t chunk = 4096 - ((addr + len) & 4095);
                if (chunk > max - len)
                        chunk = max - len;
                ssize_t n = pread(memfd, out + len, chunk, (off_t)(addr + len));
                if (n <= 0)
                        return -EFAULT;
                char *z = memchr(out + len, 0, (size_t)n);
                if (z)
                        return z - out;
                len += (size_t)n;
        }
        out[max] = 0;
        *cut = true;
        return (ssize_t)max;
}

/* PPid and the innermost NSpid from /proc/<pid>/status. */
static void read_status(pid_t pid, long *ppid, long *nspid) {
        char path[64], buf[4096];
        *ppid = *nspid = -1;
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return;
        buf[n] = 0;
        char *p = strstr(buf, "\nPPid:");
        if (p)
                *ppid = strtol(p + 6, NULL, 10);
        p = strstr(buf, "\nNSpid:");
        if (p) {
                char *end = strchr(p + 1, '\n');
                if (end)
                        *end = 0;
                char *last = strrchr(p + 7, '\t');
                *nspid = strtol(last ? last : p + 7, NULL, 10);
        }
}

/* The errno the kernel would give because the file is missing or is not an
 * executable regular file, or 0 when that cannot be told (let the kernel
 * decide). Resolution happens inside the process's own root. */
static int exec_target_errno(pid_t pid, const char *cwd, int dirfd, const char *path) {
        if (!path[0] || (path[0] != '/' && (dirfd != AT_FDCWD || cwd[0] != '/')))
                return 0;
        char rootp[64];
        snprintf(rootp, sizeof rootp, "/proc/%d/root", (int)pid);
        _cleanup_close_ int root = open(rootp, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return 0;
        _cleanup_free_ char *full = NULL;
        if (path[0] != '/' && asprintf(&full, "%s/%s", cwd, path) < 0)
                return 0;
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
        _cleanup_close_ int fd = (int)syscall(SYS_openat2, root, full ? full : path, &how, sizeof how);
        if (fd < 0)
                return errno == ENOENT || errno == ENOTDIR ? -errno : 0;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return 0;
        if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
                return -EACCES;
        return 0;
}

/* ------------------------------------------------------------ the loop */

static bool notif_valid(struct capture_exec *c, uint64_t id) {
        return ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

static void respond(struct capture_exec *c, uint64_t id, int error) {
        memset(c->resp, 0, c->sizes.seccomp_notif_resp);
        c->resp->id = id;
        c->resp->error = error;
        c->resp->flags = error ? 0 : SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        /* ENOENT: the task died meanwhile, nothing to answer */
        if (ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_SEND, c->resp) < 0 && errno != ENOENT)
                log_ctx(LOG_WARN, LOG_KV("run", c->ev->run_id), "could not answer an exec notification: %m");
}

/* Reads the argv array: returns the JSON array, or NULL on a fault. */
static json_t *read_argv(int memfd, uint64_t argv_ptr, bool *cut) {
        _cleanup_(json_decrefp) json_t *argv = json_array();
        _cleanup_free_ char *s = malloc(CAPTURE_EXEC_ARGV_MAX + 1);
        if (!argv || !s)
                return NULL;
        size_t budget = CAPTURE_EXEC_ARGV_MAX;
        *cut = false;
        if (argv_ptr == 0)
                return TAKE_PTR(argv); /* Linux accepts a NULL argv as empty */
        for (size_t i = 0;; i++) {
                if (i >= ARGV_MAX_ENTRIES || budget == 0) {
                        *cut = true;
                        break;
                }
                uint64_t p;
                if (mem_read(memfd, argv_ptr + i * sizeof p, &p, sizeof p) != sizeof p)
                        return NULL;
                if (p == 0)
                        break;
                bool scut;
                ssize_t n = mem_read_str(memfd, p, s, budget, &scut);
                if (n < 0)
                        return NULL;
                json_array_append_new(argv, capture_json_string(s, (size_t)n));
                budget -= (size_t)n < budget ? (size_t)n + 1 : budget;
                if (scut) {
                        *cut = true;
                        break;
                }
        }
        return TAKE_PTR(argv);
}

/* Reads /proc/<pid>/auxv (procdir: that directory) into buf; returns the
 * length, 0 once the process has no memory (exited), or -errno. */
static ssize_t read_auxv(int procdir, unsigned char *buf, size_t size) {
        _cleanup_close_ int fd = openat(procdir, "auxv", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = pread(fd, buf, size, 0);
        return n < 0 ? -errno : n;
}

/* The file the kernel executed, after the exec, as a path of the sandbox.
 * The exec has replaced the process image once its auxiliary vector differs
 * from the one before (a new one is built for every image, and ASLR puts
 * AT_RANDOM and the stack elsewhere each time); /proc/<pid>/exe then names
 * the executed file: the target of a symlink, the interpreter of a script,
 * whatever argv[0] claims. Returns a malloc'd path, or NULL when the exec
 * failed or the program ended before it could be seen (the caller counts it). */
static char *confirm_exe(int procdir, const unsigned char *before, ssize_t before_len, const char *workspace) {
        unsigned char now[AUXV_MAX];
        int64_t deadline = time_mono_us() + CONFIRM_TIMEOUT_US;
        for (unsigned i = 0;; i++) {
                ssize_t n = read_auxv(procdir, now, sizeof now);
                if (n <= 0)
                        return NULL; /* gone */
                if (n != before_len || memcmp(now, before, (size_t)n))
                        break;
                if (time_mono_us() > deadline)
                        return NULL;
                if (i < CONFIRM_SPIN)
                        sched_yield();
                else
                        usleep(200);
        }
        char exe[PATH_MAX + 1], root[PATH_MAX + 1];
        ssize_t el = readlinkat(procdir, "exe", exe, PATH_MAX);
        if (el <= 0)
                return NULL;
        exe[el] = 0;
        /* the host renders the path from its own root: strip the sandbox's
         * root, and name the workspace as the sandbox sees it */
        size_t wl = strlen(workspace);
        if (!strncmp(exe, workspace, wl) && (exe[wl] == '/' || !exe[wl])) {
                char *p;
                return asprintf(&p, "/workspace%s", exe + wl) < 0 ? NULL : p;
        }
        ssize_t rl = readlinkat(procdir, "root", root, PATH_MAX);
        if (rl > 1) {
                root[rl] = 0;
                if (!strncmp(exe, root, (size_t)rl) && exe[rl] == '/')
                        return strdup(exe + rl);
        }
        return strdup(exe);
}

/* ---------------------------------------------------------- exec policy */

/* argv joined by single spaces (docs/CONTRACTS.md "Policy engine": the exec
 * level's command); from index `from` on, after prefix when given. */
static char *join_argv(const char *prefix, json_t *argv, size_t from) {
        size_t len = prefix ? strlen(prefix) : 0;
        for (size_t i = from; i < json_array_size(argv); i++)
                len += json_string_length(json_array_get(argv, i)) + 1;
        char *out = malloc(len + 1);
        if (!out)
                return NULL;
        size_t w = 0;
        if (prefix) {
                memcpy(out, prefix, strlen(prefix));
                w = strlen(prefix);
        }
        for (size_t i = from; i < json_array_size(argv); i++) {
                json_t *a = json_array_get(argv, i);
                if (w > 0)
                        out[w++] = ' ';
                memcpy(out + w, json_string_value(a), json_string_length(a));
                w += json_string_length(a);
        }
        out[w] = 0;
        return out;
}

/* The executed file, opened for reading inside the process's own root, or -1. */
static int open_exec_target(pid_t pid, int root, const char *cwd, int dirfd, const char *path) {
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
        if (dirfd == AT_FDCWD) {
                _cleanup_free_ char *full = NULL;
                if (path[0] != '/' && asprintf(&full, "%s/%s", cwd, path) < 0)
                        return -1;
                return (int)syscall(SYS_openat2, root, full ? full : path, &how, sizeof how);
        }
        /* execveat / fexecve: the caller's descriptor, reopened through /proc */
        char fdp[64];
        snprintf(fdp, sizeof fdp, "/proc/%d/fd/%d", (int)pid, dirfd);
        if (!path[0])
                return open(fdp, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int dir = open(fdp, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
                return -1;
        how.resolve = RESOLVE_BENEATH;
        return path[0] == '/' ? (int)syscall(SYS_openat2, root, path, &how, sizeof how)
                              : (int)syscall(SYS_openat2, dir, path, &how, sizeof how);
}

/* An exec held for a person (run_policy_ask): answered from the run's
 * approvals thread, never from the capture thread, which keeps taking the
 * run's other execs. Owns dups of the notification and /proc fds, so the
 * capture thread closing its own changes nothing here. */
struct held_exec {
        struct capture_exec *c;
        int notify_fd, procdir;
        uint64_t id;
        unsigned char auxv[AUXV_MAX];
        ssize_t auxv_len;
        json_t *ev;
        struct seccomp_notif_resp *resp;
};

static void held_exec_free(struct held_exec *h) {
        if (!h)
                return;
        if (h->notify_fd >= 0)
                close(h->notify_fd);
        if (h->procdir >= 0)
                close(h->procdir);
        json_decref(h->ev);
        free(h->resp);
        free(h);
}

int capture_exec_answer(int notify_fd, uint64_t id, int error, struct seccomp_notif_resp *resp, size_t resp_size) {
        /* the task may have died (or been killed with the run) while it was
         * held: its id is then no longer valid and there is nothing to answer */
        if (ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0)
                return -ENOENT;
        memset(resp, 0, resp_size);
        resp->id = id;
        resp->error = error;
        resp->flags = error ? 0 : SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        return ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND, resp) < 0 ? -errno : 0;
}

static void emit_exec(struct capture_exec *c, json_t *ev) {
        if (events_emit(c->ev, "exec", "platform", ev, NULL, false, false) >= 0) {
                pthread_mutex_lock(&c->lock);
                c->n_events++;
                pthread_mutex_unlock(&c->lock);
                metric_add(&metric_exec_events, 1);
        }
}


static void mark_first(struct capture_exec *c);

/* run_policy_answer_fn: the person (or the deadline, or the run's end) decided. */
static void held_exec_answered(void *userdata, bool approved, const char *approval_id, const char *by) {
        struct held_exec *h = userdata;
        struct capture_exec *c = h->c;
        int r = capture_exec_answer(h->notify_fd, h->id, approved ? 0 : -EPERM, h->resp, c->sizes.seccomp_notif_resp);
        json_object_set_new(h->ev, "approval_id", json_string(approval_id));
        if (!approved) {
                json_object_set_new(h->ev, "denied", json_true());
                json_object_set_new(h->ev, "by", json_string(by));
        }
        if (r == 0 && approved) {
                _cleanup_free_ char *confirmed = h->auxv_len > 0 ? confirm_exe(h->procdir, h->auxv, h->auxv_len,
                                                                              c->workspace)
                                                                 : NULL;
                if (confirmed)
                        json_object_set_new(h->ev, "exe_confirmed", capture_json_string(confirmed, strlen(confirmed)));
                else
                        metric_add(&metric_exec_unconfirmed, 1);
        }
        if (r == 0)
                emit_exec(c, h->ev); /* else the process is gone: it started nothing */
        mark_first(c);
        held_exec_free(h);
}

/* The exec level of the run's policy (docs/CONTRACTS.md "Policy engine"): the
 * command as given and with argv[0] replaced by each image program the file's
 * content is (exec_identity.h); the strictest decides. Returns 0 to let the
 * exec go on, 1 when it is held (the notification belongs to the held exec),
 * or a negative errno to refuse it with (ev marked denied). */
static int exec_decide(struct capture_exec *c, uint64_t id, pid_t pid, int procdir, const char *cwd, int dirfd,
                       const char *path, json_t *argv, json_t *ev, const unsigned char *auxv, ssize_t auxv_len,
                       struct stat *checked) {
        *checked = (struct stat){0};
        _cleanup_free_ char *given = json_array_size(argv) ? join_argv(NULL, argv, 0) : strdup(path);
        if (!given)
                return -ENOMEM;
        char names[EXEC_IDENTITY_NAMES_MAX][EXEC_IDENTITY_NAME_MAX + 1];
        int n_names = 0;
        {
                char rootp[64];
                snprintf(rootp, sizeof rootp, "/proc/%d/root", (int)pid);
                _cleanup_close_ int root = open(rootp, O_PATH | O_DIRECTORY | O_CLOEXEC);
                _cleanup_close_ int fd = root >= 0 ? open_exec_target(pid, root, cwd, dirfd, path) : -1;
                if (fd >= 0 && fstat(fd, checked) < 0)
                        *checked = (struct stat){0};
                if (fd >= 0)
                        n_names = exec_identity_names(c->identity, root, fd, names);
                if (n_names < 0)
                        n_names = 0;
        }
        const struct policy_engine *pe = run_policy_engine(c->policy);
        _cleanup_free_ char *best_cmd = NULL;
        const char *best_program = NULL;
        struct policy_decision best = policy_decide(pe, &(struct policy_request){.command = given});
        for (int i = 0; i < n_names; i++) {
                _cleanup_free_ char *cmd = join_argv(names[i], argv, 1);
                if (!cmd)
                        return -ENOMEM;
                struct policy_decision d = policy_decide(pe, &(struct policy_request){.command = cmd});
                if (d.action > best.action) {
                        best = d;
                        free(best_cmd);
                        best_cmd = TAKE_PTR(cmd);
                        best_program = names[i];
                }
        }
        if (best.rule < 0 || best.action == POLICY_ALLOW)
                return 0;
        const char *command = best_cmd ? best_cmd : given;
        _cleanup_(json_decrefp) json_t *extra = json_pack("{s:i}", "pid", (int)pid);
        if (extra && n_names > 0)
                json_object_set_new(extra, "program", json_string(best_program ? best_program : names[0]));
        if (extra && best_cmd)
                json_object_set_new(extra, "command_given", capture_json_string(given, strlen(given)));
        /* the event names the rule; the same request decides the same way */
        struct policy_request req = {.command = command};
        struct policy_decision d = run_policy_decide(c->policy, "exec", &req, extra, false);
        const char *rule = policy_rule_source(pe, d.rule);
        if (d.action == POLICY_ALLOW)
                return 0;
        if (d.action == POLICY_ASK &&
            (run_policy_command_granted(c->policy, given) || (best_cmd && run_policy_command_granted(c->policy, best_cmd))))
                return 0; /* approved at the hook: one approval covers one action */
        if (rule)
                json_object_set_new(ev, "rule", json_string(rule));
        if (d.action == POLICY_DENY) {
                json_object_set_new(ev, "denied", json_true());
                return -EPERM;
        }
        struct held_exec *h = calloc(1, sizeof *h);
        if (!h)
                return -EPERM;
        h->c = c;
        h->id = id;
        h->notify_fd = fcntl(c->notify_fd, F_DUPFD_CLOEXEC, 0);
        h->procdir = fcntl(procdir, F_DUPFD_CLOEXEC, 0);
        h->resp = calloc(1, c->sizes.seccomp_notif_resp);
        h->ev = json_incref(ev);
        h->auxv_len = auxv_len > 0 ? auxv_len : 0;
        if (auxv_len > 0)
                memcpy(h->auxv, auxv, (size_t)auxv_len);
        char approval_id[UUID_STR_LEN];
        if (h->notify_fd < 0 || h->procdir < 0 || !h->resp ||
            run_policy_ask(c->policy, "exec", &req, d.rule, extra, held_exec_answered, h, approval_id) < 0) {
                /* an ask that could not be made is a deny (fail closed) */
                held_exec_free(h);
                json_object_set_new(ev, "denied", json_true());
                return -EPERM;
        }
        return 1;
}

/* After an exec the policy let through: the file the kernel executed
 * (/proc/<pid>/exe) is the one decided on (checked), unless another process
 * of the sandbox replaced it between the decision and the kernel's open (a
 * race it can try to win). Then the executed file's identity decides again,
 * and a deny or an ask (a running process cannot be held) kills the process:
 * the exec event gets "denied": true, "killed": true. */
static void exec_recheck(struct capture_exec *c, pid_t pid, int procdir, json_t *argv, const struct stat *checked,
                         json_t *ev) {
        _cleanup_close_ int fd = openat(procdir, "exe", O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || (checked->st_ino && st.st_dev == checked->st_dev &&
                                              st.st_ino == checked->st_ino && st.st_size == checked->st_size &&
                                              st.st_mtim.tv_sec == checked->st_mtim.tv_sec &&
                                              st.st_mtim.tv_nsec == checked->st_mtim.tv_nsec))
                return;
        char rootp[64];
        snprintf(rootp, sizeof rootp, "/proc/%d/root", (int)pid);
        _cleanup_close_ int root = open(rootp, O_PATH | O_DIRECTORY | O_CLOEXEC);
        char names[EXEC_IDENTITY_NAMES_MAX][EXEC_IDENTITY_NAME_MAX + 1];
        int n = root >= 0 ? exec_identity_names(c->identity, root, fd, names) : 0;
        const struct policy_engine *pe = run_policy_engine(c->policy);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *cmd = join_argv(names[i], argv, 1);
                if (!cmd)
                        return;
                struct policy_request req = {.command = cmd};
                struct policy_decision d = policy_decide(pe, &req);
                if (d.action == POLICY_ALLOW ||
                    (d.action == POLICY_ASK && run_policy_command_granted(c->policy, cmd)))
                        continue;
                kill(pid, SIGKILL);
                _cleanup_(json_decrefp) json_t *extra = json_pack("{s:i,s:s,s:b}", "pid", (int)pid, "program",
                                                                  names[i], "swapped", 1);
                d = run_policy_decide(c->policy, "exec", &req, extra, false);
                const char *rule = policy_rule_source(pe, d.rule);
                json_object_set_new(ev, "denied", json_true());
                json_object_set_new(ev, "killed", json_true());
                if (rule)
                        json_object_set_new(ev, "rule", json_string(rule));
                log_ctx(LOG_WARN, LOG_KV("run", c->ev->run_id, "program", names[i]),
                        "an executed file was replaced after its exec was decided: process killed");
                return;
        }
}

static void mark_first(struct capture_exec *c) {
        pthread_mutex_lock(&c->lock);
        if (!c->first_emitted) {
                c->first_emitted = true;
                pthread_cond_broadcast(&c->cond);
        }
        pthread_mutex_unlock(&c->lock);
}

/* ---------------------------------------------------------- direct connects */

/* A connect() to an address outside the sandbox's loopback: the sandbox's
 * network namespace has no route there (that is the enforcement), so the
 * attempt fails whatever we answer; we answer ENETUNREACH ourselves and make
 * the attempt an `egress` event {"direct": true, "decision": "deny"} — an
 * agent going around the proxy is seen (docs/CONTRACTS.md "Policy engine").
 * Loopback (the proxy, the model gateway) and non-inet sockets continue
 * untouched. Returns true if addr is such an outside address. */
static bool direct_target(const struct sockaddr_storage *sa, socklen_t len, char *host, size_t host_size,
                          int *port) {
        if (sa->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
                const struct sockaddr_in *in = (const void *)sa;
                uint32_t a = ntohl(in->sin_addr.s_addr);
                if ((a >> 24) == 127 || a == 0)
                        return false;
                inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)host_size);
                *port = ntohs(in->sin_port);
                return true;
        }
        if (sa->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
                const struct sockaddr_in6 *in6 = (const void *)sa;
                const struct in6_addr *a = &in6->sin6_addr;
                if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
                    (IN6_IS_ADDR_V4MAPPED(a) && (a->s6_addr[12] == 127 || !memcmp(a->s6_addr + 12, "\0\0\0\0", 4))))
                        return false;
                inet_ntop(AF_INET6, a, host, (socklen_t)host_size);
                *port = ntohs(in6->sin6_port);
                return true;
        }
        return false;
}

static void handle_connect(struct capture_exec *c, uint64_t id, pid_t pid, uint64_t addr_ptr, uint64_t addr_len) {
        struct sockaddr_storage sa = {0};
        char memp[64];
        snprintf(memp, sizeof memp, "/proc/%d/mem", (int)pid);
        _cleanup_close_ int memfd = open(memp, O_RDONLY | O_CLOEXEC);
        size_t len = addr_len < sizeof sa ? (size_t)addr_len : sizeof sa;
        size_t got = memfd >= 0 && addr_ptr ? mem_read(memfd, addr_ptr, &sa, len) : 0;
        char host[INET6_ADDRSTRLEN] = "";
        int port = 0;
        /* what we read is only trusted while the call is still pending */
        if (got < sizeof(sa_family_t) || !notif_valid(c, id) ||
            !direct_target(&sa, (socklen_t)got, host, sizeof host, &port)) {
                respond(c, id, 0);
                return;
        }
        respond(c, id, -ENETUNREACH);
        metric_add(&metric_direct_connects, 1);
        if (c->n_direct++ >= CAPTURE_DIRECT_EVENTS_MAX)
                return; /* counted in the stop log and the metric, not one event each */
        _cleanup_(json_decrefp) json_t *ev = json_pack(
                "{s:s,s:i,s:b,s:s,s:s,s:s,s:i}", "host", host, "port", port, "direct", 1, "decision", "deny", "rule",
                "platform:netns", "reason", "direct connection outside the egress proxy (the sandbox has no route)",
                "pid", (int)pid);
        if (ev)
                events_emit(c->ev, "egress", "platform", ev, NULL, false, false);
}

static void handle_notification(struct capture_exec *c) {
        memset(c->req, 0, c->sizes.seccomp_notif);
        if (ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_RECV, c->req) < 0) {
                if (errno != ENOENT && errno != EINTR)
                        log_ctx(LOG_WARN, LOG_KV("run", c->ev->run_id), "could not receive an exec notification: %m");
                return;
        }
        const struct seccomp_data *d = &c->req->data;
        uint64_t id = c->req->id;
        pid_t pid = (pid_t)c->req->pid;
        uint64_t path_ptr, argv_ptr;
        int dirfd = AT_FDCWD;
        const char *call = "execve";
        if (d->nr == __NR_execve) {
                path_ptr = d->args[0];
                argv_ptr = d->args[1];
        } else if (d->nr == __NR_execveat) {
                dirfd = (int)d->args[0];
                path_ptr = d->args[1];
                argv_ptr = d->args[2];
                call = "execveat";
        } else if (d->nr == __NR_connect) {
                handle_connect(c, id, pid, d->args[1], d->args[2]);
                return;
        } else {
                respond(c, id, 0);
                return;
        }
        if (c->skip_init_exec) {
                /* crun's exec of the pool's init (pool.h): no sandbox code has
                 * run yet; the command the init execs next is the first exec */
                c->skip_init_exec = false;
                respond(c, id, 0);
                return;
        }

        char memp[64], procp[32];
        snprintf(memp, sizeof memp, "/proc/%d/mem", (int)pid);
        snprintf(procp, sizeof procp, "/proc/%d", (int)pid);
        _cleanup_close_ int memfd = open(memp, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int procdir = open(procp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        /* the pid may have been reused between RECV and open: only trust the
         * fds if the notification is still pending (the task is still blocked) */
        if (memfd < 0 || procdir < 0 || !notif_valid(c, id)) {
                if ((memfd < 0 || procdir < 0) && notif_valid(c, id)) {
                        metric_add(&metric_exec_errors, 1);
                        respond(c, id, -EPERM);
                }
                return;
        }
        char path[PATH_MAX + 1];
        bool path_cut, argv_cut = false;
        ssize_t plen = mem_read_str(memfd, path_ptr, path, PATH_MAX, &path_cut);
        _cleanup_(json_decrefp) json_t *argv = plen >= 0 ? read_argv(memfd, argv_ptr, &argv_cut) : NULL;
        if (!argv) {
                /* the kernel would fault the same way (or it is ENAMETOOLONG):
                 * refusing keeps every started program reported */
                metric_add(&metric_exec_errors, 1);
                respond(c, id, path_cut ? -ENAMETOOLONG : -EFAULT);
                return;
        }
        if (path_cut) {
                respond(c, id, -ENAMETOOLONG);
                return;
        }
        char cwdp[64], cwd[PATH_MAX + 1];
        snprintf(cwdp, sizeof cwdp, "/proc/%d/cwd", (int)pid);
        ssize_t cl = readlink(cwdp, cwd, PATH_MAX);
        cwd[cl > 0 ? cl : 0] = 0;
        long ppid, nspid;
        read_status(pid, &ppid, &nspid);
        unsigned char auxv_before[AUXV_MAX];
        ssize_t auxv_len = read_auxv(procdir, auxv_before, sizeof auxv_before);
        if (!notif_valid(c, id))
                return; /* gone: what we read may belong to another process */

        if (!c->first_seen) {
                /* the sandbox's mounts exist and its command has not run yet */
                c->first_seen = true;
                pthread_mutex_lock(&c->lock);
                capture_exec_first_fn fn = c->on_first;
                void *ud = c->on_first_userdata;
                pthread_mutex_unlock(&c->lock);
                int fr = fn ? fn(ud, pid) : 0;
                if (fr < 0) {
                        log_ctx(LOG_ERROR, LOG_KV("run", c->ev->run_id), "sandbox set-up at its first exec failed: %s",
                                strerror(-fr));
                        respond(c, id, -EPERM);
                        mark_first(c);
                        return;
                }
        }
        int refuse = exec_target_errno(pid, cwd, dirfd, path);
        if (refuse < 0) {
                c->n_refused++;
                metric_add(&metric_exec_refused, 1);
                respond(c, id, refuse);
                return;
        }

        _cleanup_free_ char *exe = NULL;
        if (path[0] == '/')
                exe = strdup(path);
        else if (dirfd == AT_FDCWD)
                (void)!asprintf(&exe, "%s/%s", cwd, path);
        else {
                /* fexecve() and friends: name the file behind the descriptor */
                char fdp[64], target[PATH_MAX + 1];
                snprintf(fdp, sizeof fdp, "/proc/%d/fd/%d", (int)pid, dirfd);
                ssize_t tl = readlink(fdp, target, PATH_MAX);
                target[tl > 0 ? tl : 0] = 0;
                (void)!asprintf(&exe, "%s%s%s", target, path[0] ? "/" : "", path);
        }
        _cleanup_(json_decrefp) json_t *ev = json_pack(
                "{s:i,s:I,s:I,s:O,s:o,s:o,s:o}", "pid", (int)pid, "ppid", (json_int_t)ppid,
                "sandbox_pid", (json_int_t)nspid, "argv", argv,
                "cwd", capture_json_string(cwd, strlen(cwd)),
                "path", capture_json_string(path, (size_t)plen),
                "exe", capture_json_string(exe ? exe : path, strlen(exe ? exe : path)));
        if (ev) {
                if (argv_cut)
                        json_object_set_new(ev, "argv_truncated", json_true());
                if (strcmp(call, "execve"))
                        json_object_set_new(ev, "syscall", json_string(call));
                if (dirfd != AT_FDCWD)
                        json_object_set_new(ev, "dirfd", json_integer(dirfd));
        }
        struct stat checked = {0};
        if (c->policy && ev) {
                int v = exec_decide(c, id, pid, procdir, cwd, dirfd, path, argv, ev, auxv_before, auxv_len,
                                    &checked);
                if (v == 1)
                        return; /* held: answered with the approval (held_exec_answered) */
                if (v < 0) {
                        respond(c, id, v);
                        emit_exec(c, ev); /* marked denied: the program did not start */
                        mark_first(c);
                        return;
                }
        }
        respond(c, id, 0);
        /* what the kernel actually ran, seen after the exec (issue 9 point 4):
         * path, argv and a symlink in between are the caller's word */
        _cleanup_free_ char *confirmed = auxv_len > 0 ? confirm_exe(procdir, auxv_before, auxv_len, c->workspace)
                                                      : NULL;
        if (ev) {
                if (confirmed)
                        json_object_set_new(ev, "exe_confirmed", capture_json_string(confirmed, strlen(confirmed)));
                else
                        metric_add(&metric_exec_unconfirmed, 1);
                if (c->policy && confirmed)
                        exec_recheck(c, pid, procdir, argv, &checked, ev);
                emit_exec(c, ev);
        }
        mark_first(c);
}

/* Receives the notification fd crun sends with its state JSON. */
static void receive_fd(struct capture_exec *c) {
        _cleanup_free_ char *payload = malloc(PAYLOAD_MAX);
        union {
                char buf[CMSG_SPACE(sizeof(int) * 4)];
                struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = payload, .iov_len = PAYLOAD_MAX};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                             .msg_controllen = sizeof u.buf};
        ssize_t n = payload ? recvmsg(c->conn_fd, &msg, MSG_CMSG_CLOEXEC) : -1;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        for (struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfd; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                        if (c->notify_fd < 0)
                                c->notify_fd = fd;
                        else
                                close(fd);
                }
        }
        if (c->notify_fd >= 0)
                log_ctx(LOG_DEBUG, LOG_KV("run", c->ev->run_id), "exec capture attached");
        close(c->conn_fd);
        c->conn_fd = -1;
}

static void accept_conn(struct capture_exec *c) {
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return;
        struct ucred cred;
        socklen_t cl = sizeof cred;
        /* only crun, running as we do, hands over the fd */
        if (c->conn_fd >= 0 || c->notify_fd >= 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != geteuid()) {
                log_ctx(LOG_WARN, LOG_KV("run", c->ev->run_id), "refused a second connection to the exec capture socket");
                close(fd);
                return;
        }
        c->conn_fd = fd;
}

static void *capture_exec_thread(void *userdata) {
        struct capture_exec *c = userdata;
        bool stopping = false;
        for (;;) {
                struct pollfd p[4] = {
                        {.fd = c->stop_fd, .events = POLLIN},
                        {.fd = c->notify_fd, .events = POLLIN},
                        {.fd = c->conn_fd, .events = POLLIN},
                        {.fd = c->notify_fd < 0 && c->conn_fd < 0 ? c->listen_fd : -1, .events = POLLIN},
                };
                int r = poll(p, 4, stopping ? 0 : -1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (p[0].revents & POLLIN)
                        stopping = true;
                if (p[1].revents & POLLIN)
                        handle_notification(c);
                else if (p[1].revents & (POLLHUP | POLLERR)) {
                        /* every task using the filter is gone */
                        close(c->notify_fd);
                        c->notify_fd = -1;
                }
                if (p[2].revents)
                        receive_fd(c);
                if (p[3].revents & POLLIN)
                        accept_conn(c);
                if (stopping && !(p[1].revents & POLLIN))
                        break;
        }
        pthread_mutex_lock(&c->lock);
        c->done = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

static void capture_exec_free(struct capture_exec *c) {
        if (!c)
                return;
        if (c->listen_fd >= 0)
                close(c->listen_fd);
        if (c->sock_path)
                unlink(c->sock_path);
        if (c->conn_fd >= 0)
                close(c->conn_fd);
        if (c->notify_fd >= 0)
                close(c->notify_fd);
        if (c->stop_fd >= 0)
                close(c->stop_fd);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        free(c->sock_path);
        free(c->workspace);
        exec_identity_free(c->identity);
        free(c->req);
        free(c->resp);
        free(c);
}

int capture_exec_listen(const char *run_dir, struct err_detail *reterr) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if ((size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", run_dir, CAPTURE_EXEC_SOCKET) >=
            sizeof sa.sun_path)
                return err_set(reterr, -ENAMETOOLONG, "capture", "exec capture socket path %s/%s is too long",
                               run_dir, CAPTURE_EXEC_SOCKET);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return err_set(reterr, -errno, "capture", "could not set up exec capture: %m");
        unlink(sa.sun_path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(sa.sun_path, 0600) < 0 || listen(fd, 4) < 0)
                return err_set(reterr, -errno, "capture", "could not listen on %s: %m", sa.sun_path);
        return TAKE_FD(fd);
}

struct capture_exec *capture_exec_start(const char *run_dir, int listen_fd, bool pooled, struct run_events *ev,
                                        struct run_policy *policy, struct err_detail *reterr) {
        struct capture_exec *c = calloc(1, sizeof *c);
        if (!c) {
                if (listen_fd >= 0)
                        close(listen_fd);
                err_set(reterr, -ENOMEM, "capture", "out of memory");
                return NULL;
        }
        c->ev = ev;
        c->skip_init_exec = pooled;
        c->listen_fd = listen_fd;
        c->conn_fd = c->notify_fd = c->stop_fd = -1;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        /* only a command rule that can ask or deny makes exec decisions (and
         * pays for program identity): other runs keep the plain capture */
        if (policy_engine_has(run_policy_engine(policy), "command", POLICY_ASK)) {
                c->policy = policy;
                c->identity = exec_identity_new();
                if (!c->identity) {
                        err_set(reterr, -ENOMEM, "capture", "out of memory");
                        goto fail;
                }
        }
        if (asprintf(&c->workspace, "%s/workspace", run_dir) < 0)
                c->workspace = NULL;
        if (!c->workspace || asprintf(&c->sock_path, "%s/%s", run_dir, CAPTURE_EXEC_SOCKET) < 0) {
                c->sock_path = NULL;
                err_set(reterr, -ENOMEM, "capture", "out of memory");
                goto fail;
        }
        if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &c->sizes) < 0) {
                err_set(reterr, -errno, "capture", "seccomp user notification unavailable: %m");
                goto fail;
        }
        /* the kernel's structs may be larger than our headers' */
        c->req = calloc(1, c->sizes.seccomp_notif > sizeof *c->req ? c->sizes.seccomp_notif : sizeof *c->req);
        c->resp = calloc(1, c->sizes.seccomp_notif_resp > sizeof *c->resp ? c->sizes.seccomp_notif_resp
                                                                           : sizeof *c->resp);
        c->sizes.seccomp_notif = c->sizes.seccomp_notif > sizeof *c->req ? c->sizes.seccomp_notif : sizeof *c->req;
        c->sizes.seccomp_notif_resp = c->sizes.seccomp_notif_resp > sizeof *c->resp ? c->sizes.seccomp_notif_resp
                                                                                     : sizeof *c->resp;
        c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!c->req || !c->resp || c->stop_fd < 0) {
                err_set(reterr, -errno, "capture", "could not set up exec capture: %m");
                goto fail;
        }
        if (c->listen_fd < 0 && (c->listen_fd = capture_exec_listen(run_dir, reterr)) < 0)
                goto fail;
        int r = pthread_create(&c->thread, NULL, capture_exec_thread, c);
        if (r != 0) {
                err_set(reterr, -r, "capture", "could not start the exec capture thread: %s", strerror(r));
                goto fail;
        }
        c->thread_started = true;
        return c;
fail:
        capture_exec_free(c);
        return NULL;
}

void capture_exec_on_first(struct capture_exec *c, capture_exec_first_fn fn, void *userdata) {
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->on_first = fn;
        c->on_first_userdata = userdata;
        pthread_mutex_unlock(&c->lock);
}

bool capture_exec_wait_first(struct capture_exec *c, int timeout_ms) {
        if (!c)
                return false;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&c->lock);
        while (!c->first_emitted && !c->done)
                if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
                        break;
        bool ok = c->first_emitted;
        pthread_mutex_unlock(&c->lock);
        return ok;
}

struct capture_exec *capture_exec_stop(struct capture_exec *c) {
        if (!c)
                return NULL;
        if (c->thread_started) {
                uint64_t one = 1;
                (void)!write(c->stop_fd, &one, sizeof one);
                pthread_join(c->thread, NULL);
        }
        char n[32], refused[32], direct[32];
        snprintf(n, sizeof n, "%llu", (unsigned long long)c->n_events);
        snprintf(refused, sizeof refused, "%llu", (unsigned long long)c->n_refused);
        snprintf(direct, sizeof direct, "%llu", (unsigned long long)c->n_direct);
        log_ctx(LOG_DEBUG, LOG_KV("run", c->ev->run_id, "exec_events", n, "refused", refused, "direct_connects", direct),
                "exec capture stopped");
        capture_exec_free(c);
        return NULL;
}
