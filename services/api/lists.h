/* Query arguments of list endpoints and their keyset-cursor pages (lists.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- lists.c: query arguments of lists and their pages (keyset cursors) */
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000
/* SQL: a row's list key, created_at in microseconds since the epoch (exact). */
#define LIST_KEY_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
/* SQL: the microseconds parameter p (e.g. "$5") as a timestamptz (exact). */
#define LIST_US_TS(p) "(timestamptz 'epoch' + " p "::bigint * interval '1 microsecond')"
/* SQL: team column col is one the caller may view: tenant_admin ($admin
 * true), or a member with a role carrying PERM_VIEWER ($roles, from
 * api_perm_roles()); parameters are placeholders such as "$2". */
#define LIST_TEAM_VISIBLE(col, admin, user, roles)                                                  \
        "(" admin "::boolean OR " col " IN (SELECT m.team_id FROM api.team_members m WHERE m.user_id = " \
        user "::uuid AND m.roles && " roles "::text[]))"
typedef int (*api_query_value_fn)(struct api_req *r, const char *value, void *userdata);
/* Calls fn(r, value, userdata) for every value of query argument name in the
 * order given: each occurrence, split at commas when split (empty pieces
 * skipped); values are URL-decoded, borrowed for the call. Returns the number
 * of values, or the first negative return of fn (which recorded the problem). */
int api_query_each(struct api_req *r, const char *name, bool split, api_query_value_fn fn, void *userdata);
/* The one value of query argument name, copied into buf; *ret = buf, or NULL
 * when absent or empty. Given twice or longer than size - 1: 400
 * invalid_field naming it (returns negative). */
int api_query_single(struct api_req *r, const char *name, char *buf, size_t size, const char **ret);
/* Query argument name as an RFC 3339 date-time, in microseconds since the
 * epoch (decimal text in out_us); *ret = out_us or NULL when absent. A bad
 * value: 400 invalid_field naming it. */
int api_query_time(struct api_req *r, const char *name, char out_us[24], const char **ret);
/* A page of a keyset list: limit (default LIST_DEFAULT_LIMIT) and, after a
 * cursor, the key to continue after. */
struct list_page {
        long limit;
        char limit_plus_one[24];          /* the query's LIMIT: one more row says a next page exists */
        const char *after_us, *after_id;  /* NULL on the first page; else point into key_us, key_id */
        char key_us[24];
        char key_id[UUID_STR_LEN];
};
/* Reads ?limit= (1..LIST_MAX_LIMIT) and ?cursor= into p; a bad value is 400
 * invalid_field naming limit or cursor. */
int list_page_parse(struct api_req *r, struct list_page *p);
/* Writes row's item (json_dump.h's writer; a failure fails the writer). */
struct json_writer;
typedef void (*list_row_fn)(struct json_writer *w, const PGresult *res, int row);
/* Answers 200 {items, next_cursor} from res (ordered newest first, queried
 * with LIMIT p->limit_plus_one): the first p->limit rows through row_write,
 * and next_cursor from the key (columns us_col, id_col) of the page's last
 * row when res holds more, else null; written as it is built (issue 10
 * §4). res borrowed. */
int list_answer(struct api_req *r, const struct list_page *p, const PGresult *res, list_row_fn row_write, int us_col,
                int id_col);
