/* Claim → role mapping for OIDC logins (lib/auth/oidc_roles.h): configuration
 * validation and what a set of verified claims is granted. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "auth/oidc_roles.h"
#include "core/macro.h"

#define TEAM "3b8f0e3c-1d2a-4f5b-8c7d-9e0f1a2b3c4d"
#define TEAM2 "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"

static const char example[] =
        "{\"claim\": \"groups\", \"map\": {"
        "\"paddock-admins\": {\"team\": \"*\", \"roles\": [\"tenant_admin\"]},"
        "\"eng\": {\"team\": \"" TEAM "\", \"roles\": [\"launcher\", \"viewer\"]},"
        "\"eng-leads\": {\"team\": \"" TEAM "\", \"roles\": [\"approver\", \"viewer\"]},"
        "\"sec\": {\"team\": \"*\", \"roles\": [\"security_admin\"]},"
        "\"ops\": {\"team\": \"" TEAM2 "\", \"roles\": [\"reviewer\", \"sandbox_author\"]}}}";

static struct oidc_role_map *map_of(const char *config) {
        json_t *j = json_loads(config, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(j);
        struct oidc_role_map *m = NULL;
        struct err_detail e = {};
        int r = oidc_role_map_parse(j, &m, &e);
        json_decref(j);
        if (r != 0)
                fail_msg("mapping refused: %s", e.message);
        return m;
}

/* Applies the map to claims and returns the grants as compact JSON text. */
static char *grants_of(const struct oidc_role_map *m, const char *claims) {
        json_t *c = json_loads(claims, 0, NULL);
        assert_non_null(c);
        _cleanup_(oidc_grants_freep) struct oidc_grants *g = NULL;
        assert_int_equal(oidc_role_map_apply(m, c, &g), 0);
        json_decref(c);
        json_t *j = oidc_grants_to_json(g);
        assert_non_null(j);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return s;
}

static void expect_grants(const struct oidc_role_map *m, const char *claims, const char *want) {
        _cleanup_free_ char *got = grants_of(m, claims);
        if (strcmp(got, want) != 0)
                fail_msg("claims %s:\n got  %s\n want %s", claims, got, want);
}

static void test_role_names(void **state) {
        const char *names[] = {"tenant_admin", "security_admin", "sandbox_author", "launcher",
                               "approver", "reviewer", "viewer"};
        unsigned seen = 0;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                enum auth_role r;
                assert_int_equal(auth_role_from_string(names[i], &r), 0);
                assert_string_equal(auth_role_to_string(r), names[i]);
                assert_int_equal(seen & r, 0);
                seen |= r;
        }
        assert_int_equal(ELEMENTSOF(names), AUTH_ROLE_COUNT);
        enum auth_role r;
        const char *bad[] = {"admin", "Tenant_Admin", "viewer ", "", "superuser"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(auth_role_from_string(bad[i], &r), -EINVAL);
        assert_int_equal(auth_role_from_string(NULL, &r), -EINVAL);
        assert_null(auth_role_to_string(0));
        assert_null(auth_role_to_string(AUTH_ROLE_VIEWER | AUTH_ROLE_LAUNCHER));
}

static void test_apply_example(void **state) {
        _cleanup_(oidc_role_map_freep) struct oidc_role_map *m = map_of(example);
        expect_grants(m, "{\"groups\": [\"paddock-admins\", \"eng\", \"unrelated\"]}",
                      "[{\"team\":\"*\",\"roles\":[\"tenant_admin\"]},"
                      "{\"team\":\"" TEAM "\",\"roles\":[\"launcher\",\"viewer\"]}]");
        /* a single string claim */
        expect_grants(m, "{\"groups\": \"eng\"}", "[{\"team\":\"" TEAM "\",\"roles\":[\"launcher\",\"viewer\"]}]");
        /* several groups for one team are merged into one grant */
        expect_grants(m, "{\"groups\": [\"eng\", \"eng-leads\", \"ops\", \"sec\"]}",
                      "[{\"team\":\"" TEAM "\",\"roles\":[\"launcher\",\"approver\",\"viewer\"]},"
                      "{\"team\":\"" TEAM2 "\",\"roles\":[\"sandbox_author\",\"reviewer\"]},"
                      "{\"team\":\"*\",\"roles\":[\"security_admin\"]}]");
        /* repeated group values change nothing */
        expect_grants(m, "{\"groups\": [\"eng\", \"eng\"]}",
                      "[{\"team\":\"" TEAM "\",\"roles\":[\"launcher\",\"viewer\"]}]");
}

static void test_apply_no_match(void **state) {
        _cleanup_(oidc_role_map_freep) struct oidc_role_map *m = map_of(example);
        const char *claims[] = {
                "{}",                                           /* claim missing */
                "{\"groups\": []}",
                "{\"groups\": [\"ENG\", \"Paddock-Admins\"]}",  /* case-sensitive */
                "{\"groups\": [\"eng \", \" eng\"]}",
                "{\"groups\": 5}",
                "{\"groups\": {\"eng\": true}}",
                "{\"groups\": [1, null, [\"eng\"], {\"eng\": 1}]}",     /* non-strings ignored */
                "{\"groups\": null}",
                /* a token naming roles or teams directly grants nothing */
                "{\"roles\": [\"tenant_admin\"], \"team\": \"*\", \"group\": \"eng\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(claims); i++)
                expect_grants(m, claims[i], "[]");
}

static void test_claim_paths(void **state) {
        _cleanup_(oidc_role_map_freep) struct oidc_role_map *m = map_of(
                "{\"claim\": \"realm_access.roles\", \"map\": {\"paddock-viewer\": "
                "{\"team\": \"" TEAM "\", \"roles\": [\"viewer\"]}}}");
        expect_grants(m, "{\"realm_access\": {\"roles\": [\"offline_access\", \"paddock-viewer\"]}}",
                      "[{\"team\":\"" TEAM "\",\"roles\":[\"viewer\"]}]");
        expect_grants(m, "{\"realm_access\": {\"roles\": \"paddock-viewer\"}}",
                      "[{\"team\":\"" TEAM "\",\"roles\":[\"viewer\"]}]");
        /* a flat claim whose name contains the dot */
        expect_grants(m, "{\"realm_access.roles\": [\"paddock-viewer\"]}",
                      "[{\"team\":\"" TEAM "\",\"roles\":[\"viewer\"]}]");
        expect_grants(m, "{\"realm_access\": [\"paddock-viewer\"]}", "[]");
        expect_grants(m, "{\"realm_access\": \"paddock-viewer\"}", "[]");
        expect_grants(m, "{\"realm_access\": {\"other\": [\"paddock-viewer\"]}}", "[]");
        expect_grants(m, "{\"roles\": [\"paddock-viewer\"]}", "[]");

        /* an empty map is valid and grants nothing */
        _cleanup_(oidc_role_map_freep) struct oidc_role_map *e = map_of("{\"claim\": \"groups\", \"map\": {}}");
        expect_grants(e, "{\"groups\": [\"eng\"]}", "[]");
}

static void expect_bad(const char *config, const char *reason) {
        json_t *j = json_loads(config, 0, NULL);
        if (!j)
                fail_msg("test config is not json: %s", config);
        struct oidc_role_map *m = NULL;
        struct err_detail e = {};
        int r = oidc_role_map_parse(j, &m, &e);
        json_decref(j);
        if (r != -EINVAL || !strstr(e.message, reason))
                fail_msg("config %s: expected -EINVAL \"%s\", got %d \"%s\"", config, reason, r, e.message);
        assert_string_equal(e.code, "role_mapping");
        assert_null(m);
}

static void test_parse_rejects(void **state) {
        expect_bad("[]", "must be an object");
        expect_bad("{\"claim\": \"groups\", \"map\": {}, \"default\": \"viewer\"}", "unknown member \"default\"");
        expect_bad("{\"map\": {}}", "claim must be");
        expect_bad("{\"claim\": \"\", \"map\": {}}", "claim must be");
        expect_bad("{\"claim\": 7, \"map\": {}}", "claim must be");
        expect_bad("{\"claim\": \".groups\", \"map\": {}}", "empty component");
        expect_bad("{\"claim\": \"a..b\", \"map\": {}}", "empty component");
        expect_bad("{\"claim\": \"groups.\", \"map\": {}}", "empty component");
        expect_bad("{\"claim\": \"groups\"}", "map must be");
        expect_bad("{\"claim\": \"groups\", \"map\": []}", "map must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": [\"viewer\"]}}", "map.\"eng\" must be an object");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"*\", \"roles\": [\"viewer\"], \"x\": 1}}}",
                   "unknown member \"x\"");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"roles\": [\"viewer\"]}}}", "team must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"\", \"roles\": [\"viewer\"]}}}",
                   "team must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"a b\", \"roles\": [\"viewer\"]}}}",
                   "team must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"x'; drop table teams;--\", "
                   "\"roles\": [\"viewer\"]}}}", "team must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"**\", \"roles\": [\"viewer\"]}}}",
                   "team must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": 5, \"roles\": [\"viewer\"]}}}",
                   "team must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"*\"}}}", "roles must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"*\", \"roles\": []}}}", "roles must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"*\", \"roles\": \"viewer\"}}}",
                   "roles must be");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"*\", \"roles\": [\"root\"]}}}",
                   "roles[0] is not a known role");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"*\", \"roles\": [\"viewer\", 3]}}}",
                   "roles[1] is not a known role");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"*\", \"roles\": [\"viewer\", \"viewer\"]}}}",
                   "roles[1] is a duplicate");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"eng\": {\"team\": \"" TEAM "\", \"roles\": [\"tenant_admin\"]}}}",
                   "tenant_admin can only be granted with team \"*\"");
        expect_bad("{\"claim\": \"groups\", \"map\": {\"\": {\"team\": \"*\", \"roles\": [\"viewer\"]}}}",
                   "non-empty");

        /* entry count bound */
        json_t *map = json_object();
        for (int i = 0; i <= OIDC_MAX_MAP_ENTRIES; i++) {
                char k[32];
                snprintf(k, sizeof k, "g%d", i);
                json_object_set_new(map, k, json_pack("{s:s, s:[s]}", "team", "*", "roles", "viewer"));
        }
        json_t *cfg = json_pack("{s:s, s:o}", "claim", "groups", "map", map);
        struct oidc_role_map *m = NULL;
        struct err_detail e = {};
        assert_int_equal(oidc_role_map_parse(cfg, &m, &e), -EINVAL);
        assert_non_null(strstr(e.message, "more than 256"));
        /* at the bound it is fine */
        json_object_del(map, "g0");
        assert_int_equal(oidc_role_map_parse(cfg, &m, &e), 0);
        oidc_role_map_free(m);
        json_decref(cfg);

        assert_int_equal(oidc_role_map_parse(NULL, &m, NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_role_names),
                cmocka_unit_test(test_apply_example),
                cmocka_unit_test(test_apply_no_match),
                cmocka_unit_test(test_claim_paths),
                cmocka_unit_test(test_parse_rejects),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
