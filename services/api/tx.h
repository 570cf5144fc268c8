/* One write of a handler as one transaction (STYLE.md "Ownership and
 * cleanup"): api_tx_begin() opens the caller's connection and begins,
 * the handler authorizes and changes on tx.d, api_tx_audit() queues the
 * audit record in the same transaction, api_tx_commit() commits; a tx that
 * goes out of scope uncommitted is rolled back (_cleanup_tx_), so any early
 * return of a handler changes nothing and is audited nowhere. */
#pragma once
#include <stdbool.h>

#include "db.h"

struct api_req;

struct api_tx {
        struct api_req *r; /* borrowed: the request whose caller writes */
        struct db d;       /* the caller's connection, inside the transaction */
        struct err_detail e; /* the last database failure, for db_fail() */
        bool open;         /* begun, neither committed nor rolled back */
};

/* Opens r's caller's connection (db_open_caller()) and begins the
 * transaction. 0, or a database failure recorded on r (tx then owns no
 * transaction; api_tx_end() is still safe). */
int api_tx_begin(struct api_req *r, struct api_tx *tx);
/* Queues the audit record of the change (api_audit(), outcome success) in
 * tx's transaction. change is borrowed and may be NULL. 0, or the 503
 * recorded on r: the handler returns it and the write is rolled back. */
int api_tx_audit(struct api_tx *tx, const char *action, const char *object_type, const char *object_id,
                 json_t *change);
/* Commits; what names the write in the log ("commit <what>"). tx.d stays
 * open (in a new transaction) for reads after the write. 0, or the failure
 * recorded on r (nothing was written). */
int api_tx_commit(struct api_tx *tx, const char *what);
/* Rolls back what tx did unless it committed, and closes its connection. */
void api_tx_end(struct api_tx *tx);
#define _cleanup_tx_ _cleanup_(api_tx_end)
