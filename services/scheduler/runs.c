/* The run lifecycle as the scheduler sees it: pending on request, finished on
 * the terminal event. Both are idempotent under redelivery. */
#include <errno.h>
#include <stdlib.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "paddock/v1/events.pb-c.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "scheduler.h"

static void requested_freep(Paddock__V1__RunRequested **p) {
        if (*p)
                paddock__v1__run_requested__free_unpacked(*p, NULL);
}

static void event_freep(Paddock__V1__RunEvent **p) {
        if (*p)
                paddock__v1__run_event__free_unpacked(*p, NULL);
}

/* Empty optional ids become SQL NULL; anything else must be a UUID. */
static int optional_uuid(const char *s, const char *field, const char **ret, struct err_detail *reterr) {
        if (!s || !*s) {
                *ret = NULL;
                return 0;
        }
        if (!id_is_uuid(s))
                return err_set(reterr, -EINVAL, field, "%s is not a UUID", field);
        *ret = s;
        return 0;
}

int runs_handle_requested(PGconn *conn, const void *data, size_t len, struct err_detail *reterr) {
        _cleanup_(requested_freep) Paddock__V1__RunRequested *req =
                paddock__v1__run_requested__unpack(NULL, len, data);
        if (!req)
                return err_set(reterr, -EBADMSG, "decode", "not a RunRequested");
        if (!req->env || !id_is_uuid(req->env->run_id))
                return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
        if (!id_is_uuid(req->env->tenant_id))
                return err_set(reterr, -EINVAL, "env.tenant_id", "env.tenant_id is not a UUID");
        const char *team = NULL;
        int r = optional_uuid(req->team_id, "team_id", &team, reterr);
        if (r < 0)
                return r;

        /* Stored exactly as received, so the assignment embeds the very
         * snapshot the api published. */
        _cleanup_free_ char *hex = malloc(2 * len + 1);
        if (!hex)
                return -ENOMEM;
        hex_encode(data, len, hex);
        const char *params[] = {req->env->run_id, req->env->tenant_id, team, hex};
        return pg_exec(conn,
                       "INSERT INTO scheduler.runs (run_id, tenant_id, team_id, request)"
                       " VALUES ($1, $2, $3, decode($4, 'hex'))"
                       " ON CONFLICT (run_id) DO NOTHING",
                       (int)ELEMENTSOF(params), params, NULL, reterr);
}

int runs_handle_event(PGconn *conn, const void *data, size_t len, struct err_detail *reterr) {
        _cleanup_(event_freep) Paddock__V1__RunEvent *ev = paddock__v1__run_event__unpack(NULL, len, data);
        if (!ev)
                return err_set(reterr, -EBADMSG, "decode", "not a RunEvent");
        if (!ev->terminal)
                return 0;
        if (!ev->env || !id_is_uuid(ev->env->run_id))
                return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
        const char *tenant = NULL, *team = NULL;
        int r = optional_uuid(ev->env->tenant_id, "env.tenant_id", &tenant, reterr);
        if (r < 0)
                return r;
        r = optional_uuid(ev->team_id, "team_id", &team, reterr);
        if (r < 0)
                return r;

        /* A terminal event for a run we never saw requested (topics are not
         * ordered against each other) leaves a finished row without a request,
         * so the late request can never be placed. */
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = {ev->env->run_id, tenant, team};
        r = pg_exec(conn,
                    "INSERT INTO scheduler.runs AS r (run_id, tenant_id, team_id, state, finished_at)"
                    " VALUES ($1, $2, $3, 'finished', now())"
                    " ON CONFLICT (run_id) DO UPDATE SET state = 'finished', finished_at = now()"
                    " WHERE r.state <> 'finished'"
                    " RETURNING run_id",
                    (int)ELEMENTSOF(params), params, &res, reterr);
        if (r < 0)
                return r;
        return PQntuples(res) > 0 ? 1 : 0;
}
