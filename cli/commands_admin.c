/* Tenant administration: paddock me, team, user, grant, revoke, members,
 * service-account, token, audit and oidc. Teams, users and service accounts
 * are named by id or by name; names are turned into ids with the list
 * endpoints (cli_resolve_*), so scripts can use either. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/ids.h"

/* Path "/v1/<prefix>/<id><suffix>", malloc'd or NULL. */
static char *path_of(const char *prefix, const char *id, const char *suffix) {
        char *p = NULL;
        if (asprintf(&p, "/v1/%s/%s%s", prefix, id, suffix ? suffix : "") < 0)
                return NULL;
        return p;
}

/* What a `GROUP delete REF` command deletes. */
struct delete_target {
        char *(*resolve)(const struct cli_ctx *ctx, const char *ref);
        const char *collection; /* DELETE /v1/<collection>/<id> */
        const char *json_state; /* {"id": ..., <json_state>: true} with --json */
        const char *noun;       /* the line otherwise: "<noun> <id> <done>" */
        const char *done;
};

static int delete_by_ref(struct cli_ctx *ctx, int argc, char **argv, const struct delete_target *t) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
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

static int me_main(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
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
        printf("context:      %s\n", ctx->context ? ctx->context : "-");
        if (json_is_true(json_object_get(resp.body, "password_change_required")))
                printf("password:     must be changed before anything else: run `paddock passwd`\n");
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

const struct cli_command cli_cmd_me = {
        .name = "me",
        .alias = "whoami",
        .summary = "who am I: user, tenant, teams and roles",
        .description = "Also says which context is in use, and whether the password must be changed\n"
                       "first (`paddock passwd`).\n",
        .fn = me_main,
};

/* ---------------------------------------------------------------- team */

static int team_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, "/v1/teams", &items)) >= 0)
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
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
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
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
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
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
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
        static const struct delete_target t = {cli_resolve_team, "teams", "deleted", "team", "deleted"};
        return delete_by_ref(ctx, argc, argv, &t);
}

static const struct cli_command team_subs[] = {
        {.name = "list", .alias = "ls", .summary = "list the teams you can see (all of them for tenant_admin)",
         .fn = team_list},
        {.name = "create", .args = "NAME", .summary = "create a team (tenant_admin); prints its id",
         .fn = team_create},
        {.name = "show", .alias = "get", .args = "TEAM", .summary = "show a team and your roles in it",
         .fn = team_show},
        {.name = "rename", .args = "TEAM NEW_NAME", .summary = "rename a team (tenant_admin)", .fn = team_rename},
        {.name = "delete", .alias = "rm", .args = "TEAM",
         .summary = "delete a team with its members and secrets (tenant_admin)",
         .description = "A team that still has sandboxes or runs cannot be deleted (conflict).\n",
         .fn = team_delete},
        {0},
};

const struct cli_command cli_cmd_team = {
        .name = "team",
        .alias = "teams",
        .section = "Administration",
        .summary = "teams: list, create, show, rename, delete",
        .description = "TEAM is a team id or name.\n",
        .subs = team_subs,
};

/* ---------------------------------------------------------------- user */

static int user_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, "/v1/users", &items)) >= 0)
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

static int user_create(struct cli_ctx *ctx, int argc, char **argv) {
        _cleanup_json_ json_t *roles = json_array();
        bool pw_stdin = false;
        const struct cli_bind binds[] = {
                {.name = "tenant-role", .list = roles},
                {.name = "password-stdin", .set = &pw_stdin},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
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
        _cleanup_(cli_secret_freep) char *password = NULL;
        if (pw_stdin) {
                password = cli_read_line();
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
                fprintf(stderr, "note: the one-time password above is shown only now; the user must change it "
                                "at the first login (`paddock passwd`)\n");
        }
        return CLI_EXIT_OK;
}

/* PATCH /v1/users/{id} {field: value}; done says what that did. */
static int user_patch(struct cli_ctx *ctx, int argc, char **argv, const char *field, bool value, const char *done) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *id = cli_resolve_user(ctx, pos[0]);
        _cleanup_free_ char *path = id ? path_of("users", id, NULL) : NULL;
        _cleanup_json_ json_t *body = json_pack("{s:b}", field, value);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || !body || api_request(ctx, "PATCH", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("user %s %s\n", json_string_value(json_object_get(resp.body, "username")) ?: id, done);
        return CLI_EXIT_OK;
}

static int user_disable(struct cli_ctx *ctx, int argc, char **argv) {
        return user_patch(ctx, argc, argv, "disabled", true, "disabled (its tokens are revoked)");
}

static int user_enable(struct cli_ctx *ctx, int argc, char **argv) {
        return user_patch(ctx, argc, argv, "disabled", false, "enabled");
}

static int user_promote(struct cli_ctx *ctx, int argc, char **argv) {
        return user_patch(ctx, argc, argv, "tenant_admin", true, "is a tenant_admin now");
}

static int user_demote(struct cli_ctx *ctx, int argc, char **argv) {
        return user_patch(ctx, argc, argv, "tenant_admin", false, "is no longer a tenant_admin");
}

static int user_delete(struct cli_ctx *ctx, int argc, char **argv) {
        static const struct delete_target t = {cli_resolve_user, "users", "deleted", "user", "deleted"};
        return delete_by_ref(ctx, argc, argv, &t);
}

static const struct cli_command user_subs[] = {
        {.name = "list", .alias = "ls", .summary = "list the tenant's users", .fn = user_list},
        {.name = "create",
         .args = "USERNAME",
         .summary = "create a user; prints its id and one-time password",
         .description =
                 "Unless --password-stdin gives one, the API generates a one-time password, shown\n"
                 "only this once (hand it over safely); the user must change it at the first\n"
                 "login (`paddock passwd`). --tenant-role tenant_admin makes the user an\n"
                 "administrator of the whole tenant; team roles are given with `paddock grant`.\n",
         .options = (const struct cli_option[]){{"tenant-role", 0, "ROLE", "a tenant role: tenant_admin"},
                                                {"password-stdin", 0, NULL, "read the password from stdin"},
                                                {0}},
         .fn = user_create},
        {.name = "disable", .args = "USER", .summary = "block logins and revoke every token of the user at once",
         .fn = user_disable},
        {.name = "enable", .args = "USER", .summary = "allow logins again (revoked tokens stay revoked)",
         .fn = user_enable},
        {.name = "promote", .args = "USER", .summary = "make the user a tenant_admin (of the whole tenant)",
         .fn = user_promote},
        {.name = "demote", .args = "USER", .summary = "take tenant_admin away (its team roles stay)",
         .fn = user_demote},
        {.name = "delete", .alias = "rm", .args = "USER", .summary = "delete a user who authored nothing (else disable it)",
         .fn = user_delete},
        {0},
};

const struct cli_command cli_cmd_user = {
        .name = "user",
        .alias = "users",
        .summary = "users: list, create, disable, enable, promote, demote, delete",
        .description = "USER is a user id or username; all of these need tenant_admin.\n",
        .subs = user_subs,
};

/* ------------------------------------------------- grant, revoke, members */

/* Appends each comma-separated role of s to list. */
static void add_roles(json_t *list, const char *s) {
        _cleanup_free_ char *copy = strdup(s);
        char *save = NULL;
        for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save))
                json_array_append_new(list, json_string(tok));
}

/* Prints what a PUT/PATCH of a membership changed. */
static void print_grant(const char *user_ref, const char *team_ref, json_t *answer) {
        json_t *roles = json_object_get(answer, "roles");
        _cleanup_free_ char *now = cli_join(roles);
        _cleanup_free_ char *added = cli_join(json_object_get(answer, "added"));
        _cleanup_free_ char *removed = cli_join(json_object_get(answer, "removed"));
        if (json_array_size(roles) == 0)
                printf("%s removed from team %s\n", user_ref, team_ref);
        else
                printf("%s in team %s: %s\n", user_ref, team_ref, now ? now : "?");
        if (json_array_size(json_object_get(answer, "added")) == 0 &&
            json_array_size(json_object_get(answer, "removed")) == 0) {
                printf("  unchanged\n");
                return;
        }
        printf("  added:   %s\n", added ? added : "-");
        printf("  removed: %s\n", removed ? removed : "-");
}

/* PUT (set) or PATCH (add/remove) /v1/teams/{team}/members/{user}. */
static int change_roles(struct cli_ctx *ctx, const char *team_ref, const char *user_ref, const char *method,
                        json_t *body) {
        _cleanup_free_ char *team = cli_resolve_team(ctx, team_ref);
        if (!team)
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *user = cli_resolve_user(ctx, user_ref);
        if (!user)
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/v1/teams/%s/members/%s", team, user) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, method, path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        /* 204: a PUT of no role removed the membership, and said nothing more */
        if (!resp.body) {
                resp.body = json_pack("{s:s, s:s, s:[], s:[], s:[]}", "team", team, "user", user, "roles", "added",
                                      "removed");
                if (!resp.body)
                        return CLI_EXIT_FAIL;
        }
        if (ctx->json)
                cli_print_json(resp.body);
        else
                print_grant(user_ref, team_ref, resp.body);
        return CLI_EXIT_OK;
}

static int grant_main(struct cli_ctx *ctx, int argc, char **argv) {
        _cleanup_json_ json_t *add = json_array(), *remove = json_array(), *roles = json_array();
        const struct cli_bind binds[] = {
                {.name = "add", .list = add},
                {.name = "remove", .list = remove},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if (!add || !remove || !roles)
                return CLI_EXIT_FAIL;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        /* commas are a convenience: `grant T U launcher,viewer`, `--add a,b` */
        for (int i = 2; i < npos; i++)
                add_roles(roles, pos[i]);
        _cleanup_json_ json_t *adds = json_array(), *removes = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(add, i, v) add_roles(adds, json_string_value(v));
        json_array_foreach(remove, i, v) add_roles(removes, json_string_value(v));
        bool patch = json_array_size(add) > 0 || json_array_size(remove) > 0;
        if (patch && npos > 2) {
                cli_error("grant: either ROLE... (sets exactly those roles) or --add/--remove (changes some), "
                          "not both");
                return CLI_EXIT_USAGE;
        }
        if (!patch && json_array_size(roles) == 0) {
                cli_error("grant: missing argument ROLE (or --add ROLE / --remove ROLE; to remove a member use "
                          "`paddock revoke TEAM USER`)");
                cli_usage_print(stderr, ctx->group, ctx->cmd);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *body = patch ? json_pack("{s:O, s:O}", "add", adds, "remove", removes)
                                            : json_pack("{s:O}", "roles", roles);
        if (!body)
                return CLI_EXIT_FAIL;
        return change_roles(ctx, pos[0], pos[1], patch ? "PATCH" : "PUT", body);
}

const struct cli_command cli_cmd_grant = {
        .name = "grant",
        .args = "TEAM USER [ROLE...]",
        .summary = "set or change a user's roles in a team; prints what changed",
        .description =
                "`grant TEAM USER ROLE...` sets USER's roles in TEAM to exactly ROLE... (the\n"
                "others go); `grant TEAM USER --add ROLE --remove ROLE` changes only those.\n"
                "Either way it prints the roles USER now has and which were added and removed.\n"
                "Roles (commas work too: launcher,viewer): tenant_admin, security_admin,\n"
                "sandbox_author, launcher, approver, reviewer, viewer. TEAM is a team id or\n"
                "name, USER a user or service account id or name. Needs tenant_admin.\n",
        .options = (const struct cli_option[]){{"add", 'a', "ROLE", "give ROLE (repeatable)"},
                                               {"remove", 'r', "ROLE", "take ROLE away (repeatable)"},
                                               {0}},
        .fn = grant_main,
};

static int revoke_main(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *body = json_pack("{s:[]}", "roles");
        return body ? change_roles(ctx, pos[0], pos[1], "PUT", body) : CLI_EXIT_FAIL;
}

const struct cli_command cli_cmd_revoke = {
        .name = "revoke",
        .args = "TEAM USER",
        .summary = "remove a user from a team (every role)",
        .fn = revoke_main,
};

static int members_main(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *team = cli_resolve_team(ctx, pos[0]);
        _cleanup_free_ char *path = team ? path_of("teams", team, "/members") : NULL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, path, &items)) >= 0)
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

const struct cli_command cli_cmd_members = {
        .name = "members",
        .args = "TEAM",
        .summary = "list a team's members and their roles",
        .fn = members_main,
};

/* ------------------------------------------------ service accounts, tokens */

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
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, "/v1/service-accounts", &items)) >= 0)
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
                /* the API's count: revoked and expired tokens are not active */
                char nactive[24];
                snprintf(nactive, sizeof nactive, "%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(it, "active_tokens")));
                cli_table_add(t, json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "name")),
                              json_is_true(json_object_get(it, "disabled")) ? "disabled" : "active", teams, nactive);
                free(teams);
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int sa_create(struct cli_ctx *ctx, int argc, char **argv) {
        _cleanup_json_ json_t *roles = json_array();
        const char *team = NULL;
        const struct cli_bind binds[] = {
                {.name = "team", .str = &team},
                {.name = "role", .list = roles},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
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
        static const struct delete_target t = {resolve_sa, "service-accounts", "disabled", "service account",
                                               "disabled, its tokens revoked"};
        return delete_by_ref(ctx, argc, argv, &t);
}

static int token_issue(struct cli_ctx *ctx, int argc, char **argv) {
        const char *name = "cli", *expires = NULL;
        const struct cli_bind binds[] = {
                {.name = "name", .str = &name},
                {.name = "expires-in", .str = &expires},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long ttl = 0;
        if (expires && !cli_parse_ll("--expires-in", expires, &ttl))
                return CLI_EXIT_USAGE;
        if (expires && ttl < 1) {
                cli_error("%s: --expires-in: must be at least 1 second", ctx->what);
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

static const struct cli_option token_issue_options[] = {
        {"name", 'n', "NAME", "the token's name (default \"cli\")"},
        {"expires-in", 0, "SECONDS", "lifetime in seconds (default: the API's)"},
        {0},
};

static const char token_issue_description[] =
        "Prints the token's id, the token and when it expires. The token is shown only\n"
        "this once; use it as PADDOCK_TOKEN, or save it with `paddock login --token-stdin`.\n"
        "An expired token stops working: issue a new one (a service account cannot log in).\n";

static const struct cli_command sa_subs[] = {
        {.name = "list", .alias = "ls", .summary = "list the service accounts and how many tokens each has active",
         .fn = sa_list},
        {.name = "create",
         .args = "NAME",
         .summary = "create a service account; prints its id",
         .description = "With --team it becomes a member of TEAM with the --role ROLEs (default viewer).\n",
         .options = (const struct cli_option[]){{"team", 't', "TEAM", "a team to make it a member of"},
                                                {"role", 0, "ROLE", "its role in that team (repeatable)"},
                                                {0}},
         .fn = sa_create},
        {.name = "delete", .alias = "rm", .args = "SA",
         .summary = "disable it and revoke its tokens (runs and audit records keep its name)", .fn = sa_delete},
        {.name = "token", .args = "SA", .summary = "issue an API token (the same as `paddock token create SA`)",
         .description = token_issue_description, .options = token_issue_options, .fn = token_issue},
        {0},
};

const struct cli_command cli_cmd_service_account = {
        .name = "service-account",
        .alias = "service-accounts",
        .summary = "service accounts for automation: list, create, delete, token",
        .description = "Service accounts are users for automation that log in with API tokens only;\n"
                       "all of this needs tenant_admin. SA is a service account id or name.\n",
        .subs = sa_subs,
};

static int token_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *id = resolve_sa(ctx, pos[0]);
        _cleanup_json_ json_t *all = NULL;
        if (!id || api_get_all(ctx, "/v1/service-accounts", &all) < 0)
                return CLI_EXIT_FAIL;
        json_t *tokens = NULL;
        size_t i;
        json_t *it;
        json_array_foreach(all, i, it) {
                const char *sid = json_string_value(json_object_get(it, "id"));
                if (sid && strcmp(sid, id) == 0)
                        tokens = json_object_get(it, "tokens");
        }
        if (!tokens) {
                cli_error("no service account %s (not_found)", id);
                return CLI_EXIT_FAIL;
        }
        if (ctx->json) {
                cli_print_list(tokens, NULL);
                return CLI_EXIT_OK;
        }
        _cleanup_json_ json_t *t = cli_table_new(5, "ID", "NAME", "STATE", "EXPIRES", "CREATED");
        json_array_foreach(tokens, i, it) {
                cli_table_add(t, json_string_value(json_object_get(it, "id")),
                              json_string_value(json_object_get(it, "name")),
                              json_string_value(json_object_get(it, "state")),
                              json_string_value(json_object_get(it, "expires_at")),
                              json_string_value(json_object_get(it, "created_at")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int token_revoke(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
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

static const struct cli_command token_subs[] = {
        {.name = "create", .args = "SA", .summary = "issue an API token for a service account",
         .description = token_issue_description, .options = token_issue_options, .fn = token_issue},
        {.name = "list", .alias = "ls", .args = "SA",
         .summary = "list a service account's tokens: active, expired or revoked", .fn = token_list},
        {.name = "revoke", .args = "SA TOKEN_ID", .summary = "revoke one token at once", .fn = token_revoke},
        {0},
};

const struct cli_command cli_cmd_token = {
        .name = "token",
        .alias = "tokens",
        .summary = "API tokens of service accounts: create, list, revoke",
        .description = "SA is a service account id or name; all of this needs tenant_admin.\n",
        .subs = token_subs,
};

/* --------------------------------------------------------------- audit */

static int audit_list(struct cli_ctx *ctx, int argc, char **argv) {
        const char *from = NULL, *to = NULL, *after = NULL, *actor = NULL, *action = NULL, *object_type = NULL,
                   *object_id = NULL, *outcome = NULL;
        const struct cli_bind binds[] = {
                {.name = "from", .str = &from},
                {.name = "to", .str = &to},
                {.name = "after", .str = &after},
                {.name = "actor", .str = &actor},
                {.name = "action", .str = &action},
                {.name = "object-type", .str = &object_type},
                {.name = "object-id", .str = &object_id},
                {.name = "outcome", .str = &outcome},
                {0},
        };
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        long long after_n = 0;
        if (after && !cli_parse_ll("--after", after, &after_n))
                return CLI_EXIT_USAGE;
        if (outcome && strcmp(outcome, "success") && strcmp(outcome, "failure")) {
                cli_error("usage: --outcome: unknown value \"%s\" (one of success, failure)", outcome);
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        char after_s[24];
        snprintf(after_s, sizeof after_s, "%lld", after_n);
        _cleanup_free_ char *query = NULL, *path = NULL;
        if (cli_query_add(&query, "after", after_s) < 0 || cli_query_add(&query, "from", from) < 0 ||
            cli_query_add(&query, "to", to) < 0 || cli_query_add(&query, "actor", actor) < 0 ||
            cli_query_add(&query, "action", action) < 0 || cli_query_add(&query, "object_type", object_type) < 0 ||
            cli_query_add(&query, "object_id", object_id) < 0 || cli_query_add(&query, "outcome", outcome) < 0 ||
            asprintf(&path, "/v1/audit?%s", query) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, path, &items)) >= 0)
                return r;
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
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
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

static const struct cli_command audit_subs[] = {
        {.name = "list",
         .alias = "ls",
         .summary = "print the audit records (all pages)",
         .description = "TIMEs are RFC 3339, such as 2026-01-02T03:04:05Z; records with ts in\n"
                        "[--from, --to) or after sequence number SEQ. The other filters match exactly.\n",
         .options = (const struct cli_option[]){{"from", 0, "TIME", "records at or after TIME"},
                                                {"to", 0, "TIME", "records before TIME"},
                                                {"after", 0, "SEQ", "records after sequence number SEQ"},
                                                {"actor", 0, "ACTOR", "records of ACTOR (user:<id>, service:<name>)"},
                                                {"action", 0, "ACTION", "records of ACTION (e.g. run.launch)"},
                                                {"object-type", 0, "TYPE", "records about objects of TYPE"},
                                                {"object-id", 0, "ID", "records about the object ID"},
                                                {"outcome", 0, "OUTCOME", "success or failure"},
                                                {0}},
         .fn = audit_list},
        {.name = "verify", .summary = "check the hash chain; exits 0 if it is intact, 1 if not", .fn = audit_verify},
        {0},
};

const struct cli_command cli_cmd_audit = {
        .name = "audit",
        .summary = "the tenant's hash-chained audit log: list, verify",
        .description = "Needs tenant_admin or the auditor tenant role.\n",
        .subs = audit_subs,
};

/* ------------------------------------------------------------------ oidc */

static int oidc_show(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/tenant/oidc", &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

static int oidc_set(struct cli_ctx *ctx, int argc, char **argv) {
        const char *file = NULL, *secret_file = NULL;
        bool secret_stdin = false, clear_secret = false;
        const struct cli_bind binds[] = {{.name = "file", .str = &file},
                                         {.name = "client-secret-file", .str = &secret_file},
                                         {.name = "client-secret-stdin", .set = &secret_stdin},
                                         {.name = "clear-client-secret", .set = &clear_secret},
                                         {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!file) {
                cli_error("oidc set: --file is required");
                return CLI_EXIT_USAGE;
        }
        if ((secret_file != NULL) + secret_stdin + clear_secret > 1 || (secret_stdin && !strcmp(file, "-"))) {
                cli_error("oidc set: give one of --client-secret-file, --client-secret-stdin and "
                          "--clear-client-secret (and --client-secret-stdin only with --file not -)");
                return CLI_EXIT_USAGE;
        }
        _cleanup_json_ json_t *body = cli_load_json_object("oidc set", file);
        if (!body)
                return CLI_EXIT_USAGE;
        if (json_object_get(body, "client_secret")) {
                cli_error("oidc set: %s: client_secret is never taken from the configuration file: use "
                          "--client-secret-file or --client-secret-stdin", file);
                return CLI_EXIT_USAGE;
        }
        _cleanup_(cli_secret_done) struct cli_secret secret = {0};
        if ((secret_file || secret_stdin) && (r = cli_read_secret(ctx, secret_file, "the client secret", &secret)) >= 0)
                return r;
        if (secret.data && json_object_set_new(body, "client_secret", json_stringn(secret.data, secret.len)) < 0) {
                cli_error("oidc set: the client secret is not valid UTF-8 text");
                return CLI_EXIT_USAGE;
        }
        if (clear_secret && json_object_set_new(body, "client_secret", json_null()) < 0)
                return CLI_EXIT_FAIL;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        r = api_request(ctx, "PUT", "/v1/tenant/oidc", body, NULL, &resp);
        /* the body holds the secret: wipe the copy jansson made */
        if (secret.data)
                json_object_set_new(body, "client_secret", json_string(""));
        if (r < 0)
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
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "DELETE", "/v1/tenant/oidc", NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:b}", "deleted", 1);
                cli_print_json(o);
        } else {
                printf("oidc provider removed\n");
        }
        return CLI_EXIT_OK;
}

static const struct cli_command oidc_subs[] = {
        {.name = "show", .summary = "print the tenant's OIDC provider as JSON", .fn = oidc_show},
        {.name = "set",
         .summary = "set the tenant's OIDC provider and role mapping from a file",
         .description =
                 "FILE (- for stdin):\n"
                 "  {\"issuer\": \"https://idp.example.com\", \"audience\": \"paddock\",\n"
                 "   \"jwks_url\": \"https://idp.example.com/jwks\", \"clock_skew_s\": 60,\n"
                 "   \"username_claim\": \"preferred_username\",\n"
                 "   \"role_mapping\": {\"claim\": \"groups\",\n"
                 "                    \"map\": {\"admins\": {\"team\": \"*\", \"roles\": [\"tenant_admin\"]}}}}\n"
                 "Users then log in with an ID or access token of that provider\n"
                 "(POST /v1/auth/oidc); their roles come from the mapping at each login.\n"
                 "The dashboard's sign-in is a public client (PKCE) unless the provider\n"
                 "wants a client secret: --client-secret-file F or --client-secret-stdin\n"
                 "give it (never on the command line; stored sealed, never shown: `oidc\n"
                 "show` says client_secret_set). Without either it is kept while issuer\n"
                 "and audience stay the same; --clear-client-secret removes it.\n",
         .options = (const struct cli_option[]){{"file", 'f', "FILE", "the provider's configuration (required)"},
                                                {"client-secret-file", 0, "F", "the client secret, read from F"},
                                                {"client-secret-stdin", 0, NULL, "the client secret, read from stdin"},
                                                {"clear-client-secret", 0, NULL, "remove the client secret"},
                                                {0}},
         .fn = oidc_set},
        {.name = "delete", .summary = "remove the tenant's OIDC provider", .fn = oidc_delete},
        {0},
};

const struct cli_command cli_cmd_oidc = {
        .name = "oidc",
        .summary = "the tenant's OIDC identity provider: show, set, delete",
        .description = "Needs tenant_admin.\n",
        .subs = oidc_subs,
};

/* ------------------------------------------------------------------ identity */

/* The tenant id a workload identity command is about: the positional one,
 * else the logged-in caller's (GET /v1/me). */
static int identity_tenant(struct cli_ctx *ctx, const char *cmd, int npos, char **pos, char *out, size_t size) {
        if (npos > 1) {
                cli_error("identity %s: at most one TENANT_ID", cmd);
                return CLI_EXIT_USAGE;
        }
        if (npos == 1) {
                snprintf(out, size, "%s", pos[0]);
                return -1;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/me", &resp) < 0)
                return CLI_EXIT_FAIL;
        snprintf(out, size, "%s", json_string_value(json_object_get(json_object_get(resp.body, "tenant"), "id")) ?: "");
        return -1;
}

static int identity_get(struct cli_ctx *ctx, int argc, char **argv, const char *cmd, const char *suffix) {
        char *pos[CLI_MAX_POS], tenant[128], path[256];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if ((r = identity_tenant(ctx, cmd, npos, pos, tenant, sizeof tenant)) >= 0)
                return r;
        snprintf(path, sizeof path, "/v1/tenants/%s/oidc%s", tenant, suffix);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, path, &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

static int identity_discovery(struct cli_ctx *ctx, int argc, char **argv) {
        return identity_get(ctx, argc, argv, "discovery", "/.well-known/openid-configuration");
}

static int identity_jwks(struct cli_ctx *ctx, int argc, char **argv) {
        return identity_get(ctx, argc, argv, "jwks", "/jwks");
}

static int identity_rotate(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "POST", "/v1/tenant/workload-identity/rotate", NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("workload identity signing key %s\n", json_string_value(json_object_get(resp.body, "kid")) ?: "");
        return CLI_EXIT_OK;
}

/* The token comes on stdin, never on the command line (ps shows that). */
static int identity_introspect(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS], tenant[128], path[256];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if ((r = identity_tenant(ctx, "introspect", npos, pos, tenant, sizeof tenant)) >= 0)
                return r;
        _cleanup_(cli_secret_freep) char *token = cli_read_line();
        if (!token || !*token) {
                cli_error("identity introspect: no token on stdin");
                return CLI_EXIT_USAGE;
        }
        _cleanup_json_ json_t *body = json_pack("{s:s}", "token", token);
        if (!body)
                return CLI_EXIT_FAIL;
        snprintf(path, sizeof path, "/v1/tenants/%s/oidc/introspect", tenant);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "POST", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        cli_print_json(resp.body);
        return json_is_true(json_object_get(resp.body, "active")) ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static const struct cli_command identity_subs[] = {
        {.name = "discovery",
         .summary = "print the tenant's workload identity OIDC discovery document",
         .args = "[TENANT_ID]",
         .description = "TENANT_ID defaults to the logged-in user's tenant; no login is needed with it.\n",
         .fn = identity_discovery},
        {.name = "jwks",
         .summary = "print the public keys that sign the tenant's workload identity tokens",
         .args = "[TENANT_ID]",
         .description = "TENANT_ID defaults to the logged-in user's tenant; no login is needed with it.\n",
         .fn = identity_jwks},
        {.name = "introspect",
         .summary = "is a workload identity token (on stdin) active: signed by the tenant, unexpired, its run not ended",
         .args = "[TENANT_ID]",
         .description = "Prints the RFC 7662 answer; exit 0 when active, 1 when not. TENANT_ID defaults\n"
                        "to the logged-in user's tenant; no login is needed with it.\n",
         .fn = identity_introspect},
        {.name = "rotate",
         .summary = "make a new signing key now (the previous one stays published one more period)",
         .description = "Needs tenant_admin.\n",
         .fn = identity_rotate},
        {0},
};

const struct cli_command cli_cmd_identity = {
        .name = "identity",
        .summary = "workload identity of runs (the api as OIDC issuer): discovery, jwks, introspect, rotate",
        .description = "Issuer: <api public URL>/v1/tenants/<tenant id>/oidc. Cloud IAM trusts runs'\n"
                       "tokens (spec.identity) through the discovery document and keys.\n",
        .subs = identity_subs,
};
