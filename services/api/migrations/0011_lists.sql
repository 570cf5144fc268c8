-- Finding things: the lists GET /v1/runs and GET /v1/sandboxes page newest
-- first on (created_at, id) (keyset pagination, services/api/lists.c); each
-- index serves the list unfiltered or filtered by one of its filters, scanned
-- backwards. The old (tenant_id, created_at DESC) index is covered by the first.
CREATE INDEX runs_tenant_created_id ON api.runs (tenant_id, created_at, id);
CREATE INDEX runs_team_created_id ON api.runs (team_id, created_at, id);
CREATE INDEX runs_sandbox_created_id ON api.runs (sandbox_id, created_at, id);
CREATE INDEX runs_created_by_created_id ON api.runs (created_by, created_at, id);
DROP INDEX api.runs_tenant_created;
CREATE INDEX sandboxes_tenant_created_id ON api.sandboxes (tenant_id, created_at, id);
CREATE INDEX sandboxes_team_created_id ON api.sandboxes (team_id, created_at, id);

-- POST /v1/runs/{id}/relaunch: the run a run repeats (same sandbox version,
-- team and inputs), shown on the run.
ALTER TABLE api.runs ADD COLUMN relaunch_of uuid REFERENCES api.runs (id) ON DELETE SET NULL;
