/* The hook bridge's runner side (hook_server.h). */
#include "hook_server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/timeutil.h"
#include "events.h"
#include "hook/hook_wire.h"
#include "policy/policy_engine.h"
#include "prompt_file.h"
#include "run_policy.h"
#include "sandbox.h"

#define INPUT_MAX (16 * 1024) /* tool_input in approval_requested and results in tool_result */
#define CALLS_MAX 256         /* PreToolUse decisions kept for their PostToolUse */
#define WORKSPACE "/workspace"

struct call {
        char id[128];         /* tool_use_id */
        const char *action;   /* static */
        char rule[160];
        char approval_id[UUID_STR_LEN];
        int64_t answered_mono;
};

struct conn {
        int fd;
        int state; /* 0 free, 1 running, 2 finished (to join) */
        pthread_t thread;
        struct hook_server *hs;
};

struct hook_server {
        const char *run_id;
        struct run_policy *rp;
        struct run_events *ev;
        hook_violation_fn on_violation;
        void *userdata;
        bool violated;        /* on_violation called (under lock) */
        char *sock_path;
        int listen_fd;
        int wake[2];
        pthread_t accept_thread;
        pthread_mutex_t lock; /* conns, calls, stopping */
        bool stopping;
        struct conn conns[HOOK_SERVER_MAX_CONNS];
        struct call calls[CALLS_MAX];
        size_t next_call;
};

/* ---- provisioning and the bundle */

static char *paddock_dir(const struct sandbox *sb) {
        char *p;
        return asprintf(&p, "%s/prompt", sb->run_dir) < 0 ? NULL : p; /* prompt_file.c's dir, mounted at /paddock */
}

int hook_server_prepare(const struct sandbox *sb, const char *binary, struct err_detail *reterr) {
        struct stat st;
        if (!binary || !binary[0] || stat(binary, &st) < 0 || !S_ISREG(st.st_mode))
                return err_set(reterr, -ENOENT, "hook",
                               "the agent CLIs' hook binary %s is missing (PADDOCK_HOOK_BINARY): a CLI does not run "
                               "without its policy hook",
                               binary && binary[0] ? binary : "(unset)");
        _cleanup_free_ char *pdir = paddock_dir(sb), *bin = NULL, *file = NULL, *run = NULL, *sockdir = NULL;
        if (!pdir || asprintf(&bin, "%s/bin", pdir) < 0 || asprintf(&file, "%s/bin/paddock-hook", pdir) < 0 ||
            asprintf(&run, "%s/run", pdir) < 0 || asprintf(&sockdir, "%s/hook", sb->run_dir) < 0)
                return -ENOMEM;
        /* root's dirs, readable by the sandbox user; mount points for the
         * binary and the socket dir (the read-only root cannot get them) */
        if ((mkdir(pdir, 0755) < 0 && errno != EEXIST) || mkdir(bin, 0755) < 0 || mkdir(run, 0755) < 0 ||
            mkdir(sockdir, 0755) < 0)
                return err_set(reterr, -errno, "hook", "cannot create the hook's dirs in %s: %m", sb->run_dir);
        int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0555);
        if (fd < 0)
                return err_set(reterr, -errno, "hook", "cannot create %s: %m", file);
        close(fd);
        return 0;
}

int hook_server_add_to_bundle(const struct sandbox *sb, const char *binary, const Paddock__V1__SandboxSnapshot *snap,
                              json_t *mounts) {
        _cleanup_free_ char *pdir = paddock_dir(sb), *sockdir = NULL;
        if (!pdir || asprintf(&sockdir, "%s/hook", sb->run_dir) < 0)
                return -ENOMEM;
        json_t *m;
        /* a run with a prompt has /paddock already (prompt_file.c) */
        if (!(snap && snap->prompt && snap->prompt->rendered)) {
                m = json_pack("{s:s, s:s, s:s, s:[s,s,s,s,s]}", "destination", HOOK_SERVER_SANDBOX_DIR, "type", "bind",
                              "source", pdir, "options", "bind", "ro", "nosuid", "nodev", "noexec");
                if (!m || json_array_append_new(mounts, m) < 0)
                        return -ENOMEM;
        }
        m = json_pack("{s:s, s:s, s:s, s:[s,s,s,s]}", "destination", AGENT_CLI_HOOK_BINARY, "type", "bind",
                      "source", binary, "options", "bind", "ro", "nosuid", "nodev");
        if (!m || json_array_append_new(mounts, m) < 0)
                return -ENOMEM;
        m = json_pack("{s:s, s:s, s:s, s:[s,s,s,s,s]}", "destination", HOOK_SERVER_SANDBOX_SOCKET_DIR, "type", "bind",
                      "source", sockdir, "options", "bind", "ro", "nosuid", "nodev", "noexec");
        if (!m || json_array_append_new(mounts, m) < 0)
                return -ENOMEM;
        return 0;
}

/* ---- the request */

/* p workspace-relative inside /workspace, absolute elsewhere; a relative p
 * is taken against cwd (Codex gives relative paths) */
static const char *workspace_path(const char *p, const char *cwd, char *buf, size_t size) {
        if (!p || !p[0])
                return NULL;
        if (p[0] != '/') {
                if (!cwd || !cwd[0] || !strcmp(cwd, WORKSPACE))
                        return p;
                snprintf(buf, size, "%s/%s", cwd, p);
                p = buf;
        }
        size_t wl = strlen(WORKSPACE);
        if (!strncmp(p, WORKSPACE, wl) && (p[wl] == '/' || !p[wl])) {
                p += wl;
                while (*p == '/')
                        p++;
                return p[0] ? p : ".";
        }
        return p;
}

void hook_server_request_of(json_t *input, struct policy_request *req, char *buf) {
        *req = (struct policy_request){0};
        size_t used = 0;
        req->tool = json_string_value(json_object_get(input, "tool_name"));
        json_t *ti = json_object_get(input, "tool_input");
        json_t *cmd = json_object_get(ti, "command");
        if (!cmd)
                cmd = json_object_get(ti, "cmd");
        if (json_is_string(cmd))
                req->command = json_string_value(cmd);
        else if (json_is_array(cmd)) {
                size_t i;
                json_t *w;
                char *out = buf;
                size_t n = 0;
                json_array_foreach(cmd, i, w) {
                        const char *s = json_string_value(w);
                        if (!s)
                                continue;
                        int k = snprintf(out + n, HOOK_SERVER_REQ_BUF / 2 - n, "%s%s", n ? " " : "", s);
                        if (k < 0 || (size_t)k >= HOOK_SERVER_REQ_BUF / 2 - n)
                                break;
                        n += (size_t)k;
                }
                if (n) {
                        req->command = out;
                        used = n + 1;
                }
        }
        const char *path = NULL;
        static const char *const keys[] = {"file_path", "path", "notebook_path"};
        for (size_t i = 0; i < ELEMENTSOF(keys) && !path; i++)
                path = json_string_value(json_object_get(ti, keys[i]));
        req->path = workspace_path(path, json_string_value(json_object_get(input, "cwd")), buf + used,
                                   HOOK_SERVER_REQ_BUF / 2 - used);
        if (req->tool && !strncmp(req->tool, "mcp__", 5)) {
                const char *s = req->tool + 5, *sep = strstr(s, "__");
                size_t off = HOOK_SERVER_REQ_BUF / 2;
                if (sep && sep > s && sep[2] && (size_t)(sep - s) < HOOK_SERVER_REQ_BUF / 2 - 1) {
                        memcpy(buf + off, s, (size_t)(sep - s));
                        buf[off + (size_t)(sep - s)] = 0;
                        req->mcp_server = buf + off;
                        req->mcp_tool = sep + 2;
                }
        }
}

/* A shell command's words taken as paths too (`cat .env` is a read of .env:
 * a path rule decides it at the hook as it would a Read): the strictest of
 * the command's own decision and each word's. Words are split on blanks,
 * quotes stripped; a word starting with '-' is an option. The platform's file
 * level is what sees every open (capture_files). */
struct policy_decision hook_server_decide_words(const struct policy_engine *pe, struct policy_request *req,
                                                const char *cwd, char *pathbuf, size_t pathsize) {
        struct policy_decision best = policy_decide(pe, req);
        if (!req->command || req->path || best.action == POLICY_DENY)
                return best;
        char word[1024];
        const char *s = req->command;
        while (*s) {
                while (*s == ' ' || *s == '\t' || *s == '\n' || *s == ';' || *s == '|' || *s == '&' || *s == '<' ||
                       *s == '>' || *s == '(' || *s == ')')
                        s++;
                size_t n = 0;
                while (*s && !strchr(" \t\n;|&<>()", *s)) {
                        if (*s != '"' && *s != '\'' && n < sizeof word - 1)
                                word[n++] = *s;
                        s++;
                }
                word[n] = 0;
                if (!n || word[0] == '-')
                        continue;
                char tmp[2048];
                const char *p = workspace_path(word, cwd, tmp, sizeof tmp);
                struct policy_request wr = *req;
                wr.path = p;
                struct policy_decision d = policy_decide(pe, &wr);
                if (d.rule >= 0 && d.action > best.action) {
                        best = d;
                        snprintf(pathbuf, pathsize, "%s", p);
                        req->path = pathbuf;
                        if (d.action == POLICY_DENY)
                                break;
                }
        }
        return best;
}

/* ---- answers */

static void reply(int fd, bool allow, const char *reason) {
        json_t *a = json_pack("{s:s, s:s}", "decision", allow ? "allow" : "deny", "reason", reason);
        char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
        json_decref(a);
        if (!s)
                return; /* the hook sees EOF: deny */
        (void)hook_wire_send(fd, s, strlen(s)); /* lost: the hook sees EOF and denies */
        free(s);
}

/* a JSON value as at most INPUT_MAX bytes: itself, or its text cut (marked) */
static json_t *bounded(json_t *v, bool *cut) {
        *cut = false;
        if (!v)
                return json_null();
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s)
                return json_null();
        size_t n = strlen(s);
        if (n <= INPUT_MAX) {
                free(s);
                return json_incref(v);
        }
        while (n > INPUT_MAX - 64 || (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80))
                n--; /* on a UTF-8 boundary */
        *cut = true;
        json_t *r = json_stringn(s, n);
        free(s);
        return r ? r : json_null();
}

static void remember(struct hook_server *hs, const char *id, const char *action, const char *rule,
                     const char *approval_id) {
        if (!id)
                return;
        pthread_mutex_lock(&hs->lock);
        struct call *c = &hs->calls[hs->next_call++ % CALLS_MAX];
        snprintf(c->id, sizeof c->id, "%s", id);
        c->action = action;
        snprintf(c->rule, sizeof c->rule, "%s", rule ? rule : "");
        snprintf(c->approval_id, sizeof c->approval_id, "%s", approval_id ? approval_id : "");
        c->answered_mono = time_mono_us();
        pthread_mutex_unlock(&hs->lock);
}

static void pre_tool_use(struct hook_server *hs, int fd, const char *cli, json_t *input) {
        char buf[HOOK_SERVER_REQ_BUF], pathbuf[2048];
        struct policy_request req;
        hook_server_request_of(input, &req, buf);
        const char *id = json_string_value(json_object_get(input, "tool_use_id"));
        if (!req.tool) {
                reply(fd, false, "paddock: the hook input names no tool_name: the tool call is denied");
                return;
        }
        struct policy_decision d =
                hook_server_decide_words(run_policy_engine(hs->rp), &req,
                                         json_string_value(json_object_get(input, "cwd")), pathbuf, sizeof pathbuf);
        json_t *extra = json_pack("{s:s, s:s?}", "cli", cli, "tool_use_id", id);
        /* the event names the deciding rule (run_policy_decide decides the
         * same request again: same engine, same answer) */
        d = run_policy_decide(hs->rp, "hook", &req, extra, true);
        json_decref(extra);
        const char *src = policy_rule_source(run_policy_engine(hs->rp), d.rule);
        char rule[160];
        if (src)
                snprintf(rule, sizeof rule, "%s", src);
        else
                snprintf(rule, sizeof rule, "rules[%d]", d.rule);
        char reason[512];
        if (d.action == POLICY_ALLOW) {
                remember(hs, id, "allow", d.rule >= 0 ? rule : NULL, NULL);
                reply(fd, true, d.rule >= 0 ? "allowed by the Paddock policy" : "no Paddock policy rule applies");
                return;
        }
        if (d.action == POLICY_DENY) {
                snprintf(reason, sizeof reason, "denied by the Paddock policy (rule %s)", rule);
                remember(hs, id, "deny", rule, NULL);
                reply(fd, false, reason);
                return;
        }
        /* ask: held until a person decides, the deadline or the run's end */
        bool cut;
        json_t *ask_extra = json_pack("{s:s, s:s?, s:o}", "cli", cli, "tool_use_id", id, "input",
                                      bounded(json_object_get(input, "tool_input"), &cut));
        if (ask_extra && cut)
                json_object_set_new(ask_extra, "input_truncated", json_true());
        char by[RUN_POLICY_BY_MAX], approval_id[UUID_STR_LEN];
        bool ok = run_policy_ask_wait(hs->rp, "tool", &req, d.rule, ask_extra, by, approval_id);
        json_decref(ask_extra);
        if (ok) {
                /* one approval, one action: the same command passes exec once more */
                if (req.command)
                        run_policy_grant_command(hs->rp, req.command, HOOK_SERVER_GRANT_TTL_S);
                snprintf(reason, sizeof reason, "approved by %s (approval %s, rule %s)", by, approval_id, rule);
        } else if (!strcmp(by, "timeout"))
                snprintf(reason, sizeof reason,
                         "denied: nobody decided approval %s (rule %s) before its deadline", approval_id, rule);
        else if (!strcmp(by, "run_ended"))
                snprintf(reason, sizeof reason, "denied: the run is ending (approval %s, rule %s)", approval_id, rule);
        else if (!strcmp(by, "error"))
                snprintf(reason, sizeof reason, "denied: the approval could not be requested (rule %s)", rule);
        else
                snprintf(reason, sizeof reason, "denied by %s (approval %s, rule %s)", by, approval_id, rule);
        remember(hs, id, ok ? "allow" : "deny", rule, approval_id[0] ? approval_id : NULL);
        reply(fd, ok, reason);
}

/* A tool ran without this server's allow (hook_violation_fn): recorded, and
 * the run is ended by its owner. decided: "deny", or NULL when no PreToolUse
 * of that call reached the server (killed, crashed, or never run). */
static void violation(struct hook_server *hs, const char *cli, const char *tool, const char *id,
                      const char *decided) {
        json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?}", "level", "hook", "action", "deny",
                              "violation", "ran_without_allow", "cli", cli, "tool", tool, "tool_use_id", id,
                              "hook_decision", decided);
        if (d)
                events_emit(hs->ev, "policy_decision", "platform", d, NULL, false, true);
        json_decref(d);
        char reason[400];
        snprintf(reason, sizeof reason,
                 "policy: %s ran tool %s (call %s) that the policy hook %s: its hook was killed or bypassed; run stopped",
                 cli, tool ? tool : "?", id ? id : "?", decided ? "denied" : "never allowed");
        log_ctx(LOG_WARN, LOG_KV("run", hs->run_id, "cli", cli), "%s", reason);
        pthread_mutex_lock(&hs->lock);
        bool first = !hs->violated;
        hs->violated = true;
        pthread_mutex_unlock(&hs->lock);
        if (first && hs->on_violation)
                hs->on_violation(hs->userdata, reason);
}

static void post_tool_use(struct hook_server *hs, int fd, const char *cli, json_t *input) {
        const char *id = json_string_value(json_object_get(input, "tool_use_id"));
        const char *tool = json_string_value(json_object_get(input, "tool_name"));
        bool cut;
        json_t *d = json_pack("{s:s, s:s?, s:s?, s:o}", "cli", cli, "tool_use_id", id, "tool", tool, "result",
                              bounded(json_object_get(input, "tool_response"), &cut));
        if (d && cut)
                json_object_set_new(d, "truncated", json_true());
        const char *decided = NULL; /* what PreToolUse answered this call here */
        pthread_mutex_lock(&hs->lock);
        for (size_t i = 0; d && id && i < CALLS_MAX; i++) {
                struct call *c = &hs->calls[i];
                if (!c->action || strcmp(c->id, id))
                        continue;
                decided = c->action;
                json_object_set_new(d, "duration_ms",
                                    json_real((double)(time_mono_us() - c->answered_mono) / 1000.0));
                json_object_set_new(d, "decision",
                                    json_pack("{s:s, s:s?, s:s?}", "action", c->action, "rule",
                                              c->rule[0] ? c->rule : NULL, "approval_id",
                                              c->approval_id[0] ? c->approval_id : NULL));
                c->action = NULL; /* one result per call */
                break;
        }
        pthread_mutex_unlock(&hs->lock);
        json_t *dm = json_object_get(input, "duration_ms"); /* Claude measures it itself */
        if (d && json_is_number(dm))
                json_object_set(d, "duration_ms", dm);
        if (d)
                events_emit(hs->ev, "tool_result", "agent", d, NULL, false, false);
        json_decref(d);
        reply(fd, true, "recorded");
        if (!decided || strcmp(decided, "allow"))
                violation(hs, cli, tool, id, decided);
}

static void *conn_thread(void *userdata) {
        struct conn *c = userdata;
        struct hook_server *hs = c->hs;
        char *body = NULL;
        size_t n = 0;
        json_t *msg = NULL;
        int r = hook_wire_recv(c->fd, &body, &n);
        if (r == -EMSGSIZE)
                reply(c->fd, false, "paddock: hook request empty or over 1 MiB: the tool call is denied");
        else if (r == 0) {
                json_error_t je;
                msg = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
                const char *cli = json_string_value(json_object_get(msg, "cli"));
                const char *event = json_string_value(json_object_get(msg, "event"));
                json_t *input = json_object_get(msg, "input");
                if (!cli || (strcmp(cli, "claude-code") && strcmp(cli, "codex")) || !event || !json_is_object(input))
                        reply(c->fd, false, "paddock: malformed hook request: the tool call is denied");
                else if (!strcmp(event, "PreToolUse"))
                        pre_tool_use(hs, c->fd, cli, input);
                else if (!strcmp(event, "PostToolUse"))
                        post_tool_use(hs, c->fd, cli, input);
                else
                        reply(c->fd, false, "paddock: unknown hook event: the tool call is denied");
        }
        json_decref(msg);
        free(body);
        pthread_mutex_lock(&hs->lock);
        close(c->fd);
        c->fd = -1;
        c->state = 2;
        pthread_mutex_unlock(&hs->lock);
        return NULL;
}

static void reap_locked(struct hook_server *hs, bool all) {
        for (size_t i = 0; i < HOOK_SERVER_MAX_CONNS; i++) {
                struct conn *c = &hs->conns[i];
                if (c->state == 2 || (all && c->state == 1)) {
                        pthread_t t = c->thread;
                        pthread_mutex_unlock(&hs->lock);
                        pthread_join(t, NULL);
                        pthread_mutex_lock(&hs->lock);
                        c->state = 0;
                }
        }
}

static void *accept_thread(void *userdata) {
        struct hook_server *hs = userdata;
        for (;;) {
                struct pollfd p[2] = {{.fd = hs->listen_fd, .events = POLLIN}, {.fd = hs->wake[0], .events = POLLIN}};
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        break;
                if (p[1].revents)
                        break;
                if (!p[0].revents)
                        continue;
                int fd = accept4(hs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                pthread_mutex_lock(&hs->lock);
                reap_locked(hs, false);
                struct conn *slot = NULL;
                for (size_t i = 0; i < HOOK_SERVER_MAX_CONNS && !slot; i++)
                        if (hs->conns[i].state == 0)
                                slot = &hs->conns[i];
                if (!slot || hs->stopping) {
                        pthread_mutex_unlock(&hs->lock);
                        log_ctx(LOG_WARN, LOG_KV("run", hs->run_id),
                                "hook connection refused: %d calls are already open", HOOK_SERVER_MAX_CONNS);
                        close(fd); /* the hook reads EOF: deny */
                        continue;
                }
                *slot = (struct conn){.fd = fd, .state = 1, .hs = hs};
                if (pthread_create(&slot->thread, NULL, conn_thread, slot) != 0) {
                        slot->state = 0;
                        close(fd);
                }
                pthread_mutex_unlock(&hs->lock);
        }
        return NULL;
}

/* ---- life */

struct hook_server *hook_server_start(const char *run_dir, const char *run_id, struct run_policy *rp,
                                      struct run_events *ev, hook_violation_fn on_violation, void *userdata,
                                      struct err_detail *reterr) {
        struct hook_server *hs = calloc(1, sizeof *hs);
        if (!hs || asprintf(&hs->sock_path, "%s/hook/hook.sock", run_dir) < 0) {
                free(hs);
                err_set(reterr, -ENOMEM, "hook", "out of memory");
                return NULL;
        }
        hs->run_id = run_id;
        hs->rp = rp;
        hs->ev = ev;
        hs->on_violation = on_violation;
        hs->userdata = userdata;
        hs->wake[0] = hs->wake[1] = -1;
        pthread_mutex_init(&hs->lock, NULL);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int r = 0;
        if (strlen(hs->sock_path) >= sizeof sa.sun_path)
                r = err_set(reterr, -ENAMETOOLONG, "hook", "socket path too long: %s", hs->sock_path);
        else {
                strcpy(sa.sun_path, hs->sock_path);
                hs->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (hs->listen_fd < 0 || bind(hs->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
                    chmod(hs->sock_path, 0666) < 0 || listen(hs->listen_fd, 64) < 0 ||
                    pipe2(hs->wake, O_CLOEXEC) < 0)
                        r = err_set(reterr, -errno, "hook", "cannot listen on %s: %m", hs->sock_path);
                else if (pthread_create(&hs->accept_thread, NULL, accept_thread, hs) != 0)
                        r = err_set(reterr, -EAGAIN, "hook", "cannot start the hook server's thread");
        }
        if (r < 0) {
                if (hs->listen_fd > 0)
                        close(hs->listen_fd);
                for (int i = 0; i < 2; i++)
                        if (hs->wake[i] >= 0)
                                close(hs->wake[i]);
                unlink(hs->sock_path);
                pthread_mutex_destroy(&hs->lock);
                free(hs->sock_path);
                free(hs);
                return NULL;
        }
        return hs;
}

struct hook_server *hook_server_stop(struct hook_server *hs) {
        if (!hs)
                return NULL;
        pthread_mutex_lock(&hs->lock);
        hs->stopping = true;
        pthread_mutex_unlock(&hs->lock);
        (void)!write(hs->wake[1], "x", 1);
        pthread_join(hs->accept_thread, NULL);
        close(hs->listen_fd);
        pthread_mutex_lock(&hs->lock);
        /* a connection still reading: end it (its hook denies) */
        for (size_t i = 0; i < HOOK_SERVER_MAX_CONNS; i++)
                if (hs->conns[i].state == 1 && hs->conns[i].fd >= 0)
                        shutdown(hs->conns[i].fd, SHUT_RDWR);
        reap_locked(hs, true);
        pthread_mutex_unlock(&hs->lock);
        close(hs->wake[0]);
        close(hs->wake[1]);
        unlink(hs->sock_path);
        pthread_mutex_destroy(&hs->lock);
        free(hs->sock_path);
        free(hs);
        return NULL;
}
