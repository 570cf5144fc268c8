/* The paddock CLI: shared declarations between its feature files.
 *
 * Exit codes are the CLI's contract with scripts: 0 success, 1 the API said
 * no (or a watched run did not succeed), 2 the command line was wrong. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/macro.h"

enum {
        CLI_EXIT_OK = 0,
        CLI_EXIT_FAIL = 1,
        CLI_EXIT_USAGE = 2,
};

/* What every command needs: where the API is and who we are. Owned by main(). */
struct cli_ctx {
        char *api_url; /* base URL without a trailing slash, owned */
        char *token;   /* bearer token or NULL, owned, never printed */
};

/* jansson (>= 2.9) provides json_decrefp() for cleanup attributes. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* ---- session.c: configuration and token storage ---- */

/* Resolves the API base URL: override (from --api), then $PADDOCK_API_URL, then
 * PADDOCK_API_URL in $PADDOCK_STATE_DIR/endpoints.env or ./.paddock/endpoints.env,
 * then the URL saved with the session. Returns a malloc'd string or NULL. */
char *session_resolve_api_url(const char *override);
/* Reads KEY from a shell-style KEY=value file. Returns a malloc'd value, or
 * NULL if the file or key is absent. */
char *session_read_env_file(const char *path, const char *key);
/* Path of the credentials file ($PADDOCK_STATE_DIR/credentials, else
 * ./.paddock/credentials); malloc'd. */
char *session_credentials_path(void);
/* Loads the saved token: $PADDOCK_TOKEN wins, else session.json in the config
 * dir. Returns malloc'd token or NULL when not logged in. */
char *session_load_token(void);
/* Saves the session (mode 0600, written atomically). Returns 0 or negative errno. */
int session_save(const char *api_url, const char *token, const char *tenant,
                 const char *user, const char *expires_at);
/* Removes the saved session. Returns 0 or negative errno (-ENOENT if none). */
int session_remove(void);

/* ---- http_client.c: JSON over libcurl ---- */

struct api_response {
        long status;
        json_t *body;   /* parsed JSON body or NULL, owned */
        char *location; /* Location header or NULL, owned */
};
void api_response_done(struct api_response *r);

/* Sends METHOD base_url+path with body (borrowed; may be NULL) as JSON and the
 * bearer token. idempotency_key may be NULL. On a 2xx/3xx answer fills *ret and
 * returns 0. On an error answer prints `error: <detail> (<code>)` to stderr and
 * returns -EPROTO (ret->status is still set); on a transport failure prints
 * why and returns a negative errno. */
int api_request(const struct cli_ctx *ctx, const char *method, const char *path,
                json_t *body, const char *idempotency_key, struct api_response *ret);
/* Same but GET, no body. */
int api_get(const struct cli_ctx *ctx, const char *path, struct api_response *ret);

/* ---- watch.c: websocket stream ---- */

struct watch_options {
        long long after; /* replay events with seq > after */
        bool json;       /* print raw event JSON lines */
};
/* Streams the run's events until its terminal status. Returns CLI_EXIT_OK if
 * the run succeeded, CLI_EXIT_FAIL otherwise or on errors. */
int watch_run(const struct cli_ctx *ctx, const char *run_id, const struct watch_options *opts);
/* Prints one event as `[seq] ts kind actor: summary`. */
void watch_print_event(json_t *ev);
/* True if ev is a status event with a terminal status; *ret_status borrowed. */
bool watch_event_is_terminal(json_t *ev, const char **ret_status);

/* ---- commands ---- */
/* The caller's first team id (GET /v1/me), malloc'd; NULL after printing why. */
char *cli_default_team(const struct cli_ctx *ctx);
int cmd_login(struct cli_ctx *ctx, int argc, char **argv);
int cmd_logout(struct cli_ctx *ctx, int argc, char **argv);
int cmd_sandbox(struct cli_ctx *ctx, int argc, char **argv);
int cmd_run(struct cli_ctx *ctx, int argc, char **argv);

/* ---- helpers shared by the commands (main.c) ---- */

/* Prints `error: ...` to stderr. */
void cli_error(const char *fmt, ...) _printf_(1, 2);
/* True if s is safe to use as one path segment (ids: [A-Za-z0-9._-]). */
bool cli_valid_id(const char *s);
/* Requires a token; prints a hint and returns false when not logged in. */
bool cli_require_login(const struct cli_ctx *ctx);
/* Prints JSON indented to stdout. */
void cli_print_json(json_t *j);
/* Parses a non-negative integer option value; returns false (and prints
 * which option is wrong) on garbage. */
bool cli_parse_ll(const char *opt, const char *s, long long *ret);
