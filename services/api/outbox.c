/* The api's one outbox (docs/CONTRACTS.md "The api's outbox", migration
 * 0015): every message the api sends to another service (run requests, run
 * control, audit records) is inserted into api.outbox by outbox_put() in the
 * transaction of the state change it follows from, and produced from there
 * by the relay below; no handler produces to Kafka itself. A crash between
 * COMMIT and the broker loses nothing (the row waits), and a transaction
 * that rolls back never sends anything.
 *
 * Every api worker runs a relay, but a transaction-scoped advisory lock lets
 * only one relay of the whole deployment work at a time, so rows reach the
 * broker in the order they were committed (per key: a run's request before
 * its cancel, a tenant's audit records in chain order). A batch is claimed
 * (rows locked), queued to the producer in id order with the broker's
 * acknowledgements awaited together, and the acknowledged prefix deleted in
 * the same transaction: a crash after producing and before COMMIT sends the
 * batch again (at least once; every consumer applies a message id once).
 * While Kafka is down the rows wait and writes go on.
 *
 * Between rounds a relay sleeps on its own connection, LISTENing on
 * paddock_outbox (a trigger notifies at each commit that queued a row:
 * launch latency is one NOTIFY, not a poll interval), and looks anyway every
 * RELAY_SWEEP_MS in case a notification was missed (e.g. while it
 * reconnected). */
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

static struct metric m_relayed = {.name = "paddock_api_outbox_relayed_total",
                                  .help = "Messages produced from the api's outbox (runs.requested, runs.control, audit)",
                                  .type = METRIC_COUNTER};
static struct metric m_failures = {.name = "paddock_api_outbox_relay_failures_total",
                                   .help = "Relay rounds that failed (PostgreSQL or Kafka unavailable) and were retried",
                                   .type = METRIC_COUNTER};

static struct {
        struct api *api;
        pthread_t thread;
        bool started;
        atomic_bool stop;
} rl;

int outbox_put(PGconn *conn, const char *tenant_id, const char *topic, const char *key, const void *value,
               size_t len, struct err_detail *e) {
        static const char digits[] = "0123456789abcdef";
        /* bytea in text form: \x and two hex digits a byte */
        _cleanup_free_ char *hex = malloc(2 * len + 3);
        if (!hex)
                return err_set(e, -ENOMEM, "", "out of memory");
        const unsigned char *v = value;
        hex[0] = '\\';
        hex[1] = 'x';
        for (size_t i = 0; i < len; i++) {
                hex[2 + 2 * i] = digits[v[i] >> 4];
                hex[3 + 2 * i] = digits[v[i] & 15];
        }
        hex[2 + 2 * len] = '\0';
        const char *params[] = {tenant_id, topic, key, hex};
        int k = pg_exec(conn, "INSERT INTO api.outbox (tenant_id, topic, key, value) VALUES ($1, $2, $3, $4::bytea)",
                        4, params, NULL, e);
        /* the value may be sealed secrets: no clear copy of the hex either */
        explicit_bzero(hex, 2 * len + 3);
        return k;
}

static void relay_sleep(int ms) {
        for (int waited = 0; waited < ms && !atomic_load(&rl.stop); waited += 10)
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
}

static int hexval(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* bytea in PostgreSQL's text form (\x + hex) into a new buffer; the length or -1. */
static ssize_t unhex(const char *s, uint8_t **ret) {
        if (s[0] != '\\' || s[1] != 'x')
                return -1;
        s += 2;
        size_t n = strlen(s);
        if (n % 2)
                return -1;
        uint8_t *out = malloc(n / 2 ? n / 2 : 1);
        if (!out)
                return -1;
        for (size_t i = 0; i < n / 2; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        free(out);
                        return -1;
                }
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        *ret = out;
        return (ssize_t)(n / 2);
}

struct claimed {
        int n;
        uint8_t **values;
        struct kafka_outgoing *msgs;
};

static void claimed_free(struct claimed *c) {
        for (int i = 0; i < c->n; i++)
                if (c->values && c->values[i]) {
                        explicit_bzero(c->values[i], c->msgs[i].len);
                        free(c->values[i]);
                }
        free(c->values);
        free(c->msgs);
}

/* One round: the number of rows relayed (0: none, or another relay holds
 * the lock), or a negative errno. */
static int relay_round(PGconn *conn, struct err_detail *e) {
        _cleanup_pgres_ PGresult *rows = NULL;
        _cleanup_(claimed_free) struct claimed c = {0};
        _cleanup_free_ char *ids = NULL;
        /* begin, lock and claim in one round trip: a relay that does not
         * get the lock claims (and locks) nothing */
        char sql[200];
        snprintf(sql, sizeof sql,
                 "SELECT id, topic, key, value FROM api.outbox_claim("
                 "CASE WHEN pg_try_advisory_xact_lock(%d) THEN %d ELSE 0 END)",
                 RELAY_LOCK_KEY, RELAY_BATCH);
        int k = pg_tx_restart_then(conn, NULL, NULL, sql, &rows, e);
        if (k < 0)
                goto fail;
        int n = PQntuples(rows);
        if (n == 0) {
                pg_rollback(conn);
                return 0;
        }
        c.values = calloc((size_t)n + 1, sizeof *c.values);
        c.msgs = calloc((size_t)n + 1, sizeof *c.msgs);
        /* "{1,2,...}": the ids produced */
        ids = malloc((size_t)n * 21 + 3);
        if (!c.values || !c.msgs || !ids) {
                k = err_set(e, -ENOMEM, "", "out of memory");
                goto fail;
        }
        /* rows (never unreadable: outbox_put wrote them) in order; one that
         * could not be decoded stops the batch there, keeping the order */
        int usable = 0;
        for (; usable < n; usable++) {
                ssize_t len = unhex(PQgetvalue(rows, usable, 3), &c.values[usable]);
                if (len < 0)
                        break;
                c.n = usable + 1;
                c.msgs[usable] = (struct kafka_outgoing){.topic = PQgetvalue(rows, usable, 1),
                                                         .key = PQgetvalue(rows, usable, 2),
                                                         .value = c.values[usable], .len = (size_t)len};
        }
        int sent = kafka_produce_sync_many(rl.api->producer, c.msgs, (size_t)usable, RELAY_PRODUCE_TIMEOUT_MS, e);
        int produce_err = sent < usable ? (e->errnum ? e->errnum : -EIO) : 0;
        if (!produce_err && usable < n)
                produce_err = err_set(e, -ENOMEM, "", "could not decode outbox row %s", PQgetvalue(rows, usable, 0));
        size_t used = 0;
        ids[used++] = '{';
        for (int i = 0; i < sent; i++)
                used += (size_t)snprintf(ids + used, 22, "%s%s", i ? "," : "", PQgetvalue(rows, i, 0));
        ids[used++] = '}';
        ids[used] = '\0';
        if (sent > 0) {
                /* the acknowledged prefix only: the rest goes again, in order */
                const char *dp[] = {ids};
                if ((k = pg_exec(conn, "SELECT api.outbox_done($1::bigint[])", 1, dp, NULL, e)) < 0)
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
        if (PQstatus(conn) != CONNECTION_OK || pg_exec(conn, "LISTEN paddock_outbox", 0, NULL, NULL, NULL) < 0) {
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
                        log_ctx(LOG_WARN, LOG_KV("kafka_or_sqlstate", e.code), "outbox relay: %s; retrying",
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

int outbox_relay_start(struct api *a) {
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

void outbox_relay_stop(void) {
        atomic_store(&rl.stop, true);
        if (rl.started)
                pthread_join(rl.thread, NULL);
        rl.started = false;
}
