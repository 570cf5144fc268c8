/* paddock login / logout / passwd. Passwords and tokens come from stdin, a
 * prompt that does not echo, $PADDOCK_PASSWORD or the local stack's
 * credentials file, never from the command line, where other users could
 * read them in the process list. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* flag, then environment, then the saved context, then the credentials file. */
static char *pick(const char *flag, const char *env_name, const char *saved, const char *cred_path) {
        if (flag && *flag)
                return strdup(flag);
        const char *e = getenv(env_name);
        if (e && *e)
                return strdup(e);
        if (saved && *saved)
                return strdup(saved);
        return cred_path ? session_read_env_file(cred_path, env_name) : NULL;
}

static bool interactive(void) {
        return isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
}

/* POST /v1/me/password; wipes the request body after. Returns 0 or a
 * negative errno after printing why. */
static int change_password(struct cli_ctx *ctx, const char *current, const char *new_password) {
        _cleanup_json_ json_t *body =
                json_pack("{s:s, s:s}", "current_password", current, "new_password", new_password);
        if (!body)
                return -ENOMEM;
        _cleanup_(api_response_done) struct api_response resp = {0};
        int r = api_request(ctx, "POST", "/v1/me/password", body, NULL, &resp);
        json_object_set_new(body, "current_password", json_string(""));
        json_object_set_new(body, "new_password", json_string(""));
        return r;
}

/* Asks for the new password twice on the terminal. NULL after saying why. */
static char *prompt_new_password(void) {
        _cleanup_(cli_secret_freep) char *a = cli_prompt_hidden("new password: ");
        if (!a)
                return NULL;
        _cleanup_(cli_secret_freep) char *b = cli_prompt_hidden("repeat the new password: ");
        if (!b)
                return NULL;
        if (strcmp(a, b) != 0) {
                cli_error("the two new passwords differ; nothing changed");
                return NULL;
        }
        return TAKE_PTR(a);
}

/* ---------------------------------------------------------------- login */

/* Saves the login sc (sc->name the context) and makes it the current
 * context when none is. Returns 0, or a negative errno after saying why. */
static int store_context(const struct session_context *sc) {
        int r = session_context_save(sc);
        if (r < 0) {
                cli_error("login: could not store context \"%s\": %s", sc->name, strerror(-r));
                return r;
        }
        _cleanup_free_ char *cur = session_current_get();
        if (!cur)
                (void)session_current_set(sc->name);
        return 0;
}

/* login --token-stdin: a context from an API token (a service account's). */
static int login_token(struct cli_ctx *ctx) {
        _cleanup_(cli_secret_freep) char *token = isatty(STDIN_FILENO) ? cli_prompt_hidden("API token: ")
                                                                       : cli_read_line();
        if (!token || !*token) {
                cli_error("login: --token-stdin: no token on stdin");
                return CLI_EXIT_USAGE;
        }
        /* GET /v1/me checks the token and says whose it is */
        struct cli_ctx probe = {.api_url = ctx->api_url, .token = token, .auth = CLI_AUTH_TOKEN,
                                .context = ctx->context};
        _cleanup_(api_response_done) struct api_response me = {0};
        if (api_get(&probe, "/v1/me", &me) < 0)
                return CLI_EXIT_FAIL;
        const char *user = json_string_value(json_object_get(json_object_get(me.body, "user"), "username"));
        const char *tenant = json_string_value(json_object_get(json_object_get(me.body, "tenant"), "name"));
        struct session_context sc = {.name = ctx->context, .api_url = ctx->api_url, .tenant = (char *)tenant,
                                     .user = (char *)user, .token = token, .auth = CLI_AUTH_TOKEN};
        if (store_context(&sc) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:O?, s:O?}", "context", ctx->context, "user",
                                                     json_object_get(me.body, "user"), "tenant",
                                                     json_object_get(me.body, "tenant"));
                cli_print_json(o);
        } else {
                printf("logged in as %s in tenant %s with an API token (context %s)\n", user ? user : "?",
                       tenant ? tenant : "?", ctx->context);
        }
        return CLI_EXIT_OK;
}

/* login --oidc-token-stdin: exchanges an ID (or JWT access) token of the
 * tenant's OIDC provider for a Paddock token (POST /v1/auth/oidc) and saves
 * it like a password login, as the user the provider's token names. */
static int login_oidc(struct cli_ctx *ctx, const char *tenant) {
        if (!tenant) {
                cli_error("login: no tenant: pass --tenant or set PADDOCK_TENANT");
                return CLI_EXIT_USAGE;
        }
        _cleanup_(cli_secret_freep) char *idp_token = isatty(STDIN_FILENO) ? cli_prompt_hidden("ID token: ")
                                                                           : cli_read_line();
        if (!idp_token || !*idp_token) {
                cli_error("login: --oidc-token-stdin: no token on stdin");
                return CLI_EXIT_USAGE;
        }
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "tenant", tenant, "token", idp_token);
        if (!body) {
                cli_error("login: out of memory");
                return CLI_EXIT_FAIL;
        }
        /* like a password login: never with an old, possibly foreign, token */
        struct cli_ctx anon = {.api_url = ctx->api_url, .context = ctx->context};
        _cleanup_(api_response_done) struct api_response resp = {0};
        int r = api_request(&anon, "POST", "/v1/auth/oidc", body, NULL, &resp);
        json_object_set_new(body, "token", json_string(""));
        if (r < 0)
                return CLI_EXIT_FAIL;
        const char *token = json_string_value(json_object_get(resp.body, "token"));
        const char *expires = json_string_value(json_object_get(resp.body, "expires_at"));
        const char *user = json_string_value(json_object_get(json_object_get(resp.body, "user"), "username"));
        if (!token || !*token) {
                cli_error("login: the API answered without a token");
                return CLI_EXIT_FAIL;
        }
        struct session_context sc = {.name = ctx->context, .api_url = ctx->api_url, .tenant = (char *)tenant,
                                     .user = (char *)user, .token = (char *)token, .expires_at = (char *)expires,
                                     .auth = CLI_AUTH_PASSWORD};
        if (store_context(&sc) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                /* the API's answer, less the token */
                json_object_del(resp.body, "token");
                json_object_set_new(resp.body, "context", json_string(ctx->context));
                cli_print_json(resp.body);
        } else {
                printf("logged in as %s in tenant %s with an OIDC token%s%s (context %s)\n", user ? user : "?",
                       tenant, expires ? ", token expires " : "", expires ? expires : "", ctx->context);
        }
        return CLI_EXIT_OK;
}

static int login_main(struct cli_ctx *ctx, int argc, char **argv) {
        const char *tenant_flag = NULL, *user_flag = NULL;
        bool pw_stdin = false, token_stdin = false, oidc_stdin = false;
        const struct cli_bind binds[] = {
                {.name = "tenant", .str = &tenant_flag},
                {.name = "user", .str = &user_flag},
                {.name = "password-stdin", .set = &pw_stdin},
                {.name = "token-stdin", .set = &token_stdin},
                {.name = "oidc-token-stdin", .set = &oidc_stdin},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (oidc_stdin && (pw_stdin || token_stdin || user_flag)) {
                cli_error("login: --oidc-token-stdin logs in as the user the provider's token names: drop --user, "
                          "--password-stdin and --token-stdin");
                return CLI_EXIT_USAGE;
        }
        if (token_stdin && (pw_stdin || tenant_flag || user_flag)) {
                cli_error("login: --token-stdin logs in with the token alone: drop --tenant, --user and "
                          "--password-stdin");
                return CLI_EXIT_USAGE;
        }
        if (token_stdin)
                return login_token(ctx);

        _cleanup_(session_context_done) struct session_context saved = {0};
        (void)session_context_load(ctx->context, &saved);
        _cleanup_free_ char *cred = session_credentials_path();
        _cleanup_free_ char *tenant = pick(tenant_flag, "PADDOCK_TENANT", saved.tenant, cred);
        if (oidc_stdin)
                return login_oidc(ctx, tenant);
        _cleanup_free_ char *user = pick(user_flag, "PADDOCK_USER", saved.user, cred);
        _cleanup_(cli_secret_freep) char *password = NULL;

        if (!tenant) {
                cli_error("login: no tenant: pass --tenant or set PADDOCK_TENANT");
                return CLI_EXIT_USAGE;
        }
        if (!user) {
                cli_error("login: no user: pass --user or set PADDOCK_USER");
                return CLI_EXIT_USAGE;
        }
        if (pw_stdin) {
                password = cli_read_line();
                if (!password || !*password) {
                        cli_error("login: --password-stdin: no password on stdin");
                        return CLI_EXIT_USAGE;
                }
        } else {
                const char *e = getenv("PADDOCK_PASSWORD");
                _cleanup_free_ char *cred_user = cred ? session_read_env_file(cred, "PADDOCK_USER") : NULL;
                _cleanup_free_ char *cred_tenant = cred ? session_read_env_file(cred, "PADDOCK_TENANT") : NULL;
                if (e && *e)
                        password = strdup(e);
                /* the credentials file's password belongs to its own user only */
                else if (cred_user && cred_tenant && strcmp(cred_user, user) == 0 && strcmp(cred_tenant, tenant) == 0)
                        password = session_read_env_file(cred, "PADDOCK_PASSWORD");
                if (!password && isatty(STDIN_FILENO)) {
                        _cleanup_free_ char *prompt = NULL;
                        if (asprintf(&prompt, "password of %s in tenant %s: ", user, tenant) >= 0)
                                password = cli_prompt_hidden(prompt);
                }
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
        struct cli_ctx anon = {.api_url = ctx->api_url, .context = ctx->context};
        _cleanup_(api_response_done) struct api_response resp = {0};
        r = api_request(&anon, "POST", "/v1/auth/login", body, NULL, &resp);
        /* The request body holds the password: wipe it now. */
        json_object_set_new(body, "password", json_string(""));
        if (r < 0)
                return CLI_EXIT_FAIL;

        const char *token = json_string_value(json_object_get(resp.body, "token"));
        const char *expires = json_string_value(json_object_get(resp.body, "expires_at"));
        bool must_change = json_is_true(json_object_get(resp.body, "password_change_required"));
        if (!token || !*token) {
                cli_error("login: the API answered without a token");
                return CLI_EXIT_FAIL;
        }
        struct session_context sc = {.name = ctx->context, .api_url = ctx->api_url, .tenant = tenant,
                                     .user = user, .token = (char *)token, .expires_at = (char *)expires,
                                     .auth = CLI_AUTH_PASSWORD};
        if (store_context(&sc) < 0)
                return CLI_EXIT_FAIL;
        free(ctx->token);
        ctx->token = strdup(token);
        ctx->auth = CLI_AUTH_PASSWORD;

        if (ctx->json) {
                /* the API's answer, less the token: it never goes to a terminal or a log */
                json_object_del(resp.body, "token");
                json_object_set_new(resp.body, "context", json_string(ctx->context));
                cli_print_json(resp.body);
        } else {
                printf("logged in as %s in tenant %s%s%s (context %s)\n", user, tenant,
                       expires ? ", token expires " : "", expires ? expires : "", ctx->context);
        }
        if (!must_change)
                return CLI_EXIT_OK;

        if (!interactive() || pw_stdin || ctx->json) {
                fprintf(stderr, "note: the password of %s is a one-time password and must be changed before "
                                "anything else: run `paddock passwd`\n", user);
                return CLI_EXIT_OK;
        }
        fprintf(stderr, "The password of %s is a one-time password: choose a new one now.\n", user);
        _cleanup_(cli_secret_freep) char *new_password = prompt_new_password();
        if (!new_password) {
                fprintf(stderr, "note: run `paddock passwd` to set it later\n");
                return CLI_EXIT_FAIL;
        }
        if (change_password(ctx, password, new_password) < 0)
                return CLI_EXIT_FAIL;
        fprintf(stderr, "password changed\n");
        return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_login = {
        .name = "login",
        .section = "Session",
        .summary = "log in and save the session as a context",
        .description =
                "Saves the token (mode 0600) as the context named by --context (else\n"
                "$PADDOCK_CONTEXT, else the current context, else \"default\") in\n"
                "$PADDOCK_CONFIG_DIR/contexts (default ~/.config/paddock/contexts), together with\n"
                "the API URL, tenant and user. The first context saved becomes the current one;\n"
                "`paddock context use NAME` switches. Logging in to several contexts keeps\n"
                "several users or stacks side by side.\n"
                "\n"
                "Tenant and user default to $PADDOCK_TENANT and $PADDOCK_USER, then to the\n"
                "context's own, then to the local stack's credentials file\n"
                "($PADDOCK_STATE_DIR/credentials). The password comes from --password-stdin (its\n"
                "first line), $PADDOCK_PASSWORD, the credentials file for its own user, or a\n"
                "prompt that does not echo; never from the command line.\n"
                "\n"
                "A one-time password (of a new user) must be changed before anything else:\n"
                "on a terminal login asks for the new one at once, otherwise it says to run\n"
                "`paddock passwd`.\n"
                "\n"
                "--token-stdin saves an API token instead (a service account's, which cannot log\n"
                "in with a password); the token is checked with GET /v1/me. --json prints the\n"
                "API's answer without the token.\n"
                "\n"
                "--oidc-token-stdin logs in with an ID (or JWT access) token of the tenant's\n"
                "OIDC provider (`paddock oidc set`), exchanged for a Paddock token by POST\n"
                "/v1/auth/oidc: the user and its roles come from the provider's token, so only\n"
                "--tenant goes with it; log in the same way again when the session expires.\n",
        .options = (const struct cli_option[]){
                {"tenant", 0, "TENANT", "tenant name"},
                {"user", 0, "USER", "user name"},
                {"password-stdin", 0, NULL, "read the password from the first line of stdin"},
                {"token-stdin", 0, NULL, "read an API token from stdin instead of logging in with a password"},
                {"oidc-token-stdin", 0, NULL, "log in with an ID token of the tenant's OIDC provider, read from stdin"},
                {0},
        },
        .fn = login_main,
};

/* --------------------------------------------------------------- logout */

static int logout_main(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_(session_context_done) struct session_context sc = {0};
        r = session_context_load(ctx->context, &sc);
        if (r == -ENOENT || (r >= 0 && !sc.token)) {
                cli_error("logout: not logged in in context \"%s\"", ctx->context);
                return CLI_EXIT_FAIL;
        }
        if (r < 0) {
                cli_error("logout: could not read context \"%s\": %s", ctx->context, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        /* revoke the context's own token ($PADDOCK_TOKEN is not ours to end) */
        struct cli_ctx rc = {.api_url = ctx->api_url, .token = sc.token, .auth = sc.auth, .context = ctx->context};
        _cleanup_(api_response_done) struct api_response resp = {0};
        /* Best effort: the local copy goes away even if revoking fails. */
        if (rc.api_url)
                (void)api_request(&rc, "POST", "/v1/auth/logout", NULL, NULL, &resp);
        /* keep URL, tenant and user so that `paddock login` needs no flags */
        explicit_bzero(sc.token, strlen(sc.token));
        free(TAKE_PTR(sc.token));
        free(TAKE_PTR(sc.expires_at));
        r = session_context_save(&sc);
        if (r < 0) {
                cli_error("logout: could not update context \"%s\": %s", ctx->context, strerror(-r));
                return CLI_EXIT_FAIL;
        }
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:b}", "context", ctx->context, "logged_out", 1);
                cli_print_json(o);
        } else {
                printf("logged out (context %s)\n", ctx->context);
        }
        return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_logout = {
        .name = "logout",
        .summary = "revoke the context's token and forget it",
        .description = "The context keeps its API URL, tenant and user, so `paddock login` needs no flags;\n"
                       "`paddock context delete NAME` removes it altogether.\n",
        .fn = logout_main,
};

/* --------------------------------------------------------------- passwd */

static int passwd_main(struct cli_ctx *ctx, int argc, char **argv) {
        bool pw_stdin = false;
        const struct cli_bind binds[] = {{.name = "password-stdin", .set = &pw_stdin}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!pw_stdin && !isatty(STDIN_FILENO)) {
                cli_error("passwd: stdin is not a terminal: use --password-stdin (the current password on the "
                          "first line, the new one on the second)");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(cli_secret_freep) char *current = NULL;
        _cleanup_(cli_secret_freep) char *new_password = NULL;
        if (pw_stdin) {
                current = cli_read_line();
                new_password = current ? cli_read_line() : NULL;
                if (!current || !*current || !new_password || !*new_password) {
                        cli_error("passwd: --password-stdin: expected two lines on stdin, the current password "
                                  "and the new one");
                        return CLI_EXIT_USAGE;
                }
        } else {
                current = cli_prompt_hidden("current password: ");
                if (!current)
                        return CLI_EXIT_FAIL;
                new_password = prompt_new_password();
                if (!new_password)
                        return CLI_EXIT_FAIL;
        }
        if (change_password(ctx, current, new_password) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:b}", "password_changed", 1);
                cli_print_json(o);
        } else {
                printf("password changed; your other sessions are signed out\n");
        }
        return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_passwd = {
        .name = "passwd",
        .summary = "change your password (POST /v1/me/password)",
        .description =
                "On a terminal asks for the current password and the new one twice, without\n"
                "echoing them. --password-stdin reads two lines instead: the current password,\n"
                "then the new one (12 to 1024 characters, not the current one). This session\n"
                "stays logged in; the user's other tokens are revoked.\n",
        .options = (const struct cli_option[]){
                {"password-stdin", 0, NULL, "read the current and the new password, one per line, from stdin"},
                {0},
        },
        .fn = passwd_main,
};
