/* Runs: a run's status and its public object (GET /v1/runs/{id}; the row
 * format run_lists.c shares). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/json_dump.h"
#include "pg/pg.h"

static const char *const terminal_statuses[] = {"succeeded", "failed", "cancelled", "timed_out",
                                                "limit_exceeded", "rejected", NULL};

bool runs_status_terminal(const char *status) {
        for (const char *const *s = terminal_statuses; *s; s++)
                if (!strcmp(*s, status))
                        return true;
        return false;
}

/* ---- the Run object, written straight from its row (json_dump.h's
 * writer: the bytes jansson's compact dump of the same members had, with
 * no tree to build, dump and free; issue 10 §4) */

#define W(lit) json_writer_lit(w, lit)

/* A json column's text as jansson reads and dumps it; false (nothing
 * written) for NULL or what jansson does not read. */
static bool put_json_text(struct json_writer *w, const char *text) {
        return text && json_writer_text(w, text);
}

/* key (",\"name\":") and a json column's text: null for NULL, no member
 * at all for what jansson does not read */
static void put_json_member(struct json_writer *w, const char *key, const char *text) {
        size_t at = w->len;
        json_writer_raw(w, key, strlen(key));
        if (!text)
                W("null");
        else if (!json_writer_text(w, text))
                w->len = at; /* the key goes too */
}

/* RUNS_SELECT's columns as the Run object's members (finished_at is
 * ended_at under the name the lists use; both stay). The outcome waits for
 * the history (RUNS_TERMINAL_HIDDEN): ended_at, finished_at, exit_code and
 * reason are null until then. */
static const struct db_member run_members[] = {
        DB_MEMBER("{\"id\":", 0, DB_M_STRING),
        DB_MEMBER(",\"status\":", 1, DB_M_STRING),
        DB_MEMBER(",\"team\":", 2, DB_M_STRING),
        DB_MEMBER(",\"sandbox\":", 3, DB_M_STRING),
        DB_MEMBER(",\"version\":", 4, DB_M_INTEGER),
        DB_MEMBER(",\"node\":", 5, DB_M_TEXT),
        DB_MEMBER(",\"created_at\":", 6, DB_M_STRING),
        DB_MEMBER(",\"started_at\":", 7, DB_M_TEXT),
        DB_MEMBER(",\"ended_at\":", 8, DB_M_HIDEABLE_TEXT),
        DB_MEMBER(",\"exit_code\":", 9, DB_M_HIDEABLE_INTEGER),
        DB_MEMBER(",\"reason\":", 10, DB_M_HIDEABLE_TEXT),
        DB_MEMBER(",\"created_by\":", 11, DB_M_STRING),
        DB_MEMBER(",\"scheduled_at\":", 12, DB_M_TEXT),
        DB_MEMBER(",\"sandbox_name\":", 13, DB_M_STRING),
        DB_MEMBER(",\"team_name\":", 14, DB_M_STRING),
        DB_MEMBER(",\"launched_by\":{\"id\":", 11, DB_M_STRING),
        DB_MEMBER(",\"username\":", 15, DB_M_STRING),
        DB_MEMBER("},\"finished_at\":", 8, DB_M_HIDEABLE_TEXT),
        DB_MEMBER(",\"relaunch_of\":", 16, DB_M_TEXT),
};
/* "history" (columns 18-21) after its "complete", true once a terminal
 * status is shown */
static const struct db_member history_members[] = {
        DB_MEMBER(",\"events_stored\":", 19, DB_M_INTEGER),
        DB_MEMBER(",\"events_total\":", 20, DB_M_INTEGER_OR_NULL),
        DB_MEMBER(",\"events_lost\":", 21, DB_M_INTEGER),
};

/* The members of RUNS_SELECT's row, "{" included, "}" not: the caller
 * closes the object after its own members. True when the run shows as
 * ended (ended_at a string). */
static bool runs_row_members(struct json_writer *w, const PGresult *res, int row) {
        bool hidden = !strcmp(PQgetvalue(res, row, 18), "t");
        db_put_members(w, run_members, ELEMENTSOF(run_members), res, row, 0, hidden);
        if (!hidden && runs_status_terminal(PQgetvalue(res, row, 1)))
                W(",\"history\":{\"complete\":true");
        else
                W(",\"history\":{\"complete\":false");
        db_put_members(w, history_members, ELEMENTSOF(history_members), res, row, 0, hidden);
        /* the latest review's outcome (reviews.c), null before any */
        W("},\"review\":");
        if (!put_json_text(w, db_val(res, row, 22)))
                W("null");
        return !hidden && db_val(res, row, 8);
}

void runs_row_write(struct json_writer *w, const PGresult *res, int row) {
        runs_row_members(w, res, row);
        W("}");
}

json_t *runs_row_json(const PGresult *res, int row) {
        struct json_writer w = {0};
        runs_row_write(&w, res, row);
        size_t len;
        _cleanup_free_ char *text = json_writer_take(&w, &len);
        return text ? json_loadb(text, len, 0, NULL) : NULL;
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
 * (issue 10 §4, bench/pg_cpu). */
#define RUNS_COL_USAGE 23
#define RUNS_COL_DECISIONS (RUNS_COL_USAGE + 8)
#define RUNS_COL_AUTHZ (RUNS_COL_DECISIONS + 3)
#define RUNS_COL_RETENTION (RUNS_COL_AUTHZ + 4)
#define RUNS_COL_APPROVALS (RUNS_COL_RETENTION + RETENTION_RUN_NCOLS)
/* the run's model usage */
static const struct db_member usage_members[] = {
        DB_MEMBER(",\"usage\":{\"model_calls\":", RUNS_COL_USAGE, DB_M_INTEGER),
        DB_MEMBER(",\"input_tokens\":", RUNS_COL_USAGE + 1, DB_M_INTEGER),
        DB_MEMBER(",\"output_tokens\":", RUNS_COL_USAGE + 2, DB_M_INTEGER),
        DB_MEMBER(",\"cache_read_tokens\":", RUNS_COL_USAGE + 3, DB_M_INTEGER),
        DB_MEMBER(",\"cache_write_tokens\":", RUNS_COL_USAGE + 4, DB_M_INTEGER),
        DB_MEMBER(",\"cost_usd\":", RUNS_COL_USAGE + 5, DB_M_REAL),
};
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
#define RUNS_APPROVALS_PAST "width_bucket(now(), r.approvals_pending_deadlines)"
#define RUNS_APPROVAL_COUNTERS                                                                                  \
        "cardinality(r.approvals_pending_deadlines) - " RUNS_APPROVALS_PAST ", r.approvals_approved, "          \
        "r.approvals_denied, r.approvals_expired + " RUNS_APPROVALS_PAST ", r.approvals_cancelled"
/* both as the run's "policy" */
static const struct db_member policy_members[] = {
        DB_MEMBER(",\"policy\":{\"decisions\":{\"allow\":", RUNS_COL_DECISIONS, DB_M_INTEGER),
        DB_MEMBER(",\"ask\":", RUNS_COL_DECISIONS + 1, DB_M_INTEGER),
        DB_MEMBER(",\"deny\":", RUNS_COL_DECISIONS + 2, DB_M_INTEGER),
        DB_MEMBER("},\"approvals\":{\"pending\":", RUNS_COL_APPROVALS, DB_M_INTEGER),
        DB_MEMBER(",\"approved\":", RUNS_COL_APPROVALS + 1, DB_M_INTEGER),
        DB_MEMBER(",\"denied\":", RUNS_COL_APPROVALS + 2, DB_M_INTEGER),
        DB_MEMBER(",\"expired\":", RUNS_COL_APPROVALS + 3, DB_M_INTEGER),
        DB_MEMBER(",\"cancelled\":", RUNS_COL_APPROVALS + 4, DB_M_INTEGER),
};
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
        /* the answer's bytes, written as they are built (json_dump.h) */
        struct json_writer wr = {0}, *w = &wr;
        bool ended = runs_row_members(w, res, 0);
        int u = RUNS_COL_USAGE;
        db_put_members(w, policy_members, ELEMENTSOF(policy_members), res, 0, 0, false);
        W("}}");
        put_json_member(w, ",\"prompt\":", db_val(res, 0, u + 7));
        put_json_member(w, ",\"agent_session\":", db_val(res, 0, u + 6));
        db_put_members(w, usage_members, ELEMENTSOF(usage_members), res, 0, 0, false);
        W("}");
        /* retention and deletion (retention.h), shown once the run ended */
        if (ended)
                retention_run_write(w, res, 0, RUNS_COL_RETENTION);
        else
                W(",\"retention\":null,\"deleted\":null");
        W("}");
        if (!(r->text = json_writer_take(w, &r->text_len)))
                return api_errno(r, -ENOMEM, "out of memory");
        r->content_type = "application/json";
        r->status = 200;
        return 0;
}
