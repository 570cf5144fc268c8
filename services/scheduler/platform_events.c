/* The scheduler's own verdicts on a run: a terminal status event when the
 * platform gives up on it (its node died, it could not be placed, it was
 * cancelled before any node reported it), and a cancel addressed to the node
 * it was taken from.
 *
 * The failed event takes the next sequence number after the last event the
 * scheduler saw for the run (1 if none), so it lands in the same per-run stream
 * consumers already order by seq: the api's status consumer applies it like a
 * runner-agent's terminal status, evidence stores it under (run_id, seq). If the
 * node comes back and still emits events with colliding sequence numbers, those
 * are dropped as duplicates by evidence and never move the api's terminal status. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>

#include "core/macro.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "paddock/v1/runs.pb-c.h"
#include "proto/envelope.h"
#include "scheduler.h"

#define PLATFORM_PRODUCE_TIMEOUT_MS 10000

int platform_end_run(const struct sched *s, const char *run_id, const char *tenant, const char *team,
                     uint64_t seq, const char *status, const char *reason, struct err_detail *reterr) {
        _cleanup_(json_decrefp) json_t *data = json_pack("{s:s, s:s}", "status", status, "reason", reason);
        if (!data)
                return -ENOMEM;
        _cleanup_free_ char *data_json = json_dumps(data, JSON_COMPACT);
        if (!data_json)
                return -ENOMEM;

        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN];
        int r = envelope_init(&env, tenant, run_id, seq, s->producer_id, msgid);
        if (r < 0)
                return err_set(reterr, r, "envelope", "could not create a message id");
        Paddock__V1__RunEvent ev = PADDOCK__V1__RUN_EVENT__INIT;
        ev.env = &env;
        ev.kind = (char *)"status";
        ev.actor = (char *)"platform";
        ev.data_json = data_json;
        ev.team_id = (char *)(team ? team : "");
        ev.status = (char *)status;
        ev.terminal = true;

        size_t n = paddock__v1__run_event__get_packed_size(&ev);
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        paddock__v1__run_event__pack(&ev, buf);
        return kafka_produce_sync(s->producer, TOPIC_RUNS_EVENTS, run_id, buf, n, PLATFORM_PRODUCE_TIMEOUT_MS,
                                  reterr);
}

int platform_cancel_run(const struct sched *s, const char *run_id, const char *tenant, const char *node_id,
                        const char *reason, struct err_detail *reterr) {
        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN];
        int r = envelope_init(&env, tenant, run_id, 0, s->producer_id, msgid);
        if (r < 0)
                return err_set(reterr, r, "envelope", "could not create a message id");
        Paddock__V1__CancelRun cancel = PADDOCK__V1__CANCEL_RUN__INIT;
        cancel.requested_by = (char *)"platform";
        cancel.reason = (char *)reason;
        Paddock__V1__RunControl c = PADDOCK__V1__RUN_CONTROL__INIT;
        c.env = &env;
        c.node_id = (char *)node_id;
        c.action_case = PADDOCK__V1__RUN_CONTROL__ACTION_CANCEL;
        c.cancel = &cancel;

        size_t n = paddock__v1__run_control__get_packed_size(&c);
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        paddock__v1__run_control__pack(&c, buf);
        return kafka_produce_sync(s->producer, TOPIC_RUNS_CONTROL, run_id, buf, n, PLATFORM_PRODUCE_TIMEOUT_MS,
                                  reterr);
}
