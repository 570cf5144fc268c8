/* paddock-hook: the PreToolUse/PostToolUse hook of the agent CLIs in a
 * Paddock sandbox (docs/CONTRACTS.md "Hook bridge"). Mounted read-only at
 * /paddock/bin/paddock-hook; the CLIs run it as
 *
 *     paddock-hook <claude-code|codex> <PreToolUse|PostToolUse>
 *
 * with their hook JSON on stdin. It hands that to the runner-agent's hook
 * server over the run's unix socket (/paddock/run/hook.sock; wire: 4-byte
 * big-endian length + JSON both ways, at most 1 MiB) and prints the CLI's
 * answer. It waits for the answer without a timeout of its own: the runner
 * owns the deadline of a held call (run_policy), and the CLIs' hook timeout is
 * set past it (agent_cli.c).
 *
 * Both CLIs fail OPEN on a hook that errs (AGENT-CLIS notes: any exit but 2
 * lets the tool run), so this program fails CLOSED: every error (stdin too
 * large or not JSON, no socket, a short or malformed answer, EOF) is a deny,
 * exit 2 with the reason on stderr, which both CLIs take as a block.
 *
 * Linked statically (jansson's static library, libc.a): the image's
 * libraries are the agent's to replace, this program's are not.
 * `--socket PATH` before the arguments names another socket (tests). */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hook_wire.h"

#define HOOK_SOCKET "/paddock/run/hook.sock"
#define HOOK_MAX HOOK_WIRE_MAX

/* deny: the reason on stderr (the CLIs show it to the model), exit 2 */
static int deny(const char *event, const char *reason) {
        if (event && !strcmp(event, "PreToolUse")) {
                /* Claude reads a deny from stdout too; exit 2 alone already blocks */
                json_t *o = json_pack("{s:{s:s, s:s, s:s}}", "hookSpecificOutput", "hookEventName", "PreToolUse",
                                      "permissionDecision", "deny", "permissionDecisionReason", reason);
                char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
                if (s)
                        printf("%s\n", s);
                free(s);
                json_decref(o);
                fflush(stdout);
        }
        fprintf(stderr, "%s\n", reason);
        return 2;
}

int main(int argc, char **argv) {
        const char *sock = HOOK_SOCKET;
        signal(SIGPIPE, SIG_IGN);
        if (argc >= 3 && !strcmp(argv[1], "--socket")) {
                sock = argv[2];
                argv += 2;
                argc -= 2;
        }
        if (argc != 3 || (strcmp(argv[1], "claude-code") && strcmp(argv[1], "codex")) ||
            (strcmp(argv[2], "PreToolUse") && strcmp(argv[2], "PostToolUse")))
                return deny(argc >= 3 ? argv[2] : NULL,
                            "paddock-hook: usage: paddock-hook [--socket PATH] claude-code|codex PreToolUse|PostToolUse");
        const char *cli = argv[1], *event = argv[2];

        /* stdin: the CLI's hook JSON, at most HOOK_MAX bytes */
        char *in = malloc(HOOK_MAX + 1);
        size_t len = 0;
        if (!in)
                return deny(event, "paddock-hook: out of memory: the tool call is denied");
        for (;;) {
                ssize_t n = read(0, in + len, HOOK_MAX + 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return deny(event, "paddock-hook: could not read the hook input: the tool call is denied");
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > HOOK_MAX)
                        return deny(event, "paddock-hook: hook input over 1 MiB: the tool call is denied");
        }
        json_error_t je;
        json_t *input = json_loadb(in, len, 0, &je);
        free(in);
        if (!json_is_object(input))
                return deny(event, "paddock-hook: the hook input is not a JSON object: the tool call is denied");
        json_t *req = json_pack("{s:s, s:s, s:o}", "cli", cli, "event", event, "input", input);
        char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        if (!body || strlen(body) > HOOK_MAX)
                return deny(event, "paddock-hook: the request to the runner is too large: the tool call is denied");

        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(sock) >= sizeof sa.sun_path)
                return deny(event, "paddock-hook: socket path too long: the tool call is denied");
        strcpy(sa.sun_path, sock);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                char why[512];
                snprintf(why, sizeof why, "paddock-hook: cannot reach the Paddock runner at %s (%s): the tool call is denied",
                         sock, strerror(errno));
                return deny(event, why);
        }
        if (hook_wire_send(fd, body, strlen(body)) < 0)
                return deny(event, "paddock-hook: the Paddock runner closed the hook connection: the tool call is denied");
        free(body);

        /* no timeout here: the runner answers by the approval's deadline */
        char *ans;
        size_t alen;
        int r = hook_wire_recv(fd, &ans, &alen);
        if (r == -EMSGSIZE)
                return deny(event, "paddock-hook: the Paddock runner's answer has a bad length: the tool call is denied");
        if (r == -ENOMEM)
                return deny(event, "paddock-hook: out of memory: the tool call is denied");
        if (r == -EBADMSG)
                return deny(event, "paddock-hook: the Paddock runner's answer was cut: the tool call is denied");
        if (r < 0)
                return deny(event, "paddock-hook: the Paddock runner gave no answer: the tool call is denied");
        close(fd);
        json_t *a = json_loadb(ans, alen, JSON_REJECT_DUPLICATES, &je);
        free(ans);
        const char *decision = json_string_value(json_object_get(a, "decision"));
        json_t *jr = json_object_get(a, "reason");
        if (!json_is_object(a) || !decision || (strcmp(decision, "allow") && strcmp(decision, "deny")) ||
            (jr && !json_is_string(jr)))
                return deny(event, "paddock-hook: the Paddock runner's answer is malformed: the tool call is denied");
        const char *reason = jr && json_string_value(jr)[0] ? json_string_value(jr) : NULL;
        if (!strcmp(decision, "deny"))
                return deny(event, reason ? reason : "denied by the Paddock policy");
        if (!strcmp(event, "PreToolUse")) {
                json_t *o = json_pack("{s:{s:s, s:s, s:s}}", "hookSpecificOutput", "hookEventName", "PreToolUse",
                                      "permissionDecision", "allow", "permissionDecisionReason",
                                      reason ? reason : "allowed by the Paddock policy");
                char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
                if (!s)
                        return deny(event, "paddock-hook: out of memory: the tool call is denied");
                printf("%s\n", s);
                free(s);
                json_decref(o);
                if (fflush(stdout) != 0)
                        return deny(event, "paddock-hook: could not write the answer: the tool call is denied");
        }
        json_decref(a);
        return 0;
}
