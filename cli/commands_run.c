/* paddock run launch / watch / show / events / artifacts / cancel. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/ids.h"

static const char run_usage[] =
        "usage: paddock run launch --sandbox ID [--version N] [--team TEAM_ID] [--watch] [--json]\n"
        "       paddock run watch ID [--after N] [--json]\n"
        "       paddock run show ID\n"
        "       paddock run events ID [--after N] [--json]\n"
        "       paddock run artifacts ID [--json] [--url NAME]\n"
        "       paddock run cancel ID\n"
        "\n"
        "launch     starts a run of a published sandbox version (default: the latest) in\n"
        "           TEAM_ID (default: the sandbox's team); prints the run id.\n"
        "           --watch then streams its events like `run watch`.\n"
        "watch      streams the run's events over a websocket as\n"
        "           `[seq] ts kind actor: summary` lines (--json: raw event JSON lines),\n"
        "           from seq > N with --after N; exits 0 if the run succeeded, 1 otherwise\n"
        "show       prints the run as JSON\n"
        "events     prints the run's recorded events (all pages)\n"
        "artifacts  prints the artifact manifest; --url NAME prints a short-lived download\n"
        "           URL of one artifact instead\n"
        "cancel     cancels the run\n";

/* Parses the options shared by the single-id subcommands. */
struct id_opts {
        const char *id;
        long long after;
        bool json;
        const char *url_name;
};

static int parse_id_cmd(int argc, char **argv, const char *what, bool allow_after, bool allow_json,
                        bool allow_url, struct id_opts *ret) {
        static const struct option opts[] = {
                {"after", required_argument, NULL, 'a'},
                {"json", no_argument, NULL, 'j'},
                {"url", required_argument, NULL, 'u'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        *ret = (struct id_opts){0};
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'a':
                        if (!allow_after) {
                                cli_error("%s: --after is not an option of this command", what);
                                return CLI_EXIT_USAGE;
                        }
                        if (!cli_parse_ll("--after", optarg, &ret->after))
                                return CLI_EXIT_USAGE;
                        break;
                case 'j':
                        if (!allow_json) {
                                cli_error("%s: --json is not an option of this command", what);
                                return CLI_EXIT_USAGE;
                        }
                        ret->json = true;
                        break;
                case 'u':
                        if (!allow_url) {
                                cli_error("%s: --url is not an option of this command", what);
                                return CLI_EXIT_USAGE;
                        }
                        if (!cli_valid_id(optarg)) {
                                cli_error("%s: --url: \"%s\" is not a valid artifact name", what, optarg);
                                return CLI_EXIT_USAGE;
                        }
                        ret->url_name = optarg;
                        break;
                case 'h':
                        fputs(run_usage, stdout);
                        return -1;
                default:
                        fputs(run_usage, stderr);
                        return CLI_EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                cli_error("%s: the run ID argument is required", what);
                return CLI_EXIT_USAGE;
        }
        if (optind + 1 < argc) {
                cli_error("%s: unexpected argument \"%s\"", what, argv[optind + 1]);
                return CLI_EXIT_USAGE;
        }
        if (!cli_valid_id(argv[optind])) {
                cli_error("%s: \"%s\" is not a valid run id", what, argv[optind]);
                return CLI_EXIT_USAGE;
        }
        ret->id = argv[optind];
        return 0;
}

/* Turns parse_id_cmd's answer into "continue" (0) or an exit code (>0 after
 * marking it in *exit_code). -1 means --help was printed. */
#define PARSE_OR_RETURN(r) do { int _r = (r); if (_r == -1) return CLI_EXIT_OK; if (_r) return _r; } while (0)

static int run_launch(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option opts[] = {
                {"sandbox", required_argument, NULL, 's'},
                {"version", required_argument, NULL, 'v'},
                {"team", required_argument, NULL, 't'},
                {"watch", no_argument, NULL, 'w'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *sandbox = NULL, *team_flag = NULL;
        long long version = 0;
        bool watch = false, json = false;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's': sandbox = optarg; break;
                case 'v':
                        if (!cli_parse_ll("--version", optarg, &version))
                                return CLI_EXIT_USAGE;
                        if (version < 1) {
                                cli_error("run launch: --version: versions start at 1");
                                return CLI_EXIT_USAGE;
                        }
                        break;
                case 't': team_flag = optarg; break;
                case 'w': watch = true; break;
                case 'j': json = true; break;
                case 'h': fputs(run_usage, stdout); return CLI_EXIT_OK;
                default: fputs(run_usage, stderr); return CLI_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                cli_error("run launch: unexpected argument \"%s\"", argv[optind]);
                return CLI_EXIT_USAGE;
        }
        if (!sandbox) {
                cli_error("run launch: --sandbox ID is required");
                return CLI_EXIT_USAGE;
        }
        if (!cli_valid_id(sandbox)) {
                cli_error("run launch: --sandbox: \"%s\" is not a valid id", sandbox);
                return CLI_EXIT_USAGE;
        }
        if (team_flag && !cli_valid_id(team_flag)) {
                cli_error("run launch: --team: \"%s\" is not a valid id", team_flag);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        _cleanup_free_ char *team = team_flag ? strdup(team_flag) : NULL;
        if (version == 0 || !team) {
                /* Latest published version and the sandbox's own team. */
                _cleanup_free_ char *path = NULL;
                _cleanup_(api_response_done) struct api_response sb = {0};
                if (asprintf(&path, "/v1/sandboxes/%s", sandbox) < 0 || api_get(ctx, path, &sb) < 0)
                        return CLI_EXIT_FAIL;
                if (version == 0) {
                        size_t i;
                        json_t *v;
                        json_array_foreach(json_object_get(sb.body, "versions"), i, v) {
                                long long n = json_is_integer(v) ? json_integer_value(v)
                                              : json_integer_value(json_object_get(v, "version"));
                                if (n > version)
                                        version = n;
                        }
                        if (version == 0) {
                                cli_error("run launch: sandbox %s has no published version "
                                          "(run `paddock sandbox publish %s`)", sandbox, sandbox);
                                return CLI_EXIT_FAIL;
                        }
                }
                if (!team) {
                        const char *t = json_string_value(json_object_get(sb.body, "team"));
                        team = t ? strdup(t) : cli_default_team(ctx);
                        if (!team)
                                return CLI_EXIT_FAIL;
                }
        }

        char idem[UUID_STR_LEN];
        if (id_new_uuid(idem) < 0) {
                cli_error("run launch: could not generate an idempotency key");
                return CLI_EXIT_FAIL;
        }
        _cleanup_json_ json_t *body = json_pack("{s:s, s:I, s:s}", "sandbox", sandbox, "version",
                                                (json_int_t)version, "team", team);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || api_request(ctx, "POST", "/v1/runs", body, idem, &resp) < 0)
                return CLI_EXIT_FAIL;
        const char *id = json_string_value(json_object_get(resp.body, "id"));
        if (!id) {
                cli_error("run launch: the API answered without a run id");
                return CLI_EXIT_FAIL;
        }
        printf("%s\n", id);
        fflush(stdout);
        if (!watch)
                return CLI_EXIT_OK;
        struct watch_options wo = {.after = 0, .json = json || ctx->json};
        return watch_run(ctx, id, &wo);
}

static int run_watch(struct cli_ctx *ctx, int argc, char **argv) {
        struct id_opts o;
        PARSE_OR_RETURN(parse_id_cmd(argc, argv, "run watch", true, true, false, &o));
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        struct watch_options wo = {.after = o.after, .json = o.json || ctx->json};
        return watch_run(ctx, o.id, &wo);
}

static int run_show(struct cli_ctx *ctx, int argc, char **argv) {
        struct id_opts o;
        PARSE_OR_RETURN(parse_id_cmd(argc, argv, "run show", false, false, false, &o));
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/runs/%s", o.id) < 0 || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

static int run_events(struct cli_ctx *ctx, int argc, char **argv) {
        struct id_opts o;
        PARSE_OR_RETURN(parse_id_cmd(argc, argv, "run events", true, true, false, &o));
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        long long after = o.after;
        for (;;) {
                _cleanup_free_ char *path = NULL;
                _cleanup_(api_response_done) struct api_response resp = {0};
                if (asprintf(&path, "/v1/runs/%s/events?after=%lld&limit=1000", o.id, after) < 0 ||
                    api_get(ctx, path, &resp) < 0)
                        return CLI_EXIT_FAIL;
                json_t *items = json_object_get(resp.body, "items");
                size_t i;
                json_t *ev;
                long long last = after;
                json_array_foreach(items, i, ev) {
                        if (o.json || ctx->json) {
                                json_dumpf(ev, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
                                fputc('\n', stdout);
                        } else {
                                watch_print_event(ev);
                        }
                        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
                        if (seq > last)
                                last = seq;
                }
                const char *cursor = json_string_value(json_object_get(resp.body, "next_cursor"));
                /* Stop at the end, or if the server would make us loop in place. */
                if (!cursor || json_array_size(items) == 0 || last <= after)
                        break;
                long long next;
                if (!cli_parse_ll("next_cursor", cursor, &next) || next <= after)
                        break;
                after = next;
        }
        return CLI_EXIT_OK;
}

static int run_artifacts(struct cli_ctx *ctx, int argc, char **argv) {
        struct id_opts o;
        PARSE_OR_RETURN(parse_id_cmd(argc, argv, "run artifacts", false, true, true, &o));
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (o.url_name) {
                if (asprintf(&path, "/v1/runs/%s/artifacts/%s", o.id, o.url_name) < 0 ||
                    api_get(ctx, path, &resp) < 0)
                        return CLI_EXIT_FAIL;
                if (!resp.location) {
                        cli_error("run artifacts: the API answered HTTP %ld without a Location", resp.status);
                        return CLI_EXIT_FAIL;
                }
                printf("%s\n", resp.location);
                return CLI_EXIT_OK;
        }
        if (asprintf(&path, "/v1/runs/%s/artifacts", o.id) < 0 || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (o.json || ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        json_t *items = json_object_get(resp.body, "items");
        if (json_array_size(items) == 0) {
                printf("no artifacts yet\n");
                return CLI_EXIT_OK;
        }
        printf("%-28s %-10s %10s  %s\n", "NAME", "KIND", "SIZE", "SHA256");
        size_t i;
        json_t *a;
        json_array_foreach(items, i, a) {
                const char *name = json_string_value(json_object_get(a, "name"));
                const char *kind = json_string_value(json_object_get(a, "kind"));
                const char *sha = json_string_value(json_object_get(a, "sha256"));
                printf("%-28s %-10s %10" JSON_INTEGER_FORMAT "  %s\n", name ? name : "?",
                       kind ? kind : "?", json_integer_value(json_object_get(a, "size")),
                       sha ? sha : "?");
        }
        return CLI_EXIT_OK;
}

static int run_cancel(struct cli_ctx *ctx, int argc, char **argv) {
        struct id_opts o;
        PARSE_OR_RETURN(parse_id_cmd(argc, argv, "run cancel", false, false, false, &o));
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/runs/%s/cancel", o.id) < 0 ||
            api_request(ctx, "POST", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        printf("cancel requested for run %s\n", o.id);
        return CLI_EXIT_OK;
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv) {
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                fputs(run_usage, argc < 2 ? stderr : stdout);
                return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        }
        static const struct {
                const char *name;
                int (*fn)(struct cli_ctx *, int, char **);
        } subs[] = {
                {"launch", run_launch},       {"watch", run_watch},   {"show", run_show},
                {"events", run_events},       {"artifacts", run_artifacts}, {"cancel", run_cancel},
        };
        optind = 0;
        for (size_t i = 0; i < ELEMENTSOF(subs); i++)
                if (strcmp(argv[1], subs[i].name) == 0)
                        return subs[i].fn(ctx, argc - 1, argv + 1);
        cli_error("run: unknown subcommand \"%s\" (launch, watch, show, events, artifacts, cancel)", argv[1]);
        return CLI_EXIT_USAGE;
}
