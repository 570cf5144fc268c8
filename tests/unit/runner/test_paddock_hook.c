/* paddock-hook (services/runner-agent/hook/paddock_hook.c), the real static
 * binary against a stand-in runner on a unix socket: it frames the CLI's
 * stdin JSON into {cli, event, input}, prints the CLIs' answer, and fails
 * CLOSED (exit 2, the reason on stderr, a PreToolUse deny on stdout) on every
 * error: no socket, the runner closing without an answer, a malformed answer
 * or length, stdin that is not JSON. Both CLIs run a tool whose hook exits
 * with anything but 2 (docs/CONTRACTS.md "Hook bridge"). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[256], sock_path[300];

enum mode { ANSWER, CLOSE, GARBAGE, BAD_LENGTH, CUT };

struct server {
        int fd;
        enum mode mode;
        const char *answer;
        char request[65536];
        pthread_t thread;
};

static int read_all(int fd, void *buf, size_t len) {
        char *p = buf;
        while (len > 0) {
                ssize_t n = read(fd, p, len);
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static void *serve(void *userdata) {
        struct server *s = userdata;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
                return NULL;
        unsigned char hdr[4];
        if (read_all(c, hdr, 4) == 0) {
                uint32_t n = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
                if (n < sizeof s->request && read_all(c, s->request, n) == 0)
                        s->request[n] = 0;
        }
        uint32_t n = s->answer ? (uint32_t)strlen(s->answer) : 0;
        unsigned char out[4] = {n >> 24, n >> 16, n >> 8, n};
        if (s->mode == ANSWER || s->mode == GARBAGE) {
                (void)!write(c, out, 4);
                (void)!write(c, s->answer, n);
        } else if (s->mode == BAD_LENGTH) {
                unsigned char big[4] = {0x7f, 0xff, 0xff, 0xff};
                (void)!write(c, big, 4);
        } else if (s->mode == CUT) {
                (void)!write(c, out, 4);
                (void)!write(c, s->answer, n / 2);
        }
        close(c);
        return NULL;
}

static void server_start(struct server *s, enum mode mode, const char *answer) {
        memset(s, 0, sizeof *s);
        s->mode = mode;
        s->answer = answer;
        unlink(sock_path);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, sock_path);
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->fd >= 0);
        assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(s->fd, 4), 0);
        assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct server *s) {
        shutdown(s->fd, SHUT_RDWR);
        pthread_join(s->thread, NULL);
        close(s->fd);
        unlink(sock_path);
}

/* Runs the hook with stdin; returns its exit code (-1: killed) and output. */
static int run_hook(const char *cli, const char *event, const char *stdin_text, char *out, size_t outsz, char *err,
                    size_t errsz) {
        char in_path[320], out_path[320], err_path[320];
        snprintf(in_path, sizeof in_path, "%s/stdin", dir);
        snprintf(out_path, sizeof out_path, "%s/stdout", dir);
        snprintf(err_path, sizeof err_path, "%s/stderr", dir);
        FILE *f = fopen(in_path, "w");
        fputs(stdin_text, f);
        fclose(f);
        pid_t pid = fork();
        if (pid == 0) {
                int i = open(in_path, O_RDONLY), o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600),
                    e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                dup2(i, 0);
                dup2(o, 1);
                dup2(e, 2);
                execl(PADDOCK_HOOK_BIN, "paddock-hook", "--socket", sock_path, cli, event, (char *)NULL);
                _exit(127);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        for (int k = 0; k < 2; k++) {
                FILE *r = fopen(k ? err_path : out_path, "r");
                char *b = k ? err : out;
                size_t n = r ? fread(b, 1, (k ? errsz : outsz) - 1, r) : 0;
                b[n] = 0;
                if (r)
                        fclose(r);
        }
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *PRE = "{\"session_id\":\"s\",\"cwd\":\"/workspace\",\"hook_event_name\":\"PreToolUse\","
                         "\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"git push origin main\"},"
                         "\"tool_use_id\":\"toolu_1\"}";

static void assert_denied_pre(int code, const char *out, const char *err, const char *why) {
        assert_int_equal(code, 2);
        if (!strstr(err, why))
                fail_msg("stderr lacks \"%s\": %s", why, err);
        json_t *o = json_loads(out, 0, NULL);
        assert_non_null(o);
        json_t *h = json_object_get(o, "hookSpecificOutput");
        assert_string_equal(json_string_value(json_object_get(h, "permissionDecision")), "deny");
        assert_string_equal(json_string_value(json_object_get(h, "hookEventName")), "PreToolUse");
        json_decref(o);
}

static void test_allow_frames_request(void **state) {
        (void)state;
        struct server s;
        server_start(&s, ANSWER, "{\"decision\":\"allow\",\"reason\":\"no Paddock policy rule applies\"}");
        char out[4096], err[4096];
        int code = run_hook("claude-code", "PreToolUse", PRE, out, sizeof out, err, sizeof err);
        server_stop(&s);
        assert_int_equal(code, 0);
        json_t *req = json_loads(s.request, 0, NULL);
        assert_non_null(req);
        assert_string_equal(json_string_value(json_object_get(req, "cli")), "claude-code");
        assert_string_equal(json_string_value(json_object_get(req, "event")), "PreToolUse");
        json_t *in = json_object_get(req, "input");
        assert_string_equal(json_string_value(json_object_get(in, "tool_use_id")), "toolu_1");
        assert_string_equal(json_string_value(json_object_get(json_object_get(in, "tool_input"), "command")),
                            "git push origin main");
        json_decref(req);
        json_t *o = json_loads(out, 0, NULL);
        json_t *h = json_object_get(o, "hookSpecificOutput");
        assert_string_equal(json_string_value(json_object_get(h, "permissionDecision")), "allow");
        json_decref(o);
}

static void test_deny(void **state) {
        (void)state;
        struct server s;
        server_start(&s, ANSWER, "{\"decision\":\"deny\",\"reason\":\"denied by the Paddock policy (rule x)\"}");
        char out[4096], err[4096];
        int code = run_hook("codex", "PreToolUse", PRE, out, sizeof out, err, sizeof err);
        server_stop(&s);
        assert_denied_pre(code, out, err, "denied by the Paddock policy (rule x)");
}

static void test_fails_closed(void **state) {
        (void)state;
        char out[4096], err[4096];
        /* no socket at all */
        unlink(sock_path);
        assert_denied_pre(run_hook("claude-code", "PreToolUse", PRE, out, sizeof out, err, sizeof err), out, err,
                          "cannot reach the Paddock runner");
        struct {
                enum mode mode;
                const char *answer, *why;
        } cases[] = {
                {CLOSE, NULL, "gave no answer"},
                {GARBAGE, "not json at all", "malformed"},
                {GARBAGE, "{\"decision\":\"maybe\"}", "malformed"},
                {GARBAGE, "{\"decision\":\"allow\",\"reason\":7}", "malformed"},
                {GARBAGE, "[\"allow\"]", "malformed"},
                {BAD_LENGTH, NULL, "bad length"},
                {CUT, "{\"decision\":\"allow\",\"reason\":\"fine\"}", "was cut"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                struct server s;
                server_start(&s, cases[i].mode, cases[i].answer);
                int code = run_hook("claude-code", "PreToolUse", PRE, out, sizeof out, err, sizeof err);
                server_stop(&s);
                assert_denied_pre(code, out, err, cases[i].why);
        }
        /* a PostToolUse error blocks too (exit 2, reason on stderr) */
        unlink(sock_path);
        assert_int_equal(run_hook("codex", "PostToolUse", PRE, out, sizeof out, err, sizeof err), 2);
        /* stdin that is not a JSON object never reaches the runner */
        struct server s;
        server_start(&s, ANSWER, "{\"decision\":\"allow\"}");
        int code = run_hook("claude-code", "PreToolUse", "tool_name=Bash", out, sizeof out, err, sizeof err);
        shutdown(s.fd, SHUT_RDWR);
        pthread_join(s.thread, NULL);
        close(s.fd);
        assert_denied_pre(code, out, err, "not a JSON object");
        /* bad arguments */
        assert_int_equal(run_hook("other-cli", "PreToolUse", PRE, out, sizeof out, err, sizeof err), 2);
}

int main(void) {
        if (access(PADDOCK_HOOK_BIN, X_OK) != 0) {
                fprintf(stderr, "no %s\n", PADDOCK_HOOK_BIN);
                return 77;
        }
        snprintf(dir, sizeof dir, "/tmp/test-paddock-hook-XXXXXX");
        if (!mkdtemp(dir))
                return 1;
        snprintf(sock_path, sizeof sock_path, "%s/hook.sock", dir);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_allow_frames_request),
                cmocka_unit_test(test_deny),
                cmocka_unit_test(test_fails_closed),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        (void)!system(cmd);
        return r;
}
