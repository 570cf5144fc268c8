/* Retention and legal hold (retention.c, holds.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- retention.c, holds.c: retention and legal hold (issue 14 §3;
 * docs/CONTRACTS.md "Retention and legal hold") */
/* GET/PUT /v1/tenant/retention {default_days, max_days} (tenant_admin; GET auditor too). */
int retention_get(struct api_req *r);
int retention_put(struct api_req *r);
/* The tenant's max_days into *ret (spec.retention_days is checked against
 * it); 0 or the problem recorded on r. */
int retention_max_days(struct api_req *r, long long *ret);
/* The run's retention and tombstone as RETENTION_RUN_NCOLS columns of a
 * query whose api.runs row is aliased r and that joins
 * RETENTION_RUN_JOINS (GET /v1/runs/{id} reads them in its one round trip,
 * issue 10 §4): api.run_retention's formula applied to that row (api
 * migration 0031), not the view, which would read the run again.
 * RETENTION_RUN_JOINED is what the joins found, as plain columns (in a
 * subquery's select list); RETENTION_RUN_COLUMNS(x) the shown columns of
 * a relation x that has them; retention_run_write() reads those. */
#define RETENTION_RUN_JOINED                                                                                   \
        "rx.retention_days, rx.expires_at, rx.held, rt.deleted_at, rt.reason, rt.deleted_sha256, rt.events, "   \
        "rt.artifacts"
#define RETENTION_RUN_COLUMNS(x)                                                                               \
        x ".retention_days, " DB_TS(x ".expires_at") ", " x ".held, " DB_TS(x ".deleted_at") ", " x ".reason, "  \
        x ".deleted_sha256, " x ".events, " x ".artifacts"
#define RETENTION_RUN_NCOLS 8
#define RETENTION_RUN_JOINS                                                                                    \
        " LEFT JOIN LATERAL api.run_retention_of(r.tenant_id, r.id, r.sandbox_id, r.team_id, r.ended_at, "     \
        "r.spec_retention_days) rx ON r.ended_at IS NOT NULL"                                                  \
        " LEFT JOIN evidence.run_tombstones rt ON rt.run_id = r.id AND rt.deleted_at IS NOT NULL"
/* Writes the members "retention" ({days, expires_at, held} once the run
 * ended, else null) and "deleted" ({at, reason, sha256, events, artifacts}
 * once its evidence was swept, else null), each after a comma, from
 * RETENTION_RUN_COLUMNS at res[row][col...] (borrowed), into w. */
struct json_writer;
void retention_run_write(struct json_writer *w, const PGresult *res, int row, int col);
/* 0 while the run's evidence is kept; once a retention sweep began on it,
 * 410 gone recorded on r (its events and artifacts). */
int retention_run_gone(struct api_req *r, const char *run_id);
/* PUT/DELETE /v1/holds/{kind}/{id} {reason}, GET /v1/holds?kind= (tenant_admin, auditor). */
int holds_put(struct api_req *r);
int holds_delete(struct api_req *r);
int holds_list(struct api_req *r);
