/* deploy/topics.txt (local stack and Kubernetes) lists exactly lib/kafka/topics.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kafka/topics.h"

static const char *const header_topics[] = {
        TOPIC_RUNS_REQUESTED, TOPIC_RUNS_ASSIGNED, TOPIC_RUNS_CONTROL, TOPIC_RUNS_EVENTS,
        TOPIC_RUNS_STATUS,    TOPIC_ARTIFACTS,     TOPIC_USAGE,        TOPIC_NODES,
        TOPIC_AUDIT,          TOPIC_SIEM_OCSF,     TOPIC_APPROVALS,    TOPIC_USAGE_ALERTS,
};
#define NTOPICS (sizeof header_topics / sizeof header_topics[0])

static void test_topics_agree(void **state) {
        FILE *f = fopen(PADDOCK_SOURCE_DIR "/deploy/topics.txt", "re");
        assert_non_null(f);
        bool seen[NTOPICS] = {false};
        char line[256];
        int listed = 0;
        while (fgets(line, sizeof line, f)) {
                char name[128];
                int partitions = 0, replication = 0;
                if (line[0] == '#' || sscanf(line, "%127s", name) != 1)
                        continue;
                assert_int_equal(sscanf(line, "%127s %d %d", name, &partitions, &replication), 3);
                assert_true(partitions > 0);
                assert_true(replication > 0);
                listed++;
                size_t i;
                for (i = 0; i < NTOPICS; i++)
                        if (!strcmp(name, header_topics[i]))
                                break;
                if (i == NTOPICS)
                        fail_msg("deploy/topics.txt lists %s, which lib/kafka/topics.h does not define", name);
                assert_false(seen[i]); /* listed twice */
                seen[i] = true;
        }
        fclose(f);
        for (size_t i = 0; i < NTOPICS; i++)
                if (!seen[i])
                        fail_msg("%s from lib/kafka/topics.h is missing in deploy/topics.txt", header_topics[i]);
        assert_int_equal(listed, NTOPICS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_topics_agree),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
