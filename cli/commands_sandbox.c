/* paddock sandbox create / publish / show. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char sandbox_usage[] =
        "usage: paddock sandbox create -f FILE [--team TEAM_ID] [--name NAME]\n"
        "       paddock sandbox publish ID\n"
        "       paddock sandbox show ID\n"
        "       paddock sandbox draft ID --file FILE\n"
        "       paddock sandbox version ID VERSION\n"
        "       paddock sandbox policy ID VERSION\n"
        "\n"
        "create   creates a sandbox definition from FILE, a JSON object\n"
        "         {\"name\": \"...\", \"spec\": {...}} (optionally \"team\"); prints its id.\n"
        "         The team defaults to the file's \"team\", then to your first team;\n"
        "         --name overrides the file's name (names are unique in a tenant).\n"
        "publish  publishes the draft as an immutable version; prints the version number\n"
        "show     prints the definition as JSON\n"
        "draft    replaces the draft spec with FILE (- for stdin): {\"spec\": {...}} or the\n"
        "         spec object itself; publish it afterwards\n"
        "version  prints a published version (its immutable spec) as JSON\n"
        "policy   prints the effective policy a run of that version gets, resolved:\n"
        "         catalog items looked up, egress profiles expanded into rules, limits\n"
        "         with their defaults, the prompt rendered\n"
        "--json prints the API's answer (create, publish, draft).\n";

/* The caller's first team id from GET /v1/me. Accepts teams as objects with
 * "id" or as plain id strings, at the top level or under "user". */
char *cli_default_team(const struct cli_ctx *ctx) {
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/me", &resp) < 0)
                return NULL;
        json_t *teams = json_object_get(resp.body, "teams");
        if (!json_is_array(teams))
                teams = json_object_get(json_object_get(resp.body, "user"), "teams");
        json_t *first = json_array_get(teams, 0);
        const char *id = json_is_string(first) ? json_string_value(first)
                                               : json_string_value(json_object_get(first, "id"));
        if (!id) {
                cli_error("you are not a member of any team: pass --team TEAM_ID");
                return NULL;
        }
        return strdup(id);
}

static int sandbox_create(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option opts[] = {
                {"file", required_argument, NULL, 'f'},
                {"team", required_argument, NULL, 't'},
                {"name", required_argument, NULL, 'n'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *file = NULL, *team_flag = NULL, *name_flag = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "f:t:n:h", opts, NULL)) != -1) {
                switch (c) {
                case 'f': file = optarg; break;
                case 't': team_flag = optarg; break;
                case 'n': name_flag = optarg; break;
                case 'j': ctx->json = true; break;
                case 'h': fputs(sandbox_usage, stdout); return CLI_EXIT_OK;
                default: fputs(sandbox_usage, stderr); return CLI_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                cli_error("sandbox create: unexpected argument \"%s\"", argv[optind]);
                return CLI_EXIT_USAGE;
        }
        if (!file) {
                cli_error("sandbox create: -f FILE is required");
                return CLI_EXIT_USAGE;
        }

        json_error_t jerr;
        _cleanup_json_ json_t *doc = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
                if (jerr.line > 0)
                        cli_error("sandbox create: %s: not valid JSON at line %d column %d: %s", file,
                                  jerr.line, jerr.column, jerr.text);
                else
                        cli_error("sandbox create: %s: %s", file, jerr.text);
                return CLI_EXIT_USAGE;
        }
        if (!json_is_object(doc)) {
                cli_error("sandbox create: %s: expected a JSON object {\"name\", \"spec\"}", file);
                return CLI_EXIT_USAGE;
        }
        if (name_flag) {
                if (!*name_flag) {
                        cli_error("sandbox create: --name must not be empty");
                        return CLI_EXIT_USAGE;
                }
                json_object_set_new(doc, "name", json_string(name_flag));
        }
        json_t *name = json_object_get(doc, "name");
        json_t *spec = json_object_get(doc, "spec");
        if (!json_is_string(name) || !*json_string_value(name)) {
                cli_error("sandbox create: %s: field \"name\" is missing or not a string", file);
                return CLI_EXIT_USAGE;
        }
        if (!json_is_object(spec)) {
                cli_error("sandbox create: %s: field \"spec\" is missing or not an object", file);
                return CLI_EXIT_USAGE;
        }

        _cleanup_free_ char *team = NULL;
        if (team_flag)
                team = strdup(team_flag);
        else if (json_is_string(json_object_get(doc, "team")))
                team = strdup(json_string_value(json_object_get(doc, "team")));
        else if (cli_require_login(ctx))
                team = cli_default_team(ctx);
        if (!team)
                return CLI_EXIT_FAIL;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        _cleanup_json_ json_t *body = json_pack("{s:O, s:s, s:O}", "name", name, "team", team, "spec", spec);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || api_request(ctx, "POST", "/v1/sandboxes", body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        const char *id = json_string_value(json_object_get(resp.body, "id"));
        if (!id) {
                cli_error("sandbox create: the API answered without an id");
                return CLI_EXIT_FAIL;
        }
        printf("%s\n", id);
        return CLI_EXIT_OK;
}

/* Parses `CMD ID` with only --help allowed. */
static int one_id_arg(struct cli_ctx *ctx, int argc, char **argv, const char *what, const char **ret_id) {
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0}};
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (c == 'j') {
                        ctx->json = true;
                        continue;
                }
                if (c == 'h') {
                        fputs(sandbox_usage, stdout);
                        return 1;
                }
                fputs(sandbox_usage, stderr);
                return -CLI_EXIT_USAGE;
        }
        if (optind >= argc) {
                cli_error("%s: the sandbox ID argument is required", what);
                return -CLI_EXIT_USAGE;
        }
        if (optind + 1 < argc) {
                cli_error("%s: unexpected argument \"%s\"", what, argv[optind + 1]);
                return -CLI_EXIT_USAGE;
        }
        if (!cli_valid_id(argv[optind])) {
                cli_error("%s: \"%s\" is not a valid id", what, argv[optind]);
                return -CLI_EXIT_USAGE;
        }
        *ret_id = argv[optind];
        return 0;
}

static int sandbox_publish(struct cli_ctx *ctx, int argc, char **argv) {
        const char *id = NULL;
        int r = one_id_arg(ctx, argc, argv, "sandbox publish", &id);
        if (r != 0)
                return r > 0 ? CLI_EXIT_OK : -r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/sandboxes/%s/versions", id) < 0)
                return CLI_EXIT_FAIL;
        if (api_request(ctx, "POST", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        json_t *v = json_object_get(resp.body, "version");
        if (!json_is_integer(v)) {
                cli_error("sandbox publish: the API answered without a version number");
                return CLI_EXIT_FAIL;
        }
        printf("%lld\n", (long long)json_integer_value(v));
        return CLI_EXIT_OK;
}

static int sandbox_show(struct cli_ctx *ctx, int argc, char **argv) {
        const char *id = NULL;
        int r = one_id_arg(ctx, argc, argv, "sandbox show", &id);
        if (r != 0)
                return r > 0 ? CLI_EXIT_OK : -r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;

        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/sandboxes/%s", id) < 0)
                return CLI_EXIT_FAIL;
        if (api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

static int sandbox_draft(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"ID", NULL};
        const char *file = NULL;
        const struct cli_flag flags[] = {{.name = "file", .key = 'f', .str = &file}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "sandbox draft", sandbox_usage, flags, names, 1, 1, pos,
                                &npos)) >= 0)
                return r;
        if (!cli_valid_id(pos[0])) {
                cli_error("sandbox draft: \"%s\" is not a valid id", pos[0]);
                return CLI_EXIT_USAGE;
        }
        if (!file) {
                cli_error("sandbox draft: --file FILE is required (- reads stdin)");
                return CLI_EXIT_USAGE;
        }
        _cleanup_json_ json_t *doc = cli_load_json_object("sandbox draft", file);
        if (!doc)
                return CLI_EXIT_USAGE;
        json_t *spec = json_object_get(doc, "spec");
        if (spec && !json_is_object(spec)) {
                cli_error("sandbox draft: %s: field \"spec\" is not an object", file);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *body = json_pack("{s:O}", "spec", spec ? spec : doc);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || asprintf(&path, "/v1/sandboxes/%s/draft", pos[0]) < 0 ||
            api_request(ctx, "PUT", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("draft of sandbox %s replaced; publish it with `paddock sandbox publish %s`\n", pos[0],
                       pos[0]);
        return CLI_EXIT_OK;
}

/* GET /v1/sandboxes/{id}/versions/{v}<suffix>, printed as indented JSON. */
static int sandbox_version_get(struct cli_ctx *ctx, int argc, char **argv, const char *what, const char *suffix) {
        static const char *const names[] = {"ID", "VERSION", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, what, sandbox_usage, NULL, names, 2, 2, pos, &npos)) >= 0)
                return r;
        if (!cli_valid_id(pos[0])) {
                cli_error("%s: \"%s\" is not a valid id", what, pos[0]);
                return CLI_EXIT_USAGE;
        }
        long long version;
        if (!cli_parse_ll("VERSION", pos[1], &version))
                return CLI_EXIT_USAGE;
        if (version < 1) {
                cli_error("%s: VERSION: versions start at 1", what);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/sandboxes/%s/versions/%lld%s", pos[0], version, suffix) < 0 ||
            api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

static int sandbox_version(struct cli_ctx *ctx, int argc, char **argv) {
        return sandbox_version_get(ctx, argc, argv, "sandbox version", "");
}

static int sandbox_policy(struct cli_ctx *ctx, int argc, char **argv) {
        return sandbox_version_get(ctx, argc, argv, "sandbox policy", "/effective-policy");
}

int cmd_sandbox(struct cli_ctx *ctx, int argc, char **argv) {
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                fputs(sandbox_usage, argc < 2 ? stderr : stdout);
                return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        }
        const char *sub = argv[1];
        optind = 0;
        if (strcmp(sub, "create") == 0)
                return sandbox_create(ctx, argc - 1, argv + 1);
        if (strcmp(sub, "publish") == 0)
                return sandbox_publish(ctx, argc - 1, argv + 1);
        if (strcmp(sub, "show") == 0 || strcmp(sub, "get") == 0)
                return sandbox_show(ctx, argc - 1, argv + 1);
        if (strcmp(sub, "draft") == 0)
                return sandbox_draft(ctx, argc - 1, argv + 1);
        if (strcmp(sub, "version") == 0)
                return sandbox_version(ctx, argc - 1, argv + 1);
        if (strcmp(sub, "policy") == 0 || strcmp(sub, "effective-policy") == 0)
                return sandbox_policy(ctx, argc - 1, argv + 1);
        cli_error("sandbox: unknown subcommand \"%s\" (create, publish, show, draft, version, policy)", sub);
        return CLI_EXIT_USAGE;
}
