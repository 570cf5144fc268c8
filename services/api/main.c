/* paddock-api: the public HTTP + websocket API. main() reads the configuration
 * table, wires PostgreSQL, Kafka, S3 and the consumers, and runs the lws loop
 * until SIGTERM. `paddock-api bootstrap ...` creates the first tenant. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "api.h"
#include "kafka/topics.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/shutdown.h"
#include "crypto/secretbox.h"
#include "http/ops.h"
#include "kafka/kafka.h"
#include "pg/pg.h"
#include "s3/s3.h"

#define PG_POOL_SIZE 8

struct metric api_metric_requests = {"paddock_api_http_requests_total", "HTTP requests received", METRIC_COUNTER, 0, NULL};
struct metric api_metric_runs_launched = {"paddock_api_runs_launched_total", "runs queued on paddock.runs.requested",
                                          METRIC_COUNTER, 0, NULL};
struct metric api_metric_ws_sessions = {"paddock_api_stream_sessions", "open websocket stream sessions", METRIC_GAUGE, 0, NULL};
struct metric api_metric_status_updates = {"paddock_api_run_status_updates_total",
                                           "run status rows changed from kafka", METRIC_COUNTER, 0, NULL};

#define S(f) offsetof(struct api_settings, f)
static const struct config_entry config_table[] = {
        {"PADDOCK_API_ADDR", CONFIG_STRING, "127.0.0.1:8080", 0, 0, false, S(addr),
         "listen address host:port of the public API"},
        {"PADDOCK_PG_DSN", CONFIG_STRING, NULL, 0, 0, true, S(pg_dsn), "PostgreSQL connection string"},
        {"PADDOCK_KAFKA_BOOTSTRAP", CONFIG_STRING, "", 0, 0, false, S(kafka_bootstrap),
         "Kafka bootstrap servers host:port[,...] (required to serve)"},
        {"PADDOCK_KAFKA_SESSION_TIMEOUT_MS", CONFIG_INT, "6000", 1000, 3600000, false, S(kafka_session_timeout_ms),
         "Kafka consumer group session timeout"},
        {"PADDOCK_KAFKA_FETCH_WAIT_MS", CONFIG_INT, "500", 1, 10000, false, S(kafka_fetch_wait_ms),
         "longest a consumer fetch waits for data; the local stack lowers it for the mock cluster"},
        {"PADDOCK_S3_ENDPOINT", CONFIG_STRING, "", 0, 0, false, S(s3_endpoint),
         "S3 endpoint URL, e.g. http://127.0.0.1:7480 (required to serve)"},
        {"PADDOCK_S3_BUCKET", CONFIG_STRING, "", 0, 0, false, S(s3_bucket), "S3 bucket of artifacts"},
        {"PADDOCK_S3_ACCESS_KEY", CONFIG_STRING, "", 0, 0, false, S(s3_access_key), "S3 access key id"},
        {"PADDOCK_S3_SECRET_KEY", CONFIG_STRING, "", 0, 0, true, S(s3_secret_key), "S3 secret key"},
        {"PADDOCK_S3_REGION", CONFIG_STRING, "us-east-1", 0, 0, false, S(s3_region), "S3 region for SigV4"},
        {"PADDOCK_API_MAX_BODY", CONFIG_INT, "1048576", 1024, 67108864, false, S(max_body),
         "largest accepted request body in bytes (larger: 413)"},
        {"PADDOCK_TOKEN_TTL_S", CONFIG_INT, "43200", 60, 2592000, false, S(token_ttl_s),
         "lifetime of a login token in seconds"},
        {"PADDOCK_LOGIN_WINDOW_S", CONFIG_INT, "900", 1, 86400, false, S(login_window_s),
         "window of the failed-login limits in seconds (kept per api process)"},
        {"PADDOCK_LOGIN_MAX_FAILURES_USER", CONFIG_INT, "5", 1, 100, false, S(login_max_failures_user),
         "failed logins per tenant and username within the window before 429"},
        {"PADDOCK_LOGIN_MAX_FAILURES_IP", CONFIG_INT, "20", 1, 1000, false, S(login_max_failures_ip),
         "failed logins per source IP within the window before 429"},
        {"PADDOCK_LOG_LEVEL", CONFIG_STRING, "info", 0, 0, false, S(log_level), "debug, info, warn or error"},
        {"PADDOCK_MASTER_KEY", CONFIG_STRING, NULL, 0, 0, true, S(master_key),
         "master key wrapping the tenants' secret data keys: 64 hex digits (or base64 of 32 bytes)"},
        {NULL},
};
#undef S

static const char summary[] =
        "The Paddock public HTTP + websocket API.\n"
        "  paddock-api                                      serve\n"
        "  paddock-api bootstrap --tenant NAME --admin USER create the first tenant and admin;\n"
        "  paddock-api import-skills --tenant NAME DIR  import DIR/*/SKILL.md as draft catalog skills;\n"
        "                                                   prints \"password: ...\" once";

static void lws_log(int level, const char *line) {
        size_t n = strlen(line);
        while (n && line[n - 1] == '\n')
                n--;
        log_emit(level == LLL_ERR ? LOG_ERROR : LOG_WARN, LOG_KV("component", "libwebsockets"), "%.*s", (int)n, line);
}

static const struct lws_protocols protocols[] = {
        /* first protocol: serves HTTP and websocket upgrades without a subprotocol */
        {"paddock", api_lws_callback, sizeof(struct api_pss), 4096, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int serve(struct api *a) {
        char host[256];
        int port;
        /* port 0 would pick a port no client knows */
        if (ops_parse_addr(a->cfg.addr, host, sizeof host, &port) < 0 || port == 0) {
                log_error("invalid PADDOCK_API_ADDR \"%s\": expected host:port", a->cfg.addr);
                return CONFIG_EXIT_BAD;
        }
        if (!a->cfg.kafka_bootstrap[0] || !a->cfg.s3_endpoint[0] || !a->cfg.s3_bucket[0]) {
                log_error("PADDOCK_KAFKA_BOOTSTRAP, PADDOCK_S3_ENDPOINT and PADDOCK_S3_BUCKET are required to serve");
                return CONFIG_EXIT_BAD;
        }
        if (api_migrate(a, 60) < 0)
                return 1;

        struct err_detail e = {0};
        struct kafka_options ko = {.bootstrap = a->cfg.kafka_bootstrap, .client_id = "paddock-api"};
        a->producer = kafka_producer_new(&ko, &e);
        if (!a->producer) {
                log_error("could not create kafka producer: %s", e.message);
                return CONFIG_EXIT_BAD;
        }
        static const char *const produced[] = {TOPIC_RUNS_REQUESTED, TOPIC_RUNS_CONTROL, TOPIC_AUDIT, NULL};
        if (kafka_producer_warm(a->producer, produced, 1000) < 0)
                log_warn("could not look up the topics' partition leaders yet; the first launch may be slower");
        struct s3_config s3c = {.endpoint = a->cfg.s3_endpoint, .region = a->cfg.s3_region,
                                .bucket = a->cfg.s3_bucket, .access_key = a->cfg.s3_access_key,
                                .secret_key = a->cfg.s3_secret_key, .timeout_ms = 10000};
        a->s3 = s3_client_new(&s3c);
        if (!a->s3)
                return 1;

        lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
        struct lws_context_creation_info info = {0};
        info.port = port;
        info.iface = host;
        info.protocols = protocols;
        info.user = a;
        info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_VALIDATE_UTF8;
        info.max_http_header_data = 8192;
        info.timeout_secs = 30;
        a->lws = lws_create_context(&info);
        if (!a->lws) {
                log_error("could not listen on %s", a->cfg.addr);
                return 1;
        }
        int rc = 0;
        if (fanout_start(a) < 0 || status_consumer_start(a) < 0)
                rc = 1;
        else
                log_ctx(LOG_INFO, LOG_KV("addr", a->cfg.addr, "instance", a->instance), "listening");
        while (rc == 0 && !shutdown_requested())
                if (lws_service(a->lws, 0) < 0)
                        break;
        log_info("shutting down");
        status_consumer_stop();
        /* close websocket sessions (they unsubscribe) before the hub goes away */
        lws_context_destroy(a->lws);
        a->lws = NULL;
        fanout_stop(a);
        return rc;
}

int main(int argc, char **argv) {
        bool bootstrap = argc > 1 && !strcmp(argv[1], "bootstrap");
        bool import_skills = argc > 1 && !strcmp(argv[1], "import-skills");
        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        config_print_help(stdout, "paddock-api", summary, config_table);
                        return 0;
                }
        if (argc > 1 && !bootstrap && !import_skills) {
                fprintf(stderr, "paddock-api: unknown argument \"%s\" (see --help)\n", argv[1]);
                return 64;
        }

        struct api a = {0};
        struct err_detail e = {0};
        log_init("api", LOG_INFO);
        if (config_load(config_table, &a.cfg, &e) < 0) {
                log_error("invalid configuration: %s", e.message);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
        enum log_level level;
        if (log_level_from_string(a.cfg.log_level, &level) < 0) {
                log_error("invalid configuration: PADDOCK_LOG_LEVEL: \"%s\" is not one of debug, info, warn, error",
                          a.cfg.log_level);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
        log_init("api", level);
        int mk = secretbox_parse_master_key(a.cfg.master_key, a.master_key, &e);
        /* only the parsed key stays in memory, and the error never quotes the text */
        explicit_bzero(a.cfg.master_key, strlen(a.cfg.master_key));
        /* and not in /proc/<pid>/environ either: wipe the environment's copy in place */
        char *env_key = getenv("PADDOCK_MASTER_KEY");
        if (env_key)
                explicit_bzero(env_key, strlen(env_key));
        if (mk < 0) {
                log_error("invalid configuration: PADDOCK_MASTER_KEY: %s", e.message);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
        if (id_new_uuid(a.instance) < 0)
                return 1;
        a.pg = pg_pool_new(a.cfg.pg_dsn, PG_POOL_SIZE);
        if (!a.pg)
                return 1;

        int rc;
        if (bootstrap)
                rc = bootstrap_main(&a, argc - 1, argv + 1);
        else if (import_skills)
                rc = catalog_import_skills_main(&a, argc - 1, argv + 1);
        else {
                config_log(config_table, &a.cfg);
                metrics_register(&api_metric_requests);
                metrics_register(&api_metric_runs_launched);
                metrics_register(&api_metric_ws_sessions);
                metrics_register(&api_metric_status_updates);
                status_consumer_register_metrics();
                if (shutdown_install() < 0)
                        return 1;
                rc = serve(&a);
        }
        a.producer = kafka_producer_free(a.producer);
        a.s3 = s3_client_free(a.s3);
        a.pg = pg_pool_free(a.pg);
        config_free(config_table, &a.cfg);
        explicit_bzero(a.master_key, sizeof a.master_key);
        return rc;
}
