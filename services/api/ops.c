/* The operations endpoints on the api's public port: /healthz and /readyz,
 * in the format every daemon's ops server answers with (lib/http/ops.h).
 * /metrics, summed over the workers, is only on the ops port
 * (PADDOCK_OPS_ADDR, main.c), which the Ingress does not expose. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "http/ops.h"
#include "kafka/consume_loop.h"
#include "kafka/kafka.h"
#include "pg/pg.h"

int ops_healthz(struct api_req *r) {
        r->text = strdup(OPS_HEALTHZ_BODY);
        if (!r->text)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        r->content_type = OPS_HEALTH_CONTENT_TYPE;
        r->status = 200;
        return 0;
}

/* The api's dependencies: PostgreSQL (every request) and Kafka (run
 * launches, control messages and the audit relay). */
static int api_ready(void *userdata, struct ops_not_ready *why) {
        struct api *a = userdata;
        struct err_detail e = {0};
        int r = pg_pool_ping(a->pg, &e);
        if (r < 0)
                return ops_not_ready_set(why, r, "postgresql", "%s", e.message);
        r = kafka_producer_ping(a->producer, 1000, &e);
        if (r < 0)
                return ops_not_ready_set(why, r, "kafka", "%s", e.message);
        /* this worker's consumers (run status, the stream's firehose): one
         * that stopped progressing with lag is not ready, as in every other
         * daemon (lib/service/service.c, docs/CONTRACTS.md "Chaos suite") */
        char stalled[256];
        r = kafka_consume_stalled((int)a->cfg.kafka.ready_stall_s, stalled, sizeof stalled);
        if (r < 0)
                return ops_not_ready_set(why, r, "kafka", "%s", stalled);
        return 0;
}

int ops_readyz(struct api_req *r) {
        int status = ops_readiness(api_ready, r->api, &r->text);
        if (status < 0)
                return api_fail(r, status, "internal", "out of memory");
        r->content_type = OPS_HEALTH_CONTENT_TYPE;
        r->status = status;
        return 0;
}
