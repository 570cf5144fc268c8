#include "proxy_hook.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "prompt_file.h"
#include "gateway_hook.h"
#include "identity_file.h"
#include "proxy.h"
#include "run_policy.h"
#include "secrets.h"

#define CONFIG_WIPE_POLL_US 10000
#define CONFIG_WIPE_MAX_S 300

struct proxy_hook {
        const char *run_id;
        const Paddock__V1__SandboxSnapshot *snap;
        struct run_events *ev;
        struct run_secrets *secrets;
        int key_err;
        struct proxy_run *proxy;
        struct gateway_hook *gateway;      /* the model gateway, beside the proxy (gateway_hook.h) */
        gateway_limit_fn on_model_limit;   /* where it tells of a reached limit, and its userdata */
        void *model_limit_userdata;
        const char **env;                  /* proxy_env + secrets_env, NULL-terminated */
        struct run_policy *policy;         /* the run's rules, level egress (borrowed) */

        int config_fd;                     /* memfd holding config.json with secrets, -1 */
        char config_path[64];              /* /proc/<our pid>/fd/<n>, what crun opens */
        const char *pid_file;              /* borrowed from the sandbox */
        pthread_t wiper;
        bool wiper_started;
        atomic_bool stop;
        pthread_mutex_t lock;              /* config_fd */
};

/* proxy_policy_fn: the run's policy on the host (a policy_decision event
 * when a rule matched, run_policy_decide). */
static struct policy_decision on_policy(void *userdata, const char *host, uint16_t port, const char **ret_rule) {
        struct proxy_hook *h = userdata;
        _cleanup_(json_decrefp) json_t *extra = json_pack("{s:i}", "port", (int)port);
        struct policy_decision d =
                run_policy_decide(h->policy, "egress", &(struct policy_request){.host = host}, extra, false);
        *ret_rule = policy_rule_source(run_policy_engine(h->policy), d.rule);
        return d;
}

void proxy_hook_set_policy(struct proxy_hook *h, struct run_policy *rp) {
        if (h)
                h->policy = rp;
}

static void on_event(void *userdata, const char *kind, json_t *data, bool sync) {
        struct proxy_hook *h = userdata;
        events_emit(h->ev, kind, "platform", data, NULL, false, sync);
}

struct proxy_hook *proxy_hook_provisioning(const char *run_id, const Paddock__V1__SandboxSnapshot *snap,
                                           struct run_events *ev) {
        struct proxy_hook *h = calloc(1, sizeof *h);
        json_t *d = json_pack("{s:s}", "status", "provisioning");
        if (h) {
                *h = (struct proxy_hook){.run_id = run_id, .snap = snap, .ev = ev, .config_fd = -1};
                pthread_mutex_init(&h->lock, NULL);
                h->key_err = secrets_run_new(run_id, snap, &h->secrets);
                if (h->secrets && d)
                        json_object_set_new(d, "public_key", json_string(secrets_public_key(h->secrets)));
        }
        prompt_file_event_data(snap, d); /* which prompt the run was given (prompt_file.h) */
        if (d)
                events_emit(ev, "status", "platform", d, "provisioning", false, true);
        json_decref(d);
        return h;
}

/* Zeroes and frees the config memfd. */
static void wipe_config(struct proxy_hook *h) {
        pthread_mutex_lock(&h->lock);
        if (h->config_fd >= 0) {
                struct stat st;
                if (fstat(h->config_fd, &st) == 0 && st.st_size > 0) {
                        static const char zeros[4096];
                        for (off_t off = 0; off < st.st_size; off += (off_t)sizeof zeros)
                                (void)!pwrite(h->config_fd, zeros, sizeof zeros, off);
                }
                (void)!ftruncate(h->config_fd, 0);
                close(h->config_fd);
                h->config_fd = -1;
                log_ctx(LOG_DEBUG, LOG_KV("run", h->run_id), "config.json with secrets wiped");
        }
        pthread_mutex_unlock(&h->lock);
}

/* crun has read config.json (and kept its own copy in its state dir, a tmpfs)
 * once the container is up, i.e. once the pid file exists. */
static void *wiper_thread(void *userdata) {
        struct proxy_hook *h = userdata;
        for (long i = 0; i < CONFIG_WIPE_MAX_S * (1000000 / CONFIG_WIPE_POLL_US) && !atomic_load(&h->stop); i++) {
                if (access(h->pid_file, F_OK) == 0)
                        break;
                usleep(CONFIG_WIPE_POLL_US);
        }
        wipe_config(h);
        return NULL;
}

int proxy_hook_prepare(struct proxy_hook *h, struct sandbox *sb, struct err_detail *reterr) {
        if (!h)
                return err_set(reterr, -ENOMEM, "egress", "out of memory");
        if (h->key_err < 0)
                return err_set(reterr, h->key_err, "secrets", "could not generate the run's key: %s",
                               strerror(-h->key_err));
        int r = proxy_run_start(h->run_id, sb->netns_path, h->snap ? h->snap->egress : NULL, on_event, h, &h->proxy,
                                reterr);
        if (r < 0)
                return r;
        /* only host rules matter here: a run without them pays nothing */
        if (policy_engine_has(run_policy_engine(h->policy), "host", POLICY_ALLOW))
                proxy_run_set_policy(h->proxy, on_policy, h, run_policy_ask_timeout_s(h->policy));
        if (h->secrets) {
                r = secrets_run_wait(h->secrets, h->snap, SECRETS_WAIT_MS, reterr);
                if (r < 0)
                        return r;
                size_t n;
                const struct proxy_header *hd = secrets_headers(h->secrets, &n);
                proxy_run_set_headers(h->proxy, hd, n);
                /* workload identity tokens given as files (identity_file.h) */
                const struct secret_file *files = secrets_files(h->secrets, &n);
                if ((r = identity_file_write(sb, files, n, reterr)) < 0)
                        return r;
        }
        r = gateway_hook_start(h->run_id, sb->netns_path, h->snap, h->secrets, h->ev, h->on_model_limit,
                               h->model_limit_userdata, &h->gateway, reterr);
        if (r < 0)
                return r;
        const char *const *senv = secrets_env(h->secrets);
        size_t n_proxy = 0, n_secret = 0;
        while (proxy_env[n_proxy])
                n_proxy++;
        while (senv[n_secret])
                n_secret++;
        h->env = calloc(n_proxy + n_secret + 1, sizeof *h->env);
        if (!h->env)
                return err_set(reterr, -ENOMEM, "egress", "out of memory");
        memcpy(h->env, proxy_env, n_proxy * sizeof *h->env);
        memcpy(h->env + n_proxy, senv, n_secret * sizeof *h->env);
        sb->extra_env = h->env;

        if (n_secret > 0) {
                /* the env secrets are in config.json: keep it off every disk */
                h->config_fd = memfd_create("paddock-config", MFD_CLOEXEC);
                if (h->config_fd < 0)
                        return err_set(reterr, -errno, "secrets", "memfd_create failed: %m");
                snprintf(h->config_path, sizeof h->config_path, "/proc/%d/fd/%d", (int)getpid(), h->config_fd);
                sb->config_override = h->config_path;
                h->pid_file = sb->pid_file;
                if (pthread_create(&h->wiper, NULL, wiper_thread, h) != 0)
                        return err_set(reterr, -EAGAIN, "secrets", "could not start the config wiper");
                h->wiper_started = true;
        }
        return 0;
}

void proxy_hook_on_model_limit(struct proxy_hook *h, gateway_limit_fn fn, void *userdata) {
        if (!h)
                return;
        h->on_model_limit = fn;
        h->model_limit_userdata = userdata;
}

struct gateway_hook *proxy_hook_gateway(struct proxy_hook *h) {
        return h ? h->gateway : NULL;
}

struct proxy_hook *proxy_hook_free(struct proxy_hook *h) {
        if (!h)
                return NULL;
        atomic_store(&h->stop, true);
        if (h->wiper_started)
                pthread_join(h->wiper, NULL);
        wipe_config(h);
        h->gateway = gateway_hook_stop(h->gateway); /* uses the keys: before the secrets go */
        h->proxy = proxy_run_stop(h->proxy);
        h->secrets = secrets_run_free(h->secrets);
        free(h->env);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
}
