/* paddock secret set / list / delete: a team's write-only secrets.
 *
 * A value is read from stdin, a terminal prompt that does not echo, or a
 * file; never from the command line, where the process list and the shell
 * history would show it. No output or error of these commands carries it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* The API's limit (PUT /v1/teams/{id}/secrets/{name}). */
#define SECRET_VALUE_MAX (64 * 1024)

void cli_secret_done(struct cli_secret *b) {
        if (b->data) {
                explicit_bzero(b->data, b->len);
                free(b->data);
        }
        *b = (struct cli_secret){0};
}

/* Reads all of fd, up to one byte more than the limit (to tell "too long"). */
static int read_all(int fd, struct cli_secret *ret) {
        size_t cap = SECRET_VALUE_MAX + 2;
        ret->data = malloc(cap);
        ret->len = 0;
        if (!ret->data)
                return -ENOMEM;
        while (ret->len < cap - 1) {
                ssize_t n = read(fd, ret->data + ret->len, cap - 1 - ret->len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                ret->len += (size_t)n;
        }
        ret->data[ret->len] = '\0';
        return 0;
}

int cli_read_secret(const struct cli_ctx *ctx, const char *file, const char *name, struct cli_secret *ret) {
        int r;
        if (file) {
                _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        cli_error("%s: --from-file %s: %s", ctx->what, file, strerror(errno));
                        return CLI_EXIT_USAGE;
                }
                r = read_all(fd, ret);
                if (r < 0) {
                        cli_error("%s: --from-file %s: %s", ctx->what, file, strerror(-r));
                        return CLI_EXIT_USAGE;
                }
        } else if (isatty(STDIN_FILENO)) {
                _cleanup_free_ char *prompt = NULL;
                if (asprintf(&prompt, "value of %s (not echoed): ", name) < 0)
                        return CLI_EXIT_FAIL;
                ret->data = cli_prompt_hidden(prompt);
                ret->len = ret->data ? strlen(ret->data) : 0;
        } else {
                r = read_all(STDIN_FILENO, ret);
                if (r < 0) {
                        cli_error("%s: could not read stdin: %s", ctx->what, strerror(-r));
                        return CLI_EXIT_USAGE;
                }
                /* `echo value |` and here-strings end with a newline that is no part of it */
                if (ret->len > 0 && ret->data[ret->len - 1] == '\n')
                        ret->data[--ret->len] = '\0';
                if (ret->len > 0 && ret->data[ret->len - 1] == '\r')
                        ret->data[--ret->len] = '\0';
        }
        const char *from = file ? "the file" : "stdin";
        if (!ret->data || ret->len == 0) {
                cli_error("%s: the value on %s is empty", ctx->what, from);
                return CLI_EXIT_USAGE;
        }
        if (ret->len > SECRET_VALUE_MAX) {
                cli_error("%s: the value on %s is longer than %d bytes", ctx->what, from, SECRET_VALUE_MAX);
                return CLI_EXIT_USAGE;
        }
        if (memchr(ret->data, '\0', ret->len)) {
                cli_error("%s: the value on %s contains a NUL byte", ctx->what, from);
                return CLI_EXIT_USAGE;
        }
        return -1;
}

/* The positional arguments of `secret set` before cli_parse() sees them: a
 * third one is a value given on the command line, refused without echoing
 * it (cli_parse would quote it as unexpected). */
static bool value_on_command_line(int argc, char **argv) {
        int npos = 0;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (strcmp(a, "--") == 0) {
                        npos += argc - i - 1;
                        break;
                }
                if (strcmp(a, "--from-file") == 0 || strcmp(a, "-f") == 0) {
                        i++;
                        continue;
                }
                if (a[0] == '-' && a[1])
                        continue;
                npos++;
        }
        return npos > 2;
}

static char *secret_path(const char *team, const char *name) {
        _cleanup_free_ char *t = cli_url_escape(team), *n = name ? cli_url_escape(name) : NULL;
        char *p = NULL;
        if (!t || (name && !n) || asprintf(&p, "/v1/teams/%s/secrets%s%s", t, name ? "/" : "", name ? n : "") < 0)
                return NULL;
        return p;
}

static int secret_set(struct cli_ctx *ctx, int argc, char **argv) {
        if (value_on_command_line(argc, argv)) {
                cli_error("secret set: a secret value is never taken from the command line, where the process "
                          "list and the shell history show it: pipe it on stdin or use --from-file FILE");
                cli_usage_print(stderr, ctx->group, ctx->cmd);
                return CLI_EXIT_USAGE;
        }
        const char *file = NULL;
        const struct cli_bind binds[] = {{.name = "from-file", .str = &file}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        _cleanup_(cli_secret_done) struct cli_secret value = {0};
        if ((r = cli_read_secret(ctx, file, pos[1], &value)) >= 0)
                return r;
        _cleanup_json_ json_t *body = json_object();
        json_t *v = json_stringn(value.data, value.len);
        if (!v) {
                cli_error("secret set: the value is not valid UTF-8 text");
                return CLI_EXIT_USAGE;
        }
        if (!body || json_object_set_new(body, "value", v) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = secret_path(pos[0], pos[1]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        r = path ? api_request(ctx, "PUT", path, body, NULL, &resp) : -ENOMEM;
        /* the body holds the value: wipe the copy jansson made */
        json_object_set_new(body, "value", json_string(""));
        if (r < 0)
                return CLI_EXIT_FAIL;
        bool created = resp.status == 201;
        if (ctx->json) {
                _cleanup_json_ json_t *o =
                        json_pack("{s:s, s:s, s:b}", "team", pos[0], "name", pos[1], "created", created);
                cli_print_json(o);
        } else {
                printf("secret %s %s in team %s\n", pos[1], created ? "created" : "replaced", pos[0]);
        }
        return CLI_EXIT_OK;
}

static int secret_list(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *path = secret_path(pos[0], NULL);
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, path, &items)) >= 0)
                return r;
        _cleanup_json_ json_t *t = cli_table_new(4, "NAME", "CREATED", "UPDATED", "UPDATED BY");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                cli_table_add(t, json_string_value(json_object_get(it, "name")),
                              json_string_value(json_object_get(it, "created_at")),
                              json_string_value(json_object_get(it, "updated_at")),
                              json_string_value(json_object_get(it, "updated_by")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

static int secret_delete(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_free_ char *path = secret_path(pos[0], pos[1]);
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!path || api_request(ctx, "DELETE", path, NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                _cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:b}", "team", pos[0], "name", pos[1], "deleted", 1);
                cli_print_json(o);
        } else {
                printf("secret %s deleted from team %s\n", pos[1], pos[0]);
        }
        return CLI_EXIT_OK;
}

static const struct cli_command secret_subs[] = {
        {.name = "set", .args = "TEAM NAME", .summary = "create or replace a secret; the value comes from stdin",
         .description =
                 "The value is read from stdin: typed at a prompt that does not echo on a\n"
                 "terminal, else all of stdin less one trailing newline (`printf %s \"$V\" |`,\n"
                 "`echo \"$V\" |` and `< file` all work). --from-file FILE takes the file's bytes\n"
                 "exactly. Never on the command line: other users can read the process list and\n"
                 "the shell keeps a history. UTF-8 text without NUL, up to 64 KiB.\n"
                 "NAME is upper case: [A-Z_][A-Z0-9_]*. Needs sandbox_author in TEAM.\n",
         .options = (const struct cli_option[]){{"from-file", 'f', "FILE", "read the value from FILE, as it is"},
                                                {0}},
         .fn = secret_set},
        {.name = "list", .alias = "ls", .args = "TEAM", .summary = "list the team's secrets: names and dates, never values",
         .fn = secret_list},
        {.name = "delete", .alias = "rm", .args = "TEAM NAME", .summary = "delete a secret (sandbox_author)",
         .fn = secret_delete},
        {0},
};

const struct cli_command cli_cmd_secret = {
        .name = "secret",
        .alias = "secrets",
        .summary = "a team's write-only secrets: set, list, delete",
        .description = "TEAM is a team id or name. Runs get a secret sealed to them when their sandbox\n"
                       "definition names it (spec \"secrets\"); no command or endpoint ever shows a value.\n",
        .subs = secret_subs,
};
