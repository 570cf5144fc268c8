/* Reviews of finished runs (issue 14 §1, docs/CONTRACTS.md "Reviews and the
 * signed evidence bundle"): POST /v1/runs/{id}/reviews by a reviewer of the
 * run's team who did not launch it (four eyes, ARCHITECTURE.md §5), and GET
 * /v1/runs/{id}/reviews.
 *
 * A review is recorded, audited (`run.review`), kept as the run's latest
 * outcome (api.runs.review) and appended to the run's history as an event of
 * kind `review` (actor user:<id>), all in one transaction: the event goes
 * through the outbox as a RunEventBatch of one with env.seq 0 ("append", as
 * the scheduler's platform verdicts: the api does not know the run's last
 * seq), signed by the api, and evidence stores it after the run's highest
 * seq. Evidence takes seq 0 from the api for kind `review` only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "pg/pg.h"
#include "proto/envelope.h"

#define REVIEW_COMMENT_MAX 4096

#define REVIEW_COLUMNS                                                                                         \
        "v.id, v.run_id, v.outcome, v.comment, v.escalate_to, v.reviewer, u.username, " DB_TS("v.created_at")  \
        " FROM api.reviews v JOIN api.users u ON u.id = v.reviewer AND u.tenant_id = v.tenant_id "

static json_t *review_json(const PGresult *res, int row) {
        return json_pack("{s:s, s:s, s:s, s:s, s:o, s:{s:s, s:s}, s:s}", "id", PQgetvalue(res, row, 0), "run",
                         PQgetvalue(res, row, 1), "outcome", PQgetvalue(res, row, 2), "comment",
                         PQgetvalue(res, row, 3), "to", db_json_str(res, row, 4), "by", "id", PQgetvalue(res, row, 5),
                         "username", PQgetvalue(res, row, 6), "at", PQgetvalue(res, row, 7));
}

/* Queues the review's run event (see the top) in d's transaction. */
static int review_event_enqueue(struct api *a, struct db *d, const char *tenant_id, const char *team_id,
                                const char *run_id, const char *actor, json_t *data, struct err_detail *e) {
        _cleanup_free_ char *data_json = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
        if (!data_json)
                return err_set(e, -ENOMEM, "oom", "out of memory");
        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN], producer[64];
        snprintf(producer, sizeof producer, "api/%s", a->instance);
        if (envelope_init(&env, tenant_id, run_id, 0, producer, msgid) < 0)
                return err_set(e, -EIO, "envelope", "could not generate a message id");
        Paddock__V1__RunEvent ev = PADDOCK__V1__RUN_EVENT__INIT;
        ev.env = &env;
        ev.kind = (char *)"review";
        ev.actor = (char *)actor;
        ev.data_json = data_json;
        ev.team_id = (char *)team_id;
        Paddock__V1__RunEvent *one[] = {&ev};
        Paddock__V1__RunEventBatch batch = PADDOCK__V1__RUN_EVENT_BATCH__INIT;
        batch.n_events = 1;
        batch.events = one;
        size_t len = paddock__v1__run_event_batch__get_packed_size(&batch);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return err_set(e, -ENOMEM, "oom", "out of memory");
        paddock__v1__run_event_batch__pack(&batch, buf);
        return outbox_put(d->conn, tenant_id, TOPIC_RUNS_EVENTS, run_id, buf, len, e);
}

/* Checks the body into outcome, comment and to (NULL unless escalate). */
static int review_body(struct api_req *r, struct db *d, json_t *body, const char **ret_outcome,
                       const char **ret_comment, const char **ret_to) {
        int k = api_known_fields(r, body, (const char *const[]){"outcome", "comment", "to", NULL});
        if (k < 0)
                return k;
        json_t *jo = json_object_get(body, "outcome"), *jc = json_object_get(body, "comment"),
               *jt = json_object_get(body, "to");
        if (!jo)
                return api_fail(r, -EINVAL, "missing_field", "outcome is required");
        const char *o = json_string_value(jo);
        if (!o || (strcmp(o, "approve") && strcmp(o, "reject") && strcmp(o, "escalate")))
                return api_errno(r, -EINVAL, "outcome must be \"approve\", \"reject\" or \"escalate\"");
        if (jc && (!json_is_string(jc) || json_string_length(jc) > REVIEW_COMMENT_MAX ||
                   strlen(json_string_value(jc)) != json_string_length(jc)))
                return api_errno(r, -EINVAL, "comment must be a string of at most %d bytes",
                                REVIEW_COMMENT_MAX);
        bool escalate = !strcmp(o, "escalate");
        if (escalate && !jt)
                return api_fail(r, -EINVAL, "missing_field", "to is required to escalate (a user id or a role)");
        if (!escalate && jt)
                return api_errno(r, -EINVAL, "to is only for outcome \"escalate\"");
        const char *to = NULL;
        if (escalate) {
                to = json_string_value(jt);
                if (!to)
                        return api_errno(r, -EINVAL, "to must be a user id or a role name");
                if (id_is_uuid(to)) {
                        /* a user of the caller's tenant (row-level security), enabled */
                        _cleanup_pgres_ PGresult *res = NULL;
                        struct err_detail e = {0};
                        const char *params[] = {to, r->caller.tenant_id};
                        if ((k = pg_exec(d->conn, "SELECT 1 FROM api.users WHERE id = $1 AND tenant_id = $2 AND NOT disabled",
                                         2, params, &res, &e)) < 0)
                                return db_fail(r, k, &e, "look up user");
                        if (PQntuples(res) != 1)
                                return api_errno(r, -EINVAL, "to: no such user in this tenant");
                } else if (!api_role_valid(to))
                        return api_errno(r, -EINVAL, "to must be a user id or a role name (tenant_admin, sandbox_author, launcher, "
                                        "approver, reviewer, viewer, security_admin)");
        }
        *ret_outcome = o;
        *ret_comment = jc ? json_string_value(jc) : "";
        *ret_to = to;
        return 0;
}

int reviews_create(struct api_req *r) {
        const char *run_id = r->params[0];
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if (!id_is_uuid(run_id))
                return api_errno(r, -ENOENT, "run not found");
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        /* the run under its row lock: two reviews of one run are ordered */
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &tx.d, "run",
                                  "SELECT r.team_id, r.created_by, " RUNS_SHOWN_STATUS " FROM api.runs r "
                                  "LEFT JOIN evidence.run_history h ON h.run_id = r.id "
                                  "WHERE r.id = $1 AND r.tenant_id = $2 FOR UPDATE OF r",
                                  2, params, 0, &res)) < 0)
                return k;
        const char *team = PQgetvalue(res, 0, 0), *status = PQgetvalue(res, 0, 2);
        /* the body once the caller may review here: who may not see the
         * run learns nothing from its answers (404 first) */
        const char *outcome = NULL, *comment = NULL, *to = NULL;
        if ((k = review_body(r, &tx.d, body, &outcome, &comment, &to)) < 0)
                return k;
        /* four eyes (ARCHITECTURE.md §5): the launcher does not review its own run */
        if (!strcmp(PQgetvalue(res, 0, 1), r->caller.user_id))
                return api_errno(r, -EPERM, "you launched run %s: it is reviewed by another reviewer (four eyes)", run_id);
        /* only what is over, with its whole history, is reviewed */
        if (!runs_status_terminal(status))
                return api_errno(r, -EEXIST, "run %s has not finished (%s): only a finished run is reviewed",
                                run_id, status);
        char id[UUID_STR_LEN], actor[UUID_STR_LEN + 8];
        if (id_new_uuid(id) < 0)
                return api_errno(r, -EIO, "could not make an id");
        snprintf(actor, sizeof actor, "user:%s", r->caller.user_id);
        _cleanup_pgres_ PGresult *ins = NULL;
        const char *iparams[] = {id, r->caller.tenant_id, run_id, team, outcome, comment, to, r->caller.user_id};
        k = pg_exec(tx.d.conn,
                    "WITH v AS (INSERT INTO api.reviews (id, tenant_id, run_id, team_id, outcome, comment, escalate_to,"
                    " reviewer) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING outcome, reviewer, created_at) "
                    "UPDATE api.runs r SET review = (SELECT jsonb_build_object('outcome', v.outcome, 'by', v.reviewer,"
                    " 'at', " DB_TS("v.created_at") ") FROM v) WHERE r.id = $3 AND r.tenant_id = $2 "
                    "RETURNING " DB_TS("(SELECT created_at FROM v)"),
                    8, iparams, &ins, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "record review");
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s, s:s}", "run", run_id, "outcome", outcome,
                                                  "comment", comment, "review", id);
        if (change && to)
                json_object_set_new(change, "to", json_string(to));
        if ((k = api_tx_audit(&tx, "run.review", "run", run_id, change)) < 0)
                return k;
        _cleanup_json_ json_t *data = json_pack("{s:s, s:s, s:s, s:s}", "review", id, "outcome", outcome, "comment",
                                                comment, "by", r->caller.user_id);
        if (data && to)
                json_object_set_new(data, "to", json_string(to));
        if (!data || (k = review_event_enqueue(r->api, &tx.d, r->caller.tenant_id, team, run_id, actor, data, &tx.e)) < 0)
                return db_fail(r, data ? k : -ENOMEM, &tx.e, "queue review event");
        if ((k = api_tx_commit(&tx, "review")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "run", run_id, "review", id, "outcome", outcome),
                "run reviewed");
        _cleanup_pgres_ PGresult *out = NULL;
        const char *oparams[] = {id, r->caller.tenant_id};
        k = pg_exec(tx.d.conn, "SELECT " REVIEW_COLUMNS "WHERE v.id = $1 AND v.tenant_id = $2", 2, oparams, &out, &tx.e);
        if (k < 0 || PQntuples(out) != 1)
                return k < 0 ? db_fail(r, k, &tx.e, "load review") : api_errno(r, -EIO, "review vanished");
        r->out = review_json(out, 0);
        r->status = 201;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int reviews_query(struct db *d, const char *tenant_id, const char *run_id, json_t **ret, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, tenant_id};
        int k = pg_exec(d->conn,
                        "SELECT " REVIEW_COLUMNS "WHERE v.run_id = $1 AND v.tenant_id = $2 ORDER BY v.created_at, v.id",
                        2, params, &res, e);
        if (k < 0)
                return k;
        json_t *items = json_array();
        for (int i = 0; items && i < PQntuples(res); i++)
                json_array_append_new(items, review_json(res, i));
        if (!items)
                return -ENOMEM;
        *ret = items;
        return 0;
}

int reviews_list(struct api_req *r) {
        const char *run_id = r->params[0];
        if (!id_is_uuid(run_id))
                return api_errno(r, -ENOENT, "run not found");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k;
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &d, "run", "SELECT team_id FROM api.runs WHERE id = $1 AND tenant_id = $2", 2,
                                  params, 0, &res)) < 0)
                return k;
        json_t *items = NULL;
        if ((k = reviews_query(&d, r->caller.tenant_id, run_id, &items, &e)) < 0)
                return db_fail(r, k, &e, "list reviews");
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
