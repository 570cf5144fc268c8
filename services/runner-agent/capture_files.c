#include "capture_files.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture_exec.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "events.h"
#include "run_limits.h"

#define CACHE_SLOTS 4096      /* directory handle -> workspace path, direct-mapped */
#define HANDLE_MAX 128        /* MAX_HANDLE_SZ */
#define READ_BUF (64 * 1024)

static struct metric metric_file_events = {
        .name = "paddock_runner_capture_file_events_total",
        .help = "file_access events captured by fanotify", .type = METRIC_COUNTER};
static struct metric metric_file_dropped = {
        .name = "paddock_runner_capture_file_dropped_total",
        .help = "file accesses past a run's file event budget, counted but not sent one by one",
        .type = METRIC_COUNTER};
static struct metric metric_file_overflows = {
        .name = "paddock_runner_capture_file_overflows_total",
        .help = "fanotify queue overflows (reported as file_access overflow events)", .type = METRIC_COUNTER};
static struct metric metric_file_unresolved = {
        .name = "paddock_runner_capture_file_unresolved_total",
        .help = "file events whose directory was gone before it could be resolved", .type = METRIC_COUNTER};

void capture_files_metrics_register(void) {
        metrics_register(&metric_file_events);
        metrics_register(&metric_file_overflows);
        metrics_register(&metric_file_dropped);
        metrics_register(&metric_file_unresolved);
}

struct dir_entry {
        bool used;
        bool inside;               /* in the workspace; rel is then its relative path */
        int type;
        unsigned len;
        unsigned char handle[HANDLE_MAX];
        char *rel;
};

/* The coalescing window (docs/CONTRACTS.md, platform capture): one entry per
 * (path, mode, dir) accessed since the window opened, in the order of each
 * one's first access. PEND_MAX bounds the memory a run can make us hold; a
 * full window is flushed early. */
#define PEND_MAX 4096
#define PEND_SLOTS (2 * PEND_MAX) /* open addressing over paths, load <= 1/2 */
#define PEND_PIDS 8               /* distinct pids listed per entry */

struct pend_entry {
        const char *mode;
        bool dir;
        bool unresolved;
        unsigned path_slot;        /* its path in pend_path */
        uint64_t count;
        int64_t first_us, last_us; /* wall clock */
        unsigned n_pids;
        bool more_pids;
        int pids[PEND_PIDS];
};

struct pend_path {
        char *path;                /* NULL: free slot */
        unsigned latest;           /* index of the path's latest entry */
        unsigned modes;            /* bit per (mode, dir) pending for it */
};

struct window {
        unsigned n;
        int64_t opened_mono;       /* first access of the window */
        struct pend_entry entries[PEND_MAX];
        struct pend_path paths[PEND_SLOTS];
};

struct capture_files {
        struct run_events *ev;
        char *ws;                  /* real path of the workspace on the host */
        size_t ws_len;
        bool own_fs;               /* the workspace is the root of its filesystem */
        int fan_fd, mount_fd, stop_fd;
        pid_t self;
        pthread_t thread;
        bool thread_started;
        struct dir_entry *cache;
        struct window *win;
        int64_t window_us;         /* PADDOCK_RUN_FILE_COALESCE_MS */
        uint64_t n_events;
        uint64_t max_events;       /* per run; beyond it accesses are only counted */
        uint64_t n_dropped;
};

static void cache_clear(struct capture_files *c) {
        for (size_t i = 0; i < CACHE_SLOTS; i++) {
                free(c->cache[i].rel);
                c->cache[i] = (struct dir_entry){0};
        }
}

static size_t handle_hash(int type, const unsigned char *h, unsigned len) {
        uint64_t x = 1469598103934665603ULL ^ (uint64_t)(unsigned)type;
        for (unsigned i = 0; i < len; i++)
                x = (x ^ h[i]) * 1099511628211ULL;
        return (size_t)(x % CACHE_SLOTS);
}

/* Resolves a directory handle to its path relative to the workspace.
 * Returns 1 (inside, *rel borrowed from the cache), 0 (outside) or -ESTALE
 * when the directory no longer exists and was never seen. */
static int resolve_dir(struct capture_files *c, struct file_handle *fh, const char **rel) {
        if (fh->handle_bytes > HANDLE_MAX)
                return -EINVAL;
        size_t slot = handle_hash(fh->handle_type, fh->f_handle, fh->handle_bytes);
        struct dir_entry *e = &c->cache[slot];
        if (e->used && e->type == fh->handle_type && e->len == fh->handle_bytes &&
            !memcmp(e->handle, fh->f_handle, fh->handle_bytes)) {
                *rel = e->rel;
                return e->inside;
        }
        _cleanup_close_ int fd = open_by_handle_at(c->mount_fd, fh, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return -ESTALE;
        char link[64], path[PATH_MAX + 1];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, PATH_MAX);
        if (n <= 0)
                return -ESTALE;
        path[n] = 0;
        bool inside = false;
        const char *r = NULL;
        if (!strncmp(path, c->ws, c->ws_len) && (path[c->ws_len] == 0 || path[c->ws_len] == '/')) {
                inside = true;
                r = path[c->ws_len] ? path + c->ws_len + 1 : "";
        }
        free(e->rel);
        *e = (struct dir_entry){.used = true, .inside = inside, .type = fh->handle_type,
                                .len = fh->handle_bytes, .rel = inside ? strdup(r) : NULL};
        memcpy(e->handle, fh->f_handle, fh->handle_bytes);
        if (inside && !e->rel) {
                e->used = false;
                return -ENOMEM;
        }
        *rel = e->rel;
        return inside;
}

/* Sends one file_access event standing for `accesses` accesses. */
static void emit(struct capture_files *c, json_t *d, uint64_t accesses) {
        if (!d)
                return;
        if (c->n_events >= c->max_events) {
                /* a run creating 100k files would otherwise queue as many events
                 * as the node's bus can carry, delaying everyone's (heartbeats
                 * included); past the budget they are counted, and the count is
                 * reported at the end (issue 9 point 4) */
                c->n_dropped += accesses;
                metric_add(&metric_file_dropped, accesses);
                json_decref(d);
                return;
        }
        if (events_emit(c->ev, "file_access", "platform", d, NULL, false, false) >= 0) {
                c->n_events++;
                metric_add(&metric_file_events, 1);
        }
        json_decref(d);
}

static unsigned mode_bit(const char *mode, bool dir) {
        static const char *const modes[] = {"create", "write", "read", "delete"};
        for (unsigned i = 0; i < ELEMENTSOF(modes); i++)
                if (!strcmp(mode, modes[i]))
                        return 1u << (i * 2 + dir);
        return 0;
}

static json_t *entry_json(const struct pend_entry *e, const char *path) {
        json_t *d = json_pack("{s:o,s:s,s:i}", "path", capture_json_string(path, strlen(path)), "mode", e->mode,
                              "pid", e->pids[0]);
        if (!d)
                return NULL;
        if (e->dir)
                json_object_set_new(d, "dir", json_true());
        if (e->unresolved)
                json_object_set_new(d, "dir_unresolved", json_true());
        if (e->count > 1) {
                char t[40];
                json_object_set_new(d, "count", json_integer((json_int_t)e->count));
                json_object_set_new(d, "first_at", json_string(time_format_rfc3339(e->first_us, t, sizeof t)));
                json_object_set_new(d, "last_at", json_string(time_format_rfc3339(e->last_us, t, sizeof t)));
        }
        if (e->n_pids > 1 || e->more_pids) {
                json_t *pids = json_array();
                for (unsigned i = 0; pids && i < e->n_pids; i++)
                        json_array_append_new(pids, json_integer(e->pids[i]));
                json_object_set_new(d, "pids", pids);
                if (e->more_pids)
                        json_object_set_new(d, "pids_more", json_true());
        }
        return d;
}

/* Empties the window without sending it (each entry's path slot only, not
 * the whole table: a window can be closed after every access). */
static void flush_paths(struct window *w) {
        for (unsigned i = 0; i < w->n; i++) {
                struct pend_path *pp = &w->paths[w->entries[i].path_slot];
                free(pp->path);
                *pp = (struct pend_path){0};
        }
        w->n = 0;
}

/* Emits the window's entries in the order of their first access and empties it. */
static void flush_pending(struct capture_files *c) {
        struct window *w = c->win;
        for (unsigned i = 0; i < w->n; i++) {
                struct pend_entry *e = &w->entries[i];
                emit(c, entry_json(e, w->paths[e->path_slot].path), e->count);
        }
        flush_paths(w);
}

static size_t path_hash(const char *s) {
        uint64_t x = 1469598103934665603ULL;
        for (; *s; s++)
                x = (x ^ (unsigned char)*s) * 1099511628211ULL;
        return (size_t)(x % PEND_SLOTS);
}

/* Counts one access in the window. The same (path, mode, dir) again while it
 * is the path's latest access only adds to its count; an access that would
 * reorder the path's history (write, read, write) closes the window first, so
 * the order of the events of one path is the order of its accesses. Takes path. */
static void add_access(struct capture_files *c, const char *mode, int pid, bool dir, bool unresolved, char *path) {
        struct window *w = c->win;
        unsigned bit = mode_bit(mode, dir);
        int64_t now = time_now_us();
        for (int pass = 0; pass < 2; pass++) {
                size_t slot = path_hash(path);
                while (w->paths[slot].path && strcmp(w->paths[slot].path, path))
                        slot = (slot + 1) % PEND_SLOTS;
                struct pend_path *pp = &w->paths[slot];
                if (pp->path) {
                        struct pend_entry *e = &w->entries[pp->latest];
                        if (e->mode == mode && e->dir == dir) {
                                e->count++;
                                e->last_us = now;
                                e->unresolved |= unresolved;
                                bool seen = false;
                                for (unsigned i = 0; i < e->n_pids && !seen; i++)
                                        seen = e->pids[i] == pid;
                                if (!seen && e->n_pids < PEND_PIDS)
                                        e->pids[e->n_pids++] = pid;
                                else if (!seen)
                                        e->more_pids = true;
                                free(path);
                                return;
                        }
                        if (pp->modes & bit) {
                                flush_pending(c); /* would reorder: new window */
                                continue;
                        }
                }
                if (w->n == PEND_MAX) {
                        flush_pending(c);
                        continue;
                }
                if (w->n == 0)
                        w->opened_mono = time_mono_us();
                if (!pp->path)
                        pp->path = TAKE_PTR(path);
                else
                        free(path);
                pp->latest = w->n;
                pp->modes |= bit;
                w->entries[w->n++] = (struct pend_entry){.mode = mode, .dir = dir, .unresolved = unresolved,
                                                          .path_slot = (unsigned)slot, .count = 1,
                                                          .first_us = now, .last_us = now, .n_pids = 1,
                                                          .pids = {pid}};
                return;
        }
        free(path); /* not reached: a flushed window always has room */
}

/* rel "/" name (no "/" when either is empty); NULL on out-of-memory. Two
 * copies, not asprintf: its format parsing was 8% of the capture thread at
 * 10k file events/s (issue 10 §4). */
static char *join(const char *rel, const char *name) {
        size_t rl = strlen(rel), nl = strlen(name), sep = rl && nl;
        char *s = malloc(rl + sep + nl + 1);
        if (!s)
                return NULL;
        memcpy(s, rel, rl);
        s[rl] = '/';
        memcpy(s + rl + sep, name, nl + 1);
        return s;
}

/* The path of one DFID_NAME record: 1 inside (*out owned by the caller), 0
 * outside, <0 unresolved (*out is then the bare name). */
static int record_path(struct capture_files *c, const struct fanotify_event_info_fid *fid, char **out) {
        struct file_handle *fh = (struct file_handle *)fid->handle;
        const char *name = (const char *)(fh->f_handle + fh->handle_bytes);
        const char *rel = NULL;
        int r = resolve_dir(c, fh, &rel);
        *out = NULL;
        if (r < 0) {
                *out = strdup(name);
                return r;
        }
        if (r == 0)
                return 0;
        *out = join(rel, name);
        return *out ? 1 : -ENOMEM;
}

static void handle_event(struct capture_files *c, const struct fanotify_event_metadata *m) {
        if (m->mask & FAN_Q_OVERFLOW) {
                flush_pending(c);
                metric_add(&metric_file_overflows, 1);
                log_ctx(LOG_WARN, LOG_KV("run", c->ev->run_id), "file capture queue overflowed");
                emit(c, json_pack("{s:b}", "overflow", 1), 1);
                return;
        }
        if (m->fd >= 0)
                close(m->fd);
        if (m->pid == c->self)
                return; /* the runner-agent's own work in the workspace */
        bool dir = m->mask & FAN_ONDIR;
        if (dir && !(m->mask & (FAN_CREATE | FAN_DELETE | FAN_RENAME)))
                return; /* directory listings */

        const struct fanotify_event_info_fid *main_rec = NULL, *old_rec = NULL, *new_rec = NULL;
        for (size_t off = m->metadata_len; off + sizeof(struct fanotify_event_info_header) <= m->event_len;) {
                const struct fanotify_event_info_header *h = (const void *)((const char *)m + off);
                if (h->len == 0 || off + h->len > m->event_len)
                        break;
                if (h->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME)
                        main_rec = (const void *)h;
                else if (h->info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME)
                        old_rec = (const void *)h;
                else if (h->info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME)
                        new_rec = (const void *)h;
                off += h->len;
        }

        if (m->mask & FAN_RENAME) {
                _cleanup_free_ char *from = NULL, *to = NULL;
                int rf = old_rec ? record_path(c, old_rec, &from) : -EINVAL;
                int rt = new_rec ? record_path(c, new_rec, &to) : -EINVAL;
                if (rf == 0 && rt == 0)
                        return;
                if ((rf < 0 || rt < 0) && !c->own_fs && rf != 1 && rt != 1) {
                        metric_add(&metric_file_unresolved, 1);
                        return;
                }
                flush_pending(c);
                json_t *d = json_pack("{s:o,s:o,s:s,s:i}", "path",
                                      rf != 0 && from ? capture_json_string(from, strlen(from)) : json_null(),
                                      "to", rt != 0 && to ? capture_json_string(to, strlen(to)) : json_null(),
                                      "mode", "rename", "pid", (int)m->pid);
                if (d && dir)
                        json_object_set_new(d, "dir", json_true());
                if (d && (rf < 0 || rt < 0))
                        json_object_set_new(d, "dir_unresolved", json_true());
                emit(c, d, 1);
                if (dir)
                        cache_clear(c); /* cached paths below it moved */
                return;
        }
        if (!main_rec)
                return;
        char *path = NULL;
        int r = record_path(c, main_rec, &path);
        if (r == 0 || (r < 0 && !c->own_fs)) {
                /* outside; or a directory gone before we looked, which on a
                 * shared filesystem cannot be told apart from the host's */
                if (r < 0)
                        metric_add(&metric_file_unresolved, 1);
                free(path);
                return;
        }
        if (!path)
                return;
        /* one event can carry several merged actions: report them in the
         * order they can happen to one file */
        static const struct {
                uint64_t bit;
                const char *mode;
        } order[] = {{FAN_CREATE, "create"}, {FAN_CLOSE_WRITE, "write"}, {FAN_CLOSE_NOWRITE, "read"},
                     {FAN_DELETE, "delete"}};
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                if (!(m->mask & order[i].bit))
                        continue;
                char *p = strdup(path);
                /* r < 0: only the name is known */
                if (p)
                        add_access(c, order[i].mode, (int)m->pid, dir, r < 0, p);
        }
        free(path);
        if (dir && (m->mask & FAN_DELETE))
                cache_clear(c);
}

/* Reads and handles what is queued; returns false when nothing was. Events
 * carrying names are only 4-byte aligned in the read buffer, so each is copied
 * to the 8-byte aligned scratch before its 64-bit mask is read. */
static bool drain_once(struct capture_files *c, char *buf, char *scratch) {
        ssize_t n = read(c->fan_fd, buf, READ_BUF);
        if (n <= 0)
                return false;
        for (size_t off = 0; off + FAN_EVENT_METADATA_LEN <= (size_t)n;) {
                struct fanotify_event_metadata head;
                memcpy(&head, buf + off, sizeof head);
                if (head.event_len < FAN_EVENT_METADATA_LEN || off + head.event_len > (size_t)n)
                        break;
                memcpy(scratch, buf + off, head.event_len);
                handle_event(c, (const struct fanotify_event_metadata *)(const void *)scratch);
                off += head.event_len;
        }
        return true;
}

static void *capture_files_thread(void *userdata) {
        struct capture_files *c = userdata;
        _cleanup_free_ char *buf = aligned_alloc(8, READ_BUF);
        _cleanup_free_ char *scratch = aligned_alloc(8, READ_BUF);
        if (!buf || !scratch) {
                log_ctx(LOG_ERROR, LOG_KV("run", c->ev->run_id), "file capture: out of memory");
                return NULL;
        }
        for (;;) {
                struct pollfd p[2] = {{.fd = c->stop_fd, .events = POLLIN}, {.fd = c->fan_fd, .events = POLLIN}};
                /* an access waits at most one window before it is sent */
                int wait_ms = -1;
                if (c->win->n) {
                        int64_t left = c->win->opened_mono + c->window_us - time_mono_us();
                        wait_ms = left > 0 ? (int)((left + 999) / 1000) : 0;
                }
                if (poll(p, 2, wait_ms) < 0 && errno != EINTR)
                        break;
                /* a sustained flood keeps the queue readable: the window is
                 * checked after every read, not only when the queue is empty */
                if (p[1].revents & POLLIN)
                        while (drain_once(c, buf, scratch))
                                if (c->win->n && time_mono_us() - c->win->opened_mono >= c->window_us)
                                        flush_pending(c);
                if (c->win->n && time_mono_us() - c->win->opened_mono >= c->window_us)
                        flush_pending(c);
                if (p[0].revents & POLLIN) {
                        while (drain_once(c, buf, scratch))
                                ;
                        break;
                }
        }
        flush_pending(c);
        return NULL;
}

static void capture_files_free(struct capture_files *c) {
        if (!c)
                return;
        if (c->fan_fd >= 0)
                close(c->fan_fd);
        if (c->mount_fd >= 0)
                close(c->mount_fd);
        if (c->stop_fd >= 0)
                close(c->stop_fd);
        if (c->cache) {
                cache_clear(c);
                free(c->cache);
        }
        if (c->win) {
                flush_paths(c->win);
                free(c->win);
        }
        free(c->ws);
        free(c);
}

struct capture_files *capture_files_start(const char *workspace, struct run_events *ev, uint64_t max_events,
                                          uint64_t window_ms, struct err_detail *reterr) {
        struct capture_files *c = calloc(1, sizeof *c);
        if (!c) {
                err_set(reterr, -ENOMEM, "capture", "out of memory");
                return NULL;
        }
        c->ev = ev;
        c->max_events = max_events;
        c->window_us = (int64_t)window_ms * 1000;
        c->fan_fd = c->mount_fd = c->stop_fd = -1;
        c->self = getpid();
        /* before the first goto: fail's scope holds it (clang refuses the jump) */
        _cleanup_free_ char *parent = NULL;
        c->ws = realpath(workspace, NULL);
        c->cache = calloc(CACHE_SLOTS, sizeof *c->cache);
        c->win = calloc(1, sizeof *c->win);
        if (!c->ws || !c->cache || !c->win) {
                err_set(reterr, -errno, "capture", "cannot resolve workspace %s: %m", workspace);
                goto fail;
        }
        c->ws_len = strlen(c->ws);
        c->mount_fd = open(c->ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st_ws, st_parent;
        if (c->mount_fd < 0 || asprintf(&parent, "%s/..", c->ws) < 0 || fstat(c->mount_fd, &st_ws) < 0 ||
            stat(parent, &st_parent) < 0) {
                err_set(reterr, -errno, "capture", "cannot open workspace %s: %m", c->ws);
                goto fail;
        }
        /* its own filesystem: every event of the mark belongs to this run */
        c->own_fs = st_ws.st_dev != st_parent.st_dev;
        c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        c->fan_fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME,
                                  O_RDONLY | O_CLOEXEC | O_LARGEFILE);
        if (c->stop_fd < 0 || c->fan_fd < 0) {
                err_set(reterr, -errno, "capture", "fanotify unavailable: %m");
                goto fail;
        }
        /* mount marks cannot report create/delete/rename, inode marks are not
         * recursive: a filesystem mark, filtered by the workspace path */
        uint64_t mask = FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE | FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_ONDIR;
        if (fanotify_mark(c->fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, c->ws) < 0) {
                err_set(reterr, -errno, "capture", "cannot mark the filesystem of %s: %m", c->ws);
                goto fail;
        }
        int r = pthread_create(&c->thread, NULL, capture_files_thread, c);
        if (r != 0) {
                err_set(reterr, -r, "capture", "could not start the file capture thread: %s", strerror(r));
                goto fail;
        }
        c->thread_started = true;
        return c;
fail:
        capture_files_free(c);
        return NULL;
}

struct capture_files *capture_files_stop(struct capture_files *c) {
        if (!c)
                return NULL;
        if (c->thread_started) {
                uint64_t one = 1;
                (void)!write(c->stop_fd, &one, sizeof one);
                pthread_join(c->thread, NULL);
        }
        if (c->n_dropped) {
                json_t *d = json_pack("{s:b,s:I,s:I}", "overflow", 1, "limit", (json_int_t)c->max_events, "dropped",
                                      (json_int_t)c->n_dropped);
                if (d)
                        events_emit(c->ev, "file_access", "platform", d, NULL, false, true);
                json_decref(d);
                limits_event(c->ev, "file_events", c->max_events,
                             "%llu file accesses past the budget of %llu events were counted, not reported one by one",
                             (unsigned long long)c->n_dropped, (unsigned long long)c->max_events);
        }
        char n[32];
        snprintf(n, sizeof n, "%llu", (unsigned long long)c->n_events);
        log_ctx(LOG_DEBUG, LOG_KV("run", c->ev->run_id, "file_events", n, "own_fs", c->own_fs ? "true" : "false"),
                "file capture stopped");
        capture_files_free(c);
        return NULL;
}
