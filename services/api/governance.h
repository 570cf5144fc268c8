/* Governance metrics (governance.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- governance.c: GET /v1/governance/metrics (docs/CONTRACTS.md "Governance metrics") */
int governance_metrics(struct api_req *r);
