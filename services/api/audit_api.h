/* Audit records of control-plane writes, queued in the write's own transaction, and the audit API
 * (audit_api.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- audit_api.c: audit records of control-plane writes (CONTRACTS.md
 * "Audit chain") and GET /v1/audit, GET /v1/audit/verify */
/* Queues the audit record of a write by r's caller (actor "user:<id>",
 * tenant and client IP from r) in api.outbox on d, inside the write's
 * transaction (d's tenant setting is the caller's): call it after the write
 * succeeded and before COMMIT, so the record is committed exactly when the
 * write is; the relay delivers it to paddock.audit. change (borrowed, may be
 * NULL) is what was written; it is hashed, never sent, and must hold no
 * secret. outcome is "success" or "failure". Returns 0, or a negative errno
 * after recording a 503 "unavailable" problem on r: a write that cannot be
 * audited must not be acknowledged, so the handler rolls it back. */
int api_audit(struct api_req *r, struct db *d, const char *action, const char *object_type, const char *object_id,
              const char *outcome, json_t *change);
/* Like api_audit() for a request without an authenticated caller (failed
 * logins), on a connection of its own: actor "user:anonymous", tenant_id
 * given (NULL/empty: nothing is audited, returns 0), detail (borrowed, may be
 * NULL, no secrets: e.g. the attempted username) sent as detail_json. Does
 * not touch r's problem. */
int api_audit_anonymous(struct api_req *r, const char *tenant_id, const char *action,
                        const char *object_type, const char *object_id, const char *outcome,
                        json_t *detail, struct err_detail *e);
/* Queues the audit record of an operator command's write (bootstrap,
 * import-skills) on d, in its transaction, actor
 * "service:paddock-api-operator"; the serving api's relay delivers it.
 * 0 or -errno. */
int api_audit_operator(struct api *a, struct db *d, const char *tenant_id, const char *action,
                       const char *object_type, const char *object_id, json_t *change, struct err_detail *e);
int audit_api_list(struct api_req *r);
int audit_api_verify(struct api_req *r);
