/* Teams of the caller's tenant (teams.c): resolving a team reference, and administration. */
#pragma once
#include "request.h"
#include "db.h"

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
