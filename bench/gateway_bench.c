/* Model gateway overhead per streamed call (issue 11 §5; bench/README.md
 * "gateway"): the same scripted Anthropic stream of the model simulator
 * (tests/modelsim, HTTPS with a CA this bench generates, on loopback) called
 * N times directly and N times through the runner-agent's gateway code
 * (library paddock_runner_gateway, one run, a route to the simulator), a new
 * connection per call on both paths (the gateway opens one upstream per
 * call). Prints p50/p99 of the time to the first SSE event (the first body
 * bytes the client gets) and of the whole call, side by side, and the
 * gateway's added time. Never fails on a
 * figure; exits 1 only when a call fails.
 *
 *   paddock-gateway-bench [calls, 200] [chunks per stream, 200] */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../services/runner-agent/gateway.h"

#define REAL_KEY "sk-bench-upstream-key"

struct reply {
        size_t len;
        int saw_stop;
        double first_s;        /* monotonic time of the first body bytes (the first SSE event) */
};

static double mono_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_data(char *p, size_t sz, size_t n, void *userdata) {
        struct reply *r = userdata;
        if (!r->len)
                r->first_s = mono_s();
        r->len += sz * n;
        if (memmem(p, sz * n, "message_stop", 12))
                r->saw_stop = 1;
        return sz * n;
}

/* One streamed call on c (one handle per path, kept so that libcurl loads
 * the CA file once, as a long-lived agent would; the connection is never
 * reused); the times in ms. Returns 0 when the whole stream came. */
static int one_call(CURL *c, const char *url, const char *cafile, double *ttfb_ms, double *total_ms) {
        static const char body[] = "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"max_tokens\":1024,"
                                   "\"messages\":[{\"role\":\"user\",\"content\":\"bench\"}]}";
        struct reply r = {0};
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        h = curl_slist_append(h, "x-api-key: paddock-gateway-dummy");
        h = curl_slist_append(h, "anthropic-version: 2023-06-01");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
        if (cafile)
                curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
        double t0 = mono_s();
        CURLcode rc = curl_easy_perform(c);
        double t1 = mono_s();
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        *ttfb_ms = (r.first_s - t0) * 1000;
        *total_ms = (t1 - t0) * 1000;
        if (rc != CURLE_OK || status != 200 || !r.saw_stop) {
                fprintf(stderr, "call to %s failed: %s, status %ld\n", url, curl_easy_strerror(rc), status);
                return -1;
        }
        return 0;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
        qsort(v, (size_t)n, sizeof *v, cmp);
        int i = (int)(p / 100.0 * (n - 1) + 0.5);
        return v[i < n ? i : n - 1];
}

static int sh(const char *cmd) {
        int r = system(cmd);
        return r == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
        int calls = argc > 1 ? atoi(argv[1]) : 200, chunks = argc > 2 ? atoi(argv[2]) : 200;
        if (calls < 2 || chunks < 8) {
                fprintf(stderr, "usage: paddock-gateway-bench [calls >= 2, 200] [chunks per stream >= 8, 200]\n");
                return 2;
        }
        const char *src = getenv("PADDOCK_SOURCE_DIR") ? getenv("PADDOCK_SOURCE_DIR") : ".";
        char sim[1024], dir[] = "/tmp/paddock-gwbench-XXXXXX", cmd[4096];
        snprintf(sim, sizeof sim, "%s/tests/modelsim/modelsim.py", src);
        if (access(sim, R_OK) != 0 || !mkdtemp(dir)) {
                fprintf(stderr, "cannot find %s (run from the repository or set PADDOCK_SOURCE_DIR)\n", sim);
                return 2;
        }
        snprintf(cmd, sizeof cmd, "python3 %s gen-ca %s/ca", sim, dir);
        if (sh(cmd) < 0)
                return 1;
        /* one turn per call on both paths: a text of (chunks - 7) words is
         * message_start, ping, block start, a delta per word, block stop,
         * message_delta and message_stop = chunks SSE events */
        char script[600];
        snprintf(script, sizeof script, "%s/script.json", dir);
        json_t *turns = json_array();
        char *text = calloc(1, (size_t)(chunks - 7) * 5 + 1);
        if (!text)
                return 1;
        for (int i = 0; i < chunks - 7; i++)
                memcpy(text + 5 * i - (i ? 1 : 0), i ? " word" : "word", i ? 5 : 4);
        for (int i = 0; i < 2 * calls + 4; i++)
                json_array_append_new(turns, json_pack("{s:s,s:{s:i,s:i}}", "text", text, "usage", "input_tokens",
                                                       2000, "output_tokens", chunks - 7));
        free(text);
        json_t *sc = json_pack("{s:o}", "anthropic", turns);
        json_dump_file(sc, script, 0);
        json_decref(sc);

        char ready[600], log[600], cert[600], key[600], ca[600];
        snprintf(ready, sizeof ready, "%s/ready.json", dir);
        snprintf(log, sizeof log, "%s/requests.jsonl", dir);
        snprintf(cert, sizeof cert, "%s/ca/server.pem", dir);
        snprintf(key, sizeof key, "%s/ca/server.key", dir);
        snprintf(ca, sizeof ca, "%s/ca/ca.pem", dir);
        pid_t pid = fork();
        if (pid == 0) {
                execlp("python3", "python3", sim, "serve", "--script", script, "--log", log, "--https-port", "0",
                       "--cert", cert, "--key", key, "--ready", ready, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 6000 && access(ready, F_OK) != 0; i++)
                usleep(10000);
        json_t *p = json_load_file(ready, 0, NULL);
        int port = (int)json_integer_value(json_object_get(p, "https"));
        json_decref(p);
        int rc = 1;
        struct gateway_run *gr = NULL;
        CURL *hd = NULL, *hg = NULL;
        double *v = calloc((size_t)calls * 4, sizeof *v);
        if (port <= 0 || !v) {
                fprintf(stderr, "the model simulator did not start\n");
                goto out;
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        struct gateway_settings s = GATEWAY_SETTINGS_DEFAULT;
        s.ca_bundle = ca;
        struct err_detail err = {0};
        char upstream[64], direct[128], via[128];
        snprintf(upstream, sizeof upstream, "https://127.0.0.1:%d", port);
        static const char *const models[] = {"claude-opus-4-8"};
        struct gateway_route route = {.provider = GATEWAY_ANTHROPIC, .upstream = upstream, .models = models,
                                      .n_models = 1, .key = REAL_KEY, .key_len = strlen(REAL_KEY),
                                      .usd_per_mtok_input = 15, .usd_per_mtok_output = 75};
        if (gateway_configure(&s, &err) < 0 ||
            gateway_run_start("bench-run", NULL, &route, 1, NULL, NULL, NULL, &gr, &err) < 0) {
                fprintf(stderr, "could not start the gateway: %s\n", err.message);
                goto out;
        }
        snprintf(direct, sizeof direct, "https://127.0.0.1:%d/v1/messages", port);
        snprintf(via, sizeof via, "http://127.0.0.1:%d/v1/messages", gateway_run_port(gr));
        double *d_ttfb = v, *d_total = v + calls, *g_ttfb = v + 2 * calls, *g_total = v + 3 * calls, warm_a, warm_b;
        /* warm-up, then interleaved so drift in the machine's load hits both */
        hd = curl_easy_init();
        hg = curl_easy_init();
        if (!hd || !hg || one_call(hd, direct, ca, &warm_a, &warm_b) < 0 || one_call(hg, via, NULL, &warm_a, &warm_b) < 0)
                goto out;
        for (int i = 0; i < calls; i++)
                if (one_call(hd, direct, ca, &d_ttfb[i], &d_total[i]) < 0 ||
                    one_call(hg, via, NULL, &g_ttfb[i], &g_total[i]) < 0)
                        goto out;
        double dt50 = pct(d_ttfb, calls, 50), dt99 = pct(d_ttfb, calls, 99), gt50 = pct(g_ttfb, calls, 50),
               gt99 = pct(g_ttfb, calls, 99), dc50 = pct(d_total, calls, 50), dc99 = pct(d_total, calls, 99),
               gc50 = pct(g_total, calls, 50), gc99 = pct(g_total, calls, 99);
        printf("gateway overhead: %d streamed calls per path, %d SSE chunks each, new connection per call\n", calls,
               chunks);
        printf("%-26s %10s %10s %12s\n", "ms", "direct", "gateway", "added");
        printf("%-26s %10.2f %10.2f %+12.2f\n", "first event p50", dt50, gt50, gt50 - dt50);
        printf("%-26s %10.2f %10.2f %+12.2f\n", "first event p99", dt99, gt99, gt99 - dt99);
        printf("%-26s %10.2f %10.2f %+12.2f\n", "whole call p50", dc50, gc50, gc50 - dc50);
        printf("%-26s %10.2f %10.2f %+12.2f\n", "whole call p99", dc99, gc99, gc99 - dc99);
        struct gateway_totals t;
        gateway_run_totals(gr, &t);
        printf("gateway calls %llu, tokens in %llu out %llu\n", (unsigned long long)t.calls,
               (unsigned long long)t.tokens_in, (unsigned long long)t.tokens_out);
        rc = 0;
out:
        if (hd)
                curl_easy_cleanup(hd);
        if (hg)
                curl_easy_cleanup(hg);
        gateway_run_stop(gr);
        free(v);
        if (pid > 0) {
                kill(pid, SIGTERM);
                waitpid(pid, NULL, 0);
        }
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        (void)sh(cmd);
        return rc;
}
