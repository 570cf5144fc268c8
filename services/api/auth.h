/* Authentication (auth.c): passwords, bearer tokens, logins and the dashboard's cookie sessions. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- auth.c */
/* The hex SHA-256 of s: what a bearer token or a stream ticket is stored
 * and looked up as (never the token itself). */
void auth_sha256_hex(const char *s, char out[65]);
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
/* The value of the request's cookie named cookie into buf, as above. */
int auth_cookie_from_wsi(struct lws *wsi, const char *cookie, char *buf, size_t size);
/* The CSRF token of a session token: hex SHA-256 over a label and it. */
void auth_csrf_of(const char *token, char out[65]);
/* Whether the request's X-CSRF-Token is the one of token (constant time). */
bool auth_csrf_ok(struct lws *wsi, const char *token);
/* "; Secure" when PADDOCK_PUBLIC_URL is https, else "": the attribute of
 * every cookie the api sets. */
const char *auth_cookie_secure(const struct api *a);
/* Records the Set-Cookie headers of a session on r: token and its CSRF
 * value for max_age_s seconds, or (token NULL) their removal. Secure when
 * PADDOCK_PUBLIC_URL is https. Returns 0 or -ENOMEM (problem recorded). */
int auth_session_cookies(struct api_req *r, const char *token, long long max_age_s);
/* Turns the answer of a login (auth_issue_token) into a session: its token
 * moves from r->out into the cookies. Returns 0 or -ENOMEM (problem recorded). */
int auth_session_take_token(struct api_req *r);
