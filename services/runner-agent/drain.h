/* The runner's local drain (issue 16; docs/CONTRACTS.md "Node drain"): what
 * the DaemonSet's preStop runs, so that replacing a runner pod lets its runs
 * finish instead of cancelling them.
 *
 * `paddock-runner-agent drain` (PADDOCK_RUNNER_STATE_DIR) writes the flag
 * <state dir>/draining, then waits (up to --timeout-s, default until done)
 * until the agent has removed it. The serving agent, while the flag exists,
 * offers 0 run slots in its heartbeats (the scheduler places nothing new),
 * and once no run is left it removes the flag and stops. An agent that
 * starts removes a flag left behind: a new pod takes runs. */
#pragma once
#include <stdbool.h>

#include "agent.h"

#define RUNNER_DRAIN_FLAG "draining"

/* The `drain` command's main(): argv[0] is "drain". Returns the exit status:
 * 0 once drained, 1 on timeout or error, 78 on a bad argument. */
int runner_drain_main(int argc, char **argv, const char *state_dir);

/* True while the flag exists. Thread-safe. */
bool runner_draining(const struct agent *a);

/* Called from the assignments loop's tick: when draining and idle, removes
 * the flag and requests the shutdown (logged once). */
void runner_drain_tick(struct agent *a);

/* At start: removes a flag a previous process left. */
void runner_drain_reset(const struct agent *a);
