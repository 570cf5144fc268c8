/* Usage reports and their day ranges (usage.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- usage.c: GET /v1/usage?from=&to=&group_by=&team= (billing's tables) */
int usage_get(struct api_req *r);
/* Loads run id visible to caller with perm on its team: fills team/status.
 * -ENOENT if not visible, -EPERM if visible without perm (api_authz_team). */
int runs_load_visible(struct api *a, const struct api_caller *c, const char *run_id, enum api_perm perm,
                      char team_out[UUID_STR_LEN], char *status_out, size_t status_size,
                      struct err_detail *e);
bool runs_status_terminal(const char *status);
/* POST /v1/runs/{id}/cancel (run_cancel.c). */
int runs_cancel(struct api_req *r);

/* ---- usage.c: the range of days GET /v1/usage and /v1/governance/metrics take */
/* Query argument name as a UTC day "YYYY-MM-DD" in out: a full-date, or an
 * RFC 3339 date-time (its UTC day). *ret = out, or NULL when absent; a bad
 * value: 400 invalid_field naming it. */
int usage_day_arg(struct api_req *r, const char *name, char out[11], const char **ret);
/* The defaults of an absent end: to = today (UTC), from = the 1st of to's month. */
void usage_default_range(char from_day[11], const char **from, char to_day[11], const char **to);
