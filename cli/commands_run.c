/* paddock run: launch, relaunch, list, show, watch, logs, events, wait,
 * artifacts, cancel. Runs are named by id; sandboxes, teams and users by id
 * or name (the API resolves names). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/domain.h"
#include "core/ids.h"
#include "core/timeutil.h"

/* Seconds between polls of `run wait`: from the first to the largest. */
#define WAIT_POLL_FIRST_MS 250
#define WAIT_POLL_MAX_MS 2000

/* Splits the values of a repeatable option on ","; each must be in allowed.
 * Returns a new array of strings (caller owns), or NULL after a usage error
 * naming the value. */
static json_t *split_values(const char *what, const char *opt, json_t *values, const char *const *allowed) {
        _cleanup_json_ json_t *out = json_array();
        size_t i;
        json_t *v;
        if (!out)
                return NULL;
        json_array_foreach(values, i, v) {
                const char *s = json_string_value(v);
                for (;;) {
                        size_t n = strcspn(s, ",");
                        _cleanup_free_ char *one = strndup(s, n);
                        if (!one)
                                return NULL;
                        if (!*one || !domain_name_in(allowed, one)) {
                                _cleanup_free_ char *list = NULL;
                                size_t len = 1;
                                for (const char *const *a = allowed; *a; a++)
                                        len += strlen(*a) + 2;
                                list = calloc(1, len);
                                for (const char *const *a = allowed; list && *a; a++)
                                        strcat(strcat(list, a == allowed ? "" : ", "), *a);
                                cli_error("%s: %s: unknown value \"%s\" (one of %s)", what, opt, one,
                                          list ? list : "?");
                                return NULL;
                        }
                        json_array_append_new(out, json_string(one));
                        if (!s[n])
                                break;
                        s += n + 1;
                }
        }
        return TAKE_PTR(out);
}

/* A run id argument: a usage error if it cannot be one. */
static bool run_id_ok(const char *what, const char *id) {
        if (cli_valid_id(id))
                return true;
        cli_error("%s: \"%s\" is not a valid run id", what, id);
        return false;
}

static bool sandbox_ref_ok(const char *what, const char *opt, const char *ref) {
        if (cli_valid_id(ref))
                return true;
        cli_error("%s: %s: \"%s\" is not a sandbox id or name", what, opt, ref);
        return false;
}

/* Prints the answer of a launch or relaunch, then watches the run if asked. */
static int launched(struct cli_ctx *ctx, const char *what, json_t *answer, bool watch) {
        const char *id = json_string_value(json_object_get(answer, "id"));
        if (!id || !cli_valid_id(id)) {
                cli_error("%s: the API answered without a run id", what);
                return CLI_EXIT_FAIL;
        }
        if (ctx->json && watch) {
                /* JSON lines: the answer, then the events */
                json_dumpf(answer, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
        } else if (ctx->json) {
                cli_print_json(answer);
        } else {
                printf("%s\n", id);
        }
        fflush(stdout);
        if (!watch)
                return CLI_EXIT_OK;
        struct watch_options wo = {.after = 0, .json = ctx->json};
        return watch_run(ctx, id, &wo);
}

/* Largest --var-file read: the api bounds the rendered prompt anyway
 * (PADDOCK_PROMPT_MAX_BYTES), this only stops a wrong file early. */
#define VAR_FILE_MAX (4 * 1024 * 1024)

/* Reads path whole into a JSON string; NULL after saying why (a usage error). */
static json_t *var_file_read(const char *arg, const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                cli_error("run launch: --var-file %s: cannot read %s: %s", arg, path, strerror(errno));
                return NULL;
        }
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (len == cap) {
                        char *nb = cap < VAR_FILE_MAX + 1 ? realloc(buf, cap = cap ? cap * 2 : 65536) : NULL;
                        if (!nb) {
                                close(fd);
                                cli_error("run launch: --var-file %s: %s is larger than %d bytes", arg, path,
                                          VAR_FILE_MAX);
                                return NULL;
                        }
                        buf = nb;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        cli_error("run launch: --var-file %s: cannot read %s: %s", arg, path, strerror(errno));
                        close(fd);
                        return NULL;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        json_t *s = len <= VAR_FILE_MAX && memchr(buf, 0, len) == NULL ? json_stringn(buf, len) : NULL;
        if (!s)
                cli_error("run launch: --var-file %s: %s is not UTF-8 text of at most %d bytes", arg, path,
                          VAR_FILE_MAX);
        return s;
}

/* Adds each NAME=VALUE of list (--var, or --var-file where VALUE is a file
 * whose bytes are the value) to vars. false after a usage error naming it. */
static bool launch_vars(const char *opt, json_t *list, bool from_file, json_t *vars) {
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
                const char *arg = json_string_value(v), *eq = strchr(arg, '=');
                size_t n = eq ? (size_t)(eq - arg) : 0;
                if (!eq || n == 0 || n > 64 || (arg[0] >= '0' && arg[0] <= '9') ||
                    strspn(arg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != n) {
                        cli_error("run launch: --%s \"%.80s\": expected NAME=%s with NAME a template variable "
                                  "([A-Za-z_][A-Za-z0-9_]*)",
                                  opt, arg, from_file ? "FILE" : "VALUE");
                        return false;
                }
                _cleanup_free_ char *name = strndup(arg, n);
                if (!name)
                        return false;
                if (json_object_get(vars, name)) {
                        cli_error("run launch: --%s %s: variable %s is given twice", opt, name, name);
                        return false;
                }
                json_t *val = from_file ? var_file_read(arg, eq + 1) : json_string(eq + 1);
                if (!val) {
                        if (!from_file)
                                cli_error("run launch: --var %s: the value is not UTF-8 text", name);
                        return false;
                }
                json_object_set_new(vars, name, val);
        }
        return true;
}

static int run_launch(struct cli_ctx *ctx, int argc, char **argv) {
        const char *sandbox = NULL, *version_s = NULL, *team = NULL;
        bool watch = false;
        _cleanup_json_ json_t *var = json_array(), *var_file = json_array(), *vars = json_object();
        if (!var || !var_file || !vars)
                return CLI_EXIT_FAIL;
        const struct cli_bind binds[] = {
                {.name = "sandbox", .str = &sandbox},
                {.name = "version", .str = &version_s},
                {.name = "team", .str = &team},
                {.name = "var", .list = var},
                {.name = "var-file", .list = var_file},
                {.name = "watch", .set = &watch},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!sandbox) {
                cli_error("run launch: --sandbox SANDBOX is required");
                return CLI_EXIT_USAGE;
        }
        if (!sandbox_ref_ok("run launch", "--sandbox", sandbox))
                return CLI_EXIT_USAGE;
        long long version = 0;
        if (version_s && !cli_parse_ll("--version", version_s, &version))
                return CLI_EXIT_USAGE;
        if (version_s && version < 1) {
                cli_error("run launch: --version: versions start at 1");
                return CLI_EXIT_USAGE;
        }
        if (team && !*team) {
                cli_error("run launch: --team must not be empty");
                return CLI_EXIT_USAGE;
        }
        /* the template's variables: typed and checked by the API (prompt_vars) */
        if (!launch_vars("var", var, false, vars) || !launch_vars("var-file", var_file, true, vars))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        char idem[UUID_STR_LEN];
        if (id_new_uuid(idem) < 0) {
                cli_error("run launch: could not generate an idempotency key");
                return CLI_EXIT_FAIL;
        }
        /* what is not given the API chooses: the latest version, the sandbox's team */
        _cleanup_json_ json_t *body = json_pack("{s:s}", "sandbox", sandbox);
        if (!body || (version_s && json_object_set_new(body, "version", json_integer(version)) < 0) ||
            (team && json_object_set_new(body, "team", json_string(team)) < 0) ||
            (json_object_size(vars) > 0 && json_object_set(body, "prompt_vars", vars) < 0))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "POST", "/v1/runs", body, idem, &resp) < 0)
                return CLI_EXIT_FAIL;
        return launched(ctx, "run launch", resp.body, watch);
}

static int run_relaunch(struct cli_ctx *ctx, int argc, char **argv) {
        bool watch = false;
        const struct cli_bind binds[] = {{.name = "watch", .set = &watch}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run relaunch", pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        char idem[UUID_STR_LEN];
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (id_new_uuid(idem) < 0 || asprintf(&path, "/v1/runs/%s/relaunch", pos[0]) < 0 ||
            api_request(ctx, "POST", path, NULL, idem, &resp) < 0)
                return CLI_EXIT_FAIL;
        return launched(ctx, "run relaunch", resp.body, watch);
}

/* A string member of o, or of its object member sub (sub may be NULL). */
static const char *str_at(json_t *o, const char *key, const char *sub) {
        json_t *v = json_object_get(o, key);
        if (sub)
                v = json_object_get(v, sub);
        return json_string_value(v);
}

static int run_list(struct cli_ctx *ctx, int argc, char **argv) {
        const char *team = NULL, *sandbox = NULL, *launched_by = NULL, *from = NULL, *to = NULL, *limit_s = NULL;
        bool all = false;
        _cleanup_json_ json_t *status = json_array();
        const struct cli_bind binds[] = {
                {.name = "team", .str = &team},
                {.name = "status", .list = status},
                {.name = "sandbox", .str = &sandbox},
                {.name = "launched-by", .str = &launched_by},
                {.name = "from", .str = &from},
                {.name = "to", .str = &to},
                {.name = "limit", .str = &limit_s},
                {.name = "all", .set = &all},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if (!status)
                return CLI_EXIT_FAIL;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long limit;
        if (cli_parse_limit("run list", limit_s, all, 100, &limit) < 0)
                return CLI_EXIT_USAGE;
        _cleanup_json_ json_t *statuses = split_values("run list", "--status", status, run_status_names);
        if (!statuses)
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        _cleanup_free_ char *query = NULL, *joined = NULL, *next = NULL;
        _cleanup_json_ json_t *items = NULL;
        joined = json_array_size(statuses) ? cli_join(statuses) : NULL;
        if (cli_query_add(&query, "team", team) < 0 || cli_query_add(&query, "status", joined) < 0 ||
            cli_query_add(&query, "sandbox", sandbox) < 0 || cli_query_add(&query, "launched_by", launched_by) < 0 ||
            cli_query_add(&query, "from", from) < 0 || cli_query_add(&query, "to", to) < 0)
                return CLI_EXIT_FAIL;
        if ((r = cli_fetch_filtered(ctx, "/v1/runs", query, limit, &items, &next)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(7, "ID", "STATUS", "SANDBOX", "TEAM", "LAUNCHED_BY", "CREATED", "EXIT");
        size_t i;
        json_t *run;
        json_array_foreach(items, i, run) {
                char exit_code[24] = "";
                json_t *ec = json_object_get(run, "exit_code");
                if (json_is_integer(ec))
                        snprintf(exit_code, sizeof exit_code, "%lld", (long long)json_integer_value(ec));
                const char *sb = str_at(run, "sandbox_name", NULL), *tm = str_at(run, "team_name", NULL);
                const char *by = str_at(run, "launched_by", "username");
                cli_table_add(t, str_at(run, "id", NULL), str_at(run, "status", NULL),
                              sb ? sb : str_at(run, "sandbox", NULL), tm ? tm : str_at(run, "team", NULL),
                              by ? by : str_at(run, "created_by", NULL), str_at(run, "created_at", NULL), exit_code);
        }
        cli_print_list_table(t, next, "runs");
        return CLI_EXIT_OK;
}

static int run_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run show", pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/runs/%s", pos[0]) < 0 || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

/* POST /v1/runs/{id}/stream-ticket: for a client that cannot send the
 * token in a header (a browser's websocket); the CLI itself streams with
 * the header. */
static int run_stream_ticket(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run stream-ticket", pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/runs/%s/stream-ticket", pos[0]) < 0 ||
            api_request(ctx, "POST", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        printf("%s\n", json_string_value(json_object_get(resp.body, "ticket")) ?: "");
        return CLI_EXIT_OK;
}

static int run_watch(struct cli_ctx *ctx, int argc, char **argv) {
        const char *after_s = NULL;
        const struct cli_bind binds[] = {{.name = "after", .str = &after_s}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long after = 0;
        if (!run_id_ok("run watch", pos[0]) || (after_s && !cli_parse_ll("--after", after_s, &after)))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        struct watch_options wo = {.after = after, .json = ctx->json};
        return watch_run(ctx, pos[0], &wo);
}

/* ---- recorded events, page by page */

typedef void (*event_fn)(json_t *ev, void *userdata);

/* Calls fn for every recorded event of run id with seq > after, in seq order,
 * through every page. *ret_last: the last seq seen (after if none);
 * *ret_terminal: whether the terminal status event was among them. Returns
 * 0 or a negative errno after printing why. */
static int page_events(const struct cli_ctx *ctx, const char *id, long long after, event_fn fn, void *userdata,
                       long long *ret_last, bool *ret_terminal) {
        *ret_last = after;
        *ret_terminal = false;
        for (;;) {
                _cleanup_free_ char *path = NULL;
                _cleanup_(api_response_done) struct api_response resp = {0};
                if (asprintf(&path, "/v1/runs/%s/events?after=%lld&limit=1000", id, after) < 0)
                        return -ENOMEM;
                int r = api_get(ctx, path, &resp);
                if (r < 0)
                        return r;
                json_t *items = json_object_get(resp.body, "items");
                size_t i;
                json_t *ev;
                long long last = after;
                json_array_foreach(items, i, ev) {
                        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
                        if (seq <= *ret_last)
                                continue; /* never twice, even from a confused server */
                        fn(ev, userdata);
                        *ret_last = last = seq;
                        if (watch_event_is_terminal(ev, NULL))
                                *ret_terminal = true;
                }
                const char *cursor = json_string_value(json_object_get(resp.body, "next_cursor"));
                /* Stop at the end, or if the server would make us loop in place. */
                if (!cursor || json_array_size(items) == 0 || last <= after)
                        return 0;
                after = last;
        }
}

struct events_filter {
        const struct cli_ctx *ctx;
        json_t *kinds; /* array of kinds to keep; empty: all */
};

static void print_event_filtered(json_t *ev, void *userdata) {
        struct events_filter *f = userdata;
        if (json_array_size(f->kinds) > 0) {
                const char *kind = json_string_value(json_object_get(ev, "kind"));
                bool keep = false;
                size_t i;
                json_t *k;
                json_array_foreach(f->kinds, i, k) keep = keep || (kind && strcmp(kind, json_string_value(k)) == 0);
                if (!keep)
                        return;
        }
        if (f->ctx->json) {
                json_dumpf(ev, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
        } else {
                watch_print_event(ev);
        }
}

static int run_events(struct cli_ctx *ctx, int argc, char **argv) {
        const char *after_s = NULL;
        _cleanup_json_ json_t *kind = json_array();
        const struct cli_bind binds[] = {
                {.name = "after", .str = &after_s},
                {.name = "kind", .list = kind},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if (!kind)
                return CLI_EXIT_FAIL;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long after = 0;
        if (!run_id_ok("run events", pos[0]) || (after_s && !cli_parse_ll("--after", after_s, &after)))
                return CLI_EXIT_USAGE;
        _cleanup_json_ json_t *kinds = split_values("run events", "--kind", kind, run_event_kinds);
        if (!kinds)
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        struct events_filter f = {.ctx = ctx, .kinds = kinds};
        long long last;
        bool terminal;
        if (page_events(ctx, pos[0], after, print_event_filtered, &f, &last, &terminal) < 0)
                return CLI_EXIT_FAIL;
        fflush(stdout);
        return CLI_EXIT_OK;
}

static void print_output(json_t *ev, void *userdata) {
        const struct cli_ctx *ctx = userdata;
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        if (!kind || strcmp(kind, "output") != 0)
                return;
        if (ctx->json) {
                json_dumpf(ev, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
                fflush(stdout);
        } else {
                watch_print_output(ev);
        }
}

static int run_logs(struct cli_ctx *ctx, int argc, char **argv) {
        bool follow = false;
        const struct cli_bind binds[] = {{.name = "follow", .set = &follow}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run logs", pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        /* the run first: an unknown one is the API's error, not an empty log */
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response run = {0};
        if (asprintf(&path, "/v1/runs/%s", pos[0]) < 0 || api_get(ctx, path, &run) < 0)
                return CLI_EXIT_FAIL;
        bool run_ended = watch_status_terminal(json_string_value(json_object_get(run.body, "status")));

        long long last;
        bool terminal;
        if (page_events(ctx, pos[0], 0, print_output, ctx, &last, &terminal) < 0)
                return CLI_EXIT_FAIL;
        /* a run that ended without ever starting has no events to wait for */
        if (!follow || terminal || (run_ended && last == 0))
                return CLI_EXIT_OK;
        /* live from the last seq printed: the stream replays what history
         * did not have yet, so nothing is lost or printed twice */
        struct watch_options wo = {.after = last, .json = ctx->json, .output_only = true};
        struct watch_result res;
        return watch_stream(ctx, pos[0], &wo, &res) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* ---- run wait */

/* The exit code of `run wait` for a run that ended with status. */
static int wait_exit_code(const char *status, json_t *exit_code) {
        switch (run_status_from_string(status)) {
        case RUN_SUCCEEDED:
                return CLI_EXIT_OK;
        case RUN_FAILED: {
                json_int_t code = json_is_integer(exit_code) ? json_integer_value(exit_code) : 0;
                /* 0 would say success, and 256 and up do not fit an exit status */
                return code >= 1 && code <= 255 ? (int)code : CLI_EXIT_FAIL;
        }
        case RUN_TIMED_OUT:
                return CLI_EXIT_RUN_TIMED_OUT;
        case RUN_LIMIT_EXCEEDED:
                return CLI_EXIT_RUN_LIMIT_EXCEEDED;
        case RUN_REJECTED:
                return CLI_EXIT_RUN_REJECTED;
        case RUN_CANCELLED:
                return CLI_EXIT_RUN_CANCELLED;
        default:
                return CLI_EXIT_FAIL;
        }
}

static void sleep_ms(long long ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int run_wait(struct cli_ctx *ctx, int argc, char **argv) {
        const char *timeout_s = NULL;
        const struct cli_bind binds[] = {{.name = "timeout", .str = &timeout_s}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long timeout = -1;
        if (!run_id_ok("run wait", pos[0]) || (timeout_s && !cli_parse_ll("--timeout", timeout_s, &timeout)))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        /* The run itself, polled with backoff: it reads ended also when no
         * event ever will (a run cancelled while queued), which a stream
         * waiting for the terminal event would not see. */
        int64_t deadline = timeout >= 0 ? time_mono_us() + timeout * 1000000LL : 0;
        long long pause_ms = WAIT_POLL_FIRST_MS;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/v1/runs/%s", pos[0]) < 0)
                return CLI_EXIT_FAIL;
        for (;;) {
                _cleanup_(api_response_done) struct api_response resp = {0};
                if (api_get(ctx, path, &resp) < 0)
                        return CLI_EXIT_FAIL;
                const char *status = json_string_value(json_object_get(resp.body, "status"));
                if (!status) {
                        cli_error("run wait: the API answered a run without a status");
                        return CLI_EXIT_FAIL;
                }
                if (watch_status_terminal(status)) {
                        json_t *code = json_object_get(resp.body, "exit_code");
                        if (ctx->json) {
                                cli_print_json(resp.body);
                        } else if (json_is_integer(code)) {
                                fprintf(stderr, "run %s %s (exit code %lld)\n", pos[0], status,
                                        (long long)json_integer_value(code));
                        } else {
                                const char *reason = json_string_value(json_object_get(resp.body, "reason"));
                                fprintf(stderr, "run %s %s%s%s\n", pos[0], status, reason ? ": " : "",
                                        reason ? reason : "");
                        }
                        return wait_exit_code(status, code);
                }
                int64_t now = time_mono_us();
                if (deadline && now >= deadline) {
                        if (ctx->json)
                                cli_print_json(resp.body);
                        fprintf(stderr, "run %s is still %s after %lld s\n", pos[0], status, timeout);
                        return CLI_EXIT_WAIT_TIMEOUT;
                }
                long long ms = pause_ms;
                if (deadline && (deadline - now) / 1000 < ms)
                        ms = (deadline - now) / 1000 + 1;
                sleep_ms(ms);
                pause_ms = pause_ms * 3 / 2 > WAIT_POLL_MAX_MS ? WAIT_POLL_MAX_MS : pause_ms * 3 / 2;
        }
}

/* ---- artifacts */

/* Downloads every artifact of the manifest into dir. */
static int artifacts_download(struct cli_ctx *ctx, const char *run_id, json_t *manifest, const char *dir) {
        json_t *items = json_object_get(manifest, "items");
        size_t i;
        json_t *a;
        /* every name is checked before anything is written */
        json_array_foreach(items, i, a) {
                const char *name = json_string_value(json_object_get(a, "name"));
                if (!cli_safe_file_name(name) || !cli_valid_id(name)) {
                        cli_error("run artifacts: refusing artifact name \"%s\": not one plain file name",
                                  name ? name : "");
                        return CLI_EXIT_FAIL;
                }
        }
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                cli_error("run artifacts: could not create directory %s: %m", dir);
                return CLI_EXIT_FAIL;
        }
        _cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                cli_error("run artifacts: could not open directory %s: %m", dir);
                return CLI_EXIT_FAIL;
        }
        int failed = 0;
        json_array_foreach(items, i, a) {
                const char *name = json_string_value(json_object_get(a, "name"));
                const char *sha = json_string_value(json_object_get(a, "sha256"));
                json_t *size = json_object_get(a, "size");
                _cleanup_free_ char *path = NULL;
                _cleanup_(api_response_done) struct api_response resp = {0};
                if (asprintf(&path, "/v1/runs/%s/artifacts/%s", run_id, name) < 0 || api_get(ctx, path, &resp) < 0) {
                        failed++;
                        continue;
                }
                if (!resp.location) {
                        cli_error("artifact %s: the API answered HTTP %ld without a Location", name, resp.status);
                        failed++;
                        continue;
                }
                if (cli_download_verified(resp.location, dirfd, name,
                                          json_is_integer(size) ? json_integer_value(size) : -1, sha) < 0) {
                        failed++;
                        continue;
                }
                if (!ctx->json)
                        printf("%s/%s  %lld bytes  sha256 %s verified\n", dir, name,
                               (long long)json_integer_value(size), sha);
        }
        if (ctx->json)
                cli_print_json(manifest);
        if (failed) {
                cli_error("run artifacts: %d of %zu artifacts not downloaded", failed, json_array_size(items));
                return CLI_EXIT_FAIL;
        }
        if (!ctx->json && json_array_size(items) == 0)
                printf("run %s has no artifacts\n", run_id);
        return CLI_EXIT_OK;
}

static int run_artifacts(struct cli_ctx *ctx, int argc, char **argv) {
                const char *url_name = NULL, *show_name = NULL, *max_bytes = NULL;
        bool download = false;
        const struct cli_bind binds[] = {
                {.name = "url", .str = &url_name},
                {.name = "download", .set = &download},
                {.name = "show", .str = &show_name},
                {.name = "max-bytes", .str = &max_bytes},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run artifacts", pos[0]))
                return CLI_EXIT_USAGE;
        if (npos == 2 && !download) {
                cli_error("run artifacts: unexpected argument \"%s\" (a directory goes with --download)", pos[1]);
                return CLI_EXIT_USAGE;
        }
        if (download && url_name) {
                cli_error("run artifacts: --download and --url exclude each other");
                return CLI_EXIT_USAGE;
        }
        if ((download || url_name) && show_name) {
                cli_error("run artifacts: --show excludes --download and --url");
                return CLI_EXIT_USAGE;
        }
        if (max_bytes && !show_name) {
                cli_error("run artifacts: --max-bytes goes with --show");
                return CLI_EXIT_USAGE;
        }
        long long maxv = -1;
        if (max_bytes && !cli_parse_ll("--max-bytes", max_bytes, &maxv))
                return CLI_EXIT_USAGE;
        if (show_name && !cli_valid_id(show_name)) {
                cli_error("run artifacts: --show: \"%s\" is not a valid artifact name", show_name);
                return CLI_EXIT_USAGE;
        }
        if (url_name && !cli_valid_id(url_name)) {
                cli_error("run artifacts: --url: \"%s\" is not a valid artifact name", url_name);
                return CLI_EXIT_USAGE;
        }
        if (download && npos == 2 && !*pos[1]) {
                cli_error("run artifacts: DIR must not be empty");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (show_name) {
                /* the bytes through the api (?inline=true, docs/CONTRACTS.md
                 * "Artifact bytes through the api"), as the dashboard reads them */
                if ((maxv >= 0 ? asprintf(&path, "/v1/runs/%s/artifacts/%s?inline=true&max_bytes=%lld", pos[0],
                                          show_name, maxv)
                               : asprintf(&path, "/v1/runs/%s/artifacts/%s?inline=true", pos[0], show_name)) < 0)
                        return CLI_EXIT_FAIL;
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                if (cli_get_raw(ctx, path, &data, &len) < 0)
                        return CLI_EXIT_FAIL;
                if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0) {
                        cli_error("run artifacts: could not write to stdout: %m");
                        return CLI_EXIT_FAIL;
                }
                return CLI_EXIT_OK;
        }
        if (url_name) {
                if (asprintf(&path, "/v1/runs/%s/artifacts/%s", pos[0], url_name) < 0 || api_get(ctx, path, &resp) < 0)
                        return CLI_EXIT_FAIL;
                if (!resp.location) {
                        cli_error("run artifacts: the API answered HTTP %ld without a Location", resp.status);
                        return CLI_EXIT_FAIL;
                }
                if (ctx->json) {
                        _cleanup_json_ json_t *o = json_pack("{s:s, s:s}", "name", url_name, "url", resp.location);
                        cli_print_json(o);
                } else {
                        printf("%s\n", resp.location);
                }
                return CLI_EXIT_OK;
        }
        if (asprintf(&path, "/v1/runs/%s/artifacts", pos[0]) < 0 || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (download)
                return artifacts_download(ctx, pos[0], resp.body, npos == 2 ? pos[1] : pos[0]);
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        json_t *items = json_object_get(resp.body, "items");
        if (json_array_size(items) == 0) {
                printf("no artifacts yet\n");
                return CLI_EXIT_OK;
        }
        _cleanup_json_ json_t *t = cli_table_new(4, "NAME", "KIND", "SIZE", "SHA256");
        size_t i;
        json_t *a;
        json_array_foreach(items, i, a) {
                char size[24];
                snprintf(size, sizeof size, "%lld", (long long)json_integer_value(json_object_get(a, "size")));
                cli_table_add(t, str_at(a, "name", NULL), str_at(a, "kind", NULL), size, str_at(a, "sha256", NULL));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int run_cancel(struct cli_ctx *ctx, int argc, char **argv) {
        const char *reason = NULL;
        const struct cli_bind binds[] = {{.name = "reason", .str = &reason}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run cancel", pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *body = reason ? json_pack("{s:s}", "reason", reason) : NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if ((reason && !body) || asprintf(&path, "/v1/runs/%s/cancel", pos[0]) < 0 ||
            api_request(ctx, "POST", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("cancel requested for run %s\n", pos[0]);
        return CLI_EXIT_OK;
}

/* ---- the command table */

static const char wait_description[] =
        "Waits until the run ended (polling it, with backoff), says how on stderr\n"
        "(--json: prints the run) and exits with:\n"
        "  0    succeeded\n"
        "  N    failed, with the agent's exit code N (a failed run without one: 1)\n"
        "  124  timed_out (like timeout(1))\n"
        "  125  limit_exceeded\n"
        "  126  rejected\n"
        "  130  cancelled (like a command interrupted by Ctrl-C)\n"
        "  75   --timeout SECONDS passed first; the run goes on (EX_TEMPFAIL)\n"
        "  1    the API said no (e.g. no such run), 2 the command line was wrong\n";

static const struct cli_command run_subs[] = {
        {.name = "launch",
         .summary = "start a run of a published sandbox version; prints its id",
         .description = "SANDBOX is a sandbox id or name, TEAM a team id or name. The version defaults\n"
                        "to the latest published one. A run belongs to the sandbox's team (its secrets\n"
                        "are that team's; you need the launcher role there): --team may only name it.\n"
                        "--json prints the API's answer {id, status}; with --watch, that answer on one\n"
                        "line and then one event JSON per line. With --watch the exit status is that of\n"
                        "`run watch`.\n"
                        "--var NAME=VALUE and --var-file NAME=FILE (repeatable; the file's bytes are the\n"
                        "value) fill the variables of the sandbox's prompt template (its prompt_vars;\n"
                        "`paddock sandbox policy` lists them); the API checks each one and names the\n"
                        "variable it refuses. A malformed --var or an unreadable file exits 2.\n"
                        "Example: paddock run launch -s fixer --var issue=123 --var-file task=task.md\n",
         .options = (const struct cli_option[]){{"sandbox", 's', "SANDBOX", "the sandbox (id or name); required"},
                                                {"version", 'v', "N", "the published version (default: the latest)"},
                                                {"team", 't', "TEAM", "the sandbox's team (any other is refused)"},
                                                {"var", 0, "NAME=VALUE", "a prompt template variable (repeatable)"},
                                                {"var-file", 0, "NAME=FILE",
                                                 "a prompt template variable read from FILE (repeatable)"},
                                                {"watch", 'w', NULL, "then stream its events like `run watch`"},
                                                {0}},
         .fn = run_launch},
        {.name = "relaunch",
         .args = "ID",
         .summary = "start a new run of the sandbox version, team and inputs of run ID",
         .description = "Prints the new run's id (--json: the API's {id, status, relaunch_of}).\n",
         .options = (const struct cli_option[]){{"watch", 'w', NULL, "then stream its events like `run watch`"},
                                                {0}},
         .fn = run_relaunch},
        {.name = "list",
         .alias = "ls",
         .summary = "list the runs you may see, newest first",
         .description = "TEAM and SANDBOX are ids or names, USER a user id or username. STATUS is one\n"
                        "or more of queued, scheduled, provisioning, running, awaiting_approval,\n"
                        "succeeded, failed, cancelled, timed_out, limit_exceeded, rejected (repeat\n"
                        "--status or separate them with commas). TIME is RFC 3339\n"
                        "(2026-01-02T03:04:05Z) and bounds the creation time. The API's pages are\n"
                        "followed up to --limit runs; --json prints {items, next_cursor}, next_cursor\n"
                        "null unless --limit cut the list (then it continues it).\n",
         .options = (const struct cli_option[]){{"team", 't', "TEAM", "only this team's runs"},
                                                {"status", 's', "STATUS", "only runs in these statuses"},
                                                {"sandbox", 0, "SANDBOX", "only runs of this sandbox"},
                                                {"launched-by", 0, "USER", "only runs this user launched"},
                                                {"from", 0, "TIME", "only runs created at or after TIME"},
                                                {"to", 0, "TIME", "only runs created before TIME"},
                                                {"limit", 'n', "N", "at most N runs, the newest (default 100)"},
                                                {"all", 0, NULL, "every matching run"},
                                                {0}},
         .fn = run_list},
        {.name = "show", .args = "ID", .summary = "print the run as JSON", .fn = run_show},
        {.name = "watch",
         .args = "ID",
         .summary = "stream the run's events live until it ends",
         .description = "Prints `[seq] ts kind actor: summary` lines (--json: one event JSON per line),\n"
                        "history first, then live events, each once. Exits 0 if the run succeeded, 1\n"
                        "otherwise.\n",
         .options = (const struct cli_option[]){{"after", 0, "N", "start after event seq N"}, {0}},
         .fn = run_watch},
        {.name = "stream-ticket",
         .args = "ID",
         .summary = "print a single-use ticket to open the run's event stream without a token",
         .description = "For a client that cannot send headers on a websocket (a browser): open\n"
                        "/v1/runs/ID/stream?ticket=TICKET (ws:// or wss:// of the API URL) within 30 s;\n"
                        "the ticket works once and the stream ends with your token or role. --json\n"
                        "prints the API's {ticket, run, expires_at, expires_in_s}.\n",
         .fn = run_stream_ticket},
        {.name = "logs",
         .args = "ID",
         .summary = "print what the agent wrote, as it wrote it",
         .description = "The agent's output only: its stdout to stdout and its stderr to stderr, byte\n"
                        "for byte, from the run's history (--json: its output events, one JSON per\n"
                        "line). --follow then goes on live until the run ends, whatever its status\n"
                        "(`run wait` reports that), without losing or repeating a line.\n",
         .options = (const struct cli_option[]){{"follow", 'f', NULL, "go on live until the run ends"}, {0}},
         .fn = run_logs},
        {.name = "events",
         .args = "ID",
         .summary = "print the run's recorded events",
         .description = "Every page, as `[seq] ts kind actor: summary` lines (--json: one event JSON\n"
                        "per line). KIND is one or more of status, output, exec, destroyed, usage,\n"
                        "artifact, egress, approval_requested, approval_decided, policy_decision,\n"
                        "tool_call, tool_result, file_access, limit, model_call (repeat --kind or\n"
                        "separate them with commas).\n",
         .options = (const struct cli_option[]){{"kind", 'k', "KIND", "only events of these kinds"},
                                                {"after", 0, "N", "only events after seq N"},
                                                {0}},
         .fn = run_events},
        {.name = "wait",
         .args = "ID",
         .summary = "wait until the run ended; exit with its outcome",
         .description = wait_description,
         .options = (const struct cli_option[]){{"timeout", 0, "SECONDS", "give up waiting after SECONDS (exit 75)"},
                                                {0}},
         .fn = run_wait},
        {.name = "artifacts",
         .args = "ID [DIR]",
         .summary = "list the run's artifacts, or download them verified",
         .description = "Prints the artifact manifest (--json: the API's {items, next_cursor}).\n"
                        "--download saves every artifact into DIR (default ./ID/, created if need be),\n"
                        "each checked against the manifest's size and SHA-256 before it is kept; a\n"
                        "mismatch fails naming the file, which is not kept. Names that are not one\n"
                        "plain file name are refused. --url NAME prints a short-lived download URL.\n"
                        "--show NAME writes artifact NAME's bytes to stdout, read through the API\n"
                        "(at most --max-bytes, default 4194304; larger fails with too_large).\n",
         .options = (const struct cli_option[]){{"download", 'd', NULL, "download every artifact into DIR"},
                                                {"url", 0, "NAME", "print a download URL of artifact NAME"},
                                                {"show", 0, "NAME", "write artifact NAME's bytes to stdout"},
                                                {"max-bytes", 0, "N", "with --show: refuse an artifact over N bytes"},
                                                {0}},
         .fn = run_artifacts},
        {.name = "review",
         .args = "ID",
         .summary = "review the finished run: approve, reject or escalate it",
         .description = "You need the reviewer role in the run's team and must not have launched it\n"
                        "(four eyes). Exactly one of --approve, --reject, --escalate; --escalate needs\n"
                        "--to, a user id or a role (e.g. security_admin) that takes it over. The\n"
                        "review is audited and appended to the run's events (kind review); the run\n"
                        "shows the latest outcome. --json prints the API's review.\n",
         .options = (const struct cli_option[]){{"approve", 0, NULL, "approve the run's work"},
                                                {"reject", 0, NULL, "reject the run's work"},
                                                {"escalate", 0, NULL, "hand the review over (with --to)"},
                                                {"to", 0, "WHO", "a user id or a role (with --escalate)"},
                                                {"message", 'm', "TEXT", "the review's comment"},
                                                {0}},
         .fn = cli_run_review},
        {.name = "reviews",
         .args = "ID",
         .summary = "list the run's reviews, oldest first",
         .fn = cli_run_reviews},
        {.name = "evidence",
         .args = "ID",
         .summary = "download the finished run's signed evidence bundle (a tar)",
         .description = "Saves GET /v1/runs/ID/evidence to FILE (you need the reviewer role). Artifacts\n"
                        "up to --max-artifact-bytes each (default 1 MiB) are in it with their bytes,\n"
                        "larger ones by hash. Check it with `paddock evidence verify FILE`.\n",
         .options = (const struct cli_option[]){{"output", 'o', "FILE", "where to save the bundle; required"},
                                                {"max-artifact-bytes", 0, "N", "include artifacts up to N bytes"},
                                                {0}},
         .fn = cli_run_evidence},
        {.name = "cancel",
         .args = "ID",
         .summary = "cancel the run",
         .options = (const struct cli_option[]){{"reason", 0, "TEXT", "why (recorded with the cancel)"}, {0}},
         .fn = run_cancel},
        {0},
};

const struct cli_command cli_cmd_run = {
        .name = "run",
        .alias = "runs",
        .summary = "runs: launch, list, watch, logs, events, wait, artifacts, review, evidence, relaunch, cancel",
        .description = "ID is a run id. Sandboxes, teams and users are named by id or by name.\n",
        .subs = run_subs,
};
