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
