/* paddock login / logout. The password comes from stdin (--password-stdin),
 * $PADDOCK_PASSWORD or the local stack's credentials file, never from the
 * command line, where other users could read it in the process list. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char login_usage[] =
        "usage: paddock login [--tenant TENANT] [--user USER] [--password-stdin]\n"
        "\n"
        "Logs in and stores the session token (mode 0600) in $PADDOCK_CONFIG_DIR/session.json\n"
        "(default ~/.config/paddock/session.json).\n"
        "\n"
        "Tenant, user and password default to $PADDOCK_TENANT, $PADDOCK_USER and\n"
        "$PADDOCK_PASSWORD, then to the credentials file $PADDOCK_STATE_DIR/credentials\n"
        "(KEY=value lines) written by the local stack.\n"
        "\n"
        "options:\n"
        "  --tenant TENANT      tenant name\n"
        "  --user USER          user name\n"
        "  --password-stdin     read the password from the first line of stdin\n"
        "  -h, --help           show this help\n";

/* flag, then environment, then the credentials file. */
static char *pick(const char *flag, const char *env_name, const char *cred_path) {
        if (flag && *flag)
                return strdup(flag);
        const char *e = getenv(env_name);
        if (e && *e)
                return strdup(e);
        return cred_path ? session_read_env_file(cred_path, env_name) : NULL;
}

static char *read_password_stdin(void) {
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
                return NULL;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        return TAKE_PTR(line);
}

/* Overwrites a secret before freeing it so it does not linger in the heap. */
static void secret_freep(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

int cmd_login(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct option opts[] = {
                {"tenant", required_argument, NULL, 't'},
                {"user", required_argument, NULL, 'u'},
                {"password-stdin", no_argument, NULL, 'p'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *tenant_flag = NULL, *user_flag = NULL;
        bool pw_stdin = false;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 't': tenant_flag = optarg; break;
                case 'u': user_flag = optarg; break;
                case 'p': pw_stdin = true; break;
                case 'h': fputs(login_usage, stdout); return CLI_EXIT_OK;
                default: fputs(login_usage, stderr); return CLI_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                cli_error("login: unexpected argument \"%s\"", argv[optind]);
                return CLI_EXIT_USAGE;
        }

        _cleanup_free_ char *cred = session_credentials_path();
        _cleanup_free_ char *tenant = pick(tenant_flag, "PADDOCK_TENANT", cred);
        _cleanup_free_ char *user = pick(user_flag, "PADDOCK_USER", cred);
        _cleanup_(secret_freep) char *password = NULL;

        if (!tenant) {
                cli_error("login: no tenant: pass --tenant or set PADDOCK_TENANT");
                return CLI_EXIT_USAGE;
        }
        if (!user) {
                cli_error("login: no user: pass --user or set PADDOCK_USER");
                return CLI_EXIT_USAGE;
        }
        if (pw_stdin) {
                password = read_password_stdin();
                if (!password || !*password) {
                        cli_error("login: --password-stdin: no password on stdin");
                        return CLI_EXIT_USAGE;
                }
        } else {
                password = pick(NULL, "PADDOCK_PASSWORD", cred);
                if (!password) {
                        cli_error("login: no password: use --password-stdin or set PADDOCK_PASSWORD");
                        return CLI_EXIT_USAGE;
                }
        }

        _cleanup_json_ json_t *body =
                json_pack("{s:s, s:s, s:s}", "tenant", tenant, "username", user, "password", password);
        if (!body) {
                cli_error("login: out of memory");
                return CLI_EXIT_FAIL;
        }
        /* Login must not carry an old, possibly foreign, token. */
        struct cli_ctx anon = {.api_url = ctx->api_url};
        _cleanup_(api_response_done) struct api_response resp = {0};
        int r = api_request(&anon, "POST", "/v1/auth/login", body, NULL, &resp);
        /* The request body holds the password: wipe it now. */
        json_object_set_new(body, "password", json_string(""));
        if (r < 0)
                return CLI_EXIT_FAIL;

        const char *token = json_string_value(json_object_get(resp.body, "token"));
        const char *expires = json_string_value(json_object_get(resp.body, "expires_at"));
        if (!token || !*token) {
                cli_error("login: the API answered without a token");
                return CLI_EXIT_FAIL;
        }
        r = session_save(ctx->api_url, token, tenant, user, expires);
        if (r < 0) {
                cli_error("login: could not store the session: %s", strerror(-r));
                return CLI_EXIT_FAIL;
        }
        free(ctx->token);
        ctx->token = strdup(token);
        printf("logged in as %s in tenant %s%s%s\n", user, tenant, expires ? ", token expires " : "",
               expires ? expires : "");
        return CLI_EXIT_OK;
}

int cmd_logout(struct cli_ctx *ctx, int argc, char **argv) {
        if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                fputs("usage: paddock logout\n\nRevokes the token and removes the stored session.\n", stdout);
                return CLI_EXIT_OK;
        }
        if (argc > 1) {
                cli_error("logout: unexpected argument \"%s\"", argv[1]);
                return CLI_EXIT_USAGE;
        }
        if (ctx->token && ctx->api_url) {
                _cleanup_(api_response_done) struct api_response resp = {0};
                /* Best effort: the local copy goes away even if revoking fails. */
                (void)api_request(ctx, "POST", "/v1/auth/logout", NULL, NULL, &resp);
        }
        int r = session_remove();
        if (r < 0 && r != -ENOENT) {
                cli_error("logout: could not remove the session: %s", strerror(-r));
                return CLI_EXIT_FAIL;
        }
        printf("logged out\n");
        return CLI_EXIT_OK;
}
