/* Health and readiness on the api's public port (ops.c); /metrics is on the ops port only (main.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- ops.c */
int ops_healthz(struct api_req *r);
int ops_readyz(struct api_req *r);
