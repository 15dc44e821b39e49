-- Attribute calculation (SPEC section 4) on a small hand-made event log whose
-- results can be checked by eye: every type, filters, weights, multi-level
-- values, data types with bad values, custom (0/1/N rows), external,
-- audiences, context, a failing attribute, history, and what merges, splits
-- and deletes do to the values.
\set SHOW_CONTEXT never
-- a fresh extension: no state from earlier tests
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS ev CASCADE;
RESET client_min_messages;
SET client_min_messages = warning;
CREATE TABLE ev (id int PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                 version text NOT NULL DEFAULT '1-0-0', event_time timestamptz NOT NULL,
                 payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$), ('user', $$payload->>'user'$$);
INSERT INTO ev VALUES
  -- Ann
  (1, 'web', 'page_view', '1-0-0', '2025-01-01 10:00+00', '{"email": "ann@x", "device": "Mac", "country": "CZ", "w": 1}'),
  (2, 'web', 'page_view', '1-0-0', '2025-01-02 10:00+00', '{"email": "ann@x", "device": "Mac", "w": 1}'),
  (3, 'app', 'app_open',  '1-0-0', '2025-01-03 10:00+00', '{"email": "ann@x", "device": "iPhone", "w": 5}'),
  (4, 'web', 'purchase',  '1-0-0', '2025-01-10 10:00+00', '{"email": "ann@x", "amount": "100.5", "vip": "yes", "items": [{"sku": "A", "price": 10}, {"sku": "B", "price": 20}]}'),
  (5, 'web', 'purchase',  '2-0-0', '2025-01-20 10:00+00', '{"email": "ann@x", "amount": "abc", "items": [{"sku": "B", "price": 20}, {"sku": "C", "price": "n/a"}]}'),
  (6, 'crm', 'purchase',  '1-0-0', '2025-01-25 10:00+00', '{"email": "ann@x", "amount": 50, "birthday": "1990-02-30", "signed_up": "2024-05-01T10:00:00+02:00"}'),
  -- Cid: one event
  (12, 'crm', 'signup', '1-0-0', '2025-03-01 10:00+00', '{"email": "cid@x", "birthday": "1991-05-05T00:00:00Z", "vip": "true", "signed_up": "2025-13-45 10:00"}');
SELECT cdp_traits.attach_events('ev');
-- Bob arrives later (his entity is younger: Ann's survives when they merge)
INSERT INTO ev VALUES
  -- a tie between Linux and Windows
  (7, 'web', 'page_view', '1-0-0', '2025-02-01 10:00+00', '{"user": "bob", "device": "Windows"}'),
  (8, 'web', 'page_view', '1-0-0', '2025-02-02 10:00+00', '{"user": "bob", "device": "Linux"}'),
  (9, 'web', 'page_view', '1-0-0', '2025-02-02 10:00+00', '{"user": "bob", "device": "Windows"}'),
  (10, 'web', 'page_view', '1-0-0', '2025-02-04 10:00+00', '{"user": "bob", "device": "Linux", "country": "SK"}'),
  (11, 'pos', 'purchase', '1-0-0', '2025-02-05 10:00+00', '{"user": "bob", "amount": "10", "vip": "nope", "birthday": "1985-07-14"}');
CREATE TABLE ltv_model (customer_entity_id uuid, value numeric);
RESET client_min_messages;

INSERT INTO cdp_traits.context (key, value) VALUES ('multiplier', '3');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('top_device',    '{"type": "most_frequent", "value": "payload->>''device''"}'),
  ('rare_device',   '{"type": "least_frequent", "value": "payload->>''device''"}'),
  ('heavy_device',  '{"type": "most_frequent", "value": "payload->>''device''", "weight": "(payload->>''w'')::float8"}'),
  ('first_device',  '{"type": "first", "value": "payload->>''device''"}'),
  ('last_device',   '{"type": "last", "value": "payload->>''device''"}'),
  ('devices',       '{"type": "list", "value": "payload->>''device''"}'),
  ('n_devices',     '{"type": "num_of_unique", "value": "payload->>''device''"}'),
  ('country',       '{"type": "value", "value": "payload->>''country''"}'),
  ('revenue',       '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"], "history": true}'),
  ('web_revenue',   '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"], "sources": ["web"], "versions": ["1-0-0"]}'),
  ('avg_amount',    '{"type": "avg", "value": "payload->''amount''", "filter": "type = ''purchase''"}'),
  ('max_price',     '{"type": "max", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''price''", "data_type": "number"}'),
  ('skus_over_15',  '{"type": "list", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''sku''", "outer_filter": "(value->>''price'') ~ ''^[0-9]+$'' AND (value->>''price'')::int > 15"}'),
  ('january_spend', '{"type": "sum", "value": "payload->>''amount''", "outer_filter": "event_time < ''2025-01-15''", "types": ["purchase"]}'),
  ('birthday',      '{"type": "min", "value": "payload->>''birthday''", "data_type": "date"}'),
  ('vip',           '{"type": "max", "value": "payload->>''vip''", "data_type": "boolean"}'),
  ('last_purchase', '{"type": "max", "value": "event_time", "types": ["purchase"], "data_type": "datetime"}'),
  ('signed_up',     '{"type": "min", "value": "payload->>''signed_up''", "data_type": "datetime"}'),
  ('web_events',    '{"type": "custom", "query": "SELECT count(*) AS value FROM base WHERE source_id = ''web''"}'),
  ('emails',        '{"type": "custom", "query": "SELECT DISTINCT payload->>''email'' AS value FROM base"}'),
  ('nothing',       '{"type": "custom", "query": "SELECT 1 AS value FROM base WHERE false"}'),
  ('scaled_events', '{"type": "custom", "query": "SELECT count(*) * context_value(''multiplier'')::int AS value FROM base", "data_type": "number"}'),
  ('broken',        '{"type": "custom", "query": "SELECT 1 / (count(*) - count(*)) AS value FROM base"}'),
  ('ltv',           '{"type": "external", "query": "SELECT customer_entity_id, value FROM public.ltv_model", "data_type": "number"}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('big_spender',   '{"type": "audience", "condition": "revenue > 100"}'),
  ('big_mac',       '{"type": "audience", "condition": "big_spender AND top_device = ''Mac''"}');

-- helpers: an entity by an identifier, its attribute values
CREATE FUNCTION pg_temp.who(text) RETURNS uuid LANGUAGE sql AS $$
  SELECT customer_entity_id FROM cdp_traits.matching WHERE value = $1 $$;
CREATE FUNCTION pg_temp.vals(text) RETURNS TABLE(attribute_id text, value jsonb) LANGUAGE sql AS $$
  SELECT attribute_id, value FROM cdp_traits.customer_attributes
   WHERE customer_entity_id = pg_temp.who($1) ORDER BY 1 $$;
INSERT INTO ltv_model SELECT pg_temp.who('ann@x'), 1234.5;

SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.vals('ann@x');
SELECT * FROM pg_temp.vals('bob');
SELECT * FROM pg_temp.vals('cid@x');
-- per run and attribute: scope, counts, skipped values, the failing one's error
SELECT attribute_id, scope, entities, values_written, values_removed, values_skipped, error
  FROM cdp_traits.calculation_run_attributes ORDER BY attribute_id;
SELECT entities, attributes, failed_attributes, values_written, values_skipped, finished_at IS NOT NULL AS finished
  FROM cdp_traits.calculation_runs;
-- provenance
SELECT DISTINCT definition_version, run_id FROM cdp_traits.customer_attributes;
-- typed pivot
SELECT top_device, devices, n_devices, revenue, birthday, vip, last_purchase, emails, ltv, big_spender, big_mac
  FROM cdp_traits.pivoted_customer_attributes ORDER BY revenue NULLS LAST;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass AND attnum > 0 ORDER BY attnum;
-- counts for segmentation UIs
SELECT * FROM cdp_traits.attribute_counts ORDER BY 1;
SELECT attribute_id, value, customers FROM cdp_traits.attribute_top_values
 WHERE attribute_id IN ('devices', 'top_device') ORDER BY 1, 3 DESC, 2;
SELECT audience_id, customer_entity_id = pg_temp.who('ann@x') AS ann, entered FROM cdp_traits.audience_changes ORDER BY seq;

-- nothing dirty: nothing recalculated, nothing written (the failing
-- definition, tried for every entity at each run, recalculates none)
SELECT cdp_traits.calculate_attributes();
SELECT entities, values_written, values_removed FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;

-- a new event: only its entity is recalculated; history keeps the old revenue
INSERT INTO ev VALUES (13, 'pos', 'purchase', '1-0-0', '2025-02-10 10:00+00', '{"user": "bob", "amount": "200"}');
SELECT cdp_traits.calculate_attributes();
SELECT attribute_id, scope, values_written, values_removed FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND values_written + values_removed > 0 ORDER BY 1;
SELECT value, valid_to IS NULL AS current FROM cdp_traits.attribute_history
 WHERE customer_entity_id = pg_temp.who('bob') ORDER BY valid_from, valid_to NULLS LAST;
SELECT audience_id, entered FROM cdp_traits.audience_changes
 WHERE customer_entity_id = pg_temp.who('bob') ORDER BY seq;

-- a merge: the absorbed entity's values go (its audiences record an exit),
-- the survivor is recalculated over all events
SELECT pg_temp.who('bob') AS bob, pg_temp.who('ann@x') AS ann \gset
INSERT INTO ev VALUES (14, 'crm', 'link', '1-0-0', '2025-03-05 10:00+00', '{"email": "ann@x", "user": "bob"}');
SELECT pg_temp.who('bob') IN (:'bob', :'ann') AS survivor_kept,
       CASE WHEN pg_temp.who('bob') = :'bob' THEN :'ann' ELSE :'bob' END AS absorbed \gset
SELECT :'survivor_kept', count(*) AS absorbed_rows_left FROM cdp_traits.customer_attributes WHERE customer_entity_id = :'absorbed';
SELECT audience_id, entered FROM cdp_traits.audience_changes WHERE customer_entity_id = :'absorbed' ORDER BY seq;
SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.vals('bob');
SELECT sum(customers) FILTER (WHERE attribute_id = 'revenue') AS revenue_customers FROM cdp_traits.attribute_counts;

-- a split: deleting the link separates them again; both are recalculated
DELETE FROM ev WHERE id = 14;
SELECT cdp_traits.calculate_attributes();
SELECT pg_temp.who('ann@x') <> pg_temp.who('bob') AS separate;
SELECT attribute_id, value FROM pg_temp.vals('bob') WHERE attribute_id IN ('revenue', 'top_device', 'emails', 'big_spender');
SELECT attribute_id, value FROM pg_temp.vals('ann@x') WHERE attribute_id IN ('revenue', 'top_device', 'emails', 'big_spender');

-- all of an entity's events deleted: its values are gone
SELECT pg_temp.who('cid@x') AS cid \gset
DELETE FROM ev WHERE id = 12;
SELECT count(*) FROM cdp_traits.customer_attributes WHERE customer_entity_id = :'cid';

-- stale after cdp_traits.recalculate_after
UPDATE cdp_traits.customer_entities SET calculated = now() - interval '3 days' WHERE id = pg_temp.who('ann@x');
SELECT cdp_traits.calculate_attributes();
SET cdp_traits.recalculate_after = '1h';
UPDATE cdp_traits.customer_entities SET calculated = now() - interval '2 hours';
SELECT cdp_traits.calculate_attributes();
RESET cdp_traits.recalculate_after;

-- external traits are re-imported every run
UPDATE ltv_model SET value = 99, customer_entity_id = pg_temp.who('ann@x');
INSERT INTO ltv_model VALUES ('00000000-0000-0000-0000-000000000000', 1);  -- no such entity: ignored
SELECT cdp_traits.calculate_attributes();
SELECT attribute_id, value FROM pg_temp.vals('ann@x') WHERE attribute_id = 'ltv';
-- a model keyed by text (a dbt model's ids cast to varchar): an id that is not
-- a uuid ('', 'n/a', 'None' of a bad join) names no entity; its row is
-- skipped and counted, the other rows are imported (one such row failed the
-- whole trait: invalid input syntax for type uuid); uuid text in any form
-- uuid_in reads (upper case, braces, surrounding blanks) is an id
CREATE DOMAIN entity_ref AS varchar(40);
CREATE TABLE ltv_text (customer_entity_id entity_ref, value text);
INSERT INTO ltv_text VALUES (pg_temp.who('ann@x')::text, '7'), ('', '1'), ('n/a', '2'),
  ('None', '3'), (NULL, '4'), ('  {' || upper(pg_temp.who('bob')::text) || '} ', '8'),
  (replace(pg_temp.who('ann@x')::text, '-', '') || '0', '5');
INSERT INTO cdp_traits.attributes VALUES
  ('ltv_text', '{"type": "external", "query": "SELECT customer_entity_id, value FROM public.ltv_text", "data_type": "number"}');
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
SELECT values_skipped, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND attribute_id = 'ltv_text';
SELECT attribute_id, value FROM pg_temp.vals('ann@x') WHERE attribute_id = 'ltv_text'
UNION ALL
SELECT attribute_id, value FROM pg_temp.vals('bob') WHERE attribute_id = 'ltv_text';
DELETE FROM cdp_traits.attributes WHERE id = 'ltv_text';
DROP TABLE ltv_text;
DROP DOMAIN entity_ref;
-- a model computed before a merge names the absorbed entity: its row is
-- followed to the entity that absorbed it (also along a chain of merges),
-- unless the model has a row of that entity itself, which wins (the rows of
-- absorbed ids were ignored: the customer lost the trait until the model ran
-- again)
INSERT INTO ev VALUES (101, 'crm', 'signup',    '1-0-0', '2025-04-01 10:00+00', '{"email": "eve@x"}');
INSERT INTO ev VALUES (102, 'web', 'page_view', '1-0-0', '2025-04-02 10:00+00', '{"user": "eve2"}');
INSERT INTO ev VALUES (103, 'app', 'app_open',  '1-0-0', '2025-04-03 10:00+00', '{"user": "eve3"}');
SELECT pg_temp.who('eve@x') AS e1, pg_temp.who('eve2') AS e2, pg_temp.who('eve3') AS e3 \gset
CREATE TABLE ltv_merged (customer_entity_id uuid, value numeric);
INSERT INTO ltv_merged VALUES (:'e2', 5), (:'e3', 6);
CREATE TABLE ltv_merged_text (customer_entity_id text, value numeric);
INSERT INTO ltv_merged_text VALUES (upper(:'e2'), 5), ('n/a', 1);
INSERT INTO cdp_traits.attributes VALUES
  ('ltv_m', '{"type": "external", "query": "SELECT customer_entity_id, value FROM public.ltv_merged", "data_type": "number"}'),
  ('ltv_mt', '{"type": "external", "query": "SELECT customer_entity_id, value FROM public.ltv_merged_text"}');
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
-- eve3 is absorbed by eve2, then eve2 by eve@x (the older survives)
INSERT INTO ev VALUES (104, 'app', 'link', '1-0-0', '2025-04-04 10:00+00', '{"email": "eve3@x", "user": "eve3"}'),
                      (105, 'app', 'link', '1-0-0', '2025-04-04 11:00+00', '{"email": "eve3@x", "user": "eve2"}');
SELECT into_id = :'e2' AS e3_into_e2 FROM cdp_traits.entity_merges WHERE merged_id = :'e3';
INSERT INTO ev VALUES (106, 'crm', 'link', '1-0-0', '2025-04-05 10:00+00', '{"email": "eve@x", "user": "eve2"}');
SELECT pg_temp.who('eve3') = :'e1' AS one_entity,
       cdp_traits.current_entity(:'e3') = :'e1' AS chain_to_e1;
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
-- both absorbed rows reach e1: several rows, so a JSON array, and no number
SELECT attribute_id, value FROM pg_temp.vals('eve@x') WHERE attribute_id IN ('ltv_m', 'ltv_mt') ORDER BY 1;
SELECT ltv_m, ltv_mt FROM cdp_traits.pivoted_customer_attributes WHERE customer_entity_id = :'e1';
SELECT values_skipped FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND attribute_id = 'ltv_mt';
-- one absorbed row: its value
DELETE FROM ltv_merged WHERE customer_entity_id = :'e3';
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
SELECT ltv_m FROM cdp_traits.pivoted_customer_attributes WHERE customer_entity_id = :'e1';
-- the survivor's own row wins over the absorbed ones
INSERT INTO ltv_merged VALUES (:'e1', 7), (:'e3', 6);
INSERT INTO ltv_merged_text VALUES (:'e1', 8);
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
SELECT ltv_m, ltv_mt FROM cdp_traits.pivoted_customer_attributes WHERE customer_entity_id = :'e1';
-- an absorbed id whose entity has since lost all its events names no one
DELETE FROM ltv_merged WHERE customer_entity_id = :'e1';
DELETE FROM ev WHERE id BETWEEN 101 AND 106;
SELECT cdp_traits.current_entity(:'e2') IS NULL AS gone;
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
SELECT count(*) AS rows_of_eve FROM cdp_traits.customer_attributes
 WHERE customer_entity_id IN (:'e1', :'e2', :'e3');
DELETE FROM cdp_traits.attributes WHERE id IN ('ltv_m', 'ltv_mt');
DROP TABLE ltv_merged, ltv_merged_text;
-- a number that is not one (numeric NaN and Infinity, which to_jsonb makes
-- the strings "NaN" and "Infinity") is skipped and counted, as a float8 one
-- is, not stored as a string the pivot's numeric column shows as NULL; so
-- is an infinite date or time (a model's 'infinity' for "never")
CREATE TABLE ltv_nan (customer_entity_id uuid, value numeric, until timestamptz);
INSERT INTO ltv_nan VALUES (pg_temp.who('ann@x'), 'NaN', 'infinity'), (pg_temp.who('bob'), 'Infinity', '-infinity');
INSERT INTO cdp_traits.attributes VALUES
  ('ltv_nan', '{"type": "external", "query": "SELECT customer_entity_id, value FROM public.ltv_nan", "data_type": "number"}'),
  ('until', '{"type": "external", "query": "SELECT customer_entity_id, until AS value FROM public.ltv_nan", "data_type": "datetime"}'),
  ('until_day', '{"type": "external", "query": "SELECT customer_entity_id, until::date AS value FROM public.ltv_nan", "data_type": "date"}'),
  ('nan_events', '{"type": "custom", "query": "SELECT ''-Infinity''::numeric AS value UNION ALL SELECT count(*) FROM base", "data_type": "number"}');
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
SELECT attribute_id, values_skipped, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND attribute_id IN ('ltv_nan', 'nan_events', 'until', 'until_day')
 ORDER BY 1;
SELECT attribute_id, value FROM pg_temp.vals('ann@x') WHERE attribute_id IN ('ltv_nan', 'nan_events', 'until', 'until_day')
UNION ALL
SELECT attribute_id, value FROM pg_temp.vals('bob') WHERE attribute_id IN ('ltv_nan', 'nan_events', 'until', 'until_day');
DELETE FROM cdp_traits.attributes WHERE id IN ('ltv_nan', 'nan_events', 'until', 'until_day');
DROP TABLE ltv_nan;
-- a custom query's record with NULL fields is a value (a record "IS NULL"
-- when all its fields are, "IS NOT NULL" only when none is: such a record was
-- dropped, or counted as skipped)
INSERT INTO cdp_traits.attributes VALUES
  ('rec', '{"type": "custom", "query": "SELECT ROW(count(*), max(payload->>''nope'')) AS value FROM base"}'),
  ('rec_nulls', '{"type": "custom", "query": "SELECT ROW(NULL::int, NULL::text) AS value FROM base LIMIT 1"}');
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
SELECT attribute_id, values_skipped, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND attribute_id IN ('rec', 'rec_nulls')
 ORDER BY 1;
SELECT attribute_id, value FROM pg_temp.vals('ann@x') WHERE attribute_id IN ('rec', 'rec_nulls');
DELETE FROM cdp_traits.attributes WHERE id IN ('rec', 'rec_nulls');
-- a custom or external query that runs longer than
-- cdp_traits.attribute_timeout (a model's view that is slow, a table a dbt
-- transaction holds) fails alone: its old values are kept, the others are
-- calculated and written (the caller's statement timeout canceled the whole
-- run, every time); a cancel that is not the attribute's own limit still
-- ends the run
CREATE TABLE slow_model (customer_entity_id uuid, value numeric);
INSERT INTO slow_model SELECT pg_temp.who('ann@x'), 1;
INSERT INTO cdp_traits.attributes VALUES
  ('slow', '{"type": "external", "query": "SELECT customer_entity_id, value FROM public.slow_model", "data_type": "number"}');
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
CREATE OR REPLACE VIEW slow_view AS SELECT customer_entity_id, value + 1 AS value FROM slow_model, pg_sleep(3);
UPDATE cdp_traits.attributes SET definition = '{"type": "external", "query": "SELECT customer_entity_id, value FROM public.slow_view", "data_type": "number"}'
 WHERE id = 'slow';
UPDATE ltv_model SET value = 98;
SET statement_timeout = '20s';
SET cdp_traits.attribute_timeout = '300ms';
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
SELECT attribute_id, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND attribute_id IN ('ltv', 'slow') ORDER BY 1;
SELECT attribute_id, value FROM pg_temp.vals('ann@x') WHERE attribute_id IN ('ltv', 'slow');
-- no limit of its own (0): the statement timeout cancels the run
SET statement_timeout = '1s';
SET cdp_traits.attribute_timeout = 0;
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
RESET statement_timeout;
RESET cdp_traits.attribute_timeout;
DELETE FROM cdp_traits.attributes WHERE id = 'slow';
DROP VIEW slow_view;
DROP TABLE slow_model;

-- an attribute that fails for dirty entities leaves them dirty: the run
-- after the cause is gone recalculates them (they were marked calculated,
-- and kept its old value until recalculate_after)
CREATE TABLE divisor (d int);
INSERT INTO divisor VALUES (1);
INSERT INTO cdp_traits.attributes VALUES
  ('per_divisor', '{"type": "custom", "query": "SELECT count(*) / (SELECT d FROM public.divisor) AS value FROM base"}');
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
UPDATE divisor SET d = 0;
UPDATE cdp_traits.customer_entities SET calculated = NULL WHERE id = pg_temp.who('ann@x');
SELECT cdp_traits.calculate_attributes();
SELECT attribute_id, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND error IS NOT NULL
 ORDER BY 1;
SELECT calculated IS NULL AS still_dirty FROM cdp_traits.customer_entities WHERE id = pg_temp.who('ann@x');
UPDATE divisor SET d = 2;
SELECT cdp_traits.calculate_attributes();
SELECT attribute_id, value FROM pg_temp.vals('ann@x') WHERE attribute_id = 'per_divisor';
SELECT calculated IS NULL AS still_dirty FROM cdp_traits.customer_entities WHERE id = pg_temp.who('ann@x');
DELETE FROM cdp_traits.attributes WHERE id = 'per_divisor';
DROP TABLE divisor;

-- a custom query that fails for some entities only: its record names one
-- (the statement runs over all of them at once; the error names none).
-- The next run tries the one named first; once it no longer fails, another
INSERT INTO ev VALUES (50, 'web', 'page_view', '1-0-0', '2025-03-10 10:00+00', '{"email": "dee@x"}');
CREATE TABLE bad_email (email text);
INSERT INTO bad_email VALUES ('dee@x');
INSERT INTO cdp_traits.attributes VALUES
  ('picky', '{"type": "custom", "query": "SELECT count(*) / CASE WHEN bool_or(payload->>''email'' IN (SELECT b.email FROM public.bad_email b)) THEN 0 ELSE 1 END AS value FROM base"}');
SELECT cdp_traits.calculate_attributes(true) > 0 AS calculated;
-- (broken fails for every entity: it names one of them)
SELECT attribute_id, error, CASE WHEN attribute_id = 'picky' THEN failing_entity = pg_temp.who('dee@x') END AS names_dee,
       failing_entity IN (SELECT id FROM cdp_traits.customer_entities) AS names_one
  FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND error IS NOT NULL ORDER BY 1;
UPDATE bad_email SET email = 'ann@x';
SELECT cdp_traits.calculate_attributes(true) > 0 AS calculated;
SELECT attribute_id, failing_entity = pg_temp.who('ann@x') AS names_ann FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND attribute_id = 'picky';
-- (the search's own time limit is put back)
SHOW cdp_traits.attribute_timeout;
DELETE FROM cdp_traits.attributes WHERE id = 'picky';
DROP TABLE bad_email;
DELETE FROM ev WHERE id = 50;
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;

-- a changed definition: new version, recalculated for every entity (the
-- run returns and records them all, though none is dirty)
UPDATE cdp_traits.attributes SET definition = '{"type": "most_frequent", "value": "upper(payload->>''device'')"}'
 WHERE id = 'top_device';
SELECT version, calculated_version FROM cdp_traits.attributes WHERE id = 'top_device';
SELECT cdp_traits.calculate_attributes();
SELECT entities = (SELECT count(*) FROM cdp_traits.customer_entities) AS all_entities
  FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;
SELECT scope, values_written FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND attribute_id = 'top_device';
SELECT value, definition_version FROM cdp_traits.customer_attributes WHERE attribute_id = 'top_device' ORDER BY 1;
SELECT version, calculated_version FROM cdp_traits.attributes WHERE id = 'top_device';

-- fixed broken attribute: computed for everyone at the next run
UPDATE cdp_traits.attributes SET definition = '{"type": "custom", "query": "SELECT 1 AS value FROM base LIMIT 1"}' WHERE id = 'broken';
SELECT cdp_traits.calculate_attributes();
SELECT count(*) FROM cdp_traits.customer_attributes WHERE attribute_id = 'broken';

-- removing an attribute removes its values and its pivot column; adding one adds a column
DELETE FROM cdp_traits.attributes WHERE id IN ('big_mac');
DELETE FROM cdp_traits.attributes WHERE id IN ('rare_device', 'nothing');
SELECT count(*) FROM cdp_traits.customer_attributes WHERE attribute_id IN ('rare_device', 'big_mac');
SELECT count(*) FROM cdp_traits.attribute_counts WHERE attribute_id IN ('rare_device', 'big_mac');
INSERT INTO cdp_traits.attributes VALUES ('sources', '{"type": "list", "value": "source_id"}');
SELECT attname FROM pg_attribute WHERE attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass AND attnum > 0 ORDER BY attnum;
SELECT cdp_traits.calculate_attributes();
SELECT sources FROM cdp_traits.pivoted_customer_attributes ORDER BY 1;

-- an edit that leaves the pivot's columns as they are does not replace the
-- view (which locks it until the edit commits); one that changes them does
CREATE TEMP TABLE pivot_was AS
SELECT xmin::text AS x FROM pg_rewrite WHERE ev_class = 'cdp_traits.pivoted_customer_attributes'::regclass;
UPDATE cdp_traits.attributes SET definition = definition || '{"filter": "true"}' WHERE id = 'sources';
SELECT (SELECT xmin::text FROM pg_rewrite WHERE ev_class = 'cdp_traits.pivoted_customer_attributes'::regclass) = x
       AS same_view FROM pivot_was;
UPDATE cdp_traits.attributes SET definition = '{"type": "num_of_unique", "value": "source_id"}' WHERE id = 'sources';
SELECT (SELECT xmin::text FROM pg_rewrite WHERE ev_class = 'cdp_traits.pivoted_customer_attributes'::regclass) = x
       AS same_view FROM pivot_was;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass AND attname = 'sources';
UPDATE cdp_traits.attributes SET definition = '{"type": "list", "value": "source_id"}' WHERE id = 'sources';
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass AND attname = 'sources';
DROP TABLE pivot_was;

-- force recalculates everyone and rewrites nothing that did not change
-- (the values of sources went when its column became a bigint: the first
-- run writes them again, the second nothing)
SELECT cdp_traits.calculate_attributes(force => true);
SELECT forced, entities, values_written, values_removed FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;
SELECT cdp_traits.calculate_attributes(force => true);
SELECT forced, entities, values_written, values_removed FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;

-- a run restores the settings it changes for some of its statements
-- (enable_sort for those with a set-returning value, lock_timeout for
-- marking the entities calculated), and marks every entity it calculated
BEGIN;
SET LOCAL lock_timeout = '7s';
UPDATE cdp_traits.customer_entities SET calculated = NULL;
SELECT count(*) AS runs FROM (SELECT cdp_traits.calculate_attributes()) r;
SELECT current_setting('lock_timeout') AS lock_timeout, current_setting('enable_sort') AS enable_sort,
       (SELECT count(*) FROM cdp_traits.customer_entities WHERE calculated IS NULL) AS dirty,
       (SELECT count(*) FROM cdp_traits.attributes WHERE definition::text LIKE '%jsonb_array_elements%') > 0 AS set_returning;
COMMIT;

-- the stored values agree with a recount from the events
SELECT count(*) AS mismatches FROM (
  SELECT customer_entity_id, sum((payload->>'amount')::numeric) FILTER (WHERE payload->>'amount' ~ '^[0-9.]+$') AS s
    FROM cdp_traits.customer_events WHERE type = 'purchase' GROUP BY 1) x
  FULL JOIN (SELECT customer_entity_id, (value #>> '{}')::numeric AS s FROM cdp_traits.customer_attributes
              WHERE attribute_id = 'revenue') y USING (customer_entity_id)
 WHERE x.s IS DISTINCT FROM y.s;

-- the counts kept from the changes of every run so far (merges, splits,
-- deletes, removed attributes) equal a recount of the stored values
SELECT count(*) AS customer_count_mismatches FROM (
  SELECT attribute_id, count(*) AS customers FROM cdp_traits.customer_attributes GROUP BY 1) x
  FULL JOIN cdp_traits.attribute_counts y USING (attribute_id)
 WHERE x.customers IS DISTINCT FROM y.customers;
SELECT count(*) AS value_count_mismatches FROM (
  SELECT a.attribute_id, e.v AS value, count(*) AS customers
    FROM cdp_traits.customer_attributes a
    JOIN cdp_traits.attributes d ON d.id = a.attribute_id
   CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(a.value) = 'array' THEN a.value
                                               ELSE jsonb_build_array(a.value) END) e(v)
   WHERE cdp_traits._pivot_type(d.definition) IN ('text', 'boolean', 'text[]')
   GROUP BY 1, 2) x
  FULL JOIN cdp_traits.attribute_value_counts y USING (attribute_id, value)
 WHERE x.customers IS DISTINCT FROM y.customers;
SELECT count(*) > 5 AS several_values_counted FROM cdp_traits.attribute_value_counts;

-- the calculation's objects of values (_jsonb_object_of, in C) hold what
-- to_jsonb makes of each value, for every type; NULLs are left out
SELECT t, cdp_traits._jsonb_object_of(ARRAY['v'], v) = jsonb_build_object('v', to_jsonb(v)) AS same
  FROM (VALUES ('text', 'a "q" \ é'::text::text), ('varchar', 'x'::varchar::text)) x(t, v);
SELECT cdp_traits._jsonb_object_of(ARRAY['n', 'nan', 'inf', 'i2', 'i8', 'f', 'fnan', 'b', 'd', 'dinf', 'ts', 'tstz',
                                         'j', 'ta', 'na', 'a2', 'e', 'u', 'r', 'none'],
         1.50::numeric, 'NaN'::numeric, '-Infinity'::numeric, 7::int2, 9007199254740993::int8, 0.1::float8,
         'NaN'::float8, false, '2024-02-29'::date, 'infinity'::date, '2024-05-01 10:00:00.5'::timestamp,
         '2024-05-01 10:00+02'::timestamptz, '{"a": [1, {"b": null}]}'::jsonb, ARRAY['x', NULL, 'y'],
         ARRAY[1.0, NULL]::numeric[], ARRAY[[1, 2], [3, 4]], '{}'::text[],
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, ROW(1, 'x'), NULL::text)
       = jsonb_build_object('n', to_jsonb(1.50::numeric), 'nan', to_jsonb('NaN'::numeric),
         'inf', to_jsonb('-Infinity'::numeric), 'i2', to_jsonb(7::int2), 'i8', to_jsonb(9007199254740993::int8),
         'f', to_jsonb(0.1::float8), 'fnan', to_jsonb('NaN'::float8), 'b', to_jsonb(false),
         'd', to_jsonb('2024-02-29'::date), 'dinf', to_jsonb('infinity'::date),
         'ts', to_jsonb('2024-05-01 10:00:00.5'::timestamp), 'tstz', to_jsonb('2024-05-01 10:00+02'::timestamptz),
         'j', '{"a": [1, {"b": null}]}'::jsonb, 'ta', to_jsonb(ARRAY['x', NULL, 'y']),
         'na', to_jsonb(ARRAY[1.0, NULL]::numeric[]), 'a2', to_jsonb(ARRAY[[1, 2], [3, 4]]),
         'e', to_jsonb('{}'::text[]), 'u', to_jsonb('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid),
         'r', to_jsonb(ROW(1, 'x'))) AS same_as_to_jsonb;
SELECT cdp_traits._jsonb_object_of(ARRAY['a', 'b'], NULL::text, NULL::int) AS all_null,
       cdp_traits._jsonb_object_of(ARRAY['a', 'b'], 'x'::text, 2) AS two;
SELECT cdp_traits._jsonb_object_of(ARRAY['a'], 1, 2);
-- keys of every length order, NULL keys, a repeated key (its later value
-- wins, as in jsonb_build_object), and key arrays that change from row to
-- row of one statement
SELECT k, cdp_traits._jsonb_object_of(k, 1, 'two'::text, 3.5, true) AS built,
       cdp_traits._jsonb_object_of(k, 1, 'two'::text, 3.5, true)
         = (SELECT jsonb_object_agg(x.key, x.val ORDER BY x.n)
              FROM unnest(k, ARRAY[to_jsonb(1), to_jsonb('two'::text), to_jsonb(3.5), to_jsonb(true)])
                   WITH ORDINALITY x(key, val, n) WHERE x.key IS NOT NULL) AS as_sql
  FROM (VALUES (ARRAY['dddd', 'a', 'ccc', 'bb']), (ARRAY['a', 'bb', 'ccc', 'dddd']),
               (ARRAY['zz', NULL, 'a', 'zz']), (ARRAY['b', 'a', 'b', 'a'])) v(k);

-- an entity's values after a step (_merge_values, in C): stored minus the
-- attributes replaced, plus the new ones; the names replaced may change from
-- row to row of one statement
SELECT o, n, r, cdp_traits._merge_values(o, n, r) AS merged,
       cdp_traits._merge_values(o, n, r) = (COALESCE(o, '{}') - r) || COALESCE(n, '{}') AS as_sql
  FROM (VALUES (NULL::jsonb, '{"a": 1}'::jsonb, '{a}'::text[]),
               (NULL, NULL, '{a}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', NULL, '{}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', NULL, '{bb, zz}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', '{"a": 2}', '{c}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', '{"d": true}', ARRAY['c', NULL, 'a']),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', '{"bb": {"k": 1}}', '{a, bb, c}')) v(o, n, r);
SELECT cdp_traits._merge_values('{"a": 1}', '[1]', '{}');
SELECT cdp_traits._merge_values('{"a": 1}', NULL, NULL);
-- whether they change (_values_changed, in C, without building the merged
-- object): the same as comparing with the merged object, for keys of every
-- length order, equal numbers of another scale, nested values, removals
SELECT o, n, r, cdp_traits._values_changed(o, n, r) AS changed,
       cdp_traits._values_changed(o, n, r) = (o IS DISTINCT FROM cdp_traits._merge_values(o, n, r)) AS as_merge
  FROM (VALUES (NULL::jsonb, '{"a": 1}'::jsonb, '{a}'::text[]),
               (NULL, NULL, '{a}'),
               ('{}', NULL, '{}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', NULL, '{}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', NULL, '{zz}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', NULL, '{bb}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', '{"a": 1.00, "bb": [1, 2]}', '{a, bb}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', '{"a": 1, "bb": [2, 1]}', '{a, bb}'),
               ('{"a": 1, "bb": [1, 2], "c": "x"}', '{"c": "x", "ddd": null}', '{c, ddd}'),
               ('{"a": 1, "bb": {"k": [1, {"z": true}]}}', '{"bb": {"k": [1, {"z": true}]}}', '{bb}'),
               ('{"a": 1, "bb": {"k": [1, {"z": true}]}}', '{"bb": {"k": [1, {"z": false}]}}', '{bb}'),
               ('{"a": true, "b": null, "c": "x"}', '{"a": "true", "b": null}', '{a, b}'),
               ('{"a": true, "b": null, "c": "x"}', '{"b": null, "c": "x"}', ARRAY['b', NULL, 'c']),
               ('{"a": 1, "bb": 2}', '{"bb": 2, "ccc": 3}', '{}')) v(o, n, r);
SELECT cdp_traits._values_changed('{"a": 1}', '[1]', '{}');
SELECT cdp_traits._values_changed('[1]', '{"a": 1}', '{}');
SELECT cdp_traits._values_changed('{"a": 1}', NULL, NULL);
-- the counts' pass over old and new objects takes objects only
SELECT cdp_traits._value_deltas(o, n, ARRAY['a'], ARRAY[true])
  FROM (VALUES ('{"a": 1}'::jsonb, '{"a": 2}'::jsonb), ('[1]', '{"a": 1}')) v(o, n);
-- (with no attributes at all, the flags are an empty list: the removal of
-- entities whose values name no attribute that exists passes them on)
SELECT cdp_traits._categorical('{}') AS no_flags,
       cdp_traits._value_deltas('{"gone": "x"}', NULL, '{}', cdp_traits._categorical('{}')) AS deltas;
-- and over many random objects (keys of several lengths, values that are
-- often equal), with the names replaced changing from row to row
SELECT count(*) AS cases,
       count(*) FILTER (WHERE cdp_traits._values_changed(o, n, r)) BETWEEN 1000 AND 4900 AS some_changed,
       count(*) FILTER (WHERE cdp_traits._values_changed(o, n, r)
                              IS DISTINCT FROM (o IS DISTINCT FROM cdp_traits._merge_values(o, n, r))) AS wrong_changed,
       count(*) FILTER (WHERE cdp_traits._merge_values(o, n, r)
                              IS DISTINCT FROM (COALESCE(o, '{}') - r) || COALESCE(n, '{}')) AS wrong_merged
  FROM (SELECT (SELECT jsonb_object_agg(k, v) FROM (SELECT k, CASE WHEN random() < 0.5 THEN to_jsonb(1) ELSE to_jsonb(ARRAY[1, 2]) END v
                  FROM unnest(ARRAY['a', 'bb', 'ccc', 'b', 'aa', 'dddd']) k WHERE random() < 0.5 AND i > 0) x) AS o,
               (SELECT jsonb_object_agg(k, v) FROM (SELECT k, CASE WHEN random() < 0.5 THEN to_jsonb(1) ELSE to_jsonb(ARRAY[1, 2]) END v
                  FROM unnest(ARRAY['a', 'bb', 'ccc', 'b', 'aa', 'dddd']) k WHERE random() < 0.3 AND i > 0) x) AS n,
               (SELECT COALESCE(array_agg(k), '{}') FROM unnest(ARRAY['a', 'bb', 'ccc', 'b', 'aa', 'dddd']) k WHERE random() < 0.4 AND i > 0) AS r,
               i
          FROM generate_series(1, 5000) i) t;

-- the conversions behind data_type never fail: NULL for what does not convert
SELECT t, cdp_traits.to_number(t) AS number, cdp_traits._to_boolean(t) AS boolean,
       cdp_traits._to_date(t) AS date, cdp_traits._to_timestamptz(t) AS datetime
  FROM (VALUES ('42'), (' -1.5e3 '), ('abc'), (''), ('yes'), ('OFF'), ('0'), ('2024-02-29'),
               ('2023-02-29'), ('2024-05-01T10:00:00+02:00'), ('2024-05-01 10:00 Europe/Prague'),
               ('May 3, 2024'), ('infinity'), ('epoch'), ('now'), ('10000000-01-01'),
               ('1e999999'), ('NaN')) v(t);

-- more predefined attributes than one call of _jsonb_object_of takes (90):
-- the objects of the chunks are joined
DELETE FROM cdp_traits.attributes;
INSERT INTO cdp_traits.attributes (id, definition)
SELECT 'm' || lpad(i::text, 3, '0'), jsonb_build_object('type', 'max', 'value', format('event_time + interval ''%s hours''', i),
                                                         'data_type', 'datetime')
  FROM generate_series(1, 185) i;
SELECT cdp_traits.calculate_attributes(force => true) > 0 AS calculated;
SELECT count(DISTINCT customer_entity_id) AS entities, count(*) / count(DISTINCT customer_entity_id) AS values_each,
       bool_and((value #>> '{}')::timestamptz = (SELECT max(event_time) FROM cdp_traits.customer_events e
                                                  WHERE e.customer_entity_id = a.customer_entity_id)
                                                + make_interval(hours => substr(attribute_id, 2)::int)) AS all_right
  FROM cdp_traits.customer_attributes a;
DELETE FROM cdp_traits.attributes;

-- only custom attributes (no predefined statement): the rows of several
-- custom attributes of one entity make one object
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('n_events', '{"type": "custom", "query": "SELECT count(*) AS value FROM base"}'),
  ('n_sources', '{"type": "custom", "query": "SELECT count(DISTINCT source_id) AS value FROM base"}');
SELECT cdp_traits.calculate_attributes(force => true) > 0 AS calculated;
SELECT count(*) AS entities, count(*) FILTER (WHERE vals ?& ARRAY['n_events', 'n_sources']) AS with_both,
       (SELECT count(*) FROM cdp_traits.customer_entities) AS of
  FROM cdp_traits.entity_attributes;
DELETE FROM cdp_traits.attributes;

-- Over many entities (here: statistics that say so), a statement may run as
-- two halves of the entities side by side (_halves): only if the planner
-- makes them a parallel Append, and the halves give what the whole gives.
INSERT INTO ev
SELECT 100000 + i, (ARRAY['web', 'app', 'crm'])[1 + i % 3], (ARRAY['page_view', 'purchase', 'app_open', 'signup'])[1 + i % 4],
       '1-0-0', '2025-01-01 00:00+00'::timestamptz + i * interval '1 hour', jsonb_build_object('email', 'h' || (i % 60) || '@x')
  FROM generate_series(1, 300) i;
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('h_sources', '{"type": "list", "value": "source_id"}'),
  ('h_top_type', '{"type": "most_frequent", "value": "type"}'),
  ('h_last_type', '{"type": "last", "value": "type"}');
SELECT cdp_traits.calculate_attributes(force => true) > 0 AS calculated;
CREATE TEMP TABLE h_whole AS SELECT customer_entity_id, vals FROM cdp_traits.entity_attributes;
ANALYZE cdp_traits.customer_entities;
UPDATE pg_class SET reltuples = 100000 WHERE oid = 'cdp_traits.customer_entities'::regclass;
-- (the halves are planned with settings of their own, which the run puts
-- back: the caller's transaction goes on with its own)
BEGIN;
SET LOCAL min_parallel_table_scan_size = '16MB';
SET LOCAL enable_hashagg = on;
SELECT cdp_traits.calculate_attributes(force => true) > 0 AS calculated;
SELECT current_setting('min_parallel_table_scan_size') AS scan_size,
       current_setting('enable_hashagg') AS hashagg;
COMMIT;
SELECT values_written AS rewritten FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;
ANALYZE cdp_traits.customer_entities;
CREATE TEMP TABLE h_q AS
SELECT 'SELECT e.customer_entity_id AS eid, cdp_traits.unique_list(e.source_id) AS l, '
       'cdp_traits.last(e.type, e.event_time) AS t, count(*) AS n FROM ' AS head,
       '(SELECT * FROM cdp_traits.customer_events ce WHERE ce.customer_entity_id IS NOT NULL) e' AS events_sql,
       ' GROUP BY e.customer_entity_id' AS tail,
       (SELECT id FROM cdp_traits.customer_entities ORDER BY id
         OFFSET (SELECT count(*) / 2 FROM cdp_traits.customer_entities) LIMIT 1) AS median;
SET max_parallel_workers_per_gather = 0;
SELECT cdp_traits._halves(head, events_sql, tail, median) IS NULL AS whole_without_workers FROM h_q;
RESET max_parallel_workers_per_gather;
SELECT cdp_traits._halves(head, events_sql, tail, NULL) IS NULL AS whole_without_median FROM h_q;
DO $$
DECLARE
	q record;
	n_whole bigint;
	n_halves bigint;
	differ bigint;
BEGIN
	SELECT * INTO q FROM h_q;
	EXECUTE 'CREATE TEMP TABLE h_a AS ' || q.head || q.events_sql || q.tail;
	EXECUTE 'CREATE TEMP TABLE h_b AS ' || cdp_traits._halves(q.head, q.events_sql, q.tail, q.median, false);
	SELECT count(*) INTO n_whole FROM h_a;
	SELECT count(*) INTO n_halves FROM h_b;
	SELECT count(*) INTO differ FROM ((TABLE h_a EXCEPT ALL TABLE h_b) UNION ALL (TABLE h_b EXCEPT ALL TABLE h_a)) d;
	RAISE NOTICE 'entities: whole %, halves % (both halves non-empty: %), rows that differ: %',
		n_whole, n_halves,
		(SELECT count(*) FILTER (WHERE eid < q.median) > 0 AND count(*) FILTER (WHERE eid >= q.median) > 0 FROM h_b),
		differ;
END;
$$;
SELECT count(*) AS entities,
       count(*) FILTER (WHERE w.vals = a.vals) AS same_values
  FROM h_whole w JOIN cdp_traits.entity_attributes a USING (customer_entity_id);
DELETE FROM cdp_traits.attributes;
DELETE FROM ev WHERE id > 100000;

-- an audience that keeps history: one toggle and one history row per
-- change, not one for the history and one for the audience
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('spent',   '{"type": "sum", "value": "payload->>''amount''"}'),
  ('spender', '{"type": "audience", "condition": "spent > 0", "history": true}');
SELECT count(*) AS runs FROM (SELECT cdp_traits.calculate_attributes()) r;
SELECT count(*) AS toggles, count(DISTINCT customer_entity_id) AS entities
  FROM cdp_traits.audience_changes WHERE audience_id = 'spender';
SELECT count(*) AS current_history_rows, count(DISTINCT customer_entity_id) AS entities
  FROM cdp_traits.attribute_history WHERE attribute_id = 'spender' AND valid_to IS NULL;

-- "history" switched on for an attribute that has values: they start its
-- history at once (a run writes rows for changes only, and an unchanged
-- value would never get one); switched off, its open rows end; on again
-- after a change made meanwhile, the current row is the value held now
CREATE TEMP VIEW spent_history AS
SELECT count(*) FILTER (WHERE h.valid_to IS NULL) AS open_rows,
       count(*) AS rows,
       count(*) FILTER (WHERE h.valid_to IS NULL AND h.value = ea.vals -> 'spent') AS open_as_held,
       (SELECT count(*) FROM cdp_traits.entity_attributes x WHERE x.vals ? 'spent') AS holding
  FROM cdp_traits.attribute_history h
  LEFT JOIN cdp_traits.entity_attributes ea ON ea.customer_entity_id = h.customer_entity_id
 WHERE h.attribute_id = 'spent';
SELECT * FROM spent_history;
UPDATE cdp_traits.attributes SET definition = definition || '{"history": true}' WHERE id = 'spent';
SELECT * FROM spent_history;
SELECT cdp_traits.calculate_attributes() > 0 AS recalculated;
SELECT * FROM spent_history;
UPDATE cdp_traits.attributes SET definition = definition || '{"history": false}' WHERE id = 'spent';
SELECT * FROM spent_history;
INSERT INTO ev VALUES (100001, 'pos', 'purchase', '1-0-0', '2025-04-01 10:00+00', '{"user": "bob", "amount": "1000"}');
SELECT cdp_traits.calculate_attributes() > 0 AS recalculated;
UPDATE cdp_traits.attributes SET definition = definition || '{"history": true}' WHERE id = 'spent';
SELECT * FROM spent_history;
DELETE FROM ev WHERE id = 100001;
DROP VIEW spent_history;

-- Trimming old runs takes their per-attribute rows with them (a trigger: no
-- foreign key, so that pg_restore -j may load the two tables in any order);
-- TRUNCATE empties both
CREATE TEMP TABLE run_rows AS
SELECT r.id, (SELECT count(*) FROM cdp_traits.calculation_run_attributes a WHERE a.run_id = r.id) AS n
  FROM cdp_traits.calculation_runs r;
SELECT count(*) > 2 AS runs, bool_and(n > 0) AS each_with_rows FROM run_rows;
DELETE FROM cdp_traits.calculation_runs WHERE id < (SELECT max(id) FROM run_rows);
SELECT count(*) AS runs_left,
       (SELECT count(*) FROM cdp_traits.calculation_run_attributes) =
         (SELECT n FROM run_rows ORDER BY id DESC LIMIT 1) AS rows_of_the_last_run_only,
       (SELECT count(*) FROM cdp_traits.calculation_run_attributes a
         WHERE NOT EXISTS (SELECT FROM cdp_traits.calculation_runs r WHERE r.id = a.run_id)) AS orphans
  FROM cdp_traits.calculation_runs;
TRUNCATE cdp_traits.calculation_runs;
SELECT count(*) AS run_attribute_rows FROM cdp_traits.calculation_run_attributes;
DROP TABLE run_rows;
DELETE FROM cdp_traits.attributes;

-- A definition edit that changes the type of its pivot column takes its
-- values away at once, as a change to or from an audience does: they are
-- not of the new kind.  The pivot could not read them until the next run
-- (text read as a number, a value as a list), and their counts per value
-- (kept for text) stayed behind for good.
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('dev',      '{"type": "most_frequent", "value": "payload->>''device''"}'),
  ('dev_seen', '{"type": "first", "value": "payload->>''device''"}'),
  ('dev_late', '{"type": "last", "value": "payload->>''device''", "history": true}');
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT count(dev) AS dev, count(dev_seen) AS dev_seen, count(dev_late) AS dev_late
  FROM cdp_traits.pivoted_customer_attributes;
UPDATE cdp_traits.attributes SET definition = definition || '{"data_type": "number"}' WHERE id = 'dev';
UPDATE cdp_traits.attributes SET definition = definition || '{"type": "list"}' WHERE id = 'dev_seen';
-- (another filter: the same column type, the values stay until the next run)
UPDATE cdp_traits.attributes SET definition = definition || '{"sources": ["web"]}' WHERE id = 'dev_late';
SELECT count(*) AS entities, count(dev) AS dev, count(dev_seen) AS dev_seen, count(dev_late) AS dev_late
  FROM cdp_traits.pivoted_customer_attributes;
SELECT attribute_id, count(*) AS counted_values FROM cdp_traits.attribute_value_counts
 WHERE attribute_id IN ('dev', 'dev_seen', 'dev_late') GROUP BY 1 ORDER BY 1;
SELECT attribute_id, customers FROM cdp_traits.attribute_counts
 WHERE attribute_id IN ('dev', 'dev_seen', 'dev_late') ORDER BY 1;
SELECT attribute_id, count(*) FILTER (WHERE valid_to IS NULL) AS open_history
  FROM cdp_traits.attribute_history WHERE attribute_id = 'dev_late' GROUP BY 1;
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT dev, dev_seen, dev_late IS NOT NULL AS dev_late
  FROM cdp_traits.pivoted_customer_attributes ORDER BY 2;
SELECT attribute_id, value, customers FROM cdp_traits.attribute_value_counts
 WHERE attribute_id IN ('dev', 'dev_seen') ORDER BY 1, 2;
DELETE FROM cdp_traits.attributes;

-- The values do not depend on the settings of the session that calculates
-- (the worker's, or an admin's with other ones): a float8 made a number or
-- text, a custom query's float8 and interval, text read as a date
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('f_number', '{"type": "max", "value": "(payload->>''amount'')::float8 / 7", "data_type": "number", "filter": "payload->>''amount'' ~ ''^[0-9.]+$''"}'),
  ('f_text',   '{"type": "max", "value": "(payload->>''amount'')::float8 / 7", "filter": "payload->>''amount'' ~ ''^[0-9.]+$''"}'),
  ('f_custom', '{"type": "custom", "query": "SELECT max((payload->>''amount'')::float8) / 7 AS value FROM base WHERE payload->>''amount'' ~ ''^[0-9.]+$''"}'),
  ('span',     '{"type": "custom", "query": "SELECT max(event_time) - min(event_time) AS value FROM base"}'),
  ('day',      '{"type": "min", "value": "''03/04/2025''", "data_type": "date"}'),
  ('numeric_amounts', '{"type": "list", "value": "payload->>''amount''", "filter": "payload->>''amount'' ~ ''^[\\d.]+$''"}'),
  ('no_device', '{"type": "num_of_unique", "value": "id", "filter": "(payload->>''device'' = NULL) IS NULL"}');
SET extra_float_digits = -10;
SET IntervalStyle = iso_8601;
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Tokyo';
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SET transform_null_equals = on;
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
RESET extra_float_digits;
RESET IntervalStyle;
RESET DateStyle;
RESET TimeZone;
RESET standard_conforming_strings;
RESET escape_string_warning;
RESET transform_null_equals;
SELECT attribute_id, value FROM cdp_traits.customer_attributes
 WHERE customer_entity_id = pg_temp.who('ann@x') ORDER BY 1;
-- definitions are checked as the calculation reads them: with
-- standard_conforming_strings off in the writer's session, 'it\'s' would
-- parse there and never in a run
SET standard_conforming_strings = off;
SET escape_string_warning = off;
INSERT INTO cdp_traits.attributes VALUES ('quoted',
  $j${"type": "list", "value": "payload->>'amount'", "filter": "payload->>'amount' <> 'it\\'s'"}$j$);
RESET standard_conforming_strings;
RESET escape_string_warning;
SELECT count(*) AS quoted_stored FROM cdp_traits.attributes WHERE id = 'quoted';
DELETE FROM cdp_traits.attributes;

-- A value too long for the index of the per-value counts (a URL with
-- tracking parameters, over 2000 bytes) no longer fails every run: it is
-- stored and counted as a value of its attribute, but not per value
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('last_url', '{"type": "last", "value": "payload->>''url''"}'),
  ('urls',     '{"type": "list", "value": "payload->>''url''"}');
INSERT INTO ev VALUES
  (40, 'web', 'page_view', '1-0-0', '2025-04-01 10:00+00', '{"email": "ann@x", "url": "https://shop.example/a"}'),
  (41, 'web', 'page_view', '1-0-0', '2025-04-02 10:00+00',
   jsonb_build_object('email', 'ann@x', 'url', 'https://shop.example/p?' ||
     (SELECT string_agg(md5(i::text), '&') FROM generate_series(1, 120) i))),
  -- (2000 bytes: still counted per value)
  (42, 'web', 'page_view', '1-0-0', '2025-04-01 11:00+00',
   jsonb_build_object('user', 'bob', 'url', repeat('u', 2000)));
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT count(*) AS failed FROM cdp_traits.calculation_run_attributes WHERE error IS NOT NULL;
SELECT attribute_id, length(value::text) AS json_length FROM cdp_traits.customer_attributes
 WHERE attribute_id IN ('last_url', 'urls') ORDER BY 1, 2;
SELECT attribute_id, customers FROM cdp_traits.attribute_counts
 WHERE attribute_id IN ('last_url', 'urls') ORDER BY 1;
SELECT attribute_id, left(value #>> '{}', 25) AS value, length(value #>> '{}') AS length, customers
  FROM cdp_traits.attribute_value_counts
 WHERE attribute_id IN ('last_url', 'urls') ORDER BY 1, 2;
-- the long value goes: the counts follow
DELETE FROM ev WHERE id = 41;
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT attribute_id, left(value #>> '{}', 25) AS value, length(value #>> '{}') AS length, customers
  FROM cdp_traits.attribute_value_counts
 WHERE attribute_id IN ('last_url', 'urls') ORDER BY 1, 2;
DELETE FROM ev WHERE id IN (40, 42);
DELETE FROM cdp_traits.attributes;
