/* Run status from Kafka (group paddock-api-status): runs.assigned sets
 * scheduled + node, events of kind "status" on runs.status (the low-volume
 * copy of the control-relevant events; never the firehose, so a busy run
 * cannot delay another run's status) move the run forward; a
 * `provisioning` status carrying the run's public key gets its secrets sealed
 * (sealing.c); approval_requested / approval_decided maintain api.approvals
 * and the awaiting_approval status (approvals.c); `usage` (running model
 * totals) raises the run's usage figures, and the `running` status's
 * data.agent is stored as the run's agent_session. Updates
 * are idempotent (status_seq only grows, a terminal status is never left), so
 * redelivery is harmless. The first terminal status wins (docs/CONTRACTS.md):
 * a platform verdict (seq 0, from the scheduler) applies only to a run not yet
 * ended, and a node's late terminal status after it changes nothing. The shared lib/kafka loop commits an offset only
 * after the update, retries transient failures (PostgreSQL down) on the same
 * message with backoff and skips undecodable messages. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/shutdown.h"
#include "kafka/consume_loop.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "service/run_node.h"

static const char *const known_statuses[] = {"provisioning", "running", "awaiting_approval", "succeeded", "failed",
                                             "cancelled", "timed_out", "limit_exceeded", "rejected", NULL};

static struct metric m_processed = {.name = "paddock_api_status_messages_processed_total",
                                   .help = "Run status messages whose effect was committed", .type = METRIC_COUNTER};
static struct metric m_skipped = {.name = "paddock_api_status_messages_skipped_total",
                                  .help = "Run status messages that could never be processed (undecodable), skipped",
                                  .type = METRIC_COUNTER};
static struct metric m_retries = {.name = "paddock_api_status_retries_total",
                                  .help = "Transient failures applying run status retried (PostgreSQL unreachable)",
                                  .type = METRIC_COUNTER};

static struct {
        struct api *api;
        struct kafka_consumer *consumer;
        pthread_t thread;
        bool started;
        atomic_bool stop;
} sc;

static bool known_status(const char *s) {
        for (const char *const *k = known_statuses; *k; k++)
                if (!strcmp(*k, s))
                        return true;
        return false;
}

/* Runs one status UPDATE as the message's tenant (row-level security: a
 * message naming another tenant than the run's changes nothing); failures go
 * to err (the loop logs them with the offset). */
static int apply_sql(const char *sql, int n, const char *const *params, const char *tenant_id, const char *run_id,
                     struct err_detail *err) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, sc.api, tenant_id, &e);
        _cleanup_pgres_ PGresult *res = NULL;
        if (k >= 0)
                k = pg_exec(d.conn, sql, n, params, &res, &e);
        /* durable before the offset is: say so if the commit fails */
        if (k >= 0)
                k = db_commit(&d, &e);
        if (k < 0)
                return err_set(err, k, e.code, "could not update status of run %s: %s", run_id, e.message);
        if (atoi(PQcmdTuples(res)) > 0)
                metric_add(&api_metric_status_updates, 1);
        return 0;
}

static int handle_assigned(const struct kafka_message *m, struct err_detail *err) {
        Paddock__V1__RunAssigned *a = paddock__v1__run_assigned__unpack(NULL, m->len, m->value);
        if (!a)
                return err_set(err, KAFKA_SKIP, "protobuf", "undecodable RunAssigned");
        const char *run_id = a->env && a->env->run_id && a->env->run_id[0] ? a->env->run_id
                             : a->request && a->request->env ? a->request->env->run_id : NULL;
        const char *tenant_id = a->env && a->env->tenant_id && a->env->tenant_id[0] ? a->env->tenant_id
                                : a->request && a->request->env ? a->request->env->tenant_id : NULL;
        int r = 0;
        if (run_id && id_is_uuid(run_id) && a->node_id && a->node_id[0]) {
                const char *params[] = {run_id, a->node_id};
                /* a later status may have overtaken the assignment: keep it, only fill the node */
                r = apply_sql("UPDATE api.runs SET node_id = coalesce(node_id, $2), "
                              "scheduled_at = coalesce(scheduled_at, now()), "
                              "status = CASE WHEN status = 'queued' THEN 'scheduled' ELSE status END "
                              "WHERE id = $1 AND (status = 'queued' OR node_id IS NULL)",
                              2, params, tenant_id, run_id, err);
        }
        paddock__v1__run_assigned__free_unpacked(a, NULL);
        return r;
}

/* A `usage` event's running totals (gateway_hook.c) onto the run row,
 * each figure with GREATEST: totals only grow, so a redelivered or older
 * event never lowers one (docs/CONTRACTS.md "Model gateway"). A figure
 * missing, negative or not a number leaves that column as it is. */
static int apply_usage(Paddock__V1__RunEvent *ev, json_t *data, struct err_detail *err) {
        static const char *const ints[] = {"model_calls", "input_tokens", "output_tokens", "cache_read_tokens",
                                           "cache_write_tokens"};
        char v[5][24] = {{0}}, cost[40] = "";
        const char *params[7] = {ev->env->run_id};
        bool any = false;
        for (size_t i = 0; i < 5; i++) {
                json_t *j = json_object_get(data, ints[i]);
                if (json_is_integer(j) && json_integer_value(j) >= 0) {
                        snprintf(v[i], sizeof v[i], "%lld", (long long)json_integer_value(j));
                        params[1 + i] = v[i];
                        any = true;
                }
        }
        json_t *c = json_object_get(data, "cost_usd");
        if (json_is_number(c) && json_number_value(c) >= 0 && json_number_value(c) < 1e15) {
                snprintf(cost, sizeof cost, "%.17g", json_number_value(c));
                params[6] = cost;
                any = true;
        }
        if (!any)
                return 0; /* e.g. a runner-agent before the model gateway: runtime only */
        return apply_sql("UPDATE api.runs SET "
                         "usage_model_calls = GREATEST(usage_model_calls, coalesce($2::bigint, 0)), "
                         "usage_input_tokens = GREATEST(usage_input_tokens, coalesce($3::bigint, 0)), "
                         "usage_output_tokens = GREATEST(usage_output_tokens, coalesce($4::bigint, 0)), "
                         "usage_cache_read_tokens = GREATEST(usage_cache_read_tokens, coalesce($5::bigint, 0)), "
                         "usage_cache_write_tokens = GREATEST(usage_cache_write_tokens, coalesce($6::bigint, 0)), "
                         "usage_cost_usd = GREATEST(usage_cost_usd, coalesce($7::double precision, 0)) "
                         "WHERE id = $1",
                         7, params, ev->env->tenant_id, ev->env->run_id, err);
}

/* Events other than status that the api acts on. */
static int handle_other_event(Paddock__V1__RunEvent *ev, struct err_detail *err) {
        if (strcmp(ev->kind, "approval_requested") && strcmp(ev->kind, "approval_decided") &&
            strcmp(ev->kind, "usage"))
                return 0;
        _cleanup_json_ json_t *data = json_loads(ev->data_json ? ev->data_json : "{}", 0, NULL);
        if (!json_is_object(data))
                return 0;
        if (!strcmp(ev->kind, "usage"))
                return apply_usage(ev, data, err);
        if (!strcmp(ev->kind, "approval_requested"))
                return approvals_on_requested(sc.api, ev->env->tenant_id, ev->env->run_id, ev->env->seq, data, err);
        return approvals_on_decided(sc.api, ev->env->tenant_id, ev->env->run_id, ev->env->seq, ev->env->ts_unix_us,
                                    data, err);
}

/* Only the run's assigned node (or the scheduler) reports it: 0 allowed,
 * 1 refused (counted), negative errno transient. */
static int check_reporter(const struct kafka_message *m, const char *tenant_id, const char *run_id,
                          struct err_detail *err) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, sc.api, tenant_id, &e);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id};
        if (k >= 0)
                k = pg_exec(d.conn, "SELECT coalesce(node_id, '') FROM api.runs WHERE id = $1", 1, params, &res, &e);
        if (k >= 0)
                k = run_node_check(d.conn, m, run_id, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL, &e);
        if (k < 0)
                return err_set(err, k, e.code, "could not check the reporter of run %s: %s", run_id, e.message);
        return k;
}

/* The status UPDATE; for `provisioning` it also records the run's public key
 * if none is recorded yet. *applied: the transition took place; *key: the
 * recorded key afterwards (malloc'd, NULL if none). */
static int apply_status(const char *const *params, const char *tenant_id, const char *run_id, bool *applied,
                        char **key, struct err_detail *err) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, sc.api, tenant_id, &e);
        _cleanup_pgres_ PGresult *res = NULL, *cur = NULL;
        /* seq 0 (a platform verdict, "append") leaves status_seq: it is after
         * whatever the run said, and only applies while the run has not ended */
        if (k >= 0)
                k = pg_exec(d.conn,
                            "UPDATE api.runs SET status = $2, status_seq = GREATEST(status_seq, $3::bigint), "
                            "started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, "
                            "  to_timestamp($4::double precision / 1e6)) ELSE started_at END, "
                            "ended_at = CASE WHEN $5::boolean THEN coalesce(ended_at, "
                            "  to_timestamp($4::double precision / 1e6)) ELSE ended_at END, "
                            "exit_code = coalesce($6::integer, exit_code), reason = coalesce($7, reason), "
                            "run_public_key = CASE WHEN $2 = 'provisioning' THEN coalesce(run_public_key, $8) "
                            "  ELSE run_public_key END, "
                            "agent_session = CASE WHEN $2 = 'running' THEN coalesce($9::jsonb, agent_session) "
                            "  ELSE agent_session END "
                            "WHERE id = $1 AND (status_seq < $3::bigint OR $3::bigint = 0) AND status NOT IN "
                            "('succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected') "
                            "RETURNING run_public_key",
                            9, params, &res, &e);
        /* the end of the run ends what it still waited for, with the end */
        if (k >= 0 && PQntuples(res) > 0 && params[4][0] == 't')
                k = approvals_on_run_ended(sc.api, &d, tenant_id, run_id, &e);
        if (k >= 0 && PQntuples(res) == 0)
                k = pg_exec(d.conn, "SELECT run_public_key FROM api.runs WHERE id = $1", 1, params, &cur, &e);
        if (k >= 0)
                k = db_commit(&d, &e);
        if (k < 0) {
                if (d.conn)
                        db_rollback(&d);
                return err_set(err, k, e.code, "could not update status of run %s: %s", run_id, e.message);
        }
        *applied = PQntuples(res) > 0;
        if (*applied)
                metric_add(&api_metric_status_updates, 1);
        PGresult *from = *applied ? res : cur;
        *key = PQntuples(from) == 1 && !PQgetisnull(from, 0, 0) ? strdup(PQgetvalue(from, 0, 0)) : NULL;
        return 0;
}

/* The `running` status's data.agent ({type, cli_version, model, effort?,
 * skills, mcp_servers}, session decision 4) as stored for GET /v1/runs/{id}
 * agent_session: only those keys, strings of at most 256 bytes; NULL when
 * there is none. */
static char *agent_session_json(json_t *data) {
        json_t *a = json_object_get(data, "agent");
        if (!json_is_object(a))
                return NULL;
        _cleanup_json_ json_t *out = json_object();
        for (const char *const *k = (const char *const[]){"type", "cli_version", "model", "effort", NULL}; *k; k++) {
                json_t *v = json_object_get(a, *k);
                if (json_is_string(v) && json_string_length(v) <= 256 &&
                    strlen(json_string_value(v)) == json_string_length(v))
                        json_object_set(out, *k, v);
        }
        /* what the run was given (docs/CONTRACTS.md "MCP connectors"):
         * arrays of at most 64 names of at most 256 bytes */
        for (const char *const *k = (const char *const[]){"skills", "mcp_servers", NULL}; out && *k; k++) {
                json_t *v = json_object_get(a, *k), *n, *names = NULL;
                size_t i;
                if (!json_is_array(v) || json_array_size(v) > 64 || !(names = json_array()))
                        continue;
                json_array_foreach(v, i, n) {
                        if (json_is_string(n) && json_string_length(n) <= 256 &&
                            strlen(json_string_value(n)) == json_string_length(n))
                                json_array_append(names, n);
                }
                json_object_set_new(out, *k, names);
        }
        return out && json_object_size(out) ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

static int handle_event(const struct kafka_message *m, struct err_detail *err) {
        Paddock__V1__RunEvent *ev = paddock__v1__run_event__unpack(NULL, m->len, m->value);
        if (!ev)
                return err_set(err, KAFKA_SKIP, "protobuf", "undecodable RunEvent");
        int r = 0;
        /* seq 0 only for the scheduler's terminal verdicts (docs/CONTRACTS.md) */
        bool verdict = ev->env && ev->env->seq == 0 && ev->terminal && !strcmp(m->signer, "scheduler") && ev->kind &&
                       !strcmp(ev->kind, "status");
        bool valid = ev->env && id_is_uuid(ev->env->run_id) && (ev->env->seq > 0 || verdict) && ev->kind;
        if (valid) {
                r = check_reporter(m, ev->env->tenant_id, ev->env->run_id, err);
                if (r != 0) {
                        paddock__v1__run_event__free_unpacked(ev, NULL);
                        return r < 0 ? r : 0;
                }
        }
        if (valid && strcmp(ev->kind, "status")) {
                r = handle_other_event(ev, err);
                /* budgets (B): live usage may cross a team's threshold */
                if (r >= 0 && !strcmp(ev->kind, "usage"))
                        r = budgets_on_run(sc.api, ev->env->tenant_id, ev->env->run_id, err);
        }
        else if (valid) {
                _cleanup_json_ json_t *data = json_loads(ev->data_json ? ev->data_json : "{}", 0, NULL);
                const char *status = ev->status && ev->status[0] ? ev->status
                                                                 : json_string_value(json_object_get(data, "status"));
                if (status && known_status(status)) {
                        char seq[24], ts[32], exit_code[24] = "";
                        snprintf(seq, sizeof seq, "%llu", (unsigned long long)ev->env->seq);
                        snprintf(ts, sizeof ts, "%lld", (long long)ev->env->ts_unix_us);
                        json_t *ec = json_object_get(data, "exit_code");
                        if (json_is_integer(ec))
                                snprintf(exit_code, sizeof exit_code, "%lld", (long long)json_integer_value(ec));
                        const char *reason = json_string_value(json_object_get(data, "reason"));
                        const char *pk = json_string_value(json_object_get(data, "public_key"));
                        bool provisioning = !strcmp(status, "provisioning") && pk && pk[0];
                        bool terminal = ev->terminal || runs_status_terminal(status);
                        _cleanup_free_ char *agent = !strcmp(status, "running") ? agent_session_json(data) : NULL;
                        const char *params[] = {ev->env->run_id, status, seq, ts, terminal ? "t" : "f",
                                                exit_code[0] ? exit_code : NULL, reason && reason[0] ? reason : NULL,
                                                provisioning ? pk : NULL, agent};
                        bool applied = false;
                        _cleanup_free_ char *key = NULL;
                        r = apply_status(params, ev->env->tenant_id, ev->env->run_id, &applied, &key, err);
                        /* budgets (B): a run started (its runtime counts) or ended (its figures);
                         * also when redelivered, since the check of the first delivery may have failed */
                        if (r >= 0)
                                r = budgets_on_run(sc.api, ev->env->tenant_id, ev->env->run_id, err);
                        /* Exactly one run key (docs/CONTRACTS.md): the one
                         * recorded by the provisioning transition the assigned
                         * node applied. The same key again (a redelivery)
                         * seals again to the same recipient; any other key is
                         * refused and never sealed to. */
                        if (r >= 0 && provisioning && key && !strcmp(key, pk))
                                r = sealing_on_provisioning(sc.api, ev->env->tenant_id, ev->env->run_id, pk, err);
                        else if (r >= 0 && provisioning && key) {
                                char detail[128];
                                snprintf(detail, sizeof detail, "run %s: a second run key, not sealed to", ev->env->run_id);
                                bus_auth_refuse(m->topic, m->signer, BUS_REFUSED_WRONG_SUBJECT, detail);
                        }
                }
        }
        paddock__v1__run_event__free_unpacked(ev, NULL);
        return r;
}

/* The consumer's routes (kafka_handle_fns). */
static int route_assigned(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        (void)userdata;
        return handle_assigned(m, err);
}

static int route_status(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        (void)userdata;
        return handle_event(m, err);
}

/* never paddock.runs.events: the firehose must not delay a status (docs/CONTRACTS.md) */
static const struct kafka_route routes[] = {
        {TOPIC_RUNS_ASSIGNED, .handle = route_assigned},
        {TOPIC_RUNS_STATUS, .handle = route_status},
        {0}, /* clang: {NULL} leaves .handle "missing" */
};

static void *status_thread(void *arg) {
        (void)arg;
        struct kafka_consume_loop_options lo = {.processed = &m_processed, .skipped = &m_skipped,
                                                .retries = &m_retries, .stop = &sc.stop};
        int r = kafka_consume_routes(sc.consumer, routes, NULL, &lo);
        if (r < 0) {
                log_error("status consumer failed: %s", strerror(-r));
                shutdown_request();
                lws_cancel_service(sc.api->lws);
        }
        return NULL;
}

void status_consumer_register_metrics(void) {
        metrics_register(&m_processed);
        metrics_register(&m_skipped);
        metrics_register(&m_retries);
}

int status_consumer_start(struct api *a) {
        sc.api = a;
        struct kafka_options o;
        kafka_settings_options(&a->cfg.kafka, "paddock-api-status", a->auth, &o);
        kafka_options_control(&o, &a->cfg.kafka); /* `running` on the launch path (kafka_config.h) */
        struct err_detail e = {0};
        sc.consumer = kafka_consumer_new_routes(&o, "paddock-api-status", routes, "earliest", &e);
        if (!sc.consumer) {
                log_error("could not create status consumer: %s", e.message);
                return e.errnum ? e.errnum : -EINVAL;
        }
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = pthread_create(&sc.thread, NULL, status_thread, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0)
                return -r;
        sc.started = true;
        return 0;
}

void status_consumer_stop(void) {
        atomic_store(&sc.stop, true);
        if (sc.started)
                pthread_join(sc.thread, NULL);
        sc.started = false;
        sc.consumer = kafka_consumer_free(sc.consumer);
}
