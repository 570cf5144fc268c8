/* Health, readiness and metrics endpoints (ops.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- ops.c */
int ops_healthz(struct api_req *r);
int ops_readyz(struct api_req *r);
int ops_metrics(struct api_req *r);
