/* paddock-api: the public HTTP + websocket API. main() reads the configuration
 * table, wires PostgreSQL, Kafka, S3 and the consumers, and runs the lws loop
 * until SIGTERM. `paddock-api bootstrap ...` creates the first tenant. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
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
#include "service/service.h"

#define PG_POOL_SIZE 8
/* longer than common load balancers' 60 s idle timeout (main() below) */
#define API_KEEPALIVE_IDLE_S 75

#define S(f) offsetof(struct api_settings, f)
static const struct config_entry config_table[] = {
        {"PADDOCK_API_ADDR", CONFIG_STRING, "127.0.0.1:8080", 0, 0, false, S(addr),
         "listen address host:port of the public API"},
        /* /metrics summed over the workers, never on the public port (issue 16) */
        SERVICE_CONFIG_OPS_ADDR_ENTRY(struct api_settings, svc),
        SERVICE_CONFIG_STREAM_PING_ENTRY(struct api_settings, svc),
        SERVICE_CONFIG_PG_DSN_ENTRY(struct api_settings, svc),
        KAFKA_CONFIG_ENTRIES(struct api_settings, kafka),
        S3_CONFIG_ENTRIES(struct api_settings, s3),
        {"PADDOCK_API_MAX_BODY", CONFIG_INT, "1048576", 1024, 67108864, false, S(max_body),
         "largest accepted request body in bytes (larger: 413)"},
        {"PADDOCK_TOKEN_TTL_S", CONFIG_INT, "43200", 60, 2592000, false, S(token_ttl_s),
         "lifetime of a login token in seconds"},
        {"PADDOCK_LOGIN_WINDOW_S", CONFIG_INT, "900", 1, 86400, false, S(login_window_s),
         "window of the failed-login limits in seconds (counted in PostgreSQL, across replicas)"},
        {"PADDOCK_LOGIN_MAX_FAILURES_USER", CONFIG_INT, "5", 1, 100, false, S(login_max_failures_user),
         "failed logins per tenant, username and source address within the window before 429"},
        {"PADDOCK_LOGIN_MAX_FAILURES_IP", CONFIG_INT, "20", 1, 1000, false, S(login_max_failures_ip),
         "failed logins per source IP within the window before 429"},
        {"PADDOCK_TRUSTED_PROXIES", CONFIG_STRING, "", 0, 0, false, S(trusted_proxies),
         "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (login limits, "
         "audit); empty: none, the socket peer is the client"},
        {"PADDOCK_API_WORKERS", CONFIG_INT, "0", 0, 64, false, S(workers),
         "worker processes serving the API on one port (SO_REUSEPORT); 0: one per online CPU"},
        SERVICE_CONFIG_LOG_LEVEL_ENTRY(struct api_settings, svc),
        SERVICE_CONFIG_BUSINESS_CLOCK_ENTRY(struct api_settings, svc),
        {"PADDOCK_MASTER_KEY", CONFIG_STRING, NULL, 0, 0, true, S(master_key),
         "master key wrapping the tenants' secret data keys: 64 hex digits (or base64 of 32 bytes)"},
        ADDR_FLOOR_CONFIG_ENTRY(S(egress_floor)),
        {"PADDOCK_OIDC_HTTP_NETS", CONFIG_STRING, "", 0, 0, false, S(oidc_http_nets),
         "comma-separated CIDRs in which an OIDC issuer or JWKS URL may use plain http:// to a literal IP "
         "(test stacks); empty: https:// only. The platform egress floor applies either way"},
        {"PADDOCK_OIDC_DISCOVERY_TTL_S", CONFIG_INT, "300", 0, 86400, false, S(oidc_discovery_ttl_s),
         "seconds each api process keeps a provider's OIDC discovery document for the dashboard's sign-in "
         "(per issuer and tenant configuration; forgotten when its token endpoint fails); 0: fetched every time"},
        {"PADDOCK_PROMPT_MAX_BYTES", CONFIG_INT, "65536", 1024, 262144, false, S(prompt_max_bytes),
         "largest rendered prompt of a run in bytes (POST /v1/runs prompt_vars and prompt; larger: 400)"},
        {"PADDOCK_PUBLIC_URL", CONFIG_STRING, "", 0, 0, false, S(public_url),
         "the api's URL as its clients and relying parties reach it (http(s)://host[:port], no path): the "
         "workload identity issuer is <this>/v1/tenants/<tenant id>/oidc; empty: http://PADDOCK_API_ADDR"},
        {"PADDOCK_OPERATOR_TENANT", CONFIG_STRING, "", 0, 0, false, S(operator_tenant),
         "the tenant (by name) whose tenant_admins may drain runner nodes through the api (POST "
         "/v1/nodes/{id}/drain): nodes are shared by every tenant; empty: no tenant may, a node is drained "
         "where it runs (paddock-runner-agent drain)"},
        {"PADDOCK_WORKLOAD_KEY_ROTATE_DAYS", CONFIG_INT, "30", 1, 3650, false, S(workload_key_rotate_days),
         "days a tenant's workload identity signing key signs before a new one replaces it; the replaced key "
         "stays in the JWKS one more period"},
        {"PADDOCK_WEB_DIR", CONFIG_STRING, "", 0, 0, false, S(web_dir),
         "absolute path of the built dashboard (web/, built by ./dev up into <build>/web/dist) served under / "
         "with a strict Content-Security-Policy; empty: no dashboard, / answers 404"},
        {NULL},
};
#undef S

static const char summary[] =
        "The Paddock public HTTP + websocket API.\n"
        "  paddock-api                                      serve\n"
        "  paddock-api bootstrap --tenant NAME --admin USER create a tenant and its admin; prints a\n"
        "                                                   one-time \"password: ...\" once (to be changed\n"
        "                                                   at first login), or with --password-stdin\n"
        "                                                   takes the admin's password from stdin\n"
        "  paddock-api import-skills --tenant NAME DIR      import DIR/*/SKILL.md as draft catalog skills\n"
        "  paddock-api migrate                              apply the api schema's migrations and exit\n"
        "                                                   (run with the schema owner's PADDOCK_PG_DSN)\n"
        "  bootstrap and import-skills are audited (the serving api delivers their records)";

static const struct service_spec api_spec = {
        .name = "api",
        .summary = summary,
        .table = config_table,
        .svc_offset = offsetof(struct api_settings, svc),
        .kafka_offset = offsetof(struct api_settings, kafka),
        .commands = (const char *const[]){"bootstrap", "import-skills", NULL},
        .schema = "api",
        .migrations = api_migrations,
        .migrate_wait_ms = 60 * 1000,
        .bus_identity = "api",
        .producer = true,
        /* the producer serves only the outbox relay, which hands it a whole
         * batch and waits for the acknowledgements: lingering would only add
         * latency to every launch */
        .producer_extra = (const char *const[]){"linger.ms", "0", NULL},
        .warm = (const char *const[]){TOPIC_RUNS_REQUESTED, TOPIC_RUNS_CONTROL, TOPIC_AUDIT, TOPIC_APPROVALS,
                                      TOPIC_USAGE_ALERTS, NULL},
        .warm_note = "the first launch",
        /* the ops server on PADDOCK_OPS_ADDR (one worker serves it: spawn_worker);
         * ops.c also answers /healthz and /readyz on the public port */
        .ready = SERVICE_READY_PG | SERVICE_READY_KAFKA,
};

static void lws_log(int level, const char *line) {
        size_t n = strlen(line);
        while (n && line[n - 1] == '\n')
                n--;
        log_emit(level == LLL_ERR ? LOG_ERROR : LOG_WARN, LOG_KV("component", "libwebsockets"), "%.*s", (int)n, line);
}

/* With several workers, each polls its own listening socket, opened by the
 * supervisor with SO_REUSEPORT (the kernel spreads connections over them),
 * adopted as a raw descriptor, and hands what it accepts to libwebsockets:
 * this libwebsockets (4.1) cannot share a port between processes itself. */
static int listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
        if (reason != LWS_CALLBACK_RAW_RX_FILE)
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        int lfd = lws_get_socket_fd(wsi);
        for (int i = 0; i < 64; i++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                                log_warn("accept failed: %s", strerror(errno));
                        break;
                }
                /* responses go out in several writes: no Nagle delay on them */
                int one = 1;
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                /* closes fd itself when it fails */
                if (!lws_adopt_socket_vhost(lws_get_vhost(wsi), fd))
                        log_warn("could not adopt an accepted connection");
        }
        return 0;
}

static const struct lws_protocols protocols[] = {
        /* first protocol: serves HTTP and websocket upgrades without a subprotocol */
        {"paddock", api_lws_callback, sizeof(struct api_pss), 4096, 0, NULL, 0},
        {"paddock-listen", listen_callback, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* One worker's listening socket, opened by the supervisor and inherited. */
static int listen_socket(const char *host, int port) {
        char service[16];
        snprintf(service, sizeof service, "%d", port);
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                        *res = NULL;
        int k = getaddrinfo(host, service, &hints, &res);
        if (k != 0) {
                log_error("could not resolve %s: %s", host, gai_strerror(k));
                return -1;
        }
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
            bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
                log_error("could not listen on %s:%d: %s", host, port, strerror(errno));
                if (fd >= 0)
                        close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        return fd;
}

/* One serving process: its own PostgreSQL connections, Kafka clients and
 * libwebsockets context; listen_fd >= 0: serves the inherited socket. */
static int serve_worker(struct api *a, const char *host, int port, int listen_fd) {
        /* the pool main() made serves the worker; it keeps what service_start makes */
        struct service svc = {.pg = a->pg};
        int r = service_start(&api_spec, &a->cfg, &svc);
        a->auth = svc.auth;
        a->producer = svc.producer;
        if (r != 0)
                return r;
        struct s3_config s3c;
        s3_settings_config(&a->cfg.s3, 10000, &s3c);
        a->s3 = s3_client_new(&s3c);
        if (!a->s3)
                return 1;

        lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
        /* idle streams are pinged, and dropped when the pings go unanswered
         * (docs/CONTRACTS.md "Websocket pings"): lws pings a connection that
         * has not proven itself alive for secs_since_valid_ping and closes it
         * at secs_since_valid_hangup */
        static lws_retry_bo_t idle_policy;
        idle_policy.secs_since_valid_ping = (uint16_t)a->cfg.svc.stream_ping_s;
        idle_policy.secs_since_valid_hangup = (uint16_t)(2 * a->cfg.svc.stream_ping_s);
        struct lws_context_creation_info info = {0};
        info.retry_and_idle_policy = &idle_policy;
        info.port = listen_fd >= 0 ? CONTEXT_PORT_NO_LISTEN_SERVER : port;
        info.iface = listen_fd >= 0 ? NULL : host;
        info.protocols = protocols;
        info.user = a;
        info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_VALIDATE_UTF8;
        info.max_http_header_data = 8192;
        info.timeout_secs = 30;
        /* an idle kept-alive connection stays open longer than the 60 s after
         * which load balancers and ingress proxies drop theirs (lws's default
         * is 5 s): else the api may close it just as a proxy reuses it, and
         * the proxy answers 502 (docs/CONTRACTS.md "HTTP keep-alive") */
        info.keepalive_timeout = API_KEEPALIVE_IDLE_S;
        a->lws = lws_create_context(&info);
        if (!a->lws) {
                log_error("could not listen on %s", a->cfg.addr);
                return 1;
        }
        if (listen_fd >= 0) {
                lws_sock_file_fd_type u = {.filefd = listen_fd};
                if (!lws_adopt_descriptor_vhost(lws_get_vhost_by_name(a->lws, "default"), LWS_ADOPT_RAW_FILE_DESC, u,
                                                "paddock-listen", NULL)) {
                        log_error("could not poll the listening socket");
                        lws_context_destroy(a->lws);
                        a->lws = NULL;
                        return 1;
                }
        }
        int rc = 0;
        if (fanout_start(a) < 0 || status_consumer_start(a) < 0 || outbox_relay_start(a) < 0)
                rc = 1;
        else
                log_ctx(LOG_INFO, LOG_KV("addr", a->cfg.addr, "instance", a->instance), "listening");
        while (rc == 0 && !shutdown_requested())
                if (lws_service(a->lws, 0) < 0)
                        break;
        log_info("shutting down");
        status_consumer_stop();
        outbox_relay_stop();
        fanout_halt(a); /* it wakes lws: it ends before the context does */
        /* close websocket sessions (they unsubscribe) before the hub goes away */
        lws_context_destroy(a->lws);
        a->lws = NULL;
        fanout_stop(a);
        return rc;
}

/* Forks worker i serving listen_fds[i] (the child closes the others); in
 * the child runs it and exits. Returns its pid, or -1. */
static pid_t spawn_worker(struct api *a, const char *host, int port, const int *listen_fds, int n, int i) {
        pid_t supervisor = getpid();
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        /* the child: ends with the supervisor, whatever kills it (an
         * orphan would keep serving the port with stale configuration) */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != supervisor)
                _exit(1);
        /* its own identity (producer names, fanout group) */
        if (id_new_uuid(a->instance) < 0)
                _exit(1);
        /* counts in slot i, which every worker's /metrics sums; worker 0
         * alone serves the ops port (a second would find it taken) */
        if (metrics_share_slot((unsigned)i) < 0)
                _exit(1);
        if (i != 0)
                a->cfg.svc.ops_addr = NULL;
        for (int j = 0; j < n; j++)
                if (j != i)
                        close(listen_fds[j]);
        int rc = serve_worker(a, host, port, listen_fds[i]);
        /* as main() does after serve(): flushes what the producer holds */
        a->producer = kafka_producer_free(a->producer);
        a->auth = bus_auth_free(a->auth);
        a->s3 = s3_client_free(a->s3);
        a->pg = pg_pool_free(a->pg);
        _exit(rc);
}

/* The supervisor of n workers (prefork, as nginx does): it opens the
 * listening socket, the workers serve it. The handlers and their blocking
 * libpq calls stay single-threaded, and throughput scales with processes.
 * Nothing here touches PostgreSQL or Kafka before forking: each worker
 * opens its own connections. A worker that dies is replaced
 * (after a second, so a crash loop does not spin); SIGTERM/SIGINT are passed
 * on, and the workers get 30 s to finish before SIGKILL. */
static int supervise_workers(struct api *a, const char *host, int port, int n) {
        pid_t pids[64] = {0};
        int listen_fds[64];
        /* the workers' counters, summed by whichever answers /metrics */
        int r = metrics_share((unsigned)n);
        if (r < 0) {
                log_error("could not share the metrics between workers: %s", strerror(-r));
                return 1;
        }
        for (int i = 0; i < n; i++)
                if ((listen_fds[i] = listen_socket(host, port)) < 0) {
                        while (i-- > 0)
                                close(listen_fds[i]);
                        return 1;
                }
        for (int i = 0; i < n; i++)
                if ((pids[i] = spawn_worker(a, host, port, listen_fds, n, i)) < 0) {
                        log_error("could not fork worker: %s", strerror(errno));
                        /* no one would accept on the sockets left: the kernel must not pick them */
                        for (int j = i; j < n; j++)
                                close(listen_fds[j]);
                        n = i;
                        break;
                }
        log_ctx(LOG_INFO, LOG_KV("addr", a->cfg.addr), "supervising %d worker processes", n);
        int rc = n > 0 ? 0 : 1;
        while (rc == 0 && !shutdown_requested()) {
                int st;
                pid_t pid = waitpid(-1, &st, WNOHANG);
                if (pid <= 0) {
                        shutdown_sleep_ms(200);
                        continue;
                }
                for (int i = 0; i < n; i++) {
                        if (pids[i] != pid)
                                continue;
                        log_ctx(LOG_ERROR, LOG_KV("worker", "replaced"), "worker %d ended (%s %d); starting another",
                                (int)pid, WIFSIGNALED(st) ? "signal" : "status",
                                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
                        if (shutdown_sleep_ms(1000))
                                break;
                        pids[i] = spawn_worker(a, host, port, listen_fds, n, i);
                }
        }
        for (int i = 0; i < n; i++)
                if (pids[i] > 0)
                        kill(pids[i], SIGTERM);
        for (int waited_ms = 0, left = n; left > 0;) {
                int st;
                pid_t pid = waitpid(-1, &st, WNOHANG);
                if (pid > 0) {
                        if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
                                rc = 1;
                        left--;
                } else if (pid < 0) {
                        break;
                } else if ((waited_ms += 50) > 30000) {
                        for (int i = 0; i < n; i++)
                                if (pids[i] > 0)
                                        kill(pids[i], SIGKILL);
                } else {
                        usleep(50 * 1000);
                }
        }
        for (int i = 0; i < n; i++)
                close(listen_fds[i]);
        return rc;
}

static int serve(struct api *a) {
        char host[256];
        int port;
        /* port 0 would pick a port no client knows */
        if (ops_parse_addr(a->cfg.addr, host, sizeof host, &port) < 0 || port == 0) {
                log_error("invalid PADDOCK_API_ADDR \"%s\": expected host:port", a->cfg.addr);
                return CONFIG_EXIT_BAD;
        }
        if (!a->cfg.kafka.bootstrap[0]) {
                log_error("PADDOCK_KAFKA_BOOTSTRAP is required to serve");
                return CONFIG_EXIT_BAD;
        }
        struct err_detail e = {0};
        if (s3_settings_check(&a->cfg.s3, &e) < 0) {
                log_error("invalid configuration: %s (required to serve)", e.message);
                return CONFIG_EXIT_BAD;
        }
        long n = a->cfg.workers > 0 ? (long)a->cfg.workers : sysconf(_SC_NPROCESSORS_ONLN);
        if (n > 64)
                n = 64;
        if (n <= 1)
                return serve_worker(a, host, port, -1);
        return supervise_workers(a, host, port, (int)n);
}

int main(int argc, char **argv) {
        bool bootstrap = argc > 1 && !strcmp(argv[1], "bootstrap");
        bool import_skills = argc > 1 && !strcmp(argv[1], "import-skills");
        struct api a = {0};
        int rc = service_init(&api_spec, argc, argv, &a.cfg);
        if (rc >= 0)
                return rc;
        struct err_detail e = {0};
        if (addr_floor_new(a.cfg.egress_floor, &a.floor, &e) < 0) {
                log_error("invalid configuration: PADDOCK_EGRESS_FLOOR: %s", e.message);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
        if (addr_allow_list_parse(a.cfg.oidc_http_nets, &a.oidc_http_nets, &a.n_oidc_http_nets, &e) < 0) {
                log_error("invalid configuration: PADDOCK_OIDC_HTTP_NETS: %s", e.message);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
        if (workload_identity_configure(&a, &e) < 0) {
                log_error("invalid configuration: PADDOCK_PUBLIC_URL: %s", e.message);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
        if (web_configure(&a, &e) < 0) {
                log_error("invalid configuration: PADDOCK_WEB_DIR: %s", e.message);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
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
        if (http_trusted_proxies_parse(a.cfg.trusted_proxies, a.trusted_proxies, HTTP_TRUSTED_PROXIES_MAX,
                                       &a.n_trusted_proxies, &e) < 0) {
                log_error("invalid configuration: PADDOCK_TRUSTED_PROXIES: %s", e.message);
                config_free(config_table, &a.cfg);
                return CONFIG_EXIT_BAD;
        }
        if (id_new_uuid(a.instance) < 0)
                return 1;
        a.pg = pg_pool_new(a.cfg.svc.pg_dsn, PG_POOL_SIZE);
        if (!a.pg)
                return 1;

        if (bootstrap)
                rc = bootstrap_main(&a, argc - 1, argv + 1);
        else if (import_skills)
                rc = catalog_import_skills_main(&a, argc - 1, argv + 1);
        else {
                metrics_register(&api_metric_requests);
                metrics_register(&api_metric_runs_launched);
                metrics_register(&api_metric_ws_sessions);
                metrics_register(&api_metric_status_updates);
                status_consumer_register_metrics();
                bus_auth_register_metrics();
                rc = serve(&a);
        }
        a.producer = kafka_producer_free(a.producer);
        a.auth = bus_auth_free(a.auth);
        a.s3 = s3_client_free(a.s3);
        a.pg = pg_pool_free(a.pg);
        a.floor = addr_floor_free(a.floor);
        free(a.oidc_http_nets);
        if (a.web_fd >= 0)
                close(a.web_fd);
        config_free(config_table, &a.cfg);
        explicit_bzero(a.master_key, sizeof a.master_key);
        return rc;
}
