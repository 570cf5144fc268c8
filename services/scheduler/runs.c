/* The run lifecycle as the scheduler sees it: pending on request, started
 * (last_seq > 0) on its first event, finished on its first terminal event.
 * Events come from paddock.runs.status, the low-volume copy of the
 * control-relevant events (docs/CONTRACTS.md): the scheduler never reads the
 * firehose, so a busy run cannot put it behind. All are idempotent under
 * redelivery. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "paddock/v1/events.pb-c.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "kafka/bus_auth.h"
#include "kafka/topics.h"
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

        /* What the run needs from a node; the api fills the defaults, but a
         * request without them must not look free. */
        const Paddock__V1__Limits *lim = req->sandbox ? req->sandbox->limits : NULL;
        double cpus = lim && lim->cpus > 0 ? lim->cpus : RUN_DEFAULT_CPUS;
        unsigned long long mem = lim && lim->memory_mb ? lim->memory_mb : RUN_DEFAULT_MEMORY_MB;
        if (!(cpus <= 4096))
                return err_set(reterr, -EINVAL, "sandbox.limits.cpus", "sandbox.limits.cpus %g is implausible", cpus);
        char cpus_s[32], mem_s[24];
        snprintf(cpus_s, sizeof cpus_s, "%.17g", cpus);
        snprintf(mem_s, sizeof mem_s, "%llu", mem);
        /* placement matches it against the nodes' heartbeats (placement.c) */
        const char *image = req->sandbox && req->sandbox->image && req->sandbox->image[0] ? req->sandbox->image
                                                                                            : NULL;

        /* Stored exactly as received, so the assignment embeds the very
         * snapshot the api published. */
        _cleanup_free_ char *hex = malloc(2 * len + 1);
        if (!hex)
                return -ENOMEM;
        hex_encode(data, len, hex);
        /* FIFO order is the api's: requests travel on different partitions,
         * so arrival order here is not launch order (capped at now, so a
         * clock running ahead cannot jump the queue). */
        char ts[24];
        snprintf(ts, sizeof ts, "%lld", (long long)req->env->ts_unix_us);
        const char *params[] = {req->env->run_id, req->env->tenant_id, team, hex, cpus_s, mem_s,
                                req->env->ts_unix_us > 0 ? ts : NULL, image};
        return pg_exec(conn,
                       "INSERT INTO scheduler.runs (run_id, tenant_id, team_id, request, cpus, memory_mb,"
                       " created_at, image)"
                       " VALUES ($1, $2, $3, decode($4, 'hex'), $5, $6,"
                       "  LEAST(now(), COALESCE(to_timestamp($7::double precision / 1e6), now())), $8)"
                       " ON CONFLICT (run_id) DO NOTHING",
                       (int)ELEMENTSOF(params), params, NULL, reterr);
}

int runs_handle_event(PGconn *conn, const char *signer, const void *data, size_t len, struct err_detail *reterr) {
        _cleanup_(event_freep) Paddock__V1__RunEvent *ev = paddock__v1__run_event__unpack(NULL, len, data);
        if (!ev)
                return err_set(reterr, -EBADMSG, "decode", "not a RunEvent");
        if (!ev->env || !id_is_uuid(ev->env->run_id))
                return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
        if (ev->env->seq > INT64_MAX)
                return err_set(reterr, -EINVAL, "env.seq", "env.seq is out of range");
        char seq[24];
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)ev->env->seq);
        /* Only the node a run is assigned to reports it (docs/CONTRACTS.md,
         * signed messages); the scheduler's own platform events pass. */
        if (strcmp(signer, "scheduler")) {
                const char *p[] = {ev->env->run_id};
                _cleanup_(PQclearp) PGresult *res = NULL;
                int k = pg_exec(conn, "SELECT coalesce(node_id, '') FROM scheduler.runs WHERE run_id = $1", 1, p, &res,
                                reterr);
                if (k < 0)
                        return k;
                if (PQntuples(res) != 1 || !bus_auth_is_node(signer, PQgetvalue(res, 0, 0))) {
                        bus_auth_refuse(TOPIC_RUNS_STATUS, signer, BUS_REFUSED_WRONG_SUBJECT,
                                        "event about a run not assigned to the signing node");
                        return 0;
                }
        }
        /* seq 0 is a platform verdict ("append"): only ours, only terminal */
        if (ev->env->seq == 0 && (strcmp(signer, "scheduler") || !ev->terminal))
                return err_set(reterr, -EINVAL, "env.seq", "env.seq 0 is only for the scheduler's terminal verdicts");

        if (!ev->terminal) {
                /* Any event means the run started: a dead node's run must then
                 * fail rather than run again elsewhere. */
                const char *params[] = {ev->env->run_id, seq};
                return pg_exec(conn,
                               "UPDATE scheduler.runs SET last_seq = $2::bigint"
                               " WHERE run_id = $1 AND last_seq < $2::bigint",
                               (int)ELEMENTSOF(params), params, NULL, reterr);
        }

        const char *tenant = NULL, *team = NULL;
        int r = optional_uuid(ev->env->tenant_id, "env.tenant_id", &tenant, reterr);
        if (r < 0)
                return r;
        r = optional_uuid(ev->team_id, "team_id", &team, reterr);
        if (r < 0)
                return r;

        /* A terminal event for a run we never saw requested (topics are not
         * ordered against each other) leaves a finished row without a request,
         * so the late request can never be placed. The first terminal status
         * wins (docs/CONTRACTS.md): a finished run stays as it ended, so its
         * slot is freed and its end counted once. */
        const char *params[] = {ev->env->run_id, tenant, team, seq};
        _cleanup_(PQclearp) PGresult *res = NULL;
        r = pg_exec(conn,
                    "INSERT INTO scheduler.runs AS r (run_id, tenant_id, team_id, state, finished_at, last_seq)"
                    " VALUES ($1, $2, $3, 'finished', now(), $4::bigint)"
                    " ON CONFLICT (run_id) DO UPDATE SET state = 'finished', finished_at = now(),"
                    "  last_seq = GREATEST(r.last_seq, EXCLUDED.last_seq)"
                    " WHERE r.state <> 'finished'"
                    " RETURNING 1",
                    (int)ELEMENTSOF(params), params, &res, reterr);
        return r < 0 ? r : PQntuples(res) > 0;
}
