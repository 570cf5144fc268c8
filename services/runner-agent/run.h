/* One run from acceptance to its terminal event, on its own worker thread. */
#pragma once
#include "agent.h"

/* pthread entry point: userdata is the run_slot (borrowed; the slot's
 * `assigned` message is freed here). Marks the slot finished at the end. */
void *run_thread(void *userdata);

/* At start, before consuming assignments (the producer must exist): ends every
 * run a previous process of this node left unfinished (seq/<run id> present,
 * done marker still "accepted") with `destroyed` and status failed "runner
 * restarted", numbered after the last persisted seq. */
void run_recover_interrupted(struct agent *a);
