/* Runs: launch and relaunch (snapshot + paddock.runs.requested, through the
 * outbox). The launch's checks are run_checks.c, its snapshot
 * run_snapshot.c, the reads run_get.c. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "core/metrics.h"
#include "kafka/topics.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "proto/envelope.h"
#include "run_snapshot.h"

/* What a launch starts from. Strings borrowed. */
struct launch {
        const char *sandbox_id; /* resolved id */
        const char *version;    /* "N", or NULL for the latest published version */
        const char *team;       /* team id or name the request names (it must be the sandbox's), or NULL */
        const char *relaunch_of; /* the run this one repeats, or NULL */
        json_t *prompt_vars;    /* POST /v1/runs prompt_vars (an object), or NULL */
        json_t *prompt_text;    /* POST /v1/runs prompt (a string), or NULL */
};

/* Launches l as r's caller in tx: the caller must hold r->perm (launcher)
 * in the sandbox's team, which is the run's team; the run, its audit record
 * and its request on paddock.runs.requested (the outbox) commit together.
 * Answers 202. */
static int run_launch(struct api_req *r, struct api_tx *tx, const struct launch *l) {
        struct db *d = &tx->d;
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
        if (l->team && !run_team_names_id(d, r->caller.tenant_id, l->team, team_id) && l->relaunch_of)
                return api_errno(r, -EEXIST, "run %s is not in the team of its sandbox \"%s\": launch the sandbox anew",
                                l->relaunch_of, sandbox_name);
        if (l->team && !run_team_names_id(d, r->caller.tenant_id, l->team, team_id))
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

        if ((k = run_check_secrets_set(r, d, team_id, spec)) < 0)
                return k;
        /* resolved now, against the catalog as it is: an item changed back to
         * draft since publishing stops new runs until it is approved again */
        _cleanup_json_ json_t *pol = NULL;
        k = policy_resolve(d, r->caller.tenant_id, spec, &pol, &e);
        if (k == -EINVAL)
                return api_errno(r, -EEXIST, "%s", e.message);
        if (k < 0)
                return db_fail(r, k, &e, "resolve the sandbox policy");
        if ((k = run_check_model_keys_set(r, d, team_id, pol)) < 0 || (k = run_check_connector_secrets_set(r, d, team_id, pol)) < 0)
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
        k = pg_exec(d->conn,
                    "INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, relaunch_of, "
                    "prompt, model_key_secrets) VALUES ($1, $2, $3, $4, $5::integer, 'queued', $6, $7, $8::jsonb, "
                    "$9::text[])",
                    9, ip, NULL, &e);
        if (k < 0)
                return db_fail(r, k, &e, "insert run");
        /* budgets (B): the business month the run counts in */
        if ((k = budgets_stamp_run(d, r->caller.tenant_id, run_id, &e)) < 0)
                return db_fail(r, k, &e, "insert run");
        if ((k = api_tx_audit(tx, "run.launch", "run", run_id, change)) < 0)
                return k;
        if ((k = outbox_put(d->conn, r->caller.tenant_id, TOPIC_RUNS_REQUESTED, run_id, buf, len, &e)) < 0)
                return db_fail(r, k, &e, "queue run request");
        if ((k = api_tx_commit(tx, "run")) < 0)
                return k;
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

        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char sandbox_id[UUID_STR_LEN], version[16];
        k = sandboxes_resolve(r, &tx.d, json_string_value(jsb), sandbox_id);
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
        return run_launch(r, &tx, &l);
}

int runs_relaunch(struct api_req *r) {
        const char *id = r->params[0];
        if (!id_is_uuid(id))
                return api_errno(r, -ENOENT, "run not found");
        /* nothing to choose: the run says what to launch again */
        int k = api_body_none(r);
        if (k < 0)
                return k;
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &tx.d, "run",
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
        return run_launch(r, &tx, &l);
}
