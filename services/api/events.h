/* A run's recorded events (events.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- events.c */
int events_list(struct api_req *r);
/* Loads events of run with seq > after (at most limit) as a JSON array of
 * event objects; with signatures, each also has signer, signature and
 * signed_value (base64; null for unsigned history). -EAGAIN if
 * evidence.run_events does not exist yet. */
int events_query(struct db *d, const char *tenant_id, const char *run_id, int64_t after,
                 int limit, bool signatures, json_t **ret, struct err_detail *e);

/* {"<record id>": {signer, signature, signed_value}} for the records the
 * events of items (events_query with signatures) name; each event takes its
 * record's signer. *ret owned by the caller. */
int events_records_query(struct db *d, json_t *items, json_t **ret, struct err_detail *e);
