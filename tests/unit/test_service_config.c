/* The settings the five daemons share (lib/service/service_config.h,
 * lib/kafka/kafka_config.h, lib/s3/s3_config.h, PADDOCK_EGRESS_FLOOR) are one
 * table fragment: every daemon's `--help` shows each of them exactly once,
 * with the same type, default, bounds, sensitivity and description as the
 * fragment, and the daemons refuse the same bad value with the same message
 * and exit status. Before the fragment the copies had drifted (five
 * descriptions of PADDOCK_LOG_LEVEL, the api's own error message for it, a
 * runner-agent parser of PADDOCK_OPS_ADDR of its own).
 *
 * Runs the real binaries (paths from CMake). Nothing is contacted: every
 * case stops at a configuration check, before any connection. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"
#include "kafka/kafka_config.h"
#include "net/addr_policy.h"
#include "s3/s3_config.h"
#include "service/service_config.h"

/* Every shared fragment, spliced the way a daemon splices them. */
struct all {
        struct service_settings svc;
        struct kafka_settings kafka;
        struct s3_settings s3;
        char *floor;
};

enum { F_LOG = 1, F_OPS = 2, F_PG = 4, F_KAFKA = 8, F_S3 = 16, F_FLOOR = 32 };

static const struct config_entry log_entries[] = {SERVICE_CONFIG_LOG_LEVEL_ENTRY(struct all, svc), {NULL}};
static const struct config_entry ops_entries[] = {SERVICE_CONFIG_OPS_ADDR_ENTRY(struct all, svc), {NULL}};
static const struct config_entry pg_entries[] = {SERVICE_CONFIG_PG_DSN_ENTRY(struct all, svc), {NULL}};
static const struct config_entry kafka_entries[] = {KAFKA_CONFIG_ENTRIES(struct all, kafka), {NULL}};
static const struct config_entry s3_entries[] = {S3_CONFIG_ENTRIES(struct all, s3), {NULL}};
static const struct config_entry floor_entries[] = {ADDR_FLOOR_CONFIG_ENTRY(offsetof(struct all, floor)), {NULL}};

static const struct {
        const struct config_entry *entries;
        unsigned fragment;
} shared[] = {
        {log_entries, F_LOG}, {ops_entries, F_OPS}, {pg_entries, F_PG},
        {kafka_entries, F_KAFKA}, {s3_entries, F_S3}, {floor_entries, F_FLOOR},
};

static const struct daemon {
        const char *name, *bin;
        unsigned has; /* the fragments it embeds; the others must be absent */
} daemons[] = {
        /* the api serves /metrics, summed over its workers, on an ops port of its own */
        {"api", PADDOCK_API_BIN, F_LOG | F_OPS | F_PG | F_KAFKA | F_S3 | F_FLOOR},
        {"scheduler", PADDOCK_SCHEDULER_BIN, F_LOG | F_OPS | F_PG | F_KAFKA},
        /* the execution plane holds no database or storage credentials */
        {"runner-agent", PADDOCK_RUNNER_AGENT_BIN, F_LOG | F_OPS | F_KAFKA | F_FLOOR},
        {"evidence", PADDOCK_EVIDENCE_BIN, F_LOG | F_OPS | F_PG | F_KAFKA | F_S3},
        {"billing", PADDOCK_BILLING_BIN, F_LOG | F_OPS | F_PG | F_KAFKA},
};

static char *slurp(const char *path) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        assert_non_null(m);
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
                fwrite(chunk, 1, n, m);
        fclose(f);
        fclose(m);
        return buf;
}

/* Runs bin with argv (NULL-terminated, argv[0] excluded) in an environment of
 * exactly env (NULL-terminated "K=V"), stdout and stderr captured (caller
 * frees). Returns the exit status. */
static int run(const char *bin, const char *const *args, const char *const *env, char **out, char **err) {
        char dir[] = "/tmp/paddock-test-service-config-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char out_path[128], err_path[128];
        snprintf(out_path, sizeof out_path, "%s/out", dir);
        snprintf(err_path, sizeof err_path, "%s/err", dir);
        const char *argv[16] = {bin};
        size_t n = 1;
        for (; args && *args; args++)
                argv[n++] = *args;
        argv[n] = NULL;
        const char *envp[32];
        size_t e = 0;
        envp[e++] = "PATH=/usr/bin:/bin";
        envp[e++] = "ASAN_OPTIONS=detect_leaks=0";
        for (; env && *env; env++)
                envp[e++] = *env;
        envp[e] = NULL;

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        pid_t pid;
        int r = posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, (char *const *)envp);
        posix_spawn_file_actions_destroy(&fa);
        assert_int_equal(r, 0);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        *out = slurp(out_path);
        *err = slurp(err_path);
        unlink(out_path);
        unlink(err_path);
        rmdir(dir);
        assert_true(WIFEXITED(st));
        return WEXITSTATUS(st);
}

/* What config_print_help prints for one entry: its two lines. */
static char *help_block(const struct config_entry *e) {
        struct config_entry one[2] = {*e, {NULL}};
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        assert_non_null(m);
        config_print_help(m, "x", "y", one);
        fclose(m);
        const char *marker = "Configuration (environment variables):\n";
        char *p = strstr(buf, marker);
        assert_non_null(p);
        /* with the newline before it: the block starts a line */
        char *block = strdup(p + strlen(marker) - 1);
        free(buf);
        return block;
}

static size_t count(const char *hay, const char *needle) {
        size_t n = 0;
        for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* One entry of a fragment in one daemon's --help: once and as the fragment
 * says, or (fragment not embedded) absent. */
static void check_entry(const struct daemon *d, const char *help, const struct config_entry *e, bool embedded) {
        char line_start[128];
        snprintf(line_start, sizeof line_start, "\n  %s ", e->name);
        if (!embedded) {
                if (strstr(help, line_start))
                        fail_msg("paddock-%s --help lists %s, which it must not have", d->name, e->name);
                return;
        }
        char *block = help_block(e);
        if (count(help, line_start) != 1 || !strstr(help, block))
                fail_msg("paddock-%s --help does not list %s once exactly as the shared fragment does:\n"
                         "want:%s\ngot:\n%s", d->name, e->name, block, help);
        free(block);
}

static void test_help_lists_the_shared_entries_as_the_fragment_says(void **state) {
        (void)state;
        for (size_t d = 0; d < sizeof daemons / sizeof *daemons; d++) {
                char *out, *err;
                int rc = run(daemons[d].bin, (const char *const[]){"--help", NULL}, NULL, &out, &err);
                assert_int_equal(rc, 0);
                for (size_t i = 0; i < sizeof shared / sizeof *shared; i++)
                        for (const struct config_entry *e = shared[i].entries; e->name; e++)
                                check_entry(&daemons[d], out, e, daemons[d].has & shared[i].fragment);
                free(out);
                free(err);
        }
}

/* Enough for each daemon to get past its required settings to the checks. */
static const char *const base_env[] = {"PADDOCK_PG_DSN=postgresql://paddock:test-dsn-secret@127.0.0.1:1/unused",
                                       "PADDOCK_MASTER_KEY="
                                       "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                                       NULL};

static void with_base(const char **env, const char *extra1, const char *extra2) {
        size_t n = 0;
        for (const char *const *b = base_env; *b; b++)
                env[n++] = *b;
        if (extra1)
                env[n++] = extra1;
        if (extra2)
                env[n++] = extra2;
        env[n] = NULL;
}

static void expect_refusal(const char *setting_value, const char *message) {
        for (size_t d = 0; d < sizeof daemons / sizeof *daemons; d++) {
                if (!strncmp(setting_value, "PADDOCK_OPS_ADDR=", 17) && !(daemons[d].has & F_OPS))
                        continue;
                const char *env[8];
                with_base(env, setting_value, NULL);
                char *out, *err;
                int rc = run(daemons[d].bin, NULL, env, &out, &err);
                if (rc != CONFIG_EXIT_BAD || !strstr(err, message))
                        fail_msg("paddock-%s with %s: exit %d, want %d and \"%s\" in:\n%s", daemons[d].name,
                                 setting_value, rc, CONFIG_EXIT_BAD, message, err);
                free(out);
                free(err);
        }
}

static void test_bad_log_level_is_refused_alike(void **state) {
        (void)state;
        expect_refusal("PADDOCK_LOG_LEVEL=loud",
                       "invalid configuration: PADDOCK_LOG_LEVEL: \\\"loud\\\" is not debug, info, warn or error");
}

static void test_bad_ops_addr_is_refused_alike(void **state) {
        (void)state;
        expect_refusal("PADDOCK_OPS_ADDR=no-port-here",
                       "invalid configuration: PADDOCK_OPS_ADDR: \\\"no-port-here\\\" is not host:port");
        expect_refusal("PADDOCK_OPS_ADDR=127.0.0.1:70000",
                       "invalid configuration: PADDOCK_OPS_ADDR: \\\"127.0.0.1:70000\\\" is not host:port");
}

static void test_unknown_argument_is_refused_alike(void **state) {
        (void)state;
        for (size_t d = 0; d < sizeof daemons / sizeof *daemons; d++) {
                char *out, *err;
                int rc = run(daemons[d].bin, (const char *const[]){"frobnicate", NULL}, NULL, &out, &err);
                char want[128];
                snprintf(want, sizeof want, "paddock-%s: unknown argument \"frobnicate\" (see --help)", daemons[d].name);
                if (rc != CONFIG_EXIT_BAD || !strstr(err, want))
                        fail_msg("paddock-%s frobnicate: exit %d, want %d and \"%s\" in:\n%s", daemons[d].name, rc,
                                 CONFIG_EXIT_BAD, want, err);
                free(out);
                free(err);
        }
}

/* The api's public URL (the workload identity issuer's base, docs/CONTRACTS.md
 * "Workload identity") is checked before anything is contacted. */
static void test_bad_public_url_is_refused(void **state) {
        (void)state;
        for (const char *const *bad = (const char *const[]){"PADDOCK_PUBLIC_URL=ftp://api.example.com",
                                                            "PADDOCK_PUBLIC_URL=https://api.example.com/base",
                                                            "PADDOCK_PUBLIC_URL=https://user@api.example.com",
                                                            "PADDOCK_PUBLIC_URL=https://", NULL};
             *bad; bad++) {
                const char *env[8];
                with_base(env, *bad, NULL);
                char *out, *err;
                int rc = run(PADDOCK_API_BIN, NULL, env, &out, &err);
                if (rc != CONFIG_EXIT_BAD || !strstr(err, "invalid configuration: PADDOCK_PUBLIC_URL: "))
                        fail_msg("paddock-api with %s: exit %d, want %d naming PADDOCK_PUBLIC_URL:\n%s", *bad, rc,
                                 CONFIG_EXIT_BAD, err);
                free(out);
                free(err);
        }
}

/* Valid settings up to the bus keys, which are missing: the daemon logs its
 * effective configuration (every setting of its --help, secrets hidden),
 * then refuses to start (78) without having contacted anything. */
static void test_effective_configuration_lists_every_setting_and_no_secret(void **state) {
        (void)state;
        for (size_t d = 0; d < sizeof daemons / sizeof *daemons; d++) {
                const char *env[16];
                size_t n = 0;
                for (const char *const *b = base_env; *b; b++)
                        env[n++] = *b;
                env[n++] = "PADDOCK_KAFKA_BOOTSTRAP=127.0.0.1:9";
                env[n++] = "PADDOCK_KAFKA_SASL_PASSWORD=test-sasl-secret";
                env[n++] = "PADDOCK_S3_ENDPOINT=http://127.0.0.1:9";
                env[n++] = "PADDOCK_S3_BUCKET=b";
                env[n++] = "PADDOCK_S3_ACCESS_KEY=k";
                env[n++] = "PADDOCK_S3_SECRET_KEY=test-s3-secret";
                env[n++] = "PADDOCK_API_WORKERS=1";
                /* the runner-agent stops at its node id, before preparing the node */
                env[n++] = !strcmp(daemons[d].name, "runner-agent") ? "PADDOCK_NODE_ID=not a node id" : NULL;
                env[n] = NULL;
                char *help, *out, *err;
                assert_int_equal(run(daemons[d].bin, (const char *const[]){"--help", NULL}, NULL, &help, &err), 0);
                free(err);
                int rc = run(daemons[d].bin, NULL, env, &out, &err);
                if (rc != CONFIG_EXIT_BAD)
                        fail_msg("paddock-%s: exit %d, want %d:\n%s", daemons[d].name, rc, CONFIG_EXIT_BAD, err);
                size_t settings = 0;
                for (const char *p = help; (p = strstr(p, "\n  PADDOCK_")); p++) {
                        char name[96], want[160];
                        sscanf(p + 3, "%95s", name);
                        snprintf(want, sizeof want, "\"msg\":\"configuration\",\"setting\":\"%s\",", name);
                        if (!strstr(err, want))
                                fail_msg("paddock-%s did not log setting %s:\n%s", daemons[d].name, name, err);
                        settings++;
                }
                assert_true(settings >= 15);
                for (const char *const *secret = (const char *const[]){"test-dsn-secret", "test-sasl-secret",
                                                                       "test-s3-secret", "00112233445566778899", NULL};
                     *secret; secret++)
                        if (strstr(err, *secret) || strstr(out, *secret))
                                fail_msg("paddock-%s logged the secret %s:\n%s", daemons[d].name, *secret, err);
                /* the api, evidence and the scheduler sign, billing only verifies; none runs without keys */
                if (strcmp(daemons[d].name, "runner-agent") != 0 &&
                    !strstr(err, "could not load the bus keys: PADDOCK_TRUSTED_KEYS is not set"))
                        fail_msg("paddock-%s did not stop at the bus keys:\n%s", daemons[d].name, err);
                free(help);
                free(out);
                free(err);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_help_lists_the_shared_entries_as_the_fragment_says),
                cmocka_unit_test(test_bad_log_level_is_refused_alike),
                cmocka_unit_test(test_bad_ops_addr_is_refused_alike),
                cmocka_unit_test(test_unknown_argument_is_refused_alike),
                cmocka_unit_test(test_effective_configuration_lists_every_setting_and_no_secret),
                cmocka_unit_test(test_bad_public_url_is_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
