/* The api process (settings, shared state) and one request as every handler sees it: a handler
 * fills r->status and r->out and returns >= 0, or returns the negative errno api_fail()/api_errno()
 * recorded (http.h); only http.c writes error bodies. */
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
        char *operator_tenant;     /* PADDOCK_OPERATOR_TENANT: whose admins drain nodes (nodes_drain.c) */
        long long workload_key_rotate_days; /* PADDOCK_WORKLOAD_KEY_ROTATE_DAYS (workload_identity.c) */
        char *web_dir;             /* PADDOCK_WEB_DIR: the dashboard's built files (web.c); empty: none */
        long long oidc_discovery_ttl_s; /* PADDOCK_OIDC_DISCOVERY_TTL_S: the discovery cache (oidc_flow.c) */
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
        char *set_cookie[3];       /* owned; Set-Cookie headers (session, CSRF, the OIDC sign-in) */
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
