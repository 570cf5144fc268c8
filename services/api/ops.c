/* The operations endpoints of the api: /healthz, /readyz, /metrics. */
#include <errno.h>

#include "api.h"
#include "core/metrics.h"
#include "kafka/kafka.h"
#include "pg/pg.h"

int ops_healthz(struct api_req *r) {
        r->status = 200;
        r->out = json_pack("{s:s}", "status", "ok");
        return 0;
}

int ops_readyz(struct api_req *r) {
        if (!pg_pool_ping(r->api->pg))
                return api_fail(r, -ECONNRESET, "unavailable", "postgresql is not reachable");
        if (kafka_producer_ping(r->api->producer, 1000) < 0)
                return api_fail(r, -ECONNRESET, "unavailable", "kafka is not reachable");
        r->status = 200;
        r->out = json_pack("{s:s}", "status", "ready");
        return 0;
}

int ops_metrics(struct api_req *r) {
        r->text = metrics_render();
        if (!r->text)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        r->content_type = "text/plain; version=0.0.4";
        r->status = 200;
        return 0;
}
