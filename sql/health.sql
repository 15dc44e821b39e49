-- health(): whether cdp_traits does its work in this database, one row per
-- item.  (The worker is off in these tests: cdp_traits.enabled = off; the
-- TAP tests 002 and 020 see it absent and running.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;
-- times and ages vary: shown as T and AGE
CREATE FUNCTION pg_temp.health() RETURNS TABLE(item text, status text, detail text, hint text)
LANGUAGE sql AS $$
  SELECT h.item, h.status,
         regexp_replace(regexp_replace(h.detail, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', 'T', 'g'),
                        'since [0-9:. a-z]+ ago', 'since AGE ago'),
         h.hint
    FROM cdp_traits.health() h
$$;

-- A fresh install: nothing attached, no rules, the worker off
SELECT * FROM pg_temp.health();

-- Attached with rules: ok
CREATE TABLE public.hev (id bigint PRIMARY KEY, source_id text, type text, version text,
                         event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$), ('phone', $$payload->>'phone'$$), ('email', $$payload->>'mail'$$);
SELECT cdp_traits.attach_events('public.hev');
INSERT INTO public.hev VALUES (1, 'web', 'buy', '1', '2025-01-01', '{"email": "a", "amt": 2}'),
                              (2, 'web', 'buy', '1', '2025-01-02', '{"email": "b", "amt": 0}');
SELECT item, status, detail FROM pg_temp.health() WHERE item IN ('events table', 'stitching rules', 'entities to calculate');

-- A definition and a context key that fail; a run records both
INSERT INTO cdp_traits.attributes VALUES
  ('spent', '{"type": "sum", "value": "payload->>''amt''"}'),
  ('ratio', '{"type": "custom", "query": "SELECT max(10 / (payload->>''amt'')::int) AS value FROM base"}');
INSERT INTO cdp_traits.context (key, query) VALUES ('ok_key', 'SELECT 1'), ('bad_key', 'SELECT 1 / 0');
SET client_min_messages = error;
SELECT cdp_traits.run_jobs();
RESET client_min_messages;
SELECT item, status, detail, hint FROM pg_temp.health()
 WHERE item IN ('attributes', 'context', 'job calculate_attributes', 'job refresh_context', 'job prune_job_runs',
                'entities to calculate');

-- Fixed: ok again (the next run records it)
UPDATE cdp_traits.attributes SET definition = '{"type": "custom", "query": "SELECT max(10 / nullif((payload->>''amt'')::int, 0)) AS value FROM base"}'
 WHERE id = 'ratio';
UPDATE cdp_traits.context SET query = 'SELECT 2' WHERE key = 'bad_key';
SELECT cdp_traits.run_jobs();
SELECT item, status, detail FROM pg_temp.health()
 WHERE item IN ('attributes', 'context', 'job calculate_attributes', 'job refresh_context');
-- a definition removed after it failed is not reported
INSERT INTO cdp_traits.attributes VALUES
  ('gone', '{"type": "custom", "query": "SELECT max(1 / 0) AS value FROM base"}');
SET client_min_messages = error;
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
RESET client_min_messages;
SELECT status, detail FROM pg_temp.health() WHERE item = 'attributes';
DELETE FROM cdp_traits.attributes WHERE id = 'gone';
SELECT status, detail FROM pg_temp.health() WHERE item = 'attributes';

-- A job whose last run failed is an error; a later success clears it
INSERT INTO cdp_traits.job_runs (job, finished_at, status, error, run_by, run_as)
VALUES ('refresh_context', now(), 'failed', 'canceling statement due to statement timeout', 'worker', 'postgres');
SELECT item, status, detail, hint FROM pg_temp.health() WHERE item = 'job refresh_context';
SELECT cdp_traits.run_jobs();
SELECT item, status FROM pg_temp.health() WHERE item = 'job refresh_context';

-- Detached: a warning
SELECT cdp_traits.detach_events();
SELECT item, status, detail, hint FROM pg_temp.health() WHERE item = 'events table';
SELECT cdp_traits.attach_events('public.hev');

-- Entities waiting are counted (no threshold while no worker serves them)
INSERT INTO public.hev VALUES (3, 'web', 'buy', '1', '2025-01-03', '{"email": "c"}');
SELECT item, status, detail FROM pg_temp.health() WHERE item = 'entities to calculate';

-- a reader may call it; a role without the reader's rights may not
CREATE ROLE health_reader IN ROLE cdp_traits_reader;
CREATE ROLE health_nobody;
SET ROLE health_reader;
SELECT count(*) AS items, count(*) FILTER (WHERE status = 'ok') AS ok FROM cdp_traits.health();
SET ROLE health_nobody;
SELECT count(*) FROM cdp_traits.health();
RESET ROLE;
DROP ROLE health_reader;
DROP ROLE health_nobody;
DROP TABLE public.hev CASCADE;
