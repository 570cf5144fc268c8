-- Nodes as last reported by their runner-agent heartbeats (paddock.nodes).
CREATE TABLE scheduler.nodes (
    node_id               text PRIMARY KEY,
    capacity_slots        integer NOT NULL DEFAULT 0,
    capacity_cpus         double precision NOT NULL DEFAULT 0,
    capacity_memory_mb    bigint NOT NULL DEFAULT 0,
    used_slots            integer NOT NULL DEFAULT 0,
    used_cpus             double precision NOT NULL DEFAULT 0,
    used_memory_mb        bigint NOT NULL DEFAULT 0,
    heartbeat_interval_ms integer NOT NULL DEFAULT 2000,
    version               text,
    last_seen             timestamptz NOT NULL
);

-- One row per run the scheduler has heard of. request is the packed
-- RunRequested as received; it is NULL only for a run whose terminal event
-- arrived before its request (the row then keeps a late request from being placed).
CREATE TABLE scheduler.runs (
    run_id      uuid PRIMARY KEY,
    tenant_id   uuid,
    team_id     uuid,
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'assigned', 'finished')),
    node_id     text,
    request     bytea,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    assigned_at timestamptz,
    finished_at timestamptz
);

-- The placement loop scans pending runs oldest first and counts busy slots per node.
CREATE INDEX runs_pending_idx ON scheduler.runs (created_at, run_id) WHERE state = 'pending';
CREATE INDEX runs_assigned_node_idx ON scheduler.runs (node_id) WHERE state = 'assigned';
