/* The api's metrics (api.h), defined with the rest of its code in the
 * paddock_api library rather than in main.c, so that whatever links the
 * library without main() (fuzzers, tests) finds them; main() registers them. */
#include "api.h"
#include "core/metrics.h"

struct metric api_metric_requests = {.name = "paddock_api_http_requests_total", .help = "HTTP requests received",
                                     .type = METRIC_COUNTER};
struct metric api_metric_runs_launched = {.name = "paddock_api_runs_launched_total",
                                          .help = "runs queued on paddock.runs.requested", .type = METRIC_COUNTER};
struct metric api_metric_ws_sessions = {.name = "paddock_api_stream_sessions", .help = "open websocket stream sessions",
                                        .type = METRIC_GAUGE};
struct metric api_metric_status_updates = {.name = "paddock_api_run_status_updates_total",
                                           .help = "run status rows changed from kafka", .type = METRIC_COUNTER};
