/* The hook protocol from the runner's side (docs/CONTRACTS.md "Hook bridge"):
 * the bytes an agent's hook writes to the run's hook socket, read as the
 * runner-agent's hook server reads them (services/runner-agent/hook_server.c,
 * conn_thread): one frame with hook_wire_recv() (the peer then closes), its
 * JSON loaded with duplicates refused, {cli, event, input} checked, and for
 * PreToolUse the policy request made of the input (hook_server_request_of)
 * and decided with a shell command's words as paths
 * (hook_server_decide_words) under a fixed set of rules of every kind. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "hook/hook_wire.h"
#include "hook_server.h"

static const char rules_json[] =
        "[{\"match\": {\"tool\": \"Bash\"}, \"action\": \"allow\"},"
        " {\"match\": {\"tool\": \"Bash\", \"command\": \"git push*\"}, \"action\": \"ask\"},"
        " {\"match\": {\"command\": \"*rm -rf*\"}, \"action\": \"deny\"},"
        " {\"match\": {\"path\": \"**/.env\"}, \"action\": \"deny\"},"
        " {\"match\": {\"path\": \"src/**\"}, \"action\": \"ask\"},"
        " {\"match\": {\"mcp_server\": \"github\", \"mcp_tool\": \"delete_*\"}, \"action\": \"deny\"}]";

static struct policy_engine *engine;
static int pipe_size;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        json_t *rules = json_loads(rules_json, 0, NULL);
        if (!rules || policy_engine_new(rules, "spec.policy.rules", &engine, NULL) < 0)
                abort();
        json_decref(rules);
        return 0;
}

static void handle(const char *body, size_t n) {
        json_error_t je;
        json_t *msg = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
        const char *cli = json_string_value(json_object_get(msg, "cli"));
        const char *event = json_string_value(json_object_get(msg, "event"));
        json_t *input = json_object_get(msg, "input");
        if (cli && (!strcmp(cli, "claude-code") || !strcmp(cli, "codex")) && event && json_is_object(input) &&
            !strcmp(event, "PreToolUse")) {
                char buf[HOOK_SERVER_REQ_BUF], pathbuf[2048];
                struct policy_request req;
                hook_server_request_of(input, &req, buf);
                if (req.tool)
                        (void)hook_server_decide_words(engine, &req, json_string_value(json_object_get(input, "cwd")),
                                                       pathbuf, sizeof pathbuf);
        }
        json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                abort();
        /* the peer writes what fits and closes: the rest is a cut frame */
        if (!pipe_size)
                pipe_size = fcntl(p[1], F_SETPIPE_SZ, 1 << 20) > 0 ? fcntl(p[1], F_GETPIPE_SZ) : 65536;
        else
                (void)fcntl(p[1], F_SETPIPE_SZ, pipe_size);
        size_t n = size < (size_t)pipe_size ? size : (size_t)pipe_size;
        if (n > 0 && write(p[1], data, n) != (ssize_t)n)
                abort();
        close(p[1]);
        char *body = NULL;
        size_t len = 0;
        int r = hook_wire_recv(p[0], &body, &len);
        close(p[0]);
        if (r == 0) {
                if (len == 0 || len > HOOK_WIRE_MAX || body[len] != 0)
                        __builtin_trap(); /* the contract: 1..HOOK_WIRE_MAX bytes, NUL-terminated */
                handle(body, len);
        } else if (body)
                __builtin_trap(); /* nothing handed out on an error */
        free(body);
        return 0;
}
