/* Approvals of runs' asks (approvals.c): the API and the status consumer's side. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- approvals.c */
int approvals_list(struct api_req *r);
/* GET /v1/approvals/{id}: the approval, for an approver of its run's team. */
int approvals_get(struct api_req *r);
int approvals_decide(struct api_req *r);
/* Status consumer: approval_requested / approval_decided events of run_id at seq. */
int approvals_on_requested(struct api *a, const char *tenant_id, const char *run_id, uint64_t seq, json_t *data, struct err_detail *err);
int approvals_on_decided(struct api *a, const char *tenant_id, const char *run_id, uint64_t seq, int64_t ts_us, json_t *data,
                         struct err_detail *err);
/* The run reached a terminal status (status consumer, in the transaction
 * applying it, d): its approvals still pending become `cancelled` (or
 * `expired` past their deadline), each announced on paddock.approvals. */
int approvals_on_run_ended(struct api *a, struct db *d, const char *tenant_id, const char *run_id,
                           struct err_detail *e);
