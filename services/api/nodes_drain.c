/* POST/DELETE /v1/nodes/{id}/drain (nodes_drain.h): the api writes the
 * scheduler's scheduler.node_drains (scheduler migration 0007 grants it), the
 * scheduler's placement skips what is listed there, and the one shared view,
 * scheduler.node_status, says 'draining'. */
#include "nodes_drain.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "pg/pg.h"

/* A node id as the runner-agent accepts one (PADDOCK_NODE_ID): anything
 * else names no node. */
static bool node_id_valid(const char *id) {
        size_t n = strlen(id);
        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
                      (id[i] >= '0' && id[i] <= '9') || id[i] == '-' || id[i] == '_' || id[i] == '.'))
                        return false;
        return true;
}

/* Nodes are shared by every tenant: only an admin of the operator tenant
 * (PADDOCK_OPERATOR_TENANT) may move every tenant's runs off one. Without
 * that setting the api drains nothing and a node is drained where it runs
 * (`paddock-runner-agent drain`, the DaemonSet's preStop). 0, or the 403
 * recorded on r. */
static int drain_caller_operates(struct api_req *r, struct api_tx *tx) {
        const char *operator_tenant = r->api->cfg.operator_tenant;
        if (!operator_tenant || !*operator_tenant)
                return api_errno(r, -EPERM,
                                 "node drain through the api is off (PADDOCK_OPERATOR_TENANT is not set): drain on the "
                                 "node with paddock-runner-agent drain");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {r->caller.tenant_id, operator_tenant};
        int k = pg_exec(tx->d.conn, "SELECT 1 FROM api.tenants WHERE id = $1 AND name = $2", 2, p, &res, &tx->e);
        if (k < 0)
                return db_fail(r, k, &tx->e, "look up the caller's tenant");
        if (PQntuples(res) != 1)
                return api_errno(r, -EPERM, "nodes are shared by every tenant: only the operator tenant's admins "
                                            "drain them");
        return 0;
}

/* What a drain and an undrain check first, in this order: no body, the
 * caller operates the nodes, the node id names one. Begins tx. 0, or the
 * failure recorded on r. */
static int drain_begin(struct api_req *r, struct api_tx *tx) {
        int k = api_body_none(r);
        if (k < 0 || (k = api_tx_begin(r, tx)) < 0 || (k = drain_caller_operates(r, tx)) < 0)
                return k;
        if (!node_id_valid(r->params[0]))
                return api_errno(r, -ENOENT, "node not found");
        return 0;
}

/* Audits the change (node.drain / node.undrain), commits, logs. */
static int drain_commit(struct api_req *r, struct api_tx *tx, bool draining) {
        const char *node = r->params[0];
        _cleanup_json_ json_t *change = json_pack("{s:s, s:b}", "node", node, "draining", draining);
        int k = api_tx_audit(tx, draining ? "node.drain" : "node.undrain", "node", node, change);
        if (k < 0 || (k = api_tx_commit(tx, draining ? "node drain" : "node undrain")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "user", r->caller.user_id, "node", node),
                draining ? "node drained" : "node undrained");
        return 0;
}

int nodes_drain(struct api_req *r) {
        const char *node = r->params[0];
        _cleanup_tx_ struct api_tx tx = {0};
        int k = drain_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {node, r->caller.user_id};
        /* a node the scheduler knows; drained again: the first drain's time stays */
        k = pg_exec(tx.d.conn,
                    "WITH ins AS ("
                    " INSERT INTO scheduler.node_drains (node_id, drained_by)"
                    " SELECT node_id, $2 FROM scheduler.node_status WHERE node_id = $1"
                    " ON CONFLICT (node_id) DO UPDATE SET node_id = EXCLUDED.node_id"
                    " RETURNING node_id, drained_at)"
                    " SELECT ins.node_id, " DB_TS("ins.drained_at") ", s.state"
                    " FROM ins JOIN scheduler.node_status s USING (node_id)",
                    2, p, &res, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "drain node");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "node not found");
        /* the view reads the drain list as of the statement's start */
        const char *state = strcmp(PQgetvalue(res, 0, 2), "ready") == 0 ? "draining" : PQgetvalue(res, 0, 2);
        if ((k = drain_commit(r, &tx, true)) < 0)
                return k;
        r->out = json_pack("{s:s, s:s, s:b, s:s}", "id", node, "state", state, "draining", 1, "since",
                           PQgetvalue(res, 0, 1));
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int nodes_undrain(struct api_req *r) {
        const char *node = r->params[0];
        _cleanup_tx_ struct api_tx tx = {0};
        int k = drain_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {node};
        k = pg_exec(tx.d.conn, "DELETE FROM scheduler.node_drains WHERE node_id = $1 RETURNING node_id", 1, p, &res,
                    &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "undrain node");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "node %s is not draining", node);
        if ((k = drain_commit(r, &tx, false)) < 0)
                return k;
        r->status = 204;
        return 0;
}
