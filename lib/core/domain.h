/* Domain values more than one program uses, defined once: the statuses of a
 * run and which of them end it, the kinds of a run's events, the states of
 * an approval, and the limits a run gets when its definition leaves one
 * unset (docs/CONTRACTS.md "The house"). The scheduler, the runner-agent,
 * evidence and the CLI read them from here.
 *
 * The database states its own lists (CHECK constraints and the like in the
 * services' migrations); tests/unit/test_domain.c checks they agree. */
#pragma once
#include <stdbool.h>

/* A run's statuses, in the order a run goes through them. The names are the
 * wire and stored form (the "status" of a status event, runs.status). */
enum run_status {
        RUN_QUEUED,
        RUN_SCHEDULED,
        RUN_PROVISIONING,
        RUN_RUNNING,
        RUN_AWAITING_APPROVAL,
        /* terminal from here on */
        RUN_SUCCEEDED,
        RUN_FAILED,
        RUN_CANCELLED,
        RUN_TIMED_OUT,
        RUN_LIMIT_EXCEEDED,
        RUN_REJECTED,
        RUN_STATUS_MAX,
};

/* Every status's name in enum order, NULL-terminated (for option parsers). */
extern const char *const run_status_names[RUN_STATUS_MAX + 1];
/* The name of s ("queued", ...); a static string. s must be below RUN_STATUS_MAX. */
const char *run_status_to_string(enum run_status s);
/* The status named name, or -EINVAL for NULL or an unknown name. */
int run_status_from_string(const char *name);
/* True if s ends a run (nothing follows it). */
bool run_status_is_terminal(enum run_status s);
/* The same for a status name; false for NULL or an unknown name. */
bool run_status_name_is_terminal(const char *name);

/* The kinds of a run's events (proto/paddock/v1/events.proto lists each
 * with its data), NULL-terminated: the wire and stored form of
 * RunEvent.kind and of the api's event "kind". */
extern const char *const run_event_kinds[];
/* The states of an approval (api.approvals.status, the api's OpenAPI enum),
 * NULL-terminated. */
extern const char *const approval_statuses[];
/* True when name is one of list (NULL-terminated); false for NULL. */
bool domain_name_in(const char *const *list, const char *name);

/* Limits of a run whose definition leaves them unset (the scheduler's
 * placement and the runner-agent's sandbox agree on them by reading these;
 * the api's resolved policy must give the same). */
#define RUN_DEFAULT_TIMEOUT_S 1800
#define RUN_DEFAULT_CPUS 1.0
#define RUN_DEFAULT_MEMORY_MB 2048
#define RUN_DEFAULT_DISK_MB 2048
#define RUN_DEFAULT_PIDS 512
/* How long an "ask" decision (egress or policy hook) waits for a human when
 * the spec does not say. */
#define RUN_DEFAULT_ASK_TIMEOUT_S 300
