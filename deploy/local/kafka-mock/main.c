/* paddock-kafka-mock: hosts librdkafka's mock cluster (real Kafka wire protocol
 * on loopback TCP) with the topics of deploy/topics.txt, writes the bootstrap
 * string to a file, and runs until SIGTERM/SIGINT. In-memory by design: a
 * restart loses every message and committed offset.
 *
 * With --control-file it also serves a fault API for the chaos suite
 * (tests/chaos, docs/CONTRACTS.md "Kafka mock fault API") on 127.0.0.1 only
 * (never another address: no authentication, so nothing off the host may
 * reach it): a line protocol over TCP, one command per line, each answered
 * with one line "ok[ detail]" or "error <message>":
 *   brokers                          the broker ids, "ok 1 2 3"
 *   down ID | up ID                  rd_kafka_mock_broker_set_down/_up: the
 *                                    broker closes and refuses connections
 *   rtt ID MS                        rd_kafka_mock_broker_set_rtt (0: none)
 *   errors APIKEY CODE [COUNT]       rd_kafka_mock_push_request_errors: the
 *                                    next COUNT (default 1, max 100000) requests
 *                                    of that API key, on any broker, fail with
 *                                    Kafka error CODE (e.g. 6
 *                                    NOT_LEADER_OR_FOLLOWER for 0 Produce)
 *   broker-errors ID APIKEY CODE COUNT RTT_MS
 *                                    rd_kafka_mock_broker_push_request_error_rtts:
 *                                    the same on one broker, each answer
 *                                    delayed RTT_MS
 *   clear APIKEY                     drops the errors still queued for it
 *   reset                            every broker up, RTT 0, no queued errors
 * The address (127.0.0.1:port) is written to the control file once it
 * listens. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "core/log.h"
#include "core/macro.h"

#define EXIT_USAGE 64
#define EXIT_CONFIG 78

struct mock_options {
        const char *topics_file;
        const char *bootstrap_file;
        const char *control_file;
        int control_port;
        int brokers;
};

static void usage(FILE *out) {
        fprintf(out,
                "usage: paddock-kafka-mock [--brokers N] [--topics FILE] [--bootstrap-file PATH]\n"
                "  --brokers N            mock brokers to start (1..16, default 3)\n"
                "  --topics FILE          topic list: 'name partitions replication' per line\n"
                "                         ('#' comments); replication is capped to N\n"
                "  --bootstrap-file PATH  write the bootstrap string there once ready\n"
                "  --control-file PATH    serve the fault API on 127.0.0.1 and write its\n"
                "                         host:port there (see the source's header)\n"
                "  --control-port N       its port (default 0: any free port)\n"
                "Runs until SIGTERM or SIGINT. Everything is kept in memory only.\n");
}

static int parse_options(int argc, char **argv, struct mock_options *o) {
        static const struct option longopts[] = {
                {"brokers", required_argument, NULL, 'b'},
                {"topics", required_argument, NULL, 't'},
                {"bootstrap-file", required_argument, NULL, 'f'},
                {"control-file", required_argument, NULL, 'c'},
                {"control-port", required_argument, NULL, 'p'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        int ch;
        while ((ch = getopt_long(argc, argv, "b:t:f:c:p:h", longopts, NULL)) >= 0) {
                switch (ch) {
                case 'b': {
                        char *end;
                        long n = strtol(optarg, &end, 10);
                        if (*end || n < 1 || n > 16) {
                                fprintf(stderr, "invalid --brokers \"%s\": must be 1..16\n", optarg);
                                return -EINVAL;
                        }
                        o->brokers = (int)n;
                        break;
                }
                case 't':
                        o->topics_file = optarg;
                        break;
                case 'f':
                        o->bootstrap_file = optarg;
                        break;
                case 'c':
                        o->control_file = optarg;
                        break;
                case 'p': {
                        char *end;
                        long n = strtol(optarg, &end, 10);
                        if (*end || !*optarg || n < 0 || n > 65535) {
                                fprintf(stderr, "invalid --control-port \"%s\": must be 0..65535\n", optarg);
                                return -EINVAL;
                        }
                        o->control_port = (int)n;
                        break;
                }
                case 'h':
                        usage(stdout);
                        exit(EXIT_SUCCESS);
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "unexpected argument \"%s\"\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/* Creates every topic of the file; a malformed line is a configuration error. */
static int create_topics(rd_kafka_mock_cluster_t *mc, const char *path, int brokers) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        int lineno = 0, created = 0;

        if (!f) {
                log_error("could not open topic list %s: %s", path, strerror(errno));
                return -errno;
        }
        while (getline(&line, &cap, f) >= 0) {
                char name[250];
                int partitions, replication;
                lineno++;
                char *hash = strchr(line, '#');
                if (hash)
                        *hash = '\0';
                if (strspn(line, " \t\r\n") == strlen(line))
                        continue;
                if (sscanf(line, "%249s %d %d", name, &partitions, &replication) != 3 ||
                    partitions < 1 || replication < 1) {
                        log_error("invalid topic line %d of %s: expected 'name partitions replication'",
                                  lineno, path);
                        return -EINVAL;
                }
                if (replication > brokers)
                        replication = brokers;
                rd_kafka_resp_err_t err =
                        rd_kafka_mock_topic_create(mc, name, partitions, replication);
                if (err) {
                        log_error("could not create topic %s: %s", name, rd_kafka_err2str(err));
                        return -EIO;
                }
                log_debug("created topic %s with %d partitions, replication %d", name,
                          partitions, replication);
                created++;
        }
        log_info("created %d topics from %s", created, path);
        return created;
}

/* Written to a temporary name and renamed, so a reader never sees half a line. */
static int write_bootstrap(const char *path, const char *bootstraps) {
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        FILE *f = fopen(tmp, "we");
        if (!f)
                return -errno;
        int ok = fprintf(f, "%s\n", bootstraps) > 0;
        if (fclose(f) != 0)
                ok = 0;
        if (!ok || rename(tmp, path) < 0) {
                int k = -errno;
                unlink(tmp);
                return k ? k : -EIO;
        }
        return 0;
}

/* ------------------------------------------------------------ fault API */

#define CONTROL_MAX_COUNT 100000
#define CONTROL_MAX_APIKEY 100 /* above every Kafka API key librdkafka knows */
#define CONTROL_MAX_MS 600000

struct control {
        rd_kafka_mock_cluster_t *mc;
        int brokers;
        int fd;
};

/* Parses a decimal in [min, max]; false for anything else. */
static bool control_num(const char *s, long min, long max, long *ret) {
        char *end;
        if (!s || !*s)
                return false;
        errno = 0;
        long n = strtol(s, &end, 10);
        if (errno || *end || n < min || n > max)
                return false;
        *ret = n;
        return true;
}

static int control_reply(char *out, size_t size, rd_kafka_resp_err_t err, const char *ok) {
        if (err)
                return snprintf(out, size, "error %s", rd_kafka_err2str(err));
        return snprintf(out, size, "%s", ok);
}

/* Runs one command line (modified in place) and writes its one-line answer
 * (without newline) to out. */
static void control_exec(struct control *c, char *line, char *out, size_t size) {
        char *save = NULL, *argv[8] = {0};
        int argc = 0;
        for (char *t = strtok_r(line, " \t\r\n", &save); t && argc < (int)ELEMENTSOF(argv);
             t = strtok_r(NULL, " \t\r\n", &save))
                argv[argc++] = t;
        long id, key, code, count = 1, ms;
        const char *cmd = argc ? argv[0] : "";

        if (!strcmp(cmd, "brokers") && argc == 1) {
                size_t n = (size_t)snprintf(out, size, "ok");
                for (int b = 1; b <= c->brokers && n < size; b++)
                        n += (size_t)snprintf(out + n, size - n, " %d", b);
        } else if ((!strcmp(cmd, "down") || !strcmp(cmd, "up")) && argc == 2 &&
                   control_num(argv[1], 1, c->brokers, &id)) {
                rd_kafka_resp_err_t err = !strcmp(cmd, "down") ? rd_kafka_mock_broker_set_down(c->mc, (int32_t)id)
                                                               : rd_kafka_mock_broker_set_up(c->mc, (int32_t)id);
                control_reply(out, size, err, "ok");
        } else if (!strcmp(cmd, "rtt") && argc == 3 && control_num(argv[1], 1, c->brokers, &id) &&
                   control_num(argv[2], 0, CONTROL_MAX_MS, &ms)) {
                control_reply(out, size, rd_kafka_mock_broker_set_rtt(c->mc, (int32_t)id, (int)ms), "ok");
        } else if (!strcmp(cmd, "errors") && (argc == 3 || argc == 4) &&
                   control_num(argv[1], 0, CONTROL_MAX_APIKEY, &key) && control_num(argv[2], 1, 32767, &code) &&
                   (argc == 3 || control_num(argv[3], 1, CONTROL_MAX_COUNT, &count))) {
                _cleanup_free_ rd_kafka_resp_err_t *errs = calloc((size_t)count, sizeof *errs);
                if (!errs) {
                        snprintf(out, size, "error out of memory");
                        return;
                }
                for (long i = 0; i < count; i++)
                        errs[i] = (rd_kafka_resp_err_t)code;
                rd_kafka_mock_push_request_errors_array(c->mc, (int16_t)key, (size_t)count, errs);
                snprintf(out, size, "ok");
        } else if (!strcmp(cmd, "broker-errors") && argc == 6 && control_num(argv[1], 1, c->brokers, &id) &&
                   control_num(argv[2], 0, CONTROL_MAX_APIKEY, &key) && control_num(argv[3], 1, 32767, &code) &&
                   control_num(argv[4], 1, 8, &count) && control_num(argv[5], 0, CONTROL_MAX_MS, &ms)) {
                /* the call is variadic (error, rtt) pairs: at most 8, spelled out */
                rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)code;
                int r = (int)ms;
                rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
                        c->mc, (int32_t)id, (int16_t)key, (size_t)count, e, r, e, r, e, r, e, r, e, r, e, r, e, r,
                        e, r);
                control_reply(out, size, err, "ok");
        } else if (!strcmp(cmd, "clear") && argc == 2 && control_num(argv[1], 0, CONTROL_MAX_APIKEY, &key)) {
                rd_kafka_mock_clear_request_errors(c->mc, (int16_t)key);
                snprintf(out, size, "ok");
        } else if (!strcmp(cmd, "reset") && argc == 1) {
                rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
                for (int b = 1; b <= c->brokers; b++) {
                        rd_kafka_resp_err_t e1 = rd_kafka_mock_broker_set_up(c->mc, b);
                        rd_kafka_resp_err_t e2 = rd_kafka_mock_broker_set_rtt(c->mc, b, 0);
                        if (!err)
                                err = e1 ? e1 : e2;
                }
                for (int k = 0; k <= CONTROL_MAX_APIKEY; k++)
                        rd_kafka_mock_clear_request_errors(c->mc, (int16_t)k);
                control_reply(out, size, err, "ok");
        } else
                snprintf(out, size, "error invalid command \"%s\" (brokers, down ID, up ID, rtt ID MS, errors "
                         "APIKEY CODE [COUNT], broker-errors ID APIKEY CODE COUNT RTT_MS, clear APIKEY, reset)",
                         cmd);
}

/* Serves one connection after another until the listening socket is shut. */
static void *control_thread(void *userdata) {
        struct control *c = userdata;
        for (;;) {
                int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return NULL; /* shut down */
                }
                FILE *f = fdopen(fd, "r+");
                if (!f) {
                        close(fd);
                        continue;
                }
                _cleanup_free_ char *line = NULL;
                size_t cap = 0;
                while (getline(&line, &cap, f) >= 0) {
                        char out[512];
                        if (strlen(line) > 200)
                                snprintf(out, sizeof out, "error line too long");
                        else {
                                log_info("fault API: %.*s", (int)strcspn(line, "\r\n"), line);
                                control_exec(c, line, out, sizeof out);
                        }
                        if (fprintf(f, "%s\n", out) < 0 || fflush(f) != 0)
                                break;
                }
                fclose(f);
        }
}

/* Listens on 127.0.0.1:port (loopback only, by construction) and writes the
 * address to path. Returns the socket or a negative errno. */
static int control_listen(int port, const char *path) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        char addr[64];
        int r;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
        r = write_bootstrap(path, addr);
        if (r < 0) {
                close(fd);
                return r;
        }
        log_info("fault API listening on %s", addr);
        return fd;
}

int main(int argc, char **argv) {
        struct mock_options o = {.brokers = 3};
        char errstr[512];
        sigset_t mask;
        int sig = 0;

        log_init("kafka-mock", LOG_INFO);
        if (parse_options(argc, argv, &o) < 0)
                return EXIT_USAGE;

        /* Block the signals before librdkafka starts its threads so only
         * sigwait() below ever sees them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        /* The mock cluster needs a client handle for its threads and logging;
         * this producer is never used to produce. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
                log_error("could not configure the mock's client: %s", errstr);
                rd_kafka_conf_destroy(conf);
                return EXIT_CONFIG;
        }
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        if (!rk) {
                log_error("could not create the mock's client: %s", errstr);
                rd_kafka_conf_destroy(conf);
                return EXIT_FAILURE;
        }
        rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, o.brokers);
        if (!mc) {
                log_error("could not start a mock cluster of %d brokers", o.brokers);
                rd_kafka_destroy(rk);
                return EXIT_FAILURE;
        }

        int r = EXIT_SUCCESS;
        if (o.topics_file && create_topics(mc, o.topics_file, o.brokers) < 0) {
                r = EXIT_CONFIG;
                goto out;
        }
        const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
        if (o.bootstrap_file) {
                int k = write_bootstrap(o.bootstrap_file, bootstraps);
                if (k < 0) {
                        log_error("could not write bootstrap file %s: %s", o.bootstrap_file,
                                  strerror(-k));
                        r = EXIT_FAILURE;
                        goto out;
                }
        }
        struct control ctl = {.mc = mc, .brokers = o.brokers, .fd = -1};
        pthread_t ctl_thread;
        if (o.control_file) {
                ctl.fd = control_listen(o.control_port, o.control_file);
                if (ctl.fd < 0) {
                        log_error("could not serve the fault API: %s", strerror(-ctl.fd));
                        r = EXIT_FAILURE;
                        goto out;
                }
                if (pthread_create(&ctl_thread, NULL, control_thread, &ctl) != 0) {
                        log_error("could not start the fault API thread");
                        close(ctl.fd);
                        ctl.fd = -1;
                        r = EXIT_FAILURE;
                        goto out;
                }
        }
        printf("%s\n", bootstraps);
        fflush(stdout);
        log_info("mock kafka cluster of %d brokers ready at %s", o.brokers, bootstraps);

        while (sigwait(&mask, &sig) != 0)
                ;
        log_info("received signal %d, stopping", sig);
        if (ctl.fd >= 0) {
                /* wakes accept(); a client still connected keeps the thread
                 * in getline, so it is left to the exit rather than joined */
                shutdown(ctl.fd, SHUT_RDWR);
                pthread_detach(ctl_thread);
        }
out:
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return r;
}
