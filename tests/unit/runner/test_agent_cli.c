/* The agent adapters (services/runner-agent/agent_cli*.c, built as the
 * library paddock_runner_agent_cli):
 *
 * - stream mapping, on streams recorded from the real Claude Code 2.1.197 and
 *   Codex 0.171.0 against tests/modelsim (tests/unit/data/agent-streams/,
 *   recorded by tests/modelsim/record_agent_streams.sh): every tool call is
 *   one tool_call event with its input and result, assistant text is output,
 *   the CLI's error verdict (Claude's is_error, Codex's turn.failed) is kept;
 *   fed in odd-sized pieces, the events are the same;
 * - bounds: a non-JSON line is stdout output, a long text is cut on a UTF-8
 *   boundary and marked, an over-long line is dropped and reported, a call
 *   left open is emitted with error "no result"; is_error true with subtype
 *   success is a failure;
 * - launch: the generated HOME (settings without hooks, skills where each
 *   CLI loads them, Codex's config.toml with the gateway as provider and no
 *   retries), the argv and the env (dummy key, gateway URL, NO_PROXY replacing
 *   the proxy's, HOME); no model → refused naming it; no image → refused.
 *   The HOME part mounts a tmpfs: skipped (77) when not root. */
#include <errno.h>
#include <limits.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../services/runner-agent/agent_cli.h"
#include "../../../services/runner-agent/agent_cli_stream.h"
#include "core/macro.h"

#define DATA PADDOCK_SOURCE_DIR "/tests/unit/data/agent-streams/"

struct sink {
        json_t *events; /* [{kind, data}] */
};

static void sink_emit(void *userdata, const char *kind, json_t *data) {
        struct sink *k = userdata;
        json_array_append_new(k->events, json_pack("{s:s,s:O}", "kind", kind, "data", data));
}

static int64_t fake_clock_us;
static int64_t fake_now(void) {
        return fake_clock_us += 1500; /* every reading 1.5 ms later */
}

static char *slurp(const char *path, size_t *len) {
        FILE *f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s: %s", path, strerror(errno));
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        buf[n] = 0;
        fclose(f);
        *len = (size_t)n;
        return buf;
}

/* Maps a recorded stream fed in pieces of `piece` bytes; returns the stream. */
static struct agent_cli_stream *map_file(enum agent_cli_kind kind, const char *name, size_t piece,
                                         struct sink *k) {
        char path[1024];
        snprintf(path, sizeof path, DATA "%s", name);
        size_t len;
        char *buf = slurp(path, &len);
        k->events = json_array();
        struct agent_cli_stream *s = agent_cli_stream_new(kind, sink_emit, k, fake_now);
        assert_non_null(s);
        for (size_t off = 0; off < len; off += piece)
                agent_cli_stream_feed(s, buf + off, len - off < piece ? len - off : piece);
        agent_cli_stream_finish(s);
        free(buf);
        return s;
}

static json_t *events_of(json_t *events, const char *kind) {
        json_t *out = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(events, i, e) if (!strcmp(json_string_value(json_object_get(e, "kind")), kind))
                json_array_append(out, json_object_get(e, "data"));
        return out;
}

static const char *str(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : "";
}

static bool assistant_said(json_t *events, const char *text) {
        json_t *out = events_of(events, "output");
        size_t i;
        json_t *d;
        bool found = false;
        json_array_foreach(out, i, d) if (!strcmp(str(d, "stream"), "assistant") && strstr(str(d, "text"), text))
                found = true;
        json_decref(out);
        return found;
}

static void check_claude_success(size_t piece) {
        struct sink k;
        struct agent_cli_stream *s = map_file(AGENT_CLI_CLAUDE, "claude-success.jsonl", piece, &k);
        json_t *calls = events_of(k.events, "tool_call");
        assert_int_equal(json_array_size(calls), 3);
        json_t *bash = json_array_get(calls, 0), *read = json_array_get(calls, 1), *write = json_array_get(calls, 2);
        assert_string_equal(str(bash, "tool"), "Bash");
        assert_non_null(strstr(str(json_object_get(bash, "input"), "command"), "echo paddock-ok"));
        assert_non_null(strstr(str(bash, "result"), "paddock-ok"));
        assert_string_equal(str(read, "tool"), "Read");
        assert_non_null(strstr(str(json_object_get(read, "input"), "file_path"), "notes.txt"));
        assert_non_null(strstr(str(read, "result"), "remember the milk"));
        assert_string_equal(str(write, "tool"), "Write");
        assert_string_equal(str(json_object_get(write, "input"), "content"), "hello from the agent\n");
        for (size_t i = 0; i < 3; i++) {
                json_t *c = json_array_get(calls, i);
                assert_true(str(c, "id")[0] != 0);
                assert_true(json_real_value(json_object_get(c, "duration_ms")) > 0);
                assert_null(json_object_get(c, "error"));
        }
        assert_true(assistant_said(k.events, "All done."));
        assert_true(agent_cli_stream_done(s));
        assert_null(agent_cli_stream_failure(s));
        json_t *sess = agent_cli_stream_session(s);
        assert_string_equal(str(sess, "cli_version"), "2.1.197");
        assert_string_equal(str(sess, "model"), "claude-sonnet-4-5");
        json_decref(calls);
        json_decref(k.events);
        agent_cli_stream_free(s);
}

static void test_claude_recorded(void **state) {
        (void)state;
        check_claude_success(1 << 20);
        check_claude_success(7); /* lines split anywhere, UTF-8 included */
}

static void check_codex_success(size_t piece) {
        struct sink k;
        struct agent_cli_stream *s = map_file(AGENT_CLI_CODEX, "codex-success.jsonl", piece, &k);
        json_t *calls = events_of(k.events, "tool_call");
        assert_int_equal(json_array_size(calls), 3);
        json_t *ls = json_array_get(calls, 0), *cat = json_array_get(calls, 1), *patch = json_array_get(calls, 2);
        assert_string_equal(str(ls, "tool"), "shell");
        assert_non_null(strstr(str(json_object_get(ls, "input"), "command"), "echo paddock-ok"));
        assert_non_null(strstr(str(ls, "result"), "paddock-ok"));
        assert_int_equal(json_integer_value(json_object_get(ls, "exit_code")), 0);
        assert_non_null(strstr(str(json_object_get(cat, "input"), "command"), "notes.txt"));
        assert_non_null(strstr(str(cat, "result"), "remember the milk"));
        assert_string_equal(str(patch, "tool"), "apply_patch");
        json_t *change = json_array_get(json_object_get(json_object_get(patch, "input"), "changes"), 0);
        assert_non_null(strstr(str(change, "path"), "hello.txt"));
        assert_string_equal(str(change, "kind"), "add");
        for (size_t i = 0; i < 3; i++) {
                json_t *c = json_array_get(calls, i);
                assert_true(str(c, "id")[0] != 0);
                assert_true(json_real_value(json_object_get(c, "duration_ms")) > 0);
                assert_null(json_object_get(c, "error"));
        }
        assert_true(assistant_said(k.events, "All done."));
        assert_true(agent_cli_stream_done(s));
        assert_null(agent_cli_stream_failure(s));
        assert_true(str(agent_cli_stream_session(s), "session_id")[0] != 0);
        json_decref(calls);
        json_decref(k.events);
        agent_cli_stream_free(s);
}

static void test_codex_recorded(void **state) {
        (void)state;
        check_codex_success(1 << 20);
        check_codex_success(5);
}

/* recorded against a simulator answering 500 (no retries): the CLIs' own
 * error verdicts */
static void test_recorded_errors(void **state) {
        (void)state;
        struct sink k;
        struct agent_cli_stream *s = map_file(AGENT_CLI_CLAUDE, "claude-error.jsonl", 1 << 20, &k);
        assert_true(agent_cli_stream_done(s));
        assert_non_null(agent_cli_stream_failure(s));
        assert_non_null(strstr(agent_cli_stream_failure(s), "is_error true"));
        json_decref(k.events);
        agent_cli_stream_free(s);

        s = map_file(AGENT_CLI_CODEX, "codex-error.jsonl", 1 << 20, &k);
        assert_non_null(agent_cli_stream_failure(s));
        assert_non_null(strstr(agent_cli_stream_failure(s), "codex"));
        assert_false(agent_cli_stream_done(s));
        json_decref(k.events);
        agent_cli_stream_free(s);
}

static struct agent_cli_stream *feed_str(enum agent_cli_kind kind, struct sink *k, const char *text) {
        k->events = json_array();
        struct agent_cli_stream *s = agent_cli_stream_new(kind, sink_emit, k, fake_now);
        agent_cli_stream_feed(s, text, strlen(text));
        return s;
}

static void test_is_error_with_subtype_success(void **state) {
        (void)state;
        struct sink k;
        struct agent_cli_stream *s = feed_str(
                AGENT_CLI_CLAUDE, &k,
                "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"result\":\"API Error: 500\"}\n");
        agent_cli_stream_finish(s);
        assert_true(agent_cli_stream_done(s));
        assert_non_null(strstr(agent_cli_stream_failure(s), "subtype success, is_error true"));
        assert_non_null(strstr(agent_cli_stream_failure(s), "API Error: 500"));
        json_decref(k.events);
        agent_cli_stream_free(s);
        s = feed_str(AGENT_CLI_CLAUDE, &k,
                     "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"ok\"}\n");
        assert_null(agent_cli_stream_failure(s));
        json_decref(k.events);
        agent_cli_stream_free(s);
}

static void test_bounds(void **state) {
        (void)state;
        struct sink k;
        /* not JSON: output on stdout; no trailing newline: mapped at finish */
        struct agent_cli_stream *s = feed_str(AGENT_CLI_CODEX, &k, "warning: something\n{not json\nlast words");
        agent_cli_stream_finish(s);
        json_t *out = events_of(k.events, "output");
        assert_int_equal(json_array_size(out), 3);
        assert_string_equal(str(json_array_get(out, 0), "stream"), "stdout");
        assert_string_equal(str(json_array_get(out, 0), "text"), "warning: something");
        assert_string_equal(str(json_array_get(out, 2), "text"), "last words");
        json_decref(out);
        json_decref(k.events);
        agent_cli_stream_free(s);

        /* a long text is cut at AGENT_CLI_TEXT_MAX on a UTF-8 boundary */
        size_t n = AGENT_CLI_TEXT_MAX + 100;
        char *big = malloc(n * 2 + 200);
        char *p = big + sprintf(big, "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"agent_message\",\"text\":\"x");
        for (size_t i = 0; i < n / 2; i++)
                p += sprintf(p, "\xc3\xa9"); /* é, 2 bytes */
        p += sprintf(p, "\"}}\n");
        s = feed_str(AGENT_CLI_CODEX, &k, big);
        out = events_of(k.events, "output");
        assert_int_equal(json_array_size(out), 1);
        json_t *o = json_array_get(out, 0);
        assert_true(json_is_true(json_object_get(o, "truncated")));
        assert_true(json_string_length(json_object_get(o, "text")) <= AGENT_CLI_TEXT_MAX);
        assert_true(json_string_length(json_object_get(o, "text")) >= AGENT_CLI_TEXT_MAX - 1);
        json_decref(out);
        json_decref(k.events);
        agent_cli_stream_free(s);
        free(big);

        /* an over-long line is dropped whole and reported, the next one maps */
        k.events = json_array();
        s = agent_cli_stream_new(AGENT_CLI_CLAUDE, sink_emit, &k, fake_now);
        char *chunk = malloc(1 << 20);
        memset(chunk, 'a', 1 << 20);
        for (int i = 0; i < 5; i++)
                agent_cli_stream_feed(s, chunk, 1 << 20);
        free(chunk);
        const char *next = "\n{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}\n";
        agent_cli_stream_feed(s, next, strlen(next));
        out = events_of(k.events, "output");
        assert_int_equal(json_array_size(out), 2);
        assert_non_null(strstr(str(json_array_get(out, 0), "text"), "5242881 bytes was dropped"));
        assert_string_equal(str(json_array_get(out, 1), "text"), "hi");
        json_decref(out);
        json_decref(k.events);
        agent_cli_stream_free(s);
}

static void test_open_call_has_no_result(void **state) {
        (void)state;
        struct sink k;
        struct agent_cli_stream *s = feed_str(
                AGENT_CLI_CLAUDE, &k,
                "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\","
                "\"name\":\"Bash\",\"input\":{\"command\":\"sleep 100\"}}]}}\n");
        json_t *calls = events_of(k.events, "tool_call");
        assert_int_equal(json_array_size(calls), 0); /* emitted when the result comes */
        json_decref(calls);
        agent_cli_stream_finish(s);
        agent_cli_stream_finish(s); /* idempotent */
        calls = events_of(k.events, "tool_call");
        assert_int_equal(json_array_size(calls), 1);
        json_t *c = json_array_get(calls, 0);
        assert_string_equal(str(c, "id"), "toolu_1");
        assert_string_equal(str(c, "tool"), "Bash");
        assert_string_equal(str(c, "error"), "no result");
        assert_string_equal(str(json_object_get(c, "input"), "command"), "sleep 100");
        assert_false(agent_cli_stream_done(s));
        json_decref(calls);
        json_decref(k.events);
        agent_cli_stream_free(s);
}

/* ------------------------------------------------------------ launch */

static char tmpdir[256];

static char *read_text(const char *dir, const char *rel) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        size_t len;
        return slurp(path, &len);
}

static bool env_has(json_t *env, const char *kv) {
        size_t i;
        json_t *e;
        json_array_foreach(env, i, e) if (!strcmp(json_string_value(e), kv)) return true;
        return false;
}

static size_t env_count(json_t *env, const char *name) {
        size_t i, n = 0, nl = strlen(name);
        json_t *e;
        json_array_foreach(env, i, e) if (!strncmp(json_string_value(e), name, nl) && json_string_value(e)[nl] == '=')
                n++;
        return n;
}

static Paddock__V1__ModelRoute route_ant = PADDOCK__V1__MODEL_ROUTE__INIT, route_oai = PADDOCK__V1__MODEL_ROUTE__INIT;

static void snap_init(Paddock__V1__SandboxSnapshot *snap, Paddock__V1__AgentSpec *agent, const char *type,
                      Paddock__V1__ModelRoute **routes, Paddock__V1__ManagedFile **files, size_t n_files) {
        *snap = (Paddock__V1__SandboxSnapshot)PADDOCK__V1__SANDBOX_SNAPSHOT__INIT;
        *agent = (Paddock__V1__AgentSpec)PADDOCK__V1__AGENT_SPEC__INIT;
        agent->type = (char *)type;
        snap->agent = agent;
        snap->image = "node-agents";
        route_ant.provider = "anthropic";
        static char *ant_models[] = {"claude-sonnet-4-5", "claude-opus-4-8"}, *oai_models[] = {"gpt-5.5"};
        route_ant.models = ant_models;
        route_ant.n_models = 2;
        route_oai.provider = "openai";
        route_oai.models = oai_models;
        route_oai.n_models = 1;
        routes[0] = &route_ant;
        routes[1] = &route_oai;
        snap->model_routes = routes;
        snap->n_model_routes = 2;
        snap->files = files;
        snap->n_files = n_files;
}

static void make_image(const char *root) {
        char cmd[4 * PATH_MAX];
        int n = snprintf(cmd, sizeof cmd,
                         "mkdir -p '%s/usr/local/lib/node_modules/@anthropic-ai/claude-code' "
                         "'%s/usr/local/lib/node_modules/@openai/codex' && "
                         "echo '{\"version\":\"2.1.197\"}' > '%s/usr/local/lib/node_modules/@anthropic-ai/claude-code/package.json' && "
                         "echo '{\"version\":\"0.171.0\"}' > '%s/usr/local/lib/node_modules/@openai/codex/package.json'",
                         root, root, root, root);
        assert_true(n > 0 && (size_t)n < sizeof cmd);
        assert_int_equal(system(cmd), 0);
}

static json_t *base_process(void) {
        return json_pack("{s:[s],s:[s,s,s,s,s]}", "args", "unused", "env", "PATH=/usr/local/bin:/usr/bin:/bin",
                         "HOME=/workspace", "HTTPS_PROXY=http://127.0.0.1:3128", "NO_PROXY=", "no_proxy=");
}

static void test_launch_claude(void **state) {
        (void)state;
        char run_dir[512], image[512];
        snprintf(run_dir, sizeof run_dir, "%s/run-claude", tmpdir);
        snprintf(image, sizeof image, "%s/image", tmpdir);
        assert_int_equal(mkdir(run_dir, 0700), 0);
        make_image(image);
        Paddock__V1__SandboxSnapshot snap;
        Paddock__V1__AgentSpec agent;
        Paddock__V1__ModelRoute *routes[2];
        Paddock__V1__ManagedFile skill = PADDOCK__V1__MANAGED_FILE__INIT, other = PADDOCK__V1__MANAGED_FILE__INIT;
        skill.path = ".paddock/skills/review/SKILL.md";
        skill.content.data = (uint8_t *)"---\nname: review\n---\nreview it\n";
        skill.content.len = strlen((char *)skill.content.data);
        other.path = "src/main.c";
        other.content.data = (uint8_t *)"int main;\n";
        other.content.len = 10;
        Paddock__V1__ManagedFile *files[] = {&skill, &other};
        snap_init(&snap, &agent, "claude-code", routes, files, 2);
        /* the run's MCP servers (docs/CONTRACTS.md "MCP connectors") */
        Paddock__V1__McpServer stdio_srv = PADDOCK__V1__MCP_SERVER__INIT, http_srv = PADDOCK__V1__MCP_SERVER__INIT;
        char *argv_srv[] = {"node", "/workspace/mcp/echo.js", "--loud"};
        stdio_srv.name = "tickets";
        stdio_srv.transport = "stdio";
        stdio_srv.command = argv_srv;
        stdio_srv.n_command = 3;
        http_srv.name = "wiki";
        http_srv.transport = "http";
        http_srv.url = "https://mcp.example.org/mcp";
        Paddock__V1__McpServer *srvs[] = {&stdio_srv, &http_srv};
        snap.mcp_servers = srvs;
        snap.n_mcp_servers = 2;
        /* wiki's secret header (a connector's): the CLI asks the proxy in plain
         * http, the proxy opens the TLS and adds the header */
        Paddock__V1__SecretRef wiki_key = PADDOCK__V1__SECRET_REF__INIT;
        wiki_key.name = "WIKI_KEY";
        wiki_key.header_host = "mcp.example.org";
        wiki_key.header_name = "x-api-key";
        Paddock__V1__SecretRef *refs[] = {&wiki_key};
        snap.secrets = refs;
        snap.n_secrets = 1;
        Paddock__V1__RunPrompt prompt = PADDOCK__V1__RUN_PROMPT__INIT;
        prompt.rendered = "-fix issue 7";
        snap.prompt = &prompt;

        struct agent_cli_launch l;
        struct err_detail err = {0};
        assert_int_equal(agent_cli_prepare(&l, run_dir, 4242, 4343, &snap, &err), 0);
        assert_int_equal(l.kind, AGENT_CLI_CLAUDE);
        assert_string_equal(l.model, "claude-sonnet-4-5"); /* no agent.model: the route's first */
        assert_false(l.fixed_task);
        l.hook_timeout_s = 1860; /* run.c: the approval deadline + 60 */
        char *sk = read_text(l.home_dir, ".claude/skills/review/SKILL.md");
        assert_string_equal(sk, "---\nname: review\n---\nreview it\n");
        free(sk);
        sk = read_text(l.home_dir, ".codex/skills/review/SKILL.md");
        free(sk);
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/.claude/skills/review/SKILL.md", l.home_dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_uid, 4242); /* the sandbox user's, so the CLI may write its home */
        assert_int_equal(st.st_gid, 4343);
        snprintf(path, sizeof path, "%s/.claude/skills/src", l.home_dir);
        assert_int_not_equal(stat(path, &st), 0); /* only skills */

        json_t *process = base_process(), *mounts = json_array();
        assert_int_equal(agent_cli_add_to_bundle(&l, image, &snap, process, mounts, &err), 0);
        assert_string_equal(l.cli_version, "2.1.197");
        json_t *args = json_object_get(process, "args");
        const char *want[] = {"claude", "-p", "--output-format", "stream-json", "--verbose",
                              "--no-session-persistence", "--permission-mode", "dontAsk", "--setting-sources", "user",
                              "--settings",
                              AGENT_CLI_HOME "/.claude/paddock-settings.json", "--model",
                              "claude-sonnet-4-5", "--mcp-config", AGENT_CLI_HOME "/.claude/paddock-mcp.json",
                              "--strict-mcp-config", "--", "-fix issue 7"};
        assert_int_equal(json_array_size(args), ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                assert_string_equal(json_string_value(json_array_get(args, i)), want[i]);
        json_t *env = json_object_get(process, "env");
        assert_true(env_has(env, "ANTHROPIC_BASE_URL=http://127.0.0.1:3129"));
        assert_true(env_has(env, "ANTHROPIC_API_KEY=" AGENT_CLI_DUMMY_KEY));
        assert_true(env_has(env, "NO_PROXY=127.0.0.1,localhost"));
        assert_true(env_has(env, "no_proxy=127.0.0.1,localhost"));
        assert_int_equal(env_count(env, "NO_PROXY"), 1);
        assert_true(env_has(env, "HTTPS_PROXY=http://127.0.0.1:3128")); /* the rest goes through the proxy */
        assert_true(env_has(env, "HOME=" AGENT_CLI_HOME));
        assert_int_equal(env_count(env, "HOME"), 1);
        assert_true(env_has(env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"));
        assert_true(env_has(env, "CLAUDE_CODE_MAX_RETRIES=0"));
        assert_true(env_has(env, "DISABLE_AUTOUPDATER=1"));
        assert_true(env_has(env, "IS_SANDBOX=1"));
        json_t *m = json_array_get(mounts, 0);
        assert_string_equal(str(m, "destination"), AGENT_CLI_HOME);
        assert_string_equal(str(m, "source"), l.home_dir);
        /* the hooks (issue 12 §2): in root's read-only files bound over
         * placeholders, so the agent cannot edit them away */
        char *flag = read_text(l.config_dir, "claude-paddock-settings.json");
        json_t *fj = json_loads(flag, 0, NULL);
        assert_non_null(fj);
        assert_true(json_is_false(json_object_get(fj, "disableAllHooks")));
        const char *events[] = {"PreToolUse", "PostToolUse"};
        for (size_t i = 0; i < 2; i++) {
                json_t *h = json_array_get(json_object_get(json_object_get(fj, "hooks"), events[i]), 0);
                assert_string_equal(str(h, "matcher"), "*");
                json_t *cmd = json_array_get(json_object_get(h, "hooks"), 0);
                char want_cmd[128];
                snprintf(want_cmd, sizeof want_cmd, "/paddock/bin/paddock-hook claude-code %s", events[i]);
                assert_string_equal(str(cmd, "command"), want_cmd);
                assert_int_equal(json_integer_value(json_object_get(cmd, "timeout")), 1860);
        }
        json_decref(fj);
        free(flag);
        struct stat cst;
        char cpath[1024];
        snprintf(cpath, sizeof cpath, "%s/claude-paddock-settings.json", l.config_dir);
        assert_int_equal(stat(cpath, &cst), 0);
        assert_int_equal(cst.st_uid, 0); /* root's, read-only */
        assert_int_equal(cst.st_mode & 0222, 0);
        char *mcp = read_text(l.config_dir, "claude-mcp.json");
        json_t *mj = json_loads(mcp, 0, NULL);
        assert_non_null(mj);
        json_t *ms = json_object_get(mj, "mcpServers");
        assert_int_equal(json_object_size(ms), 2);
        json_t *t = json_object_get(ms, "tickets");
        assert_string_equal(str(t, "type"), "stdio");
        assert_string_equal(str(t, "command"), "node");
        assert_int_equal(json_array_size(json_object_get(t, "args")), 2);
        assert_string_equal(json_string_value(json_array_get(json_object_get(t, "args"), 1)), "--loud");
        assert_string_equal(str(json_object_get(ms, "wiki"), "type"), "http");
        assert_string_equal(str(json_object_get(ms, "wiki"), "url"), "http://mcp.example.org/mcp");
        json_decref(mj);
        free(mcp);
        const char *ro[] = {AGENT_CLI_HOME "/.claude/paddock-settings.json", AGENT_CLI_HOME "/.claude/settings.json",
                            AGENT_CLI_HOME "/.claude/paddock-mcp.json", AGENT_CLI_HOME "/.codex/hooks.json",
                            AGENT_CLI_HOME "/.codex/config.toml"};
        for (size_t i = 0; i < ELEMENTSOF(ro); i++) {
                json_t *found = NULL, *mm;
                size_t k;
                json_array_foreach(mounts, k, mm) if (!strcmp(str(mm, "destination"), ro[i])) found = mm;
                if (!found)
                        fail_msg("no read-only mount at %s", ro[i]);
                assert_string_equal(json_string_value(json_array_get(json_object_get(found, "options"), 1)), "ro");
        }
        json_t *sess = agent_cli_session(&l);
        assert_string_equal(str(sess, "type"), "claude-code");
        assert_string_equal(str(sess, "cli_version"), "2.1.197");
        assert_string_equal(str(sess, "model"), "claude-sonnet-4-5");
        /* what the run was given */
        json_t *sk_names = json_object_get(sess, "skills"), *mcp_names = json_object_get(sess, "mcp_servers");
        assert_int_equal(json_array_size(sk_names), 1);
        assert_string_equal(json_string_value(json_array_get(sk_names, 0)), "review");
        assert_int_equal(json_array_size(mcp_names), 2);
        assert_string_equal(json_string_value(json_array_get(mcp_names, 0)), "tickets");
        assert_string_equal(json_string_value(json_array_get(mcp_names, 1)), "wiki");
        json_decref(sess);
        json_decref(process);

        /* no image: refused, the CLIs are in node-agents */
        process = base_process();
        assert_true(agent_cli_add_to_bundle(&l, NULL, &snap, process, mounts, &err) < 0);
        assert_non_null(strstr(err.message, "spec.image"));
        json_decref(process);
        json_decref(mounts);
        assert_int_equal(umount2(l.home_dir, MNT_DETACH), 0);
        agent_cli_launch_done(&l);
}

static void test_launch_codex(void **state) {
        (void)state;
        char run_dir[512], image[512];
        snprintf(run_dir, sizeof run_dir, "%s/run-codex", tmpdir);
        snprintf(image, sizeof image, "%s/image", tmpdir);
        assert_int_equal(mkdir(run_dir, 0700), 0);
        make_image(image);
        Paddock__V1__SandboxSnapshot snap;
        Paddock__V1__AgentSpec agent;
        Paddock__V1__ModelRoute *routes[2];
        snap_init(&snap, &agent, "codex", routes, NULL, 0);
        agent.model = "gpt-5.5";
        Paddock__V1__McpServer stdio_srv = PADDOCK__V1__MCP_SERVER__INIT, http_srv = PADDOCK__V1__MCP_SERVER__INIT;
        char *argv_srv[] = {"node", "/workspace/mcp/echo \"x\".js"};
        stdio_srv.name = "tickets";
        stdio_srv.transport = "stdio";
        stdio_srv.command = argv_srv;
        stdio_srv.n_command = 2;
        http_srv.name = "wiki";
        http_srv.transport = "http";
        http_srv.url = "https://mcp.example.org/mcp";
        Paddock__V1__McpServer *srvs[] = {&stdio_srv, &http_srv};
        snap.mcp_servers = srvs;
        snap.n_mcp_servers = 2;
        struct agent_cli_launch l;
        struct err_detail err = {0};
        assert_int_equal(agent_cli_prepare(&l, run_dir, 4242, 4343, &snap, &err), 0);
        assert_true(l.fixed_task); /* no prompt template */
        /* root's and read-only (bound over .codex/config.toml): the agent adds no MCP server */
        char *toml = read_text(l.config_dir, "codex-config.toml");
        struct stat tst;
        char tpath[1024];
        snprintf(tpath, sizeof tpath, "%s/codex-config.toml", l.config_dir);
        assert_int_equal(stat(tpath, &tst), 0);
        assert_int_equal(tst.st_uid, 0);
        assert_int_equal(tst.st_mode & 0222, 0);
        const char *want[] = {"[mcp_servers.tickets]\ncommand = \"node\"\nargs = [\"/workspace/mcp/echo \\\"x\\\".js\"]\n",
                              "[mcp_servers.wiki]\nurl = \"https://mcp.example.org/mcp\"\n",
                              "model = \"gpt-5.5\"", "model_provider = \"paddock\"",
                              "base_url = \"http://127.0.0.1:3129/v1\"", "wire_api = \"responses\"",
                              "env_key = \"PADDOCK_GATEWAY_KEY\"", "request_max_retries = 0",
                              "stream_max_retries = 0", "[analytics]\nenabled = false", "plugins = false",
                              "unbounded_connection_retries = false"};
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                if (!strstr(toml, want[i]))
                        fail_msg("config.toml lacks %s:\n%s", want[i], toml);
        free(toml);
        json_t *process = base_process(), *mounts = json_array();
        assert_int_equal(agent_cli_add_to_bundle(&l, image, &snap, process, mounts, &err), 0);
        json_t *args = json_object_get(process, "args");
        const char *wa[] = {"codex", "exec", "--json", "--skip-git-repo-check", "--ephemeral",
                            "--dangerously-bypass-hook-trust", "-s", "danger-full-access", "--", AGENT_CLI_FIXED_TASK};
        char *hooks = read_text(l.config_dir, "codex-hooks.json");
        if (!strstr(hooks, "/paddock/bin/paddock-hook codex PreToolUse") || !strstr(hooks, "\"timeout\": 360"))
                fail_msg("codex hooks.json: %s", hooks);
        free(hooks);
        assert_int_equal(json_array_size(args), ELEMENTSOF(wa));
        for (size_t i = 0; i < ELEMENTSOF(wa); i++)
                assert_string_equal(json_string_value(json_array_get(args, i)), wa[i]);
        json_t *env = json_object_get(process, "env");
        assert_true(env_has(env, "CODEX_HOME=" AGENT_CLI_HOME "/.codex"));
        assert_true(env_has(env, "PADDOCK_GATEWAY_KEY=" AGENT_CLI_DUMMY_KEY));
        assert_true(env_has(env, "NO_PROXY=127.0.0.1,localhost"));
        assert_int_equal(env_count(env, "ANTHROPIC_API_KEY"), 0);
        json_decref(process);
        json_decref(mounts);
        assert_int_equal(umount2(l.home_dir, MNT_DETACH), 0);
        agent_cli_launch_done(&l);

        /* a model the routes cannot give: refused, naming what is missing */
        route_oai.n_models = 0;
        agent.model = NULL;
        snprintf(run_dir, sizeof run_dir, "%s/run-codex2", tmpdir);
        assert_int_equal(mkdir(run_dir, 0700), 0);
        assert_int_equal(agent_cli_prepare(&l, run_dir, 4242, 4343, &snap, &err), -EINVAL);
        assert_non_null(strstr(err.message, "spec.agent.model"));
        agent_cli_launch_done(&l);

        /* a command agent: nothing to do */
        agent.type = "command";
        assert_int_equal(agent_cli_prepare(&l, run_dir, 4242, 4343, &snap, &err), 0);
        assert_int_equal(l.kind, AGENT_CLI_NONE);
        agent_cli_launch_done(&l);
}

int main(void) {
        const struct CMUnitTest stream_tests[] = {
                cmocka_unit_test(test_claude_recorded),     cmocka_unit_test(test_codex_recorded),
                cmocka_unit_test(test_recorded_errors),     cmocka_unit_test(test_is_error_with_subtype_success),
                cmocka_unit_test(test_bounds),              cmocka_unit_test(test_open_call_has_no_result),
        };
        int fails = cmocka_run_group_tests_name("agent_cli_stream", stream_tests, NULL, NULL);
        if (geteuid() != 0) {
                fprintf(stderr, "launch tests skipped: mounting the home tmpfs needs root\n");
                return fails ? 1 : 77;
        }
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_agent_cli.XXXXXX");
        if (!mkdtemp(tmpdir))
                return 1;
        const struct CMUnitTest launch_tests[] = {
                cmocka_unit_test(test_launch_claude),
                cmocka_unit_test(test_launch_codex),
        };
        fails += cmocka_run_group_tests_name("agent_cli_launch", launch_tests, NULL, NULL);
        char cmd[1024];
        /* a failed case may have left its home mounted */
        snprintf(cmd, sizeof cmd, "umount -l %s/run-*/home 2>/dev/null; rm -rf %s", tmpdir, tmpdir);
        (void)!system(cmd);
        return fails ? 1 : 0;
}
