/* paddock: the command-line client of the Paddock API. main() takes the
 * global options (anywhere on the line), finds the command in the table,
 * selects the context (saved login) and dispatches. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"

#ifndef PADDOCK_VERSION
#define PADDOCK_VERSION "unknown"
#endif
#ifndef PADDOCK_GIT_COMMIT
#define PADDOCK_GIT_COMMIT ""
#endif

static int help_main(struct cli_ctx *ctx, int argc, char **argv);

static const struct cli_command cli_cmd_help = {
        .name = "help",
        .args = "[COMMAND [SUBCOMMAND]]",
        .summary = "describe the CLI or one command (the same text as COMMAND [SUBCOMMAND] --help)",
        .fn = help_main,
};

/* The command table: every command of `paddock`, in the order --help lists
 * them (an entry with .section starts a heading). One line per command; its
 * file defines it (see cli.h). */
const struct cli_command *const cli_commands[] = {
        &cli_cmd_login,
        &cli_cmd_logout,
        &cli_cmd_passwd,
        &cli_cmd_me,
        &cli_cmd_context,
        &cli_cmd_sandbox,
        &cli_cmd_run,
        &cli_cmd_approvals,
        &cli_cmd_evidence,
        &cli_cmd_usage,
        &cli_cmd_budget,
        &cli_cmd_governance,
        &cli_cmd_node,
        &cli_cmd_catalog,
        &cli_cmd_secret,
        &cli_cmd_team,
        &cli_cmd_user,
        &cli_cmd_grant,
        &cli_cmd_revoke,
        &cli_cmd_members,
        &cli_cmd_service_account,
        &cli_cmd_token,
        &cli_cmd_audit,
        &cli_cmd_oidc,
        &cli_cmd_identity,
        &cli_cmd_hold,
        &cli_cmd_retention,
        &cli_cmd_completion,
        &cli_cmd_help,
        NULL,
};

void cli_error(const char *fmt, ...) {
        va_list ap;
        fputs("error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

bool cli_valid_id(const char *s) {
        if (!s || !*s || strlen(s) > 128)
                return false;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
                        return false;
        return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

bool cli_require_login(const struct cli_ctx *ctx) {
        if (ctx->token)
                return true;
        if (ctx->context_explicit)
                cli_error("not logged in in context \"%s\": run `paddock login --context %s` first", ctx->context,
                          ctx->context);
        else
                cli_error("not logged in: run `paddock login` first");
        return false;
}

void cli_print_json(json_t *j) {
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
}

bool cli_parse_ll(const char *opt, const char *s, long long *ret) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || !end || end == s || *end || v < 0) {
                cli_error("%s: expected a non-negative integer, got \"%s\"", opt, s);
                return false;
        }
        *ret = v;
        return true;
}

static void ctx_done(struct cli_ctx *ctx) {
        free(ctx->api_url);
        if (ctx->token) {
                explicit_bzero(ctx->token, strlen(ctx->token));
                free(ctx->token);
        }
        free(ctx->context);
}

static void print_version(void) {
        if (*PADDOCK_GIT_COMMIT)
                printf("paddock %s (commit %s)\n", PADDOCK_VERSION, PADDOCK_GIT_COMMIT);
        else
                printf("paddock %s\n", PADDOCK_VERSION);
}

static int unknown_command(const struct cli_command *group, const char *name) {
        const char *near = cli_suggest(group, name);
        if (group)
                cli_error("%s: unknown subcommand \"%s\"%s%s%s (see `paddock %s --help`)", group->name, name,
                          near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "", group->name);
        else
                cli_error("unknown command \"%s\"%s%s%s (see `paddock --help`)", name,
                          near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
        return CLI_EXIT_USAGE;
}

/* paddock help [COMMAND [SUBCOMMAND]] */
static int help_main(struct cli_ctx *ctx, int argc, char **argv) {
        (void)ctx;
        if (argc < 2) {
                cli_help_print(stdout, NULL, NULL);
                return CLI_EXIT_OK;
        }
        const struct cli_command *cmd = cli_command_find(argv[1]);
        if (!cmd)
                return unknown_command(NULL, argv[1]);
        if (argc < 3 || !cmd->subs) {
                if (argc >= 3) {
                        cli_error("help: %s has no subcommands", cmd->name);
                        return CLI_EXIT_USAGE;
                }
                cli_help_print(stdout, cmd->subs ? cmd : NULL, cmd->subs ? NULL : cmd);
                return CLI_EXIT_OK;
        }
        const struct cli_command *sub = cli_subcommand_find(cmd, argv[2]);
        if (!sub)
                return unknown_command(cmd, argv[2]);
        if (argc > 3) {
                cli_error("help: unexpected argument \"%s\"", argv[3]);
                return CLI_EXIT_USAGE;
        }
        cli_help_print(stdout, cmd, sub);
        return CLI_EXIT_OK;
}

/* What the global options said. */
struct globals {
        const char *api;
        const char *context;
        bool json;
        bool help;
};

static const struct cli_option *find_option(const struct cli_option *opts, const char *arg) {
        for (const struct cli_option *o = opts; o && o->name; o++) {
                if (arg[1] == '-') {
                        size_t n = strlen(o->name);
                        if (strncmp(arg + 2, o->name, n) == 0 && (arg[2 + n] == '\0' || arg[2 + n] == '='))
                                return o;
                } else if (o->key && arg[1] == o->key) {
                        return o;
                }
        }
        return NULL;
}

/* Is arg the global option name (--name, --name=VALUE)? Sets *value. */
static bool global_with_value(const char *arg, const char *name, const char **value, bool *needs_next) {
        size_t n = strlen(name);
        if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, n) != 0)
                return false;
        if (arg[2 + n] == '=') {
                *value = arg + 3 + n;
                *needs_next = false;
                return true;
        }
        if (arg[2 + n] == '\0') {
                *needs_next = true;
                return true;
        }
        return false;
}

/* Takes the global options out of argv[1..argc) of a command, anywhere
 * before "--", leaving the command's own (opts tells which of those take a
 * value, so a value is never mistaken for an option). out[0] = argv[0];
 * *ret_argc counts out. Returns -1 to go on, or an exit code. */
static int take_globals(int argc, char **argv, const struct cli_option *opts, struct globals *g, char **out,
                        int *ret_argc) {
        int n = 0;
        out[n++] = argv[0];
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *value = NULL;
                bool next = false;
                if (strcmp(a, "--") == 0) {
                        while (i < argc)
                                out[n++] = argv[i++];
                        break;
                }
                if (strcmp(a, "--json") == 0) {
                        g->json = true;
                        continue;
                }
                if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                        g->help = true;
                        continue;
                }
                bool is_api = global_with_value(a, "api", &value, &next);
                if (is_api || global_with_value(a, "context", &value, &next)) {
                        if (next) {
                                if (i + 1 >= argc) {
                                        cli_error("option --%s needs a value", is_api ? "api" : "context");
                                        return CLI_EXIT_USAGE;
                                }
                                value = argv[++i];
                        }
                        if (is_api)
                                g->api = value;
                        else
                                g->context = value;
                        continue;
                }
                out[n++] = argv[i];
                /* the command's own option: keep its value with it */
                const struct cli_option *o = a[0] == '-' && a[1] ? find_option(opts, a) : NULL;
                if (o && o->arg && i + 1 < argc) {
                        bool attached = a[1] == '-' ? strchr(a, '=') != NULL : a[2] != '\0';
                        if (!attached)
                                out[n++] = argv[++i];
                }
        }
        out[n] = NULL;
        *ret_argc = n;
        return -1;
}

/* Loads the selected context into ctx: token, where it came from, API URL. */
static int select_context(struct cli_ctx *ctx, const struct globals *g) {
        if (g->context && !session_context_name_valid(g->context)) {
                cli_error("--context: \"%s\" is not a context name (letters, digits, \".\", \"_\", \"-\"; up to 64)",
                          g->context);
                return CLI_EXIT_USAGE;
        }
        if (session_context_select(g->context, &ctx->context, &ctx->context_explicit) < 0) {
                cli_error("out of memory");
                return CLI_EXIT_FAIL;
        }
        if (!session_context_name_valid(ctx->context)) {
                cli_error("PADDOCK_CONTEXT: \"%s\" is not a context name", ctx->context);
                return CLI_EXIT_USAGE;
        }
        _cleanup_(session_context_done) struct session_context sc = {0};
        int r = session_context_load(ctx->context, &sc);
        if (r < 0 && r != -ENOENT)
                fprintf(stderr, "warning: could not read context \"%s\": %s\n", ctx->context,
                        r == -EBADMSG ? "not a JSON object" : strerror(-r));
        const char *env_token = getenv("PADDOCK_TOKEN");
        if (env_token && *env_token) {
                ctx->token = strdup(env_token);
                ctx->auth = CLI_AUTH_TOKEN;
        } else if (sc.token) {
                ctx->token = TAKE_PTR(sc.token);
                ctx->auth = sc.auth;
        }
        ctx->api_url = session_resolve_api_url(g->api, sc.api_url);
        return -1;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"api", required_argument, NULL, 'a'},
                {"context", required_argument, NULL, 'c'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        _cleanup_(ctx_done) struct cli_ctx ctx = {0};
        struct globals g = {0};
        int c;

        /* "+": stop at the command name; what follows is take_globals()'s. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
                switch (c) {
                case 'a': g.api = optarg; break;
                case 'c': g.context = optarg; break;
                case 'j': g.json = true; break;
                case 'h': cli_help_print(stdout, NULL, NULL); return CLI_EXIT_OK;
                case 'V': print_version(); return CLI_EXIT_OK;
                case ':':
                        cli_error("option %s needs a value", argv[optind - 1]);
                        return CLI_EXIT_USAGE;
                default:
                        if (optopt)
                                cli_error("unknown option \"-%c\" (see `paddock --help`)", optopt);
                        else
                                cli_error("unknown option \"%.*s\" (see `paddock --help`)",
                                          (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
                        return CLI_EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                cli_help_print(stderr, NULL, NULL);
                return CLI_EXIT_USAGE;
        }

        const struct cli_command *group = NULL, *cmd = cli_command_find(argv[optind]);
        char **rest = argv + optind;
        int nrest = argc - optind;
        if (!cmd)
                return unknown_command(NULL, argv[optind]);
        if (cmd->subs) {
                /* the subcommand is the first word that is not a global option */
                int i = 1;
                for (; i < nrest; i++) {
                        const char *v = NULL;
                        bool next = false;
                        bool is_api = global_with_value(rest[i], "api", &v, &next);
                        if (strcmp(rest[i], "--json") == 0) {
                                g.json = true;
                        } else if (is_api || global_with_value(rest[i], "context", &v, &next)) {
                                if (next) {
                                        if (i + 1 >= nrest) {
                                                cli_error("option %s needs a value", rest[i]);
                                                return CLI_EXIT_USAGE;
                                        }
                                        v = rest[++i];
                                }
                                if (is_api)
                                        g.api = v;
                                else
                                        g.context = v;
                        } else {
                                break;
                        }
                }
                if (i >= nrest) {
                        cli_help_print(stderr, cmd, NULL);
                        return CLI_EXIT_USAGE;
                }
                const char *word = rest[i];
                if (strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0 || strcmp(word, "help") == 0) {
                        if (strcmp(word, "help") == 0 && i + 1 < nrest) {
                                const struct cli_command *sub = cli_subcommand_find(cmd, rest[i + 1]);
                                if (!sub)
                                        return unknown_command(cmd, rest[i + 1]);
                                cli_help_print(stdout, cmd, sub);
                                return CLI_EXIT_OK;
                        }
                        cli_help_print(stdout, cmd, NULL);
                        return CLI_EXIT_OK;
                }
                group = cmd;
                cmd = cli_subcommand_find(group, word);
                if (!cmd)
                        return unknown_command(group, word);
                rest += i;
                nrest -= i;
        }

        _cleanup_free_ char **sub_argv = calloc((size_t)nrest + 1, sizeof(char *));
        int sub_argc = 0;
        if (!sub_argv)
                return CLI_EXIT_FAIL;
        int r = take_globals(nrest, rest, cmd->options, &g, sub_argv, &sub_argc);
        if (r >= 0)
                return r;
        if (g.help) {
                cli_help_print(stdout, group, cmd);
                return CLI_EXIT_OK;
        }
        ctx.json = g.json;
        ctx.group = group;
        ctx.cmd = cmd;
        snprintf(ctx.what, sizeof ctx.what, "%s%s%s", group ? group->name : "", group ? " " : "", cmd->name);
        if ((r = select_context(&ctx, &g)) >= 0)
                return r;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
                cli_error("could not initialise libcurl");
                return CLI_EXIT_FAIL;
        }
        /* Each command parses its own options from argv[0] = its name. */
        optind = 0;
        r = cmd->fn(&ctx, sub_argc, sub_argv);
        curl_global_cleanup();
        return r;
}
