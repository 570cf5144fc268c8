/* GET /v1/usage: what the runs of the teams the caller may view used, summed
 * per team, user, day or sandbox over a range of days, from billing's
 * billing.run_usage (one row per run, the UTC day the run ended; billing
 * migration 0003 lets the api read it, its tenant policy keeps tenants
 * apart), or per model from billing.run_model_usage (one row per run and
 * model, billing migration 0004; cpu_seconds per run since billing
 * migration 0006). One query: GROUPING SETS gives the groups
 * and the total together. `live` adds the runs not ended yet (api.runs). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "core/timeutil.h"
#include "pg/pg.h"

/* How each grouping reads: its key columns (id, name) for the SELECT and
 * GROUP BY, the joins they need, the order of the groups, and the JSON names. */
static const struct {
        const char *group_by;
        const char *key, *name, *joins, *order;
        const char *key_field, *name_field; /* name_field NULL: the key alone */
        bool per_model;                     /* from run_model_usage: its own sums (MODEL_SUMS) */
} groupings[] = {
        {"team", "u.team_id::text", "t.name", "LEFT JOIN api.teams t ON t.id = u.team_id", "t.name, u.team_id::text",
         "team", "team_name", false},
        {"user", "u.user_id::text", "us.username", "LEFT JOIN api.users us ON us.id = u.user_id",
         "us.username, u.user_id::text", "user", "username", false},
        {"day", "u.day::text", "u.day::text", "", "u.day::text", "day", NULL, false},
        {"sandbox", "r.sandbox_id::text", "s.name",
         "LEFT JOIN api.runs r ON r.id = u.run_id LEFT JOIN api.sandboxes s ON s.id = r.sandbox_id",
         "s.name, r.sandbox_id::text", "sandbox", "sandbox_name", false},
        {"model", "u.model", "u.provider", "", "u.model, u.provider", "model", "provider", true},
        /* issue 14 §4's name for a sandbox definition: the same groups as sandbox */
        {"definition", "r.sandbox_id::text", "s.name",
         "LEFT JOIN api.runs r ON r.id = u.run_id LEFT JOIN api.sandboxes s ON s.id = r.sandbox_id",
         "s.name, r.sandbox_id::text", "definition", "definition_name", false},
};

/* The sums of a grouping, columns 2-7 then 9-11 (8 is GROUPING()): per run,
 * or per model, where runs counts the runs that called the model and a run's
 * runtime and egress are not split between its models (0). */
#define RUN_SUMS                                                                                              \
        "count(*), coalesce(sum(u.runtime_seconds), 0), coalesce(sum(u.tokens_in), 0), "                     \
        "coalesce(sum(u.tokens_out), 0), coalesce(sum(u.egress_bytes), 0), coalesce(sum(u.cost_usd), 0)"
/* calls are the models' (0 per run); the cache figures billing keeps per run (billing migration 0005) */
#define RUN_EXTRA "0, coalesce(sum(u.cache_read_tokens), 0), coalesce(sum(u.cache_write_tokens), 0), " \
                  "coalesce(sum(u.cpu_seconds), 0)"
#define MODEL_SUMS                                                                                            \
        "count(DISTINCT u.run_id), 0, coalesce(sum(u.tokens_in), 0), coalesce(sum(u.tokens_out), 0), 0, "    \
        "coalesce(sum(u.cost_usd), 0)"
/* a run's CPU time is not split between its models (0), like its runtime */
#define MODEL_EXTRA "coalesce(sum(u.calls), 0), coalesce(sum(u.cache_read_tokens), 0), coalesce(sum(u.cache_write_tokens), 0), 0"

int usage_day_arg(struct api_req *r, const char *name, char out[11], const char **ret) {
        char buf[64];
        const char *v;
        *ret = NULL;
        int k = api_query_single(r, name, buf, sizeof buf, &v);
        if (k < 0 || !v)
                return k;
        int64_t us;
        if (time_parse_date(v, &us) < 0 && time_parse_rfc3339(v, &us) < 0)
                return api_fail(r, -EINVAL, "invalid_field",
                                "%s must be a date such as 2026-01-02 or an RFC 3339 date-time", name);
        time_t secs = (time_t)(us / 1000000 - (us % 1000000 < 0));
        struct tm tm;
        if (!gmtime_r(&secs, &tm) || strftime(out, 11, "%Y-%m-%d", &tm) != 10)
                return api_fail(r, -EINVAL, "invalid_field", "%s is out of range", name);
        *ret = out;
        return 0;
}

void usage_default_range(char from_day[11], const char **from, char to_day[11], const char **to) {
        /* this month (UTC) up to today; a from alone runs to today */
        if (!*to) {
                time_t now = time(NULL);
                struct tm tm;
                gmtime_r(&now, &tm);
                strftime(to_day, 11, "%Y-%m-%d", &tm);
                *to = to_day;
        }
        if (!*from) {
                snprintf(from_day, 11, "%.8s01", *to);
                *from = from_day;
        }
}

/* The sums of one result row (columns from 2 on), into o. */
static int sums_json(json_t *o, const PGresult *res, int i) {
        return json_object_set_new(o, "runs", json_integer(strtoll(PQgetvalue(res, i, 2), NULL, 10))) |
               json_object_set_new(o, "runtime_seconds", json_real(atof(PQgetvalue(res, i, 3)))) |
               json_object_set_new(o, "tokens_in", json_integer(strtoll(PQgetvalue(res, i, 4), NULL, 10))) |
               json_object_set_new(o, "tokens_out", json_integer(strtoll(PQgetvalue(res, i, 5), NULL, 10))) |
               json_object_set_new(o, "egress_bytes", json_integer(strtoll(PQgetvalue(res, i, 6), NULL, 10))) |
               json_object_set_new(o, "cost_usd", json_real(atof(PQgetvalue(res, i, 7))));
}

/* The live part: the runs of the visible teams (or of team_id) that have not
 * ended, per team, with their usage so far (the runner-agent's running model
 * totals, runtime since they started); billing's exact figures come when they
 * end. *ret: {"active_runs": n, "teams": [...]}. */
static int usage_live(struct api_req *r, struct db *d, const char *team_id, json_t **ret) {
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id, r->caller.tenant_admin ? "t" : "f", r->caller.user_id,
                                api_perm_roles(PERM_VIEWER), team_id};
        int k = pg_exec(d->conn,
                        "SELECT r.team_id::text, t.name, count(*), "
                        "coalesce(sum(extract(epoch FROM now() - r.started_at)::double precision), 0), "
                        "sum(r.usage_input_tokens + r.usage_cache_read_tokens + r.usage_cache_write_tokens), "
                        "sum(r.usage_output_tokens), sum(r.usage_cost_usd) "
                        "FROM api.runs r JOIN api.teams t ON t.id = r.team_id "
                        "WHERE r.tenant_id = $1 AND r.status NOT IN ('succeeded', 'failed', 'cancelled', "
                        "'timed_out', 'limit_exceeded', 'rejected') "
                        "AND " LIST_TEAM_VISIBLE("r.team_id", "$2", "$3", "$4") " "
                        "AND ($5::uuid IS NULL OR r.team_id = $5::uuid) "
                        "GROUP BY r.team_id, t.name ORDER BY t.name",
                        5, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "sum live usage");
        _cleanup_json_ json_t *teams = json_array();
        long long active = 0;
        for (int i = 0; teams && i < PQntuples(res); i++) {
                active += strtoll(PQgetvalue(res, i, 2), NULL, 10);
                if (json_array_append_new(
                            teams, json_pack("{s:s, s:s, s:I, s:f, s:I, s:I, s:f}", "team", PQgetvalue(res, i, 0),
                                             "team_name", PQgetvalue(res, i, 1), "active_runs",
                                             (json_int_t)strtoll(PQgetvalue(res, i, 2), NULL, 10),
                                             "runtime_seconds", atof(PQgetvalue(res, i, 3)), "tokens_in",
                                             (json_int_t)strtoll(PQgetvalue(res, i, 4), NULL, 10), "tokens_out",
                                             (json_int_t)strtoll(PQgetvalue(res, i, 5), NULL, 10), "cost_usd",
                                             atof(PQgetvalue(res, i, 6)))) < 0)
                        return api_fail(r, -ENOMEM, "internal", "out of memory");
        }
        *ret = teams ? json_pack("{s:I, s:O}", "active_runs", (json_int_t)active, "teams", teams) : NULL;
        return *ret ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

int usage_get(struct api_req *r) {
        char gbuf[16], tbuf[257], from_day[11], to_day[11];
        const char *group_by, *team, *from, *to;
        int k;
        if ((k = api_query_single(r, "group_by", gbuf, sizeof gbuf, &group_by)) < 0 ||
            (k = api_query_single(r, "team", tbuf, sizeof tbuf, &team)) < 0 ||
            (k = usage_day_arg(r, "from", from_day, &from)) < 0 || (k = usage_day_arg(r, "to", to_day, &to)) < 0)
                return k;
        size_t g = 0;
        if (group_by) {
                while (g < ELEMENTSOF(groupings) && strcmp(groupings[g].group_by, group_by))
                        g++;
                if (g == ELEMENTSOF(groupings))
                        return api_fail(r, -EINVAL, "invalid_field", "group_by must be team, user, day, sandbox, definition or model");
        }
        usage_default_range(from_day, &from, to_day, &to);
        if (strcmp(from, to) > 0)
                return api_fail(r, -EINVAL, "invalid_field", "from must not be after to");

        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        char team_id[UUID_STR_LEN];
        if ((k = teams_filter(r, &d, team, team_id)) < 0)
                return k;
        char sql[2560];
        bool per_model = groupings[g].per_model;
        snprintf(sql, sizeof sql,
                 "SELECT %s, %s, %s, GROUPING(%s), %s "
                 "FROM %s u %s "
                 "WHERE u.tenant_id = $1 AND u.day >= $2::date AND u.day <= $3::date "
                 "AND " LIST_TEAM_VISIBLE("u.team_id", "$4", "$5", "$6") " "
                 "AND ($7::uuid IS NULL OR u.team_id = $7::uuid) "
                 "GROUP BY GROUPING SETS ((%s, %s), ()) ORDER BY GROUPING(%s), %s",
                 groupings[g].key, groupings[g].name, per_model ? MODEL_SUMS : RUN_SUMS, groupings[g].key,
                 per_model ? MODEL_EXTRA : RUN_EXTRA, per_model ? "billing.run_model_usage" : "billing.run_usage",
                 groupings[g].joins, groupings[g].key, groupings[g].name, groupings[g].key, groupings[g].order);
        const char *params[] = {r->caller.tenant_id, from, to, r->caller.tenant_admin ? "t" : "f", r->caller.user_id,
                                api_perm_roles(PERM_VIEWER), team ? team_id : NULL};
        _cleanup_pgres_ PGresult *res = NULL;
        k = pg_exec(d.conn, sql, 7, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "sum usage");
        _cleanup_json_ json_t *items = json_array(), *totals = json_object();
        if (!items || !totals)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        /* no usage at all: the total row still comes (GROUPING SETS ... ()), with zeros */
        for (int i = 0; i < PQntuples(res); i++) {
                bool total = PQgetvalue(res, i, 8)[0] == '1';
                json_t *o = total ? totals : json_object();
                if (!o)
                        return api_fail(r, -ENOMEM, "internal", "out of memory");
                if (!total) {
                        json_object_set_new(o, groupings[g].key_field, db_json_str(res, i, 0));
                        if (groupings[g].name_field)
                                json_object_set_new(o, groupings[g].name_field, db_json_str(res, i, 1));
                        json_array_append_new(items, o);
                }
                if (sums_json(o, res, i) < 0 ||
                    (per_model &&
                     json_object_set_new(o, "calls", json_integer(strtoll(PQgetvalue(res, i, 9), NULL, 10))) < 0) ||
                    (json_object_set_new(o, "cache_read_tokens",
                                         json_integer(strtoll(PQgetvalue(res, i, 10), NULL, 10))) |
                     json_object_set_new(o, "cache_write_tokens",
                                         json_integer(strtoll(PQgetvalue(res, i, 11), NULL, 10))) |
                     json_object_set_new(o, "cpu_seconds", json_real(atof(PQgetvalue(res, i, 12))))) < 0)
                        return api_fail(r, -ENOMEM, "internal", "out of memory");
        }
        _cleanup_json_ json_t *live = NULL;
        if ((k = usage_live(r, &d, team ? team_id : NULL, &live)) < 0)
                return k;
        r->out = json_pack("{s:s, s:s, s:s, s:O, s:O, s:O}", "from", from, "to", to, "group_by",
                           groupings[g].group_by, "items", items, "totals", totals, "live", live);
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}
