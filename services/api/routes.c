/* The HTTP layer: the one route table, request body collection with a size
 * limit, authentication, dispatch, and the only place error bodies are written.
 * Runs on the lws service thread only. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/problem.h"
#include "kafka/kafka.h"
#include "pg/pg.h"

static int stream_plain_http(struct api_req *r) {
        /* authorize first, so the answer is the same as for the other run endpoints */
        struct err_detail e = {0};
        char team[UUID_STR_LEN], status[32];
        int k = runs_load_visible(r->api, &r->caller, r->params[0], r->perm, team, status, sizeof status, &e);
        if (k == -ENOENT)
                return api_fail(r, -ENOENT, "not_found", "run not found");
        if (k < 0)
                return db_fail(r, k, &e, "load run");
        return api_fail(r, -EINVAL, "unsupported", "/v1/runs/{id}/stream needs a websocket upgrade");
}

struct api_route {
        const char *method;
        const char *pattern; /* "{x}" segments capture into req->params in order */
        api_handler_fn handler;
        enum api_perm perm;
};

/* The roles of API.md. A team grant may hold any of them; tenant_admin is
 * normally a tenant role (users.tenant_roles) and then covers every team. */
static const char *const roles_all[] = {"tenant_admin", "security_admin", "sandbox_author", "launcher",
                                        "approver",     "reviewer",       "viewer"};

bool api_role_valid(const char *role) {
        for (size_t i = 0; i < ELEMENTSOF(roles_all); i++)
                if (!strcmp(role, roles_all[i]))
                        return true;
        return false;
}

/* Which team roles carry each permission, as a PostgreSQL text[] literal.
 * tenant_admin carries all of them (as a tenant role in every team of the
 * tenant, as a team role in that team). */
static const struct {
        enum api_perm perm;
        const char *roles;
} perm_roles[] = {
        {PERM_VIEWER, "{tenant_admin,viewer,reviewer,launcher,approver,sandbox_author}"},
        {PERM_SANDBOX_AUTHOR, "{tenant_admin,sandbox_author}"},
        {PERM_LAUNCHER, "{tenant_admin,launcher}"},
        {PERM_REVIEWER, "{tenant_admin,reviewer}"},
        {PERM_APPROVER, "{tenant_admin,approver}"},
        {PERM_CANCEL, "{tenant_admin,launcher,approver}"},
        {PERM_CATALOG_APPROVE, "{tenant_admin,security_admin}"},
        {PERM_ADMIN, "{tenant_admin}"},
};

int api_authz_team(struct db *d, const struct api_caller *c, const char *team_id, enum api_perm perm,
                   struct err_detail *e) {
        if (!id_is_uuid(team_id))
                return -ENOENT;
        const char *roles = NULL;
        for (size_t i = 0; i < ELEMENTSOF(perm_roles); i++)
                if (perm_roles[i].perm == perm)
                        roles = perm_roles[i].roles;
        /* PERM_NONE/PERM_USER on a team object: membership is enough */
        if (!roles)
                roles = "{tenant_admin,security_admin,sandbox_author,launcher,approver,reviewer,viewer}";
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, c->tenant_id, c->user_id, roles};
        int r = pg_exec(d->conn,
                        "SELECT m.roles IS NOT NULL, coalesce(m.roles && $4::text[], false) FROM api.teams t "
                        "LEFT JOIN api.team_members m ON m.team_id = t.id AND m.user_id = $3 AND m.tenant_id = $2 "
                        "WHERE t.id = $1 AND t.tenant_id = $2",
                        4, params, &res, e);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -ENOENT; /* no such team in the caller's tenant */
        if (c->tenant_admin || PQgetvalue(res, 0, 1)[0] == 't')
                return 0;
        /* a member learns that the object exists, an outsider does not */
        return PQgetvalue(res, 0, 0)[0] == 't' ? -EPERM : -ENOENT;
}

int api_authz_tenant(struct db *d, const struct api_caller *c, enum api_perm perm, struct err_detail *e) {
        if (c->tenant_admin)
                return 0;
        const char *roles = NULL;
        for (size_t i = 0; i < ELEMENTSOF(perm_roles); i++)
                if (perm_roles[i].perm == perm)
                        roles = perm_roles[i].roles;
        if (!roles)
                roles = "{tenant_admin,security_admin,sandbox_author,launcher,approver,reviewer,viewer}";
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {c->tenant_id, c->user_id, roles};
        int r = pg_exec(d->conn,
                        "SELECT 1 FROM api.team_members m JOIN api.teams t ON t.id = m.team_id AND t.tenant_id = m.tenant_id "
                        "WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.roles && $3::text[] LIMIT 1",
                        3, params, &res, e);
        if (r < 0)
                return r;
        return PQntuples(res) == 1 ? 0 : -EPERM;
}

/* Every endpoint of the api, with the permission it needs: the one place
 * that says who may call what (tests/e2e/test_e2e_rbac_matrix.py mirrors
 * it). PERM_ADMIN is checked here; team permissions by the handler against
 * the object's team (api_authz_team); list endpoints filter their items. */
static const struct api_route routes[] = {
        {"GET", "/healthz", ops_healthz, PERM_NONE},
        {"GET", "/readyz", ops_readyz, PERM_NONE},
        {"GET", "/metrics", ops_metrics, PERM_NONE},
        {"POST", "/v1/auth/login", auth_login, PERM_NONE},
        {"POST", "/v1/auth/oidc", oidc_login, PERM_NONE},
        {"POST", "/v1/auth/logout", auth_logout, PERM_USER},
        {"GET", "/v1/me", auth_me, PERM_USER},
        {"GET", "/v1/teams", teams_list, PERM_USER},
        {"POST", "/v1/teams", teams_create, PERM_ADMIN},
        {"GET", "/v1/teams/{id}", teams_get, PERM_VIEWER},
        {"PATCH", "/v1/teams/{id}", teams_patch, PERM_ADMIN},
        {"DELETE", "/v1/teams/{id}", teams_delete, PERM_ADMIN},
        {"GET", "/v1/teams/{id}/members", members_list, PERM_ADMIN},
        {"PUT", "/v1/teams/{id}/members/{user}", members_put, PERM_ADMIN},
        {"GET", "/v1/users", users_list, PERM_ADMIN},
        {"POST", "/v1/users", users_create, PERM_ADMIN},
        {"PATCH", "/v1/users/{id}", users_patch, PERM_ADMIN},
        {"DELETE", "/v1/users/{id}", users_delete, PERM_ADMIN},
        {"GET", "/v1/tenant/oidc", oidc_config_get, PERM_ADMIN},
        {"PUT", "/v1/tenant/oidc", oidc_config_put, PERM_ADMIN},
        {"DELETE", "/v1/tenant/oidc", oidc_config_delete, PERM_ADMIN},
        {"GET", "/v1/service-accounts", service_accounts_list, PERM_ADMIN},
        {"POST", "/v1/service-accounts", service_accounts_create, PERM_ADMIN},
        {"DELETE", "/v1/service-accounts/{id}", service_accounts_delete, PERM_ADMIN},
        {"POST", "/v1/service-accounts/{id}/tokens", service_accounts_token_create, PERM_ADMIN},
        {"DELETE", "/v1/service-accounts/{id}/tokens/{token}", service_accounts_token_revoke, PERM_ADMIN},
        {"GET", "/v1/teams/{id}/secrets", secrets_list, PERM_VIEWER},
        {"PUT", "/v1/teams/{id}/secrets/{name}", secrets_put, PERM_SANDBOX_AUTHOR},
        {"DELETE", "/v1/teams/{id}/secrets/{name}", secrets_delete, PERM_SANDBOX_AUTHOR},
        {"POST", "/v1/sandboxes", sandboxes_create, PERM_SANDBOX_AUTHOR},
        {"GET", "/v1/sandboxes/{id}", sandboxes_get, PERM_VIEWER},
        {"PUT", "/v1/sandboxes/{id}/draft", sandboxes_put_draft, PERM_SANDBOX_AUTHOR},
        {"POST", "/v1/sandboxes/{id}/versions", sandboxes_publish, PERM_SANDBOX_AUTHOR},
        {"GET", "/v1/sandboxes/{id}/versions/{v}", sandboxes_get_version, PERM_VIEWER},
        {"GET", "/v1/sandboxes/{id}/versions/{v}/effective-policy", policy_effective, PERM_VIEWER},
        {"POST", "/v1/runs", runs_create, PERM_LAUNCHER},
        {"GET", "/v1/runs/{id}", runs_get, PERM_VIEWER},
        {"POST", "/v1/runs/{id}/cancel", runs_cancel, PERM_CANCEL},
        {"GET", "/v1/runs/{id}/events", events_list, PERM_VIEWER},
        /* upgraded requests are served by stream.c (stream_filter checks PERM_VIEWER) */
        {"GET", "/v1/runs/{id}/stream", stream_plain_http, PERM_VIEWER},
        {"GET", "/v1/runs/{id}/artifacts", artifacts_list, PERM_REVIEWER},
        {"GET", "/v1/runs/{id}/artifacts/{name}", artifacts_get, PERM_REVIEWER},
        {"GET", "/v1/approvals", approvals_list, PERM_APPROVER},
        {"POST", "/v1/approvals/{id}/decision", approvals_decide, PERM_APPROVER},
        /* security_admin joins PERM_ADMIN here once it is a tenant role */
        /* the catalog is tenant-wide: reads need a role in some team of the
         * tenant, writes the permission in some team (api_authz_tenant) */
        {"GET", "/v1/catalog/{kind}", catalog_list, PERM_VIEWER},
        {"POST", "/v1/catalog/{kind}", catalog_create, PERM_SANDBOX_AUTHOR},
        {"GET", "/v1/catalog/{kind}/{id}", catalog_get, PERM_VIEWER},
        {"PATCH", "/v1/catalog/{kind}/{id}", catalog_patch, PERM_SANDBOX_AUTHOR},
        {"POST", "/v1/catalog/{kind}/{id}/approve", catalog_approve, PERM_CATALOG_APPROVE},
        {"GET", "/v1/audit", audit_api_list, PERM_ADMIN},
        {"GET", "/v1/audit/verify", audit_api_verify, PERM_ADMIN},
};

static const struct {
        const char *code;
        int status;
        const char *title;
} problem_codes[] = {
        {"invalid_json", 400, "Bad Request"},
        {"invalid_field", 400, "Bad Request"},
        {"unknown_field", 400, "Bad Request"},
        {"missing_field", 400, "Bad Request"},
        {"unsupported", 400, "Bad Request"},
        {"unauthorized", 401, "Unauthorized"},
        {"invalid_token", 401, "Unauthorized"},
        {"forbidden", 403, "Forbidden"},
        {"no_role", 403, "Forbidden"},
        {"not_found", 404, "Not Found"},
        {"method_not_allowed", 405, "Method Not Allowed"},
        {"conflict", 409, "Conflict"},
        {"too_large", 413, "Content Too Large"},
        {"quota_exceeded", 429, "Too Many Requests"},
        {"rate_limited", 429, "Too Many Requests"},
        {"internal", 500, "Internal Server Error"},
        {"unavailable", 503, "Service Unavailable"},
};

void api_problem_map(int err, const char *code, int *ret_status, const char **ret_code,
                     const char **ret_title) {
        if (code)
                for (size_t i = 0; i < ELEMENTSOF(problem_codes); i++)
                        if (!strcmp(problem_codes[i].code, code)) {
                                *ret_status = problem_codes[i].status;
                                *ret_code = problem_codes[i].code;
                                *ret_title = problem_codes[i].title;
                                return;
                        }
        struct http_problem p = http_problem_from_errno(err);
        *ret_status = p.status;
        *ret_code = p.code;
        *ret_title = p.title;
}

int api_fail(struct api_req *r, int err, const char *code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->pdetail, sizeof r->pdetail, fmt, ap);
        va_end(ap);
        r->pcode = code;
        return err < 0 ? err : -EIO;
}

const char *api_query(struct api_req *r, const char *name, char *buf, int len) {
        char key[64];
        snprintf(key, sizeof key, "%s=", name);
        return lws_get_urlarg_by_name(r->wsi, key, buf, len);
}

#define BODY_MAX_DEPTH 32
#define BODY_PATH_MAX 200

/* Appends a path step (".key", "key" at the root, or "[i]") to path, ending
 * it in "..." when full. */
static void body_path_push(char *path, size_t *len, const char *key, size_t index) {
        size_t room = BODY_PATH_MAX - *len;
        int n = !key ? snprintf(path + *len, room, "[%zu]", index)
                     : snprintf(path + *len, room, "%s%s", *len ? "." : "", key);
        if (n < 0 || (size_t)n >= room) {
                snprintf(path + BODY_PATH_MAX - 4, 4, "...");
                *len = BODY_PATH_MAX - 1;
        } else
                *len += (size_t)n;
}

/* Walks a parsed body: no deeper than BODY_MAX_DEPTH, no NUL in any string
 * (NUL is parsed only to name the field that holds it). */
static int body_walk(struct api_req *r, json_t *v, char *path, size_t len, int depth) {
        if (json_is_string(v)) {
                if (strlen(json_string_value(v)) != json_string_length(v))
                        return api_fail(r, -EINVAL, "invalid_field", "%s must not contain NUL (\\u0000)",
                                        len ? path : "body");
                return 0;
        }
        if (!json_is_object(v) && !json_is_array(v))
                return 0;
        if (depth >= BODY_MAX_DEPTH)
                return api_fail(r, -EINVAL, "invalid_json", "request body nests deeper than %d levels at %s",
                                BODY_MAX_DEPTH, len ? path : "(root)");
        const char *key;
        json_t *item;
        size_t i;
        int k;
        if (json_is_object(v)) {
                json_object_foreach(v, key, item) {
                        size_t l = len;
                        body_path_push(path, &l, key, 0);
                        if ((k = body_walk(r, item, path, l, depth + 1)) < 0)
                                return k;
                        path[len] = '\0';
                }
        } else
                json_array_foreach(v, i, item) {
                        size_t l = len;
                        body_path_push(path, &l, NULL, i);
                        if ((k = body_walk(r, item, path, l, depth + 1)) < 0)
                                return k;
                        path[len] = '\0';
                }
        return 0;
}

int api_body_object(struct api_req *r, json_t **ret) {
        if (!r->body || r->body_len == 0)
                return api_fail(r, -EINVAL, "invalid_json", "request body must be a JSON object");
        json_error_t jerr;
        json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!j) {
                switch (json_error_code(&jerr)) {
                case json_error_invalid_utf8:
                        return api_fail(r, -EINVAL, "invalid_json",
                                        "request body is not valid UTF-8 (line %d column %d)", jerr.line,
                                        jerr.column);
                case json_error_duplicate_key: {
                        /* jansson's text is "duplicate object key near '\"key\"'" */
                        const char *near = strstr(jerr.text, "near '");
                        int n = near ? (int)strlen(near + 6) - 1 : 0;
                        return api_fail(r, -EINVAL, "invalid_json", "duplicate key %.*s at line %d column %d",
                                        n > 0 ? n : 0, near ? near + 6 : "", jerr.line, jerr.column);
                }
                default:
                        if (strstr(jerr.text, "maximum parsing depth"))
                                return api_fail(r, -EINVAL, "invalid_json",
                                                "request body nests deeper than %d levels (line %d column %d)",
                                                BODY_MAX_DEPTH, jerr.line, jerr.column);
                        return api_fail(r, -EINVAL, "invalid_json", "malformed JSON at line %d column %d: %s",
                                        jerr.line, jerr.column, jerr.text);
                }
        }
        if (!json_is_object(j)) {
                json_decref(j);
                return api_fail(r, -EINVAL, "invalid_json", "request body must be a JSON object");
        }
        char path[BODY_PATH_MAX] = "";
        int k = body_walk(r, j, path, 0, 0);
        if (k < 0) {
                json_decref(j);
                return k;
        }
        *ret = j;
        return 0;
}

int api_known_fields(struct api_req *r, json_t *body, const char *const *known) {
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
                bool ok = false;
                for (const char *const *k = known; *k && !ok; k++)
                        ok = !strcmp(key, *k);
                if (!ok)
                        return api_fail(r, -EINVAL, "unknown_field", "%s is not a known field", key);
        }
        return 0;
}

/* ---- operations endpoints */

int ops_healthz(struct api_req *r) {
        r->status = 200;
        r->out = json_pack("{s:s}", "status", "ok");
        return 0;
}

int ops_readyz(struct api_req *r) {
        if (!pg_pool_ping(r->api->pg))
                return api_fail(r, -ECONNRESET, "unavailable", "postgresql is not reachable");
        if (kafka_producer_ping(r->api->producer, 1000) < 0)
                return api_fail(r, -ECONNRESET, "unavailable", "kafka is not reachable");
        r->status = 200;
        r->out = json_pack("{s:s}", "status", "ready");
        return 0;
}

int ops_metrics(struct api_req *r) {
        r->text = metrics_render();
        if (!r->text)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        r->content_type = "text/plain; version=0.0.4";
        r->status = 200;
        return 0;
}

/* ---- transactions */

#define PATH_MAX_LEN 2048
#define WRITE_CHUNK 16384

struct http_txn {
        struct api_req req;
        const struct api_route *route;
        char *params[API_MAX_PARAMS];
        char method[8];
        char path[PATH_MAX_LEN];
        char *body;
        size_t body_len, body_cap;
        bool too_large;
        bool responded;     /* response prepared (no more body processing) */
        bool close_after;
        /* the response */
        int status;
        const char *ctype;
        char *resp;
        size_t resp_len, resp_off;
        bool headers_sent;
};

static void txn_free(struct http_txn *t) {
        if (!t)
                return;
        for (size_t i = 0; i < API_MAX_PARAMS; i++)
                free(t->params[i]);
        free(t->body);
        free(t->resp);
        json_decref(t->req.out);
        free(t->req.text);
        free(t->req.location);
        free(t);
}

/* Splits pattern and path on '/', capturing {x} segments. */
static bool route_match(const char *pattern, const char *path, char **caps) {
        size_t ncap = 0;
        const char *p = pattern, *s = path;
        while (*p && *s) {
                if (*p != '/' || *s != '/')
                        return false;
                p++, s++;
                size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
                if (*p == '{') {
                        if (sl == 0 || ncap >= API_MAX_PARAMS)
                                return false;
                        caps[ncap] = strndup(s, sl);
                        ncap++;
                } else if (pl != sl || strncmp(p, s, pl) != 0)
                        goto fail;
                p += pl, s += sl;
        }
        if (*p || *s)
                goto fail;
        return true;
fail:
        for (size_t i = 0; i < ncap; i++) {
                free(caps[i]);
                caps[i] = NULL;
        }
        return false;
}

static void txn_set_problem(struct http_txn *t, int err) {
        int status;
        const char *code, *title;
        api_problem_map(err, t->req.pcode, &status, &code, &title);
        struct http_problem p = {.status = status, .code = code, .title = title};
        const char *detail = t->req.pdetail[0] ? t->req.pdetail : title;
        free(t->resp);
        t->resp = http_problem_json(&p, detail);
        t->resp_len = t->resp ? strlen(t->resp) : 0;
        t->status = status;
        t->ctype = "application/problem+json";
}

static void txn_respond(struct lws *wsi, struct http_txn *t, int r) {
        if (r < 0)
                txn_set_problem(t, r);
        else if (t->req.text) {
                t->resp = TAKE_PTR(t->req.text);
                t->resp_len = strlen(t->resp);
                t->status = t->req.status ? t->req.status : 200;
                t->ctype = t->req.content_type ? t->req.content_type : "text/plain";
        } else {
                t->status = t->req.status ? t->req.status : 200;
                t->ctype = "application/json";
                if (t->req.out) {
                        t->resp = json_dumps(t->req.out, JSON_COMPACT);
                        if (!t->resp) {
                                api_fail(&t->req, -ENOMEM, "internal", "out of memory");
                                txn_set_problem(t, -ENOMEM);
                        } else
                                t->resp_len = strlen(t->resp);
                }
        }
        t->responded = true;
        lws_callback_on_writable(wsi);
}

static void txn_fail(struct lws *wsi, struct http_txn *t, int err, const char *code,
                     const char *detail) {
        api_fail(&t->req, err, code, "%s", detail);
        txn_respond(wsi, t, err);
}

static void txn_dispatch(struct api *a, struct lws *wsi, struct http_txn *t) {
        struct api_req *r = &t->req;
        _cleanup_db_ struct db auth_db = {0}; /* released here unless the handler took it */
        r->body = t->body;
        r->body_len = t->body_len;
        if (r->perm != PERM_NONE) {
                char token[128];
                struct err_detail e = {0};
                if (auth_token_from_wsi(wsi, false, token, sizeof token) < 0)
                        return txn_fail(wsi, t, -EACCES, "unauthorized", "a valid bearer token is required");
                int k = auth_lookup_token(a, token, &r->caller, &auth_db, &e);
                explicit_bzero(token, sizeof token);
                if (k == -EACCES)
                        return txn_fail(wsi, t, -EACCES, "unauthorized", "a valid bearer token is required");
                if (k < 0)
                        return txn_respond(wsi, t, db_fail(r, k, &e, "look up token"));
                if (r->perm == PERM_ADMIN && !r->caller.tenant_admin)
                        return txn_fail(wsi, t, -EPERM, "forbidden", "this endpoint needs the tenant_admin role");
        }
        r->auth_db = &auth_db;
        int k = t->route->handler(r);
        r->auth_db = NULL;
        if (k < 0 && !r->pcode)
                /* a handler that failed without saying why: never leak internals */
                api_fail(r, k, NULL, "%s", "");
        txn_respond(wsi, t, k);
}

static const struct {
        enum lws_token_indexes tok;
        const char *name;
} methods[] = {
        {WSI_TOKEN_GET_URI, "GET"},     {WSI_TOKEN_POST_URI, "POST"},
        {WSI_TOKEN_PUT_URI, "PUT"},     {WSI_TOKEN_PATCH_URI, "PATCH"},
        {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
};

static int http_on_request(struct api *a, struct lws *wsi, struct api_pss *pss, const char *in,
                           size_t len) {
        txn_free(pss->txn);
        struct http_txn *t = pss->txn = calloc(1, sizeof *t);
        if (!t)
                return -1;
        metric_add(&api_metric_requests, 1);
        t->req.api = a;
        t->req.wsi = wsi;
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (lws_hdr_total_length(wsi, methods[i].tok) > 0) {
                        snprintf(t->method, sizeof t->method, "%s", methods[i].name);
                        break;
                }
        t->req.method = t->method;
        if (len >= sizeof t->path) {
                txn_fail(wsi, t, -EINVAL, "not_found", "path too long");
                return 0;
        }
        memcpy(t->path, in, len);
        t->path[len] = '\0';

        bool path_known = false;
        for (size_t i = 0; i < ELEMENTSOF(routes) && !t->route; i++) {
                char *caps[API_MAX_PARAMS] = {0};
                if (!route_match(routes[i].pattern, t->path, caps))
                        continue;
                path_known = true;
                if (strcmp(routes[i].method, t->method) != 0) {
                        for (size_t k = 0; k < API_MAX_PARAMS; k++)
                                free(caps[k]);
                        continue;
                }
                t->route = &routes[i];
                for (size_t k = 0; k < API_MAX_PARAMS; k++) {
                        t->params[k] = caps[k];
                        t->req.params[k] = caps[k];
                }
        }
        if (!t->route) {
                if (path_known)
                        txn_fail(wsi, t, -EINVAL, "method_not_allowed", "method not allowed on this path");
                else
                        txn_fail(wsi, t, -ENOENT, "not_found", "no such endpoint");
                return 0;
        }
        t->req.perm = t->route->perm;

        bool has_body_method = !strcmp(t->method, "POST") || !strcmp(t->method, "PUT") ||
                               !strcmp(t->method, "PATCH");
        if (has_body_method) {
                char cl[32] = "";
                bool chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
                if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
                        char *end;
                        errno = 0;
                        unsigned long long n = strtoull(cl, &end, 10);
                        if (errno || end == cl || *end) {
                                t->close_after = true;
                                txn_fail(wsi, t, -EINVAL, "invalid_json", "invalid Content-Length");
                                return 0;
                        }
                        if (n > (unsigned long long)a->cfg.max_body) {
                                /* answer before reading anything and drop the connection */
                                t->too_large = true;
                                t->close_after = true;
                                txn_fail(wsi, t, -E2BIG, "too_large", "request body exceeds PADDOCK_API_MAX_BODY");
                                return 0;
                        }
                        if (n > 0)
                                return 0; /* wait for LWS_CALLBACK_HTTP_BODY */
                } else if (chunked) {
                        /* lws 4.1 does not complete chunked request bodies: refuse them
                         * up front instead of letting the client wait */
                        t->close_after = true;
                        txn_fail(wsi, t, -EINVAL, "invalid_field",
                                 "Content-Length is required (chunked request bodies are not supported)");
                        return 0;
                }
        }
        txn_dispatch(a, wsi, t);
        return 0;
}

static int http_on_body(struct api *a, struct lws *wsi, struct http_txn *t, const void *in,
                        size_t len) {
        if (!t || t->responded)
                return 0; /* discard what arrives after an early answer */
        if (t->body_len + len > (size_t)a->cfg.max_body) {
                t->too_large = true;
                t->close_after = true;
                txn_fail(wsi, t, -E2BIG, "too_large", "request body exceeds PADDOCK_API_MAX_BODY");
                return 0;
        }
        if (t->body_len + len + 1 > t->body_cap) {
                size_t cap = t->body_cap ? t->body_cap * 2 : 4096;
                while (cap < t->body_len + len + 1)
                        cap *= 2;
                char *nb = realloc(t->body, cap);
                if (!nb)
                        return -1;
                t->body = nb;
                t->body_cap = cap;
        }
        memcpy(t->body + t->body_len, in, len);
        t->body_len += len;
        t->body[t->body_len] = '\0';
        return 0;
}

static int http_on_writeable(struct lws *wsi, struct api_pss *pss) {
        struct http_txn *t = pss->txn;
        if (!t || !t->responded)
                return 0;
        if (!t->headers_sent) {
                unsigned char buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *p = start,
                                                   *end = buf + sizeof buf - 1;
                if (lws_add_http_common_headers(wsi, (unsigned)t->status, t->ctype,
                                                (lws_filepos_t)t->resp_len, &p, end))
                        return -1;
                if (t->req.location &&
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"location:",
                                                (const unsigned char *)t->req.location,
                                                (int)strlen(t->req.location), &p, end))
                        return -1;
                if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                                (const unsigned char *)"no-store", 8, &p, end))
                        return -1;
                char ra[24];
                int ral = t->req.retry_after_s > 0 ? snprintf(ra, sizeof ra, "%lld", t->req.retry_after_s) : 0;
                if (ral > 0 && lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                                           (const unsigned char *)ra, ral, &p, end))
                        return -1;
                if (t->close_after &&
                    lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                                (const unsigned char *)"close", 5, &p, end))
                        return -1;
                if (lws_finalize_write_http_header(wsi, start, &p, end))
                        return -1;
                t->headers_sent = true;
                if (t->resp_len > 0) {
                        lws_callback_on_writable(wsi);
                        return 0;
                }
        } else if (t->resp_off < t->resp_len) {
                unsigned char buf[LWS_PRE + WRITE_CHUNK];
                size_t n = t->resp_len - t->resp_off;
                if (n > WRITE_CHUNK)
                        n = WRITE_CHUNK;
                memcpy(buf + LWS_PRE, t->resp + t->resp_off, n);
                t->resp_off += n;
                bool last = t->resp_off == t->resp_len;
                if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
                        return -1;
                if (!last) {
                        lws_callback_on_writable(wsi);
                        return 0;
                }
        }
        bool close = t->close_after;
        txn_free(TAKE_PTR(pss->txn));
        if (close)
                return -1;
        if (lws_http_transaction_completed(wsi))
                return -1;
        return 0;
}

int api_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len) {
        struct api_pss *pss = user;
        struct lws_context *ctx = lws_get_context(wsi);
        struct api *a = ctx ? lws_context_user(ctx) : NULL;

        switch (reason) {
        case LWS_CALLBACK_HTTP:
                return http_on_request(a, wsi, pss, in, len);
        case LWS_CALLBACK_HTTP_BODY:
                return http_on_body(a, wsi, pss->txn, in, len);
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (pss->txn && !pss->txn->responded)
                        txn_dispatch(a, wsi, pss->txn);
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                return http_on_writeable(wsi, pss);
        case LWS_CALLBACK_CLOSED_HTTP:
                if (pss) {
                        txn_free(TAKE_PTR(pss->txn));
                        /* accepted by the filter but never upgraded */
                        if (pss->ss)
                                stream_callback(a, wsi, LWS_CALLBACK_CLOSED, &pss->ss);
                }
                break;
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                if (!pss)
                        return -1;
                return stream_filter(a, wsi, &pss->ss);
        case LWS_CALLBACK_ESTABLISHED:
        case LWS_CALLBACK_SERVER_WRITEABLE:
        case LWS_CALLBACK_RECEIVE:
        case LWS_CALLBACK_TIMER:
        case LWS_CALLBACK_CLOSED:
                if (!pss)
                        return -1;
                return stream_callback(a, wsi, reason, &pss->ss);
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
                if (a)
                        stream_wake_all(a);
                return 0;
        default:
                break;
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
}
