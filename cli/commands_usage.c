/* paddock usage: runs, runtime, tokens, egress and cost from billing's
 * records (GET /v1/usage), grouped by team, user, day, sandbox or model, as a table
 * with a totals row. Only the teams the caller may view count. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const group_bys[] = {"team", "user", "day", "sandbox", "definition", "model", NULL};

/* The label of an item's group: its name where the API gives one, else its id. */
static const char *group_label(json_t *item, const char *group_by) {
        static const struct {
                const char *group_by, *name_key, *id_key;
        } keys[] = {
                {"team", "team_name", "team"},
                {"user", "username", "user"},
                {"sandbox", "sandbox_name", "sandbox"},
                {"definition", "definition_name", "definition"},
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

/* One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF,
 * with quotes doubled; NULL is an empty field. */
static void csv_field(const char *v, bool last) {
        if (v && v[strcspn(v, ",\"\r\n")]) {
                putchar('"');
                for (const char *p = v; *p; p++) {
                        if (*p == '"')
                                putchar('"');
                        putchar(*p);
                }
                putchar('"');
        } else if (v) {
                fputs(v, stdout);
        }
        fputs(last ? "\r\n" : ",", stdout);
}

/* The figures of every grouping, in CSV column order (runs .. cost_usd). */
static const char *const csv_figures[] = {"runs", "runtime_seconds", "tokens_in", "tokens_out",
                                          "cache_read_tokens", "cache_write_tokens", "egress_bytes", "cost_usd",
                                          "cpu_seconds"};

/* `paddock usage export`: the API's items as CSV for finance, one header row,
 * then a row per group: the group's id and name (empty where it has none),
 * then the figures, numbers as the API gave them. */
static int usage_csv(json_t *body, const char *by) {
        static const struct {
                const char *group_by, *id_key, *name_key;
        } cols[] = {
                {"team", "team", "team_name"},         {"user", "user", "username"},
                {"day", "day", NULL},                  {"sandbox", "sandbox", "sandbox_name"},
                {"definition", "definition", "definition_name"}, {"model", "model", "provider"},
        };
        size_t c = 0;
        while (c < ELEMENTSOF(cols) - 1 && strcmp(cols[c].group_by, by))
                c++;
        printf("from,to,%s,%s,", cols[c].id_key, cols[c].name_key ? cols[c].name_key : "name");
        for (size_t f = 0; f < ELEMENTSOF(csv_figures); f++)
                csv_field(csv_figures[f], f + 1 == ELEMENTSOF(csv_figures));
        const char *from = json_string_value(json_object_get(body, "from")),
                   *to = json_string_value(json_object_get(body, "to"));
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(body, "items"), i, item) {
                csv_field(from, false);
                csv_field(to, false);
                csv_field(json_string_value(json_object_get(item, cols[c].id_key)), false);
                csv_field(cols[c].name_key ? json_string_value(json_object_get(item, cols[c].name_key)) : NULL, false);
                for (size_t f = 0; f < ELEMENTSOF(csv_figures); f++) {
                        json_t *v = json_object_get(item, csv_figures[f]);
                        char num[64] = "";
                        if (json_is_integer(v))
                                snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
                        else if (json_is_number(v))
                                snprintf(num, sizeof num, "%.6f", json_number_value(v));
                        csv_field(num, f + 1 == ELEMENTSOF(csv_figures));
                }
        }
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
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
        bool csv = npos > 0;
        if (csv && strcmp(pos[0], "export")) {
                cli_error("usage: unknown action \"%s\" (export, or none for the table)", pos[0]);
                return CLI_EXIT_USAGE;
        }
        if (group_by) {
                bool ok = false;
                for (const char *const *g = group_bys; *g && !ok; g++)
                        ok = strcmp(*g, group_by) == 0;
                if (!ok) {
                        cli_error("usage: --group-by: unknown value \"%s\" (one of team, user, day, sandbox, definition, model)",
                                  group_by);
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
        const char *by = json_string_value(json_object_get(resp.body, "group_by"));
        by = by ? by : group_by ? group_by : "team";
        if (csv)
                return usage_csv(resp.body, by);
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
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
        .args = "[export]",
        .summary = "runs, runtime, tokens, egress and cost per team, user, day, sandbox or model",
        .description = "From billing's records of the teams you may view, as a table with a totals\n"
                       "row (--json: the API's answer). A run counts on the UTC day it ended. DAY is\n"
                       "a date (2026-01-02) or an RFC 3339 date-time (its UTC day); both ends are\n"
                       "included; the default is this month up to today. TEAM is a team id or name.\n"
                       "By model: the model ids the runs called through the model gateway (tokens_in\n"
                       "includes cache reads and writes; runtime and egress are not split per model).\n"
                       "`paddock usage export` writes the groups as CSV (RFC 4180, a header row,\n"
                       "CRLF line ends) for finance: `paddock usage export --from 2027-01-01 --to\n"
                       "2027-01-31 --group-by team > usage.csv`.\n",
        .options = (const struct cli_option[]){{"from", 0, "DAY", "from DAY on (default: the 1st of this month)"},
                                               {"to", 0, "DAY", "up to and including DAY (default: today)"},
                                               {"group-by", 'g', "GROUP", "team, user, day, sandbox, definition or model"},
                                               {"team", 't', "TEAM", "only this team"},
                                               {0}},
        .fn = usage_main,
};

/* ---- paddock budget get|set: a team's monthly budget (PUT/GET /v1/teams/{id}/budget) */

static const char *const budget_limits[] = {"month_usd", "month_tokens", "month_runtime_s"};

static char *budget_path(const struct cli_ctx *ctx, const char *team) {
        _cleanup_free_ char *id = cli_resolve_team(ctx, team), *esc = id ? cli_url_escape(id) : NULL;
        char *p = NULL;
        if (!esc || asprintf(&p, "/v1/teams/%s/budget", esc) < 0)
                return NULL;
        return p;
}

/* A limit's figure for the table: "-" when unset. */
static void budget_cell(char *buf, size_t size, json_t *v, bool integer) {
        if (json_is_null(v) || !v)
                snprintf(buf, size, "-");
        else if (integer)
                snprintf(buf, size, "%lld", (long long)json_number_value(v));
        else
                snprintf(buf, size, "%.2f", json_number_value(v));
}

static int budget_print(struct cli_ctx *ctx, json_t *b) {
        if (ctx->json) {
                cli_print_json(b);
                return CLI_EXIT_OK;
        }
        json_t *lim = json_object_get(b, "limits"), *used = json_object_get(b, "used"),
               *pct = json_object_get(b, "percent");
        printf("budget of team %s in %s (UTC month): %lld runs, %lld active\n\n",
               json_string_value(json_object_get(b, "team")), json_string_value(json_object_get(b, "month")),
               (long long)json_integer_value(json_object_get(used, "runs")),
               (long long)json_integer_value(json_object_get(used, "active_runs")));
        static const char *const used_keys[] = {"cost_usd", "tokens", "runtime_seconds"};
        _cleanup_json_ json_t *t = cli_table_new(4, "LIMIT", "BUDGET", "USED", "PERCENT");
        for (size_t i = 0; i < ELEMENTSOF(budget_limits); i++) {
                char limit[32], use[32], p[32];
                budget_cell(limit, sizeof limit, json_object_get(lim, budget_limits[i]), i == 1);
                budget_cell(use, sizeof use, json_object_get(used, used_keys[i]), i == 1);
                json_t *jp = json_object_get(pct, budget_limits[i]);
                if (json_is_number(jp))
                        snprintf(p, sizeof p, "%.1f%%", json_number_value(jp));
                else
                        snprintf(p, sizeof p, "-");
                cli_table_add(t, budget_limits[i], limit, use, p);
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int budget_get(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *path = budget_path(ctx, pos[0]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        return budget_print(ctx, resp.body);
}

/* --usd, --tokens, --runtime-s: a positive number (tokens: an integer), or
 * "none" for no limit. Returns -1 to go on, or CLI_EXIT_USAGE. */
static int budget_arg(json_t *body, const char *option, const char *limit, const char *v, bool integer) {
        if (!v || !strcmp(v, "none"))
                return json_object_set_new(body, limit, json_null()) < 0 ? CLI_EXIT_FAIL : -1;
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end || !(d > 0) || (integer && d != (double)(long long)d)) {
                cli_error("budget set: --%s must be %s > 0 or \"none\"", option, integer ? "an integer" : "a number");
                return CLI_EXIT_USAGE;
        }
        json_t *j = integer ? json_integer((json_int_t)d) : json_real(d);
        return json_object_set_new(body, limit, j) < 0 ? CLI_EXIT_FAIL : -1;
}

static int budget_set(struct cli_ctx *ctx, int argc, char **argv) {
        const char *usd = NULL, *tokens = NULL, *runtime = NULL;
        const struct cli_bind binds[] = {
                {.name = "usd", .str = &usd},
                {.name = "tokens", .str = &tokens},
                {.name = "runtime-s", .str = &runtime},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *body = json_object();
        if (!body)
                return CLI_EXIT_FAIL;
        if ((r = budget_arg(body, "usd", "month_usd", usd, false)) >= 0 ||
            (r = budget_arg(body, "tokens", "month_tokens", tokens, true)) >= 0 ||
            (r = budget_arg(body, "runtime-s", "month_runtime_s", runtime, false)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = budget_path(ctx, pos[0]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || api_request(ctx, "PUT", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        return budget_print(ctx, resp.body);
}

static const struct cli_command budget_subs[] = {
        {.name = "get", .args = "TEAM", .summary = "the team's monthly budget and this month's consumption",
         .fn = budget_get},
        {.name = "set", .args = "TEAM", .summary = "set the team's monthly budget (tenant_admin)",
         .description = "Replaces the whole budget: a limit not given is no limit. At 80 % of a limit a\n"
                        "notice goes out on paddock.usage.alerts; at 100 % launches answer 402\n"
                        "quota_exceeded and the team's running runs end limit_exceeded.\n",
         .options = (const struct cli_option[]){{"usd", 0, "USD", "cost per month, or none"},
                                                {"tokens", 0, "N", "model tokens (in + out) per month, or none"},
                                                {"runtime-s", 0, "SECONDS", "run time per month, or none"},
                                                {0}},
         .fn = budget_set},
        {0},
};

const struct cli_command cli_cmd_budget = {
        .name = "budget",
        .summary = "a team's monthly budget: cost, tokens, runtime",
        .description = "TEAM is a team id or name. Months are UTC calendar months; a run counts in the\n"
                       "month it was launched in.\n",
        .subs = budget_subs,
};

/* ---- paddock governance: GET /v1/governance/metrics as tables */

static int governance_main(struct cli_ctx *ctx, int argc, char **argv) {
        const char *from = NULL, *to = NULL, *team = NULL;
        const struct cli_bind binds[] = {
                {.name = "from", .str = &from},
                {.name = "to", .str = &to},
                {.name = "team", .str = &team},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *query = NULL, *path = NULL;
        if (cli_query_add(&query, "from", from) < 0 || cli_query_add(&query, "to", to) < 0 ||
            cli_query_add(&query, "team", team) < 0 ||
            asprintf(&path, "/v1/governance/metrics%s%s", query ? "?" : "", query ? query : "") < 0)
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        json_t *b = resp.body, *a = json_object_get(b, "approvals"), *it;
        size_t i;
        printf("governance from %s to %s\n\npolicy decisions\n", json_string_value(json_object_get(b, "from")),
               json_string_value(json_object_get(b, "to")));
        _cleanup_json_ json_t *td = cli_table_new(4, "RULE", "TEAM", "OUTCOME", "COUNT");
        json_array_foreach(json_object_get(b, "policy_decisions"), i, it) {
                char n[32];
                snprintf(n, sizeof n, "%lld", (long long)json_integer_value(json_object_get(it, "count")));
                cli_table_add(td, json_string_value(json_object_get(it, "rule")),
                              json_string_value(json_object_get(it, "team_name")),
                              json_string_value(json_object_get(it, "outcome")), n);
        }
        cli_table_print(td);
        char med[32] = "-", p95[32] = "-", share[32] = "-";
        if (json_is_number(json_object_get(a, "median_decision_seconds")))
                snprintf(med, sizeof med, "%.1f s", json_number_value(json_object_get(a, "median_decision_seconds")));
        if (json_is_number(json_object_get(a, "p95_decision_seconds")))
                snprintf(p95, sizeof p95, "%.1f s", json_number_value(json_object_get(a, "p95_decision_seconds")));
        if (json_is_number(json_object_get(a, "denied_share")))
                snprintf(share, sizeof share, "%.1f%%", 100 * json_number_value(json_object_get(a, "denied_share")));
        printf("\napprovals: %lld (%lld approved, %lld denied, %lld expired, %lld pending); "
               "decision median %s, p95 %s; denied %s\n\nruns per team per day\n",
               (long long)json_integer_value(json_object_get(a, "count")),
               (long long)json_integer_value(json_object_get(a, "approved")),
               (long long)json_integer_value(json_object_get(a, "denied")),
               (long long)json_integer_value(json_object_get(a, "expired")),
               (long long)json_integer_value(json_object_get(a, "pending")), med, p95, share);
        _cleanup_json_ json_t *tr = cli_table_new(3, "DAY", "TEAM", "RUNS");
        json_array_foreach(json_object_get(b, "runs_per_team_per_day"), i, it) {
                char n[32];
                snprintf(n, sizeof n, "%lld", (long long)json_integer_value(json_object_get(it, "runs")));
                cli_table_add(tr, json_string_value(json_object_get(it, "day")),
                              json_string_value(json_object_get(it, "team_name")), n);
        }
        cli_table_print(tr);
        printf("\nescapes tried (platform denials)\n");
        _cleanup_json_ json_t *te = cli_table_new(3, "TEAM", "LEVEL", "COUNT");
        json_array_foreach(json_object_get(b, "escapes_tried"), i, it) {
                char n[32];
                snprintf(n, sizeof n, "%lld", (long long)json_integer_value(json_object_get(it, "count")));
                cli_table_add(te, json_string_value(json_object_get(it, "team_name")),
                              json_string_value(json_object_get(it, "level")), n);
        }
        cli_table_print(te);
        return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_governance = {
        .name = "governance",
        .summary = "policy decisions, approvals, adoption and escapes tried of your teams",
        .description = "GET /v1/governance/metrics over a range of UTC days (both included; default\n"
                       "this month up to today). TEAM is a team id or name.\n",
        .options = (const struct cli_option[]){{"from", 0, "DAY", "from DAY on (default: the 1st of this month)"},
                                               {"to", 0, "DAY", "up to and including DAY (default: today)"},
                                               {"team", 't', "TEAM", "only this team"},
                                               {0}},
        .fn = governance_main,
};
