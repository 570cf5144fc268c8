/* Node preparation at start: state dirs, cgroup mode (and the hugetlb v1
 * mount crun needs on hybrid machines), the read-only rootfs skeleton and the
 * generated /etc every sandbox shares. Idempotent. */
#pragma once
#include "agent.h"
#include "core/err.h"

/* Fills a's layout paths and cgroup fields. Returns 0, or a negative errno with
 * *reterr saying what is impossible on this node. Call once from main(). */
int node_prep(struct agent *a, struct err_detail *reterr);
/* Frees what node_prep allocated. */
void node_prep_free(struct agent *a);
