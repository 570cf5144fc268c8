/* paddock approvals list / show / approve / deny: what a run asks a person
 * (an egress destination under `egress.unknown: ask`, ...) and the decision,
 * which the API sends on to the run's node. Needs the approver role in the
 * run's team (tenant_admin: any). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/domain.h"


/* Approval ids are the runner's: [A-Za-z0-9._:-]{1,64}. */
static bool approval_id_ok(const char *id) {
        size_t n = strlen(id);
        if (n >= 1 && n <= 64 &&
            strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") == n)
                return true;
        cli_error("approvals: \"%s\" is not a valid approval id", id);
        return false;
}

/* "host:port" of an egress approval, else the compact JSON of what. malloc'd. */
static char *what_text(json_t *what) {
        const char *host = json_string_value(json_object_get(what, "host"));
        json_t *port = json_object_get(what, "port");
        char *s = NULL;
        if (host && json_is_integer(port)) {
                if (asprintf(&s, "%s:%lld", host, (long long)json_integer_value(port)) < 0)
                        return NULL;
                return s;
        }
        if (host)
                return strdup(host);
        /* a tool call, exec or file open (issue 12): what it would do, the
         * whole request in `approvals show --json` */
        const char *tool = json_string_value(json_object_get(what, "tool"));
        const char *cmd = json_string_value(json_object_get(what, "command"));
        const char *path = json_string_value(json_object_get(what, "path"));
        const char *act = cmd ? cmd : path;
        if (act || tool) {
                if (asprintf(&s, "%s%s%s", tool ? tool : "", tool && act ? ": " : "", act ? act : "") < 0)
                        return NULL;
                return s;
        }
        return json_dumps(what ? what : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
}

/* Team id -> name of the teams the caller sees, for the table; empty if
 * the lookup fails (the ids are shown then). */
static json_t *team_names(const struct cli_ctx *ctx) {
        json_t *names = json_object();
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!names || api_get(ctx, "/v1/teams", &resp) < 0)
                return names;
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(resp.body, "items"), i, t) {
                const char *id = json_string_value(json_object_get(t, "id"));
                json_t *name = json_object_get(t, "name");
                if (id && json_is_string(name))
                        json_object_set(names, id, name);
        }
        return names;
}

static int approvals_list(struct cli_ctx *ctx, int argc, char **argv) {
        const char *status = NULL, *team = NULL, *limit_s = NULL;
        bool all = false;
        const struct cli_bind binds[] = {
                {.name = "status", .str = &status},
                {.name = "team", .str = &team},
                {.name = "limit", .str = &limit_s},
                {.name = "all", .set = &all},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long limit;
        if (cli_parse_limit("approvals list", limit_s, all, 100, &limit) < 0)
                return CLI_EXIT_USAGE;
        if (status) {
                if (!domain_name_in(approval_statuses, status)) {
                        cli_error("approvals list: --status: unknown value \"%s\" (one of pending, approved, denied, "
                                  "expired, cancelled)",
                                  status);
                        return CLI_EXIT_USAGE;
                }
        }
        if (team && !*team) {
                cli_error("approvals list: --team must not be empty");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *query = NULL, *next = NULL;
        _cleanup_json_ json_t *items = NULL;
        if (cli_query_add(&query, "status", status) < 0 || cli_query_add(&query, "team", team) < 0)
                return CLI_EXIT_FAIL;
        if ((r = cli_fetch_filtered(ctx, "/v1/approvals", query, limit, &items, &next)) >= 0)
                return r;
        if (json_array_size(items) == 0) {
                printf("no approvals\n");
                return CLI_EXIT_OK;
        }
        _cleanup_json_ json_t *names = team_names(ctx);
        _cleanup_json_ json_t *t = cli_table_new(8, "ID", "STATUS", "RUN", "TEAM", "KIND", "WHAT", "RULE", "DEADLINE");
        size_t i;
        json_t *a;
        json_array_foreach(items, i, a) {
                const char *team_id = json_string_value(json_object_get(a, "team"));
                const char *tn = team_id ? json_string_value(json_object_get(names, team_id)) : NULL;
                _cleanup_free_ char *what = what_text(json_object_get(a, "what"));
                cli_table_add(t, json_string_value(json_object_get(a, "id")),
                              json_string_value(json_object_get(a, "status")),
                              json_string_value(json_object_get(a, "run")), tn ? tn : team_id,
                              json_string_value(json_object_get(a, "kind")), what,
                              json_string_value(json_object_get(a, "rule")),
                              json_string_value(json_object_get(a, "deadline")));
        }
        cli_print_list_table(t, next, "approvals");
        return CLI_EXIT_OK;
}

/* The approval as "key: value" lines. */
static void print_approval(json_t *a) {
        static const char *const keys[] = {"id",     "status",   "run",        "team",       "kind",
                                           "rule",   "deadline", "created_at", "decided_by", "decided_at",
                                           "comment", NULL};
        for (const char *const *k = keys; *k; k++) {
                if (strcmp(*k, "rule") == 0) {
                        _cleanup_free_ char *what = what_text(json_object_get(a, "what"));
                        printf("%-11s %s\n", "what:", what ? what : "-");
                }
                const char *v = json_string_value(json_object_get(a, *k));
                _cleanup_free_ char *label = NULL;
                if (asprintf(&label, "%s:", *k) < 0)
                        return;
                /* one line per field, whatever a comment holds */
                printf("%-11s ", label);
                for (const char *p = v ? v : "-"; *p; p++)
                        fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, stdout);
                fputc('\n', stdout);
        }
}

/* One line, control characters shown as '?', at most max bytes (then "..."). */
static void print_line(const char *v, size_t max) {
        size_t n = 0;
        for (const char *p = v ? v : "-"; *p; p++, n++) {
                if (n == max) {
                        fputs("...", stdout);
                        break;
                }
                fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, stdout);
        }
        fputc('\n', stdout);
}

/* Whose run it is and what it did just before asking (GET /v1/approvals/{id}
 * run_summary and context): what an approver needs to decide. */
static void print_approval_context(json_t *a) {
        json_t *rs = json_object_get(a, "run_summary");
        if (json_is_object(rs))
                printf("%-11s %s v%lld, launched by %s\n", "sandbox:",
                       json_string_value(json_object_get(rs, "sandbox_name")) ?: "-",
                       (long long)json_integer_value(json_object_get(rs, "version")),
                       json_string_value(json_object_get(json_object_get(rs, "launched_by"), "username")) ?: "-");
        json_t *ctx = json_object_get(a, "context");
        if (json_array_size(ctx) == 0)
                return;
        printf("context (the run's last %zu events before the request):\n", json_array_size(ctx));
        size_t i;
        json_t *ev;
        json_array_foreach(ctx, i, ev) {
                json_t *d = json_object_get(ev, "data");
                _cleanup_free_ char *data = json_is_string(d) ? strdup(json_string_value(d))
                                                               : json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
                printf("  %6lld %-18s ", (long long)json_integer_value(json_object_get(ev, "seq")),
                       json_string_value(json_object_get(ev, "kind")) ?: "-");
                print_line(data, 160);
        }
}

static int approvals_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!approval_id_ok(pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/approvals/%s", pos[0]) < 0 || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else {
                print_approval(resp.body);
                print_approval_context(resp.body);
        }
        return CLI_EXIT_OK;
}

static int approvals_decide(struct cli_ctx *ctx, int argc, char **argv, const char *decision) {
        const char *comment = NULL;
        const struct cli_bind binds[] = {{.name = "comment", .str = &comment}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!approval_id_ok(pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "decision", decision);
        if (!body || (comment && json_object_set_new(body, "comment", json_string(comment)) < 0))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (asprintf(&path, "/v1/approvals/%s/decision", pos[0]) < 0 ||
            api_request(ctx, "POST", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
        } else {
                const char *status = json_string_value(json_object_get(resp.body, "status"));
                const char *run = json_string_value(json_object_get(resp.body, "run"));
                printf("approval %s %s (run %s)\n", pos[0], status ? status : decision, run ? run : "?");
        }
        return CLI_EXIT_OK;
}

static int approvals_approve(struct cli_ctx *ctx, int argc, char **argv) {
        return approvals_decide(ctx, argc, argv, "approve");
}

static int approvals_deny(struct cli_ctx *ctx, int argc, char **argv) {
        return approvals_decide(ctx, argc, argv, "deny");
}

static const struct cli_command approvals_subs[] = {
        {.name = "list",
         .alias = "ls",
         .summary = "list approvals, oldest first",
         .description = "A table of id, status, run, team, what is asked, the rule and the deadline.\n"
                        "STATUS is one of pending, approved, denied, expired, cancelled (default:\n"
                        "all); TEAM a team id or name. The API's pages are followed up to --limit\n"
                        "approvals; "
                        "--json prints {items, next_cursor}, next_cursor null unless --limit cut the\n"
                        "list (then it continues it).\n",
         .options = (const struct cli_option[]){{"status", 's', "STATUS", "only approvals in STATUS"},
                                                {"team", 't', "TEAM", "only approvals of this team's runs"},
                                                {"limit", 'n', "N", "at most N approvals (default 100)"},
                                                {"all", 0, NULL, "every matching approval"},
                                                {0}},
         .fn = approvals_list},
        {.name = "show",
         .args = "ID",
         .summary = "show one approval: what is asked, by which run and rule, until when",
         .fn = approvals_show},
        {.name = "approve",
         .args = "ID",
         .summary = "allow what the run asked",
         .description = "The decision goes to the run's node at once and is audited.\n",
         .options = (const struct cli_option[]){{"comment", 'm', "TEXT", "recorded with the decision"}, {0}},
         .fn = approvals_approve},
        {.name = "deny",
         .args = "ID",
         .summary = "refuse what the run asked",
         .description = "The decision goes to the run's node at once and is audited. An approval\n"
                        "nobody decides is denied at its deadline.\n",
         .options = (const struct cli_option[]){{"comment", 'm', "TEXT", "recorded with the decision"}, {0}},
         .fn = approvals_deny},
        {0},
};

const struct cli_command cli_cmd_approvals = {
        .name = "approvals",
        .alias = "approval",
        .summary = "approvals runs ask for: list, show, approve, deny",
        .description = "What runs in the teams where you are an approver (tenant_admin: any) ask a\n"
                       "person, e.g. an egress destination under `egress.unknown: ask`.\n",
        .subs = approvals_subs,
};
