#include "run.h"


#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_cli.h"
#include "artifacts.h"
#include "assignments.h"
#include "capture_exec.h"
#include "capture_files.h"
#include "capture_files_perm.h"
#include "prompt_file.h"
#include "cleanup.h"
#include "control.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "events.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "run_limits.h"
#include "metrics_runner.h"
#include "paddock/v1/usage.pb-c.h"
#include "proto/envelope.h"
#include "gateway_hook.h"
#include "hook_server.h"
#include "pool.h"
#include "proxy_hook.h"
#include "run_policy.h"
#include "sandbox.h"
#include "subprocess.h"
#include "workspace.h"
#include "workspace_diff.h"
#include "proto/run_control.h"

#define OUTPUT_CHUNK 4096
#define OUTPUT_LINGER_US 50000
#define CRUN_START_TIMEOUT_MS 60000
#define LIMITS_POLL_US 250000      /* cgroup counters and workspace statfs */
#define EOF_GRACE_US 2000000       /* output pipes may trail the init's exit */
#define CLI_TERM_GRACE_US 200000   /* cancel: SIGTERM to the CLI, SIGKILL after this (cancel <= 1 s) */

struct stream_buf {
        const char *name;
        int fd;
        unsigned char buf[OUTPUT_CHUNK];
        size_t len;
        int64_t first_us;       /* when the oldest buffered byte arrived */
};

/* The launch path's phases, each logged with its duration in "agent
 * running" (bench/launch_latency.py prints them): where the time from the
 * assignment's arrival to the running event goes. */
enum run_phase {
        RUN_PHASE_ACCEPT,       /* assignment received -> worker thread started */
        RUN_PHASE_PROVISIONING, /* the provisioning status event acknowledged */
        RUN_PHASE_DIRS,         /* run dir, workspace (quota), files */
        RUN_PHASE_NETNS,        /* network namespace, veth, addresses */
        RUN_PHASE_EGRESS,       /* the run's proxy */
        RUN_PHASE_BUNDLE,       /* OCI config written */
        RUN_PHASE_CAPTURE,      /* exec and file capture started */
        RUN_PHASE_CRUN,         /* crun ran the container's init */
        RUN_PHASE_EXEC,         /* the command's exec event seen */
        RUN_PHASE_RUNNING,      /* the running status event acknowledged */
        RUN_PHASES,
};

static const char *const run_phase_names[RUN_PHASES] = {
        "accept_ms", "provisioning_event_ms", "dirs_ms", "netns_ms", "egress_ms",
        "bundle_ms", "capture_ms", "crun_ms", "exec_ms", "running_event_ms",
};

struct run_ctx {
        struct agent *a;
        struct run_slot *slot;
        struct run_events ev;
        struct sandbox sb;
        struct limits_watch lw;
        struct capture_exec *cap_exec;   /* platform capture (capture_exec.h, capture_files.h) */
        struct capture_files *cap_files;
        struct capture_files_perm *cap_perm; /* path rules: fanotify permission events (capture_files_perm.h) */
        struct run_policy *policy;       /* rules, decisions, held actions (run_policy.h) */
        struct hook_server *hooks;       /* a CLI's hook bridge (hook_server.h) */
        const Paddock__V1__RunRequested *req;
        struct pool_sandbox *pooled; /* claimed from the warm pool (pool.h); NULL: provisioned here */
        bool running;            /* exec + running events sent */
        uint64_t output_bytes, output_max;
        bool output_truncated;
        char early_stderr[512];  /* crun's own errors before the container ran */
        size_t early_len;
        int64_t phase_end[RUN_PHASES]; /* time_mono_us() at the end of each launch phase */
        /* agent adapters (agent_cli.h): the CLI's launch, its stdout mapped to
         * events, and when it last wrote anything (the stall timer) */
        struct agent_cli_launch cli;
        struct agent_cli_stream *cli_stream;
        int64_t last_output_mono;
        struct {                 /* a model limit the gateway reported (on_model_limit) */
                atomic_bool hit; /* set last: limit, value and used are written before it */
                char limit[16];
                double value, used;
        } ml;
        struct {                 /* a tool ran without the hook's allow (on_hook_violation) */
                atomic_bool hit; /* set last: reason is written before it */
                char reason[400];
        } hv;
};

/* Length (1..3) of an incomplete multi-byte sequence at the end of s, or 0. */
static size_t utf8_incomplete_tail(const unsigned char *s, size_t len) {
        for (size_t k = 1; k <= 3 && k <= len; k++) {
                unsigned char c = s[len - k];
                if ((c & 0xC0) == 0x80)
                        continue;
                size_t need = (c >= 0xF0 && c <= 0xF4) ? 4 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xC2 && c <= 0xDF) ? 2 : 1;
                return need > k ? k : 0;
        }
        return 0;
}

/* Strict UTF-8 check of one sequence at s; returns its length or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len) {
        unsigned char c = s[0];
        if (c < 0x80)
                return 1;
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
                n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                n = 3;
                if (c == 0xE0)
                        lo = 0xA0;
                else if (c == 0xED)
                        hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
                n = 4;
                if (c == 0xF0)
                        lo = 0x90;
                else if (c == 0xF4)
                        hi = 0x8F;
        } else
                return 0;
        if (len < n || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
        return n;
}

/* Copies s into out (size >= 3 * len) replacing every invalid byte with U+FFFD. */
static size_t utf8_sanitize(const unsigned char *s, size_t len, char *out) {
        size_t w = 0;
        for (size_t i = 0; i < len;) {
                size_t n = utf8_seq(s + i, len - i);
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
        return w;
}

/* Whether n more bytes of the agent's output fit the run's output budget
 * (counted when they do); the first refusal is logged. */
static bool output_budget_take(struct run_ctx *c, size_t n) {
        if (c->output_bytes + (uint64_t)n > c->output_max) {
                if (!c->output_truncated)
                        log_ctx(LOG_WARN, LOG_KV("run", c->sb.run_id),
                                "output exceeds %" PRIu64 " bytes, dropping the rest", c->output_max);
                c->output_truncated = true;
                return false;
        }
        c->output_bytes += (uint64_t)n;
        return true;
}

static void emit_bytes(struct run_ctx *c, struct stream_buf *s, size_t n) {
        if (n == 0)
                return;
        if (output_budget_take(c, n)) {
                char text[OUTPUT_CHUNK * 3];
                size_t tl = utf8_sanitize(s->buf, n, text);
                if (events_output(&c->ev, s->name, text, tl) >= 0)
                        metric_add(&runner_metric_output_events, 1);
        }
        memmove(s->buf, s->buf + n, s->len - n);
        s->len -= n;
        s->first_us = s->len ? time_mono_us() : 0;
}

/* agent adapter hook: a CLI's stdout is its event stream (agent_cli_stream.h),
 * bounded by the run's output budget like any output */
static void cli_feed(struct run_ctx *c, const unsigned char *data, size_t n) {
        if (output_budget_take(c, n))
                agent_cli_stream_feed(c->cli_stream, (const char *)data, n);
}

/* Emits what is ready: complete lines, a full chunk, or anything older than
 * 50 ms (force: everything, e.g. at EOF). A split multi-byte character stays
 * buffered until its rest arrives. */
static void stream_emit(struct run_ctx *c, struct stream_buf *s, bool force) {
        if (!c->running || s->len == 0)
                return;
        if (c->cli_stream && !strcmp(s->name, "stdout")) {
                /* what the CLI wrote before `running` went out, in order */
                cli_feed(c, s->buf, s->len);
                s->len = 0;
                s->first_us = 0;
                return;
        }
        if (force) {
                emit_bytes(c, s, s->len);
                return;
        }
        const unsigned char *nl = NULL;
        for (size_t i = s->len; i > 0; i--)
                if (s->buf[i - 1] == '\n') {
                        nl = s->buf + i - 1;
                        break;
                }
        if (nl) {
                emit_bytes(c, s, (size_t)(nl - s->buf) + 1);
                if (s->len == 0)
                        return;
        }
        if (s->len >= OUTPUT_CHUNK || time_mono_us() - s->first_us >= OUTPUT_LINGER_US) {
                size_t keep = utf8_incomplete_tail(s->buf, s->len);
                if (keep == s->len && s->len < OUTPUT_CHUNK)
                        return;
                emit_bytes(c, s, s->len - keep);
        }
}

/* Reads what is available; returns false at EOF or error (fd closed). */
static bool stream_read(struct run_ctx *c, struct stream_buf *s) {
        size_t room = sizeof s->buf - s->len;
        if (room == 0)
                return true;
        ssize_t n = read(s->fd, s->buf + s->len, room);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return true;
        if (n <= 0) {
                close(s->fd);
                s->fd = -1;
                return false;
        }
        if (!c->running && !strcmp(s->name, "stderr")) {
                /* before the container runs, stderr is crun's: keep it for the reason */
                size_t k = (size_t)n < sizeof c->early_stderr - 1 - c->early_len
                                   ? (size_t)n : sizeof c->early_stderr - 1 - c->early_len;
                memcpy(c->early_stderr + c->early_len, s->buf + s->len, k);
                c->early_len += k;
                c->early_stderr[c->early_len] = 0;
        }
        c->last_output_mono = time_mono_us();
        if (c->cli_stream && c->running && s->len == 0 && !strcmp(s->name, "stdout")) {
                cli_feed(c, s->buf, (size_t)n);
                return true;
        }
        if (s->len == 0)
                s->first_us = time_mono_us();
        s->len += (size_t)n;
        return true;
}

/* The adapter's events: tool calls and the agent's text (agent_cli_stream.h). */
static void cli_emit(void *userdata, const char *kind, json_t *data) {
        struct run_ctx *c = userdata;
        if (events_emit(&c->ev, kind, "agent", data, NULL, false, false) >= 0 && !strcmp(kind, "output"))
                metric_add(&runner_metric_output_events, 1);
}

/* Kills the container (it exists: crun run --detach returned). Retried a few
 * times on a transient crun failure, then the init pid directly: the pid
 * namespace dies with its init. */
static void kill_container(struct run_ctx *c) {
        for (int i = 0; i < 3; i++) {
                if (sandbox_kill(&c->sb, c->a) == 0)
                        return;
                if (c->sb.init_pid > 0 && kill(c->sb.init_pid, 0) < 0)
                        return;
                usleep(50000);
        }
        if (c->sb.init_pid > 0)
                kill(c->sb.init_pid, SIGKILL);
}

static int exit_code_of(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return 255;
}

struct outcome {
        const char *status;       /* terminal status */
        const char *limit;        /* a model limit ended the run: {limit, value, used} in the status data */
        double limit_value, limit_used;
        char reason[600];
        int exit_code;            /* -1: none */
        int64_t started_us, ended_us; /* wall clock of the container process */
        int64_t started_mono, ended_mono;
        char cancel_by[128];      /* user cancel: who asked */
        double cancel_delay_ms;   /* cancel message polled -> container killed */
};

static void fail(struct outcome *o, const char *fmt, ...) _printf_(2, 3);
static void fail(struct outcome *o, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        o->status = run_status_to_string(RUN_FAILED);
        vsnprintf(o->reason, sizeof o->reason, fmt, ap);
        va_end(ap);
}

/* The status a cancel by cancel_by ends the run with: limit_exceeded for the
 * api's budget stop (lib/proto/run_control.h, docs/CONTRACTS.md "Budgets"),
 * else cancelled. */
static const char *cancel_status(const char *cancel_by) {
        return strcmp(cancel_by, RUN_CANCEL_BY_BUDGET) ? run_status_to_string(RUN_CANCELLED) : run_status_to_string(RUN_LIMIT_EXCEEDED);
}

/* Takes the cancel request of the slot: true if one is pending. A user cancel
 * fills o->cancel_by and the reason; a runner shutdown leaves cancel_by empty. */
static bool take_cancel(struct run_ctx *c, struct outcome *o, int64_t *requested_mono) {
        if (!atomic_load(&c->slot->cancel))
                return false;
        pthread_mutex_lock(&c->a->lock);
        snprintf(o->cancel_by, sizeof o->cancel_by, "%s", c->slot->cancel_by);
        if (c->slot->cancel_by[0])
                snprintf(o->reason, sizeof o->reason, "%s",
                         c->slot->cancel_reason[0] ? c->slot->cancel_reason : "cancelled");
        *requested_mono = c->slot->cancel_mono_us;
        pthread_mutex_unlock(&c->a->lock);
        return true;
}

static void drain(int fd) {
        uint64_t v;
        while (fd > 0 && read(fd, &v, sizeof v) > 0)
                ;
}

/* Reads crun's error message from stderr when it failed before the process ran. */
static void read_crun_error(struct run_ctx *c, struct stream_buf *err) {
        for (int i = 0; i < 20 && err->fd >= 0; i++) {
                struct pollfd p = {.fd = err->fd, .events = POLLIN};
                if (poll(&p, 1, 50) <= 0)
                        break;
                if (!stream_read(c, err))
                        break;
        }
        while (c->early_len && (c->early_stderr[c->early_len - 1] == '\n' || c->early_stderr[c->early_len - 1] == '\r'))
                c->early_stderr[--c->early_len] = 0;
}

/* Whether the run's container is the pool's (pool.h), not a fresh one. */
static bool pooled(const struct run_ctx *c) { return c->pooled && !c->pooled->fresh; }

/* Logs where the launch's time went: each phase's duration from the end of
 * the previous one, and startup_ms from the assignment's arrival to the
 * running event. */
static void log_phases(const struct run_ctx *c) {
        char vals[RUN_PHASES + 1][24];
        const char *kv[2 * (RUN_PHASES + 3) + 1];
        size_t n = 0;
        int64_t prev = c->slot->received_mono_us;
        kv[n++] = "run";
        kv[n++] = c->sb.run_id;
        kv[n++] = "pooled";
        kv[n++] = pooled(c) ? "true" : "false";
        for (int i = 0; i < RUN_PHASES; i++) {
                int64_t end = c->phase_end[i] ? c->phase_end[i] : prev;
                snprintf(vals[i], sizeof vals[i], "%.1f", (double)(end - prev) / 1000.0);
                kv[n++] = run_phase_names[i];
                kv[n++] = vals[i];
                prev = end;
        }
        snprintf(vals[RUN_PHASES], sizeof vals[RUN_PHASES], "%.1f",
                 (double)(prev - c->slot->received_mono_us) / 1000.0);
        kv[n++] = "startup_ms";
        kv[n++] = vals[RUN_PHASES];
        kv[n] = NULL;
        log_ctx(LOG_INFO, kv, "agent running");
}

/* The exec capture of a pooled sandbox that went fresh (pool_sandbox_refresh):
 * the pool's listener and its dead container's connection go, a new one
 * listens for the fresh container's crun, whose first exec is the command
 * itself. Returns 1 or a negative errno (reterr). */
static int restart_capture(struct run_ctx *c, struct err_detail *reterr) {
        c->cap_exec = capture_exec_stop(c->cap_exec);
        c->cap_exec = capture_exec_start(c->sb.run_dir, -1, false, &c->ev, c->policy, reterr);
        if (!c->cap_exec)
                return reterr->errnum < 0 ? reterr->errnum : -EIO;
        if (c->cap_perm)
                capture_exec_on_first(c->cap_exec, capture_files_perm_attach, c->cap_perm);
        return 1;
}

/* Runs the container to its end (exit, timeout, cancel or a limit kill) while
 * streaming output and watching its limits. */
static void supervise(struct run_ctx *c, struct outcome *o) {
        struct stream_buf out = {.name = "stdout", .fd = -1}, err = {.name = "stderr", .fd = -1};
        pid_t crun_pid;
        uint64_t timeout_s = c->lw.timeout_s;

        int r = c->pooled ? pool_sandbox_start(c->pooled, c->a, &c->sb, c->req, &out.fd, &err.fd)
                          : sandbox_start(&c->sb, c->a, &out.fd, &err.fd, &crun_pid);
        if (r < 0 && c->pooled) {
                /* its init died after the claim: the run goes on as a fresh
                 * sandbox in the same dirs (pool.h), not a failure */
                struct err_detail e = {0};
                int pr = pool_sandbox_refresh(c->pooled, c->a, &c->sb, c->req, &e);
                if (pr > 0)
                        pr = restart_capture(c, &e);
                if (pr > 0)
                        r = sandbox_start(&c->sb, c->a, &out.fd, &err.fd, &crun_pid);
                else if (pr < 0) {
                        fail(o, "could not start a fresh sandbox after the pooled one's init died: %s", e.message);
                        return;
                }
        }
        if (r < 0) {
                fail(o, "could not start crun: %s", strerror(-r));
                return;
        }
        /* a pooled sandbox was started without crun (pool.h) */
        int st = pooled(c) ? 0 : subprocess_wait(crun_pid, CRUN_START_TIMEOUT_MS);
        pid_t init_pid = sandbox_read_pid(&c->sb);
        if (st < 0 || exit_code_of(st) != 0 || init_pid <= 0) {
                read_crun_error(c, &err);
                fail(o, "the sandbox did not start: %s",
                     c->early_len ? c->early_stderr
                     : st == -ETIMEDOUT ? "crun did not start the process in time"
                                        : "crun exited without starting the process");
                if (init_pid > 0) {
                        c->sb.init_pid = init_pid;
                        kill_container(c);
                        (void)subprocess_wait(init_pid, 10000);
                }
                c->sb.init_pid = 0;
                if (out.fd >= 0)
                        close(out.fd);
                if (err.fd >= 0)
                        close(err.fd);
                return;
        }
        c->sb.init_pid = init_pid;
        if (c->cli.kind != AGENT_CLI_NONE && !(c->cli_stream = agent_cli_stream_new(c->cli.kind, cli_emit, c, NULL)))
                log_ctx(LOG_ERROR, LOG_KV("run", c->sb.run_id), "out of memory: the agent's stream goes out as output");
        o->started_us = time_now_us();
        o->started_mono = time_mono_us();
        c->phase_end[RUN_PHASE_CRUN] = o->started_mono;
        /* the command's exec event comes from the capture thread (capture_exec.h);
         * `running` follows it */
        if (!capture_exec_wait_first(c->cap_exec, 2000))
                log_ctx(LOG_WARN, LOG_KV("run", c->sb.run_id), "no exec event for the command within 2 s");
        c->phase_end[RUN_PHASE_EXEC] = time_mono_us();
        if (c->cli.kind != AGENT_CLI_NONE) {
                /* the agent session (type, CLI version, model) rides on `running` */
                json_t *d = json_pack("{s:s,s:o}", "status", run_status_to_string(RUN_RUNNING), "agent", agent_cli_session(&c->cli));
                events_emit(&c->ev, "status", "platform", d, run_status_to_string(RUN_RUNNING), false, true);
                json_decref(d);
                if (c->cli.fixed_task) {
                        static const char note[] = "the definition has no prompt template: the agent was given the "
                                                   "fixed task \"" AGENT_CLI_FIXED_TASK "\"";
                        events_output(&c->ev, "platform", note, sizeof note - 1);
                }
        } else {
                /* a pooled sandbox says so, with its own id (pool.h) */
                json_t *d = json_pack("{s:s,s:{s:b,s:s}}", "status", run_status_to_string(RUN_RUNNING), "sandbox",
                                      "pooled", pooled(c), "id", c->sb.id);
                events_emit(&c->ev, "status", "platform", d, run_status_to_string(RUN_RUNNING), false, true);
                json_decref(d);
        }
        c->phase_end[RUN_PHASE_RUNNING] = time_mono_us();
        log_phases(c);
        c->running = true;
        pool_refill(c->a->pool); /* after the start, not competing with it */
        /* after the running event: the first sandbox does not wait for it */
        sandbox_seccomp_learn(&c->sb, c->a);

        /* the init's exit is pollable through a pidfd; we reap it ourselves */
        int pidfd = (int)syscall(SYS_pidfd_open, init_pid, 0);
        int64_t deadline = o->started_mono + (int64_t)timeout_s * 1000000;
        int64_t last_limits = 0, reaped_at = 0, cancel_req = 0, term_until = 0;
        bool killed = false, timed_out = false, cancelled = false, limit_kill = false, reaped = false, bus_kill = false;
        bool stalled = false;
        int64_t stall_us = c->cli_stream ? c->a->cfg->agent_stall_s * 1000000 : 0;
        c->last_output_mono = o->started_mono;
        int status = 0;

        while (!reaped || out.fd >= 0 || err.fd >= 0) {
                int64_t now = time_mono_us();
                if (!killed && now >= deadline) {
                        timed_out = killed = true;
                        c->lw.timed_out = true;
                        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "run timed out after %" PRIu64 " s", timeout_s);
                        kill_container(c);
                }
                if (stall_us && run_policy_waiting(c->policy))
                        c->last_output_mono = now; /* a CLI waiting for a person is not stalled */
                if (!killed && stall_us && now - c->last_output_mono >= stall_us) {
                        /* a CLI that says nothing for PADDOCK_AGENT_STALL_S is stuck */
                        stalled = killed = true;
                        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "agent stalled: no output for %lld s",
                                c->a->cfg->agent_stall_s);
                        kill_container(c);
                }
                if (term_until && !reaped && now >= term_until) {
                        term_until = 0;
                        kill_container(c); /* the CLI did not go on SIGTERM */
                }
                if (!killed && take_cancel(c, o, &cancel_req)) {
                        cancelled = killed = true;
                        /* a CLI gets SIGTERM first (its process group: crun kill
                         * --all) and SIGKILL after a short grace */
                        if (c->cli_stream && sandbox_terminate(&c->sb, c->a) == 0)
                                term_until = time_mono_us() + CLI_TERM_GRACE_US;
                        else
                                kill_container(c);
                        if (o->cancel_by[0]) {
                                o->cancel_delay_ms = cancel_req ? (double)(time_mono_us() - cancel_req) / 1000.0 : 0;
                                char ms[32];
                                snprintf(ms, sizeof ms, "%.1f", o->cancel_delay_ms);
                                log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id, "requested_by", o->cancel_by,
                                                         "cancel_delay_ms", ms),
                                        "run cancelled: container killed");
                        } else {
                                log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "cancelling run: runner shutting down");
                        }
                }
                if (!killed && atomic_load(&c->hv.hit)) {
                        /* a tool ran that the hook did not allow (hook_server.h): stopped at once */
                        killed = true;
                        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "killing run: a tool ran without the policy hook's allow");
                        kill_container(c);
                }
                if (!killed && atomic_load(&c->ml.hit)) {
                        /* a model limit (on_model_limit): stopped like a timeout, ended by model_limit_outcome */
                        killed = true;
                        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id, "limit", c->ml.limit),
                                "killing run: model limit reached");
                        kill_container(c);
                }
                if (now - last_limits >= LIMITS_POLL_US) {
                        last_limits = now;
                        limits_poll(&c->lw);
                        limits_report(&c->lw, &c->ev);
                        if (!killed && events_overrun(&c->ev)) {
                                bus_kill = killed = true;
                                log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "killing run: its events could not be sent");
                                kill_container(c);
                        }
                        if (!killed && limits_pids_exhausted(&c->lw, now)) {
                                limit_kill = killed = true;
                                log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "killing run: pids limit exhausted");
                                kill_container(c);
                        }
                }
                if (reaped && now - reaped_at > EOF_GRACE_US) {
                        /* a process that escaped the pid namespace's death cannot
                         * exist; a pipe kept open by something else must not hold
                         * the run forever */
                        for (int i = 0; i < 2; i++) {
                                struct stream_buf *s = i ? &err : &out;
                                if (s->fd >= 0) {
                                        close(s->fd);
                                        s->fd = -1;
                                }
                        }
                        break;
                }

                struct pollfd p[5] = {{.fd = -1}, {.fd = -1}, {.fd = -1}, {.fd = -1}, {.fd = -1}};
                struct stream_buf *sv[2] = {&out, &err};
                int wait_ms = (int)(LIMITS_POLL_US / 1000);
                for (int i = 0; i < 2; i++) {
                        if (sv[i]->fd >= 0 && sv[i]->len < sizeof sv[i]->buf) {
                                p[i].fd = sv[i]->fd;
                                p[i].events = POLLIN;
                        }
                        if (sv[i]->len) {
                                int64_t left = (OUTPUT_LINGER_US - (now - sv[i]->first_us)) / 1000;
                                if (left < wait_ms)
                                        wait_ms = left > 0 ? (int)left : 0;
                        }
                }
                if (!reaped && pidfd >= 0) {
                        p[2].fd = pidfd;
                        p[2].events = POLLIN;
                }
                p[3].fd = c->slot->wake_fd > 0 ? c->slot->wake_fd : -1;
                p[3].events = POLLIN;
                p[4].fd = shutdown_fd();
                p[4].events = POLLIN;
                if (killed || shutdown_requested())
                        p[4].fd = -1; /* level-triggered: would spin */
                if (reaped)
                        wait_ms = wait_ms > 100 ? 100 : wait_ms;
                if (term_until && !reaped) {
                        int64_t left = (term_until - now) / 1000;
                        if (left < wait_ms)
                                wait_ms = left > 0 ? (int)left : 0;
                }
                if (stall_us && !killed) {
                        int64_t left = (c->last_output_mono + stall_us - now) / 1000 + 1;
                        if (left < wait_ms)
                                wait_ms = left > 0 ? (int)left : 0;
                }
                int64_t to_deadline = (deadline - now) / 1000;
                if (!killed && to_deadline < wait_ms)
                        wait_ms = to_deadline > 0 ? (int)to_deadline : 0;
                if (poll(p, 5, wait_ms) > 0) {
                        for (int i = 0; i < 2; i++)
                                if (p[i].revents)
                                        stream_read(c, sv[i]);
                        if (p[3].revents)
                                drain(c->slot->wake_fd);
                }
                if (!reaped) {
                        /* pidfd readiness, or polled when pidfd_open failed */
                        pid_t w = waitpid(init_pid, &status, WNOHANG);
                        if (w == init_pid || (w < 0 && errno == ECHILD)) {
                                reaped = true;
                                reaped_at = time_mono_us();
                                if (cancelled && c->cli_stream && o->cancel_by[0] && cancel_req)
                                        /* for a CLI: request -> every process gone */
                                        o->cancel_delay_ms = (double)(reaped_at - cancel_req) / 1000.0;
                                if (w < 0)
                                        status = 255 << 8;
                        }
                }
                for (int i = 0; i < 2; i++)
                        stream_emit(c, sv[i], sv[i]->fd < 0);
        }
        for (int i = 0; i < 2; i++)
                stream_emit(c, i ? &err : &out, true);
        if (c->cli_stream)
                agent_cli_stream_finish(c->cli_stream); /* open calls: "no result" */
        if (pidfd >= 0)
                close(pidfd);
        o->ended_us = time_now_us();
        o->ended_mono = time_mono_us();

        /* the cgroup is still there (detached container): last look at the counters */
        limits_poll(&c->lw);
        limits_report(&c->lw, &c->ev);
        int code = exit_code_of(status);
        const char *blame = limits_blame(&c->lw);
        if (timed_out) {
                o->status = run_status_to_string(RUN_TIMED_OUT);
                snprintf(o->reason, sizeof o->reason, "the run exceeded its timeout of %" PRIu64 " s", timeout_s);
        } else if (cancelled && o->cancel_by[0]) {
                o->status = cancel_status(o->cancel_by);
        } else if (cancelled) {
                fail(o, "runner shutting down");
        } else if (bus_kill) {
                o->status = run_status_to_string(RUN_LIMIT_EXCEEDED);
                snprintf(o->reason, sizeof o->reason,
                         "run events waited longer than PADDOCK_RUN_EVENT_BLOCK_BUDGET_MS (%lld ms) for the "
                         "producer queue: run killed", c->a->cfg->events.block_budget_ms);
        } else if (limit_kill) {
                o->status = run_status_to_string(RUN_LIMIT_EXCEEDED);
                snprintf(o->reason, sizeof o->reason, "pids limit of %" PRIu64 " exhausted: forks kept failing, run killed",
                         c->lw.pids);
        } else if (stalled) {
                fail(o, "agent stalled: no output for %lld s (PADDOCK_AGENT_STALL_S)", c->a->cfg->agent_stall_s);
        } else if (c->cli_stream && ((agent_cli_stream_failure(c->cli_stream) && !blame) ||
                                     (code == 0 && !agent_cli_stream_done(c->cli_stream)))) {
                /* the CLI's own verdict (agent_cli_stream.h): Claude's is_error
                 * even with exit 0, Codex's turn.failed; exit 0 with no result
                 * is no success either */
                o->exit_code = code;
                if (agent_cli_stream_failure(c->cli_stream))
                        fail(o, "%s; exit code %d", agent_cli_stream_failure(c->cli_stream), code);
                else
                        fail(o, "%s exited 0 without finishing its task (no result in its stream)",
                             agent_cli_type_name(c->cli.kind));
        } else if (code == 0) {
                o->status = run_status_to_string(RUN_SUCCEEDED);
                o->exit_code = 0;
        } else if (blame) {
                o->status = run_status_to_string(RUN_LIMIT_EXCEEDED);
                o->exit_code = code;
                if (!strcmp(blame, "memory"))
                        snprintf(o->reason, sizeof o->reason, "memory limit of %" PRIu64 " MiB exceeded (OOM kill); the process %s %d",
                                 c->lw.memory_mb, code > 128 ? "was killed by signal" : "exited with code",
                                 code > 128 ? code - 128 : code);
                else if (!strcmp(blame, "pids"))
                        snprintf(o->reason, sizeof o->reason, "pids limit of %" PRIu64 " reached; the process exited with code %d",
                                 c->lw.pids, code);
                else
                        snprintf(o->reason, sizeof o->reason, "disk limit of %" PRIu64 " MiB reached (workspace full); the process exited with code %d",
                                 c->lw.disk_mb, code);
        } else {
                o->exit_code = code;
                fail(o, code > 128 ? "the process was killed by signal %d" : "the process exited with code %d",
                     code > 128 ? code - 128 : code);
        }
        if (c->output_truncated)
                strncat(o->reason, o->reason[0] ? "; output truncated" : "output truncated",
                        sizeof o->reason - strlen(o->reason) - 1);
}

/* The workspace diff artifact (workspace_diff.h). A diff that had to leave
 * something out is still sent, with a `limit` event per reason and a second
 * artifact, workspace.diff.truncated.json, naming what and why: evidence is
 * cut, never silently dropped (issue 9 point 4). */
static void capture_diff(struct run_ctx *c) {
        const struct runner_settings *cfg = c->a->cfg;
        struct workspace_diff_limits lim = {
                .max_files = (size_t)cfg->diff_max_files,
                .max_file_bytes = (uint64_t)cfg->diff_max_file_mb * 1024 * 1024,
                .max_output = (size_t)cfg->max_diff_mb * 1024 * 1024,
                .memory_bytes = (uint64_t)cfg->diff_memory_mb * 1024 * 1024,
                .timeout_ms = (int)cfg->diff_timeout_s * 1000,
                /* the run's own nobody: a uid of its range, nobody else's */
                .uid = runner_userns_host_id(c->sb.slot, 65534),
                .gid = runner_userns_host_id(c->sb.slot, 65534),
                .disk_mb = c->lw.disk_mb,
                .git = cfg->git,
        };
        struct workspace_diff d = {0};
        struct err_detail err = {0};
        int64_t t0 = time_mono_us();
        int r = workspace_diff_run(c->sb.run_dir, &lim, &d, &err);
        char ms[32], bytes[32];
        snprintf(ms, sizeof ms, "%.1f", (double)(time_mono_us() - t0) / 1000.0);
        snprintf(bytes, sizeof bytes, "%zu", d.len);
        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id, "diff_ms", ms, "bytes", bytes), "workspace diff made");
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", c->sb.run_id), "could not capture the workspace diff: %s", err.message);
                limits_event(&c->ev, "diff", 0, "the workspace diff could not be made: %s", err.message);
                return;
        }
        size_t n_cut = json_array_size(d.truncated);
        for (size_t i = 0; i < n_cut; i++) {
                json_t *t = json_array_get(d.truncated, i);
                const char *reason = json_string_value(json_object_get(t, "reason"));
                const char *path = json_string_value(json_object_get(t, "path"));
                /* one event per reason; per-file detail is in the manifest artifact */
                bool seen = false;
                for (size_t k = 0; k < i && !seen; k++)
                        seen = json_equal(json_object_get(json_array_get(d.truncated, k), "reason"),
                                          json_object_get(t, "reason"));
                if (seen)
                        continue;
                limits_event(&c->ev, "diff", (uint64_t)json_integer_value(json_object_get(t, "limit")),
                             "workspace diff truncated (%s%s%s): %s", reason, path ? ": " : "", path ? path : "",
                             json_string_value(json_object_get(t, "detail")));
        }
        struct artifact art = {.name = "workspace.diff", .kind = "diff", .content_type = "text/x-diff",
                               .data = d.text, .size = d.len};
        r = artifacts_send(c->a->producer, c->a->producer_name, c->ev.tenant_id, c->sb.run_id, &art, &err);
        if (r < 0)
                log_ctx(LOG_ERROR, LOG_KV("run", c->sb.run_id), "could not send the workspace diff: %s", err.message);
        else {
                json_t *ev = json_pack("{s:s,s:I,s:s}", "name", art.name, "size", (json_int_t)d.len, "sha256",
                                       art.sha256);
                if (n_cut)
                        json_object_set_new(ev, "truncated", json_true());
                events_emit(&c->ev, "artifact", "platform", ev, NULL, false, true);
                json_decref(ev);
        }
        if (n_cut) {
                json_t *m = json_pack("{s:s,s:b,s:O}", "artifact", "workspace.diff", "truncated", 1, "left_out",
                                      d.truncated);
                _cleanup_free_ char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
                json_decref(m);
                struct artifact ma = {.name = "workspace.diff.truncated.json", .kind = "diff",
                                      .content_type = "application/json", .data = text,
                                      .size = text ? strlen(text) : 0};
                if (text && artifacts_send(c->a->producer, c->a->producer_name, c->ev.tenant_id, c->sb.run_id, &ma,
                                           &err) >= 0) {
                        json_t *ev = json_pack("{s:s,s:I,s:s}", "name", ma.name, "size", (json_int_t)ma.size,
                                               "sha256", ma.sha256);
                        events_emit(&c->ev, "artifact", "platform", ev, NULL, false, true);
                        json_decref(ev);
                } else
                        log_ctx(LOG_ERROR, LOG_KV("run", c->sb.run_id), "could not send the diff's truncation record: %s",
                                text ? err.message : "out of memory");
        }
        workspace_diff_done(&d);
}

/* ---- model limits (issue 11 §3; docs/CONTRACTS.md "Model gateway") ----
 * The gateway tells once that the run reached limits.max_tokens or
 * max_cost_usd (gateway.h gateway_limit_fn, from a gateway thread): the
 * `limit` event goes out at once, supervise() stops the agent like a timeout,
 * and the run ends limit_exceeded with the figures. */

static json_t *model_limit_json(const char *limit, double value, double used) {
        if (!strcmp(limit, "max_tokens"))
                return json_pack("{s:s,s:I,s:I}", "limit", limit, "value", (json_int_t)value, "used", (json_int_t)used);
        return json_pack("{s:s,s:f,s:f}", "limit", limit, "value", value, "used", used);
}

static void on_model_limit(void *userdata, const char *limit, double value, double used) {
        struct run_ctx *c = userdata;
        if (atomic_load(&c->ml.hit))
                return;
        snprintf(c->ml.limit, sizeof c->ml.limit, "%s", limit);
        c->ml.value = value;
        c->ml.used = used;
        atomic_store(&c->ml.hit, true);
        json_t *d = model_limit_json(limit, value, used);
        if (d) {
                char detail[160];
                snprintf(detail, sizeof detail, "model %s of %.*f reached: %.*f used", limit,
                         strcmp(limit, "max_tokens") ? 4 : 0, value, strcmp(limit, "max_tokens") ? 4 : 0, used);
                json_object_set_new(d, "detail", json_string(detail));
                events_emit(&c->ev, "limit", "platform", d, NULL, false, true);
        }
        json_decref(d);
        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id, "limit", limit), "model limit reached");
        if (c->slot->wake_fd > 0) /* constant while the run executes */
                (void)!eventfd_write(c->slot->wake_fd, 1);
}

/* hook_violation_fn: from a hook connection thread, once per run (the hook
 * server calls it only for the first violation). */
static void on_hook_violation(void *userdata, const char *reason) {
        struct run_ctx *c = userdata;
        snprintf(c->hv.reason, sizeof c->hv.reason, "%s", reason);
        atomic_store(&c->hv.hit, true);
        if (c->slot->wake_fd > 0) /* constant while the run executes */
                (void)!eventfd_write(c->slot->wake_fd, 1);
}

/* A run whose agent ran a tool the hook did not allow fails, whatever the
 * agent's own verdict; a timeout or a person's cancel that came first stays. */
static void hook_violation_outcome(struct run_ctx *c, struct outcome *o) {
        if (!atomic_load(&c->hv.hit) || !strcmp(o->status, run_status_to_string(RUN_TIMED_OUT)) || !strcmp(o->status, run_status_to_string(RUN_CANCELLED)))
                return;
        o->exit_code = -1;
        o->limit = NULL;
        fail(o, "%s", c->hv.reason);
}

/* Once the gateway is drained (no call can still cross a limit): a run the
 * limit stopped, or whose agent ended by itself after its calls were cut or
 * refused, ends limit_exceeded; a timeout or cancel that came first stays. */
static void model_limit_outcome(struct run_ctx *c, struct outcome *o) {
        if (!atomic_load(&c->ml.hit) || (strcmp(o->status, run_status_to_string(RUN_SUCCEEDED)) && strcmp(o->status, run_status_to_string(RUN_FAILED))))
                return;
        o->status = run_status_to_string(RUN_LIMIT_EXCEEDED);
        o->limit = c->ml.limit;
        o->limit_value = c->ml.value;
        o->limit_used = c->ml.used;
        o->exit_code = -1;
        bool tokens = !strcmp(c->ml.limit, "max_tokens");
        snprintf(o->reason, sizeof o->reason, "the run reached its %s of %.*f (%.*f used): model calls refused, run stopped",
                 c->ml.limit, tokens ? 0 : 4, c->ml.value, tokens ? 0 : 4, c->ml.used);
}

/* The usage record (paddock.usage): runtime, and the model gateway's final
 * totals with one ModelUsage per model (tokens_in counts cache reads and
 * writes: gateway.h struct gateway_totals). */
static void send_usage(struct run_ctx *c, const struct outcome *o, double runtime_s, const struct gateway_totals *mt,
                       const struct gateway_model_totals *models, size_t n_models) {
        Paddock__V1__Envelope env;
        Paddock__V1__UsageRecord u = PADDOCK__V1__USAGE_RECORD__INIT;
        char msgid[UUID_STR_LEN];
        struct err_detail err = {0};
        if (envelope_init(&env, c->ev.tenant_id, c->sb.run_id, 0, c->a->producer_name, msgid) < 0)
                return;
        u.env = &env;
        u.team_id = (char *)c->ev.team_id;
        u.user_id = (char *)(c->req->launched_by ? c->req->launched_by : "");
        u.runtime_seconds = runtime_s;
        /* the last limits_poll ran after the agent ended, while the cgroup was still there */
        u.cpu_seconds = (double)c->lw.cpu_usage_usec / 1e6;
        u.started_unix_us = o->started_us;
        u.ended_unix_us = o->ended_us;
        u.tokens_in = mt->tokens_in;
        u.tokens_out = mt->tokens_out;
        u.cost_usd = mt->cost_usd;
        _cleanup_free_ Paddock__V1__ModelUsage *mu = n_models ? calloc(n_models, sizeof *mu) : NULL;
        _cleanup_free_ Paddock__V1__ModelUsage **mp = n_models ? calloc(n_models, sizeof *mp) : NULL;
        if (n_models && (!mu || !mp))
                return;
        for (size_t i = 0; i < n_models; i++) {
                const struct gateway_model_totals *m = &models[i];
                paddock__v1__model_usage__init(&mu[i]);
                mu[i].provider = (char *)(m->provider == GATEWAY_OPENAI ? "openai" : "anthropic");
                mu[i].model = (char *)m->model;
                mu[i].calls = m->t.calls;
                mu[i].tokens_in = m->t.tokens_in;
                mu[i].tokens_out = m->t.tokens_out;
                mu[i].cache_read_tokens = m->t.cache_read_tokens;
                mu[i].cache_write_tokens = m->t.cache_write_tokens;
                mu[i].cost_usd = m->t.cost_usd;
                mp[i] = &mu[i];
        }
        u.n_models = n_models;
        u.models = mp;
        if (n_models == 1)
                u.model = (char *)models[0].model;
        size_t len = paddock__v1__usage_record__get_packed_size(&u);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return;
        paddock__v1__usage_record__pack(&u, buf);
        for (int attempt = 0; attempt < 5; attempt++) {
                if (kafka_produce_sync(c->a->producer, TOPIC_USAGE, c->ev.tenant_id, buf, len, 10000, &err) >= 0)
                        return;
                usleep(200000);
        }
        log_ctx(LOG_ERROR, LOG_KV("run", c->sb.run_id), "could not send the usage record: %s", err.message);
}

/* "keys" in the destroyed event: the per-run key of secrets.c, if linked. */
static void verify_keys(const char *run_id, json_t *gone, json_t *present) {
        if (!secrets_run_destroyed)
                return;
        json_array_append_new(secrets_run_destroyed(run_id) ? gone : present, json_string("keys"));
}

/* <state dir>/<dir>/<run id>: the run's seq/ or spool/ file */
static char *state_file_path(const struct agent *a, const char *dir, const char *run_id) {
        char *p;
        return asprintf(&p, "%s/%s/%s", a->state_dir, dir, run_id) < 0 ? NULL : p;
}

/* seq/<run id>: line 1 the last seq possibly delivered (events.c keeps it),
 * line 2 "<tenant> <team>", what a restarted runner needs to end the run. */
static int seq_file_open(const struct agent *a, const char *run_id, const char *tenant, const char *team) {
        _cleanup_free_ char *path = state_file_path(a, "seq", run_id);
        if (!path)
                return -ENOMEM;
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        dprintf(fd, "%020llu\n%s %s\n", 0ULL, tenant[0] ? tenant : "-", team[0] ? team : "-");
        return fd;
}

/* spool/<run id>: the run's records not yet acknowledged (events_persist),
 * produced again by a restarted runner (recover_one). */
static int spool_file_open(const struct agent *a, const char *run_id) {
        _cleanup_free_ char *path = state_file_path(a, "spool", run_id);
        if (!path)
                return -ENOMEM;
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        return fd < 0 ? -errno : fd;
}

/* The run's crash-recovery files, the spool first: a spool left without its
 * seq file would never be looked at (run_recover_interrupted reads seq/). */
static void recovery_files_remove(const struct agent *a, const char *run_id) {
        static const char *const dirs[] = {"spool", "seq"};
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_free_ char *path = state_file_path(a, dirs[i], run_id);
                if (path && unlink(path) < 0 && errno != ENOENT)
                        log_ctx(LOG_WARN, LOG_KV("run", run_id), "could not remove %s: %m", path);
        }
}

/* destroyed, then the terminal status (docs/CONTRACTS.md event order). The
 * terminal status carries who cancelled and how long stopping took. Returns
 * the terminal event's result. */
static int emit_end(struct run_events *ev, const struct outcome *o, json_t *gone, json_t *present) {
        json_t *d = json_pack("{s:O}", "verified_gone", gone);
        if (json_array_size(present) > 0)
                json_object_set(d, "still_present", present);
        events_emit(ev, "destroyed", "platform", d, NULL, false, true);
        json_decref(d);

        d = json_pack("{s:s}", "status", o->status);
        if (o->reason[0])
                json_object_set_new(d, "reason", json_string(o->reason));
        if (o->exit_code >= 0)
                json_object_set_new(d, "exit_code", json_integer(o->exit_code));
        if (o->limit) {
                json_t *l = model_limit_json(o->limit, o->limit_value, o->limit_used);
                json_object_update(d, l);
                json_decref(l);
        }
        if (o->cancel_by[0]) {
                json_object_set_new(d, "requested_by", json_string(o->cancel_by));
                if (o->cancel_delay_ms > 0)
                        json_object_set_new(d, "cancel_delay_ms", json_real(o->cancel_delay_ms));
        }
        int r = events_emit(ev, "status", "platform", d, o->status, true, true);
        json_decref(d);
        return r;
}

static void run_execute(struct agent *a, struct run_slot *slot) {
        const Paddock__V1__RunRequested *req = slot->assigned->request;
        struct run_ctx c = {.a = a, .slot = slot, .req = req};
        struct outcome o = {.status = run_status_to_string(RUN_FAILED), .exit_code = -1};
        struct err_detail err = {0};
        c.phase_end[RUN_PHASE_ACCEPT] = time_mono_us();
        const char *tenant = req->env && req->env->tenant_id ? req->env->tenant_id : "";
        const char *team = req->team_id ? req->team_id : "";
        const Paddock__V1__Limits *lim = req->sandbox ? req->sandbox->limits : NULL;
        int64_t cancel_req = 0;

        c.output_max = (uint64_t)a->cfg->max_output_mb * 1024 * 1024;
        events_init(&c.ev, a->producer, &a->cfg->events, a->producer_name, tenant, slot->run_id, team);
        int seq_fd = seq_file_open(a, slot->run_id, tenant, team);
        int spool_fd = seq_fd >= 0 ? spool_file_open(a, slot->run_id) : -1;
        if (seq_fd >= 0 && spool_fd < 0)
                log_ctx(LOG_WARN, LOG_KV("run", slot->run_id), "could not create the event spool: %s",
                        strerror(-spool_fd));
        if (seq_fd >= 0)
                events_persist(&c.ev, seq_fd, spool_fd);
        else
                log_ctx(LOG_WARN, LOG_KV("run", slot->run_id), "could not create the seq file: %s", strerror(-seq_fd));
        /* a prepared sandbox when the pool has one for this run (pool.h) */
        c.pooled = pool_claim(a->pool, req);
        int sb_r = 0;
        if (c.pooled)
                pool_sandbox_take(c.pooled, &c.sb, slot->run_id);
        else
                sb_r = sandbox_init(&c.sb, a, slot->run_id, (unsigned)(slot - a->slots));
        /* cancelled before it reached us: nothing is created */
        bool cancelled_early = sb_r >= 0 && control_tombstone_take(a, slot->run_id, o.cancel_by, sizeof o.cancel_by,
                                                                     o.reason, sizeof o.reason);
        /* the namespace is made while the provisioning event goes out and the
         * dirs are made (it does not depend on them); joined before the proxy */
        struct err_detail netns_err = {0};
        int netns_r = sb_r >= 0 && !cancelled_early && !c.pooled ? sandbox_netns_begin(&c.sb, &netns_err) : 0;
        /* egress hook: provisioning event with the run's key, proxy, secrets (proxy_hook.h) */
        struct proxy_hook *egress = proxy_hook_provisioning(slot->run_id, req->sandbox, &c.ev);
        proxy_hook_on_model_limit(egress, on_model_limit, &c);
        /* policy hook: the effective rules the hook bridge and platform capture decide with */
        struct err_detail pol_err = {0};
        int pol_r = run_policy_new(slot->run_id, req->sandbox, &c.ev, &c.policy, &pol_err);
        proxy_hook_set_policy(egress, c.policy); /* level egress: host rules before the allowlist */
        c.phase_end[RUN_PHASE_PROVISIONING] = time_mono_us();

        if (sb_r < 0) {
                fail(&o, "out of memory");
                goto finish;
        }
        if (pol_r < 0) {
                fail(&o, "could not read the run's policy: %s", pol_err.message);
                log_ctx(LOG_ERROR, LOG_KV("run", slot->run_id), "%s", o.reason);
                goto finish;
        }
        if (cancelled_early) {
                o.status = cancel_status(o.cancel_by);
                log_ctx(LOG_INFO, LOG_KV("run", slot->run_id, "requested_by", o.cancel_by),
                        "run was cancelled before its assignment arrived");
                goto finish;
        }
        if (limits_init(&c.lw, a, &c.sb, lim && lim->memory_mb ? lim->memory_mb : RUN_DEFAULT_MEMORY_MB,
                        lim && lim->pids ? lim->pids : RUN_DEFAULT_PIDS, lim && lim->disk_mb ? lim->disk_mb : RUN_DEFAULT_DISK_MB,
                        lim && lim->timeout_s ? lim->timeout_s : RUN_DEFAULT_TIMEOUT_S) < 0) {
                fail(&o, "out of memory");
                goto finish;
        }
        int r = c.pooled ? 0 : sandbox_make_dirs(&c.sb, c.lw.disk_mb, &err);
        if (r >= 0)
                r = workspace_write_files(c.sb.workspace, c.sb.baseline,
                                          &(struct workspace_owner){c.sb.agent_uid, c.sb.agent_gid},
                                          req->sandbox ? req->sandbox->files : NULL,
                                          req->sandbox ? req->sandbox->n_files : 0, &err);
        if (r >= 0) /* the task, read-only at /paddock/prompt.md (prompt_file.h) */
                r = prompt_file_write(&c.sb, req->sandbox, &err);
        if (r >= 0) { /* agent adapter hook: HOME / CODEX_HOME of a CLI agent (agent_cli.h) */
                r = agent_cli_prepare(&c.cli, c.sb.run_dir, c.sb.agent_uid, c.sb.agent_gid, req->sandbox, &err);
                c.sb.cli = &c.cli;
        }
        if (r >= 0 && c.cli.kind != AGENT_CLI_NONE) { /* hook bridge: its dirs, the CLIs' hook timeout (hook_server.h) */
                c.cli.hook_timeout_s = run_policy_ask_timeout_s(c.policy) + AGENT_CLI_HOOK_SLACK_S;
                r = hook_server_prepare(&c.sb, a->cfg->hook_binary, &err);
        }
        c.phase_end[RUN_PHASE_DIRS] = time_mono_us();
        if (r >= 0)
                r = netns_r < 0 ? (err = netns_err, netns_r) : sandbox_netns_wait(&c.sb, &err);
        c.phase_end[RUN_PHASE_NETNS] = time_mono_us();
        if (r >= 0)
                r = proxy_hook_prepare(egress, &c.sb, &err);
        c.phase_end[RUN_PHASE_EGRESS] = time_mono_us();
        if (r >= 0 && !c.pooled)
                r = sandbox_write_bundle(&c.sb, a, req, &err);
        c.phase_end[RUN_PHASE_BUNDLE] = time_mono_us();
        if (r < 0) {
                fail(&o, "could not provision the sandbox: %s", err.message);
                log_ctx(LOG_ERROR, LOG_KV("run", slot->run_id), "%s", o.reason);
        } else if (take_cancel(&c, &o, &cancel_req)) {
                if (o.cancel_by[0])
                        o.status = cancel_status(o.cancel_by);
                else
                        fail(&o, "runner shutting down");
        } else {
                /* capture hook: started before crun, stopped once every sandbox
                 * process is gone (all events queued) and before the diff reads
                 * the workspace */
                int listen_fd = c.pooled ? TAKE_FD(c.pooled->capture_fd) : -1;
                c.cap_exec = capture_exec_start(c.sb.run_dir, listen_fd, c.pooled != NULL, &c.ev, c.policy, &err);
                c.cap_files = c.cap_exec ? capture_files_start(c.sb.workspace, &c.ev,
                                                                       (uint64_t)a->cfg->max_file_events,
                                                                       (uint64_t)a->cfg->file_coalesce_ms, &err) : NULL;
                /* level file: opens held or refused by path rules (none: no group) */
                int perm_r = c.cap_files ? capture_files_perm_start(c.sb.workspace, &c.ev, c.policy, &c.cap_perm, &err)
                                         : 0;
                if (c.cap_perm) /* the sandbox's own mounts, once they exist */
                        capture_exec_on_first(c.cap_exec, capture_files_perm_attach, c.cap_perm);
                /* hook bridge: a CLI's tool calls decided before they run (hook_server.h) */
                if (c.cap_files && perm_r >= 0 && c.cli.kind != AGENT_CLI_NONE &&
                    !(c.hooks = hook_server_start(c.sb.run_dir, slot->run_id, c.policy, &c.ev, on_hook_violation, &c,
                                                  &err)))
                        c.cap_files = capture_files_stop(c.cap_files);
                c.phase_end[RUN_PHASE_CAPTURE] = time_mono_us();
                bool supervised = c.cap_files != NULL && perm_r >= 0;
                if (supervised)
                        supervise(&c, &o);
                else {
                        fail(&o, "could not start platform capture: %s", err.message);
                        log_ctx(LOG_ERROR, LOG_KV("run", slot->run_id), "%s", o.reason);
                }
                run_policy_close(c.policy); /* nothing left to hold: answer what waits */
                c.hooks = hook_server_stop(c.hooks); /* its held calls were answered just above */
                c.cap_perm = capture_files_perm_stop(c.cap_perm); /* before the runner reads the workspace */
                c.cap_files = capture_files_stop(c.cap_files);
                c.cap_exec = capture_exec_stop(c.cap_exec);
                if (supervised)
                        capture_diff(&c);
        }

finish:;
        (void)sandbox_netns_wait(&c.sb, NULL); /* still pending after an early failure */
        events_flush(&c.ev);
        double runtime_s = o.ended_mono > o.started_mono ? (double)(o.ended_mono - o.started_mono) / 1e6 : 0.0;

        /* the model gateway's final totals and per-model ones (gateway_hook.h:
         * it stops first, every open call ended), in the `usage` event and
         * the usage record below, and what a model limit made of the run */
        struct gateway_totals model_totals;
        _cleanup_free_ struct gateway_model_totals *models = NULL;
        int n_models = gateway_hook_final_usage(proxy_hook_gateway(egress), &model_totals, &models);
        model_limit_outcome(&c, &o);
        hook_violation_outcome(&c, &o);
        egress = proxy_hook_free(egress); /* proxy closed, secrets and key wiped */
        c.policy = run_policy_free(c.policy); /* held actions answered "run_ended"; after the proxy that decides with it */
        json_t *gone = NULL, *present = NULL;
        pool_sandbox_stop_unstarted(c.pooled, &c.sb);
        if (c.sb.run_dir)
                cleanup_destroy(a, &c.sb, &gone, &present);
        else
                gone = json_array(), present = json_array();
        pool_release(a->pool, TAKE_PTR(c.pooled)); /* its range is free, the pool refills */
        verify_keys(slot->run_id, gone, present);

        json_t *d = json_pack("{s:f}", "runtime_s", runtime_s);
        if (d)
                gateway_usage_json(d, &model_totals);
        events_emit(&c.ev, "usage", "platform", d, NULL, false, true);
        json_decref(d);
        send_usage(&c, &o, runtime_s, &model_totals, models, n_models > 0 ? (size_t)n_models : 0);

        int term = emit_end(&c.ev, &o, gone, present);
        json_decref(gone);
        json_decref(present);
        metric_add(&runner_metric_runs_finished, 1);

        if (term >= 0) {
                char marker[64];
                snprintf(marker, sizeof marker, "%s\n", o.status);
                assignments_mark(a, slot->run_id, marker);
                recovery_files_remove(a, slot->run_id);
        } else {
                /* marker stays "accepted" and seq/<id> stays: the next start ends the run */
                log_ctx(LOG_ERROR, LOG_KV("run", slot->run_id), "terminal event not delivered, left for the next start");
        }
        char rt[32], ec[16];
        snprintf(rt, sizeof rt, "%.3f", runtime_s);
        snprintf(ec, sizeof ec, "%d", o.exit_code);
        log_ctx(LOG_INFO, LOG_KV("run", slot->run_id, "tenant", tenant, "status", o.status, "runtime_s", rt,
                                 "exit_code", ec),
                "run finished");
        {
                /* a cancel that raced the start left a tombstone: the run is over */
                char by[8], why[8];
                (void)control_tombstone_take(a, slot->run_id, by, sizeof by, why, sizeof why);
        }
        events_persist(&c.ev, -1, -1);
        if (seq_fd >= 0)
                close(seq_fd);
        if (spool_fd >= 0)
                close(spool_fd);
        limits_done(&c.lw);
        c.cli_stream = agent_cli_stream_free(c.cli_stream);
        agent_cli_launch_done(&c.cli);
        sandbox_done(&c.sb);
        events_done(&c.ev);
}

void *run_thread(void *userdata) {
        struct run_slot *slot = userdata;
        struct agent *a = slot->agent;
        int wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        pthread_mutex_lock(&a->lock);
        slot->wake_fd = wfd;
        pthread_mutex_unlock(&a->lock);
        if (wfd < 0)
                log_ctx(LOG_WARN, LOG_KV("run", slot->run_id), "no eventfd, cancels wait for the next poll: %m");

        run_execute(a, slot);
        paddock__v1__run_assigned__free_unpacked(slot->assigned, NULL);
        pthread_mutex_lock(&a->lock);
        if (slot->wake_fd > 0)
                close(slot->wake_fd);
        slot->wake_fd = -1;
        slot->cancel_by[0] = slot->cancel_reason[0] = 0;
        slot->cancel_mono_us = 0;
        slot->assigned = NULL;
        slot->finished = true;
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->lock);
        return NULL;
}

/* Ends one run a previous process left unfinished: verifies its sandbox is
 * gone (cleanup_leftovers removed it), produces its spool again (the events
 * the dead process still held: docs/CONTRACTS.md, runner "Restart after a
 * crash"), then destroyed and status failed "runner restarted" after the
 * persisted seq. */
static void recover_one(struct agent *a, const char *run_id) {
        _cleanup_free_ char *path = state_file_path(a, "seq", run_id);
        char marker[64] = "";
        _cleanup_free_ char *marker_path = NULL;
        if (!path || asprintf(&marker_path, "%s/%s", a->done_dir, run_id) < 0)
                return;
        _cleanup_fclose_ FILE *mf = fopen(marker_path, "re");
        if (mf && !fgets(marker, sizeof marker, mf))
                marker[0] = 0;
        if (marker[0] && strcmp(marker, "accepted\n") != 0) {
                /* it ended; only its files' removal was missed */
                recovery_files_remove(a, run_id);
                return;
        }
        _cleanup_fclose_ FILE *f = path ? fopen(path, "re") : NULL;
        unsigned long long seq = 0;
        char tenant[64] = "", team[64] = "";
        if (!f || fscanf(f, "%llu %63s %63s", &seq, tenant, team) != 3 || !id_is_uuid(tenant)) {
                log_ctx(LOG_ERROR, LOG_KV("run", run_id), "unreadable seq file, cannot end the interrupted run");
                recovery_files_remove(a, run_id);
                return;
        }
        struct run_events ev;
        events_init(&ev, a->producer, &a->cfg->events, a->producer_name, tenant, run_id, strcmp(team, "-") ? team : "");
        ev.seq = seq;
        /* before the end: every seq of the spool is at most the persisted one */
        _cleanup_free_ char *spool = state_file_path(a, "spool", run_id);
        _cleanup_close_ int spool_fd = spool ? open(spool, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
        int replayed = spool_fd >= 0 ? events_replay(&ev, spool_fd) : 0;
        if (replayed == -ESHUTDOWN) { /* both files stay for the next start */
                events_done(&ev);
                return;
        }
        if (replayed < 0)
                log_ctx(LOG_ERROR, LOG_KV("run", run_id), "could not read the run's event spool: %s",
                        strerror(-replayed));
        else if (replayed > 0)
                log_ctx(LOG_INFO, LOG_KV("run", run_id), "produced %d spooled records of the interrupted run again",
                        replayed);
        struct sandbox sb;
        json_t *gone = NULL, *present = NULL;
        if (sandbox_init(&sb, a, run_id, 0) == 0)
                cleanup_destroy(a, &sb, &gone, &present);
        else
                gone = json_array(), present = json_array();
        struct outcome o = {.status = run_status_to_string(RUN_FAILED), .exit_code = -1};
        snprintf(o.reason, sizeof o.reason, "runner restarted");
        int r = emit_end(&ev, &o, gone, present);
        json_decref(gone);
        json_decref(present);
        sandbox_done(&sb);
        events_done(&ev);
        if (r >= 0) {
                assignments_mark(a, run_id, "failed\n");
                recovery_files_remove(a, run_id);
                log_ctx(LOG_WARN, LOG_KV("run", run_id), "ended a run interrupted by a runner restart");
        }
}

void run_recover_interrupted(struct agent *a) {
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s/seq", a->state_dir) < 0)
                return;
        DIR *d = opendir(dir);
        if (!d)
                return;
        char ids[256][UUID_STR_LEN];
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)) && n < ELEMENTSOF(ids))
                if (id_is_uuid(de->d_name))
                        memcpy(ids[n++], de->d_name, UUID_STR_LEN);
        closedir(d);
        for (size_t i = 0; i < n && !shutdown_requested(); i++)
                recover_one(a, ids[i]);
}
