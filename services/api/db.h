/* Every request's queries run on a struct db whose transactions carry the caller's tenant
 * (row-level security); database failures become problems only through db_fail(). */
#pragma once
#include "request.h"

/* ---- db.c: every request's queries go through db_open so the tenant setting
 * (for row-level security) is applied in one place. The setting is
 * transaction-local (docs/CONTRACTS.md "Tenant isolation in PostgreSQL"):
 * between db_open and db_close every statement runs inside a transaction
 * that carries it. Statements outside db_begin..db_commit/db_rollback are
 * committed together by the next db_begin or by db_close (as if each were
 * autocommitted, the way the handlers were written); db_begin, db_commit and
 * db_rollback each end the transaction they find and begin the next one
 * with the tenant, in one round trip. Never pg_begin/pg_commit/pg_rollback
 * on a db's connection. */
/* How long a handler waits for a pooled PostgreSQL connection. */
#define DB_ACQUIRE_TIMEOUT_MS 5000
struct db {
        struct pg_pool *pool;
        PGconn *conn;
        char tenant[UUID_STR_LEN]; /* the tenant every transaction of conn carries; "" none */
};
int db_open(struct db *d, struct api *a, const char *tenant_id, struct err_detail *e);
/* Commits what ran so far and begins the transaction of a unit of work. */
int db_begin(struct db *d, struct err_detail *e);
/* Commits (-EIO 25P02 if it had been aborted: rolled back) and goes on in a new transaction. */
int db_commit(struct db *d, struct err_detail *e);
/* Rolls back and goes on in a new transaction; errors ignored (failure paths). */
void db_rollback(struct db *d);
/* Makes tenant_id (a UUID, or NULL) the tenant of d from now on, in the
 * current transaction and the following ones (login: known only once its
 * name is looked up). */
int db_set_tenant(struct db *d, const char *tenant_id, struct err_detail *e);
/* db_open() as r's caller: takes over the connection the bearer token was
 * looked up on (its tenant setting already the caller's) the first time,
 * opens a fresh one after. */
int db_open_caller(struct db *d, struct api_req *r, struct err_detail *e);
void db_close(struct db *d);
static inline void db_closep(struct db *d) { db_close(d); }
#define _cleanup_db_ _cleanup_(db_closep)
static inline void PQclearp(PGresult **r) { if (*r) PQclear(*r); }
#define _cleanup_pgres_ _cleanup_(PQclearp)
/* json_decrefp comes from jansson >= 2.9 */
#define _cleanup_json_ _cleanup_(json_decrefp)
/* Value of row/col or NULL for SQL NULL. */
const char *db_val(const PGresult *res, int row, int col);
/* JSON string or null for a nullable column. */
json_t *db_json_str(const PGresult *res, int row, int col);
/* A column of a row as a member of an answer written with json_dump.h's
 * writer, straight from the row (no jansson tree per answer, issue 10 §4):
 * its key as written (",\"name\":", punctuation included), its column
 * (from db_put_members' base) and how the column reads. */
enum db_member_kind {
        DB_M_STRING,            /* text (a NULL reads as "") */
        DB_M_TEXT,              /* text, or null */
        DB_M_INTEGER,           /* an integer (a NULL reads as 0) */
        DB_M_INTEGER_OR_NULL,
        DB_M_BOOL,              /* PostgreSQL's boolean text: true for "t", else false */
        DB_M_REAL,              /* a number as a real (a NULL reads as 0.0) */
        DB_M_HIDEABLE_TEXT,     /* DB_M_TEXT, null while hidden */
        DB_M_HIDEABLE_INTEGER,  /* DB_M_INTEGER_OR_NULL, likewise */
};
struct db_member {
        const char *key;
        size_t key_len;
        int col;
        enum db_member_kind kind;
};
#define DB_MEMBER(key, col, kind) {"" key, sizeof(key) - 1, col, kind}
/* Writes the n members m of res's row (columns from base on; borrowed),
 * the hideable ones null when hidden. */
struct json_writer;
void db_put_members(struct json_writer *w, const struct db_member *m, size_t n, const PGresult *res, int row, int base,
                    bool hidden);
/* Translates a database failure into a problem (503 when unreachable, 500 otherwise). */
int db_fail(struct api_req *r, int err, const struct err_detail *e, const char *what);
/* The one lookup of a team's object by id: runs sql (params borrowed; $1 and
 * $2 are usually the id and the caller's tenant) and checks that the caller
 * holds r->perm in the team whose id is column team_col of its one row.
 * Returns 0 with *ret (caller owns); else the problem is recorded on r: 404
 * "<what> not found" when there is no row or the caller may not see its team
 * (no existence oracle), 403 when the caller sees it without r->perm, 503 or
 * 500 on a database failure. */
/* The id (into out) of the row of table in the caller's tenant that ref names:
 * its id, or its name in column name_col (unique per tenant); an id wins over
 * a name spelled like one. table and name_col are SQL identifiers the caller
 * writes, never input; what names the object in log messages. Returns 0,
 * -ENOENT (nothing recorded on r), or a database failure recorded on r. */
int db_resolve_ref(struct api_req *r, struct db *d, const char *table, const char *name_col, const char *what,
                   const char *ref, char out[UUID_STR_LEN]);
int db_load_team_row(struct api_req *r, struct db *d, const char *what, const char *sql, int nparams,
                     const char *const *params, int team_col, PGresult **ret);
/* SQL expression formatting a timestamptz column as RFC 3339 UTC (microseconds). */
#define DB_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
