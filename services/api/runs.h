/* Runs (runs.c, run_checks.c, run_get.c, run_lists.c; the snapshot run_snapshot.h): launch, read, list. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- runs.c: POST /v1/runs, and POST /v1/runs/{id}/relaunch (a new run of
 * the run's sandbox version, team and inputs); one transaction each (tx.h) */
int runs_create(struct api_req *r);
int runs_relaunch(struct api_req *r);

/* ---- run_checks.c: what a launch refuses before it stores a run (each
 * answers r and returns its negative errno, else 0) */
/* every spec.secrets name is set for team_id */
int run_check_secrets_set(struct api_req *r, struct db *d, const char *team_id, json_t *spec);
/* every resolved http connector's header secret (pol, policy_resolve) is set */
int run_check_connector_secrets_set(struct api_req *r, struct db *d, const char *team_id, json_t *pol);
/* every resolved spec.models item's key secret is set */
int run_check_model_keys_set(struct api_req *r, struct db *d, const char *team_id, json_t *pol);
/* True when ref (a team id or name, as POST /v1/runs takes it) names team_id. */
bool run_team_names_id(struct db *d, const char *tenant_id, const char *ref, const char *team_id);

/* ---- run_get.c */
int runs_get(struct api_req *r);
/* GET /v1/runs/{id}'s read (api_read_fn): the run and the caller's roles in its team */
int runs_get_read(const struct api_req *r, const char **params, struct pg_step *ret_step);
/* A terminal status is shown only once the run's history is complete
 * (evidence.run_history, issue 10 decision 5): until then the run shows the
 * last non-terminal status it had (running if it started, else
 * provisioning). A terminal run with no history row and no node (ended
 * before any node was involved) has nothing to wait for. */
#define RUNS_TERMINAL_HIDDEN                                                                                   \
        "(r.status IN ('succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected')"         \
        " AND NOT coalesce(h.complete, r.node_id IS NULL))"
#define RUNS_SHOWN_STATUS                                                                                      \
        "(CASE WHEN " RUNS_TERMINAL_HIDDEN " THEN CASE WHEN r.started_at IS NOT NULL THEN 'running'"           \
        " ELSE 'provisioning' END ELSE r.status END)"
/* The public Run object: RUNS_SELECT's columns (FROM api.runs r and its
 * history; add WHERE ...) as JSON, column RUNS_COL_KEY_US its list key.
 * RUNS_COLUMNS_WITH(extra): the same columns with ", <columns>" after
 * them and no FROM, for a read that names its own, where h is a relation
 * with run_history's complete, events_stored, terminal_seq and events_lost
 * (run_get.c). The sandbox's, team's and launcher's names are the run
 * row's own columns, kept by triggers at insert and on a rename (api
 * migration 0032): a sub-select each cost PostgreSQL a relation's set-up
 * per read (issue 10 §4, docs/CONTRACTS.md "Tenant isolation in
 * PostgreSQL"). */
#define RUNS_SELECT RUNS_COLUMNS_WITH("") " FROM api.runs r LEFT JOIN evidence.run_history h ON h.run_id = r.id "
#define RUNS_COLUMNS_WITH(extra)                                                                             \
        "SELECT r.id, " RUNS_SHOWN_STATUS ", r.team_id, r.sandbox_id, r.version, r.node_id, " DB_TS("r.created_at") ", " \
        DB_TS("r.started_at") ", " DB_TS("r.ended_at") ", r.exit_code, r.reason, r.created_by, "          \
        DB_TS("r.scheduled_at") ", r.sandbox_name, r.team_name, r.launcher_username"       \
        ", r.relaunch_of, " LIST_KEY_US("r.created_at")                                                      \
        ", " RUNS_TERMINAL_HIDDEN ", coalesce(h.events_stored, 0), h.terminal_seq, h.events_lost"           \
        ", r.review::text" /* 22: the latest review {outcome, by, at} (reviews.c) */                       \
        extra
#define RUNS_COL_KEY_US 17
/* Writes the Run object of res's row (borrowed) into w (json_dump.h), as
 * the lists show it; runs_row_json() is the same object read back as a
 * tree (new reference; NULL when out of memory). */
struct json_writer;
void runs_row_write(struct json_writer *w, const PGresult *res, int row);
json_t *runs_row_json(const PGresult *res, int row);

/* ---- run_lists.c: GET /v1/runs?team=&status=&sandbox=&launched_by=&from=&to=&limit=&cursor= */
int runs_list(struct api_req *r);
