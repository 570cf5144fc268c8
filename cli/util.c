/* Helpers the command groups share: option parsing against the command
 * table, prompts for secrets, JSON input files, paginated lists, aligned
 * tables, and turning the names people type into the ids the API wants. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "core/ids.h"

#define CLI_MAX_FLAGS 16
/* Pages a list command follows before it concludes the server loops. */

/* The positional arguments a synopsis names: "TEAM USER [ROLE...]" gives
 * TEAM, USER, ROLE; two required, the last repeating. */
struct positionals {
        char buf[256];
        const char *names[CLI_MAX_POS];
        int n, min, max;
};

static void positionals_parse(const char *synopsis, struct positionals *p) {
        *p = (struct positionals){.max = 0};
        snprintf(p->buf, sizeof p->buf, "%s", synopsis ? synopsis : "");
        char *save = NULL;
        for (char *tok = strtok_r(p->buf, " ", &save); tok && p->n < CLI_MAX_POS; tok = strtok_r(NULL, " ", &save)) {
                bool optional = tok[0] == '[';
                while (*tok == '[')
                        tok++;
                size_t len = strlen(tok);
                while (len > 0 && tok[len - 1] == ']')
                        tok[--len] = '\0';
                bool repeat = len > 3 && strcmp(tok + len - 3, "...") == 0;
                if (repeat)
                        tok[len - 3] = '\0';
                p->names[p->n++] = tok;
                if (!optional)
                        p->min = p->n;
                p->max = repeat ? CLI_MAX_POS : p->n;
        }
}

/* A binding or an option that does not match the table is a bug of the
 * command's code: say which, loudly. */
_Noreturn static void binding_bug(const struct cli_ctx *ctx, const char *name, const char *why) {
        fprintf(stderr, "paddock: internal error: option --%s of `paddock %s` %s\n", name, ctx->what, why);
        abort();
}

int cli_parse(struct cli_ctx *ctx, int argc, char **argv, const struct cli_bind *binds, char **ret_pos,
              int *ret_npos) {
        const struct cli_option *doc = ctx->cmd->options;
        struct option opts[CLI_MAX_FLAGS + 1] = {{0}};
        const struct cli_bind *bound[CLI_MAX_FLAGS] = {0};
        char shorts[2 * CLI_MAX_FLAGS + 2] = ":";
        size_t n = 0, ns = 1;
        int c, idx;

        for (; doc && doc[n].name; n++) {
                if (n >= CLI_MAX_FLAGS)
                        binding_bug(ctx, doc[n].name, "is one too many (CLI_MAX_FLAGS)");
                for (const struct cli_bind *b = binds; b && b->name && !bound[n]; b++)
                        if (strcmp(b->name, doc[n].name) == 0)
                                bound[n] = b;
                if (!bound[n])
                        binding_bug(ctx, doc[n].name, "is documented but not bound");
                if (!!doc[n].arg != !bound[n]->set)
                        binding_bug(ctx, doc[n].name, "takes a value in the table but not in the code, or back");
                opts[n] = (struct option){doc[n].name, doc[n].arg ? required_argument : no_argument, NULL,
                                          0x100 + (int)n};
                if (doc[n].key) {
                        shorts[ns++] = doc[n].key;
                        if (doc[n].arg)
                                shorts[ns++] = ':';
                        shorts[ns] = '\0';
                }
        }
        for (const struct cli_bind *b = binds; b && b->name; b++) {
                bool found = false;
                for (size_t i = 0; i < n && !found; i++)
                        found = strcmp(doc[i].name, b->name) == 0;
                if (!found)
                        binding_bug(ctx, b->name, "is bound but not in the command table");
        }

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, shorts, opts, &idx)) != -1) {
                size_t i = n;
                if (c >= 0x100 && c < 0x100 + (int)n)
                        i = (size_t)(c - 0x100);
                else
                        for (size_t k = 0; k < n; k++)
                                if (doc[k].key && c == doc[k].key)
                                        i = k;
                if (c == ':' || c == '?' || i == n) {
                        /* name the option, never its value (it may be a secret) */
                        const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
                        char shortname[3] = {'-', (char)optopt, '\0'};
                        bool is_long = strncmp(bad, "--", 2) == 0;
                        int len = is_long ? (int)strcspn(bad, "=") : 2;
                        const char *shown = is_long ? bad : shortname;
                        if (c == ':')
                                cli_error("%s: option %.*s needs a value", ctx->what, len, shown);
                        else
                                cli_error("%s: unknown option \"%.*s\" (see `paddock %s --help`)", ctx->what, len,
                                          shown, ctx->what);
                        return CLI_EXIT_USAGE;
                }
                const struct cli_bind *b = bound[i];
                if (b->str)
                        *b->str = optarg;
                else if (b->list)
                        json_array_append_new(b->list, json_string(optarg));
                else
                        *b->set = true;
        }

        struct positionals p;
        positionals_parse(ctx->cmd->args, &p);
        int npos = argc - optind;
        if (npos < p.min) {
                cli_error("%s: missing argument %s", ctx->what, p.names[npos]);
                cli_usage_print(stderr, ctx->group, ctx->cmd);
                return CLI_EXIT_USAGE;
        }
        if (npos > p.max) {
                cli_error("%s: unexpected argument \"%s\"", ctx->what, argv[optind + p.max]);
                cli_usage_print(stderr, ctx->group, ctx->cmd);
                return CLI_EXIT_USAGE;
        }
        for (int i = 0; i < npos; i++)
                ret_pos[i] = argv[optind + i];
        *ret_npos = npos;
        return -1;
}

int cli_parse_login(struct cli_ctx *ctx, int argc, char **argv, const struct cli_bind *binds, char **ret_pos,
                    int *ret_npos) {
        int r = cli_parse(ctx, argc, argv, binds, ret_pos, ret_npos);
        if (r >= 0)
                return r;
        return cli_require_login(ctx) ? -1 : CLI_EXIT_FAIL;
}

int cli_fetch_list(struct cli_ctx *ctx, const char *path, json_t **ret_items) {
        _cleanup_free_ char *next = NULL; /* stays NULL: no limit */
        return path ? cli_fetch_filtered(ctx, path, NULL, 0, ret_items, &next) : CLI_EXIT_FAIL;
}

char *cli_read_line(void) {
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
                return NULL;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        return TAKE_PTR(line);
}

char *cli_prompt_hidden(const char *prompt) {
        struct termios old, quiet;
        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &old) < 0)
                return NULL;
        /* echo goes off before the prompt shows, and without TCSAFLUSH: an
         * answer typed as soon as the prompt appears is neither shown nor
         * thrown away */
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        bool hidden = tcsetattr(STDIN_FILENO, TCSANOW, &quiet) == 0;
        fputs(prompt, stderr);
        fflush(stderr);
        char *line = cli_read_line();
        if (hidden)
                (void)tcsetattr(STDIN_FILENO, TCSANOW, &old);
        else
                fputc('\n', stderr);
        return line;
}

void cli_secret_freep(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

json_t *cli_load_json_object(const char *what, const char *path) {
        json_error_t jerr;
        json_t *doc = strcmp(path, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                             : json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
        if (!doc) {
                if (jerr.line > 0)
                        cli_error("%s: %s: not valid JSON at line %d column %d: %s", what, name, jerr.line,
                                  jerr.column, jerr.text);
                else
                        cli_error("%s: %s: %s", what, name, jerr.text);
                return NULL;
        }
        if (!json_is_object(doc)) {
                cli_error("%s: %s: expected a JSON object", what, name);
                json_decref(doc);
                return NULL;
        }
        return doc;
}

char *cli_url_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out = malloc(3 * n + 1), *o = out;
        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
                        *o++ = (char)ch;
                } else {
                        *o++ = '%';
                        *o++ = hex[ch >> 4];
                        *o++ = hex[ch & 15];
                }
        }
        *o = '\0';
        return out;
}

int api_get_all(const struct cli_ctx *ctx, const char *path, json_t **ret) {
        _cleanup_free_ char *next = NULL;
        return cli_get_pages(ctx, path, 0, ret, &next);
}

char *cli_join(json_t *array) {
        size_t len = 2, i;
        json_t *v;
        json_array_foreach(array, i, v) len += json_string_length(v) + 1;
        char *out = malloc(len);
        if (!out)
                return NULL;
        out[0] = '\0';
        json_array_foreach(array, i, v) {
                if (!json_is_string(v))
                        continue;
                if (out[0])
                        strcat(out, ",");
                strcat(out, json_string_value(v));
        }
        if (!out[0])
                strcpy(out, "-");
        return out;
}

json_t *cli_table_new(int ncols, ...) {
        json_t *t = json_array(), *row = json_array();
        va_list ap;
        va_start(ap, ncols);
        for (int i = 0; i < ncols; i++)
                json_array_append_new(row, json_string(va_arg(ap, const char *)));
        va_end(ap);
        json_array_append_new(t, row);
        return t;
}

void cli_table_add(json_t *table, ...) {
        size_t ncols = json_array_size(json_array_get(table, 0));
        json_t *row = json_array();
        va_list ap;
        va_start(ap, table);
        for (size_t i = 0; i < ncols; i++) {
                const char *s = va_arg(ap, const char *);
                /* a cell is one line of printable text: a newline would break
                 * the columns, an escape sequence could rewrite the terminal */
                _cleanup_free_ char *clean = strdup(s && *s ? s : "-");
                for (char *p = clean; p && *p; p++)
                        if ((unsigned char)*p < 0x20 || *p == 0x7f)
                                *p = '?';
                json_t *cell = clean ? json_string(clean) : NULL;
                json_array_append_new(row, cell ? cell : json_string("?"));
        }
        va_end(ap);
        json_array_append_new(table, row);
}

void cli_table_print(json_t *table) {
        size_t ncols = json_array_size(json_array_get(table, 0)), i, c;
        size_t width[32] = {0};
        json_t *row;
        if (ncols > ELEMENTSOF(width))
                ncols = ELEMENTSOF(width);
        json_array_foreach(table, i, row) {
                for (c = 0; c < ncols; c++) {
                        size_t n = json_string_length(json_array_get(row, c));
                        if (n > width[c])
                                width[c] = n;
                }
        }
        json_array_foreach(table, i, row) {
                for (c = 0; c < ncols; c++) {
                        const char *s = json_string_value(json_array_get(row, c));
                        s = s ? s : "";
                        if (c + 1 == ncols) {
                                fputs(s, stdout);
                        } else {
                                fputs(s, stdout);
                                for (size_t k = strlen(s); k < width[c] + 2; k++)
                                        fputc(' ', stdout);
                        }
                }
                fputc('\n', stdout);
        }
}

/* Finds ref among the items of list path by id or by the string field key. */
static char *resolve(const struct cli_ctx *ctx, const char *list_path, const char *key, const char *what,
                     const char *ref) {
        if (id_is_uuid(ref))
                return strdup(ref);
        _cleanup_json_ json_t *items = NULL;
        if (api_get_all(ctx, list_path, &items) < 0)
                return NULL;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                const char *name = json_string_value(json_object_get(it, key));
                const char *id = json_string_value(json_object_get(it, "id"));
                if (name && id && strcmp(name, ref) == 0) {
                        if (!cli_valid_id(id)) {
                                cli_error("the API answered an unusable %s id", what);
                                return NULL;
                        }
                        return strdup(id);
                }
        }
        cli_error("no %s named \"%s\" (not_found)", what, ref);
        return NULL;
}

char *cli_resolve_team(const struct cli_ctx *ctx, const char *ref) {
        return resolve(ctx, "/v1/teams", "name", "team", ref);
}

char *cli_resolve_user(const struct cli_ctx *ctx, const char *ref) {
        return resolve(ctx, "/v1/users", "username", "user", ref);
}
