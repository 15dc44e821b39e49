-- Many predefined attributes (README, How it works: a statement computes up
-- to 500 of them; one that fails is retried in halves): a failing
-- definition among many costs a few statements, not one per attribute, and
-- a calculation of over a thousand attributes works.  Before, a statement
-- that failed was retried attribute by attribute, and the values of its
-- n tables were joined in one statement: with 300 attributes and one
-- failing (division by zero in one event), planning that join took over 3
-- GB, and with 1,200 attributes (whose statement failed: "row is too big")
-- the server was killed for lack of memory.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS ev CASCADE;
CREATE TABLE ev (id int PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                 version text NOT NULL DEFAULT '1', event_time timestamptz NOT NULL,
                 payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('ev');
RESET client_min_messages;
-- (stored states for entities with 3 events or more)
SET cdp_traits.state_min_events = 3;
INSERT INTO ev VALUES
  (1, 'web', 'p', '1', '2025-01-01 10:00+00', '{"email": "a@x", "x": "5", "z": 1}'),
  (2, 'web', 'p', '1', '2025-01-02 10:00+00', '{"email": "a@x", "x": "8", "z": 2}'),
  (3, 'web', 'p', '1', '2025-01-03 10:00+00', '{"email": "a@x", "x": "x", "z": 3}'),
  (4, 'web', 'p', '1', '2025-01-01 10:00+00', '{"email": "b@x", "x": "7", "z": 0}'),
  (5, 'web', 'p', '1', '2025-01-02 10:00+00', '{"email": "c@x", "x": "2", "z": 4}');

-- 60 attributes a01..a60 (max of x plus i), and 4 among them that fail for
-- b@x's event (z = 0)
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('a%s', lpad(i::text, 2, '0')),
       jsonb_build_object('type', 'max', 'data_type', 'number',
                          'value', pg_catalog.format($$cdp_traits.to_number(payload->>'x') + %s$$, i))
  FROM generate_series(1, 60) i;
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('a%s_bad', i),
       jsonb_build_object('type', 'max', 'value', pg_catalog.format($$%s / (payload->>'z')::int$$, i))
  FROM unnest(ARRAY[7, 22, 38, 51]) i;
-- (and a custom one, whose values are merged with those of the statements)
INSERT INTO cdp_traits.attributes VALUES
  ('c_events', '{"type": "custom", "query": "SELECT count(*) AS value FROM base"}');

-- each run reads the events a few times (a failing attribute's halves),
-- not once per attribute (64 and more reads before)
CREATE FUNCTION pg_temp.reads() RETURNS bigint LANGUAGE sql
AS $$ SELECT pg_stat_get_xact_numscans('ev'::regclass) $$;
BEGIN;
SELECT pg_temp.reads() AS reads_before \gset
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT pg_temp.reads() - :reads_before < 50 AS few_reads;
COMMIT;
-- the failing ones are recorded, the others are calculated
SELECT attribute_id, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND error IS NOT NULL
 ORDER BY 1;
SELECT m.email, count(*) AS attributes,
       (SELECT ca2.value FROM cdp_traits.customer_attributes ca2
         WHERE ca2.customer_entity_id = m.customer_entity_id AND ca2.attribute_id = 'c_events') AS c_events,
       bool_and((ca.value #>> '{}')::numeric = m.x + substr(ca.attribute_id, 2)::int) AS values_right
  FROM cdp_traits.customer_attributes ca
  JOIN (SELECT email, max(cdp_traits.to_number(payload->>'x')) AS x, customer_entity_id
          FROM cdp_traits.customer_events, LATERAL (SELECT payload->>'email' AS email) e
         GROUP BY 1, 3) m USING (customer_entity_id)
 WHERE ca.attribute_id LIKE 'a__'
 GROUP BY m.email, m.customer_entity_id ORDER BY 1;

-- a small run over the stored states of a@x's entity (3 events): the
-- new event is combined with them
INSERT INTO ev VALUES
  (6, 'web', 'p', '1', '2025-01-04 10:00+00', '{"email": "a@x", "x": "20", "z": 5}');
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT count(*) AS attributes, min((value #>> '{}')::numeric) AS a01, max((value #>> '{}')::numeric) AS a60
  FROM cdp_traits.customer_attributes ca
 WHERE ca.customer_entity_id = (SELECT customer_entity_id FROM cdp_traits.matching WHERE value = 'a@x')
   AND ca.attribute_id LIKE 'a__';
-- the states stored for it hold every attribute that did not fail (the
-- run that failed for some stored none), and a forced run stores them
SELECT count(*) AS entities_with_states FROM cdp_traits.entity_states;
DELETE FROM ev WHERE id = 4;
SELECT cdp_traits.calculate_attributes(true) AS recalculated;
SELECT (SELECT count(*) FROM jsonb_object_keys(st.states)) AS states, st.n
  FROM cdp_traits.entity_states st;
SELECT count(*) AS values FROM cdp_traits.customer_attributes;

-- ten lists of set-returning values, each its own statement (their
-- expansions differ), beside the 64: the states of the eleven tables are
-- gathered into one object per entity
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('l%s', lpad(i::text, 2, '0')),
       jsonb_build_object('type', 'list', 'value',
                          pg_catalog.format($$jsonb_array_elements_text(CASE jsonb_typeof(payload->'t') WHEN 'array' THEN payload->'t' END) || '%s'$$, i))
  FROM generate_series(1, 10) i;
UPDATE ev SET payload = payload || '{"t": ["p", "q"]}' WHERE id IN (1, 6);
UPDATE ev SET payload = payload || '{"t": ["r"]}' WHERE id = 5;
SELECT cdp_traits.calculate_attributes(true) AS recalculated;
SELECT st.n, (SELECT count(*) FROM jsonb_object_keys(st.states)) AS states,
       st.states ? 'l01' AND st.states ? 'l10' AND st.states ? 'a60' AS lists_and_values
  FROM cdp_traits.entity_states st;
-- a small run combines them with a new event's
INSERT INTO ev VALUES
  (8, 'web', 'p', '1', '2025-01-06 10:00+00', '{"email": "a@x", "x": "1", "z": 5, "t": ["s"]}');
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT m.email, ca.attribute_id, ca.value
  FROM cdp_traits.customer_attributes ca
  JOIN (SELECT DISTINCT payload->>'email' AS email, customer_entity_id FROM cdp_traits.customer_events) m
       USING (customer_entity_id)
 WHERE ca.attribute_id IN ('l01', 'l10', 'a60')
 ORDER BY 1, 2;
SELECT st.n, (SELECT count(*) FROM jsonb_object_keys(st.states)) AS states
  FROM cdp_traits.entity_states st;

-- 200 attributes with an outer_value (each a lateral subquery of the
-- statement): computed in statements of 32 of them.  In one statement,
-- planning took over 3 GB (and more than the limit below); 100 took 12 s.
DELETE FROM cdp_traits.attributes;
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('o%s', lpad(i::text, 3, '0')),
       jsonb_build_object('type', 'max', 'data_type', 'number', 'value', $$payload->>'x'$$,
                          'outer_value', pg_catalog.format('cdp_traits.to_number(value) + %s', i))
  FROM generate_series(1, 200) i;
SET statement_timeout = '30s';
SELECT cdp_traits.calculate_attributes() AS recalculated;
RESET statement_timeout;
SELECT m.email, count(*) AS attributes,
       bool_and((ca.value #>> '{}')::numeric = m.x + substr(ca.attribute_id, 2)::int) AS values_right
  FROM cdp_traits.customer_attributes ca
  JOIN (SELECT email, max(cdp_traits.to_number(payload->>'x')) AS x, customer_entity_id
          FROM cdp_traits.customer_events, LATERAL (SELECT payload->>'email' AS email) e
         GROUP BY 1, 3) m USING (customer_entity_id)
 GROUP BY m.email, m.customer_entity_id ORDER BY 1;

-- 1,100 attributes: computed in three statements (of 500, 500 and 100)
DELETE FROM cdp_traits.attributes;
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('m%s', lpad(i::text, 4, '0')),
       jsonb_build_object('type', 'max', 'data_type', 'number',
                          'value', pg_catalog.format($$cdp_traits.to_number(payload->>'x') * %s$$, i))
  FROM generate_series(1, 1100) i;
BEGIN;
SELECT pg_temp.reads() AS reads_before \gset
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT pg_temp.reads() - :reads_before < 10 AS few_reads;
COMMIT;
SELECT count(*) AS failed FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND error IS NOT NULL;
SELECT count(*) AS values,
       bool_and(m1100 = 1100 * m0001) AS values_right,
       sum(m0001) AS sum_m0001
  FROM cdp_traits.pivoted_customer_attributes;
SELECT count(*) AS attributes, sum(values_skipped) AS skipped
  FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs);
-- and a small run over the stored states (a@x has 4 events)
INSERT INTO ev VALUES
  (7, 'web', 'p', '1', '2025-01-05 10:00+00', '{"email": "a@x", "x": "30", "z": 5}');
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT m0001, m1100 FROM cdp_traits.pivoted_customer_attributes ORDER BY 1;

-- history switched on for the 1,100 in one UPDATE: the values held start
-- their history, read in one pass over the values and the history, not one
-- per attribute (before: 2 scans of attribute_history and one of the
-- values for each row, 163 s for 611 attributes over 10k entities); and
-- switched off, the open rows end, in one pass too
CREATE FUNCTION pg_temp.scans() RETURNS bigint LANGUAGE sql
AS $$ SELECT pg_stat_get_xact_numscans('cdp_traits.attribute_history'::regclass)
           + pg_stat_get_xact_numscans('cdp_traits.entity_attributes'::regclass) $$;
BEGIN;
SELECT pg_temp.scans() AS scans_before \gset
UPDATE cdp_traits.attributes SET definition = definition || '{"history": true}';
SELECT pg_temp.scans() - :scans_before AS scans;
COMMIT;
SELECT count(*) AS history_rows, count(DISTINCT attribute_id) AS attributes,
       count(*) FILTER (WHERE valid_to IS NULL) AS open,
       count(*) = (SELECT count(*) FROM cdp_traits.customer_attributes) AS one_per_value,
       bool_and(h.value = ca.value) AS values_right
  FROM cdp_traits.attribute_history h
  LEFT JOIN cdp_traits.customer_attributes ca USING (customer_entity_id, attribute_id);
BEGIN;
SELECT pg_temp.scans() AS scans_before \gset
UPDATE cdp_traits.attributes SET definition = definition - 'history' WHERE id <= 'm0600';
SELECT pg_temp.scans() - :scans_before AS scans;
COMMIT;
SELECT attribute_id <= 'm0600' AS switched_off, count(*) AS history_rows,
       count(*) FILTER (WHERE valid_to IS NULL) AS open
  FROM cdp_traits.attribute_history GROUP BY 1 ORDER BY 1;
UPDATE cdp_traits.attributes SET definition = definition - 'history';
-- an upsert of definitions switches it too (INSERT ... ON CONFLICT DO
-- UPDATE fires the statement trigger with the rows it updated)
INSERT INTO cdp_traits.attributes (id, definition)
SELECT id, definition || '{"history": true}' FROM cdp_traits.attributes WHERE id IN ('m0001', 'm0002')
ON CONFLICT (id) DO UPDATE SET definition = EXCLUDED.definition;
SELECT attribute_id, count(*) FILTER (WHERE valid_to IS NULL) AS open,
       count(*) FILTER (WHERE valid_to IS NULL) = (SELECT count(*) FROM cdp_traits.entity_attributes ea
                                                   WHERE ea.vals ? h.attribute_id) AS one_per_value
  FROM cdp_traits.attribute_history h WHERE attribute_id IN ('m0001', 'm0002') GROUP BY 1 ORDER BY 1;
UPDATE cdp_traits.attributes SET definition = definition - 'history' WHERE id IN ('m0001', 'm0002');


-- the pivot has a column per attribute, and a view at most 1600: the
-- 1,600th attribute is refused, naming the limit (before, PostgreSQL's
-- "target lists can have at most 1664 entries" or "tables can have at most
-- 1600 columns", in the context of the view's statement)
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('n%s', lpad(i::text, 4, '0')), '{"type": "max", "value": "payload->>''x''"}'
  FROM generate_series(1, 600) i;
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('n%s', lpad(i::text, 4, '0')), '{"type": "max", "value": "payload->>''x''"}'
  FROM generate_series(1, 500) i;
SELECT count(*) AS attributes FROM cdp_traits.attributes;

-- the pivot is rebuilt once per statement, however many definitions it
-- inserts, changes or deletes (each rebuild replaces pivot_source's row);
-- a change that leaves every column as it is rebuilds nothing
CREATE FUNCTION pg_temp.rebuilds() RETURNS bigint LANGUAGE sql
AS $$ SELECT pg_stat_get_xact_tuples_inserted('cdp_traits.pivot_source'::regclass) $$;
BEGIN;
SELECT pg_temp.rebuilds() AS before \gset
INSERT INTO cdp_traits.attributes
SELECT pg_catalog.format('p%s', lpad(i::text, 3, '0')), '{"type": "max", "value": "payload->>''x''"}'
  FROM generate_series(1, 300) i;
SELECT pg_temp.rebuilds() - :before AS rebuilds;
UPDATE cdp_traits.attributes SET definition = definition || '{"data_type": "number"}' WHERE id LIKE 'p%';
SELECT pg_temp.rebuilds() - :before AS rebuilds;
UPDATE cdp_traits.attributes SET definition = definition || '{"filter": "true"}' WHERE id LIKE 'p%';
SELECT pg_temp.rebuilds() - :before AS rebuilds;
DELETE FROM cdp_traits.attributes WHERE id LIKE 'p%';
SELECT pg_temp.rebuilds() - :before AS rebuilds;
COMMIT;
SELECT count(*) AS attributes FROM cdp_traits.attributes;
RESET cdp_traits.state_min_events;
