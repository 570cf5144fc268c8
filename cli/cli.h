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

/* Where the token in use came from: what to tell someone whose token stopped
 * working depends on it (a person logs in again, a service account cannot). */
enum cli_auth {
        CLI_AUTH_NONE,     /* no token */
        CLI_AUTH_PASSWORD, /* a context logged in with a password */
        CLI_AUTH_TOKEN,    /* $PADDOCK_TOKEN or a context made from an API token */
};

struct cli_command;

/* What every command needs: where the API is and who we are. Owned by main(). */
struct cli_ctx {
        char *api_url;   /* base URL without a trailing slash, owned */
        char *token;     /* bearer token or NULL, owned, never printed */
        bool json;       /* --json: print the API's JSON answers instead of tables */
        enum cli_auth auth;
        char *context;   /* name of the selected context, owned */
        bool context_explicit;            /* named by --context or $PADDOCK_CONTEXT */
        const struct cli_command *group;  /* the running command's group, or NULL */
        const struct cli_command *cmd;    /* the running command (table entry) */
        char what[96];   /* "team create": names the command in messages */
};

/* jansson (>= 2.9) provides json_decrefp() for cleanup attributes. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* ---- session.c: contexts (saved logins) and where the API is ---- */

/* A context is one saved login: which API, tenant and user, and the token.
 * Each lives in $PADDOCK_CONFIG_DIR/contexts/NAME.json (mode 0600 in a 0700
 * directory, replaced atomically); $PADDOCK_CONFIG_DIR/current-context names
 * the one used when neither --context nor $PADDOCK_CONTEXT does. A
 * session.json of older versions becomes the context "default" the first
 * time the directory is read. All strings owned (NULL when unknown). */
struct session_context {
        char *name;
        char *api_url;
        char *tenant;
        char *user;
        char *token;      /* never printed */
        char *expires_at; /* RFC 3339, as the API answered */
        enum cli_auth auth;
};
void session_context_done(struct session_context *c);

/* The config dir ($PADDOCK_CONFIG_DIR, else $XDG_CONFIG_HOME/paddock, else
 * ~/.config/paddock); malloc'd or NULL. */
char *session_config_dir(void);
/* True if name can name a context: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
bool session_context_name_valid(const char *name);
/* The context to use: flag (--context), else $PADDOCK_CONTEXT, else the
 * current context, else "default". *ret malloc'd; *ret_explicit says whether
 * the flag or the environment named it. Returns 0 or negative errno. */
int session_context_select(const char *flag, char **ret, bool *ret_explicit);
/* Loads context name into *ret (zeroed first). -ENOENT if there is none,
 * -EBADMSG if its file is unreadable JSON. */
int session_context_load(const char *name, struct session_context *ret);
/* Writes c (c->name names the file). Returns 0 or negative errno. */
int session_context_save(const struct session_context *c);
/* Removes context name (and the current-context pointer if it named it).
 * -ENOENT if there is none. */
int session_context_delete(const char *name);
/* Renames a context, moving the current-context pointer along. -ENOENT if
 * from does not exist, -EEXIST if to does. */
int session_context_rename(const char *from, const char *to);
/* The current context's name (malloc'd) or NULL if none is set. */
char *session_current_get(void);
/* Makes name the current context. Returns 0 or negative errno. */
int session_current_set(const char *name);
/* The saved contexts' names, sorted, as a JSON array (caller owns), or NULL
 * on failure. */
json_t *session_context_names(void);

/* Resolves the API base URL: override (from --api), then $PADDOCK_API_URL,
 * then the selected context's URL (context_url, may be NULL), then
 * PADDOCK_API_URL in $PADDOCK_STATE_DIR/endpoints.env or
 * ./.paddock/endpoints.env. Returns a malloc'd string or NULL. */
char *session_resolve_api_url(const char *override, const char *context_url);
/* Reads KEY from a shell-style KEY=value file. Returns a malloc'd value, or
 * NULL if the file or key is absent. */
char *session_read_env_file(const char *path, const char *key);
/* Path of the credentials file ($PADDOCK_STATE_DIR/credentials, else
 * ./.paddock/credentials); malloc'd. */
char *session_credentials_path(void);

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
        long long after;  /* replay events with seq > after */
        bool json;        /* print raw event JSON lines */
        bool output_only; /* only the agent's output events: their text raw to
                           * stdout/stderr as it wrote them (json: their JSON lines) */
};
/* What a finished stream saw. */
struct watch_result {
        char status[32];     /* the terminal status */
        long long exit_code; /* the agent's, or -1 if the run has none */
        long long last_seq;  /* the last seq printed (or opts->after) */
};
/* Streams the run's events after opts->after until its terminal status (or,
 * for a run that ended without a terminal event, until the run reads ended).
 * Returns 0 with *ret filled in, or a negative errno after printing why. */
int watch_stream(const struct cli_ctx *ctx, const char *run_id, const struct watch_options *opts,
                 struct watch_result *ret);
/* watch_stream(), then `run ID STATUS` on stderr (not with json or
 * output_only). Returns CLI_EXIT_OK if the run succeeded, CLI_EXIT_FAIL
 * otherwise or on errors. */
int watch_run(const struct cli_ctx *ctx, const char *run_id, const struct watch_options *opts);
/* Prints one event as `[seq] ts kind actor: summary`. */
void watch_print_event(json_t *ev);
/* If ev is an output event, writes its text as it is to stdout or stderr
 * (by its stream) and returns true; else prints nothing and returns false. */
bool watch_print_output(json_t *ev);
/* True if status (may be NULL) is a terminal run status. */
bool watch_status_terminal(const char *status);
/* True if ev is a status event with a terminal status; *ret_status borrowed. */
bool watch_event_is_terminal(json_t *ev, const char **ret_status);

/* ---- the command table (main.c lists the groups; help.c renders it) ----
 *
 * Every command is an entry of one table: its name, the synopsis of its
 * arguments, a one-line summary, a description and its options. `paddock
 * --help`, `paddock help GROUP [SUB]`, `paddock GROUP [SUB] --help`, the
 * completion scripts and the option parser (cli_parse) are all made from it,
 * so they cannot disagree. To add a command group: define
 *
 *     static const struct cli_command thing_subs[] = {
 *             {.name = "list", .args = "TEAM", .summary = "list the team's things",
 *              .options = (const struct cli_option[]){{"state", 0, "STATE", "only those in STATE"}, {0}},
 *              .fn = thing_list},
 *             {0},
 *     };
 *     const struct cli_command cli_cmd_thing = {.name = "thing", .summary = "...", .subs = thing_subs};
 *
 * in its file, declare it below and add &cli_cmd_thing to cli_commands[] in
 * main.c. A subcommand's fn gets argv[0] = its own name, with --json,
 * --context, --api and --help already taken out (they mean the same before
 * and after the command); it parses the rest with cli_parse(). */

/* One option of a command as help, completion and cli_parse() see it. */
struct cli_option {
        const char *name; /* long name without "--" */
        char key;         /* short letter, or 0 */
        const char *arg;  /* placeholder of its value, NULL for a switch; completion
                           * fills FILE and DIR with files, CONTEXT with contexts */
        const char *help; /* one line */
};

struct cli_command {
        const char *name;
        const char *alias;       /* a second name ("ls"), or NULL */
        const char *section;     /* top level only: the --help heading it starts */
        const char *args;        /* positional arguments: "TEAM USER [ROLE...]"; cli_parse()
                                  * counts them from it; a first CONTEXT, FILE,
                                  * SHELL or COMMAND is completed */
        const char *summary;     /* one line, lower case, no period */
        const char *description; /* further text for its help, or NULL */
        const struct cli_option *options; /* ended by {0}; NULL for none */
        int (*fn)(struct cli_ctx *ctx, int argc, char **argv); /* a command's action */
        const struct cli_command *subs; /* a group's subcommands, ended by {0} */
};

/* main.c: every top-level command in --help order, NULL-terminated. */
extern const struct cli_command *const cli_commands[];

/* help.c */
/* The global options (--api, --context, --json, --help, --version), ended
 * by {0}; all but --version also after the command's name. */
extern const struct cli_option cli_global_options[];
/* Finds name (or alias) among the top-level commands / a group's subs. */
const struct cli_command *cli_command_find(const char *name);
const struct cli_command *cli_subcommand_find(const struct cli_command *group, const char *name);
/* Prints the help of the whole CLI (group and cmd NULL), of a group (cmd
 * NULL) or of one command (group NULL for a top-level one). */
void cli_help_print(FILE *f, const struct cli_command *group, const struct cli_command *cmd);
/* Prints "usage: paddock GROUP CMD ARGS" (one line). */
void cli_usage_print(FILE *f, const struct cli_command *group, const struct cli_command *cmd);
/* The closest name to typo among the top-level commands (group NULL) or a
 * group's subcommands, if one is close enough; borrowed, or NULL. */
const char *cli_suggest(const struct cli_command *group, const char *typo);

/* ---- commands ---- */
/* The caller's first team id (GET /v1/me), malloc'd; NULL after printing why. */
char *cli_default_team(const struct cli_ctx *ctx);
/* The command groups of the table (cli_commands[] in main.c lists them). */
/* commands_login.c */
extern const struct cli_command cli_cmd_login, cli_cmd_logout, cli_cmd_passwd;
/* commands_context.c */
extern const struct cli_command cli_cmd_context;
/* commands_admin.c */
extern const struct cli_command cli_cmd_me, cli_cmd_team, cli_cmd_user, cli_cmd_grant, cli_cmd_revoke,
        cli_cmd_members, cli_cmd_service_account, cli_cmd_token, cli_cmd_audit, cli_cmd_oidc,
        cli_cmd_identity;
/* commands_catalog.c */
extern const struct cli_command cli_cmd_catalog;
/* commands_secret.c */
extern const struct cli_command cli_cmd_secret;
/* completion.c */
extern const struct cli_command cli_cmd_completion;
/* commands_hold.c: legal holds and retention (issue 14 §3) */
extern const struct cli_command cli_cmd_hold, cli_cmd_retention;

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

#define CLI_MAX_POS 16
/* Where cli_parse() stores one documented option of the running command
 * (ctx->cmd->options, matched by name). Exactly one of str, list and set is
 * non-NULL, as the option takes a value or not; they point into the caller's
 * frame (borrowed). */
struct cli_bind {
        const char *name; /* long name without "--" */
        const char **str; /* takes a value: the last one given (borrowed from argv) */
        json_t *list;     /* takes a value, repeatable: each one appended as a string */
        bool *set;        /* a switch: set to true */
};
/* Parses the running command's argv (argv[0] its name) against its table
 * entry ctx->cmd: its options, each bound by binds (ended by {0}; may be
 * NULL when it has none; a documented option without a binding or a binding
 * without a documented option is a programmer error), then the positional
 * arguments its args synopsis names (NAME required, [NAME] optional, a last
 * NAME... repeats), stored borrowed from argv in ret_pos[CLI_MAX_POS].
 * Returns -1 to go on, or CLI_EXIT_USAGE after saying which argument is
 * wrong (naming an unknown option, never echoing an option's value). */
int cli_parse(struct cli_ctx *ctx, int argc, char **argv, const struct cli_bind *binds, char **ret_pos,
              int *ret_npos);
/* cli_parse(), then cli_require_login(): the start of a command that checks
 * nothing else before it calls the API. Returns -1 to go on, else the exit
 * code (CLI_EXIT_USAGE, CLI_EXIT_FAIL when not logged in). */
int cli_parse_login(struct cli_ctx *ctx, int argc, char **argv, const struct cli_bind *binds, char **ret_pos,
                    int *ret_npos);
/* The list rule, the same for every list command: GETs path and every further
 * page. With --json prints {"items": [all pages' items], "next_cursor": null}
 * and returns CLI_EXIT_OK; on failure returns CLI_EXIT_FAIL; else returns -1
 * with *ret_items (caller owns) for the caller's table. path NULL: a failed
 * lookup before (CLI_EXIT_FAIL). */
int cli_fetch_list(struct cli_ctx *ctx, const char *path, json_t **ret_items);

/* Reads one line of stdin without its line end; malloc'd, NULL at EOF. */
char *cli_read_line(void);
/* When stdin is a terminal: prints prompt to stderr and reads one line
 * without echoing it. NULL at EOF, or at once when stdin is no terminal. */
char *cli_prompt_hidden(const char *prompt);
/* Wipes a secret string, then frees it (for _cleanup_). */
void cli_secret_freep(char **p);
/* A secret value read by cli_read_secret (commands_secret.c): from file
 * (verbatim), else from stdin (a prompt that does not echo on a terminal;
 * otherwise all of it, less one trailing newline); non-empty, at most 64 KiB,
 * no NUL. Returns -1 to go on, or the exit code after saying why (never
 * quoting the value); cli_secret_done wipes and frees it. */
struct cli_secret {
        char *data;
        size_t len;
};
int cli_read_secret(const struct cli_ctx *ctx, const char *file, const char *name, struct cli_secret *ret);
void cli_secret_done(struct cli_secret *b);
/* Loads a JSON object from path ("-" reads stdin). Prints why and returns
 * NULL on failure (a usage error: the caller exits 2). Caller owns it. */
json_t *cli_load_json_object(const char *what, const char *path);
/* Percent-encodes s for a URL query value; malloc'd or NULL. */
char *cli_url_escape(const char *s);
/* cli_get_pages() of every page, at the server's page size. */
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

/* ---- everyday use: runs, sandboxes, approvals, usage (clirun) ---- */

/* Exit codes of `paddock run wait` besides 0 (succeeded) and the agent's own
 * exit code (a failed run that has one; one without: 1). */
enum {
        CLI_EXIT_WAIT_TIMEOUT = 75,         /* --timeout expired: still going (EX_TEMPFAIL) */
        CLI_EXIT_RUN_TIMED_OUT = 124,       /* like timeout(1) */
        CLI_EXIT_RUN_LIMIT_EXCEEDED = 125,
        CLI_EXIT_RUN_REJECTED = 126,
        CLI_EXIT_RUN_CANCELLED = 130,       /* like a command interrupted by SIGINT */
};
/* commands_run.c, commands_sandbox.c, commands_approvals.c, commands_usage.c */
extern const struct cli_command cli_cmd_run, cli_cmd_sandbox, cli_cmd_approvals, cli_cmd_usage;
/* commands_usage.c: team budgets, governance figures */
extern const struct cli_command cli_cmd_budget, cli_cmd_governance;
/* commands_node.c */
extern const struct cli_command cli_cmd_node;
/* commands_evidence.c: reviews and evidence bundles (`run review`, `run
 * reviews` and `run evidence` are subcommands of run, commands_run.c) */
extern const struct cli_command cli_cmd_evidence;
int cli_run_review(struct cli_ctx *ctx, int argc, char **argv);
int cli_run_reviews(struct cli_ctx *ctx, int argc, char **argv);
int cli_run_evidence(struct cli_ctx *ctx, int argc, char **argv);

/* lists.c */
/* Appends "key=<value percent-encoded>" to *query ("&"-joined; *query may be
 * NULL, is replaced). A NULL value adds nothing. Returns 0 or -ENOMEM. */
int cli_query_add(char **query, const char *key, const char *value);
/* GETs path (which may carry a query) page by page with ?cursor= (and
 * ?limit= when max > 0), until max items (0: all) or the end. *ret_items (caller owns)
 * holds them; *ret_next (malloc'd) the cursor after the last one when max
 * stopped before the end, else NULL. Returns 0 or a negative errno after
 * printing why. */
int cli_get_pages(const struct cli_ctx *ctx, const char *path, long long max, json_t **ret_items,
                  char **ret_next);
/* Prints {"items": items, "next_cursor": next_cursor or null}: the JSON of
 * every list command. */
void cli_print_list(json_t *items, const char *next_cursor);
/* --limit N (>= 1) or --all (0: every item) into *ret, dflt if neither.
 * Returns 0, or -EINVAL after saying what is wrong (a usage error). */
int cli_parse_limit(const char *what, const char *limit, bool all, long long dflt, long long *ret);
/* After a table: tells on stderr that more items exist when next_cursor is set. */
void cli_print_more_hint(const char *next_cursor, const char *noun);
/* The list rule of the lists with filters and --limit (run, sandbox,
 * approvals list): GETs base, with "?query" when query is not NULL, page by
 * page up to limit items (0: all). With --json prints the list object and
 * returns CLI_EXIT_OK; on failure returns CLI_EXIT_FAIL; else returns -1 with
 * *ret_items and *ret_next (cli_get_pages(); caller owns both) for the
 * caller's table. */
int cli_fetch_filtered(struct cli_ctx *ctx, const char *base, const char *query, long long limit,
                       json_t **ret_items, char **ret_next);
/* Prints a list's table t (its header row first), or "no NOUN" when it has no
 * other row, then cli_print_more_hint(). */
void cli_print_list_table(json_t *t, const char *next_cursor, const char *noun);

/* download.c */
/* True if name is one plain file name: not empty, ".", ".." and without "/". */
bool cli_safe_file_name(const char *name);
/* Downloads url into the file name inside directory dirfd, verified against
 * size and sha256 (lower-case hex) of the manifest; kept only if both match
 * (written to a temporary file, then renamed). Returns 0, -EBADMSG on a
 * mismatch, or another negative errno; prints why, naming the artifact. */
int cli_download_verified(const char *url, int dirfd, const char *name, long long size, const char *sha256);
/* GETs path's raw body into *ret_data (malloc'd, NUL-terminated,
 * caller frees; *ret_len bytes); 0, or a negative errno after printing the
 * API's problem or why (commands_evidence.c). */
int cli_get_raw(const struct cli_ctx *ctx, const char *path, char **ret_data, size_t *ret_len);
