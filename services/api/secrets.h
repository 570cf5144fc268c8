/* Team secrets, encrypted at rest with the tenant's data key (secrets.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- secrets.c: team secrets, encrypted at rest */
int secrets_put(struct api_req *r);
int secrets_list(struct api_req *r);
int secrets_delete(struct api_req *r);
/* Opens the secret name of team_id into a new buffer (*ret, *ret_len; the
 * caller wipes and frees it). -ENOENT if it is not set; -EBADMSG if it does
 * not authenticate (wrong master key); other negative errno (database). */
int secrets_open(struct api *a, PGconn *conn, const char *tenant_id, const char *team_id, const char *name,
                 uint8_t **ret, size_t *ret_len, struct err_detail *e);
/* Any other value of a tenant sealed the same way (the OIDC client secret,
 * oidc.c), aad naming it ("<tenant id>/oidc/client_secret"): seals len bytes
 * into *ret_sealed, a bytea parameter "\\x<hex>" (caller frees), making the
 * tenant's data key first when it has none; opens such a stored bytea (its
 * text form) into a new NUL-terminated buffer (the caller wipes and frees it).
 * 0, -EBADMSG when it does not authenticate, or other negative errno with e. */
int secrets_seal_value(struct api *a, PGconn *conn, const char *tenant_id, const char *aad, const void *plain,
                       size_t len, char **ret_sealed, struct err_detail *e);
int secrets_open_value(struct api *a, PGconn *conn, const char *tenant_id, const char *aad, const char *sealed,
                       uint8_t **ret, size_t *ret_len, struct err_detail *e);
/* Records on r the problem of a failed secrets_seal_value (k, e): a key
 * that does not open or a failed encryption is logged and a 500, a
 * database failure as db_fail. Returns k's api error. */
int secrets_seal_fail(struct api_req *r, int k, struct err_detail *e);
