/* paddock run watch (and run logs --follow): follows GET /v1/runs/{id}/stream
 * over a websocket (libwebsockets client). The server replays history after
 * ?after=SEQ and then sends live events; if the connection drops before the
 * terminal status we reconnect with ?after=<last seq seen>, and drop any event
 * we already printed, so the user sees every event once and in order.
 *
 * A run that ends without a terminal status event (cancelled while still
 * queued, or its history lost) would leave the stream open for ever: when
 * nothing arrived for WATCH_IDLE_CHECK_US we look at the run itself, and a run
 * that reads terminal at two such checks in a row ends the watch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "cli.h"
#include "core/domain.h"
#include "core/timeutil.h"

#define WATCH_MAX_MESSAGE (16u * 1024u * 1024u)
/* Reconnects in a row without receiving anything before we give up. */
#define WATCH_MAX_RETRIES 5
/* Quiet this long: look whether the run ended without telling the stream. */
#define WATCH_IDLE_CHECK_US (10 * LWS_US_PER_SEC)

struct watch_state {
        const struct watch_options *opts;
        const struct cli_ctx *ctx; /* borrowed, for the idle check */
        const char *run_id;        /* borrowed */
        const char *auth;          /* "Bearer <token>", borrowed */
        struct lws_context *context; /* of the connection being served */
        lws_sorted_usec_list_t idle_sul;
        int64_t last_message_us;   /* monotonic */
        int idle_terminal_checks;  /* idle checks in a row that saw the run ended */
        long long last_seq;
        char *buf;                 /* one message, assembled from fragments */
        size_t len;
        bool established;
        bool closed;
        bool terminal;
        bool got_event;            /* in this connection */
        long refused_status;       /* HTTP status of a refused upgrade, 0 if none */
        char error[256];
        int close_code;
        char *final_status;
        long long exit_code;
};

bool watch_status_terminal(const char *status) {
        return run_status_name_is_terminal(status);
}

bool watch_event_is_terminal(json_t *ev, const char **ret_status) {
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        json_t *data = json_object_get(ev, "data");
        const char *status = json_string_value(json_object_get(data, "status"));
        if (!kind || strcmp(kind, "status") != 0 || !status)
                return false;
        bool term = json_is_true(json_object_get(data, "terminal")) ||
                    json_is_true(json_object_get(ev, "terminal")) || watch_status_terminal(status);
        if (term && ret_status)
                *ret_status = status;
        return term;
}

/* Prints text with its trailing newline removed, other newlines kept. */
static void print_trimmed(const char *text) {
        size_t n = strlen(text);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
                n--;
        fwrite(text, 1, n, stdout);
}

/* Prints s on one line (newlines shown as \n), at most max bytes of it, so
 * a multi-line script in argv does not break the one-line-per-event format. */
static void print_one_line(const char *s, size_t max) {
        size_t n = 0;
        for (; *s && n < max; s++, n++) {
                if (*s == '\n')
                        fputs("\\n", stdout);
                else if (*s == '\r' || *s == '\t')
                        fputc(' ', stdout);
                else
                        fputc(*s, stdout);
        }
        if (*s)
                fputs("...", stdout);
}

bool watch_print_output(json_t *ev) {
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        if (!kind || strcmp(kind, "output") != 0)
                return false;
        json_t *data = json_object_get(ev, "data");
        json_t *text = json_object_get(data, "text");
        const char *stream = json_string_value(json_object_get(data, "stream"));
        FILE *f = stream && strcmp(stream, "stderr") == 0 ? stderr : stdout;
        /* the bytes as the agent wrote them (a NUL included), no decoration */
        if (json_is_string(text))
                fwrite(json_string_value(text), 1, json_string_length(text), f);
        fflush(f);
        return true;
}

/* " N model calls, I tokens in, O out, $C" of a usage event's totals. */
static void print_model_totals(json_t *data) {
        printf(" %" JSON_INTEGER_FORMAT " model calls, %" JSON_INTEGER_FORMAT " tokens in, %" JSON_INTEGER_FORMAT
               " out, $%.4f", json_integer_value(json_object_get(data, "model_calls")),
               json_integer_value(json_object_get(data, "input_tokens")),
               json_integer_value(json_object_get(data, "output_tokens")),
               json_number_value(json_object_get(data, "cost_usd")));
}

/* "TOOL INPUT -> RESULT (D ms)" on one line: the input's most telling field
 * (a command, a path) or its JSON, the result's start or the error. */
static void print_tool_call(json_t *data) {
        const char *tool = json_string_value(json_object_get(data, "tool"));
        json_t *in = json_object_get(data, "input");
        static const char *const telling[] = {"command", "cmd", "file_path", "path", "pattern", "url", NULL};
        const char *shown = NULL;
        for (const char *const *k = telling; *k && !shown; k++)
                shown = json_string_value(json_object_get(in, *k));
        _cleanup_free_ char *in_json = shown ? NULL : json_dumps(in ? in : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%s ", tool ? tool : "?");
        print_one_line(shown ? shown : in_json ? in_json : "", 120);
        const char *error = json_string_value(json_object_get(data, "error"));
        const char *result = json_string_value(json_object_get(data, "result"));
        if (error) {
                fputs(" -> error: ", stdout);
                print_one_line(error, 120);
        } else if (result) {
                fputs(" -> ", stdout);
                print_one_line(result, 80);
        }
        if (json_is_number(json_object_get(data, "duration_ms")))
                printf(" (%.0f ms)", json_number_value(json_object_get(data, "duration_ms")));
}

void watch_print_event(json_t *ev) {
        const char *ts = json_string_value(json_object_get(ev, "ts"));
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        const char *actor = json_string_value(json_object_get(ev, "actor"));
        json_t *data = json_object_get(ev, "data");

        kind = kind ? kind : "?";
        printf("[%" JSON_INTEGER_FORMAT "] %s %s %s: ", json_integer_value(json_object_get(ev, "seq")),
               ts ? ts : "-", kind, actor ? actor : "-");

        if (strcmp(kind, "output") == 0) {
                const char *stream = json_string_value(json_object_get(data, "stream"));
                const char *text = json_string_value(json_object_get(data, "text"));
                if (stream && strcmp(stream, "stderr") == 0)
                        fputs("(stderr) ", stdout);
                print_trimmed(text ? text : "");
        } else if (strcmp(kind, "status") == 0) {
                const char *st = json_string_value(json_object_get(data, "status"));
                const char *reason = json_string_value(json_object_get(data, "reason"));
                json_t *code = json_object_get(data, "exit_code");
                fputs(st ? st : "?", stdout);
                if (json_is_integer(code))
                        printf(" (exit code %" JSON_INTEGER_FORMAT ")", json_integer_value(code));
                if (reason && *reason)
                        printf(": %s", reason);
        } else if (strcmp(kind, "exec") == 0) {
                json_t *argv = json_object_get(data, "argv");
                size_t i;
                json_t *a;
                printf("pid %" JSON_INTEGER_FORMAT ":", json_integer_value(json_object_get(data, "pid")));
                json_array_foreach(argv, i, a) {
                        fputc(' ', stdout);
                        print_one_line(json_string_value(a) ? json_string_value(a) : "?", 160);
                }
        } else if (strcmp(kind, "artifact") == 0) {
                const char *name = json_string_value(json_object_get(data, "name"));
                const char *sha = json_string_value(json_object_get(data, "sha256"));
                printf("%s, %" JSON_INTEGER_FORMAT " bytes, sha256 %.16s...", name ? name : "?",
                       json_integer_value(json_object_get(data, "size")), sha ? sha : "?");
        } else if (strcmp(kind, "destroyed") == 0) {
                json_t *gone = json_object_get(data, "verified_gone");
                size_t i;
                json_t *g;
                fputs("verified gone:", stdout);
                json_array_foreach(gone, i, g) printf("%s %s", i ? "," : "", json_string_value(g) ? json_string_value(g) : "?");
        } else if (strcmp(kind, "usage") == 0 && json_is_number(json_object_get(data, "runtime_s"))) {
                printf("runtime %.3f s", json_number_value(json_object_get(data, "runtime_s")));
                if (json_is_integer(json_object_get(data, "model_calls"))) {
                        fputc(',', stdout);
                        print_model_totals(data);
                }
        } else if (strcmp(kind, "usage") == 0 && json_is_integer(json_object_get(data, "model_calls"))) {
                fputs("so far:", stdout);
                print_model_totals(data);
        } else if (strcmp(kind, "tool_call") == 0) {
                print_tool_call(data);
        } else if (strcmp(kind, "model_call") == 0) {
                const char *model = json_string_value(json_object_get(data, "model"));
                const char *error = json_string_value(json_object_get(data, "error"));
                printf("%s %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT " tokens in, %" JSON_INTEGER_FORMAT
                       " out, $%.4f, first token %" JSON_INTEGER_FORMAT " ms, %" JSON_INTEGER_FORMAT " ms",
                       model ? model : "?", json_integer_value(json_object_get(data, "status")),
                       json_integer_value(json_object_get(data, "input_tokens")),
                       json_integer_value(json_object_get(data, "output_tokens")),
                       json_number_value(json_object_get(data, "cost_usd")),
                       json_integer_value(json_object_get(data, "ttft_ms")),
                       json_integer_value(json_object_get(data, "latency_ms")));
                if (error)
                        printf(": %s", error);
        } else if (strcmp(kind, "limit") == 0) {
                const char *limit = json_string_value(json_object_get(data, "limit"));
                printf("%s reached: used %g of %g", limit ? limit : "?", json_number_value(json_object_get(data, "used")),
                       json_number_value(json_object_get(data, "value")));
        } else {
                _cleanup_free_ char *s = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
                fputs(s ? s : "", stdout);
        }
        fputc('\n', stdout);
        fflush(stdout);
}

/* Handles one complete text message. Returns -1 to close the connection. */
static int on_message(struct watch_state *st, struct lws *wsi) {
        json_error_t jerr;
        _cleanup_json_ json_t *ev = json_loadb(st->buf, st->len, 0, &jerr);
        if (!json_is_object(ev)) {
                fprintf(stderr, "warning: ignoring a stream message that is not a JSON object\n");
                return 0;
        }
        st->got_event = true;
        st->last_message_us = time_mono_us();
        st->idle_terminal_checks = 0;
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        if (seq > 0 && seq <= st->last_seq)
                return 0; /* already printed before a reconnect */
        if (seq > 0)
                st->last_seq = seq;

        const char *kind = json_string_value(json_object_get(ev, "kind"));
        bool shown = !st->opts->output_only || (kind && strcmp(kind, "output") == 0);
        if (shown && st->opts->json) {
                fwrite(st->buf, 1, st->len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        } else if (st->opts->output_only) {
                watch_print_output(ev);
        } else if (shown) {
                watch_print_event(ev);
        }

        const char *status = NULL;
        if (watch_event_is_terminal(ev, &status)) {
                st->terminal = true;
                free(st->final_status);
                st->final_status = strdup(status);
                json_t *code = json_object_get(json_object_get(ev, "data"), "exit_code");
                st->exit_code = json_is_integer(code) ? json_integer_value(code) : -1;
                lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
                return -1;
        }
        return 0;
}

/* Runs inside lws_service(): a blocking GET is fine in a command-line client. */
static void idle_check(lws_sorted_usec_list_t *sul) {
        struct watch_state *st = lws_container_of(sul, struct watch_state, idle_sul);
        if (time_mono_us() - st->last_message_us >= WATCH_IDLE_CHECK_US) {
                _cleanup_free_ char *path = NULL;
                _cleanup_(api_response_done) struct api_response resp = {0};
                const char *status = NULL;
                if (asprintf(&path, "/v1/runs/%s", st->run_id) >= 0 && api_get(st->ctx, path, &resp) >= 0)
                        status = json_string_value(json_object_get(resp.body, "status"));
                /* twice: a stream that trails the run's status by a moment still delivers */
                if (status && watch_status_terminal(status) && ++st->idle_terminal_checks >= 2) {
                        json_t *code = json_object_get(resp.body, "exit_code");
                        st->terminal = true;
                        free(st->final_status);
                        st->final_status = strdup(status);
                        st->exit_code = json_is_integer(code) ? json_integer_value(code) : -1;
                        st->closed = true;
                        return;
                }
                if (!status || !watch_status_terminal(status))
                        st->idle_terminal_checks = 0;
                st->last_message_us = time_mono_us();
        }
        lws_sul_schedule(st->context, 0, &st->idle_sul, idle_check, WATCH_IDLE_CHECK_US);
}

static int watch_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len) {
        struct watch_state *st = lws_context_user(lws_get_context(wsi));
        (void)user;
        if (!st)
                return 0;

        switch (reason) {
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
                unsigned char **p = in, *end = *p + len;
                if (lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:",
                                                (const unsigned char *)st->auth, (int)strlen(st->auth), p, end))
                        return -1;
                break;
        }
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                st->established = true;
                break;
        case LWS_CALLBACK_CLIENT_RECEIVE:
                if (st->len + len > WATCH_MAX_MESSAGE) {
                        snprintf(st->error, sizeof st->error, "a stream message exceeds %u bytes",
                                 WATCH_MAX_MESSAGE);
                        return -1;
                }
                if (len > 0) {
                        char *b = realloc(st->buf, st->len + len + 1);
                        if (!b)
                                return -1;
                        memcpy(b + st->len, in, len);
                        st->buf = b;
                        st->len += len;
                        st->buf[st->len] = '\0';
                }
                if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
                        int r = on_message(st, wsi);
                        st->len = 0;
                        return r;
                }
                break;
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                if (len >= 2)
                        st->close_code = ((const unsigned char *)in)[0] << 8 | ((const unsigned char *)in)[1];
                break;
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                st->refused_status = (long)lws_http_client_http_response(wsi);
                snprintf(st->error, sizeof st->error, "%s", in ? (const char *)in : "connection failed");
                st->closed = true;
                break;
        case LWS_CALLBACK_CLIENT_CLOSED:
                st->closed = true;
                break;
        default:
                break;
        }
        return 0;
}

static const struct lws_protocols watch_protocols[] = {
        {"paddock-watch", watch_callback, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* One websocket connection, served until it closes. Returns 0 or -errno. */
static int watch_connect_once(struct watch_state *st, const char *api_url, const char *run_id) {
        _cleanup_free_ char *url = NULL, *path = NULL;
        const char *prot = NULL, *address = NULL, *p = NULL;
        int port = 0;

        if (asprintf(&url, "%s/v1/runs/%s/stream?after=%lld", api_url, run_id, st->last_seq) < 0)
                return -ENOMEM;
        if (lws_parse_uri(url, &prot, &address, &port, &p) || !address || !*address) {
                cli_error("the API URL \"%s\" cannot be parsed", api_url);
                return -EINVAL;
        }
        bool tls = strcmp(prot, "https") == 0 || strcmp(prot, "wss") == 0;
        if (!tls && strcmp(prot, "http") != 0 && strcmp(prot, "ws") != 0) {
                cli_error("the API URL scheme \"%s\" is not http or https", prot);
                return -EINVAL;
        }
        /* lws_parse_uri strips the leading slash of the path. */
        if (asprintf(&path, "/%s", p) < 0)
                return -ENOMEM;

        struct lws_context_creation_info info = {0};
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = watch_protocols;
        info.user = st;
        info.gid = -1;
        info.uid = -1;
        if (tls)
                info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        st->context = lws_create_context(&info);
        if (!st->context) {
                cli_error("could not create the websocket client context");
                return -ENOMEM;
        }

        struct lws_client_connect_info cc = {0};
        cc.context = st->context;
        cc.address = address;
        cc.port = port;
        cc.path = path;
        cc.host = address;
        cc.origin = address;
        cc.protocol = NULL; /* no subprotocol: the server does not negotiate one */
        cc.local_protocol_name = watch_protocols[0].name;
        cc.ssl_connection = tls ? LCCSCF_USE_SSL : 0;

        st->established = st->closed = st->got_event = false;
        st->refused_status = 0;
        st->error[0] = '\0';
        st->close_code = 0;
        st->len = 0;
        st->last_message_us = time_mono_us();
        int r = 0;
        if (!lws_client_connect_via_info(&cc)) {
                snprintf(st->error, sizeof st->error, "could not start connecting to %s", api_url);
                r = -ECONNREFUSED;
        } else {
                /* the timer belongs to this context only */
                memset(&st->idle_sul, 0, sizeof st->idle_sul);
                lws_sul_schedule(st->context, 0, &st->idle_sul, idle_check, WATCH_IDLE_CHECK_US);
                while (!st->closed)
                        if (lws_service(st->context, 0) < 0)
                                break;
                lws_sul_cancel(&st->idle_sul);
        }
        lws_context_destroy(st->context);
        st->context = NULL;
        return r;
}

/* After a connection that ended without the terminal status event: the run
 * may have ended without one (the server closes with 1011 when a finished
 * run has no history). True, with st filled in, if the run reads terminal. */
static bool run_ended_without_stream(struct watch_state *st) {
        if (st->close_code != LWS_CLOSE_STATUS_UNEXPECTED_CONDITION)
                return false;
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/runs/%s", st->run_id) < 0 || api_get(st->ctx, path, &resp) < 0)
                return false;
        const char *status = json_string_value(json_object_get(resp.body, "status"));
        if (!watch_status_terminal(status))
                return false;
        json_t *code = json_object_get(resp.body, "exit_code");
        st->terminal = true;
        free(st->final_status);
        st->final_status = strdup(status);
        st->exit_code = json_is_integer(code) ? json_integer_value(code) : -1;
        return true;
}

int watch_stream(const struct cli_ctx *ctx, const char *run_id, const struct watch_options *opts,
                 struct watch_result *ret) {
        _cleanup_free_ char *auth = NULL;
        struct watch_state st = {.opts = opts, .ctx = ctx, .run_id = run_id, .last_seq = opts->after,
                                 .exit_code = -1};
        int failures = 0, r = 0;

        *ret = (struct watch_result){.exit_code = -1, .last_seq = opts->after};
        if (!ctx->api_url) {
                cli_error("no API URL: pass --api URL, set PADDOCK_API_URL, or start the local stack");
                return -EINVAL;
        }
        if (!ctx->token) {
                cli_error("not logged in: run `paddock login` first");
                return -EACCES;
        }
        if (asprintf(&auth, "Bearer %s", ctx->token) < 0)
                return -ENOMEM;
        st.auth = auth;
        /* lws logs to stderr by default; our own messages say what went wrong. */
        lws_set_log_level(getenv("PADDOCK_DEBUG_WS") ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_CLIENT : 0, NULL);

        for (;;) {
                r = watch_connect_once(&st, ctx->api_url, run_id);
                if (r == -EINVAL || r == -ENOMEM)
                        break;
                if (st.terminal || run_ended_without_stream(&st))
                        break;
                if (st.refused_status >= 400 && st.refused_status < 500) {
                        cli_error("the API refused the event stream of run %s: HTTP %ld%s", run_id,
                                  st.refused_status,
                                  st.refused_status == 401 ? " (run `paddock login`)"
                                  : st.refused_status == 404 ? " (no such run)" : "");
                        r = -EPROTO;
                        break;
                }
                failures = st.got_event ? 1 : failures + 1;
                if (failures > WATCH_MAX_RETRIES) {
                        cli_error("the event stream of run %s ended before its terminal status%s%s", run_id,
                                  st.error[0] ? ": " : "", st.error);
                        r = -ECONNRESET;
                        break;
                }
                if (st.established)
                        fprintf(stderr, "warning: event stream interrupted; reconnecting after seq %lld\n",
                                st.last_seq);
                else
                        fprintf(stderr, "warning: could not open the event stream (%s); retrying\n",
                                st.error[0] ? st.error : "connection closed");
                sleep(1);
        }
        free(st.buf);
        ret->last_seq = st.last_seq;
        if (st.terminal) {
                snprintf(ret->status, sizeof ret->status, "%s", st.final_status ? st.final_status : "");
                ret->exit_code = st.exit_code;
        }
        free(st.final_status);
        if (st.terminal)
                return 0;
        return r < 0 ? r : -EIO;
}

int watch_run(const struct cli_ctx *ctx, const char *run_id, const struct watch_options *opts) {
        struct watch_result res;
        if (watch_stream(ctx, run_id, opts, &res) < 0)
                return CLI_EXIT_FAIL;
        if (!opts->json && !opts->output_only)
                fprintf(stderr, "run %s %s\n", run_id, res.status);
        return run_status_from_string(res.status) == RUN_SUCCEEDED ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
