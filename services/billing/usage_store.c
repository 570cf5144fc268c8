/* Usage per run and per team and day. A run's usage is counted exactly once:
 * the run_usage insert decides (ON CONFLICT DO NOTHING RETURNING) and the
 * daily sum and the per-model rows (billing.run_model_usage, migration 0004)
 * are written only in the transaction where that insert happened. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "billing.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timeutil.h"
#include "paddock/v1/usage.pb-c.h"
#include "pg/pg.h"
#include "service/run_node.h"

static struct metric m_recorded = {.name = "paddock_billing_usage_recorded_total",
                                   .help = "Usage records counted", .type = METRIC_COUNTER};
static struct metric m_duplicates = {.name = "paddock_billing_usage_duplicate_total",
                                     .help = "Usage records for runs already counted, ignored", .type = METRIC_COUNTER};

void usage_store_register_metrics(void) {
        metrics_register(&m_recorded);
        metrics_register(&m_duplicates);
}

static void usage_freep(Paddock__V1__UsageRecord **p) {
        if (*p)
                paddock__v1__usage_record__free_unpacked(*p, NULL);
}

static bool amount_valid(double v) { return isfinite(v) && v >= 0 && v < 1e15; }

/* The UTC day the run ended; earlier clocks stand in when the end is unknown. */
static void usage_day(const Paddock__V1__UsageRecord *u, char buf[static 16]) {
        int64_t us = u->ended_unix_us > 0 ? u->ended_unix_us
                   : u->started_unix_us > 0 ? u->started_unix_us
                   : u->env->ts_unix_us > 0 ? u->env->ts_unix_us : time_now_us();
        time_t t = (time_t)(us / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, 16, "%Y-%m-%d", &tm);
}

#define MODELS_MAX 256 /* entries of a record's breakdown (the gateway keeps at most 64) */

/* The per-model breakdown, checked like the record's own fields: a bad entry
 * refuses the whole record, naming it (models[i].field). */
static int models_valid(const Paddock__V1__UsageRecord *u, struct err_detail *reterr) {
        if (u->n_models > MODELS_MAX)
                return err_set(reterr, -EINVAL, "models", "at most %d models per record", MODELS_MAX);
        for (size_t i = 0; i < u->n_models; i++) {
                const Paddock__V1__ModelUsage *m = u->models[i];
                char field[48];
                if (strcmp(m->provider, "anthropic") && strcmp(m->provider, "openai")) {
                        snprintf(field, sizeof field, "models[%zu].provider", i);
                        return err_set(reterr, -EINVAL, field, "%s must be anthropic or openai", field);
                }
                if (!id_is_model(m->model) && strcmp(m->model, "*")) {
                        snprintf(field, sizeof field, "models[%zu].model", i);
                        return err_set(reterr, -EINVAL, field, "%s must be a model id (1-%d of A-Z a-z 0-9 . _ : / @ -)",
                                       field, ID_MODEL_MAX);
                }
                if (!amount_valid(m->cost_usd)) {
                        snprintf(field, sizeof field, "models[%zu].cost_usd", i);
                        return err_set(reterr, -EINVAL, field, "%s must be a finite number >= 0", field);
                }
                if (m->calls > INT64_MAX || m->tokens_in > INT64_MAX || m->tokens_out > INT64_MAX ||
                    m->cache_read_tokens > INT64_MAX || m->cache_write_tokens > INT64_MAX) {
                        snprintf(field, sizeof field, "models[%zu]", i);
                        return err_set(reterr, -EINVAL, field, "%s: counts must fit in a bigint", field);
                }
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(u->models[j]->provider, m->provider) && !strcmp(u->models[j]->model, m->model)) {
                                snprintf(field, sizeof field, "models[%zu].model", i);
                                return err_set(reterr, -EINVAL, field, "%s: %s %s is listed twice", field,
                                               m->provider, m->model);
                        }
        }
        return 0;
}

/* One billing.run_model_usage row per entry, in the run_usage insert's transaction. */
static int models_store(PGconn *conn, const Paddock__V1__UsageRecord *u, const char *day, struct err_detail *reterr) {
        for (size_t i = 0; i < u->n_models; i++) {
                const Paddock__V1__ModelUsage *m = u->models[i];
                char calls[24], tin[24], tout[24], cr[24], cw[24], cost[32];
                snprintf(calls, sizeof calls, "%llu", (unsigned long long)m->calls);
                snprintf(tin, sizeof tin, "%llu", (unsigned long long)m->tokens_in);
                snprintf(tout, sizeof tout, "%llu", (unsigned long long)m->tokens_out);
                snprintf(cr, sizeof cr, "%llu", (unsigned long long)m->cache_read_tokens);
                snprintf(cw, sizeof cw, "%llu", (unsigned long long)m->cache_write_tokens);
                snprintf(cost, sizeof cost, "%.17g", m->cost_usd);
                const char *params[] = {u->env->run_id, m->provider, m->model, u->env->tenant_id, u->team_id,
                                        *u->user_id ? u->user_id : NULL, day, calls, tin, tout, cr, cw, cost};
                int r = pg_exec(conn,
                                "INSERT INTO billing.run_model_usage (run_id, provider, model, tenant_id, team_id,"
                                " user_id, day, calls, tokens_in, tokens_out, cache_read_tokens, cache_write_tokens,"
                                " cost_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                                (int)ELEMENTSOF(params), params, NULL, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

int usage_store(PGconn *conn, const struct kafka_message *m, struct err_detail *reterr) {
        _cleanup_(usage_freep) Paddock__V1__UsageRecord *u = paddock__v1__usage_record__unpack(NULL, m->len, m->value);
        if (!u)
                return err_set(reterr, -EBADMSG, "decode", "not a UsageRecord");
        if (!u->env || !id_is_uuid(u->env->run_id))
                return err_set(reterr, -EINVAL, "env.run_id", "env.run_id is not a UUID");
        if (!id_is_uuid(u->env->tenant_id))
                return err_set(reterr, -EINVAL, "env.tenant_id", "env.tenant_id is not a UUID");
        if (!id_is_uuid(u->team_id))
                return err_set(reterr, -EINVAL, "team_id", "team_id is not a UUID");
        if (*u->user_id && !id_is_uuid(u->user_id))
                return err_set(reterr, -EINVAL, "user_id", "user_id is not a UUID");
        if (!amount_valid(u->runtime_seconds))
                return err_set(reterr, -EINVAL, "runtime_seconds", "runtime_seconds must be a finite number >= 0");
        if (!amount_valid(u->cpu_seconds))
                return err_set(reterr, -EINVAL, "cpu_seconds", "cpu_seconds must be a finite number >= 0");
        if (!amount_valid(u->cost_usd))
                return err_set(reterr, -EINVAL, "cost_usd", "cost_usd must be a finite number >= 0");
        if (u->tokens_in > INT64_MAX || u->tokens_out > INT64_MAX || u->egress_bytes > INT64_MAX)
                return err_set(reterr, -EINVAL, "tokens", "token and byte counts must fit in a bigint");
        int v = models_valid(u, reterr);
        if (v < 0)
                return v;

        /* only the run's node reports its usage (docs/CONTRACTS.md, signed messages) */
        int k = run_node_check(conn, m, u->env->run_id, NULL, reterr);
        if (k != 0)
                return k < 0 ? k : 0;

        char day[16], runtime[32], tin[24], tout[24], egress[24], cost[32];
        usage_day(u, day);
        snprintf(runtime, sizeof runtime, "%.17g", u->runtime_seconds);
        snprintf(tin, sizeof tin, "%llu", (unsigned long long)u->tokens_in);
        snprintf(tout, sizeof tout, "%llu", (unsigned long long)u->tokens_out);
        snprintf(egress, sizeof egress, "%llu", (unsigned long long)u->egress_bytes);
        snprintf(cost, sizeof cost, "%.17g", u->cost_usd);
        /* the run's cache figures: the sums of its models' (migration 0005) */
        unsigned long long cache_r = 0, cache_w = 0;
        for (size_t i = 0; i < u->n_models; i++) {
                cache_r += u->models[i]->cache_read_tokens;
                cache_w += u->models[i]->cache_write_tokens;
        }
        char cr[24], cw[24], cpu[32];
        snprintf(cpu, sizeof cpu, "%.17g", u->cpu_seconds);
        snprintf(cr, sizeof cr, "%llu", cache_r > INT64_MAX ? (unsigned long long)INT64_MAX : cache_r);
        snprintf(cw, sizeof cw, "%llu", cache_w > INT64_MAX ? (unsigned long long)INT64_MAX : cache_w);

        /* stored as the record's tenant: row-level security keys on it */
        int r = pg_set_tenant(conn, u->env->tenant_id, reterr);
        if (r < 0 || (r = pg_begin(conn, reterr)) < 0)
                return r;
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = {u->env->run_id, u->env->tenant_id, u->team_id, *u->user_id ? u->user_id : NULL,
                                day, runtime, tin, tout, egress, cost, cr, cw, cpu};
        r = pg_exec(conn,
                    "INSERT INTO billing.run_usage (run_id, tenant_id, team_id, user_id, day, runtime_seconds,"
                    " tokens_in, tokens_out, egress_bytes, cost_usd, cache_read_tokens, cache_write_tokens,"
                    " cpu_seconds, recorded_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())"
                    " ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
                    (int)ELEMENTSOF(params), params, &res, reterr);
        if (r < 0)
                goto fail;
        if (PQntuples(res) == 0) {
                pg_rollback(conn);
                metric_add(&m_duplicates, 1);
                return 0;
        }
        const char *daily[] = {u->env->tenant_id, u->team_id, day, runtime, tin, tout, egress, cost};
        r = pg_exec(conn,
                    "INSERT INTO billing.team_daily AS d (tenant_id, team_id, day, runs, runtime_seconds,"
                    " tokens_in, tokens_out, egress_bytes, cost_usd)"
                    " VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8)"
                    " ON CONFLICT (tenant_id, team_id, day) DO UPDATE SET runs = d.runs + 1,"
                    "  runtime_seconds = d.runtime_seconds + EXCLUDED.runtime_seconds,"
                    "  tokens_in = d.tokens_in + EXCLUDED.tokens_in,"
                    "  tokens_out = d.tokens_out + EXCLUDED.tokens_out,"
                    "  egress_bytes = d.egress_bytes + EXCLUDED.egress_bytes,"
                    "  cost_usd = d.cost_usd + EXCLUDED.cost_usd",
                    (int)ELEMENTSOF(daily), daily, NULL, reterr);
        if (r < 0)
                goto fail;
        r = models_store(conn, u, day, reterr);
        if (r < 0)
                goto fail;
        r = pg_commit(conn, reterr);
        if (r < 0)
                goto fail;
        log_ctx(LOG_INFO, LOG_KV("run", u->env->run_id, "tenant", u->env->tenant_id, "team", u->team_id, "day", day),
                "recorded run usage");
        metric_add(&m_recorded, 1);
        return 1;
fail:
        pg_rollback(conn);
        return r;
}
