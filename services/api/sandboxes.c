/* Sandbox definitions: a mutable draft and immutable published versions. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/json_dump.h"
#include "core/log.h"
#include "pg/pg.h"

#define NAME_MAX_LEN 128

static bool name_ok(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= NAME_MAX_LEN &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

int sandboxes_resolve(struct api_req *r, struct db *d, const char *ref, char out[UUID_STR_LEN]) {
        size_t n = strlen(ref);
        if (n == 0 || n > NAME_MAX_LEN)
                return -ENOENT;
        /* names that look like ids are refused since, but may exist */
        return db_resolve_ref(r, d, "api.sandboxes", "name", "sandbox", ref, out);
}

/* Loads the sandbox ref (id or name) visible to the caller as the public
 * JSON shape; its id into id_out when not NULL. */
static int sandbox_load(struct api_req *r, struct db *d, const char *ref, json_t **ret, char *id_out) {
        char id[UUID_STR_LEN];
        int k = sandboxes_resolve(r, d, ref, id);
        if (k == -ENOENT)
                return api_errno(r, -ENOENT, "sandbox not found");
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, d, "sandbox",
                                  "SELECT s.id, s.name, s.team_id, s.draft_spec::text, " DB_TS("s.created_at") ", "
                                  "coalesce((SELECT json_agg(v.version ORDER BY v.version) FROM api.sandbox_versions v "
                                  "          WHERE v.sandbox_id = s.id AND v.tenant_id = s.tenant_id), '[]'::json), "
                                  "s.created_by "
                                  "FROM api.sandboxes s WHERE s.id = $1 AND s.tenant_id = $2",
                                  2, params, 2, &res)) < 0)
                return k;
        json_t *spec = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
        json_t *versions = json_loads(PQgetvalue(res, 0, 5), 0, NULL);
        *ret = json_pack("{s:s, s:s, s:s, s:{s:o}, s:o, s:s, s:s}", "id", PQgetvalue(res, 0, 0), "name",
                         PQgetvalue(res, 0, 1), "team", PQgetvalue(res, 0, 2), "draft", "spec",
                         spec ? spec : json_object(), "versions", versions ? versions : json_array(),
                         "created_at", PQgetvalue(res, 0, 4), "created_by", PQgetvalue(res, 0, 6));
        if (id_out)
                snprintf(id_out, UUID_STR_LEN, "%s", id);
        return *ret ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int sandboxes_create(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"name", "team", "spec", NULL})) < 0)
                return k;
        json_t *name = json_object_get(body, "name"), *team = json_object_get(body, "team");
        if (!name)
                return api_fail(r, -EINVAL, "missing_field", "name is required");
        /* not a UUID: wherever a sandbox id is taken, its name is too */
        if (!json_is_string(name) || !name_ok(json_string_value(name)) || id_is_uuid(json_string_value(name)))
                return api_errno(r, -EINVAL, "name must be 1 to %d characters of A-Z a-z 0-9 . _ - (not a UUID)", NAME_MAX_LEN);
        if (!team)
                return api_fail(r, -EINVAL, "missing_field", "team is required");
        if (!json_is_string(team) || json_string_length(team) == 0 || json_string_length(team) > 256)
                return api_errno(r, -EINVAL, "team must be a team id");
        json_t *spec = json_object_get(body, "spec");
        if ((k = spec_validate(r, spec)) < 0)
                return k;

        _cleanup_tx_ struct api_tx tx = {0};
        k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        char team_id[UUID_STR_LEN], id[UUID_STR_LEN];
        if ((k = teams_resolve(r, &tx.d, json_string_value(team), team_id)) < 0)
                return k;
        if (id_new_uuid(id) < 0)
                return api_errno(r, -EIO, "could not generate an id");
        _cleanup_free_ char *spec_text = json_dumps(spec, JSON_COMPACT);
        if (!spec_text)
                return api_errno(r, -ENOMEM, "out of memory");
        const char *params[] = {id, r->caller.tenant_id, team_id, json_string_value(name), spec_text,
                                r->caller.user_id};
        /* one transaction so the write stands only if it was audited */
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.sandboxes (id, tenant_id, team_id, name, draft_spec, created_by) "
                    "VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
                    6, params, NULL, &tx.e);
        if (k == -EEXIST)
                return api_errno(r, -EEXIST, "a sandbox named \"%s\" already exists", json_string_value(name));
        if (k < 0)
                return db_fail(r, k, &tx.e, "create sandbox");
        _cleanup_json_ json_t *change = json_pack("{s:s, s:O, s:O}", "team", team_id, "name", name, "spec", spec);
        if ((k = api_tx_audit(&tx, "sandbox.create", "sandbox", id, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "sandbox")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "sandbox", id, "user", r->caller.user_id),
                "sandbox created");
        if ((k = sandbox_load(r, &tx.d, id, &r->out, NULL)) < 0)
                return k;
        r->status = 201;
        return 0;
}

int sandboxes_get(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        if ((k = sandbox_load(r, &d, r->params[0], &r->out, NULL)) < 0)
                return k;
        r->status = 200;
        return 0;
}

int sandboxes_put_draft(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"spec", NULL})) < 0)
                return k;
        json_t *spec = json_object_get(body, "spec");
        if ((k = spec_validate(r, spec)) < 0)
                return k;
        _cleanup_tx_ struct api_tx tx = {0};
        k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *current = NULL;
        char id[UUID_STR_LEN];
        if ((k = sandbox_load(r, &tx.d, r->params[0], &current, id)) < 0)
                return k;
        _cleanup_free_ char *spec_text = json_dumps(spec, JSON_COMPACT);
        if (!spec_text)
                return api_errno(r, -ENOMEM, "out of memory");
        const char *params[] = {id, r->caller.tenant_id, spec_text};
        k = pg_exec(tx.d.conn, "UPDATE api.sandboxes SET draft_spec = $3::jsonb WHERE id = $1 AND tenant_id = $2",
                    3, params, NULL, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "update draft");
        _cleanup_json_ json_t *change = json_pack("{s:O}", "spec", spec);
        if ((k = api_tx_audit(&tx, "sandbox.update", "sandbox", id, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "draft")) < 0)
                return k;
        if ((k = sandbox_load(r, &tx.d, id, &r->out, NULL)) < 0)
                return k;
        r->status = 200;
        return 0;
}

static int version_load(struct api_req *r, struct db *d, const char *sandbox_id, const char *version,
                        json_t **ret) {
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {sandbox_id, r->caller.tenant_id, version};
        int k = pg_exec(d->conn,
                        "SELECT sandbox_id, version, spec::text, spec_sha256, " DB_TS("published_at") ", published_by "
                        "FROM api.sandbox_versions WHERE sandbox_id = $1 AND tenant_id = $2 AND version = $3::integer",
                        3, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load version");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "version not found");
        json_t *spec = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
        *ret = json_pack("{s:s, s:I, s:o, s:s, s:s, s:s}", "sandbox", PQgetvalue(res, 0, 0), "version",
                         (json_int_t)atoll(PQgetvalue(res, 0, 1)), "spec", spec ? spec : json_object(),
                         "spec_sha256", PQgetvalue(res, 0, 3), "published_at", PQgetvalue(res, 0, 4),
                         "published_by", PQgetvalue(res, 0, 5));
        return *ret ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int sandboxes_publish(struct api_req *r) {
        _cleanup_tx_ struct api_tx tx = {0};
        int k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *current = NULL;
        char id[UUID_STR_LEN];
        if ((k = sandbox_load(r, &tx.d, r->params[0], &current, id)) < 0)
                return k;
        /* the row lock serializes concurrent publishes of one sandbox */
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        k = pg_exec(tx.d.conn,
                    "SELECT s.draft_spec::text, coalesce(l.version, 0) + 1, l.version, l.spec_sha256 "
                    "FROM api.sandboxes s LEFT JOIN LATERAL (SELECT v.version, v.spec_sha256 FROM api.sandbox_versions v "
                    "  WHERE v.sandbox_id = s.id ORDER BY v.version DESC LIMIT 1) l ON true "
                    "WHERE s.id = $1 AND s.tenant_id = $2 FOR UPDATE OF s",
                    2, params, &res, &tx.e);
        if (k < 0 || PQntuples(res) != 1)
                return k < 0 ? db_fail(r, k, &tx.e, "lock sandbox") : api_errno(r, -ENOENT, "sandbox not found");
        _cleanup_json_ json_t *spec = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        _cleanup_free_ char *canon = NULL;
        char sha[65];
        if (!spec || spec_canonical(spec, &canon, sha) < 0)
                return api_errno(r, -EIO, "could not canonicalize the draft");
        char version[16];
        /* the draft is what the latest version already is: publishing it again
         * would only make an identical version, so answer with that one
         * (nothing written, nothing to audit) */
        if (!PQgetisnull(res, 0, 2) && !strcmp(PQgetvalue(res, 0, 3), sha)) {
                snprintf(version, sizeof version, "%s", PQgetvalue(res, 0, 2));
                if ((k = version_load(r, &tx.d, id, version, &r->out)) < 0)
                        return k;
                json_object_set_new(r->out, "unchanged", json_true());
                r->status = 200;
                return 0;
        }
        snprintf(version, sizeof version, "%s", PQgetvalue(res, 0, 1));
        const char *ip[] = {id, r->caller.tenant_id, version, canon, sha, r->caller.user_id};
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.sandbox_versions (sandbox_id, tenant_id, version, spec, spec_sha256, published_by) "
                    "VALUES ($1, $2, $3::integer, $4::jsonb, $5, $6)",
                    6, ip, NULL, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "publish version");
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s}", "sandbox", id, "version", version,
                                                  "spec_sha256", sha);
        if ((k = api_tx_audit(&tx, "sandbox.publish", "sandbox", id, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "version")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "sandbox", id, "version", version,
                                 "user", r->caller.user_id),
                "sandbox version published");
        if ((k = version_load(r, &tx.d, id, version, &r->out)) < 0)
                return k;
        json_object_set_new(r->out, "unchanged", json_false());
        r->status = 201;
        return 0;
}

int sandboxes_get_version(struct api_req *r) {
        const char *v = r->params[1];
        if (strlen(v) > 9 || strspn(v, "0123456789") != strlen(v) || atoi(v) < 1)
                return api_errno(r, -ENOENT, "version not found");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_json_ json_t *current = NULL;
        char id[UUID_STR_LEN];
        if ((k = sandbox_load(r, &d, r->params[0], &current, id)) < 0)
                return k;
        if ((k = version_load(r, &d, id, v, &r->out)) < 0)
                return k;
        r->status = 200;
        return 0;
}

/* ---- GET /v1/sandboxes */

static const struct db_member sandbox_members[] = {
        DB_MEMBER("{\"id\":", 0, DB_M_STRING),
        DB_MEMBER(",\"name\":", 1, DB_M_STRING),
        DB_MEMBER(",\"team\":", 2, DB_M_STRING),
        DB_MEMBER(",\"team_name\":", 3, DB_M_STRING),
        DB_MEMBER(",\"latest_version\":", 4, DB_M_INTEGER_OR_NULL),
        DB_MEMBER(",\"created_at\":", 5, DB_M_STRING),
        DB_MEMBER(",\"created_by\":", 6, DB_M_STRING),
};

static void sandbox_row_write(struct json_writer *w, const PGresult *res, int i) {
        db_put_members(w, sandbox_members, ELEMENTSOF(sandbox_members), res, i, 0, false);
        json_writer_lit(w, "}");
}

int sandboxes_list(struct api_req *r) {
        struct list_page page;
        char tbuf[257], nbuf[NAME_MAX_LEN + 1];
        const char *team, *name;
        int k;
        if ((k = list_page_parse(r, &page)) < 0 || (k = api_query_single(r, "team", tbuf, sizeof tbuf, &team)) < 0 ||
            (k = api_query_single(r, "name", nbuf, sizeof nbuf, &name)) < 0)
                return k;
        if (name && !name_ok(name))
                return api_errno(r, -EINVAL, "name must be 1 to %d characters of A-Z a-z 0-9 . _ -",
                                NAME_MAX_LEN);
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        char team_id[UUID_STR_LEN];
        if ((k = teams_filter(r, &d, team, team_id)) < 0)
                return k;
        const char *params[] = {r->caller.tenant_id, r->caller.tenant_admin ? "t" : "f", r->caller.user_id,
                                api_perm_roles(PERM_VIEWER), team ? team_id : NULL, name, page.after_us,
                                page.after_id, page.limit_plus_one};
        _cleanup_pgres_ PGresult *res = NULL;
        /* name: a case-insensitive part of the name, to find a definition
         * whose exact name is lost (the exact name is GET /v1/sandboxes/NAME) */
        k = pg_exec(d.conn,
                    "SELECT s.id, s.name, s.team_id, t.name, "
                    "(SELECT max(v.version) FROM api.sandbox_versions v WHERE v.sandbox_id = s.id), "
                    DB_TS("s.created_at") ", s.created_by, " LIST_KEY_US("s.created_at") " "
                    "FROM api.sandboxes s JOIN api.teams t ON t.id = s.team_id AND t.tenant_id = s.tenant_id "
                    "WHERE s.tenant_id = $1 AND " LIST_TEAM_VISIBLE("s.team_id", "$2", "$3", "$4") " "
                    "AND ($5::uuid IS NULL OR s.team_id = $5::uuid) "
                    "AND ($6::text IS NULL OR strpos(lower(s.name), lower($6)) > 0) "
                    "AND ($7::bigint IS NULL OR (s.created_at, s.id) < (" LIST_US_TS("$7") ", $8::uuid)) "
                    "ORDER BY s.created_at DESC, s.id DESC LIMIT $9::bigint",
                    9, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list sandboxes");
        return list_answer(r, &page, res, sandbox_row_write, 7, 0);
}
