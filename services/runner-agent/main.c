/* paddock-runner-agent: the execution-plane node agent. Consumes this node's
 * run assignments from Kafka, runs each in a crun sandbox with its own network
 * namespace, streams events, usage and artifacts back over Kafka, destroys the
 * sandbox and proves it is gone. Holds no database or storage credentials. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "assignments.h"
#include "capture_exec.h"
#include "capture_files.h"
#include "cleanup.h"
#include "control.h"
#include "core/config.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/shutdown.h"
#include "gateway.h"
#include "heartbeat.h"
#include "http/ops.h"
#include "images.h"
#include "crypto/sign.h"
#include "kafka/consume_loop.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "metrics_runner.h"
#include "net/addr_policy.h"
#include "drain.h"
#include "node_prep.h"
#include "pool.h"
#include "proxy.h"
#include "proxy_policy.h"
#include "run.h"
#include "service/service.h"

struct metric runner_metric_runs_accepted = {.name = "paddock_runner_runs_accepted_total", .help = "Runs accepted by this node", .type = METRIC_COUNTER};
struct metric runner_metric_runs_finished = {.name = "paddock_runner_runs_finished_total", .help = "Runs that reached a terminal status", .type = METRIC_COUNTER};
struct metric runner_metric_runs_running = {.name = "paddock_runner_runs_running", .help = "Runs currently occupying a slot", .type = METRIC_GAUGE};
struct metric runner_metric_orphans_reaped = {.name = "paddock_runner_orphans_reaped_total",
                                             .help = "Orphaned zombie processes the runner-agent reaped (orphans.h)",
                                             .type = METRIC_COUNTER};
struct metric runner_metric_output_events = {.name = "paddock_runner_output_events_total", .help = "Output events produced", .type = METRIC_COUNTER};
struct metric runner_metric_heartbeats = {.name = "paddock_runner_heartbeats_total", .help = "Node heartbeats queued", .type = METRIC_COUNTER};

#define S(f) offsetof(struct runner_settings, f)
static const struct config_entry config_table[] = {
        KAFKA_CONFIG_ENTRIES(struct runner_settings, kafka),
        {"PADDOCK_NODE_ID", CONFIG_STRING, "", 0, 0, false, S(node_id),
         "this node's id in run assignments and heartbeats (empty: the hostname)"},
        {"PADDOCK_RUNNER_STATE_DIR", CONFIG_STRING, "/var/lib/paddock-runner", 0, 0, false, S(state_dir),
         "state dir: crun root, run bundles and workspaces, netns files, run markers"},
        {"PADDOCK_IMAGE_CACHE_DIR", CONFIG_STRING, IMAGES_DEFAULT_CACHE_DIR, 0, 0, false, S(image_cache_dir),
         "built catalog images, by content (`image build` writes it): outside the state dir and any checkout, "
         "so purges and fresh clones reuse them"},
        {"PADDOCK_RUN_SLOTS", CONFIG_INT, "4", 1, 256, false, S(run_slots), "runs executed at the same time"},
        {"PADDOCK_NODE_CPUS", CONFIG_DOUBLE, "0", 0, 4096, false, S(node_cpus),
         "cpus offered to the scheduler (0: the machine's online cpus)"},
        {"PADDOCK_NODE_MEMORY_MB", CONFIG_INT, "0", 0, 1LL << 30, false, S(node_memory_mb),
         "memory offered to the scheduler in MiB (0: the machine's physical memory)"},
        {"PADDOCK_RUNNER_CGROUP_PARENT", CONFIG_STRING, "paddock", 0, 0, false, S(cgroup_parent),
         "cgroup under which every sandbox's cgroup <parent>/<run id> is made, relative to each hierarchy's root "
         "(the runner's own cgroup in a pod with a cgroup namespace): in Kubernetes a cgroup the node reserves "
         "for the runs, so the kubelet accounts them; set PADDOCK_NODE_CPUS and PADDOCK_NODE_MEMORY_MB to what it "
         "holds. [A-Za-z0-9._-] components separated by /"},
        {"PADDOCK_HEARTBEAT_MS", CONFIG_INT, "2000", 100, 600000, false, S(heartbeat_ms),
         "interval of node heartbeats on paddock.nodes"},
        {"PADDOCK_CRUN", CONFIG_STRING, "/usr/bin/crun", 0, 0, false, S(crun), "path of the crun binary"},
        SERVICE_CONFIG_OPS_ADDR_ENTRY(struct runner_settings, svc),
        SERVICE_CONFIG_LOG_LEVEL_ENTRY(struct runner_settings, svc),
        {"PADDOCK_RUN_MAX_OUTPUT_MB", CONFIG_INT, "64", 1, 65536, false, S(max_output_mb),
         "stdout+stderr of one run sent as output events, beyond it output is dropped"},
        {"PADDOCK_RUN_MAX_DIFF_MB", CONFIG_INT, "256", 1, 65536, false, S(max_diff_mb),
         "largest workspace diff captured as an artifact; beyond it the diff is cut and marked truncated"},
        {"PADDOCK_EGRESS_RUN_MAX_CONNS", CONFIG_INT, "256", 1, 65536, false, S(egress_run_max_conns),
         "egress proxy connections one run may hold open; past it new ones are refused (429)"},
        {"PADDOCK_EGRESS_RUN_MAX_FDS", CONFIG_INT, "1024", 8, 1048576, false, S(egress_run_max_fds),
         "file descriptors the egress proxy holds for one run (client, upstream, tunnel pipes)"},
        {"PADDOCK_EGRESS_RUN_MAX_BUFFER_MB", CONFIG_INT, "64", 1, 65536, false, S(egress_run_max_buffer_mb),
         "buffer memory the egress proxy holds for one run's connections"},
        {"PADDOCK_EGRESS_NODE_MAX_CONNS", CONFIG_INT, "4096", 1, 1048576, false, S(egress_node_max_conns),
         "egress proxy connections of all runs on this node; past it new ones are refused (503)"},
        {"PADDOCK_EGRESS_IDLE_TIMEOUT_S", CONFIG_INT, "600", 1, 86400, false, S(egress_idle_timeout_s),
         "an egress connection with no byte either way for this long is closed"},
        {"PADDOCK_EGRESS_LOOPS", CONFIG_INT, "0", 0, 16, false, S(egress_loops),
         "egress proxy event loop threads, each accepting and relaying its own connections (0: one per online CPU, at most 4)"},
        {"PADDOCK_EGRESS_MAX_BODY_MB", CONFIG_INT, "256", 1, 1048576, false, S(egress_max_body_mb),
         "largest request body through the egress proxy (Content-Length or chunked data; 413 beyond)"},
        {"PADDOCK_EGRESS_CA_BUNDLE", CONFIG_STRING, "", 0, 0, false, S(egress_ca_bundle),
         "PEM file of the CAs trusted for secret header origins and model gateway upstreams (empty: the system's CAs)"},
        {"PADDOCK_GATEWAY_RUN_MAX_CONNS", CONFIG_INT, "32", 1, 4096, false, S(gateway_run_max_conns),
         "model calls one run may have open through its model gateway; past it new ones get 529"},
        {"PADDOCK_GATEWAY_IDLE_TIMEOUT_S", CONFIG_INT, "600", 1, 86400, false, S(gateway_idle_timeout_s),
         "a model call with no byte from the agent (request) or the upstream (answer) for this long ends"},
        {"PADDOCK_GATEWAY_MAX_BODY_MB", CONFIG_INT, "32", 1, 4096, false, S(gateway_max_body_mb),
         "largest model request body through the model gateway (413 beyond)"},
        {"PADDOCK_RUN_MAX_FILE_EVENTS", CONFIG_INT, "20000", 100, 100000000, false, S(max_file_events),
         "file_access events of one run; past them accesses are counted and reported once at the end"},
        {"PADDOCK_RUN_FILE_COALESCE_MS", CONFIG_INT, "200", 0, 10000, false, S(file_coalesce_ms),
         "window over which file accesses of one (path, mode) become one file_access event with a count (0: within one read of the fanotify queue)"},
        {"PADDOCK_RUN_DIFF_MAX_FILES", CONFIG_INT, "20000", 1, 10000000, false, S(diff_max_files),
         "entries of the baseline and of the workspace compared for the diff; beyond it the diff is truncated"},
        {"PADDOCK_RUN_DIFF_MAX_FILE_MB", CONFIG_INT, "16", 1, 65536, false, S(diff_max_file_mb),
         "a changed file larger than this is listed in the diff with its size and sha256, not diffed"},
        {"PADDOCK_RUN_DIFF_MEMORY_MB", CONFIG_INT, "1024", 64, 1LL << 20, false, S(diff_memory_mb),
         "address space of the diff tool (git, as the run's unprivileged nobody)"},
        {"PADDOCK_RUN_DIFF_TIMEOUT_S", CONFIG_INT, "60", 1, 86400, false, S(diff_timeout_s),
         "longest the workspace diff may take; what is done by then is kept, marked truncated"},
        {"PADDOCK_GIT", CONFIG_STRING, "/usr/bin/git", 0, 0, false, S(git),
         "path of the git binary the workspace diff runs (git diff --no-index)"},
        ADDR_FLOOR_CONFIG_ENTRY(S(egress_floor)),
        {"PADDOCK_AGENT_STALL_S", CONFIG_INT, "300", 1, 86400, false, S(agent_stall_s),
         "a claude-code or codex run whose CLI writes nothing for this long ends failed \"agent stalled\" "
         "(the timer does not run while one of the run's approvals is pending)"},
        {"PADDOCK_HOOK_BINARY", CONFIG_STRING, "", 0, 0, false, S(hook_binary),
         "the static paddock-hook binary mounted read-only at /paddock/bin/paddock-hook for claude-code and codex "
         "runs (empty: paddock-hook next to this program); a CLI run fails at provisioning without it"},
        {"PADDOCK_RUNNER_WARM_POOL", CONFIG_INT, "0", 0, 8, false, S(warm_pool),
         "sandboxes prepared ahead of runs per image (crun create done; a run claims one: docs/CONTRACTS.md "
         "\"Sandbox pool\"); 0: off, every run provisions its own"},
        /* 5 ms: every record costs one Ed25519 signature and a verification
         * per consumer that reads it (evidence, each api worker with a viewer
         * of the run); at 10k events/s, 2 ms would make 500 records/s instead
         * of 200 (about 0.1 s of CPU a second more on a loaded 2-core node)
         * to save at most 3 ms an event (docs/CONTRACTS.md "Run event
         * records") */
        {"PADDOCK_RUN_EVENT_LINGER_MS", CONFIG_INT, "5", 0, 1000, false, S(events.linger_ms),
         "longest a run event waits to share a record (RunEventBatch) with the run's next events; 0: one per record"},
        {"PADDOCK_RUN_EVENT_BATCH_MAX", CONFIG_INT, "1000", 1, 100000, false, S(events.max_events),
         "most run events in one record on paddock.runs.events"},
        {"PADDOCK_RUN_EVENT_BATCH_BYTES", CONFIG_INT, "262144", 4096, 900000, false, S(events.max_bytes),
         "most bytes of run events in one record (below the broker's message.max.bytes)"},
        {"PADDOCK_RUN_EVENT_BLOCK_BUDGET_MS", CONFIG_INT, "30000", 100, 3600000, false, S(events.block_budget_ms),
         "how long in total a run's capture may wait for a full producer queue; past it the run ends "
         "limit_exceeded (never a silent drop)"},
        {"PADDOCK_RUN_EVENT_SPOOL_MB", CONFIG_INT, "64", 1, 65536, false, S(events.spool_mb),
         "most MiB of a run's event records not yet acknowledged kept in its spool in the state dir, produced again "
         "by a restarted runner; a full spool waits like a full producer queue (PADDOCK_RUN_EVENT_BLOCK_BUDGET_MS)"},
        {0},
};
#undef S

static const char summary[] =
        "Paddock runner-agent: runs this node's assigned runs in crun sandboxes and reports over Kafka.";

static const struct service_spec spec = {
        .name = "runner-agent",
        .summary = summary,
        .table = config_table,
        .svc_offset = offsetof(struct runner_settings, svc),
        .kafka_offset = offsetof(struct runner_settings, kafka),
        .producer = true,
        .warm = (const char *const[]){TOPIC_RUNS_EVENTS, TOPIC_RUNS_STATUS, TOPIC_ARTIFACTS, TOPIC_USAGE,
                                      TOPIC_NODES, NULL},
        .warm_note = "the first run",
        .warm_timeout_ms = 5000,
        .ready = SERVICE_READY_KAFKA,
};

/* Ready once the node consumes its assignments and control messages
 * (service.ready, after the Kafka check). */
static atomic_bool started;

static int ready(void *userdata, struct ops_not_ready *why) {
        (void)userdata;
        return started ? 0 : ops_not_ready_set(why, -EAGAIN, "runner", "still starting");
}

/* The node's signing key: PADDOCK_SIGNING_KEY, else node.key in the state dir. */
static void node_key_path(const struct runner_settings *cfg, char *buf, size_t size) {
        if (cfg->kafka.signing_key[0])
                snprintf(buf, size, "%s", cfg->kafka.signing_key);
        else
                snprintf(buf, size, "%s/node.key", cfg->state_dir);
}

/* `paddock-runner-agent enroll`: the operator step of docs/CONTRACTS.md
 * (signed messages). Creates the node's key if there is none and prints
 * "node:<id> <public key>", the line the operator records (the trusted-keys
 * file, or PUT /v1/nodes/{id}/key). Never prints the private key. */
static int enroll_main(const struct config_entry *table) {
        struct runner_settings cfg = {0};
        struct err_detail err = {0};
        log_init("runner-agent", LOG_INFO);
        if (config_load(table, &cfg, &err) < 0) {
                log_error("invalid configuration: %s", err.message);
                config_free(table, &cfg);
                return CONFIG_EXIT_BAD;
        }
        char node[256] = "", path[4096];
        if (cfg.node_id[0])
                snprintf(node, sizeof node, "%s", cfg.node_id);
        else
                gethostname(node, sizeof node - 1);
        node_key_path(&cfg, path, sizeof path);
        struct sign_key *k = NULL;
        int r = sign_key_load(path, &k, &err);
        if (r == -ENOENT) {
                mkdir(cfg.state_dir, 0700);
                r = sign_key_generate(path, &k, &err);
        }
        char pub[SIGN_PUBLIC_KEY_B64_LEN + 1];
        if (r >= 0)
                r = sign_key_public_b64(k, pub);
        sign_key_free(k);
        config_free(table, &cfg);
        if (r < 0) {
                log_error("could not enroll: %s", err.message[0] ? err.message : strerror(-r));
                return 1;
        }
        printf("node:%s %s\n", node, pub);
        return 0;
}

int main(int argc, char **argv) {
        if (argc > 1 && !strcmp(argv[1], "image")) {
                /* the node's image builder: a one-shot command, no Kafka */
                log_init("runner-agent", LOG_INFO);
                return images_main(argc - 1, argv + 1, getenv("PADDOCK_IMAGE_CACHE_DIR"));
        }
        if (argc > 1 && !strcmp(argv[1], "enroll"))
                return enroll_main(config_table);
        if (argc > 1 && !strcmp(argv[1], "drain")) {
                /* the DaemonSet's preStop: a one-shot command, no Kafka */
                log_init("runner-agent", LOG_INFO);
                return runner_drain_main(argc - 1, argv + 1, getenv("PADDOCK_RUNNER_STATE_DIR"));
        }

        struct runner_settings cfg = {0};
        struct err_detail err = {0};
        int r = service_init(&spec, argc, argv, &cfg);
        if (r >= 0)
                return r;
        /* the platform egress floor of every run's proxy (docs/CONTRACTS.md) */
        static struct addr_floor *floor;
        if (addr_floor_new(cfg.egress_floor, &floor, &err) < 0) {
                log_error("invalid configuration: PADDOCK_EGRESS_FLOOR: %s", err.message);
                config_free(config_table, &cfg);
                return CONFIG_EXIT_BAD;
        }
        egress_policy_set_floor(floor);
        /* the agent CLIs' hook (hook_server.h): default, paddock-hook beside us */
        if (!cfg.hook_binary[0]) {
                char self[4096];
                ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
                char *slash = n > 0 ? (self[n] = 0, strrchr(self, '/')) : NULL;
                if (slash) {
                        slash[1] = 0;
                        free(cfg.hook_binary);
                        if (asprintf(&cfg.hook_binary, "%spaddock-hook", self) < 0)
                                return 1;
                }
        }

        static struct agent a;
        a.cfg = &cfg;
        if (cfg.node_id[0])
                snprintf(a.node_id, sizeof a.node_id, "%s", cfg.node_id);
        else if (gethostname(a.node_id, sizeof a.node_id - 1) < 0 || !a.node_id[0]) {
                log_error("invalid configuration: PADDOCK_NODE_ID is empty and the hostname is unknown");
                config_free(config_table, &cfg);
                return CONFIG_EXIT_BAD;
        }
        /* the node id names a consumer group and a Kafka key */
        for (const char *p = a.node_id; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.')) {
                        log_error("invalid configuration: PADDOCK_NODE_ID: \"%s\" may only hold [A-Za-z0-9._-]",
                                  a.node_id);
                        config_free(config_table, &cfg);
                        return CONFIG_EXIT_BAD;
                }
        snprintf(a.producer_name, sizeof a.producer_name, "runner-agent/%s", a.node_id);
        if (!runner_cgroup_parent_valid(cfg.cgroup_parent)) {
                log_error("invalid configuration: PADDOCK_RUNNER_CGROUP_PARENT: \"%s\" is not a relative path of "
                          "[A-Za-z0-9._-] components (no \".\" or \"..\")", cfg.cgroup_parent);
                config_free(config_table, &cfg);
                return CONFIG_EXIT_BAD;
        }
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        a.node_cpus = cfg.node_cpus > 0 ? cfg.node_cpus : (double)(ncpu > 0 ? ncpu : 1);
        a.node_memory_mb = cfg.node_memory_mb > 0
                                   ? (uint64_t)cfg.node_memory_mb
                                   : (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / (1024 * 1024);
        a.n_slots = (unsigned)cfg.run_slots;
        a.slots = calloc(a.n_slots, sizeof *a.slots);
        pthread_mutex_init(&a.lock, NULL);
        pthread_cond_init(&a.cond, NULL);
        if (!a.slots)
                return 1;
        struct proxy_settings ps = {
                .run_max_conns = (unsigned)cfg.egress_run_max_conns, .run_max_fds = (unsigned)cfg.egress_run_max_fds,
                .run_max_buffer_bytes = (uint64_t)cfg.egress_run_max_buffer_mb << 20,
                .node_max_conns = (unsigned)cfg.egress_node_max_conns,
                .idle_timeout_ms = (int)cfg.egress_idle_timeout_s * 1000,
                .max_body_bytes = (uint64_t)cfg.egress_max_body_mb << 20, .ca_bundle = cfg.egress_ca_bundle,
                .loops = (unsigned)cfg.egress_loops};
        if (proxy_configure(&ps, &err) < 0) {
                log_error("invalid configuration: PADDOCK_EGRESS_CA_BUNDLE: %s", err.message);
                config_free(config_table, &cfg);
                return CONFIG_EXIT_BAD;
        }
        struct gateway_settings gs = GATEWAY_SETTINGS_DEFAULT;
        gs.ca_bundle = cfg.egress_ca_bundle;
        gs.run_max_conns = (unsigned)cfg.gateway_run_max_conns;
        gs.idle_timeout_ms = (int)cfg.gateway_idle_timeout_s * 1000;
        gs.max_body_bytes = (uint64_t)cfg.gateway_max_body_mb << 20;
        gs.floor = floor;
        if (gateway_configure(&gs, &err) < 0) {
                log_error("invalid configuration: PADDOCK_EGRESS_CA_BUNDLE: %s", err.message);
                config_free(config_table, &cfg);
                return CONFIG_EXIT_BAD;
        }

        metrics_register(&runner_metric_runs_accepted);
        metrics_register(&runner_metric_runs_finished);
        metrics_register(&runner_metric_runs_running);
        metrics_register(&runner_metric_orphans_reaped);
        metrics_register(&runner_metric_output_events);
        metrics_register(&runner_metric_heartbeats);
        capture_exec_metrics_register();
        capture_files_metrics_register();
        proxy_metrics_register();
        bus_auth_register_metrics();

        int rc = 1;
        struct kafka_consumer *consumer = NULL;
        struct heartbeat *hb = NULL;
        struct control *control = NULL;
        struct service svc = {0};

        if (node_prep(&a, &err) < 0) {
                log_error("could not prepare this node: %s", err.message);
                goto out;
        }
        cleanup_leftovers(&a);
        runner_drain_reset(&a);

        char client_id[300];
        snprintf(client_id, sizeof client_id, "paddock-runner-%s", a.node_id);
        /* a run may hold its slot for the longest timeout, during which the
         * loop stops polling; keep the group membership meanwhile */
        static const char *const consumer_extra[] = {"max.poll.interval.ms", "86400000", NULL};
        char identity[BUS_AUTH_SIGNER_MAX + 256], key_path[4096];
        snprintf(identity, sizeof identity, "node:%s", a.node_id);
        node_key_path(&cfg, key_path, sizeof key_path);
        svc = (struct service){.identity = identity, .signing_key = key_path, .key_hint = "enroll this node first",
                               .client_id = client_id, .ready = ready};
        rc = service_start(&spec, &cfg, &svc);
        a.auth = svc.auth;
        a.producer = svc.producer;
        if (rc != 0)
                goto out;
        rc = 1;
        /* runs a previous process left unfinished get their terminal event */
        run_recover_interrupted(&a);
        char group[320];
        snprintf(group, sizeof group, "paddock-runner-%s", a.node_id);
        struct kafka_options copts = svc.kafka;
        copts.extra = consumer_extra;
        kafka_options_control(&copts, &cfg.kafka); /* on the launch path (kafka_config.h) */
        consumer = kafka_consumer_new_routes(&copts, group, assignments_routes, "earliest", &err);
        if (!consumer) {
                log_error("could not join consumer group %s: %s", group, err.message);
                goto out;
        }
        control = control_start(&a, &err);
        if (!control) {
                log_error("could not consume run control messages: %s", err.message);
                goto out;
        }
        char port[16];
        snprintf(port, sizeof port, "%d", ops_server_port(svc.ops));
        log_ctx(LOG_INFO, LOG_KV("node", a.node_id, "ops_port", port), "runner-agent started");
        hb = heartbeat_start(&a);
        if (!hb) {
                log_error("could not start the heartbeat thread");
                goto out;
        }

        a.pool = pool_start(&a);
        started = true;
        r = assignments_loop(&a, consumer);
        log_info("stopping: cancelling running runs");
        assignments_reap(&a, true);
        rc = r < 0 ? 1 : 0;

out:
        heartbeat_stop(hb);
        assignments_reap(&a, true);
        /* after every run ended: the unclaimed sandboxes go too (drain, shutdown) */
        pool_stop(a.pool);
        a.pool = NULL;
        control_stop(control);
        kafka_consumer_free(consumer);
        /* run events were acknowledged one by one; only heartbeats may be
         * queued, and kafka_producer_free gives them its own 5 s */
        service_stop(&svc);
        a.producer = NULL;
        a.auth = NULL;
        node_prep_free(&a);
        free(a.slots);
        config_free(config_table, &cfg);
        log_info("runner-agent stopped");
        return rc;
}
