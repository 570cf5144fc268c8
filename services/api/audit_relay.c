/* The audit relay: produces the records control-plane writes queued in
 * api.audit_outbox (audit_api.c) on paddock.audit, then deletes them.
 *
 * Every api worker runs one, but a transaction-scoped advisory lock lets
 * only one relay of the whole deployment work at a time, so the records of a
 * tenant reach its chain in the order they were committed. A batch is
 * claimed (rows locked), produced one by one with the broker's
 * acknowledgement awaited, and deleted in the same transaction: a crash after
 * producing and before COMMIT sends the batch again, and evidence drops a
 * message id it already chained (at least once, applied once). While Kafka
 * is down the records wait in the outbox and writes go on.
 *
 * Between rounds a relay sleeps on its own connection, LISTENing on
 * paddock_audit_outbox (a trigger notifies at each commit that queued a
 * record), and looks anyway every RELAY_SWEEP_MS in case a notification was
 * missed (e.g. while it reconnected). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "core/log.h"
#include "core/metrics.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "pg/pg.h"

#define RELAY_BATCH 100
#define RELAY_SWEEP_MS 1000       /* longest sleep without a notification */
#define RELAY_RETRY_MS 1000       /* after a failure (PostgreSQL or Kafka down) */
#define RELAY_PRODUCE_TIMEOUT_MS 5000
/* any constant shared by every api: the lock serialising the relays */
#define RELAY_LOCK_KEY 0x70616464 /* "padd" */

static struct metric m_relayed = {.name = "paddock_api_audit_records_relayed_total",
                                  .help = "Audit records produced from the outbox on paddock.audit",
                                  .type = METRIC_COUNTER};
static struct metric m_failures = {.name = "paddock_api_audit_relay_failures_total",
                                   .help = "Relay rounds that failed (PostgreSQL or Kafka unavailable) and were retried",
                                   .type = METRIC_COUNTER};

static struct {
        struct api *api;
        pthread_t thread;
        bool started;
        atomic_bool stop;
} rl;

static void relay_sleep(int ms) {
        for (int waited = 0; waited < ms && !atomic_load(&rl.stop); waited += 10)
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
}

/* bytea in PostgreSQL's text form (\x + hex) into bytes; returns the length or -1. */
static ssize_t unhex(const char *s, uint8_t *out, size_t size) {
        if (s[0] != '\\' || s[1] != 'x')
                return -1;
        s += 2;
        size_t n = strlen(s);
        if (n % 2 || n / 2 > size)
                return -1;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(s + 2 * i, "%2x", &v) != 1)
                        return -1;
                out[i] = (uint8_t)v;
        }
        return (ssize_t)(n / 2);
}

/* One round: the number of records relayed (0: none, or another relay holds
 * the lock), or a negative errno. */
static int relay_round(PGconn *conn, struct err_detail *e) {
        _cleanup_pgres_ PGresult *lock = NULL, *rows = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *ids = NULL;
        int k = pg_begin(conn, e);
        if (k < 0)
                return k;
        char key[16], max[16];
        snprintf(key, sizeof key, "%d", RELAY_LOCK_KEY);
        snprintf(max, sizeof max, "%d", RELAY_BATCH);
        const char *lp[] = {key};
        if ((k = pg_exec(conn, "SELECT pg_try_advisory_xact_lock($1::bigint)", 1, lp, &lock, e)) < 0)
                goto fail;
        if (PQgetvalue(lock, 0, 0)[0] != 't') {
                pg_rollback(conn);
                return 0;
        }
        const char *cp[] = {max};
        if ((k = pg_exec(conn, "SELECT id, tenant_id, record FROM api.audit_outbox_claim($1::int)", 1, cp, &rows, e)) <
            0)
                goto fail;
        int n = PQntuples(rows), sent = 0;
        size_t bufsize = 0;
        /* "{1,2,...}": the ids produced, deleted even if a later one fails */
        ids = malloc((size_t)n * 21 + 3);
        if (!ids) {
                k = -ENOMEM;
                goto fail;
        }
        size_t used = 0;
        ids[used++] = '{';
        for (int i = 0; i < n; i++) {
                const char *hex = PQgetvalue(rows, i, 2);
                size_t need = strlen(hex) / 2;
                if (need > bufsize) {
                        uint8_t *nb = realloc(buf, need);
                        if (!nb) {
                                k = -ENOMEM;
                                break;
                        }
                        buf = nb;
                        bufsize = need;
                }
                ssize_t len = unhex(hex, buf, bufsize);
                if (len >= 0)
                        k = kafka_produce_sync(rl.api->producer, TOPIC_AUDIT, PQgetvalue(rows, i, 1), buf,
                                               (size_t)len, RELAY_PRODUCE_TIMEOUT_MS, e);
                else /* cannot happen for rows audit_api.c wrote; must not block the others */
                        log_ctx(LOG_ERROR, LOG_KV("outbox_id", PQgetvalue(rows, i, 0)),
                                "unreadable outbox record dropped");
                if (k < 0)
                        break;
                used += (size_t)snprintf(ids + used, 22, "%s%s", sent ? "," : "", PQgetvalue(rows, i, 0));
                sent++;
        }
        ids[used++] = '}';
        ids[used] = '\0';
        int produce_err = k < 0 ? k : 0;
        if (sent > 0) {
                const char *dp[] = {ids};
                if ((k = pg_exec(conn, "SELECT api.audit_outbox_done($1::bigint[])", 1, dp, NULL, e)) < 0)
                        goto fail;
        }
        if ((k = pg_commit(conn, e)) < 0)
                return k;
        metric_add(&m_relayed, (uint64_t)sent);
        return produce_err < 0 ? produce_err : sent;
fail:
        pg_rollback(conn);
        return k;
}

/* The LISTENing connection, (re)made as needed; NULL while PostgreSQL is away. */
static PGconn *listener(PGconn *conn) {
        if (conn && PQstatus(conn) == CONNECTION_OK)
                return conn;
        if (conn)
                PQfinish(conn);
        conn = PQconnectdb(rl.api->cfg.svc.pg_dsn);
        if (PQstatus(conn) != CONNECTION_OK || pg_exec(conn, "LISTEN paddock_audit_outbox", 0, NULL, NULL, NULL) < 0) {
                PQfinish(conn);
                return NULL;
        }
        return conn;
}

/* Sleeps until a notification, stop, or ms; a stop is seen within 100 ms. */
static void relay_wait(PGconn *conn, int ms) {
        if (!conn) {
                relay_sleep(ms);
                return;
        }
        for (int waited = 0; waited < ms && !atomic_load(&rl.stop); waited += 100) {
                struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
                if (poll(&p, 1, 100) > 0) {
                        bool woken = false;
                        PQconsumeInput(conn);
                        for (PGnotify *n; (n = PQnotifies(conn)); PQfreemem(n))
                                woken = true;
                        if (woken || PQstatus(conn) != CONNECTION_OK)
                                return;
                }
        }
}

static void *relay_thread(void *arg) {
        (void)arg;
        PGconn *listen_conn = NULL;
        while (!atomic_load(&rl.stop)) {
                /* listening before the round: a commit during it is not missed */
                listen_conn = listener(listen_conn);
                struct err_detail e = {0};
                PGconn *conn = pg_pool_acquire(rl.api->pg, DB_ACQUIRE_TIMEOUT_MS, &e);
                int k = conn ? relay_round(conn, &e) : (e.errnum ? e.errnum : -ECONNRESET);
                if (conn)
                        pg_pool_release(rl.api->pg, conn);
                if (k < 0) {
                        metric_add(&m_failures, 1);
                        log_ctx(LOG_WARN, LOG_KV("kafka_or_sqlstate", e.code), "audit relay: %s; retrying",
                                e.message[0] ? e.message : strerror(-k));
                        relay_sleep(RELAY_RETRY_MS);
                } else if (k < RELAY_BATCH) {
                        relay_wait(listen_conn, RELAY_SWEEP_MS);
                }
        }
        if (listen_conn)
                PQfinish(listen_conn);
        return NULL;
}

int audit_relay_start(struct api *a) {
        rl.api = a;
        atomic_store(&rl.stop, false);
        metrics_register(&m_relayed);
        metrics_register(&m_failures);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = pthread_create(&rl.thread, NULL, relay_thread, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0)
                return -r;
        rl.started = true;
        return 0;
}

void audit_relay_stop(void) {
        atomic_store(&rl.stop, true);
        if (rl.started)
                pthread_join(rl.thread, NULL);
        rl.started = false;
}
