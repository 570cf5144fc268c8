/* Failed-login rate limiting per user (tenant + username) and per source IP.
 *
 * A sliding log: each key keeps the times of its last `max` failures; the key
 * is limited while `max` of them fall inside the window, until the oldest
 * leaves it. State lives in this process's memory only: every api replica
 * keeps its own counts (N replicas behind a balancer allow up to N times the
 * limit), and a restart forgets them. Keys are stored as a truncated SHA-256,
 * so the table holds no user names, and both tables are bounded: when one is
 * full, expired keys go first, then the key whose newest failure is oldest. */
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"

#define RL_USER_KEYS 16384
#define RL_IP_KEYS 4096
#define RL_ID 16

struct rl_entry {
        uint8_t id[RL_ID];
        int64_t *ts; /* ring of failure times (monotonic us), capacity = the table's max */
        unsigned head, n;
};

struct rl_table {
        struct rl_entry *e;
        size_t len, cap;
};

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rl_table rl_users = {.cap = RL_USER_KEYS}, rl_ips = {.cap = RL_IP_KEYS};

static int64_t rl_now_us(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* The id of a key made of parts separated by NUL (no part can contain one). */
static void rl_id(const char *a, const char *b, uint8_t out[RL_ID]) {
        unsigned char buf[1024], d[SHA256_DIGEST_LENGTH];
        size_t la = strnlen(a, 511), lb = b ? strnlen(b, 511) : 0;
        memcpy(buf, a, la);
        buf[la] = '\0';
        if (b)
                memcpy(buf + la + 1, b, lb);
        SHA256(buf, la + 1 + lb, d);
        memcpy(out, d, RL_ID);
}

static void rl_expire(struct rl_entry *x, unsigned max, int64_t now, int64_t window) {
        while (x->n > 0 && x->ts[x->head] <= now - window) {
                x->head = (x->head + 1) % max;
                x->n--;
        }
}

static struct rl_entry *rl_find(struct rl_table *t, const uint8_t id[RL_ID]) {
        for (size_t i = 0; i < t->len; i++)
                if (!memcmp(t->e[i].id, id, RL_ID))
                        return &t->e[i];
        return NULL;
}

static void rl_remove(struct rl_table *t, size_t i) {
        free(t->e[i].ts);
        t->e[i] = t->e[--t->len];
}

/* Finds or makes the entry of id; NULL on out-of-memory (the failure is then
 * not counted: refusing logins for lack of memory would be worse). */
static struct rl_entry *rl_get(struct rl_table *t, const uint8_t id[RL_ID], unsigned max, int64_t now,
                               int64_t window) {
        struct rl_entry *x = rl_find(t, id);
        if (x)
                return x;
        if (!t->e && !(t->e = calloc(t->cap, sizeof *t->e)))
                return NULL;
        if (t->len == t->cap) {
                size_t oldest = 0;
                for (size_t i = t->len; i-- > 0;) {
                        struct rl_entry *y = &t->e[i];
                        rl_expire(y, max, now, window);
                        if (y->n == 0)
                                rl_remove(t, i);
                }
                if (t->len == t->cap) {
                        for (size_t i = 1; i < t->len; i++) {
                                struct rl_entry *a = &t->e[i], *b = &t->e[oldest];
                                if (a->ts[(a->head + a->n - 1) % max] < b->ts[(b->head + b->n - 1) % max])
                                        oldest = i;
                        }
                        rl_remove(t, oldest);
                }
        }
        int64_t *ts = calloc(max, sizeof *ts);
        if (!ts)
                return NULL;
        x = &t->e[t->len++];
        *x = (struct rl_entry){.ts = ts};
        memcpy(x->id, id, RL_ID);
        return x;
}

/* Seconds until the key may try again (rounded up), 0 when not limited. */
static int64_t rl_wait(struct rl_table *t, const uint8_t id[RL_ID], unsigned max, int64_t now, int64_t window) {
        struct rl_entry *x = rl_find(t, id);
        if (!x)
                return 0;
        rl_expire(x, max, now, window);
        if (x->n < max)
                return 0;
        int64_t us = x->ts[x->head] + window - now;
        return us > 0 ? (us + 999999) / 1000000 : 1;
}

static void rl_add(struct rl_table *t, const uint8_t id[RL_ID], unsigned max, int64_t now, int64_t window) {
        struct rl_entry *x = rl_get(t, id, max, now, window);
        if (!x)
                return;
        rl_expire(x, max, now, window);
        if (x->n < max)
                x->ts[(x->head + x->n++) % max] = now;
        else {
                x->ts[x->head] = now;
                x->head = (x->head + 1) % max;
        }
}

int64_t ratelimit_login_check(struct api *a, const char *tenant, const char *username, const char *ip) {
        uint8_t uid[RL_ID], iid[RL_ID];
        rl_id(tenant, username, uid);
        rl_id(ip, NULL, iid);
        int64_t now = rl_now_us(), window = a->cfg.login_window_s * 1000000LL;
        pthread_mutex_lock(&rl_lock);
        int64_t wu = rl_wait(&rl_users, uid, (unsigned)a->cfg.login_max_failures_user, now, window);
        int64_t wi = ip[0] ? rl_wait(&rl_ips, iid, (unsigned)a->cfg.login_max_failures_ip, now, window) : 0;
        pthread_mutex_unlock(&rl_lock);
        return wu > wi ? wu : wi;
}

void ratelimit_login_failed(struct api *a, const char *tenant, const char *username, const char *ip) {
        uint8_t uid[RL_ID], iid[RL_ID];
        rl_id(tenant, username, uid);
        rl_id(ip, NULL, iid);
        int64_t now = rl_now_us(), window = a->cfg.login_window_s * 1000000LL;
        pthread_mutex_lock(&rl_lock);
        rl_add(&rl_users, uid, (unsigned)a->cfg.login_max_failures_user, now, window);
        if (ip[0])
                rl_add(&rl_ips, iid, (unsigned)a->cfg.login_max_failures_ip, now, window);
        pthread_mutex_unlock(&rl_lock);
}

void ratelimit_login_succeeded(struct api *a, const char *tenant, const char *username) {
        (void)a;
        uint8_t uid[RL_ID];
        rl_id(tenant, username, uid);
        pthread_mutex_lock(&rl_lock);
        for (size_t i = 0; i < rl_users.len; i++)
                if (!memcmp(rl_users.e[i].id, uid, RL_ID)) {
                        rl_remove(&rl_users, i);
                        break;
                }
        pthread_mutex_unlock(&rl_lock);
}
