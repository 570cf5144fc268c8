/* The retention sweeper (issue 14 §3; docs/CONTRACTS.md "Retention and
 * legal hold"): deletes the events, artifact rows and S3 objects of runs
 * whose retention expired on the business clock (lib/core/business_clock.h)
 * and that no legal hold covers, keeping a tombstone and an audit record of
 * each deletion.
 *
 * Each run goes through steps that are each idempotent, so a sweep killed at
 * any point is finished by the next one (evidence.retention_due lists
 * unfinished tombstones first):
 *   1. under the tenant's retention lock (the api's hold PUT takes the same
 *      advisory lock), check again that the run is due and not held, and
 *      write the tombstone (deleted_at NULL) with the counts and hashes of
 *      what is about to go: from here on a hold can no longer stop it (the
 *      api answers such a hold 409);
 *   2. delete the S3 objects (an absent object counts as deleted);
 *   3. delete the rows in one transaction;
 *   4. append the audit record (a message id derived from the run id, so a
 *      rerun appends nothing twice) and publish its SIEM record;
 *   5. complete the tombstone (deleted_at = business now).
 * The audit log itself is never touched: the chain stays verifiable.
 *
 * Before the runs, each round sets the S3 legal hold of stored versions to
 * what the holds want (ON for a run a hold covers, OFF once none does), so
 * a held run's objects cannot be deleted even with bypass-governance; the
 * sweeper's thread also does that alone between rounds (sweeper_main). */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/business_clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "evidence.h"
#include "pg/pg.h"

static struct metric m_deleted = {.name = "paddock_evidence_retention_runs_deleted_total",
                                  .help = "Runs whose evidence the retention sweeper deleted", .type = METRIC_COUNTER};
static struct metric m_objects = {.name = "paddock_evidence_retention_objects_deleted_total",
                                  .help = "S3 objects deleted by the retention sweeper", .type = METRIC_COUNTER};
static struct metric m_failures = {.name = "paddock_evidence_retention_failures_total",
                                   .help = "Runs whose sweep failed and is retried at the next round",
                                   .type = METRIC_COUNTER};

static struct metric m_legal_holds = {.name = "paddock_evidence_legal_hold_objects_set_total",
                                      .help = "S3 object versions whose legal hold the sweeper set ON or OFF",
                                      .type = METRIC_COUNTER};

void retention_register_metrics(void) {
        metrics_register(&m_legal_holds);
        metrics_register(&m_deleted);
        metrics_register(&m_objects);
        metrics_register(&m_failures);
}

/* The audit record's message id: a UUID (version 4 layout) from the run id,
 * so every rerun of the same deletion names the same record. */
static int deletion_message_id(const char *run_id, char out[UUID_STR_LEN]) {
        char in[64];
        int n = snprintf(in, sizeof in, "paddock.retention.delete:%s", run_id);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (!EVP_Digest(in, (size_t)n, md, &md_len, EVP_sha256(), NULL) || md_len < 16)
                return -EIO;
        md[6] = (unsigned char)((md[6] & 0x0f) | 0x40);
        md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
        char hex[33];
        hex_encode(md, 16, hex);
        snprintf(out, UUID_STR_LEN, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
        return 0;
}

static const char *db_val_or_null(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

#define RETENTION_LOCK_SQL "SELECT pg_advisory_xact_lock(hashtextextended('paddock.retention:' || $1::text, 0))"

/* Step 1. Returns 1 when the tombstone is (now or already) there and the
 * deletion must go on, 0 when the run is no longer due (held meanwhile) or
 * was finished. */
static int tombstone_begin(PGconn *conn, const char *tenant, const char *run, const char *now_us,
                           struct err_detail *err) {
        int r = pg_begin(conn, err);
        if (r < 0)
                return r;
        _cleanup_(PQclearp) PGresult *res = NULL, *due = NULL;
        const char *pl[] = {tenant};
        const char *pt[] = {run};
        if ((r = pg_exec(conn, RETENTION_LOCK_SQL, 1, pl, NULL, err)) < 0 ||
            (r = pg_exec(conn, "SELECT deleted_at IS NOT NULL FROM evidence.run_tombstones WHERE run_id = $1", 1, pt,
                         &res, err)) < 0)
                goto fail;
        if (PQntuples(res) == 1) {
                r = PQgetvalue(res, 0, 0)[0] == 't' ? 0 : 1;
                goto done;
        }
        const char *pd[] = {run, tenant, now_us};
        if ((r = pg_exec(conn,
                         "SELECT 1 FROM evidence.retention_of($1) x WHERE x.tenant_id = $2 AND NOT x.held "
                         "AND x.expires_at <= to_timestamp($3::double precision / 1e6)",
                         3, pd, &due, err)) < 0)
                goto fail;
        if (PQntuples(due) != 1) {
                r = 0; /* held (or no longer expired) since it was listed */
                goto done;
        }
        char msgid[UUID_STR_LEN];
        if ((r = deletion_message_id(run, msgid)) < 0)
                goto fail;
        /* what will be deleted, hashed before anything goes: the events by
         * seq (kind and the SHA-256 of their data), the artifacts by name
         * (their SHA-256 and size); docs/CONTRACTS.md gives the formula */
        const char *pi[] = {run, tenant, msgid};
        r = pg_exec(conn,
                    "WITH x AS (SELECT * FROM evidence.retention_of($1) WHERE tenant_id = $2), "
                    "ev AS (SELECT count(*) AS n, encode(sha256(convert_to(coalesce(string_agg(seq || ' ' || kind || ' ' "
                    "  || encode(sha256(convert_to(data::text, 'UTF8')), 'hex'), E'\\n' ORDER BY seq), ''), 'UTF8')), 'hex') AS h "
                    "  FROM evidence.run_events WHERE run_id = $1), "
                    "ar AS (SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes, encode(sha256(convert_to(coalesce("
                    "  string_agg(name || ' ' || sha256 || ' ' || size, E'\\n' ORDER BY name), ''), 'UTF8')), 'hex') AS h "
                    "  FROM evidence.artifacts WHERE run_id = $1) "
                    "INSERT INTO evidence.run_tombstones (run_id, tenant_id, team_id, sandbox_id, version, status, ended_at, "
                    "  expires_at, retention_days, events, artifacts, artifact_bytes, events_sha256, artifacts_sha256, "
                    "  deleted_sha256, audit_message_id) "
                    "SELECT $1, x.tenant_id, x.team_id, x.sandbox_id, x.version, x.status, x.ended_at, x.expires_at, "
                    "  x.retention_days, ev.n, ar.n, ar.bytes, ev.h, ar.h, "
                    "  encode(sha256(convert_to(ev.h || ar.h, 'UTF8')), 'hex'), $3 FROM x, ev, ar",
                    3, pi, NULL, err);
        if (r < 0)
                goto fail;
        r = 1;
done:;
        int c = pg_commit(conn, err);
        return c < 0 ? c : r;
fail:
        pg_rollback(conn);
        return r;
}

/* Step 2: every stored object of the run (an absent one counts as deleted). */
static int delete_objects(PGconn *conn, const struct retention_config *cfg, const char *run, struct err_detail *err) {
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *p[] = {run};
        int r = pg_exec(conn,
                        "SELECT s3_key, s3_version_id, s3_legal_hold FROM evidence.artifacts WHERE run_id = $1 "
                        "ORDER BY name",
                        1, p, &res, err);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(res); i++) {
                /* a locked version goes for good only with bypass-governance: the
                 * run expired and no hold covers it (step 1 checked both), so an
                 * S3 legal hold still ON (a lift not reconciled yet) goes first */
                const char *version = db_val_or_null(res, i, 1);
                r = 0;
                if (version && PQgetvalue(res, i, 2)[0] == 't')
                        r = s3_put_object_legal_hold(cfg->s3, PQgetvalue(res, i, 0), version, false, err);
                if (r >= 0)
                        r = version ? s3_delete_object_version(cfg->s3, PQgetvalue(res, i, 0), version, true, err)
                                    : s3_delete_object(cfg->s3, PQgetvalue(res, i, 0), err);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r >= 0)
                        metric_add(&m_objects, 1);
        }
        return 0;
}

/* Step 3: the rows, in one transaction. */
static int delete_rows(PGconn *conn, const char *run, struct err_detail *err) {
        int r = pg_begin(conn, err);
        if (r < 0)
                return r;
        const char *p[] = {run};
        static const char *const stmts[] = {
                "DELETE FROM evidence.artifact_chunks WHERE run_id = $1",
                "DELETE FROM evidence.artifacts WHERE run_id = $1",
                "DELETE FROM evidence.run_events WHERE run_id = $1",
                "DELETE FROM evidence.signed_records WHERE run_id = $1",
        };
        for (size_t i = 0; i < ELEMENTSOF(stmts); i++)
                if ((r = pg_exec(conn, stmts[i], 1, p, NULL, err)) < 0) {
                        pg_rollback(conn);
                        return r;
                }
        return pg_commit(conn, err);
}

/* Step 4: the audit record (appended once per message id, then its SIEM record). */
static int audit_deletion(PGconn *conn, const struct retention_config *cfg, const char *tenant, const char *run,
                          struct err_detail *err) {
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *p[] = {run};
        int r = pg_exec(conn,
                        "SELECT json_build_object('reason', reason, 'team', team_id, 'sandbox', sandbox_id, 'version', "
                        "version, 'status', status, 'ended_at', ended_at, 'expires_at', expires_at, 'retention_days', "
                        "retention_days, 'events', events, 'artifacts', artifacts, 'artifact_bytes', artifact_bytes, "
                        "'events_sha256', events_sha256, 'artifacts_sha256', artifacts_sha256, 'deleted_sha256', "
                        "deleted_sha256)::text, audit_message_id FROM evidence.run_tombstones WHERE run_id = $1",
                        1, p, &res, err);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return err_set(err, -EIO, "tombstone", "tombstone of run %s vanished", run);
        json_error_t je;
        _cleanup_(json_decrefp) json_t *detail = json_loads(PQgetvalue(res, 0, 0), 0, &je);
        if (!detail)
                return err_set(err, -EIO, "tombstone", "could not read tombstone of run %s", run);
        char producer[80];
        snprintf(producer, sizeof producer, "evidence/%s", cfg->instance);
        struct audit_entry e = {.tenant_id = tenant,
                                .actor = "service:evidence",
                                .action = "run.delete",
                                .object_type = "run",
                                .object_id = run,
                                .outcome = AUDIT_SUCCESS,
                                .change = detail,
                                .detail = detail,
                                .producer = producer,
                                .message_id = PQgetvalue(res, 0, 1)};
        _cleanup_free_ void *buf = NULL;
        size_t len = 0;
        if ((r = audit_record_encode(&e, &buf, &len, NULL, err)) < 0)
                return r;
        r = audit_store(conn, cfg->audit, buf, len, err);
        return r < 0 ? r : 0;
}

static int sweep_run(PGconn *conn, const struct retention_config *cfg, const char *tenant, const char *run,
                     struct err_detail *err) {
        char now_us[24];
        snprintf(now_us, sizeof now_us, "%" PRId64, business_clock_now_us());
        int r = pg_set_tenant(conn, tenant, err);
        if (r < 0)
                return r;
        if ((r = tombstone_begin(conn, tenant, run, now_us, err)) <= 0)
                return r;
        if ((r = delete_objects(conn, cfg, run, err)) < 0 || (r = delete_rows(conn, run, err)) < 0 ||
            (r = audit_deletion(conn, cfg, tenant, run, err)) < 0)
                return r;
        /* the audit append ran as the record's tenant; set it again for the tombstone */
        const char *p[] = {run, now_us};
        if ((r = pg_set_tenant(conn, tenant, err)) < 0 ||
            (r = pg_exec(conn,
                         "UPDATE evidence.run_tombstones SET deleted_at = to_timestamp($2::double precision / 1e6) "
                         "WHERE run_id = $1 AND deleted_at IS NULL",
                         2, p, NULL, err)) < 0)
                return r;
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant, "run", run), "deleted the evidence of run after its retention");
        metric_add(&m_deleted, 1);
        return 1;
}

/* S3 legal hold = the holds (evidence migration 0011): every stored version
 * whose applied legal hold differs from what the holds want gets it set, then
 * the applied state is recorded, as the artifact's tenant. Idempotent: a
 * version set twice is still ON (or OFF); a hold set or lifted meanwhile is
 * found different again next round. Returns the versions set. */
static int legal_holds_reconcile(PGconn *conn, const struct retention_config *cfg, struct err_detail *err) {
        char lim[16];
        snprintf(lim, sizeof lim, "%d", cfg->batch);
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *p[] = {lim};
        int r = pg_exec(conn,
                        "SELECT tenant_id, run_id, name, s3_key, s3_version_id, held FROM evidence.legal_hold_due($1::integer)",
                        1, p, &res, err);
        if (r < 0)
                return r;
        int set = 0;
        for (int i = 0; i < PQntuples(res) && !shutdown_requested(); i++) {
                struct err_detail e = {0};
                const char *tenant = PQgetvalue(res, i, 0), *run = PQgetvalue(res, i, 1), *name = PQgetvalue(res, i, 2);
                bool on = PQgetvalue(res, i, 5)[0] == 't';
                const char *pu[] = {run, name, on ? "true" : "false"};
                int k = s3_put_object_legal_hold(cfg->s3, PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), on, &e);
                if (k >= 0 && (k = pg_set_tenant(conn, tenant, &e)) >= 0)
                        k = pg_exec(conn, "UPDATE evidence.artifacts SET s3_legal_hold = $3::boolean "
                                          "WHERE run_id = $1 AND name = $2", 3, pu, NULL, &e);
                if (k < 0) {
                        metric_add(&m_failures, 1);
                        log_ctx(LOG_WARN, LOG_KV("tenant", tenant, "run", run, "artifact", name),
                                "could not set the S3 legal hold %s: %s", on ? "ON" : "OFF",
                                e.message[0] ? e.message : strerror(-k));
                        if (PQstatus(conn) != CONNECTION_OK)
                                return k;
                        continue;
                }
                log_ctx(LOG_INFO, LOG_KV("tenant", tenant, "run", run, "artifact", name), "S3 legal hold %s",
                        on ? "ON" : "OFF");
                metric_add(&m_legal_holds, 1);
                set++;
        }
        return set;
}

int retention_sweep_once(const struct retention_config *cfg, struct err_detail *err) {
        PGconn *conn = pg_pool_acquire(cfg->pg, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        /* holds first: a lifted hold's S3 legal hold is OFF before its run can be swept */
        struct err_detail he = {0};
        int h = legal_holds_reconcile(conn, cfg, &he);
        if (h < 0)
                log_warn("legal hold reconcile failed: %s", he.message[0] ? he.message : strerror(-h));
        if (PQstatus(conn) != CONNECTION_OK) {
                pg_pool_release(cfg->pg, conn);
                return h < 0 ? err_set(err, h, he.code, "%s", he.message) : -ECONNRESET;
        }
        char now_us[24], lim[16];
        snprintf(now_us, sizeof now_us, "%" PRId64, business_clock_now_us());
        snprintf(lim, sizeof lim, "%d", cfg->batch);
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *p[] = {now_us, lim};
        int r = pg_exec(conn,
                        "SELECT DISTINCT tenant_id, run_id FROM evidence.retention_due("
                        "to_timestamp($1::double precision / 1e6), $2::integer)",
                        2, p, &res, err);
        int deleted = 0;
        for (int i = 0; r >= 0 && i < PQntuples(res) && !shutdown_requested(); i++) {
                struct err_detail e = {0};
                const char *tenant = PQgetvalue(res, i, 0), *run = PQgetvalue(res, i, 1);
                int k = sweep_run(conn, cfg, tenant, run, &e);
                if (k < 0) {
                        /* left for the next round: every step is idempotent */
                        metric_add(&m_failures, 1);
                        log_ctx(LOG_WARN, LOG_KV("tenant", tenant, "run", run),
                                "could not delete the evidence of run after its retention: %s",
                                e.message[0] ? e.message : strerror(-k));
                        if (PQstatus(conn) != CONNECTION_OK)
                                break;
                } else
                        deleted += k;
        }
        pg_pool_release(cfg->pg, conn);
        return r < 0 ? r : deleted;
}

int legal_holds_sync_once(const struct retention_config *cfg, struct err_detail *err) {
        PGconn *conn = pg_pool_acquire(cfg->pg, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int h = legal_holds_reconcile(conn, cfg, err);
        pg_pool_release(cfg->pg, conn);
        return h;
}

struct retention_sweeper {
        struct retention_config cfg;
        pthread_t thread;
};

/* A sweep every interval_ms; between sweeps, the legal hold reconcile every
 * hold_interval_ms, so a hold set in the api reaches S3 long before the
 * next (by default hourly) sweep. */
static void *sweeper_main(void *userdata) {
        struct retention_sweeper *s = userdata;
        int64_t next_sweep_us = 0;
        while (!shutdown_requested()) {
                struct err_detail e = {0};
                int64_t now_us = time_mono_us();
                if (now_us >= next_sweep_us) {
                        int r = retention_sweep_once(&s->cfg, &e);
                        if (r < 0)
                                log_warn("retention sweep failed: %s", e.message[0] ? e.message : strerror(-r));
                        next_sweep_us = now_us + (int64_t)s->cfg.interval_ms * 1000;
                } else {
                        int r = legal_holds_sync_once(&s->cfg, &e);
                        if (r < 0)
                                log_warn("legal hold reconcile failed: %s", e.message[0] ? e.message : strerror(-r));
                }
                int64_t wait_ms = (next_sweep_us - time_mono_us()) / 1000;
                if (s->cfg.hold_interval_ms > 0 && wait_ms > s->cfg.hold_interval_ms)
                        wait_ms = s->cfg.hold_interval_ms;
                if (shutdown_sleep_ms(wait_ms > 0 ? (int)wait_ms : 0))
                        break;
        }
        return NULL;
}

struct retention_sweeper *retention_sweeper_start(const struct retention_config *cfg) {
        struct retention_sweeper *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->cfg = *cfg;
        if (pthread_create(&s->thread, NULL, sweeper_main, s) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

struct retention_sweeper *retention_sweeper_stop(struct retention_sweeper *s) {
        if (!s)
                return NULL;
        shutdown_request();
        pthread_join(s->thread, NULL);
        free(s);
        return NULL;
}
