/* paddock: the command-line client of the Paddock API. main() resolves the API
 * URL and the saved session, then dispatches to one command group. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"

static const char usage_text[] =
        "usage: paddock [--api URL] [--json] COMMAND [ARGS...]\n"
        "\n"
        "Run AI coding agents in governed, isolated, ephemeral sandboxes.\n"
        "\n"
        "commands:\n"
        "  login [--tenant T] [--user U] [--password-stdin]   log in and store the token\n"
        "  logout                                             forget the stored token\n"
        "  me                                                 who am I: tenant, teams, roles\n"
        "\n"
        "  sandbox create -f FILE [--team TEAM_ID]            create a sandbox definition\n"
        "  sandbox draft ID --file FILE                       replace its draft spec\n"
        "  sandbox publish ID                                 publish its draft as a version\n"
        "  sandbox show ID | sandbox version ID N             show a definition / a version\n"
        "  sandbox policy ID N                                the resolved effective policy\n"
        "  run launch --sandbox ID [--version N] [--team T] [--watch]\n"
        "  run watch ID [--after N] [--json]                  stream a run's events live\n"
        "  run show ID | run events ID [--after N] [--json] | run artifacts ID | run cancel ID\n"
        "\n"
        "  catalog list KIND [--state draft|approved]         the governance catalog\n"
        "  catalog show KIND ITEM | catalog approve KIND ITEM\n"
        "  catalog create KIND --file F [--name N] | catalog update KIND ITEM --file F\n"
        "\n"
        "administration (tenant_admin):\n"
        "  team list | team create NAME | team show TEAM | team rename TEAM NAME | team delete TEAM\n"
        "  user list | user create USERNAME [--tenant-role tenant_admin] [--password-stdin]\n"
        "  user disable USER | user enable USER | user delete USER\n"
        "  grant TEAM USER ROLE [ROLE...]                     set USER's roles in TEAM\n"
        "  revoke TEAM USER | members TEAM\n"
        "  service-account list | create NAME [--team T --role R...] | delete SA | token SA\n"
        "  token create SA [--name N] [--expires-in S] | token revoke SA TOKEN_ID\n"
        "  audit list [--from TIME] [--to TIME] | audit verify\n"
        "  oidc show | oidc set --file CONFIG.json | oidc delete   the tenant's OIDC provider\n"
        "\n"
        "TEAM, USER and SA are ids or names. `paddock COMMAND --help` describes a command.\n"
        "\n"
        "options:\n"
        "  --api URL     API base URL (else $PADDOCK_API_URL, else PADDOCK_API_URL in\n"
        "                $PADDOCK_STATE_DIR/endpoints.env or ./.paddock/endpoints.env)\n"
        "  --json        print the API's JSON answers instead of tables (also accepted\n"
        "                after the command)\n"
        "  -h, --help    show this help\n"
        "\n"
        "environment: PADDOCK_API_URL, PADDOCK_STATE_DIR, PADDOCK_CONFIG_DIR (session,\n"
        "default ~/.config/paddock), PADDOCK_TOKEN, PADDOCK_TENANT, PADDOCK_USER, PADDOCK_PASSWORD\n"
        "\n"
        "exit status: 0 ok, 1 API error (printed as `error: <detail> (<code>)`) or run did\n"
        "not succeed, 2 usage error\n";

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
        free(ctx->token);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"api", required_argument, NULL, 'a'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        _cleanup_(ctx_done) struct cli_ctx ctx = {0};
        const char *api_override = NULL;
        int c;

        /* "+": stop at the command name so its own options are left to it. */
        while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
                switch (c) {
                case 'a':
                        api_override = optarg;
                        break;
                case 'j':
                        ctx.json = true;
                        break;
                case 'h':
                        fputs(usage_text, stdout);
                        return CLI_EXIT_OK;
                default:
                        fputs(usage_text, stderr);
                        return CLI_EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                fputs(usage_text, stderr);
                return CLI_EXIT_USAGE;
        }

        const char *cmd = argv[optind];
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;

        if (strcmp(cmd, "help") == 0) {
                fputs(usage_text, stdout);
                return CLI_EXIT_OK;
        }

        static const struct {
                const char *name;
                int (*fn)(struct cli_ctx *, int, char **);
        } commands[] = {
                {"login", cmd_login},
                {"logout", cmd_logout},
                {"me", cmd_me},
                {"whoami", cmd_me},
                {"sandbox", cmd_sandbox},
                {"sandboxes", cmd_sandbox},
                {"run", cmd_run},
                {"runs", cmd_run},
                {"team", cmd_team},
                {"teams", cmd_team},
                {"user", cmd_user},
                {"users", cmd_user},
                {"grant", cmd_grant},
                {"revoke", cmd_revoke},
                {"members", cmd_members},
                {"catalog", cmd_catalog},
                {"service-account", cmd_service_account},
                {"service-accounts", cmd_service_account},
                {"token", cmd_token},
                {"audit", cmd_audit},
                {"oidc", cmd_oidc},
        };
        int (*fn)(struct cli_ctx *, int, char **) = NULL;
        for (size_t i = 0; i < ELEMENTSOF(commands) && !fn; i++)
                if (strcmp(cmd, commands[i].name) == 0)
                        fn = commands[i].fn;
        if (!fn) {
                cli_error("unknown command \"%s\" (see `paddock --help`)", cmd);
                return CLI_EXIT_USAGE;
        }

        ctx.api_url = session_resolve_api_url(api_override);
        ctx.token = session_load_token();

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
                cli_error("could not initialise libcurl");
                return CLI_EXIT_FAIL;
        }
        /* Each command parses its own options from argv[0] = its name. */
        optind = 0;
        int r = fn(&ctx, sub_argc, sub_argv);
        curl_global_cleanup();
        return r;
}
