/* Artifact manifest (evidence.artifacts) and presigned downloads from S3. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "pg/pg.h"
#include "s3/s3.h"

#define PRESIGN_TTL_S 300

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

int artifacts_get(struct api_req *r) {
        int k = load_run(r);
        if (k < 0)
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
        k = pg_exec(d.conn, "SELECT 1 FROM evidence.artifacts WHERE run_id = $1 AND tenant_id = $2 AND name = $3",
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
