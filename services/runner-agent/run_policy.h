/* A run's policy at run time (issue 12; docs/CONTRACTS.md "Policy engine"):
 * the snapshot's effective rules (SandboxSnapshot.policy_json, built by the
 * api's policy_resolve) in lib/policy's engine, the policy_decision events,
 * and the approvals that hold an action of the agent (a tool call at the hook,
 * an exec or a file open at the platform) until a person decides, the
 * deadline passes (deny) or the run ends (deny).
 *
 * Threads: everything here is thread-safe. Answers are delivered by the run's
 * own approvals thread, never by the control consumer (which only records a
 * decision) and never before approval_requested is on the bus. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/domain.h"
#include "core/err.h"
#include "core/ids.h"
#include "policy/policy_engine.h"
#include "paddock/v1/runs.pb-c.h"

#define RUN_POLICY_BY_MAX 160

struct run_events;
struct run_policy;

/* The run's policy from snap->policy_json (empty: no rules, everything is
 * allowed). run_id and ev are borrowed and must outlive run_policy_free().
 * Returns 0 and *ret, or -EINVAL with reterr naming the bad field (the run
 * must not start: the api built it, so this is a bug or a forgery). */
int run_policy_new(const char *run_id, const Paddock__V1__SandboxSnapshot *snap, struct run_events *ev,
                   struct run_policy **ret, struct err_detail *reterr);

/* The run is ending (its processes are gone): every pending ask is answered
 * "run_ended" (deny) and has been delivered when this returns; a later ask is
 * answered so at once. Decisions still work. Idempotent; accepts NULL. Call
 * before stopping whatever waits on an ask (the hook server, the capture
 * threads), so none of them waits for a person who can no longer matter. */
void run_policy_close(struct run_policy *rp);

/* run_policy_close(), then frees: call once nothing can use rp any more.
 * Accepts NULL; returns NULL. */
struct run_policy *run_policy_free(struct run_policy *rp);

/* The engine (borrowed, lives as long as rp; NULL when rp is NULL). */
const struct policy_engine *run_policy_engine(const struct run_policy *rp);

/* How long an ask waits for a person before it is denied. */
unsigned run_policy_ask_timeout_s(const struct run_policy *rp);

/* True while an ask of the run waits for a person (made, not yet answered):
 * the agent CLIs' stall timer does not run meanwhile (run.c). */
bool run_policy_waiting(struct run_policy *rp);

/* Decides req at level ("hook", "exec", "file", "egress") and emits a
 * `policy_decision` event {level, action, rule (the deciding rule's source,
 * null when none), rule_index, the request's fields, extra's keys} when a
 * rule matched or always_emit is set (the hook: one per tool call); the
 * platform levels emit only when a rule matched, so a run's ten thousand
 * ordinary execs and opens are not doubled. extra is borrowed, may be NULL.
 * rp NULL: allow, nothing emitted. */
struct policy_decision run_policy_decide(struct run_policy *rp, const char *level, const struct policy_request *req,
                                         json_t *extra, bool always_emit);

/* Called exactly once per ask, from the run's approvals thread: approved or
 * not, by whom ("user:<id>", "timeout", "run_ended"), the approval id. */
typedef void (*run_policy_answer_fn)(void *userdata, bool approved, const char *approval_id, const char *by);

/* Holds an action for a person: emits approval_requested {approval_id, kind
 * ("tool" from the hook, "exec", "file"), rule, rule_index, the request's fields, extra's keys (e.g. input,
 * context), deadline, timeout_s} (sync: on the bus before this returns) and
 * answers through fn once decided (approval_decided emitted first, except
 * when the run ended). Returns 0 with the id in approval_id, or a negative
 * errno (fn is then never called: the caller denies). */
int run_policy_ask(struct run_policy *rp, const char *kind, const struct policy_request *req, int rule,
                   json_t *extra, run_policy_answer_fn fn, void *userdata, char approval_id[UUID_STR_LEN]);

/* The blocking form, for a thread that may wait (the hook server): true if
 * approved; by (RUN_POLICY_BY_MAX) and approval_id filled either way. An ask
 * that could not be made is a deny by "error". */
bool run_policy_ask_wait(struct run_policy *rp, const char *kind, const struct policy_request *req, int rule,
                         json_t *extra, char by[RUN_POLICY_BY_MAX], char approval_id[UUID_STR_LEN]);

/* A command line a person approved at the hook: the exec level lets the same
 * command line through without asking again until ttl_s passes, so one
 * approval covers one action (docs/CONTRACTS.md "Policy engine"). */
void run_policy_grant_command(struct run_policy *rp, const char *command, unsigned ttl_s);
bool run_policy_command_granted(struct run_policy *rp, const char *command);

/* control.c: a person's decision for run_id (signed by the api). True if one
 * of that run's pending asks took it (false: the egress proxy's, or unknown).
 * Only records it: never waits on Kafka. */
bool run_policy_on_approval(const char *run_id, const Paddock__V1__ApprovalDecision *d);
