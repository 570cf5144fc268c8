/* paddock usage: runs, runtime, tokens, egress and cost from billing's
 * records (GET /v1/usage), grouped by team, user, day, sandbox or model, as a table
 * with a totals row. Only the teams the caller may view count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const group_bys[] = {"team", "user", "day", "sandbox", "model", NULL};

/* The label of an item's group: its name where the API gives one, else its id. */
static const char *group_label(json_t *item, const char *group_by) {
        static const struct {
                const char *group_by, *name_key, *id_key;
        } keys[] = {
                {"team", "team_name", "team"},
                {"user", "username", "user"},
                {"sandbox", "sandbox_name", "sandbox"},
                {"day", "day", "day"},
                {"model", "model", "model"},
        };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (strcmp(keys[i].group_by, group_by) != 0)
                        continue;
                json_t *v = json_object_get(item, keys[i].name_key);
                /* user: {id, username} or a plain id */
                if (json_is_object(json_object_get(item, keys[i].id_key)) && !json_is_string(v))
                        v = json_object_get(json_object_get(item, keys[i].id_key), "username");
                if (!json_is_string(v))
                        v = json_object_get(item, keys[i].id_key);
                return json_string_value(v);
        }
        return NULL;
}

/* Adds one row: label, then the figures of o. */
static void add_row(json_t *t, const char *label, json_t *o) {
        char runs[32], runtime[32], tin[32], tout[32], egress[32], cost[32];
        snprintf(runs, sizeof runs, "%lld", (long long)json_integer_value(json_object_get(o, "runs")));
        snprintf(runtime, sizeof runtime, "%.1f", json_number_value(json_object_get(o, "runtime_seconds")));
        snprintf(tin, sizeof tin, "%lld", (long long)json_integer_value(json_object_get(o, "tokens_in")));
        snprintf(tout, sizeof tout, "%lld", (long long)json_integer_value(json_object_get(o, "tokens_out")));
        snprintf(egress, sizeof egress, "%lld", (long long)json_integer_value(json_object_get(o, "egress_bytes")));
        snprintf(cost, sizeof cost, "%.4f", json_number_value(json_object_get(o, "cost_usd")));
        cli_table_add(t, label, runs, runtime, tin, tout, egress, cost);
}

static int usage_main(struct cli_ctx *ctx, int argc, char **argv) {
        const char *from = NULL, *to = NULL, *group_by = NULL, *team = NULL;
        const struct cli_bind binds[] = {
                {.name = "from", .str = &from},
                {.name = "to", .str = &to},
                {.name = "group-by", .str = &group_by},
                {.name = "team", .str = &team},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (group_by) {
                bool ok = false;
                for (const char *const *g = group_bys; *g && !ok; g++)
                        ok = strcmp(*g, group_by) == 0;
                if (!ok) {
                        cli_error("usage: --group-by: unknown value \"%s\" (one of team, user, day, sandbox, model)", group_by);
                        return CLI_EXIT_USAGE;
                }
        }
        if (team && !*team) {
                cli_error("usage: --team must not be empty");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *query = NULL, *path = NULL;
        if (cli_query_add(&query, "from", from) < 0 || cli_query_add(&query, "to", to) < 0 ||
            cli_query_add(&query, "group_by", group_by) < 0 || cli_query_add(&query, "team", team) < 0 ||
            asprintf(&path, "/v1/usage%s%s", query ? "?" : "", query ? query : "") < 0)
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        const char *by = json_string_value(json_object_get(resp.body, "group_by"));
        by = by ? by : group_by ? group_by : "team";
        const char *f = json_string_value(json_object_get(resp.body, "from"));
        const char *t_ = json_string_value(json_object_get(resp.body, "to"));
        printf("usage from %s to %s by %s\n\n", f ? f : "-", t_ ? t_ : "-", by);
        _cleanup_free_ char *head = strdup(by);
        for (char *p = head; p && *p; p++)
                *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        _cleanup_json_ json_t *t = cli_table_new(7, head ? head : "GROUP", "RUNS", "RUNTIME_S", "TOKENS_IN",
                                                 "TOKENS_OUT", "EGRESS_BYTES", "COST_USD");
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(resp.body, "items"), i, item) add_row(t, group_label(item, by), item);
        add_row(t, "TOTAL", json_object_get(resp.body, "totals"));
        cli_table_print(t);
        return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_usage = {
        .name = "usage",
        .summary = "runs, runtime, tokens, egress and cost per team, user, day, sandbox or model",
        .description = "From billing's records of the teams you may view, as a table with a totals\n"
                       "row (--json: the API's answer). A run counts on the UTC day it ended. DAY is\n"
                       "a date (2026-01-02) or an RFC 3339 date-time (its UTC day); both ends are\n"
                       "included; the default is this month up to today. TEAM is a team id or name.\n"
                       "By model: the model ids the runs called through the model gateway (tokens_in\n"
                       "includes cache reads and writes; runtime and egress are not split per model).\n",
        .options = (const struct cli_option[]){{"from", 0, "DAY", "from DAY on (default: the 1st of this month)"},
                                               {"to", 0, "DAY", "up to and including DAY (default: today)"},
                                               {"group-by", 'g', "GROUP", "team, user, day, sandbox or model"},
                                               {"team", 't', "TEAM", "only this team"},
                                               {0}},
        .fn = usage_main,
};
