-- Which catalog images each node has built (NodeHeartbeat.images), so that the
-- api can show them (GET /v1/nodes) and refuse a launch whose image no ready
-- node has, instead of the run failing at provisioning.
ALTER TABLE scheduler.nodes ADD COLUMN images text[] NOT NULL DEFAULT '{}';

-- The one thing of this schema another service reads (docs/CONTRACTS.md):
-- nodes as the api shows them. "ready" = not declared dead and heard from
-- within 3 heartbeat intervals (at least 6 s, the scheduler's default
-- dead-after); "stale" = silent longer but not (yet) declared dead. Nodes
-- are platform infrastructure, not tenant data: every tenant sees them. The
-- view runs with its owner's rights, so the api needs no privilege on the
-- tables themselves.
CREATE VIEW scheduler.node_status AS
SELECT node_id,
       CASE WHEN dead_since IS NOT NULL THEN 'dead'
            WHEN last_seen > now() - GREATEST(3 * heartbeat_interval_ms, 6000) * interval '1 millisecond'
                THEN 'ready'
            ELSE 'stale' END AS state,
       last_seen, version, images,
       capacity_slots, capacity_cpus, capacity_memory_mb,
       used_slots, used_cpus, used_memory_mb
FROM scheduler.nodes;

GRANT USAGE ON SCHEMA scheduler TO paddock_api;
GRANT SELECT ON scheduler.node_status TO paddock_api;
