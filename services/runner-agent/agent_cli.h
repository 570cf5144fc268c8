/* The agent adapters: how the runner-agent starts the real Claude Code and
 * Codex CLIs in a sandbox (docs/CONTRACTS.md "Agent adapters"). Per run, on
 * the host side:
 *
 *   <run dir>/home    a tmpfs (AGENT_CLI_HOME_MB) owned by the sandbox user,
 *                     mounted read-write at AGENT_CLI_HOME (/home/agent):
 *     .claude/settings.json        read-only bind: {"disableAllHooks": false}
 *     .claude/paddock-settings.json read-only bind, Claude's --settings: the
 *                                  hook bridge's PreToolUse/PostToolUse hooks
 *     .claude/skills/<name>/...    the definition's skills
 *     .claude/paddock-mcp.json     read-only bind, Claude's --mcp-config (with
 *                                  --strict-mcp-config): the run's MCP servers
 *     .codex/config.toml           read-only bind, CODEX_HOME: model, the gateway
 *                                  as provider, no retries, no analytics, no
 *                                  plugins, [mcp_servers.<name>] of the run
 *     .codex/hooks.json            read-only bind: the same hooks for Codex
 *                                  (run with --dangerously-bypass-hook-trust)
 *     .codex/skills/<name>/...
 *
 * The read-only files are root's, in <run_dir>/cli-config, bound over
 * placeholders: the agent can neither edit nor replace them (a mount point
 * cannot be renamed over or removed), and both CLIs take their hooks at
 * start. Each hook runs /paddock/bin/paddock-hook (hook_server.h) with a
 * timeout past the run's approval deadline, so a long wait is never cut by
 * the CLI (docs/CONTRACTS.md "Hook bridge").
 *
 * and the process: the CLI's argv, HOME/CODEX_HOME, the dummy key, the model
 * gateway's URL (http://127.0.0.1:3129, gateway.h) outside the egress proxy
 * (NO_PROXY=127.0.0.1,localhost), everything else through the proxy. The real
 * key never enters the sandbox: the gateway adds it upstream.
 *
 * The CLIs live in the node-agents image (images.c); a CLI run without an
 * image fails at provisioning. Functions run on the run's thread. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "agent_cli_stream.h"
#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"

#define AGENT_CLI_HOME "/home/agent"
#define AGENT_CLI_HOME_MB 256
#define AGENT_CLI_GATEWAY_URL "http://127.0.0.1:3129"
/* What the CLIs hold as their key: never a credential (the gateway strips it) */
#define AGENT_CLI_DUMMY_KEY "paddock-gateway-placeholder-not-a-key"
/* The task of a run whose definition has no prompt template (said so in an
 * output event of stream "platform") */
#define AGENT_CLI_FIXED_TASK "No task was given at launch. Reply with one short sentence saying so, then stop."

struct agent_cli_launch {
        enum agent_cli_kind kind;  /* AGENT_CLI_NONE: a command agent, nothing here applies */
        char *model;               /* the model the CLI starts with */
        char *effort;              /* spec.agent.effort, NULL: the CLI's default */
        char *cli_version;         /* from the image's package.json, NULL when unreadable */
        char *home_dir;            /* host path of the HOME tmpfs */
        bool fixed_task;           /* no prompt: AGENT_CLI_FIXED_TASK */
        char *config_dir;          /* host path of the read-only hook config (cli-config) */
        json_t *skills;            /* names of the skills placed in HOME (agent_cli_prepare) */
        json_t *mcp_servers;       /* names of the run's MCP servers (SandboxSnapshot.mcp_servers) */
        unsigned hook_timeout_s;   /* the CLIs' hook timeout; set by the caller after
                                    * agent_cli_prepare (run.c: ask timeout + 60), 0: 360 */
};

#define AGENT_CLI_HOOK_SLACK_S 60 /* hook timeout = approval deadline + this */
/* the hook binary in the sandbox (a read-only bind of PADDOCK_HOOK_BINARY, hook_server.h) */
#define AGENT_CLI_HOOK_BINARY "/paddock/bin/paddock-hook"

/* Resolves the agent's kind and model and writes the HOME tree into a tmpfs
 * at <run_dir>/home owned by uid:gid (the sandbox user's host ids). For a
 * command agent it only sets l->kind = AGENT_CLI_NONE. The model is
 * agent.model, else the first model id the snapshot's routes give the agent's
 * provider (claude-code → anthropic, codex → openai); none → -EINVAL naming
 * it. Returns 0 or a negative errno with *reterr. The tmpfs is unmounted with
 * the run's other mounts (cleanup.c). */
int agent_cli_prepare(struct agent_cli_launch *l, const char *run_dir, uid_t uid, gid_t gid,
                      const Paddock__V1__SandboxSnapshot *snap, struct err_detail *reterr);

/* Rewrites the OCI process for the CLI: args, env (process "env" array:
 * HOME, CODEX_HOME, the dummy key, the gateway URL, NO_PROXY, IS_SANDBOX and
 * the CLIs' switches that stop telemetry, updates and retries) and adds the
 * HOME mount. image_root is the image's rootfs on the host (NULL: none, which
 * fails: the CLIs are only in the node-agents image); l->cli_version is read
 * from it. Returns 0 or a negative errno with *reterr. */
int agent_cli_add_to_bundle(struct agent_cli_launch *l, const char *image_root,
                            const Paddock__V1__SandboxSnapshot *snap, json_t *process, json_t *mounts,
                            struct err_detail *reterr);

/* {type, cli_version, model}: the `agent` of the running status event. New
 * reference. */
json_t *agent_cli_session(const struct agent_cli_launch *l);

void agent_cli_launch_done(struct agent_cli_launch *l);
