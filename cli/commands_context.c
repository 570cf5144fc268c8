/* paddock context list / use / show / rename / delete: the saved logins
 * (session.c keeps them). Local only: nothing here talks to the API, and no
 * output ever carries a token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static bool check_name(const struct cli_ctx *ctx, const char *name) {
        if (session_context_name_valid(name))
                return true;
        cli_error("%s: \"%s\" is not a context name (letters, digits, \".\", \"_\", \"-\"; up to 64)", ctx->what,
                  name);
        return false;
}

/* The context as JSON: what it holds, less the token. */
static json_t *context_json(const struct session_context *sc, const char *current) {
        return json_pack("{s:s, s:b, s:s?, s:s?, s:s?, s:s, s:b, s:s?}", "name", sc->name, "current",
                         current && strcmp(current, sc->name) == 0, "api_url", sc->api_url, "tenant", sc->tenant,
                         "user", sc->user, "auth", sc->auth == CLI_AUTH_TOKEN ? "token" : "password",
                         "logged_in", sc->token != NULL, "expires_at", sc->expires_at);
}

/* Says why the saved context name could not be used or changed (r < 0). */
static int context_failed(const struct cli_ctx *ctx, int r, const char *name) {
        if (r == -ENOENT)
                cli_error("%s: no context named \"%s\" (see `paddock context list`)", ctx->what, name);
        else
                cli_error("%s: %s", ctx->what, strerror(-r));
        return CLI_EXIT_FAIL;
}

static int load_or_say(const struct cli_ctx *ctx, const char *name, struct session_context *sc) {
        int r = session_context_load(name, sc);
        if (r == -ENOENT)
                context_failed(ctx, r, name);
        else if (r < 0)
                cli_error("%s: could not read context \"%s\": %s", ctx->what, name,
                          r == -EBADMSG ? "not a JSON object" : strerror(-r));
        return r;
}

static int context_list(struct cli_ctx *ctx, int argc, char **argv) {
        bool quiet = false;
        const struct cli_bind binds[] = {{.name = "quiet", .set = &quiet}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *names = session_context_names();
        _cleanup_free_ char *current = session_current_get();
        _cleanup_json_ json_t *items = json_array();
        if (!names || !items) {
                cli_error("context list: could not read the contexts");
                return CLI_EXIT_FAIL;
        }
        size_t i;
        json_t *n;
        json_array_foreach(names, i, n) {
                _cleanup_(session_context_done) struct session_context sc = {0};
                if (session_context_load(json_string_value(n), &sc) < 0)
                        continue;
                json_array_append_new(items, context_json(&sc, current));
        }
        if (ctx->json) {
                cli_print_list(items, NULL);
                return CLI_EXIT_OK;
        }
        json_t *it;
        if (quiet) {
                json_array_foreach(items, i, it) printf("%s\n", json_string_value(json_object_get(it, "name")));
                return CLI_EXIT_OK;
        }
        _cleanup_json_ json_t *t = cli_table_new(7, "CURRENT", "NAME", "API", "TENANT", "USER", "AUTH", "EXPIRES");
        json_array_foreach(items, i, it) {
                bool logged_in = json_is_true(json_object_get(it, "logged_in"));
                cli_table_add(t, json_is_true(json_object_get(it, "current")) ? "*" : "",
                              json_string_value(json_object_get(it, "name")),
                              json_string_value(json_object_get(it, "api_url")),
                              json_string_value(json_object_get(it, "tenant")),
                              json_string_value(json_object_get(it, "user")),
                              logged_in ? json_string_value(json_object_get(it, "auth")) : "logged out",
                              json_string_value(json_object_get(it, "expires_at")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int context_use(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!check_name(ctx, pos[0]))
                return CLI_EXIT_USAGE;
        _cleanup_(session_context_done) struct session_context sc = {0};
        if (load_or_say(ctx, pos[0], &sc) < 0)
                return CLI_EXIT_FAIL;
        r = session_current_set(pos[0]);
        if (r < 0) {
                cli_error("context use: could not switch to \"%s\": %s", pos[0], strerror(-r));
                return CLI_EXIT_FAIL;
        }
        if (ctx->json) {
                _cleanup_json_ json_t *o = context_json(&sc, pos[0]);
                cli_print_json(o);
        } else {
                printf("using context %s (%s in tenant %s at %s)\n", pos[0], sc.user ? sc.user : "?",
                       sc.tenant ? sc.tenant : "?", sc.api_url ? sc.api_url : "?");
        }
        return CLI_EXIT_OK;
}

static int context_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        const char *name = npos > 0 ? pos[0] : ctx->context;
        if (!check_name(ctx, name))
                return CLI_EXIT_USAGE;
        _cleanup_(session_context_done) struct session_context sc = {0};
        if (load_or_say(ctx, name, &sc) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *current = session_current_get();
        _cleanup_json_ json_t *o = context_json(&sc, current);
        if (ctx->json) {
                cli_print_json(o);
                return CLI_EXIT_OK;
        }
        printf("name:     %s%s\n", sc.name, json_is_true(json_object_get(o, "current")) ? " (current)" : "");
        printf("api:      %s\n", sc.api_url ? sc.api_url : "-");
        printf("tenant:   %s\n", sc.tenant ? sc.tenant : "-");
        printf("user:     %s\n", sc.user ? sc.user : "-");
        printf("auth:     %s\n", !sc.token ? "logged out" : sc.auth == CLI_AUTH_TOKEN ? "API token" : "password login");
        printf("expires:  %s\n", sc.expires_at ? sc.expires_at : "-");
        return CLI_EXIT_OK;
}

static int context_rename(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!check_name(ctx, pos[0]) || !check_name(ctx, pos[1]))
                return CLI_EXIT_USAGE;
        r = session_context_rename(pos[0], pos[1]);
        if (r == -EEXIST) {
                cli_error("context rename: a context named \"%s\" exists already", pos[1]);
                return CLI_EXIT_FAIL;
        }
        if (r < 0)
                return context_failed(ctx, r, pos[0]);
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:s}", "from", pos[0], "name", pos[1]);
                cli_print_json(o);
        } else {
                printf("context %s renamed to %s\n", pos[0], pos[1]);
        }
        return CLI_EXIT_OK;
}

static int context_delete(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!check_name(ctx, pos[0]))
                return CLI_EXIT_USAGE;
        r = session_context_delete(pos[0]);
        if (r < 0)
                return context_failed(ctx, r, pos[0]);
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:b}", "name", pos[0], "deleted", 1);
                cli_print_json(o);
        } else {
                printf("context %s deleted\n", pos[0]);
        }
        return CLI_EXIT_OK;
}

static const struct cli_command context_subs[] = {
        {.name = "list", .alias = "ls", .summary = "list the saved contexts; * marks the current one",
         .options = (const struct cli_option[]){{"quiet", 'q', NULL, "print only the names"}, {0}},
         .fn = context_list},
        {.name = "use", .args = "CONTEXT", .summary = "make CONTEXT the current context", .fn = context_use},
        {.name = "show", .args = "[CONTEXT]", .summary = "show a context (default: the one in use), never its token",
         .fn = context_show},
        {.name = "rename", .args = "CONTEXT NEW_NAME", .summary = "rename a context", .fn = context_rename},
        {.name = "delete", .alias = "rm", .args = "CONTEXT",
         .summary = "forget a context and its token (`paddock logout` revokes the token first)",
         .fn = context_delete},
        {0},
};

const struct cli_command cli_cmd_context = {
        .name = "context",
        .alias = "contexts",
        .summary = "saved logins (contexts): list, use, show, rename, delete",
        .description =
                "A context is one saved login: API URL, tenant, user and token, in\n"
                "$PADDOCK_CONFIG_DIR/contexts/NAME.json (mode 0600; default config dir\n"
                "~/.config/paddock). `paddock login --context NAME` creates or refreshes one.\n"
                "A command uses the context named by --context NAME, else $PADDOCK_CONTEXT,\n"
                "else the current one (`context use`), else \"default\". The session.json of\n"
                "earlier versions becomes the context \"default\".\n",
        .subs = context_subs,
};
