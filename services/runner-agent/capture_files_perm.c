#include "capture_files_perm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "events.h"
#include "run_policy.h"

#define READ_BUF 8192
#define PATHS_MAX 4096 /* distinct decided paths remembered; past it, decided again each time */

enum path_state { PATH_PENDING, PATH_APPROVED, PATH_DENIED };

struct waiter {
        int fd;
        struct waiter *next;
};

struct path_entry {
        struct capture_files_perm *c;
        char *path;
        enum path_state state;
        unsigned n_events;
        struct waiter *waiters; /* held opens (PATH_PENDING) */
        struct path_entry *next;
};

struct capture_files_perm {
        struct run_events *ev;
        struct run_policy *policy;
        char *ws;
        size_t ws_len;
        dev_t ws_dev;
        unsigned n_mounts;      /* the sandbox's other mounts marked (capture_files_perm_attach) */
        int fan_fd, stop_fd, mount_fd;
        pid_t self;
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock; /* paths, fan_fd writes from the approvals thread */
        struct path_entry *paths;
        size_t n_paths;
        unsigned long long n_opens, n_denied, n_held, n_quiet;
};

static void answer_fd(struct capture_files_perm *c, int fd, bool allow) {
        struct fanotify_response r = {.fd = fd, .response = allow ? FAN_ALLOW : FAN_DENY};
        if (write(c->fan_fd, &r, sizeof r) != (ssize_t)sizeof r)
                log_ctx(LOG_WARN, LOG_KV("run", c->ev->run_id), "could not answer a file permission event: %m");
        close(fd);
}

/* The path of the event's file relative to the workspace ("" for the
 * workspace itself), through a handle reopened on our own mount of the
 * workspace: the sandbox's view of the path is not used. NULL if it cannot
 * be told (deleted, or not under the workspace). */
static char *event_path(struct capture_files_perm *c, int fd) {
        struct {
                struct file_handle fh;
                unsigned char buf[MAX_HANDLE_SZ];
        } h = {.fh.handle_bytes = MAX_HANDLE_SZ};
        int mnt_id;
        if (name_to_handle_at(fd, "", &h.fh, &mnt_id, AT_EMPTY_PATH) < 0)
                return NULL;
        _cleanup_close_ int ours = open_by_handle_at(c->mount_fd, &h.fh, O_PATH | O_CLOEXEC);
        if (ours < 0)
                return NULL;
        char link[64], target[PATH_MAX + 1];
        snprintf(link, sizeof link, "/proc/self/fd/%d", ours);
        ssize_t n = readlink(link, target, PATH_MAX);
        if (n <= 0)
                return NULL;
        target[n] = 0;
        if (strncmp(target, c->ws, c->ws_len) || (target[c->ws_len] != '/' && target[c->ws_len]))
                return NULL;
        return strdup(target[c->ws_len] ? target + c->ws_len + 1 : "");
}

/* A file of the sandbox's other mounts (root, /tmp, ...) as the sandbox
 * names it: the kernel renders a file of another mount namespace from that
 * namespace's root. NULL for a deleted file. */
static char *sandbox_path(int fd) {
        char link[64], target[PATH_MAX + 1];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, PATH_MAX);
        if (n <= 0 || target[0] != '/')
                return NULL;
        target[n] = 0;
        if (n > 10 && !strcmp(target + n - 10, " (deleted)"))
                return NULL;
        return strdup(target);
}

/* Under c->lock. */
static struct path_entry *path_find(struct capture_files_perm *c, const char *path) {
        for (struct path_entry *e = c->paths; e; e = e->next)
                if (!strcmp(e->path, path))
                        return e;
        return NULL;
}

static struct path_entry *path_add(struct capture_files_perm *c, const char *path, enum path_state st) {
        if (c->n_paths >= PATHS_MAX)
                return NULL;
        struct path_entry *e = calloc(1, sizeof *e);
        if (!e || !(e->path = strdup(path))) {
                free(e);
                return NULL;
        }
        e->c = c;
        e->state = st;
        e->next = c->paths;
        c->paths = e;
        c->n_paths++;
        return e;
}

/* run_policy_answer_fn: the person, the deadline or the run's end decided the
 * path; every open waiting on it is answered and later ones follow it. */
static void path_answered(void *userdata, bool approved, const char *approval_id, const char *by) {
        struct path_entry *e = userdata;
        struct capture_files_perm *c = e->c;
        (void)approval_id;
        (void)by;
        pthread_mutex_lock(&c->lock);
        e->state = approved ? PATH_APPROVED : PATH_DENIED;
        struct waiter *w = TAKE_PTR(e->waiters);
        while (w) {
                struct waiter *next = w->next;
                answer_fd(c, w->fd, approved);
                free(w);
                w = next;
        }
        pthread_mutex_unlock(&c->lock);
}

/* One permission event: answered now, or held on its path. */
static void handle_event(struct capture_files_perm *c, const struct fanotify_event_metadata *m) {
        c->n_opens++;
        if (m->pid == c->self) {
                answer_fd(c, m->fd, true); /* the runner-agent's own open is never held */
                return;
        }
        struct stat st;
        _cleanup_free_ char *path = fstat(m->fd, &st) < 0 ? NULL
                                    : st.st_dev == c->ws_dev ? event_path(c, m->fd) : sandbox_path(m->fd);
        if (!path) {
                answer_fd(c, m->fd, true); /* not a workspace file we can name: no path rule is about it */
                return;
        }
        pthread_mutex_lock(&c->lock);
        struct path_entry *e = path_find(c, path);
        if (e && e->state == PATH_APPROVED) {
                pthread_mutex_unlock(&c->lock);
                answer_fd(c, m->fd, true); /* approved once for this path and run */
                return;
        }
        if (e && e->state == PATH_PENDING) {
                struct waiter *w = malloc(sizeof *w);
                if (!w) {
                        pthread_mutex_unlock(&c->lock);
                        answer_fd(c, m->fd, false);
                        return;
                }
                *w = (struct waiter){.fd = m->fd, .next = e->waiters};
                e->waiters = w;
                c->n_held++;
                pthread_mutex_unlock(&c->lock);
                return;
        }
        pthread_mutex_unlock(&c->lock);

        struct policy_request req = {.path = path};
        _cleanup_(json_decrefp) json_t *extra = json_pack("{s:i}", "pid", (int)m->pid);
        struct policy_decision d;
        bool quiet = e && e->n_events >= POLICY_EVENTS_PER_PATH; /* n_events: this thread's only */
        if (quiet) {
                d = policy_decide(run_policy_engine(c->policy), &req);
                c->n_quiet++;
        } else
                d = run_policy_decide(c->policy, "file", &req, extra, false);
        if (d.action == POLICY_ALLOW) {
                answer_fd(c, m->fd, true);
                return;
        }
        pthread_mutex_lock(&c->lock);
        if (!e)
                e = path_add(c, path, d.action == POLICY_DENY ? PATH_DENIED : PATH_PENDING);
        if (e)
                e->n_events++;
        if (d.action == POLICY_DENY || (e && e->state == PATH_DENIED)) {
                c->n_denied++;
                pthread_mutex_unlock(&c->lock);
                answer_fd(c, m->fd, false);
                return;
        }
        if (!e) {
                pthread_mutex_unlock(&c->lock);
                answer_fd(c, m->fd, false); /* cannot hold it: fail closed */
                return;
        }
        struct waiter *w = malloc(sizeof *w);
        if (w) {
                *w = (struct waiter){.fd = m->fd, .next = e->waiters};
                e->waiters = w;
                c->n_held++;
        }
        pthread_mutex_unlock(&c->lock);
        if (!w) {
                answer_fd(c, m->fd, false);
                return;
        }
        /* the approvals thread answers (path_answered), never this one */
        char approval_id[UUID_STR_LEN];
        if (run_policy_ask(c->policy, "file", &req, d.rule, extra, path_answered, e, approval_id) < 0)
                path_answered(e, false, "", "error");
}

static void *perm_thread(void *userdata) {
        struct capture_files_perm *c = userdata;
        _cleanup_free_ char *buf = malloc(READ_BUF);
        if (!buf)
                return NULL;
        for (;;) {
                struct pollfd p[2] = {{.fd = c->stop_fd, .events = POLLIN}, {.fd = c->fan_fd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[1].revents & POLLIN) {
                        ssize_t n = read(c->fan_fd, buf, READ_BUF);
                        for (const struct fanotify_event_metadata *m = (const void *)buf;
                             n > 0 && FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
                                if (m->vers != FANOTIFY_METADATA_VERSION || m->fd < 0)
                                        continue;
                                if (m->mask & FAN_OPEN_PERM)
                                        handle_event(c, m);
                                else
                                        close(m->fd);
                        }
                        continue;
                }
                if (p[0].revents & POLLIN)
                        break;
        }
        return NULL;
}

static void perm_free(struct capture_files_perm *c) {
        struct path_entry *e = c->paths;
        while (e) {
                struct path_entry *next = e->next;
                for (struct waiter *w = e->waiters, *wn; w; w = wn) {
                        wn = w->next;
                        answer_fd(c, w->fd, false); /* fail closed: nothing may be left waiting */
                        free(w);
                }
                free(e->path);
                free(e);
                e = next;
        }
        if (c->fan_fd >= 0)
                close(c->fan_fd);
        if (c->stop_fd >= 0)
                close(c->stop_fd);
        if (c->mount_fd >= 0)
                close(c->mount_fd);
        pthread_mutex_destroy(&c->lock);
        free(c->ws);
        free(c);
}

/* Filesystems whose files no path rule is about (kernel views, devices). */
static bool skipped_fstype(const char *t) {
        static const char *const skip[] = {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "devtmpfs",
                                           "securityfs", "debugfs", "tracefs", "bpf", "fusectl", "configfs", NULL};
        for (size_t i = 0; skip[i]; i++)
                if (!strcmp(t, skip[i]))
                        return true;
        return false;
}

int capture_files_perm_attach(void *userdata, pid_t pid) {
        struct capture_files_perm *c = userdata;
        if (!c)
                return 0;
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/mountinfo", (int)pid);
        _cleanup_fclose_ FILE *f = fopen(p, "re");
        if (!f)
                return -errno;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        int r = 0;
        unsigned n = 0;
        bool root = false;
        while (getline(&line, &cap, f) > 0) {
                /* id parent major:minor root mountpoint options [optional...] - fstype source ... */
                char mnt[PATH_MAX], fstype[64];
                const char *dash = strstr(line, " - ");
                if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
                    sscanf(dash + 3, "%63s", fstype) != 1)
                        continue;
                if (skipped_fstype(fstype) || strchr(mnt, '\\'))
                        continue; /* no rule is about them; escaped names are not ours */
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "/proc/%d/root%s", (int)pid, mnt) < 0)
                        return -ENOMEM;
                struct stat st;
                if (stat(path, &st) < 0 || st.st_dev == c->ws_dev)
                        continue; /* the workspace has its filesystem mark */
                /* a mount mark: opens through the sandbox's own mount only,
                 * never the node's other users of the same filesystem */
                if (fanotify_mark(c->fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_PERM, AT_FDCWD, path) < 0) {
                        r = -errno;
                        log_ctx(LOG_ERROR, LOG_KV("run", c->ev->run_id, "mount", mnt),
                                "cannot mark a sandbox mount for permission events: %m");
                        break;
                }
                if (!strcmp(mnt, "/"))
                        root = true;
                n++;
        }
        c->n_mounts = n;
        if (r == 0 && !root)
                r = -ENOENT; /* the root must be covered: fail closed */
        return r;
}

int capture_files_perm_start(const char *workspace, struct run_events *ev, struct run_policy *policy,
                             struct capture_files_perm **ret, struct err_detail *reterr) {
        *ret = NULL;
        if (!policy_engine_has(run_policy_engine(policy), "path", POLICY_ASK))
                return 0;
        struct capture_files_perm *c = calloc(1, sizeof *c);
        if (!c)
                return err_set(reterr, -ENOMEM, "capture", "out of memory");
        c->ev = ev;
        c->policy = policy;
        c->self = getpid();
        c->fan_fd = c->stop_fd = c->mount_fd = -1;
        pthread_mutex_init(&c->lock, NULL);
        int r;
        /* before the first goto: fail's scope holds it (clang refuses the jump) */
        _cleanup_free_ char *parent = NULL;
        c->ws = realpath(workspace, NULL);
        if (!c->ws) {
                r = err_set(reterr, -errno, "capture", "cannot resolve workspace %s: %m", workspace);
                goto fail;
        }
        c->ws_len = strlen(c->ws);
        c->mount_fd = open(c->ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st_ws, st_parent;
        if (c->mount_fd < 0 || asprintf(&parent, "%s/..", c->ws) < 0 || fstat(c->mount_fd, &st_ws) < 0 ||
            stat(parent, &st_parent) < 0) {
                r = err_set(reterr, -errno, "capture", "cannot open workspace %s: %m", c->ws);
                goto fail;
        }
        c->ws_dev = st_ws.st_dev;
        /* a filesystem mark holds every open of that filesystem: only the
         * run's own tmpfs, never a filesystem the node shares */
        if (st_ws.st_dev == st_parent.st_dev) {
                r = err_set(reterr, -EXDEV, "capture",
                            "path rules need the workspace %s on its own filesystem", c->ws);
                goto fail;
        }
        c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        c->fan_fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_CLOEXEC | O_LARGEFILE);
        if (c->stop_fd < 0 || c->fan_fd < 0) {
                r = err_set(reterr, -errno, "capture", "fanotify permission events unavailable: %m");
                goto fail;
        }
        if (fanotify_mark(c->fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_PERM, AT_FDCWD, c->ws) < 0) {
                r = err_set(reterr, -errno, "capture", "cannot mark the filesystem of %s for permission events: %m",
                            c->ws);
                goto fail;
        }
        r = pthread_create(&c->thread, NULL, perm_thread, c);
        if (r != 0) {
                r = err_set(reterr, -r, "capture", "could not start the file permission thread: %s", strerror(r));
                goto fail;
        }
        c->thread_started = true;
        *ret = c;
        return 0;
fail:
        perm_free(c);
        return r;
}

struct capture_files_perm *capture_files_perm_stop(struct capture_files_perm *c) {
        if (!c)
                return NULL;
        if (c->thread_started) {
                uint64_t one = 1;
                (void)!write(c->stop_fd, &one, sizeof one);
                pthread_join(c->thread, NULL);
        }
        char opens[32], denied[32], held[32], quiet[32], mounts[16];
        snprintf(mounts, sizeof mounts, "%u", c->n_mounts);
        snprintf(opens, sizeof opens, "%llu", c->n_opens);
        snprintf(denied, sizeof denied, "%llu", c->n_denied);
        snprintf(held, sizeof held, "%llu", c->n_held);
        snprintf(quiet, sizeof quiet, "%llu", c->n_quiet);
        log_ctx(LOG_DEBUG,
                LOG_KV("run", c->ev->run_id, "opens", opens, "denied", denied, "held", held, "unreported", quiet,
                       "mounts", mounts),
                "file permission decisions stopped");
        perm_free(c);
        return NULL;
}
