/* Draining a runner node (issue 16; docs/CONTRACTS.md "Node drain"):
 *   POST   /v1/nodes/{id}/drain   the scheduler places nothing new on the
 *                                 node; its running runs finish. 200
 *                                 {"id","state","draining":true,"since"}
 *                                 (again: the same, since unchanged)
 *   DELETE /v1/nodes/{id}/drain   places runs there again. 204
 * Nodes are the platform's; a drain changes where every tenant's runs go, so
 * it takes PERM_ADMIN (routes.c) in the operator tenant (PADDOCK_OPERATOR_TENANT;
 * any other tenant, or the setting unset: 403). An unknown node, or one not
 * draining for DELETE: 404. Audited as node.drain / node.undrain. */
#pragma once
#include "api.h"
#include "tx.h"

int nodes_drain(struct api_req *r);
int nodes_undrain(struct api_req *r);
