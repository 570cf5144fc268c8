/* Authorization: the roles of API.md and which of them carry each route
 * permission (enum api_perm), checked against a team or the whole tenant.
 * The route table (routes.c) says which permission each endpoint needs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

/* The roles of API.md. A team grant may hold any of them; tenant_admin is
 * normally a tenant role (users.tenant_roles) and then covers every team. */
static const char *const roles_all[] = {"tenant_admin", "security_admin", "sandbox_author", "launcher",
                                        "approver",     "reviewer",       "viewer"};

bool api_role_valid(const char *role) {
        for (size_t i = 0; i < ELEMENTSOF(roles_all); i++)
                if (!strcmp(role, roles_all[i]))
                        return true;
        return false;
}

/* Which team roles carry each permission, as a PostgreSQL text[] literal in
 * alphabetical order (the order a refusal names them in). tenant_admin
 * carries all of them (as a tenant role in every team of the tenant, as a
 * team role in that team). */
static const struct {
        enum api_perm perm;
        const char *roles;
} perm_roles[] = {
        {PERM_VIEWER, "{approver,launcher,reviewer,sandbox_author,tenant_admin,viewer}"},
        {PERM_SANDBOX_AUTHOR, "{sandbox_author,tenant_admin}"},
        {PERM_LAUNCHER, "{launcher,tenant_admin}"},
        {PERM_REVIEWER, "{reviewer,tenant_admin}"},
        {PERM_APPROVER, "{approver,tenant_admin}"},
        {PERM_CANCEL, "{approver,launcher,tenant_admin}"},
        {PERM_CATALOG_APPROVE, "{security_admin,tenant_admin}"},
        {PERM_ADMIN, "{tenant_admin}"},
};

/* What the tenant role auditor may call (issue 14 §3): evidence and audit
 * of every team, read-only, and legal holds; nothing else (the team checks
 * of these routes pass for it: api_authz_team_row). */
static const struct {
        const char *method, *pattern;
} auditor_routes[] = {
        {"GET", "/v1/runs"},
        {"GET", "/v1/runs/{id}"},
        {"GET", "/v1/runs/{id}/events"},
        {"GET", "/v1/runs/{id}/artifacts"},
        {"GET", "/v1/runs/{id}/artifacts/{name}"},
        {"GET", "/v1/runs/{id}/evidence"},
        {"GET", "/v1/runs/{id}/reviews"},
        {"GET", "/v1/audit"},
        {"GET", "/v1/audit/verify"},
        {"GET", "/v1/tenant/retention"},
        {"GET", "/v1/holds"},
        {"PUT", "/v1/holds/{kind}/{id}"},
        {"DELETE", "/v1/holds/{kind}/{id}"},
};

bool api_auditor_route(const char *method, const char *pattern) {
        for (size_t i = 0; i < ELEMENTSOF(auditor_routes); i++)
                if (!strcmp(auditor_routes[i].method, method) && !strcmp(auditor_routes[i].pattern, pattern))
                        return true;
        return false;
}

/* PERM_NONE/PERM_USER/PERM_SELF on a team object: membership is enough */
#define ANY_ROLE "{approver,launcher,reviewer,sandbox_author,security_admin,tenant_admin,viewer}"

const char *api_perm_roles(enum api_perm perm) {
        for (size_t i = 0; i < ELEMENTSOF(perm_roles); i++)
                if (perm_roles[i].perm == perm)
                        return perm_roles[i].roles;
        return ANY_ROLE;
}

int api_authz_team(struct db *d, const struct api_caller *c, const char *team_id, enum api_perm perm,
                   struct err_detail *e) {
        if (!id_is_uuid(team_id))
                return -ENOENT;
        const char *roles = api_perm_roles(perm);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, c->tenant_id, c->user_id, roles};
        /* the team's name and the caller's roles, sorted, only for a refusal's detail */
        int r = pg_exec(d->conn,
                        "SELECT " API_AUTHZ_COLUMNS("m", "$4") ", t.name FROM api.teams t "
                        "LEFT JOIN api.team_members m ON m.team_id = t.id AND m.user_id = $3 AND m.tenant_id = $2 "
                        "WHERE t.id = $1 AND t.tenant_id = $2",
                        4, params, &res, e);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -ENOENT; /* no such team in the caller's tenant */
        return api_authz_team_row(c, res, 0, 0, PQgetvalue(res, 0, 4), e);
}

static int role_cmp(const void *a, const void *b) {
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A team grant's roles, the text[] literal of team_members.roles
 * ("{launcher,viewer}"; null: ""), as "launcher, viewer" in alphabetical
 * order. The roles are the known names (constraint team_members_roles_known,
 * migrations/0003_rbac.sql), never quoted in the literal, and no two of
 * them differ only where collations could disagree: strcmp's order is
 * PostgreSQL's. */
static void roles_sorted(const char *literal, char *out, size_t size) {
        char buf[256], *names[32], *save = NULL;
        size_t n = 0, len = 0;
        snprintf(buf, sizeof buf, "%s", literal[0] == '{' ? literal + 1 : literal);
        buf[strcspn(buf, "}")] = '\0';
        for (char *t = strtok_r(buf, ",", &save); t && n < ELEMENTSOF(names); t = strtok_r(NULL, ",", &save))
                names[n++] = t;
        qsort(names, n, sizeof *names, role_cmp);
        out[0] = '\0';
        for (size_t i = 0; i < n && len < size; i++)
                len += (size_t)snprintf(out + len, size - len, "%s%s", i ? ", " : "", names[i]);
}

int api_authz_team_row(const struct api_caller *c, const PGresult *res, int row, int col, const char *team_name,
                       struct err_detail *e) {
        if (c->tenant_admin || c->auditor_read || PQgetvalue(res, row, col + 1)[0] == 't')
                return 0;
        /* a member learns that the object exists, an outsider does not */
        if (PQgetvalue(res, row, col)[0] != 't')
                return -ENOENT;
        /* the one wording of a team permission's refusal: what would do, and what the caller has */
        char have[256];
        roles_sorted(PQgetvalue(res, row, col + 2), have, sizeof have);
        return err_set(e, -EPERM, "forbidden", "needs one of the roles %s in team \"%s\"; you have %s",
                       PQgetvalue(res, row, col + 3), team_name, have[0] ? have : "no role");
}

int api_authz_tenant(struct db *d, const struct api_caller *c, enum api_perm perm, struct err_detail *e) {
        if (c->tenant_admin)
                return 0;
        const char *roles = api_perm_roles(perm);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {c->tenant_id, c->user_id, roles};
        int r = pg_exec(d->conn,
                        "SELECT 1 FROM api.team_members m JOIN api.teams t ON t.id = m.team_id AND t.tenant_id = m.tenant_id "
                        "WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.roles && $3::text[] LIMIT 1",
                        3, params, &res, e);
        if (r < 0)
                return r;
        return PQntuples(res) == 1 ? 0 : -EPERM;
}
