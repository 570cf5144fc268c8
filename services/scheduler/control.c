/* Cancels from the api (paddock.runs.control). The scheduler is the only
 * party that knows a run is still waiting for a node, so it ends such a run
 * itself: it is never placed, and its terminal "cancelled" status goes out
 * (the api may already show it cancelled; a terminal status is never left, so
 * that is harmless). A run already assigned is the runner-agent's to stop; it
 * is only marked, so that stalled.c ends it if its node never reports.
 * Cancels the scheduler itself sent to nodes (evict.c) are ignored. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "scheduler.h"

#define REASON_MAX 1024

static void control_freep(Paddock__V1__RunControl **p) {
        if (*p)
                paddock__v1__run_control__free_unpacked(*p, NULL);
}

int control_handle(PGconn *conn, const struct sched *s, const void *data, size_t len, struct err_detail *reterr) {
        _cleanup_(control_freep) Paddock__V1__RunControl *c = paddock__v1__run_control__unpack(NULL, len, data);
        if (!c)
                return err_set(reterr, -EBADMSG, "decode", "not a RunControl");
        if (c->action_case != PADDOCK__V1__RUN_CONTROL__ACTION_CANCEL || !c->cancel)
                return 0; /* approvals and secrets are the runner-agent's */
        if (!c->env || !id_is_uuid(c->env->run_id))
                return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
        if (c->env->producer && strncmp(c->env->producer, "scheduler/", strlen("scheduler/")) == 0)
                return 0;
        const char *run_id = c->env->run_id;
        const char *reason = c->cancel->reason && *c->cancel->reason ? c->cancel->reason : "cancelled before placement";
        if (strlen(reason) > REASON_MAX)
                reason = "cancelled before placement";

        _cleanup_(PQclearp) PGresult *run = NULL;
        int r = pg_begin(conn, reterr);
        if (r < 0)
                return r;
        r = placement_lock(conn, reterr);
        if (r < 0)
                goto rollback;
        const char *p[] = {run_id};
        r = pg_exec(conn, "SELECT state, tenant_id, team_id FROM scheduler.runs WHERE run_id = $1 FOR UPDATE",
                    1, p, &run, reterr);
        if (r < 0)
                goto rollback;
        if (PQntuples(run) == 0) {
                /* cancelled before its request reached us (topics are not
                 * ordered): a finished row keeps the late request from being placed */
                if (!id_is_uuid(c->env->tenant_id)) {
                        r = err_set(reterr, -EINVAL, "env.tenant_id", "env.tenant_id is not a UUID");
                        goto rollback;
                }
                const char *ip[] = {run_id, c->env->tenant_id, reason};
                r = pg_exec(conn,
                            "INSERT INTO scheduler.runs (run_id, tenant_id, state, finished_at, reason,"
                            " cancel_requested_at) VALUES ($1, $2, 'finished', now(), $3, now())"
                            " ON CONFLICT (run_id) DO NOTHING",
                            3, ip, NULL, reterr);
        } else if (!strcmp(PQgetvalue(run, 0, 0), "pending")) {
                const char *tenant = PQgetvalue(run, 0, 1);
                const char *team = PQgetisnull(run, 0, 2) ? NULL : PQgetvalue(run, 0, 2);
                r = platform_end_run(s, run_id, tenant, team, run_status_to_string(RUN_CANCELLED), reason, reterr);
                if (r < 0)
                        goto rollback;
                const char *up[] = {run_id, reason};
                r = pg_exec(conn,
                            "UPDATE scheduler.runs SET state = 'finished', finished_at = now(), reason = $2,"
                            " cancel_requested_at = now() WHERE run_id = $1",
                            2, up, NULL, reterr);
                if (r >= 0)
                        log_ctx(LOG_INFO, LOG_KV("run", run_id, "tenant", tenant), "pending run cancelled");
        } else if (!strcmp(PQgetvalue(run, 0, 0), "assigned")) {
                r = pg_exec(conn,
                            "UPDATE scheduler.runs SET cancel_requested_at = coalesce(cancel_requested_at, now())"
                            " WHERE run_id = $1",
                            1, p, NULL, reterr);
        }
        if (r < 0)
                goto rollback;
        return pg_commit(conn, reterr);

rollback:
        pg_rollback(conn);
        return r;
}
