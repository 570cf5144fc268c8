/* The model gateway (services/runner-agent/gateway.c, built as the library
 * paddock_runner_gateway) against the model simulator (tests/modelsim) over
 * HTTPS with a test CA this test generates, all on loopback: Anthropic and
 * OpenAI streaming calls made with a dummy key reach the simulator with the
 * route's real key and never the dummy one; the stream reaches the client
 * before the simulator sent its last event; each call is one model_call
 * event whose token counts equal the simulator's usage and whose cost follows
 * the route's prices; the run's totals add up; a CA that does not sign the
 * upstream's certificate fails closed (event with the TLS error, nothing
 * reaches the simulator); 429, 500, a cut stream and an unreachable upstream
 * reach the agent in the provider's error shape and the event says the
 * status. The run's limits (a second group, its own simulator): a streamed
 * call whose usage crosses max_tokens (or max_cost_usd) is cut there with the
 * provider's error event, the upstream connection closed, the limit told
 * once with its figures, and the next call refused without reaching the
 * simulator; per-model totals add up. Skipped (77) without python3 or
 * openssl. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../services/runner-agent/gateway.h"
#include "core/macro.h"
#include "net/addr_policy.h"

#define REAL_ANT "sk-ant-REAL-4f1c9e2a7b"
#define REAL_OAI "sk-oai-REAL-9d3e5b7c1a"
#define DUMMY "paddock-dummy-key-0000"

static char dir[] = "/tmp/paddock-gw-XXXXXX";
static char simlog[512], ca[512], wrong_ca[512];
static pid_t sim_pid = -1;
static int sim_port;
static struct gateway_run *gr;

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *events; /* every model_call, in order */

static void on_event(void *userdata, const char *kind, json_t *data) {
        (void)userdata;
        if (strcmp(kind, "model_call"))
                return;
        pthread_mutex_lock(&ev_lock);
        json_array_append_new(events, json_deep_copy(data));
        pthread_mutex_unlock(&ev_lock);
}

/* The n-th model_call (0-based), waiting up to 10 s: the event goes out
 * after the call's last byte, maybe after the client returned. */
static json_t *event_at(size_t n) {
        for (int i = 0; i < 1000; i++) {
                pthread_mutex_lock(&ev_lock);
                json_t *e = json_array_get(events, n);
                pthread_mutex_unlock(&ev_lock);
                if (e)
                        return e;
                usleep(10000);
        }
        return NULL;
}

static size_t n_events(void) {
        pthread_mutex_lock(&ev_lock);
        size_t n = json_array_size(events);
        pthread_mutex_unlock(&ev_lock);
        return n;
}

static double now_s(void) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The simulator's request log, one JSON object per request. */
static json_t *sim_log(void) {
        json_t *a = json_array();
        FILE *f = fopen(simlog, "r");
        char *line = NULL;
        size_t cap = 0;
        while (f && getline(&line, &cap, f) > 0)
                json_array_append_new(a, json_loads(line, 0, NULL));
        free(line);
        if (f)
                fclose(f);
        return a;
}

static char *slurp(const char *path) {
        FILE *f = fopen(path, "r");
        if (!f)
                return strdup("");
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *s = calloc(1, (size_t)n + 1);
        if (fread(s, 1, (size_t)n, f) != (size_t)n)
                s[0] = 0;
        fclose(f);
        return s;
}

struct reply {
        char *body;
        size_t len;
        double first_ts;    /* wall clock of the first body bytes */
        long status;
        CURLcode rc;
};

static size_t on_data(char *p, size_t sz, size_t n, void *userdata) {
        struct reply *r = userdata;
        if (!r->first_ts)
                r->first_ts = now_s();
        r->body = realloc(r->body, r->len + sz * n + 1);
        memcpy(r->body + r->len, p, sz * n);
        r->len += sz * n;
        r->body[r->len] = 0;
        return sz * n;
}

/* POST body to the gateway's path with the agent's dummy credential header. */
static struct reply call(const char *path, const char *auth_header, const char *body) {
        struct reply r = {0};
        CURL *c = curl_easy_init();
        char url[256];
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", gateway_run_port(gr), path);
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        h = curl_slist_append(h, auth_header);
        h = curl_slist_append(h, "anthropic-version: 2023-06-01");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        r.rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        if (!r.body)
                r.body = strdup("");
        return r;
}

static int sh(const char *fmt, ...) {
        char cmd[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof cmd, fmt, ap);
        va_end(ap);
        return system(cmd);
}

static const char *const script =
        "{\"anthropic\": ["
        /* 0: streamed text + tool call, slow enough to see it arrive piece by piece */
        "{\"text\": \"I will list the files now\", \"tool_calls\": [{\"name\": \"Bash\", \"input\": {\"command\": \"ls\"}}],"
        " \"usage\": {\"input_tokens\": 1234, \"output_tokens\": 56, \"cache_read_tokens\": 700, \"cache_write_tokens\": 80},"
        " \"chunk_delay_ms\": 150},"
        "{\"status\": 429},"
        "{\"status\": 500},"
        "{\"text\": \"this stream is cut\", \"usage\": {\"input_tokens\": 10, \"output_tokens\": 3}, \"cut_after\": 3},"
        /* 4: non-streaming (what Claude Code retries with when a stream broke) */
        "{\"text\": \"whole\", \"usage\": {\"input_tokens\": 40, \"output_tokens\": 2}},"
        /* 5: from inside a network namespace */
        "{\"text\": \"from the sandbox side\", \"usage\": {\"input_tokens\": 3, \"output_tokens\": 4}}"
        "], \"openai\": ["
        "{\"text\": \"patching\", \"tool_calls\": [{\"name\": \"exec_command\", \"arguments\": {\"cmd\": \"ls\"}},"
        " {\"name\": \"apply_patch\", \"custom\": \"*** Begin Patch\\n*** End Patch\\n\"}],"
        " \"usage\": {\"input_tokens\": 2000, \"output_tokens\": 99, \"cache_read_tokens\": 500}, \"chunk_delay_ms\": 100}"
        "]}";

static const char *const ant_models[] = {"claude-opus-4-8", "claude-haiku-4-5"};
static const char *const oai_models[] = {"gpt-5.5"};
static struct gateway_route routes[2];
static char ant_url[128], oai_url[128];

static int setup(void **state) {
        (void)state;
        if (!mkdtemp(dir))
                return -1;
        snprintf(simlog, sizeof simlog, "%s/requests.jsonl", dir);
        snprintf(ca, sizeof ca, "%s/ca/ca.pem", dir);
        snprintf(wrong_ca, sizeof wrong_ca, "%s/wrong/ca.pem", dir);
        const char *sim = PADDOCK_SOURCE_DIR "/tests/modelsim/modelsim.py";
        if (sh("python3 %s gen-ca %s/ca %s/wrong", sim, dir, dir) != 0)
                return -1;
        char path[600];
        snprintf(path, sizeof path, "%s/script.json", dir);
        FILE *f = fopen(path, "w");
        fputs(script, f);
        fclose(f);
        char ready[600], cert[600], key[600];
        snprintf(ready, sizeof ready, "%s/ready.json", dir);
        snprintf(cert, sizeof cert, "%s/ca/server.pem", dir);
        snprintf(key, sizeof key, "%s/ca/server.key", dir);
        sim_pid = fork();
        if (sim_pid == 0) {
                execlp("python3", "python3", sim, "serve", "--script", path, "--log", simlog, "--https-port", "0",
                       "--cert", cert, "--key", key, "--ready", ready, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 6000 && access(ready, F_OK) != 0; i++) /* a loaded CI machine: up to 60 s */
                usleep(10000);
        json_t *p = json_load_file(ready, 0, NULL);
        sim_port = (int)json_integer_value(json_object_get(p, "https"));
        json_decref(p);
        if (sim_port <= 0)
                return -1;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        events = json_array();
        struct gateway_settings s = GATEWAY_SETTINGS_DEFAULT;
        s.ca_bundle = ca;
        s.connect_timeout_ms = 5000;
        struct err_detail err = {0};
        if (gateway_configure(&s, &err) < 0)
                return -1;
        /* Anthropic by IP literal, OpenAI by name (SNI + name verification) */
        snprintf(ant_url, sizeof ant_url, "https://127.0.0.1:%d", sim_port);
        snprintf(oai_url, sizeof oai_url, "https://localhost:%d/", sim_port);
        routes[0] = (struct gateway_route){.provider = GATEWAY_ANTHROPIC, .upstream = ant_url, .models = ant_models,
                                           .n_models = 2, .key = REAL_ANT, .key_len = strlen(REAL_ANT),
                                           .usd_per_mtok_input = 15, .usd_per_mtok_output = 75,
                                           .usd_per_mtok_cache_read = 1.5, .usd_per_mtok_cache_write = 18.75};
        routes[1] = (struct gateway_route){.provider = GATEWAY_OPENAI, .upstream = oai_url, .models = oai_models,
                                           .n_models = 1, .key = REAL_OAI, .key_len = strlen(REAL_OAI),
                                           .usd_per_mtok_input = 1.25, .usd_per_mtok_output = 10,
                                           .usd_per_mtok_cache_read = 0.125};
        return gateway_run_start("run-gw-test", NULL, routes, 2, NULL, on_event, NULL, &gr, &err);
}

static int teardown(void **state) {
        (void)state;
        gr = gateway_run_stop(gr);
        if (sim_pid > 0) {
                kill(sim_pid, SIGTERM);
                waitpid(sim_pid, NULL, 0);
        }
        sh("rm -rf %s", dir);
        json_decref(events);
        return 0;
}

static const char *str(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "";
}

static json_int_t num(json_t *o, const char *k) {
        return json_integer_value(json_object_get(o, k));
}

static void test_anthropic_stream(void **state) {
        (void)state;
        struct reply r = call("/v1/messages?beta=true", "x-api-key: " DUMMY,
                              "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"max_tokens\":100,"
                              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"unknown_field\":{\"x\":1}}");
        assert_int_equal(r.rc, CURLE_OK);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"type\": \"tool_use\""));
        assert_non_null(strstr(r.body, "message_stop"));
        json_t *log = sim_log();
        assert_int_equal(json_array_size(log), 1);
        json_t *req = json_array_get(log, 0);
        /* the real key arrived, over TLS, at the path the agent asked for */
        assert_string_equal(str(json_object_get(req, "headers"), "x-api-key"), REAL_ANT);
        assert_null(json_object_get(json_object_get(req, "headers"), "authorization"));
        assert_true(json_is_true(json_object_get(req, "tls")));
        assert_string_equal(str(req, "path"), "/v1/messages?beta=true");
        assert_string_equal(str(json_object_get(req, "body"), "model"), "claude-opus-4-8");
        /* incremental: the first bytes reached us before the simulator sent its
         * last event (it waits 150 ms between events) */
        double last = json_real_value(json_object_get(req, "last_byte_ts"));
        assert_true(r.first_ts > 0 && r.first_ts < last - 0.5);
        json_decref(log);

        json_t *e = event_at(0);
        assert_non_null(e);
        assert_string_equal(str(e, "provider"), "anthropic");
        assert_string_equal(str(e, "model"), "claude-opus-4-8");
        assert_int_equal(num(e, "status"), 200);
        assert_int_equal(num(e, "input_tokens"), 1234);
        assert_int_equal(num(e, "output_tokens"), 56);
        assert_int_equal(num(e, "cache_read_tokens"), 700);
        assert_int_equal(num(e, "cache_write_tokens"), 80);
        assert_null(json_object_get(e, "error"));
        double want = (1234 * 15 + 56 * 75 + 700 * 1.5 + 80 * 18.75) / 1e6;
        double cost = json_real_value(json_object_get(e, "cost_usd"));
        assert_true(cost > want - 1e-9 && cost < want + 1e-9);
        assert_true(num(e, "latency_ms") >= num(e, "ttft_ms") && num(e, "latency_ms") >= 1000);
        free(r.body);
}

static void test_openai_stream(void **state) {
        (void)state;
        struct reply r = call("/v1/responses", "Authorization: Bearer " DUMMY,
                              "{\"model\":\"gpt-5.5\",\"stream\":true,\"input\":[],\"tools\":[]}");
        assert_int_equal(r.rc, CURLE_OK);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "response.completed"));
        assert_non_null(strstr(r.body, "custom_tool_call"));
        json_t *log = sim_log();
        json_t *req = json_array_get(log, json_array_size(log) - 1);
        assert_string_equal(str(req, "provider"), "openai");
        assert_string_equal(str(json_object_get(req, "headers"), "authorization"), "Bearer " REAL_OAI);
        assert_null(json_object_get(json_object_get(req, "headers"), "x-api-key"));
        assert_string_equal(str(req, "path"), "/v1/responses");
        assert_true(r.first_ts < json_real_value(json_object_get(req, "last_byte_ts")) - 0.3);
        json_decref(log);
        json_t *e = event_at(1);
        assert_non_null(e);
        assert_string_equal(str(e, "provider"), "openai");
        assert_string_equal(str(e, "model"), "gpt-5.5");
        assert_int_equal(num(e, "status"), 200);
        assert_int_equal(num(e, "input_tokens"), 2000);
        assert_int_equal(num(e, "output_tokens"), 99);
        assert_int_equal(num(e, "cache_read_tokens"), 500);
        double want = ((2000 - 500) * 1.25 + 99 * 10 + 500 * 0.125) / 1e6;
        double cost = json_real_value(json_object_get(e, "cost_usd"));
        assert_true(cost > want - 1e-9 && cost < want + 1e-9);
        free(r.body);
}

/* 429 and 500 reach the agent as the provider answered them */
static void test_upstream_errors(void **state) {
        (void)state;
        static const char body[] = "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"messages\":[]}";
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY, body);
        assert_int_equal(r.status, 429);
        assert_non_null(strstr(r.body, "rate_limit_error"));
        json_t *e = event_at(2);
        assert_int_equal(num(e, "status"), 429);
        assert_non_null(strstr(str(e, "error"), "rate limited"));
        free(r.body);
        r = call("/v1/messages", "x-api-key: " DUMMY, body);
        assert_int_equal(r.status, 500);
        assert_non_null(strstr(r.body, "api_error"));
        e = event_at(3);
        assert_int_equal(num(e, "status"), 500);
        assert_true(str(e, "error")[0]);
        free(r.body);
}

/* a stream cut short stays unterminated towards the agent (it sees the
 * failure) and the event says so, with what usage had arrived */
static void test_cut_stream(void **state) {
        (void)state;
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY,
                              "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"messages\":[]}");
        assert_int_not_equal(r.rc, CURLE_OK);
        assert_null(strstr(r.body, "message_stop"));
        json_t *e = event_at(4);
        assert_int_equal(num(e, "status"), 502);
        assert_non_null(strstr(str(e, "error"), "before its end"));
        assert_int_equal(num(e, "input_tokens"), 10);
        assert_int_equal(num(e, "output_tokens"), 1); /* message_start's: the delta never came */
        free(r.body);
}

static void test_non_streaming(void **state) {
        (void)state;
        struct reply r = call("/v1/messages?beta=true", "x-api-key: " DUMMY,
                              "{\"model\":\"claude-haiku-4-5\",\"messages\":[]}");
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"whole\""));
        json_t *e = event_at(5);
        assert_int_equal(num(e, "status"), 200);
        assert_string_equal(str(e, "model"), "claude-haiku-4-5");
        assert_int_equal(num(e, "input_tokens"), 40);
        assert_int_equal(num(e, "output_tokens"), 2);
        free(r.body);
}

/* refused before anything goes upstream: a model the run may not use */
static void test_model_not_allowed(void **state) {
        (void)state;
        json_t *log = sim_log();
        size_t before = json_array_size(log), ev_before = n_events();
        json_decref(log);
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY, "{\"model\":\"claude-other\",\"stream\":true}");
        assert_int_equal(r.status, 403);
        assert_non_null(strstr(r.body, "permission_error"));
        json_t *e = event_at(ev_before);
        assert_int_equal(num(e, "status"), 403);
        assert_string_equal(str(e, "model"), "claude-other");
        log = sim_log();
        assert_int_equal(json_array_size(log), before);
        json_decref(log);
        free(r.body);
}

/* a CA that did not sign the upstream's certificate: no request, no key, out */
static void test_wrong_ca_fails_closed(void **state) {
        (void)state;
        struct gateway_settings s = GATEWAY_SETTINGS_DEFAULT;
        s.ca_bundle = wrong_ca;
        struct err_detail err = {0};
        assert_int_equal(gateway_configure(&s, &err), 0);
        json_t *log = sim_log();
        size_t before = json_array_size(log), ev_before = n_events();
        json_decref(log);
        struct reply r = call("/v1/responses", "Authorization: Bearer " DUMMY,
                              "{\"model\":\"gpt-5.5\",\"stream\":true}");
        assert_int_equal(r.status, 502);
        assert_non_null(strstr(r.body, "server_error"));
        json_t *e = event_at(ev_before);
        assert_int_equal(num(e, "status"), 502);
        assert_non_null(strstr(str(e, "error"), "certificate verification failed"));
        log = sim_log();
        assert_int_equal(json_array_size(log), before);
        json_decref(log);
        free(r.body);
        s.ca_bundle = ca;
        assert_int_equal(gateway_configure(&s, &err), 0);
}

/* an upstream address inside the platform egress floor (here: loopback, one
 * of its fixed classes) is never connected to, whatever the route says: the
 * agent gets a 502 naming the floor, the upstream sees nothing */
static void test_floor_refuses_upstream(void **state) {
        (void)state;
        struct addr_floor *floor = NULL;
        struct err_detail err = {0};
        assert_int_equal(addr_floor_new("", &floor, &err), 0);
        struct gateway_settings s = GATEWAY_SETTINGS_DEFAULT;
        s.ca_bundle = ca;
        s.floor = floor;
        assert_int_equal(gateway_configure(&s, &err), 0);
        json_t *log = sim_log();
        size_t before = json_array_size(log), ev_before = n_events();
        json_decref(log);
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY,
                              "{\"model\":\"claude-opus-4-8\",\"stream\":true}");
        assert_int_equal(r.status, 502);
        json_t *e = event_at(ev_before);
        assert_int_equal(num(e, "status"), 502);
        assert_non_null(strstr(str(e, "error"), "platform egress floor (loopback)"));
        log = sim_log();
        assert_int_equal(json_array_size(log), before);
        json_decref(log);
        free(r.body);
        s.floor = NULL;
        assert_int_equal(gateway_configure(&s, &err), 0);
        addr_floor_free(floor);
}

static void test_unreachable_upstream(void **state) {
        (void)state;
        /* a loopback port nobody listens on */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        close(fd);
        char url[64];
        snprintf(url, sizeof url, "https://127.0.0.1:%d", ntohs(sa.sin_port));
        struct gateway_route rt = routes[0];
        rt.upstream = url;
        struct gateway_run *main_gr = gr;
        struct err_detail err = {0};
        assert_int_equal(gateway_run_start("run-gw-unreachable", NULL, &rt, 1, NULL, on_event, NULL, &gr, &err), 0);
        size_t ev_before = n_events();
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY, "{\"model\":\"claude-opus-4-8\",\"stream\":true}");
        assert_int_equal(r.status, 502);
        assert_non_null(strstr(r.body, "\"type\":\"error\""));
        json_t *e = event_at(ev_before);
        assert_int_equal(num(e, "status"), 502);
        assert_non_null(strstr(str(e, "error"), "unreachable"));
        free(r.body);
        gr = gateway_run_stop(gr);
        gr = main_gr;
}

/* the run's totals are the sum of its calls; and after all of it the dummy
 * key never reached the simulator, the real keys only in their header */
static void test_totals_and_keys(void **state) {
        (void)state;
        struct gateway_totals t;
        gateway_run_totals(gr, &t);
        assert_int_equal(t.input_tokens, 1234 + 2000 + 10 + 40);
        assert_int_equal(t.output_tokens, 56 + 99 + 1 + 2);
        assert_int_equal(t.cache_read_tokens, 700 + 500);
        assert_int_equal(t.cache_write_tokens, 80);
        assert_true(t.calls >= 7);
        _cleanup_free_ char *all = slurp(simlog);
        assert_null(strstr(all, DUMMY));
        assert_non_null(strstr(all, REAL_ANT));
        /* warm-up HEAD / answered by the gateway itself */
        CURL *c = curl_easy_init();
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/", gateway_run_port(gr));
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        long st = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        assert_int_equal(st, 200);
        curl_easy_cleanup(c);
}

static void test_bad_routes_refused(void **state) {
        (void)state;
        static const char *const bad[] = {"http://127.0.0.1:1", "https://", "https://a:0", "https://a:99999",
                                          "https://a b", "https://h/p?q", "https://[zz]"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                struct gateway_route rt = routes[0];
                rt.upstream = bad[i];
                struct gateway_run *x = NULL;
                struct err_detail err = {0};
                assert_int_equal(gateway_run_start("run-bad", NULL, &rt, 1, NULL, on_event, NULL, &x, &err), -EINVAL);
                assert_null(x);
        }
        struct gateway_route rt = routes[0];
        rt.key = "k\r\nx-evil: 1";
        rt.key_len = strlen(rt.key);
        struct gateway_run *x = NULL;
        assert_int_equal(gateway_run_start("run-bad", NULL, &rt, 1, NULL, on_event, NULL, &x, NULL), -EINVAL);
}


/* Where a run gets it: bound on 127.0.0.1:GATEWAY_PORT inside the sandbox's
 * network namespace (one this test makes with ip netns), reachable from
 * there, the call still reaching the upstream from the runner's side; not
 * listening in the runner's own namespace. Skipped without root. */
struct ns_call {
        const char *ns;
        struct reply r;
        int setns_err;
};

static void *call_in_netns(void *userdata) {
        struct ns_call *nc = userdata;
        int fd = open(nc->ns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
                nc->setns_err = errno;
                if (fd >= 0)
                        close(fd);
                return NULL;
        }
        close(fd);
        struct reply r = {0};
        CURL *c = curl_easy_init();
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/messages", GATEWAY_PORT);
        struct curl_slist *h = curl_slist_append(NULL, "x-api-key: " DUMMY);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"model\":\"claude-opus-4-8\",\"stream\":true}");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        r.rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        nc->r = r;
        return NULL;
}

static void test_listens_in_netns(void **state) {
        (void)state;
        char name[64], path[128];
        snprintf(name, sizeof name, "paddock-gwtest-%d", (int)getpid());
        snprintf(path, sizeof path, "/run/netns/%s", name);
        if (getuid() != 0 || sh("ip netns add %s 2>/dev/null && ip -n %s link set lo up", name, name) != 0) {
                skip();
                return;
        }
        struct gateway_run *ns_gr = NULL;
        struct err_detail err = {0};
        assert_int_equal(gateway_run_start("run-gw-netns", path, routes, 2, NULL, on_event, NULL, &ns_gr, &err), 0);
        /* not in our namespace */
        CURL *c = curl_easy_init();
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/", GATEWAY_PORT);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        assert_int_equal(curl_easy_perform(c), CURLE_COULDNT_CONNECT);
        curl_easy_cleanup(c);
        size_t ev_before = n_events();
        struct ns_call nc = {.ns = path};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, call_in_netns, &nc), 0);
        pthread_join(t, NULL);
        assert_int_equal(nc.setns_err, 0);
        assert_int_equal(nc.r.rc, CURLE_OK);
        assert_int_equal(nc.r.status, 200);
        assert_non_null(strstr(nc.r.body ? nc.r.body : "", "message_stop"));
        json_t *e = event_at(ev_before);
        assert_non_null(e);
        assert_int_equal(num(e, "status"), 200);
        free(nc.r.body);
        gateway_run_stop(ns_gr);
        sh("ip netns del %s", name);
}


/* ---- limits: a simulator of their own, a gateway run per test ---- */

static char ldir[] = "/tmp/paddock-gwl-XXXXXX";
static char llog[512];
static pid_t lsim_pid = -1;
static int lsim_port;
static char lant_url[128], loai_url[128];

struct told {
        int n;
        char limit[32];
        double value, used;
};

static void on_limit(void *userdata, const char *limit, double value, double used) {
        struct told *t = userdata;
        pthread_mutex_lock(&ev_lock);
        t->n++;
        snprintf(t->limit, sizeof t->limit, "%s", limit);
        t->value = value;
        t->used = used;
        pthread_mutex_unlock(&ev_lock);
}

static const char *const limits_script =
        "{\"anthropic\": ["
        /* 0: fits until message_delta says 500 output tokens: 600 + 500 > 1000 */
        "{\"text\": \"one two three four five\", \"usage\": {\"input_tokens\": 600, \"output_tokens\": 500},"
        " \"chunk_delay_ms\": 20},"
        /* 1: message_start alone is over (5000 input), 60 more events follow slowly */
        "{\"text\": \"w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w"
        " w w w w w w w w w w\", \"usage\": {\"input_tokens\": 5000, \"output_tokens\": 10}, \"chunk_delay_ms\": 30},"
        /* 2: exactly 400 */
        "{\"text\": \"exactly at the limit\", \"usage\": {\"input_tokens\": 300, \"output_tokens\": 100}}"
        "], \"openai\": ["
        /* 0: 2000 in (500 cached), 1000 out at 1.25/10/0.125 per Mtok = 0.0119375 USD > 0.01 */
        "{\"text\": \"costly answer\", \"usage\": {\"input_tokens\": 2000, \"output_tokens\": 1000,"
        " \"cache_read_tokens\": 500}}"
        "]}";

static int limits_setup(void **state) {
        (void)state;
        if (!mkdtemp(ldir))
                return -1;
        snprintf(llog, sizeof llog, "%s/requests.jsonl", ldir);
        const char *sim = PADDOCK_SOURCE_DIR "/tests/modelsim/modelsim.py";
        if (sh("python3 %s gen-ca %s/ca", sim, ldir) != 0)
                return -1;
        char path[600], ready[600], cert[600], key[600], cafile[600];
        snprintf(path, sizeof path, "%s/script.json", ldir);
        FILE *f = fopen(path, "w");
        fputs(limits_script, f);
        fclose(f);
        snprintf(ready, sizeof ready, "%s/ready.json", ldir);
        snprintf(cert, sizeof cert, "%s/ca/server.pem", ldir);
        snprintf(key, sizeof key, "%s/ca/server.key", ldir);
        snprintf(cafile, sizeof cafile, "%s/ca/ca.pem", ldir);
        lsim_pid = fork();
        if (lsim_pid == 0) {
                execlp("python3", "python3", sim, "serve", "--script", path, "--log", llog, "--https-port", "0",
                       "--cert", cert, "--key", key, "--ready", ready, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 6000 && access(ready, F_OK) != 0; i++)
                usleep(10000);
        json_t *p = json_load_file(ready, 0, NULL);
        lsim_port = (int)json_integer_value(json_object_get(p, "https"));
        json_decref(p);
        if (lsim_port <= 0)
                return -1;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        events = json_array();
        struct gateway_settings s = GATEWAY_SETTINGS_DEFAULT;
        s.ca_bundle = cafile;
        s.connect_timeout_ms = 5000;
        struct err_detail err = {0};
        if (gateway_configure(&s, &err) < 0)
                return -1;
        snprintf(lant_url, sizeof lant_url, "https://127.0.0.1:%d", lsim_port);
        snprintf(loai_url, sizeof loai_url, "https://127.0.0.1:%d", lsim_port);
        snprintf(simlog, sizeof simlog, "%s", llog); /* sim_log() reads this simulator's log */
        return 0;
}

static int limits_teardown(void **state) {
        (void)state;
        if (lsim_pid > 0) {
                kill(lsim_pid, SIGTERM);
                waitpid(lsim_pid, NULL, 0);
        }
        sh("rm -rf %s", ldir);
        json_decref(events);
        events = NULL;
        return 0;
}

/* A gateway run with these limits on the limits simulator. */
static void start_limited(uint64_t max_tokens, double max_cost, struct told *t) {
        static struct gateway_route lr[2];
        lr[0] = (struct gateway_route){.provider = GATEWAY_ANTHROPIC, .upstream = lant_url, .models = ant_models,
                                       .n_models = 2, .key = REAL_ANT, .key_len = strlen(REAL_ANT),
                                       .usd_per_mtok_input = 15, .usd_per_mtok_output = 75};
        lr[1] = (struct gateway_route){.provider = GATEWAY_OPENAI, .upstream = loai_url, .models = oai_models,
                                       .n_models = 1, .key = REAL_OAI, .key_len = strlen(REAL_OAI),
                                       .usd_per_mtok_input = 1.25, .usd_per_mtok_output = 10,
                                       .usd_per_mtok_cache_read = 0.125};
        struct gateway_limits lim = {.max_tokens = max_tokens, .max_cost_usd = max_cost, .on_limit = on_limit,
                                     .userdata = t};
        struct err_detail err = {0};
        assert_int_equal(gateway_run_start("run-gw-limits", NULL, lr, 2, &lim, on_event, NULL, &gr, &err), 0);
}

static size_t log_size(void) {
        json_t *log = sim_log();
        size_t n = json_array_size(log);
        json_decref(log);
        return n;
}

/* The simulator logs a request once it is done with it (a cut one when its
 * write fails): waits up to 10 s for n requests logged. */
static size_t wait_log(size_t n) {
        size_t k = log_size();
        for (int i = 0; i < 1000 && k < n; i++) {
                usleep(10000);
                k = log_size();
        }
        return k;
}

static void test_max_tokens_cuts_the_crossing_call(void **state) {
        (void)state;
        struct told t = {0};
        start_limited(1000, 0, &t);
        size_t ev0 = n_events();
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY,
                              "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"messages\":[]}");
        /* a clean end of stream: the text before the crossing, then the provider's error event */
        assert_int_equal(r.rc, CURLE_OK);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "five"));
        assert_null(strstr(r.body, "message_delta\", \"delta\""));
        assert_null(strstr(r.body, "\"output_tokens\": 500"));
        assert_null(strstr(r.body, "message_stop"));
        assert_non_null(strstr(r.body, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\""));
        assert_non_null(strstr(r.body, "max_tokens of 1000"));
        json_t *e = event_at(ev0);
        assert_non_null(e);
        assert_string_equal(str(e, "status"), "limit_exceeded");
        assert_string_equal(str(e, "limit"), "max_tokens");
        assert_int_equal(num(e, "input_tokens"), 600);
        assert_int_equal(num(e, "output_tokens"), 500);
        /* told once, with the figures */
        assert_int_equal(t.n, 1);
        assert_string_equal(t.limit, "max_tokens");
        assert_true(t.value == 1000 && t.used == 1100);

        /* the next call: refused, the simulator never sees it, not told again */
        size_t before = wait_log(1);
        assert_int_equal(before, 1);
        struct reply r2 = call("/v1/messages", "x-api-key: " DUMMY,
                               "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"messages\":[]}");
        assert_int_equal(r2.status, 400);
        assert_non_null(strstr(r2.body, "\"invalid_request_error\""));
        assert_non_null(strstr(r2.body, "max_tokens"));
        e = event_at(ev0 + 1);
        assert_non_null(e);
        assert_string_equal(str(e, "status"), "limit_exceeded");
        assert_int_equal(num(e, "input_tokens"), 0);
        usleep(200000);
        assert_int_equal(log_size(), before);
        assert_int_equal(t.n, 1);

        struct gateway_totals tot;
        gateway_run_totals(gr, &tot);
        assert_int_equal(tot.calls, 2);
        assert_int_equal(tot.tokens_in, 600);
        assert_int_equal(tot.tokens_out, 500);
        struct gateway_model_totals *m = NULL;
        assert_int_equal(gateway_run_model_totals(gr, &m), 1);
        assert_string_equal(m[0].model, "claude-opus-4-8");
        assert_int_equal(m[0].t.calls, 2);
        assert_int_equal(m[0].t.tokens_in + m[0].t.tokens_out, 1100);
        free(m);
        gr = gateway_run_stop(gr);
        free(r.body);
        free(r2.body);
}

/* crossed by message_start: nothing of the answer's text reaches the agent
 * and the upstream connection is closed while the simulator still streams */
static void test_cut_closes_the_upstream(void **state) {
        (void)state;
        struct told t = {0};
        start_limited(1000, 0, &t);
        size_t before = wait_log(1);
        double t0 = now_s();
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY,
                              "{\"model\":\"claude-haiku-4-5\",\"stream\":true,\"messages\":[]}");
        assert_int_equal(r.rc, CURLE_OK);
        assert_non_null(strstr(r.body, "event: error"));
        assert_null(strstr(r.body, "text_delta"));
        /* 60 events 30 ms apart: cut well before the simulator's end */
        assert_true(now_s() - t0 < 1.5);
        assert_int_equal(t.n, 1);
        assert_true(t.value == 1000 && t.used == 5001);
        /* the simulator's write fails once we closed (it logs the request then) */
        json_t *rec = NULL;
        for (int i = 0; i < 500 && !rec; i++) {
                json_t *log = sim_log();
                if (json_array_size(log) > before) {
                        rec = json_deep_copy(json_array_get(log, before));
                }
                json_decref(log);
                if (!rec)
                        usleep(10000);
        }
        assert_non_null(rec);
        assert_non_null(json_object_get(rec, "client_error"));
        json_decref(rec);
        gr = gateway_run_stop(gr);
        free(r.body);
}

/* max_cost_usd on an OpenAI stream: usage only at response.completed, which
 * is withheld; response.failed (insufficient_quota) ends the stream */
static void test_max_cost_usd(void **state) {
        (void)state;
        struct told t = {0};
        start_limited(0, 0.01, &t);
        size_t ev0 = n_events();
        struct reply r = call("/v1/responses", "Authorization: Bearer " DUMMY,
                              "{\"model\":\"gpt-5.5\",\"stream\":true,\"input\":[]}");
        assert_int_equal(r.rc, CURLE_OK);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "costly"));
        assert_null(strstr(r.body, "\"type\": \"response.completed\""));
        assert_non_null(strstr(r.body, "event: response.failed\ndata: "));
        assert_non_null(strstr(r.body, "\"code\":\"insufficient_quota\""));
        json_t *e = event_at(ev0);
        assert_non_null(e);
        assert_string_equal(str(e, "status"), "limit_exceeded");
        assert_string_equal(str(e, "limit"), "max_cost_usd");
        double want = ((2000 - 500) * 1.25 + 1000 * 10 + 500 * 0.125) / 1e6;
        assert_int_equal(t.n, 1);
        assert_string_equal(t.limit, "max_cost_usd");
        assert_true(t.value == 0.01 && t.used > want - 1e-12 && t.used < want + 1e-12);
        size_t before = wait_log(4);
        assert_int_equal(before, 4);
        struct reply r2 = call("/v1/responses", "Authorization: Bearer " DUMMY,
                               "{\"model\":\"gpt-5.5\",\"stream\":true,\"input\":[]}");
        assert_int_equal(r2.status, 429);
        assert_non_null(strstr(r2.body, "\"code\":\"insufficient_quota\""));
        usleep(200000);
        assert_int_equal(log_size(), before);
        assert_int_equal(t.n, 1);
        struct gateway_totals tot;
        gateway_run_totals(gr, &tot);
        assert_int_equal(tot.tokens_in, 2000); /* OpenAI's input includes its cached tokens */
        assert_int_equal(tot.tokens_out, 1000);
        assert_true(tot.cost_usd > want - 1e-12 && tot.cost_usd < want + 1e-12);
        gr = gateway_run_stop(gr);
        free(r.body);
        free(r2.body);
}

/* a call that ends exactly on max_tokens is whole (not crossed); the next
 * one is refused, and that is when the run is told */
static void test_max_tokens_reached_exactly(void **state) {
        (void)state;
        struct told t = {0};
        start_limited(400, 0, &t);
        size_t before = wait_log(2);
        struct reply r = call("/v1/messages", "x-api-key: " DUMMY,
                              "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"messages\":[]}");
        assert_int_equal(r.rc, CURLE_OK);
        assert_non_null(strstr(r.body, "message_stop"));
        assert_null(strstr(r.body, "event: error"));
        assert_int_equal(t.n, 0);
        assert_int_equal(wait_log(before + 1), before + 1);
        struct reply r2 = call("/v1/messages", "x-api-key: " DUMMY,
                               "{\"model\":\"claude-opus-4-8\",\"stream\":true,\"messages\":[]}");
        assert_int_equal(r2.status, 400);
        assert_int_equal(t.n, 1);
        assert_true(t.value == 400 && t.used == 400);
        usleep(200000);
        assert_int_equal(log_size(), before + 1);
        gr = gateway_run_stop(gr);
        free(r.body);
        free(r2.body);
}

int main(void) {
        if (system("command -v python3 >/dev/null && command -v openssl >/dev/null") != 0)
                return 77;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_anthropic_stream),     cmocka_unit_test(test_openai_stream),
                cmocka_unit_test(test_upstream_errors),      cmocka_unit_test(test_cut_stream),
                cmocka_unit_test(test_non_streaming),        cmocka_unit_test(test_model_not_allowed),
                cmocka_unit_test(test_wrong_ca_fails_closed), cmocka_unit_test(test_floor_refuses_upstream),
                cmocka_unit_test(test_unreachable_upstream),
                cmocka_unit_test(test_totals_and_keys),      cmocka_unit_test(test_bad_routes_refused),
                cmocka_unit_test(test_listens_in_netns),
        };
        int failed = cmocka_run_group_tests(tests, setup, teardown);
        const struct CMUnitTest limits[] = {
                cmocka_unit_test(test_max_tokens_cuts_the_crossing_call),
                cmocka_unit_test(test_cut_closes_the_upstream),
                cmocka_unit_test(test_max_tokens_reached_exactly),
                cmocka_unit_test(test_max_cost_usd),
        };
        return failed + cmocka_run_group_tests(limits, limits_setup, limits_teardown);
}
