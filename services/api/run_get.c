/* Runs: a run's status and its public object (GET /v1/runs/{id}; the row
 * format run_lists.c shares). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

static const char *const terminal_statuses[] = {"succeeded", "failed", "cancelled", "timed_out",
                                                "limit_exceeded", "rejected", NULL};

static json_t *runs_row_json_raw(const PGresult *res, int row, const char *exit_code);

bool runs_status_terminal(const char *status) {
        for (const char *const *s = terminal_statuses; *s; s++)
                if (!strcmp(*s, status))
                        return true;
        return false;
}

/* "history" of a run row (RUNS_SELECT columns 18-21): complete once a
 * terminal status is shown. */
static json_t *runs_history_json(const PGresult *res, int row, bool hidden) {
        bool complete = !hidden && runs_status_terminal(PQgetvalue(res, row, 1));
        const char *total = db_val(res, row, 20);
        return json_pack("{s:b, s:I, s:o, s:I}", "complete", complete, "events_stored",
                         (json_int_t)atoll(PQgetvalue(res, row, 19)), "events_total",
                         total ? json_integer(atoll(total)) : json_null(), "events_lost",
                         (json_int_t)atoll(db_val(res, row, 21) ? db_val(res, row, 21) : "0"));
}

json_t *runs_row_json(const PGresult *res, int row) {
        const char *exit_code = db_val(res, row, 9);
        bool hidden = !strcmp(PQgetvalue(res, row, 18), "t");
        json_t *o = runs_row_json_raw(res, row, exit_code);
        if (!o)
                return NULL;
        /* the outcome waits for the history (RUNS_TERMINAL_HIDDEN) */
        if (hidden)
                for (const char *const *k = (const char *const[]){"ended_at", "finished_at", "exit_code", "reason",
                                                                  NULL};
                     *k; k++)
                        json_object_set_new(o, *k, json_null());
        json_object_set_new(o, "history", runs_history_json(res, row, hidden));
        /* the latest review's outcome (reviews.c), null before any */
        const char *review = db_val(res, row, 22);
        json_t *rv = review ? json_loads(review, 0, NULL) : NULL;
        json_object_set_new(o, "review", rv ? rv : json_null());
        return o;
}

static json_t *runs_row_json_raw(const PGresult *res, int row, const char *exit_code) {
        /* finished_at is ended_at under the name the lists use; both stay */
        return json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:s, s:s, s:{s:s, s:s},"
                         " s:o, s:o}",
                         "id", PQgetvalue(res, row, 0), "status", PQgetvalue(res, row, 1), "team",
                         PQgetvalue(res, row, 2), "sandbox", PQgetvalue(res, row, 3), "version",
                         (json_int_t)atoll(PQgetvalue(res, row, 4)), "node", db_json_str(res, row, 5),
                         "created_at", PQgetvalue(res, row, 6), "started_at", db_json_str(res, row, 7),
                         "ended_at", db_json_str(res, row, 8), "exit_code",
                         exit_code ? json_integer(atoll(exit_code)) : json_null(), "reason",
                         db_json_str(res, row, 10), "created_by", PQgetvalue(res, row, 11),
                         "scheduled_at", db_json_str(res, row, 12), "sandbox_name", PQgetvalue(res, row, 13),
                         "team_name", PQgetvalue(res, row, 14), "launched_by", "id", PQgetvalue(res, row, 11),
                         "username", PQgetvalue(res, row, 15), "finished_at", db_json_str(res, row, 8),
                         "relaunch_of", db_json_str(res, row, 16));
}

int runs_load_visible(struct api *a, const struct api_caller *c, const char *run_id, enum api_perm perm,
                      char team_out[UUID_STR_LEN], char *status_out, size_t status_size,
                      struct err_detail *e) {
        if (!id_is_uuid(run_id))
                return -ENOENT;
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, a, c->tenant_id, e);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, c->tenant_id};
        k = pg_exec(d.conn, "SELECT team_id, status FROM api.runs WHERE id = $1 AND tenant_id = $2", 2, params,
                    &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        if ((k = api_authz_team(&d, c, PQgetvalue(res, 0, 0), perm, e)) < 0)
                return k;
        snprintf(team_out, UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
        snprintf(status_out, status_size, "%s", PQgetvalue(res, 0, 1));
        return 0;
}

/* The run and whether the caller may see it, in one prepared statement
 * sent with the token lookup (api_read_fn): RUNS_SELECT's columns and the
 * run's model usage, agent session (status_consumer.c), prompt
 * (prompt.c; shown here and not in lists: it may be large) and policy
 * decision counters (RUNS_DECISIONS) from RUNS_COL_USAGE on, then
 * API_AUTHZ_COLUMNS from RUNS_COL_AUTHZ on
 * (api_authz_team() folded in), RETENTION_RUN_COLUMNS from
 * RUNS_COL_RETENTION on, and the approvals' counters
 * (RUNS_APPROVAL_COUNTERS) last. $1 the run, $2 the roles carrying the
 * route's permission; the caller's tenant (row-level security filters on
 * it as well) and user are the settings the lookup made: without them (an
 * invalid token) it finds nothing. The counters are plain integers: a
 * json_build_object() each cost PostgreSQL 4% of its instructions per GET
 * and the api a parse (issue 10 §4, bench/api_read). */
#define RUNS_COL_USAGE 23
#define RUNS_COL_DECISIONS (RUNS_COL_USAGE + 8)
#define RUNS_COL_AUTHZ (RUNS_COL_DECISIONS + 3)
#define RUNS_COL_RETENTION (RUNS_COL_AUTHZ + 4)
#define RUNS_COL_APPROVALS (RUNS_COL_RETENTION + RETENTION_RUN_NCOLS)
/* The run's policy counters (docs/CONTRACTS.md "The approval queue"): its
 * policy_decision events by action (allow, ask, deny), kept by evidence in
 * its history row (evidence migration 0013: counting the events per read
 * was a quarter of PostgreSQL's time per GET, issue 10 §4), and its
 * approvals by status (pending, approved, denied, expired, cancelled),
 * kept on the run row (api migration 0032: the decided ones counted, the
 * pending ones' deadlines in ascending order); a pending one past its
 * deadline counts as expired, as GET /v1/approvals shows it:
 * width_bucket() is how many deadlines are <= now(). */
#define RUNS_DECISIONS "coalesce(h.decisions_allow, 0), coalesce(h.decisions_ask, 0), coalesce(h.decisions_deny, 0)"
static const char *const runs_decision_keys[] = {"allow", "ask", "deny", NULL};
#define RUNS_APPROVALS_PAST "width_bucket(now(), r.approvals_pending_deadlines)"
#define RUNS_APPROVAL_COUNTERS                                                                                  \
        "cardinality(r.approvals_pending_deadlines) - " RUNS_APPROVALS_PAST ", r.approvals_approved, "          \
        "r.approvals_denied, r.approvals_expired + " RUNS_APPROVALS_PAST ", r.approvals_cancelled"
static const char *const runs_approval_keys[] = {"pending", "approved", "denied", "expired", "cancelled", NULL};
#define SETTING_UUID(name) "NULLIF(current_setting('" name "', true), '')::uuid"
/* The run row's wide columns are read at the top level only: the joins
 * (its history, the caller's membership, its retention and tombstone) are
 * a lateral subquery h of narrow columns, kept apart by OFFSET 0 (an
 * optimisation fence, so the planner does not pull them up). Flattened,
 * every nested-loop level above the run carried all its columns, and
 * PostgreSQL built each level's tuple descriptor of them at every
 * execution: 9% of its instructions per GET (issue 10 §4). The
 * membership's tenant is row-level security's (forced on
 * api.team_members, docs/CONTRACTS.md "Tenant isolation in PostgreSQL"):
 * naming it in the join too cost a plan node per read. Each join finds at
 * most one row (primary keys), so h is exactly one row per run. */
static const struct pg_stmt run_get_stmt = {
        "api_run_get",
        RUNS_COLUMNS_WITH(", r.usage_model_calls, r.usage_input_tokens, r.usage_output_tokens, "
                          "r.usage_cache_read_tokens, r.usage_cache_write_tokens, r.usage_cost_usd, "
                          "r.agent_session::text, r.prompt::text, " RUNS_DECISIONS ", " API_AUTHZ_COLUMNS("h", "$2")
                          ", " RETENTION_RUN_COLUMNS("h") ", " RUNS_APPROVAL_COUNTERS)
        " FROM api.runs r CROSS JOIN LATERAL (SELECT hist.complete, hist.events_stored, hist.terminal_seq, "
        "hist.events_lost, hist.decisions_allow, hist.decisions_ask, hist.decisions_deny, m.roles, "
        RETENTION_RUN_JOINED " FROM (VALUES (1)) one"
        " LEFT JOIN evidence.run_history hist ON hist.run_id = r.id"
        " LEFT JOIN api.team_members m ON m.team_id = r.team_id AND m.user_id = " SETTING_UUID("paddock.user_id")
        /* and its retention and tombstone (retention.h), read by every
         * request for an ended run: in this round trip, not a second */
        RETENTION_RUN_JOINS " OFFSET 0) h WHERE r.id = $1 AND r.tenant_id = " SETTING_UUID("paddock.tenant_id"),
        2};

/* {key: integer} of the columns from col on, one per key. */
static json_t *counters_json(const PGresult *res, int row, int col, const char *const *keys) {
        json_t *o = json_object();
        for (int i = 0; o && keys[i]; i++)
                if (json_object_set_new(o, keys[i], json_integer(atoll(PQgetvalue(res, row, col + i)))) < 0) {
                        json_decref(o);
                        return NULL;
                }
        return o;
}

int runs_get_read(const struct api_req *r, const char **params, struct pg_step *ret_step) {
        if (!id_is_uuid(r->params[0]))
                return -ENOENT;
        params[0] = r->params[0];
        params[1] = api_perm_roles(r->perm);
        *ret_step = (struct pg_step){.stmt = &run_get_stmt, .params = params};
        return 0;
}

int runs_get(struct api_req *r) {
        if (!id_is_uuid(r->params[0]))
                return api_errno(r, -ENOENT, "run not found");
        /* read in the token lookup's round trip (runs_get_read): one round trip per request */
        const PGresult *res = r->read;
        if (!res)
                return api_errno(r, -EIO, "internal error");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "run not found");
        struct err_detail e = {0};
        int k = api_authz_team_row(&r->caller, res, 0, RUNS_COL_AUTHZ, PQgetvalue(res, 0, 14), &e);
        if (k == -ENOENT)
                return api_errno(r, -ENOENT, "run not found");
        if (k < 0)
                return db_fail(r, k, &e, "check team membership");
        r->out = runs_row_json(res, 0);
        int u = RUNS_COL_USAGE;
        if (r->out)
                json_object_set_new(r->out, "policy",
                                    json_pack("{s:o*, s:o*}", "decisions",
                                              counters_json(res, 0, RUNS_COL_DECISIONS, runs_decision_keys),
                                              "approvals",
                                              counters_json(res, 0, RUNS_COL_APPROVALS, runs_approval_keys)));
        const char *prompt = db_val(res, 0, u + 7), *agent = db_val(res, 0, u + 6);
        if (r->out) {
                json_object_set_new(r->out, "prompt", prompt ? json_loads(prompt, 0, NULL) : json_null());
                json_object_set_new(r->out, "agent_session", agent ? json_loads(agent, 0, NULL) : json_null());
                json_object_set_new(r->out, "usage",
                                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", "model_calls",
                                              (json_int_t)atoll(PQgetvalue(res, 0, u)), "input_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, u + 1)), "output_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, u + 2)), "cache_read_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, u + 3)), "cache_write_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, u + 4)), "cost_usd",
                                              strtod(PQgetvalue(res, 0, u + 5), NULL)));
        }
        /* retention and deletion (retention.h), shown once the run ended */
        if (r->out && json_is_string(json_object_get(r->out, "ended_at"))) {
                if (retention_run_json(res, 0, RUNS_COL_RETENTION, r->out) < 0)
                        return api_errno(r, -ENOMEM, "out of memory");
        } else if (r->out) {
                json_object_set_new(r->out, "retention", json_null());
                json_object_set_new(r->out, "deleted", json_null());
        }
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
