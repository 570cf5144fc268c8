/* Artifacts arrive as chunks (any order, possibly repeated). Chunks wait in
 * evidence.artifact_chunks; the chunk that completes the set triggers
 * assembly, verification (size and SHA-256), the S3 PUT, and one transaction
 * that records the artifact and drops its chunks. Every step is idempotent:
 * a redelivered chunk of a recorded artifact is ignored, and a crash between
 * the PUT and the transaction repeats the PUT of the same bytes. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/metrics.h"
#include "evidence.h"
#include "paddock/v1/artifacts.pb-c.h"
#include "pg/pg.h"
#include "service/run_node.h"

#define NAME_MAX_LEN 128
#define CHUNK_MAX_BYTES (256 * 1024) /* docs/CONTRACTS.md: chunks of at most 256 KiB */
#define KIND_MAX_LEN 32
#define CONTENT_TYPE_MAX_LEN 255

static struct metric m_chunks = {.name = "paddock_evidence_artifact_chunks_total",
                                 .help = "Artifact chunks stored", .type = METRIC_COUNTER};
static struct metric m_stored = {.name = "paddock_evidence_artifacts_stored_total",
                                 .help = "Artifacts verified, uploaded to S3 and recorded", .type = METRIC_COUNTER};
static struct metric m_rejected = {.name = "paddock_evidence_artifacts_rejected_total",
                                   .help = "Artifacts or chunks refused (invalid, size or SHA-256 mismatch)",
                                   .type = METRIC_COUNTER};
static struct metric m_duplicates = {.name = "paddock_evidence_artifact_chunks_duplicate_total",
                                     .help = "Chunks of already recorded artifacts, ignored", .type = METRIC_COUNTER};

void artifacts_store_register_metrics(void) {
        metrics_register(&m_chunks);
        metrics_register(&m_stored);
        metrics_register(&m_rejected);
        metrics_register(&m_duplicates);
}

static void chunk_freep(Paddock__V1__ArtifactChunk **p) {
        if (*p)
                paddock__v1__artifact_chunk__free_unpacked(*p, NULL);
}

static void pq_freememp(unsigned char **p) {
        if (*p)
                PQfreemem(*p);
}

/* The name becomes the last S3 key segment: no slash, no "." or "..", no
 * hidden files. */
static bool artifact_name_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > NAME_MAX_LEN || s[0] == '.')
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      *c == '.' || *c == '_' || *c == '-'))
                        return false;
        return true;
}

static bool sha256_hex_valid(const char *s) {
        if (strlen(s) != 64)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                        return false;
        return true;
}

static bool printable_ascii(const char *s, size_t max) {
        size_t n = 0;
        for (; s[n]; n++)
                if (n >= max || s[n] < 0x20 || s[n] > 0x7e)
                        return false;
        return true;
}

static int chunk_validate(const Paddock__V1__ArtifactChunk *c, uint64_t max_bytes, struct err_detail *reterr) {
        if (!c->env || !id_is_uuid(c->env->run_id))
                return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
        if (!id_is_uuid(c->env->tenant_id))
                return err_set(reterr, -EINVAL, "env.tenant_id", "env.tenant_id is not a UUID");
        if (!artifact_name_valid(c->name))
                return err_set(reterr, -EINVAL, "name",
                               "name must be 1-%d characters of [A-Za-z0-9._-] not starting with a dot", NAME_MAX_LEN);
        if (!printable_ascii(c->kind, KIND_MAX_LEN) || !*c->kind)
                return err_set(reterr, -EINVAL, "kind", "kind must be 1-%d printable characters", KIND_MAX_LEN);
        if (!printable_ascii(c->content_type, CONTENT_TYPE_MAX_LEN))
                return err_set(reterr, -EINVAL, "content_type", "content_type must be at most %d printable characters",
                               CONTENT_TYPE_MAX_LEN);
        if (!sha256_hex_valid(c->sha256))
                return err_set(reterr, -EINVAL, "sha256", "sha256 must be 64 lower-case hex digits");
        if (c->total_size > max_bytes)
                return err_set(reterr, -EINVAL, "total_size", "total_size %llu exceeds the limit of %llu bytes",
                               (unsigned long long)c->total_size, (unsigned long long)max_bytes);
        if (c->total_chunks < 1 || c->total_chunks > c->total_size + 1 || c->total_chunks > 1000000)
                return err_set(reterr, -EINVAL, "total_chunks", "total_chunks %u is out of range", c->total_chunks);
        if (c->index >= c->total_chunks)
                return err_set(reterr, -EINVAL, "index", "index %u is not below total_chunks %u", c->index, c->total_chunks);
        if (c->data.len > CHUNK_MAX_BYTES || c->data.len > c->total_size)
                return err_set(reterr, -EINVAL, "data", "chunk of %zu bytes is larger than allowed", c->data.len);
        return 0;
}

static int artifact_exists(PGconn *conn, const char *run_id, const char *name, struct err_detail *reterr) {
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = {run_id, name};
        int r = pg_exec(conn, "SELECT 1 FROM evidence.artifacts WHERE run_id = $1 AND name = $2",
                        2, params, &res, reterr);
        return r < 0 ? r : PQntuples(res) > 0;
}

static int chunks_drop(PGconn *conn, const char *run_id, const char *name, struct err_detail *reterr) {
        const char *params[] = {run_id, name};
        return pg_exec(conn, "DELETE FROM evidence.artifact_chunks WHERE run_id = $1 AND name = $2",
                       2, params, NULL, reterr);
}

/* Concatenates chunks 0..total-1 into a malloc'd buffer, one query per chunk
 * so the result sets stay small. -EBADMSG if they do not add up to size. */
static int chunks_assemble(PGconn *conn, const Paddock__V1__ArtifactChunk *c, unsigned char **ret,
                           struct err_detail *reterr) {
        _cleanup_free_ unsigned char *buf = malloc(c->total_size ? c->total_size : 1);
        if (!buf)
                return -ENOMEM;
        uint64_t off = 0;
        for (uint32_t i = 0; i < c->total_chunks; i++) {
                char idx[16];
                snprintf(idx, sizeof idx, "%u", i);
                const char *params[] = {c->env->run_id, c->name, idx};
                _cleanup_(PQclearp) PGresult *res = NULL;
                int r = pg_exec(conn, "SELECT data FROM evidence.artifact_chunks"
                                      " WHERE run_id = $1 AND name = $2 AND idx = $3",
                                3, params, &res, reterr);
                if (r < 0)
                        return r;
                if (PQntuples(res) != 1)
                        return err_set(reterr, -EAGAIN, "chunk", "chunk %u vanished during assembly", i);
                size_t n = 0;
                _cleanup_(pq_freememp) unsigned char *part = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 0), &n);
                if (!part)
                        return -ENOMEM;
                if (n > c->total_size - off)
                        return err_set(reterr, -EBADMSG, "size", "chunks exceed total_size %llu",
                                       (unsigned long long)c->total_size);
                memcpy(buf + off, part, n);
                off += n;
        }
        if (off != c->total_size)
                return err_set(reterr, -EBADMSG, "size", "chunks add up to %llu bytes, total_size says %llu",
                               (unsigned long long)off, (unsigned long long)c->total_size);
        *ret = TAKE_PTR(buf);
        return 0;
}

static int sha256_hex(const unsigned char *data, size_t len, char out[65]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (!EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
                return -EIO;
        hex_encode(md, 32, out);
        return 0;
}

static int artifact_complete(PGconn *conn, const struct artifacts_store_config *cfg,
                             const Paddock__V1__ArtifactChunk *c, struct err_detail *reterr) {
        const char *run_id = c->env->run_id, *tenant = c->env->tenant_id;
        _cleanup_free_ unsigned char *buf = NULL;
        int r = chunks_assemble(conn, c, &buf, reterr);
        char sha[65];
        if (r >= 0) {
                r = sha256_hex(buf, c->total_size, sha);
                if (r < 0)
                        return err_set(reterr, r, "sha256", "could not compute sha256");
                if (strcmp(sha, c->sha256) != 0)
                        r = err_set(reterr, -EBADMSG, "sha256", "sha256 of the assembled artifact is %s, expected %s",
                                    sha, c->sha256);
        }
        if (r == -EBADMSG) {
                /* Refused, and its chunks dropped so a corrected resend can start afresh. */
                log_ctx(LOG_ERROR, LOG_KV("run", run_id, "tenant", tenant, "artifact", c->name),
                        "artifact failed verification, refusing it: %s", reterr->message);
                metric_add(&m_rejected, 1);
                struct err_detail derr = {0};
                int d = chunks_drop(conn, run_id, c->name, &derr);
                if (d < 0)
                        return err_set(reterr, d, derr.code, "%s", derr.message); /* retry, verify fails again */
                return -EBADMSG;
        }
        if (r < 0)
                return r;

        char key[512];
        snprintf(key, sizeof key, "tenants/%s/runs/%s/%s", tenant, run_id, c->name);
        const char *content_type = *c->content_type ? c->content_type : "application/octet-stream";
        char version[S3_VERSION_ID_MAX] = "";
        bool held = false;
        if (cfg->object_lock) {
                /* locked until the run's retention would expire counted from
                 * now (the run has ended or is ending), on the store's clock;
                 * the sweeper deletes it with bypass-governance (retention_sweep.c).
                 * A run a legal hold covers already gets the object's legal
                 * hold with it (a hold set later: the sweeper's reconcile) */
                _cleanup_(PQclearp) PGresult *days = NULL;
                const char *dp[] = {run_id};
                r = pg_exec(conn, "SELECT coalesce(evidence.retention_days_of($1), 365), evidence.run_held($1)", 1, dp,
                            &days, reterr);
                if (r < 0)
                        return r;
                int64_t until = (int64_t)time(NULL) + 86400LL * atoll(PQgetvalue(days, 0, 0));
                held = PQgetvalue(days, 0, 1)[0] == 't';
                r = s3_put_object_locked(cfg->s3, key, buf, c->total_size, content_type, until, held, version, reterr);
        } else
                r = s3_put_object(cfg->s3, key, buf, c->total_size, content_type, reterr);
        if (r < 0) {
                /* bucket missing, credentials refused, server down: all worth
                 * waiting for rather than losing the artifact */
                if (reterr)
                        reterr->errnum = -EAGAIN;
                return -EAGAIN;
        }

        char size[24];
        snprintf(size, sizeof size, "%llu", (unsigned long long)c->total_size);
        r = pg_begin(conn, reterr);
        if (r < 0)
                return r;
        const char *params[] = {run_id, c->name, tenant, c->kind, size, sha, key, content_type,
                                version[0] ? version : NULL, held && version[0] ? "true" : "false"};
        r = pg_exec(conn,
                    "INSERT INTO evidence.artifacts"
                    " (run_id, name, tenant_id, kind, size, sha256, s3_key, content_type, created_at, s3_version_id,"
                    "  s3_legal_hold)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9, $10)"
                    " ON CONFLICT (run_id, name) DO NOTHING",
                    (int)ELEMENTSOF(params), params, NULL, reterr);
        if (r >= 0)
                r = chunks_drop(conn, run_id, c->name, reterr);
        if (r >= 0)
                r = pg_commit(conn, reterr);
        if (r < 0) {
                pg_rollback(conn);
                return r;
        }
        log_ctx(LOG_INFO, LOG_KV("run", run_id, "tenant", tenant, "artifact", c->name, "size", size, "sha256", sha),
                "stored artifact");
        metric_add(&m_stored, 1);
        return 1;
}

int artifacts_store_chunk(PGconn *conn, const struct artifacts_store_config *cfg, const struct kafka_message *m,
                          struct err_detail *reterr) {
        _cleanup_(chunk_freep) Paddock__V1__ArtifactChunk *c = paddock__v1__artifact_chunk__unpack(NULL, m->len, m->value);
        if (!c)
                return err_set(reterr, -EBADMSG, "decode", "not an ArtifactChunk");
        int r = chunk_validate(c, cfg->max_bytes, reterr);
        if (r < 0) {
                metric_add(&m_rejected, 1);
                return r;
        }
        const char *run_id = c->env->run_id, *tenant = c->env->tenant_id;
        /* only the run's node sends its artifacts (docs/CONTRACTS.md) */
        r = run_node_check(conn, m, run_id, NULL, reterr);
        if (r != 0)
                return r < 0 ? r : 0;

        /* stored as the chunk's tenant: row-level security keys on it */
        if ((r = pg_set_tenant(conn, tenant, reterr)) < 0)
                return r;
        /* a run whose retention sweep began keeps nothing new (retention_sweep.c) */
        _cleanup_(PQclearp) PGresult *tomb = NULL;
        const char *tp[] = {run_id};
        if ((r = pg_exec(conn, "SELECT 1 FROM evidence.run_tombstones WHERE run_id = $1", 1, tp, &tomb, reterr)) < 0)
                return r;
        if (PQntuples(tomb) > 0) {
                log_ctx(LOG_WARN, LOG_KV("run", run_id, "tenant", tenant, "artifact", c->name),
                        "dropping an artifact of a run whose evidence was deleted after its retention");
                return 0;
        }
        r = artifact_exists(conn, run_id, c->name, reterr);
        if (r < 0)
                return r;
        if (r > 0) {
                metric_add(&m_duplicates, 1);
                return 0;
        }

        char idx[16], total[16];
        snprintf(idx, sizeof idx, "%u", c->index);
        snprintf(total, sizeof total, "%u", c->total_chunks);
        _cleanup_free_ char *hex = malloc(2 * c->data.len + 1);
        if (!hex)
                return -ENOMEM;
        hex_encode(c->data.data, c->data.len, hex);
        /* The set is complete when every index below total is present with
         * the same total and tenant; counting in the same statement as the
         * insert sees this chunk too. */
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = {run_id, c->name, idx, total, tenant, hex};
        r = pg_exec(conn,
                    "WITH ins AS (INSERT INTO evidence.artifact_chunks (run_id, name, idx, total, tenant_id, data)"
                    "  VALUES ($1, $2, $3, $4, $5, decode($6, 'hex'))"
                    "  ON CONFLICT (run_id, name, idx) DO NOTHING RETURNING idx)"
                    " SELECT (SELECT count(*) FROM evidence.artifact_chunks"
                    "   WHERE run_id = $1 AND name = $2 AND total = $4 AND tenant_id = $5 AND idx < $4)"
                    "  + (SELECT count(*) FROM ins)",
                    (int)ELEMENTSOF(params), params, &res, reterr);
        if (r < 0)
                return r;
        metric_add(&m_chunks, 1);
        long long present = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (present < (long long)c->total_chunks)
                return 0;
        return artifact_complete(conn, cfg, c, reterr);
}
