/* Run statuses, event kinds and approval states (domain.h). */
#include "core/domain.h"

#include <errno.h>
#include <string.h>

const char *const run_status_names[RUN_STATUS_MAX + 1] = {
        [RUN_QUEUED] = "queued",
        [RUN_SCHEDULED] = "scheduled",
        [RUN_PROVISIONING] = "provisioning",
        [RUN_RUNNING] = "running",
        [RUN_AWAITING_APPROVAL] = "awaiting_approval",
        [RUN_SUCCEEDED] = "succeeded",
        [RUN_FAILED] = "failed",
        [RUN_CANCELLED] = "cancelled",
        [RUN_TIMED_OUT] = "timed_out",
        [RUN_LIMIT_EXCEEDED] = "limit_exceeded",
        [RUN_REJECTED] = "rejected",
        [RUN_STATUS_MAX] = NULL,
};

const char *run_status_to_string(enum run_status s) {
        return (unsigned)s < RUN_STATUS_MAX ? run_status_names[s] : NULL;
}

int run_status_from_string(const char *name) {
        if (!name)
                return -EINVAL;
        for (size_t i = 0; i < RUN_STATUS_MAX; i++)
                if (!strcmp(run_status_names[i], name))
                        return (int)i;
        return -EINVAL;
}

bool run_status_is_terminal(enum run_status s) {
        return s >= RUN_SUCCEEDED && s < RUN_STATUS_MAX;
}

bool run_status_name_is_terminal(const char *name) {
        int s = run_status_from_string(name);
        return s >= 0 && run_status_is_terminal((enum run_status)s);
}

const char *const run_event_kinds[] = {
        "status",           "output",          "exec",        "destroyed",   "usage",
        "artifact",         "egress",          "approval_requested", "approval_decided",
        "policy_decision",  "tool_call",       "tool_result", "file_access", "limit",
        "model_call",       NULL,
};

const char *const approval_statuses[] = {"pending", "approved", "denied", "expired", "cancelled", NULL};

bool domain_name_in(const char *const *list, const char *name) {
        if (!name)
                return false;
        for (; *list; list++)
                if (!strcmp(*list, name))
                        return true;
        return false;
}
