/* Runs: launch and relaunch (snapshot + paddock.runs.requested, through the
 * outbox) and status reads. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "core/metrics.h"
#include "kafka/topics.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "proto/envelope.h"



static const char *const terminal_statuses[] = {"succeeded", "failed", "cancelled", "timed_out",
                                                "limit_exceeded", "rejected", NULL};

static json_t *runs_row_json_raw(const PGresult *res, int row, const char *exit_code);

bool runs_status_terminal(const char *status) {
        for (const char *const *s = terminal_statuses; *s; s++)
                if (!strcmp(*s, status))
                        return true;
        return false;
}

/* "history" of a run row (RUNS_SELECT columns 18-21): complete once a
 * terminal status is shown. */
static json_t *runs_history_json(const PGresult *res, int row, bool hidden) {
        bool complete = !hidden && runs_status_terminal(PQgetvalue(res, row, 1));
        const char *total = db_val(res, row, 20);
        return json_pack("{s:b, s:I, s:o, s:I}", "complete", complete, "events_stored",
                         (json_int_t)atoll(PQgetvalue(res, row, 19)), "events_total",
                         total ? json_integer(atoll(total)) : json_null(), "events_lost",
                         (json_int_t)atoll(db_val(res, row, 21) ? db_val(res, row, 21) : "0"));
}

json_t *runs_row_json(const PGresult *res, int row) {
        const char *exit_code = db_val(res, row, 9);
        bool hidden = !strcmp(PQgetvalue(res, row, 18), "t");
        json_t *o = runs_row_json_raw(res, row, exit_code);
        if (!o)
                return NULL;
        /* the outcome waits for the history (RUNS_TERMINAL_HIDDEN) */
        if (hidden)
                for (const char *const *k = (const char *const[]){"ended_at", "finished_at", "exit_code", "reason",
                                                                  NULL};
                     *k; k++)
                        json_object_set_new(o, *k, json_null());
        json_object_set_new(o, "history", runs_history_json(res, row, hidden));
        /* the latest review's outcome (reviews.c), null before any */
        const char *review = db_val(res, row, 22);
        json_t *rv = review ? json_loads(review, 0, NULL) : NULL;
        json_object_set_new(o, "review", rv ? rv : json_null());
        return o;
}

static json_t *runs_row_json_raw(const PGresult *res, int row, const char *exit_code) {
        /* finished_at is ended_at under the name the lists use; both stay */
        return json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:s, s:s, s:{s:s, s:s},"
                         " s:o, s:o}",
                         "id", PQgetvalue(res, row, 0), "status", PQgetvalue(res, row, 1), "team",
                         PQgetvalue(res, row, 2), "sandbox", PQgetvalue(res, row, 3), "version",
                         (json_int_t)atoll(PQgetvalue(res, row, 4)), "node", db_json_str(res, row, 5),
                         "created_at", PQgetvalue(res, row, 6), "started_at", db_json_str(res, row, 7),
                         "ended_at", db_json_str(res, row, 8), "exit_code",
                         exit_code ? json_integer(atoll(exit_code)) : json_null(), "reason",
                         db_json_str(res, row, 10), "created_by", PQgetvalue(res, row, 11),
                         "scheduled_at", db_json_str(res, row, 12), "sandbox_name", PQgetvalue(res, row, 13),
                         "team_name", PQgetvalue(res, row, 14), "launched_by", "id", PQgetvalue(res, row, 11),
                         "username", PQgetvalue(res, row, 15), "finished_at", db_json_str(res, row, 8),
                         "relaunch_of", db_json_str(res, row, 16));
}

int runs_load_visible(struct api *a, const struct api_caller *c, const char *run_id, enum api_perm perm,
                      char team_out[UUID_STR_LEN], char *status_out, size_t status_size,
                      struct err_detail *e) {
        if (!id_is_uuid(run_id))
                return -ENOENT;
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, a, c->tenant_id, e);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, c->tenant_id};
        k = pg_exec(d.conn, "SELECT team_id, status FROM api.runs WHERE id = $1 AND tenant_id = $2", 2, params,
                    &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        if ((k = api_authz_team(&d, c, PQgetvalue(res, 0, 0), perm, e)) < 0)
                return k;
        snprintf(team_out, UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
        snprintf(status_out, status_size, "%s", PQgetvalue(res, 0, 1));
        return 0;
}

/* The run and whether the caller may see it, in one prepared statement
 * sent with the token lookup (api_read_fn): RUNS_SELECT's columns, then
 * API_AUTHZ_COLUMNS from RUNS_COL_AUTHZ on (api_authz_team() folded in).
 * $1 the run, $2 the roles carrying the route's permission; the caller's
 * tenant (row-level security filters on it as well) and user are the
 * settings the lookup made: without them (an invalid token) it finds
 * nothing. */
#define RUNS_COL_AUTHZ 23
/* The run's policy counters (docs/CONTRACTS.md "The approval queue"), two
 * JSON columns after the authz ones: its policy_decision events by action
 * (evidence.run_events through the partial index run_events_policy_decisions,
 * evidence migration 0008: the decisions alone, never the run's other
 * events) and its approvals by status (a pending one past its deadline
 * counts as expired, as GET /v1/approvals shows it). */
#define RUNS_POLICY_COUNTERS                                                                                    \
        "(SELECT json_build_object('allow', count(*) FILTER (WHERE e.data->>'action' = 'allow'), "               \
        "'ask', count(*) FILTER (WHERE e.data->>'action' = 'ask'), "                                           \
        "'deny', count(*) FILTER (WHERE e.data->>'action' = 'deny'))::text FROM evidence.run_events e "         \
        "WHERE e.run_id = q.id AND e.kind = 'policy_decision'), "                                              \
        "(SELECT json_build_object('pending', count(*) FILTER (WHERE a.status = 'pending' AND a.deadline > now()), " \
        "'approved', count(*) FILTER (WHERE a.status = 'approved'), "                                          \
        "'denied', count(*) FILTER (WHERE a.status = 'denied'), "                                              \
        "'expired', count(*) FILTER (WHERE a.status = 'expired' OR (a.status = 'pending' AND a.deadline <= now())), " \
        "'cancelled', count(*) FILTER (WHERE a.status = 'cancelled'))::text FROM api.approvals a "             \
        "WHERE a.run_id = q.id AND a.tenant_id = " SETTING_UUID("paddock.tenant_id") ")"
#define SETTING_UUID(name) "NULLIF(current_setting('" name "', true), '')::uuid"
static const struct pg_stmt run_get_stmt = {
        "api_run_get",
        "SELECT q.*, " API_AUTHZ_COLUMNS("m", "$2") ", " RUNS_POLICY_COUNTERS ", p.usage_model_calls, p.usage_input_tokens, "
        "p.usage_output_tokens, p.usage_cache_read_tokens, p.usage_cache_write_tokens, p.usage_cost_usd, "
        "p.agent_session::text, p.prompt::text FROM (" RUNS_SELECT
        "WHERE r.id = $1 AND r.tenant_id = " SETTING_UUID("paddock.tenant_id") ") q "
        "LEFT JOIN api.team_members m ON m.team_id = q.team_id AND m.tenant_id = " SETTING_UUID("paddock.tenant_id")
        " AND m.user_id = " SETTING_UUID("paddock.user_id")
        /* plus the run's model usage and agent session (status_consumer.c)
         * and its prompt (prompt.c), shown here and not in lists: the
         * prompt may be large */
        " JOIN api.runs p ON p.id = q.id AND p.tenant_id = " SETTING_UUID("paddock.tenant_id"),
        2};

int runs_get_read(const struct api_req *r, const char **params, struct pg_step *ret_step) {
        if (!id_is_uuid(r->params[0]))
                return -ENOENT;
        params[0] = r->params[0];
        params[1] = api_perm_roles(r->perm);
        *ret_step = (struct pg_step){.stmt = &run_get_stmt, .params = params};
        return 0;
}

int runs_get(struct api_req *r) {
        if (!id_is_uuid(r->params[0]))
                return api_errno(r, -ENOENT, "run not found");
        /* read in the token lookup's round trip (runs_get_read): one round trip per request */
        const PGresult *res = r->read;
        if (!res)
                return api_errno(r, -EIO, "internal error");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "run not found");
        struct err_detail e = {0};
        int k = api_authz_team_row(&r->caller, res, 0, RUNS_COL_AUTHZ, PQgetvalue(res, 0, 14), &e);
        if (k == -ENOENT)
                return api_errno(r, -ENOENT, "run not found");
        if (k < 0)
                return db_fail(r, k, &e, "check team membership");
        r->out = runs_row_json(res, 0);
        int nf = PQnfields(res);
        if (r->out) {
                /* the two counter columns stand right before the usage ones */
                json_t *dec = json_loads(PQgetvalue(res, 0, nf - 10), 0, NULL);
                json_t *appr = json_loads(PQgetvalue(res, 0, nf - 9), 0, NULL);
                json_object_set_new(r->out, "policy", json_pack("{s:o, s:o}", "decisions", dec ? dec : json_object(),
                                                                "approvals", appr ? appr : json_object()));
        }
        const char *prompt = db_val(res, 0, nf - 1), *agent = db_val(res, 0, nf - 2);
        if (r->out) {
                json_object_set_new(r->out, "prompt", prompt ? json_loads(prompt, 0, NULL) : json_null());
                json_object_set_new(r->out, "agent_session", agent ? json_loads(agent, 0, NULL) : json_null());
                json_object_set_new(r->out, "usage",
                                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", "model_calls",
                                              (json_int_t)atoll(PQgetvalue(res, 0, nf - 8)), "input_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, nf - 7)), "output_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, nf - 6)), "cache_read_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, nf - 5)), "cache_write_tokens",
                                              (json_int_t)atoll(PQgetvalue(res, 0, nf - 4)), "cost_usd",
                                              strtod(PQgetvalue(res, 0, nf - 3), NULL)));
        }
        /* retention and deletion (retention.c): a second round trip only for
         * ended runs, so the hot read of a live run stays one */
        if (r->out && json_is_string(json_object_get(r->out, "ended_at")) &&
            (k = retention_run_annotate(r, r->params[0], r->out)) < 0)
                return k;
        if (r->out && !json_object_get(r->out, "deleted")) {
                json_object_set_new(r->out, "retention", json_null());
                json_object_set_new(r->out, "deleted", json_null());
        }
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}


/* Everything a RunRequested points into, freed together. */
struct snapshot_parts {
        char **command;
        Paddock__V1__ManagedFile *files;
        Paddock__V1__ManagedFile **file_ptrs;
        size_t n_command, n_files;
        Paddock__V1__EgressPolicy egress;
        Paddock__V1__EgressRule *rules;
        Paddock__V1__EgressRule **rule_ptrs;
        Paddock__V1__SecretRef *secrets;
        Paddock__V1__SecretRef **secret_ptrs;
        char (*header_hosts)[256];      /* spec_header_origin's host of each header secret */
        Paddock__V1__ModelRoute *routes;
        Paddock__V1__ModelRoute **route_ptrs;
        char **route_models;            /* one model id per route */
        char *policy_json;
        Paddock__V1__SecretRef *identity;   /* spec.identity (snapshot_fill_identity) */
        Paddock__V1__SecretRef **identity_ptrs;
        char (*identity_names)[32];         /* "identity:<index>" */
        char (*identity_hosts)[256];
        Paddock__V1__McpServer *mcp;
        Paddock__V1__McpServer **mcp_ptrs;
        char **mcp_args;                /* every stdio server's argv, one block */
};

static void snapshot_parts_free(struct snapshot_parts *p) {
        free(p->command);
        free(p->files);
        free(p->file_ptrs);
        free(p->rules);
        free(p->rule_ptrs);
        free(p->secrets);
        free(p->secret_ptrs);
        free(p->header_hosts);
        free(p->routes);
        free(p->route_ptrs);
        free(p->route_models);
        free(p->policy_json);
        free(p->identity);
        free(p->identity_ptrs);
        free(p->identity_names);
        free(p->identity_hosts);
        free(p->mcp);
        free(p->mcp_ptrs);
        free(p->mcp_args);
}

/* SandboxSnapshot.mcp_servers from the resolved connectors (policy_resolve,
 * docs/CONTRACTS.md "MCP connectors"). */
static int snapshot_fill_mcp(json_t *pol, Paddock__V1__SandboxSnapshot *snap, struct snapshot_parts *parts) {
        json_t *cs = json_object_get(pol, "connectors"), *c;
        size_t n = json_array_size(cs), nargs = 0, i, j;
        json_array_foreach(cs, i, c)
                nargs += json_array_size(json_object_get(c, "command"));
        parts->mcp = calloc(n + 1, sizeof *parts->mcp);
        parts->mcp_ptrs = calloc(n + 1, sizeof *parts->mcp_ptrs);
        parts->mcp_args = calloc(nargs + 1, sizeof *parts->mcp_args);
        if (!parts->mcp || !parts->mcp_ptrs || !parts->mcp_args)
                return -ENOMEM;
        size_t a = 0;
        json_array_foreach(cs, i, c) {
                Paddock__V1__McpServer *m = &parts->mcp[i];
                paddock__v1__mcp_server__init(m);
                m->name = (char *)json_string_value(json_object_get(c, "name"));
                m->transport = (char *)json_string_value(json_object_get(c, "transport"));
                json_t *url = json_object_get(c, "url"), *arg;
                if (url)
                        m->url = (char *)json_string_value(url);
                m->command = &parts->mcp_args[a];
                json_array_foreach(json_object_get(c, "command"), j, arg)
                        parts->mcp_args[a++] = (char *)json_string_value(arg);
                m->n_command = json_array_size(json_object_get(c, "command"));
                parts->mcp_ptrs[i] = m;
        }
        snap->n_mcp_servers = n;
        snap->mcp_servers = parts->mcp_ptrs;
        return 0;
}

/* The resolved rules in evaluation order (policy_resolve: egress.allow,
 * then the profiles expanded), then the default for anything else. */
static int snapshot_fill_egress(json_t *pol, Paddock__V1__SandboxSnapshot *snap, struct snapshot_parts *parts) {
        Paddock__V1__EgressPolicy *eg = &parts->egress;
        paddock__v1__egress_policy__init(eg);
        json_t *je = json_object_get(pol, "egress");
        json_t *rules = json_object_get(je, "rules");
        size_t n = json_array_size(rules);
        parts->rules = calloc(n + 1, sizeof *parts->rules);
        parts->rule_ptrs = calloc(n + 1, sizeof *parts->rule_ptrs);
        if (!parts->rules || !parts->rule_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *jr = json_array_get(rules, i);
                Paddock__V1__EgressRule *rule = &parts->rules[i];
                paddock__v1__egress_rule__init(rule);
                rule->host = (char *)json_string_value(json_object_get(jr, "host"));
                rule->port = (uint32_t)json_integer_value(json_object_get(jr, "port"));
                rule->source = (char *)json_string_value(json_object_get(jr, "source"));
                parts->rule_ptrs[i] = rule;
        }
        eg->n_rules = n;
        eg->rules = parts->rule_ptrs;
        eg->unknown = (char *)json_string_value(json_object_get(je, "unknown"));
        eg->ask_timeout_s = (uint32_t)json_integer_value(json_object_get(je, "ask_timeout_s"));
        snap->egress = eg;
        return 0;
}

/* Where a secret or an identity token goes, from its validated "as":
 * {env} | {file} (identity only) | {header: {origin|host, name}}; host is
 * the caller's buffer the ref then points into. */
static int secret_ref_dest(Paddock__V1__SecretRef *ref, json_t *as, char *host, size_t host_size) {
        json_t *env = json_object_get(as, "env"), *file = json_object_get(as, "file"),
               *hdr = json_object_get(as, "header");
        if (env)
                ref->env = (char *)json_string_value(env);
        else if (file)
                ref->file = (char *)json_string_value(file);
        else {
                uint16_t port = 0;
                if (spec_header_origin(hdr, host, host_size, &port, NULL) < 0)
                        return -EINVAL; /* validated before: cannot happen */
                ref->header_host = host;
                ref->header_port = port;
                ref->header_name = (char *)json_string_value(json_object_get(hdr, "name"));
        }
        return 0;
}

static int snapshot_fill_secrets(json_t *spec, Paddock__V1__SandboxSnapshot *snap, struct snapshot_parts *parts) {
        json_t *js = json_object_get(spec, "secrets");
        size_t n = json_array_size(js);
        parts->secrets = calloc(n + 1, sizeof *parts->secrets);
        parts->secret_ptrs = calloc(n + 1, sizeof *parts->secret_ptrs);
        parts->header_hosts = calloc(n + 1, sizeof *parts->header_hosts);
        if (!parts->secrets || !parts->secret_ptrs || !parts->header_hosts)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_array_get(js, i), *as = json_object_get(s, "as");
                Paddock__V1__SecretRef *ref = &parts->secrets[i];
                paddock__v1__secret_ref__init(ref);
                ref->name = (char *)json_string_value(json_object_get(s, "name"));
                if (secret_ref_dest(ref, as, parts->header_hosts[i], sizeof parts->header_hosts[i]) < 0)
                        return -EINVAL;
                parts->secret_ptrs[i] = ref;
        }
        snap->n_secrets = n;
        snap->secrets = parts->secret_ptrs;
        return 0;
}

/* spec.identity as SecretRefs named "identity:<index>" (docs/CONTRACTS.md
 * "Workload identity"): sealing.c mints the token of each under that name,
 * the runner delivers it like a secret, or as a file. */
static int snapshot_fill_identity(json_t *pol, Paddock__V1__SandboxSnapshot *snap, struct snapshot_parts *parts) {
        json_t *ids = json_object_get(pol, "identity");
        size_t n = json_array_size(ids);
        parts->identity = calloc(n + 1, sizeof *parts->identity);
        parts->identity_ptrs = calloc(n + 1, sizeof *parts->identity_ptrs);
        parts->identity_names = calloc(n + 1, sizeof *parts->identity_names);
        parts->identity_hosts = calloc(n + 1, sizeof *parts->identity_hosts);
        if (!parts->identity || !parts->identity_ptrs || !parts->identity_names || !parts->identity_hosts)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *as = json_object_get(json_array_get(ids, i), "as");
                Paddock__V1__SecretRef *ref = &parts->identity[i];
                paddock__v1__secret_ref__init(ref);
                snprintf(parts->identity_names[i], sizeof parts->identity_names[i], "identity:%zu", i);
                ref->name = parts->identity_names[i];
                if (secret_ref_dest(ref, as, parts->identity_hosts[i], sizeof parts->identity_hosts[i]) < 0)
                        return -EINVAL;
                parts->identity_ptrs[i] = ref;
        }
        snap->n_identity = n;
        snap->identity = parts->identity_ptrs;
        return 0;
}

static double price(json_t *model, const char *key) {
        return json_number_value(json_object_get(json_object_get(model, "usd_per_mtok"), key));
}

/* One ModelRoute per (item, model id) of the resolved spec.models
 * (policy_resolve), with that model's prices (session decision 2): the
 * gateway prices each call by the route it took. */
static int snapshot_fill_models(json_t *pol, Paddock__V1__SandboxSnapshot *snap, struct snapshot_parts *parts) {
        json_t *items = json_object_get(pol, "models"), *it;
        size_t n = 0, i, j;
        json_array_foreach(items, i, it)
                n += json_array_size(json_object_get(it, "models"));
        parts->routes = calloc(n + 1, sizeof *parts->routes);
        parts->route_ptrs = calloc(n + 1, sizeof *parts->route_ptrs);
        parts->route_models = calloc(n + 1, sizeof *parts->route_models);
        if (!parts->routes || !parts->route_ptrs || !parts->route_models)
                return -ENOMEM;
        size_t r = 0;
        json_array_foreach(items, i, it) {
                json_t *m;
                json_array_foreach(json_object_get(it, "models"), j, m) {
                        Paddock__V1__ModelRoute *mr = &parts->routes[r];
                        paddock__v1__model_route__init(mr);
                        mr->provider = (char *)json_string_value(json_object_get(it, "provider"));
                        mr->upstream = (char *)json_string_value(json_object_get(it, "upstream"));
                        mr->key_secret = (char *)json_string_value(json_object_get(it, "key_secret"));
                        parts->route_models[r] = (char *)json_string_value(json_object_get(m, "id"));
                        mr->n_models = 1;
                        mr->models = &parts->route_models[r];
                        mr->usd_per_mtok_input = price(m, "input");
                        mr->usd_per_mtok_output = price(m, "output");
                        mr->usd_per_mtok_cache_read = price(m, "cache_read");
                        mr->usd_per_mtok_cache_write = price(m, "cache_write");
                        parts->route_ptrs[r] = mr;
                        r++;
                }
        }
        snap->n_model_routes = n;
        snap->model_routes = parts->route_ptrs;
        return 0;
}

/* The team secrets the resolved spec.models name, then those of the http
 * connectors' headers (each once), as a PostgreSQL text[] literal for
 * api.runs.model_key_secrets: sealing.c seals these besides spec.secrets
 * (the column holds every catalog-named secret of the run, docs/CONTRACTS.md
 * "MCP connectors"). Names are [A-Z_][A-Z0-9_]*: no quoting needed. */
static char *model_key_secrets_literal(json_t *pol) {
        _cleanup_json_ json_t *names = json_array(), *all = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(pol, "models"), i, it)
                json_array_append(all, json_object_get(it, "key_secret"));
        json_array_foreach(json_object_get(pol, "connectors"), i, it) {
                json_t *sn = json_object_get(json_object_get(it, "secret"), "name");
                if (sn)
                        json_array_append(all, sn);
        }
        json_array_foreach(all, i, it) {
                json_t *ks = it;
                bool seen = false;
                size_t j;
                json_t *n;
                json_array_foreach(names, j, n)
                        seen |= json_equal(n, ks);
                if (!seen)
                        json_array_append(names, ks);
        }
        size_t len = 3;
        json_array_foreach(names, i, it)
                len += json_string_length(it) + 1;
        char *out = malloc(len);
        if (!out)
                return NULL;
        size_t o = 0;
        out[o++] = '{';
        json_array_foreach(names, i, it)
                o += (size_t)sprintf(out + o, "%s%s", i ? "," : "", json_string_value(it));
        out[o++] = '}';
        out[o] = '\0';
        return out;
}

/* Fills the snapshot from a validated spec and its resolved policy (pol,
 * policy_resolve), borrowing their strings. */
static int snapshot_fill(json_t *spec, json_t *pol, Paddock__V1__SandboxSnapshot *snap, Paddock__V1__AgentSpec *agent,
                         Paddock__V1__Limits *limits, struct snapshot_parts *parts) {
        json_t *ja = json_object_get(spec, "agent");
        json_t *type = json_object_get(ja, "type");
        agent->type = (char *)(type ? json_string_value(type) : "command");
        json_t *model = json_object_get(ja, "model"), *effort = json_object_get(ja, "effort");
        if (model)
                agent->model = (char *)json_string_value(model);
        if (effort)
                agent->effort = (char *)json_string_value(effort);
        json_t *cmd = json_object_get(ja, "command");
        parts->n_command = json_array_size(cmd);
        parts->command = calloc(parts->n_command + 1, sizeof(char *));
        if (!parts->command)
                return -ENOMEM;
        for (size_t i = 0; i < parts->n_command; i++)
                parts->command[i] = (char *)json_string_value(json_array_get(cmd, i));
        agent->n_command = parts->n_command;
        agent->command = parts->command;
        snap->agent = agent;

        json_t *files = json_object_get(pol, "files");
        parts->n_files = json_array_size(files);
        parts->files = calloc(parts->n_files + 1, sizeof *parts->files);
        parts->file_ptrs = calloc(parts->n_files + 1, sizeof *parts->file_ptrs);
        if (!parts->files || !parts->file_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < parts->n_files; i++) {
                json_t *f = json_array_get(files, i);
                Paddock__V1__ManagedFile *mf = &parts->files[i];
                paddock__v1__managed_file__init(mf);
                mf->path = (char *)json_string_value(json_object_get(f, "path"));
                json_t *content = json_object_get(f, "content");
                mf->content.data = (uint8_t *)json_string_value(content);
                mf->content.len = json_string_length(content);
                mf->mode = (uint32_t)json_integer_value(json_object_get(f, "mode"));
                parts->file_ptrs[i] = mf;
        }
        snap->n_files = parts->n_files;
        snap->files = parts->file_ptrs;

        /* defaults already applied by policy_resolve */
        json_t *jl = json_object_get(pol, "limits");
        limits->timeout_s = (uint32_t)json_integer_value(json_object_get(jl, "timeout_s"));
        limits->cpus = json_number_value(json_object_get(jl, "cpus"));
        limits->memory_mb = (uint32_t)json_integer_value(json_object_get(jl, "memory_mb"));
        limits->disk_mb = (uint32_t)json_integer_value(json_object_get(jl, "disk_mb"));
        limits->pids = (uint32_t)json_integer_value(json_object_get(jl, "pids"));
        /* 0: no limit (the gateway's, docs/CONTRACTS.md "Model gateway") */
        limits->max_tokens = (uint64_t)json_integer_value(json_object_get(jl, "max_tokens"));
        limits->max_cost_usd = json_number_value(json_object_get(jl, "max_cost_usd"));
        snap->limits = limits;
        json_t *image = json_object_get(pol, "image");
        snap->image = (char *)(json_is_string(image) ? json_string_value(image) : "");
        int k = snapshot_fill_egress(pol, snap, parts);
        if (k < 0 || (k = snapshot_fill_models(pol, snap, parts)) < 0 || (k = snapshot_fill_mcp(pol, snap, parts)) < 0)
                return k;
        /* the effective rules as policy_resolve built them, what the
         * runner-agent decides with (docs/CONTRACTS.md "Policy engine") */
        json_t *jp = json_object_get(pol, "policy");
        _cleanup_json_ json_t *pj = json_pack("{s:O, s:O}", "rules", json_object_get(jp, "rules"), "ask_timeout_s",
                                              json_object_get(jp, "ask_timeout_s"));
        if (!pj || !(parts->policy_json = json_dumps(pj, JSON_COMPACT)))
                return -ENOMEM;
        snap->policy_json = parts->policy_json;
        if ((k = snapshot_fill_identity(pol, snap, parts)) < 0)
                return k;
        return snapshot_fill_secrets(pol, snap, parts);
}

/* Whether team_id has the secret name: *ret_set, or a negative errno after
 * answering the request. */
static int team_secret_set(struct api_req *r, struct db *d, const char *team_id, const char *name, bool *ret_set) {
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, r->caller.tenant_id, name};
        int k = pg_exec(d->conn, "SELECT 1 FROM api.team_secrets WHERE team_id = $1 AND tenant_id = $2 AND name = $3",
                        3, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up team secret");
        *ret_set = PQntuples(res) == 1;
        return 0;
}

/* A run whose definition names a team secret that is not set would only be
 * cancelled at provisioning: say so at launch instead (the check at
 * provisioning stays, a secret can be deleted in between). */
static int check_secrets_set(struct api_req *r, struct db *d, const char *team_id, json_t *spec) {
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(spec, "secrets"), i, s) {
                const char *name = json_string_value(json_object_get(s, "name"));
                bool set = false;
                int k = team_secret_set(r, d, team_id, name, &set);
                if (k < 0)
                        return k;
                if (!set)
                        return api_errno(r, -EEXIST, "spec.secrets[%zu]: secret %s is not set for the team", i, name);
        }
        return 0;
}

/* The same for the header secret of each resolved http connector (pol,
 * policy_resolve): refused like a missing spec.secrets secret. */
static int check_connector_secrets_set(struct api_req *r, struct db *d, const char *team_id, json_t *pol) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(pol, "connectors"), i, c) {
                const char *name = json_string_value(json_object_get(json_object_get(c, "secret"), "name"));
                if (!name)
                        continue;
                bool set = false;
                int k = team_secret_set(r, d, team_id, name, &set);
                if (k < 0)
                        return k;
                if (!set)
                        return api_errno(r, -EEXIST, "spec.connectors[%zu]: secret %s (the header of connector %s) is not set for "
                                        "the team", i, name, json_string_value(json_object_get(c, "name")));
        }
        return 0;
}

/* The same for the key each resolved spec.models item names (pol,
 * policy_resolve): a team that uses a models item brings its own key. */
static int check_model_keys_set(struct api_req *r, struct db *d, const char *team_id, json_t *pol) {
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(pol, "models"), i, it) {
                const char *name = json_string_value(json_object_get(it, "key_secret"));
                bool set = false;
                int k = team_secret_set(r, d, team_id, name, &set);
                if (k < 0)
                        return k;
                if (!set)
                        return api_errno(r, -EEXIST, "spec.models[%zu]: secret %s (the key of models item %s) is not set for the team",
                                        i, name, json_string_value(json_object_get(it, "name")));
        }
        return 0;
}

/* True when ref (a team id or name, as POST /v1/runs takes it) names team_id. */
static bool team_names_id(struct db *d, const char *tenant_id, const char *ref, const char *team_id) {
        if (!strcmp(ref, team_id))
                return true;
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, tenant_id, ref};
        int k = pg_exec(d->conn, "SELECT 1 FROM api.teams WHERE id = $1 AND tenant_id = $2 AND name = $3", 3, params,
                        &res, &e);
        return k >= 0 && PQntuples(res) == 1;
}

/* What a launch starts from. Strings borrowed. */
struct launch {
        const char *sandbox_id; /* resolved id */
        const char *version;    /* "N", or NULL for the latest published version */
        const char *team;       /* team id or name the request names (it must be the sandbox's), or NULL */
        const char *relaunch_of; /* the run this one repeats, or NULL */
        json_t *prompt_vars;    /* POST /v1/runs prompt_vars (an object), or NULL */
        json_t *prompt_text;    /* POST /v1/runs prompt (a string), or NULL */
};

/* Launches l as r's caller: the caller must hold r->perm (launcher) in the
 * sandbox's team, which is the run's team; the run is stored and audited in one
 * transaction, then requested on paddock.runs.requested. Answers 202. */
static int run_launch(struct api_req *r, struct db *d, const struct launch *l) {
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *sb = NULL;
        const char *sp[] = {l->sandbox_id, r->caller.tenant_id};
        int k = pg_exec(d->conn, "SELECT team_id, name FROM api.sandboxes WHERE id = $1 AND tenant_id = $2", 2, sp,
                        &sb, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load sandbox");
        if (PQntuples(sb) != 1)
                return api_errno(r, -ENOENT, "sandbox not found");
        k = api_authz_team(d, &r->caller, PQgetvalue(sb, 0, 0), PERM_VIEWER, &e);
        if (k == -EPERM)
                return db_fail(r, k, &e, "check team membership");
        if (k < 0)
                return api_errno(r, -ENOENT, "sandbox not found");
        const char *sandbox_name = PQgetvalue(sb, 0, 1);

        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {l->sandbox_id, r->caller.tenant_id, l->version};
        k = pg_exec(d->conn,
                    "SELECT v.spec::text, v.spec_sha256, v.version FROM api.sandbox_versions v "
                    "WHERE v.sandbox_id = $1 AND v.tenant_id = $2 AND ($3::integer IS NULL OR v.version = $3::integer) "
                    "ORDER BY v.version DESC LIMIT 1",
                    3, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load sandbox version");
        if (PQntuples(res) != 1 && l->version)
                return api_errno(r, -ENOENT, "sandbox version not found");
        if (PQntuples(res) != 1)
                return api_errno(r, -EEXIST, "sandbox \"%s\" has no published version: publish its draft first",
                                sandbox_name);
        char version[16];
        snprintf(version, sizeof version, "%s", PQgetvalue(res, 0, 2));

        /* A run belongs to the team of its definition (ARCHITECTURE.md §5: a
         * team's secrets reach only that team's definitions): launching
         * needs the launcher role there, and the secrets resolve there. A
         * team named in the request only confirms it. */
        char team_id[UUID_STR_LEN];
        snprintf(team_id, sizeof team_id, "%s", PQgetvalue(sb, 0, 0));
        if (l->team && !team_names_id(d, r->caller.tenant_id, l->team, team_id) && l->relaunch_of)
                return api_errno(r, -EEXIST, "run %s is not in the team of its sandbox \"%s\": launch the sandbox anew",
                                l->relaunch_of, sandbox_name);
        if (l->team && !team_names_id(d, r->caller.tenant_id, l->team, team_id))
                return api_errno(r, -EINVAL, "team: a run belongs to the team of its sandbox (\"%s\" is in team %s); "
                                "omit team or name that one",
                                sandbox_name, team_id);
        k = api_authz_team(d, &r->caller, team_id, r->perm, &e);
        if (k == -EPERM)
                return db_fail(r, k, &e, "check team membership");
        if (k < 0)
                return api_errno(r, -ENOENT, "team not found");
        /* budgets (B): a team that used up a limit this month launches nothing (402) */
        if ((k = budgets_launch_check(r, d, team_id)) < 0)
                return k;

        _cleanup_json_ json_t *spec = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        _cleanup_free_ char *canon = NULL;
        char sha[65];
        if (!spec || spec_canonical(spec, &canon, sha) < 0)
                return api_errno(r, -EIO, "could not load the published spec");

        if ((k = check_secrets_set(r, d, team_id, spec)) < 0)
                return k;
        /* resolved now, against the catalog as it is: an item changed back to
         * draft since publishing stops new runs until it is approved again */
        _cleanup_json_ json_t *pol = NULL;
        k = policy_resolve(d, r->caller.tenant_id, spec, &pol, &e);
        if (k == -EINVAL)
                return api_errno(r, -EEXIST, "%s", e.message);
        if (k < 0)
                return db_fail(r, k, &e, "resolve the sandbox policy");
        if ((k = check_model_keys_set(r, d, team_id, pol)) < 0 || (k = check_connector_secrets_set(r, d, team_id, pol)) < 0)
                return k;
        _cleanup_free_ char *model_keys = model_key_secrets_literal(pol);
        if (!model_keys)
                return api_errno(r, -ENOMEM, "out of memory");
        /* the task: rendered once, here, and stored with the run (prompt.c) */
        _cleanup_json_ json_t *prompt = NULL;
        const struct prompt_input pin = {.vars = l->prompt_vars, .free_text = l->prompt_text,
                                         .max_bytes = (size_t)r->api->cfg.prompt_max_bytes};
        k = prompt_for_run(d, r->caller.tenant_id, spec, &pin, &prompt, &e);
        if (k == -EINVAL)
                return api_fail(r, -EINVAL, e.code, "%s", e.message);
        if (k == -EEXIST)
                return api_errno(r, -EEXIST, "%s", e.message);
        if (k < 0)
                return db_fail(r, k, &e, "render the prompt");
        _cleanup_free_ char *prompt_vars_json = prompt ? json_dumps(json_object_get(prompt, "vars"),
                                                                    JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        _cleanup_free_ char *prompt_json = prompt ? json_dumps(prompt, JSON_COMPACT) : NULL;
        if (prompt && (!prompt_vars_json || !prompt_json))
                return api_errno(r, -ENOMEM, "out of memory");
        /* an approved image that no node has built would only fail the run at
         * provisioning: say so now (a run without image uses the node's own
         * root). One only on draining nodes is accepted: the run waits queued
         * for an undrain or another node (docs/CONTRACTS.md "Node drain") */
        json_t *image = json_object_get(pol, "image");
        if (json_is_string(image)) {
                k = nodes_image_live(d, json_string_value(image), &e);
                if (k == -EAGAIN)
                        return api_errno(r, -EAGAIN, "the nodes' images are not known yet");
                if (k < 0)
                        return db_fail(r, k, &e, "check the nodes' images");
                if (k == 0)
                        return api_errno(r, -EINVAL, "spec.image: no ready node has image \"%s\", nor any draining one "
                                        "(sandbox \"%s\" version %s); "
                                        "build it on a node (paddock-runner-agent image build %s) or launch "
                                        "a version without it",
                                        json_string_value(image), sandbox_name, version, json_string_value(image));
        }

        char run_id[UUID_STR_LEN], msgid[UUID_STR_LEN];
        if (id_new_uuid(run_id) < 0)
                return api_errno(r, -EIO, "could not generate an id");

        Paddock__V1__RunRequested req = PADDOCK__V1__RUN_REQUESTED__INIT;
        Paddock__V1__Envelope env;
        Paddock__V1__SandboxSnapshot snap = PADDOCK__V1__SANDBOX_SNAPSHOT__INIT;
        Paddock__V1__AgentSpec agent = PADDOCK__V1__AGENT_SPEC__INIT;
        Paddock__V1__Limits limits = PADDOCK__V1__LIMITS__INIT;
        _cleanup_(snapshot_parts_free) struct snapshot_parts parts = {0};
        char producer[64];
        snprintf(producer, sizeof producer, "api/%s", r->api->instance);
        if (envelope_init(&env, r->caller.tenant_id, run_id, 0, producer, msgid) < 0 ||
            snapshot_fill(spec, pol, &snap, &agent, &limits, &parts) < 0)
                return api_errno(r, -EIO, "could not build the run snapshot");
        snap.sandbox_id = (char *)l->sandbox_id;
        snap.version = (uint32_t)atoi(version);
        snap.name = (char *)sandbox_name;
        snap.spec_json = canon;
        snap.spec_sha256 = PQgetvalue(res, 0, 1);
        req.env = &env;
        req.team_id = team_id;
        req.launched_by = r->caller.user_id;
        req.sandbox = &snap;
        Paddock__V1__RunPrompt rp = PADDOCK__V1__RUN_PROMPT__INIT;
        if (prompt) {
                rp.template_id = (char *)json_string_value(json_object_get(prompt, "template"));
                rp.template_name = (char *)json_string_value(json_object_get(prompt, "template_name"));
                rp.template_version = (char *)json_string_value(json_object_get(prompt, "template_version"));
                rp.vars_json = prompt_vars_json;
                rp.rendered = (char *)json_string_value(json_object_get(prompt, "rendered"));
                rp.rendered_sha256 = (char *)json_string_value(json_object_get(prompt, "rendered_sha256"));
                snap.prompt = &rp;
        }
        size_t len = paddock__v1__run_requested__get_packed_size(&req);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return api_errno(r, -ENOMEM, "out of memory");
        paddock__v1__run_requested__pack(&req, buf);

        const char *ip[] = {run_id, r->caller.tenant_id, team_id, l->sandbox_id, version, r->caller.user_id,
                            l->relaunch_of, prompt_json, model_keys};
        /* the run, its audit record and its request (the outbox) commit
         * together: an unaudited run never starts, and a committed run is
         * never lost between COMMIT and the broker */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s, s:s}", "team", team_id, "sandbox", l->sandbox_id,
                                                  "version", version, "spec_sha256", PQgetvalue(res, 0, 1));
        if (!change || (l->relaunch_of && json_object_set_new(change, "relaunch_of", json_string(l->relaunch_of)) < 0))
                return api_errno(r, -ENOMEM, "out of memory");
        if (prompt && json_object_set_new(change, "prompt",
                                          json_pack("{s:O, s:O, s:O}", "template", json_object_get(prompt, "template"),
                                                    "template_version", json_object_get(prompt, "template_version"),
                                                    "rendered_sha256", json_object_get(prompt, "rendered_sha256"))) < 0)
                return api_errno(r, -ENOMEM, "out of memory");
        if ((k = db_begin(d, &e)) < 0)
                return db_fail(r, k, &e, "insert run");
        k = pg_exec(d->conn,
                    "INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, relaunch_of, "
                    "prompt, model_key_secrets) VALUES ($1, $2, $3, $4, $5::integer, 'queued', $6, $7, $8::jsonb, "
                    "$9::text[])",
                    9, ip, NULL, &e);
        if (k < 0) {
                db_rollback(d);
                return db_fail(r, k, &e, "insert run");
        }
        /* budgets (B): the business month the run counts in */
        if ((k = budgets_stamp_run(d, r->caller.tenant_id, run_id, &e)) < 0) {
                db_rollback(d);
                return db_fail(r, k, &e, "insert run");
        }
        if ((k = api_audit(r, d, "run.launch", "run", run_id, "success", change)) < 0) {
                db_rollback(d);
                return k;
        }
        if ((k = outbox_put(d->conn, r->caller.tenant_id, TOPIC_RUNS_REQUESTED, run_id, buf, len, &e)) < 0) {
                db_rollback(d);
                return db_fail(r, k, &e, "queue run request");
        }
        if ((k = db_commit(d, &e)) < 0)
                return db_fail(r, k, &e, "insert run");
        metric_add(&api_metric_runs_launched, 1);
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "run", run_id, "sandbox", l->sandbox_id, "version",
                                 version, "user", r->caller.user_id),
                "run queued");
        r->out = json_pack("{s:s, s:s, s:I}", "id", run_id, "status", "queued", "version", (json_int_t)atoll(version));
        if (r->out && l->relaunch_of)
                json_object_set_new(r->out, "relaunch_of", json_string(l->relaunch_of));
        r->status = 202;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int runs_create(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
                if (!strcmp(key, "sandbox") || !strcmp(key, "version") || !strcmp(key, "team") ||
                    !strcmp(key, "prompt") || !strcmp(key, "prompt_vars"))
                        continue;
                return api_fail(r, -EINVAL, "unknown_field", "%s is not a known field", key);
        }
        json_t *jsb = json_object_get(body, "sandbox"), *jver = json_object_get(body, "version"),
               *jteam = json_object_get(body, "team"), *jvars = json_object_get(body, "prompt_vars"),
               *jprompt = json_object_get(body, "prompt");
        if (jvars && !json_is_object(jvars))
                return api_errno(r, -EINVAL, "prompt_vars must be an object {variable: value}");
        if (jprompt && (!json_is_string(jprompt) || strlen(json_string_value(jprompt)) != json_string_length(jprompt)))
                return api_errno(r, -EINVAL, "prompt must be a string (free text for the template's "
                                                             "text variable)");
        if (!jsb)
                return api_fail(r, -EINVAL, "missing_field", "sandbox is required");
        if (!json_is_string(jsb) || json_string_length(jsb) == 0 || json_string_length(jsb) > 256 ||
            strlen(json_string_value(jsb)) != json_string_length(jsb))
                return api_errno(r, -EINVAL, "sandbox must be a sandbox id or name");
        if (jver && (!json_is_integer(jver) || json_integer_value(jver) < 1 || json_integer_value(jver) > 1000000000))
                return api_errno(r, -EINVAL, "version must be a positive integer");
        if (jteam && (!json_is_string(jteam) || json_string_length(jteam) == 0 || json_string_length(jteam) > 256))
                return api_errno(r, -EINVAL, "team must be a team id");

        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        char sandbox_id[UUID_STR_LEN], version[16];
        k = sandboxes_resolve(r, &d, json_string_value(jsb), sandbox_id);
        if (k == -ENOENT)
                return api_errno(r, -ENOENT, "sandbox not found");
        if (k < 0)
                return k;
        if (jver)
                snprintf(version, sizeof version, "%lld", (long long)json_integer_value(jver));
        struct launch l = {
                .sandbox_id = sandbox_id,
                .version = jver ? version : NULL,
                .team = jteam ? json_string_value(jteam) : NULL,
                .prompt_vars = jvars,
                .prompt_text = jprompt,
        };
        return run_launch(r, &d, &l);
}

int runs_relaunch(struct api_req *r) {
        const char *id = r->params[0];
        if (!id_is_uuid(id))
                return api_errno(r, -ENOENT, "run not found");
        /* nothing to choose: the run says what to launch again */
        int k = api_body_none(r);
        if (k < 0)
                return k;
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &d, "run",
                                  "SELECT team_id, sandbox_id, version, prompt->'vars' FROM api.runs "
                                  "WHERE id = $1 AND tenant_id = $2",
                                  2, params, 0, &res)) < 0)
                return k;
        /* the same version, team and inputs: the prompt_vars it was given */
        _cleanup_json_ json_t *vars = db_val(res, 0, 3) ? json_loads(db_val(res, 0, 3), 0, NULL) : NULL;
        struct launch l = {
                .sandbox_id = PQgetvalue(res, 0, 1),
                .version = PQgetvalue(res, 0, 2),
                .team = PQgetvalue(res, 0, 0),
                .relaunch_of = id,
                .prompt_vars = vars,
        };
        return run_launch(r, &d, &l);
}
