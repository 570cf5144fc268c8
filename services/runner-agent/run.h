/* One run from acceptance to its terminal event, on its own worker thread. */
#pragma once
#include "agent.h"

/* pthread entry point: userdata is the run_slot (borrowed; the slot's
 * `assigned` message is freed here). Marks the slot finished at the end. */
void *run_thread(void *userdata);

/* At start, before consuming assignments (the producer must exist): ends every
 * run a previous process of this node left unfinished (seq/<run id> present,
 * done marker still "accepted"): the records of its spool/<run id> produced
 * again, then `destroyed` and status failed "runner restarted", numbered
 * after the last persisted seq. Blocks until they are acknowledged or the
 * process is stopping (then the files stay for the next start). */
void run_recover_interrupted(struct agent *a);
