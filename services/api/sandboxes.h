/* Sandbox definitions and their versions (sandboxes.c). */
#pragma once
#include "request.h"
#include "db.h"

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
