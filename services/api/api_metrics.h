/* The api's metrics (api_metrics.c), registered once in main(). */
#pragma once
#include "request.h"
#include "db.h"

/* metrics (main.c) */
extern struct metric api_metric_requests;
extern struct metric api_metric_runs_launched;
extern struct metric api_metric_ws_sessions;
extern struct metric api_metric_status_updates;
