/* GET /v1/runs/{id}/evidence?max_artifact_bytes=N (issue 14 §2,
 * docs/CONTRACTS.md "Reviews and the signed evidence bundle"): one POSIX
 * ustar archive with everything an auditor needs about a finished run, and
 * a manifest signed with the tenant's Ed25519 evidence key (tenant_keys.c),
 * which `paddock evidence verify` checks offline.
 *
 * The archive is built in memory, bounded: artifacts' bytes are included up
 * to max_artifact_bytes each and EVIDENCE_ARTIFACTS_TOTAL_MAX together (the
 * rest by hash only), and a bundle past EVIDENCE_BUNDLE_MAX answers 413. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "audit/audit_chain.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "pg/pg.h"
#include "s3/s3.h"

#define EVIDENCE_FORMAT "paddock-evidence/1"
#define EVIDENCE_ARTIFACT_DEFAULT (1LL << 20)      /* max_artifact_bytes when not given */
#define EVIDENCE_ARTIFACT_MAX (16LL << 20)         /* the largest max_artifact_bytes */
#define EVIDENCE_ARTIFACTS_TOTAL_MAX (64LL << 20)  /* artifact bytes of one bundle */
#define EVIDENCE_BUNDLE_MAX (256LL << 20)          /* the whole archive */
#define EVENTS_PAGE 1000

/* One file of the archive (owned data). */
struct bundle_file {
        char path[300];
        char *data;
        size_t len;
};

struct bundle {
        struct bundle_file *files;
        size_t n, cap;
        size_t total;
};

static void bundle_done(struct bundle *b) {
        for (size_t i = 0; i < b->n; i++)
                free(b->files[i].data);
        free(b->files);
}

/* Adds path with data (taken: freed on failure too). */
static int bundle_add(struct bundle *b, const char *path, char *data, size_t len) {
        if (b->n == b->cap) {
                size_t cap = b->cap ? 2 * b->cap : 16;
                struct bundle_file *f = realloc(b->files, cap * sizeof *f);
                if (!f) {
                        free(data);
                        return -ENOMEM;
                }
                b->files = f;
                b->cap = cap;
        }
        if (b->total + len + 1024 > (size_t)EVIDENCE_BUNDLE_MAX) {
                free(data);
                return -EFBIG;
        }
        struct bundle_file *f = &b->files[b->n++];
        snprintf(f->path, sizeof f->path, "%s", path);
        f->data = data;
        f->len = len;
        b->total += len + 1024;
        return 0;
}

/* Adds j (stolen) as compact JSON with sorted keys and a final newline. */
static int bundle_add_json(struct bundle *b, const char *path, json_t *j) {
        if (!j)
                return -ENOMEM;
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        json_decref(j);
        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        char *t = realloc(s, n + 2);
        if (!t) {
                free(s);
                return -ENOMEM;
        }
        t[n] = '\n';
        t[n + 1] = '\0';
        return bundle_add(b, path, t, n + 1);
}

static void sha256_hex(const void *data, size_t len, char out[65]) {
        uint8_t d[SHA256_DIGEST_LENGTH];
        SHA256(data, len, d);
        hex_encode(d, sizeof d, out);
}

/* ---- ustar (POSIX.1-1988): 512-byte header, data padded to 512 */
static int tar_header(FILE *f, const char *path, size_t size, time_t mtime) {
        char h[512] = {0};
        const char *name = path, *slash;
        size_t pl = strlen(path);
        if (pl > 100) {
                /* prefix / name split at a slash: name <= 100, prefix <= 155 */
                slash = strrchr(path, '/');
                if (!slash || (size_t)(slash - path) > 155 || strlen(slash + 1) > 100 || slash == path)
                        return -ENAMETOOLONG;
                memcpy(h + 345, path, (size_t)(slash - path));
                name = slash + 1;
        }
        memcpy(h, name, strlen(name));
        memcpy(h + 100, "0000644", 8);
        memcpy(h + 108, "0000000", 8);
        memcpy(h + 116, "0000000", 8);
        snprintf(h + 124, 12, "%011llo", (unsigned long long)size);
        snprintf(h + 136, 12, "%011llo", (unsigned long long)mtime);
        memset(h + 148, ' ', 8);
        h[156] = '0';
        memcpy(h + 257, "ustar", 6);
        memcpy(h + 263, "00", 2);
        memcpy(h + 265, "paddock", 7);
        memcpy(h + 297, "paddock", 7);
        unsigned sum = 0;
        for (size_t i = 0; i < sizeof h; i++)
                sum += (unsigned char)h[i];
        snprintf(h + 148, 8, "%06o", sum);
        h[155] = ' ';
        return fwrite(h, 1, sizeof h, f) == sizeof h ? 0 : -EIO;
}

static int tar_file(FILE *f, const char *path, const void *data, size_t len, time_t mtime) {
        int k = tar_header(f, path, len, mtime);
        if (k < 0)
                return k;
        static const char zero[512];
        if (len && fwrite(data, 1, len, f) != len)
                return -EIO;
        size_t pad = (512 - len % 512) % 512;
        return pad && fwrite(zero, 1, pad, f) != pad ? -EIO : 0;
}

/* ---- the parts */

static int add_run(struct bundle *b, struct db *d, const char *tenant, const char *run_id, json_t **ret_run,
                   struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, tenant};
        int k = pg_exec(d->conn,
                        RUNS_SELECT "WHERE r.id = $1 AND r.tenant_id = $2", 2, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        json_t *run = runs_row_json(res, 0);
        if (!run)
                return -ENOMEM;
        _cleanup_pgres_ PGresult *u = NULL;
        k = pg_exec(d->conn,
                    "SELECT usage_model_calls, usage_input_tokens, usage_output_tokens, usage_cache_read_tokens,"
                    " usage_cache_write_tokens, usage_cost_usd, agent_session::text, status_seq"
                    " FROM api.runs WHERE id = $1 AND tenant_id = $2",
                    2, params, &u, e);
        if (k < 0 || PQntuples(u) != 1) {
                json_decref(run);
                return k < 0 ? k : -ENOENT;
        }
        const char *agent = db_val(u, 0, 6);
        json_object_set_new(run, "usage",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", "model_calls",
                                      (json_int_t)atoll(PQgetvalue(u, 0, 0)), "input_tokens",
                                      (json_int_t)atoll(PQgetvalue(u, 0, 1)), "output_tokens",
                                      (json_int_t)atoll(PQgetvalue(u, 0, 2)), "cache_read_tokens",
                                      (json_int_t)atoll(PQgetvalue(u, 0, 3)), "cache_write_tokens",
                                      (json_int_t)atoll(PQgetvalue(u, 0, 4)), "cost_usd",
                                      strtod(PQgetvalue(u, 0, 5), NULL)));
        json_object_set_new(run, "agent_session", agent ? json_loads(agent, 0, NULL) : json_null());
        *ret_run = json_incref(run);
        return bundle_add_json(b, "run.json", run);
}

static int add_definition(struct bundle *b, struct db *d, const char *tenant, json_t *run, struct err_detail *e) {
        char version[24];
        snprintf(version, sizeof version, "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(run, "version")));
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {json_string_value(json_object_get(run, "sandbox")), version, tenant};
        int k = pg_exec(d->conn,
                        "SELECT v.spec::text, v.spec_sha256, " DB_TS("v.published_at") ", v.published_by, s.name "
                        "FROM api.sandbox_versions v JOIN api.sandboxes s ON s.id = v.sandbox_id "
                        "WHERE v.sandbox_id = $1 AND v.version = $2::integer AND v.tenant_id = $3",
                        3, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        json_t *spec = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        if (!spec)
                return -ENOMEM;
        /* the policy as resolved against the catalog now (the run's own
         * snapshot is the runner's); an item since withdrawn is said so */
        json_t *policy = NULL;
        struct err_detail pe = {0};
        if (policy_resolve(d, tenant, spec, &policy, &pe) < 0)
                policy = json_pack("{s:s}", "error", pe.message[0] ? pe.message : "could not be resolved");
        return bundle_add_json(b, "definition.json",
                               json_pack("{s:s, s:s, s:I, s:o, s:s, s:s, s:s, s:o}", "sandbox", params[0],
                                         "sandbox_name", PQgetvalue(res, 0, 4), "version",
                                         json_integer_value(json_object_get(run, "version")), "spec", spec,
                                         "spec_sha256", PQgetvalue(res, 0, 1), "published_at", PQgetvalue(res, 0, 2),
                                         "published_by", PQgetvalue(res, 0, 3), "effective_policy",
                                         policy ? policy : json_null()));
}

static int add_prompt(struct bundle *b, struct db *d, const char *tenant, const char *run_id, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, tenant};
        int k = pg_exec(d->conn, "SELECT coalesce(prompt->>'rendered', '') FROM api.runs WHERE id = $1 AND tenant_id = $2",
                        2, params, &res, e);
        if (k < 0)
                return k;
        char *s = strdup(PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
        return s ? bundle_add(b, "prompt.txt", s, strlen(s)) : -ENOMEM;
}

/* events.jsonl (one event a line, seq order, with its signature fields) and
 * records.json (the signed records they name). */
static int add_events(struct bundle *b, struct db *d, const char *tenant, const char *run_id, struct err_detail *e) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        json_t *records = json_object();
        int64_t after = 0;
        int k = 0;
        for (;;) {
                json_t *items = NULL;
                k = events_query(d, tenant, run_id, after, EVENTS_PAGE, true, &items, e);
                if (k < 0)
                        break;
                json_t *recs = NULL;
                if ((k = events_records_query(d, items, &recs, e)) < 0) {
                        json_decref(items);
                        break;
                }
                json_object_update(records, recs);
                json_decref(recs);
                size_t i;
                json_t *ev;
                json_array_foreach(items, i, ev) {
                        char *line = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
                        if (!line) {
                                k = -ENOMEM;
                                break;
                        }
                        fputs(line, f);
                        fputc('\n', f);
                        free(line);
                        after = json_integer_value(json_object_get(ev, "seq"));
                }
                size_t n = json_array_size(items);
                json_decref(items);
                if (k < 0 || n < EVENTS_PAGE)
                        break;
                if (len > (size_t)EVIDENCE_BUNDLE_MAX) {
                        k = -EFBIG;
                        break;
                }
        }
        if (fclose(f) != 0 && k >= 0)
                k = -ENOMEM;
        if (k < 0) {
                free(buf);
                json_decref(records);
                return k == -EAGAIN ? -EAGAIN : k;
        }
        if ((k = bundle_add(b, "events.jsonl", buf, len)) < 0) {
                json_decref(records);
                return k;
        }
        return bundle_add_json(b, "records.json", records);
}

static int add_approvals(struct bundle *b, struct db *d, const char *tenant, const char *run_id,
                         struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, tenant};
        int k = pg_exec(d->conn,
                        "SELECT coalesce(json_agg(json_build_object('id', a.id, 'kind', a.kind, 'what', a.what,"
                        " 'rule', a.rule, 'seq', a.seq, 'status', a.status, 'created_at', " DB_TS("a.created_at") ","
                        " 'deadline', " DB_TS("a.deadline") ", 'decided_by', a.decided_by, 'decided_at', "
                        DB_TS("a.decided_at") ", 'comment', a.comment) ORDER BY a.created_at, a.id), '[]')::text"
                        " FROM api.approvals a WHERE a.run_id = $1 AND a.tenant_id = $2",
                        2, params, &res, e);
        if (k < 0)
                return k;
        return bundle_add_json(b, "approvals.json", json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

static int add_reviews(struct bundle *b, struct db *d, const char *tenant, const char *run_id, struct err_detail *e) {
        json_t *items = NULL;
        int k = reviews_query(d, tenant, run_id, &items, e);
        return k < 0 ? k : bundle_add_json(b, "reviews.json", items);
}

static int add_artifacts(struct api *a, struct bundle *b, struct db *d, const char *tenant, const char *run_id,
                         long long max_bytes, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, tenant};
        int k = pg_exec(d->conn,
                        "SELECT name, kind, size, sha256, content_type FROM evidence.artifacts "
                        "WHERE run_id = $1 AND tenant_id = $2 ORDER BY name",
                        2, params, &res, e);
        if (k < 0)
                return k;
        json_t *items = json_array();
        long long total = 0;
        for (int i = 0; items && i < PQntuples(res); i++) {
                const char *name = PQgetvalue(res, i, 0);
                long long size = atoll(PQgetvalue(res, i, 2));
                json_t *it = json_pack("{s:s, s:o, s:I, s:o, s:o}", "name", name, "kind", db_json_str(res, i, 1),
                                       "size", (json_int_t)size, "sha256", db_json_str(res, i, 3), "content_type",
                                       db_json_str(res, i, 4));
                const char *why = NULL;
                if (size > max_bytes)
                        why = "larger than max_artifact_bytes";
                else if (total + size > EVIDENCE_ARTIFACTS_TOTAL_MAX)
                        why = "the bundle's artifact bytes reached their bound";
                else if (strlen(name) > 100)
                        why = "name longer than an archive member name";
                char *data = NULL;
                size_t dl = 0;
                if (!why) {
                        /* the key from ids we checked, never from stored text (artifacts.c) */
                        char key[400];
                        snprintf(key, sizeof key, "tenants/%s/runs/%s/%s", tenant, run_id, name);
                        struct err_detail se = {0};
                        if (s3_get_object(a->s3, key, (size_t)max_bytes, &data, &dl, &se) < 0) {
                                json_decref(it);
                                json_decref(items);
                                log_ctx(LOG_ERROR, LOG_KV("run", run_id), "could not read artifact %s: %s", name,
                                        se.message);
                                return err_set(e, -EIO, "s3", "could not read artifact %s", name);
                        }
                        total += (long long)dl;
                        char path[300];
                        snprintf(path, sizeof path, "artifacts/%s", name);
                        if ((k = bundle_add(b, path, data, dl)) < 0) {
                                json_decref(it);
                                json_decref(items);
                                return k;
                        }
                }
                json_object_set_new(it, "included", json_boolean(!why));
                if (why)
                        json_object_set_new(it, "omitted", json_string(why));
                json_array_append_new(items, it);
        }
        return bundle_add_json(b, "artifacts/manifest.json",
                               items ? json_pack("{s:I, s:o}", "max_artifact_bytes", (json_int_t)max_bytes, "items",
                                                 items)
                                     : NULL);
}

/* The audit records about the run, its approvals and its reviews, in seq
 * order, with every field the chain hash covers (docs/CONTRACTS.md "Audit
 * chain"): detail_text is the stored jsonb's text, hashed as it is. */
static int add_audit(struct bundle *b, struct db *d, const char *tenant, const char *run_id, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, tenant};
        int k = pg_exec(d->conn,
                        "SELECT seq, message_id::text, " AUDIT_TS_SQL ", actor, action, object_type, object_id,"
                        " source_ip, outcome, change_sha256, detail::text, prev_hash, hash"
                        " FROM evidence.audit_log WHERE tenant_id = $2 AND (object_id = $1::text"
                        " OR object_id IN (SELECT id FROM api.approvals WHERE run_id = $1::uuid AND tenant_id = $2)"
                        " OR object_id IN (SELECT id::text FROM api.reviews WHERE run_id = $1::uuid AND tenant_id = $2))"
                        " ORDER BY seq",
                        2, params, &res, e);
        if (k < 0)
                return k;
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                                      "tenant_id", tenant, "seq", (json_int_t)atoll(PQgetvalue(res, i, 0)),
                                      "message_id", PQgetvalue(res, i, 1), "ts", PQgetvalue(res, i, 2), "actor",
                                      PQgetvalue(res, i, 3), "action", PQgetvalue(res, i, 4), "object_type",
                                      PQgetvalue(res, i, 5), "object_id", PQgetvalue(res, i, 6), "source_ip",
                                      PQgetvalue(res, i, 7), "outcome", PQgetvalue(res, i, 8), "change_sha256",
                                      PQgetvalue(res, i, 9), "detail_text", PQgetvalue(res, i, 10), "prev_hash",
                                      PQgetvalue(res, i, 11), "hash", PQgetvalue(res, i, 12));
                char *line = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
                json_decref(o);
                if (!line) {
                        fclose(f);
                        free(buf);
                        return -ENOMEM;
                }
                fputs(line, f);
                fputc('\n', f);
                free(line);
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        return bundle_add(b, "audit.jsonl", buf, len);
}

/* Builds the archive: manifest.json and manifest.sig first, then the files
 * in the order the manifest lists them. */
static int bundle_archive(struct api *a, struct db *d, struct bundle *b, const char *tenant, const char *run_id,
                          char **ret, size_t *ret_len, struct err_detail *e) {
        json_t *files = json_array();
        for (size_t i = 0; files && i < b->n; i++) {
                char hex[65];
                sha256_hex(b->files[i].data, b->files[i].len, hex);
                json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "path", b->files[i].path, "size",
                                                       (json_int_t)b->files[i].len, "sha256", hex));
        }
        char now[40];
        time_format_rfc3339(time_now_us(), now, sizeof now);
        /* the manifest names the key that signs it: made (or read) first */
        uint8_t sig[64];
        char kid[64];
        int k = tenant_keys_active(a, d->conn, tenant, kid, sizeof kid, e);
        if (k < 0) {
                json_decref(files);
                return k;
        }
        _cleanup_json_ json_t *manifest = files ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "format", EVIDENCE_FORMAT,
                                                            "tenant", tenant, "run", run_id, "kid", kid, "created_at",
                                                            now, "files", files)
                                                : NULL;
        _cleanup_free_ char *mtext = manifest ? json_dumps(manifest, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
        if (!mtext)
                return -ENOMEM;
        size_t mlen = strlen(mtext);
        if ((k = tenant_keys_sign(a, d->conn, tenant, kid, mtext, mlen, sig, e)) < 0)
                return k;
        char sig_b64[89];
        EVP_EncodeBlock((unsigned char *)sig_b64, sig, sizeof sig);
        char *out = NULL;
        size_t out_len = 0;
        FILE *f = open_memstream(&out, &out_len);
        if (!f)
                return -ENOMEM;
        time_t mtime = time(NULL);
        k = tar_file(f, "manifest.json", mtext, mlen, mtime);
        if (k >= 0)
                k = tar_file(f, "manifest.sig", sig_b64, strlen(sig_b64), mtime);
        for (size_t i = 0; k >= 0 && i < b->n; i++)
                k = tar_file(f, b->files[i].path, b->files[i].data, b->files[i].len, mtime);
        static const char end[1024];
        if (k >= 0 && fwrite(end, 1, sizeof end, f) != sizeof end)
                k = -EIO;
        if (fclose(f) != 0 && k >= 0)
                k = -ENOMEM;
        if (k < 0) {
                free(out);
                return k;
        }
        *ret = out;
        *ret_len = out_len;
        return 0;
}

int evidence_bundle_get(struct api_req *r) {
        const char *run_id = r->params[0];
        long long max_bytes = EVIDENCE_ARTIFACT_DEFAULT;
        char mb[32];
        const char *v = NULL;
        int k = api_query_single(r, "max_artifact_bytes", mb, sizeof mb, &v);
        if (k < 0)
                return k;
        if (v) {
                char *end;
                errno = 0;
                max_bytes = strtoll(v, &end, 10);
                if (errno || end == v || *end || max_bytes < 0 || max_bytes > EVIDENCE_ARTIFACT_MAX)
                        return api_errno(r, -EINVAL, "max_artifact_bytes must be an integer from 0 to %lld",
                                        EVIDENCE_ARTIFACT_MAX);
        }
        if (!id_is_uuid(run_id))
                return api_errno(r, -ENOENT, "run not found");
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        /* one transaction: a key made for the first bundle is kept with its
         * audit record. The run has finished, so its parts no longer change,
         * except for reviews added meanwhile (whose events evidence appends
         * later anyway); the manifest covers exactly the bytes read */
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, r->caller.tenant_id};
        if ((k = db_load_team_row(r, &tx.d, "run",
                                  "SELECT r.team_id, " RUNS_SHOWN_STATUS " FROM api.runs r "
                                  "LEFT JOIN evidence.run_history h ON h.run_id = r.id "
                                  "WHERE r.id = $1 AND r.tenant_id = $2",
                                  2, params, 0, &res)) < 0)
                return k;
        if (!runs_status_terminal(PQgetvalue(res, 0, 1)))
                return api_errno(r, -EEXIST, "run %s has not finished (%s): its evidence is exported once it has", run_id,
                                PQgetvalue(res, 0, 1));
        const char *tenant = r->caller.tenant_id;
        struct bundle b = {0};
        json_t *run = NULL;
        k = add_run(&b, &tx.d, tenant, run_id, &run, &tx.e);
        if (k >= 0)
                k = add_definition(&b, &tx.d, tenant, run, &tx.e);
        json_decref(run);
        if (k >= 0)
                k = add_prompt(&b, &tx.d, tenant, run_id, &tx.e);
        if (k >= 0)
                k = add_events(&b, &tx.d, tenant, run_id, &tx.e);
        if (k >= 0)
                k = add_approvals(&b, &tx.d, tenant, run_id, &tx.e);
        if (k >= 0)
                k = add_reviews(&b, &tx.d, tenant, run_id, &tx.e);
        if (k >= 0)
                k = add_artifacts(r->api, &b, &tx.d, tenant, run_id, max_bytes, &tx.e);
        if (k >= 0)
                k = add_audit(&b, &tx.d, tenant, run_id, &tx.e);
        char *out = NULL;
        size_t out_len = 0;
        if (k >= 0)
                k = bundle_archive(r->api, &tx.d, &b, tenant, run_id, &out, &out_len, &tx.e);
        bundle_done(&b);
        if (k < 0) {
                if (k == -EFBIG)
                        return api_errno(r, -EFBIG, "the bundle would exceed %lld bytes: lower max_artifact_bytes",
                                        EVIDENCE_BUNDLE_MAX);
                if (k == -EAGAIN)
                        return api_errno(r, -EAGAIN, "run history is not available yet");
                return db_fail(r, k, &tx.e, "build evidence bundle");
        }
        /* who took the run's evidence out is evidence too; the key may have
         * been made just now: kept with it */
        char sha[65];
        sha256_hex(out, out_len, sha);
        _cleanup_json_ json_t *change = json_pack("{s:s, s:I, s:I}", "bundle_sha256", sha, "bytes",
                                                  (json_int_t)out_len, "max_artifact_bytes", (json_int_t)max_bytes);
        if ((k = api_tx_audit(&tx, "run.evidence_export", "run", run_id, change)) < 0) {
                free(out);
                return k;
        }
        if ((k = api_tx_commit(&tx, "evidence bundle")) < 0) {
                free(out);
                return k;
        }
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant, "run", run_id), "evidence bundle exported");
        r->text = out;
        r->text_len = out_len;
        r->content_type = "application/x-tar";
        r->status = 200;
        return 0;
}
