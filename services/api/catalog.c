/* Governance catalog, storage and approval (API.md "Governance catalog"):
 * tenant-owned items of seven kinds (catalog_validate.c checks each body),
 * in state draft until a security_admin (or tenant_admin) approves it. Any
 * change returns an item to draft, so what a definition uses is always what
 * was approved. The managed items every tenant starts with are seeded by
 * the database (migrations/0004_catalog.sql). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "core/log.h"

#define LIST_LIMIT_DEFAULT 200
#define LIST_LIMIT_MAX 500

/* ---- lookups (spec validation and resolution, policy.c) */

int catalog_lookup(struct db *d, const char *tenant_id, const char *kind, const char *ref, json_t **ret,
                   struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id, kind, ref};
        /* an id, or (for people writing specs by hand) a name */
        int k = pg_exec(d->conn,
                        "SELECT id::text, name, state, body::text FROM api.catalog_items "
                        "WHERE tenant_id = $1 AND kind = $2 AND (id::text = $3 OR name = $3)",
                        3, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        json_t *body = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
        if (!body)
                return -EIO;
        *ret = json_pack("{s:s, s:s, s:s, s:o}", "id", PQgetvalue(res, 0, 0), "name", PQgetvalue(res, 0, 1),
                         "state", PQgetvalue(res, 0, 2), "body", body);
        return *ret ? 0 : -ENOMEM;
}

/* ---- HTTP */

#define ITEM_COLUMNS                                                                                     \
        "id::text, kind, name, state, managed, body::text, created_by, " DB_TS("created_at") ", " \
        DB_TS("updated_at") ", approved_by, " DB_TS("approved_at")

/* What an approval names (API.md "Governance catalog": approved by
 * content): the SHA-256 of the body's canonical JSON (spec_canonical: sorted
 * keys, compact), so a reviewer approves exactly the body it read. */
static int item_content_sha256(json_t *body, char out[65]) {
        _cleanup_free_ char *canon = NULL;
        return spec_canonical(body, &canon, out);
}

static json_t *item_json(const PGresult *res, int row) {
        json_t *body = json_loads(PQgetvalue(res, row, 5), 0, NULL);
        char sha[65] = "";
        if (body)
                item_content_sha256(body, sha);
        return json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:s, s:s, s:s, s:o, s:o, s:s}", "id", PQgetvalue(res, row, 0),
                         "kind", PQgetvalue(res, row, 1), "name", PQgetvalue(res, row, 2), "state",
                         PQgetvalue(res, row, 3), "managed", PQgetvalue(res, row, 4)[0] == 't', "body",
                         body ? body : json_object(), "created_by", PQgetvalue(res, row, 6), "created_at",
                         PQgetvalue(res, row, 7), "updated_at", PQgetvalue(res, row, 8), "approved_by",
                         db_json_str(res, row, 9), "approved_at", db_json_str(res, row, 10), "content_sha256",
                         sha);
}

/* Checks the caller's permission on the catalog, on d: reads need
 * membership of a team of the tenant (any role), writes the route's
 * permission in some team (tenant_admin holds all). */
static int catalog_authorize(struct api_req *r, struct db *d, bool write) {
        struct err_detail e = {0};
        int k = api_authz_tenant(d, &r->caller, write ? r->perm : PERM_USER, &e);
        if (k == -EPERM)
                return api_errno(r, -EPERM, write ? (r->perm == PERM_CATALOG_APPROVE
                                                 ? "approving catalog items needs the security_admin role"
                                                 : "changing the catalog needs the sandbox_author role")
                                      : "reading the catalog needs a role in a team of the tenant");
        if (k < 0)
                return db_fail(r, k, &e, "check catalog permission");
        return 0;
}

static int catalog_kind_check(struct api_req *r) {
        if (!catalog_kind_valid(r->params[0]))
                return api_errno(r, -ENOENT, "no such catalog kind (images, skills, prompt-templates, egress-profiles, connectors, "
                                "models, policy-packs)");
        return 0;
}

/* Opens the tenant's database for a read of the catalog. */
static int catalog_open(struct api_req *r, struct db *d) {
        int k = catalog_kind_check(r);
        if (k < 0)
                return k;
        struct err_detail e = {0};
        if ((k = db_open_caller(d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        return catalog_authorize(r, d, false);
}

/* Begins a write of the catalog (tx.h) as a caller allowed to make it. */
static int catalog_begin(struct api_req *r, struct api_tx *tx) {
        int k = catalog_kind_check(r);
        if (k < 0 || (k = api_tx_begin(r, tx)) < 0)
                return k;
        return catalog_authorize(r, &tx->d, true);
}

int catalog_list(struct api_req *r) {
        _cleanup_db_ struct db d = {0};
        int k = catalog_open(r, &d);
        if (k < 0)
                return k;
        char lbuf[16], cbuf[CATALOG_NAME_MAX + 8], sbuf[16];
        int limit = LIST_LIMIT_DEFAULT;
        const char *l = api_query(r, "limit", lbuf, sizeof lbuf);
        if (l) {
                char *end;
                long n = strtol(l, &end, 10);
                if (*end || n < 1 || n > LIST_LIMIT_MAX)
                        return api_errno(r, -EINVAL, "limit must be 1 to %d", LIST_LIMIT_MAX);
                limit = (int)n;
        }
        const char *cursor = api_query(r, "cursor", cbuf, sizeof cbuf);
        const char *state = api_query(r, "state", sbuf, sizeof sbuf);
        if (state && strcmp(state, "draft") && strcmp(state, "approved"))
                return api_errno(r, -EINVAL, "state must be \"draft\" or \"approved\"");
        char lim[16];
        snprintf(lim, sizeof lim, "%d", limit + 1);
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        /* the cursor is the last name seen: names are unique per kind */
        const char *params[] = {r->caller.tenant_id, r->params[0], cursor ? cursor : "", lim, state};
        k = pg_exec(d.conn,
                    "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE tenant_id = $1 AND kind = $2 "
                    "AND name > $3 AND ($5::text IS NULL OR state = $5) ORDER BY name LIMIT $4::integer",
                    5, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list catalog items");
        json_t *items = json_array();
        int n = PQntuples(res);
        for (int i = 0; i < n && i < limit; i++)
                json_array_append_new(items, item_json(res, i));
        r->out = json_pack("{s:o, s:o}", "items", items, "next_cursor",
                           n > limit ? json_string(PQgetvalue(res, limit - 1, 2)) : json_null());
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

static int load_item(struct api_req *r, struct db *d, PGresult **res) {
        struct err_detail e = {0};
        if (!id_is_uuid(r->params[1]))
                return api_errno(r, -ENOENT, "catalog item not found");
        const char *params[] = {r->params[1], r->caller.tenant_id, r->params[0]};
        int k = pg_exec(d->conn,
                        "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE id = $1 AND tenant_id = $2 AND kind = $3",
                        3, params, res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load catalog item");
        if (PQntuples(*res) != 1)
                return api_errno(r, -ENOENT, "catalog item not found");
        return 0;
}

int catalog_get(struct api_req *r) {
        _cleanup_db_ struct db d = {0};
        int k = catalog_open(r, &d);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        if ((k = load_item(r, &d, &res)) < 0)
                return k;
        r->out = item_json(res, 0);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

/* Reads {name?, body?} of a create (both required) or patch. */
static int parse_item(struct api_req *r, json_t *in, bool create, const char **name, json_t **body) {
        int k = api_known_fields(r, in, (const char *const[]){"name", "body", NULL});
        if (k < 0)
                return k;
        json_t *jn = json_object_get(in, "name");
        *body = json_object_get(in, "body");
        if (create && !jn)
                return api_fail(r, -EINVAL, "missing_field", "name is required");
        if (create && !*body)
                return api_fail(r, -EINVAL, "missing_field", "body is required");
        if (jn && (!catalog_clean_string(jn) || !catalog_name_ok(json_string_value(jn))))
                return api_errno(r, -EINVAL, "name must be 1 to %d characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
                                CATALOG_NAME_MAX);
        *name = jn ? json_string_value(jn) : NULL;
        struct err_detail e = {0};
        if (*body && catalog_validate_body(r->api->floor, r->params[0], *body, &e) < 0)
                return api_fail(r, -EINVAL, e.code, "%s", e.message);
        /* what the CLIs call the MCP server (mcp__<name>__<tool>,
         * docs/CONTRACTS.md "MCP connectors") */
        if (jn && !strcmp(r->params[0], "connectors") && !catalog_connector_name_ok(json_string_value(jn)))
                return api_errno(r, -EINVAL, "name of a connector must be 1 to %d characters of a-z 0-9 _, without \"__\" or a "
                                "\"_\" at either end (the MCP server name the agent and the policy see)",
                                CATALOG_NAME_MAX);
        return 0;
}

/* Audits and commits the write of item id, then answers the item as stored. */
static int finish_write(struct api_tx *tx, const char *action, const char *id, json_t *change) {
        struct api_req *r = tx->r;
        int k = api_tx_audit(tx, action, "catalog_item", id, change);
        if (k < 0 || (k = api_tx_commit(tx, "catalog change")) < 0)
                return k;
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = pg_exec(tx->d.conn, "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE id = $1 AND tenant_id = $2",
                         2, params, &res, &e)) < 0)
                return db_fail(r, k, &e, "load catalog item");
        r->out = PQntuples(res) == 1 ? item_json(res, 0) : NULL;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int catalog_create(struct api_req *r) {
        _cleanup_tx_ struct api_tx tx = {0};
        int k = catalog_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *in = NULL;
        if ((k = api_body_object(r, &in)) < 0)
                return k;
        const char *name;
        json_t *body;
        if ((k = parse_item(r, in, true, &name, &body)) < 0)
                return k;
        char id[UUID_STR_LEN], actor[UUID_STR_LEN + 8];
        if (id_new_uuid(id) < 0)
                return api_errno(r, -EIO, "could not generate an id");
        snprintf(actor, sizeof actor, "user:%s", r->caller.user_id);
        _cleanup_free_ char *bodys = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        if (!bodys)
                return api_errno(r, -ENOMEM, "out of memory");
        const char *params[] = {id, r->caller.tenant_id, r->params[0], name, bodys, actor};
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.catalog_items (id, tenant_id, kind, name, body, created_by) "
                    "VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
                    6, params, NULL, &tx.e);
        if (k == -EEXIST)
                return api_errno(r, -EEXIST, "name: a %s item named %s exists", r->params[0], name);
        if (k < 0)
                return db_fail(r, k, &tx.e, "insert catalog item");
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:O}", "kind", r->params[0], "name", name, "body", body);
        if ((k = finish_write(&tx, "catalog.create", id, change)) < 0)
                return k;
        r->status = 201;
        return 0;
}

int catalog_patch(struct api_req *r) {
        _cleanup_tx_ struct api_tx tx = {0};
        int k = catalog_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *in = NULL;
        if ((k = api_body_object(r, &in)) < 0)
                return k;
        const char *name;
        json_t *body;
        if ((k = parse_item(r, in, false, &name, &body)) < 0)
                return k;
        _cleanup_pgres_ PGresult *cur = NULL;
        if ((k = load_item(r, &tx.d, &cur)) < 0)
                return k;
        _cleanup_free_ char *bodys = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (body && !bodys)
                return api_errno(r, -ENOMEM, "out of memory");
        /* any change needs approval again */
        const char *params[] = {r->params[1], r->caller.tenant_id, name, bodys};
        k = pg_exec(tx.d.conn,
                    "UPDATE api.catalog_items SET name = coalesce($3, name), body = coalesce($4::jsonb, body), "
                    "state = 'draft', approved_by = NULL, approved_at = NULL, updated_at = now() "
                    "WHERE id = $1 AND tenant_id = $2",
                    4, params, NULL, &tx.e);
        if (k == -EEXIST)
                return api_errno(r, -EEXIST, "name: a %s item named %s exists", r->params[0], name);
        if (k < 0)
                return db_fail(r, k, &tx.e, "update catalog item");
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s?, s:O?, s:s}", "kind", r->params[0], "name", name,
                                                  "body", body, "state", "draft");
        if ((k = finish_write(&tx, "catalog.update", r->params[1], change)) < 0)
                return k;
        r->status = 200;
        return 0;
}

int catalog_approve(struct api_req *r) {
        _cleanup_tx_ struct api_tx tx = {0};
        int k = catalog_begin(r, &tx);
        if (k < 0)
                return k;
        /* approved by content: the request names the content_sha256 the
         * reviewer read (GET), so a change made meanwhile is never approved */
        _cleanup_json_ json_t *in = NULL;
        if ((k = api_body_object(r, &in)) < 0)
                return k;
        if ((k = api_known_fields(r, in, (const char *const[]){"content_sha256", "comment", NULL})) < 0)
                return k;
        json_t *jc = json_object_get(in, "comment"), *jh = json_object_get(in, "content_sha256");
        if (jc && (!catalog_clean_string(jc) || json_string_length(jc) > DESCRIPTION_MAX))
                return api_errno(r, -EINVAL, "comment must be a string");
        if (!jh)
                return api_fail(r, -EINVAL, "missing_field",
                                "content_sha256 is required: the content_sha256 of the item you reviewed");
        const char *want = json_string_value(jh);
        if (!want || strlen(want) != 64 || strspn(want, "0123456789abcdef") != 64)
                return api_errno(r, -EINVAL, "content_sha256 must be 64 lower-case hex digits");
        if (!id_is_uuid(r->params[1]))
                return api_errno(r, -ENOENT, "catalog item not found");
        char actor[UUID_STR_LEN + 8];
        snprintf(actor, sizeof actor, "user:%s", r->caller.user_id);
        /* locked: a concurrent change waits until this approval is decided */
        _cleanup_pgres_ PGresult *cur = NULL;
        const char *lp[] = {r->params[1], r->caller.tenant_id, r->params[0]};
        k = pg_exec(tx.d.conn,
                    "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE id = $1 AND tenant_id = $2 AND kind = $3 "
                    "FOR UPDATE",
                    3, lp, &cur, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "load catalog item");
        if (PQntuples(cur) != 1)
                return api_errno(r, -ENOENT, "catalog item not found");
        _cleanup_json_ json_t *body = json_loads(PQgetvalue(cur, 0, 5), 0, NULL);
        char have[65];
        if (!body || item_content_sha256(body, have) < 0)
                return api_errno(r, -EIO, "could not hash the catalog item");
        if (strcmp(have, want))
                return api_errno(r, -EEXIST, "content_sha256: the item changed since it was reviewed (now %s); review it again",
                                have);
        const char *params[] = {r->params[1], r->caller.tenant_id, actor};
        k = pg_exec(tx.d.conn,
                    "UPDATE api.catalog_items SET state = 'approved', approved_by = $3, approved_at = now() "
                    "WHERE id = $1 AND tenant_id = $2",
                    3, params, NULL, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "approve catalog item");
        /* the approved content is what the hash in the audit record covers */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:O, s:s, s:s}", "kind", r->params[0], "name",
                                                  PQgetvalue(cur, 0, 2), "body", body, "state", "approved",
                                                  "content_sha256", have);
        if ((k = finish_write(&tx, "catalog.approve", r->params[1], change)) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "item", r->params[1], "user", r->caller.user_id),
                "catalog item approved");
        r->status = 200;
        return 0;
}
