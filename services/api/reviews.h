/* Reviews of finished runs, the tenant's evidence keys and the signed evidence bundle (reviews.c,
 * tenant_keys.c, evidence_bundle.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- reviews.c, tenant_keys.c, evidence_bundle.c: reviews of finished runs
 * and their signed evidence bundles (docs/CONTRACTS.md "Reviews and the
 * signed evidence bundle"; issue 14 §1, §2) */
int reviews_create(struct api_req *r);
int reviews_list(struct api_req *r);
/* The run's reviews, oldest first, as review objects (*ret owned by the caller). */
int reviews_query(struct db *d, const char *tenant_id, const char *run_id, json_t **ret, struct err_detail *e);
/* GET /v1/tenant/keys: the tenant's evidence-signing public keys, retired ones included. */
int tenant_keys_list(struct api_req *r);
/* POST /v1/tenant/keys/rotate: a new active evidence key (tenant_admin, audited). */
int tenant_keys_rotate(struct api_req *r);
/* The kid of the tenant's active evidence key (made first if it has none),
 * on conn inside the caller's transaction. 0 or negative errno with e. */
int tenant_keys_active(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                       struct err_detail *e);
/* Signs msg (len bytes, borrowed) with the tenant's evidence key kid (the
 * one the signed text names) on conn: the 64-byte Ed25519 signature into
 * sig. 0 or negative errno with e. */
int tenant_keys_sign(struct api *a, PGconn *conn, const char *tenant_id, const char *kid, const void *msg,
                     size_t len, uint8_t sig[64], struct err_detail *e);
int evidence_bundle_get(struct api_req *r);
