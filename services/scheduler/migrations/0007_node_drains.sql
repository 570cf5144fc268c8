-- Drained nodes (issue 16, docs/CONTRACTS.md "Node drain"): the scheduler
-- places nothing new on a node listed here; the runs it holds finish. The
-- api writes the list (POST/DELETE /v1/nodes/{id}/drain) and reads it
-- through node_status, whose state says 'draining' for a live drained node.
-- Platform state like scheduler.nodes: no tenant column, no tenant policy.
CREATE TABLE scheduler.node_drains (
    node_id text PRIMARY KEY,
    drained_at timestamptz NOT NULL DEFAULT now(),
    drained_by text NOT NULL
);

GRANT SELECT, INSERT, UPDATE, DELETE ON scheduler.node_drains TO paddock_api;

CREATE OR REPLACE VIEW scheduler.node_status AS
SELECT n.node_id,
       CASE WHEN n.dead_since IS NOT NULL THEN 'dead'
            WHEN n.last_seen <= now() - GREATEST(3 * n.heartbeat_interval_ms, 6000) * interval '1 millisecond'
                THEN 'stale'
            WHEN EXISTS (SELECT 1 FROM scheduler.node_drains d WHERE d.node_id = n.node_id) THEN 'draining'
            ELSE 'ready' END AS state,
       n.last_seen, n.version, n.images,
       n.capacity_slots, n.capacity_cpus, n.capacity_memory_mb,
       n.used_slots, n.used_cpus, n.used_memory_mb
FROM scheduler.nodes n;
