/* paddock sandbox list / create / show / draft / publish / version / policy.
 * Sandboxes are named by id or name (the API resolves names). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
                cli_error("you are not a member of any team: pass --team TEAM");
                return NULL;
        }
        return strdup(id);
}

static int sandbox_create(struct cli_ctx *ctx, int argc, char **argv) {
        const char *file = NULL, *team_flag = NULL, *name_flag = NULL;
        const struct cli_bind binds[] = {
                {.name = "file", .str = &file},
                {.name = "team", .str = &team_flag},
                {.name = "name", .str = &name_flag},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
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

/* Parses `CMD SANDBOX ...` into pos[CLI_MAX_POS]: a usage error unless the
 * first argument can be a sandbox id or name. */
static int sandbox_args(struct cli_ctx *ctx, int argc, char **argv, const char *what, char **pos) {
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!cli_valid_id(pos[0])) {
                cli_error("%s: \"%s\" is not a sandbox id or name", what, pos[0]);
                return CLI_EXIT_USAGE;
        }
        return -1;
}

/* Parses `CMD SANDBOX`; *ret_id borrowed from argv. */
static int one_id_arg(struct cli_ctx *ctx, int argc, char **argv, const char *what, const char **ret_id) {
        char *pos[CLI_MAX_POS];
        int r = sandbox_args(ctx, argc, argv, what, pos);
        if (r < 0)
                *ret_id = pos[0];
        return r;
}

static int sandbox_publish(struct cli_ctx *ctx, int argc, char **argv) {
        const char *id = NULL;
        int r = one_id_arg(ctx, argc, argv, "sandbox publish", &id);
        if (r >= 0)
                return r;
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
        /* the number on stdout either way: scripts launch what it names */
        printf("%lld\n", (long long)json_integer_value(v));
        if (json_is_true(json_object_get(resp.body, "unchanged")))
                fprintf(stderr, "sandbox %s: the draft equals version %lld: kept the existing version %lld, "
                        "published nothing\n", id, (long long)json_integer_value(v), (long long)json_integer_value(v));
        return CLI_EXIT_OK;
}

static int sandbox_show(struct cli_ctx *ctx, int argc, char **argv) {
        const char *id = NULL;
        int r = one_id_arg(ctx, argc, argv, "sandbox show", &id);
        if (r >= 0)
                return r;
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
        const char *file = NULL;
        const struct cli_bind binds[] = {{.name = "file", .str = &file}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!cli_valid_id(pos[0])) {
                cli_error("sandbox draft: \"%s\" is not a sandbox id or name", pos[0]);
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
        char *pos[CLI_MAX_POS];
        int r;
        if ((r = sandbox_args(ctx, argc, argv, what, pos)) >= 0)
                return r;
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

static int sandbox_list(struct cli_ctx *ctx, int argc, char **argv) {
        const char *team = NULL, *name = NULL, *limit_s = NULL;
        bool all = false;
        const struct cli_bind binds[] = {
                {.name = "team", .str = &team},
                {.name = "name", .str = &name},
                {.name = "limit", .str = &limit_s},
                {.name = "all", .set = &all},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long limit;
        if (cli_parse_limit("sandbox list", limit_s, all, 100, &limit) < 0)
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *query = NULL, *next = NULL;
        _cleanup_json_ json_t *items = NULL;
        if (cli_query_add(&query, "team", team) < 0 || cli_query_add(&query, "name", name) < 0)
                return CLI_EXIT_FAIL;
        if ((r = cli_fetch_filtered(ctx, "/v1/sandboxes", query, limit, &items, &next)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(5, "ID", "NAME", "TEAM", "LATEST", "CREATED");
        size_t i;
        json_t *sb;
        json_array_foreach(items, i, sb) {
                char latest[24] = "";
                json_t *v = json_object_get(sb, "latest_version");
                if (json_is_integer(v))
                        snprintf(latest, sizeof latest, "%lld", (long long)json_integer_value(v));
                const char *tn = json_string_value(json_object_get(sb, "team_name"));
                cli_table_add(t, json_string_value(json_object_get(sb, "id")),
                              json_string_value(json_object_get(sb, "name")),
                              tn ? tn : json_string_value(json_object_get(sb, "team")), latest,
                              json_string_value(json_object_get(sb, "created_at")));
        }
        cli_print_list_table(t, next, "sandboxes");
        return CLI_EXIT_OK;
}

/* ---- the command table */

static const struct cli_command sandbox_subs[] = {
        {.name = "list",
         .alias = "ls",
         .summary = "list the sandbox definitions of the teams you may see",
         .description = "A table of id, name, team and latest published version. TEAM is a team id or\n"
                        "name; --name matches the exact name. The API's pages are followed up to\n"
                        "--limit definitions; --json prints {items, next_cursor}, next_cursor null\n"
                        "unless --limit cut the list (then it continues it).\n",
         .options = (const struct cli_option[]){{"team", 't', "TEAM", "only this team's sandboxes"},
                                                {"name", 0, "NAME", "only the sandbox named NAME"},
                                                {"limit", 'n', "N", "at most N sandboxes (default 100)"},
                                                {"all", 0, NULL, "every matching sandbox"},
                                                {0}},
         .fn = sandbox_list},
        {.name = "create",
         .summary = "create a sandbox definition from a file; prints its id",
         .description = "FILE is a JSON object {\"name\": \"...\", \"spec\": {...}} (optionally \"team\").\n"
                        "The team defaults to the file's \"team\", then to your first team; names are\n"
                        "unique in a tenant.\n",
         .options = (const struct cli_option[]){{"file", 'f', "FILE", "the definition (required)"},
                                                {"team", 't', "TEAM", "the team (id or name) that owns it"},
                                                {"name", 'n', "NAME", "its name, overriding the file's"},
                                                {0}},
         .fn = sandbox_create},
        {.name = "show", .alias = "get", .args = "SANDBOX", .summary = "print the definition as JSON",
         .fn = sandbox_show},
        {.name = "draft",
         .args = "SANDBOX",
         .summary = "replace the draft spec",
         .description = "FILE (- for stdin) is {\"spec\": {...}} or the spec object itself; publish it\n"
                        "afterwards.\n",
         .options = (const struct cli_option[]){{"file", 'f', "FILE", "the new draft (required)"}, {0}},
         .fn = sandbox_draft},
        {.name = "publish",
         .args = "SANDBOX",
         .summary = "publish the draft as an immutable version; prints its number",
         .description = "A draft equal to the latest published version publishes nothing: that\n"
                        "version's number is printed and stderr says it was kept (--json: the API's\n"
                        "answer, with \"unchanged\": true).\n",
         .fn = sandbox_publish},
        {.name = "version", .args = "SANDBOX VERSION", .summary = "print a published version as JSON",
         .fn = sandbox_version},
        {.name = "policy",
         .alias = "effective-policy",
         .args = "SANDBOX VERSION",
         .summary = "print the effective policy a run of that version gets",
         .description = "Resolved: catalog items looked up, egress profiles expanded into rules,\n"
                        "limits with their defaults, the prompt rendered with the definition's\n"
                        "values ({{NAME}} where a run fills it: run launch --var NAME=VALUE) and\n"
                        "prompt_template.variables, the variables a run may fill.\n",
         .fn = sandbox_policy},
        {0},
};

const struct cli_command cli_cmd_sandbox = {
        .name = "sandbox",
        .section = "Sandboxes and runs",
        .alias = "sandboxes",
        .summary = "sandbox definitions: list, create, draft, publish, show, version, policy",
        .description = "SANDBOX is a sandbox id or name (names are unique in a tenant). Every\n"
                       "subcommand takes --json to print the API's answer.\n",
        .subs = sandbox_subs,
};
