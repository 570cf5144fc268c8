/* paddock hold set / lift / list (legal holds) and paddock retention show /
 * set (the tenant's default and maximum retention): issue 14 §3,
 * docs/CONTRACTS.md "Retention and legal hold". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static bool hold_kind_valid(const char *kind) {
        return !strcmp(kind, "run") || !strcmp(kind, "sandbox") || !strcmp(kind, "team");
}

/* /v1/holds/KIND/ID, or NULL after saying what is wrong (exit 2). */
static char *hold_path(const struct cli_ctx *ctx, const char *kind, const char *id) {
        if (!hold_kind_valid(kind)) {
                cli_error("%s: KIND must be run, sandbox or team, not \"%s\"", ctx->what, kind);
                return NULL;
        }
        _cleanup_free_ char *i = cli_url_escape(id);
        char *p = NULL;
        if (!i || asprintf(&p, "/v1/holds/%s/%s", kind, i) < 0)
                return NULL;
        return p;
}

static int hold_set(struct cli_ctx *ctx, int argc, char **argv) {
        const char *reason = NULL;
        const struct cli_bind binds[] = {{.name = "reason", .str = &reason}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!reason || !*reason) {
                cli_error("hold set: --reason is required (why the evidence must be kept)");
                return CLI_EXIT_USAGE;
        }
        _cleanup_free_ char *path = hold_path(ctx, pos[0], pos[1]);
        if (!path)
                return CLI_EXIT_USAGE;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "reason", reason);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || api_request(ctx, "PUT", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("hold %s on %s %s\n", resp.status == 201 ? "set" : "updated", pos[0],
                       json_string_value(json_object_get(resp.body, "id")));
        return CLI_EXIT_OK;
}

static int hold_lift(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *path = hold_path(ctx, pos[0], pos[1]);
        if (!path)
                return CLI_EXIT_USAGE;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "DELETE", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:b}", "kind", pos[0], "id", pos[1], "lifted", 1);
                cli_print_json(o);
        } else
                printf("hold lifted from %s %s\n", pos[0], pos[1]);
        return CLI_EXIT_OK;
}

static int hold_list(struct cli_ctx *ctx, int argc, char **argv) {
        const char *kind = NULL;
        const struct cli_bind binds[] = {{.name = "kind", .str = &kind}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (kind && !hold_kind_valid(kind)) {
                cli_error("hold list: --kind must be run, sandbox or team, not \"%s\"", kind);
                return CLI_EXIT_USAGE;
        }
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/v1/holds%s%s", kind ? "?kind=" : "", kind ? kind : "") < 0)
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, path, &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(5, "KIND", "ID", "SET_AT", "SET_BY", "REASON");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                cli_table_add(t, json_string_value(json_object_get(it, "kind")),
                              json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "set_at")),
                              json_string_value(json_object_get(it, "set_by")),
                              json_string_value(json_object_get(it, "reason")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static const struct cli_command hold_subs[] = {
        {.name = "set", .args = "KIND ID", .summary = "put a legal hold on a run, sandbox or team (or change its reason)",
         .description = "KIND is run, sandbox or team; ID its id (a sandbox or team: or its name). While a\n"
                        "hold covers a run (directly, through its sandbox definition or its team), the\n"
                        "retention sweep keeps its events and artifacts. tenant_admin or auditor; audited.\n",
         .options = (const struct cli_option[]){{"reason", 'r', "TEXT", "why the evidence must be kept (required)"},
                                                {0}},
         .fn = hold_set},
        {.name = "lift", .args = "KIND ID", .summary = "lift a legal hold (tenant_admin or auditor; audited)",
         .fn = hold_lift},
        {.name = "list", .alias = "ls", .summary = "list the tenant's legal holds",
         .options = (const struct cli_option[]){{"kind", 'k', "KIND", "only holds of KIND (run, sandbox, team)"}, {0}},
         .fn = hold_list},
        {0},
};

const struct cli_command cli_cmd_hold = {
        .name = "hold",
        .alias = "holds",
        .summary = "legal holds that stop the retention sweep: set, lift, list",
        .subs = hold_subs,
};

static int retention_print(const struct cli_ctx *ctx, json_t *body) {
        if (ctx->json)
                cli_print_json(body);
        else
                printf("default_days %lld\nmax_days %lld\n",
                       (long long)json_integer_value(json_object_get(body, "default_days")),
                       (long long)json_integer_value(json_object_get(body, "max_days")));
        return CLI_EXIT_OK;
}

static int retention_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/tenant/retention", &resp) < 0)
                return CLI_EXIT_FAIL;
        return retention_print(ctx, resp.body);
}

static int retention_set(struct cli_ctx *ctx, int argc, char **argv) {
        const char *def = NULL, *max = NULL;
        const struct cli_bind binds[] = {{.name = "default-days", .str = &def}, {.name = "max-days", .str = &max}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long d, m;
        if (!def || !max) {
                cli_error("retention set: --default-days and --max-days are both required");
                return CLI_EXIT_USAGE;
        }
        if (!cli_parse_ll("--default-days", def, &d) || !cli_parse_ll("--max-days", max, &m))
                return CLI_EXIT_USAGE;
        _cleanup_json_ json_t *body = json_pack("{s:I, s:I}", "default_days", (json_int_t)d, "max_days", (json_int_t)m);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || api_request(ctx, "PUT", "/v1/tenant/retention", body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        return retention_print(ctx, resp.body);
}

static const struct cli_command retention_subs[] = {
        {.name = "show", .summary = "the tenant's default and maximum retention in days", .fn = retention_show},
        {.name = "set", .summary = "set the tenant's default and maximum retention (tenant_admin)",
         .description = "A sandbox definition's spec.retention_days may not exceed the maximum; without\n"
                        "one a run keeps the default. Each run's evidence is deleted that many days\n"
                        "after it ended, unless a legal hold covers it (paddock hold).\n",
         .options = (const struct cli_option[]){{"default-days", 0, "N", "retention of runs whose definition sets none"},
                                                {"max-days", 0, "N", "the most any definition may set"},
                                                {0}},
         .fn = retention_set},
        {0},
};

const struct cli_command cli_cmd_retention = {
        .name = "retention",
        .summary = "how long the tenant's run evidence is kept: show, set",
        .subs = retention_subs,
};
