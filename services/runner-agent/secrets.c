#include "secrets.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/timeutil.h"
#include "crypto/seal.h"

#define AAD_PREFIX "paddock-secrets:"

struct run_secrets {
        char run_id[UUID_STR_LEN];
        struct seal_keypair *kp;
        char public_b64[64];

        /* the latest sealed message not tried yet, guarded by g.lock */
        bool sealed_ready;
        uint8_t eph[SEAL_PUBLIC_KEY_LEN], nonce[SEAL_NONCE_LEN];
        uint8_t *ct;
        size_t ct_len;

        /* opened: env entries and headers (each value malloc'd, wiped on free) */
        char **env;
        size_t n_env;
        struct proxy_header *headers;
        size_t n_headers;
        struct secret_key *model_keys;     /* one per snapshot model route, value NULL if none */
        size_t n_model_keys;
        struct secret_file *files;         /* workload identity tokens delivered as files */
        size_t n_files;

        struct run_secrets *next;
};

/* A model route's key (gateway.h), opened like a header secret. */
struct secret_key {
        char *value;
        size_t len;
};

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool cond_ready;
        struct run_secrets *runs;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void wipe_free(void *p, size_t len) {
        if (p) {
                OPENSSL_cleanse(p, len);
                free(p);
        }
}

static void drop_sealed(struct run_secrets *rs) {
        wipe_free(rs->ct, rs->ct_len);
        rs->ct = NULL;
        rs->ct_len = 0;
        rs->sealed_ready = false;
}

int secrets_run_new(const char *run_id, const Paddock__V1__SandboxSnapshot *snap, struct run_secrets **ret) {
        *ret = NULL;
        size_t n_keys = 0;
        for (size_t i = 0; snap && i < snap->n_model_routes; i++)
                n_keys += snap->model_routes[i]->key_secret && snap->model_routes[i]->key_secret[0];
        if (!snap || (snap->n_secrets == 0 && n_keys == 0 && snap->n_identity == 0))
                return 0;
        struct run_secrets *rs = calloc(1, sizeof *rs);
        if (!rs)
                return -ENOMEM;
        snprintf(rs->run_id, sizeof rs->run_id, "%s", run_id);
        int r = seal_keypair_new(&rs->kp);
        if (r < 0) {
                free(rs);
                return r;
        }
        EVP_EncodeBlock((unsigned char *)rs->public_b64, seal_keypair_public_key(rs->kp), SEAL_PUBLIC_KEY_LEN);

        pthread_mutex_lock(&g.lock);
        if (!g.cond_ready) {
                pthread_condattr_t ca;
                pthread_condattr_init(&ca);
                pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                pthread_cond_init(&g.cond, &ca);
                pthread_condattr_destroy(&ca);
                g.cond_ready = true;
        }
        rs->next = g.runs;
        g.runs = rs;
        pthread_mutex_unlock(&g.lock);
        *ret = rs;
        return 0;
}

const char *secrets_public_key(const struct run_secrets *rs) { return rs->public_b64; }

void secrets_on_sealed(const char *run_id, const Paddock__V1__SealedSecrets *s) {
        if (!run_id || !s)
                return;
        if (s->ephemeral_public_key.len != SEAL_PUBLIC_KEY_LEN || s->nonce.len != SEAL_NONCE_LEN ||
            s->ciphertext.len < SEAL_TAG_LEN || s->ciphertext.len > SEAL_MAX_PLAINTEXT + SEAL_TAG_LEN) {
                log_ctx(LOG_WARN, LOG_KV("run", run_id), "sealed secrets with bad field lengths ignored");
                return;
        }
        uint8_t *ct = malloc(s->ciphertext.len);
        if (!ct)
                return;
        memcpy(ct, s->ciphertext.data, s->ciphertext.len);
        pthread_mutex_lock(&g.lock);
        struct run_secrets *rs = g.runs;
        while (rs && strcmp(rs->run_id, run_id))
                rs = rs->next;
        if (!rs || rs->n_env || rs->n_headers || rs->env) {
                pthread_mutex_unlock(&g.lock);
                free(ct);
                log_ctx(LOG_DEBUG, LOG_KV("run", run_id), "sealed secrets for no waiting run, ignored");
                return;
        }
        drop_sealed(rs);
        memcpy(rs->eph, s->ephemeral_public_key.data, SEAL_PUBLIC_KEY_LEN);
        memcpy(rs->nonce, s->nonce.data, SEAL_NONCE_LEN);
        rs->ct = ct;
        rs->ct_len = s->ciphertext.len;
        rs->sealed_ready = true;
        pthread_cond_broadcast(&g.cond);
        pthread_mutex_unlock(&g.lock);
        log_ctx(LOG_INFO, LOG_KV("run", run_id), "sealed secrets received");
}

static bool env_name_ok(const char *s) {
        if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
                        return false;
        /* the proxy settings are the platform's, not a secret's to override */
        static const char *const reserved[] = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "PATH", "HOME"};
        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (!strcasecmp(s, reserved[i]))
                        return false;
        return true;
}

static bool header_name_ok(const char *s) {
        if (!s || !*s)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                      strchr("!#$%&'*+-.^_`|~", *p)))
                        return false;
        static const char *const reserved[] = {"host", "connection", "content-length", "transfer-encoding",
                                               "proxy-connection", "upgrade", "te", "trailer", "keep-alive"};
        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (!strcasecmp(s, reserved[i]))
                        return false;
        return true;
}

/* The value named name in the opened bundle, or NULL. */
static const Paddock__V1__SecretValue *bundle_find(const Paddock__V1__SecretBundle *b, const char *name) {
        for (size_t k = 0; k < b->n_secrets; k++)
                if (b->secrets[k]->name && !strcmp(b->secrets[k]->name, name))
                        return b->secrets[k];
        return NULL;
}


/* Maps the opened bundle onto the snapshot's references. */
static int resolve(struct run_secrets *rs, const Paddock__V1__SandboxSnapshot *snap,
                   const Paddock__V1__SecretBundle *b, struct err_detail *reterr) {
        /* the workload identity tokens (snap->identity) are delivered like
         * secrets, and as files too (docs/CONTRACTS.md "Workload identity") */
        size_t n = snap->n_secrets + snap->n_identity;
        rs->env = calloc(n + 1, sizeof *rs->env);
        rs->headers = calloc(n + 1, sizeof *rs->headers);
        rs->files = calloc(n + 1, sizeof *rs->files);
        if (!rs->env || !rs->headers || !rs->files)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Paddock__V1__SecretRef *ref =
                        i < snap->n_secrets ? snap->secrets[i] : snap->identity[i - snap->n_secrets];
                const char *name = ref->name ? ref->name : "";
                const Paddock__V1__SecretValue *v = bundle_find(b, name);
                if (!v)
                        return err_set(reterr, -EINVAL, "secrets", "secret %s is missing from the sealed bundle", name);
                const uint8_t *val = v->value.data;
                size_t len = v->value.len;
                if (memchr(val, 0, len))
                        return err_set(reterr, -EINVAL, "secrets", "secret %s contains a NUL byte", name);
                if (ref->env && ref->env[0]) {
                        if (!env_name_ok(ref->env))
                                return err_set(reterr, -EINVAL, "secrets", "secret %s: invalid env name", name);
                        size_t el = strlen(ref->env) + 1 + len + 1;
                        char *e = malloc(el);
                        if (!e)
                                return -ENOMEM;
                        memcpy(e, ref->env, strlen(ref->env));
                        e[strlen(ref->env)] = '=';
                        memcpy(e + strlen(ref->env) + 1, val, len);
                        e[el - 1] = 0;
                        rs->env[rs->n_env++] = e;
                } else if (ref->header_host && ref->header_host[0] && ref->header_name && ref->header_name[0]) {
                        if (!header_name_ok(ref->header_name))
                                return err_set(reterr, -EINVAL, "secrets", "secret %s: invalid header name", name);
                        if (memchr(val, '\r', len) || memchr(val, '\n', len))
                                return err_set(reterr, -EINVAL, "secrets",
                                               "secret %s contains a line break and cannot be a header", name);
                        char *hv = malloc(len + 1);
                        if (!hv)
                                return -ENOMEM;
                        memcpy(hv, val, len);
                        hv[len] = 0;
                        /* the api sends the origin's port; 0 (an older api) is https's */
                        rs->headers[rs->n_headers++] = (struct proxy_header){
                                .host = ref->header_host, .name = ref->header_name,
                                .port = ref->header_port && ref->header_port <= 65535 ? (uint16_t)ref->header_port : 443,
                                .value = hv, .value_len = len};
                } else if (ref->file && ref->file[0] && i >= snap->n_secrets) {
                        /* a name, not a path: the file lives in /paddock/identity */
                        if (strchr(ref->file, '/') || !strcmp(ref->file, ".") || !strcmp(ref->file, ".."))
                                return err_set(reterr, -EINVAL, "secrets", "%s: invalid file name", name);
                        char *fv = malloc(len + 1);
                        if (!fv)
                                return -ENOMEM;
                        memcpy(fv, val, len);
                        fv[len] = 0;
                        rs->files[rs->n_files++] = (struct secret_file){.name = ref->file, .value = fv, .len = len};
                } else
                        return err_set(reterr, -EINVAL, "secrets", "secret %s has neither env nor header", name);
        }
        /* the model gateway's keys: named by the routes, in the same bundle */
        rs->model_keys = calloc(snap->n_model_routes + 1, sizeof *rs->model_keys);
        if (!rs->model_keys)
                return -ENOMEM;
        rs->n_model_keys = snap->n_model_routes;
        for (size_t i = 0; i < snap->n_model_routes; i++) {
                const char *name = snap->model_routes[i]->key_secret;
                if (!name || !name[0])
                        continue;
                const Paddock__V1__SecretValue *v = bundle_find(b, name);
                if (!v)
                        return err_set(reterr, -EINVAL, "secrets", "secret %s is missing from the sealed bundle", name);
                if (!v->value.len || memchr(v->value.data, 0, v->value.len) || memchr(v->value.data, '\r', v->value.len) ||
                    memchr(v->value.data, '\n', v->value.len))
                        return err_set(reterr, -EINVAL, "secrets",
                                       "secret %s is empty or contains a NUL or line break and cannot be a model key",
                                       name);
                rs->model_keys[i].value = malloc(v->value.len + 1);
                if (!rs->model_keys[i].value)
                        return -ENOMEM;
                memcpy(rs->model_keys[i].value, v->value.data, v->value.len);
                rs->model_keys[i].value[v->value.len] = 0;
                rs->model_keys[i].len = v->value.len;
        }
        return 0;
}

const char *secrets_model_key(const struct run_secrets *rs, size_t route, size_t *ret_len) {
        if (!rs || route >= rs->n_model_keys || !rs->model_keys[route].value) {
                *ret_len = 0;
                return NULL;
        }
        *ret_len = rs->model_keys[route].len;
        return rs->model_keys[route].value;
}

/* Tries the pending sealed message; 1 opened, 0 did not open, <0 error. */
static int try_open(struct run_secrets *rs, const Paddock__V1__SandboxSnapshot *snap, struct err_detail *reterr) {
        size_t aad_len = strlen(AAD_PREFIX) + strlen(rs->run_id);
        char aad[64];
        snprintf(aad, sizeof aad, AAD_PREFIX "%s", rs->run_id);
        size_t pt_len = rs->ct_len - SEAL_TAG_LEN;
        uint8_t *pt = malloc(pt_len ? pt_len : 1);
        if (!pt)
                return -ENOMEM;
        int r = seal_decrypt(rs->kp, rs->eph, rs->nonce, rs->ct, rs->ct_len, aad, aad_len, pt);
        if (r < 0) {
                wipe_free(pt, pt_len);
                log_ctx(LOG_WARN, LOG_KV("run", rs->run_id), "sealed secrets do not open with this run's key (%s), "
                        "waiting for another", strerror(-r));
                return 0;
        }
        Paddock__V1__SecretBundle *b = paddock__v1__secret_bundle__unpack(NULL, pt_len, pt);
        wipe_free(pt, pt_len);
        if (!b)
                return err_set(reterr, -EINVAL, "secrets", "the opened secret bundle is not a SecretBundle");
        r = resolve(rs, snap, b, reterr);
        for (size_t k = 0; k < b->n_secrets; k++)
                if (b->secrets[k]->value.data)
                        OPENSSL_cleanse(b->secrets[k]->value.data, b->secrets[k]->value.len);
        paddock__v1__secret_bundle__free_unpacked(b, NULL);
        return r < 0 ? r : 1;
}

int secrets_run_wait(struct run_secrets *rs, const Paddock__V1__SandboxSnapshot *snap, int timeout_ms,
                     struct err_detail *reterr) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&g.lock);
        for (;;) {
                if (rs->sealed_ready) {
                        int r = try_open(rs, snap, reterr);
                        drop_sealed(rs);
                        if (r != 0) {
                                pthread_mutex_unlock(&g.lock);
                                return r < 0 ? r : 0;
                        }
                }
                if (pthread_cond_timedwait(&g.cond, &g.lock, &deadline) == ETIMEDOUT && !rs->sealed_ready) {
                        pthread_mutex_unlock(&g.lock);
                        return err_set(reterr, -ETIMEDOUT, "secrets", "secrets not delivered within %d s",
                                       timeout_ms / 1000);
                }
        }
}

const char *const *secrets_env(const struct run_secrets *rs) {
        static const char *const none[] = {NULL};
        return rs && rs->env ? (const char *const *)rs->env : none;
}

const struct secret_file *secrets_files(const struct run_secrets *rs, size_t *ret_n) {
        *ret_n = rs ? rs->n_files : 0;
        return rs ? rs->files : NULL;
}

const struct proxy_header *secrets_headers(const struct run_secrets *rs, size_t *ret_n) {
        *ret_n = rs ? rs->n_headers : 0;
        return rs ? rs->headers : NULL;
}

struct run_secrets *secrets_run_free(struct run_secrets *rs) {
        if (!rs)
                return NULL;
        pthread_mutex_lock(&g.lock);
        for (struct run_secrets **p = &g.runs; *p; p = &(*p)->next)
                if (*p == rs) {
                        *p = rs->next;
                        break;
                }
        drop_sealed(rs);
        pthread_mutex_unlock(&g.lock);
        for (size_t i = 0; i < rs->n_env; i++)
                wipe_free(rs->env[i], strlen(rs->env[i]));
        free(rs->env);
        for (size_t i = 0; i < rs->n_headers; i++)
                wipe_free((void *)rs->headers[i].value, rs->headers[i].value_len);
        free(rs->headers);
        for (size_t i = 0; i < rs->n_model_keys; i++)
                wipe_free(rs->model_keys[i].value, rs->model_keys[i].len);
        free(rs->model_keys);
        for (size_t i = 0; i < rs->n_files; i++)
                wipe_free(rs->files[i].value, rs->files[i].len);
        free(rs->files);
        seal_keypair_free(rs->kp);
        OPENSSL_cleanse(rs, sizeof *rs);
        free(rs);
        return NULL;
}

bool secrets_run_destroyed(const char *run_id) {
        pthread_mutex_lock(&g.lock);
        struct run_secrets *rs = g.runs;
        while (rs && strcmp(rs->run_id, run_id))
                rs = rs->next;
        pthread_mutex_unlock(&g.lock);
        return rs == NULL;
}
