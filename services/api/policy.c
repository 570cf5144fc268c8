/* The resolved policy of a sandbox spec: catalog references looked up (and
 * required to be approved), egress profiles expanded after the explicit allow
 * rules, limits with their defaults, the prompt rendered, skills laid out as
 * managed files. policy_resolve() is the one place this happens: spec
 * validation calls it to refuse what cannot be resolved, runs.c builds the
 * run snapshot from its result, and GET .../effective-policy shows it. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "pg/pg.h"
#include "policy/policy_engine.h"

#define SKILLS_DIR ".paddock/skills"

static int ref_item(struct db *d, const char *tenant_id, const char *kind, json_t *ref, const char *field,
                    json_t **ret, struct err_detail *e) {
        const char *s = json_string_value(ref);
        if (!s)
                return err_set(e, -EINVAL, "invalid_field", "%s must be a catalog id", field);
        int k = catalog_lookup(d, tenant_id, kind, s, ret, e);
        if (k == -ENOENT)
                return err_set(e, -EINVAL, "invalid_field", "%s: no %s catalog item \"%.128s\"", field, kind, s);
        if (k < 0)
                return k;
        if (strcmp(json_string_value(json_object_get(*ret, "state")), "approved")) {
                err_set(e, -EINVAL, "not_approved", "%s: catalog item %s (%s) is not approved", field,
                        json_string_value(json_object_get(*ret, "id")),
                        json_string_value(json_object_get(*ret, "name")));
                json_decref(*ret);
                *ret = NULL;
                return -EINVAL;
        }
        return 0;
}

static int add_rule(json_t *rules, const char *text, const char *source, struct err_detail *e) {
        char host[300];
        uint32_t port;
        bool ip;
        if (spec_egress_rule_parse(text, host, sizeof host, &port, &ip, e) < 0)
                return -EINVAL;
        return json_array_append_new(rules, json_pack("{s:s, s:i, s:s}", "host", host, "port", (int)port, "source",
                                                      source)) < 0 ? -ENOMEM : 0;
}

static int resolve_egress(struct db *d, const char *tenant_id, json_t *spec, json_t *out, struct err_detail *e) {
        json_t *je = json_object_get(spec, "egress");
        json_t *rules = json_array(), *profiles = json_array();
        json_object_set_new(out, "egress", json_pack("{s:o, s:o, s:s, s:i}", "rules", rules, "profiles", profiles,
                                                     "unknown",
                                                     json_is_string(json_object_get(je, "unknown"))
                                                             ? json_string_value(json_object_get(je, "unknown"))
                                                             : "deny",
                                                     "ask_timeout_s", RUN_DEFAULT_ASK_TIMEOUT_S));
        size_t i;
        json_t *v;
        int k;
        /* evaluation order: the explicit allow rules, then each profile's rules */
        json_array_foreach(json_object_get(je, "allow"), i, v) {
                if ((k = add_rule(rules, json_string_value(v), "allow", e)) < 0)
                        return k;
        }
        json_array_foreach(json_object_get(je, "profiles"), i, v) {
                char field[64], source[64];
                snprintf(field, sizeof field, "spec.egress.profiles[%zu]", i);
                _cleanup_json_ json_t *item = NULL;
                if ((k = ref_item(d, tenant_id, "egress-profiles", v, field, &item, e)) < 0)
                        return k;
                const char *id = json_string_value(json_object_get(item, "id"));
                snprintf(source, sizeof source, "profile:%s", id);
                json_array_append_new(profiles, json_pack("{s:s, s:s}", "id", id, "name",
                                                          json_string_value(json_object_get(item, "name"))));
                size_t j;
                json_t *rule;
                json_array_foreach(json_object_get(json_object_get(item, "body"), "rules"), j, rule) {
                        if ((k = add_rule(rules, json_string_value(rule), source, e)) < 0)
                                return k;
                }
        }
        return 0;
}

static int resolve_limits(json_t *spec, json_t *out) {
        json_t *jl = json_object_get(spec, "limits");
        json_t *limits = json_pack("{s:i, s:f, s:i, s:i, s:i}", "timeout_s", RUN_DEFAULT_TIMEOUT_S, "cpus",
                                   RUN_DEFAULT_CPUS, "memory_mb", RUN_DEFAULT_MEMORY_MB, "disk_mb",
                                   RUN_DEFAULT_DISK_MB, "pids", RUN_DEFAULT_PIDS);
        if (!limits)
                return -ENOMEM;
        const char *key;
        json_t *v;
        json_object_foreach(jl, key, v) {
                if (json_object_get(limits, key))
                        json_object_set(limits, key, v);
        }
        /* no default: absent means no token or cost limit (the gateway
         * enforces them mid-run, docs/CONTRACTS.md "Model gateway") */
        json_t *mt = json_object_get(jl, "max_tokens"), *mc = json_object_get(jl, "max_cost_usd");
        if (mt)
                json_object_set(limits, "max_tokens", mt);
        if (mc)
                json_object_set_new(limits, "max_cost_usd", json_real(json_number_value(mc)));
        /* cpus is a number: keep it one even when the spec wrote an integer */
        json_t *cpus = json_object_get(limits, "cpus");
        if (json_is_integer(cpus))
                json_object_set_new(limits, "cpus", json_real((double)json_integer_value(cpus)));
        return json_object_set_new(out, "limits", limits);
}

static int add_file(json_t *files, const char *path, json_t *content, int mode, const char *source) {
        return json_array_append_new(files, json_pack("{s:s, s:O, s:i, s:s}", "path", path, "content", content,
                                                      "mode", mode, "source", source)) < 0 ? -ENOMEM : 0;
}

static int resolve_files(struct db *d, const char *tenant_id, json_t *spec, json_t *out, struct err_detail *e) {
        json_t *files = json_array(), *skills = json_array();
        json_object_set_new(out, "files", files);
        json_object_set_new(out, "skills", skills);
        size_t i;
        json_t *f;
        int k;
        json_array_foreach(json_object_get(spec, "files"), i, f) {
                json_t *mode = json_object_get(f, "mode");
                unsigned m = 0644;
                if (mode && spec_parse_mode(json_string_value(mode), &m) < 0)
                        return err_set(e, -EINVAL, "invalid_field", "spec.files[%zu].mode is invalid", i);
                if ((k = add_file(files, json_string_value(json_object_get(f, "path")), json_object_get(f, "content"),
                                  (int)m, "spec")) < 0)
                        return k;
        }
        /* each skill becomes .paddock/skills/<name>/SKILL.md plus its files */
        json_array_foreach(json_object_get(spec, "skills"), i, f) {
                char field[64], path[1400], source[64];
                snprintf(field, sizeof field, "spec.skills[%zu]", i);
                _cleanup_json_ json_t *item = NULL;
                if ((k = ref_item(d, tenant_id, "skills", f, field, &item, e)) < 0)
                        return k;
                const char *name = json_string_value(json_object_get(item, "name"));
                const char *id = json_string_value(json_object_get(item, "id"));
                json_t *body = json_object_get(item, "body");
                snprintf(source, sizeof source, "skill:%s", id);
                json_array_append_new(skills, json_pack("{s:s, s:s}", "id", id, "name", name));
                const char *desc = json_string_value(json_object_get(body, "description"));
                const char *ins = json_string_value(json_object_get(body, "instructions"));
                _cleanup_free_ char *md = NULL;
                if (asprintf(&md, "---\nname: %s\ndescription: %s\n---\n%s", name, desc ? desc : "", ins ? ins : "") < 0)
                        return -ENOMEM;
                snprintf(path, sizeof path, SKILLS_DIR "/%s/SKILL.md", name);
                _cleanup_json_ json_t *content = json_string(md);
                if (!content || (k = add_file(files, path, content, 0644, source)) < 0)
                        return -ENOMEM;
                const char *fp;
                json_t *fc;
                json_object_foreach(json_object_get(body, "files"), fp, fc) {
                        snprintf(path, sizeof path, SKILLS_DIR "/%s/%s", name, fp);
                        if ((k = add_file(files, path, fc, 0644, source)) < 0)
                                return k;
                }
        }
        return 0;
}

/* The provider an agent CLI speaks (session decision 2); NULL for a
 * `command` agent, which may call any provider its models name. */
static const char *agent_provider(json_t *spec) {
        const char *t = json_string_value(json_object_get(json_object_get(spec, "agent"), "type"));
        if (t && !strcmp(t, "claude-code"))
                return "anthropic";
        if (t && !strcmp(t, "codex"))
                return "openai";
        return NULL;
}

/* spec.models: approved `models` items (docs/CONTRACTS.md "Model catalog"),
 * each once, no model id offered by two items of one provider (the gateway
 * routes a call by provider and model: it would be ambiguous), the agent's
 * provider among them, and agent.model one of their ids for that provider.
 * out.models: [{id, name, provider, upstream, key_secret, models}] in spec
 * order, what runs.c turns into the snapshot's model routes. */
static int resolve_models(struct db *d, const char *tenant_id, json_t *spec, json_t *out, struct err_detail *e) {
        json_t *models = json_array();
        if (json_object_set_new(out, "models", models) < 0)
                return -ENOMEM;
        const char *type = json_string_value(json_object_get(json_object_get(spec, "agent"), "type"));
        const char *want = agent_provider(spec);
        json_t *refs = json_object_get(spec, "models");
        if (want && json_array_size(refs) == 0)
                return err_set(e, -EINVAL, "missing_field",
                               "spec.models is required for agent type %s: name an approved models catalog item of "
                               "provider %s", type, want);
        size_t i;
        json_t *ref;
        int k;
        bool provider_seen = false;
        json_array_foreach(refs, i, ref) {
                char field[48];
                snprintf(field, sizeof field, "spec.models[%zu]", i);
                _cleanup_json_ json_t *item = NULL;
                if ((k = ref_item(d, tenant_id, "models", ref, field, &item, e)) < 0)
                        return k;
                json_t *body = json_object_get(item, "body");
                const char *id = json_string_value(json_object_get(item, "id"));
                const char *prov = json_string_value(json_object_get(body, "provider"));
                size_t j;
                json_t *prev;
                json_array_foreach(models, j, prev) {
                        if (!strcmp(json_string_value(json_object_get(prev, "id")), id))
                                return err_set(e, -EINVAL, "invalid_field", "%s names the same item as spec.models[%zu]",
                                               field, j);
                        if (strcmp(json_string_value(json_object_get(prev, "provider")), prov))
                                continue;
                        size_t a, b;
                        json_t *ma, *mb;
                        json_array_foreach(json_object_get(body, "models"), a, ma) {
                                json_array_foreach(json_object_get(prev, "models"), b, mb) {
                                        const char *x = json_string_value(json_object_get(ma, "id"));
                                        if (!strcmp(x, json_string_value(json_object_get(mb, "id"))))
                                                return err_set(e, -EINVAL, "invalid_field",
                                                               "%s: model %s of provider %s is offered by "
                                                               "spec.models[%zu] too", field, x, prov, j);
                                }
                        }
                }
                provider_seen |= want && !strcmp(prov, want);
                if (json_array_append_new(models, json_pack("{s:s, s:O, s:s, s:O, s:O, s:O}", "id", id, "name",
                                                            json_object_get(item, "name"), "provider", prov,
                                                            "upstream", json_object_get(body, "upstream"),
                                                            "key_secret", json_object_get(body, "key_secret"),
                                                            "models", json_object_get(body, "models"))) < 0)
                        return -ENOMEM;
        }
        if (want && !provider_seen)
                return err_set(e, -EINVAL, "invalid_field",
                               "spec.models: agent type %s calls provider %s, and no item of spec.models is of it",
                               type, want);
        const char *model = json_string_value(json_object_get(json_object_get(spec, "agent"), "model"));
        if (!model)
                return 0;
        json_t *it;
        json_array_foreach(models, i, it) {
                if (want && strcmp(json_string_value(json_object_get(it, "provider")), want))
                        continue;
                size_t j;
                json_t *m;
                json_array_foreach(json_object_get(it, "models"), j, m) {
                        if (!strcmp(json_string_value(json_object_get(m, "id")), model))
                                return 0;
                }
        }
        return err_set(e, -EINVAL, "invalid_field",
                       "spec.agent.model: \"%.128s\" is not a model id of spec.models%s%s", model,
                       want ? " for provider " : "", want ? want : "");
}

/* Copies rule (validated: {match, action}) into rules with its source. */
static int add_policy_rule(json_t *rules, json_t *rule, const char *source) {
        return json_array_append_new(rules, json_pack("{s:O, s:O, s:s}", "match", json_object_get(rule, "match"),
                                                      "action", json_object_get(rule, "action"), "source",
                                                      source)) < 0 ? -ENOMEM : 0;
}

/* spec.policy (docs/CONTRACTS.md "Policy engine"): the definition's rules
 * first, then each approved pack's in the listed order, each with its source
 * (`spec.policy.rules[i]`, `pack:<id>.rules[j]`), which a decision names. The
 * engine's order makes deny win whatever the position, so a pack cannot be
 * weakened by a definition's allow, nor the reverse. out.policy is what GET
 * .../effective-policy shows and SandboxSnapshot.policy_json carries (runs.c).
 * The pack's rules are checked again with the engine: an item approved before
 * a stricter check must not reach a runner that would refuse it. */
static int resolve_policy(struct db *d, const char *tenant_id, json_t *spec, json_t *out, struct err_detail *e) {
        json_t *jp = json_object_get(spec, "policy");
        json_t *rules = json_array(), *packs = json_array();
        json_t *jt = json_object_get(jp, "ask_timeout_s");
        json_int_t ask = json_is_integer(jt) ? json_integer_value(jt) : RUN_DEFAULT_ASK_TIMEOUT_S;
        if (json_object_set_new(out, "policy", json_pack("{s:o, s:o, s:I}", "rules", rules, "packs", packs,
                                                         "ask_timeout_s", ask)) < 0)
                return -ENOMEM;
        /* one deadline for every ask of the run, the proxy's egress asks too */
        json_object_set_new(json_object_get(out, "egress"), "ask_timeout_s", json_integer(ask));
        size_t i, j;
        json_t *v, *rule;
        int k;
        json_array_foreach(json_object_get(jp, "rules"), i, rule) {
                char source[48];
                snprintf(source, sizeof source, "spec.policy.rules[%zu]", i);
                if ((k = add_policy_rule(rules, rule, source)) < 0)
                        return k;
        }
        json_array_foreach(json_object_get(jp, "packs"), i, v) {
                char field[48];
                snprintf(field, sizeof field, "spec.policy.packs[%zu]", i);
                _cleanup_json_ json_t *item = NULL;
                if ((k = ref_item(d, tenant_id, "policy-packs", v, field, &item, e)) < 0)
                        return k;
                const char *id = json_string_value(json_object_get(item, "id"));
                if (json_array_append_new(packs, json_pack("{s:s, s:O}", "id", id, "name",
                                                           json_object_get(item, "name"))) < 0)
                        return -ENOMEM;
                json_t *prules = json_object_get(json_object_get(item, "body"), "rules");
                struct policy_engine *pe = NULL;
                struct err_detail pe_err = {0};
                k = policy_engine_new(prules, "body.rules", &pe, &pe_err);
                policy_engine_free(pe);
                if (k == -EINVAL)
                        return err_set(e, -EINVAL, "invalid_field", "%s: policy pack %s: %s", field, id,
                                       pe_err.message);
                if (k < 0)
                        return k;
                json_array_foreach(prules, j, rule) {
                        char source[96];
                        snprintf(source, sizeof source, "pack:%s.rules[%zu]", id, j);
                        if ((k = add_policy_rule(rules, rule, source)) < 0)
                                return k;
                }
                if (json_array_size(rules) > POLICY_EFFECTIVE_RULES_MAX)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "%s: the definition's and its packs' rules exceed %d together", field,
                                       POLICY_EFFECTIVE_RULES_MAX);
        }
        return 0;
}

/* spec.connectors (docs/CONTRACTS.md "MCP connectors"): approved items, in
 * order, as out.connectors [{id, name, transport, command | url}] (runs.c
 * turns them into SandboxSnapshot.mcp_servers). An http connector's origin
 * joins the egress rules (source "connector:<id>"), since the CLI reaches
 * it through the egress proxy, and its secret becomes a header secret for
 * that origin in out.secrets (source "connector:<id>"), which the proxy adds
 * there: the agent never holds it. Runs after out.egress and out.secrets. */
static int resolve_connectors(struct db *d, const char *tenant_id, json_t *spec, json_t *out, struct err_detail *e) {
        json_t *connectors = json_array();
        if (json_object_set_new(out, "connectors", connectors) < 0)
                return -ENOMEM;
        json_t *rules = json_object_get(json_object_get(out, "egress"), "rules");
        json_t *secrets = json_object_get(out, "secrets");
        size_t i;
        json_t *v;
        int k;
        json_array_foreach(json_object_get(spec, "connectors"), i, v) {
                char field[48], source[64];
                snprintf(field, sizeof field, "spec.connectors[%zu]", i);
                _cleanup_json_ json_t *item = NULL;
                if ((k = ref_item(d, tenant_id, "connectors", v, field, &item, e)) < 0)
                        return k;
                json_t *body = json_object_get(item, "body");
                const char *id = json_string_value(json_object_get(item, "id"));
                const char *tr = json_string_value(json_object_get(body, "transport"));
                snprintf(source, sizeof source, "connector:%s", id);
                json_t *c = json_pack("{s:s, s:O, s:s}", "id", id, "name", json_object_get(item, "name"), "transport",
                                      tr);
                if (!c || json_array_append_new(connectors, c) < 0)
                        return -ENOMEM;
                if (strcmp(tr, "http")) {
                        json_object_set(c, "command", json_object_get(body, "command"));
                        continue;
                }
                const char *url = json_string_value(json_object_get(body, "url"));
                json_object_set_new(c, "url", json_string(url));
                char host[300];
                uint16_t port;
                bool tls;
                struct err_detail oe = {0};
                /* checked when the item was written; a failure here is an item
                 * written by an older api */
                if ((k = catalog_connector_origin(url, host, sizeof host, &port, &tls, &oe)) < 0)
                        return err_set(e, -EINVAL, "invalid_field", "%s: connector %s: url %s", field, id, oe.message);
                if (json_array_append_new(rules, json_pack("{s:s, s:i, s:s}", "host", host, "port", (int)port,
                                                           "source", source)) < 0)
                        return -ENOMEM;
                json_t *sec = json_object_get(body, "secret");
                if (!sec)
                        continue;
                /* the origin as a header secret writes it: the url's scheme and authority */
                const char *auth = url + 8;
                char origin[600];
                snprintf(origin, sizeof origin, "https://%.*s", (int)strcspn(auth, "/?#"), auth);
                json_object_set(c, "secret", sec);
                if (json_array_append_new(secrets,
                                          json_pack("{s:O, s:{s:{s:s, s:O}}, s:s}", "name", json_object_get(sec, "name"),
                                                    "as", "header", "origin", origin, "name",
                                                    json_object_get(sec, "header"), "source", source)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int policy_resolve(struct db *d, const char *tenant_id, json_t *spec, json_t **ret, struct err_detail *e) {
        _cleanup_json_ json_t *out = json_object();
        if (!out)
                return -ENOMEM;
        int k;
        json_t *v;
        json_object_set_new(out, "image", json_null());
        if ((v = json_object_get(spec, "image"))) {
                _cleanup_json_ json_t *item = NULL;
                if ((k = ref_item(d, tenant_id, "images", v, "spec.image", &item, e)) < 0)
                        return k;
                /* the runner resolves the image by name */
                json_object_set(out, "image", json_object_get(item, "name"));
                json_object_set(out, "image_id", json_object_get(item, "id"));
        }
        if ((k = resolve_egress(d, tenant_id, spec, out, e)) < 0 || (k = resolve_limits(spec, out)) < 0 ||
            (k = resolve_files(d, tenant_id, spec, out, e)) < 0 || (k = resolve_models(d, tenant_id, spec, out, e)) < 0 ||
            (k = resolve_policy(d, tenant_id, spec, out, e)) < 0)
                return k;
        json_t *secrets = json_array();
        size_t i;
        json_object_set_new(out, "secrets", secrets);
        json_array_foreach(json_object_get(spec, "secrets"), i, v)
                json_array_append_new(secrets, json_pack("{s:O, s:O}", "name", json_object_get(v, "name"), "as",
                                                         json_object_get(v, "as")));
        /* workload identity: where each token goes, never a token (they are
         * minted per run at sealing time, docs/CONTRACTS.md "Workload identity") */
        json_t *identity = json_array();
        json_array_foreach(json_object_get(spec, "identity"), i, v)
                json_array_append_new(identity, json_pack("{s:O, s:O}", "audience", json_object_get(v, "audience"), "as",
                                                          json_object_get(v, "as")));
        json_object_set_new(out, "identity", identity);
        if ((k = resolve_connectors(d, tenant_id, spec, out, e)) < 0)
                return k;
        json_object_set_new(out, "prompt", json_null());
        json_t *jp = json_object_get(spec, "prompt");
        if (jp) {
                _cleanup_json_ json_t *item = NULL;
                if ((k = ref_item(d, tenant_id, "prompt-templates", json_object_get(jp, "template"),
                                  "spec.prompt.template", &item, e)) < 0)
                        return k;
                /* the definition's values are checked here; what a run fills
                 * (prompt_vars) is rendered at launch (prompt.c), so the
                 * policy shows a preview with those placeholders kept */
                _cleanup_free_ char *text = NULL;
                _cleanup_json_ json_t *open = NULL;
                json_t *body = json_object_get(item, "body");
                if ((k = prompt_check_fixed(body, json_object_get(jp, "vars"), e)) < 0 ||
                    (k = prompt_preview(body, json_object_get(jp, "vars"), &text, &open, e)) < 0)
                        return k;
                json_object_set_new(out, "prompt", json_string(text));
                json_object_set_new(out, "prompt_template",
                                    json_pack("{s:O, s:O, s:O}", "id", json_object_get(item, "id"), "name",
                                              json_object_get(item, "name"), "variables", open));
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* GET /v1/sandboxes/{id}/versions/{v}/effective-policy */
int policy_effective(struct api_req *r) {
        const char *ver = r->params[1];
        size_t vl = strlen(ver);
        if (vl == 0 || vl > 9 || strspn(ver, "0123456789") != vl)
                return api_errno(r, -ENOENT, "sandbox version not found");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        char id[UUID_STR_LEN]; /* {id} is the sandbox's id or name */
        if ((k = sandboxes_resolve(r, &d, r->params[0], id)) == -ENOENT)
                return api_errno(r, -ENOENT, "sandbox version not found");
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id, ver};
        if ((k = db_load_team_row(r, &d, "sandbox version",
                                  "SELECT s.team_id, v.spec::text, v.spec_sha256 FROM api.sandboxes s "
                                  "JOIN api.sandbox_versions v ON v.sandbox_id = s.id AND v.tenant_id = s.tenant_id "
                                  "WHERE s.id = $1 AND s.tenant_id = $2 AND v.version = $3::integer",
                                  3, params, 0, &res)) < 0)
                return k;
        _cleanup_json_ json_t *spec = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
        if (!spec)
                return api_errno(r, -EIO, "could not load the published spec");
        json_t *pol = NULL;
        k = policy_resolve(&d, r->caller.tenant_id, spec, &pol, &e);
        if (k == -EINVAL)
                /* an item it uses was changed back to draft since publishing */
                return api_errno(r, -EEXIST, "%s", e.message);
        if (k < 0)
                return db_fail(r, k, &e, "resolve policy");
        /* file contents stay in the definition; the view says what lands where */
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(pol, "files"), i, f) {
                json_object_set_new(f, "size", json_integer((json_int_t)json_string_length(json_object_get(f, "content"))));
                json_object_del(f, "content");
                /* the mode as a spec writes it ("0644"), not the snapshot's integer */
                char mode[8];
                snprintf(mode, sizeof mode, "%04llo", (unsigned long long)json_integer_value(json_object_get(f, "mode")));
                json_object_set_new(f, "mode", json_string(mode));
        }
        /* what no rule above can open (docs/CONTRACTS.md, "The platform egress floor") */
        json_t *classes = json_array(), *ranges = json_array();
        for (const char *const *c = addr_floor_class_names; *c; c++)
                json_array_append_new(classes, json_string(*c));
        for (size_t j = 0; j < addr_floor_n_ranges(r->api->floor); j++) {
                char t[INET6_ADDRSTRLEN + 8];
                addr_allow_format(addr_floor_range(r->api->floor, j), t, sizeof t);
                json_array_append_new(ranges, json_string(t));
        }
        json_object_set_new(json_object_get(pol, "egress"), "floor",
                            json_pack("{s:o, s:o}", "classes", classes, "ranges", ranges));
        json_object_set(pol, "agent", json_object_get(spec, "agent"));
        json_object_set_new(pol, "sandbox", json_string(id));
        json_object_set_new(pol, "version", json_integer(atoll(ver)));
        json_object_set_new(pol, "spec_sha256", json_string(PQgetvalue(res, 0, 2)));
        r->out = pol;
        r->status = 200;
        return 0;
}
