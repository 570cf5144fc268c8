/* paddock.runs.control: the api's commands to the runner-agent holding a run
 * (cancel, approval decisions, sealed secrets), keyed by run id so the
 * commands of one run stay in order. They go through the outbox (outbox.c):
 * a command exists exactly when the transaction that decided it commits. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "kafka/topics.h"
#include "proto/envelope.h"

int control_enqueue(struct api *a, struct db *d, const char *tenant_id, const char *run_id,
                    Paddock__V1__RunControl *rc, struct err_detail *e) {
        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN], producer[64];
        snprintf(producer, sizeof producer, "api/%s", a->instance);
        if (envelope_init(&env, tenant_id, run_id, 0, producer, msgid) < 0)
                return err_set(e, -EIO, "envelope", "could not generate a message id");
        rc->env = &env;
        if (!rc->node_id)
                rc->node_id = (char *)"";
        size_t len = paddock__v1__run_control__get_packed_size(rc);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf) {
                rc->env = NULL;
                return err_set(e, -ENOMEM, "oom", "out of memory");
        }
        paddock__v1__run_control__pack(rc, buf);
        int k = outbox_put(d->conn, tenant_id, TOPIC_RUNS_CONTROL, run_id, buf, len, e);
        /* the message may hold sealed secrets: no copy outlives the call */
        explicit_bzero(buf, len);
        free(buf);
        rc->env = NULL;
        return k;
}
