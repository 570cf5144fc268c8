/* Sealed run secrets on the runner (ARCHITECTURE.md §3 step 4, issue 3 point
 * 4): a per-run X25519 key pair (crypto/seal.h) whose public key goes out in
 * the `provisioning` event; api seals the run's SecretBundle to it and sends
 * it on paddock.runs.control; control.c hands it to secrets_on_sealed(). The
 * run's worker waits for it, opens it (AAD "paddock-secrets:" + run id) into
 * memory only, and maps each SecretRef of the snapshot to an environment entry
 * of the agent or a header the egress proxy adds for one host. Everything —
 * private key, ciphertext, plaintext, values — is wiped (OPENSSL_cleanse) when
 * the run's secrets are freed. No value is ever logged or put in an event.
 * All functions are thread-safe. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"
#include "proxy.h"

#define SECRETS_WAIT_MS 30000

struct run_secrets;

/* If snap (borrowed) references secrets, generates the run's key pair and
 * registers run_id for secrets_on_sealed(); *ret is NULL when the run has no
 * secrets. Returns 0, -ENOMEM or -EIO. */
int secrets_run_new(const char *run_id, const Paddock__V1__SandboxSnapshot *snap, struct run_secrets **ret);

/* The public key, base64 (standard alphabet, padded), owned by rs. */
const char *secrets_public_key(const struct run_secrets *rs);

/* Waits up to timeout_ms for the sealed bundle, opens it and resolves every
 * SecretRef of snap. A bundle that does not open (e.g. a replay sealed to an
 * earlier key) is dropped and the wait goes on. Returns 0; -ETIMEDOUT
 * ("secrets not delivered"); -EINVAL when a referenced secret is missing or a
 * value cannot be injected (reterr names the secret, never the value). */
int secrets_run_wait(struct run_secrets *rs, const Paddock__V1__SandboxSnapshot *snap, int timeout_ms,
                     struct err_detail *reterr);

/* After secrets_run_wait(): "NAME=value" entries for the agent's env
 * (NULL-terminated) and the proxy's headers; owned by rs, valid until
 * secrets_run_free(). */
const char *const *secrets_env(const struct run_secrets *rs);
const struct proxy_header *secrets_headers(const struct run_secrets *rs, size_t *ret_n);

/* After secrets_run_wait(): the workload identity tokens the snapshot
 * delivers as files (SecretRef.file, docs/CONTRACTS.md "Workload
 * identity"): name (borrowed from the snapshot) and value, owned by rs until
 * secrets_run_free(); identity_file.h writes them. */
struct secret_file {
        const char *name;
        char *value;
        size_t len;
};
const struct secret_file *secrets_files(const struct run_secrets *rs, size_t *ret_n);

/* After secrets_run_wait(): the key of the snapshot's model route number
 * route (its key_secret, from the same sealed bundle), NUL-terminated, and its
 * length; NULL when the route names none. Owned by rs until secrets_run_free();
 * never logged. */
const char *secrets_model_key(const struct run_secrets *rs, size_t route, size_t *ret_len);

/* Wipes the private key and every plaintext and unregisters the run. Accepts
 * NULL; returns NULL. The proxy must no longer use the headers. */
struct run_secrets *secrets_run_free(struct run_secrets *rs);

/* From the control consumer: keeps the sealed message (copied) for the run's
 * waiter. Unknown runs are ignored. Never blocks for long. */
void secrets_on_sealed(const char *run_id, const Paddock__V1__SealedSecrets *s);

/* True when no key material of run_id is left in this process (the run's
 * secrets were freed, or it never had any): "keys" in the destroyed event. */
bool secrets_run_destroyed(const char *run_id);
