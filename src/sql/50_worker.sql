
/*
 * Background worker (SPEC section 7): the job-run log and run_jobs().
 *
 * A cycle runs three jobs, in order: refresh_context, calculate_attributes
 * (attributes, audiences and counts) and prune_job_runs.  The background
 * worker (src/worker.c) runs a cycle per configured database every
 * cdp_traits.naptime; run_jobs() runs one now, in the caller's transaction
 * (src/jobs.c).  Every job leaves one row in job_runs.
 */

CREATE TABLE cdp_traits.job_runs (
	id bigserial PRIMARY KEY,
	job text NOT NULL,
	started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	finished_at timestamptz,
	duration interval GENERATED ALWAYS AS (finished_at - started_at) STORED,
	-- running: not finished (or cut short by a crash, until the next cycle marks it failed)
	-- partial: committed, but some attributes or context keys failed (see error)
	status text NOT NULL DEFAULT 'running'
		CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
	-- contexts refreshed, entities calculated, job_runs rows pruned
	rows bigint,
	-- figures of the job (calculation run id, values written, ...) and, for a
	-- failed job, the error's SQLSTATE, detail, hint and context
	detail jsonb,
	error text,
	run_by text NOT NULL CHECK (run_by IN ('worker', 'run_jobs')),
	run_as name,
	pid integer NOT NULL DEFAULT pg_catalog.pg_backend_pid()
);
CREATE INDEX job_runs_started_at ON cdp_traits.job_runs (started_at);
CREATE INDEX job_runs_job ON cdp_traits.job_runs (job, started_at);
COMMENT ON TABLE cdp_traits.job_runs IS
	'one row per job run by the background worker or run_jobs(); rows older than cdp_traits.job_runs_retention are pruned';

CREATE FUNCTION cdp_traits.run_jobs() RETURNS void
LANGUAGE c
SET search_path = pg_catalog, cdp_traits, pg_temp
AS 'MODULE_PATHNAME', 'cdp_run_jobs';
COMMENT ON FUNCTION cdp_traits.run_jobs() IS
	'run the background worker''s cycle now, in this transaction: refresh_context, calculate_attributes, prune_job_runs; each job''s outcome is a row of job_runs';
-- It records and prunes job runs as the extension owner: not for everyone.
REVOKE ALL ON FUNCTION cdp_traits.run_jobs() FROM PUBLIC;
