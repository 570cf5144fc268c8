/* The scheduler's own verdicts on a run: a terminal status event when the
 * platform gives up on it (its node died, it could not be placed, it was
 * cancelled before any node reported it), and a cancel addressed to the node
 * it was taken from.
 *
 * A verdict carries env.seq 0, "append" (docs/CONTRACTS.md, platform
 * verdicts): the scheduler reads only paddock.runs.status, so it does not
 * know the run's last seq, and a seq it guessed could collide with one the
 * node already used. Evidence stores it after the highest seq it holds; the
 * api and the scheduler take it as the run's final status unless the run
 * already ended (the first terminal status wins). It goes to the firehose
 * first, as a RunEventBatch of one, then to paddock.runs.status as a
 * RunEvent: a status consumer never acts on a verdict the history cannot
 * get, and a crash in between repeats both. */
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

/* Packs m and produces it keyed by run id, waiting for the broker. */
static int produce_message(const struct sched *s, const char *topic, const char *run_id, const ProtobufCMessage *m,
                           struct err_detail *reterr) {
        size_t n = protobuf_c_message_get_packed_size(m);
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        protobuf_c_message_pack(m, buf);
        return kafka_produce_sync(s->producer, topic, run_id, buf, n, PLATFORM_PRODUCE_TIMEOUT_MS, reterr);
}

int platform_end_run(const struct sched *s, const char *run_id, const char *tenant, const char *team,
                     const char *status, const char *reason, struct err_detail *reterr) {
        _cleanup_(json_decrefp) json_t *data = json_pack("{s:s, s:s}", "status", status, "reason", reason);
        if (!data)
                return -ENOMEM;
        _cleanup_free_ char *data_json = json_dumps(data, JSON_COMPACT);
        if (!data_json)
                return -ENOMEM;

        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN];
        int r = envelope_init(&env, tenant, run_id, 0, s->producer_id, msgid);
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

        Paddock__V1__RunEvent *one[] = {&ev};
        Paddock__V1__RunEventBatch batch = PADDOCK__V1__RUN_EVENT_BATCH__INIT;
        batch.n_events = 1;
        batch.events = one;
        r = produce_message(s, TOPIC_RUNS_EVENTS, run_id, &batch.base, reterr);
        return r < 0 ? r : produce_message(s, TOPIC_RUNS_STATUS, run_id, &ev.base, reterr);
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

        return produce_message(s, TOPIC_RUNS_CONTROL, run_id, &c.base, reterr);
}
