#include "service/run_node.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kafka/bus_auth.h"
#include "pg/pg.h"

/* With the loop's backoff (100 ms doubling to 5 s) about a minute. */
#define RUN_NODE_MAX_WAITS 16

/* The record this thread last waited on; a consume loop is one thread. */
static _Thread_local struct {
        char topic[64];
        int32_t partition;
        int64_t offset;
        unsigned waits;
} last;

static void refuse(const struct kafka_message *m, const char *run_id, const char *why) {
        char detail[160];
        snprintf(detail, sizeof detail, "run %s: %s", run_id, why);
        bus_auth_refuse(m->topic, m->signer, BUS_REFUSED_WRONG_SUBJECT, detail);
}

int run_node_check(PGconn *conn, const struct kafka_message *m, const char *run_id, const char *fallback_node,
                   struct err_detail *reterr) {
        if (!strcmp(m->signer, "scheduler"))
                return 0;
        if (strncmp(m->signer, "node:", 5)) {
                refuse(m, run_id, "only nodes and the scheduler report runs");
                return 1;
        }
        const char *params[] = {run_id};
        PGresult *res = NULL;
        int r = pg_exec(conn, "SELECT node_id FROM scheduler.run_nodes WHERE run_id = $1", 1, params, &res, reterr);
        if (r < 0)
                return r;
        bool known = PQntuples(res) == 1;
        const char *node = known && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0)
                           : fallback_node && *fallback_node ? fallback_node
                                                             : NULL;
        if (node) {
                bool ok = bus_auth_is_node(m->signer, node);
                PQclear(res);
                if (ok)
                        return 0;
                refuse(m, run_id, "the run is assigned to another node");
                return 1;
        }
        PQclear(res);
        /* the scheduler records every run when it is requested, before any
         * node can be told of it: a run it never heard of has no reporter */
        if (!known) {
                refuse(m, run_id, "the scheduler knows no such run");
                return 1;
        }
        if (strcmp(last.topic, m->topic) || last.partition != m->partition || last.offset != m->offset) {
                snprintf(last.topic, sizeof last.topic, "%s", m->topic);
                last.partition = m->partition;
                last.offset = m->offset;
                last.waits = 0;
        }
        if (++last.waits > RUN_NODE_MAX_WAITS) {
                refuse(m, run_id, "the run is assigned to no node");
                return 1;
        }
        return err_set(reterr, -EAGAIN, "assignment", "run %s is not assigned to a node yet", run_id);
}
