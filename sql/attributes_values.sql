-- Predefined attributes over values that are already typed: a definition
-- that casts (payload->>'x')::numeric, ::date or ::timestamptz reads 'NaN',
-- 'Infinity' and 'infinity', which are no numbers, dates or times of the
-- data (README, data_type): they are skipped and counted, as they are when
-- the value is text or float8, in every path of a run (all entities, a few
-- dirty ones, stored states).  A JSON null (payload->'x' of {"x": null}) is
-- no value: not counted as skipped.
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
  (1, 'web', 'p', '1', '2025-01-01 10:00+00', '{"email": "a@x", "x": "5", "d": "2024-01-01", "n": 1}'),
  (2, 'web', 'p', '1', '2025-01-02 10:00+00', '{"email": "a@x", "x": "NaN", "d": "infinity", "n": null}'),
  (3, 'web', 'p', '1', '2025-01-03 10:00+00', '{"email": "a@x", "x": "Infinity", "d": "-infinity", "n": 2}'),
  (4, 'web', 'p', '1', '2025-01-04 10:00+00', '{"email": "a@x", "x": "-Infinity", "d": "2024-03-01", "n": null}'),
  (5, 'web', 'p', '1', '2025-01-01 10:00+00', '{"email": "b@x", "x": "7", "d": "2024-02-01", "n": null}'),
  (6, 'web', 'p', '1', '2025-01-02 10:00+00', '{"email": "b@x", "x": "nan", "d": "infinity", "n": 3}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('n_max',   $${"type": "max", "value": "(payload->>'x')::numeric", "data_type": "number"}$$),
  ('n_min',   $${"type": "min", "value": "(payload->>'x')::numeric", "data_type": "number"}$$),
  ('n_sum',   $${"type": "sum", "value": "(payload->>'x')::numeric"}$$),
  ('n_avg',   $${"type": "avg", "value": "(payload->>'x')::numeric"}$$),
  ('n_last',  $${"type": "last", "value": "(payload->>'x')::numeric", "data_type": "number"}$$),
  ('n_list',  $${"type": "list", "value": "(payload->>'x')::numeric", "data_type": "number"}$$),
  ('n_mf',    $${"type": "most_frequent", "value": "(payload->>'x')::numeric", "data_type": "number"}$$),
  ('n_float', $${"type": "max", "value": "(payload->>'x')::float8", "data_type": "number"}$$),
  ('n_text',  $${"type": "max", "value": "payload->>'x'", "data_type": "number"}$$),
  ('n_outer', $${"type": "sum", "value": "payload->>'x'", "outer_value": "value::numeric"}$$),
  ('d_max',   $${"type": "max", "value": "(payload->>'d')::date", "data_type": "date"}$$),
  ('d_min',   $${"type": "min", "value": "(payload->>'d')::timestamptz", "data_type": "date"}$$),
  ('t_max',   $${"type": "max", "value": "(payload->>'d')::timestamptz", "data_type": "datetime"}$$),
  ('t_first', $${"type": "first", "value": "(payload->>'d')::date", "data_type": "datetime"}$$),
  ('t_text',  $${"type": "max", "value": "payload->>'d'", "data_type": "datetime"}$$),
  -- (a JSON null is no value; the text one is the control)
  ('j_num',   $${"type": "sum", "value": "payload->'n'"}$$),
  ('j_date',  $${"type": "max", "value": "payload->'n'", "data_type": "date"}$$),
  ('j_text',  $${"type": "max", "value": "payload->'n'", "data_type": "text"}$$);
CREATE TEMP VIEW vals AS
SELECT m.value AS email, a.attribute_id, a.value
  FROM cdp_traits.customer_attributes a
  JOIN cdp_traits.matching m ON m.customer_entity_id = a.customer_entity_id
 ORDER BY 1, 2;
CREATE TEMP VIEW skipped AS
SELECT attribute_id, values_skipped
  FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs)
 ORDER BY 1;
SELECT cdp_traits.calculate_attributes() AS all_entities;
SELECT * FROM vals;
SELECT * FROM skipped;
-- every value reads as its column's type
SELECT m.value AS email, n_max, n_min, n_sum, n_avg, n_last, n_list, n_mf, d_max, d_min, t_max, t_first, j_num
  FROM cdp_traits.pivoted_customer_attributes p
  JOIN cdp_traits.matching m ON m.customer_entity_id = p.customer_entity_id
 ORDER BY 1;
-- a few dirty entities read again: the same values as a forced run's
INSERT INTO ev VALUES
  (7, 'web', 'p', '1', '2025-01-05 10:00+00', '{"email": "a@x", "x": "NaN", "d": "infinity", "n": null}'),
  (8, 'web', 'p', '1', '2025-01-05 10:00+00', '{"email": "b@x", "x": "-Infinity", "d": "-infinity", "n": 4}');
SELECT cdp_traits.calculate_attributes() AS dirty_entities;
SELECT * FROM skipped;
CREATE TEMP TABLE small_run AS SELECT * FROM vals;
SELECT cdp_traits.calculate_attributes(force => true) AS forced;
SELECT count(*) AS values_compared,
       count(*) FILTER (WHERE s.value IS DISTINCT FROM f.value) AS values_differing
  FROM small_run s FULL JOIN vals f USING (email, attribute_id);
-- stored states (definitions that are immutable: a text cast to a date or
-- time depends on the session's settings): a@x's stored states combined
-- with its new events give what a forced run gives
DELETE FROM cdp_traits.attributes WHERE id IN ('d_max', 'd_min', 't_max', 't_first', 't_text', 'j_date');
-- (40 customers with an event each: one dirty entity is a few)
INSERT INTO ev SELECT 100 + i, 'web', 'p', '1', '2025-01-01', jsonb_build_object('email', 'f' || i || '@x')
  FROM generate_series(1, 40) i;
ANALYZE cdp_traits.customer_entities;
SELECT cdp_traits.calculate_attributes(force => true) AS forced;
SELECT count(*) AS states_stored FROM cdp_traits.entity_states;
INSERT INTO ev VALUES
  (9, 'web', 'p', '1', '2025-01-06 10:00+00', '{"email": "a@x", "x": "Infinity", "n": null}'),
  (10, 'web', 'p', '1', '2025-01-07 10:00+00', '{"email": "a@x", "x": "1", "n": 5}');
SELECT cdp_traits.calculate_attributes() AS dirty_entities;
SELECT from_states FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;
SELECT * FROM skipped;
DROP TABLE small_run;
CREATE TEMP TABLE small_run AS SELECT * FROM vals;
SELECT cdp_traits.calculate_attributes(force => true) AS forced;
SELECT count(*) AS values_compared,
       count(*) FILTER (WHERE s.value IS DISTINCT FROM f.value) AS values_differing
  FROM small_run s FULL JOIN vals f USING (email, attribute_id);
SELECT * FROM vals WHERE email = 'a@x';
-- Weights that are not numbers: a weight of text or JSON is read as
-- to_number reads text, a numeric one must fit a float8; a row whose
-- weight does not is skipped and counted (a cast's error failed the
-- attribute for every entity: 'invalid input syntax for type double
-- precision: "abc"', '"1000…" is out of range for type double precision')
DELETE FROM cdp_traits.attributes;
INSERT INTO ev VALUES
  (11, 'web', 'w', '1', '2025-02-01 10:00+00', '{"email": "a@x", "x": "A", "w": "2", "items": [{"sku": "A", "q": "2"}]}'),
  (12, 'web', 'w', '1', '2025-02-01 10:00+00', '{"email": "a@x", "x": "B", "w": "abc", "items": [{"sku": "B", "q": "abc"}, {"sku": "B", "q": null}]}'),
  (13, 'web', 'w', '1', '2025-02-01 10:00+00', '{"email": "a@x", "x": "B", "w": "1e400", "items": [{"sku": "B", "q": 1e400}]}'),
  (14, 'web', 'w', '1', '2025-02-01 10:00+00', '{"email": "a@x", "x": "B", "w": " 3 ", "items": [{"sku": "B", "q": 3}]}'),
  (15, 'web', 'w', '1', '2025-02-01 10:00+00', '{"email": "a@x", "x": "C", "w": null, "items": [{"sku": "C", "q": "NaN"}]}'),
  (16, 'web', 'w', '1', '2025-02-01 10:00+00', '{"email": "b@x", "x": "C", "w": "12,50", "items": [{"sku": "C", "q": "-1"}]}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('w_text',  $${"type": "most_frequent", "value": "payload->>'x'", "weight": "payload->>'w'", "types": ["w"]}$$),
  ('w_json',  $${"type": "least_frequent", "value": "payload->>'x'", "weight": "payload->'w'", "types": ["w"]}$$),
  ('w_num',   $${"type": "most_frequent", "value": "payload->>'x'", "weight": "cdp_traits.to_number(payload->>'w')", "types": ["w"]}$$),
  ('w_float', $${"type": "most_frequent", "value": "payload->>'x'", "weight": "cdp_traits.to_number(payload->>'w')::float8 * 0 + 1", "filter": "payload->>'w' !~ 'e'", "types": ["w"]}$$),
  ('w_items', $${"type": "most_frequent", "value": "jsonb_array_elements(payload->'items')", "outer_value": "value->>'sku'", "outer_weight": "value->'q'", "weight": "1", "types": ["w"]}$$),
  ('w_num_x', $${"type": "least_frequent", "value": "payload->>'x'", "data_type": "number", "weight": "payload->>'w'", "types": ["w"]}$$);
SELECT cdp_traits.calculate_attributes() AS all_entities;
SELECT attribute_id, values_skipped, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) ORDER BY 1;
SELECT * FROM vals WHERE attribute_id LIKE 'w%';
-- stored states give the same values
SELECT cdp_traits.calculate_attributes(force => true) AS forced;
INSERT INTO ev VALUES
  (17, 'web', 'w', '1', '2025-02-02 10:00+00', '{"email": "a@x", "x": "A", "w": "x2", "items": [{"sku": "A", "q": "1.5"}]}');
SELECT cdp_traits.calculate_attributes() AS dirty_entities;
SELECT from_states FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;
SELECT * FROM skipped;
DROP TABLE small_run;
CREATE TEMP TABLE small_run AS SELECT * FROM vals;
SELECT cdp_traits.calculate_attributes(force => true) AS forced;
SELECT count(*) AS values_compared,
       count(*) FILTER (WHERE s.value IS DISTINCT FROM f.value) AS values_differing
  FROM small_run s FULL JOIN vals f USING (email, attribute_id);
SELECT * FROM vals WHERE attribute_id LIKE 'w%';
-- An offset written after GMT or UTC, as JavaScript's Date.toString() and
-- Java's "z" write it ("GMT+0100" is +01:00), is read as that offset
-- (PostgreSQL's parser takes "GMT+0100" for a POSIX zone: 100 hours the
-- other way, a time 4 days and 5 hours later; "UTC-05:00" 10 hours early)
DELETE FROM cdp_traits.attributes;
INSERT INTO ev VALUES
  (18, 'web', 'js', '1', '2025-03-01 10:00+00', '{"email": "b@x", "seen": "Tue Jan 02 2024 10:00:00 GMT+0100"}'),
  (19, 'web', 'js', '1', '2025-03-01 10:00+00', '{"email": "b@x", "seen": "2024-01-03 08:00:00 UTC-05:00"}'),
  (20, 'web', 'js', '1', '2025-03-01 10:00+00', '{"email": "b@x", "seen": "2024-01-01 23:30:00 GMT+01:00"}'),
  (21, 'web', 'js', '1', '2025-03-01 10:00+00', '{"email": "b@x", "seen": "2024-01-01 23:45:00 GMT"}'),
  -- (String(new Date()) whole: the zone's name after the offset is dropped;
  -- a name without an offset is no time)
  (22, 'web', 'js', '1', '2025-03-01 10:00+00', '{"email": "b@x", "seen": "Thu Jan 04 2024 09:00:00 GMT-0800 (Pacific Standard Time)"}'),
  (23, 'web', 'js', '1', '2025-03-01 10:00+00', '{"email": "b@x", "seen": "Fri Jan 05 2024 09:00:00 (CET)"}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('seen_min', $${"type": "min", "value": "payload->>'seen'", "data_type": "datetime"}$$),
  ('seen_max', $${"type": "max", "value": "payload->>'seen'", "data_type": "datetime"}$$),
  ('seen_all', $${"type": "list", "value": "payload->>'seen'", "data_type": "datetime"}$$);
SELECT cdp_traits.calculate_attributes() AS all_entities;
SELECT * FROM skipped;
SELECT * FROM vals WHERE attribute_id LIKE 'seen%';
-- Outer expressions that return sets (several values per value): each
-- attribute's own, never multiplied by another's (the rows of an event
-- were the product of the expansions of the attributes in one statement:
-- sums counted values once per element of another array, an item without
-- tags gave no values to the others)
DELETE FROM cdp_traits.attributes;
INSERT INTO ev VALUES
  (24, 'web', 'o', '1', '2025-03-02 10:00+00', '{"email": "c@x", "amounts": ["2", "3"], "ds": ["2024-01-01", "2024-02-01", "2024-03-01"],
   "items": [{"sku": "A", "q": 1, "tags": ["x", "y"]}, {"sku": "B", "q": 10, "tags": []}]}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('o_sum',  $${"type": "sum", "value": "payload", "outer_value": "jsonb_array_elements_text(value->'amounts')", "types": ["o"]}$$),
  ('o_days', $${"type": "num_of_unique", "value": "payload", "outer_value": "jsonb_array_elements_text(value->'ds')", "data_type": "date", "types": ["o"]}$$),
  ('o_skus', $${"type": "list", "value": "jsonb_array_elements(payload->'items')", "outer_value": "value->>'sku'", "types": ["o"]}$$),
  ('o_q',    $${"type": "sum", "value": "jsonb_array_elements(payload->'items')", "outer_value": "value->'q'", "types": ["o"]}$$),
  ('o_tags', $${"type": "list", "value": "jsonb_array_elements(payload->'items')", "outer_value": "jsonb_array_elements_text(value->'tags')", "types": ["o"]}$$);
SELECT cdp_traits.calculate_attributes() AS all_entities;
SELECT * FROM vals WHERE attribute_id LIKE 'o%';
-- A custom query's JSON null is no value, as in predefined attributes:
-- not stored without a data_type (c_raw), not counted as skipped with one
-- (its "NaN" is)
DELETE FROM cdp_traits.attributes;
INSERT INTO ev VALUES
  (25, 'web', 'c', '1', '2025-03-03 10:00+00', '{"email": "c@x", "plan": null, "score": "NaN"}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('c_plan',  $${"type": "custom", "query": "SELECT payload->'plan' AS value FROM base WHERE type = 'c'", "data_type": "text"}$$),
  ('c_score', $${"type": "custom", "query": "SELECT (payload->>'score')::numeric AS value FROM base WHERE type = 'c'", "data_type": "number"}$$),
  ('c_raw',   $${"type": "custom", "query": "SELECT payload->'plan' AS value FROM base WHERE type = 'c'"}$$),
  ('p_plan',  $${"type": "last", "value": "payload->'plan'", "types": ["c"]}$$);
SELECT cdp_traits.calculate_attributes() AS all_entities;
SELECT * FROM skipped;
SELECT * FROM vals WHERE attribute_id IN ('c_plan', 'c_raw', 'c_score', 'p_plan');
RESET cdp_traits.state_min_events;
