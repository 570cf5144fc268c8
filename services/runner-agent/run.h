/* One run from acceptance to its terminal event, on its own worker thread. */
#pragma once
#include "agent.h"

/* pthread entry point: userdata is the run_slot (borrowed; the slot's
 * `assigned` message is freed here). Marks the slot finished at the end. */
void *run_thread(void *userdata);
