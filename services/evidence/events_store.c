/* Session history: each record of paddock.runs.events is a RunEventBatch of
 * one run (proto/paddock/v1/events.proto); every event becomes one row of
 * evidence.run_events, exactly once per (run_id, seq) however often Kafka
 * delivers it. A poll round of records is stored in transactions of at most
 * round_max_events events (issue 10; docs/CONTRACTS.md): the rows are COPYed
 * into session-temporary staging tables, then INSERT ... SELECT (ON CONFLICT
 * DO NOTHING unless every seq is new) per tenant (row-level security keys on
 * the tenant), with the signed records stored once and evidence.run_history
 * kept in the same statement; the next transaction's records are decoded
 * while PostgreSQL runs the insert. The reporter check runs once per (run,
 * signer) per round, not per event. */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/domain.h"
#include "audit/audit_ocsf.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "evidence.h"
#include "kafka/bus_auth.h"
#include "kafka/consume_loop.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "pg/pg.h"
#include "pg/pg_copy.h"
#include "proto/envelope.h"
#include "service/run_node.h"

#define KIND_MAX 64
#define ACTOR_MAX 256
#define STATUS_MAX 32

static struct metric m_stored = {.name = "paddock_evidence_events_stored_total",
                                 .help = "Run events inserted into the session history", .type = METRIC_COUNTER};
static struct metric m_duplicates = {.name = "paddock_evidence_events_duplicate_total",
                                     .help = "Run events delivered again and ignored", .type = METRIC_COUNTER};
static struct metric m_raw = {.name = "paddock_evidence_events_invalid_data_total",
                              .help = "Run events whose data was not a JSON object, stored as {\"raw\": text}",
                              .type = METRIC_COUNTER};
static struct metric m_batches = {.name = "paddock_evidence_event_batches_total",
                                  .help = "Poll rounds of run event records stored, one transaction each",
                                  .type = METRIC_COUNTER};
static struct metric m_batch_events = {.name = "paddock_evidence_event_batch_size",
                                       .help = "Events in the last stored round", .type = METRIC_GAUGE};
static struct metric m_superseded = {.name = "paddock_evidence_events_superseded_total",
                                     .help = "Terminal events stored superseded (the run already had its terminal status)",
                                     .type = METRIC_COUNTER};
static struct metric m_fast = {.name = "paddock_evidence_event_batches_fast_total",
                              .help = "Rounds stored by the fast path (every seq above its run's stored maximum: "
                                      "a plain insert, no conflict check)",
                              .type = METRIC_COUNTER};
static struct metric m_fast_fallback = {.name = "paddock_evidence_event_batches_fast_fallback_total",
                                       .help = "Fast rounds refused by the primary key (a seq stored meanwhile) "
                                               "and stored again conflict-checked",
                                       .type = METRIC_COUNTER};
static struct metric m_lag_p99 = {.name = "paddock_evidence_durable_lag_p99_ms",
                                  .help = "p99 over the last stored round of (commit time - event ts), milliseconds",
                                  .type = METRIC_GAUGE};
static struct metric m_siem = {.name = "paddock_evidence_siem_run_events_published_total",
                               .help = "OCSF records of run events published on paddock.siem.ocsf",
                               .type = METRIC_COUNTER};
static struct metric m_siem_withheld = {
        .name = "paddock_evidence_siem_run_events_withheld_total",
        .help = "Run events not published on paddock.siem.ocsf: their seq is stored with another content",
        .type = METRIC_COUNTER};
static struct metric m_lag_over = {.name = "paddock_evidence_durable_lag_over_1s_total",
                                   .help = "Events made durable more than 1 s after their ts", .type = METRIC_COUNTER};

void events_store_register_metrics(void) {
        metrics_register(&m_stored);
        metrics_register(&m_duplicates);
        metrics_register(&m_raw);
        metrics_register(&m_batches);
        metrics_register(&m_batch_events);
        metrics_register(&m_superseded);
        metrics_register(&m_fast);
        metrics_register(&m_fast_fallback);
        metrics_register(&m_lag_p99);
        metrics_register(&m_lag_over);
        metrics_register(&m_siem);
        metrics_register(&m_siem_withheld);
}

/* The round's decoded records live in one arena, freed at once when the
 * round ends: protobuf-c allocates every field of every event separately,
 * and malloc and free were about a fifth of evidence's own CPU at ingest
 * (issue 10 §4 profile). */
#define ARENA_BLOCK (1 << 20)

struct arena_block {
        struct arena_block *next;
        size_t used, cap;
        max_align_t data[];
};

struct arena {
        ProtobufCAllocator pb; /* its allocator_data is the arena */
        struct arena_block *head;
};

static void *arena_alloc(void *data, size_t size) {
        struct arena *a = data;
        size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
        struct arena_block *b = a->head;
        if (!b || b->cap - b->used < size) {
                size_t cap = size > ARENA_BLOCK / 4 ? size : ARENA_BLOCK;
                b = malloc(sizeof *b + cap);
                if (!b)
                        return NULL;
                b->used = 0;
                b->cap = cap;
                if (a->head && cap != ARENA_BLOCK) { /* a large one: keep filling the current block */
                        b->next = a->head->next;
                        a->head->next = b;
                } else {
                        b->next = a->head;
                        a->head = b;
                }
        }
        void *p = (char *)b->data + b->used;
        b->used += size;
        return p;
}

static void arena_free_one(void *data, void *p) {
        (void)data, (void)p; /* everything goes with the arena */
}

static void arena_init(struct arena *a) {
        *a = (struct arena){.pb = {.alloc = arena_alloc, .free = arena_free_one}};
        a->pb.allocator_data = a;
}

static void arena_done(struct arena *a) {
        for (struct arena_block *b = a->head, *next; b; b = next) {
                next = b->next;
                free(b);
        }
        a->head = NULL;
}

/* One record of the round. */
struct record {
        const struct kafka_message *m;
        Paddock__V1__RunEventBatch *batch;
        const char *run_id, *tenant_id;
        int64_t record_id; /* its evidence.signed_records id once stored (0: unsigned) */
        bool skip;         /* poison, refused, or already stored */
        bool siem;         /* passed the checks: its events go on the SIEM feed if the store holds them */
        bool all_staged;   /* stage_events staged every event (none was a seq staged earlier this round) */
        bool whole;        /* all its events inserted by a fast round: on the feed without a look at the store */
        bool from_api;     /* signed by the api (a review): no reporter check */
};

/* What the round knows of a run: from evidence.run_history, then each staged event. */
struct run_state {
        const char *run_id, *tenant_id;
        uint64_t stored_max;     /* highest stored seq when the round began */
        uint64_t max_seq;        /* highest stored or staged seq */
        uint64_t staged_max;     /* highest seq staged this round (0: none) */
        uint64_t terminal_seq;   /* 0: no terminal status yet */
        char terminal_status[STATUS_MAX + 1];
        /* what this round stages, for the fast path's evidence.run_history */
        long long staged;
        bool terminal_staged;    /* terminal_seq and terminal_status are this round's */
        long long lost;          /* events_lost of the terminal event staged */
        long long decisions[3];  /* policy_decision events staged, by decision_actions */
};

/* The policy_decision actions evidence.run_history counts per run
 * (migration 0013), in its columns' order. */
static const char *const decision_actions[] = {"allow", "ask", "deny"};

/* Counts a staged policy_decision event by its data's "action" (one of
 * decision_actions; another is not counted, as GET /v1/runs/{id} never
 * showed it). Rare events: their data is parsed here, the others' never. */
static void count_decision(struct run_state *st, const Paddock__V1__RunEvent *ev, const char *data) {
        if (strcmp(ev->kind, "policy_decision"))
                return;
        json_t *o = json_loads(data, 0, NULL);
        const char *action = json_string_value(json_object_get(o, "action"));
        for (size_t i = 0; action && i < ELEMENTSOF(decision_actions); i++)
                if (!strcmp(action, decision_actions[i]))
                        st->decisions[i]++;
        json_decref(o);
}

/* Keeps what the runner-agent sent even when it is not a JSON object, so the
 * evidence trail shows it rather than losing the event. */
static json_t *data_wrap_raw(const char *text) {
        json_t *raw = json_string(text);
        if (!raw) /* not valid UTF-8 */
                raw = json_string("(data is not valid utf-8)");
        json_t *o = json_object();
        json_object_set_new(o, "raw", raw);
        metric_add(&m_raw, 1);
        return o;
}

static bool is_terminal_status(const char *s) {
        return run_status_name_is_terminal(s);
}

/* Validates a decoded record: one run and tenant, seqs ascending and
 * contiguous, or a single terminal event with seq 0 (a platform verdict,
 * appended: shared10 decision 3). */
static int record_check(const Paddock__V1__RunEventBatch *b, struct err_detail *reterr) {
        if (b->n_events == 0)
                return err_set(reterr, -EINVAL, "events", "a RunEventBatch without events");
        const Paddock__V1__RunEvent *first = b->events[0];
        for (size_t i = 0; i < b->n_events; i++) {
                const Paddock__V1__RunEvent *ev = b->events[i];
                /* the first event's ids are checked; the others' only compared
                 * with them (the per-event parse was a hot spot at ingest) */
                bool same = i > 0 && ev->env && !strcmp(ev->env->run_id, first->env->run_id) &&
                            !strcmp(ev->env->tenant_id, first->env->tenant_id);
                if (!same && (!ev->env || !id_is_uuid(ev->env->run_id)))
                        return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
                if (!same && !id_is_uuid(ev->env->tenant_id))
                        return err_set(reterr, -EINVAL, "env.tenant_id", "env.tenant_id is not a UUID");
                if (i > 0 && !same)
                        return err_set(reterr, -EINVAL, "events", "a RunEventBatch holds events of several runs");
                if (ev->env->seq > INT64_MAX / 2)
                        return err_set(reterr, -EINVAL, "env.seq", "env.seq is out of range");
                if (ev->env->seq == 0 && !(b->n_events == 1 && (ev->terminal || !strcmp(ev->kind, "review"))))
                        return err_set(reterr, -EINVAL, "env.seq",
                                       "env.seq 0 (append) is only for a platform verdict or a review alone in "
                                       "its record");
                if (i > 0 && ev->env->seq != first->env->seq + i)
                        return err_set(reterr, -EINVAL, "env.seq", "seqs of a RunEventBatch must be contiguous");
                const char *prev_team = i > 0 ? b->events[i - 1]->team_id : NULL;
                if (ev->team_id && *ev->team_id && !(prev_team && !strcmp(ev->team_id, prev_team)) &&
                    !id_is_uuid(ev->team_id))
                        return err_set(reterr, -EINVAL, "team_id", "team_id is not a UUID");
                size_t kind_len = strlen(ev->kind);
                if (kind_len == 0 || kind_len > KIND_MAX)
                        return err_set(reterr, -EINVAL, "kind", "kind must be 1-%d characters", KIND_MAX);
                if (strlen(ev->actor) > ACTOR_MAX)
                        return err_set(reterr, -EINVAL, "actor", "actor is longer than %d characters", ACTOR_MAX);
                if (strlen(ev->status) > STATUS_MAX)
                        return err_set(reterr, -EINVAL, "status", "status is longer than %d characters", STATUS_MAX);
        }
        return 0;
}

static struct run_state *run_state_find(struct run_state *runs, size_t n, const char *run_id) {
        for (size_t i = 0; i < n; i++)
                if (!strcmp(runs[i].run_id, run_id))
                        return &runs[i];
        return NULL;
}

/* Who may append what (docs/CONTRACTS.md "Reviews and the signed evidence
 * bundle"): the api signs exactly one kind of run event, a person's review
 * (kind "review", actor "user:<id>", seq 0 "append", alone and not
 * terminal); nobody else says "review" with seq 0. Returns true if the
 * record may go on to the reporter check (the api's passes it: the api is
 * not a run's node), false if refused (counted as wrong_subject). */
static bool review_check(const struct record *r, bool *ret_from_api) {
        const Paddock__V1__RunEvent *ev = r->batch->events[0];
        bool review = r->batch->n_events == 1 && ev->env->seq == 0 && !strcmp(ev->kind, "review");
        *ret_from_api = !strcmp(r->m->signer, "api");
        const char *why = NULL;
        if (*ret_from_api && !(review && !ev->terminal && !strncmp(ev->actor, "user:", 5) && id_is_uuid(ev->actor + 5)))
                why = "the api appends only reviews (kind review, seq 0, actor user:<id>)";
        else if (!*ret_from_api && review)
                why = "only the api appends reviews";
        if (!why)
                return true;
        char detail[200];
        snprintf(detail, sizeof detail, "run %s: %s", r->run_id, why);
        bus_auth_refuse(r->m->topic, r->m->signer, BUS_REFUSED_WRONG_SUBJECT, detail);
        return false;
}

/* Is this (run, signer) already decided this round? Index of the first
 * record with them, or SIZE_MAX. */
static size_t reporter_seen(const struct record *recs, size_t upto, const struct record *r) {
        for (size_t i = 0; i < upto; i++)
                if (recs[i].run_id && !strcmp(recs[i].run_id, r->run_id) && !strcmp(recs[i].m->signer, r->m->signer))
                        return i;
        return SIZE_MAX;
}

/* A uuid[] / text[] literal of the given strings (all UUIDs or hex: no quoting needed). */
static char *array_literal(const char *const *items, size_t n) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        fputc('{', f);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s%s", i ? "," : "", items[i]);
        fputc('}', f);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* Adds t to a round's tenants (borrowed, each once); returns their new count. */
static size_t tenants_add(const char **tenants, size_t nten, const char *t) {
        for (size_t k = 0; k < nten; k++)
                if (!strcmp(tenants[k], t))
                        return nten;
        tenants[nten] = t;
        return nten + 1;
}

/* Makes t the transaction's tenant (row-level security) unless *cur, the
 * tenant this transaction last set, is t already: each round trip is paid in
 * series with the round's inserts, and a round is mostly one tenant's. */
static int tenant_local(PGconn *conn, const char **cur, const char *t, struct err_detail *reterr) {
        if (*cur && !strcmp(*cur, t))
                return 0;
        int r = pg_set_tenant_local(conn, t, reterr);
        *cur = r < 0 ? NULL : t;
        return r;
}

/* Loads the round's runs of tenant t from evidence.run_history (locked for
 * the transaction) and marks the records already stored as skip. */
static int load_tenant_state(PGconn *conn, const char **cur, const char *t, struct record *recs, size_t nrec,
                             struct run_state *runs, size_t nruns, struct err_detail *reterr) {
        _cleanup_free_ const char **ids = calloc(nruns + 1, sizeof *ids);
        _cleanup_free_ char **sigs = calloc(nrec + 1, sizeof *sigs);
        if (!ids || !sigs)
                return -ENOMEM;
        size_t ni = 0, ns = 0;
        for (size_t i = 0; i < nruns; i++)
                if (!strcmp(runs[i].tenant_id, t))
                        ids[ni++] = runs[i].run_id;
        int r = 0;
        for (size_t i = 0; i < nrec && r == 0; i++) {
                if (recs[i].skip || strcmp(recs[i].tenant_id, t) || !recs[i].m->is_signed)
                        continue;
                sigs[ns] = malloc(2 * SIGN_SIGNATURE_LEN + 1);
                if (!sigs[ns])
                        r = -ENOMEM;
                else
                        hex_encode(recs[i].m->sig, SIGN_SIGNATURE_LEN, sigs[ns++]);
        }
        _cleanup_free_ char *id_arr = r == 0 ? array_literal(ids, ni) : NULL;
        _cleanup_free_ char *sig_arr = r == 0 ? array_literal((const char *const *)sigs, ns) : NULL;
        for (size_t i = 0; i < ns; i++)
                free(sigs[i]);
        if (r < 0 || !id_arr || !sig_arr)
                return -ENOMEM;

        r = tenant_local(conn, cur, t, reterr);
        if (r < 0)
                return r;
        _cleanup_(PQclearp) PGresult *hist = NULL, *seen = NULL;
        const char *p1[] = {id_arr};
        r = pg_exec(conn,
                    "SELECT run_id, max_seq, coalesce(terminal_seq, 0), coalesce(terminal_status, '')"
                    " FROM evidence.run_history WHERE run_id = ANY($1::uuid[]) FOR UPDATE",
                    1, p1, &hist, reterr);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(hist); i++) {
                struct run_state *st = run_state_find(runs, nruns, PQgetvalue(hist, i, 0));
                if (!st)
                        continue;
                st->max_seq = st->stored_max = strtoull(PQgetvalue(hist, i, 1), NULL, 10);
                st->terminal_seq = strtoull(PQgetvalue(hist, i, 2), NULL, 10);
                snprintf(st->terminal_status, sizeof st->terminal_status, "%s", PQgetvalue(hist, i, 3));
        }
        if (ns == 0)
                return 0;
        const char *p2[] = {id_arr, sig_arr};
        r = pg_exec(conn,
                    "SELECT run_id, encode(signature, 'hex'), id FROM evidence.signed_records"
                    " WHERE run_id = ANY($1::uuid[])"
                    "  AND signature = ANY(ARRAY(SELECT decode(x, 'hex') FROM unnest($2::text[]) x))",
                    2, p2, &seen, reterr);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(seen); i++) {
                char hex[2 * SIGN_SIGNATURE_LEN + 1];
                for (size_t k = 0; k < nrec; k++) {
                        if (recs[k].skip || strcmp(recs[k].run_id, PQgetvalue(seen, i, 0)) || !recs[k].m->is_signed)
                                continue;
                        hex_encode(recs[k].m->sig, SIGN_SIGNATURE_LEN, hex);
                        if (!strcmp(hex, PQgetvalue(seen, i, 1))) {
                                /* redelivered: its events are all stored, by
                                 * it or (a seq stored already) by another */
                                recs[k].skip = true;
                                recs[k].record_id = strtoll(PQgetvalue(seen, i, 2), NULL, 10);
                                metric_add(&m_duplicates, (long long)recs[k].batch->n_events);
                        }
                }
        }
        return 0;
}

/* Writes the event's data as it will be stored: a JSON object (what is not
 * one is wrapped as raw text), rewritten by jansson; a terminal status after
 * the run's winner is stored superseded (decision 4). *lost: the terminal
 * event's "events_lost". Returns the JSON text: the event's own when it is
 * stored as sent, else one written here that *owned holds (caller frees);
 * NULL on out of memory. */
static const char *event_data(const Paddock__V1__RunEvent *ev, const struct run_state *st, bool superseded,
                              bool careful, long long *lost, char **owned) {
        const char *text = *ev->data_json ? ev->data_json : "{}";
        size_t len = strlen(text);
        *lost = 0;
        /* the fast path, for what the runner-agent writes (jansson objects):
         * PostgreSQL parses it once, as jsonb; a round it refuses is staged
         * again with careful set */
        if (!careful && strcmp(ev->kind, "status") && !superseded && len >= 2 && text[0] == '{' && text[len - 1] == '}')
                return text;
        json_error_t jerr;
        json_t *data = json_loads(text, 0, &jerr);
        if (!json_is_object(data)) {
                json_decref(data);
                data = data_wrap_raw(text);
        }
        if (!data)
                return NULL;
        json_t *l = json_object_get(data, "events_lost");
        *lost = json_is_integer(l) && json_integer_value(l) > 0 ? json_integer_value(l) : 0;
        if (superseded) {
                json_object_set_new(data, "superseded",
                                    json_pack("{s:I, s:s}", "by_seq", (json_int_t)st->terminal_seq, "status",
                                              st->terminal_status));
                metric_add(&m_superseded, 1);
        }
        *owned = json_dumps(data, JSON_COMPACT);
        json_decref(data);
        return *owned;
}

/* The session-temporary staging tables, typed as the binary COPY writes them. */
static int stage_tables(PGconn *conn, struct err_detail *reterr) {
        /* lz4: the default pglz compressing each staged record (a whole
         * RunEventBatch) was the top function of the round in PostgreSQL */
        int r = pg_exec(conn,
                        "CREATE TEMP TABLE IF NOT EXISTS evidence_stage_records (rec int, tenant_id uuid, run_id uuid,"
                        "  signer text, signature bytea, signed_value bytea COMPRESSION lz4) ON COMMIT DELETE ROWS",
                        0, NULL, NULL, reterr);
        if (r >= 0)
                r = pg_exec(conn,
                            "CREATE TEMP TABLE IF NOT EXISTS evidence_stage_events (run_id uuid, seq bigint,"
                            "  tenant_id uuid, team_id uuid, ts timestamptz, kind text, actor text, data jsonb,"
                            "  terminal boolean, status text, lost bigint, record_id bigint) ON COMMIT DELETE ROWS",
                            0, NULL, NULL, reterr);
        return r;
}

/* Stores the round's signed records of tenant t (each once: a record
 * already there keeps its row) and sets each one's record_id. */
static int store_records(PGconn *conn, const char **cur, const char *t, struct record *recs, size_t nrec,
                         struct err_detail *reterr) {
        int r = tenant_local(conn, cur, t, reterr);
        if (r < 0)
                return r;
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *p[] = {t};
        /* the conflicting rows are not in ins: their ids come from the table
         * (the statement's snapshot holds them, not the rows ins adds) */
        r = pg_exec(conn,
                    "WITH ins AS ("
                    "  INSERT INTO evidence.signed_records (run_id, tenant_id, signer, signature, signed_value)"
                    "  SELECT run_id, tenant_id, signer, signature, signed_value FROM evidence_stage_records"
                    "  WHERE tenant_id = $1 ON CONFLICT (run_id, signature) DO NOTHING"
                    "  RETURNING id, run_id, signature)"
                    " SELECT s.rec, coalesce(i.id, r.id) FROM evidence_stage_records s"
                    " LEFT JOIN ins i ON i.run_id = s.run_id AND i.signature = s.signature"
                    " LEFT JOIN evidence.signed_records r ON r.run_id = s.run_id AND r.signature = s.signature"
                    " WHERE s.tenant_id = $1",
                    1, p, &res, reterr);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(res); i++) {
                unsigned long k = strtoul(PQgetvalue(res, i, 0), NULL, 10);
                if (k < nrec)
                        recs[k].record_id = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        }
        return 0;
}

/* Stages the round's signed records (binary COPY: the signed value as it is,
 * no hex; streamed as built) and stores them, tenant by tenant. */
static int stage_records(PGconn *conn, const char **cur, struct record *recs, size_t nrec,
                         const char *const *tenants, size_t nten, struct err_detail *reterr) {
        size_t n = 0;
        for (size_t i = 0; i < nrec; i++)
                n += !recs[i].skip && recs[i].m->is_signed;
        if (n == 0)
                return 0;
        _cleanup_(pg_copy_buf_done) struct pg_copy_buf b = {0};
        int r = pg_copy_stream_start(conn, "COPY evidence_stage_records FROM STDIN (FORMAT binary)", &b, reterr);
        for (size_t i = 0; r >= 0 && i < nrec; i++) {
                const struct kafka_message *m = recs[i].m;
                if (recs[i].skip || !m->is_signed)
                        continue;
                pg_copy_row(&b, 6);
                pg_copy_int4(&b, (int32_t)i);
                if (pg_copy_uuid(&b, recs[i].tenant_id) < 0 || pg_copy_uuid(&b, recs[i].run_id) < 0) {
                        /* record_check let only UUIDs through */
                        pg_copy_stream_end(conn, &b, "not a uuid", NULL);
                        return -EINVAL;
                }
                pg_copy_text(&b, m->signer, false);
                pg_copy_bytes(&b, m->sig, SIGN_SIGNATURE_LEN);
                pg_copy_bytes(&b, m->value, m->len);
                r = pg_copy_stream_send(conn, &b);
        }
        if (r >= 0 || b.sent < 0)
                r = pg_copy_stream_end(conn, &b, NULL, reterr);
        for (size_t k = 0; r >= 0 && k < nten; k++)
                r = store_records(conn, cur, tenants[k], recs, nrec, reterr);
        return r;
}

/* Stages the round's events (binary COPY streamed as built, each with its
 * record's id; cheaper than unnest() of array parameters: docs/CONTRACTS.md
 * "Ingest costs") and keeps each run's figures. *nstaged gets the event count;
 * *fast whether every staged seq is above its run's stored maximum (nothing
 * of the round can be stored already). */
static int stage_events(PGconn *conn, struct record *recs, size_t nrec, struct run_state *runs, size_t nruns,
                        bool careful, size_t *nstaged, bool *fast, struct err_detail *reterr) {
        size_t staged = 0, live = 0;
        for (size_t i = 0; i < nrec; i++)
                live += !recs[i].skip;
        *fast = true;
        *nstaged = 0;
        if (live == 0)
                return 0;
        _cleanup_(pg_copy_buf_done) struct pg_copy_buf b = {0};
        int r = pg_copy_stream_start(conn,
                                     "COPY evidence_stage_events (run_id, seq, tenant_id, team_id, ts, kind, actor,"
                                     " data, terminal, status, lost, record_id) FROM STDIN (FORMAT binary)",
                                     &b, reterr);
        int fail = 0; /* a row not built: the COPY is abandoned */
        for (size_t i = 0; r >= 0 && !fail && i < nrec; i++) {
                if (recs[i].skip)
                        continue;
                struct run_state *st = run_state_find(runs, nruns, recs[i].run_id);
                /* every event of a record has the record's run and tenant
                 * (record_check), and mostly one team: each uuid is parsed
                 * once, not per event (a hot spot at ingest, issue 10 §4) */
                unsigned char run_u[16], tenant_u[16], team_u[16];
                const char *team_s = NULL;
                if (pg_uuid_parse(recs[i].run_id, run_u) < 0 || pg_uuid_parse(recs[i].tenant_id, tenant_u) < 0) {
                        fail = -EINVAL;
                        break;
                }
                recs[i].all_staged = true;
                for (size_t k = 0; !fail && k < recs[i].batch->n_events; k++) {
                        const Paddock__V1__RunEvent *ev = recs[i].batch->events[k];
                        uint64_t seq = ev->env->seq ? ev->env->seq : st->max_seq + 1;
                        /* an earlier seq than one staged this round is a duplicate
                         * (e.g. a node's event colliding with an appended verdict) */
                        if (seq <= st->staged_max) {
                                recs[i].all_staged = false;
                                continue;
                        }
                        if (seq <= st->stored_max)
                                *fast = false;
                        const char *status = *ev->status ? ev->status : NULL;
                        bool terminal = ev->terminal || (status && !strcmp(ev->kind, "status") &&
                                                         is_terminal_status(status));
                        bool superseded = terminal && st->terminal_seq && st->terminal_seq != seq;
                        bool winner = terminal && !superseded;
                        long long lost = 0;
                        _cleanup_free_ char *owned = NULL;
                        const char *data = event_data(ev, st, superseded, careful, &lost, &owned);
                        if (!data) {
                                fail = -ENOMEM;
                                break;
                        }
                        if (winner && !st->terminal_seq) {
                                st->terminal_seq = seq;
                                snprintf(st->terminal_status, sizeof st->terminal_status, "%s",
                                         status ? status : "");
                                st->terminal_staged = true;
                                st->lost = lost;
                        }
                        bool team = ev->team_id && *ev->team_id;
                        /* record_check let only UUIDs through */
                        if (team && (!team_s || strcmp(team_s, ev->team_id))) {
                                if (pg_uuid_parse(ev->team_id, team_u) < 0) {
                                        fail = -EINVAL;
                                        break;
                                }
                                team_s = ev->team_id;
                        }
                        pg_copy_row(&b, 12);
                        pg_copy_bytes(&b, run_u, sizeof run_u); /* a uuid's binary form: its 16 bytes */
                        pg_copy_int8(&b, (int64_t)seq);
                        pg_copy_bytes(&b, tenant_u, sizeof tenant_u);
                        if (team)
                                pg_copy_bytes(&b, team_u, sizeof team_u);
                        else
                                pg_copy_null(&b);
                        if (ev->env->ts_unix_us > 0)
                                pg_copy_timestamptz(&b, ev->env->ts_unix_us);
                        else
                                pg_copy_null(&b);
                        pg_copy_text(&b, ev->kind, false);
                        pg_copy_text(&b, ev->actor, true);
                        pg_copy_jsonb(&b, data, strlen(data));
                        pg_copy_bool(&b, winner);
                        pg_copy_text(&b, winner ? status : NULL, true);
                        pg_copy_int8(&b, lost);
                        if (recs[i].record_id > 0)
                                pg_copy_int8(&b, recs[i].record_id);
                        else
                                pg_copy_null(&b);
                        st->staged_max = seq;
                        count_decision(st, ev, data);
                        if (seq > st->max_seq)
                                st->max_seq = seq;
                        st->staged++;
                        staged++;
                        r = pg_copy_stream_send(conn, &b);
                }
        }
        if (fail) {
                pg_copy_stream_end(conn, &b, fail == -ENOMEM ? "out of memory" : "not a uuid", NULL);
                return fail;
        }
        if (r >= 0 || b.sent < 0)
                r = pg_copy_stream_end(conn, &b, NULL, reterr);
        if (r < 0)
                return r;
        *nstaged = staged;
        return 0;
}

/* evidence.run_history kept from agg(run_id, n, max_seq, terminal_seq,
 * terminal_status, lost, allow, ask, deny): the events of each run this
 * statement inserted, for tenant $1; allow..deny its policy_decision events
 * by action (GET /v1/runs/{id} reads them instead of counting the events). */
#define HISTORY_UPSERT                                                                                         \
        "INSERT INTO evidence.run_history AS h (run_id, tenant_id, events_stored, max_seq, terminal_seq,"     \
        "  terminal_status, events_lost, complete, completed_at, decisions_allow, decisions_ask,"             \
        "  decisions_deny)"                                                                                   \
        " SELECT run_id, $1, n, max_seq, terminal_seq, terminal_status, lost,"                                \
        "        terminal_seq IS NOT NULL AND n + lost >= terminal_seq,"                                      \
        "        CASE WHEN terminal_seq IS NOT NULL AND n + lost >= terminal_seq THEN now() END,"             \
        "        allow, ask, deny"                                                                            \
        " FROM agg"                                                                                           \
        " ON CONFLICT (run_id) DO UPDATE SET"                                                                 \
        "  events_stored = h.events_stored + EXCLUDED.events_stored,"                                        \
        "  decisions_allow = h.decisions_allow + EXCLUDED.decisions_allow,"                                  \
        "  decisions_ask = h.decisions_ask + EXCLUDED.decisions_ask,"                                        \
        "  decisions_deny = h.decisions_deny + EXCLUDED.decisions_deny,"                                     \
        "  max_seq = GREATEST(h.max_seq, EXCLUDED.max_seq),"                                                  \
        "  terminal_seq = coalesce(h.terminal_seq, EXCLUDED.terminal_seq),"                                   \
        "  terminal_status = coalesce(h.terminal_status, EXCLUDED.terminal_status),"                          \
        "  events_lost = GREATEST(h.events_lost, EXCLUDED.events_lost),"                                      \
        "  complete = coalesce(h.terminal_seq, EXCLUDED.terminal_seq) IS NOT NULL"                            \
        "    AND h.events_stored + EXCLUDED.events_stored + GREATEST(h.events_lost, EXCLUDED.events_lost)"    \
        "      >= coalesce(h.terminal_seq, EXCLUDED.terminal_seq),"                                           \
        "  completed_at = coalesce(h.completed_at, CASE WHEN"                                                 \
        "    coalesce(h.terminal_seq, EXCLUDED.terminal_seq) IS NOT NULL"                                     \
        "    AND h.events_stored + EXCLUDED.events_stored + GREATEST(h.events_lost, EXCLUDED.events_lost)"    \
        "      >= coalesce(h.terminal_seq, EXCLUDED.terminal_seq) THEN now() END)"

#define STAGED_COLUMNS "run_id, seq, tenant_id, team_id, ts, kind, actor, data, record_id"
#define STAGED_VALUES "s.run_id, s.seq, s.tenant_id, s.team_id, coalesce(s.ts, now()), s.kind, s.actor, s.data, s.record_id"

/* The fast path's figures of tenant t's runs, as jsonb_to_recordset input:
 * every staged event is inserted, so they are known before the insert. */
static char *history_json(const struct run_state *runs, size_t nruns, const char *t) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < nruns; i++) {
                const struct run_state *st = &runs[i];
                if (st->staged == 0 || strcmp(st->tenant_id, t))
                        continue;
                json_t *o = json_pack("{s:s, s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I}", "run_id", st->run_id, "n",
                                      (json_int_t)st->staged, "max_seq", (json_int_t)st->staged_max,
                                      "terminal_seq",
                                      st->terminal_staged ? json_integer((json_int_t)st->terminal_seq) : json_null(),
                                      "terminal_status",
                                      st->terminal_staged ? json_string(st->terminal_status) : json_null(), "lost",
                                      (json_int_t)st->lost, "allow", (json_int_t)st->decisions[0], "ask",
                                      (json_int_t)st->decisions[1], "deny", (json_int_t)st->decisions[2]);
                if (!o || json_array_append_new(a, o) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
        json_decref(a);
        return s;
}

/* The round's records, decoded ahead of the transaction that stores them:
 * recs[0..decoded) are decoded and checked on their own (protobuf, record
 * contents, who may append a review), the database checks come later. */
struct decoder {
        const struct kafka_message *msgs;
        struct record *recs;
        int *verdicts;
        size_t n, decoded;
        size_t next;         /* the first record of the next transaction */
        long long max_events;
        struct arena arena;
};

static void decoder_done(struct decoder *d) {
        arena_done(&d->arena);
}

static void decode_one(struct decoder *d) {
        size_t i = d->decoded++;
        const struct kafka_message *m = &d->msgs[i];
        struct record *rec = &d->recs[i];
        rec->m = m;
        rec->skip = true;
        rec->batch = paddock__v1__run_event_batch__unpack(&d->arena.pb, m->len, m->value);
        struct err_detail e = {0};
        int k = rec->batch ? record_check(rec->batch, &e) : err_set(&e, -EBADMSG, "decode", "not a RunEventBatch");
        if (k < 0) {
                char off[24];
                snprintf(off, sizeof off, "%lld", (long long)m->offset);
                log_ctx(LOG_WARN, LOG_KV("topic", m->topic, "offset", off, "code", e.code),
                        "skipping run event record: %s", e.message);
                d->verdicts[i] = KAFKA_SKIP;
                return;
        }
        rec->run_id = rec->batch->events[0]->env->run_id;
        rec->tenant_id = rec->batch->events[0]->env->tenant_id;
        rec->skip = !review_check(rec, &rec->from_api);
}

/* Decodes the records of the next transaction (max_events events from
 * d->next, whole records) that are not decoded yet. Called before a
 * transaction and, to overlap this CPU work with PostgreSQL's, while the
 * previous transaction's insert runs (issue 10 §4: decoding a whole poll
 * round before storing any of it stalled the writes and built the lag). */
static void decode_ahead(struct decoder *d) {
        long long events = 0;
        for (size_t i = d->next; i < d->decoded; i++)
                events += d->recs[i].skip ? 0 : (long long)d->recs[i].batch->n_events;
        while (d->decoded < d->n && events < d->max_events) {
                decode_one(d);
                const struct record *rec = &d->recs[d->decoded - 1];
                events += rec->skip ? 0 : (long long)rec->batch->n_events;
        }
}

/* pg_exec() of a transaction's insert, decoding the next transaction's
 * records (ahead, may be NULL) while PostgreSQL runs it. */
static int exec_decoding(PGconn *conn, const char *sql, int nparams, const char *const *params, PGresult **ret,
                         struct decoder *ahead, struct err_detail *reterr) {
        int r = pg_send(conn, sql, nparams, params, reterr);
        if (r < 0)
                return r;
        if (ahead)
                decode_ahead(ahead);
        return pg_wait(conn, ret, reterr);
}

/* The staged rows of tenant t into the history; run_history kept in the same
 * statement. Adds the inserted count to *stored. fast: every staged seq is
 * above its run's stored maximum, so a plain INSERT (no ON CONFLICT, no
 * RETURNING to count) does; the primary key still refuses a duplicate
 * (-EEXIST: the caller stores the round again the careful way). */
static int store_tenant(PGconn *conn, const char **cur, const char *t, const struct run_state *runs, size_t nruns,
                        bool fast, struct decoder *ahead, long long *stored, struct err_detail *reterr) {
        int r = tenant_local(conn, cur, t, reterr);
        if (r < 0)
                return r;
        if (fast) {
                _cleanup_free_ char *hist = history_json(runs, nruns, t);
                if (!hist)
                        return -ENOMEM;
                const char *p[] = {t, hist};
                r = exec_decoding(conn,
                            "WITH ins AS ("
                            "  INSERT INTO evidence.run_events (" STAGED_COLUMNS ")"
                            "  SELECT " STAGED_VALUES " FROM evidence_stage_events s WHERE s.tenant_id = $1),"
                            " agg AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS u(run_id uuid, n bigint,"
                            "   max_seq bigint, terminal_seq bigint, terminal_status text, lost bigint, allow bigint,"
                            "   ask bigint, deny bigint)) "
                            HISTORY_UPSERT,
                            2, p, NULL, ahead, reterr);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < nruns; i++)
                        if (!strcmp(runs[i].tenant_id, t))
                                *stored += runs[i].staged;
                return 0;
        }
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *p[] = {t};
        r = exec_decoding(conn,
                    "WITH ins AS ("
                    "  INSERT INTO evidence.run_events (" STAGED_COLUMNS ")"
                    "  SELECT " STAGED_VALUES " FROM evidence_stage_events s WHERE s.tenant_id = $1"
                    "  ON CONFLICT (run_id, seq) DO NOTHING RETURNING run_id, seq),"
                    " agg AS ("
                    "  SELECT s.run_id, count(*) AS n, max(s.seq) AS max_seq,"
                    "         max(s.seq) FILTER (WHERE s.terminal) AS terminal_seq,"
                    "         max(s.status) FILTER (WHERE s.terminal) AS terminal_status,"
                    "         coalesce(max(s.lost) FILTER (WHERE s.terminal), 0) AS lost,"
                    "         count(*) FILTER (WHERE s.kind = 'policy_decision' AND s.data->>'action' = 'allow') AS allow,"
                    "         count(*) FILTER (WHERE s.kind = 'policy_decision' AND s.data->>'action' = 'ask') AS ask,"
                    "         count(*) FILTER (WHERE s.kind = 'policy_decision' AND s.data->>'action' = 'deny') AS deny"
                    "  FROM ins JOIN evidence_stage_events s ON s.run_id = ins.run_id AND s.seq = ins.seq"
                    "  GROUP BY s.run_id),"
                    " up AS (" HISTORY_UPSERT " RETURNING 1)"
                    " SELECT coalesce((SELECT sum(n) FROM agg), 0), (SELECT count(*) FROM up)",
                    1, p, &res, ahead, reterr);
        if (r < 0)
                return r;
        *stored += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

static int cmp_ll(const void *a, const void *b) {
        long long x = *(const long long *)a, y = *(const long long *)b;
        return x < y ? -1 : x > y;
}

/* The durable lag of the round's events: p99 gauge and the count over 1 s. */
static void record_lag(const struct record *recs, size_t nrec) {
        size_t n = 0;
        for (size_t i = 0; i < nrec; i++)
                if (!recs[i].skip)
                        n += recs[i].batch->n_events;
        if (n == 0)
                return;
        _cleanup_free_ long long *lag = malloc(n * sizeof *lag);
        if (!lag)
                return;
        int64_t now = time_now_us();
        size_t k = 0, over = 0;
        for (size_t i = 0; i < nrec; i++)
                for (size_t j = 0; !recs[i].skip && j < recs[i].batch->n_events; j++) {
                        int64_t ts = recs[i].batch->events[j]->env->ts_unix_us;
                        lag[k] = ts > 0 && now > ts ? (now - ts) / 1000 : 0;
                        over += lag[k] > 1000;
                        k++;
                }
        qsort(lag, k, sizeof *lag, cmp_ll);
        metric_set(&m_lag_p99, lag[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1]);
        metric_add(&m_lag_over, (long long)over);
}

/* Stores the records of recs[0..nrec) that are not skipped in one
 * transaction; careful: see event_data. try_fast: take the fast path when
 * every staged seq is above its run's stored maximum (*fast says whether it
 * was taken). */
static int store_round(PGconn *conn, struct record *recs, size_t nrec, bool careful, bool try_fast, bool *fast,
                       struct decoder *ahead, struct err_detail *reterr) {
        *fast = false;
        /* distinct runs and tenants of the round */
        _cleanup_free_ struct run_state *runs = calloc(nrec, sizeof *runs);
        _cleanup_free_ const char **tenants = calloc(nrec, sizeof *tenants);
        if (!runs || !tenants)
                return -ENOMEM;
        size_t nruns = 0, nten = 0;
        for (size_t i = 0; i < nrec; i++) {
                recs[i].record_id = 0;
                recs[i].all_staged = recs[i].whole = false;
                if (recs[i].skip)
                        continue;
                if (!run_state_find(runs, nruns, recs[i].run_id))
                        runs[nruns++] = (struct run_state){.run_id = recs[i].run_id, .tenant_id = recs[i].tenant_id};
                nten = tenants_add(tenants, nten, recs[i].tenant_id);
        }
        if (nruns == 0)
                return 0;
        int64_t t0 = time_mono_us();
        const char *tenant = NULL; /* the transaction's tenant setting (tenant_local) */
        int r = pg_begin(conn, reterr);
        for (size_t t = 0; r >= 0 && t < nten; t++)
                r = load_tenant_state(conn, &tenant, tenants[t], recs, nrec, runs, nruns, reterr);
        if (r >= 0)
                r = stage_tables(conn, reterr);
        int64_t t1 = time_mono_us();
        if (r >= 0)
                r = stage_records(conn, &tenant, recs, nrec, tenants, nten, reterr);
        int64_t t2 = time_mono_us();
        size_t staged = 0;
        bool above = false;
        if (r >= 0)
                r = stage_events(conn, recs, nrec, runs, nruns, careful, &staged, &above, reterr);
        int64_t t3 = time_mono_us();
        *fast = try_fast && above;
        long long stored = 0;
        for (size_t t = 0; r >= 0 && staged > 0 && t < nten; t++)
                r = store_tenant(conn, &tenant, tenants[t], runs, nruns, *fast, ahead, &stored, reterr);
        int64_t t4 = time_mono_us();
        if (r >= 0)
                r = pg_commit(conn, reterr);
        if (r < 0) {
                pg_rollback(conn);
                return r;
        }
        int64_t t5 = time_mono_us();
        /* where a round's time goes (issue 10 §4 profiles), at debug level */
        log_debug("stored round: %zu records, %lld events (%s path); ms: state %.1f, records %.1f, "
                  "events staged %.1f, inserted %.1f, commit %.1f",
                  nrec, stored, *fast ? "fast" : "conflict-checked", (t1 - t0) / 1e3, (t2 - t1) / 1e3,
                  (t3 - t2) / 1e3, (t4 - t3) / 1e3, (t5 - t4) / 1e3);
        metric_add(&m_stored, stored);
        metric_add(&m_duplicates, (long long)staged - stored);
        metric_add(&m_batches, 1);
        if (*fast)
                metric_add(&m_fast, 1);
        metric_set(&m_batch_events, stored);
        record_lag(recs, nrec);
        /* the primary key let the whole fast round in: what it staged is stored */
        for (size_t i = 0; *fast && i < nrec; i++)
                recs[i].whole = !recs[i].skip && recs[i].all_staged;
        return 0;
}

/* One transaction for recs[0..nrec), falling back as needed: a fast round
 * refused by the primary key (a seq stored after all, e.g. by another
 * consumer of the partition during a rebalance) is stored again with every
 * insert conflict-checked; event data PostgreSQL refuses as jsonb is staged
 * again as jansson writes it (or as raw text). Each fallback turns one flag
 * for good, so this ends. */
static int store_chunk(PGconn *conn, struct record *recs, size_t nrec, struct decoder *ahead,
                       struct err_detail *reterr) {
        bool careful = false, try_fast = true;
        for (;;) {
                bool fast;
                int r = store_round(conn, recs, nrec, careful, try_fast, &fast, ahead, reterr);
                if (r == -EEXIST && fast) {
                        metric_add(&m_fast_fallback, 1);
                        log_info("a seq of the round was stored already, storing it again conflict-checked: %s",
                                 reterr ? reterr->message : "");
                        try_fast = false;
                } else if (r == -EINVAL && !careful) {
                        /* refused even so (-EINVAL, permanent): the loop hands the
                         * records in one by one and skips the one that fails */
                        log_warn("event data refused by postgresql, storing the round again with every event's "
                                 "data checked: %s",
                                 reterr ? reterr->message : "");
                        careful = true;
                } else {
                        return r;
                }
                if (reterr)
                        *reterr = (struct err_detail){0};
        }
}

/* The SIEM feed's run events (docs/CONTRACTS.md "SIEM feed: run events"):
 * after the round is durable, the OCSF record of every lifecycle status,
 * policy decision and approval event of the records that passed the checks
 * whose (run, seq) the store holds with this content (inserted now, or by an
 * earlier delivery whose publish may have been lost), acknowledged by the
 * broker before the offsets are committed. A record delivered again yields
 * the same records with the same metadata.uid. */
struct siem_out {
        struct kafka_outgoing *msgs;
        uint8_t **bufs;
        size_t n, cap;
};

static void siem_out_done(struct siem_out *o) {
        for (size_t i = 0; i < o->n; i++)
                free(o->bufs[i]);
        free(o->bufs);
        free(o->msgs);
}

static int siem_add(struct siem_out *o, const Paddock__V1__RunEvent *ev) {
        _cleanup_free_ char *ocsf = NULL;
        int r = audit_ocsf_run_event_json(ev, &ocsf);
        if (r <= 0)
                return r;
        if (o->n == o->cap) {
                size_t cap = o->cap ? 2 * o->cap : 16;
                struct kafka_outgoing *m = realloc(o->msgs, cap * sizeof *m);
                if (!m)
                        return -ENOMEM;
                o->msgs = m;
                uint8_t **b = realloc(o->bufs, cap * sizeof *b);
                if (!b)
                        return -ENOMEM;
                o->bufs = b;
                o->cap = cap;
        }
        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN];
        if (envelope_init(&env, ev->env->tenant_id, ev->env->run_id, ev->env->seq, "evidence", msgid) < 0)
                return -EAGAIN;
        env.message_id = ev->env->message_id; /* the event's projection: the same logical message */
        Paddock__V1__SiemRecord s;
        paddock__v1__siem_record__init(&s);
        s.env = &env;
        s.ocsf_json = ocsf;
        size_t len = paddock__v1__siem_record__get_packed_size(&s);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        paddock__v1__siem_record__pack(&s, buf);
        o->bufs[o->n] = buf;
        o->msgs[o->n++] = (struct kafka_outgoing){.topic = TOPIC_SIEM_OCSF, .key = ev->env->tenant_id, .value = buf,
                                                  .len = len};
        return 1;
}

/* An event of a record not stored whole by a fast round (conflict-checked,
 * redelivered, or with a seq another record of the round staged) that the
 * feed would carry: its seq may be stored with another record's content.
 * same: the store holds this very event (docs/CONTRACTS.md "SIEM feed: run
 * events"). */
struct siem_check {
        size_t rec, ev; /* recs[rec].batch->events[ev] */
        bool same;
};

/* Whether ev of rec (rec->siem) needs a siem_check before it goes on the
 * feed: the one rule siem_check_round asks the store by and
 * siem_publish_round publishes by (seq 0 is appended: a new row of its own
 * record; kinds the feed does not carry are never looked up). */
static bool siem_needs_check(const struct record *rec, const Paddock__V1__RunEvent *ev) {
        return !rec->whole && ev->env->seq != 0 && audit_ocsf_run_event_kind(ev->kind);
}

/* Whether two events are the same bytes (as protobuf-c writes them). */
static bool event_same(const Paddock__V1__RunEvent *a, const Paddock__V1__RunEvent *b) {
        size_t la = paddock__v1__run_event__get_packed_size(a);
        if (la != paddock__v1__run_event__get_packed_size(b))
                return false;
        _cleanup_free_ uint8_t *pa = malloc(la ? la : 1), *pb = malloc(la ? la : 1);
        if (!pa || !pb)
                return false; /* not shown the same: withheld, never published wrong */
        paddock__v1__run_event__pack(a, pa);
        paddock__v1__run_event__pack(b, pb);
        return memcmp(pa, pb, la) == 0;
}

/* The event at seq of a stored record (a RunEventBatch: seqs contiguous,
 * record_check), or NULL. */
static const Paddock__V1__RunEvent *batch_event(const Paddock__V1__RunEventBatch *b, uint64_t seq) {
        uint64_t first = b && b->n_events ? b->events[0]->env->seq : 0;
        return first && seq >= first && seq - first < b->n_events ? b->events[seq - first] : NULL;
}

/* Looks up the stored rows of tenant t's checks (one read-only transaction:
 * row-level security keys on the tenant) and sets each one's same: the row
 * is the record's own (it inserted it), or the event stored there by another
 * record is byte-identical (each such record read and decoded once). A seq
 * not stored, or stored without a record (before batches), is not shown the
 * same. */
static int siem_check_tenant(PGconn *conn, const char *t, const struct record *recs, struct siem_check *checks,
                             size_t nchecks, struct err_detail *reterr) {
        /* the uuid[] and bigint[] literals of the checks' (run, seq, own record id, index) */
        char *bufs[4] = {0};
        size_t lens[4];
        FILE *f[4] = {0};
        int r = 0;
        for (size_t k = 0; k < 4 && r == 0; k++)
                if (!(f[k] = open_memstream(&bufs[k], &lens[k])))
                        r = -ENOMEM;
        const char *sep = "{";
        for (size_t c = 0; r == 0 && c < nchecks; c++) {
                const struct record *rec = &recs[checks[c].rec];
                if (strcmp(rec->tenant_id, t))
                        continue;
                fprintf(f[0], "%s%s", sep, rec->run_id);
                fprintf(f[1], "%s%llu", sep, (unsigned long long)rec->batch->events[checks[c].ev]->env->seq);
                fprintf(f[2], "%s%lld", sep, (long long)rec->record_id);
                fprintf(f[3], "%s%zu", sep, c);
                sep = ",";
        }
        for (size_t k = 0; k < 4; k++) {
                if (!f[k])
                        continue;
                if (fputs(*sep == '{' ? "{}" : "}", f[k]) < 0)
                        r = -ENOMEM;
                if (fclose(f[k]) != 0)
                        r = -ENOMEM;
        }
        _cleanup_free_ char *runs = bufs[0], *seqs = bufs[1], *own = bufs[2], *idx = bufs[3];
        if (r < 0)
                return r;
        r = pg_begin(conn, reterr);
        if (r >= 0)
                r = pg_set_tenant_local(conn, t, reterr);
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *p[] = {runs, seqs, own, idx};
        /* another record's rows last, grouped by record */
        if (r >= 0)
                r = pg_exec(conn,
                            "SELECT q.i, e.record_id = q.rec, e.record_id"
                            " FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) AS q(run_id, seq, rec, i)"
                            " JOIN evidence.run_events e ON e.run_id = q.run_id AND e.seq = q.seq"
                            " ORDER BY e.record_id = q.rec DESC, e.record_id",
                            4, p, &res, reterr);
        Paddock__V1__RunEventBatch *other = NULL;
        const char *other_id = "";
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                size_t c = strtoull(PQgetvalue(res, i, 0), NULL, 10);
                if (c >= nchecks || PQgetisnull(res, i, 2))
                        continue;
                if (!strcmp(PQgetvalue(res, i, 1), "t")) {
                        checks[c].same = true;
                        continue;
                }
                const char *id = PQgetvalue(res, i, 2);
                if (strcmp(id, other_id)) {
                        if (other)
                                paddock__v1__run_event_batch__free_unpacked(other, NULL);
                        other = NULL;
                        other_id = id;
                        _cleanup_(PQclearp) PGresult *val = NULL;
                        const char *pv[] = {id};
                        r = pg_exec(conn, "SELECT signed_value FROM evidence.signed_records WHERE id = $1", 1, pv,
                                    &val, reterr);
                        size_t len = 0;
                        unsigned char *raw = r >= 0 && PQntuples(val) == 1
                                                     ? PQunescapeBytea((const unsigned char *)PQgetvalue(val, 0, 0), &len)
                                                     : NULL;
                        if (raw)
                                other = paddock__v1__run_event_batch__unpack(NULL, len, raw);
                        PQfreemem(raw);
                }
                const Paddock__V1__RunEvent *ev = recs[checks[c].rec].batch->events[checks[c].ev];
                const Paddock__V1__RunEvent *stored = batch_event(other, ev->env->seq);
                checks[c].same = stored && event_same(stored, ev);
        }
        if (other)
                paddock__v1__run_event_batch__free_unpacked(other, NULL);
        if (r >= 0)
                r = pg_commit(conn, reterr);
        if (r < 0)
                pg_rollback(conn);
        return r < 0 ? r : 0;
}

/* The checks of the round's records (in recs order), each one's same set
 * from the store; *ret NULL when every record was stored whole by a fast
 * round (nothing is read). */
static int siem_check_round(PGconn *conn, const struct record *recs, size_t n, struct siem_check **ret,
                            size_t *nret, struct err_detail *reterr) {
        *ret = NULL;
        *nret = 0;
        _cleanup_free_ struct siem_check *checks = NULL;
        _cleanup_free_ const char **tenants = calloc(n ? n : 1, sizeof *tenants);
        if (!tenants)
                return -ENOMEM;
        size_t nchecks = 0, cap = 0, nten = 0;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; recs[i].siem && j < recs[i].batch->n_events; j++) {
                        const Paddock__V1__RunEvent *ev = recs[i].batch->events[j];
                        if (!siem_needs_check(&recs[i], ev))
                                continue;
                        if (nchecks == cap) {
                                cap = cap ? 2 * cap : 16;
                                struct siem_check *c = realloc(checks, cap * sizeof *c);
                                if (!c)
                                        return -ENOMEM;
                                checks = c;
                        }
                        checks[nchecks++] = (struct siem_check){.rec = i, .ev = j};
                        nten = tenants_add(tenants, nten, recs[i].tenant_id);
                }
        /* each tenant's checks in one look-up */
        for (size_t t = 0; t < nten; t++) {
                int r = siem_check_tenant(conn, tenants[t], recs, checks, nchecks, reterr);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(checks);
        *nret = nchecks;
        return 0;
}

static int siem_publish_round(const struct events_store_config *cfg, const struct record *recs, size_t n,
                              const struct siem_check *checks, size_t nchecks, struct err_detail *reterr) {
        _cleanup_(siem_out_done) struct siem_out o = {0};
        size_t c = 0, withheld = 0;
        for (size_t i = 0; i < n; i++) {
                if (!recs[i].siem)
                        continue;
                for (size_t j = 0; j < recs[i].batch->n_events; j++) {
                        const Paddock__V1__RunEvent *ev = recs[i].batch->events[j];
                        /* checks are in recs order; an event that needs one and has
                         * none (a rule out of step) is withheld, never published */
                        bool same = true;
                        if (siem_needs_check(&recs[i], ev)) {
                                bool checked = c < nchecks && checks[c].rec == i && checks[c].ev == j;
                                same = checked && checks[c].same;
                                c += checked;
                        }
                        if (!same) {
                                /* the seq holds another content: the feed must not say otherwise */
                                char seq[24];
                                snprintf(seq, sizeof seq, "%llu", (unsigned long long)ev->env->seq);
                                log_ctx(LOG_WARN, LOG_KV("run", recs[i].run_id, "seq", seq),
                                        "not publishing a run event on the siem feed: its seq is stored with another "
                                        "content");
                                withheld++;
                                continue;
                        }
                        int r = siem_add(&o, ev);
                        if (r < 0)
                                return err_set(reterr, r, "siem", "could not build the ocsf record of run %s",
                                               recs[i].run_id);
                }
        }
        if (o.n > 0) {
                int r = kafka_produce_sync_many(cfg->producer, o.msgs, o.n, cfg->siem_timeout_ms, reterr);
                if (r < 0 || (size_t)r < o.n)
                        return -EAGAIN; /* never a reason to skip the records: the round is delivered again */
                metric_add(&m_siem, (long long)o.n);
        }
        metric_add(&m_siem_withheld, (long long)withheld);
        return 0;
}

/* The database checks of recs[start..end) (decoded), in order: only the
 * run's node (or the scheduler) reports it (docs/CONTRACTS.md), checked once
 * per (run, signer) this round; the same record twice in one round: the
 * first one counts. */
static int check_records(PGconn *conn, struct record *recs, size_t start, size_t end, struct err_detail *reterr) {
        for (size_t i = start; i < end; i++) {
                struct record *rec = &recs[i];
                if (rec->skip || rec->from_api)
                        continue;
                size_t first = reporter_seen(recs, i, rec);
                if (first != SIZE_MAX) {
                        rec->skip = recs[first].skip;
                        continue;
                }
                int r = run_node_check(conn, rec->m, rec->run_id, NULL, reterr);
                if (r < 0)
                        return r;
                if (r == 1)
                        rec->skip = true;
        }
        for (size_t i = start; i < end; i++) {
                for (size_t j = 0; j < i && !recs[i].skip && recs[i].m->is_signed; j++)
                        if (!recs[j].skip && recs[j].m->is_signed && !strcmp(recs[i].run_id, recs[j].run_id) &&
                            !memcmp(recs[i].m->sig, recs[j].m->sig, SIGN_SIGNATURE_LEN))
                                recs[i].skip = true;
                recs[i].siem = !recs[i].skip;
        }
        return 0;
}

int events_store_batch(PGconn *conn, const struct events_store_config *cfg, const struct kafka_message *msgs,
                       size_t n, int *verdicts, struct err_detail *reterr) {
        _cleanup_free_ struct record *recs = calloc(n ? n : 1, sizeof *recs);
        if (!recs)
                return -ENOMEM;
        _cleanup_(decoder_done) struct decoder d = {
                .msgs = msgs, .recs = recs, .verdicts = verdicts, .n = n, .max_events = cfg->round_max_events};
        arena_init(&d.arena);
        /* one transaction per at most round_max_events events (whole
         * records): a round polled from a backlog is made durable in steps,
         * so the first of its events do not wait for the last (issue 10 §4:
         * p99 lag), and the next step is decoded while PostgreSQL stores
         * this one. The offsets are committed once all of them are; a crash
         * in between redelivers records that are then found stored. */
        int r = 0;
        for (size_t start = 0; r >= 0 && start < n;) {
                d.next = start;
                decode_ahead(&d);
                size_t end = start;
                long long events = 0;
                while (end < d.decoded) {
                        long long k = recs[end].skip ? 0 : (long long)recs[end].batch->n_events;
                        if (events > 0 && events + k > cfg->round_max_events)
                                break;
                        events += k;
                        end++;
                }
                r = check_records(conn, recs, start, end, reterr);
                d.next = end;
                if (r >= 0)
                        r = store_chunk(conn, recs + start, end - start, &d, reterr);
                start = end;
        }
        if (r < 0 || !cfg->producer)
                return r;
        _cleanup_free_ struct siem_check *checks = NULL;
        size_t nchecks = 0;
        r = siem_check_round(conn, recs, n, &checks, &nchecks, reterr);
        if (r >= 0)
                r = siem_publish_round(cfg, recs, n, checks, nchecks, reterr);
        return r;
}
