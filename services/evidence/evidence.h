/* The evidence service's features, called from main.c's consumer thread.
 * Handlers take a borrowed connection and one message value (borrowed) and
 * return >= 0 once the effect is committed (or was already there),
 * -EBADMSG/-EINVAL for a message that can never be processed, and another
 * negative errno (-ECONNRESET, -EAGAIN, ...) for a transient failure worth
 * retrying with the same message. */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/macro.h"
#include "kafka/kafka.h"
#include "s3/s3.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear);

struct kafka_producer;

struct events_store_config {
        long long round_max_events;      /* events per transaction (whole records; a larger record alone) */
        struct kafka_producer *producer; /* borrowed; the SIEM feed's run events (NULL: none) */
        int siem_timeout_ms;             /* broker acknowledgement wait for a round's SIEM records */
};

/* events_store.c: stores msgs[0..n) (records of paddock.runs.events, each a
 * RunEventBatch of one run) in transactions of at most cfg->round_max_events
 * events, in order: every event once per (run_id, seq); each signed record
 * once in evidence.signed_records (signer, signature, value as signed: the
 * history verifies offline against the node keys) with its events pointing
 * at it; a platform verdict (env.seq 0) at the run's highest stored seq + 1;
 * a terminal status after the run's first one stored with data.superseded;
 * evidence.run_history kept (docs/CONTRACTS.md). Records from another signer
 * than the run's node (or the scheduler) are refused
 * (lib/service/run_node.h), undecodable or invalid ones get verdicts[i] =
 * KAFKA_SKIP. Then the OCSF records of their lifecycle, policy and
 * approval events go on paddock.siem.ocsf (lib/audit/audit_ocsf.h), also for
 * records found already stored. Returns >= 0 once all of them are durable
 * and the SIEM records acknowledged (-EAGAIN when not: retry the round). A
 * kafka_handle_batch_fn on a borrowed connection; cfg is borrowed. */
int events_store_batch(PGconn *conn, const struct events_store_config *cfg, const struct kafka_message *msgs,
                       size_t n, int *verdicts, struct err_detail *reterr);
void events_store_register_metrics(void);

struct artifacts_store_config {
        struct s3_client *s3;  /* borrowed */
        uint64_t max_bytes;    /* largest artifact assembled (in memory) */
        bool object_lock;      /* the bucket has S3 object lock: GOVERNANCE retention per artifact */
};

/* artifacts_store.c: stores an ArtifactChunk; when every chunk is present,
 * verifies size and SHA-256, PUTs the object to
 * tenants/<tenant>/runs/<run>/<name>, then records it in evidence.artifacts
 * and drops the chunks in one transaction. Returns 1 if the artifact was
 * completed by this chunk, 0 otherwise (stored, or already complete).
 * S3 failures are returned as -EAGAIN (retry), a failed verification as
 * -EBADMSG (the chunks are dropped). */
int artifacts_store_chunk(PGconn *conn, const struct artifacts_store_config *cfg, const struct kafka_message *m,
                          struct err_detail *reterr);
void artifacts_store_register_metrics(void);

struct audit_store_config {
        struct kafka_producer *producer; /* borrowed; publishes the SIEM feed */
        int siem_timeout_ms;             /* broker acknowledgement wait per SIEM record */
};

/* audit_store.c: appends an AuditRecord to its tenant's hash chain
 * (lib/audit/audit_chain.h) once per message id, then publishes its OCSF
 * record on paddock.siem.ocsf and waits for the acknowledgement, so the SIEM
 * feed is at-least-once: a redelivered record that is already in the chain is
 * published again (the SIEM dedups on metadata.uid). Returns 1 if appended, 0
 * if it was already there, -EAGAIN if the SIEM publish failed (retry). */
int audit_store(PGconn *conn, const struct audit_store_config *cfg, const void *data, size_t len,
                struct err_detail *reterr);
void audit_store_register_metrics(void);

struct pg_pool;

struct retention_config {
        struct pg_pool *pg;                    /* borrowed */
        struct s3_client *s3;                  /* borrowed */
        const struct audit_store_config *audit; /* borrowed; appends the deletion's audit record */
        const char *instance;                  /* borrowed; the audit record's producer */
        int interval_ms;                       /* between sweeps */
        int hold_interval_ms;                  /* between S3 legal hold reconciles (0: at sweeps only) */
        int batch;                             /* runs per sweep */
};

/* retention_sweep.c: one sweep (docs/CONTRACTS.md "Retention and legal
 * hold"): deletes the evidence of at most cfg->batch runs whose retention
 * expired on the business clock and that no hold covers, and finishes
 * deletions an earlier sweep left half-done. Returns the number of runs
 * deleted, or a negative errno when the due runs could not be listed (a run
 * that fails is logged and left for the next sweep). Thread-safe. */
int retention_sweep_once(const struct retention_config *cfg, struct err_detail *reterr);
struct retention_sweeper;
/* Reconciles S3 object legal holds with api.legal_holds (at most a batch of
 * objects): what a sweep does first, also run alone between sweeps so a
 * new hold reaches S3 within cfg->hold_interval_ms. Objects set, or a
 * negative errno. */
int legal_holds_sync_once(const struct retention_config *cfg, struct err_detail *reterr);
/* Sweeps every cfg->interval_ms on a thread of its own until shutdown
 * (core/shutdown.h). cfg is copied (its pointers stay borrowed). NULL on
 * out-of-memory or when the thread cannot start. */
struct retention_sweeper *retention_sweeper_start(const struct retention_config *cfg);
/* Requests shutdown, joins the thread, frees s; accepts NULL, returns NULL. */
struct retention_sweeper *retention_sweeper_stop(struct retention_sweeper *s);
void retention_register_metrics(void);
