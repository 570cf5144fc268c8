/* paddock-api internals shared by its feature files (never included outside
 * services/api). The HTTP layer (http.c) owns requests and responses;
 * handlers return >= 0 after filling req->status/req->out, or a negative errno
 * after api_fail() recorded a problem code and detail. Only http.c writes
 * error bodies. */
#pragma once
#include <jansson.h>
#include <libpq-fe.h>
#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/embedded.h"
#include "core/err.h"
#include "net/addr_policy.h"
#include "core/ids.h"
#include "core/macro.h"
#include "http/client_addr.h"
#include "kafka/kafka_config.h"
#include "pg/pg.h"
#include "s3/s3_config.h"
#include "service/service_config.h"
#include "paddock/v1/runs.pb-c.h"

extern const struct embedded_file api_migrations[];

struct api_settings {
        char *addr;
        struct service_settings svc;       /* log level, database (no ops port: ops.c serves on addr) */
        struct kafka_settings kafka;
        struct s3_settings s3;
        long long max_body;
        long long token_ttl_s;
        long long login_window_s;          /* failed-login rate limiting (ratelimit.c) */
        long long login_max_failures_user;
        long long login_max_failures_ip;
        char *trusted_proxies;             /* CIDRs whose X-Forwarded-For is believed */
        long long workers;                 /* serving processes; 0: one per online CPU */
        char *master_key;          /* sensitive; wiped once parsed into api.master_key */
        char *egress_floor;        /* PADDOCK_EGRESS_FLOOR (net/addr_policy.h), parsed into api.floor */
        char *oidc_http_nets;      /* PADDOCK_OIDC_HTTP_NETS, parsed into api.oidc_http_nets */
        long long prompt_max_bytes; /* PADDOCK_PROMPT_MAX_BYTES: largest rendered prompt of a run (prompt.c) */
        char *public_url;          /* PADDOCK_PUBLIC_URL; workload_identity_configure() normalises it */
        long long workload_key_rotate_days; /* PADDOCK_WORKLOAD_KEY_ROTATE_DAYS (workload_identity.c) */
        char *web_dir;             /* PADDOCK_WEB_DIR: the dashboard's built files (web.c); empty: none */
};

struct fanout_hub;

/* Process-wide state, created in main() and read (never written) by every thread. */
struct api {
        struct api_settings cfg;
        struct pg_pool *pg;
        struct kafka_producer *producer;
        struct bus_auth *auth;       /* signs as "api", verifies what the consumers read */
        struct s3_client *s3;
        struct lws_context *lws;
        struct fanout_hub *hub;
        char instance[UUID_STR_LEN]; /* this process, for producer names and group ids */
        uint8_t master_key[32];      /* wraps the tenants' data keys (secrets.c) */
        struct addr_floor *floor;    /* the platform egress floor: profile rules, the api's own fetches */
        struct addr_allow *oidc_http_nets;  /* where an OIDC URL may be plain http:// (literal IPs) */
        size_t n_oidc_http_nets;
        struct addr_allow trusted_proxies[HTTP_TRUSTED_PROXIES_MAX]; /* parsed cfg.trusted_proxies */
        size_t n_trusted_proxies;
        char public_url[512];        /* PADDOCK_PUBLIC_URL without a trailing '/' (workload_identity.c) */
        int web_fd;                  /* O_PATH directory of PADDOCK_WEB_DIR, -1 without a dashboard (web.c) */
};

/* Permissions a route needs (routes.c declares one per route, authz.c maps each
 * to the roles carrying it). Team-scoped permissions are checked against the
 * object's team by api_authz_team(); tenant_admin holds every permission in
 * every team of its tenant. PERM_ADMIN is tenant-wide (tenant_admin only). */
enum api_perm {
        PERM_NONE,      /* anyone, no token */
        PERM_USER,      /* any authenticated user */
        PERM_SELF,      /* any authenticated user, also one who must change its
                         * one-time password first (http.c refuses every other
                         * permission to such a caller) */
        PERM_VIEWER,
        PERM_SANDBOX_AUTHOR,
        PERM_LAUNCHER,
        PERM_REVIEWER,
        PERM_APPROVER,
        PERM_CANCEL,            /* launcher or approver */
        PERM_CATALOG_APPROVE,   /* security_admin */
        PERM_ADMIN,             /* tenant_admin (tenant-wide) */
};

struct api_caller {
        char user_id[UUID_STR_LEN];
        char tenant_id[UUID_STR_LEN];
        char username[256];
        char tenant_name[256];
        char token_sha256[65];
        bool tenant_admin;
        bool password_change_required; /* a one-time password not yet changed */
        bool via_cookie;               /* authenticated by the dashboard's session cookie (auth.c) */
        /* the tenant role auditor (issue 14 §3): read-only evidence and
         * audit across the tenant's teams, and legal holds */
        bool auditor;
        bool auditor_read; /* auditor, on a route api_auditor_route() allows: every team check passes */
};

#define API_MAX_PARAMS 4

struct api_req {
        struct api *api;
        struct lws *wsi;           /* for query arguments; lws thread only */
        const char *method;
        const char *params[API_MAX_PARAMS]; /* path captures, owned by the request */
        enum api_perm perm;
        const char *body;          /* NUL-terminated, may be NULL */
        size_t body_len;
        struct api_caller caller;  /* valid when perm != PERM_NONE */
        struct db *auth_db;        /* the token lookup's connection until db_open_caller() takes it */
        const PGresult *read;      /* the handler's read (api_read_fn, http.c), owned by the HTTP layer */
        const char *request_id;    /* X-Request-Id of the request, owned by the HTTP layer */
        /* response */
        int status;
        json_t *out;               /* owned; NULL for an empty body */
        char *text;                /* owned; a non-JSON body (metrics) */
        size_t text_len;           /* text's length when it is binary (0: strlen) */
        const char *content_type;  /* for text */
        char *location;            /* owned; Location header */
        long long retry_after_s;   /* > 0: Retry-After header (429) */
        /* the dashboard (web.c, auth.c's browser sessions) */
        char *set_cookie[2];       /* owned; Set-Cookie headers */
        const char *cache_control; /* static; NULL: no-store */
        /* problem */
        const char *pcode;
        char pdetail[512];
};

typedef int (*api_handler_fn)(struct api_req *r);
/* A handler's read: the one statement it needs, sent in the token
 * lookup's round trip (one round trip per request), before the caller is
 * known: it reads the caller's tenant and user from the settings the
 * lookup made (paddock.tenant_id, paddock.user_id; with an invalid token
 * there are none and it finds nothing). Fills *ret_step, its parameters
 * in params (the caller's, API_READ_PARAMS entries, pointing to static
 * storage or r's), and returns 0, or a negative errno to send no read (the
 * handler then answers, e.g. 404 for a malformed id). The result reaches
 * the handler in r->read, only once the caller passed every check of the
 * HTTP layer. */
#define API_READ_PARAMS 4
typedef int (*api_read_fn)(const struct api_req *r, const char **params, struct pg_step *ret_step);

/* ---- routes.c: the one route table */
struct api_route {
        const char *method;
        const char *pattern; /* "{x}" segments capture into req->params in order */
        api_handler_fn handler;
        enum api_perm perm;
};
/* The route for method and path, its captures in caps (the caller frees
 * them); NULL if none, with *ret_path_known true when the path is served
 * for another method (405 rather than 404). */
const struct api_route *routes_find(const char *method, const char *path, char **caps, bool *ret_path_known);

/* ---- http.c, body.c: the HTTP layer */

/* Records a problem for the HTTP layer and returns err (negative errno).
 * code may be NULL to derive it from err. */
int api_fail(struct api_req *r, int err, const char *code, const char *fmt, ...) _printf_(4, 5);
/* Maps err and an optional problem code to status/code/title: the one mapping
 * of the api (lib/http/problem.h for errno, our table for the extra codes). */
void api_problem_map(int err, const char *code, int *ret_status, const char **ret_code,
                     const char **ret_title);
/* The client's address (lib/http/client_addr.h): the socket peer, or, when
 * that is one of PADDOCK_TRUSTED_PROXIES, the rightmost X-Forwarded-For hop
 * that is not; "" when unknown. For login limits and audit records. */
void api_client_ip(struct lws *wsi, const struct api *a, char out[HTTP_CLIENT_ADDR_MAX]);
/* Copies query argument name (without '=') into buf; NULL if absent. */
const char *api_query(struct api_req *r, const char *name, char *buf, int len);
/* Parses the request body as a JSON object (duplicate keys rejected). On
 * failure records invalid_json/invalid_field and returns negative. */
int api_body_object(struct api_req *r, json_t **ret);
/* Fails with 400 unknown_field naming the first member of body that is not
 * in known (NULL-terminated). Returns 0 or that error. */
int api_known_fields(struct api_req *r, json_t *body, const char *const *known);
/* For a route that takes no body: none, or an empty JSON object; anything
 * else fails as api_body_object/api_known_fields do. Returns 0 or that error. */
int api_body_none(struct api_req *r);

struct http_txn;
struct stream_session;
/* Per-connection data of the one lws protocol. */
struct api_pss {
        struct http_txn *txn;      /* HTTP: the request in progress */
        struct stream_session *ss; /* websocket: the stream session */
        char ws_request_id[72];    /* websocket: X-Request-Id of the upgrade */
};

/* lws protocol callback of the one protocol (HTTP and websocket). */
int api_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);

/* ---- db.c: every request's queries go through db_open so the tenant setting
 * (for row-level security) is applied in one place. The setting is
 * transaction-local (docs/CONTRACTS.md "Tenant isolation in PostgreSQL"):
 * between db_open and db_close every statement runs inside a transaction
 * that carries it. Statements outside db_begin..db_commit/db_rollback are
 * committed together by the next db_begin or by db_close (as if each were
 * autocommitted, the way the handlers were written); db_begin, db_commit and
 * db_rollback each end the transaction they find and begin the next one
 * with the tenant, in one round trip. Never pg_begin/pg_commit/pg_rollback
 * on a db's connection. */
/* How long a handler waits for a pooled PostgreSQL connection. */
#define DB_ACQUIRE_TIMEOUT_MS 5000
struct db {
        struct pg_pool *pool;
        PGconn *conn;
        char tenant[UUID_STR_LEN]; /* the tenant every transaction of conn carries; "" none */
};
int db_open(struct db *d, struct api *a, const char *tenant_id, struct err_detail *e);
/* Commits what ran so far and begins the transaction of a unit of work. */
int db_begin(struct db *d, struct err_detail *e);
/* Commits (-EIO 25P02 if it had been aborted: rolled back) and goes on in a new transaction. */
int db_commit(struct db *d, struct err_detail *e);
/* Rolls back and goes on in a new transaction; errors ignored (failure paths). */
void db_rollback(struct db *d);
/* Makes tenant_id (a UUID, or NULL) the tenant of d from now on, in the
 * current transaction and the following ones (login: known only once its
 * name is looked up). */
int db_set_tenant(struct db *d, const char *tenant_id, struct err_detail *e);
/* db_open() as r's caller: takes over the connection the bearer token was
 * looked up on (its tenant setting already the caller's) the first time,
 * opens a fresh one after. */
int db_open_caller(struct db *d, struct api_req *r, struct err_detail *e);
void db_close(struct db *d);
static inline void db_closep(struct db *d) { db_close(d); }
#define _cleanup_db_ _cleanup_(db_closep)
static inline void PQclearp(PGresult **r) { if (*r) PQclear(*r); }
#define _cleanup_pgres_ _cleanup_(PQclearp)
/* json_decrefp comes from jansson >= 2.9 */
#define _cleanup_json_ _cleanup_(json_decrefp)
/* Value of row/col or NULL for SQL NULL. */
const char *db_val(const PGresult *res, int row, int col);
/* JSON string or null for a nullable column. */
json_t *db_json_str(const PGresult *res, int row, int col);
/* Translates a database failure into a problem (503 when unreachable, 500 otherwise). */
int db_fail(struct api_req *r, int err, const struct err_detail *e, const char *what);
/* The one lookup of a team's object by id: runs sql (params borrowed; $1 and
 * $2 are usually the id and the caller's tenant) and checks that the caller
 * holds r->perm in the team whose id is column team_col of its one row.
 * Returns 0 with *ret (caller owns); else the problem is recorded on r: 404
 * "<what> not found" when there is no row or the caller may not see its team
 * (no existence oracle), 403 when the caller sees it without r->perm, 503 or
 * 500 on a database failure. */
/* The id (into out) of the row of table in the caller's tenant that ref names:
 * its id, or its name in column name_col (unique per tenant); an id wins over
 * a name spelled like one. table and name_col are SQL identifiers the caller
 * writes, never input; what names the object in log messages. Returns 0,
 * -ENOENT (nothing recorded on r), or a database failure recorded on r. */
int db_resolve_ref(struct api_req *r, struct db *d, const char *table, const char *name_col, const char *what,
                   const char *ref, char out[UUID_STR_LEN]);
int db_load_team_row(struct api_req *r, struct db *d, const char *what, const char *sql, int nparams,
                     const char *const *params, int team_col, PGresult **ret);
/* SQL expression formatting a timestamptz column as RFC 3339 UTC (microseconds). */
#define DB_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* ---- auth.c */
int auth_hash_password(const char *password, char **ret_hash);
bool auth_verify_password(const char *password, const char *encoded);
/* The id of the tenant named name into out: 0, -ENOENT, or a database error.
 * The one lookup by tenant name before authentication (row-level security). */
int auth_tenant_id_by_name(struct db *d, const char *name, char out[UUID_STR_LEN], struct err_detail *e);
/* Resolves a bearer token into caller; -EKEYEXPIRED if it expired (e says
 * when and, for a service account, who issues a new one: the 401
 * token_expired detail), -EACCES if invalid or revoked. keep (optional)
 * receives the db of the lookup, in a transaction whose tenant is the
 * caller's (db_open_caller() takes it). */
int auth_lookup_token(struct api *a, const char *token, struct api_caller *caller, struct db *keep,
                      struct err_detail *e);
/* auth_lookup_token() and read (a handler's read, api_read_fn) in the same
 * round trip: without a BEGIN, in the one implicit transaction of the
 * lookup, which ends with it. *ret_read (caller PQclear()s it) is read's
 * result, NULL unless 0 is returned. No connection is kept (the route's
 * handler opens one if it needs more). */
int auth_lookup_token_read(struct api *a, const char *token, struct api_caller *caller, const struct pg_step *read,
                           PGresult **ret_read, struct err_detail *e);
/* auth_lookup_token() by the token's SHA-256 (hex), for a websocket opened
 * with a stream ticket, which names the token that asked for it. */
int auth_lookup_token_sha256(struct api *a, const char *token_sha256, struct api_caller *caller, struct db *keep,
                             struct err_detail *e);
/* Extracts the token from "Authorization: Bearer" (never from the URL). */
int auth_token_from_wsi(struct lws *wsi, char *buf, size_t size);
int auth_login(struct api_req *r);
int auth_logout(struct api_req *r);
int auth_me(struct api_req *r);
/* POST /v1/me/password {current_password, new_password}: 204; revokes the
 * user's other tokens and clears password_change_required. */
int auth_password_change(struct api_req *r);
/* Issues a login token for user_id of tenant_id inside the transaction the
 * caller began on d: stores its hash, audits "auth.login" (change borrowed,
 * may be NULL, hashed only, no secret), commits and answers 200 {token,
 * expires_at, user {id, username}}. On failure rolls back and records the
 * problem on r. Strings borrowed. Returns 0 or a negative errno. */
int auth_issue_token(struct api_req *r, struct db *d, const char *tenant_id, const char *user_id,
                     const char *username, json_t *change);
/* ---- auth.c: the dashboard's browser sessions (docs/CONTRACTS.md "Dashboard
 * sessions"). A session is a login token carried in an HttpOnly cookie
 * instead of an Authorization header; writes it authenticates also need
 * X-CSRF-Token, a value derived from the token (so bound to the session). */
#define AUTH_SESSION_COOKIE "paddock_session"
#define AUTH_CSRF_COOKIE "paddock_csrf"
#define AUTH_CSRF_HEADER "x-csrf-token:"
/* The session token from the Cookie header into buf: 0, or -ENOENT when
 * there is none (or it does not fit). */
int auth_session_from_wsi(struct lws *wsi, char *buf, size_t size);
/* The CSRF token of a session token: hex SHA-256 over a label and it. */
void auth_csrf_of(const char *token, char out[65]);
/* Whether the request's X-CSRF-Token is the one of token (constant time). */
bool auth_csrf_ok(struct lws *wsi, const char *token);
/* Records the Set-Cookie headers of a session on r: token and its CSRF
 * value for max_age_s seconds, or (token NULL) their removal. Secure when
 * PADDOCK_PUBLIC_URL is https. Returns 0 or -ENOMEM (problem recorded). */
int auth_session_cookies(struct api_req *r, const char *token, long long max_age_s);

/* ---- web.c: the dashboard's static files (docs/CONTRACTS.md "Dashboard") */
/* Opens cfg.web_dir into a->web_fd (-1 when empty). Returns 0 or a negative
 * errno with e saying why (bad configuration). */
int web_configure(struct api *a, struct err_detail *e);
/* Whether path (no query) is the dashboard's to answer: a GET outside the
 * api's own prefixes while PADDOCK_WEB_DIR is set. */
bool web_serves(const struct api *a, const char *method, const char *path);
/* Answers GET path from the web dir into r (text, text_len, content_type,
 * cache_control): 0, or -ENOENT with the problem recorded. */
int web_get(struct api_req *r, const char *path);
/* Whether path is one web_get may open: "/"-separated segments of
 * [A-Za-z0-9._-], none empty or starting with '.'. Pure, for unit tests. */
bool web_path_ok(const char *path);
/* The Content-Type of a file name by its extension, NULL if not served. */
const char *web_content_type(const char *name);
/* ---- authz.c */
/* 0 if the caller may act on team_id with perm; -EPERM if the
 * caller is a member of the team without a role carrying perm (403
 * forbidden; e's message is then the one detail of such a refusal, naming
 * the roles that carry perm, the team and the caller's roles in it:
 * db_fail() answers with it); -ENOENT if not a member or another tenant's
 * team (404, no existence oracle); other negative errno on database failure. */
int api_authz_team(struct db *d, const struct api_caller *c, const char *team_id,
                   enum api_perm perm, struct err_detail *e);
/* api_authz_team() folded into a query that already reads the object
 * (one round trip): API_AUTHZ_COLUMNS(m, p) are its four columns, over
 * "LEFT JOIN api.team_members m ON m.team_id = <team> AND m.tenant_id =
 * <tenant> AND m.user_id = <caller>", p the placeholder of
 * api_perm_roles(perm) (e.g. "$3"); api_authz_team_row() decides from them
 * (col: the first of the four; team_name the team's name) exactly as
 * api_authz_team() does. */
#define API_AUTHZ_COLUMNS(m, p)                                                                                 \
        m ".roles IS NOT NULL, coalesce(" m ".roles && " p "::text[], false), "                                 \
        "array_to_string(ARRAY(SELECT x FROM unnest(" m ".roles) x ORDER BY x), ', '), "                       \
        "array_to_string(" p "::text[], ', ')"
int api_authz_team_row(const struct api_caller *c, const PGresult *res, int row, int col, const char *team_name,
                       struct err_detail *e);
/* True if an auditor may call method on the route pattern (authz.c): the
 * reads of runs, events, artifacts and audit, and legal holds. */
bool api_auditor_route(const char *method, const char *pattern);
/* True if role is one of the roles of API.md. */
bool api_role_valid(const char *role);
/* 0 if the caller holds perm in some team of its tenant (PERM_USER: any
 * role in some team); -EPERM if not. For tenant-wide objects such as the
 * catalog. */
int api_authz_tenant(struct db *d, const struct api_caller *c, enum api_perm perm, struct err_detail *e);
/* The team roles carrying perm as a PostgreSQL text[] literal (static
 * storage), for queries that filter lists to what the caller may see. */
const char *api_perm_roles(enum api_perm perm);

/* ---- ratelimit.c: failed logins per (user, source address) and per source
 * address, counted in PostgreSQL (shared by every api worker and replica) */
/* Seconds until a login of tenant/username from ip (api_client_ip) may be
 * tried (0: now). ip may be "" (unknown): then only the user from unknown
 * sources is limited. Strings borrowed. */
int64_t ratelimit_login_check(struct api *a, const char *tenant, const char *username, const char *ip);
/* Counts a failed login against the user and the source. */
void ratelimit_login_failed(struct api *a, const char *tenant, const char *username, const char *ip);
/* A successful login clears the user's count from that source (not the
 * source's: one valid account must not reset a source that guesses at others). */
void ratelimit_login_succeeded(struct api *a, const char *tenant, const char *username, const char *ip);

/* ---- oidc.c: per-tenant OIDC configuration (tenant_admin) and the
 * token-for-token login exchange (anyone) */
/* The per-tenant JWKS caches; NULL on out-of-memory. _free accepts NULL. */
int oidc_config_get(struct api_req *r);
int oidc_config_put(struct api_req *r);
int oidc_config_delete(struct api_req *r);
int oidc_login(struct api_req *r);

/* ---- service_accounts.c: non-login principals (users rows of kind
 * 'service') and their API tokens (tenant_admin) */
int service_accounts_list(struct api_req *r);
int service_accounts_create(struct api_req *r);
int service_accounts_delete(struct api_req *r);
int service_accounts_token_create(struct api_req *r);
int service_accounts_token_revoke(struct api_req *r);

/* ---- teams.c */
int teams_list(struct api_req *r);
/* Resolves "team" (id or name) in the caller's tenant to a visible team id. */
int teams_resolve(struct api_req *r, struct db *d, const char *team, char out[UUID_STR_LEN]);
/* The ?team= filter of the lists: team NULL (no filter) or a team the caller
 * may see, by id or name, into out; one it cannot see is a 400 invalid_field
 * naming it. Returns 0 or a negative errno recorded on r. */
int teams_filter(struct api_req *r, struct db *d, const char *team, char out[UUID_STR_LEN]);
int teams_create(struct api_req *r);
int teams_get(struct api_req *r);
int teams_patch(struct api_req *r);
int teams_delete(struct api_req *r);

/* ---- users.c: users of the caller's tenant (tenant_admin) */
int users_list(struct api_req *r);
int users_create(struct api_req *r);
int users_patch(struct api_req *r);
int users_delete(struct api_req *r);

/* ---- members.c: role grants per team (tenant_admin) */
int members_list(struct api_req *r);
/* Validates roles (a JSON array at body member field, borrowed) into a
 * PostgreSQL text[] literal in out (role names are from a fixed list: no
 * quoting needed) and *ret_list (caller owns), duplicates collapsed; records
 * invalid_field naming the item ("field[i]"). */
int roles_literal(struct api_req *r, const char *field, json_t *roles, char *out, size_t size, json_t **ret_list);
/* PUT replaces the roles, PATCH {add, remove} changes them; both answer
 * {team, user, roles, added, removed}. */
int members_put(struct api_req *r);
int members_patch(struct api_req *r);

/* ---- spec_validate.c */
/* Validates spec (the value at JSON path "spec"); on error records the
 * problem on r and returns negative. */
int spec_validate(struct api_req *r, json_t *spec);
/* sha256 hex of json_dumps(spec, JSON_SORT_KEYS|JSON_COMPACT); ret owned by caller. */
int spec_canonical(json_t *spec, char **ret_json, char sha_hex[65]);
/* Parses a "0644"-style mode (3-4 octal digits, at most 0777). */
int spec_parse_mode(const char *s, unsigned *ret);
/* A relative path without "..", empty components or a leading "/". */
bool spec_path_ok(const char *p, size_t len);
/* Parses one egress.allow entry (CONTRACTS.md "Egress rules"): a host rule
 * "host[:port]" / "*.domain[:port]" (lib/net/host_match.h), or an IP rule
 * "a.b.c.d[/n][:port]", "v6[/n]" or "[v6[/n]]:port" (lib/net/addr_policy.h).
 * Writes the normalized host ("*.example.com", "10.0.0.0/8", "::1") into host,
 * the port (0 = 80 and 443) and whether it is an IP rule. -EINVAL with e. */
int spec_egress_rule_parse(const char *s, char *host, size_t size, uint32_t *ret_port, bool *ret_ip,
                           struct err_detail *e);
/* The https origin of a validated or unvalidated spec.secrets[].as.header
 * (CONTRACTS.md "Secret destinations"): {"origin": "https://host[:port]"}
 * (a name or a canonical IP literal, IPv6 in brackets; port default 443) or
 * the older {"host": "name"}, meaning https://name:443. Writes the lower-case
 * host (IPv6 without brackets) and the port. -EINVAL with e (optional; e->code
 * is the offending key, "origin" or "host"). */
int spec_header_origin(json_t *hdr, char *host, size_t size, uint16_t *ret_port, struct err_detail *e);
/* Where a rule parsed by spec_egress_rule_parse (host, ip) may lead
 * (CONTRACTS.md "The platform egress floor"): nowhere inside the floor (a
 * range wholly inside it, a name like localhost or metadata.google.internal);
 * for an inline rule of a definition (inline_rule), public addresses only
 * (a private, carrier-NAT or reserved range needs an approved catalog egress
 * profile). Returns 0 or -EINVAL with e saying why (no field name). */
int spec_egress_rule_reach(struct addr_floor *floor, const char *host, bool ip, bool inline_rule,
                           struct err_detail *e);
/* True for a team secret name: [A-Z_][A-Z0-9_]{0,63}. */
bool spec_secret_name_ok(const char *s);
/* An HTTP header name a secret may set (a token, not a framing or proxy header). */
bool spec_header_name_ok(const char *s);
#define SPEC_CPUS_MIN 0.1
#define SPEC_CPUS_MAX 64.0

/* ---- prompt.c: prompt templates and the prompt of a run (docs/CONTRACTS.md
 * "Prompt templates"). -EINVAL with e naming the field on bad input. */
/* Validates a prompt-templates catalog body {description?, body, variables}. */
int prompt_template_validate(json_t *body, struct err_detail *e);
/* Checks a definition's fixed values (spec.prompt.vars) against the template. */
int prompt_check_fixed(json_t *tpl_body, json_t *vars, struct err_detail *e);
/* Renders the template with the fixed values and defaults, leaving "{{name}}"
 * where a run fills the value; *ret (malloc'd) and *ret_open (the
 * declarations of the variables a run may fill) owned by the caller. */
int prompt_preview(json_t *tpl_body, json_t *fixed, char **ret, json_t **ret_open, struct err_detail *e);
/* What a launch gives: prompt_vars (an object, borrowed, may be NULL), free
 * text (a JSON string, borrowed, or NULL), and the rendered size limit. */
struct prompt_input {
        json_t *vars;
        json_t *free_text;
        size_t max_bytes;
};
/* The prompt of a run of spec: *ret = {template, template_name,
 * template_version (the approved body's content_sha256), vars (what the launch
 * gave), rendered, rendered_sha256}, or NULL when spec has no prompt (owned by
 * the caller). -EINVAL naming prompt_vars.<name> or prompt; -EEXIST when the
 * template is no longer approved or no longer fits the definition. */
int prompt_for_run(struct db *d, const char *tenant_id, json_t *spec, const struct prompt_input *in, json_t **ret,
                   struct err_detail *e);

/* ---- catalog.c: the governance catalog */
bool catalog_kind_valid(const char *kind);
bool catalog_name_ok(const char *s);
/* A connectors item's name: [a-z0-9_], no "__", no "_" at either end (the
 * MCP server name the CLIs put in mcp__<server>__<tool>, docs/CONTRACTS.md
 * "MCP connectors"). */
bool catalog_connector_name_ok(const char *s);
/* The origin of an http connector's url "http(s)://host[:port][/path]":
 * writes the lower-case host (IPv6 without brackets), the port (default 80
 * or 443) and whether it is https. Returns 1 for an IP literal, 0 for a
 * name, -EINVAL with e. */
int catalog_connector_origin(const char *url, char *host, size_t size, uint16_t *ret_port, bool *ret_tls,
                             struct err_detail *e);
/* Validates the kind-specific body of an item (-EINVAL, e names the field);
 * floor (borrowed, may be NULL) refuses egress-profile rules and models
 * upstreams inside it. */
int catalog_validate_body(struct addr_floor *floor, const char *kind, json_t *body, struct err_detail *e);
/* Loads item ref (id or name) of kind: {id, name, state, body}; -ENOENT if none. */
int catalog_lookup(struct db *d, const char *tenant_id, const char *kind, const char *ref, json_t **ret,
                   struct err_detail *e);
int catalog_list(struct api_req *r);
int catalog_create(struct api_req *r);
int catalog_get(struct api_req *r);
int catalog_patch(struct api_req *r);
int catalog_approve(struct api_req *r);
int catalog_import_skills_main(struct api *a, int argc, char **argv);

/* ---- policy.c: the resolved policy of a spec (run snapshot and effective-policy) */
#define POLICY_DEFAULT_TIMEOUT_S 1800
#define POLICY_DEFAULT_CPUS 1.0
#define POLICY_DEFAULT_MEMORY_MB 2048
#define POLICY_DEFAULT_DISK_MB 2048
#define POLICY_DEFAULT_PIDS 512
#define POLICY_ASK_TIMEOUT_S 300       /* spec.policy.ask_timeout_s's default */
#define POLICY_ASK_TIMEOUT_MAX_S 86400
#define POLICY_RULES_MAX 256            /* spec.policy.rules, a policy pack's body.rules */
#define POLICY_EFFECTIVE_RULES_MAX 1024 /* the definition's and its packs' together (lib/policy's bound) */
/* Resolves a validated spec against the tenant's catalog: {image, image_id?,
 * egress {rules [{host, port, source}] in evaluation order, profiles, unknown,
 * ask_timeout_s}, limits (defaults applied), files [{path, content, mode,
 * source}] (spec files, then skills), skills, secrets [{name, as}], prompt
 * (rendered or null), prompt_template?, policy {rules [{match, action,
 * source}] (the definition's, then each pack's in order), packs [{id, name}],
 * ask_timeout_s}}. -EINVAL with e naming the spec field when an item is
 * missing or not approved or the prompt vars do not fit. */
int policy_resolve(struct db *d, const char *tenant_id, json_t *spec, json_t **ret, struct err_detail *e);
int policy_effective(struct api_req *r);

/* ---- lists.c: query arguments of lists and their pages (keyset cursors) */
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000
/* SQL: a row's list key, created_at in microseconds since the epoch (exact). */
#define LIST_KEY_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
/* SQL: the microseconds parameter p (e.g. "$5") as a timestamptz (exact). */
#define LIST_US_TS(p) "(timestamptz 'epoch' + " p "::bigint * interval '1 microsecond')"
/* SQL: team column col is one the caller may view: tenant_admin ($admin
 * true), or a member with a role carrying PERM_VIEWER ($roles, from
 * api_perm_roles()); parameters are placeholders such as "$2". */
#define LIST_TEAM_VISIBLE(col, admin, user, roles)                                                  \
        "(" admin "::boolean OR " col " IN (SELECT m.team_id FROM api.team_members m WHERE m.user_id = " \
        user "::uuid AND m.roles && " roles "::text[]))"
typedef int (*api_query_value_fn)(struct api_req *r, const char *value, void *userdata);
/* Calls fn(r, value, userdata) for every value of query argument name in the
 * order given: each occurrence, split at commas when split (empty pieces
 * skipped); values are URL-decoded, borrowed for the call. Returns the number
 * of values, or the first negative return of fn (which recorded the problem). */
int api_query_each(struct api_req *r, const char *name, bool split, api_query_value_fn fn, void *userdata);
/* The one value of query argument name, copied into buf; *ret = buf, or NULL
 * when absent or empty. Given twice or longer than size - 1: 400
 * invalid_field naming it (returns negative). */
int api_query_single(struct api_req *r, const char *name, char *buf, size_t size, const char **ret);
/* Query argument name as an RFC 3339 date-time, in microseconds since the
 * epoch (decimal text in out_us); *ret = out_us or NULL when absent. A bad
 * value: 400 invalid_field naming it. */
int api_query_time(struct api_req *r, const char *name, char out_us[24], const char **ret);
/* A page of a keyset list: limit (default LIST_DEFAULT_LIMIT) and, after a
 * cursor, the key to continue after. */
struct list_page {
        long limit;
        char limit_plus_one[24];          /* the query's LIMIT: one more row says a next page exists */
        const char *after_us, *after_id;  /* NULL on the first page; else point into key_us, key_id */
        char key_us[24];
        char key_id[UUID_STR_LEN];
};
/* Reads ?limit= (1..LIST_MAX_LIMIT) and ?cursor= into p; a bad value is 400
 * invalid_field naming limit or cursor. */
int list_page_parse(struct api_req *r, struct list_page *p);
typedef json_t *(*list_row_fn)(const PGresult *res, int row);
/* Answers 200 {items, next_cursor} from res (ordered newest first, queried
 * with LIMIT p->limit_plus_one): the first p->limit rows through row_json,
 * and next_cursor from the key (columns us_col, id_col) of the page's last
 * row when res holds more, else null. res borrowed. */
int list_answer(struct api_req *r, const struct list_page *p, const PGresult *res, list_row_fn row_json, int us_col,
                int id_col);

/* ---- sandboxes.c */
int sandboxes_create(struct api_req *r);
int sandboxes_get(struct api_req *r);
int sandboxes_put_draft(struct api_req *r);
int sandboxes_publish(struct api_req *r);
int sandboxes_get_version(struct api_req *r);
/* GET /v1/sandboxes?team=&name=&limit=&cursor= */
int sandboxes_list(struct api_req *r);
/* The id of the caller's tenant's sandbox ref (its id or its name) into out:
 * 0, -ENOENT (no such sandbox; nothing recorded on r), or a database error
 * recorded on r. Visibility is the caller's to check (api_authz_team). */
int sandboxes_resolve(struct api_req *r, struct db *d, const char *ref, char out[UUID_STR_LEN]);

/* ---- runs.c */
int runs_create(struct api_req *r);
int runs_get(struct api_req *r);
/* GET /v1/runs/{id}'s read (api_read_fn): the run and the caller's roles in its team */
int runs_get_read(const struct api_req *r, const char **params, struct pg_step *ret_step);
/* POST /v1/runs/{id}/relaunch: a new run of the run's sandbox version, team and inputs. */
int runs_relaunch(struct api_req *r);
/* A terminal status is shown only once the run's history is complete
 * (evidence.run_history, issue 10 decision 5): until then the run shows the
 * last non-terminal status it had (running if it started, else
 * provisioning). A terminal run with no history row and no node (ended
 * before any node was involved) has nothing to wait for. */
#define RUNS_TERMINAL_HIDDEN                                                                                   \
        "(r.status IN ('succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected')"         \
        " AND NOT coalesce(h.complete, r.node_id IS NULL))"
#define RUNS_SHOWN_STATUS                                                                                      \
        "(CASE WHEN " RUNS_TERMINAL_HIDDEN " THEN CASE WHEN r.started_at IS NOT NULL THEN 'running'"           \
        " ELSE 'provisioning' END ELSE r.status END)"
/* The public Run object: RUNS_SELECT's columns (FROM api.runs r and its
 * joins; add WHERE ...) as JSON, column RUNS_COL_KEY_US its list key. */
#define RUNS_SELECT                                                                                          \
        "SELECT r.id, " RUNS_SHOWN_STATUS ", r.team_id, r.sandbox_id, r.version, r.node_id, " DB_TS("r.created_at") ", " \
        DB_TS("r.started_at") ", " DB_TS("r.ended_at") ", r.exit_code, r.reason, r.created_by, "          \
        DB_TS("r.scheduled_at") ", s.name, t.name, u.username, r.relaunch_of, " LIST_KEY_US("r.created_at")  \
        ", " RUNS_TERMINAL_HIDDEN ", coalesce(h.events_stored, 0), h.terminal_seq, h.events_lost"           \
        ", r.review::text" /* 22: the latest review {outcome, by, at} (reviews.c) */                       \
        " FROM api.runs r JOIN api.sandboxes s ON s.id = r.sandbox_id AND s.tenant_id = r.tenant_id"          \
        " JOIN api.teams t ON t.id = r.team_id AND t.tenant_id = r.tenant_id"                               \
        " JOIN api.users u ON u.id = r.created_by AND u.tenant_id = r.tenant_id"                            \
        " LEFT JOIN evidence.run_history h ON h.run_id = r.id "
#define RUNS_COL_KEY_US 17
json_t *runs_row_json(const PGresult *res, int row);

/* ---- run_lists.c: GET /v1/runs?team=&status=&sandbox=&launched_by=&from=&to=&limit=&cursor= */
int runs_list(struct api_req *r);

/* ---- nodes.c: runner nodes as the scheduler last heard of them (its view
 * scheduler.node_status) */
int nodes_list(struct api_req *r);
/* 1 if a ready node has built image (a catalog image name), 0 if none has,
 * or a negative errno (-EAGAIN when the scheduler's view does not exist yet). */
int nodes_image_ready(struct db *d, const char *image, struct err_detail *e);

/* ---- usage.c: GET /v1/usage?from=&to=&group_by=&team= (billing's tables) */
int usage_get(struct api_req *r);
/* Loads run id visible to caller with perm on its team: fills team/status.
 * -ENOENT if not visible, -EPERM if visible without perm (api_authz_team). */
int runs_load_visible(struct api *a, const struct api_caller *c, const char *run_id, enum api_perm perm,
                      char team_out[UUID_STR_LEN], char *status_out, size_t status_size,
                      struct err_detail *e);
bool runs_status_terminal(const char *status);
/* POST /v1/runs/{id}/cancel (run_cancel.c). */
int runs_cancel(struct api_req *r);

/* ---- control.c: paddock.runs.control (RunControl, key run id) */
/* Queues rc (its env is filled here) for run_id of tenant_id in the outbox
 * on d, inside d's current transaction: it goes out when that commits.
 * rc and the strings are borrowed. Returns 0 or a negative errno (e filled). */
int control_enqueue(struct api *a, struct db *d, const char *tenant_id, const char *run_id,
                    Paddock__V1__RunControl *rc, struct err_detail *e);

/* ---- secrets.c: team secrets, encrypted at rest */
int secrets_put(struct api_req *r);
int secrets_list(struct api_req *r);
int secrets_delete(struct api_req *r);
/* Opens the secret name of team_id into a new buffer (*ret, *ret_len; the
 * caller wipes and frees it). -ENOENT if it is not set; -EBADMSG if it does
 * not authenticate (wrong master key); other negative errno (database). */
int secrets_open(struct api *a, PGconn *conn, const char *tenant_id, const char *team_id, const char *name,
                 uint8_t **ret, size_t *ret_len, struct err_detail *e);

/* ---- sealing.c: secrets sealed to a run's key (status consumer thread) */
/* Handles a provisioning status event carrying public_key (base64): seals the
 * run's secrets and produces RunControl{secrets}, or RunControl{cancel} if one
 * is not set. >= 0 when done (or nothing to do); negative errno when transient. */
int sealing_on_provisioning(struct api *a, const char *tenant_id, const char *run_id, const char *public_key_b64,
                            struct err_detail *err);

/* ---- workload_identity.c: the api as an OIDC issuer for runs (docs/CONTRACTS.md
 * "Workload identity") */
/* Checks and normalises cfg.public_url into a->public_url (default
 * http://<PADDOCK_API_ADDR>). 0 or -EINVAL with e naming the reason. */
int workload_identity_configure(struct api *a, struct err_detail *e);
int workload_identity_discovery(struct api_req *r);
int workload_identity_jwks(struct api_req *r);
/* POST /v1/tenant/workload-identity/rotate: a new signing key now. */
int workload_identity_rotate(struct api_req *r);
/* POST /v1/tenants/{tenant}/oidc/introspect {token}: RFC 7662, public;
 * active only while the token's run has not ended. */
int workload_identity_introspect(struct api_req *r);
/* The token of one spec.identity entry of a run (sealing.c): RS256 JWT
 * signed with the tenant's current key (made first if there is none or it is
 * due), sub naming tenant, team, definition and run, aud, exp = now + ttl_s.
 * c holds the claims' inputs (borrowed). *ret (caller wipes and frees) is the
 * NUL-terminated token; it is never logged. Runs on conn (tenant setting
 * applied, inside the caller's transaction). 0 or negative errno with e. */
struct workload_claims {
        const char *tenant_id, *team_id, *sandbox_id, *run_id, *audience;
        long long version;
        long long ttl_s;
};
int workload_identity_mint(struct api *a, PGconn *conn, const struct workload_claims *c, char **ret, size_t *ret_len,
                           struct err_detail *e);

/* ---- approvals.c */
int approvals_list(struct api_req *r);
/* GET /v1/approvals/{id}: the approval, for an approver of its run's team. */
int approvals_get(struct api_req *r);
int approvals_decide(struct api_req *r);
/* Status consumer: approval_requested / approval_decided events of run_id at seq. */
int approvals_on_requested(struct api *a, const char *tenant_id, const char *run_id, uint64_t seq, json_t *data, struct err_detail *err);
int approvals_on_decided(struct api *a, const char *tenant_id, const char *run_id, uint64_t seq, int64_t ts_us, json_t *data,
                         struct err_detail *err);
/* The run reached a terminal status (status consumer, in the transaction
 * applying it, d): its approvals still pending become `cancelled` (or
 * `expired` past their deadline), each announced on paddock.approvals. */
int approvals_on_run_ended(struct api *a, struct db *d, const char *tenant_id, const char *run_id,
                           struct err_detail *e);

/* ---- events.c */
int events_list(struct api_req *r);
/* Loads events of run with seq > after (at most limit) as a JSON array of
 * event objects; with signatures, each also has signer, signature and
 * signed_value (base64; null for unsigned history). -EAGAIN if
 * evidence.run_events does not exist yet. */
int events_query(struct db *d, const char *tenant_id, const char *run_id, int64_t after,
                 int limit, bool signatures, json_t **ret, struct err_detail *e);

/* {"<record id>": {signer, signature, signed_value}} for the records the
 * events of items (events_query with signatures) name; each event takes its
 * record's signer. *ret owned by the caller. */
int events_records_query(struct db *d, json_t *items, json_t **ret, struct err_detail *e);

/* ---- reviews.c, tenant_keys.c, evidence_bundle.c: reviews of finished runs
 * and their signed evidence bundles (docs/CONTRACTS.md "Reviews and the
 * signed evidence bundle"; issue 14 §1, §2) */
int reviews_create(struct api_req *r);
int reviews_list(struct api_req *r);
/* The run's reviews, oldest first, as review objects (*ret owned by the caller). */
int reviews_query(struct db *d, const char *tenant_id, const char *run_id, json_t **ret, struct err_detail *e);
/* GET /v1/tenant/keys: the tenant's evidence-signing public keys. */
int tenant_keys_list(struct api_req *r);
/* Signs msg (len bytes, borrowed) with the tenant's active evidence key,
 * made first if it has none, on conn inside the caller's transaction (the
 * tenant setting applied): the 64-byte Ed25519 signature into sig and the
 * key's kid into ret_kid. 0 or negative errno with e. */
/* The kid of the tenant's active evidence key (made first if it has none),
 * on conn inside the caller's transaction. 0 or negative errno with e. */
int tenant_keys_active(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                       struct err_detail *e);
int tenant_keys_sign(struct api *a, PGconn *conn, const char *tenant_id, const void *msg, size_t len,
                     uint8_t sig[64], char *ret_kid, size_t kid_size, struct err_detail *e);
int evidence_bundle_get(struct api_req *r);

/* ---- artifacts.c */
int artifacts_list(struct api_req *r);
int artifacts_get(struct api_req *r);

/* ---- audit_api.c: audit records of control-plane writes (CONTRACTS.md
 * "Audit chain") and GET /v1/audit, GET /v1/audit/verify */
/* Queues the audit record of a write by r's caller (actor "user:<id>",
 * tenant and client IP from r) in api.outbox on d, inside the write's
 * transaction (d's tenant setting is the caller's): call it after the write
 * succeeded and before COMMIT, so the record is committed exactly when the
 * write is; the relay delivers it to paddock.audit. change (borrowed, may be
 * NULL) is what was written; it is hashed, never sent, and must hold no
 * secret. outcome is "success" or "failure". Returns 0, or a negative errno
 * after recording a 503 "unavailable" problem on r: a write that cannot be
 * audited must not be acknowledged, so the handler rolls it back. */
int api_audit(struct api_req *r, struct db *d, const char *action, const char *object_type, const char *object_id,
              const char *outcome, json_t *change);
/* Like api_audit() for a request without an authenticated caller (failed
 * logins), on a connection of its own: actor "user:anonymous", tenant_id
 * given (NULL/empty: nothing is audited, returns 0), detail (borrowed, may be
 * NULL, no secrets: e.g. the attempted username) sent as detail_json. Does
 * not touch r's problem. */
int api_audit_anonymous(struct api_req *r, const char *tenant_id, const char *action,
                        const char *object_type, const char *object_id, const char *outcome,
                        json_t *detail, struct err_detail *e);
/* Queues the audit record of an operator command's write (bootstrap,
 * import-skills) on d, in its transaction, actor
 * "service:paddock-api-operator"; the serving api's relay delivers it.
 * 0 or -errno. */
int api_audit_operator(struct api *a, struct db *d, const char *tenant_id, const char *action,
                       const char *object_type, const char *object_id, json_t *change, struct err_detail *e);
int audit_api_list(struct api_req *r);
int audit_api_verify(struct api_req *r);

/* ---- ops.c */
int ops_healthz(struct api_req *r);
int ops_readyz(struct api_req *r);
int ops_metrics(struct api_req *r);

/* ---- stream.c: websocket /v1/runs/{id}/stream */
struct stream_session;
/* Checks a websocket upgrade of /v1/runs/{id}/stream (token, run,
 * PERM_VIEWER): 0 with *ret set when accepted, else the HTTP status to
 * refuse it with (the HTTP layer answers and logs it). caller receives the
 * authenticated caller, if any (user_id "" otherwise). */
int stream_filter(struct api *a, struct lws *wsi, struct stream_session **ret, struct api_caller *caller);
int stream_callback(struct api *a, struct lws *wsi, enum lws_callback_reasons reason,
                    struct stream_session **ssp);
void stream_wake_all(struct api *a);
int stream_plain_http(struct api_req *r);
/* POST /v1/runs/{id}/stream-ticket (PERM_VIEWER in the run's team): 201
 * {ticket, run, expires_at, expires_in_s}, a single-use ticket for the
 * websocket (?ticket=) valid 30 s, stored as its SHA-256, bound to the
 * caller's user, tenant, token and the run. */
int stream_ticket_create(struct api_req *r);

/* ---- fanout.c: live RunEvents for websocket viewers */
struct fanout_sub;
/* One event as a websocket message, encoded once and shared by every viewer
 * of the run (reference counted; the lws thread writes buf + LWS_PRE, lws
 * puts the frame header in the headroom). seq 0: a platform verdict whose
 * seq evidence assigns (len 0, nothing to send: the stream reads it from
 * history). */
struct fanout_msg {
        int refs; /* __atomic: taken on the fan-out thread, dropped on the lws thread */
        uint64_t seq;
        bool terminal;
        int64_t queued_us; /* wall clock when the fan-out queued it; 0 if from history */
        size_t len;
        unsigned char buf[]; /* LWS_PRE + len + 1 (NUL) */
};
/* The public event JSON of docs/CONTRACTS.md as a message with one
 * reference; NULL on out-of-memory. data is borrowed. */
struct fanout_msg *fanout_event_msg(const char *run_id, uint64_t seq, const char *ts, const char *kind,
                                    const char *actor, json_t *data);
struct fanout_msg *fanout_msg_ref(struct fanout_msg *m);
/* Drops one reference (NULL accepted); returns NULL. */
struct fanout_msg *fanout_msg_unref(struct fanout_msg *m);
/* Latency of one hop of the live path (runner -> Kafka -> fan-out -> websocket
 * write), logged at debug level about once a second as "stream timings"
 * (bench/stream.py reads them: issue 10 §4 asks where the time goes). One
 * per thread, no lock: 1 ms buckets up to FANOUT_HOP_BUCKETS - 1 ms. */
#define FANOUT_HOP_BUCKETS 1001
struct fanout_hop {
        const char *name;
        uint64_t n;
        int64_t sum_us, max_us;
        uint32_t hist[FANOUT_HOP_BUCKETS];
};
void fanout_hop_add(struct fanout_hop *h, int64_t us);
/* Logs and resets every hop of hops[0, n) that has samples, at most once a
 * second (*last_us: the caller's monotonic time of the last log; NULL: now). */
void fanout_hops_flush(struct fanout_hop *hops, size_t n, int64_t *last_us);
int fanout_start(struct api *a);
void fanout_stop(struct api *a);
/* Registers interest in run_id; messages queue until drained. */
struct fanout_sub *fanout_subscribe(struct fanout_hub *h, const char *run_id);
void fanout_unsubscribe(struct fanout_hub *h, struct fanout_sub *s);
/* Takes the queued messages, in order: swaps the subscriber's queue with
 * *q (capacity *cap, emptied by the caller, who owns one reference of each
 * message returned); returns how many. No allocation in the steady state. */
size_t fanout_drain(struct fanout_hub *h, struct fanout_sub *s, struct fanout_msg ***q, size_t *cap);

/* ---- status_consumer.c */
int status_consumer_start(struct api *a);
/* ---- outbox.c: the one outbox of everything the api sends (CONTRACTS.md
 * "The api's outbox") and its relay, which produces it in order from one
 * worker of the deployment at a time (a PostgreSQL advisory lock) */
/* Queues value (len bytes, borrowed) for topic under key in api.outbox on
 * conn, inside the caller's transaction, whose tenant setting must be
 * tenant_id (row-level security): it is sent exactly when that transaction
 * commits, never if it rolls back. Returns 0 or a pg_exec() error. */
int outbox_put(PGconn *conn, const char *tenant_id, const char *topic, const char *key, const void *value,
               size_t len, struct err_detail *e);
int outbox_relay_start(struct api *a);
void outbox_relay_stop(void);
void status_consumer_stop(void);
/* Registers the consumer's processed/skipped/retries counters; call once from main(). */
void status_consumer_register_metrics(void);

/* ---- bootstrap.c */
int bootstrap_main(struct api *a, int argc, char **argv);
/* Applies the api schema's migrations, waiting up to wait_s for PostgreSQL
 * (stops early on shutdown); logs the outcome. Returns as pg_migrate_wait(). */
int api_migrate(struct api *a, int wait_s);

/* metrics (main.c) */
extern struct metric api_metric_requests;
extern struct metric api_metric_runs_launched;
extern struct metric api_metric_ws_sessions;
extern struct metric api_metric_status_updates;

/* ---- budgets.c: team budgets per month (docs/CONTRACTS.md "Budgets") */
int budgets_get(struct api_req *r);
int budgets_put(struct api_req *r);
/* For a launch in team_id (runs.c): 0 if no limit of the team's budget is
 * used up this business month, else 402 quota_exceeded naming the limit
 * (recorded on r). */
int budgets_launch_check(struct api_req *r, struct db *d, const char *team_id);
/* Stamps the run just inserted (in d's transaction) with the business month
 * it counts in. Returns >= 0 or a negative errno (e filled). */
int budgets_stamp_run(struct db *d, const char *tenant_id, const char *run_id, struct err_detail *e);
/* After a status or usage event of run_id (status consumer): records and
 * announces the thresholds its team's budget crossed, and at 100 % stops the
 * team's runs, in one transaction of its own. Returns 0 or a transient
 * negative errno (err filled). */
int budgets_on_run(struct api *a, const char *tenant_id, const char *run_id, struct err_detail *err);

/* ---- usage.c: the range of days GET /v1/usage and /v1/governance/metrics take */
/* Query argument name as a UTC day "YYYY-MM-DD" in out: a full-date, or an
 * RFC 3339 date-time (its UTC day). *ret = out, or NULL when absent; a bad
 * value: 400 invalid_field naming it. */
int usage_day_arg(struct api_req *r, const char *name, char out[11], const char **ret);
/* The defaults of an absent end: to = today (UTC), from = the 1st of to's month. */
void usage_default_range(char from_day[11], const char **from, char to_day[11], const char **to);

/* ---- governance.c: GET /v1/governance/metrics (docs/CONTRACTS.md "Governance metrics") */
int governance_metrics(struct api_req *r);
/* ---- retention.c, holds.c: retention and legal hold (issue 14 §3;
 * docs/CONTRACTS.md "Retention and legal hold") */
/* GET/PUT /v1/tenant/retention {default_days, max_days} (tenant_admin; GET auditor too). */
int retention_get(struct api_req *r);
int retention_put(struct api_req *r);
/* The tenant's max_days into *ret (spec.retention_days is checked against
 * it); 0 or the problem recorded on r. */
int retention_max_days(struct api_req *r, long long *ret);
/* Adds "retention" ({days, expires_at, held} once the run ended, else null)
 * and "deleted" ({at, reason, sha256, events, artifacts} once its evidence
 * was swept, else null) to out (a run's JSON). 0 or the problem recorded on r. */
int retention_run_annotate(struct api_req *r, const char *run_id, json_t *out);
/* 0 while the run's evidence is kept; once a retention sweep began on it,
 * 410 gone recorded on r (its events and artifacts). */
int retention_run_gone(struct api_req *r, const char *run_id);
/* PUT/DELETE /v1/holds/{kind}/{id} {reason}, GET /v1/holds?kind= (tenant_admin, auditor). */
int holds_put(struct api_req *r);
int holds_delete(struct api_req *r);
int holds_list(struct api_req *r);
