/* The SIEM feed (paddock.siem.ocsf): one OCSF-shaped JSON object per audit
 * record, published by evidence after the record is durable in the chain. */
#pragma once
#include "audit/audit_chain.h"
#include "paddock/v1/audit.pb-c.h"

#define AUDIT_OCSF_VERSION "1.1.0"

/* Builds the OCSF event of rec (borrowed) at its chain position pos
 * (borrowed): class 3002 Authentication for "auth.*" actions, 6003 API
 * Activity otherwise, with time (ms), actor.user, src_endpoint.ip,
 * api.operation, status, metadata {product, version, uid = message id} and
 * unmapped {paddock_seq, hash, ...}; the detail is scrubbed (audit_scrub).
 * Returns a malloc'd compact JSON string the caller frees, NULL on
 * out-of-memory. Thread-safe. */
char *audit_ocsf_json(const Paddock__V1__AuditRecord *rec, const struct audit_chain_position *pos);
