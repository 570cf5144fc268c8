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
        "usage: paddock [--api URL] COMMAND [ARGS...]\n"
        "\n"
        "Run AI coding agents in governed, isolated, ephemeral sandboxes.\n"
        "\n"
        "commands:\n"
        "  login [--tenant T] [--user U] [--password-stdin]   log in and store the token\n"
        "  logout                                             forget the stored token\n"
        "  sandbox create -f FILE [--team TEAM_ID]            create a sandbox definition\n"
        "  sandbox publish ID                                 publish its draft as a version\n"
        "  sandbox show ID                                    show a sandbox definition\n"
        "  run launch --sandbox ID [--version N] [--team T] [--watch]\n"
        "  run watch ID [--after N] [--json]                  stream a run's events live\n"
        "  run show ID | run events ID [--after N] [--json] | run artifacts ID | run cancel ID\n"
        "\n"
        "`paddock COMMAND --help` describes a command.\n"
        "\n"
        "options:\n"
        "  --api URL     API base URL (else $PADDOCK_API_URL, else PADDOCK_API_URL in\n"
        "                $PADDOCK_STATE_DIR/endpoints.env or ./.paddock/endpoints.env)\n"
        "  -h, --help    show this help\n"
        "\n"
        "environment: PADDOCK_API_URL, PADDOCK_STATE_DIR, PADDOCK_CONFIG_DIR (session,\n"
        "default ~/.config/paddock), PADDOCK_TOKEN, PADDOCK_TENANT, PADDOCK_USER, PADDOCK_PASSWORD\n"
        "\n"
        "exit status: 0 ok, 1 API error or run did not succeed, 2 usage error\n";

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

        int (*fn)(struct cli_ctx *, int, char **) = NULL;
        if (strcmp(cmd, "login") == 0)
                fn = cmd_login;
        else if (strcmp(cmd, "logout") == 0)
                fn = cmd_logout;
        else if (strcmp(cmd, "sandbox") == 0 || strcmp(cmd, "sandboxes") == 0)
                fn = cmd_sandbox;
        else if (strcmp(cmd, "run") == 0 || strcmp(cmd, "runs") == 0)
                fn = cmd_run;
        else {
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
