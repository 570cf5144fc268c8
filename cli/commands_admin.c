/* Tenant administration: paddock me, team, user, grant, revoke, members,
 * service-account, token and audit. Teams, users and service accounts are
 * named by id or by name; names are turned into ids with the list
 * endpoints (cli_resolve_*), so scripts can use either. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/ids.h"

static const char *const no_pos[] = {"", NULL};

/* Subcommand table of a command group. */
struct cli_sub {
        const char *name;
        int (*fn)(struct cli_ctx *, int, char **);
};

static int dispatch(struct cli_ctx *ctx, int argc, char **argv, const char *group, const char *usage,
                    const struct cli_sub *subs, size_t n) {
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                fputs(usage, argc < 2 ? stderr : stdout);
                return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
        }
        for (size_t i = 0; i < n; i++)
                if (strcmp(argv[1], subs[i].name) == 0)
                        return subs[i].fn(ctx, argc - 1, argv + 1);
        cli_error("%s: unknown subcommand \"%s\" (see `paddock %s --help`)", group, argv[1], group);
        return CLI_EXIT_USAGE;
}

/* Prints the items of a list as the API's list shape. */
static void print_items_json(json_t *items) {
        _cleanup_json_ json_t *o = json_pack("{s:O, s:n}", "items", items, "next_cursor");
        if (o)
                cli_print_json(o);
}

/* GETs every page of path (NULL: a failed lookup before). With --json prints
 * them and returns CLI_EXIT_OK; on failure CLI_EXIT_FAIL; else -1 with
 * *items (caller owns) for the caller's table. */
static int fetch_items(struct cli_ctx *ctx, const char *path, json_t **items) {
        if (!path || api_get_all(ctx, path, items) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                print_items_json(*items);
                return CLI_EXIT_OK;
        }
        return -1;
}

/* Path "/v1/<prefix>/<id><suffix>", malloc'd or NULL. */
static char *path_of(const char *prefix, const char *id, const char *suffix) {
        char *p = NULL;
        if (asprintf(&p, "/v1/%s/%s%s", prefix, id, suffix ? suffix : "") < 0)
                return NULL;
        return p;
}

/* What a `GROUP delete REF` command deletes. */
struct delete_target {
        const char *what;       /* "team delete", for messages */
        const char *usage;
        const char *pos_name;   /* "TEAM" */
        char *(*resolve)(const struct cli_ctx *ctx, const char *ref);
        const char *collection; /* DELETE /v1/<collection>/<id> */
        const char *json_state; /* {"id": ..., <json_state>: true} with --json */
        const char *noun;       /* the line otherwise: "<noun> <id> <done>" */
        const char *done;
};

static int delete_by_ref(struct cli_ctx *ctx, int argc, char **argv, const struct delete_target *t) {
        const char *const names[] = {t->pos_name, NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, t->what, t->usage, NULL, names, 1, 1, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = t->resolve(ctx, pos[0]);
        _cleanup_free_ char *path = id ? path_of(t->collection, id, NULL) : NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || api_request(ctx, "DELETE", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:b}", "id", id, t->json_state, 1);
                cli_print_json(o);
        } else {
                printf("%s %s %s\n", t->noun, id, t->done);
        }
        return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------ me */

static const char me_usage[] =
        "usage: paddock me [--json]\n"
        "\n"
        "Shows who you are: your user, tenant, tenant roles, and your teams with the\n"
        "roles you hold in each.\n";

int cmd_me(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "me", me_usage, NULL, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/me", &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        json_t *user = json_object_get(resp.body, "user"), *tenant = json_object_get(resp.body, "tenant");
        _cleanup_free_ char *troles = cli_join(json_object_get(resp.body, "tenant_roles"));
        printf("user:         %s (%s)\n", json_string_value(json_object_get(user, "username")) ?: "?",
               json_string_value(json_object_get(user, "id")) ?: "?");
        printf("tenant:       %s (%s)\n", json_string_value(json_object_get(tenant, "name")) ?: "?",
               json_string_value(json_object_get(tenant, "id")) ?: "?");
        printf("tenant roles: %s\n", troles ? troles : "-");
        json_t *teams = json_object_get(resp.body, "teams");
        if (json_array_size(teams) == 0) {
                printf("teams:        none\n");
                return CLI_EXIT_OK;
        }
        printf("teams:\n");
        _cleanup_json_ json_t *t = cli_table_new(3, "  TEAM", "ID", "ROLES");
        size_t i;
        json_t *team;
        json_array_foreach(teams, i, team) {
                _cleanup_free_ char *roles = cli_join(json_object_get(team, "roles"));
                _cleanup_free_ char *name = NULL;
                if (asprintf(&name, "  %s", json_string_value(json_object_get(team, "name")) ?: "?") < 0)
                        return CLI_EXIT_FAIL;
                cli_table_add(t, name, json_string_value(json_object_get(team, "id")), roles);
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- team */

static const char team_usage[] =
        "usage: paddock team list\n"
        "       paddock team create NAME\n"
        "       paddock team show TEAM\n"
        "       paddock team rename TEAM NEW_NAME\n"
        "       paddock team delete TEAM\n"
        "\n"
        "TEAM is a team id or name. create prints the new team's id. Creating, renaming\n"
        "and deleting teams needs tenant_admin; a team that still has sandboxes or runs\n"
        "cannot be deleted. Every subcommand takes --json to print the API's answer.\n";

static int team_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "team list", team_usage, NULL, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = fetch_items(ctx, "/v1/teams", &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(4, "ID", "NAME", "YOUR ROLES", "CREATED");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                _cleanup_free_ char *roles = cli_join(json_object_get(it, "roles"));
                cli_table_add(t, json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "name")), roles,
                              json_string_value(json_object_get(it, "created_at")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int team_create(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"NAME", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "team create", team_usage, NULL, names, 1, 1, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", pos[0]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || api_request(ctx, "POST", "/v1/teams", body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        const char *id = json_string_value(json_object_get(resp.body, "id"));
        if (!id) {
                cli_error("team create: the API answered without an id");
                return CLI_EXIT_FAIL;
        }
        printf("%s\n", id);
        return CLI_EXIT_OK;
}

static int team_show(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"TEAM", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "team show", team_usage, NULL, names, 1, 1, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = cli_resolve_team(ctx, pos[0]);
        _cleanup_free_ char *path = id ? path_of("teams", id, NULL) : NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        _cleanup_free_ char *roles = cli_join(json_object_get(resp.body, "roles"));
        printf("id:         %s\n", json_string_value(json_object_get(resp.body, "id")) ?: "?");
        printf("name:       %s\n", json_string_value(json_object_get(resp.body, "name")) ?: "?");
        printf("created:    %s\n", json_string_value(json_object_get(resp.body, "created_at")) ?: "?");
        printf("your roles: %s\n", roles ? roles : "-");
        return CLI_EXIT_OK;
}

static int team_rename(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"TEAM", "NEW_NAME", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "team rename", team_usage, NULL, names, 2, 2, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = cli_resolve_team(ctx, pos[0]);
        _cleanup_free_ char *path = id ? path_of("teams", id, NULL) : NULL;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", pos[1]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || !body || api_request(ctx, "PATCH", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("team %s renamed to %s\n", id, pos[1]);
        return CLI_EXIT_OK;
}

static int team_delete(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct delete_target t = {"team delete", team_usage, "TEAM", cli_resolve_team, "teams",
                                               "deleted", "team", "deleted"};
        return delete_by_ref(ctx, argc, argv, &t);
}

int cmd_team(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct cli_sub subs[] = {
                {"list", team_list},     {"ls", team_list},         {"create", team_create},
                {"show", team_show},     {"get", team_show},        {"rename", team_rename},
                {"delete", team_delete}, {"rm", team_delete},
        };
        return dispatch(ctx, argc, argv, "team", team_usage, subs, ELEMENTSOF(subs));
}

/* ---------------------------------------------------------------- user */

static const char user_usage[] =
        "usage: paddock user list\n"
        "       paddock user create USERNAME [--tenant-role tenant_admin] [--password-stdin]\n"
        "       paddock user disable USER | user enable USER | user delete USER\n"
        "\n"
        "USER is a user id or username; all of these need tenant_admin.\n"
        "create     creates a user and prints its id, username and, unless\n"
        "           --password-stdin gave one, the generated one-time password. It is\n"
        "           shown only this once: hand it over safely. --tenant-role tenant_admin\n"
        "           makes the user an administrator of the whole tenant; team roles are\n"
        "           given with `paddock grant`.\n"
        "disable    blocks logins and revokes every token of the user at once\n"
        "enable     allows logins again (revoked tokens stay revoked)\n"
        "delete     deletes a user who authored nothing (else disable it)\n";

static int user_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "user list", user_usage, NULL, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = fetch_items(ctx, "/v1/users", &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(5, "ID", "USERNAME", "STATE", "TENANT ROLES", "CREATED");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                _cleanup_free_ char *roles = cli_join(json_object_get(it, "tenant_roles"));
                cli_table_add(t, json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "username")),
                              json_is_true(json_object_get(it, "disabled")) ? "disabled" : "active", roles,
                              json_string_value(json_object_get(it, "created_at")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static char *read_line_stdin(void) {
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
                return NULL;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        return TAKE_PTR(line);
}

static void secret_freep(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

static int user_create(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"USERNAME", NULL};
        _cleanup_json_ json_t *roles = json_array();
        bool pw_stdin = false;
        const struct cli_flag flags[] = {
                {.name = "tenant-role", .list = roles},
                {.name = "password-stdin", .set = &pw_stdin},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "user create", user_usage, flags, names, 1, 1, pos, &npos)) >= 0)
                return r;
        bool admin = false;
        size_t i;
        json_t *v;
        json_array_foreach(roles, i, v) {
                const char *role = json_string_value(v);
                if (strcmp(role, "tenant_admin") != 0) {
                        cli_error("user create: --tenant-role: \"%s\" is not a tenant role (the tenant role is "
                                  "tenant_admin; grant team roles with `paddock grant TEAM USER ROLE...`)", role);
                        return CLI_EXIT_USAGE;
                }
                admin = true;
        }
        _cleanup_(secret_freep) char *password = NULL;
        if (pw_stdin) {
                password = read_line_stdin();
                if (!password || !*password) {
                        cli_error("user create: --password-stdin: no password on stdin");
                        return CLI_EXIT_USAGE;
                }
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "username", pos[0]);
        if (!body)
                return CLI_EXIT_FAIL;
        if (admin)
                json_object_set_new(body, "tenant_admin", json_true());
        if (password)
                json_object_set_new(body, "password", json_string(password));
        _cleanup_(api_response_done) struct api_response resp = {0};
        r = api_request(ctx, "POST", "/v1/users", body, NULL, &resp);
        if (password)
                json_object_set_new(body, "password", json_string(""));
        if (r < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        _cleanup_free_ char *troles = cli_join(json_object_get(resp.body, "tenant_roles"));
        printf("id: %s\n", json_string_value(json_object_get(resp.body, "id")) ?: "?");
        printf("username: %s\n", json_string_value(json_object_get(resp.body, "username")) ?: "?");
        printf("tenant_roles: %s\n", troles ? troles : "-");
        const char *pw = json_string_value(json_object_get(resp.body, "password"));
        if (pw) {
                printf("password: %s\n", pw);
                fprintf(stderr, "note: the one-time password above is shown only now\n");
        }
        return CLI_EXIT_OK;
}

static int user_set_disabled(struct cli_ctx *ctx, int argc, char **argv, const char *what, bool disabled) {
        static const char *const names[] = {"USER", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, what, user_usage, NULL, names, 1, 1, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = cli_resolve_user(ctx, pos[0]);
        _cleanup_free_ char *path = id ? path_of("users", id, NULL) : NULL;
        _cleanup_json_ json_t *body = json_pack("{s:b}", "disabled", disabled);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || !body || api_request(ctx, "PATCH", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("user %s %s\n", json_string_value(json_object_get(resp.body, "username")) ?: id,
                       disabled ? "disabled (its tokens are revoked)" : "enabled");
        return CLI_EXIT_OK;
}

static int user_disable(struct cli_ctx *ctx, int argc, char **argv) {
        return user_set_disabled(ctx, argc, argv, "user disable", true);
}

static int user_enable(struct cli_ctx *ctx, int argc, char **argv) {
        return user_set_disabled(ctx, argc, argv, "user enable", false);
}

static int user_delete(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct delete_target t = {"user delete", user_usage, "USER", cli_resolve_user, "users",
                                               "deleted", "user", "deleted"};
        return delete_by_ref(ctx, argc, argv, &t);
}

int cmd_user(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct cli_sub subs[] = {
                {"list", user_list},       {"ls", user_list},         {"create", user_create},
                {"disable", user_disable}, {"enable", user_enable},   {"delete", user_delete},
                {"rm", user_delete},
        };
        return dispatch(ctx, argc, argv, "user", user_usage, subs, ELEMENTSOF(subs));
}

/* ------------------------------------------------- grant, revoke, members */

static const char grant_usage[] =
        "usage: paddock grant TEAM USER ROLE [ROLE...]\n"
        "       paddock revoke TEAM USER\n"
        "       paddock members TEAM\n"
        "\n"
        "TEAM is a team id or name, USER a user (or service account) id or username;\n"
        "all need tenant_admin.\n"
        "grant    sets USER's roles in TEAM to exactly ROLE... (replacing earlier ones).\n"
        "         Roles: tenant_admin, security_admin, sandbox_author, launcher,\n"
        "         approver, reviewer, viewer.\n"
        "revoke   removes USER from TEAM\n"
        "members  lists TEAM's members and their roles\n";

static int put_roles(struct cli_ctx *ctx, const char *team_ref, const char *user_ref,
                     json_t *roles) {
        _cleanup_free_ char *team = cli_resolve_team(ctx, team_ref);
        if (!team)
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *user = cli_resolve_user(ctx, user_ref);
        if (!user)
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/v1/teams/%s/members/%s", team, user) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *body = json_pack("{s:O}", "roles", roles);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || api_request(ctx, "PUT", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                if (resp.body) {
                        cli_print_json(resp.body);
                } else {
                        _cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:[]}", "team", team, "user", user,
                                                             "roles");
                        cli_print_json(o);
                }
                return CLI_EXIT_OK;
        }
        if (json_array_size(roles) == 0) {
                printf("%s removed from team %s\n", user_ref, team_ref);
        } else {
                _cleanup_free_ char *list = cli_join(json_object_get(resp.body, "roles"));
                printf("%s in team %s: %s\n", user_ref, team_ref, list ? list : "?");
        }
        return CLI_EXIT_OK;
}

int cmd_grant(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"TEAM", "USER", "ROLE", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "grant", grant_usage, NULL, names, 3, -1, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *roles = json_array();
        for (int i = 2; i < npos; i++) {
                /* commas are a convenience: `grant T U launcher,viewer` */
                _cleanup_free_ char *copy = strdup(pos[i]);
                char *save = NULL;
                if (!copy)
                        return CLI_EXIT_FAIL;
                for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                        json_array_append_new(roles, json_string(tok));
        }
        if (json_array_size(roles) == 0) {
                cli_error("grant: missing argument ROLE (to remove a member use `paddock revoke TEAM USER`)");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        return put_roles(ctx, pos[0], pos[1], roles);
}

int cmd_revoke(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"TEAM", "USER", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "revoke", grant_usage, NULL, names, 2, 2, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *roles = json_array();
        return put_roles(ctx, pos[0], pos[1], roles);
}

int cmd_members(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"TEAM", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "members", grant_usage, NULL, names, 1, 1, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *team = cli_resolve_team(ctx, pos[0]);
        _cleanup_free_ char *path = team ? path_of("teams", team, "/members") : NULL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = fetch_items(ctx, path, &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(3, "USERNAME", "USER ID", "ROLES");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                json_t *u = json_object_get(it, "user");
                _cleanup_free_ char *roles = cli_join(json_object_get(it, "roles"));
                cli_table_add(t, json_string_value(json_object_get(u, "username")),
                              json_string_value(json_object_get(u, "id")), roles);
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

/* ------------------------------------------------ service accounts, tokens */

static const char sa_usage[] =
        "usage: paddock service-account list\n"
        "       paddock service-account create NAME [--team TEAM [--role ROLE...]]\n"
        "       paddock service-account delete SA\n"
        "       paddock service-account token SA [--name NAME] [--expires-in SECONDS]\n"
        "       paddock token create SA [--name NAME] [--expires-in SECONDS]\n"
        "       paddock token revoke SA TOKEN_ID\n"
        "\n"
        "Service accounts are users for automation that log in with API tokens only;\n"
        "all of this needs tenant_admin. SA is a service account id or name.\n"
        "create   creates one, optionally a member of TEAM with ROLEs (default viewer);\n"
        "         prints its id\n"
        "delete   disables it and revokes its tokens (runs and audit records keep its name)\n"
        "token    issues an API token (name default \"cli\"); prints its id, the token and\n"
        "         when it expires. The token is shown only this once.\n"
        "revoke   revokes one token\n";

static char *resolve_sa(const struct cli_ctx *ctx, const char *ref) {
        if (id_is_uuid(ref))
                return strdup(ref);
        _cleanup_json_ json_t *items = NULL;
        if (api_get_all(ctx, "/v1/service-accounts", &items) < 0)
                return NULL;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                const char *name = json_string_value(json_object_get(it, "name"));
                const char *id = json_string_value(json_object_get(it, "id"));
                if (name && id && strcmp(name, ref) == 0 && cli_valid_id(id))
                        return strdup(id);
        }
        cli_error("no service account named \"%s\" (not_found)", ref);
        return NULL;
}

static int sa_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "service-account list", sa_usage, NULL, no_pos, 0, 0, pos,
                                &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = fetch_items(ctx, "/v1/service-accounts", &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(5, "ID", "NAME", "STATE", "TEAMS", "ACTIVE TOKENS");
        size_t i, j;
        json_t *it, *x;
        json_array_foreach(items, i, it) {
                char *teams = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&teams, &len);
                if (!f)
                        return CLI_EXIT_FAIL;
                json_array_foreach(json_object_get(it, "teams"), j, x) {
                        _cleanup_free_ char *roles = cli_join(json_object_get(x, "roles"));
                        fprintf(f, "%s%s(%s)", j ? " " : "", json_string_value(json_object_get(x, "id")) ?: "?",
                                roles ? roles : "-");
                }
                fclose(f);
                int active = 0;
                json_array_foreach(json_object_get(it, "tokens"), j, x) active +=
                        json_is_null(json_object_get(x, "revoked_at")) || !json_object_get(x, "revoked_at");
                char nactive[16];
                snprintf(nactive, sizeof nactive, "%d", active);
                cli_table_add(t, json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "name")),
                              json_is_true(json_object_get(it, "disabled")) ? "disabled" : "active", teams, nactive);
                free(teams);
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int sa_create(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"NAME", NULL};
        _cleanup_json_ json_t *roles = json_array();
        const char *team = NULL;
        const struct cli_flag flags[] = {
                {.name = "team", .key = 't', .str = &team},
                {.name = "role", .list = roles},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "service-account create", sa_usage, flags, names, 1, 1, pos,
                                &npos)) >= 0)
                return r;
        if (json_array_size(roles) > 0 && !team) {
                cli_error("service-account create: --role needs --team TEAM");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", pos[0]);
        if (!body)
                return CLI_EXIT_FAIL;
        if (team)
                json_object_set_new(body, "team", json_string(team));
        if (json_array_size(roles) > 0)
                json_object_set(body, "roles", roles);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "POST", "/v1/service-accounts", body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        printf("%s\n", json_string_value(json_object_get(resp.body, "id")) ?: "?");
        return CLI_EXIT_OK;
}

static int sa_delete(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct delete_target t = {"service-account delete", sa_usage, "SA", resolve_sa,
                                               "service-accounts", "disabled", "service account",
                                               "disabled, its tokens revoked"};
        return delete_by_ref(ctx, argc, argv, &t);
}

static int token_issue(struct cli_ctx *ctx, int argc, char **argv, const char *what) {
        static const char *const names[] = {"SA", NULL};
        const char *name = "cli", *expires = NULL;
        const struct cli_flag flags[] = {
                {.name = "name", .key = 'n', .str = &name},
                {.name = "expires-in", .str = &expires},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, what, sa_usage, flags, names, 1, 1, pos, &npos)) >= 0)
                return r;
        long long ttl = 0;
        if (expires && !cli_parse_ll("--expires-in", expires, &ttl))
                return CLI_EXIT_USAGE;
        if (expires && ttl < 1) {
                cli_error("%s: --expires-in: must be at least 1 second", what);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = resolve_sa(ctx, pos[0]);
        _cleanup_free_ char *path = id ? path_of("service-accounts", id, "/tokens") : NULL;
        _cleanup_json_ json_t *body = json_pack("{s:s}", "name", name);
        if (!path || !body)
                return CLI_EXIT_FAIL;
        if (expires)
                json_object_set_new(body, "expires_in_s", json_integer((json_int_t)ttl));
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "POST", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_json(resp.body);
                return CLI_EXIT_OK;
        }
        printf("id: %s\n", json_string_value(json_object_get(resp.body, "id")) ?: "?");
        printf("token: %s\n", json_string_value(json_object_get(resp.body, "token")) ?: "?");
        printf("expires_at: %s\n", json_string_value(json_object_get(resp.body, "expires_at")) ?: "?");
        fprintf(stderr, "note: the token above is shown only now\n");
        return CLI_EXIT_OK;
}

static int sa_token(struct cli_ctx *ctx, int argc, char **argv) {
        return token_issue(ctx, argc, argv, "service-account token");
}

int cmd_service_account(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct cli_sub subs[] = {
                {"list", sa_list},     {"ls", sa_list},    {"create", sa_create},
                {"delete", sa_delete}, {"rm", sa_delete},  {"token", sa_token},
        };
        return dispatch(ctx, argc, argv, "service-account", sa_usage, subs, ELEMENTSOF(subs));
}

static int token_create(struct cli_ctx *ctx, int argc, char **argv) {
        return token_issue(ctx, argc, argv, "token create");
}

static int token_revoke(struct cli_ctx *ctx, int argc, char **argv) {
        static const char *const names[] = {"SA", "TOKEN_ID", NULL};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "token revoke", sa_usage, NULL, names, 2, 2, pos, &npos)) >= 0)
                return r;
        if (!cli_valid_id(pos[1])) {
                cli_error("token revoke: \"%s\" is not a valid token id", pos[1]);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *id = resolve_sa(ctx, pos[0]);
        _cleanup_free_ char *path = NULL;
        if (!id || asprintf(&path, "/v1/service-accounts/%s/tokens/%s", id, pos[1]) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "DELETE", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:b}", "id", pos[1], "revoked", 1);
                cli_print_json(o);
        } else {
                printf("token %s revoked\n", pos[1]);
        }
        return CLI_EXIT_OK;
}

int cmd_token(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct cli_sub subs[] = {{"create", token_create}, {"revoke", token_revoke}};
        return dispatch(ctx, argc, argv, "token", sa_usage, subs, ELEMENTSOF(subs));
}

/* --------------------------------------------------------------- audit */

static const char audit_usage[] =
        "usage: paddock audit list [--from TIME] [--to TIME] [--after SEQ]\n"
        "       paddock audit verify\n"
        "\n"
        "The tenant's hash-chained audit log (tenant_admin).\n"
        "list     prints the records (all pages) with ts in [--from, --to), RFC 3339\n"
        "         times such as 2026-01-02T03:04:05Z, or after sequence number SEQ\n"
        "verify   checks the hash chain; exits 0 if it is intact, 1 if not\n";

static int audit_list(struct cli_ctx *ctx, int argc, char **argv) {
        const char *from = NULL, *to = NULL, *after = NULL;
        const struct cli_flag flags[] = {
                {.name = "from", .str = &from},
                {.name = "to", .str = &to},
                {.name = "after", .str = &after},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "audit list", audit_usage, flags, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        long long after_n = 0;
        if (after && !cli_parse_ll("--after", after, &after_n))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *efrom = from ? cli_url_escape(from) : NULL;
        _cleanup_free_ char *eto = to ? cli_url_escape(to) : NULL;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/v1/audit?after=%lld%s%s%s%s", after_n, efrom ? "&from=" : "", efrom ? efrom : "",
                     eto ? "&to=" : "", eto ? eto : "") < 0)
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *items = NULL;
        if (api_get_all(ctx, path, &items) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                print_items_json(items);
                return CLI_EXIT_OK;
        }
        _cleanup_json_ json_t *t = cli_table_new(6, "SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                char seq[24];
                _cleanup_free_ char *object = NULL;
                snprintf(seq, sizeof seq, "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(it, "seq")));
                const char *ot = json_string_value(json_object_get(it, "object_type"));
                const char *oid = json_string_value(json_object_get(it, "object_id"));
                if (asprintf(&object, "%s%s%s", ot ? ot : "", ot && oid && *oid ? ":" : "", oid ? oid : "") < 0)
                        return CLI_EXIT_FAIL;
                cli_table_add(t, seq, json_string_value(json_object_get(it, "ts")),
                              json_string_value(json_object_get(it, "actor")),
                              json_string_value(json_object_get(it, "action")), object,
                              json_string_value(json_object_get(it, "outcome")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int audit_verify(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "audit verify", audit_usage, NULL, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/audit/verify", &resp) < 0)
                return CLI_EXIT_FAIL;
        bool ok = json_is_true(json_object_get(resp.body, "ok"));
        if (ctx->json) {
                cli_print_json(resp.body);
        } else if (ok) {
                printf("audit chain OK: %" JSON_INTEGER_FORMAT " records verified, head hash %s\n",
                       json_integer_value(json_object_get(resp.body, "checked")),
                       json_string_value(json_object_get(resp.body, "head_hash")) ?: "-");
        } else {
                printf("audit chain BROKEN at seq %" JSON_INTEGER_FORMAT ": %s\n",
                       json_integer_value(json_object_get(resp.body, "first_bad_seq")),
                       json_string_value(json_object_get(resp.body, "reason")) ?: "unknown reason");
        }
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

int cmd_audit(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct cli_sub subs[] = {{"list", audit_list}, {"ls", audit_list}, {"verify", audit_verify}};
        return dispatch(ctx, argc, argv, "audit", audit_usage, subs, ELEMENTSOF(subs));
}

/* ------------------------------------------------------------------ oidc */

static const char oidc_usage[] =
        "usage: paddock oidc show\n"
        "       paddock oidc set --file CONFIG.json|-\n"
        "       paddock oidc delete\n"
        "\n"
        "The tenant's OIDC identity provider (tenant_admin). CONFIG.json:\n"
        "  {\"issuer\": \"https://idp.example.com\", \"audience\": \"paddock\",\n"
        "   \"jwks_url\": \"https://idp.example.com/jwks\", \"clock_skew_s\": 60,\n"
        "   \"username_claim\": \"preferred_username\",\n"
        "   \"role_mapping\": {\"claim\": \"groups\",\n"
        "                    \"map\": {\"admins\": {\"team\": \"*\", \"roles\": [\"tenant_admin\"]}}}}\n"
        "Users then log in with an ID or access token of that provider\n"
        "(POST /v1/auth/oidc); their roles come from the mapping at each login.\n";

static int oidc_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "oidc show", oidc_usage, NULL, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/tenant/oidc", &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

static int oidc_set(struct cli_ctx *ctx, int argc, char **argv) {
        const char *file = NULL;
        const struct cli_flag flags[] = {{"file", 'f', &file, NULL, NULL}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "oidc set", oidc_usage, flags, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        if (!file) {
                cli_error("oidc set: --file is required");
                return CLI_EXIT_USAGE;
        }
        _cleanup_json_ json_t *body = cli_load_json_object("oidc set", file);
        if (!body)
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "PUT", "/v1/tenant/oidc", body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("oidc provider %s set for the tenant\n",
                       json_string_value(json_object_get(resp.body, "issuer")) ?: "");
        return CLI_EXIT_OK;
}

static int oidc_delete(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_args(ctx, argc, argv, "oidc delete", oidc_usage, NULL, no_pos, 0, 0, pos, &npos)) >= 0)
                return r;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "DELETE", "/v1/tenant/oidc", NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (!ctx->json)
                printf("oidc provider removed\n");
        return CLI_EXIT_OK;
}

int cmd_oidc(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct cli_sub subs[] = {{"show", oidc_show}, {"set", oidc_set}, {"delete", oidc_delete}};
        return dispatch(ctx, argc, argv, "oidc", oidc_usage, subs, ELEMENTSOF(subs));
}
