/* The api's one outbox (outbox.c): what a transaction queues is sent exactly when it commits, by
 * one relay of the deployment. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- outbox.c: the one outbox of everything the api sends (CONTRACTS.md
 * "The api's outbox") and its relay, which produces it in order from one
 * worker of the deployment at a time (a PostgreSQL advisory lock) */
/* Queues value (len bytes, borrowed) for topic under key in api.outbox on
 * conn, inside the caller's transaction, whose tenant setting must be
 * tenant_id (row-level security): it is sent exactly when that transaction
 * commits, never if it rolls back. Returns 0 or a pg_exec() error. */
int outbox_put(PGconn *conn, const char *tenant_id, const char *topic, const char *key, const void *value,
               size_t len, struct err_detail *e);
int outbox_relay_start(struct api *a);
void outbox_relay_stop(void);
