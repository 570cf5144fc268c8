/* The usage and governance figures as Prometheus metrics on billing's
 * /metrics (issue 14 §4, docs/CONTRACTS.md "Usage, budgets and governance
 * figures"), per tenant and team.
 *
 * A thread computes them every PADDOCK_BILLING_METRICS_INTERVAL_S from
 * PostgreSQL (its own usage sums, billing.team_daily; the api's runs and
 * approvals, readable by billing since api migration 0024), one tenant at a
 * time under the forced tenant policy (the tenants from
 * api.metrics_tenants()), and keeps the rendered text; a scrape only copies
 * it (lib/core/metrics.h metrics_register_text). Label cardinality is bounded:
 * the PADDOCK_BILLING_METRICS_TEAMS teams with the highest cost (then runs)
 * have labels of their own, every other team is summed into
 * tenant="other",team="other". Cost: one query per tenant and interval.
 * Policy decisions by level and outcome come from evidence's view
 * policy_decision_outcomes (evidence migration 0010: level and action only),
 * read through its partial index; the levels and outcomes are fixed lists
 * (anything else counts as "other"), so a team has at most 15 such series.
 * Policy decisions by rule (the same view's rule) are per tenant: its
 * PADDOCK_BILLING_METRICS_RULES most frequent rules keep their label, the
 * rest sum into rule="other", so a tenant has at most 3 * (N + 1) series. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "billing.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "pg/pg.h"

/* The figures of one team; the order of fields[] below. */
enum {
        F_RUNS,
        F_COST,
        F_TOKENS_IN,
        F_TOKENS_OUT,
        F_RUNTIME,
        F_EGRESS,
        F_LAUNCHED,
        F_ACTIVE,
        F_APPROVALS_PENDING,
        F_APPROVALS_APPROVED,
        F_APPROVALS_DENIED,
        F_APPROVALS_EXPIRED,
        F_COUNT_
};

/* Each family once: name, type, help, and the extra label of its series
 * (NULL: none). Families sharing a name are one family with that label. */
static const struct {
        const char *name, *type, *help, *label;
} fields[F_COUNT_] = {
        [F_RUNS] = {"paddock_usage_runs_total", "counter", "Runs billing recorded, per team", NULL},
        [F_COST] = {"paddock_usage_cost_usd_total", "counter", "Cost of the recorded runs in USD, per team", NULL},
        [F_TOKENS_IN] = {"paddock_usage_tokens_total", "counter",
                         "Model tokens of the recorded runs, per team and direction (in includes cache)",
                         "direction=\"in\""},
        [F_TOKENS_OUT] = {"paddock_usage_tokens_total", NULL, NULL, "direction=\"out\""},
        [F_RUNTIME] = {"paddock_usage_runtime_seconds_total", "counter", "Runtime of the recorded runs, per team",
                       NULL},
        [F_EGRESS] = {"paddock_usage_egress_bytes_total", "counter", "Egress bytes of the recorded runs, per team",
                      NULL},
        [F_LAUNCHED] = {"paddock_governance_runs_launched_total", "counter",
                        "Runs launched, per team (adoption over time)", NULL},
        [F_ACTIVE] = {"paddock_runs_active", "gauge", "Runs not ended yet, per team", NULL},
        [F_APPROVALS_PENDING] = {"paddock_governance_approvals_total", "counter",
                                 "Approvals requested, per team and status", "status=\"pending\""},
        [F_APPROVALS_APPROVED] = {"paddock_governance_approvals_total", NULL, NULL, "status=\"approved\""},
        [F_APPROVALS_DENIED] = {"paddock_governance_approvals_total", NULL, NULL, "status=\"denied\""},
        [F_APPROVALS_EXPIRED] = {"paddock_governance_approvals_total", NULL, NULL, "status=\"expired\""},
};

#define TERMINAL_SQL "('succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected')"

/* Per team of the tenant in the caller's setting: the figures in fields[] order. */
static const char team_sql[] =
        "SELECT t.name, coalesce(d.runs, 0), coalesce(d.cost, 0), coalesce(d.tin, 0), coalesce(d.tout, 0), "
        "coalesce(d.runtime, 0), coalesce(d.egress, 0), coalesce(r.launched, 0), coalesce(r.active, 0), "
        "coalesce(a.pending, 0), coalesce(a.approved, 0), coalesce(a.denied, 0), coalesce(a.expired, 0) "
        "FROM api.teams t "
        "LEFT JOIN (SELECT team_id, sum(runs) runs, sum(cost_usd) cost, sum(tokens_in) tin, sum(tokens_out) tout, "
        "  sum(runtime_seconds) runtime, sum(egress_bytes) egress FROM billing.team_daily GROUP BY team_id) d "
        "  ON d.team_id = t.id "
        "LEFT JOIN (SELECT team_id, count(*) launched, count(*) FILTER (WHERE status NOT IN " TERMINAL_SQL ") active "
        "  FROM api.runs GROUP BY team_id) r ON r.team_id = t.id "
        "LEFT JOIN (SELECT team_id, count(*) FILTER (WHERE status = 'pending' AND deadline > now()) pending, "
        "  count(*) FILTER (WHERE status = 'approved') approved, count(*) FILTER (WHERE status = 'denied') denied, "
        "  count(*) FILTER (WHERE status = 'expired' OR (status = 'pending' AND deadline <= now())) expired "
        "  FROM api.approvals GROUP BY team_id) a ON a.team_id = t.id";

/* Of the tenant: the median and p95 seconds from request to a person's
 * decision, over the approvals decided in the last 30 days. */
static const char latency_sql[] =
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM decided_at - created_at)), "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM decided_at - created_at)) "
        "FROM api.approvals WHERE status IN ('approved', 'denied') AND decided_by LIKE 'user:%' "
        "AND decided_at > now() - interval '30 days'";

/* docs/CONTRACTS.md "Where rules apply (levels)"; the last is every other value */
static const char *const policy_levels[] = {"hook", "exec", "file", "egress", "other"};
static const char *const policy_outcomes[] = {"allow", "ask", "deny"};
#define N_LEVELS ELEMENTSOF(policy_levels)
#define N_OUTCOMES ELEMENTSOF(policy_outcomes)

/* Per team of the tenant in the caller's setting: policy decisions by level and outcome. */
static const char policy_sql[] =
        "SELECT t.name, p.level, p.action, count(*) FROM evidence.policy_decision_outcomes p "
        "JOIN api.runs r ON r.id = p.run_id JOIN api.teams t ON t.id = r.team_id GROUP BY 1, 2, 3";

/* Of the tenant: policy decisions by rule and outcome, the most frequent rule first. */
static const char rule_sql[] =
        "SELECT rule, action, count(*), sum(count(*)) OVER (PARTITION BY rule) AS total "
        "FROM evidence.policy_decision_outcomes GROUP BY rule, action ORDER BY total DESC, rule";

struct team_row {
        char tenant[129], team[129];
        double v[F_COUNT_];
        double policy[N_LEVELS][N_OUTCOMES];
};

static size_t index_of(const char *const *list, size_t n, const char *v, size_t dflt) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(list[i], v) == 0)
                        return i;
        return dflt;
}

/* One rule's decisions in a tenant, by outcome (policy_outcomes order). */
struct rule_row {
        char rule[129];
        double n[N_OUTCOMES], total;
};

/* Per tenant: approval latencies, and its rules' decisions with the top
 * rules_n first and the rest summed into rule "other" (rules[rules_n]). */
struct tenant_latency {
        char tenant[129];
        bool known;
        double p50, p95;
        struct rule_row *rules;
        size_t nrules;
};

static struct {
        struct pg_pool *pool;
        long long interval_s, top_n, top_rules;
        pthread_t thread;
        bool started;
        atomic_bool stop;
        pthread_mutex_t lock;
        char *text; /* the last rendering, owned; NULL before the first */
} mf = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A label value in the exposition format: \, " and newline escaped. */
static void label_value(FILE *f, const char *v) {
        for (; *v; v++) {
                if (*v == '\\' || *v == '"')
                        fputc('\\', f);
                if (*v == '\n')
                        fputs("\\n", f);
                else
                        fputc(*v, f);
        }
}

static int by_weight(const void *a, const void *b) {
        const struct team_row *x = a, *y = b;
        if (x->v[F_COST] != y->v[F_COST])
                return x->v[F_COST] < y->v[F_COST] ? 1 : -1;
        if (x->v[F_RUNS] != y->v[F_RUNS])
                return x->v[F_RUNS] < y->v[F_RUNS] ? 1 : -1;
        if (x->v[F_LAUNCHED] != y->v[F_LAUNCHED])
                return x->v[F_LAUNCHED] < y->v[F_LAUNCHED] ? 1 : -1;
        int c = strcmp(x->tenant, y->tenant);
        return c ? c : strcmp(x->team, y->team);
}

/* Renders rows (sorted by weight; the first top_n keep their labels, the
 * rest summed as "other") and the latencies into a malloc'd text. */
static char *render(struct team_row *rows, size_t n, const struct tenant_latency *lat, size_t nlat,
                    size_t top_n) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        struct team_row other = {.tenant = "other", .team = "other"};
        for (size_t i = top_n; i < n; i++) {
                for (int k = 0; k < F_COUNT_; k++)
                        other.v[k] += rows[i].v[k];
                for (size_t l = 0; l < N_LEVELS; l++)
                        for (size_t o = 0; o < N_OUTCOMES; o++)
                                other.policy[l][o] += rows[i].policy[l][o];
        }
        size_t shown = n < top_n ? n : top_n;
        for (int k = 0; k < F_COUNT_; k++) {
                if (fields[k].type)
                        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fields[k].name, fields[k].help, fields[k].name,
                                fields[k].type);
                for (size_t i = 0; i <= shown; i++) {
                        const struct team_row *r = i < shown ? &rows[i] : &other;
                        if (i == shown && n <= top_n)
                                break; /* no "other" when every team has labels */
                        fprintf(f, "%s{tenant=\"", fields[k].name);
                        label_value(f, r->tenant);
                        fputs("\",team=\"", f);
                        label_value(f, r->team);
                        fprintf(f, "\"%s%s} %.17g\n", fields[k].label ? "," : "", fields[k].label ? fields[k].label : "",
                                r->v[k]);
                }
        }
        fputs("# HELP paddock_governance_policy_decisions_total Policy decisions, per team, level and outcome "
              "(series with a count only)\n# TYPE paddock_governance_policy_decisions_total counter\n",
              f);
        for (size_t i = 0; i <= shown; i++) {
                const struct team_row *r = i < shown ? &rows[i] : &other;
                if (i == shown && n <= top_n)
                        break;
                for (size_t l = 0; l < N_LEVELS; l++)
                        for (size_t o = 0; o < N_OUTCOMES; o++) {
                                if (r->policy[l][o] <= 0)
                                        continue;
                                fputs("paddock_governance_policy_decisions_total{tenant=\"", f);
                                label_value(f, r->tenant);
                                fputs("\",team=\"", f);
                                label_value(f, r->team);
                                fprintf(f, "\",level=\"%s\",outcome=\"%s\"} %.17g\n", policy_levels[l],
                                        policy_outcomes[o], r->policy[l][o]);
                        }
        }
        fputs("# HELP paddock_governance_approval_decision_seconds Seconds from an approval request to a person's "
              "decision, over the last 30 days, per tenant\n"
              "# TYPE paddock_governance_approval_decision_seconds gauge\n",
              f);
        for (size_t i = 0; i < nlat; i++) {
                if (!lat[i].known)
                        continue;
                for (int q = 0; q < 2; q++) {
                        fputs("paddock_governance_approval_decision_seconds{tenant=\"", f);
                        label_value(f, lat[i].tenant);
                        fprintf(f, "\",quantile=\"%s\"} %.17g\n", q ? "0.95" : "0.5", q ? lat[i].p95 : lat[i].p50);
                }
        }
        fputs("# HELP paddock_governance_policy_decisions_by_rule_total Policy decisions, per tenant, rule and "
              "outcome: the tenant's most frequent rules, the rest as rule=\"other\" (series with a count only)\n"
              "# TYPE paddock_governance_policy_decisions_by_rule_total counter\n",
              f);
        for (size_t i = 0; i < nlat; i++)
                for (size_t j = 0; j < lat[i].nrules; j++)
                        for (size_t o = 0; o < N_OUTCOMES; o++) {
                                if (lat[i].rules[j].n[o] <= 0)
                                        continue;
                                fputs("paddock_governance_policy_decisions_by_rule_total{tenant=\"", f);
                                label_value(f, lat[i].tenant);
                                fputs("\",rule=\"", f);
                                label_value(f, lat[i].rules[j].rule);
                                fprintf(f, "\",outcome=\"%s\"} %.17g\n", policy_outcomes[o], lat[i].rules[j].n[o]);
                        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* The tenant's rules from rule_sql's rows (most frequent first): the first
 * top_rules with their own label ("" shown as "none": a decision without a
 * rule), every other summed into "other". 0 or -ENOMEM. */
static int rules_of(struct tenant_latency *t, const PGresult *res, size_t top_rules) {
        size_t cap = top_rules + 1;
        t->rules = calloc(cap, sizeof *t->rules);
        if (!t->rules)
                return -ENOMEM;
        struct rule_row *other = NULL;
        for (int i = 0; i < PQntuples(res); i++) {
                size_t o = index_of(policy_outcomes, N_OUTCOMES, PQgetvalue(res, i, 1), SIZE_MAX);
                if (o == SIZE_MAX)
                        continue; /* not a decision the engine makes */
                const char *rule = PQgetvalue(res, i, 0)[0] ? PQgetvalue(res, i, 0) : "none";
                struct rule_row *r = NULL;
                for (size_t j = 0; j < t->nrules && !r; j++)
                        if (&t->rules[j] != other && strcmp(t->rules[j].rule, rule) == 0)
                                r = &t->rules[j];
                if (!r && t->nrules < top_rules) {
                        r = &t->rules[t->nrules++];
                        snprintf(r->rule, sizeof r->rule, "%s", rule);
                }
                if (!r) {
                        if (!other) {
                                other = &t->rules[t->nrules++];
                                snprintf(other->rule, sizeof other->rule, "other");
                        }
                        r = other;
                }
                r->n[o] += atof(PQgetvalue(res, i, 2));
        }
        return 0;
}

/* One computation: every tenant's teams. Returns 0 or a negative errno. */
static int compute(char **ret) {
        struct err_detail e = {0};
        PGconn *conn = pg_pool_acquire(mf.pool, 5000, &e);
        if (!conn)
                return e.errnum < 0 ? e.errnum : -ECONNRESET;
        _cleanup_(PQclearp) PGresult *tenants = NULL;
        struct team_row *rows = NULL;
        struct tenant_latency *lat = NULL;
        size_t n = 0, cap = 0;
        int k = pg_exec(conn, "SELECT id::text, name FROM api.metrics_tenants()", 0, NULL, &tenants, &e);
        int nt = k >= 0 ? PQntuples(tenants) : 0;
        if (k >= 0 && nt > 0 && !(lat = calloc((size_t)nt, sizeof *lat)))
                k = -ENOMEM;
        for (int t = 0; k >= 0 && t < nt; t++) {
                _cleanup_(PQclearp) PGresult *res = NULL, *lr = NULL, *pr = NULL, *rr = NULL;
                if ((k = pg_set_tenant(conn, PQgetvalue(tenants, t, 0), &e)) < 0 ||
                    (k = pg_exec(conn, team_sql, 0, NULL, &res, &e)) < 0 ||
                    (k = pg_exec(conn, latency_sql, 0, NULL, &lr, &e)) < 0 ||
                    (k = pg_exec(conn, policy_sql, 0, NULL, &pr, &e)) < 0 ||
                    (k = pg_exec(conn, rule_sql, 0, NULL, &rr, &e)) < 0)
                        break;
                size_t first = n;
                snprintf(lat[t].tenant, sizeof lat[t].tenant, "%s", PQgetvalue(tenants, t, 1));
                lat[t].known = !PQgetisnull(lr, 0, 0);
                lat[t].p50 = atof(PQgetvalue(lr, 0, 0));
                lat[t].p95 = atof(PQgetvalue(lr, 0, 1));
                if ((k = rules_of(&lat[t], rr, (size_t)mf.top_rules)) < 0)
                        break;
                for (int i = 0; i < PQntuples(res); i++) {
                        if (n == cap) {
                                size_t nc = cap ? 2 * cap : 64;
                                struct team_row *nr = realloc(rows, nc * sizeof *rows);
                                if (!nr) {
                                        k = -ENOMEM;
                                        break;
                                }
                                rows = nr;
                                cap = nc;
                        }
                        struct team_row *r = &rows[n++];
                        snprintf(r->tenant, sizeof r->tenant, "%s", PQgetvalue(tenants, t, 1));
                        snprintf(r->team, sizeof r->team, "%s", PQgetvalue(res, i, 0));
                        memset(r->policy, 0, sizeof r->policy);
                        for (int c = 0; c < F_COUNT_; c++)
                                r->v[c] = atof(PQgetvalue(res, i, 1 + c));
                }
                /* this tenant's rows are rows[first..n): its decisions to their team */
                for (int i = 0; k >= 0 && i < PQntuples(pr); i++) {
                        size_t o = index_of(policy_outcomes, N_OUTCOMES, PQgetvalue(pr, i, 2), SIZE_MAX);
                        if (o == SIZE_MAX)
                                continue; /* not a decision the engine makes */
                        size_t l = index_of(policy_levels, N_LEVELS, PQgetvalue(pr, i, 1), N_LEVELS - 1);
                        for (size_t j = first; j < n; j++)
                                if (strcmp(rows[j].team, PQgetvalue(pr, i, 0)) == 0) {
                                        rows[j].policy[l][o] += atof(PQgetvalue(pr, i, 3));
                                        break;
                                }
                }
        }
        /* the connection goes back to the pool without a tenant */
        if (pg_set_tenant(conn, "", NULL) < 0 && k >= 0)
                k = -ECONNRESET;
        pg_pool_release(mf.pool, conn);
        if (k >= 0) {
                if (n)
                        qsort(rows, n, sizeof *rows, by_weight);
                *ret = render(rows, n, lat, (size_t)nt, (size_t)mf.top_n);
                if (!*ret)
                        k = -ENOMEM;
        } else {
                log_warn("could not compute the usage metrics: %s", e.message[0] ? e.message : strerror(-k));
        }
        free(rows);
        for (int t = 0; lat && t < nt; t++)
                free(lat[t].rules);
        free(lat);
        return k;
}

static void *figures_thread(void *arg) {
        (void)arg;
        while (!atomic_load(&mf.stop)) {
                char *text = NULL;
                if (compute(&text) >= 0) {
                        pthread_mutex_lock(&mf.lock);
                        free(mf.text);
                        mf.text = text;
                        pthread_mutex_unlock(&mf.lock);
                }
                for (long long i = 0; i < mf.interval_s * 10 && !atomic_load(&mf.stop); i++)
                        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
        }
        return NULL;
}

/* metrics_text_fn: the last rendering (nothing before the first). */
static int figures_text(FILE *f, void *userdata) {
        (void)userdata;
        pthread_mutex_lock(&mf.lock);
        int r = mf.text && fputs(mf.text, f) < 0 ? -EIO : 0;
        pthread_mutex_unlock(&mf.lock);
        return r;
}

void metrics_figures_register(void) { metrics_register_text(figures_text, NULL); }

int metrics_figures_start(struct pg_pool *pool, long long interval_s, long long top_n, long long top_rules) {
        mf.pool = pool;
        mf.interval_s = interval_s;
        mf.top_n = top_n;
        mf.top_rules = top_rules;
        atomic_store(&mf.stop, false);
        int r = pthread_create(&mf.thread, NULL, figures_thread, NULL);
        if (r != 0)
                return -r;
        mf.started = true;
        return 0;
}

void metrics_figures_stop(void) {
        if (!mf.started)
                return;
        atomic_store(&mf.stop, true);
        pthread_join(mf.thread, NULL);
        mf.started = false;
        pthread_mutex_lock(&mf.lock);
        free(mf.text);
        mf.text = NULL;
        pthread_mutex_unlock(&mf.lock);
}
