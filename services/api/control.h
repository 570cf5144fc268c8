/* Run control messages on paddock.runs.control (control.c, run_cancel.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- control.c: paddock.runs.control (RunControl, key run id) */
/* Queues rc (its env is filled here) for run_id of tenant_id in the outbox
 * on d, inside d's current transaction: it goes out when that commits.
 * rc and the strings are borrowed. Returns 0 or a negative errno (e filled). */
int control_enqueue(struct api *a, struct db *d, const char *tenant_id, const char *run_id,
                    Paddock__V1__RunControl *rc, struct err_detail *e);
