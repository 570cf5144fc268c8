/* Claude Code stream-json and Codex --json lines → run events (agent_cli_stream.h). */
#include "agent_cli_stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/macro.h"

struct agent_cli_stream {
        enum agent_cli_kind kind;
        agent_cli_emit_fn emit;
        void *userdata;
        int64_t (*now_us)(void);
        char *line;
        size_t len, cap;
        size_t dropped;      /* bytes of the current over-long line, 0 when none */
        json_t *open;        /* call id -> {tool, input, t0} */
        json_t *session;     /* {cli_version, model, session_id} as the CLI reported them */
        bool done, finished;
        char failure[600];
};

enum agent_cli_kind agent_cli_kind_of(const char *type) {
        if (type && !strcmp(type, "claude-code"))
                return AGENT_CLI_CLAUDE;
        if (type && !strcmp(type, "codex"))
                return AGENT_CLI_CODEX;
        return AGENT_CLI_NONE;
}

const char *agent_cli_type_name(enum agent_cli_kind kind) {
        return kind == AGENT_CLI_CLAUDE ? "claude-code" : kind == AGENT_CLI_CODEX ? "codex" : "command";
}

static int64_t mono_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct agent_cli_stream *agent_cli_stream_new(enum agent_cli_kind kind, agent_cli_emit_fn emit, void *userdata,
                                              int64_t (*now_us)(void)) {
        struct agent_cli_stream *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        *s = (struct agent_cli_stream){.kind = kind, .emit = emit, .userdata = userdata,
                                       .now_us = now_us ? now_us : mono_us, .open = json_object(),
                                       .session = json_object()};
        if (!s->open || !s->session)
                return agent_cli_stream_free(s);
        return s;
}

struct agent_cli_stream *agent_cli_stream_free(struct agent_cli_stream *s) {
        if (!s)
                return NULL;
        free(s->line);
        json_decref(s->open);
        json_decref(s->session);
        free(s);
        return NULL;
}

/* Length of s cut to at most max bytes without splitting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
        if (len <= max)
                return len;
        size_t n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--;
        return n;
}

/* Sets key to the text (cut at AGENT_CLI_TEXT_MAX, "truncated": true then). */
static void set_text(json_t *o, const char *key, const char *text, size_t len) {
        size_t n = utf8_cut(text, len, AGENT_CLI_TEXT_MAX);
        json_object_set_new(o, key, json_stringn(text, n));
        if (n < len)
                json_object_set_new(o, "truncated", json_true());
}

/* A JSON value bounded like a text: small values as they are, a large one as
 * its serialisation cut at AGENT_CLI_TEXT_MAX. */
static void set_bounded(json_t *o, const char *key, json_t *v) {
        if (!v) {
                json_object_set_new(o, key, json_null());
                return;
        }
        char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (dump && strlen(dump) > AGENT_CLI_TEXT_MAX)
                set_text(o, key, dump, strlen(dump));
        else
                json_object_set(o, key, v);
        free(dump);
}

static void emit_output(struct agent_cli_stream *s, const char *stream, const char *text, size_t len) {
        json_t *d = json_pack("{s:s}", "stream", stream);
        if (!d)
                return;
        set_text(d, "text", text, len);
        s->emit(s->userdata, "output", d);
        json_decref(d);
}

static void fail(struct agent_cli_stream *s, const char *fmt, ...) _printf_(2, 3);
static void fail(struct agent_cli_stream *s, const char *fmt, ...) {
        if (s->failure[0])
                return; /* the first verdict is the cause */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->failure, sizeof s->failure, fmt, ap);
        va_end(ap);
}

/* A tool call starts: kept until its result (input bounded now). */
static void call_open(struct agent_cli_stream *s, const char *id, const char *tool, json_t *input) {
        if (!id)
                return;
        json_t *c = json_pack("{s:s,s:I}", "tool", tool ? tool : "unknown", "t0", (json_int_t)s->now_us());
        if (!c)
                return;
        set_bounded(c, "input", input);
        json_object_set_new(s->open, id, c);
}

/* A tool call ends: one tool_call event. input (may be NULL) replaces the
 * opening's; result and error are texts (NULL: none). */
static void call_close(struct agent_cli_stream *s, const char *id, const char *tool, json_t *input, const char *result,
                       size_t result_len, const char *error, json_t *extra) {
        json_t *c = id ? json_object_get(s->open, id) : NULL;
        json_t *d = json_object();
        if (!d)
                return;
        json_object_set_new(d, "id", json_string(id ? id : ""));
        const char *t = tool ? tool : json_string_value(json_object_get(c, "tool"));
        json_object_set_new(d, "tool", json_string(t ? t : "unknown"));
        if (input)
                set_bounded(d, "input", input);
        else
                json_object_set(d, "input", c ? json_object_get(c, "input") : json_null());
        if (json_object_get(c, "truncated"))
                json_object_set_new(d, "input_truncated", json_true());
        if (result) {
                json_t *r = json_object();
                set_text(r, "text", result, result_len);
                json_object_set(d, "result", json_object_get(r, "text"));
                if (json_object_get(r, "truncated"))
                        json_object_set_new(d, "truncated", json_true());
                json_decref(r);
        }
        if (c)
                json_object_set_new(d, "duration_ms",
                                    json_real((double)(s->now_us() - json_integer_value(json_object_get(c, "t0"))) /
                                              1000.0));
        if (error)
                json_object_set_new(d, "error", json_string(error));
        if (extra)
                json_object_update(d, extra);
        s->emit(s->userdata, "tool_call", d);
        json_decref(d);
        if (c)
                json_object_del(s->open, id);
}

/* Claude's tool_result content: a string, or blocks whose text parts are joined. */
static char *tool_result_text(json_t *content) {
        if (json_is_string(content))
                return strdup(json_string_value(content));
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                return NULL;
        size_t i;
        json_t *b;
        json_array_foreach(content, i, b) {
                const char *text = json_string_value(json_object_get(b, "text"));
                if (text)
                        fprintf(f, "%s%s", ftell(f) ? "\n" : "", text);
                else if (json_is_object(b))
                        fprintf(f, "%s[%s]", ftell(f) ? "\n" : "",
                                json_string_value(json_object_get(b, "type")) ?: "block");
        }
        fclose(f);
        return out;
}

static void claude_line(struct agent_cli_stream *s, json_t *j) {
        const char *type = json_string_value(json_object_get(j, "type"));
        if (!type)
                return;
        if (!strcmp(type, "system")) {
                const char *sub = json_string_value(json_object_get(j, "subtype"));
                if (sub && !strcmp(sub, "init")) {
                        json_t *v;
                        if ((v = json_object_get(j, "claude_code_version")) && json_is_string(v))
                                json_object_set(s->session, "cli_version", v);
                        if ((v = json_object_get(j, "model")) && json_is_string(v))
                                json_object_set(s->session, "model", v);
                        if ((v = json_object_get(j, "session_id")) && json_is_string(v))
                                json_object_set(s->session, "session_id", v);
                }
                return;
        }
        json_t *content = json_object_get(json_object_get(j, "message"), "content");
        size_t i;
        json_t *b;
        if (!strcmp(type, "assistant")) {
                json_array_foreach(content, i, b) {
                        const char *bt = json_string_value(json_object_get(b, "type"));
                        if (!bt)
                                continue;
                        if (!strcmp(bt, "text")) {
                                json_t *t = json_object_get(b, "text");
                                if (json_string_length(t))
                                        emit_output(s, "assistant", json_string_value(t), json_string_length(t));
                        } else if (!strcmp(bt, "tool_use") || !strcmp(bt, "server_tool_use"))
                                call_open(s, json_string_value(json_object_get(b, "id")),
                                          json_string_value(json_object_get(b, "name")), json_object_get(b, "input"));
                }
        } else if (!strcmp(type, "user")) {
                json_array_foreach(content, i, b) {
                        const char *bt = json_string_value(json_object_get(b, "type"));
                        if (!bt || strcmp(bt, "tool_result") != 0)
                                continue;
                        _cleanup_free_ char *text = tool_result_text(json_object_get(b, "content"));
                        bool is_error = json_is_true(json_object_get(b, "is_error"));
                        size_t tl = text ? strlen(text) : 0;
                        char err[256] = "";
                        if (is_error)
                                snprintf(err, sizeof err, "%.*s", (int)utf8_cut(text ? text : "", tl, 200),
                                         text && tl ? text : "tool error");
                        call_close(s, json_string_value(json_object_get(b, "tool_use_id")), NULL, NULL,
                                   text ? text : "", tl, is_error ? err : NULL, NULL);
                }
        } else if (!strcmp(type, "result")) {
                s->done = true;
                const char *sub = json_string_value(json_object_get(j, "subtype"));
                const char *res = json_string_value(json_object_get(j, "result"));
                /* is_error can be true with subtype "success" (docs/CONTRACTS.md
                 * "Agent adapters"): both are checked */
                if (json_is_true(json_object_get(j, "is_error")) || (sub && strncmp(sub, "error", 5) == 0))
                        fail(s, "claude-code reported an error (result subtype %s, is_error %s)%s%.*s",
                             sub ? sub : "none", json_is_true(json_object_get(j, "is_error")) ? "true" : "false",
                             res && res[0] ? ": " : "", (int)utf8_cut(res ? res : "", res ? strlen(res) : 0, 300),
                             res ? res : "");
        }
}

static void codex_item(struct agent_cli_stream *s, json_t *item, bool completed) {
        const char *type = json_string_value(json_object_get(item, "type"));
        const char *id = json_string_value(json_object_get(item, "id"));
        if (!type)
                return;
        if (!strcmp(type, "command_execution")) {
                json_t *input = json_pack("{s:O?}", "command", json_object_get(item, "command"));
                if (!completed)
                        call_open(s, id, "shell", input);
                else {
                        json_t *out = json_object_get(item, "aggregated_output");
                        json_t *code = json_object_get(item, "exit_code");
                        const char *status = json_string_value(json_object_get(item, "status"));
                        char err[64] = "";
                        if (json_is_integer(code) && json_integer_value(code) != 0)
                                snprintf(err, sizeof err, "exit code %lld", (long long)json_integer_value(code));
                        else if (status && !strcmp(status, "failed"))
                                snprintf(err, sizeof err, "failed");
                        json_t *extra = json_is_integer(code) ? json_pack("{s:O}", "exit_code", code) : NULL;
                        call_close(s, id, "shell", input, json_string_value(out) ? json_string_value(out) : "",
                                   json_string_length(out), err[0] ? err : NULL, extra);
                        json_decref(extra);
                }
                json_decref(input);
        } else if (!strcmp(type, "file_change")) {
                json_t *input = json_pack("{s:O?}", "changes", json_object_get(item, "changes"));
                const char *status = json_string_value(json_object_get(item, "status"));
                if (!completed)
                        call_open(s, id, "apply_patch", input);
                else
                        call_close(s, id, "apply_patch", input, status ? status : "", status ? strlen(status) : 0,
                                   status && !strcmp(status, "failed") ? "patch failed" : NULL, NULL);
                json_decref(input);
        } else if (!strcmp(type, "mcp_tool_call") || !strcmp(type, "web_search")) {
                char tool[300];
                if (!strcmp(type, "web_search"))
                        snprintf(tool, sizeof tool, "web_search");
                else /* the name the hook and the policy see, and Claude's (docs/CONTRACTS.md "MCP connectors") */
                        snprintf(tool, sizeof tool, "mcp__%s__%s",
                                 json_string_value(json_object_get(item, "server")) ?: "?",
                                 json_string_value(json_object_get(item, "tool")) ?: "?");
                json_t *input = json_object_get(item, "arguments") ?: json_object_get(item, "query");
                if (!completed)
                        call_open(s, id, tool, input);
                else {
                        json_t *res = json_object_get(item, "result");
                        _cleanup_free_ char *rt = res ? json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                        json_t *e = json_object_get(item, "error");
                        const char *et = json_string_value(json_object_get(e, "message")) ?: json_string_value(e);
                        call_close(s, id, tool, input, rt, rt ? strlen(rt) : 0, et, NULL);
                }
        } else if (completed && !strcmp(type, "agent_message")) {
                json_t *t = json_object_get(item, "text");
                if (json_string_length(t))
                        emit_output(s, "assistant", json_string_value(t), json_string_length(t));
        } else if (completed && !strcmp(type, "error")) {
                /* an error item is a warning Codex shows and goes on from;
                 * turn.failed / error end the turn */
                json_t *m = json_object_get(item, "message");
                if (json_string_length(m))
                        emit_output(s, "agent-error", json_string_value(m), json_string_length(m));
        }
}

static void codex_line(struct agent_cli_stream *s, json_t *j) {
        const char *type = json_string_value(json_object_get(j, "type"));
        if (!type)
                return;
        if (!strcmp(type, "thread.started")) {
                json_t *v = json_object_get(j, "thread_id");
                if (json_is_string(v))
                        json_object_set(s->session, "session_id", v);
        } else if (!strcmp(type, "item.started"))
                codex_item(s, json_object_get(j, "item"), false);
        else if (!strcmp(type, "item.completed"))
                codex_item(s, json_object_get(j, "item"), true);
        else if (!strcmp(type, "turn.completed"))
                s->done = true;
        else if (!strcmp(type, "turn.failed")) {
                const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
                fail(s, "codex turn failed: %.300s", m ? m : "no message");
        } else if (!strcmp(type, "error")) {
                const char *m = json_string_value(json_object_get(j, "message"));
                fail(s, "codex error: %.300s", m ? m : "no message");
        }
}

static void map_line(struct agent_cli_stream *s, const char *line, size_t len) {
        while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
                len--;
        if (len == 0)
                return;
        json_t *j = line[0] == '{' ? json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (!json_is_object(j)) {
                /* not ours to interpret (a CLI warning, a crash trace): kept as output */
                json_decref(j);
                emit_output(s, "stdout", line, len);
                return;
        }
        if (s->kind == AGENT_CLI_CLAUDE)
                claude_line(s, j);
        else
                codex_line(s, j);
        json_decref(j);
}

void agent_cli_stream_feed(struct agent_cli_stream *s, const char *data, size_t len) {
        while (len > 0) {
                const char *nl = memchr(data, '\n', len);
                size_t take = nl ? (size_t)(nl - data) + 1 : len;
                if (s->dropped || s->len + take > AGENT_CLI_LINE_MAX) {
                        s->dropped += s->len + take;
                        s->len = 0;
                        if (nl) {
                                char msg[128];
                                int n = snprintf(msg, sizeof msg,
                                                 "[paddock: a stream line of %zu bytes was dropped (limit %u)]",
                                                 s->dropped, AGENT_CLI_LINE_MAX);
                                emit_output(s, "stdout", msg, (size_t)n);
                                s->dropped = 0;
                        }
                } else if (nl && s->len == 0) {
                        map_line(s, data, take); /* the common case: no copy */
                } else {
                        if (s->len + take > s->cap) {
                                size_t cap = s->cap ? s->cap : 4096;
                                while (cap < s->len + take)
                                        cap *= 2;
                                char *p = realloc(s->line, cap);
                                if (!p) {
                                        s->dropped = s->len + take;
                                        s->len = 0;
                                        data += take;
                                        len -= take;
                                        continue;
                                }
                                s->line = p;
                                s->cap = cap;
                        }
                        memcpy(s->line + s->len, data, take);
                        s->len += take;
                        if (nl) {
                                map_line(s, s->line, s->len);
                                s->len = 0;
                        }
                }
                data += take;
                len -= take;
        }
}

void agent_cli_stream_finish(struct agent_cli_stream *s) {
        if (s->finished)
                return;
        s->finished = true;
        if (s->len)
                map_line(s, s->line, s->len);
        s->len = 0;
        /* calls the CLI never answered (killed, crashed): one event each */
        while (json_object_size(s->open) > 0) {
                void *it = json_object_iter(s->open);
                char id[256];
                snprintf(id, sizeof id, "%s", json_object_iter_key(it));
                call_close(s, id, NULL, NULL, NULL, 0, "no result", NULL);
        }
}

const char *agent_cli_stream_failure(const struct agent_cli_stream *s) {
        return s->failure[0] ? s->failure : NULL;
}

bool agent_cli_stream_done(const struct agent_cli_stream *s) {
        return s->done;
}

json_t *agent_cli_stream_session(const struct agent_cli_stream *s) {
        return s->session;
}
