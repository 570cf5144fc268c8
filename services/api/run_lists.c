/* GET /v1/runs: the runs of the teams the caller may view (tenant_admin: all
 * of the tenant), newest first, filtered by team, status, sandbox, launcher
 * and creation time, paged by keyset (lists.c). Filters naming something the
 * caller cannot see answer 400 like names that do not exist: no oracle. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

static const char *const statuses[] = {"queued",    "scheduled", "provisioning",   "running",
                                       "awaiting_approval", "succeeded", "failed", "cancelled",
                                       "timed_out", "limit_exceeded", "rejected"};

/* The status filter as a text[] literal: statuses come from the fixed list
 * above, so they need no quoting. */
struct status_filter {
        char literal[256];
        unsigned seen; /* bit per statuses[] entry: each once */
};

static int status_value(struct api_req *r, const char *value, void *userdata) {
        struct status_filter *f = userdata;
        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                if (strcmp(statuses[i], value))
                        continue;
                if (!(f->seen & (1u << i))) {
                        size_t n = strlen(f->literal);
                        snprintf(f->literal + n, sizeof f->literal - n, "%s%s", n > 1 ? "," : "", value);
                        f->seen |= 1u << i;
                }
                return 0;
        }
        return api_errno(r, -EINVAL, "status: \"%.64s\" is not a run status (queued, scheduled, provisioning, running, "
                        "awaiting_approval, succeeded, failed, cancelled, timed_out, limit_exceeded, rejected)",
                        value);
}

/* launched_by: a user of the caller's tenant, by id or username. */
static int launcher_resolve(struct api_req *r, struct db *d, const char *ref, char out[UUID_STR_LEN]) {
        int k = db_resolve_ref(r, d, "api.users", "username", "user", ref, out);
        if (k == -ENOENT)
                return api_errno(r, -EINVAL, "launched_by: no user \"%s\" in this tenant", ref);
        return k;
}

/* sandbox: one whose team the caller may view, by id or name. */
static int sandbox_filter(struct api_req *r, struct db *d, const char *ref, char out[UUID_STR_LEN]) {
        int k = sandboxes_resolve(r, d, ref, out);
        if (k == -ENOENT)
                return api_errno(r, -EINVAL, "sandbox: no sandbox \"%s\" that you can see", ref);
        if (k < 0)
                return k;
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {out, r->caller.tenant_id};
        if ((k = pg_exec(d->conn, "SELECT team_id FROM api.sandboxes WHERE id = $1 AND tenant_id = $2", 2, params,
                         &res, &e)) < 0)
                return db_fail(r, k, &e, "load sandbox");
        k = PQntuples(res) == 1 ? api_authz_team(d, &r->caller, PQgetvalue(res, 0, 0), PERM_VIEWER, &e) : -ENOENT;
        if (k == -ENOENT || k == -EPERM)
                return api_errno(r, -EINVAL, "sandbox: no sandbox \"%s\" that you can see", ref);
        return k < 0 ? db_fail(r, k, &e, "check team membership") : 0;
}

int runs_list(struct api_req *r) {
        struct list_page page;
        struct status_filter st = {.literal = "{"};
        char tbuf[257], sbuf[257], ubuf[257], from_us[24], to_us[24], rvbuf[16];
        const char *team, *sandbox, *launcher, *from, *to, *review;
        int k;
        if ((k = list_page_parse(r, &page)) < 0 || (k = api_query_single(r, "team", tbuf, sizeof tbuf, &team)) < 0 ||
            (k = api_query_single(r, "sandbox", sbuf, sizeof sbuf, &sandbox)) < 0 ||
            (k = api_query_single(r, "launched_by", ubuf, sizeof ubuf, &launcher)) < 0 ||
            (k = api_query_time(r, "from", from_us, &from)) < 0 || (k = api_query_time(r, "to", to_us, &to)) < 0 ||
            (k = api_query_each(r, "status", true, status_value, &st)) < 0 ||
            (k = api_query_single(r, "review", rvbuf, sizeof rvbuf, &review)) < 0)
                return k;
        strcat(st.literal, "}");
        /* the latest review's outcome (reviews.c), or none yet */
        if (review && strcmp(review, "approve") && strcmp(review, "reject") && strcmp(review, "escalate") &&
            strcmp(review, "none"))
                return api_errno(r, -EINVAL, "review must be approve, reject, escalate or none");
        if (from && to && strtoll(from, NULL, 10) >= strtoll(to, NULL, 10))
                return api_errno(r, -EINVAL, "to must be later than from");

        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        char team_id[UUID_STR_LEN], sandbox_id[UUID_STR_LEN], user_id[UUID_STR_LEN];
        if ((k = teams_filter(r, &d, team, team_id)) < 0)
                return k;
        if (sandbox && (k = sandbox_filter(r, &d, sandbox, sandbox_id)) < 0)
                return k;
        if (launcher && (k = launcher_resolve(r, &d, launcher, user_id)) < 0)
                return k;

        const char *params[] = {r->caller.tenant_id,
                                r->caller.tenant_admin || r->caller.auditor_read ? "t" : "f",
                                r->caller.user_id,
                                api_perm_roles(PERM_VIEWER),
                                team ? team_id : NULL,
                                sandbox ? sandbox_id : NULL,
                                launcher ? user_id : NULL,
                                st.seen ? st.literal : NULL,
                                from,
                                to,
                                page.after_us,
                                page.after_id,
                                page.limit_plus_one,
                                review};
        _cleanup_pgres_ PGresult *res = NULL;
        k = pg_exec(d.conn,
                    RUNS_SELECT "WHERE r.tenant_id = $1 AND " LIST_TEAM_VISIBLE("r.team_id", "$2", "$3", "$4") " "
                    "AND ($5::uuid IS NULL OR r.team_id = $5::uuid) "
                    "AND ($6::uuid IS NULL OR r.sandbox_id = $6::uuid) "
                    "AND ($7::uuid IS NULL OR r.created_by = $7::uuid) "
                    "AND ($8::text[] IS NULL OR " RUNS_SHOWN_STATUS " = ANY ($8::text[])) "
                    "AND ($9::bigint IS NULL OR r.created_at >= " LIST_US_TS("$9") ") "
                    "AND ($10::bigint IS NULL OR r.created_at < " LIST_US_TS("$10") ") "
                    "AND ($11::bigint IS NULL OR (r.created_at, r.id) < (" LIST_US_TS("$11") ", $12::uuid)) "
                    "AND ($14::text IS NULL OR coalesce(r.review->>'outcome', 'none') = $14::text) "
                    "ORDER BY r.created_at DESC, r.id DESC LIMIT $13::bigint",
                    14, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list runs");
        return list_answer(r, &page, res, runs_row_write, RUNS_COL_KEY_US, 0);
}
