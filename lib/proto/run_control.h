/* Values of paddock.runs.control messages that more than one service reads
 * (proto/paddock/v1/runs.proto RunControl). */
#pragma once

/* CancelRun.requested_by of the cancel the api sends when the run's team
 * reached 100 % of a monthly budget (docs/CONTRACTS.md "Budgets"): the
 * runner-agent ends such a run limit_exceeded with the cancel's reason,
 * not cancelled, since no person stopped it. */
#define RUN_CANCEL_BY_BUDGET "budget"
