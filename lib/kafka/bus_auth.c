#include "kafka/bus_auth.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "kafka/topics.h"

/* Who may produce on which topic: ARCHITECTURE.md §2 and §5. "node:*" is any
 * enrolled node; which node may speak about which run or node is the
 * handlers' check. The scheduler writes runs.events and runs.status (platform
 * verdicts: a run failed for a dead node) and runs.control (cancels of evicted
 * runs). runs.status carries copies of the control-relevant events of
 * runs.events, so it is checked the same way. The api writes runs.events
 * only for a review's event (kind "review", seq 0 "append"); evidence takes
 * nothing else from it (services/evidence/events_store.c). */
static const struct {
        const char *topic;
        const char *signers[3];
} bus_acl[] = {
        {TOPIC_RUNS_REQUESTED, {"api"}},
        {TOPIC_RUNS_ASSIGNED, {"scheduler"}},
        {TOPIC_RUNS_CONTROL, {"api", "scheduler"}},
        {TOPIC_RUNS_EVENTS, {"node:*", "scheduler", "api"}},
        {TOPIC_RUNS_STATUS, {"node:*", "scheduler"}},
        {TOPIC_ARTIFACTS, {"node:*"}},
        {TOPIC_USAGE, {"node:*"}},
        {TOPIC_NODES, {"node:*"}},
        {TOPIC_AUDIT, {"api"}},
        {TOPIC_SIEM_OCSF, {"evidence"}},
        {TOPIC_APPROVALS, {"api"}},
        {TOPIC_USAGE_ALERTS, {"api"}},
};

#define NODE_PREFIX "node:"

bool bus_auth_allowed(const char *topic, const char *signer) {
        for (size_t i = 0; i < ELEMENTSOF(bus_acl); i++) {
                if (strcmp(bus_acl[i].topic, topic))
                        continue;
                for (size_t j = 0; j < ELEMENTSOF(bus_acl[i].signers) && bus_acl[i].signers[j]; j++) {
                        const char *s = bus_acl[i].signers[j];
                        if (!strcmp(s, "node:*") ? !strncmp(signer, NODE_PREFIX, strlen(NODE_PREFIX)) &&
                                                           signer[strlen(NODE_PREFIX)]
                                                 : !strcmp(s, signer))
                                return true;
                }
                return false;
        }
        return false;
}

bool bus_auth_is_node(const char *signer, const char *node_id) {
        return signer && node_id && !strncmp(signer, NODE_PREFIX, strlen(NODE_PREFIX)) && node_id[0] &&
               !strcmp(signer + strlen(NODE_PREFIX), node_id);
}

static const char *const refusal_names[BUS_REFUSED_COUNT_] = {
        [BUS_REFUSED_UNSIGNED] = "unsigned",
        [BUS_REFUSED_UNKNOWN_SIGNER] = "unknown_signer",
        [BUS_REFUSED_BAD_SIGNATURE] = "bad_signature",
        [BUS_REFUSED_NOT_ALLOWED] = "not_allowed",
        [BUS_REFUSED_WRONG_SUBJECT] = "wrong_subject",
};

const char *bus_refusal_name(enum bus_refusal r) {
        return r >= 0 && r < BUS_REFUSED_COUNT_ ? refusal_names[r] : "unknown";
}

#define REFUSED_HELP "Kafka records refused by the bus authentication (docs/CONTRACTS.md), by reason"
static const struct metric m_refused_init[BUS_REFUSED_COUNT_] = {
        [BUS_REFUSED_UNSIGNED] = {.name = "paddock_bus_refused_total", .labels = "reason=\"unsigned\"",
                                  .help = REFUSED_HELP, .type = METRIC_COUNTER},
        [BUS_REFUSED_UNKNOWN_SIGNER] = {.name = "paddock_bus_refused_total", .labels = "reason=\"unknown_signer\"",
                                        .help = REFUSED_HELP, .type = METRIC_COUNTER},
        [BUS_REFUSED_BAD_SIGNATURE] = {.name = "paddock_bus_refused_total", .labels = "reason=\"bad_signature\"",
                                       .help = REFUSED_HELP, .type = METRIC_COUNTER},
        [BUS_REFUSED_NOT_ALLOWED] = {.name = "paddock_bus_refused_total", .labels = "reason=\"not_allowed\"",
                                     .help = REFUSED_HELP, .type = METRIC_COUNTER},
        [BUS_REFUSED_WRONG_SUBJECT] = {.name = "paddock_bus_refused_total", .labels = "reason=\"wrong_subject\"",
                                       .help = REFUSED_HELP, .type = METRIC_COUNTER},
};

/* The counters live in memory shared with the processes forked after
 * registration (the api's prefork workers), so /metrics shows the refusals
 * of the whole process tree whichever worker answers. */
static struct metric *m_refused;

void bus_auth_register_metrics(void) {
        m_refused = mmap(NULL, sizeof m_refused_init, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m_refused == MAP_FAILED) {
                static struct metric fallback[BUS_REFUSED_COUNT_];
                m_refused = fallback; /* per process, still counted */
        }
        memcpy(m_refused, m_refused_init, sizeof m_refused_init);
        for (int i = BUS_REFUSED_COUNT_ - 1; i >= 0; i--)
                metrics_register(&m_refused[i]);
}

void bus_auth_refuse(const char *topic, const char *signer, enum bus_refusal why, const char *detail) {
        if (m_refused && why >= 0 && why < BUS_REFUSED_COUNT_)
                metric_add(&m_refused[why], 1);
        log_ctx(LOG_WARN, LOG_KV("topic", topic, "signer", signer ? signer : "", "reason", bus_refusal_name(why)),
                "refused message: %s", detail);
}

/* ---- keys ---- */

struct trusted {
        char identity[BUS_AUTH_SIGNER_MAX];
        uint8_t pub[SIGN_PUBLIC_KEY_LEN];
};

struct bus_auth {
        char *identity;
        struct sign_key *key;
        char *trusted_path;
        pthread_mutex_t lock;
        struct trusted *keys; /* the file's entries */
        size_t n, cap;
        struct timespec file_mtime;
        off_t file_size;
        ino_t file_ino;
};

static int trusted_push(struct trusted **keys, size_t *n, size_t *cap, const struct trusted *t) {
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 16;
                struct trusted *k = realloc(*keys, c * sizeof *k);
                if (!k)
                        return -ENOMEM;
                *keys = k;
                *cap = c;
        }
        (*keys)[(*n)++] = *t;
        return 0;
}

/* Reads the trusted-keys file into a new array replacing the old one. Called
 * with the lock held or before sharing. */
static int load_trusted(struct bus_auth *a, struct err_detail *reterr) {
        FILE *f = fopen(a->trusted_path, "re");
        if (!f)
                return err_set(reterr, -errno, "config", "could not open trusted keys %s: %s", a->trusted_path,
                               strerror(errno));
        struct stat st;
        if (fstat(fileno(f), &st) < 0) {
                fclose(f);
                return err_set(reterr, -errno, "config", "could not stat trusted keys %s", a->trusted_path);
        }
        struct trusted *keys = NULL;
        size_t n = 0, cap = 0;
        char line[512];
        int r = 0;
        for (unsigned lineno = 1; fgets(line, sizeof line, f); lineno++) {
                char *s = line + strspn(line, " \t");
                if (*s == '#' || *s == '\n' || *s == '\0')
                        continue;
                char *id = strtok(s, " \t\r\n"), *b64 = strtok(NULL, " \t\r\n");
                struct trusted t = {0};
                if (!id || !b64 || strtok(NULL, " \t\r\n") || strlen(id) >= sizeof t.identity) {
                        r = err_set(reterr, -EINVAL, "config", "trusted keys %s line %u: want \"identity public-key\"",
                                    a->trusted_path, lineno);
                        break;
                }
                if (sign_public_key_parse(b64, t.pub) < 0) {
                        r = err_set(reterr, -EINVAL, "config",
                                    "trusted keys %s line %u: the key of %s is not base64 of 32 bytes", a->trusted_path,
                                    lineno, id);
                        break;
                }
                strcpy(t.identity, id);
                /* a later line for the same identity replaces the earlier (re-enrolment) */
                size_t i = 0;
                while (i < n && strcmp(keys[i].identity, id))
                        i++;
                if (i < n) {
                        keys[i] = t;
                        continue;
                }
                r = trusted_push(&keys, &n, &cap, &t);
                if (r < 0) {
                        err_set(reterr, r, "", "out of memory");
                        break;
                }
        }
        fclose(f);
        if (r < 0) {
                free(keys);
                return r;
        }
        free(a->keys);
        a->keys = keys;
        a->n = n;
        a->cap = cap;
        a->file_mtime = st.st_mtim;
        a->file_size = st.st_size;
        a->file_ino = st.st_ino;
        return 0;
}

int bus_auth_new(const char *identity, const char *key_path, const char *trusted_keys_path,
                 struct bus_auth **ret, struct err_detail *reterr) {
        if (!trusted_keys_path || !*trusted_keys_path)
                return err_set(reterr, -EINVAL, "config", "a trusted keys file is required");
        if ((identity && *identity) != (key_path && *key_path))
                return err_set(reterr, -EINVAL, "config", "a signing identity needs a signing key and the reverse");
        if (identity && strlen(identity) >= BUS_AUTH_SIGNER_MAX)
                return err_set(reterr, -EINVAL, "config", "signing identity %s is too long", identity);
        _cleanup_(bus_auth_freep) struct bus_auth *a = calloc(1, sizeof *a);
        if (!a)
                return err_set(reterr, -ENOMEM, "", "out of memory");
        pthread_mutex_init(&a->lock, NULL);
        a->trusted_path = strdup(trusted_keys_path);
        if (!a->trusted_path || (identity && *identity && !(a->identity = strdup(identity))))
                return err_set(reterr, -ENOMEM, "", "out of memory");
        int r;
        if (key_path && *key_path) {
                r = sign_key_load(key_path, &a->key, reterr);
                if (r < 0)
                        return r;
        }
        r = load_trusted(a, reterr);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(a);
        return 0;
}

struct bus_auth *bus_auth_free(struct bus_auth *a) {
        if (!a)
                return NULL;
        sign_key_free(a->key);
        free(a->identity);
        free(a->trusted_path);
        free(a->keys);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return NULL;
}

const char *bus_auth_identity(const struct bus_auth *a) {
        return a ? a->identity : NULL;
}

static void bus_signed_parts(const char *topic, const void *value, size_t len, const void *parts[4],
                             size_t lens[4]) {
        parts[0] = BUS_AUTH_DOMAIN; /* with its NUL */
        lens[0] = sizeof BUS_AUTH_DOMAIN;
        parts[1] = topic;
        lens[1] = strlen(topic) + 1; /* with its NUL */
        parts[2] = value;
        lens[2] = len;
}

int bus_auth_sign(const struct bus_auth *a, const char *topic, const void *value, size_t len,
                  uint8_t sig[SIGN_SIGNATURE_LEN]) {
        if (!a || !a->key)
                return -ENOKEY;
        const void *parts[4];
        size_t lens[4];
        bus_signed_parts(topic, value, len, parts, lens);
        return sign_parts(a->key, parts, lens, 3, sig);
}

static struct trusted *find_locked(struct bus_auth *a, const char *id) {
        for (size_t i = 0; i < a->n; i++)
                if (!strcmp(a->keys[i].identity, id))
                        return &a->keys[i];
        return NULL;
}

/* The key of id, or false. An unknown id (or recheck: a key that did not
 * verify, which a re-enrolment may have replaced) makes us re-read the file
 * if it changed (one stat(2) per such record). */
static bool key_of(struct bus_auth *a, const char *id, bool recheck, uint8_t pub[SIGN_PUBLIC_KEY_LEN]) {
        pthread_mutex_lock(&a->lock);
        struct trusted *t = find_locked(a, id);
        if (recheck || !t) {
                struct stat st;
                if (stat(a->trusted_path, &st) == 0 &&
                    (st.st_mtim.tv_sec != a->file_mtime.tv_sec || st.st_mtim.tv_nsec != a->file_mtime.tv_nsec ||
                     st.st_size != a->file_size || st.st_ino != a->file_ino)) {
                        struct err_detail e = {0};
                        if (load_trusted(a, &e) < 0)
                                log_ctx(LOG_DEBUG, LOG_KV("component", "bus_auth"), "%s", e.message);
                }
                t = find_locked(a, id);
        }
        bool ok = t != NULL;
        if (ok)
                memcpy(pub, t->pub, SIGN_PUBLIC_KEY_LEN);
        pthread_mutex_unlock(&a->lock);
        return ok;
}

int bus_auth_public_key(struct bus_auth *a, const char *identity, char out[SIGN_PUBLIC_KEY_B64_LEN + 1]) {
        uint8_t pub[SIGN_PUBLIC_KEY_LEN];
        if (strlen(identity) >= BUS_AUTH_SIGNER_MAX || !key_of(a, identity, false, pub))
                return -ENOENT;
        EVP_EncodeBlock((unsigned char *)out, pub, (int)sizeof pub);
        return 0;
}

int bus_auth_verify(struct bus_auth *a, const char *topic, const char *signer, size_t signer_len,
                    const void *sig, size_t sig_len, const void *value, size_t len) {
        char id[BUS_AUTH_SIGNER_MAX];
        if (!signer || signer_len == 0 || signer_len >= sizeof id || memchr(signer, '\0', signer_len) || !sig)
                return -(int)BUS_REFUSED_UNSIGNED - 1;
        memcpy(id, signer, signer_len);
        id[signer_len] = '\0';
        if (sig_len != SIGN_SIGNATURE_LEN)
                return -(int)BUS_REFUSED_BAD_SIGNATURE - 1;
        uint8_t pub[SIGN_PUBLIC_KEY_LEN];
        if (!key_of(a, id, false, pub))
                return -(int)BUS_REFUSED_UNKNOWN_SIGNER - 1;
        const void *parts[4];
        size_t lens[4];
        bus_signed_parts(topic, value, len, parts, lens);
        if (!sign_verify_parts(pub, parts, lens, 3, sig, sig_len)) {
                uint8_t again[SIGN_PUBLIC_KEY_LEN];
                if (!key_of(a, id, true, again) || !memcmp(again, pub, sizeof pub) ||
                    !sign_verify_parts(again, parts, lens, 3, sig, sig_len))
                        return -(int)BUS_REFUSED_BAD_SIGNATURE - 1;
        }
        /* checked after the signature, so the refusal names a proven signer */
        if (!bus_auth_allowed(topic, id))
                return -(int)BUS_REFUSED_NOT_ALLOWED - 1;
        return 0;
}
