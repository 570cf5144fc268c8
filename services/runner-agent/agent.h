/* Shared state of one runner-agent process: settings, node layout, the Kafka
 * producer and the table of run slots. Owned by main(); every worker thread
 * borrows it for the whole process lifetime. */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/ids.h"
#include "crun_exec.h"
#include "events.h"
#include "kafka/kafka_config.h"
#include "service/service_config.h"
#include "paddock/v1/runs.pb-c.h"

/* Every sandbox has its own user namespace mapping container ids
 * 0..RUNNER_USERNS_SIZE-1 to a host range of its own: run slot s gets
 * RUNNER_USERNS_HOST_BASE + s * RUNNER_USERNS_SIZE.., unprivileged ids no host
 * account uses. Two concurrent runs never share a host uid, so one cannot
 * signal, ptrace or read the files of the other even where a namespace would
 * let it name them (issue 9 point 4). A slot's range is free again once its
 * run is destroyed; a restarted agent removes leftovers (as root, whatever
 * range they used) before it accepts runs. The agent process runs as
 * RUNNER_SANDBOX_INNER_UID inside; runner_userns_host_id() gives the host id
 * it maps to (owner of the workspace on the host). Sandboxes of the warm pool
 * (pool.h) take ranges past the slots' (slot n_slots + i), one each until
 * destroyed. */
#define RUNNER_USERNS_HOST_BASE 100000u
#define RUNNER_USERNS_SIZE 65536u
#define RUNNER_SANDBOX_INNER_UID 1000u
#define RUNNER_SANDBOX_INNER_GID 1000u

/* Host id of container id `inner` (< RUNNER_USERNS_SIZE) in slot's range;
 * PADDOCK_RUN_SLOTS <= 256 keeps every range below 2^32. */
static inline uint32_t runner_userns_host_id(unsigned slot, uint32_t inner) {
        return RUNNER_USERNS_HOST_BASE + slot * RUNNER_USERNS_SIZE + inner;
}

struct pool;

struct runner_settings {
        struct kafka_settings kafka;
        char *node_id;
        char *state_dir;
        char *image_cache_dir;     /* PADDOCK_IMAGE_CACHE_DIR (images.h) */
        long long run_slots;
        double node_cpus;
        long long node_memory_mb;
        long long heartbeat_ms;
        char *crun;
        char *cgroup_parent;       /* PADDOCK_RUNNER_CGROUP_PARENT: every sandbox's cgroup is <this>/<run id> */
        struct service_settings svc; /* log level, ops address (no database: it holds no credentials) */
        long long max_output_mb;
        long long max_diff_mb;
        long long egress_run_max_conns;
        long long egress_run_max_fds;
        long long egress_run_max_buffer_mb;
        long long egress_node_max_conns;
        long long egress_loops;
        long long egress_idle_timeout_s;
        long long egress_max_body_mb;
        char *egress_ca_bundle;
        long long gateway_run_max_conns, gateway_idle_timeout_s, gateway_max_body_mb; /* the model gateway (gateway.h) */
        long long max_file_events;
        long long file_coalesce_ms;
        long long diff_max_files;
        long long diff_max_file_mb;
        long long diff_memory_mb;
        long long diff_timeout_s;
        char *git;
        char *egress_floor;        /* PADDOCK_EGRESS_FLOOR (net/addr_policy.h) */
        struct run_events_config events; /* PADDOCK_RUN_EVENT_* (events.h) */
        long long agent_stall_s;   /* PADDOCK_AGENT_STALL_S (agent_cli.h) */
        char *hook_binary;         /* PADDOCK_HOOK_BINARY (hook_server.h) */
        long long warm_pool;       /* PADDOCK_RUNNER_WARM_POOL: prepared sandboxes per image (pool.h) */
};

enum cgroup_mode { CGROUP_MODE_V1, CGROUP_MODE_V2 };

/* One accepted run. The worker thread owns `assigned` and frees it; the other
 * fields are guarded by agent.lock except `cancel`, which is atomic. */
struct run_slot {
        bool busy;              /* a worker thread exists for this slot */
        bool finished;          /* the worker returned; main joins it */
        pthread_t thread;
        char run_id[UUID_STR_LEN];
        double cpus;
        uint32_t memory_mb;
        atomic_bool cancel;     /* set on SIGTERM or a cancel message: kill, capture, destroy */
        int wake_fd;            /* eventfd the worker polls; written when cancel is set */
        /* who asked (agent.lock): empty for a runner shutdown */
        char cancel_by[128];
        char cancel_reason[256];
        int64_t cancel_mono_us; /* when the cancel message was polled */
        int64_t received_mono_us; /* when the assignment was polled */
        Paddock__V1__RunAssigned *assigned;
        struct agent *agent;
};

struct agent {
        struct runner_settings *cfg;
        char node_id[256];
        struct bus_auth *auth;     /* signs as "node:<node id>", verifies what it consumes */
        char producer_name[300];   /* "runner-agent/<node id>" */
        double node_cpus;
        uint64_t node_memory_mb;
        struct kafka_producer *producer;

        /* node layout under the state dir (docs/CONTRACTS.md) */
        char *state_dir, *crun_root, *runs_dir, *netns_dir, *done_dir, *rootfs_dir, *etc_dir;
        enum cgroup_mode cgroup_mode;
        char **cgroup_v1_mounts;   /* NULL-terminated mount points of v1 hierarchies */
        struct crun_exec crun;     /* sealed copy of cfg->crun every crun call execs (crun_exec.h) */
        struct pool *pool;         /* the warm sandbox pool (pool.h), NULL: off */

        pthread_mutex_t lock;
        pthread_cond_t cond;       /* signalled when a slot frees up */
        struct run_slot *slots;
        unsigned n_slots;
};

/* Counts busy slots and their cpus/memory; fills up to max run ids (caller
 * frees each). Takes agent.lock. */
unsigned agent_running(struct agent *a, double *cpus, uint64_t *memory_mb, char ***run_ids);
