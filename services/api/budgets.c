/* Team budgets per month (issue 14 §4, docs/CONTRACTS.md "Budgets", api
 * migration 0024): PUT/GET /v1/teams/{id}/budget, the launch refusal (402
 * quota_exceeded) and the detection of 80 % and 100 %.
 *
 * Which service detects: the api. It is the one that sees usage while runs
 * still run (the runner-agent's `usage` events and every status reach it on
 * paddock.runs.status; billing only gets each run's final record when the run
 * has ended), it refuses launches anyway, and it already owns the outbox and
 * the right to say paddock.runs.control. So after every status or usage event
 * of a run that counts in a budgeted month, the status consumer calls
 * budgets_on_run(): in one transaction it records each threshold crossed in
 * api.budget_alerts (primary key team, month, limit, threshold), queues the
 * UsageAlert on paddock.usage.alerts only when that insert happened (exactly
 * once), and at 100 % queues a cancel (requested_by "budget", which the
 * runner-agent ends as limit_exceeded) for each unfinished run of the team in
 * that month not stopped yet, ending queued runs without a node here.
 *
 * A team's consumption in a month: the runs launched in that business month
 * (runs.budget_month, lib/core/business_clock.h), each with billing's exact
 * figures once billing recorded it (billing.run_usage), else the run's live
 * figures (model totals so far; runtime since it started). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "core/business_clock.h"
#include "core/log.h"
#include "kafka/topics.h"
#include "paddock/v1/usage_alerts.pb-c.h"
#include "pg/pg.h"
#include "proto/envelope.h"
#include "proto/run_control.h"

#define BUDGET_MAX 1e12 /* USD or seconds: anything above is a typo */
#define BUDGET_TOKENS_MAX 1000000000000000LL

#define TERMINAL_SQL "('succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected')"

/* The limits, in the order of every array below: the column, and the
 * consumption it is compared with (column of CONSUMPTION_SQL). */
static const struct {
        const char *limit, *used_field;
        int used_col;
} limits[] = {
        {"month_usd", "cost_usd", 0},
        {"month_tokens", "tokens", 1},
        {"month_runtime_s", "runtime_seconds", 2},
};

/* $1 tenant, $2 team, $3 month (date): cost, tokens, runtime, runs, active runs. */
#define CONSUMPTION_SQL                                                                                          \
        "SELECT coalesce(sum(coalesce(bu.cost_usd, r.usage_cost_usd)), 0), "                                     \
        "coalesce(sum(coalesce(bu.tokens_in + bu.tokens_out, r.usage_input_tokens + r.usage_output_tokens + "   \
        "  r.usage_cache_read_tokens + r.usage_cache_write_tokens)), 0), "                                       \
        "coalesce(sum(coalesce(bu.runtime_seconds, "                                                             \
        "  extract(epoch FROM coalesce(r.ended_at, now()) - r.started_at)::double precision, 0)), 0), "        \
        "count(*), count(*) FILTER (WHERE r.status NOT IN " TERMINAL_SQL ") "                                    \
        "FROM api.runs r LEFT JOIN billing.run_usage bu ON bu.run_id = r.id "                                    \
        "WHERE r.tenant_id = $1 AND r.team_id = $2 AND r.budget_month = $3::date"

struct consumption {
        double used[3]; /* by limits[] */
        long long runs, active;
};

struct budget {
        bool set[3];
        double value[3];
};

/* The business month now, as the date of its first day ("YYYY-MM-01"). */
static void business_month(char out[11]) {
        int64_t us = business_clock_now_us();
        time_t t = (time_t)(us / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(out, 11, "%Y-%m-01", &tm);
}

static int consumption_load(PGconn *conn, const char *tenant_id, const char *team_id, const char *month,
                            struct consumption *c, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id, team_id, month};
        int k = pg_exec(conn, CONSUMPTION_SQL, 3, params, &res, e);
        if (k < 0)
                return k;
        for (int i = 0; i < 3; i++)
                c->used[i] = atof(PQgetvalue(res, 0, i));
        c->runs = atoll(PQgetvalue(res, 0, 3));
        c->active = atoll(PQgetvalue(res, 0, 4));
        return 0;
}

/* The team's budget; *found false when none was set. */
static int budget_load(PGconn *conn, const char *team_id, struct budget *b, bool *found, PGresult **ret,
                       struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id};
        int k = pg_exec(conn,
                        "SELECT month_usd, month_tokens, month_runtime_s, " DB_TS("updated_at") ", updated_by "
                        "FROM api.team_budgets WHERE team_id = $1",
                        1, params, &res, e);
        if (k < 0)
                return k;
        *b = (struct budget){0};
        *found = PQntuples(res) == 1;
        for (int i = 0; *found && i < 3; i++)
                if (!PQgetisnull(res, 0, i)) {
                        b->set[i] = true;
                        b->value[i] = atof(PQgetvalue(res, 0, i));
                }
        if (ret)
                *ret = TAKE_PTR(res);
        return 0;
}

static double percent_of(double used, double limit) { return limit > 0 ? used / limit * 100.0 : 0; }

/* ---- the launch refusal */

int budgets_launch_check(struct api_req *r, struct db *d, const char *team_id) {
        struct err_detail e = {0};
        struct budget b;
        bool found;
        int k = budget_load(d->conn, team_id, &b, &found, NULL, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load team budget");
        if (!found || !(b.set[0] || b.set[1] || b.set[2]))
                return 0;
        char month[11];
        business_month(month);
        struct consumption c;
        if ((k = consumption_load(d->conn, r->caller.tenant_id, team_id, month, &c, &e)) < 0)
                return db_fail(r, k, &e, "sum team consumption");
        for (size_t i = 0; i < ELEMENTSOF(limits); i++)
                if (b.set[i] && c.used[i] >= b.value[i])
                        return api_fail(r, -EDQUOT, "quota_exceeded",
                                        "%s: team %s used %.*f of its budget of %.*f in %.7s (UTC, business month); "
                                        "a tenant_admin can raise it (PUT /v1/teams/{id}/budget)",
                                        limits[i].limit, team_id, i == 1 ? 0 : 2, c.used[i], i == 1 ? 0 : 2,
                                        b.value[i], month);
        return 0;
}

int budgets_stamp_run(struct db *d, const char *tenant_id, const char *run_id, struct err_detail *e) {
        char month[11];
        business_month(month);
        const char *params[] = {run_id, tenant_id, month};
        return pg_exec(d->conn, "UPDATE api.runs SET budget_month = $3::date WHERE id = $1 AND tenant_id = $2", 3,
                       params, NULL, e);
}

/* ---- detection (the status consumer, and a budget just set) */

static int alert_queue(struct api *a, struct db *d, const char *tenant_id, const char *team_id, const char *run_id,
                       const char *month, size_t li, unsigned pct, double value, double used, struct err_detail *e) {
        char thr[8], val[32], use[32];
        snprintf(thr, sizeof thr, "%u", pct);
        snprintf(val, sizeof val, "%.17g", value);
        snprintf(use, sizeof use, "%.17g", used);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id, team_id, month, limits[li].limit, thr, val, use};
        int k = pg_exec(d->conn,
                        "INSERT INTO api.budget_alerts (tenant_id, team_id, month, budget_limit, threshold_pct, "
                        "limit_value, used) VALUES ($1, $2, $3::date, $4, $5::integer, $6, $7) "
                        "ON CONFLICT DO NOTHING RETURNING 1",
                        7, params, &res, e);
        if (k < 0 || PQntuples(res) == 0)
                return k; /* already sent for this month */
        Paddock__V1__UsageAlert ua = PADDOCK__V1__USAGE_ALERT__INIT;
        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN], producer[64], ym[8];
        snprintf(producer, sizeof producer, "api/%s", a->instance);
        snprintf(ym, sizeof ym, "%.7s", month);
        if (envelope_init(&env, tenant_id, run_id ? run_id : "", 0, producer, msgid) < 0)
                return err_set(e, -EIO, "envelope", "could not generate a message id");
        ua.env = &env;
        ua.team_id = (char *)team_id;
        ua.month = ym;
        ua.limit = (char *)limits[li].limit;
        ua.threshold_pct = pct;
        ua.limit_value = value;
        ua.used = used;
        ua.percent = percent_of(used, value);
        size_t len = paddock__v1__usage_alert__get_packed_size(&ua);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return err_set(e, -ENOMEM, "oom", "out of memory");
        paddock__v1__usage_alert__pack(&ua, buf);
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "team", team_id, "limit", limits[li].limit, "month", ym),
                "team budget reached %u %%", pct);
        return outbox_put(d->conn, tenant_id, TOPIC_USAGE_ALERTS, team_id, buf, len, e);
}

/* At 100 %: every unfinished run of the team in month not stopped yet gets a
 * cancel that its runner ends as limit_exceeded; a queued run without a node
 * ends here (as run_cancel.c does), its cancel still going out for a runner
 * that receives its assignment later. */
static int stop_runs(struct api *a, struct db *d, const char *tenant_id, const char *team_id, const char *month,
                     const char *reason, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id, team_id, month};
        int k = pg_exec(d->conn,
                        "SELECT id, node_id FROM api.runs WHERE tenant_id = $1 AND team_id = $2 AND "
                        "budget_month = $3::date AND budget_stopped_at IS NULL AND status NOT IN " TERMINAL_SQL
                        " ORDER BY created_at FOR UPDATE",
                        3, params, &res, e);
        for (int i = 0; k >= 0 && i < PQntuples(res); i++) {
                const char *run_id = PQgetvalue(res, i, 0), *node = db_val(res, i, 1);
                Paddock__V1__RunControl rc = PADDOCK__V1__RUN_CONTROL__INIT;
                Paddock__V1__CancelRun cancel = PADDOCK__V1__CANCEL_RUN__INIT;
                cancel.requested_by = (char *)RUN_CANCEL_BY_BUDGET;
                cancel.reason = (char *)reason;
                rc.node_id = (char *)(node ? node : "");
                rc.action_case = PADDOCK__V1__RUN_CONTROL__ACTION_CANCEL;
                rc.cancel = &cancel;
                k = control_enqueue(a, d, tenant_id, run_id, &rc, e);
                const char *up[] = {run_id, reason};
                if (k >= 0)
                        k = pg_exec(d->conn,
                                    "UPDATE api.runs SET budget_stopped_at = now(), "
                                    "status = CASE WHEN node_id IS NULL AND status = 'queued' THEN 'limit_exceeded' "
                                    "  ELSE status END, "
                                    "reason = CASE WHEN node_id IS NULL AND status = 'queued' THEN $2 ELSE reason END, "
                                    "ended_at = CASE WHEN node_id IS NULL AND status = 'queued' THEN now() "
                                    "  ELSE ended_at END "
                                    "WHERE id = $1",
                                    2, up, NULL, e);
                if (k >= 0)
                        log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "team", team_id, "run", run_id),
                                "stopping run: %s", reason);
        }
        return k;
}

/* Checks the team's budget for month in d's open transaction (the caller
 * commits). run_id: the run whose event led here, or NULL. */
static int check_team(struct api *a, struct db *d, const char *tenant_id, const char *team_id, const char *month,
                      const char *run_id, struct err_detail *e) {
        struct budget b;
        bool found;
        int k = budget_load(d->conn, team_id, &b, &found, NULL, e);
        if (k < 0 || !found || !(b.set[0] || b.set[1] || b.set[2]))
                return k;
        struct consumption c;
        if ((k = consumption_load(d->conn, tenant_id, team_id, month, &c, e)) < 0)
                return k;
        char reason[256] = "";
        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                if (!b.set[i])
                        continue;
                double pct = percent_of(c.used[i], b.value[i]);
                for (unsigned thr = 80; thr <= 100; thr += 20)
                        if (pct >= thr &&
                            (k = alert_queue(a, d, tenant_id, team_id, run_id, month, i, thr, b.value[i], c.used[i],
                                             e)) < 0)
                                return k;
                if (pct >= 100 && !reason[0])
                        snprintf(reason, sizeof reason, "team budget %s of %.*f reached in %.7s (%.*f used)",
                                 limits[i].limit, i == 1 ? 0 : 2, b.value[i], month, i == 1 ? 0 : 2, c.used[i]);
        }
        return reason[0] ? stop_runs(a, d, tenant_id, team_id, month, reason, e) : 0;
}

int budgets_on_run(struct api *a, const char *tenant_id, const char *run_id, struct err_detail *err) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, a, tenant_id, &e);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id};
        if (k >= 0)
                k = pg_exec(d.conn,
                            "SELECT r.team_id, r.budget_month::text FROM api.runs r JOIN api.team_budgets b "
                            "ON b.team_id = r.team_id WHERE r.id = $1 AND r.budget_month IS NOT NULL",
                            1, params, &res, &e);
        if (k >= 0 && PQntuples(res) == 0)
                return 0; /* no budget for the run's team: nothing to watch */
        if (k >= 0)
                k = db_begin(&d, &e);
        if (k >= 0)
                k = check_team(a, &d, tenant_id, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), run_id, &e);
        if (k >= 0)
                k = db_commit(&d, &e);
        if (k < 0) {
                if (d.conn)
                        db_rollback(&d);
                return err_set(err, k, e.code, "could not check the budget of the team of run %s: %s", run_id,
                               e.message);
        }
        return 0;
}

/* ---- PUT/GET /v1/teams/{id}/budget */

/* The budget of team_id as GET answers it, this business month. */
static int budget_json(struct api_req *r, struct db *d, const char *team_id, json_t **ret) {
        struct err_detail e = {0};
        struct budget b;
        bool found;
        _cleanup_pgres_ PGresult *res = NULL;
        int k = budget_load(d->conn, team_id, &b, &found, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load team budget");
        char month[11], ym[8];
        business_month(month);
        snprintf(ym, sizeof ym, "%.7s", month);
        struct consumption c;
        if ((k = consumption_load(d->conn, r->caller.tenant_id, team_id, month, &c, &e)) < 0)
                return db_fail(r, k, &e, "sum team consumption");
        _cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:{}, s:{s:f, s:I, s:f, s:I, s:I}, s:{}, s:[]}", "team",
                                             team_id, "month", ym, "limits", "used", "cost_usd", c.used[0], "tokens",
                                             (json_int_t)llround(c.used[1]), "runtime_seconds", c.used[2], "runs",
                                             (json_int_t)c.runs, "active_runs", (json_int_t)c.active, "percent",
                                             "exceeded");
        if (!o)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        json_t *jl = json_object_get(o, "limits"), *jp = json_object_get(o, "percent"),
               *jx = json_object_get(o, "exceeded");
        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                json_t *v = !b.set[i] ? json_null() : i == 1 ? json_integer((json_int_t)llround(b.value[i]))
                                                             : json_real(b.value[i]);
                json_object_set_new(jl, limits[i].limit, v);
                json_object_set_new(jp, limits[i].limit,
                                    b.set[i] ? json_real(percent_of(c.used[i], b.value[i])) : json_null());
                if (b.set[i] && c.used[i] >= b.value[i])
                        json_array_append_new(jx, json_string(limits[i].limit));
        }
        json_object_set_new(o, "updated_at", found ? db_json_str(res, 0, 3) : json_null());
        json_object_set_new(o, "updated_by", found ? db_json_str(res, 0, 4) : json_null());
        *ret = TAKE_PTR(o);
        return 0;
}

/* The caller's view of the team in the path: 404 for a team it may not see
 * (or of another tenant), 403 without the route's permission. */
static int budget_team(struct api_req *r, struct db *d) {
        struct err_detail e = {0};
        if (!id_is_uuid(r->params[0]))
                return api_fail(r, -ENOENT, "not_found", "team not found");
        int k = api_authz_team(d, &r->caller, r->params[0], r->perm, &e);
        if (k == -ENOENT)
                return api_fail(r, -ENOENT, "not_found", "team not found");
        if (k < 0)
                return db_fail(r, k, &e, "check team membership");
        return 0;
}

int budgets_get(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        if ((k = budget_team(r, &d)) < 0 || (k = budget_json(r, &d, r->params[0], &r->out)) < 0)
                return k;
        r->status = 200;
        return 0;
}

/* One limit of the body into *set and *value: absent or null is no limit. */
static int limit_arg(struct api_req *r, json_t *body, size_t i, bool *set, double *value) {
        json_t *v = json_object_get(body, limits[i].limit);
        *set = v && !json_is_null(v);
        if (!*set)
                return 0;
        if (i == 1) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > BUDGET_TOKENS_MAX)
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "month_tokens must be null or an integer from 1 to %lld", BUDGET_TOKENS_MAX);
                *value = (double)json_integer_value(v);
                return 0;
        }
        *value = json_is_number(v) ? json_number_value(v) : NAN;
        if (!isfinite(*value) || *value <= 0 || *value > BUDGET_MAX)
                return api_fail(r, -EINVAL, "invalid_field", "%s must be null or a number > 0 and <= %.0f",
                                limits[i].limit, BUDGET_MAX);
        return 0;
}

int budgets_put(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0 || (k = api_known_fields(r, body, (const char *const[]){"month_usd", "month_tokens",
                                                                           "month_runtime_s", NULL})) < 0)
                return k;
        struct budget b = {0};
        for (size_t i = 0; i < ELEMENTSOF(limits); i++)
                if ((k = limit_arg(r, body, i, &b.set[i], &b.value[i])) < 0)
                        return k;
        /* the budget, its audit record and what it decides at once (a limit
         * set below this month's consumption stops the team's runs now)
         * commit together */
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        if ((k = budget_team(r, &tx.d)) < 0)
                return k;
        const char *team_id = r->params[0];
        char v[3][32];
        const char *params[6] = {r->caller.tenant_id, team_id, NULL, NULL, NULL, r->caller.user_id};
        for (size_t i = 0; i < 3; i++)
                if (b.set[i]) {
                        snprintf(v[i], sizeof v[i], i == 1 ? "%.0f" : "%.17g", b.value[i]);
                        params[2 + i] = v[i];
                }
        _cleanup_json_ json_t *change = json_object();
        for (size_t i = 0; change && i < 3; i++)
                json_object_set_new(change, limits[i].limit,
                                    b.set[i] ? json_real(b.value[i]) : json_null());
        if (!change)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        char month[11];
        business_month(month);
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.team_budgets (tenant_id, team_id, month_usd, month_tokens, month_runtime_s, "
                    "updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now()) "
                    "ON CONFLICT (team_id) DO UPDATE SET month_usd = EXCLUDED.month_usd, "
                    "month_tokens = EXCLUDED.month_tokens, month_runtime_s = EXCLUDED.month_runtime_s, "
                    "updated_by = EXCLUDED.updated_by, updated_at = now()",
                    6, params, NULL, &tx.e);
        if (k >= 0)
                k = check_team(r->api, &tx.d, r->caller.tenant_id, team_id, month, NULL, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "set team budget");
        if ((k = api_tx_audit(&tx, "team.budget.set", "team", team_id, change)) < 0 ||
            (k = api_tx_commit(&tx, "team budget")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "team", team_id, "user", r->caller.user_id),
                "team budget set");
        if ((k = budget_json(r, &tx.d, team_id, &r->out)) < 0)
                return k;
        r->status = 200;
        return 0;
}
