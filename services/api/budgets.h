/* Team budgets per month (budgets.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- budgets.c: team budgets per month (docs/CONTRACTS.md "Budgets") */
int budgets_get(struct api_req *r);
int budgets_put(struct api_req *r);
/* For a launch in team_id (runs.c): 0 if no limit of the team's budget is
 * used up this business month, else 402 quota_exceeded naming the limit
 * (recorded on r). */
int budgets_launch_check(struct api_req *r, struct db *d, const char *team_id);
/* Stamps the run just inserted (in d's transaction) with the business month
 * it counts in. Returns >= 0 or a negative errno (e filled). */
int budgets_stamp_run(struct db *d, const char *tenant_id, const char *run_id, struct err_detail *e);
/* After a status or usage event of run_id (status consumer): records and
 * announces the thresholds its team's budget crossed, and at 100 % stops the
 * team's runs, in one transaction of its own. Returns 0 or a transient
 * negative errno (err filled). */
int budgets_on_run(struct api *a, const char *tenant_id, const char *run_id, struct err_detail *err);
