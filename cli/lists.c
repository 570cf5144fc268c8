/* Lists the everyday commands share (run list, sandbox list, approvals
 * list): a query string built from options, pages followed for the user up
 * to a --limit, and one JSON shape for every list: the API's list object
 * {items, next_cursor} holding the items of all pages fetched, next_cursor
 * null unless --limit stopped before the end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The API's largest page. */
#define LIST_PAGE_MAX 1000
/* Pages followed before we conclude the server loops. */
#define LIST_MAX_PAGES 100000

int cli_query_add(char **query, const char *key, const char *value) {
        if (!value)
                return 0;
        _cleanup_free_ char *esc = cli_url_escape(value);
        char *q = NULL;
        if (!esc || asprintf(&q, "%s%s%s=%s", *query ? *query : "", *query ? "&" : "", key, esc) < 0)
                return -ENOMEM;
        free(*query);
        *query = q;
        return 0;
}

int cli_get_pages(const struct cli_ctx *ctx, const char *path, long long max, json_t **ret_items,
                  char **ret_next) {
        _cleanup_json_ json_t *all = json_array();
        _cleanup_free_ char *cursor = NULL;
        if (!all)
                return -ENOMEM;
        *ret_next = NULL;
        for (int page = 0; page < LIST_MAX_PAGES; page++) {
                /* without a maximum the server's default page size applies: not
                 * every list endpoint takes ?limit= */
                long long want = max > 0 ? max - (long long)json_array_size(all) : 0;
                if (want > LIST_PAGE_MAX)
                        want = LIST_PAGE_MAX;
                _cleanup_free_ char *p = NULL, *lim = NULL, *esc = cursor ? cli_url_escape(cursor) : NULL;
                const char *sep = strchr(path, '?') ? "&" : "?";
                if ((cursor && !esc) || (want > 0 && asprintf(&lim, "limit=%lld", want) < 0) ||
                    asprintf(&p, "%s%s%s%s%s%s", path, lim || cursor ? sep : "", lim ? lim : "",
                             lim && cursor ? "&" : "", cursor ? "cursor=" : "", cursor ? esc : "") < 0)
                        return -ENOMEM;
                _cleanup_(api_response_done) struct api_response resp = {0};
                int r = api_get(ctx, p, &resp);
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
                if (max > 0 && (long long)json_array_size(all) >= max) {
                        *ret_next = TAKE_PTR(cursor);
                        break;
                }
        }
        *ret_items = TAKE_PTR(all);
        return 0;
}

void cli_print_list(json_t *items, const char *next_cursor) {
        _cleanup_json_ json_t *o = json_pack("{s:O, s:o}", "items", items, "next_cursor",
                                             next_cursor ? json_string(next_cursor) : json_null());
        if (o)
                cli_print_json(o);
}

int cli_parse_limit(const char *what, const char *limit, bool all, long long dflt, long long *ret) {
        if (limit && all) {
                cli_error("%s: --limit and --all exclude each other", what);
                return -EINVAL;
        }
        *ret = all ? 0 : dflt;
        if (!limit)
                return 0;
        if (!cli_parse_ll("--limit", limit, ret))
                return -EINVAL;
        if (*ret < 1) {
                cli_error("%s: --limit must be at least 1", what);
                return -EINVAL;
        }
        return 0;
}

void cli_print_more_hint(const char *next_cursor, const char *noun) {
        fflush(stdout); /* after the table, also when both go to one pipe */
        if (next_cursor)
                fprintf(stderr, "(more %s match: raise --limit, or pass --all)\n", noun);
}

int cli_fetch_filtered(struct cli_ctx *ctx, const char *base, const char *query, long long limit,
                       json_t **ret_items, char **ret_next) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s%s%s", base, query ? "?" : "", query ? query : "") < 0 ||
            cli_get_pages(ctx, path, limit, ret_items, ret_next) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json) {
                cli_print_list(*ret_items, *ret_next);
                return CLI_EXIT_OK;
        }
        return -1;
}

void cli_print_list_table(json_t *t, const char *next_cursor, const char *noun) {
        if (json_array_size(t) <= 1)
                printf("no %s\n", noun);
        else
                cli_table_print(t);
        cli_print_more_hint(next_cursor, noun);
}
