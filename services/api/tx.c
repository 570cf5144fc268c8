/* The one transaction of a handler's write (tx.h). */
#include <errno.h>

#include "api.h"

int api_tx_begin(struct api_req *r, struct api_tx *tx) {
        *tx = (struct api_tx){.r = r};
        int k = db_open_caller(&tx->d, r, &tx->e);
        if (k < 0)
                return db_fail(r, k, &tx->e, "open database connection");
        if ((k = db_begin(&tx->d, &tx->e)) < 0)
                return db_fail(r, k, &tx->e, "begin transaction");
        tx->open = true;
        return 0;
}

int api_tx_audit(struct api_tx *tx, const char *action, const char *object_type, const char *object_id,
                 json_t *change) {
        return api_audit(tx->r, &tx->d, action, object_type, object_id, "success", change);
}

int api_tx_commit(struct api_tx *tx, const char *what) {
        char c[96];
        snprintf(c, sizeof c, "commit %s", what);
        /* db_commit() answers -EIO (25P02) for an aborted transaction: it
         * rolled back, and either way the tx is over */
        tx->open = false;
        int k = db_commit(&tx->d, &tx->e);
        return k < 0 ? db_fail(tx->r, k, &tx->e, c) : 0;
}

void api_tx_end(struct api_tx *tx) {
        if (tx->open && tx->d.conn)
                db_rollback(&tx->d);
        tx->open = false;
        db_close(&tx->d);
}
