/* Session history: each RunEvent becomes one row of evidence.run_events,
 * exactly once per (run_id, seq) however often Kafka delivers it. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "evidence.h"
#include "paddock/v1/events.pb-c.h"
#include "pg/pg.h"
#include "service/run_node.h"

#define KIND_MAX 64
#define ACTOR_MAX 256

static struct metric m_stored = {.name = "paddock_evidence_events_stored_total",
                                 .help = "Run events inserted into the session history", .type = METRIC_COUNTER};
static struct metric m_duplicates = {.name = "paddock_evidence_events_duplicate_total",
                                     .help = "Run events delivered again and ignored", .type = METRIC_COUNTER};
static struct metric m_raw = {.name = "paddock_evidence_events_invalid_data_total",
                              .help = "Run events whose data was not a JSON object, stored as {\"raw\": text}",
                              .type = METRIC_COUNTER};

void events_store_register_metrics(void) {
        metrics_register(&m_stored);
        metrics_register(&m_duplicates);
        metrics_register(&m_raw);
}

static void event_freep(Paddock__V1__RunEvent **p) {
        if (*p)
                paddock__v1__run_event__free_unpacked(*p, NULL);
}

/* Keeps what the runner-agent sent even when it is not a JSON object, so the
 * evidence trail shows it rather than losing the event. Caller frees. */
static char *data_wrap_raw(const char *text) {
        json_t *raw = json_string(text);
        if (!raw) /* not valid UTF-8 */
                raw = json_string("(data is not valid utf-8)");
        json_t *o = json_object();
        json_object_set_new(o, "raw", raw);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return s;
}

static bool data_is_object(const char *text) {
        json_error_t jerr;
        json_t *v = json_loads(text, 0, &jerr);
        bool ok = v && json_is_object(v);
        json_decref(v);
        return ok;
}

int events_store(PGconn *conn, const struct kafka_message *m, struct err_detail *reterr) {
        _cleanup_(event_freep) Paddock__V1__RunEvent *ev = paddock__v1__run_event__unpack(NULL, m->len, m->value);
        if (!ev)
                return err_set(reterr, -EBADMSG, "decode", "not a RunEvent");
        if (!ev->env || !id_is_uuid(ev->env->run_id))
                return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
        if (!id_is_uuid(ev->env->tenant_id))
                return err_set(reterr, -EINVAL, "env.tenant_id", "env.tenant_id is not a UUID");
        if (ev->env->seq < 1 || ev->env->seq > INT64_MAX)
                return err_set(reterr, -EINVAL, "env.seq", "env.seq must be >= 1");
        if (ev->team_id && *ev->team_id && !id_is_uuid(ev->team_id))
                return err_set(reterr, -EINVAL, "team_id", "team_id is not a UUID");
        size_t kind_len = strlen(ev->kind);
        if (kind_len == 0 || kind_len > KIND_MAX)
                return err_set(reterr, -EINVAL, "kind", "kind must be 1-%d characters", KIND_MAX);
        if (strlen(ev->actor) > ACTOR_MAX)
                return err_set(reterr, -EINVAL, "actor", "actor is longer than %d characters", ACTOR_MAX);

        /* only the run's node (or the scheduler) reports it (docs/CONTRACTS.md) */
        int r = run_node_check(conn, m, ev->env->run_id, NULL, reterr);
        if (r != 0)
                return r < 0 ? r : 0;
        /* stored as the event's tenant: row-level security keys on it */
        r = pg_set_tenant(conn, ev->env->tenant_id, reterr);
        if (r < 0)
                return r;
        char seq[24], ts[40];
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)ev->env->seq);
        if (ev->env->ts_unix_us > 0)
                time_format_rfc3339(ev->env->ts_unix_us, ts, sizeof ts);

        const char *json = *ev->data_json ? ev->data_json : "{}";
        _cleanup_free_ char *wrapped = NULL;
        if (!data_is_object(json)) {
                wrapped = data_wrap_raw(json);
                if (!wrapped)
                        return -ENOMEM;
                log_ctx(LOG_WARN, LOG_KV("run", ev->env->run_id, "tenant", ev->env->tenant_id, "seq", seq),
                        "event data is not a JSON object, storing it as raw text");
                metric_add(&m_raw, 1);
        }

        /* what offline verification needs: the signature and the record
         * value exactly as signed (docs/CONTRACTS.md, signed messages) */
        char sig_hex[2 * SIGN_SIGNATURE_LEN + 1];
        _cleanup_free_ char *value_hex = malloc(2 * m->len + 1);
        if (!value_hex)
                return -ENOMEM;
        hex_encode(m->sig, sizeof m->sig, sig_hex);
        hex_encode(m->value, m->len, value_hex);

        for (;;) {
                _cleanup_(PQclearp) PGresult *res = NULL;
                const char *params[] = {ev->env->run_id, seq, ev->env->tenant_id,
                                        *ev->team_id ? ev->team_id : NULL,
                                        ev->env->ts_unix_us > 0 ? ts : NULL,
                                        ev->kind, *ev->actor ? ev->actor : NULL,
                                        wrapped ? wrapped : json,
                                        m->is_signed ? m->signer : NULL,
                                        m->is_signed ? sig_hex : NULL,
                                        m->is_signed ? value_hex : NULL};
                r = pg_exec(conn,
                                "INSERT INTO evidence.run_events"
                                " (run_id, seq, tenant_id, team_id, ts, kind, actor, data, signer, signature, signed_value)"
                                " VALUES ($1, $2, $3, $4, COALESCE($5::timestamptz, now()), $6, $7, $8::jsonb,"
                                "  $9, decode($10, 'hex'), decode($11, 'hex'))"
                                " ON CONFLICT (run_id, seq) DO NOTHING RETURNING seq",
                                (int)ELEMENTSOF(params), params, &res, reterr);
                /* jansson accepts a few things jsonb refuses (lone surrogate
                 * escapes): keep the event, with its data as raw text */
                if (r == -EINVAL && !wrapped) {
                        wrapped = data_wrap_raw(json);
                        if (!wrapped)
                                return -ENOMEM;
                        log_ctx(LOG_WARN, LOG_KV("run", ev->env->run_id, "tenant", ev->env->tenant_id, "seq", seq),
                                "event data refused by postgresql, storing it as raw text: %s", reterr ? reterr->message : "");
                        metric_add(&m_raw, 1);
                        continue;
                }
                if (r < 0)
                        return r;
                if (PQntuples(res) == 0) {
                        metric_add(&m_duplicates, 1);
                        return 0;
                }
                metric_add(&m_stored, 1);
                return 1;
        }
}
