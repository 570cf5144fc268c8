/* The audit hash chain and the SIEM feed: each AuditRecord on paddock.audit
 * is appended to its tenant's chain in PostgreSQL, then published as OCSF on
 * paddock.siem.ocsf (ARCHITECTURE.md §3.7). The offset is committed only
 * after both, so neither is lost; the chain ignores redeliveries by message
 * id, the SIEM receives them again and dedups on metadata.uid. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit_chain.h"
#include "audit/audit_ocsf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "evidence.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/audit.pb-c.h"
#include "proto/envelope.h"

#define PRODUCER "evidence"

static struct metric m_appended = {.name = "paddock_evidence_audit_appended_total",
                                   .help = "Audit records appended to a tenant's hash chain", .type = METRIC_COUNTER};
static struct metric m_duplicates = {.name = "paddock_evidence_audit_duplicate_total",
                                     .help = "Audit records delivered again and not appended twice",
                                     .type = METRIC_COUNTER};
static struct metric m_siem = {.name = "paddock_evidence_siem_published_total",
                               .help = "OCSF records published on paddock.siem.ocsf", .type = METRIC_COUNTER};

void audit_store_register_metrics(void) {
        metrics_register(&m_appended);
        metrics_register(&m_duplicates);
        metrics_register(&m_siem);
}

static void audit_record_freep(Paddock__V1__AuditRecord **p) {
        if (*p)
                paddock__v1__audit_record__free_unpacked(*p, NULL);
}

/* Packs one SiemRecord of tenant with message id msgid (both borrowed). */
static uint8_t *siem_pack(const char *tenant, const char *msgid, const char *ocsf, size_t *len) {
        Paddock__V1__Envelope env;
        char id[UUID_STR_LEN];
        if (envelope_init(&env, tenant, NULL, 0, PRODUCER, id) < 0)
                return NULL;
        env.message_id = (char *)msgid;
        Paddock__V1__SiemRecord s;
        paddock__v1__siem_record__init(&s);
        s.env = &env;
        s.ocsf_json = (char *)ocsf;
        *len = paddock__v1__siem_record__get_packed_size(&s);
        uint8_t *buf = malloc(*len ? *len : 1);
        if (buf)
                paddock__v1__siem_record__pack(&s, buf);
        return buf;
}

static int siem_publish(const struct audit_store_config *cfg, const Paddock__V1__AuditRecord *rec,
                        const struct audit_chain_position *pos, struct err_detail *reterr) {
        _cleanup_free_ char *ocsf = audit_ocsf_json(rec, pos);
        _cleanup_free_ char *queued = NULL;
        if (!ocsf || audit_ocsf_run_queued_json(rec, pos, &queued) < 0)
                return err_set(reterr, -ENOMEM, "nomem", "out of memory");
        /* The SIEM record is the audit record's projection: same logical
         * message, same id, so consumers can dedup on either; a launch's
         * "queued" lifecycle record is a second projection of it. */
        char qid[UUID_STR_LEN + 8];
        snprintf(qid, sizeof qid, "%s:queued", rec->env->message_id);
        size_t len = 0, qlen = 0;
        _cleanup_free_ uint8_t *buf = siem_pack(rec->env->tenant_id, rec->env->message_id, ocsf, &len);
        _cleanup_free_ uint8_t *qbuf = queued ? siem_pack(rec->env->tenant_id, qid, queued, &qlen) : NULL;
        if (!buf || (queued && !qbuf))
                return err_set(reterr, -EAGAIN, "nomem", "could not pack the siem record");
        struct kafka_outgoing out[2] = {
                {.topic = TOPIC_SIEM_OCSF, .key = rec->env->tenant_id, .value = buf, .len = len},
                {.topic = TOPIC_SIEM_OCSF, .key = rec->env->tenant_id, .value = qbuf, .len = qlen},
        };
        size_t n = queued ? 2 : 1;
        int r = kafka_produce_sync_many(cfg->producer, out, n, cfg->siem_timeout_ms, reterr);
        if (r < 0 || (size_t)r < n)
                return -EAGAIN; /* never a reason to skip the message: retry it */
        metric_add(&m_siem, (long long)n);
        return 0;
}

int audit_store(PGconn *conn, const struct audit_store_config *cfg, const void *data, size_t len,
                struct err_detail *reterr) {
        _cleanup_(audit_record_freep) Paddock__V1__AuditRecord *rec = paddock__v1__audit_record__unpack(NULL, len, data);
        if (!rec)
                return err_set(reterr, -EBADMSG, "decode", "not an AuditRecord");
        struct audit_chain_position pos = {0};
        int appended = audit_chain_append(conn, rec, &pos, reterr);
        if (appended < 0)
                return appended;
        char seq[24];
        snprintf(seq, sizeof seq, "%" PRIu64, pos.seq);
        if (appended) {
                metric_add(&m_appended, 1);
                log_ctx(LOG_DEBUG, LOG_KV("tenant", rec->env->tenant_id, "seq", seq, "action", rec->action),
                        "audit record appended");
        } else {
                metric_add(&m_duplicates, 1);
        }
        int r = siem_publish(cfg, rec, &pos, reterr);
        return r < 0 ? r : appended;
}
