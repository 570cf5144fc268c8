/* The hook bridge's runner side (issue 12 §2; docs/CONTRACTS.md "Hook
 * bridge"): per run, a unix socket the agent CLIs' hook (hook/paddock_hook.c)
 * reaches at /paddock/run/hook.sock, a bind of a per-run host dir
 * (<run dir>/hook) holding only the socket. Wire: 4-byte big-endian length +
 * JSON both ways (hook/hook_wire.h); request {cli, event, input},
 * answer {decision: allow|deny, reason}.
 *
 * PreToolUse: the call is decided at level "hook" with run_policy (one
 * policy_decision event per call), an `ask` is held with run_policy_ask_wait
 * (kind "tool") until a person decides, the deadline passes or the run ends,
 * and an approved command is granted at the exec level (600 s).
 * PostToolUse: a `tool_result` event {tool_use_id, cli, tool, result,
 * duration_ms, decision} completes the call's record (Codex's --json omits
 * blocked calls: the hook's events are then the record). A result for a call
 * this server did not allow is a violation: a `policy_decision` {level
 * "hook", action "deny", violation "ran_without_allow"} and on_violation.
 *
 * Threads: an accept thread and one thread per connection, at most
 * HOOK_SERVER_MAX_CONNS at a time (a connection beyond is closed at once:
 * the hook denies). */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "agent_cli.h"
#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"
#include "policy/policy_engine.h"

#define HOOK_SERVER_MAX_CONNS 16
#define HOOK_SERVER_GRANT_TTL_S 600 /* an approved command passes the exec level this long */
#define HOOK_SERVER_SANDBOX_DIR "/paddock"
#define HOOK_SERVER_SANDBOX_SOCKET_DIR "/paddock/run"

struct hook_server;
struct run_policy;
struct run_events;
struct sandbox;

/* Provisioning: creates <run dir>/hook (the socket's dir) and the mount
 * points under the sandbox's /paddock (the prompt dir, made here when the
 * run has no prompt). binary is PADDOCK_HOOK_BINARY, checked to be a
 * regular file. Returns 0 or a negative errno with *reterr. */
int hook_server_prepare(const struct sandbox *sb, const char *binary, struct err_detail *reterr);

/* The bundle: /paddock (when the run has no prompt), the binary read-only at
 * /paddock/bin/paddock-hook and the socket dir at /paddock/run. */
int hook_server_add_to_bundle(const struct sandbox *sb, const char *binary, const Paddock__V1__SandboxSnapshot *snap,
                              json_t *mounts);

/* A tool ran that the hook never allowed: its PostToolUse names a call whose
 * PreToolUse got no allow here. Codex runs a tool whose hook was killed or
 * crashed (it fails open, and no setting of 0.171 makes a missing hook a
 * deny: docs/CONTRACTS.md "Hook bridge"), so the runner ends the run. Called
 * once per run, from a connection thread; reason names the tool and call. */
typedef void (*hook_violation_fn)(void *userdata, const char *reason);

/* Listens on <run dir>/hook/hook.sock (mode 0666: the sandbox user
 * connects; the dir is root's, so the agent cannot replace it). rp, ev and
 * run_id are borrowed and must outlive hook_server_stop(). on_violation may
 * be NULL. NULL with *reterr on failure. */
struct hook_server *hook_server_start(const char *run_dir, const char *run_id, struct run_policy *rp,
                                      struct run_events *ev, hook_violation_fn on_violation, void *userdata,
                                      struct err_detail *reterr);

/* Stops accepting, ends every connection and joins the threads. Call after
 * run_policy_close(), which answers held calls. Accepts NULL; returns NULL. */
struct hook_server *hook_server_stop(struct hook_server *hs);

/* The policy request of a CLI's PreToolUse input (exported for tests):
 * tool = tool_name; command from tool_input.command|cmd (an array joined by
 * single spaces); path from file_path|path|notebook_path, made
 * workspace-relative inside /workspace (relative ones against cwd);
 * mcp_server/mcp_tool from "mcp__<server>__<tool>". The strings point into
 * input or into buf (HOOK_SERVER_REQ_BUF bytes). */
#define HOOK_SERVER_REQ_BUF 8192
struct policy_request;
void hook_server_request_of(json_t *input, struct policy_request *req, char *buf);

/* The decision of a request (hook_server_request_of()) at the hook, with a
 * shell command's words also taken as paths (exported for tests and
 * tests/fuzz): the strictest of the engine's decisions; when a word decides,
 * req->path points to it, copied into pathbuf. pe and req are borrowed. */
struct policy_decision hook_server_decide_words(const struct policy_engine *pe, struct policy_request *req,
                                                const char *cwd, char *pathbuf, size_t pathsize);
