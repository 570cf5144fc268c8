/* paddock run watch: follows GET /v1/runs/{id}/stream over a websocket
 * (libwebsockets client). The server replays history after ?after=SEQ and then
 * sends live events; if the connection drops before the terminal status we
 * reconnect with ?after=<last seq seen>, and drop any event we already printed,
 * so the user sees every event once and in order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "cli.h"

#define WATCH_MAX_MESSAGE (16u * 1024u * 1024u)
/* Reconnects in a row without receiving anything before we give up. */
#define WATCH_MAX_RETRIES 5

struct watch_state {
        const struct watch_options *opts;
        const char *auth;          /* "Bearer <token>", borrowed */
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

static const char *const terminal_statuses[] = {
        "succeeded", "failed", "cancelled", "timed_out", "limit_exceeded", "rejected",
};

bool watch_event_is_terminal(json_t *ev, const char **ret_status) {
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        json_t *data = json_object_get(ev, "data");
        const char *status = json_string_value(json_object_get(data, "status"));
        if (!kind || strcmp(kind, "status") != 0 || !status)
                return false;
        bool term = json_is_true(json_object_get(data, "terminal")) ||
                    json_is_true(json_object_get(ev, "terminal"));
        for (size_t i = 0; !term && i < ELEMENTSOF(terminal_statuses); i++)
                term = strcmp(status, terminal_statuses[i]) == 0;
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
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        if (seq > 0 && seq <= st->last_seq)
                return 0; /* already printed before a reconnect */
        if (seq > 0)
                st->last_seq = seq;

        if (st->opts->json) {
                fwrite(st->buf, 1, st->len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        } else {
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

static void lws_context_destroyp(struct lws_context **c) {
        if (*c)
                lws_context_destroy(*c);
}

/* One websocket connection, served until it closes. Returns 0 or -errno. */
static int watch_connect_once(struct watch_state *st, const char *api_url, const char *run_id) {
        _cleanup_(lws_context_destroyp) struct lws_context *context = NULL;
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
        context = lws_create_context(&info);
        if (!context) {
                cli_error("could not create the websocket client context");
                return -ENOMEM;
        }

        struct lws_client_connect_info cc = {0};
        cc.context = context;
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
        if (!lws_client_connect_via_info(&cc)) {
                snprintf(st->error, sizeof st->error, "could not start connecting to %s", api_url);
                return -ECONNREFUSED;
        }
        while (!st->closed)
                if (lws_service(context, 0) < 0)
                        break;
        return 0;
}

int watch_run(const struct cli_ctx *ctx, const char *run_id, const struct watch_options *opts) {
        _cleanup_free_ char *auth = NULL;
        struct watch_state st = {.opts = opts, .last_seq = opts->after, .exit_code = -1};
        int failures = 0, r;

        if (!ctx->api_url) {
                cli_error("no API URL: pass --api URL, set PADDOCK_API_URL, or start the local stack");
                return CLI_EXIT_FAIL;
        }
        if (!ctx->token) {
                cli_error("not logged in: run `paddock login` first");
                return CLI_EXIT_FAIL;
        }
        if (asprintf(&auth, "Bearer %s", ctx->token) < 0)
                return CLI_EXIT_FAIL;
        st.auth = auth;
        /* lws logs to stderr by default; our own messages say what went wrong. */
        lws_set_log_level(getenv("PADDOCK_DEBUG_WS") ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_CLIENT : 0, NULL);

        for (;;) {
                r = watch_connect_once(&st, ctx->api_url, run_id);
                if (r == -EINVAL || r == -ENOMEM)
                        break;
                if (st.terminal)
                        break;
                if (st.refused_status >= 400 && st.refused_status < 500) {
                        cli_error("the API refused the event stream of run %s: HTTP %ld%s", run_id,
                                  st.refused_status,
                                  st.refused_status == 401 ? " (run `paddock login`)"
                                  : st.refused_status == 404 ? " (no such run)" : "");
                        break;
                }
                failures = st.got_event ? 1 : failures + 1;
                if (failures > WATCH_MAX_RETRIES) {
                        cli_error("the event stream of run %s ended before its terminal status%s%s", run_id,
                                  st.error[0] ? ": " : "", st.error);
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

        if (!st.terminal) {
                free(st.final_status);
                return CLI_EXIT_FAIL;
        }
        bool ok = strcmp(st.final_status, "succeeded") == 0;
        if (!opts->json)
                fprintf(stderr, "run %s %s\n", run_id, st.final_status);
        free(st.final_status);
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
