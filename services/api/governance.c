/* GET /v1/governance/metrics?from=&to=&team= (issue 14 §4, docs/CONTRACTS.md
 * "Governance metrics"): what the policies did over a range of UTC days, for
 * the teams the caller may view. Every figure is of the runs whose life
 * overlaps the range (created on or before `to`, not ended before `from`),
 * and of their events and approvals inside the range:
 *   policy_decisions  policy_decision events by rule, team and outcome
 *                     (data.rule, data.action), read through evidence's
 *                     partial index run_events_policy_decisions (evidence
 *                     migration 0008) run by run;
 *   approvals         count by status, median and p95 seconds from request
 *                     to a person's decision, and the denied share of the
 *                     decided ones;
 *   runs_per_team_per_day  launches (adoption over time);
 *   escapes_tried     platform-level denials: egress refused by the proxy or
 *                     a direct connection (`egress` decision deny) and
 *                     exec/file/egress policy denials at the platform levels
 *                     (actor platform). These read all the runs' events of
 *                     kind egress/policy_decision (the primary key, run by run).
 *   reviews           reviews written in the range by team and outcome
 *                     (every review counts, a later one on the same run
 *                     too: the figure is what reviewers did). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "pg/pg.h"

/* $1 tenant, $2 from (date), $3 to (date), $4-$6 LIST_TEAM_VISIBLE, $7 team or NULL:
 * the runs whose life overlaps [from, to + 1 day). */
#define GOV_RUNS                                                                                                 \
        "SELECT r.id, r.team_id FROM api.runs r WHERE r.tenant_id = $1 "                                         \
        "AND r.created_at < $3::date + 1 AND (r.ended_at IS NULL OR r.ended_at >= $2::date) "                    \
        "AND " LIST_TEAM_VISIBLE("r.team_id", "$4", "$5", "$6") " AND ($7::uuid IS NULL OR r.team_id = $7::uuid)"
#define GOV_EVENTS_IN_RANGE "e.ts >= $2::date AND e.ts < $3::date + 1"

static const char *const gov_sql[] = {
        /* 0: policy decisions by rule, team, outcome */
        "WITH runs AS (" GOV_RUNS ") "
        "SELECT coalesce(e.data->>'rule', ''), runs.team_id::text, t.name, coalesce(e.data->>'action', ''), "
        "count(*) FROM runs JOIN evidence.run_events e ON e.run_id = runs.id AND e.kind = 'policy_decision' "
        "JOIN api.teams t ON t.id = runs.team_id WHERE " GOV_EVENTS_IN_RANGE " "
        "GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 1, 3, 4",
        /* 1: approvals: by status, latency of a person's decisions */
        "SELECT count(*), count(*) FILTER (WHERE a.status = 'pending' AND a.deadline > now()), "
        "count(*) FILTER (WHERE a.status = 'approved'), count(*) FILTER (WHERE a.status = 'denied'), "
        "count(*) FILTER (WHERE a.status = 'expired' OR (a.status = 'pending' AND a.deadline <= now())), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.decided_at - a.created_at)) "
        "  FILTER (WHERE a.status IN ('approved', 'denied') AND a.decided_by LIKE 'user:%'), "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM a.decided_at - a.created_at)) "
        "  FILTER (WHERE a.status IN ('approved', 'denied') AND a.decided_by LIKE 'user:%') "
        "FROM api.approvals a WHERE a.tenant_id = $1 AND a.created_at >= $2::date AND a.created_at < $3::date + 1 "
        "AND " LIST_TEAM_VISIBLE("a.team_id", "$4", "$5", "$6") " AND ($7::uuid IS NULL OR a.team_id = $7::uuid)",
        /* 2: launches per team and UTC day */
        "SELECT r.team_id::text, t.name, to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*) "
        "FROM api.runs r JOIN api.teams t ON t.id = r.team_id WHERE r.tenant_id = $1 "
        "AND r.created_at >= $2::date AND r.created_at < $3::date + 1 "
        "AND " LIST_TEAM_VISIBLE("r.team_id", "$4", "$5", "$6") " AND ($7::uuid IS NULL OR r.team_id = $7::uuid) "
        "GROUP BY 1, 2, 3 ORDER BY 3, 2",
        /* 3: escapes tried: platform denials by team and level */
        "WITH runs AS (" GOV_RUNS ") "
        "SELECT runs.team_id::text, t.name, "
        "CASE WHEN e.kind = 'egress' THEN 'egress' ELSE coalesce(e.data->>'level', '') END, count(*) "
        "FROM runs JOIN evidence.run_events e ON e.run_id = runs.id AND e.kind IN ('egress', 'policy_decision') "
        "JOIN api.teams t ON t.id = runs.team_id WHERE " GOV_EVENTS_IN_RANGE " AND e.actor = 'platform' "
        "AND ((e.kind = 'egress' AND e.data->>'decision' = 'deny') OR (e.kind = 'policy_decision' "
        "AND e.data->>'level' IN ('exec', 'file', 'egress') AND e.data->>'action' = 'deny')) "
        "GROUP BY 1, 2, 3 ORDER BY 2, 3",
        /* 4: reviews by team and outcome */
        "SELECT v.team_id::text, t.name, v.outcome, count(*) FROM api.reviews v JOIN api.teams t ON t.id = v.team_id "
        "WHERE v.tenant_id = $1 AND v.created_at >= $2::date AND v.created_at < $3::date + 1 "
        "AND " LIST_TEAM_VISIBLE("v.team_id", "$4", "$5", "$6") " AND ($7::uuid IS NULL OR v.team_id = $7::uuid) "
        "GROUP BY 1, 2, 3 ORDER BY 2, 3",
};

static json_t *num_or_null(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? json_null() : json_real(atof(PQgetvalue(res, row, col)));
}

static json_int_t int_at(const PGresult *res, int row, int col) {
        return (json_int_t)strtoll(PQgetvalue(res, row, col), NULL, 10);
}

int governance_metrics(struct api_req *r) {
        char tbuf[257], from_day[11], to_day[11];
        const char *team, *from, *to;
        int k;
        if ((k = api_query_single(r, "team", tbuf, sizeof tbuf, &team)) < 0 ||
            (k = usage_day_arg(r, "from", from_day, &from)) < 0 || (k = usage_day_arg(r, "to", to_day, &to)) < 0)
                return k;
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
        const char *params[] = {r->caller.tenant_id, from, to, r->caller.tenant_admin ? "t" : "f", r->caller.user_id,
                                api_perm_roles(PERM_VIEWER), team ? team_id : NULL};
        PGresult *res[ELEMENTSOF(gov_sql)] = {0};
        for (size_t i = 0; i < ELEMENTSOF(gov_sql) && k >= 0; i++)
                k = pg_exec(d.conn, gov_sql[i], 7, params, &res[i], &e);
        _cleanup_json_ json_t *out = NULL;
        if (k >= 0) {
                json_t *decisions = json_array(), *days = json_array(), *escapes = json_array(),
                       *reviews = json_array();
                const PGresult *a = res[1];
                double approved = atof(PQgetvalue(a, 0, 2)), denied = atof(PQgetvalue(a, 0, 3));
                out = json_pack("{s:s, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}, s:o, s:o, s:o}", "from", from,
                                "to", to, "policy_decisions", decisions, "approvals", "count", int_at(a, 0, 0),
                                "pending", int_at(a, 0, 1), "approved", int_at(a, 0, 2), "denied", int_at(a, 0, 3),
                                "expired", int_at(a, 0, 4), "median_decision_seconds", num_or_null(a, 0, 5),
                                "p95_decision_seconds", num_or_null(a, 0, 6), "denied_share",
                                approved + denied > 0 ? json_real(denied / (approved + denied)) : json_null(),
                                "runs_per_team_per_day", days, "escapes_tried", escapes, "reviews", reviews);
                for (int i = 0; out && i < PQntuples(res[0]); i++)
                        json_array_append_new(decisions,
                                              json_pack("{s:s, s:s, s:s, s:s, s:I}", "rule", PQgetvalue(res[0], i, 0),
                                                        "team", PQgetvalue(res[0], i, 1), "team_name",
                                                        PQgetvalue(res[0], i, 2), "outcome", PQgetvalue(res[0], i, 3),
                                                        "count", int_at(res[0], i, 4)));
                for (int i = 0; out && i < PQntuples(res[2]); i++)
                        json_array_append_new(days, json_pack("{s:s, s:s, s:s, s:I}", "team", PQgetvalue(res[2], i, 0),
                                                              "team_name", PQgetvalue(res[2], i, 1), "day",
                                                              PQgetvalue(res[2], i, 2), "runs", int_at(res[2], i, 3)));
                for (int i = 0; out && i < PQntuples(res[3]); i++)
                        json_array_append_new(escapes,
                                              json_pack("{s:s, s:s, s:s, s:I}", "team", PQgetvalue(res[3], i, 0),
                                                        "team_name", PQgetvalue(res[3], i, 1), "level",
                                                        PQgetvalue(res[3], i, 2), "count", int_at(res[3], i, 3)));
                for (int i = 0; out && i < PQntuples(res[4]); i++)
                        json_array_append_new(reviews,
                                              json_pack("{s:s, s:s, s:s, s:I}", "team", PQgetvalue(res[4], i, 0),
                                                        "team_name", PQgetvalue(res[4], i, 1), "outcome",
                                                        PQgetvalue(res[4], i, 2), "count", int_at(res[4], i, 3)));
        }
        for (size_t i = 0; i < ELEMENTSOF(gov_sql); i++)
                PQclear(res[i]);
        if (k < 0)
                return db_fail(r, k, &e, "sum governance metrics");
        if (!out)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        r->out = TAKE_PTR(out);
        r->status = 200;
        return 0;
}
