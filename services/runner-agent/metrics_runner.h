/* The runner-agent's Prometheus metrics (defined and registered in main.c). */
#pragma once
#include "core/metrics.h"

extern struct metric runner_metric_runs_accepted;
extern struct metric runner_metric_runs_finished;
extern struct metric runner_metric_runs_running;
extern struct metric runner_metric_output_events;
extern struct metric runner_metric_heartbeats;
extern struct metric runner_metric_orphans_reaped;
