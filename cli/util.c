/* Helpers the command groups share: option parsing with --json and --help
 * built in, JSON input files, paginated lists, aligned tables, and turning
 * the names people type into the ids the API wants. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/ids.h"

#define CLI_MAX_FLAGS 16
/* Pages a list command follows before it concludes the server loops. */
#define CLI_MAX_PAGES 10000

/* The option loop of cli_parse_args(): -1 when the options are done, else
 * the exit code. */
static int parse_loop(struct cli_ctx *ctx, int argc, char **argv, const char *what, const char *usage,
                      const struct cli_flag *flags, size_t nflags, const char *shorts, const struct option *opts) {
        int c, idx;
        while ((c = getopt_long(argc, argv, shorts, opts, &idx)) != -1) {
                if (c == 'h') {
                        fputs(usage, stdout);
                        return CLI_EXIT_OK;
                }
                if (c == 0x200) {
                        ctx->json = true;
                        continue;
                }
                const struct cli_flag *f = NULL;
                for (size_t i = 0; i < nflags && !f; i++)
                        if (c == (flags[i].key ? flags[i].key : 0x100 + (int)i))
                                f = &flags[i];
                if (!f) {
                        const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
                        bool known = false;
                        for (size_t i = 0; i < nflags; i++)
                                known = known || optopt == (flags[i].key ? flags[i].key : 0x100 + (int)i);
                        if (c == ':' || (optopt && known))
                                cli_error("%s: option %s needs a value", what, bad);
                        else
                                cli_error("%s: unknown option \"%s\" (see `paddock %s --help`)", what, bad,
                                          what);
                        return CLI_EXIT_USAGE;
                }
                if (f->str)
                        *f->str = optarg;
                else if (f->list)
                        json_array_append_new(f->list, json_string(optarg));
                else
                        *f->set = true;
        }
        return -1;
}

int cli_parse_args(struct cli_ctx *ctx, int argc, char **argv, const char *what, const char *usage,
                   const struct cli_flag *flags, const char *const *pos_names, int min_pos, int max_pos,
                   char **ret_pos, int *ret_npos) {
        struct option opts[CLI_MAX_FLAGS + 3] = {{0}};
        /* ":" first: a missing value is reported as ':' rather than '?' */
        char shorts[2 * CLI_MAX_FLAGS + 4] = ":h";
        size_t nflags = 0, ns = 2;
        int c;

        for (; flags && flags[nflags].name; nflags++) {
                assert(nflags < CLI_MAX_FLAGS);
                bool arg = flags[nflags].str || flags[nflags].list;
                opts[nflags] = (struct option){flags[nflags].name, arg ? required_argument : no_argument, NULL,
                                               flags[nflags].key ? flags[nflags].key : 0x100 + (int)nflags};
                if (flags[nflags].key) {
                        shorts[ns++] = flags[nflags].key;
                        if (arg)
                                shorts[ns++] = ':';
                        shorts[ns] = '\0';
                }
        }
        opts[nflags] = (struct option){"json", no_argument, NULL, 0x200};
        opts[nflags + 1] = (struct option){"help", no_argument, NULL, 'h'};

        /* errors are reported here, naming the command */
        int saved_opterr = opterr;
        optind = 0;
        opterr = 0;
        c = parse_loop(ctx, argc, argv, what, usage, flags, nflags, shorts, opts);
        opterr = saved_opterr;
        if (c >= 0)
                return c;

        int npos = argc - optind;
        int limit = max_pos < 0 ? CLI_MAX_POS : max_pos;
        if (npos < min_pos) {
                int last = 0;
                while (pos_names[last + 1])
                        last++;
                cli_error("%s: missing argument %s", what, pos_names[npos < last ? npos : last]);
                fputs(usage, stderr);
                return CLI_EXIT_USAGE;
        }
        if (npos > limit) {
                cli_error("%s: unexpected argument \"%s\"", what, argv[optind + limit]);
                return CLI_EXIT_USAGE;
        }
        for (int i = 0; i < npos; i++)
                ret_pos[i] = argv[optind + i];
        *ret_npos = npos;
        return -1;
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
        _cleanup_json_ json_t *all = json_array();
        _cleanup_free_ char *cursor = NULL;
        if (!all)
                return -ENOMEM;
        for (int page = 0; page < CLI_MAX_PAGES; page++) {
                _cleanup_free_ char *p = NULL, *esc = NULL;
                _cleanup_(api_response_done) struct api_response resp = {0};
                if (cursor) {
                        esc = cli_url_escape(cursor);
                        if (!esc || asprintf(&p, "%s%scursor=%s", path, strchr(path, '?') ? "&" : "?", esc) < 0)
                                return -ENOMEM;
                }
                int r = api_get(ctx, p ? p : path, &resp);
                if (r < 0)
                        return r;
                json_t *items = json_object_get(resp.body, "items");
                if (!json_is_array(items)) {
                        cli_error("GET %s: the API answered without an items list", path);
                        return -EBADMSG;
                }
                json_array_extend(all, items);
                const char *next = json_string_value(json_object_get(resp.body, "next_cursor"));
                /* the end, or a server that would make us loop in place */
                if (!next || !*next || json_array_size(items) == 0 || (cursor && strcmp(next, cursor) == 0))
                        break;
                free(cursor);
                cursor = strdup(next);
                if (!cursor)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(all);
        return 0;
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
