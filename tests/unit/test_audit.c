/* lib/audit: canonical change hashing, secret scrubbing, record encoding, the
 * OCSF mapping, and the hash chain against a real PostgreSQL named by
 * PADDOCK_PG_DSN (with evidence's own migrations applied): append, duplicate,
 * concurrent replicas, and verification failing exactly at a tampered,
 * re-hashed, deleted or truncated record. Without PADDOCK_PG_DSN the pure
 * tests run and the binary then exits 77 (the chain part was skipped). */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "audit/audit.h"
#include "audit/audit_chain.h"
#include "audit/audit_ocsf.h"
#include "audit/audit_verify.h"
#include "core/ids.h"
#include "core/log.h"
#include "paddock/v1/audit.pb-c.h"
#include "pg/pg.h"

/* ---- pure ---------------------------------------------------------------- */

static void test_change_hash_stable(void **state) {
        (void)state;
        /* Same value built in two key orders hashes the same, and equals the
         * SHA-256 of the sorted compact JSON an independent implementation
         * (Python's json.dumps(sort_keys=True, separators=(',', ':'),
         * ensure_ascii=False)) produces. */
        json_t *a = json_pack("{s:i, s:[b,n], s:{s:s, s:f}}", "a", 1, "b", 1, "c", "x", "\xc3\xa9", "y", 2.5);
        json_t *b = json_pack("{s:{s:f, s:s}, s:[b,n], s:i}", "c", "y", 2.5, "x", "\xc3\xa9", "b", 1, "a", 1);
        char ha[AUDIT_HASH_HEX_LEN + 1], hb[AUDIT_HASH_HEX_LEN + 1];
        assert_int_equal(audit_change_hash(a, ha), 0);
        assert_int_equal(audit_change_hash(b, hb), 0);
        assert_string_equal(ha, hb);
        assert_string_equal(ha, "ac5176822575472b0b0dfc4815bc2728408c98b545171b7e88b0733918dc0aa8");
        /* the caller's object is not modified */
        assert_int_equal(json_object_size(a), 3);

        json_object_set_new(b, "a", json_integer(2));
        assert_int_equal(audit_change_hash(b, hb), 0);
        assert_string_not_equal(ha, hb);

        assert_int_equal(audit_change_hash(NULL, ha), 0);
        assert_string_equal(ha, "");
        json_decref(a);
        json_decref(b);
}

static void test_sensitive_keys(void **state) {
        (void)state;
        const char *dropped[] = {"password", "new_password", "secret", "client_secret", "token", "access_token",
                                 "Refresh_Token", "value", "secret_value", "api_key", "private_key", "Authorization",
                                 "cookie", "credentials", "passphrase"};
        const char *kept[] = {"secret_name", "secret_id", "token_id", "name", "values_count", "keyring", "user",
                              "tokens_in", "passwords_rotated_at"};
        for (size_t i = 0; i < sizeof dropped / sizeof *dropped; i++)
                assert_true(audit_key_is_sensitive(dropped[i]));
        for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
                assert_false(audit_key_is_sensitive(kept[i]));
}

static void test_scrub_drops_secrets(void **state) {
        (void)state;
        json_t *v = json_loads("{\"name\":\"gh\",\"password\":\"p\",\"value\":\"v\",\"token_id\":\"t1\","
                               "\"nested\":{\"client_secret\":\"s\",\"secret_name\":\"GH\","
                               "\"list\":[{\"access_token\":\"t\",\"id\":1},\"password\"]}}",
                               0, NULL);
        assert_non_null(v);
        json_t *clean = json_loads("{\"name\":\"gh\",\"token_id\":\"t1\",\"nested\":{\"secret_name\":\"GH\","
                                   "\"list\":[{\"id\":1},\"password\"]}}",
                                   0, NULL);
        /* a change that differs only in secrets hashes like the clean one:
         * no secret (not even its hash) leaves the producer */
        char h1[AUDIT_HASH_HEX_LEN + 1], h2[AUDIT_HASH_HEX_LEN + 1];
        assert_int_equal(audit_change_hash(v, h1), 0);
        assert_int_equal(audit_change_hash(clean, h2), 0);
        assert_string_equal(h1, h2);

        assert_int_equal(audit_scrub(v), 4);
        assert_true(json_equal(v, clean));
        json_decref(v);
        json_decref(clean);
}

#define TENANT "11111111-2222-4333-8444-555555555555"

static void record_freep(Paddock__V1__AuditRecord **p) {
        if (*p)
                paddock__v1__audit_record__free_unpacked(*p, NULL);
}

static void test_encode(void **state) {
        (void)state;
        json_t *change = json_pack("{s:s, s:s}", "name", "API_KEY", "value", "hunter2");
        json_t *detail = json_pack("{s:s, s:s}", "secret_name", "API_KEY", "secret_value", "hunter2");
        struct audit_entry e = {.tenant_id = TENANT, .actor = "user:u1", .action = "secret.put",
                                .object_type = "secret", .object_id = "s-1", .source_ip = "127.0.0.1",
                                .outcome = AUDIT_SUCCESS, .change = change, .detail = detail,
                                .producer = "api/test"};
        void *buf = NULL;
        size_t len = 0;
        char msgid[UUID_STR_LEN];
        struct err_detail err = {0};
        assert_int_equal(audit_record_encode(&e, &buf, &len, msgid, &err), 0);
        _cleanup_(record_freep) Paddock__V1__AuditRecord *rec = paddock__v1__audit_record__unpack(NULL, len, buf);
        free(buf);
        assert_non_null(rec);
        assert_string_equal(rec->env->tenant_id, TENANT);
        assert_string_equal(rec->env->message_id, msgid);
        assert_true(id_is_uuid(msgid));
        assert_string_equal(rec->env->producer, "api/test");
        assert_string_equal(rec->actor, "user:u1");
        assert_string_equal(rec->action, "secret.put");
        assert_string_equal(rec->outcome, "success");
        assert_string_equal(rec->source_ip, "127.0.0.1");
        char h[AUDIT_HASH_HEX_LEN + 1];
        assert_int_equal(audit_change_hash(change, h), 0);
        assert_string_equal(rec->change_sha256, h);
        assert_string_equal(rec->detail_json, "{\"secret_name\":\"API_KEY\"}");
        assert_null(strstr((char *)rec->detail_json, "hunter2"));

        /* a caller-chosen message id survives (retries of one logical record) */
        e.message_id = "66666666-7777-4888-9999-aaaaaaaaaaaa";
        assert_int_equal(audit_record_encode(&e, &buf, &len, msgid, &err), 0);
        free(buf);
        assert_string_equal(msgid, e.message_id);

        struct audit_entry bad;
        const char *bad_actors[] = {"u1", "user:", "service:", "admin:x", NULL};
        for (int i = 0; i < 5; i++) {
                bad = e;
                bad.actor = bad_actors[i];
                assert_int_equal(audit_record_encode(&bad, &buf, &len, NULL, &err), -EINVAL);
        }
        const char *bad_actions[] = {"login", "Auth.Login", "", "a.b c", NULL};
        for (int i = 0; i < 5; i++) {
                bad = e;
                bad.action = bad_actions[i];
                assert_int_equal(audit_record_encode(&bad, &buf, &len, NULL, &err), -EINVAL);
        }
        bad = e;
        bad.tenant_id = "demo";
        assert_int_equal(audit_record_encode(&bad, &buf, &len, NULL, &err), -EINVAL);
        bad = e;
        bad.object_id = "a\nb";
        assert_int_equal(audit_record_encode(&bad, &buf, &len, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.message, "object_id"));
        bad = e;
        bad.detail = json_array();
        assert_int_equal(audit_record_encode(&bad, &buf, &len, NULL, &err), -EINVAL);
        json_decref(bad.detail);
        json_decref(change);
        json_decref(detail);
}

static void test_chain_hash_vector(void **state) {
        (void)state;
        /* Computed independently from the definition in audit_chain.h (netstrings,
         * genesis prev_hash) with Python's hashlib. */
        struct audit_chain_fields f = {
                .tenant_id = TENANT, .seq = 1, .message_id = "66666666-7777-4888-9999-aaaaaaaaaaaa",
                .ts = "2026-01-02T03:04:05.000006Z", .actor = "user:u1", .action = "sandbox.publish",
                .object_type = "sandbox", .object_id = "s-1", .source_ip = "127.0.0.1", .outcome = "success",
                .change_sha256 = "", .detail = "{\"k\": \"\xc3\xa9\"}",
        };
        char h[AUDIT_HASH_HEX_LEN + 1];
        assert_int_equal(audit_chain_hash(AUDIT_CHAIN_GENESIS, &f, h), 0);
        assert_string_equal(h, "f00ef73acad539a92460977d5b3902be7b85c8e0b6d55e7a0cab7fc656aacaa3");
        /* moving a byte from one field to the next changes the hash */
        f.object_type = "sandboxs";
        f.object_id = "-1";
        char h2[AUDIT_HASH_HEX_LEN + 1];
        assert_int_equal(audit_chain_hash(AUDIT_CHAIN_GENESIS, &f, h2), 0);
        assert_string_not_equal(h, h2);
}

static void test_ocsf(void **state) {
        (void)state;
        Paddock__V1__Envelope env = PADDOCK__V1__ENVELOPE__INIT;
        env.tenant_id = (char *)TENANT;
        env.message_id = (char *)"66666666-7777-4888-9999-aaaaaaaaaaaa";
        Paddock__V1__AuditRecord rec = PADDOCK__V1__AUDIT_RECORD__INIT;
        rec.env = &env;
        rec.actor = (char *)"user:u1";
        rec.action = (char *)"auth.login_failed";
        rec.source_ip = (char *)"127.0.0.9";
        rec.outcome = (char *)"failure";
        rec.detail_json = (char *)"{\"reason\":\"bad_password\",\"password\":\"x\"}";
        struct audit_chain_position pos = {.seq = 7, .hash = "ab", .ts = "2026-01-02T03:04:05.000006Z",
                                           .ts_us = INT64_C(1767323045000006)};
        char *s = audit_ocsf_json(&rec, &pos);
        assert_non_null(s);
        json_t *o = json_loads(s, 0, NULL);
        free(s);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "class_uid")), 3002);
        assert_int_equal(json_integer_value(json_object_get(o, "type_uid")), 300201);
        assert_int_equal(json_integer_value(json_object_get(o, "time")), INT64_C(1767323045000));
        assert_string_equal(json_string_value(json_object_get(o, "status")), "Failure");
        json_t *actor_user = json_object_get(json_object_get(o, "actor"), "user");
        assert_string_equal(json_string_value(json_object_get(actor_user, "uid")), "u1");
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "src_endpoint"), "ip")), "127.0.0.9");
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "api"), "operation")),
                            "auth.login_failed");
        json_t *md = json_object_get(o, "metadata");
        assert_string_equal(json_string_value(json_object_get(json_object_get(md, "product"), "name")), "Paddock");
        assert_string_equal(json_string_value(json_object_get(md, "version")), "1.1.0");
        assert_string_equal(json_string_value(json_object_get(md, "uid")), env.message_id);
        json_t *um = json_object_get(o, "unmapped");
        assert_int_equal(json_integer_value(json_object_get(um, "paddock_seq")), 7);
        assert_string_equal(json_string_value(json_object_get(um, "hash")), "ab");
        json_t *detail = json_object_get(um, "detail");
        assert_string_equal(json_string_value(json_object_get(detail, "reason")), "bad_password");
        assert_null(json_object_get(detail, "password"));
        json_decref(o);

        rec.action = (char *)"sandbox.publish";
        rec.outcome = (char *)"success";
        rec.object_type = (char *)"sandbox";
        rec.object_id = (char *)"s-1";
        rec.source_ip = (char *)"";
        s = audit_ocsf_json(&rec, &pos);
        o = json_loads(s, 0, NULL);
        free(s);
        assert_int_equal(json_integer_value(json_object_get(o, "class_uid")), 6003);
        assert_int_equal(json_integer_value(json_object_get(o, "activity_id")), 3);
        assert_string_equal(json_string_value(json_object_get(o, "status")), "Success");
        /* API Activity requires src_endpoint: the producing service when no address */
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "src_endpoint"), "svc_name")),
                            "paddock");
        json_decref(o);

        /* a launch also yields its run's "queued" lifecycle record */
        rec.action = (char *)"run.launch";
        rec.object_type = (char *)"run";
        rec.object_id = (char *)"r-1";
        s = NULL;
        assert_int_equal(audit_ocsf_run_queued_json(&rec, &pos, &s), 1);
        o = json_loads(s, 0, NULL);
        free(s);
        assert_int_equal(json_integer_value(json_object_get(o, "type_uid")), 600299);
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "app"), "uid")), "r-1");
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "metadata"), "uid")),
                            "66666666-7777-4888-9999-aaaaaaaaaaaa:queued");
        json_decref(o);
        rec.action = (char *)"run.cancel";
        assert_int_equal(audit_ocsf_run_queued_json(&rec, &pos, &s), 0);
        assert_null(s);
}

/* Run events on the SIEM feed: class per kind, deterministic uid and bytes. */
static void test_ocsf_run_events(void **state) {
        (void)state;
        Paddock__V1__Envelope env = PADDOCK__V1__ENVELOPE__INIT;
        env.tenant_id = (char *)TENANT;
        env.run_id = (char *)"r-9";
        env.seq = 12;
        env.ts_unix_us = INT64_C(1767323045000006);
        env.message_id = (char *)"66666666-7777-4888-9999-bbbbbbbbbbbb";
        Paddock__V1__RunEvent ev = PADDOCK__V1__RUN_EVENT__INIT;
        ev.env = &env;
        ev.kind = (char *)"policy_decision";
        ev.actor = (char *)"platform";
        ev.data_json = (char *)"{\"level\":\"exec\",\"action\":\"deny\",\"rule\":\"no-curl\",\"token\":\"x\"}";
        char *a = NULL, *b = NULL;
        assert_int_equal(audit_ocsf_run_event_json(&ev, &a), 1);
        assert_int_equal(audit_ocsf_run_event_json(&ev, &b), 1);
        assert_string_equal(a, b); /* a redelivery publishes the same record */
        json_t *o = json_loads(a, 0, NULL);
        free(a);
        free(b);
        assert_int_equal(json_integer_value(json_object_get(o, "class_uid")), 2004);
        assert_int_equal(json_integer_value(json_object_get(o, "type_uid")), 200401);
        assert_int_equal(json_integer_value(json_object_get(o, "action_id")), 2);
        assert_int_equal(json_integer_value(json_object_get(o, "time")), INT64_C(1767323045000));
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "metadata"), "uid")), "r-9:12");
        json_t *fi = json_object_get(o, "finding_info");
        assert_string_equal(json_string_value(json_object_get(json_object_get(fi, "analytic"), "name")), "no-curl");
        assert_null(json_object_get(json_object_get(json_object_get(o, "unmapped"), "data"), "token"));
        json_decref(o);

        ev.kind = (char *)"status";
        ev.status = (char *)"failed";
        ev.terminal = true;
        ev.data_json = (char *)"{\"status\":\"failed\"}";
        assert_int_equal(audit_ocsf_run_event_json(&ev, &a), 1);
        o = json_loads(a, 0, NULL);
        free(a);
        assert_int_equal(json_integer_value(json_object_get(o, "type_uid")), 600204);
        assert_string_equal(json_string_value(json_object_get(o, "status")), "Failure");
        assert_string_equal(json_string_value(json_object_get(o, "status_detail")), "failed");
        json_decref(o);

        ev.kind = (char *)"approval_decided";
        ev.status = (char *)"";
        ev.data_json = (char *)"{\"approval_id\":\"ap-1\",\"decision\":\"deny\",\"by\":\"timeout\"}";
        assert_int_equal(audit_ocsf_run_event_json(&ev, &a), 1);
        o = json_loads(a, 0, NULL);
        free(a);
        assert_int_equal(json_integer_value(json_object_get(o, "type_uid")), 200403);
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "finding_info"), "uid")), "ap-1");
        assert_string_equal(json_string_value(json_object_get(o, "disposition")), "Rejected");
        json_decref(o);

        ev.kind = (char *)"output"; /* not carried */
        assert_int_equal(audit_ocsf_run_event_json(&ev, &a), 0);
        assert_null(a);
}

/* ---- against PostgreSQL --------------------------------------------------- */

static const char *dsn;
static struct pg_pool *pool;

/* evidence's real migrations, read from the source tree, so the test runs
 * against exactly the schema the service creates. */
static struct embedded_file migrations[16];

static int load_migrations(void) {
        const char *dir = PADDOCK_SOURCE_DIR "/services/evidence/migrations";
        DIR *d = opendir(dir);
        if (!d)
                return -errno;
        struct dirent *de;
        size_t n = 0;
        while ((de = readdir(d)) && n < ELEMENTSOF(migrations) - 1) {
                size_t l = strlen(de->d_name);
                if (l < 5 || strcmp(de->d_name + l - 4, ".sql") != 0)
                        continue;
                char path[1024];
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                char *data = calloc(1, 1 << 20);
                size_t len = fread(data, 1, (1 << 20) - 1, f);
                fclose(f);
                migrations[n++] = (struct embedded_file){strdup(de->d_name), data, len};
        }
        closedir(d);
        return (int)n;
}

static int pg_setup(void **state) {
        (void)state;
        pool = pg_pool_new(dsn, 3);
        if (!pool || load_migrations() < 2)
                return -1;
        struct err_detail err = {0};
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        if (!c)
                return -1;
        int r = pg_migrate(c, "evidence", migrations, &err);
        pg_pool_release(pool, c);
        if (r < 0)
                fprintf(stderr, "migrate: %s\n", err.message);
        return r < 0 ? -1 : 0;
}

static char tenants[16][UUID_STR_LEN];
static size_t ntenants;

static const char *new_tenant(void) {
        assert_true(ntenants < ELEMENTSOF(tenants));
        assert_int_equal(id_new_uuid(tenants[ntenants]), 0);
        return tenants[ntenants++];
}

static int pg_teardown(void **state) {
        (void)state;
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        for (size_t i = 0; c && i < ntenants; i++) {
                const char *p[] = {tenants[i]};
                pg_exec(c, "DELETE FROM evidence.audit_log WHERE tenant_id = $1", 1, p, NULL, NULL);
                pg_exec(c, "DELETE FROM evidence.audit_heads WHERE tenant_id = $1", 1, p, NULL, NULL);
        }
        if (c)
                pg_pool_release(pool, c);
        pg_pool_free(pool);
        return 0;
}

/* Replaces an unpacked record's string (owned by the record, freed with it). */
static void set_str(char **field, const char *v) {
        free(*field);
        *field = strdup(v);
}

/* A record as producers make it: through audit_record_encode(). */
static Paddock__V1__AuditRecord *make_record(const char *tenant, int i) {
        char oid[32];
        snprintf(oid, sizeof oid, "obj-%d", i);
        json_t *change = json_pack("{s:i, s:s}", "i", i, "name", oid);
        json_t *detail = json_pack("{s:s, s:i, s:s}", "note", "caf\xc3\xa9 \"quoted\"", "n", i, "token", "sekret");
        struct audit_entry e = {.tenant_id = tenant, .actor = i % 2 ? "user:u1" : "service:api",
                                .action = i % 3 ? "sandbox.publish" : "auth.login", .object_type = "sandbox",
                                .object_id = oid, .source_ip = "127.0.0.1", .outcome = AUDIT_SUCCESS,
                                .change = change, .detail = detail, .producer = "api/test"};
        void *buf = NULL;
        size_t len = 0;
        assert_int_equal(audit_record_encode(&e, &buf, &len, NULL, NULL), 0);
        Paddock__V1__AuditRecord *rec = paddock__v1__audit_record__unpack(NULL, len, buf);
        free(buf);
        json_decref(change);
        json_decref(detail);
        assert_non_null(rec);
        return rec;
}

/* Appends records 1..n to tenant's chain, checking each lands at seq i. */
static void build_chain(PGconn *c, const char *tenant, int n) {
        for (int i = 1; i <= n; i++) {
                _cleanup_(record_freep) Paddock__V1__AuditRecord *rec = make_record(tenant, i);
                struct audit_chain_position pos;
                struct err_detail err = {0};
                int r = audit_chain_append(c, rec, &pos, &err);
                if (r < 0)
                        fprintf(stderr, "append: %s\n", err.message);
                assert_int_equal(r, 1);
                assert_int_equal(pos.seq, (uint64_t)i);
                assert_false(pos.duplicate);
        }
}

static void exec_ok(PGconn *c, const char *sql, const char *tenant) {
        const char *p[] = {tenant};
        struct err_detail err = {0};
        int r = pg_exec(c, sql, 1, p, NULL, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", sql, err.message);
        assert_int_equal(r, 0);
}

static void assert_verify(PGconn *c, const char *tenant, bool ok, uint64_t checked, uint64_t bad,
                          enum audit_verify_reason reason) {
        struct audit_verify_result v;
        assert_int_equal(audit_verify_chain(c, tenant, &v), 0);
        if (v.ok != ok || v.first_bad_seq != bad || v.reason != reason)
                fprintf(stderr, "verify: ok=%d checked=%llu bad=%llu reason=%s\n", v.ok,
                        (unsigned long long)v.checked, (unsigned long long)v.first_bad_seq,
                        audit_verify_reason_to_string(v.reason));
        assert_int_equal(v.ok, ok);
        assert_int_equal(v.checked, checked);
        assert_int_equal(v.first_bad_seq, bad);
        assert_int_equal(v.reason, reason);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
}

static void test_chain_append_verify(void **state) {
        (void)state;
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        assert_non_null(c);
        const char *t = new_tenant();
        assert_verify(c, t, true, 0, 0, AUDIT_VERIFY_OK); /* empty chain */
        build_chain(c, t, 6);
        assert_verify(c, t, true, 6, 0, AUDIT_VERIFY_OK);

        /* what is stored: scrubbed detail, linked hashes, the head */
        PGresult *res = NULL;
        const char *p[] = {t};
        assert_int_equal(pg_exec(c,
                                 "SELECT detail->>'note', detail ? 'token', prev_hash = (SELECT hash FROM"
                                 " evidence.audit_log WHERE tenant_id = $1 AND seq = 1),"
                                 " (SELECT seq FROM evidence.audit_heads WHERE tenant_id = $1)"
                                 " FROM evidence.audit_log WHERE tenant_id = $1 AND seq = 2",
                                 1, p, &res, NULL),
                         0);
        assert_string_equal(PQgetvalue(res, 0, 0), "caf\xc3\xa9 \"quoted\"");
        assert_string_equal(PQgetvalue(res, 0, 1), "f");
        assert_string_equal(PQgetvalue(res, 0, 2), "t");
        assert_string_equal(PQgetvalue(res, 0, 3), "6");
        PQclear(res);

        /* verification inside the caller's transaction (the api's, with its
         * row-level-security setting) uses that transaction and leaves it open */
        assert_int_equal(pg_begin(c, NULL), 0);
        struct audit_verify_result v;
        assert_int_equal(audit_verify_chain(c, t, &v), 0);
        assert_true(v.ok);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
        pg_rollback(c);
        assert_int_equal(pg_exec(c, "SELECT hash FROM evidence.audit_heads WHERE tenant_id = $1", 1, p, &res, NULL), 0);
        assert_string_equal(v.last_hash, PQgetvalue(res, 0, 0));
        PQclear(res);
        const char *empty = new_tenant();
        assert_int_equal(audit_verify_chain(c, empty, &v), 0);
        assert_string_equal(v.last_hash, AUDIT_CHAIN_GENESIS);

        assert_int_equal(audit_verify_chain(c, "not-a-uuid", &v), -EINVAL);
        pg_pool_release(pool, c);
}

static void test_chain_duplicates_ignored(void **state) {
        (void)state;
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        const char *t = new_tenant();
        _cleanup_(record_freep) Paddock__V1__AuditRecord *a = make_record(t, 1);
        _cleanup_(record_freep) Paddock__V1__AuditRecord *b = make_record(t, 2);
        struct audit_chain_position pa, pb, again;
        assert_int_equal(audit_chain_append(c, a, &pa, NULL), 1);
        assert_int_equal(audit_chain_append(c, b, &pb, NULL), 1);
        /* redelivered: nothing appended, the stored position is reported */
        assert_int_equal(audit_chain_append(c, a, &again, NULL), 0);
        assert_true(again.duplicate);
        assert_int_equal(again.seq, 1);
        assert_string_equal(again.hash, pa.hash);
        assert_string_equal(again.ts, pa.ts);
        assert_int_equal(again.ts_us, pa.ts_us);
        assert_int_equal(audit_chain_append(c, b, &again, NULL), 0);
        assert_int_equal(again.seq, 2);
        /* the same message id under another tenant is refused, not retried forever */
        const char *other = new_tenant();
        _cleanup_(record_freep) Paddock__V1__AuditRecord *stolen = make_record(other, 1);
        set_str(&stolen->env->message_id, a->env->message_id);
        struct err_detail err0 = {0};
        assert_int_equal(audit_chain_append(c, stolen, NULL, &err0), -EINVAL);
        assert_verify(c, other, true, 0, 0, AUDIT_VERIFY_OK);
        assert_verify(c, t, true, 2, 0, AUDIT_VERIFY_OK);

        /* invalid records are refused and change nothing */
        _cleanup_(record_freep) Paddock__V1__AuditRecord *bad = make_record(t, 3);
        set_str(&bad->actor, "");
        struct err_detail err = {0};
        assert_int_equal(audit_chain_append(c, bad, NULL, &err), -EINVAL);
        set_str(&bad->actor, "user:u1");
        set_str(&bad->outcome, "maybe");
        assert_int_equal(audit_chain_append(c, bad, NULL, &err), -EINVAL);
        set_str(&bad->outcome, "success");
        set_str(&bad->change_sha256, "xyz");
        assert_int_equal(audit_chain_append(c, bad, NULL, &err), -EINVAL);
        assert_verify(c, t, true, 2, 0, AUDIT_VERIFY_OK);

        /* a detail that is not a JSON object is stored only as its hash */
        _cleanup_(record_freep) Paddock__V1__AuditRecord *odd = make_record(t, 4);
        set_str(&odd->detail_json, "password=hunter2");
        struct audit_chain_position po;
        assert_int_equal(audit_chain_append(c, odd, &po, NULL), 1);
        PGresult *res = NULL;
        const char *p[] = {t};
        assert_int_equal(pg_exec(c, "SELECT detail::text FROM evidence.audit_log WHERE tenant_id = $1 AND seq = 3", 1,
                                 p, &res, NULL),
                         0);
        assert_null(strstr(PQgetvalue(res, 0, 0), "hunter2"));
        assert_non_null(strstr(PQgetvalue(res, 0, 0), "unparsable_detail_sha256"));
        PQclear(res);
        assert_verify(c, t, true, 3, 0, AUDIT_VERIFY_OK);
        pg_pool_release(pool, c);
}

static void test_tampered_field_fails_there(void **state) {
        (void)state;
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        /* each column an attacker could edit, on its own chain */
        const char *edits[] = {
                "UPDATE evidence.audit_log SET actor = 'user:someone-else' WHERE tenant_id = $1 AND seq = 3",
                "UPDATE evidence.audit_log SET outcome = 'failure' WHERE tenant_id = $1 AND seq = 3",
                "UPDATE evidence.audit_log SET detail = detail || '{\"n\": 99}' WHERE tenant_id = $1 AND seq = 3",
                "UPDATE evidence.audit_log SET ts = ts + interval '1 microsecond' WHERE tenant_id = $1 AND seq = 3",
                "UPDATE evidence.audit_log SET source_ip = '' WHERE tenant_id = $1 AND seq = 3",
                "UPDATE evidence.audit_log SET change_sha256 = '' WHERE tenant_id = $1 AND seq = 3",
                "UPDATE evidence.audit_log SET message_id = gen_random_uuid() WHERE tenant_id = $1 AND seq = 3",
        };
        for (size_t i = 0; i < ELEMENTSOF(edits); i++) {
                const char *t = new_tenant();
                build_chain(c, t, 5);
                exec_ok(c, edits[i], t);
                assert_verify(c, t, false, 2, 3, AUDIT_VERIFY_HASH_MISMATCH);
        }
        pg_pool_release(pool, c);
}

static void test_rehashed_record_fails_at_next(void **state) {
        (void)state;
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        const char *t = new_tenant();
        build_chain(c, t, 5);
        /* The attacker edits seq 3 and recomputes its hash correctly: seq 3
         * now verifies, and seq 4's prev_hash no longer matches. */
        PGresult *res = NULL;
        const char *p[] = {t};
        assert_int_equal(pg_exec(c,
                                 "UPDATE evidence.audit_log SET actor = 'user:forged' WHERE tenant_id = $1 AND seq = 3"
                                 " RETURNING message_id::text, " AUDIT_TS_SQL ", actor, action, object_type, object_id,"
                                 " source_ip, outcome, change_sha256, detail::text, prev_hash",
                                 1, p, &res, NULL),
                         0);
        struct audit_chain_fields f = {
                .tenant_id = t, .seq = 3, .message_id = PQgetvalue(res, 0, 0), .ts = PQgetvalue(res, 0, 1),
                .actor = PQgetvalue(res, 0, 2), .action = PQgetvalue(res, 0, 3), .object_type = PQgetvalue(res, 0, 4),
                .object_id = PQgetvalue(res, 0, 5), .source_ip = PQgetvalue(res, 0, 6),
                .outcome = PQgetvalue(res, 0, 7), .change_sha256 = PQgetvalue(res, 0, 8),
                .detail = PQgetvalue(res, 0, 9),
        };
        char h[AUDIT_HASH_HEX_LEN + 1];
        assert_int_equal(audit_chain_hash(PQgetvalue(res, 0, 10), &f, h), 0);
        PQclear(res);
        const char *p2[] = {t, h};
        assert_int_equal(pg_exec(c, "UPDATE evidence.audit_log SET hash = $2 WHERE tenant_id = $1 AND seq = 3", 2, p2,
                                 NULL, NULL),
                         0);
        assert_verify(c, t, false, 3, 4, AUDIT_VERIFY_PREV_HASH_MISMATCH);
        pg_pool_release(pool, c);
}

static void test_deleted_record_is_a_gap(void **state) {
        (void)state;
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        const char *t = new_tenant();
        build_chain(c, t, 5);
        exec_ok(c, "DELETE FROM evidence.audit_log WHERE tenant_id = $1 AND seq = 3", t);
        assert_verify(c, t, false, 2, 3, AUDIT_VERIFY_SEQ_GAP);

        /* the first record, too */
        t = new_tenant();
        build_chain(c, t, 3);
        exec_ok(c, "DELETE FROM evidence.audit_log WHERE tenant_id = $1 AND seq = 1", t);
        assert_verify(c, t, false, 0, 1, AUDIT_VERIFY_SEQ_GAP);

        /* removing the end is caught by the chain head */
        t = new_tenant();
        build_chain(c, t, 5);
        exec_ok(c, "DELETE FROM evidence.audit_log WHERE tenant_id = $1 AND seq >= 4", t);
        assert_verify(c, t, false, 3, 4, AUDIT_VERIFY_HEAD_MISMATCH);
        pg_pool_release(pool, c);
}

struct appender {
        const char *tenant;
        int base;
        int n;
        int failures;
};

static void *append_thread(void *arg) {
        struct appender *a = arg;
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        if (!c) {
                a->failures = a->n;
                return NULL;
        }
        for (int i = 0; i < a->n; i++) {
                Paddock__V1__AuditRecord *rec = make_record(a->tenant, a->base + i);
                if (audit_chain_append(c, rec, NULL, NULL) != 1)
                        a->failures++;
                paddock__v1__audit_record__free_unpacked(rec, NULL);
        }
        pg_pool_release(pool, c);
        return NULL;
}

static void test_concurrent_replicas_keep_one_chain(void **state) {
        (void)state;
        /* two "replicas" (connections) appending to one fresh tenant at once,
         * racing on the creation of its head row too */
        const char *t = new_tenant();
        struct appender a = {t, 0, 25, 0}, b = {t, 100, 25, 0};
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, append_thread, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, append_thread, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        assert_int_equal(a.failures, 0);
        assert_int_equal(b.failures, 0);
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        assert_verify(c, t, true, 50, 0, AUDIT_VERIFY_OK);
        pg_pool_release(pool, c);
}

int main(void) {
        log_init("test", LOG_WARN);
        const struct CMUnitTest pure[] = {
                cmocka_unit_test(test_change_hash_stable),
                cmocka_unit_test(test_sensitive_keys),
                cmocka_unit_test(test_scrub_drops_secrets),
                cmocka_unit_test(test_encode),
                cmocka_unit_test(test_chain_hash_vector),
                cmocka_unit_test(test_ocsf),
                cmocka_unit_test(test_ocsf_run_events),
        };
        int r = cmocka_run_group_tests_name("audit", pure, NULL, NULL);
        if (r != 0)
                return r;
        dsn = getenv("PADDOCK_PG_DSN");
        if (!dsn || !*dsn) {
                fprintf(stderr, "PADDOCK_PG_DSN not set: skipping the chain tests\n");
                return 77;
        }
        const struct CMUnitTest chain[] = {
                cmocka_unit_test(test_chain_append_verify),
                cmocka_unit_test(test_chain_duplicates_ignored),
                cmocka_unit_test(test_tampered_field_fails_there),
                cmocka_unit_test(test_rehashed_record_fails_at_next),
                cmocka_unit_test(test_deleted_record_is_a_gap),
                cmocka_unit_test(test_concurrent_replicas_keep_one_chain),
        };
        return cmocka_run_group_tests_name("audit_chain", chain, pg_setup, pg_teardown);
}
