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
        bool json;     /* --json: print the API's JSON answers instead of tables */
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
/* commands_admin.c */
int cmd_me(struct cli_ctx *ctx, int argc, char **argv);
int cmd_team(struct cli_ctx *ctx, int argc, char **argv);
int cmd_user(struct cli_ctx *ctx, int argc, char **argv);
int cmd_grant(struct cli_ctx *ctx, int argc, char **argv);
int cmd_revoke(struct cli_ctx *ctx, int argc, char **argv);
int cmd_members(struct cli_ctx *ctx, int argc, char **argv);
int cmd_service_account(struct cli_ctx *ctx, int argc, char **argv);
int cmd_token(struct cli_ctx *ctx, int argc, char **argv);
int cmd_audit(struct cli_ctx *ctx, int argc, char **argv);
int cmd_oidc(struct cli_ctx *ctx, int argc, char **argv);
/* commands_catalog.c */
int cmd_catalog(struct cli_ctx *ctx, int argc, char **argv);

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

/* One option of a subcommand for cli_parse_args(). Exactly one of str, list
 * and set is non-NULL; they point into the caller's frame (borrowed). */
struct cli_flag {
        const char *name; /* long name without "--" */
        char key;         /* short letter, or 0 for none */
        const char **str; /* takes a value: the last one given (borrowed from argv) */
        json_t *list;     /* takes a value, repeatable: each one appended as a string */
        bool *set;        /* takes no value: set to true */
};
#define CLI_MAX_POS 16
/* Parses a subcommand's argv (argv[0] is its name; what names the command in
 * messages): the flags (ended by a zeroed entry; may be NULL), plus --json
 * (sets ctx->json) and -h/--help (prints usage to stdout), then min_pos to
 * max_pos positional arguments (max_pos < 0: up to CLI_MAX_POS) named by
 * pos_names (the last name repeats), stored borrowed from argv in
 * ret_pos[CLI_MAX_POS]. Returns -1 to go on, or the exit code to return: 0
 * after --help, 2 on a usage error after saying which argument is wrong. */
int cli_parse_args(struct cli_ctx *ctx, int argc, char **argv, const char *what, const char *usage,
                   const struct cli_flag *flags, const char *const *pos_names, int min_pos, int max_pos,
                   char **ret_pos, int *ret_npos);
/* Loads a JSON object from path ("-" reads stdin). Prints why and returns
 * NULL on failure (a usage error: the caller exits 2). Caller owns it. */
json_t *cli_load_json_object(const char *what, const char *path);
/* Percent-encodes s for a URL query value; malloc'd or NULL. */
char *cli_url_escape(const char *s);
/* GETs path and every further page (next_cursor passed back as ?cursor=);
 * returns the concatenated items in *ret (caller owns). path may already
 * carry a query. Returns 0 or a negative errno after printing why. */
int api_get_all(const struct cli_ctx *ctx, const char *path, json_t **ret);
/* Joins an array of strings with ","; "-" for none. malloc'd or NULL. */
char *cli_join(json_t *array);
/* A text table: cli_table_new() with the header cells, cli_table_add() with
 * as many cells per row (NULL prints "-"), cli_table_print() aligns them. The
 * table is a JSON array of rows, freed with json_decref(). */
json_t *cli_table_new(int ncols, ...);
void cli_table_add(json_t *table, ...);
void cli_table_print(json_t *table);
/* Resolves a team (id or name) or user/service account (id or username)
 * to its id via the list endpoints. Returns malloc'd id, or NULL after
 * printing why. */
char *cli_resolve_team(const struct cli_ctx *ctx, const char *ref);
char *cli_resolve_user(const struct cli_ctx *ctx, const char *ref);
