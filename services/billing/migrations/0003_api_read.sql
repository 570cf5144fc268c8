-- The api serves GET /v1/usage from these tables: read-only, as it reads the
-- evidence tables; the forced tenant policy of 0002 keeps each caller to its
-- own tenant's rows.
GRANT USAGE ON SCHEMA billing TO paddock_api;
GRANT SELECT ON billing.run_usage, billing.team_daily TO paddock_api;
