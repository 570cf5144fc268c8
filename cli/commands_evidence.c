/* Reviews and signed evidence bundles (issue 14 §1, §2; docs/CONTRACTS.md
 * "Reviews and the signed evidence bundle"): `paddock run review`, `run
 * reviews`, `run evidence`, and `paddock evidence keys|verify`.
 *
 * `evidence verify` checks a bundle offline, in this order, and names the
 * first part that fails: the archive's structure, the manifest's signature
 * (against the tenant's keys, saved from GET /v1/tenant/keys or fetched),
 * every file's size and SHA-256 against the manifest, no file missing or
 * extra, events seq contiguous from 1 without a duplicate, each audit
 * record's chain hash and the links between adjacent ones, and the included
 * artifacts against the artifact manifest. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "audit/audit_hash.h"
#include "cli.h"
#include "core/ids.h"
#include "crypto/sign.h"

#define EVIDENCE_FILE_MAX (1LL << 30) /* the largest bundle verify reads */

static bool run_id_ok(const char *what, const char *id) {
        if (!cli_valid_id(id)) {
                cli_error("%s: \"%s\" is not a run id", what, id);
                return false;
        }
        return true;
}

/* ---- run review / run reviews */

int cli_run_review(struct cli_ctx *ctx, int argc, char **argv) {
        bool approve = false, reject = false, escalate = false;
        const char *to = NULL, *comment = NULL;
        const struct cli_bind binds[] = {{.name = "approve", .set = &approve},
                                         {.name = "reject", .set = &reject},
                                         {.name = "escalate", .set = &escalate},
                                         {.name = "to", .str = &to},
                                         {.name = "message", .str = &comment},
                                         {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run review", pos[0]))
                return CLI_EXIT_USAGE;
        if (approve + reject + escalate != 1) {
                cli_error("run review: give exactly one of --approve, --reject, --escalate");
                return CLI_EXIT_USAGE;
        }
        if (escalate != (to != NULL)) {
                cli_error("run review: --to names who takes an escalation over (a user id or a role); only with "
                          "--escalate, and required there");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        const char *outcome = approve ? "approve" : reject ? "reject" : "escalate";
        _cleanup_json_ json_t *body = json_pack("{s:s}", "outcome", outcome);
        if (body && comment)
                json_object_set_new(body, "comment", json_string(comment));
        if (body && to)
                json_object_set_new(body, "to", json_string(to));
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (!body || asprintf(&path, "/v1/runs/%s/reviews", pos[0]) < 0 ||
            api_request(ctx, "POST", path, body, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("run %s reviewed: %s\n", pos[0], outcome);
        return CLI_EXIT_OK;
}

int cli_run_reviews(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run reviews", pos[0]))
                return CLI_EXIT_USAGE;
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "/v1/runs/%s/reviews", pos[0]) < 0)
                return CLI_EXIT_FAIL;
        _cleanup_json_ json_t *items = NULL;
        if ((r = cli_fetch_list(ctx, path, &items)) >= 0)
                return r;
        if (json_array_size(items) == 0) {
                printf("run %s has no reviews\n", pos[0]);
                return CLI_EXIT_OK;
        }
        _cleanup_json_ json_t *t = cli_table_new(5, "AT", "OUTCOME", "BY", "TO", "COMMENT");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
                json_t *by = json_object_get(it, "by");
                cli_table_add(t, json_string_value(json_object_get(it, "at")),
                              json_string_value(json_object_get(it, "outcome")),
                              json_string_value(json_object_get(by, "username")),
                              json_string_value(json_object_get(it, "to")),
                              json_string_value(json_object_get(it, "comment")));
        }
        cli_table_print(t);
        return CLI_EXIT_OK;
}

/* ---- raw downloads (the bundle is a tar, not JSON) */

struct mem {
        char *data;
        size_t len;
        bool too_large;
};

static size_t on_mem(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct mem *m = userdata;
        size_t n = size * nmemb;
        if (m->len + n > (size_t)EVIDENCE_FILE_MAX) {
                m->too_large = true;
                return 0;
        }
        char *d = realloc(m->data, m->len + n + 1);
        if (!d)
                return 0;
        memcpy(d + m->len, ptr, n);
        m->data = d;
        m->len += n;
        d[m->len] = '\0';
        return n;
}

static void curl_easy_cleanupp(CURL **c) {
        if (*c)
                curl_easy_cleanup(*c);
}

static void curl_slist_free_allp(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

/* GETs path into *ret (caller frees). 0, or -EPROTO after printing the
 * API's problem, or another negative errno after printing why. */
static int get_raw(const struct cli_ctx *ctx, const char *path, struct mem *ret) {
        _cleanup_(curl_easy_cleanupp) CURL *curl = curl_easy_init();
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_free_ char *url = NULL, *auth = NULL;
        if (!curl || asprintf(&url, "%s%s", ctx->api_url, path) < 0 ||
            asprintf(&auth, "Authorization: Bearer %s", ctx->token ? ctx->token : "") < 0)
                return -ENOMEM;
        headers = curl_slist_append(headers, auth);
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_mem);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, ret);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 600000L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "paddock-cli/" PADDOCK_VERSION);
        CURLcode c = curl_easy_perform(curl);
        explicit_bzero(auth, strlen(auth));
        if (c != CURLE_OK) {
                cli_error("GET %s: %s", path, ret->too_large ? "answer too large" : errbuf[0] ? errbuf : curl_easy_strerror(c));
                return -EIO;
        }
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status / 100 != 2) {
                _cleanup_json_ json_t *p = ret->data ? json_loads(ret->data, 0, NULL) : NULL;
                const char *detail = json_string_value(json_object_get(p, "detail"));
                const char *code = json_string_value(json_object_get(p, "code"));
                if (detail)
                        fprintf(stderr, "error: %s (%s)\n", detail, code ? code : "unknown");
                else
                        fprintf(stderr, "error: GET %s answered HTTP %ld\n", path, status);
                return -EPROTO;
        }
        return 0;
}

/* raw bytes for `run artifacts --show` (cli.h) */
int cli_get_raw(const struct cli_ctx *ctx, const char *path, char **ret_data, size_t *ret_len) {
        struct mem m = {0};
        int r = get_raw(ctx, path, &m);
        if (r < 0) {
                free(m.data);
                return r;
        }
        *ret_data = m.data;
        *ret_len = m.len;
        return 0;
}

int cli_run_evidence(struct cli_ctx *ctx, int argc, char **argv) {
        const char *out = NULL, *max = NULL;
        const struct cli_bind binds[] = {{.name = "output", .str = &out}, {.name = "max-artifact-bytes", .str = &max},
                                         {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        if (!run_id_ok("run evidence", pos[0]))
                return CLI_EXIT_USAGE;
        long long maxv = -1;
        if (max && !cli_parse_ll("--max-artifact-bytes", max, &maxv))
                return CLI_EXIT_USAGE;
        if (!out) {
                cli_error("run evidence: -o FILE names where the bundle goes");
                return CLI_EXIT_USAGE;
        }
        if (!cli_require_login(ctx))
                return CLI_EXIT_FAIL;
        _cleanup_free_ char *path = NULL;
        if ((maxv >= 0 ? asprintf(&path, "/v1/runs/%s/evidence?max_artifact_bytes=%lld", pos[0], maxv)
                       : asprintf(&path, "/v1/runs/%s/evidence", pos[0])) < 0)
                return CLI_EXIT_FAIL;
        struct mem m = {0};
        if (get_raw(ctx, path, &m) < 0) {
                free(m.data);
                return CLI_EXIT_FAIL;
        }
        /* written whole to a temporary name, then renamed: never half a bundle under FILE */
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.partial", out) < 0) {
                free(m.data);
                return CLI_EXIT_FAIL;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        bool ok = fd >= 0;
        for (size_t off = 0; ok && off < m.len;) {
                ssize_t w = write(fd, m.data + off, m.len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                ok = w > 0;
                off += ok ? (size_t)w : 0;
        }
        if (fd >= 0 && (fsync(fd) < 0 || close(fd) < 0))
                ok = false;
        free(m.data);
        if (!ok || rename(tmp, out) < 0) {
                cli_error("run evidence: could not write %s: %m", out);
                unlink(tmp);
                return CLI_EXIT_FAIL;
        }
        if (!ctx->json)
                printf("evidence of run %s saved to %s (%zu bytes); check it with `paddock evidence verify %s`\n",
                       pos[0], out, m.len, out);
        else
                printf("{\"run\":\"%s\",\"file\":\"%s\",\"bytes\":%zu}\n", pos[0], out, m.len);
        return CLI_EXIT_OK;
}

/* ---- evidence keys */

static int evidence_keys(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_get(ctx, "/v1/tenant/keys", &resp) < 0)
                return CLI_EXIT_FAIL;
        /* always the API's JSON: it is what `evidence verify --keys` reads */
        cli_print_json(resp.body);
        return CLI_EXIT_OK;
}

/* A new active key; the one before stays published (retired) for old bundles. */
static int evidence_rotate_key(struct cli_ctx *ctx, int argc, char **argv) {
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse_login(ctx, argc, argv, NULL, pos, &npos)) >= 0)
                return r;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (api_request(ctx, "POST", "/v1/tenant/keys/rotate", NULL, NULL, &resp) < 0)
                return CLI_EXIT_FAIL;
        if (ctx->json)
                cli_print_json(resp.body);
        else
                printf("evidence signing key %s\n", json_string_value(json_object_get(resp.body, "kid")) ?: "");
        return CLI_EXIT_OK;
}

/* ---- evidence verify */

struct tar_entry {
        char path[260];
        const char *data;
        size_t len;
};

static void verify_fail(const char *fmt, ...) _printf_(1, 2);
static void verify_fail(const char *fmt, ...) {
        va_list ap;
        fputs("evidence verify: FAILED: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static bool octal_field(const char *f, size_t n, unsigned long long *ret) {
        unsigned long long v = 0;
        size_t i = 0;
        while (i < n && f[i] == ' ')
                i++;
        bool any = false;
        for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
                v = v * 8 + (unsigned long long)(f[i] - '0');
                any = true;
        }
        for (; i < n; i++)
                if (f[i] != ' ' && f[i] != '\0')
                        return false;
        *ret = v;
        return any;
}

/* Splits a ustar archive into entries (pointing into buf). Returns the count, or -1 after saying why. */
static int tar_parse(const char *buf, size_t len, struct tar_entry *ents, int max) {
        size_t off = 0;
        int n = 0;
        for (;;) {
                if (off + 512 > len) {
                        verify_fail("archive: truncated (no end marker)");
                        return -1;
                }
                const unsigned char *h = (const unsigned char *)buf + off;
                bool zero = true;
                for (int i = 0; i < 512 && zero; i++)
                        zero = h[i] == 0;
                if (zero)
                        return n;
                unsigned long long sum_stored, size;
                unsigned sum = 0;
                for (int i = 0; i < 512; i++)
                        sum += (i >= 148 && i < 156) ? ' ' : h[i];
                if (!octal_field((const char *)h + 148, 8, &sum_stored) || sum_stored != sum) {
                        verify_fail("archive: bad header checksum at byte %zu", off);
                        return -1;
                }
                if (!octal_field((const char *)h + 124, 12, &size) || size > len - off - 512) {
                        verify_fail("archive: bad size at byte %zu", off);
                        return -1;
                }
                if (h[156] != '0' && h[156] != '\0') {
                        verify_fail("archive: an entry that is not a regular file at byte %zu", off);
                        return -1;
                }
                if (n == max) {
                        verify_fail("archive: more than %d files", max);
                        return -1;
                }
                char name[101] = {0}, prefix[156] = {0};
                memcpy(name, h, 100);
                memcpy(prefix, h + 345, 155);
                struct tar_entry *e = &ents[n];
                if (prefix[0])
                        snprintf(e->path, sizeof e->path, "%s/%s", prefix, name);
                else
                        snprintf(e->path, sizeof e->path, "%s", name);
                for (int i = 0; i < n; i++)
                        if (!strcmp(ents[i].path, e->path)) {
                                verify_fail("%s: twice in the archive", e->path);
                                return -1;
                        }
                e->data = buf + off + 512;
                e->len = (size_t)size;
                n++;
                off += 512 + ((size_t)size + 511) / 512 * 512;
        }
}

static const struct tar_entry *tar_find(const struct tar_entry *ents, int n, const char *path) {
        for (int i = 0; i < n; i++)
                if (!strcmp(ents[i].path, path))
                        return &ents[i];
        return NULL;
}

static void sha256_hex(const void *data, size_t len, char out[65]) {
        uint8_t d[SHA256_DIGEST_LENGTH];
        SHA256(data, len, d);
        hex_encode(d, sizeof d, out);
}

/* Calls fn on each line of e (JSON objects); 0 or -1 after saying why. */
typedef int (*line_fn)(const char *part, size_t lineno, json_t *o, void *userdata);
static int each_line(const struct tar_entry *e, line_fn fn, void *userdata) {
        size_t lineno = 0;
        for (size_t off = 0; off < e->len;) {
                const char *nl = memchr(e->data + off, '\n', e->len - off);
                size_t l = nl ? (size_t)(nl - (e->data + off)) : e->len - off;
                lineno++;
                json_error_t err;
                _cleanup_json_ json_t *o = json_loadb(e->data + off, l, 0, &err);
                if (!json_is_object(o)) {
                        verify_fail("%s: line %zu is not a JSON object", e->path, lineno);
                        return -1;
                }
                if (fn(e->path, lineno, o, userdata) < 0)
                        return -1;
                off += l + 1;
        }
        return 0;
}

struct seq_state {
        long long expected;
        const char *run;
};

static int event_line(const char *part, size_t lineno, json_t *o, void *userdata) {
        struct seq_state *s = userdata;
        json_t *jseq = json_object_get(o, "seq");
        if (!json_is_integer(jseq)) {
                verify_fail("%s: line %zu has no seq", part, lineno);
                return -1;
        }
        long long seq = json_integer_value(jseq);
        if (seq < s->expected) {
                verify_fail("%s: seq %lld duplicated or out of order", part, seq);
                return -1;
        }
        if (seq > s->expected) {
                verify_fail("%s: seq %lld missing", part, s->expected);
                return -1;
        }
        const char *run = json_string_value(json_object_get(o, "run"));
        if (!run || strcmp(run, s->run)) {
                verify_fail("%s: seq %lld is of another run", part, seq);
                return -1;
        }
        s->expected++;
        return 0;
}

struct audit_state {
        long long n, last_seq;
        char last_hash[AUDIT_HASH_HEX_LEN + 1];
        const char *tenant;
};

static const char *str_of(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "";
}

static int audit_line(const char *part, size_t lineno, json_t *o, void *userdata) {
        struct audit_state *s = userdata;
        long long seq = json_integer_value(json_object_get(o, "seq"));
        if (seq <= s->last_seq) {
                verify_fail("%s: line %zu: seq %lld not after %lld", part, lineno, seq, s->last_seq);
                return -1;
        }
        if (strcmp(str_of(o, "tenant_id"), s->tenant)) {
                verify_fail("%s: seq %lld is of another tenant", part, seq);
                return -1;
        }
        struct audit_chain_fields f = {
                .tenant_id = str_of(o, "tenant_id"), .seq = (uint64_t)seq, .message_id = str_of(o, "message_id"),
                .ts = str_of(o, "ts"), .actor = str_of(o, "actor"), .action = str_of(o, "action"),
                .object_type = str_of(o, "object_type"), .object_id = str_of(o, "object_id"),
                .source_ip = str_of(o, "source_ip"), .outcome = str_of(o, "outcome"),
                .change_sha256 = str_of(o, "change_sha256"), .detail = str_of(o, "detail_text")};
        const char *prev = str_of(o, "prev_hash"), *hash = str_of(o, "hash");
        char got[AUDIT_HASH_HEX_LEN + 1];
        if (strlen(prev) != AUDIT_HASH_HEX_LEN || audit_chain_hash(prev, &f, got) < 0 || strcmp(got, hash)) {
                verify_fail("%s: seq %lld: hash mismatch (the record's fields do not give its hash)", part, seq);
                return -1;
        }
        /* adjacent records of the chain link: the segment is one piece */
        if (s->n > 0 && seq == s->last_seq + 1 && strcmp(prev, s->last_hash)) {
                verify_fail("%s: seq %lld does not link to seq %lld (prev_hash)", part, seq, s->last_seq);
                return -1;
        }
        s->last_seq = seq;
        snprintf(s->last_hash, sizeof s->last_hash, "%s", hash);
        s->n++;
        return 0;
}

/* The public key of kid from a GET /v1/tenant/keys answer. */
static int key_of(json_t *keys, const char *kid, uint8_t pub[SIGN_PUBLIC_KEY_LEN]) {
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(keys, "keys"), i, k) {
                if (!strcmp(str_of(k, "kid"), kid) && !strcmp(str_of(k, "alg"), "Ed25519"))
                        return sign_public_key_parse(str_of(k, "public_key"), pub);
        }
        return -ENOENT;
}

static int verify_bundle(const char *buf, size_t len, json_t *keys) {
        enum { MAX_FILES = 4096 };
        _cleanup_free_ struct tar_entry *ents = calloc(MAX_FILES, sizeof *ents);
        if (!ents)
                return CLI_EXIT_FAIL;
        int n = tar_parse(buf, len, ents, MAX_FILES);
        if (n < 0)
                return CLI_EXIT_FAIL;
        const struct tar_entry *me = tar_find(ents, n, "manifest.json"), *se = tar_find(ents, n, "manifest.sig");
        if (!me || !se) {
                verify_fail("%s: missing", me ? "manifest.sig" : "manifest.json");
                return CLI_EXIT_FAIL;
        }
        _cleanup_json_ json_t *manifest = json_loadb(me->data, me->len, 0, NULL);
        if (!json_is_object(manifest) || strcmp(str_of(manifest, "format"), "paddock-evidence/1")) {
                verify_fail("manifest.json: not a paddock-evidence/1 manifest");
                return CLI_EXIT_FAIL;
        }
        const char *kid = str_of(manifest, "kid"), *run = str_of(manifest, "run"), *tenant = str_of(manifest, "tenant");
        uint8_t pub[SIGN_PUBLIC_KEY_LEN];
        if (!*kid) {
                verify_fail("manifest.json: names no signing key (kid)");
                return CLI_EXIT_FAIL;
        }
        if (key_of(keys, kid, pub) < 0) {
                verify_fail("manifest.json: signing key \"%s\" is not among the tenant's keys", kid);
                return CLI_EXIT_FAIL;
        }
        /* manifest.sig: base64 of the 64-byte signature over manifest.json's exact bytes */
        char sig_b64[100] = {0};
        size_t sl = se->len;
        while (sl && (se->data[sl - 1] == '\n' || se->data[sl - 1] == ' '))
                sl--;
        uint8_t sig[66];
        int dl = sl < sizeof sig_b64 && sl % 4 == 0
                         ? (memcpy(sig_b64, se->data, sl), EVP_DecodeBlock(sig, (const unsigned char *)sig_b64, (int)sl))
                         : -1;
        size_t siglen = dl == 88 / 4 * 3 ? 64 : 0; /* two padding characters decode to zeros */
        const void *parts[] = {me->data};
        const size_t lens[] = {me->len};
        if (!siglen || !sign_verify_parts(pub, parts, lens, 1, sig, siglen)) {
                verify_fail("manifest.sig: the signature does not verify over manifest.json with key %s", kid);
                return CLI_EXIT_FAIL;
        }
        /* every file: present, its size and hash; then nothing extra */
        json_t *files = json_object_get(manifest, "files");
        size_t i;
        json_t *f;
        json_array_foreach(files, i, f) {
                const char *path = str_of(f, "path");
                const struct tar_entry *e = tar_find(ents, n, path);
                if (!e) {
                        verify_fail("%s: missing from the archive", path);
                        return CLI_EXIT_FAIL;
                }
                char hex[65];
                sha256_hex(e->data, e->len, hex);
                if ((json_int_t)e->len != json_integer_value(json_object_get(f, "size"))) {
                        verify_fail("%s: size mismatch", path);
                        return CLI_EXIT_FAIL;
                }
                if (strcmp(hex, str_of(f, "sha256"))) {
                        verify_fail("%s: sha256 mismatch", path);
                        return CLI_EXIT_FAIL;
                }
        }
        for (int k = 0; k < n; k++) {
                if (!strcmp(ents[k].path, "manifest.json") || !strcmp(ents[k].path, "manifest.sig"))
                        continue;
                bool listed = false;
                json_array_foreach(files, i, f) listed |= !strcmp(str_of(f, "path"), ents[k].path);
                if (!listed) {
                        verify_fail("%s: in the archive but not in the manifest", ents[k].path);
                        return CLI_EXIT_FAIL;
                }
        }
        static const char *const required[] = {"run.json", "definition.json", "prompt.txt", "events.jsonl",
                                               "approvals.json", "reviews.json", "artifacts/manifest.json",
                                               "audit.jsonl", NULL};
        for (const char *const *p = required; *p; p++)
                if (!tar_find(ents, n, *p)) {
                        verify_fail("%s: missing (the manifest does not list it)", *p);
                        return CLI_EXIT_FAIL;
                }
        /* what the parts say */
        struct seq_state ss = {.expected = 1, .run = run};
        if (each_line(tar_find(ents, n, "events.jsonl"), event_line, &ss) < 0)
                return CLI_EXIT_FAIL;
        struct audit_state as = {.tenant = tenant};
        if (each_line(tar_find(ents, n, "audit.jsonl"), audit_line, &as) < 0)
                return CLI_EXIT_FAIL;
        const struct tar_entry *am = tar_find(ents, n, "artifacts/manifest.json");
        _cleanup_json_ json_t *arts = json_loadb(am->data, am->len, 0, NULL);
        size_t included = 0;
        json_array_foreach(json_object_get(arts, "items"), i, f) {
                if (!json_is_true(json_object_get(f, "included")))
                        continue;
                char path[300];
                snprintf(path, sizeof path, "artifacts/%s", str_of(f, "name"));
                const struct tar_entry *e = tar_find(ents, n, path);
                char hex[65];
                if (!e) {
                        verify_fail("%s: missing (artifacts/manifest.json includes it)", path);
                        return CLI_EXIT_FAIL;
                }
                sha256_hex(e->data, e->len, hex);
                if ((json_int_t)e->len != json_integer_value(json_object_get(f, "size")) ||
                    strcmp(hex, str_of(f, "sha256"))) {
                        verify_fail("%s: differs from its size and sha256 in artifacts/manifest.json", path);
                        return CLI_EXIT_FAIL;
                }
                included++;
        }
        printf("verified: run %s of tenant %s: %zu files, %lld events, %lld audit records, %zu artifacts with "
               "their bytes, signed with key %s at %s\n",
               run, tenant, json_array_size(files), ss.expected - 1, as.n, included, kid,
               str_of(manifest, "created_at"));
        return CLI_EXIT_OK;
}

static int evidence_verify(struct cli_ctx *ctx, int argc, char **argv) {
        const char *keys_path = NULL;
        const struct cli_bind binds[] = {{.name = "keys", .str = &keys_path}, {0}};
        char *pos[CLI_MAX_POS];
        int npos, r;
        if ((r = cli_parse(ctx, argc, argv, binds, pos, &npos)) >= 0)
                return r;
        _cleanup_json_ json_t *keys = NULL;
        _cleanup_(api_response_done) struct api_response resp = {0};
        if (keys_path) {
                keys = cli_load_json_object("--keys", keys_path);
                if (!keys)
                        return CLI_EXIT_USAGE;
        } else {
                /* no saved keys: the configured api's (then it is not offline) */
                if (!cli_require_login(ctx) || api_get(ctx, "/v1/tenant/keys", &resp) < 0)
                        return CLI_EXIT_FAIL;
                keys = json_incref(resp.body);
        }
        int fd = open(pos[0], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                cli_error("evidence verify: could not open %s: %m", pos[0]);
                if (fd >= 0)
                        close(fd);
                return CLI_EXIT_FAIL;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > EVIDENCE_FILE_MAX) {
                close(fd);
                cli_error("evidence verify: %s is not a regular file of at most %lld bytes", pos[0], EVIDENCE_FILE_MAX);
                return CLI_EXIT_FAIL;
        }
        size_t len = (size_t)st.st_size;
        _cleanup_free_ char *buf = malloc(len ? len : 1);
        size_t off = 0;
        while (buf && off < len) {
                ssize_t k = read(fd, buf + off, len - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                off += (size_t)k;
        }
        close(fd);
        if (!buf || off != len) {
                cli_error("evidence verify: could not read %s", pos[0]);
                return CLI_EXIT_FAIL;
        }
        return verify_bundle(buf, len, keys);
}

static const struct cli_command evidence_subs[] = {
        {.name = "keys",
         .summary = "print the tenant's evidence-signing public keys (save them for verify --keys)",
         .description = "Prints GET /v1/tenant/keys as JSON: {keys: [{kid, alg, public_key, created_at,\n"
                        "status, retired_at}]}, retired keys included. Save it (paddock evidence keys >\n"
                        "keys.json) to verify bundles offline.\n",
         .fn = evidence_keys},
        {.name = "rotate-key",
         .summary = "make a new evidence-signing key (tenant_admin); the old one stays published",
         .description = "POST /v1/tenant/keys/rotate: new bundles are signed with a new key; the one\n"
                        "before is retired but stays in `evidence keys`, so bundles it signed still\n"
                        "verify. Audited as tenant.evidence_key_rotate.\n",
         .fn = evidence_rotate_key},
        {.name = "verify",
         .args = "FILE",
         .summary = "check an evidence bundle offline; exit 0 if it holds, 1 naming what fails",
         .description = "Checks the manifest's Ed25519 signature against the tenant's keys (--keys: the\n"
                        "saved output of `paddock evidence keys`; without it the configured API's),\n"
                        "every file's size and SHA-256, that no file is missing or extra, that the\n"
                        "events' seqs run from 1 without a gap or duplicate, that every audit record's\n"
                        "chain hash holds and adjacent ones link, and the included artifacts against\n"
                        "the artifact manifest. Prints `verified: ...` and exits 0, or names the first\n"
                        "part that fails on stderr (`events.jsonl: sha256 mismatch`) and exits 1.\n",
         .options = (const struct cli_option[]){{"keys", 'k', "FILE", "the tenant's keys as saved by `evidence keys`"},
                                                {0}},
         .fn = evidence_verify},
        {0},
};

const struct cli_command cli_cmd_evidence = {
        .name = "evidence",
        .summary = "evidence bundles: the signing keys, and offline verification",
        .description = "Download a run's bundle with `paddock run evidence ID -o FILE`.\n",
        .subs = evidence_subs,
};
