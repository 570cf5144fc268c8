/* The SIEM feed (paddock.siem.ocsf): one OCSF-shaped JSON object per audit
 * record, published by evidence after the record is durable in the chain. */
#pragma once
#include <stdbool.h>
#include "audit/audit_chain.h"
#include "paddock/v1/audit.pb-c.h"
#include "paddock/v1/events.pb-c.h"

#define AUDIT_OCSF_VERSION "1.1.0"

/* Builds the OCSF event of rec (borrowed) at its chain position pos
 * (borrowed): class 3002 Authentication for "auth.*" actions, 6003 API
 * Activity otherwise, with time (ms), actor.user, src_endpoint.ip,
 * api.operation, status, metadata {product, version, uid = message id} and
 * unmapped {paddock_seq, hash, ...}; the detail is scrubbed (audit_scrub).
 * Returns a malloc'd compact JSON string the caller frees, NULL on
 * out-of-memory. Thread-safe. */
char *audit_ocsf_json(const Paddock__V1__AuditRecord *rec, const struct audit_chain_position *pos);

/* Builds the OCSF record of a run event ev (borrowed) of paddock.runs.events
 * (docs/CONTRACTS.md "SIEM feed: run events"): kind "status" provisioning /
 * running / terminal as 6002 Application Lifecycle (Install / Start / Stop),
 * "policy_decision", "approval_requested" and "approval_decided" as 2004
 * Detection Finding; metadata.uid is "<run id>:<seq>" (seq 0: "<run
 * id>:<message id>"), so a redelivered event yields the same record. Sets
 * *ret to a malloc'd compact JSON string the caller frees and returns 1, 0
 * (and *ret NULL) when the event is not carried on the feed, -ENOMEM.
 * Thread-safe. */
int audit_ocsf_run_event_json(const Paddock__V1__RunEvent *ev, char **ret);

/* Whether run events of this kind may be carried on the feed (the kinds
 * audit_ocsf_run_event_json() maps; it may still skip one, e.g. a status
 * it has no activity for). */
bool audit_ocsf_run_event_kind(const char *kind);

/* A run's "queued" lifecycle record, projected from its run.launch audit
 * record rec at pos (both borrowed): 6002 Application Lifecycle, activity 99
 * "Queue", app.uid = the run id, metadata.uid "<message id>:queued". Sets
 * *ret (malloc'd, the caller frees) and returns 1; 0 for any other record;
 * -ENOMEM. Thread-safe. */
int audit_ocsf_run_queued_json(const Paddock__V1__AuditRecord *rec, const struct audit_chain_position *pos,
                               char **ret);
