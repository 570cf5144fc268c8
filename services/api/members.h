/* Role grants per team (members.c, tenant_admin). */
#pragma once
#include "request.h"
#include "db.h"

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
