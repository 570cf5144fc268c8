#include "pg/pg.h"
#include "pg/pg_copy.h"

#include <errno.h>
#include <libpq-events.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/shutdown.h"
#include "core/timeutil.h"

struct pg_pool {
        char *dsn;
        unsigned size;
        unsigned borrowed; /* connections handed out (or being opened) */
        unsigned nidle;
        PGconn **idle;     /* open connections ready for reuse, size entries */
        pthread_mutex_t lock;
        pthread_cond_t cond;
};

struct pg_pool *pg_pool_new(const char *dsn, unsigned size) {
        struct pg_pool *pool = calloc(1, sizeof *pool);
        if (!pool)
                return NULL;
        pool->size = size ? size : 1;
        pool->dsn = strdup(dsn ? dsn : "");
        pool->idle = calloc(pool->size, sizeof *pool->idle);
        if (!pool->dsn || !pool->idle) {
                free(pool->dsn);
                free(pool->idle);
                free(pool);
                return NULL;
        }
        pthread_mutex_init(&pool->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&pool->cond, &ca);
        pthread_condattr_destroy(&ca);
        return pool;
}

struct pg_pool *pg_pool_free(struct pg_pool *pool) {
        if (!pool)
                return NULL;
        for (unsigned i = 0; i < pool->nidle; i++)
                PQfinish(pool->idle[i]);
        pthread_cond_destroy(&pool->cond);
        pthread_mutex_destroy(&pool->lock);
        free(pool->idle);
        free(pool->dsn);
        free(pool);
        return NULL;
}

/* connect_timeout comes first so that a value in the DSN (expanded from
 * "dbname") overrides it: libpq keeps the last value of a repeated keyword. */
/* Server notices ("relation already exists, skipping") would otherwise be
 * printed as plain text on stderr, between the JSON log lines. */
static void pg_notice(void *arg, const char *message) {
        size_t l = strlen(message);
        while (l > 0 && message[l - 1] == '\n')
                l--;
        log_ctx(LOG_DEBUG, LOG_KV("component", "libpq"), "%.*s", (int)l, message);
}

static PGconn *pg_connect(const char *dsn) {
        static const char *const keywords[] = {"connect_timeout", "dbname", NULL};
        const char *const values[] = {"5", dsn, NULL};
        PGconn *conn = PQconnectdbParams(keywords, values, 1);
        if (conn)
                PQsetNoticeProcessor(conn, pg_notice, NULL);
        return conn;
}

static void pg_give_back(struct pg_pool *pool, PGconn *conn) {
        pthread_mutex_lock(&pool->lock);
        pool->borrowed--;
        if (conn && pool->nidle < pool->size)
                pool->idle[pool->nidle++] = conn;
        else if (conn)
                PQfinish(conn);
        pthread_cond_signal(&pool->cond);
        pthread_mutex_unlock(&pool->lock);
}

PGconn *pg_pool_acquire(struct pg_pool *pool, int timeout_ms, struct err_detail *reterr) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        if (timeout_ms < 0)
                timeout_ms = 0;
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }

        PGconn *conn = NULL;
        pthread_mutex_lock(&pool->lock);
        while (pool->nidle == 0 && pool->borrowed >= pool->size) {
                if (pthread_cond_timedwait(&pool->cond, &pool->lock, &deadline) == ETIMEDOUT &&
                    pool->nidle == 0 && pool->borrowed >= pool->size) {
                        pthread_mutex_unlock(&pool->lock);
                        err_set(reterr, -ETIMEDOUT, "pool", "no database connection free within %d ms", timeout_ms);
                        return NULL;
                }
        }
        if (pool->nidle > 0)
                conn = pool->idle[--pool->nidle];
        pool->borrowed++;
        pthread_mutex_unlock(&pool->lock);

        /* Connecting happens outside the lock: it may take connect_timeout. */
        if (conn && PQstatus(conn) != CONNECTION_OK) {
                PQreset(conn);
                if (PQstatus(conn) != CONNECTION_OK) {
                        PQfinish(conn);
                        conn = NULL;
                }
        }
        if (!conn) {
                conn = pg_connect(pool->dsn);
                if (!conn || PQstatus(conn) != CONNECTION_OK) {
                        const char *m = conn ? PQerrorMessage(conn) : "out of memory";
                        size_t l = strlen(m);
                        while (l > 0 && (m[l - 1] == '\n' || m[l - 1] == ' '))
                                l--;
                        err_set(reterr, -ECONNRESET, "08006", "could not connect to database: %.*s", (int)l, m);
                        PQfinish(conn);
                        pg_give_back(pool, NULL);
                        return NULL;
                }
        }
        return conn;
}

static void pool_release(struct pg_pool *pool, PGconn *conn, bool clean) {
        if (!conn) {
                pg_give_back(pool, NULL);
                return;
        }
        if (PQstatus(conn) != CONNECTION_OK) {
                PQfinish(conn);
                conn = NULL;
        } else {
                PGTransactionStatusType ts = PQtransactionStatus(conn);
                if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
                        /* A caller bailed out mid-transaction: never hand its
                         * half-done work (or its locks) to the next borrower. */
                        clean = false;
                        PGresult *res = PQexec(conn, "ROLLBACK");
                        PQclear(res);
                        ts = PQtransactionStatus(conn);
                }
                if (ts != PQTRANS_IDLE) {
                        PQfinish(conn);
                        conn = NULL;
                }
        }
        /* The next borrower starts from the session's defaults: no tenant
         * setting (row-level security) or anything else a caller SET carries
         * over into another request. RESET ALL, not DISCARD ALL: session
         * advisory locks (audit relay) are their holder's to release. */
        if (conn && !clean) {
                PGresult *res = PQexec(conn, "RESET ALL");
                bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
                PQclear(res);
                if (!ok) {
                        PQfinish(conn);
                        conn = NULL;
                }
        }
        pg_give_back(pool, conn);
}

void pg_pool_release(struct pg_pool *pool, PGconn *conn) {
        pool_release(pool, conn, false);
}

void pg_pool_release_clean(struct pg_pool *pool, PGconn *conn) {
        pool_release(pool, conn, true);
}

int pg_sqlstate_errno(const char *state) {
        static const struct {
                const char *state; /* a SQLSTATE, or its class (2 characters) */
                int err;
        } map[] = {
                {"23505", -EEXIST},     {"23503", -ENOENT},     {"23502", -EINVAL},
                {"23514", -EINVAL},     {"22", -EINVAL},        {"40001", -EAGAIN},
                {"40P01", -EAGAIN},     {"57014", -ETIMEDOUT},  {"08", -ECONNRESET},
                {"57P01", -ECONNRESET}, {"57P02", -ECONNRESET}, {"57P03", -ECONNRESET},
                {"42P01", -ENOPKG},     {"3F000", -ENOPKG},
        };
        if (!state || strlen(state) != 5)
                return -EIO;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
                if (!strncmp(state, map[i].state, strlen(map[i].state)))
                        return map[i].err;
        return -EIO;
}

/* Translates a failed result (res may be NULL) once, keeping SQLSTATE and text. */
static int pg_result_error(PGconn *conn, const PGresult *res, const char *context,
                           struct err_detail *reterr) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
        int r;
        if (state)
                r = pg_sqlstate_errno(state);
        else if (PQstatus(conn) != CONNECTION_OK)
                r = -ECONNRESET, state = "08006";
        else
                r = -EIO, state = "";
        const char *text = primary ? primary : PQerrorMessage(conn);
        size_t l = strlen(text);
        while (l > 0 && (text[l - 1] == '\n' || text[l - 1] == ' '))
                l--;
        return err_set(reterr, r, state, "%s%s%.*s%s%s%s", context ? context : "", context ? ": " : "",
                       (int)l, text, constraint ? " (constraint " : "", constraint ? constraint : "",
                       constraint ? ")" : "");
}

static bool pg_result_ok(const PGresult *res) {
        if (!res)
                return false;
        ExecStatusType st = PQresultStatus(res);
        return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

int pg_send(PGconn *conn, const char *sql, int nparams, const char *const *params, struct err_detail *reterr) {
        if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0))
                return pg_result_error(conn, NULL, NULL, reterr);
        return 0;
}

int pg_wait(PGconn *conn, PGresult **ret, struct err_detail *reterr) {
        if (ret)
                *ret = NULL;
        PGresult *res, *last = NULL;
        int r = 0;
        bool any = false;
        while ((res = PQgetResult(conn))) {
                any = true;
                if (r == 0 && !pg_result_ok(res))
                        r = pg_result_error(conn, res, NULL, reterr);
                PQclear(last);
                last = res;
        }
        if (r == 0 && !any)
                r = pg_result_error(conn, NULL, NULL, reterr);
        if (r == 0 && ret)
                *ret = last;
        else
                PQclear(last);
        return r;
}

int pg_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
            PGresult **ret, struct err_detail *reterr) {
        int r = pg_send(conn, sql, nparams, params, reterr);
        return r < 0 ? r : pg_wait(conn, ret, reterr);
}

/* Runs sql, which must answer PGRES_COPY_IN. */
static int copy_start(PGconn *conn, const char *sql, struct err_detail *reterr) {
        PGresult *res = PQexec(conn, sql);
        if (!res || PQresultStatus(res) != PGRES_COPY_IN) {
                int r = pg_result_error(conn, res, "could not start copy", reterr);
                PQclear(res);
                /* a failed COPY start can leave results behind: drain them */
                while ((res = PQgetResult(conn)))
                        PQclear(res);
                return r;
        }
        PQclear(res);
        return 0;
}

/* Sends data[0..len) of the COPY: 1 on success, as PQputCopyData. */
static int copy_put(PGconn *conn, const char *data, size_t len) {
        /* libpq takes at most INT_MAX per call; chunks keep its buffer small */
        const size_t chunk = 1 << 20;
        int ok = 1;
        for (size_t off = 0; ok == 1 && off < len; off += chunk)
                ok = PQputCopyData(conn, data + off, (int)(len - off < chunk ? len - off : chunk));
        return ok;
}

/* Ends the COPY (ok: every put succeeded; else why aborts it) and reads its result. */
static int copy_end(PGconn *conn, int ok, const char *why, struct err_detail *reterr) {
        if (ok == 1)
                ok = PQputCopyEnd(conn, why);
        PGresult *res;
        int r = 0;
        while ((res = PQgetResult(conn))) {
                if (r == 0 && !pg_result_ok(res))
                        r = pg_result_error(conn, res, "could not copy", reterr);
                PQclear(res);
        }
        if (r == 0 && ok != 1)
                r = pg_result_error(conn, NULL, "could not copy", reterr);
        return r;
}

int pg_copy_in(PGconn *conn, const char *sql, const char *data, size_t len, struct err_detail *reterr) {
        int r = copy_start(conn, sql, reterr);
        return r < 0 ? r : copy_end(conn, copy_put(conn, data, len), NULL, reterr);
}

int pg_copy_stream_start(PGconn *conn, const char *sql, struct pg_copy_buf *b, struct err_detail *reterr) {
        int r = copy_start(conn, sql, reterr);
        if (r < 0)
                return r;
        pg_copy_buf_init(b, 2 * PG_COPY_STREAM_BYTES);
        b->sent = 0;
        return 0;
}

int pg_copy_stream_send(PGconn *conn, struct pg_copy_buf *b) {
        if (b->len < PG_COPY_STREAM_BYTES || b->sent < 0)
                return b->sent < 0 ? -EIO : 0;
        if (copy_put(conn, b->data, b->len) != 1)
                b->sent = -1; /* reported by pg_copy_stream_end */
        else
                b->sent += (long long)b->len;
        b->len = 0;
        return b->sent < 0 ? -EIO : 0;
}

int pg_copy_stream_end(PGconn *conn, struct pg_copy_buf *b, const char *why, struct err_detail *reterr) {
        int ok = b->sent < 0 ? -1 : 1, r = -EIO;
        if (!why && pg_copy_buf_finish(b) < 0)
                why = "out of memory", r = -ENOMEM;
        if (ok == 1 && !why)
                ok = copy_put(conn, b->data, b->len);
        b->len = 0;
        if (!why)
                return copy_end(conn, ok, NULL, reterr);
        /* the server's answer to an abandoned COPY (57014, "COPY from stdin
         * failed") is not the caller's reason */
        copy_end(conn, ok, why, NULL);
        return err_set(reterr, r, "copy", "copy abandoned: %s", why);
}

int pg_begin(PGconn *conn, struct err_detail *reterr) {
        return pg_exec(conn, "BEGIN", 0, NULL, NULL, reterr);
}

int pg_commit(PGconn *conn, struct err_detail *reterr) {
        PGresult *res = NULL;
        int r = pg_exec(conn, "COMMIT", 0, NULL, &res, reterr);
        if (r < 0)
                return r;
        /* COMMIT of an aborted transaction "succeeds" as a ROLLBACK. */
        bool rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
        PQclear(res);
        if (rolled_back)
                return err_set(reterr, -EIO, "25P02", "transaction was aborted and rolled back");
        return 0;
}

void pg_rollback(PGconn *conn) {
        PQclear(PQexec(conn, "ROLLBACK"));
}

static int migration_cmp(const void *a, const void *b) {
        const struct embedded_file *const *x = a, *const *y = b;
        return strcmp((*x)->name, (*y)->name);
}

static bool schema_name_valid(const char *s) {
        if (!s || !*s || strlen(s) > 63 || !((*s >= 'a' && *s <= 'z') || *s == '_'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

int pg_set_tenant(PGconn *conn, const char *tenant_id, struct err_detail *reterr) {
        const char *params[] = {tenant_id ? tenant_id : ""};
        return pg_exec(conn, "SELECT set_config('paddock.tenant_id', $1, false)", 1, params, NULL, reterr);
}

int pg_tx_restart_then(PGconn *conn, const char *end, const char *tenant_id, const char *then, PGresult **ret,
                       struct err_detail *reterr) {
        if (ret)
                *ret = NULL;
        const char *t = tenant_id ? tenant_id : "";
        /* inlined into the statement text (one round trip): a UUID or nothing */
        if (strlen(t) > 36 || strspn(t, "0123456789abcdefABCDEF-") != strlen(t))
                return err_set(reterr, -EINVAL, "22023", "tenant id \"%.40s\" is not a UUID", t);
        if (end && strcmp(end, "COMMIT") && strcmp(end, "ROLLBACK"))
                return err_set(reterr, -EINVAL, "", "end must be COMMIT or ROLLBACK");
        size_t size = 160 + (then ? strlen(then) + 2 : 0);
        char *sql = malloc(size);
        if (!sql)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        snprintf(sql, size, "%s%sBEGIN; SELECT set_config('paddock.tenant_id', '%s', true)%s%s", end ? end : "",
                 end ? "; " : "", t, then ? "; " : "", then ? then : "");
        int sent = PQsendQuery(conn, sql);
        free(sql);
        if (!sent)
                return pg_result_error(conn, NULL, NULL, reterr);
        int r = 0, i = 0;
        int last = (end ? 1 : 0) + 2 + (then ? 1 : 0) - 1; /* index of then's result */
        PGresult *res;
        while ((res = PQgetResult(conn))) {
                if (r == 0 && !pg_result_ok(res))
                        r = pg_result_error(conn, res, NULL, reterr);
                /* COMMIT of an aborted transaction "succeeds" as a ROLLBACK */
                else if (r == 0 && i == 0 && end && !strcmp(end, "COMMIT") && !strcmp(PQcmdStatus(res), "ROLLBACK"))
                        r = err_set(reterr, -EIO, "25P02", "transaction was aborted and rolled back");
                if (then && i == last && ret && pg_result_ok(res)) {
                        *ret = res;
                        res = NULL;
                }
                i++;
                PQclear(res);
        }
        if (r < 0 && ret && *ret) {
                PQclear(*ret);
                *ret = NULL;
        }
        return r;
}

int pg_tx_restart(PGconn *conn, const char *end, const char *tenant_id, struct err_detail *reterr) {
        return pg_tx_restart_then(conn, end, tenant_id, NULL, NULL, reterr);
}

int pg_set_tenant_local(PGconn *conn, const char *tenant_id, struct err_detail *reterr) {
        if (PQtransactionStatus(conn) != PQTRANS_INTRANS)
                return err_set(reterr, -EINVAL, "25P01", "the tenant setting is transaction-local: begin first");
        const char *params[] = {tenant_id ? tenant_id : ""};
        return pg_exec(conn, "SELECT set_config('paddock.tenant_id', $1, true)", 1, params, NULL, reterr);
}

/* ---- prepared statements: which ones a connection has, as libpq
 * instance data, so that a reset connection (PGEVT_CONNRESET: a new
 * server session) prepares them again and a closed one frees the list */

struct pg_prepared {
        size_t n, cap;
        const struct pg_stmt **stmts;
};

static int pg_event(PGEventId id, void *info, void *passthrough) {
        (void)passthrough;
        if (id == PGEVT_CONNRESET) {
                struct pg_prepared *p = PQinstanceData(((PGEventConnReset *)info)->conn, pg_event);
                if (p)
                        p->n = 0;
        } else if (id == PGEVT_CONNDESTROY) {
                struct pg_prepared *p = PQinstanceData(((PGEventConnDestroy *)info)->conn, pg_event);
                if (p) {
                        free(p->stmts);
                        free(p);
                }
        }
        return 1;
}

static struct pg_prepared *pg_prepared_of(PGconn *conn) {
        struct pg_prepared *p = PQinstanceData(conn, pg_event);
        if (p)
                return p;
        /* fails when already registered (then without data yet): fine */
        PQregisterEventProc(conn, pg_event, "paddock-prepared", NULL);
        p = calloc(1, sizeof *p);
        if (p && !PQsetInstanceData(conn, pg_event, p)) {
                free(p);
                p = NULL;
        }
        return p;
}

static bool pg_prepared_has(const struct pg_prepared *p, const struct pg_stmt *st) {
        for (size_t i = 0; i < p->n; i++)
                if (p->stmts[i] == st)
                        return true;
        return false;
}

static int pg_prepared_add(struct pg_prepared *p, const struct pg_stmt *st) {
        if (pg_prepared_has(p, st))
                return 0;
        if (p->n == p->cap) {
                size_t cap = p->cap ? 2 * p->cap : 8;
                const struct pg_stmt **ns = realloc(p->stmts, cap * sizeof *ns);
                if (!ns)
                        return -ENOMEM;
                p->stmts = ns;
                p->cap = cap;
        }
        p->stmts[p->n++] = st;
        return 0;
}

/* One command sent in a pipeline: step's Parse (prepare) or its execution. */
struct pg_sent {
        size_t step;
        bool prepare;
};

int pg_exec_pipeline(PGconn *conn, const struct pg_step *steps, size_t n, PGresult **rets,
                     struct err_detail *reterr) {
        for (size_t i = 0; rets && i < n; i++)
                rets[i] = NULL;
        struct pg_prepared *p = pg_prepared_of(conn);
        _cleanup_free_ struct pg_sent *sent = calloc(2 * n + 1, sizeof *sent);
        if (!p || !sent)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        if (PQenterPipelineMode(conn) != 1)
                return pg_result_error(conn, NULL, NULL, reterr);
        int r = 0;
        size_t nsent = 0;
        for (size_t i = 0; i < n && r == 0; i++) {
                const struct pg_stmt *st = steps[i].stmt;
                bool queued = false; /* prepared earlier in this pipeline */
                for (size_t k = 0; st && k < nsent; k++)
                        queued |= sent[k].prepare && steps[sent[k].step].stmt == st;
                if (st && !queued && !pg_prepared_has(p, st)) {
                        if (!PQsendPrepare(conn, st->name, st->sql, st->nparams, NULL)) {
                                r = pg_result_error(conn, NULL, NULL, reterr);
                                break;
                        }
                        sent[nsent++] = (struct pg_sent){.step = i, .prepare = true};
                }
                int ok = st ? PQsendQueryPrepared(conn, st->name, st->nparams, steps[i].params, NULL, NULL, 0)
                            : PQsendQueryParams(conn, steps[i].sql, 0, NULL, NULL, NULL, NULL, 0);
                if (!ok)
                        r = pg_result_error(conn, NULL, NULL, reterr);
                else
                        sent[nsent++] = (struct pg_sent){.step = i};
        }
        if (PQpipelineSync(conn) != 1) {
                if (r == 0)
                        r = pg_result_error(conn, NULL, NULL, reterr);
                nsent = 0; /* nothing will answer: leave the connection broken to the pool */
        }
        for (size_t k = 0; k < nsent; k++) {
                const struct pg_step *s = &steps[sent[k].step];
                PGresult *res;
                bool got = false;
                /* each command: its result(s), then NULL */
                while ((res = PQgetResult(conn))) {
                        got = true;
                        ExecStatusType status = PQresultStatus(res);
                        if (status == PGRES_PIPELINE_ABORTED) /* an earlier step failed */
                                ;
                        else if (!pg_result_ok(res)) {
                                if (r == 0)
                                        r = pg_result_error(conn, res, NULL, reterr);
                        } else if (sent[k].prepare) {
                                if (pg_prepared_add(p, s->stmt) < 0 && r == 0)
                                        r = err_set(reterr, -ENOMEM, "", "out of memory");
                        } else {
                                /* COMMIT of an aborted transaction "succeeds" as a ROLLBACK */
                                if (r == 0 && !s->stmt && !strcmp(s->sql, "COMMIT") &&
                                    !strcmp(PQcmdStatus(res), "ROLLBACK"))
                                        r = err_set(reterr, -EIO, "25P02", "transaction was aborted and rolled back");
                                if (rets) {
                                        PQclear(rets[sent[k].step]);
                                        rets[sent[k].step] = TAKE_PTR(res);
                                }
                        }
                        PQclear(res);
                }
                if (!got) { /* the connection went away */
                        if (r == 0)
                                r = pg_result_error(conn, NULL, NULL, reterr);
                        break;
                }
        }
        if (nsent > 0) {
                PGresult *res = PQgetResult(conn);
                if (PQresultStatus(res) != PGRES_PIPELINE_SYNC && r == 0)
                        r = pg_result_error(conn, res, NULL, reterr);
                PQclear(res);
        }
        /* fails only when results are left (a broken connection): the pool
         * then finds it busy or bad and closes it */
        if (PQexitPipelineMode(conn) != 1 && r == 0)
                r = pg_result_error(conn, NULL, NULL, reterr);
        for (size_t i = 0; r < 0 && rets && i < n; i++) {
                PQclear(rets[i]);
                rets[i] = NULL;
        }
        return r;
}

int pg_exec_stmt(PGconn *conn, const struct pg_stmt *stmt, const char *const *params, PGresult **ret,
                 struct err_detail *reterr) {
        const struct pg_step step = {.stmt = stmt, .params = params};
        return pg_exec_pipeline(conn, &step, 1, ret, reterr);
}

/* True when every embedded migration is recorded: reading schema_migrations
 * needs only SELECT, which runtime roles have. Any error (no schema yet, no
 * privilege) just means "not known to be up to date". */
static bool pg_migrations_all_applied(PGconn *conn, const char *schema, const struct embedded_file *migrations) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT name FROM %s.schema_migrations", schema);
        PGresult *res = NULL;
        if (pg_exec(conn, sql, 0, NULL, &res, NULL) < 0)
                return false;
        bool all = true;
        for (size_t i = 0; all && migrations && migrations[i].name; i++) {
                bool found = false;
                for (int row = 0; !found && row < PQntuples(res); row++)
                        found = strcmp(PQgetvalue(res, row, 0), migrations[i].name) == 0;
                all = found;
        }
        PQclear(res);
        return all;
}

static int pg_migrate_locked(PGconn *conn, const char *schema, const struct embedded_file *migrations,
                             struct err_detail *reterr) {
        char sql[512];
        int r;
        snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", schema);
        if ((r = pg_exec(conn, sql, 0, NULL, NULL, reterr)) < 0)
                return r;
        snprintf(sql, sizeof sql,
                 "CREATE TABLE IF NOT EXISTS %s.schema_migrations ("
                 "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())", schema);
        if ((r = pg_exec(conn, sql, 0, NULL, NULL, reterr)) < 0)
                return r;

        size_t n = 0;
        while (migrations && migrations[n].name)
                n++;
        _cleanup_free_ const struct embedded_file **sorted = calloc(n + 1, sizeof *sorted);
        if (!sorted)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        for (size_t i = 0; i < n; i++)
                sorted[i] = &migrations[i];
        qsort(sorted, n, sizeof *sorted, migration_cmp);

        char insert[256];
        snprintf(insert, sizeof insert, "INSERT INTO %s.schema_migrations (name, applied_at) VALUES ($1, now())", schema);
        snprintf(sql, sizeof sql, "SELECT 1 FROM %s.schema_migrations WHERE name = $1", schema);
        int applied = 0;
        for (size_t i = 0; i < n; i++) {
                const char *name = sorted[i]->name;
                PGresult *res = NULL;
                if ((r = pg_exec(conn, sql, 1, &name, &res, reterr)) < 0)
                        return r;
                bool done = PQntuples(res) > 0;
                PQclear(res);
                if (done)
                        continue;

                if ((r = pg_begin(conn, reterr)) < 0)
                        return r;
                char path[160];
                snprintf(path, sizeof path, "SET LOCAL search_path TO %s, public", schema);
                if ((r = pg_exec(conn, path, 0, NULL, NULL, reterr)) < 0) {
                        pg_rollback(conn);
                        return r;
                }
                /* PQexec, not PQexecParams: a migration holds several statements. */
                res = PQexec(conn, sorted[i]->data);
                if (!pg_result_ok(res)) {
                        r = pg_result_error(conn, res, name, reterr);
                        PQclear(res);
                        pg_rollback(conn);
                        return r;
                }
                PQclear(res);
                if ((r = pg_exec(conn, insert, 1, &name, NULL, reterr)) < 0 ||
                    (r = pg_commit(conn, reterr)) < 0) {
                        pg_rollback(conn);
                        return r;
                }
                log_ctx(LOG_DEBUG, LOG_KV("schema", schema, "migration", name), "applied migration");
                applied++;
        }
        return applied;
}

int pg_migrate(PGconn *conn, const char *schema, const struct embedded_file *migrations,
               struct err_detail *reterr) {
        if (!schema_name_valid(schema))
                return err_set(reterr, -EINVAL, "schema", "schema name \"%s\" is not a plain lower-case identifier",
                               schema ? schema : "");
        if (pg_migrations_all_applied(conn, schema, migrations))
                return 0;
        const char *params[] = {schema};
        /* Session-level lock, taken before CREATE SCHEMA, so that services
         * starting at the same time migrate one after the other. */
        int r = pg_exec(conn, "SELECT pg_advisory_lock(hashtext($1))", 1, params, NULL, reterr);
        if (r < 0)
                return r;
        int applied = pg_migrate_locked(conn, schema, migrations, reterr);
        if (applied < 0 && reterr && strcmp(reterr->code, "42501") == 0) {
                char why[sizeof reterr->message];
                snprintf(why, sizeof why, "%s", reterr->message);
                err_set(reterr, -EACCES, "42501",
                        "schema %s has pending migrations and this role may not apply them (%s); "
                        "run the service's `migrate` command with the schema owner's DSN first", schema, why);
                applied = -EACCES;
        }
        r = pg_exec(conn, "SELECT pg_advisory_unlock(hashtext($1))", 1, params, NULL,
                    applied < 0 ? NULL : reterr);
        if (applied >= 0 && r < 0)
                return r;
        return applied;
}

#define PG_WAIT_RETRY_MIN_MS 100
#define PG_WAIT_RETRY_MAX_MS 5000
#define PG_WAIT_ACQUIRE_MS 5000

static bool pg_error_is_transient(int r) {
        return r == -ECONNRESET || r == -ETIMEDOUT || r == -EAGAIN;
}

int pg_migrate_wait(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                    const struct pg_migrate_wait_options *opts, struct err_detail *reterr) {
        static const struct pg_migrate_wait_options defaults = {0};
        if (!opts)
                opts = &defaults;
        int min_ms = opts->retry_min_ms > 0 ? opts->retry_min_ms : PG_WAIT_RETRY_MIN_MS;
        int max_ms = opts->retry_max_ms > 0 ? opts->retry_max_ms : PG_WAIT_RETRY_MAX_MS;
        int64_t deadline = opts->max_wait_ms > 0 ? time_mono_us() + (int64_t)opts->max_wait_ms * 1000 : 0;
        int delay = min_ms;
        for (unsigned attempt = 1;; attempt++) {
                struct err_detail err = {0};
                PGconn *conn = pg_pool_acquire(pool, PG_WAIT_ACQUIRE_MS, &err);
                int r = conn ? pg_migrate(conn, schema, migrations, &err) : (err.errnum < 0 ? err.errnum : -ECONNRESET);
                if (conn)
                        pg_pool_release(pool, conn);
                if (r >= 0 || !pg_error_is_transient(r)) {
                        if (r < 0 && reterr)
                                *reterr = err;
                        return r;
                }
                int64_t now = time_mono_us();
                if (deadline && now >= deadline) {
                        if (reterr)
                                *reterr = err;
                        return r;
                }
                int wait = delay;
                if (deadline && (deadline - now) / 1000 < wait)
                        wait = (int)((deadline - now + 999) / 1000);
                log_ctx(LOG_DEBUG, LOG_KV("schema", schema), "postgresql not ready, retrying in %d ms: %s", wait,
                        err.message);
                if (opts->on_retry)
                        opts->on_retry(opts->userdata, attempt, wait, &err);
                if (shutdown_sleep_ms(wait))
                        return err_set(reterr, -ECANCELED, "shutdown", "shutdown requested while waiting for postgresql");
                delay = delay * 2 > max_ms ? max_ms : delay * 2;
        }
}

int pg_pool_ping(struct pg_pool *pool, struct err_detail *reterr) {
        struct err_detail local = {0};
        struct err_detail *e = reterr ? reterr : &local;
        PGconn *conn = pg_pool_acquire(pool, 5000, e);
        if (!conn)
                return e->errnum < 0 ? e->errnum : -ECONNRESET;
        int r = pg_exec(conn, "SELECT 1", 0, NULL, NULL, e);
        pg_pool_release(pool, conn);
        return r < 0 ? r : 0;
}
