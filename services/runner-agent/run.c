#include "run.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifacts.h"
#include "assignments.h"
#include "cleanup.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "events.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "metrics_runner.h"
#include "paddock/v1/usage.pb-c.h"
#include "proto/envelope.h"
#include "sandbox.h"
#include "subprocess.h"
#include "workspace.h"

#define DEFAULT_TIMEOUT_S 1800
#define OUTPUT_CHUNK 4096
#define OUTPUT_LINGER_US 50000
#define KILL_GRACE_MS 10000

struct stream_buf {
        const char *name;
        int fd;
        unsigned char buf[OUTPUT_CHUNK];
        size_t len;
        int64_t first_us;       /* when the oldest buffered byte arrived */
};

struct run_ctx {
        struct agent *a;
        struct run_slot *slot;
        struct run_events ev;
        struct sandbox sb;
        const Paddock__V1__RunRequested *req;
        bool running;            /* exec + running events sent */
        uint64_t output_bytes, output_max;
        bool output_truncated;
        char early_stderr[512];  /* crun's own errors before the container ran */
        size_t early_len;
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

static void emit_bytes(struct run_ctx *c, struct stream_buf *s, size_t n) {
        if (n == 0)
                return;
        if (c->output_bytes + n > c->output_max) {
                if (!c->output_truncated)
                        log_ctx(LOG_WARN, LOG_KV("run", c->sb.run_id),
                                "output exceeds %" PRIu64 " bytes, dropping the rest", c->output_max);
                c->output_truncated = true;
        } else {
                char text[OUTPUT_CHUNK * 3];
                size_t tl = utf8_sanitize(s->buf, n, text);
                if (events_output(&c->ev, s->name, text, tl) >= 0)
                        metric_add(&runner_metric_output_events, 1);
                c->output_bytes += n;
        }
        memmove(s->buf, s->buf + n, s->len - n);
        s->len -= n;
        s->first_us = s->len ? time_mono_us() : 0;
}

/* Emits what is ready: complete lines, a full chunk, or anything older than
 * 50 ms (force: everything, e.g. at EOF). A split multi-byte character stays
 * buffered until its rest arrives. */
static void stream_emit(struct run_ctx *c, struct stream_buf *s, bool force) {
        if (!c->running || s->len == 0)
                return;
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
        if (s->len == 0)
                s->first_us = time_mono_us();
        s->len += (size_t)n;
        return true;
}

static void emit_exec(struct run_ctx *c, pid_t init_pid, pid_t crun_pid) {
        const Paddock__V1__AgentSpec *agent = c->req->sandbox->agent;
        json_t *argv = json_array();
        for (size_t i = 0; i < agent->n_command; i++)
                json_array_append_new(argv, json_string(agent->command[i]));
        json_t *d = json_pack("{s:i,s:i,s:o,s:s}", "pid", (int)init_pid, "ppid", (int)crun_pid, "argv",
                              argv, "cwd", "/workspace");
        events_emit(&c->ev, "exec", "platform", d, NULL, false, true);
        json_decref(d);
}

/* Kills the container; crun kill fails until the container exists, so it is
 * retried while crun run is still alive. */
static void kill_container(struct run_ctx *c, pid_t crun_pid) {
        for (int i = 0; i < 50; i++) {
                if (sandbox_kill(&c->sb, c->a) == 0)
                        return;
                if (kill(crun_pid, 0) < 0)
                        return;
                usleep(100000);
        }
        /* last resort: crun itself; the container's pid namespace dies with its init */
        kill(crun_pid, SIGKILL);
}

static int crun_exit_code(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return 255;
}

struct outcome {
        const char *status;       /* terminal status */
        char reason[600];
        int exit_code;            /* -1: none */
        int64_t started_us, ended_us; /* wall clock of the container process */
        int64_t started_mono, ended_mono;
};

static void fail(struct outcome *o, const char *fmt, ...) _printf_(2, 3);
static void fail(struct outcome *o, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        o->status = "failed";
        vsnprintf(o->reason, sizeof o->reason, fmt, ap);
        va_end(ap);
}

/* Runs the container to its end (exit, timeout or cancel) while streaming output. */
static void supervise(struct run_ctx *c, struct outcome *o) {
        struct stream_buf out = {.name = "stdout", .fd = -1}, err = {.name = "stderr", .fd = -1};
        pid_t crun_pid;
        const Paddock__V1__Limits *lim = c->req->sandbox->limits;
        uint32_t timeout_s = lim && lim->timeout_s ? lim->timeout_s : DEFAULT_TIMEOUT_S;

        int r = sandbox_start(&c->sb, c->a, &out.fd, &err.fd, &crun_pid);
        if (r < 0) {
                fail(o, "could not start crun: %s", strerror(-r));
                return;
        }
        o->started_us = time_now_us();
        o->started_mono = time_mono_us();
        int64_t deadline = o->started_mono + (int64_t)timeout_s * 1000000;
        bool killed = false, timed_out = false, cancelled = false;
        pid_t init_pid = 0;

        while (out.fd >= 0 || err.fd >= 0) {
                if (!c->running && (init_pid = sandbox_read_pid(&c->sb)) > 0) {
                        int64_t startup_us = time_mono_us() - c->slot->received_mono_us;
                        char ms[32];
                        snprintf(ms, sizeof ms, "%.1f", (double)startup_us / 1000.0);
                        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id, "startup_ms", ms),
                                "container running");
                        emit_exec(c, init_pid, crun_pid);
                        events_status(&c->ev, "running", NULL, -1, false);
                        c->running = true;
                }
                int64_t now = time_mono_us();
                if (!killed && now >= deadline) {
                        timed_out = killed = true;
                        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "run timed out after %u s", timeout_s);
                        kill_container(c, crun_pid);
                }
                if (!killed && atomic_load(&c->slot->cancel)) {
                        cancelled = killed = true;
                        log_ctx(LOG_INFO, LOG_KV("run", c->sb.run_id), "cancelling run: runner shutting down");
                        kill_container(c, crun_pid);
                }
                struct pollfd p[2] = {{.fd = -1}, {.fd = -1}};
                struct stream_buf *sv[2] = {&out, &err};
                int wait_ms = c->running ? 1000 : 2;
                for (int i = 0; i < 2; i++) {
                        if (sv[i]->fd >= 0 && sv[i]->len < sizeof sv[i]->buf) {
                                p[i].fd = sv[i]->fd;
                                p[i].events = POLLIN;
                        }
                        if (sv[i]->len && c->running) {
                                int64_t left = (OUTPUT_LINGER_US - (now - sv[i]->first_us)) / 1000;
                                if (left < wait_ms)
                                        wait_ms = left > 0 ? (int)left : 0;
                        }
                }
                int64_t to_deadline = (deadline - now) / 1000;
                if (!killed && to_deadline < wait_ms)
                        wait_ms = to_deadline > 0 ? (int)to_deadline : 0;
                if (poll(p, 2, wait_ms) > 0)
                        for (int i = 0; i < 2; i++)
                                if (p[i].revents)
                                        stream_read(c, sv[i]);
                for (int i = 0; i < 2; i++)
                        stream_emit(c, sv[i], sv[i]->fd < 0);
        }
        int status = subprocess_wait(crun_pid, -1);
        o->ended_us = time_now_us();
        o->ended_mono = time_mono_us();
        if (!c->running && (init_pid = sandbox_read_pid(&c->sb)) > 0) {
                /* the process came and went between two looks */
                emit_exec(c, init_pid, crun_pid);
                events_status(&c->ev, "running", NULL, -1, false);
                c->running = true;
                stream_emit(c, &out, true);
                stream_emit(c, &err, true);
        }
        int code = status >= 0 ? crun_exit_code(status) : 255;
        if (timed_out) {
                o->status = "timed_out";
                snprintf(o->reason, sizeof o->reason, "the run exceeded its timeout of %u s", timeout_s);
        } else if (cancelled) {
                fail(o, "runner shutting down");
        } else if (!c->running) {
                while (c->early_len && (c->early_stderr[c->early_len - 1] == '\n' || c->early_stderr[c->early_len - 1] == '\r'))
                        c->early_stderr[--c->early_len] = 0;
                fail(o, "the sandbox did not start: %s",
                     c->early_len ? c->early_stderr : "crun exited without starting the process");
                o->exit_code = code;
        } else if (code == 0) {
                o->status = "succeeded";
                o->exit_code = 0;
        } else {
                o->exit_code = code;
                fail(o, code > 128 ? "the process was killed by signal %d" : "the process exited with code %d",
                     code > 128 ? code - 128 : code);
        }
        if (c->output_truncated)
                strncat(o->reason, o->reason[0] ? "; output truncated" : "output truncated",
                        sizeof o->reason - strlen(o->reason) - 1);
}

static void capture_diff(struct run_ctx *c) {
        _cleanup_free_ char *diff = NULL;
        size_t len = 0;
        struct err_detail err = {0};
        size_t max = (size_t)c->a->cfg->max_diff_mb * 1024 * 1024;
        int r = workspace_diff(c->sb.run_dir, max, &diff, &len, &err);
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", c->sb.run_id), "could not capture the workspace diff: %s", err.message);
                return;
        }
        if (err.message[0])
                log_ctx(LOG_WARN, LOG_KV("run", c->sb.run_id), "%s", err.message);
        struct artifact art = {.name = "workspace.diff", .kind = "diff", .content_type = "text/x-diff",
                               .data = diff, .size = len};
        r = artifacts_send(c->a->producer, c->a->producer_name, c->ev.tenant_id, c->sb.run_id, &art, &err);
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", c->sb.run_id), "could not send the workspace diff: %s", err.message);
                return;
        }
        json_t *d = json_pack("{s:s,s:I,s:s}", "name", art.name, "size", (json_int_t)len, "sha256", art.sha256);
        events_emit(&c->ev, "artifact", "platform", d, NULL, false, true);
        json_decref(d);
}

static void send_usage(struct run_ctx *c, const struct outcome *o, double runtime_s) {
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
        u.started_unix_us = o->started_us;
        u.ended_unix_us = o->ended_us;
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

static void run_execute(struct agent *a, struct run_slot *slot) {
        const Paddock__V1__RunRequested *req = slot->assigned->request;
        struct run_ctx c = {.a = a, .slot = slot, .req = req};
        struct outcome o = {.status = "failed", .exit_code = -1};
        struct err_detail err = {0};
        const char *tenant = req->env && req->env->tenant_id ? req->env->tenant_id : "";
        const char *team = req->team_id ? req->team_id : "";

        c.output_max = (uint64_t)a->cfg->max_output_mb * 1024 * 1024;
        events_init(&c.ev, a->producer, a->producer_name, tenant, slot->run_id, team);
        events_status(&c.ev, "provisioning", NULL, -1, false);

        if (sandbox_init(&c.sb, a, slot->run_id) < 0) {
                fail(&o, "out of memory");
                goto finish;
        }
        int r = sandbox_make_dirs(&c.sb, &err);
        if (r >= 0)
                r = workspace_write_files(c.sb.workspace, c.sb.baseline,
                                          req->sandbox ? req->sandbox->files : NULL,
                                          req->sandbox ? req->sandbox->n_files : 0, &err);
        if (r >= 0)
                r = sandbox_create_netns(&c.sb, &err);
        if (r >= 0)
                r = sandbox_write_bundle(&c.sb, a, req, &err);
        if (r < 0) {
                fail(&o, "could not provision the sandbox: %s", err.message);
                log_ctx(LOG_ERROR, LOG_KV("run", slot->run_id), "%s", o.reason);
        } else if (atomic_load(&slot->cancel)) {
                fail(&o, "runner shutting down");
        } else {
                supervise(&c, &o);
                capture_diff(&c);
        }

finish:;
        events_flush(&c.ev);
        double runtime_s = o.ended_mono > o.started_mono ? (double)(o.ended_mono - o.started_mono) / 1e6 : 0.0;

        json_t *gone = NULL, *present = NULL;
        if (c.sb.run_dir)
                cleanup_destroy(a, &c.sb, &gone, &present);
        else
                gone = json_array(), present = json_array();

        json_t *d = json_pack("{s:f}", "runtime_s", runtime_s);
        events_emit(&c.ev, "usage", "platform", d, NULL, false, true);
        json_decref(d);
        send_usage(&c, &o, runtime_s);

        d = json_pack("{s:o}", "verified_gone", gone);
        if (json_array_size(present) > 0)
                json_object_set(d, "still_present", present);
        events_emit(&c.ev, "destroyed", "platform", d, NULL, false, true);
        json_decref(d);
        json_decref(present);

        events_status(&c.ev, o.status, o.reason[0] ? o.reason : NULL, o.exit_code, true);
        metric_add(&runner_metric_runs_finished, 1);

        char marker[64];
        snprintf(marker, sizeof marker, "%s\n", o.status);
        assignments_mark(a, slot->run_id, marker);
        char rt[32], ec[16];
        snprintf(rt, sizeof rt, "%.3f", runtime_s);
        snprintf(ec, sizeof ec, "%d", o.exit_code);
        log_ctx(LOG_INFO, LOG_KV("run", slot->run_id, "tenant", tenant, "status", o.status, "runtime_s", rt,
                                 "exit_code", ec),
                "run finished");
        sandbox_done(&c.sb);
}

void *run_thread(void *userdata) {
        struct run_slot *slot = userdata;
        struct agent *a = slot->agent;
        run_execute(a, slot);
        paddock__v1__run_assigned__free_unpacked(slot->assigned, NULL);
        pthread_mutex_lock(&a->lock);
        slot->assigned = NULL;
        slot->finished = true;
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->lock);
        return NULL;
}
