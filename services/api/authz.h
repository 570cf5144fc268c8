/* Authorization (authz.c): whether a caller holds a permission in a team or its tenant; a team the
 * caller cannot see answers -ENOENT (no existence oracle). */
#pragma once
#include "request.h"
#include "db.h"

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
        m ".roles::text, array_to_string(" p "::text[], ', ')"
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
