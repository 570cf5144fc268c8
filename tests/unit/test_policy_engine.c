/* lib/policy/policy_engine: globs (name, path, host), rule parsing with
 * errors naming the field, the decision order (deny over ask over allow,
 * whatever the rules' order; the first rule of the winning action decides;
 * a rule about a field the request lacks never matches), and matching that
 * stays linear on patterns built to make a backtracking matcher explode. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "policy/policy_engine.h"

static void test_name_globs(void **state) {
        (void)state;
        assert_true(policy_glob_match("git push*", "git push origin main", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("git push*", "git push", POLICY_GLOB_NAME));
        assert_false(policy_glob_match("git push*", "git pull", POLICY_GLOB_NAME));
        assert_false(policy_glob_match("git push*", " git push", POLICY_GLOB_NAME)); /* whole string */
        assert_true(policy_glob_match("*rm -rf /*", "sudo rm -rf /var/lib", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("Bash", "Bash", POLICY_GLOB_NAME));
        assert_false(policy_glob_match("Bash", "bash", POLICY_GLOB_NAME)); /* case-sensitive */
        assert_true(policy_glob_match("mcp__*", "mcp__github__create_issue", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("Ba?h", "Bash", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("[BW]*", "Write", POLICY_GLOB_NAME));
        assert_false(policy_glob_match("[!BW]*", "Write", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("[^a-z]*", "Edit", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("v[0-9].[0-9]", "v1.2", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("a\\*b", "a*b", POLICY_GLOB_NAME));
        assert_false(policy_glob_match("a\\*b", "axb", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("[]x]", "]", POLICY_GLOB_NAME));
        /* malformed patterns match nothing */
        assert_false(policy_glob_match("[abc", "a", POLICY_GLOB_NAME));
        assert_false(policy_glob_match("abc\\", "abc", POLICY_GLOB_NAME));
        assert_true(policy_glob_match("*", "", POLICY_GLOB_NAME));
        assert_false(policy_glob_match("?", "", POLICY_GLOB_NAME));
}

static void test_path_globs(void **state) {
        (void)state;
        /* ** / crosses zero or more directories, also before an absolute path */
        assert_true(policy_glob_match("**/.env", ".env", POLICY_GLOB_PATH));
        assert_true(policy_glob_match("**/.env", "app/config/.env", POLICY_GLOB_PATH));
        assert_true(policy_glob_match("**/.env", "/etc/app/.env", POLICY_GLOB_PATH));
        assert_false(policy_glob_match("**/.env", "app/.envrc", POLICY_GLOB_PATH));
        assert_false(policy_glob_match("**/.env", "app/x.env", POLICY_GLOB_PATH));
        /* * and ? stay within one segment */
        assert_true(policy_glob_match("src/*.c", "src/main.c", POLICY_GLOB_PATH));
        assert_false(policy_glob_match("src/*.c", "src/lib/main.c", POLICY_GLOB_PATH));
        assert_false(policy_glob_match("src?main.c", "src/main.c", POLICY_GLOB_PATH));
        assert_false(policy_glob_match("src[/]main.c", "src/main.c", POLICY_GLOB_PATH));
        /* ** inside a segment crosses directories; ** / in the middle may be empty */
        assert_true(policy_glob_match("dist/**", "dist/a/b/c.js", POLICY_GLOB_PATH));
        assert_true(policy_glob_match("src/**/test_*.py", "src/test_a.py", POLICY_GLOB_PATH));
        assert_true(policy_glob_match("src/**/test_*.py", "src/x/y/test_a.py", POLICY_GLOB_PATH));
        assert_false(policy_glob_match("src/**/test_*.py", "srcx/test_a.py", POLICY_GLOB_PATH));
        assert_true(policy_glob_match("secrets/**", "secrets/", POLICY_GLOB_PATH));
        assert_false(policy_glob_match("secrets/**", "secrets", POLICY_GLOB_PATH));
        /* in a name glob * crosses "/" */
        assert_true(policy_glob_match("src/*.c", "src/lib/main.c", POLICY_GLOB_NAME));
}

static void test_host_globs(void **state) {
        (void)state;
        assert_true(policy_glob_match("*.github.com", "API.GitHub.com", POLICY_GLOB_HOST));
        assert_false(policy_glob_match("*.github.com", "github.com", POLICY_GLOB_HOST));
        assert_true(policy_glob_match("[a-c]*.example.org", "B1.example.org", POLICY_GLOB_HOST));
}

/* Patterns that make a backtracking matcher take exponential time run in
 * O(pattern x subject) here: 200 of them against 4,000 characters well
 * within the test's time (a backtracking matcher would not finish). */
static void test_linear_time(void **state) {
        (void)state;
        char subject[4001];
        memset(subject, 'a', sizeof subject - 1);
        subject[sizeof subject - 1] = '\0';
        char pattern[64] = "";
        for (int i = 0; i < 20; i++)
                strcat(pattern, "*a");
        strcat(pattern, "*b");
        clock_t t0 = clock();
        for (int i = 0; i < 200; i++) {
                assert_false(policy_glob_match(pattern, subject, POLICY_GLOB_NAME));
                assert_false(policy_glob_match(pattern, subject, POLICY_GLOB_PATH));
        }
        /* generous: about 2 x 200 x 42 x 4000 steps */
        assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 30.0);
}

static struct policy_engine *engine(const char *json) {
        json_error_t je;
        json_t *rules = json_loads(json, 0, &je);
        assert_non_null(rules);
        struct policy_engine *pe = NULL;
        struct err_detail e = {0};
        int r = policy_engine_new(rules, "spec.policy.rules", &pe, &e);
        json_decref(rules);
        if (r < 0)
                fail_msg("policy_engine_new: %s", e.message);
        return pe;
}

static void test_decision_order(void **state) {
        (void)state;
        /* allow first, deny last: the deny still wins; ask over allow */
        struct policy_engine *pe = engine(
                "[{\"match\": {\"tool\": \"Bash\"}, \"action\": \"allow\"},"
                " {\"match\": {\"tool\": \"Bash\", \"command\": \"git push*\"}, \"action\": \"ask\"},"
                " {\"match\": {\"command\": \"git push*--force*\"}, \"action\": \"deny\"},"
                " {\"match\": {\"path\": \"**/.env\"}, \"action\": \"deny\"},"
                " {\"match\": {\"tool\": \"Read\"}, \"action\": \"allow\"},"
                " {\"match\": {\"host\": \"*.internal.example\"}, \"action\": \"ask\"},"
                " {\"match\": {\"mcp_server\": \"github\", \"mcp_tool\": \"delete_*\"}, \"action\": \"deny\"}]");
        assert_int_equal(policy_engine_n_rules(pe), 7);
        struct policy_decision d;

        d = policy_decide(pe, &(struct policy_request){.tool = "Bash", .command = "ls -la"});
        assert_int_equal(d.action, POLICY_ALLOW);
        assert_int_equal(d.rule, 0);

        d = policy_decide(pe, &(struct policy_request){.tool = "Bash", .command = "git push origin main"});
        assert_int_equal(d.action, POLICY_ASK);
        assert_int_equal(d.rule, 1);

        d = policy_decide(pe, &(struct policy_request){.tool = "Bash", .command = "git push --force origin"});
        assert_int_equal(d.action, POLICY_DENY);
        assert_int_equal(d.rule, 2);

        /* the path rule decides for any tool with that path, e.g. Read allowed by rule 4 */
        d = policy_decide(pe, &(struct policy_request){.tool = "Read", .path = "config/.env"});
        assert_int_equal(d.action, POLICY_DENY);
        assert_int_equal(d.rule, 3);
        d = policy_decide(pe, &(struct policy_request){.tool = "Read", .path = "README.md"});
        assert_int_equal(d.action, POLICY_ALLOW);
        assert_int_equal(d.rule, 4);

        /* a rule about a field the request lacks never matches */
        d = policy_decide(pe, &(struct policy_request){.tool = "Write"});
        assert_int_equal(d.action, POLICY_ALLOW);
        assert_int_equal(d.rule, -1);
        d = policy_decide(pe, &(struct policy_request){.mcp_server = "github"});
        assert_int_equal(d.rule, -1);

        d = policy_decide(pe, &(struct policy_request){.host = "DB.internal.example"});
        assert_int_equal(d.action, POLICY_ASK);
        assert_int_equal(d.rule, 5);
        d = policy_decide(pe, &(struct policy_request){.mcp_server = "github", .mcp_tool = "delete_repo"});
        assert_int_equal(d.action, POLICY_DENY);
        assert_int_equal(d.rule, 6);
        d = policy_decide(pe, &(struct policy_request){.mcp_server = "github", .mcp_tool = "create_issue"});
        assert_int_equal(d.rule, -1);

        assert_string_equal(policy_action_name(POLICY_ASK), "ask");
        policy_engine_free(pe);

        /* no rules: allow, no rule */
        pe = engine("[]");
        d = policy_decide(pe, &(struct policy_request){.tool = "Bash", .command = "rm -rf /"});
        assert_int_equal(d.action, POLICY_ALLOW);
        assert_int_equal(d.rule, -1);
        policy_engine_free(pe);
}

static void test_bad_rules_name_the_field(void **state) {
        (void)state;
        static const struct {
                const char *json, *want;
        } cases[] = {
                {"{}", "spec.policy.rules must be an array"},
                {"[1]", "spec.policy.rules[0] must be an object"},
                {"[{\"match\": {\"tool\": \"x\"}, \"action\": \"allow\", \"why\": 1}]", "spec.policy.rules[0].why"},
                {"[{\"action\": \"allow\"}]", "spec.policy.rules[0].match"},
                {"[{\"match\": {}, \"action\": \"allow\"}]", "spec.policy.rules[0].match"},
                {"[{\"match\": {\"tool\": \"x\"}, \"action\": \"allow\"}, {\"match\": {\"user\": \"x\"}, \"action\": "
                 "\"deny\"}]",
                 "spec.policy.rules[1].match.user"},
                {"[{\"match\": {\"path\": \"[abc\"}, \"action\": \"deny\"}]", "spec.policy.rules[0].match.path"},
                {"[{\"match\": {\"command\": \"\"}, \"action\": \"deny\"}]", "spec.policy.rules[0].match.command"},
                {"[{\"match\": {\"tool\": 3}, \"action\": \"deny\"}]", "spec.policy.rules[0].match.tool"},
                {"[{\"match\": {\"tool\": \"x\"}, \"action\": \"maybe\"}]", "spec.policy.rules[0].action"},
                {"[{\"match\": {\"tool\": \"x\"}}]", "spec.policy.rules[0].action"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                json_t *rules = json_loads(cases[i].json, 0, NULL);
                assert_non_null(rules);
                struct policy_engine *pe = (struct policy_engine *)1;
                struct err_detail e = {0};
                assert_int_equal(policy_engine_new(rules, "spec.policy.rules", &pe, &e), -EINVAL);
                assert_null(pe);
                if (!strstr(e.message, cases[i].want))
                        fail_msg("case %zu: \"%s\" does not name %s", i, e.message, cases[i].want);
                json_decref(rules);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_globs),      cmocka_unit_test(test_path_globs),
                cmocka_unit_test(test_host_globs),      cmocka_unit_test(test_linear_time),
                cmocka_unit_test(test_decision_order),  cmocka_unit_test(test_bad_rules_name_the_field),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
