/* The agent CLIs' machine-readable stdout as Paddock events
 * (docs/CONTRACTS.md "Agent adapters"): Claude Code's `--output-format
 * stream-json` and Codex's `exec --json`, one JSON object per line.
 *
 *   tool_call  {id, tool, input, result?, duration_ms?, error?, exit_code?}
 *              one per tool call, when its result arrives (Claude: the
 *              assistant's tool_use, answered by the user's tool_result;
 *              Codex: item.started .. item.completed of command_execution,
 *              file_change, mcp_tool_call, web_search); a call still open at
 *              the end is emitted with error "no result"
 *   output     {stream: "assistant", text}  the agent's text to the user
 *              {stream: "stdout", text}     a line that is not JSON
 *              {stream: "agent-error", text}  a Codex error item (the run goes on)
 *
 * Every text is cut at AGENT_CLI_TEXT_MAX bytes (on a UTF-8 boundary, with
 * "truncated": true); a line longer than AGENT_CLI_LINE_MAX is dropped and
 * reported as one stdout output naming its size. The stream's verdict (Claude's
 * `result` and its is_error, Codex's turn.failed / error) is kept for the
 * run's ending (run.c). Not thread-safe: one stream per run, fed by the run's
 * thread. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_CLI_TEXT_MAX 16384
#define AGENT_CLI_LINE_MAX (4u << 20)

enum agent_cli_kind {
        AGENT_CLI_NONE,   /* agent type "command": no adapter */
        AGENT_CLI_CLAUDE, /* "claude-code" */
        AGENT_CLI_CODEX,  /* "codex" */
};

/* The adapter of an agent type (NULL or unknown: AGENT_CLI_NONE). */
enum agent_cli_kind agent_cli_kind_of(const char *type);
/* "claude-code" / "codex" / "command" */
const char *agent_cli_type_name(enum agent_cli_kind kind);

/* Receives each event; data is borrowed (copy it to keep it). */
typedef void (*agent_cli_emit_fn)(void *userdata, const char *kind, json_t *data);

struct agent_cli_stream;

/* now_us may be NULL (CLOCK_MONOTONIC); tests pass a clock of their own.
 * NULL on out-of-memory. */
struct agent_cli_stream *agent_cli_stream_new(enum agent_cli_kind kind, agent_cli_emit_fn emit, void *userdata,
                                              int64_t (*now_us)(void));
struct agent_cli_stream *agent_cli_stream_free(struct agent_cli_stream *s);

/* Hands in stdout bytes as they arrive; complete lines are mapped at once. */
void agent_cli_stream_feed(struct agent_cli_stream *s, const char *data, size_t len);
/* At EOF: maps a last unterminated line and emits the calls left open with
 * error "no result". Idempotent. */
void agent_cli_stream_finish(struct agent_cli_stream *s);

/* Why the stream says the run failed (Claude: a result with is_error true or
 * an error subtype; Codex: turn.failed or an error event), or NULL. Borrowed. */
const char *agent_cli_stream_failure(const struct agent_cli_stream *s);
/* True once the stream ended its task (Claude: a result; Codex: turn.completed). */
bool agent_cli_stream_done(const struct agent_cli_stream *s);
/* What the CLI said about itself ({cli_version?, model?, session_id?}), borrowed. */
json_t *agent_cli_stream_session(const struct agent_cli_stream *s);
