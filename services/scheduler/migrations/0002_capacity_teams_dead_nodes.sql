-- Placement by capacity, per-team concurrency limits, dead nodes and bounded waits.

-- What each run needs from a node (RunRequested.sandbox.limits, defaults filled
-- when the request is stored), the last event sequence seen for it (0: it never
-- started anywhere we know of), when it last became pending (the pending
-- timeout counts from there), the nodes it was moved away from (a runner-agent
-- deduplicates assignments by run id, so a run can never go back to one of them)
-- and when the api asked to cancel it.
ALTER TABLE scheduler.runs
    ADD COLUMN cpus           double precision NOT NULL DEFAULT 1.0,
    ADD COLUMN memory_mb      bigint NOT NULL DEFAULT 2048,
    ADD COLUMN last_seq       bigint NOT NULL DEFAULT 0,
    ADD COLUMN pending_since  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN excluded_nodes text[] NOT NULL DEFAULT '{}',
    ADD COLUMN reason         text,
    ADD COLUMN cancel_requested_at timestamptz;

CREATE INDEX runs_assigned_team_idx ON scheduler.runs (team_id) WHERE state = 'assigned';

-- Set when the scheduler declared the node dead (and failed or moved its runs);
-- cleared by a newer heartbeat.
ALTER TABLE scheduler.nodes ADD COLUMN dead_since timestamptz;

-- Per-team overrides of PADDOCK_TEAM_MAX_CONCURRENT (0 holds every run of the team).
CREATE TABLE scheduler.team_limits (
    team_id        uuid PRIMARY KEY,
    max_concurrent integer NOT NULL CHECK (max_concurrent >= 0)
);
