/* The HTTP layer (http.c, body.c): requests, bodies and the one place errors become problem bodies,
 * through the one errno vocabulary of lib/http/problem.h. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- http.c, body.c: the HTTP layer */

/* Records a problem for the HTTP layer and returns err (negative errno).
 * code may be NULL to derive it from err. */
int api_fail(struct api_req *r, int err, const char *code, const char *fmt, ...) _printf_(4, 5);
/* Records the problem of err for the HTTP layer and returns err: its
 * status and code come from the one errno table (lib/http/problem.c:
 * -ENOENT 404 not_found, -EEXIST/-EBUSY 409 conflict, -EINVAL 400
 * invalid_field, ...); fmt is the detail. The way a handler fails;
 * api_fail() only for a finer code of the same errno (missing_field,
 * rate_limited, ...). */
int api_errno(struct api_req *r, int err, const char *fmt, ...) _printf_(3, 4);
/* Maps err and an optional problem code to status/code/title (lib/http/problem.h). */
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
