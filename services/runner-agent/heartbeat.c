#include "heartbeat.h"
#include "drain.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/macro.h"
#include "images.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "metrics_runner.h"
#include "paddock/v1/nodes.pb-c.h"
#include "proto/envelope.h"

struct heartbeat {
        struct agent *a;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop;
};

static void beat(struct agent *a) {
        Paddock__V1__Envelope env;
        Paddock__V1__NodeHeartbeat hb = PADDOCK__V1__NODE_HEARTBEAT__INIT;
        Paddock__V1__NodeCapacity cap = PADDOCK__V1__NODE_CAPACITY__INIT;
        Paddock__V1__NodeCapacity used = PADDOCK__V1__NODE_CAPACITY__INIT;
        char msgid[UUID_STR_LEN];
        char **ids = NULL;
        double cpus = 0;
        uint64_t mem = 0;
        struct err_detail err = {0};
        _cleanup_free_ uint8_t *buf = NULL; /* declared before any goto out */
        char **images = NULL;
        size_t n_images = 0;

        unsigned n = agent_running(a, &cpus, &mem, &ids);
        if (envelope_init(&env, "", "", 0, a->producer_name, msgid) < 0)
                goto out;
        /* draining (drain.h): no slot to offer, the scheduler places nothing new */
        cap.run_slots = runner_draining(a) ? 0 : a->n_slots;
        cap.cpus = a->node_cpus;
        cap.memory_mb = a->node_memory_mb;
        used.run_slots = n;
        used.cpus = cpus;
        used.memory_mb = mem;
        hb.env = &env;
        hb.node_id = a->node_id;
        hb.capacity = &cap;
        hb.used = &used;
        hb.n_running_runs = ids ? n : 0;
        hb.running_runs = ids;
        hb.heartbeat_interval_ms = (uint32_t)a->cfg->heartbeat_ms;
        hb.version = PADDOCK_VERSION;
        images = images_available(a->cfg->image_cache_dir, &n_images);
        hb.images = images;
        hb.n_images = images ? n_images : 0;

        size_t len = paddock__v1__node_heartbeat__get_packed_size(&hb);
        buf = malloc(len ? len : 1);
        if (!buf)
                goto out;
        paddock__v1__node_heartbeat__pack(&hb, buf);
        /* async: a slow broker must not delay the next beat; the producer retries */
        if (kafka_produce(a->producer, TOPIC_NODES, a->node_id, buf, len, &err) < 0)
                log_warn("could not queue heartbeat: %s", err.message);
        else
                metric_add(&runner_metric_heartbeats, 1);
out:
        for (size_t i = 0; images && i < n_images; i++)
                free(images[i]);
        free(images);
        if (ids) {
                for (unsigned i = 0; i < n; i++)
                        free(ids[i]);
                free(ids);
        }
}

static void *heartbeat_thread(void *userdata) {
        struct heartbeat *h = userdata;
        pthread_mutex_lock(&h->lock);
        while (!h->stop) {
                pthread_mutex_unlock(&h->lock);
                beat(h->a);
                pthread_mutex_lock(&h->lock);
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                long long ms = h->a->cfg->heartbeat_ms;
                ts.tv_sec += ms / 1000;
                ts.tv_nsec += (ms % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                while (!h->stop && pthread_cond_timedwait(&h->cond, &h->lock, &ts) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&h->lock);
        return NULL;
}

struct heartbeat *heartbeat_start(struct agent *a) {
        struct heartbeat *h = calloc(1, sizeof *h);
        if (!h)
                return NULL;
        h->a = a;
        pthread_mutex_init(&h->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->cond, &ca);
        pthread_condattr_destroy(&ca);
        if (pthread_create(&h->thread, NULL, heartbeat_thread, h) != 0) {
                free(h);
                return NULL;
        }
        return h;
}

struct heartbeat *heartbeat_stop(struct heartbeat *h) {
        if (!h)
                return NULL;
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
        pthread_mutex_destroy(&h->lock);
        pthread_cond_destroy(&h->cond);
        free(h);
        return NULL;
}
