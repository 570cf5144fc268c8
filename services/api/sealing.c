/* Delivery of a run's team secrets (ARCHITECTURE.md §3 step 4). The runner-
 * agent announces a per-run X25519 public key in its `provisioning` status
 * event; here the secrets the run's definition names are opened from the
 * team's store, packed as a SecretBundle, sealed to that key (lib/crypto/seal.h,
 * aad "paddock-secrets:" + run id) and sent as RunControl{secrets} on
 * paddock.runs.control through the api's outbox (outbox.c; only the sealed
 * bundle is stored there, until the broker acknowledged it). The plaintext
 * lives only in this function's buffers and is wiped before it returns.
 *
 * A referenced secret that is not set (deleted after launch: runs_create
 * refuses to launch without it) makes the run pointless: RunControl{cancel}
 * with reason "secret NAME is not set" goes out instead, so the run ends at
 * once rather than after the runner's wait for secrets times out.
 *
 * The keys of the run's model routes (docs/CONTRACTS.md "Model catalog") go
 * in the same bundle under their team secret names, which runs.c recorded at
 * launch (api.runs.model_key_secrets): the runner-agent finds each route's
 * key by its key_secret (secrets_model_key), the same names the snapshot's
 * routes carry.
 *
 * The workload identity tokens of spec.identity (docs/CONTRACTS.md "Workload
 * identity") are minted here, now that the run is about to start and its
 * deadline is known (exp = now + limits.timeout_s: no later than the run's
 * deadline, which the runner-agent counts from the sandbox's start, after
 * this; a run that ends earlier is inactive at the issuer's introspection),
 * and go in the same bundle under the names runs.c gave their SecretRefs
 * ("identity:<index>"); like the secrets they exist in clear only in these
 * buffers, never in a row, the outbox, a log line or an event.
 *
 * Redelivery seals again with a fresh ephemeral key: harmless, the runner-agent
 * takes the first bundle it can open and ignores later ones. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "core/log.h"
#include "crypto/seal.h"
#include "pg/pg.h"

#define SEAL_AAD_PREFIX "paddock-secrets:"

/* Standard or URL-safe base64 of exactly 32 bytes, padding optional. */
static int decode_public_key(const char *s, uint8_t out[SEAL_PUBLIC_KEY_LEN]) {
        char buf[48];
        size_t n = strlen(s);
        while (n && s[n - 1] == '=')
                n--;
        if (n != 43)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                buf[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
        buf[43] = '=';
        buf[44] = '\0';
        unsigned char dec[36];
        if (EVP_DecodeBlock(dec, (const unsigned char *)buf, 44) != 33)
                return -EINVAL;
        memcpy(out, dec, SEAL_PUBLIC_KEY_LEN);
        return 0;
}

struct opened {
        char *name;      /* borrowed from the spec */
        uint8_t *value;  /* owned, wiped on free */
        size_t len;
};

static void opened_free(struct opened *o, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (o[i].value) {
                        OPENSSL_cleanse(o[i].value, o[i].len);
                        free(o[i].value);
                }
        free(o);
}

/* Queues rc in the outbox on d and commits: >= 0 once it is durable (the
 * status consumer then commits its offset), else a transient error. */
static int enqueue_commit(struct api *a, struct db *d, const char *tenant_id, const char *run_id,
                          Paddock__V1__RunControl *rc, struct err_detail *err) {
        int k = control_enqueue(a, d, tenant_id, run_id, rc, err);
        if (k >= 0)
                k = db_commit(d, err);
        return k;
}

static int send_cancel(struct api *a, struct db *d, const char *tenant_id, const char *run_id, const char *node,
                       const char *reason, struct err_detail *err) {
        Paddock__V1__RunControl rc = PADDOCK__V1__RUN_CONTROL__INIT;
        Paddock__V1__CancelRun cancel = PADDOCK__V1__CANCEL_RUN__INIT;
        cancel.requested_by = (char *)"platform";
        cancel.reason = (char *)reason;
        rc.node_id = (char *)node;
        rc.action_case = PADDOCK__V1__RUN_CONTROL__ACTION_CANCEL;
        rc.cancel = &cancel;
        int k = enqueue_commit(a, d, tenant_id, run_id, &rc, err);
        if (k >= 0)
                log_ctx(LOG_WARN, LOG_KV("tenant", tenant_id, "run", run_id), "run cancelled: %s", reason);
        return k;
}

static int seal_and_send(struct api *a, struct db *d, const char *tenant_id, const char *run_id, const char *node,
                         const uint8_t pub[SEAL_PUBLIC_KEY_LEN], struct opened *o, size_t n, struct err_detail *err) {
        Paddock__V1__SecretBundle bundle = PADDOCK__V1__SECRET_BUNDLE__INIT;
        _cleanup_free_ Paddock__V1__SecretValue *vals = calloc(n + 1, sizeof *vals);
        _cleanup_free_ Paddock__V1__SecretValue **ptrs = calloc(n + 1, sizeof *ptrs);
        if (!vals || !ptrs)
                return err_set(err, -ENOMEM, "oom", "out of memory");
        for (size_t i = 0; i < n; i++) {
                paddock__v1__secret_value__init(&vals[i]);
                vals[i].name = o[i].name;
                vals[i].value.data = o[i].value;
                vals[i].value.len = o[i].len;
                ptrs[i] = &vals[i];
        }
        bundle.n_secrets = n;
        bundle.secrets = ptrs;
        size_t plen = paddock__v1__secret_bundle__get_packed_size(&bundle);
        if (plen > SEAL_MAX_PLAINTEXT)
                return send_cancel(a, d, tenant_id, run_id, node, "the run's secrets exceed the sealing limit", err);
        uint8_t *plain = malloc(plen ? plen : 1), *ct = malloc(plen + SEAL_TAG_LEN);
        if (!plain || !ct) {
                free(plain);
                free(ct);
                return err_set(err, -ENOMEM, "oom", "out of memory");
        }
        paddock__v1__secret_bundle__pack(&bundle, plain);
        char aad[sizeof SEAL_AAD_PREFIX + UUID_STR_LEN];
        int aadlen = snprintf(aad, sizeof aad, SEAL_AAD_PREFIX "%s", run_id);
        uint8_t eph[SEAL_PUBLIC_KEY_LEN], nonce[SEAL_NONCE_LEN];
        int k = seal_encrypt(pub, plain, plen, aad, (size_t)aadlen, eph, nonce, ct);
        OPENSSL_cleanse(plain, plen);
        free(plain);
        if (k < 0) {
                free(ct);
                if (k == -EINVAL) /* a low-order public key: the runner sent garbage */
                        return send_cancel(a, d, tenant_id, run_id, node, "the run's public key is not usable", err);
                return err_set(err, k, "crypto", "could not seal secrets for run %s", run_id);
        }
        Paddock__V1__SealedSecrets sealed = PADDOCK__V1__SEALED_SECRETS__INIT;
        sealed.ephemeral_public_key.data = eph;
        sealed.ephemeral_public_key.len = sizeof eph;
        sealed.nonce.data = nonce;
        sealed.nonce.len = sizeof nonce;
        sealed.ciphertext.data = ct;
        sealed.ciphertext.len = plen + SEAL_TAG_LEN;
        Paddock__V1__RunControl rc = PADDOCK__V1__RUN_CONTROL__INIT;
        rc.node_id = (char *)node;
        rc.action_case = PADDOCK__V1__RUN_CONTROL__ACTION_SECRETS;
        rc.secrets = &sealed;
        k = enqueue_commit(a, d, tenant_id, run_id, &rc, err);
        free(ct);
        if (k >= 0)
                log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "run", run_id, "node", node), "sealed %zu secret(s) for run",
                        n);
        return k;
}

int sealing_on_provisioning(struct api *a, const char *event_tenant_id, const char *run_id,
                            const char *public_key_b64, struct err_detail *err) {
        uint8_t pub[SEAL_PUBLIC_KEY_LEN];
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        /* as the event's tenant: an event naming another tenant finds no run */
        int k = db_open(&d, a, event_tenant_id, &e);
        if (k < 0)
                return err_set(err, k, e.code, "could not load run %s for sealing: %s", run_id, e.message);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id};
        k = pg_exec(d.conn,
                    "SELECT r.tenant_id, r.team_id, coalesce(r.node_id, ''), r.status, v.spec::text, s.team_id, "
                    "array_to_json(r.model_key_secrets)::text, r.sandbox_id, r.version "
                    "FROM api.runs r JOIN api.sandbox_versions v ON v.sandbox_id = r.sandbox_id AND v.version = r.version "
                    "JOIN api.sandboxes s ON s.id = r.sandbox_id WHERE r.id = $1",
                    1, params, &res, &e);
        if (k < 0)
                return err_set(err, k, e.code, "could not load run %s for sealing: %s", run_id, e.message);
        if (PQntuples(res) != 1 || runs_status_terminal(PQgetvalue(res, 0, 3)))
                return 0;
        const char *tenant_id = PQgetvalue(res, 0, 0), *team_id = PQgetvalue(res, 0, 1);
        /* the node may be unknown if the provisioning event overtook the
         * assignment (other topic): an empty node_id reaches every runner-agent,
         * and only the one holding the run's private key can open the bundle */
        const char *node = PQgetvalue(res, 0, 2);
        _cleanup_json_ json_t *spec = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
        json_t *refs = json_object_get(spec, "secrets");
        _cleanup_json_ json_t *model_keys = json_loads(PQgetvalue(res, 0, 6), 0, NULL);
        json_t *ids = json_object_get(spec, "identity");
        if (json_array_size(refs) == 0 && json_array_size(model_keys) == 0 && json_array_size(ids) == 0)
                return 0;
        /* a team's secrets reach only its own definitions (ARCHITECTURE.md
         * §5): a run filed under another team than its sandbox's (launched
         * before launches were bound to the sandbox's team) gets none */
        if (strcmp(team_id, PQgetvalue(res, 0, 5)))
                return send_cancel(a, &d, tenant_id, run_id, node, "the run is not in the team of its sandbox", err);
        if (decode_public_key(public_key_b64, pub) < 0) {
                log_ctx(LOG_WARN, LOG_KV("tenant", tenant_id, "run", run_id), "provisioning event has an invalid public_key");
                return send_cancel(a, &d, tenant_id, run_id, node, "the run's public key is not usable", err);
        }

        /* each name once, even when the spec injects it in two places or
         * a model route's key is also a spec secret */
        size_t n = 0, n_refs = json_array_size(refs);
        struct opened *o = calloc(n_refs + json_array_size(model_keys) + json_array_size(ids) + 1, sizeof *o);
        if (!o)
                return err_set(err, -ENOMEM, "oom", "out of memory");
        for (size_t i = 0; i < n_refs + json_array_size(model_keys); i++) {
                const char *name = i < n_refs ? json_string_value(json_object_get(json_array_get(refs, i), "name"))
                                              : json_string_value(json_array_get(model_keys, i - n_refs));
                if (!name)
                        continue;
                bool seen = false;
                for (size_t j = 0; j < n && !seen; j++)
                        seen = !strcmp(o[j].name, name);
                if (seen)
                        continue;
                o[n].name = (char *)name;
                k = secrets_open(a, d.conn, tenant_id, team_id, name, &o[n].value, &o[n].len, &e);
                if (k == -ENOENT || k == -EBADMSG) {
                        char reason[128];
                        if (k == -EBADMSG)
                                log_ctx(LOG_ERROR, LOG_KV("tenant", tenant_id, "run", run_id), "%s", e.message);
                        snprintf(reason, sizeof reason, k == -ENOENT ? "secret %s is not set" : "secret %s could not be decrypted",
                                 name);
                        opened_free(o, n);
                        return send_cancel(a, &d, tenant_id, run_id, node, reason, err);
                }
                if (k < 0) {
                        opened_free(o, n);
                        return err_set(err, k, e.code, "could not load secret %s of run %s: %s", name, run_id, e.message);
                }
                n++;
        }
        char id_names[8][32];
        json_t *jt = json_object_get(json_object_get(spec, "limits"), "timeout_s");
        struct workload_claims wc = {.tenant_id = tenant_id, .team_id = team_id, .sandbox_id = PQgetvalue(res, 0, 7),
                                     .run_id = run_id, .version = strtoll(PQgetvalue(res, 0, 8), NULL, 10),
                                     .ttl_s = json_is_integer(jt) ? json_integer_value(jt) : RUN_DEFAULT_TIMEOUT_S};
        for (size_t i = 0; i < json_array_size(ids) && i < ELEMENTSOF(id_names); i++) {
                json_t *it = json_array_get(ids, i);
                json_t *hdr = json_object_get(json_object_get(it, "as"), "header");
                const char *hname = json_string_value(json_object_get(hdr, "name"));
                wc.audience = json_string_value(json_object_get(it, "audience"));
                snprintf(id_names[i], sizeof id_names[i], "identity:%zu", i); /* runs.c's SecretRef names */
                char *tok = NULL;
                size_t len = 0;
                k = workload_identity_mint(a, d.conn, &wc, &tok, &len, &e);
                if (k < 0) {
                        opened_free(o, n);
                        if (k == -EBADMSG) {
                                log_ctx(LOG_ERROR, LOG_KV("tenant", tenant_id, "run", run_id), "%s", e.message);
                                return send_cancel(a, &d, tenant_id, run_id, node,
                                                   "the run's workload identity token could not be signed", err);
                        }
                        return err_set(err, k, e.code, "could not mint workload identity token of run %s: %s", run_id,
                                       e.message);
                }
                /* as an Authorization header, the token is a bearer credential (RFC 6750) */
                if (hname && !strcasecmp(hname, "authorization")) {
                        uint8_t *b = malloc(len + 8);
                        if (!b) {
                                OPENSSL_cleanse(tok, len);
                                free(tok);
                                opened_free(o, n);
                                return err_set(err, -ENOMEM, "oom", "out of memory");
                        }
                        memcpy(b, "Bearer ", 7);
                        memcpy(b + 7, tok, len);
                        OPENSSL_cleanse(tok, len);
                        free(tok);
                        tok = (char *)b;
                        len += 7;
                }
                o[n].name = id_names[i];
                o[n].value = (uint8_t *)tok;
                o[n].len = len;
                n++;
        }
        k = seal_and_send(a, &d, tenant_id, run_id, node, pub, o, n, err);
        opened_free(o, n);
        return k;
}
