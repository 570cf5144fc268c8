/* Shared state of one runner-agent process: settings, node layout, the Kafka
 * producer and the table of run slots. Owned by main(); every worker thread
 * borrows it for the whole process lifetime. */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/ids.h"
#include "kafka/kafka_config.h"
#include "paddock/v1/runs.pb-c.h"

/* Every sandbox has its own user namespace mapping container ids
 * 0..RUNNER_USERNS_SIZE-1 to host ids RUNNER_USERNS_HOST_BASE.., an
 * unprivileged range no host account uses. The agent process runs as
 * RUNNER_SANDBOX_INNER_UID inside; RUNNER_SANDBOX_UID/GID are the host ids
 * that uid maps to (owner of the workspace on the host). */
#define RUNNER_USERNS_HOST_BASE 100000
#define RUNNER_USERNS_SIZE 65536
#define RUNNER_SANDBOX_INNER_UID 1000
#define RUNNER_SANDBOX_INNER_GID 1000
#define RUNNER_SANDBOX_UID (RUNNER_USERNS_HOST_BASE + RUNNER_SANDBOX_INNER_UID)
#define RUNNER_SANDBOX_GID (RUNNER_USERNS_HOST_BASE + RUNNER_SANDBOX_INNER_GID)

struct runner_settings {
        struct kafka_settings kafka;
        char *node_id;
        char *state_dir;
        long long run_slots;
        double node_cpus;
        long long node_memory_mb;
        long long heartbeat_ms;
        char *crun;
        char *ops_addr;
        char *log_level;
        long long max_output_mb;
        long long max_diff_mb;
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

        pthread_mutex_t lock;
        pthread_cond_t cond;       /* signalled when a slot frees up */
        struct run_slot *slots;
        unsigned n_slots;
};

/* Counts busy slots and their cpus/memory; fills up to max run ids (caller
 * frees each). Takes agent.lock. */
unsigned agent_running(struct agent *a, double *cpus, uint64_t *memory_mb, char ***run_ids);
