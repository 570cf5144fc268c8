/* What a launch checks before it stores a run (runs.h "run_checks.c"):
 * the team secrets its spec and resolved policy name are set, and the team
 * a request names is the sandbox's. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

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
int run_check_secrets_set(struct api_req *r, struct db *d, const char *team_id, json_t *spec) {
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
int run_check_connector_secrets_set(struct api_req *r, struct db *d, const char *team_id, json_t *pol) {
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
int run_check_model_keys_set(struct api_req *r, struct db *d, const char *team_id, json_t *pol) {
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
bool run_team_names_id(struct db *d, const char *tenant_id, const char *ref, const char *team_id) {
        if (!strcmp(ref, team_id))
                return true;
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, tenant_id, ref};
        int k = pg_exec(d->conn, "SELECT 1 FROM api.teams WHERE id = $1 AND tenant_id = $2 AND name = $3", 3, params,
                        &res, &e);
        return k >= 0 && PQntuples(res) == 1;
}
