/* Approvals: a run asks (approval_requested event: an egress destination
 * under `egress.unknown: ask`, or a tool call, exec or file open a policy
 * rule holds), a person decides here, the decision travels to the run's node
 * as RunControl{approval}, and the runner reports what it applied
 * (approval_decided event, also on its own deadline: "by":"timeout"). The run
 * shows `awaiting_approval` while one of its approvals is pending; one still
 * pending when the run ends is `cancelled` (approvals_on_run_ended).
 * api.approvals rows take tenant and team from the run, never from the event.
 * Every change of an approval's status is announced on paddock.approvals
 * (ApprovalNotice) through the outbox, in the transaction that makes it
 * (docs/CONTRACTS.md "The approval queue"). */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "kafka/topics.h"
#include "paddock/v1/approvals.pb-c.h"
#include "pg/pg.h"
#include "proto/envelope.h"

#define APPROVAL_ID_MAX 64
#define COMMENT_MAX 1024
#define DEFAULT_DEADLINE_S 300
#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define WHAT_MAX (64 * 1024)    /* a request's fields as stored; the runner cuts tool input at 16 KiB */
#define CONTEXT_DATA_MAX 2048   /* bytes of each context event's data */

/* pending past its deadline is expired, whether or not the runner said so yet */
#define EFFECTIVE_STATUS \
        "CASE WHEN a.status = 'pending' AND a.deadline <= now() THEN 'expired' ELSE a.status END"
/* columns 0-11 the approval, 12-16 its run's summary, 17 the context: the
 * run's last CONTEXT_EVENTS events before the request (evidence.run_events
 * by its primary key; none for rows recorded before the seq was kept) */
#define APPROVAL_COLUMNS                                                                                  \
        "a.id, a.run_id, a.team_id, a.kind, a.what::text, a.rule, " DB_TS("a.deadline") ", " EFFECTIVE_STATUS \
        ", " DB_TS("a.created_at") ", a.decided_by, " DB_TS("a.decided_at") ", a.comment, "                \
        "r.sandbox_id, s.name, r.version, r.created_by, u.username, "                                       \
        "(SELECT coalesce(json_agg(json_build_object('seq', x.seq, 'kind', x.kind, 'ts', x.ts, 'data', x.data) " \
        "ORDER BY x.seq), '[]')::text FROM (SELECT e.seq, e.kind, " DB_TS("e.ts") " AS ts, e.data "          \
        "FROM evidence.run_events e WHERE e.run_id = a.run_id AND e.seq < a.seq "                            \
        "ORDER BY e.seq DESC LIMIT 20) x)" /* the last 20 before the request */
#define APPROVAL_FROM                                                                                     \
        " FROM api.approvals a JOIN api.runs r ON r.id = a.run_id AND r.tenant_id = a.tenant_id"            \
        " JOIN api.sandboxes s ON s.id = r.sandbox_id AND s.tenant_id = r.tenant_id"                        \
        " JOIN api.users u ON u.id = r.created_by AND u.tenant_id = r.tenant_id "

static bool approval_id_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n >= 1 && n <= APPROVAL_ID_MAX &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") == n;
}

/* Each context event's data as it is when its JSON text is at most
 * CONTEXT_DATA_MAX bytes, else that text cut there (on a UTF-8 boundary) as
 * a string, with "truncated": true: an approver sees what led to the
 * request without a file's worth of output per event. */
static json_t *context_json(const char *text) {
        json_t *ctx = json_loads(text, 0, NULL);
        if (!json_is_array(ctx)) {
                json_decref(ctx);
                return json_array();
        }
        size_t i;
        json_t *ev;
        json_array_foreach(ctx, i, ev) {
                _cleanup_free_ char *d = json_dumps(json_object_get(ev, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
                size_t n = d ? strlen(d) : 0;
                if (n <= CONTEXT_DATA_MAX)
                        continue;
                n = CONTEXT_DATA_MAX;
                while (n > 0 && ((unsigned char)d[n] & 0xC0) == 0x80)
                        n--;
                json_object_set_new(ev, "data", json_stringn(d, n));
                json_object_set_new(ev, "truncated", json_true());
        }
        return ctx;
}

static json_t *approval_json(const PGresult *res, int i) {
        json_t *what = json_loads(PQgetvalue(res, i, 4), 0, NULL);
        json_t *summary = json_pack("{s:s, s:s, s:I, s:{s:s, s:s}}", "sandbox", PQgetvalue(res, i, 12), "sandbox_name",
                                    PQgetvalue(res, i, 13), "version", (json_int_t)atoll(PQgetvalue(res, i, 14)),
                                    "launched_by", "id", PQgetvalue(res, i, 15), "username", PQgetvalue(res, i, 16));
        return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "id",
                         PQgetvalue(res, i, 0), "run", PQgetvalue(res, i, 1), "team", PQgetvalue(res, i, 2), "kind",
                         PQgetvalue(res, i, 3), "what", what ? what : json_object(), "rule", db_json_str(res, i, 5),
                         "deadline", PQgetvalue(res, i, 6), "status", PQgetvalue(res, i, 7), "created_at",
                         PQgetvalue(res, i, 8), "decided_by", db_json_str(res, i, 9), "decided_at",
                         db_json_str(res, i, 10), "comment", db_json_str(res, i, 11), "run_summary",
                         summary ? summary : json_null(), "context", context_json(PQgetvalue(res, i, 17)));
}

/* Queues the ApprovalNotice of approval id as it now stands in d's
 * transaction (paddock.approvals, key run id; proto/paddock/v1/approvals.proto):
 * announced exactly when the change commits, never otherwise. */
static int notice_enqueue(struct api *a, struct db *d, const char *tenant_id, const char *id, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, tenant_id};
        int k = pg_exec(d->conn,
                        "SELECT run_id::text, team_id::text, kind, what::text, coalesce(rule, ''), " DB_TS("deadline")
                        ", status, coalesce(decided_by, ''), coalesce(comment, '') FROM api.approvals "
                        "WHERE id = $1 AND tenant_id = $2",
                        2, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return 0;
        Paddock__V1__ApprovalNotice n = PADDOCK__V1__APPROVAL_NOTICE__INIT;
        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN], producer[64];
        const char *run_id = PQgetvalue(res, 0, 0);
        snprintf(producer, sizeof producer, "api/%s", a->instance);
        if (envelope_init(&env, tenant_id, run_id, 0, producer, msgid) < 0)
                return err_set(e, -EIO, "envelope", "could not generate a message id");
        n.env = &env;
        n.approval_id = (char *)id;
        n.run_id = (char *)run_id;
        n.team_id = PQgetvalue(res, 0, 1);
        n.kind = PQgetvalue(res, 0, 2);
        n.what_json = PQgetvalue(res, 0, 3);
        n.rule = PQgetvalue(res, 0, 4);
        n.deadline = PQgetvalue(res, 0, 5);
        n.status = PQgetvalue(res, 0, 6);
        n.decided_by = PQgetvalue(res, 0, 7);
        n.comment = PQgetvalue(res, 0, 8);
        size_t len = paddock__v1__approval_notice__get_packed_size(&n);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return err_set(e, -ENOMEM, "oom", "out of memory");
        paddock__v1__approval_notice__pack(&n, buf);
        return outbox_put(d->conn, tenant_id, TOPIC_APPROVALS, run_id, buf, len, e);
}

/* ---- from the status consumer */

/* The request's fields as the runner sent them (docs/CONTRACTS.md "The
 * approval queue"), without those the approval row keeps itself. */
static char *what_text(json_t *data) {
        _cleanup_json_ json_t *what = json_deep_copy(data);
        if (!what)
                return NULL;
        json_object_del(what, "approval_id");
        json_object_del(what, "deadline");
        json_object_del(what, "timeout_s");
        char *t = json_dumps(what, JSON_COMPACT);
        if (t && strlen(t) > WHAT_MAX) {
                /* the runner bounds tool input at 16 KiB: only a forgery or a bug gets here */
                size_t n = strlen(t);
                free(t);
                _cleanup_json_ json_t *cut = json_pack("{s:b, s:I}", "truncated", 1, "bytes", (json_int_t)n);
                t = cut ? json_dumps(cut, JSON_COMPACT) : NULL;
        }
        return t;
}

/* Ends the transaction of a consumer write: committed (durable before the
 * offset is), or rolled back with the error in err. */
static int consumer_end(struct db *d, int k, struct err_detail *e, const char *run_id, struct err_detail *err) {
        if (k >= 0)
                k = db_commit(d, e);
        else
                db_rollback(d);
        if (k < 0)
                return err_set(err, k, e->code, "could not record approval of run %s: %s", run_id, e->message);
        return 0;
}

int approvals_on_requested(struct api *a, const char *tenant_id, const char *run_id, uint64_t seq, json_t *data, struct err_detail *err) {
        const char *id = json_string_value(json_object_get(data, "approval_id"));
        if (!approval_id_ok(id)) {
                log_ctx(LOG_WARN, LOG_KV("run", run_id), "approval_requested without a valid approval_id, ignored");
                return 0;
        }
        const char *kind = json_string_value(json_object_get(data, "kind"));
        const char *rule = json_string_value(json_object_get(data, "rule"));
        _cleanup_free_ char *what = what_text(data);
        if (!what)
                return err_set(err, -ENOMEM, "oom", "out of memory");
        /* deadline: RFC 3339 text or Unix seconds; absent or unreadable: the default */
        char deadline[40] = "";
        json_t *jd = json_object_get(data, "deadline");
        if (json_is_number(jd) && json_number_value(jd) > 0 && json_number_value(jd) < 1e11)
                time_format_rfc3339((int64_t)(json_number_value(jd) * 1e6), deadline, sizeof deadline);
        else if (json_is_string(jd) && json_string_length(jd) < sizeof deadline &&
                 strspn(json_string_value(jd), "0123456789-:.TZ+ ") == json_string_length(jd))
                snprintf(deadline, sizeof deadline, "%s", json_string_value(jd));
        char seqs[24], dflt[16];
        snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)seq);
        snprintf(dflt, sizeof dflt, "%d", DEFAULT_DEADLINE_S);
        const char *params[] = {run_id, id, kind && kind[0] ? kind : "egress", what, rule, deadline[0] ? deadline : NULL,
                                dflt, seqs};
        static const char insert[] =
                "INSERT INTO api.approvals (id, run_id, tenant_id, team_id, kind, what, rule, deadline, seq) "
                "SELECT $2, r.id, r.tenant_id, r.team_id, $3, $4::jsonb, $5, "
                "coalesce($6::timestamptz, now() + make_interval(secs => $7::integer)), $8::bigint "
                "FROM api.runs r WHERE r.id = $1 ON CONFLICT (id) DO NOTHING RETURNING id";
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, a, tenant_id, &e);
        if (k < 0)
                return err_set(err, k, e.code, "could not record approval of run %s: %s", run_id, e.message);
        _cleanup_pgres_ PGresult *ins = NULL;
        k = pg_exec(d.conn, insert, 8, params, &ins, &e);
        if (k == -EINVAL && params[5]) { /* a deadline PostgreSQL cannot read */
                db_rollback(&d);
                params[5] = NULL;
                e = (struct err_detail){0};
                PQclear(TAKE_PTR(ins));
                k = pg_exec(d.conn, insert, 8, params, &ins, &e);
        }
        /* recorded now (not a redelivery): announce it with the record */
        if (k >= 0 && PQntuples(ins) == 1)
                k = notice_enqueue(a, &d, tenant_id, id, &e);
        const char *sp[] = {run_id, seqs};
        if (k >= 0)
                k = pg_exec(d.conn,
                            "UPDATE api.runs SET status = 'awaiting_approval', status_seq = $2::bigint "
                            "WHERE id = $1 AND status = 'running' AND status_seq < $2::bigint AND EXISTS "
                            "(SELECT 1 FROM api.approvals p WHERE p.run_id = $1 AND p.status = 'pending')",
                            2, sp, NULL, &e);
        if ((k = consumer_end(&d, k, &e, run_id, err)) >= 0)
                log_ctx(LOG_INFO, LOG_KV("run", run_id, "approval", id), "approval requested");
        return k;
}

int approvals_on_decided(struct api *a, const char *tenant_id, const char *run_id, uint64_t seq, int64_t ts_us, json_t *data,
                         struct err_detail *err) {
        const char *id = json_string_value(json_object_get(data, "approval_id"));
        if (!approval_id_ok(id))
                return 0;
        const char *decision = json_string_value(json_object_get(data, "decision"));
        const char *by = json_string_value(json_object_get(data, "by"));
        /* what the runner applied is the truth (its deadline may have won a
         * race); an ask that ended with its run (the proxy says so) was
         * decided by nobody: cancelled */
        const char *status = by && !strcmp(by, "timeout")              ? "expired"
                             : by && !strcmp(by, "run_ended")           ? "cancelled"
                             : decision && !strcmp(decision, "approve") ? "approved"
                                                                        : "denied";
        char seqs[24], ts[32];
        snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)seq);
        snprintf(ts, sizeof ts, "%lld", (long long)(ts_us > 0 ? ts_us : time_now_us()));
        const char *params[] = {id, run_id, status, by && by[0] ? by : NULL, ts};
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, a, tenant_id, &e);
        if (k < 0)
                return err_set(err, k, e.code, "could not record approval of run %s: %s", run_id, e.message);
        /* old status under the row lock: a change is announced once, a
         * redelivery or the runner confirming a person's decision is not */
        _cleanup_pgres_ PGresult *res = NULL;
        k = pg_exec(d.conn,
                    "WITH old AS (SELECT id, status FROM api.approvals WHERE id = $1 AND run_id = $2 FOR UPDATE) "
                    "UPDATE api.approvals p SET status = $3, decided_by = coalesce(p.decided_by, $4), "
                    "decided_at = coalesce(p.decided_at, to_timestamp($5::double precision / 1e6)) "
                    "FROM old WHERE p.id = old.id AND old.status <> 'cancelled' RETURNING old.status",
                    5, params, &res, &e);
        if (k >= 0 && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), status))
                k = notice_enqueue(a, &d, tenant_id, id, &e);
        const char *sp[] = {run_id, seqs};
        if (k >= 0)
                k = pg_exec(d.conn,
                            "UPDATE api.runs SET status = 'running', status_seq = $2::bigint "
                            "WHERE id = $1 AND status = 'awaiting_approval' AND status_seq < $2::bigint AND NOT EXISTS "
                            "(SELECT 1 FROM api.approvals p WHERE p.run_id = $1 AND p.status = 'pending')",
                            2, sp, NULL, &e);
        return consumer_end(&d, k, &e, run_id, err);
}

int approvals_on_run_ended(struct api *a, struct db *d, const char *tenant_id, const char *run_id,
                           struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id};
        /* past its deadline it had expired already (as GET shows it) */
        int k = pg_exec(d->conn,
                        "UPDATE api.approvals SET "
                        "status = CASE WHEN deadline <= now() THEN 'expired' ELSE 'cancelled' END, "
                        "decided_by = CASE WHEN deadline <= now() THEN 'timeout' ELSE 'run_ended' END, "
                        "decided_at = now() WHERE run_id = $1 AND status = 'pending' RETURNING id",
                        1, params, &res, e);
        for (int i = 0; k >= 0 && i < PQntuples(res); i++)
                k = notice_enqueue(a, d, tenant_id, PQgetvalue(res, i, 0), e);
        if (k >= 0 && PQntuples(res) > 0)
                log_ctx(LOG_INFO, LOG_KV("run", run_id), "pending approvals of an ended run cancelled");
        return k;
}

/* ---- HTTP */

/* The id of the team named or numbered ref among the teams the caller is a
 * member of (all of the tenant for tenant_admin) into out; 0, -ENOENT, or a
 * database error. A filter, not an object lookup: an unknown team and one
 * the caller cannot see read the same. */
static int visible_team(struct db *d, const struct api_caller *c, const char *ref, char out[UUID_STR_LEN],
                        struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {c->tenant_id, ref, c->tenant_admin ? "t" : "f", c->user_id};
        int k = pg_exec(d->conn,
                        "SELECT t.id FROM api.teams t WHERE t.tenant_id = $1 AND (t.id::text = $2 OR t.name = $2) "
                        "AND ($3::boolean OR EXISTS (SELECT 1 FROM api.team_members m WHERE m.team_id = t.id "
                        "AND m.user_id = $4 AND m.tenant_id = $1))",
                        4, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        snprintf(out, UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
        return 0;
}

int approvals_list(struct api_req *r) {
        char sbuf[48], lbuf[32], cbuf[40], tbuf[160];
        /* api_query answers a pointer into buf past "name=" */
        const char *status = api_query(r, "status", sbuf, sizeof sbuf);
        const char *lim = api_query(r, "limit", lbuf, sizeof lbuf), *cur = api_query(r, "cursor", cbuf, sizeof cbuf);
        const char *team = api_query(r, "team", tbuf, sizeof tbuf);
        if (!status)
                status = "";
        else if (strcmp(status, "pending") && strcmp(status, "approved") && strcmp(status, "denied") &&
                 strcmp(status, "expired") && strcmp(status, "cancelled"))
                return api_errno(r, -EINVAL, "status must be pending, approved, denied, expired or cancelled");
        long limit = LIST_DEFAULT, offset = 0;
        if (lim) {
                char *end;
                limit = strtol(lim, &end, 10);
                if (*end || end == lim || limit < 1 || limit > LIST_MAX)
                        return api_errno(r, -EINVAL, "limit must be an integer from 1 to %d", LIST_MAX);
        }
        if (cur) {
                char *end;
                offset = strtol(cur, &end, 10);
                if (*end || end == cur || offset < 0)
                        return api_errno(r, -EINVAL, "cursor is not one this server returned");
        }
        if (team && (!team[0] || strlen(team) > 128))
                return api_errno(r, -EINVAL, "team must be a team id or name");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        char team_id[UUID_STR_LEN] = "";
        if (team) {
                k = visible_team(&d, &r->caller, team, team_id, &e);
                if (k == -ENOENT)
                        return api_errno(r, -EINVAL, "team: no team \"%s\" among yours", team);
                if (k < 0)
                        return db_fail(r, k, &e, "look up team");
        }
        char lims[16], offs[24];
        snprintf(lims, sizeof lims, "%ld", limit + 1);
        snprintf(offs, sizeof offs, "%ld", offset);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id, r->caller.user_id, r->caller.tenant_admin ? "t" : "f", status, lims,
                                offs, team_id};
        /* the approvals of the teams where the caller approves (tenant_admin: all) */
        k = pg_exec(d.conn,
                    "SELECT " APPROVAL_COLUMNS APPROVAL_FROM "WHERE a.tenant_id = $1 AND ($3::boolean OR "
                    "EXISTS (SELECT 1 FROM api.team_members m WHERE m.team_id = a.team_id AND m.user_id = $2 "
                    "AND m.tenant_id = $1 AND m.roles && '{approver,tenant_admin}'::text[])) "
                    "AND ($4 = '' OR " EFFECTIVE_STATUS " = $4) AND ($7 = '' OR a.team_id = nullif($7, '')::uuid) "
                    "ORDER BY a.created_at, a.id LIMIT $5::bigint OFFSET $6::bigint",
                    7, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list approvals");
        json_t *items = json_array();
        int n = PQntuples(res);
        for (int i = 0; i < n && i < limit; i++)
                json_array_append_new(items, approval_json(res, i));
        json_t *next = json_null();
        if (n > limit) {
                char c[24];
                snprintf(c, sizeof c, "%ld", offset + limit);
                next = json_string(c);
        }
        r->out = json_pack("{s:o, s:o}", "items", items, "next_cursor", next);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int approvals_get(struct api_req *r) {
        const char *id = r->params[0];
        if (!approval_id_ok(id))
                return api_errno(r, -ENOENT, "approval not found");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        /* column 2: the run's team, where the caller must approve */
        if ((k = db_load_team_row(r, &d, "approval",
                                  "SELECT " APPROVAL_COLUMNS APPROVAL_FROM "WHERE a.id = $1 AND a.tenant_id = $2",
                                  2, params, 2, &res)) < 0)
                return k;
        r->out = approval_json(res, 0);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int approvals_decide(struct api_req *r) {
        const char *id = r->params[0];
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"decision", "comment", NULL})) < 0)
                return k;
        json_t *jd = json_object_get(body, "decision"), *jc = json_object_get(body, "comment");
        if (!jd)
                return api_fail(r, -EINVAL, "missing_field", "decision is required");
        if (!json_is_string(jd) || (strcmp(json_string_value(jd), "approve") && strcmp(json_string_value(jd), "deny")))
                return api_errno(r, -EINVAL, "decision must be \"approve\" or \"deny\"");
        if (jc && (!json_is_string(jc) || json_string_length(jc) > COMMENT_MAX ||
                   strlen(json_string_value(jc)) != json_string_length(jc)))
                return api_errno(r, -EINVAL, "comment must be a string of at most %d bytes", COMMENT_MAX);
        bool approve = !strcmp(json_string_value(jd), "approve");
        const char *comment = jc ? json_string_value(jc) : "";
        if (!approval_id_ok(id))
                return api_errno(r, -ENOENT, "approval not found");

        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &tx.d, "approval",
                                  "SELECT a.run_id, a.team_id, a.status, a.deadline <= now(), coalesce(r.node_id, ''), "
                                  "r.created_by FROM api.approvals a JOIN api.runs r ON r.id = a.run_id "
                                  "WHERE a.id = $1 AND a.tenant_id = $2",
                                  2, params, 1, &res)) < 0)
                return k;
        const char *run_id = PQgetvalue(res, 0, 0), *node = PQgetvalue(res, 0, 4);
        if (strcmp(PQgetvalue(res, 0, 2), "pending"))
                return api_errno(r, -EEXIST, "approval is already %s", PQgetvalue(res, 0, 2));
        if (PQgetvalue(res, 0, 3)[0] == 't')
                return api_errno(r, -EEXIST, "approval expired at its deadline");
        /* four eyes (ARCHITECTURE.md §5): whoever launched the run does not
         * approve its held actions, whatever roles they hold */
        if (!strcmp(PQgetvalue(res, 0, 5), r->caller.user_id))
                return api_errno(r, -EPERM, "you launched run %s: its approvals are decided by another approver (four eyes)",
                                run_id);

        char by[UUID_STR_LEN + 8];
        snprintf(by, sizeof by, "user:%s", r->caller.user_id);
        /* record and queue together (the outbox): the runner gets the
         * decision exactly when this transaction commits, never otherwise */
        _cleanup_pgres_ PGresult *up = NULL;
        const char *uparams[] = {id, r->caller.tenant_id, approve ? "approved" : "denied", by, comment};
        k = pg_exec(tx.d.conn,
                    "UPDATE api.approvals SET status = $3, decided_by = $4, decided_at = now(), comment = nullif($5, '') "
                    "WHERE id = $1 AND tenant_id = $2 AND status = 'pending' AND deadline > now() RETURNING id",
                    5, uparams, &up, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "record decision");
        if (PQntuples(up) != 1)
                return api_errno(r, -EEXIST, "approval is no longer pending");
        /* audited before the runner hears of it */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s}", "run", run_id, "decision",
                                                  approve ? "approved" : "denied", "comment", comment);
        if ((k = api_tx_audit(&tx, "approval.decide", "approval", id, change)) < 0)
                return k;
        /* and announced to integrations with it (paddock.approvals) */
        if ((k = notice_enqueue(r->api, &tx.d, r->caller.tenant_id, id, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "queue approval notice");
        Paddock__V1__RunControl rc = PADDOCK__V1__RUN_CONTROL__INIT;
        Paddock__V1__ApprovalDecision dec = PADDOCK__V1__APPROVAL_DECISION__INIT;
        dec.approval_id = (char *)id;
        dec.approved = approve;
        dec.decided_by = by;
        dec.comment = (char *)comment;
        rc.node_id = (char *)node;
        rc.action_case = PADDOCK__V1__RUN_CONTROL__ACTION_APPROVAL;
        rc.approval = &dec;
        if ((k = control_enqueue(r->api, &tx.d, r->caller.tenant_id, run_id, &rc, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "queue decision");
        /* the last check, under the run's row lock (the status consumer
         * ending the run waits for it, or it sees the end): a run that has
         * ended holds nothing back any more, so the decision is refused, and
         * rolling back takes the queued decision with it */
        _cleanup_pgres_ PGresult *live = NULL;
        const char *lparams[] = {run_id, r->caller.tenant_id};
        k = pg_exec(tx.d.conn, "SELECT status FROM api.runs WHERE id = $1 AND tenant_id = $2 FOR SHARE", 2, lparams, &live,
                    &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "check run");
        if (PQntuples(live) != 1 || runs_status_terminal(PQgetvalue(live, 0, 0)))
                return api_errno(r, -EEXIST, "run %s already ended (%s): nothing left to decide", run_id,
                                PQntuples(live) == 1 ? PQgetvalue(live, 0, 0) : "gone");
        if ((k = api_tx_commit(&tx, "decision")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "run", run_id, "approval", id, "user", r->caller.user_id),
                approve ? "approval approved" : "approval denied");
        _cleanup_pgres_ PGresult *out = NULL;
        k = pg_exec(tx.d.conn, "SELECT " APPROVAL_COLUMNS APPROVAL_FROM "WHERE a.id = $1 AND a.tenant_id = $2", 2,
                    params, &out, &tx.e);
        if (k < 0 || PQntuples(out) != 1)
                return k < 0 ? db_fail(r, k, &tx.e, "load approval") : api_errno(r, -ENOENT, "approval not found");
        r->out = approval_json(out, 0);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
