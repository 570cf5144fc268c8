/* The api's metrics (api.h), defined with the rest of its code in the
 * paddock_api library rather than in main.c, so that whatever links the
 * library without main() (fuzzers, tests) finds them; main() registers them. */
#include "api.h"
#include "core/metrics.h"

struct metric api_metric_requests = {"paddock_api_http_requests_total", "HTTP requests received", METRIC_COUNTER, 0, NULL, NULL};
struct metric api_metric_runs_launched = {"paddock_api_runs_launched_total", "runs queued on paddock.runs.requested",
                                          METRIC_COUNTER, 0, NULL, NULL};
struct metric api_metric_ws_sessions = {"paddock_api_stream_sessions", "open websocket stream sessions", METRIC_GAUGE, 0, NULL, NULL};
struct metric api_metric_status_updates = {"paddock_api_run_status_updates_total",
                                           "run status rows changed from kafka", METRIC_COUNTER, 0, NULL, NULL};
