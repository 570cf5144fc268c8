/* Artifact manifest (evidence.artifacts) and presigned downloads from S3;
 * with ?inline=true an artifact's bytes through the api itself, for the
 * dashboard, whose CSP lets it fetch only its own origin (docs/CONTRACTS.md
 * "Artifact bytes through the api"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "pg/pg.h"
#include "s3/s3.h"

#define PRESIGN_TTL_S 300
/* ?inline=true reads the object into memory: bounded, default 4 MiB, at
 * most 16 MiB (the evidence bundle's per-artifact bound) */
#define INLINE_DEFAULT_BYTES (4LL * 1024 * 1024)
#define INLINE_MAX_BYTES (16LL * 1024 * 1024)

static int load_run(struct api_req *r) {
        struct err_detail e = {0};
        char team[UUID_STR_LEN], status[32];
        int k = runs_load_visible(r->api, &r->caller, r->params[0], r->perm, team, status, sizeof status, &e);
        if (k == -ENOENT)
                return api_fail(r, -ENOENT, "not_found", "run not found");
        if (k < 0)
                return db_fail(r, k, &e, "load run");
        /* deleted after its retention: 410 (retention.c) */
        return retention_run_gone(r, r->params[0]);
}

static bool missing_relation(const struct err_detail *e) {
        return !strcmp(e->code, "42P01") || !strcmp(e->code, "3F000");
}

int artifacts_list(struct api_req *r) {
        int k = load_run(r);
        if (k < 0)
                return k;
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id};
        k = pg_exec(d.conn,
                    "SELECT name, kind, size, sha256, content_type FROM evidence.artifacts "
                    "WHERE run_id = $1 AND tenant_id = $2 ORDER BY name",
                    2, params, &res, &e);
        if (k < 0 && missing_relation(&e))
                return api_fail(r, -EAGAIN, "unavailable", "artifacts are not available yet");
        if (k < 0)
                return db_fail(r, k, &e, "list artifacts");
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(items, json_pack("{s:s, s:o, s:I, s:o, s:o}", "name", PQgetvalue(res, i, 0),
                                                       "kind", db_json_str(res, i, 1), "size",
                                                       (json_int_t)atoll(PQgetvalue(res, i, 2)), "sha256",
                                                       db_json_str(res, i, 3), "content_type",
                                                       db_json_str(res, i, 4)));
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

/* Parses ?inline= and ?max_bytes= (only with inline): 400 naming the field
 * for anything else than the documented values, before anything is read. */
static int inline_args(struct api_req *r, bool *ret_inline, long long *ret_max) {
        char ib[16], mb[32];
        const char *iv = NULL, *mv = NULL;
        int k;
        if ((k = api_query_single(r, "inline", ib, sizeof ib, &iv)) < 0 ||
            (k = api_query_single(r, "max_bytes", mb, sizeof mb, &mv)) < 0)
                return k;
        *ret_inline = false;
        *ret_max = INLINE_DEFAULT_BYTES;
        if (iv && !strcmp(iv, "true"))
                *ret_inline = true;
        else if (iv && strcmp(iv, "false"))
                return api_fail(r, -EINVAL, "invalid_field", "inline must be true or false");
        if (mv) {
                if (!*ret_inline)
                        return api_fail(r, -EINVAL, "invalid_field", "max_bytes is only valid with inline=true");
                char *end;
                errno = 0;
                long long v = strtoll(mv, &end, 10);
                if (errno || end == mv || *end || v < 1 || v > INLINE_MAX_BYTES)
                        return api_fail(r, -EINVAL, "invalid_field", "max_bytes must be an integer from 1 to %lld",
                                        INLINE_MAX_BYTES);
                *ret_max = v;
        }
        return 0;
}

/* Text the page may show: served as text/plain whatever the agent claimed
 * (never text/html: with nosniff and the CSP, bytes an agent wrote cannot
 * become a page of our origin); anything else as an opaque download. */
static bool inline_is_text(const char *content_type) {
        return !strncmp(content_type, "text/", 5) || !strcmp(content_type, "application/json");
}

int artifacts_get(struct api_req *r) {
        bool inl;
        long long max_bytes;
        int k = inline_args(r, &inl, &max_bytes);
        if (k < 0)
                return k;
        if ((k = load_run(r)) < 0)
                return k;
        const char *name = r->params[1];
        /* artifact names are [A-Za-z0-9._-] (artifacts.proto); anything else cannot exist */
        size_t nl = strlen(name);
        if (nl == 0 || nl > 255 || !strcmp(name, ".") || !strcmp(name, "..") ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != nl)
                return api_fail(r, -ENOENT, "not_found", "artifact not found");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id, name};
        k = pg_exec(d.conn,
                    "SELECT size, coalesce(content_type, '') FROM evidence.artifacts "
                    "WHERE run_id = $1 AND tenant_id = $2 AND name = $3",
                    3, params, &res, &e);
        if (k < 0 && missing_relation(&e))
                return api_fail(r, -EAGAIN, "unavailable", "artifacts are not available yet");
        if (k < 0)
                return db_fail(r, k, &e, "load artifact");
        if (PQntuples(res) != 1)
                return api_fail(r, -ENOENT, "not_found", "artifact not found");
        /* the key is derived from ids we checked, never from stored text */
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "tenants/%s/runs/%s/%s", r->caller.tenant_id, r->params[0], name) < 0)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        struct err_detail se = {0};
        if (inl) {
                /* the manifest's size decides before a byte is fetched */
                long long size = atoll(PQgetvalue(res, 0, 0));
                if (size > max_bytes)
                        return api_fail(r, -E2BIG, "too_large",
                                        "artifact is %lld bytes, over max_bytes %lld: download it instead", size,
                                        max_bytes);
                char *data = NULL;
                size_t len = 0;
                k = s3_get_object(r->api->s3, key, (size_t)max_bytes, &data, &len, &se);
                if (k == -E2BIG)
                        return api_fail(r, -E2BIG, "too_large", "artifact is over max_bytes %lld: download it instead",
                                        max_bytes);
                if (k < 0) {
                        log_ctx(LOG_ERROR, LOG_KV("run", r->params[0]), "could not read artifact: %s", se.message);
                        return api_fail(r, -EIO, "internal", "could not read the artifact");
                }
                if (len == 0) {
                        /* an empty artifact: text_len 0 means "strlen" to the HTTP layer */
                        free(data);
                        data = strdup("");
                        if (!data)
                                return api_fail(r, -ENOMEM, "internal", "out of memory");
                }
                r->text = data;
                r->text_len = len;
                r->content_type = inline_is_text(PQgetvalue(res, 0, 1)) ? "text/plain; charset=utf-8"
                                                                         : "application/octet-stream";
                r->status = 200;
                return 0;
        }
        char *url = NULL;
        k = s3_presign_get(r->api->s3, key, PRESIGN_TTL_S, &url, &se);
        if (k < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", r->params[0]), "could not presign artifact url: %s", se.message);
                return api_fail(r, -EIO, "internal", "could not sign a download url");
        }
        r->location = url;
        r->status = 302;
        return 0;
}
