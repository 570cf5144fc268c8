/* paddock-kafka-mock: hosts librdkafka's mock cluster (real Kafka wire protocol
 * on loopback TCP) with the topics of deploy/topics.txt, writes the bootstrap
 * string to a file, and runs until SIGTERM/SIGINT. In-memory by design: a
 * restart loses every message and committed offset. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "core/log.h"
#include "core/macro.h"

#define EXIT_USAGE 64
#define EXIT_CONFIG 78

struct mock_options {
        const char *topics_file;
        const char *bootstrap_file;
        int brokers;
};

static void usage(FILE *out) {
        fprintf(out,
                "usage: paddock-kafka-mock [--brokers N] [--topics FILE] [--bootstrap-file PATH]\n"
                "  --brokers N            mock brokers to start (1..16, default 3)\n"
                "  --topics FILE          topic list: 'name partitions replication' per line\n"
                "                         ('#' comments); replication is capped to N\n"
                "  --bootstrap-file PATH  write the bootstrap string there once ready\n"
                "Runs until SIGTERM or SIGINT. Everything is kept in memory only.\n");
}

static int parse_options(int argc, char **argv, struct mock_options *o) {
        static const struct option longopts[] = {
                {"brokers", required_argument, NULL, 'b'},
                {"topics", required_argument, NULL, 't'},
                {"bootstrap-file", required_argument, NULL, 'f'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        int ch;
        while ((ch = getopt_long(argc, argv, "b:t:f:h", longopts, NULL)) >= 0) {
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
        printf("%s\n", bootstraps);
        fflush(stdout);
        log_info("mock kafka cluster of %d brokers ready at %s", o.brokers, bootstraps);

        while (sigwait(&mask, &sig) != 0)
                ;
        log_info("received signal %d, stopping", sig);
out:
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return r;
}
