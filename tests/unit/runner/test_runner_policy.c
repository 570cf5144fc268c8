/* The platform levels of a run's policy in the runner-agent (issue 12 §3;
 * docs/CONTRACTS.md "Policy engine"), against their real code:
 *  - exec (capture_exec.c): a process under a real seccomp user-notification
 *    filter, its listener handed to the capture socket as crun does; a deny
 *    rule refuses the exec with EPERM also for a renamed copy of the program
 *    (program identity, exec_identity.c) and kills a process whose executed
 *    file is not the one decided on (a script's interpreter, a swap), an ask holds the exec without
 *    holding the run's other execs and is answered when a person approves
 *    (run_policy_on_approval, as from paddock.runs.control) or at the deadline;
 *    the events go to a mock Kafka cluster and are read back from it. A
 *    connect() outside loopback is refused (ENETUNREACH) and is an egress
 *    event "direct": true; one to loopback goes on.
 *  - program identity alone, on a directory standing in for an image root.
 *  - files (capture_files_perm.c): fanotify permission events on a tmpfs
 *    workspace; a deny rule refuses the open with EPERM for another process,
 *    never for the runner's own; an ask holds the opens of a path on one
 *    approval while other opens flow; the cost of 10,000 opens is printed.
 *  - egress (proxy_policy.c): the engine's decision before the allowlist; a
 *    policy allow never opens what the allowlist or the platform floor refuses.
 * Needs root (seccomp listener on /proc/<pid>/mem of another process), else
 * skipped. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "capture_exec.h"
#include "capture_files.h"
#include "capture_files_perm.h"
#include "core/timeutil.h"
#include "events.h"
#include "exec_identity.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "policy/policy_engine.h"
#include "proxy_policy.h"
#include "run_policy.h"

static char dir[] = "/tmp/test_runner_policy.XXXXXX";

static void copy_file(const char *from, const char *to) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod 755 '%s'", from, to, to);
        assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------ identity */

static void write_prog(const char *path, const char *content) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
}

static int names_of(struct exec_identity *ei, int root, const char *rel, char names[][EXEC_IDENTITY_NAME_MAX + 1]) {
        int fd = openat(root, rel, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        int n = exec_identity_names(ei, root, fd, names);
        close(fd);
        return n;
}

/* A copy of an image program is that program; another file of the same size
 * is not; a file of no image program's size is not read. */
static void test_identity(void **state) {
        (void)state;
        char root[128], p[1024];
        snprintf(root, sizeof root, "%s/root", dir);
        snprintf(p, sizeof p, "mkdir -p %s/usr/bin %s/bin %s/tmp %s/workspace", root, root, root, root);
        assert_int_equal(system(p), 0);
        snprintf(p, sizeof p, "%s/usr/bin/git", root);
        write_prog(p, "#!fake git 0123456789\n");
        snprintf(p, sizeof p, "%s/usr/bin/gzip", root);
        write_prog(p, "#!fake gzip 012345678\n"); /* same size as git, other content */
        snprintf(p, sizeof p, "%s/tmp/g", root);
        write_prog(p, "#!fake git 0123456789\n");
        snprintf(p, sizeof p, "%s/workspace/other", root);
        write_prog(p, "#!fake xyz 0123456789\n");
        snprintf(p, sizeof p, "%s/workspace/small", root);
        write_prog(p, "x\n");

        int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(rfd >= 0);
        struct exec_identity *ei = exec_identity_new();
        assert_non_null(ei);
        char names[EXEC_IDENTITY_NAMES_MAX][EXEC_IDENTITY_NAME_MAX + 1];
        assert_int_equal(names_of(ei, rfd, "usr/bin/git", names), 1);
        assert_string_equal(names[0], "git");
        assert_int_equal(names_of(ei, rfd, "tmp/g", names), 1); /* the renamed copy */
        assert_string_equal(names[0], "git");
        assert_int_equal(names_of(ei, rfd, "usr/bin/gzip", names), 1);
        assert_string_equal(names[0], "gzip");
        assert_int_equal(names_of(ei, rfd, "workspace/other", names), 0);
        assert_int_equal(names_of(ei, rfd, "workspace/small", names), 0);
        exec_identity_free(ei);
        close(rfd);
}

/* ------------------------------------------------------------ egress */

static struct policy_engine *engine(const char *rules_json) {
        json_error_t je;
        json_t *rules = json_loads(rules_json, 0, &je);
        assert_non_null(rules);
        struct policy_engine *pe = NULL;
        struct err_detail e = {0};
        assert_int_equal(policy_engine_new_effective(rules, "rules", &pe, &e), 0);
        json_decref(rules);
        return pe;
}

static void check(const struct egress_policy *p, const struct policy_engine *pe, const char *host,
                  struct egress_check *chk) {
        struct policy_decision d = policy_decide(pe, &(struct policy_request){.host = host});
        egress_policy_check(p, &d, policy_rule_source(pe, d.rule), 7, host, 443, chk);
}

static void test_egress(void **state) {
        (void)state;
        Paddock__V1__EgressRule r0 = PADDOCK__V1__EGRESS_RULE__INIT, r1 = PADDOCK__V1__EGRESS_RULE__INIT;
        r0.host = "allowed.example";
        r1.host = "*.pypi.org";
        Paddock__V1__EgressRule *rules[] = {&r0, &r1};
        Paddock__V1__EgressPolicy ep = PADDOCK__V1__EGRESS_POLICY__INIT;
        ep.n_rules = 2;
        ep.rules = rules;
        ep.unknown = "deny";
        struct egress_policy *p = NULL;
        struct err_detail e = {0};
        assert_int_equal(egress_policy_compile(&ep, &p, &e), 0);
        struct policy_engine *pe = engine(
                "[{\"match\":{\"host\":\"allowed.example\"},\"action\":\"deny\",\"source\":\"spec.policy.rules[0]\"},"
                " {\"match\":{\"host\":\"*.pypi.org\"},\"action\":\"ask\",\"source\":\"pack:p1.rules[0]\"},"
                " {\"match\":{\"host\":\"*\"},\"action\":\"allow\",\"source\":\"spec.policy.rules[1]\"}]");
        struct egress_check chk;

        /* deny: before the allowlist that would allow it, naming the rule */
        check(p, pe, "allowed.example", &chk);
        assert_int_equal(chk.verdict, EGRESS_DENY);
        assert_string_equal(chk.rule, "spec.policy.rules[0]");
        assert_non_null(strstr(chk.reason, "spec.policy.rules[0]"));
        /* ask on an allowed host: the person decides, with the run policy's timeout */
        check(p, pe, "files.pypi.org", &chk);
        assert_int_equal(chk.verdict, EGRESS_ASK);
        assert_string_equal(chk.rule, "pack:p1.rules[0]");
        assert_int_equal(chk.ask_timeout_s, 7);
        /* a policy allow never opens what the allowlist refuses ... */
        check(p, pe, "elsewhere.example", &chk);
        assert_int_equal(chk.verdict, EGRESS_DENY);
        assert_false(chk.by_policy);
        /* ... nor the platform floor, by name or literal */
        check(p, pe, "localhost", &chk);
        assert_int_equal(chk.verdict, EGRESS_DENY);
        assert_non_null(strstr(chk.reason, "platform egress floor"));
        check(p, pe, "169.254.169.254", &chk);
        assert_int_equal(chk.verdict, EGRESS_DENY);
        assert_non_null(strstr(chk.reason, "platform egress floor"));
        /* an ask never opens them either */
        struct policy_engine *ask_all = engine("[{\"match\":{\"host\":\"*\"},\"action\":\"ask\"}]");
        check(p, ask_all, "127.0.0.1", &chk);
        assert_int_equal(chk.verdict, EGRESS_DENY);
        check(p, ask_all, "elsewhere.example", &chk);
        assert_int_equal(chk.verdict, EGRESS_DENY);
        /* no policy: the allowlist as before */
        egress_policy_check(p, NULL, NULL, 0, "allowed.example", 443, &chk);
        assert_int_equal(chk.verdict, EGRESS_ALLOW);
        policy_engine_free(ask_all);
        policy_engine_free(pe);
        egress_policy_free(p);
}

/* ------------------------------------------------------------ exec */

static const char run_id[] = "7a0c1d52-3c8e-4b7e-9a51-0c3f5b1e2d10";
static int cmd_w = -1, res_r = -1;
static pid_t launcher = -1;
static char sock_path[100];

/* The sandbox stand-in: under a seccomp filter that notifies execve and
 * execveat (as crun installs it), its listener sent to the capture socket
 * like crun's listenerPath does; then for each line "tag path args..." a
 * reporter process runs the command and writes "tag status", status being the
 * exit code, or 100 + errno when the exec failed. Forked before any thread. */
static void launcher_main(int cmd_r, int res_w) {
        struct sock_filter f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 3, 0),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 2, 0),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        };
        struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
        /* a network of loopback only, like the sandbox's: a connect that got
         * through by mistake could not leave the machine */
        if (unshare(CLONE_NEWNET) < 0)
                _exit(7);
        int ls = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (ls < 0 || ioctl(ls, SIOCGIFFLAGS, &ifr) < 0)
                _exit(8);
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(ls, SIOCSIFFLAGS, &ifr) < 0)
                _exit(8);
        close(ls);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
        int s = -1;
        for (int i = 0; i < 500; i++) {
                s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
                        break;
                close(s);
                s = -1;
                usleep(20000);
        }
        if (s < 0)
                _exit(4);
        /* connected first: the filter notifies connect() too */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                _exit(2);
        int lfd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (lfd < 0)
                _exit(3);
        char payload[] = "{}";
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = payload, .iov_len = sizeof payload};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &lfd, sizeof lfd);
        if (sendmsg(s, &msg, 0) < 0)
                _exit(5);
        close(s);
        close(lfd);
        char line[2048];
        size_t have = 0;
        for (;;) {
                ssize_t n = read(cmd_r, line + have, sizeof line - 1 - have);
                if (n <= 0)
                        break;
                have += (size_t)n;
                char *nl;
                while ((nl = memchr(line, '\n', have))) {
                        *nl = 0;
                        char copy[2048];
                        snprintf(copy, sizeof copy, "%s", line);
                        size_t used = (size_t)(nl - line) + 1;
                        memmove(line, nl + 1, have - used);
                        have -= used;
                        if (fork() == 0) {
                                char *argv[16], *save = NULL;
                                int argc = 0;
                                char *tag = strtok_r(copy, " ", &save);
                                for (char *t; argc < 15 && (t = strtok_r(NULL, " ", &save));)
                                        argv[argc++] = t;
                                argv[argc] = NULL;
                                pid_t pid = fork();
                                if (pid == 0) {
                                        execv(argv[0], argv);
                                        _exit(100 + errno);
                                }
                                int st = 0;
                                waitpid(pid, &st, 0);
                                dprintf(res_w, "%s %d\n", tag, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                                _exit(0);
                        }
                }
        }
        while (wait(NULL) > 0)
                ;
        _exit(0);
}

static void run_cmd(const char *tag, const char *cmd) {
        dprintf(cmd_w, "%s %s\n", tag, cmd);
}

/* The status reported for tag within timeout_ms, or -1000 if none. Results of
 * other tags read meanwhile are kept for later calls. */
static char results[4096];
static int result_of(const char *tag, int timeout_ms) {
        int64_t until = time_mono_us() + (int64_t)timeout_ms * 1000;
        for (;;) {
                char want[64];
                snprintf(want, sizeof want, "%s ", tag);
                for (char *line = results; line && *line;) {
                        char *nl = strchr(line, '\n');
                        if (!nl)
                                break;
                        if (!strncmp(line, want, strlen(want)))
                                return atoi(line + strlen(want));
                        line = nl + 1;
                }
                int64_t left = until - time_mono_us();
                if (left <= 0)
                        return -1000;
                fd_set fs;
                FD_ZERO(&fs);
                FD_SET(res_r, &fs);
                struct timeval tv = {.tv_sec = left / 1000000, .tv_usec = left % 1000000};
                if (select(res_r + 1, &fs, NULL, NULL, &tv) > 0) {
                        size_t l = strlen(results);
                        ssize_t n = read(res_r, results + l, sizeof results - 1 - l);
                        if (n > 0)
                                results[l + (size_t)n] = 0;
                }
        }
}

/* The run's events, read back from the mock cluster. */
static rd_kafka_t *reader;
static json_t *seen;

static void read_events(int timeout_ms) {
        int64_t until = time_mono_us() + (int64_t)timeout_ms * 1000;
        while (time_mono_us() < until) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(reader, 50);
                if (!m)
                        continue;
                if (!m->err) {
                        Paddock__V1__RunEventBatch *b =
                                paddock__v1__run_event_batch__unpack(NULL, m->len, m->payload);
                        for (size_t i = 0; b && i < b->n_events; i++) {
                                json_t *d = json_loads(b->events[i]->data_json, 0, NULL);
                                json_array_append_new(seen, json_pack("{s:s,s:o}", "kind", b->events[i]->kind,
                                                                      "data", d ? d : json_object()));
                        }
                        paddock__v1__run_event_batch__free_unpacked(b, NULL);
                }
                rd_kafka_message_destroy(m);
        }
}

/* The first event of kind whose data has key == value, waiting up to timeout_ms. */
static json_t *find_event(const char *kind, const char *key, const char *value, int timeout_ms) {
        int64_t until = time_mono_us() + (int64_t)timeout_ms * 1000;
        for (;;) {
                size_t i;
                json_t *e;
                json_array_foreach(seen, i, e) {
                        json_t *d = json_object_get(e, "data");
                        const char *v = json_string_value(json_object_get(d, key));
                        if (!strcmp(json_string_value(json_object_get(e, "kind")), kind) && v && !strcmp(v, value))
                                return d;
                }
                if (time_mono_us() >= until)
                        return NULL;
                read_events(100);
        }
}

static rd_kafka_t *mock_host;
static rd_kafka_mock_cluster_t *mock;
static struct kafka_producer *producer;
static struct run_events ev;
static const struct run_events_config ecfg = {.linger_ms = 5, .max_events = 100, .max_bytes = 1 << 20,
                                              .block_budget_ms = 30000};

static int kafka_setup(void **state) {
        (void)state;
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        mock_host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        assert_non_null(mock_host);
        mock = rd_kafka_mock_cluster_new(mock_host, 1);
        assert_non_null(mock);
        const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mock);
        rd_kafka_mock_topic_create(mock, TOPIC_RUNS_EVENTS, 1, 1);
        rd_kafka_mock_topic_create(mock, TOPIC_RUNS_STATUS, 1, 1);
        struct err_detail e = {0};
        struct kafka_options o = {.bootstrap = bootstrap, .client_id = "unit"};
        producer = kafka_producer_new(&o, &e);
        assert_non_null(producer);
        conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr);
        rd_kafka_conf_set(conf, "group.id", "unit-reader", errstr, sizeof errstr);
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr);
        reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
        assert_non_null(reader);
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, TOPIC_RUNS_EVENTS, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(reader, parts), 0);
        rd_kafka_topic_partition_list_destroy(parts);
        seen = json_array();
        events_init(&ev, producer, &ecfg, "runner-agent/unit", "00000000-0000-4000-8000-000000000001", run_id,
                    "00000000-0000-4000-8000-000000000002");
        return 0;
}

static int kafka_teardown(void **state) {
        (void)state;
        events_done(&ev);
        kafka_producer_free(producer);
        rd_kafka_consumer_close(reader);
        rd_kafka_destroy(reader);
        json_decref(seen);
        rd_kafka_mock_cluster_destroy(mock);
        rd_kafka_destroy(mock_host);
        return 0;
}

static void test_exec(void **state) {
        (void)state;
        char p[600], g[400], t[400];
        struct err_detail e = {0};
        snprintf(g, sizeof g, "%s/g", dir);
        snprintf(t, sizeof t, "%s/t", dir);
        copy_file("/usr/bin/git", g);  /* git under another name */
        copy_file("/bin/true", t);

        Paddock__V1__SandboxSnapshot snap = PADDOCK__V1__SANDBOX_SNAPSHOT__INIT;
        snap.policy_json = "{\"rules\": ["
                           "{\"match\": {\"command\": \"git push*\"}, \"action\": \"deny\", \"source\": \"spec.policy.rules[0]\"},"
                           "{\"match\": {\"command\": \"git fetch*\"}, \"action\": \"ask\", \"source\": \"pack:p.rules[0]\"},"
                           "{\"match\": {\"tool\": \"Bash\", \"command\": \"true*\"}, \"action\": \"deny\"}],"
                           " \"ask_timeout_s\": 2}";
        struct run_policy *rp = NULL;
        assert_int_equal(run_policy_new(run_id, &snap, &ev, &rp, &e), 0);
        snprintf(p, sizeof p, "%s/run", dir);
        mkdir(p, 0700);
        snprintf(p, sizeof p, "%s/run/workspace", dir);
        mkdir(p, 0700);
        snprintf(p, sizeof p, "%s/run", dir);
        struct capture_exec *c = capture_exec_start(p, -1, false, &ev, rp, &e);
        assert_non_null(c);

        /* allowed: no rule, or a rule the exec level never sees (tool) */
        run_cmd("plain", "/usr/bin/git --version");
        assert_int_equal(result_of("plain", 20000), 0);
        run_cmd("tool-only", t);
        assert_int_equal(result_of("tool-only", 20000), 0);
        /* a renamed copy of git is still git: refused, EPERM */
        snprintf(p, sizeof p, "%s push origin main", g);
        run_cmd("renamed", p);
        assert_int_equal(result_of("renamed", 20000), 100 + EPERM);
        /* and git by its full path (argv[0] "/usr/bin/git" is not "git") */
        run_cmd("fullpath", "/usr/bin/git push");
        assert_int_equal(result_of("fullpath", 20000), 100 + EPERM);
        /* another program given the same arguments is not */
        snprintf(p, sizeof p, "%s push", t);
        run_cmd("other", p);
        assert_int_equal(result_of("other", 20000), 0);

        snprintf(p, sizeof p, "%s push origin main", g);
        json_t *d = find_event("policy_decision", "command_given", p, 10000);
        assert_non_null(d);
        assert_string_equal(json_string_value(json_object_get(d, "level")), "exec");
        assert_string_equal(json_string_value(json_object_get(d, "action")), "deny");
        assert_string_equal(json_string_value(json_object_get(d, "rule")), "spec.policy.rules[0]");
        assert_string_equal(json_string_value(json_object_get(d, "command")), "git push origin main");
        assert_string_equal(json_string_value(json_object_get(d, "program")), "git");
        d = find_event("exec", "path", g, 10000);
        assert_non_null(d);
        assert_true(json_is_true(json_object_get(d, "denied")));
        assert_string_equal(json_string_value(json_object_get(d, "rule")), "spec.policy.rules[0]");

        /* the file decided on is not what the kernel ran (here: a script whose
         * interpreter is the renamed git; likewise a file swapped in a race):
         * the executed program decides again, and the process is killed */
        char x[400];
        snprintf(x, sizeof x, "%s/x", dir);
        FILE *xf = fopen(x, "w");
        assert_non_null(xf);
        fprintf(xf, "#!%s\n", g);
        fclose(xf);
        chmod(x, 0755);
        snprintf(p, sizeof p, "%s push", x);
        run_cmd("interp", p);
        assert_int_equal(result_of("interp", 20000), -1); /* SIGKILL */
        d = find_event("exec", "path", x, 10000);
        assert_non_null(d);
        assert_true(json_is_true(json_object_get(d, "killed")));
        assert_true(json_is_true(json_object_get(d, "denied")));
        assert_string_equal(json_string_value(json_object_get(d, "rule")), "spec.policy.rules[0]");

        /* a direct connection around the proxy: refused and an event; loopback goes on */
        char conn[400];
        snprintf(conn, sizeof conn, "%s/conn.py", dir);
        FILE *cf = fopen(conn, "w");
        assert_non_null(cf);
        fputs("import socket, sys\n"
              "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
              "s.settimeout(5)\n"
              "try:\n    s.connect((sys.argv[1], int(sys.argv[2])))\nexcept OSError as e:\n"
              "    sys.exit(e.errno)\nsys.exit(0)\n", cf);
        fclose(cf);
        snprintf(p, sizeof p, "/usr/bin/python3 %s 198.18.0.2 8080", conn);
        run_cmd("direct", p);
        assert_int_equal(result_of("direct", 20000), ENETUNREACH);
        snprintf(p, sizeof p, "/usr/bin/python3 %s 2001:db8::7 443", conn);
        run_cmd("direct6", p);
        assert_int_equal(result_of("direct6", 20000), ENETUNREACH);
        snprintf(p, sizeof p, "/usr/bin/python3 %s 127.0.0.1 9", conn);
        run_cmd("loopback", p);
        assert_int_equal(result_of("loopback", 20000), ECONNREFUSED); /* the kernel's answer: nobody listens */
        d = find_event("egress", "host", "198.18.0.2", 10000);
        assert_non_null(d);
        assert_true(json_is_true(json_object_get(d, "direct")));
        assert_string_equal(json_string_value(json_object_get(d, "decision")), "deny");
        assert_int_equal(json_integer_value(json_object_get(d, "port")), 8080);
        assert_true(json_integer_value(json_object_get(d, "pid")) > 0);
        assert_non_null(find_event("egress", "host", "2001:db8::7", 10000));
        assert_null(find_event("egress", "host", "127.0.0.1", 500));

        /* ask: the exec waits; the run's other execs do not */
        snprintf(p, sizeof p, "%s fetch", g);
        run_cmd("held", p);
        json_t *req = find_event("approval_requested", "command", "git fetch", 10000);
        assert_non_null(req);
        assert_string_equal(json_string_value(json_object_get(req, "kind")), "exec");
        assert_string_equal(json_string_value(json_object_get(req, "program")), "git");
        assert_true(json_integer_value(json_object_get(req, "pid")) > 0);
        run_cmd("meanwhile", "/usr/bin/git --version");
        assert_int_equal(result_of("meanwhile", 20000), 0);
        assert_int_equal(result_of("held", 0), -1000);
        Paddock__V1__ApprovalDecision dec = PADDOCK__V1__APPROVAL_DECISION__INIT;
        dec.approval_id = (char *)json_string_value(json_object_get(req, "approval_id"));
        dec.approved = true;
        dec.decided_by = "user:approver";
        assert_true(run_policy_on_approval(run_id, &dec));
        /* approved: git ran (outside a repository it exits 128), not EPERM */
        assert_int_equal(result_of("held", 20000), 128);
        assert_non_null(find_event("approval_decided", "approval_id", dec.approval_id, 10000));

        /* not decided: denied at the deadline (2 s) */
        int64_t t0 = time_mono_us();
        snprintf(p, sizeof p, "%s fetch --all", g);
        run_cmd("expires", p);
        assert_int_equal(result_of("expires", 20000), 100 + EPERM);
        assert_true(time_mono_us() - t0 >= 1500000);
        d = find_event("approval_decided", "by", "timeout", 10000);
        assert_non_null(d);
        assert_string_equal(json_string_value(json_object_get(d, "decision")), "deny");

        /* the run ends while an exec waits: answered (EPERM), nothing hangs */
        run_cmd("at-end", p);
        int64_t asked = time_mono_us();
        while (result_of("at-end", 0) == -1000 && time_mono_us() - asked < 500000)
                usleep(10000); /* let the capture thread hold it (its ask goes out first) */
        read_events(300);
        run_policy_close(rp);
        assert_int_equal(result_of("at-end", 20000), 100 + EPERM);

        close(cmd_w);
        cmd_w = -1;
        waitpid(launcher, NULL, 0);
        capture_exec_stop(c);
        run_policy_free(rp);
}

/* ------------------------------------------------------------ files */

static char ws[128];

/* A process of the "sandbox" (not the runner: another pid) opening rel:
 * 0, or 100 + errno. Forks: only open and _exit in the child. */
static pid_t open_async(const char *rel) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", ws, rel);
        pid_t pid = fork();
        if (pid == 0) {
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                _exit(fd < 0 ? 100 + errno : 0);
        }
        return pid;
}

static int open_wait(pid_t pid) {
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool exited(pid_t pid, int *status) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) != pid)
                return false;
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return true;
}

/* n opens (and closes) of rel by one other process; its wall time in ms. */
static double opens_ms(const char *rel, int n) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", ws, rel);
        int64_t t0 = time_mono_us();
        pid_t pid = fork();
        if (pid == 0) {
                for (int i = 0; i < n; i++) {
                        int fd = open(path, O_RDONLY | O_CLOEXEC);
                        if (fd < 0)
                                _exit(1);
                        close(fd);
                }
                _exit(0);
        }
        assert_int_equal(open_wait(pid), 0);
        return (double)(time_mono_us() - t0) / 1000.0;
}

static void put(const char *rel) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", ws, rel);
        write_prog(path, "x\n");
}

static void test_files(void **state) {
        (void)state;
        char p[300];
        snprintf(p, sizeof p, "%s/secrets", ws);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/a", ws);
        mkdir(p, 0755);
        put(".env");
        put("a/.env");
        put("ok.txt");
        put("secrets/a.key");
        put("secrets/b.key");

        struct err_detail e = {0};
        struct run_policy *rp = NULL;
        struct capture_files_perm *cp = NULL;
        /* no path rule that asks or denies: no group at all */
        Paddock__V1__SandboxSnapshot snap = PADDOCK__V1__SANDBOX_SNAPSHOT__INIT;
        snap.policy_json = "{\"rules\": [{\"match\": {\"path\": \"**\"}, \"action\": \"allow\"},"
                           " {\"match\": {\"command\": \"cat*\"}, \"action\": \"deny\"}]}";
        assert_int_equal(run_policy_new(run_id, &snap, &ev, &rp, &e), 0);
        assert_int_equal(capture_files_perm_start(ws, &ev, rp, &cp, &e), 0);
        assert_null(cp);
        run_policy_free(rp);
        double plain = opens_ms("ok.txt", 10000);

        snap.policy_json = "{\"rules\": ["
                           "{\"match\": {\"path\": \"**/.env\"}, \"action\": \"deny\", \"source\": \"spec.policy.rules[0]\"},"
                           "{\"match\": {\"path\": \"secrets/*.key\"}, \"action\": \"ask\", \"source\": \"pack:p.rules[0]\"}],"
                           " \"ask_timeout_s\": 2}";
        assert_int_equal(run_policy_new(run_id, &snap, &ev, &rp, &e), 0);
        assert_int_equal(capture_files_perm_start(ws, &ev, rp, &cp, &e), 0);
        assert_non_null(cp);
        /* a workspace that cannot be resolved fails cleanly: the early goto
         * once skipped a _cleanup_ variable's initialisation and freed it
         * uninitialised (found by the clang build of tests/fuzz) */
        struct capture_files_perm *none = NULL;
        struct err_detail enoent = {0};
        assert_int_equal(capture_files_perm_start("/nonexistent/paddock-ws", &ev, rp, &none, &enoent), -ENOENT);
        assert_null(none);
        assert_null(capture_files_start("/nonexistent/paddock-ws", &ev, 100, 1000, &enoent));
        double decided = opens_ms("ok.txt", 10000);
        printf("# 10000 opens of one workspace file: %.1f ms without a path rule, %.1f ms with one "
               "(%.1f us per open for the permission round trip)\n",
               plain, decided, (decided - plain) * 1000.0 / 10000);

        /* deny: EPERM for any process, the workspace-relative path decided */
        assert_int_equal(open_wait(open_async("ok.txt")), 0);
        assert_int_equal(open_wait(open_async(".env")), 100 + EPERM);
        assert_int_equal(open_wait(open_async("a/.env")), 100 + EPERM);
        json_t *d = find_event("policy_decision", "path", ".env", 10000);
        assert_non_null(d);
        assert_string_equal(json_string_value(json_object_get(d, "level")), "file");
        assert_string_equal(json_string_value(json_object_get(d, "action")), "deny");
        assert_string_equal(json_string_value(json_object_get(d, "rule")), "spec.policy.rules[0]");
        assert_non_null(find_event("policy_decision", "path", "a/.env", 10000));
        /* the runner-agent's own reads are never held or refused */
        snprintf(p, sizeof p, "%s/.env", ws);
        int own = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(own >= 0);
        close(own);

        /* ask: held, one approval for the path, other opens flow meanwhile */
        pid_t h1 = open_async("secrets/a.key");
        json_t *req = find_event("approval_requested", "path", "secrets/a.key", 10000);
        assert_non_null(req);
        assert_string_equal(json_string_value(json_object_get(req, "kind")), "file");
        pid_t h2 = open_async("secrets/a.key");
        assert_int_equal(open_wait(open_async("ok.txt")), 0);
        usleep(200000);
        int st;
        assert_false(exited(h1, &st));
        assert_false(exited(h2, &st));
        read_events(200);
        size_t i, n_req = 0;
        json_t *x;
        json_array_foreach(seen, i, x) {
                const char *path = json_string_value(json_object_get(json_object_get(x, "data"), "path"));
                if (!strcmp(json_string_value(json_object_get(x, "kind")), "approval_requested") && path &&
                    !strcmp(path, "secrets/a.key"))
                        n_req++;
        }
        assert_int_equal(n_req, 1);
        Paddock__V1__ApprovalDecision dec = PADDOCK__V1__APPROVAL_DECISION__INIT;
        dec.approval_id = (char *)json_string_value(json_object_get(req, "approval_id"));
        dec.approved = true;
        dec.decided_by = "user:approver";
        assert_true(run_policy_on_approval(run_id, &dec));
        assert_int_equal(open_wait(h1), 0);
        assert_int_equal(open_wait(h2), 0);
        assert_int_equal(open_wait(open_async("secrets/a.key")), 0); /* decided for the run */

        /* not decided: EPERM at the deadline */
        int64_t t0 = time_mono_us();
        assert_int_equal(open_wait(open_async("secrets/b.key")), 100 + EPERM);
        assert_true(time_mono_us() - t0 >= 1500000);

        run_policy_close(rp);
        cp = capture_files_perm_stop(cp);
        run_policy_free(rp);
}

int main(void) {
        if (geteuid() != 0) {
                fprintf(stderr, "needs root (seccomp listener, /proc/<pid>/mem)\n");
                return 77;
        }
        if (!mkdtemp(dir))
                return 1;
        snprintf(sock_path, sizeof sock_path, "%s/run/%s", dir, CAPTURE_EXEC_SOCKET);
        /* the workspace on a tmpfs of its own, as sandbox_make_dirs makes it,
         * in a mount namespace of the test's (before any thread) */
        snprintf(ws, sizeof ws, "%s/ws", dir);
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || mkdir(ws, 0755) < 0 ||
            mount("tmpfs", ws, "tmpfs", 0, "size=16m") < 0) {
                fprintf(stderr, "cannot mount a tmpfs workspace: %m\n");
                return 77;
        }
        int cmd[2], res[2];
        if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0)
                return 1;
        /* before any thread: the launcher only forks and execs */
        launcher = fork();
        if (launcher == 0) {
                close(cmd[1]);
                close(res[0]);
                if (chdir(dir) < 0)
                        _exit(6);
                launcher_main(cmd[0], res[1]);
        }
        close(cmd[0]);
        close(res[1]);
        cmd_w = cmd[1];
        res_r = res[0];
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_identity),
                cmocka_unit_test(test_egress),
                cmocka_unit_test_setup_teardown(test_exec, kafka_setup, kafka_teardown),
                cmocka_unit_test_setup_teardown(test_files, kafka_setup, kafka_teardown),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        if (cmd_w >= 0) {
                close(cmd_w);
                kill(launcher, SIGKILL);
                waitpid(launcher, NULL, 0);
        }
        umount2(ws, MNT_DETACH);
        char rm[300];
        snprintf(rm, sizeof rm, "rm -rf %s", dir);
        (void)!system(rm);
        return r;
}
