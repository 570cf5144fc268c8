#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_cli_stream.h"
#include "capture_exec.h"
#include "cleanup.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "crun_exec.h"
#include "subprocess.h"

/* images kept warm: the node's root and the first others runs asked for */
#define POOL_IMAGES_MAX 8
#define POOL_CRUN_TIMEOUT_MS 60000
/* a failed preparation is retried after this long (crun broken, disk full) */
#define POOL_RETRY_US (5 * 1000000)

struct pool {
        struct agent *a;
        unsigned per_image;
        struct crun_exec init;     /* sealed memfd of paddock-pool-init (crun_exec.h) */
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;       /* refill: a claim, a release or stop */
        bool stop;
        struct pool_sandbox *ready;
        char images[POOL_IMAGES_MAX][256];
        size_t n_images;
        bool *range_busy;          /* ranges a->n_slots + i, held by a pooled sandbox until released */
        unsigned n_ranges;
};

/* the limits sandbox_write_bundle() fixes at create time are the defaults
 * (the cpu quota as it computes it) */
static bool default_limits(const Paddock__V1__Limits *l) {
        if (!l)
                return true;
        int64_t quota = l->cpus > 0 ? (int64_t)(l->cpus * 100000.0) : (int64_t)(RUN_DEFAULT_CPUS * 100000.0);
        return quota == (int64_t)(RUN_DEFAULT_CPUS * 100000.0) &&
               (!l->memory_mb || l->memory_mb == RUN_DEFAULT_MEMORY_MB) && (!l->pids || l->pids == RUN_DEFAULT_PIDS) &&
               (!l->disk_mb || l->disk_mb == RUN_DEFAULT_DISK_MB);
}

/* What a pooled sandbox fixed at create time must match (pool.h). */
static bool eligible(const Paddock__V1__RunRequested *req) {
        const Paddock__V1__SandboxSnapshot *snap = req ? req->sandbox : NULL;
        if (!snap || !snap->agent || snap->agent->n_command == 0 || !snap->agent->command[0][0])
                return false;
        return agent_cli_kind_of(snap->agent->type) == AGENT_CLI_NONE && !(snap->prompt && snap->prompt->rendered) &&
               snap->n_identity == 0 && default_limits(snap->limits) && strlen(snap->image ? snap->image : "") < 256;
}

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void sandbox_free(struct pool_sandbox *ps) {
        close_fd(&ps->init_pidfd);
        close_fd(&ps->out_fd);
        close_fd(&ps->err_fd);
        close_fd(&ps->spec_fd);
        close_fd(&ps->capture_fd);
        sandbox_done(&ps->sb);
        free(ps);
}

/* Whether the init exited; if so it is reaped through its pidfd (never a
 * reused pid: ECHILD when orphans.c reaped it already) and forgotten. */
static bool init_gone(struct pool_sandbox *ps) {
        if (ps->init_pid <= 0)
                return true;
        if (ps->init_pidfd >= 0) {
                struct pollfd p = {.fd = ps->init_pidfd, .events = POLLIN};
                if (poll(&p, 1, 0) == 0)
                        return false;
                siginfo_t si;
                (void)waitid(P_PIDFD, (id_t)ps->init_pidfd, &si, WEXITED | WNOHANG);
                close_fd(&ps->init_pidfd);
        } else { /* no pidfd (pidfd_open failed at create): the pid as before */
                pid_t r;
                while ((r = waitpid(ps->init_pid, NULL, WNOHANG)) < 0 && errno == EINTR)
                        ;
                if (r == 0)
                        return false;
        }
        ps->init_pid = 0; /* reaped: nothing left to kill */
        return true;
}

void pool_sandbox_stop_unstarted(struct pool_sandbox *ps, struct sandbox *sb) {
        if (!ps || ps->started || ps->init_pid <= 0)
                return;
        if (ps->init_pidfd >= 0) {
                /* the pidfd, not the pid: the init may have been reaped by
                 * orphans.c and its pid reused */
                (void)syscall(SYS_pidfd_send_signal, ps->init_pidfd, SIGKILL, NULL, 0);
                struct pollfd p = {.fd = ps->init_pidfd, .events = POLLIN};
                (void)poll(&p, 1, 10000);
                sb->init_pid = ps->init_pid; /* cleanup_destroy verifies it is gone */
                (void)init_gone(ps);
                return;
        }
        kill(ps->init_pid, SIGKILL);
        (void)subprocess_wait(ps->init_pid, 10000);
        sb->init_pid = ps->init_pid; /* reaped: cleanup_destroy verifies it is gone */
        ps->init_pid = 0;
}

/* Removes a sandbox no run claimed (or whose preparation failed half way). */
static void destroy_unclaimed(struct pool *p, struct pool_sandbox *ps) {
        json_t *gone = NULL, *present = NULL;
        pool_sandbox_stop_unstarted(ps, &ps->sb);
        (void)sandbox_netns_wait(&ps->sb, NULL);
        if (ps->sb.run_dir && cleanup_destroy(p->a, &ps->sb, &gone, &present) < 0)
                log_ctx(LOG_ERROR, LOG_KV("sandbox", ps->sb.id), "pooled sandbox not fully removed");
        json_decref(gone);
        json_decref(present);
        pthread_mutex_lock(&p->lock);
        p->range_busy[ps->range] = false;
        pthread_mutex_unlock(&p->lock);
        sandbox_free(ps);
}

static void read_stderr(int fd, char *buf, size_t size) {
        ssize_t n = fd >= 0 ? read(fd, buf, size - 1) : -1;
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
}

/* Prepares one sandbox for image on the refill thread (no lock held). */
static struct pool_sandbox *prepare(struct pool *p, const char *image, unsigned range, struct err_detail *err) {
        struct agent *a = p->a;
        struct pool_sandbox *ps = calloc(1, sizeof *ps);
        if (!ps) {
                err_set(err, -ENOMEM, "pool", "out of memory");
                return NULL;
        }
        ps->out_fd = ps->err_fd = ps->spec_fd = ps->capture_fd = ps->init_pidfd = -1;
        ps->range = range;
        snprintf(ps->image, sizeof ps->image, "%s", image);
        char id[UUID_STR_LEN];
        int r = id_new_uuid(id);
        if (r < 0)
                err_set(err, r, "pool", "no random id: %s", strerror(-r));
        else
                r = sandbox_init(&ps->sb, a, id, a->n_slots + range) < 0 ? err_set(err, -ENOMEM, "pool", "out of memory")
                                                                          : 0;
        if (r >= 0)
                r = sandbox_make_dirs(&ps->sb, RUN_DEFAULT_DISK_MB, err);
        if (r >= 0 && (r = sandbox_netns_begin(&ps->sb, err)) >= 0)
                r = sandbox_netns_wait(&ps->sb, err);
        if (r >= 0 && (ps->capture_fd = capture_exec_listen(ps->sb.run_dir, err)) < 0)
                r = ps->capture_fd;
        if (r >= 0) {
                /* the bundle of a fresh run whose command is the init (fd 3) */
                char *cmd[] = {"/proc/self/fd/3"};
                Paddock__V1__AgentSpec agent = PADDOCK__V1__AGENT_SPEC__INIT;
                agent.n_command = 1;
                agent.command = cmd;
                Paddock__V1__SandboxSnapshot snap = PADDOCK__V1__SANDBOX_SNAPSHOT__INIT;
                snap.agent = &agent;
                snap.image = (char *)image;
                Paddock__V1__RunRequested req = PADDOCK__V1__RUN_REQUESTED__INIT;
                req.sandbox = &snap;
                r = sandbox_write_bundle(&ps->sb, a, &req, err);
        }
        int spec[2] = {-1, -1};
        if (r >= 0 && pipe2(spec, O_CLOEXEC) < 0)
                r = err_set(err, -errno, "pool", "pipe: %m");
        pid_t crun_pid = 0;
        if (r >= 0) {
                char *argv[] = {(char *)crun_exec_path(&a->crun, a->cfg->crun), "--root", a->crun_root, "create",
                                "--preserve-fds", "2", "--bundle", ps->sb.run_dir, "--pid-file", ps->sb.pid_file,
                                ps->sb.container_id, NULL};
                r = subprocess_start_fds(argv, ps->sb.run_dir, &ps->out_fd, &ps->err_fd,
                                         (int[]){p->init.fd, spec[0]}, 2, &crun_pid);
                if (r < 0)
                        err_set(err, r, "pool", "could not start crun create: %s", strerror(-r));
        }
        if (spec[0] >= 0)
                close(spec[0]);
        ps->spec_fd = spec[1];
        if (r >= 0) {
                int st = subprocess_wait(crun_pid, POOL_CRUN_TIMEOUT_MS);
                ps->init_pid = sandbox_read_pid(&ps->sb);
                /* now, while the init waits on its exec fifo (alive: crun
                 * create exited 0 with it blocked there) */
                if (st == 0 && ps->init_pid > 0)
                        ps->init_pidfd = (int)syscall(SYS_pidfd_open, ps->init_pid, 0);
                if (st != 0 || ps->init_pid <= 0) {
                        char msg[400];
                        read_stderr(ps->err_fd, msg, sizeof msg);
                        r = err_set(err, -EIO, "pool", "crun create failed (status %d): %s", st, msg);
                }
        }
        if (r < 0) {
                destroy_unclaimed(p, ps);
                return NULL;
        }
        sandbox_seccomp_learn(&ps->sb, a);
        return ps;
}

static size_t count_ready(const struct pool *p, const char *image) {
        size_t n = 0;
        for (const struct pool_sandbox *ps = p->ready; ps; ps = ps->next)
                n += !strcmp(ps->image, image);
        return n;
}

/* Under p->lock: an image short of sandboxes and a free range, if any. */
static bool next_job(struct pool *p, char image[static 256], unsigned *range) {
        for (size_t i = 0; i < p->n_images; i++) {
                if (count_ready(p, p->images[i]) >= p->per_image)
                        continue;
                for (unsigned r = 0; r < p->n_ranges; r++)
                        if (!p->range_busy[r]) {
                                p->range_busy[r] = true;
                                *range = r;
                                memcpy(image, p->images[i], 256);
                                return true;
                        }
        }
        return false;
}

static void *refill_thread(void *userdata) {
        struct pool *p = userdata;
        pthread_mutex_lock(&p->lock);
        while (!p->stop) {
                char image[256];
                unsigned range;
                if (!next_job(p, image, &range)) {
                        pthread_cond_wait(&p->cond, &p->lock);
                        continue;
                }
                pthread_mutex_unlock(&p->lock);
                struct err_detail err = {0};
                struct pool_sandbox *ps = prepare(p, image, range, &err);
                pthread_mutex_lock(&p->lock);
                if (ps) {
                        ps->next = p->ready;
                        p->ready = ps;
                        continue;
                }
                log_ctx(LOG_WARN, LOG_KV("image", image[0] ? image : "(node root)"),
                        "could not prepare a pooled sandbox: %s", err.message);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += POOL_RETRY_US / 1000000;
                while (!p->stop && pthread_cond_timedwait(&p->cond, &p->lock, &until) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

struct pool *pool_start(struct agent *a) {
        if (a->cfg->warm_pool <= 0)
                return NULL;
        _cleanup_free_ char *dir = strdup(a->cfg->hook_binary), *init = NULL;
        if (!dir || asprintf(&init, "%s/paddock-pool-init", dirname(dir)) < 0)
                return NULL;
        struct pool *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        p->a = a;
        p->per_image = (unsigned)a->cfg->warm_pool;
        /* at most every slot's run plus a full pool of each image at once */
        p->n_ranges = a->n_slots + p->per_image * POOL_IMAGES_MAX;
        p->range_busy = calloc(p->n_ranges, sizeof *p->range_busy);
        p->n_images = 1; /* "": the node's root */
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        int r = p->range_busy ? crun_exec_prepare(&p->init, init) : -ENOMEM;
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("init", init), "warm pool off: cannot load the pool's init: %s", strerror(-r));
                pool_stop(p);
                return NULL;
        }
        r = pthread_create(&p->thread, NULL, refill_thread, p);
        if (r != 0) {
                log_error("warm pool off: cannot start its thread: %s", strerror(r));
                pool_stop(p);
                return NULL;
        }
        p->thread_started = true;
        char n[16];
        snprintf(n, sizeof n, "%u", p->per_image);
        log_ctx(LOG_INFO, LOG_KV("per_image", n), "warm sandbox pool started");
        return p;
}

void pool_stop(struct pool *p) {
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        if (p->thread_started)
                pthread_join(p->thread, NULL);
        while (p->ready) {
                struct pool_sandbox *ps = p->ready;
                p->ready = ps->next;
                destroy_unclaimed(p, ps);
        }
        crun_exec_done(&p->init);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p->range_busy);
        free(p);
}

struct pool_sandbox *pool_claim(struct pool *p, const Paddock__V1__RunRequested *req) {
        if (!p || !eligible(req))
                return NULL;
        const char *image = req->sandbox->image ? req->sandbox->image : "";
        struct pool_sandbox *found = NULL, *dead = NULL;
        pthread_mutex_lock(&p->lock);
        for (struct pool_sandbox **pp = &p->ready; *pp && !found;) {
                struct pool_sandbox *ps = *pp;
                if (strcmp(ps->image, image)) {
                        pp = &ps->next;
                        continue;
                }
                *pp = ps->next;
                ps->next = NULL;
                if (!init_gone(ps))
                        found = ps;
                else {
                        ps->next = dead;
                        dead = ps;
                }
        }
        bool known = false;
        for (size_t i = 0; i < p->n_images; i++)
                known |= !strcmp(p->images[i], image);
        if (!known && p->n_images < POOL_IMAGES_MAX)
                snprintf(p->images[p->n_images++], sizeof p->images[0], "%s", image);
        /* no refill yet: crun create would compete with this run's start
         * for the cpu (pool_refill once it runs, pool_release) */
        pthread_mutex_unlock(&p->lock);
        /* a sandbox whose init died while waiting would fail its claimer at
         * the start (ENXIO on the exec fifo): removed, and the run goes
         * fresh when none other is ready */
        while (dead) {
                struct pool_sandbox *ps = dead;
                dead = ps->next;
                log_ctx(LOG_WARN, LOG_KV("sandbox", ps->sb.id), "pooled sandbox's init died while waiting; removing it");
                destroy_unclaimed(p, ps);
        }
        return found;
}

void pool_refill(struct pool *p) {
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

void pool_sandbox_take(struct pool_sandbox *ps, struct sandbox *sb, const char *run_id) {
        *sb = ps->sb;
        ps->sb = (struct sandbox){0}; /* the run's sandbox owns the paths now */
        snprintf(sb->run_id, sizeof sb->run_id, "%s", run_id);
}

/* One NUL-terminated item on the init's pipe (pool_init.c) */
static void put_item(FILE *f, const char *s) {
        fputs(s, f);
        fputc(0, f);
}

/* What `crun start` does for a created container (crun's status.c; runc's
 * exec fifo is the same): the init blocks reading <state>/exec.fifo until one
 * byte comes; the fifo is removed first so that crun sees it started. Without
 * crun's process: a few ms less per claim on a busy node. */
static int start_container(const struct agent *a, const struct sandbox *sb) {
        _cleanup_free_ char *fifo = NULL;
        if (asprintf(&fifo, "%s/%s/exec.fifo", a->crun_root, sb->container_id) < 0)
                return -ENOMEM;
        /* O_NONBLOCK: ENXIO rather than waiting when the init is gone */
        _cleanup_close_ int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (unlink(fifo) < 0)
                return -errno;
        ssize_t w;
        while ((w = write(fd, "0", 1)) < 0 && errno == EINTR)
                ;
        return w == 1 ? 0 : -errno;
}

int pool_sandbox_start(struct pool_sandbox *ps, const struct agent *a, const struct sandbox *sb,
                       const Paddock__V1__RunRequested *req, int *out_fd, int *err_fd) {
        const Paddock__V1__AgentSpec *agent = req->sandbox->agent;
        int r = start_container(a, sb);
        if (r < 0)
                return r;
        ps->started = true; /* its init is the run's now: supervise() reaps it */
        *out_fd = ps->out_fd;
        *err_fd = ps->err_fd;
        ps->out_fd = ps->err_fd = -1;
        /* after the start: more than a pipe's worth waits for the init to read */
        int fd = TAKE_FD(ps->spec_fd);
        FILE *f = fdopen(fd, "w");
        if (f) {
                fprintf(f, "%zu", agent->n_command);
                fputc(0, f);
                for (size_t i = 0; i < agent->n_command; i++)
                        put_item(f, agent->command[i]);
                for (const char *const *e = sandbox_base_env; *e; e++)
                        put_item(f, *e);
                for (const char *const *e = sb->extra_env; e && *e; e++)
                        put_item(f, *e);
                r = ferror(f) ? -EIO : 0;
                if (fclose(f) != 0 && r == 0)
                        r = -errno;
        } else {
                r = -errno;
                close(fd);
        }
        /* the init then fails on an incomplete command (its stderr says so) */
        if (r < 0)
                log_ctx(LOG_WARN, LOG_KV("run", sb->run_id), "could not hand the command to the pool's init: %s",
                        strerror(-r));
        return 0;
}

int pool_sandbox_refresh(struct pool_sandbox *ps, const struct agent *a, struct sandbox *sb,
                         const Paddock__V1__RunRequested *req, struct err_detail *reterr) {
        if (ps->started || !init_gone(ps))
                return 0;
        log_ctx(LOG_WARN, LOG_KV("run", sb->run_id, "sandbox", sb->id),
                "pooled sandbox's init died after the claim; starting the run in it as a fresh sandbox");
        char *argv[] = {(char *)crun_exec_path(&a->crun, a->cfg->crun), "--root", a->crun_root, "delete", "-f",
                        sb->container_id, NULL};
        char msg[400];
        int st = subprocess_run(argv, NULL, NULL, NULL, 0, msg, sizeof msg, POOL_CRUN_TIMEOUT_MS);
        if (st != 0)
                return err_set(reterr, -EIO, "pool", "crun delete of the dead pooled container failed (status %d): %s",
                               st, msg);
        /* what the pool's container had; sandbox_start makes its own */
        close_fd(&ps->out_fd);
        close_fd(&ps->err_fd);
        close_fd(&ps->spec_fd);
        close_fd(&ps->capture_fd);
        (void)unlink(sb->pid_file);
        int r = sandbox_write_bundle(sb, a, req, reterr);
        if (r < 0)
                return r;
        ps->fresh = true;
        return 1;
}

void pool_release(struct pool *p, struct pool_sandbox *ps) {
        if (!ps)
                return;
        if (p) {
                pthread_mutex_lock(&p->lock);
                p->range_busy[ps->range] = false;
                pthread_cond_broadcast(&p->cond);
                pthread_mutex_unlock(&p->lock);
        }
        sandbox_free(ps);
}
