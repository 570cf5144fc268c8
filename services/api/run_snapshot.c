/* The run request's snapshot (run_snapshot.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "run_snapshot.h"

void snapshot_parts_free(struct snapshot_parts *p) {
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
char *model_key_secrets_literal(json_t *pol) {
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
int snapshot_fill(json_t *spec, json_t *pol, Paddock__V1__SandboxSnapshot *snap, Paddock__V1__AgentSpec *agent,
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
