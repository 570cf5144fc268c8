/* Node heartbeats: the scheduler's view of capacity and liveness. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/macro.h"
#include "paddock/v1/nodes.pb-c.h"
#include "pg/pg.h"
#include "kafka/bus_auth.h"
#include "kafka/topics.h"
#include "scheduler.h"

#define NODE_ID_MAX 253 /* a DNS name: node ids are Kubernetes node names */
#define IMAGE_NAME_MAX 128 /* the catalog's name bound */
#define IMAGES_MAX 256

static void heartbeat_freep(Paddock__V1__NodeHeartbeat **p) {
        if (*p)
                paddock__v1__node_heartbeat__free_unpacked(*p, NULL);
}

static bool node_id_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > NODE_ID_MAX)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      *c == '-' || *c == '.' || *c == '_'))
                        return false;
        return true;
}

/* The node's image names as a PostgreSQL text[] literal in *ret (caller
 * frees). Names outside the catalog's alphabet are left out (and logged)
 * rather than refusing the heartbeat: capacity and liveness matter more than
 * one odd name, and a name the api cannot match helps no launch. */
static int images_literal(const Paddock__V1__NodeHeartbeat *hb, char **ret) {
        size_t n = hb->n_images < IMAGES_MAX ? hb->n_images : IMAGES_MAX;
        _cleanup_free_ char *lit = malloc(n * (IMAGE_NAME_MAX + 3) + 3);
        if (!lit)
                return -ENOMEM;
        char *p = lit;
        *p++ = '{';
        for (size_t i = 0; i < n; i++) {
                const char *name = hb->images[i];
                size_t len = name ? strlen(name) : 0;
                if (len == 0 || len > IMAGE_NAME_MAX ||
                    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len) {
                        log_ctx(LOG_WARN, LOG_KV("node", hb->node_id), "heartbeat image name ignored: not 1-%d of [A-Za-z0-9._-]",
                                IMAGE_NAME_MAX);
                        continue;
                }
                /* quoted: an unquoted NULL would be a null element */
                p += sprintf(p, "%s\"%s\"", p - lit > 1 ? "," : "", name);
        }
        *p++ = '}';
        *p = '\0';
        *ret = TAKE_PTR(lit);
        return 0;
}

int nodes_handle_heartbeat(PGconn *conn, const char *signer, const void *data, size_t len, struct err_detail *reterr) {
        _cleanup_(heartbeat_freep) Paddock__V1__NodeHeartbeat *hb =
                paddock__v1__node_heartbeat__unpack(NULL, len, data);
        if (!hb)
                return err_set(reterr, -EBADMSG, "decode", "not a NodeHeartbeat");
        if (!node_id_valid(hb->node_id))
                return err_set(reterr, -EINVAL, "node_id", "node_id must be 1-%d characters of [A-Za-z0-9._-]", NODE_ID_MAX);
        /* a node speaks only about itself (docs/CONTRACTS.md, signed messages) */
        if (!bus_auth_is_node(signer, hb->node_id)) {
                bus_auth_refuse(TOPIC_NODES, signer, BUS_REFUSED_WRONG_SUBJECT, "heartbeat names another node");
                return 0;
        }

        const Paddock__V1__NodeCapacity *cap = hb->capacity, *used = hb->used;
        uint32_t interval = hb->heartbeat_interval_ms ? hb->heartbeat_interval_ms : 2000;
        if (interval < 100 || interval > 3600000)
                return err_set(reterr, -EINVAL, "heartbeat_interval_ms", "heartbeat_interval_ms %u is outside [100, 3600000]", interval);
        if (cap && cap->run_slots > 100000)
                return err_set(reterr, -EINVAL, "capacity", "run_slots %u is implausible", cap->run_slots);

        char slots[16], cpus[32], mem[32], uslots[16], ucpus[32], umem[32], ival[16], ts[32];
        snprintf(slots, sizeof slots, "%u", cap ? cap->run_slots : 0);
        snprintf(cpus, sizeof cpus, "%.17g", cap ? cap->cpus : 0.0);
        snprintf(mem, sizeof mem, "%llu", cap ? (unsigned long long)cap->memory_mb : 0ULL);
        snprintf(uslots, sizeof uslots, "%u", used ? used->run_slots : 0);
        snprintf(ucpus, sizeof ucpus, "%.17g", used ? used->cpus : 0.0);
        snprintf(umem, sizeof umem, "%llu", used ? (unsigned long long)used->memory_mb : 0ULL);
        snprintf(ival, sizeof ival, "%u", interval);
        _cleanup_free_ char *images = NULL;
        if (images_literal(hb, &images) < 0)
                return err_set(reterr, -ENOMEM, "oom", "out of memory");
        int64_t sent_us = hb->env ? hb->env->ts_unix_us : 0;
        snprintf(ts, sizeof ts, "%lld", (long long)sent_us);

        /* last_seen is the heartbeat's own time capped at now: replaying old
         * heartbeats (first start reads from the earliest offset) must not make
         * a dead node look alive, and a clock running ahead must not keep one
         * alive. Capacity only moves with a newer heartbeat, and only a
         * strictly newer one revives a node declared dead (a redelivered last
         * heartbeat must not). */
        const char *params[] = {hb->node_id, slots, cpus, mem, uslots, ucpus, umem, ival,
                                hb->version && *hb->version ? hb->version : NULL,
                                sent_us > 0 ? ts : NULL, images};
        return pg_exec(conn,
                       "INSERT INTO scheduler.nodes AS n (node_id, capacity_slots, capacity_cpus,"
                       " capacity_memory_mb, used_slots, used_cpus, used_memory_mb,"
                       " heartbeat_interval_ms, version, last_seen, images)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                       "  LEAST(now(), COALESCE(to_timestamp($10::double precision / 1e6), now())), $11::text[])"
                       " ON CONFLICT (node_id) DO UPDATE SET"
                       "  capacity_slots = EXCLUDED.capacity_slots, capacity_cpus = EXCLUDED.capacity_cpus,"
                       "  capacity_memory_mb = EXCLUDED.capacity_memory_mb, used_slots = EXCLUDED.used_slots,"
                       "  used_cpus = EXCLUDED.used_cpus, used_memory_mb = EXCLUDED.used_memory_mb,"
                       "  heartbeat_interval_ms = EXCLUDED.heartbeat_interval_ms,"
                       "  version = EXCLUDED.version, last_seen = EXCLUDED.last_seen, images = EXCLUDED.images,"
                       "  dead_since = CASE WHEN EXCLUDED.last_seen > n.last_seen THEN NULL"
                       "               ELSE n.dead_since END"
                       " WHERE EXCLUDED.last_seen >= n.last_seen",
                       (int)ELEMENTSOF(params), params, NULL, reterr);
}
