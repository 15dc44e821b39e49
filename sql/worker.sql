-- run_jobs() (SPEC section 7): the background worker's cycle, run from SQL.
-- Every job leaves a job_runs row; a failing attribute or context key makes
-- its job partial; a failing job is rolled back and recorded and the next
-- one still runs; old rows are pruned.  The worker itself is tested in
-- test/t/020_worker.pl.
\set SHOW_CONTEXT never
-- a fresh extension: no state from earlier tests
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS ev CASCADE;
RESET client_min_messages;

-- the worker is off in this server: every row below comes from run_jobs()
SHOW cdp_traits.enabled;

SET client_min_messages = warning;
CREATE TABLE ev (id int PRIMARY KEY, source_id text, type text, version text,
                 event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('ev');
RESET client_min_messages;
INSERT INTO ev VALUES
  (1, 'web', 'view', '1', '2024-01-01 10:00+00', '{"email": "ann@x"}'),
  (2, 'crm', 'buy',  '1', '2024-01-02 10:00+00', '{"email": "ann@x"}'),
  (3, 'web', 'view', '1', '2024-01-03 10:00+00', '{"email": "bob@x"}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('email',  '{"type": "max", "value": "payload->>''email''"}'),
  ('events', '{"type": "custom", "query": "SELECT count(*) AS value FROM base"}'),
  ('broken', '{"type": "custom", "query": "SELECT max(1 / (length(type) - length(type))) AS value FROM base"}');
CREATE TABLE soon_gone (n int);
INSERT INTO cdp_traits.context (key, query) VALUES
  ('customers', 'SELECT count(*) FROM cdp_traits.customer_entities'),
  ('gone', 'SELECT count(*) FROM public.soon_gone');
DROP TABLE soon_gone;

-- one cycle: the failing attribute and context key are reported by their
-- jobs (partial), everything else is calculated
SELECT cdp_traits.run_jobs();
SELECT job, status, rows, error, run_by, run_as = current_user AS as_caller,
       duration IS NOT NULL AS finished, pid = pg_backend_pid() AS this_session
  FROM cdp_traits.job_runs ORDER BY id;
SELECT job, detail - ARRAY['values_written', 'values_removed', 'values_skipped'] AS detail
  FROM cdp_traits.job_runs ORDER BY id;
SELECT email, events, broken FROM cdp_traits.pivoted_customer_attributes ORDER BY email;
SELECT key, value, error FROM cdp_traits.context ORDER BY key;

-- a job that fails is rolled back and recorded; the next job still runs
ALTER TABLE cdp_traits.calculation_runs RENAME TO calculation_runs_away;
INSERT INTO ev VALUES (4, 'web', 'view', '1', '2024-01-04 10:00+00', '{"email": "cy@x"}');
SELECT cdp_traits.run_jobs();
ALTER TABLE cdp_traits.calculation_runs_away RENAME TO calculation_runs;
SELECT job, status, rows, error, detail->>'sqlstate' AS sqlstate
  FROM cdp_traits.job_runs WHERE id > 3 ORDER BY id;
SELECT count(*) AS cy_calculated FROM cdp_traits.pivoted_customer_attributes WHERE email = 'cy@x';
-- the next cycle catches up
DELETE FROM cdp_traits.context WHERE key = 'gone';
SELECT cdp_traits.run_jobs();
SELECT job, status, rows, error FROM cdp_traits.job_runs WHERE id > 6 ORDER BY id;
SELECT email, events FROM cdp_traits.pivoted_customer_attributes ORDER BY email;

-- run_jobs() records and prunes as the extension owner, so it is not for
-- everyone; a role it is granted to runs the jobs with its own privileges
CREATE ROLE regress_cdp_jobs;
GRANT USAGE ON SCHEMA cdp_traits TO regress_cdp_jobs;
SET ROLE regress_cdp_jobs;
SELECT cdp_traits.run_jobs();
RESET ROLE;
GRANT EXECUTE ON FUNCTION cdp_traits.run_jobs() TO regress_cdp_jobs;
SET ROLE regress_cdp_jobs;
SELECT cdp_traits.run_jobs();
RESET ROLE;
SELECT job, status, error, run_as FROM cdp_traits.job_runs WHERE id > 9 ORDER BY id;

-- pruning: finished rows older than cdp_traits.job_runs_retention (7 days) go
SHOW cdp_traits.job_runs_retention;
INSERT INTO cdp_traits.job_runs (job, started_at, finished_at, status, run_by) VALUES
  ('old',    now() - interval '8 days', now() - interval '8 days', 'succeeded', 'worker'),
  ('recent', now() - interval '6 days', now() - interval '6 days', 'failed', 'worker'),
  ('stuck',  now() - interval '9 days', NULL, 'running', 'worker');
SELECT cdp_traits.run_jobs();
SELECT job, status FROM cdp_traits.job_runs WHERE job IN ('old', 'recent', 'stuck') ORDER BY job;
SELECT rows, detail FROM cdp_traits.job_runs WHERE job = 'prune_job_runs' ORDER BY id DESC LIMIT 1;

-- outcomes are part of the caller's transaction
BEGIN;
SELECT cdp_traits.run_jobs();
SELECT count(*) AS rows_in_transaction FROM cdp_traits.job_runs WHERE id > 15;
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM cdp_traits.job_runs WHERE id > 15;

-- every job writes, and so does their record: a read-only transaction is
-- refused before any job runs (it used to run them and then fail on the
-- INSERT into job_runs); so is a hot standby ("during recovery")
BEGIN READ ONLY;
SELECT cdp_traits.run_jobs();
ROLLBACK;
SET default_transaction_read_only = on;
SELECT cdp_traits.run_jobs();
RESET default_transaction_read_only;

REVOKE ALL ON SCHEMA cdp_traits FROM regress_cdp_jobs;
REVOKE ALL ON FUNCTION cdp_traits.run_jobs() FROM regress_cdp_jobs;
DROP ROLE regress_cdp_jobs;
SET client_min_messages = warning;
DROP TABLE ev CASCADE;
RESET client_min_messages;
