/* POST /v1/runs/{id}/cancel. A run on a node is stopped by its runner-agent
 * (RunControl{cancel} to that node; the run's status then arrives from
 * runs.events). A queued run has no node yet: it is cancelled here directly,
 * and the cancel still goes out (node_id empty) so that the runner-agent that
 * later receives its assignment drops it. The cancel leaves through the
 * outbox (outbox.c), after the run's request it follows. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "pg/pg.h"

#define REASON_MAX 512

static int cancel_body_reason(struct api_req *r, char *reason, size_t size) {
        snprintf(reason, size, "cancelled by user %s", r->caller.user_id);
        if (!r->body || r->body_len == 0)
                return 0;
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"reason", NULL})) < 0)
                return k;
        json_t *jr = json_object_get(body, "reason");
        if (jr) {
                if (!json_is_string(jr) || json_string_length(jr) == 0 || json_string_length(jr) > REASON_MAX ||
                    strlen(json_string_value(jr)) != json_string_length(jr))
                        return api_errno(r, -EINVAL, "reason must be a string of 1 to %d bytes",
                                        REASON_MAX);
                snprintf(reason, size, "%s", json_string_value(jr));
        }
        return 0;
}

int runs_cancel(struct api_req *r) {
        const char *id = r->params[0];
        if (!id_is_uuid(id))
                return api_errno(r, -ENOENT, "run not found");
        char reason[REASON_MAX + 64];
        int k = cancel_body_reason(r, reason, sizeof reason);
        if (k < 0)
                return k;
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &tx.d, "run",
                                  "SELECT team_id, status, node_id FROM api.runs WHERE id = $1 AND tenant_id = $2", 2,
                                  params, 0, &res)) < 0)
                return k;
        const char *status = PQgetvalue(res, 0, 1), *node = db_val(res, 0, 2);
        if (runs_status_terminal(status))
                return api_errno(r, -EEXIST, "run already ended (%s)", status);
        /* one transaction for the audit record, the cancel (queued in the
         * outbox: it goes out when this commits, never if it does not) and
         * the run's row */
        _cleanup_json_ json_t *change = json_pack("{s:s}", "reason", reason);
        /* Checked again under the row's lock, which the status consumer's
         * update waits for: a run that ended meanwhile gets no cancel (a
         * terminal run is never cancelled, docs/CONTRACTS.md: one terminal
         * status), and the node is the one known now. */
        _cleanup_pgres_ PGresult *locked = NULL;
        if ((k = pg_exec(tx.d.conn, "SELECT status, node_id FROM api.runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE", 2,
                         params, &locked, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "cancel run");
        if (PQntuples(locked) == 1) {
                status = PQgetvalue(locked, 0, 0);
                node = db_val(locked, 0, 1);
        }
        if (runs_status_terminal(status))
                return api_errno(r, -EEXIST, "run already ended (%s)", status);
        if ((k = api_tx_audit(&tx, "run.cancel", "run", id, change)) < 0)
                return k;

        Paddock__V1__RunControl rc = PADDOCK__V1__RUN_CONTROL__INIT;
        Paddock__V1__CancelRun cancel = PADDOCK__V1__CANCEL_RUN__INIT;
        char by[UUID_STR_LEN + 8];
        snprintf(by, sizeof by, "user:%s", r->caller.user_id);
        cancel.requested_by = by;
        cancel.reason = reason;
        rc.node_id = (char *)(node ? node : "");
        rc.action_case = PADDOCK__V1__RUN_CONTROL__ACTION_CANCEL;
        rc.cancel = &cancel;
        if ((k = control_enqueue(r->api, &tx.d, r->caller.tenant_id, id, &rc, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "queue cancel");

        const char *out_status = status;
        if (!node) {
                /* no node: nobody else will ever report an end, so end it here
                 * (unless the assignment arrived meanwhile: then the runner does) */
                _cleanup_pgres_ PGresult *up = NULL;
                const char *uparams[] = {id, r->caller.tenant_id, reason};
                k = pg_exec(tx.d.conn,
                            "UPDATE api.runs SET status = 'cancelled', reason = $3, ended_at = now() "
                            "WHERE id = $1 AND tenant_id = $2 AND node_id IS NULL AND status = 'queued' "
                            "RETURNING status",
                            3, uparams, &up, &tx.e);
                if (k < 0)
                        return db_fail(r, k, &tx.e, "cancel queued run");
                if (PQntuples(up) == 1)
                        out_status = "cancelled";
        }
        if ((k = api_tx_commit(&tx, "cancel run")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "run", id, "user", r->caller.user_id, "node",
                                 node ? node : ""),
                "run cancel requested");
        r->out = json_pack("{s:s, s:s}", "id", id, "status", out_status);
        r->status = 202;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
