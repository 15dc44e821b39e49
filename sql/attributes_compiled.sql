-- Compiled definitions kept between runs (compiled_definitions): a run uses
-- what an earlier run compiled while the definition and the catalog rows of
-- what it names (relations, functions, _compile) are unchanged, and compiles
-- again when one of them changed: a function's volatility decides whether
-- an attribute may be kept from stored states, its result type the
-- conversion, and a dropped function makes the definition fail as if it
-- were compiled afresh.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS cev CASCADE;
DROP FUNCTION IF EXISTS public.cev_tag(text);
DROP FUNCTION IF EXISTS public.cev_size(text);
RESET client_min_messages;

CREATE TABLE cev (id uuid PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                  version text NOT NULL DEFAULT '1', event_time timestamptz NOT NULL, payload jsonb NOT NULL);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('cev');
CREATE FUNCTION public.cev_tag(x text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(x) $$;
CREATE FUNCTION public.cev_size(x text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT length(x)::text $$;
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('tag',      '{"type": "last", "value": "public.cev_tag(payload->>''tag'')"}'),
  ('max_size', '{"type": "max", "value": "public.cev_size(payload->>''tag'')", "data_type": "number"}'),
  ('revenue',  '{"type": "sum", "value": "payload->>''amount''"}');
CREATE FUNCTION pg_temp.ev(who text, i int, tag text)
RETURNS TABLE (id uuid, source_id text, type text, event_time timestamptz, payload jsonb)
LANGUAGE sql AS $$
  SELECT md5(who || '.' || i)::uuid, 'web', 'purchase', timestamptz '2026-01-01' + i * interval '1 hour',
         jsonb_build_object('email', who || '@x', 'tag', tag, 'amount', i)
$$;
-- The values of one customer.
CREATE FUNCTION pg_temp.vals(who text) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT ea.vals FROM cdp_traits.entity_attributes ea
   WHERE ea.customer_entity_id = (SELECT m.customer_entity_id FROM cdp_traits.matching m WHERE m.value = who || '@x')
$$;
-- The cache's rows, and whether each is the row version remembered by
-- remember() (false: compiled again since).
CREATE TEMP TABLE remembered (attribute_id text, xid xid);
CREATE FUNCTION pg_temp.remember() RETURNS void
LANGUAGE sql AS $$
  DELETE FROM remembered;
  INSERT INTO remembered SELECT k.attribute_id, k.xmin FROM cdp_traits.compiled_definitions k;
$$;
CREATE FUNCTION pg_temp.cache() RETURNS TABLE (attribute_id text, alias text, stateful boolean, kept boolean)
LANGUAGE sql AS $$
  SELECT k.attribute_id, k.alias, k.stateful,
         k.xmin = (SELECT r.xid FROM remembered r WHERE r.attribute_id = k.attribute_id)
    FROM cdp_traits.compiled_definitions k ORDER BY 1
$$;

INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM generate_series(1, 3) i, pg_temp.ev('a', i, 'red') e;
-- the first run compiles every definition and keeps it
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.cache();
SELECT pg_temp.vals('a');
-- what a definition depends on: the events view and the functions it calls
SELECT k.attribute_id, k.rels = ARRAY['cdp_traits.customer_events'::regclass::oid] AS the_view,
       'public.cev_tag(text)'::regprocedure::oid = ANY (k.funcs) AS tag_fn,
       'cdp_traits._compile(text, jsonb, text)'::regprocedure::oid = ANY (k.funcs) AS compile_fn,
       k.stamp = cdp_traits._deps_stamp(k.rels, k.funcs) AS current
  FROM cdp_traits.compiled_definitions k ORDER BY 1;
SELECT pg_temp.remember();

-- nothing changed: the next run uses every kept compilation
INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM pg_temp.ev('a', 4, 'blue') e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.cache();
SELECT pg_temp.vals('a');

-- a function made stable: the attribute that calls it is compiled again,
-- and may no longer be kept from stored states; the others are kept
ALTER FUNCTION public.cev_tag(text) STABLE;
INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM pg_temp.ev('a', 5, 'green') e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.cache();
SELECT pg_temp.vals('a');
SELECT pg_temp.remember();

-- a function replaced by one of another result type: compiled again, so
-- the conversion to a number follows the new type (a stale compilation
-- would call to_number on an integer and fail)
DROP FUNCTION public.cev_size(text);
CREATE FUNCTION public.cev_size(x text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 10 * length(x) $$;
INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM pg_temp.ev('a', 6, 'violet') e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.cache();
SELECT pg_temp.vals('a');
SELECT r.attribute_id, r.error FROM cdp_traits.calculation_run_attributes r
 WHERE r.run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND r.error IS NOT NULL;
SELECT pg_temp.remember();

-- a function dropped: the stamp is gone, the definition is compiled again
-- and fails as it would without the cache; the others are kept and
-- calculated
DROP FUNCTION public.cev_tag(text);
SELECT k.attribute_id, cdp_traits._deps_stamp(k.rels, k.funcs) IS NULL AS gone
  FROM cdp_traits.compiled_definitions k ORDER BY 1;
INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM pg_temp.ev('a', 7, 'black') e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT r.attribute_id, r.error FROM cdp_traits.calculation_run_attributes r
 WHERE r.run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND r.error IS NOT NULL;
SELECT * FROM pg_temp.cache();
SELECT pg_temp.vals('a');

-- a changed definition is compiled again; a row that does not match its
-- stamp is never used (compiled again and replaced)
CREATE FUNCTION public.cev_tag(x text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(x) $$;
SELECT pg_temp.remember();
UPDATE cdp_traits.attributes SET definition = '{"type": "sum", "value": "payload->>''amount''", "sources": ["web"]}'
 WHERE id = 'revenue';
UPDATE cdp_traits.compiled_definitions SET lat = 'this is not SQL', stamp = 'x' WHERE attribute_id = 'max_size';
INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM pg_temp.ev('a', 8, 'white') e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.cache();
SELECT pg_temp.vals('a');

-- a removed attribute's row goes when a run compiles anything (here the
-- new one, and the others at their new positions)
DELETE FROM cdp_traits.attributes WHERE id = 'tag';
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('bigger', '{"type": "max", "value": "(payload->>''amount'')::int"}');
INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM pg_temp.ev('a', 10, 'pink') e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.cache();
SELECT pg_temp.vals('a');

-- the cache agrees with compiling afresh, and may be emptied at any time
SELECT count(*) AS differing FROM cdp_traits.compiled_definitions k
  JOIN cdp_traits.attributes a ON a.id = k.attribute_id
 CROSS JOIN LATERAL cdp_traits._compile(a.id, a.definition, k.alias) c
 WHERE (k.cond, k.lat, k.agg, k.srf, k.skipped, k.inner_sql, k.lat_shared, k.stateful,
        k.st_agg, k.st_comb, k.st_fin, k.st_read, k.rels, k.funcs)
       IS DISTINCT FROM (c.cond, c.lat, c.agg, c.srf, c.skipped, c.inner_sql, c.lat_shared, c.stateful,
        c.st_agg, c.st_comb, c.st_fin, c.st_read, c.rels, c.funcs);
TRUNCATE cdp_traits.compiled_definitions;
INSERT INTO cev (id, source_id, type, event_time, payload) SELECT e.* FROM pg_temp.ev('a', 9, 'grey') e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT pg_temp.vals('a');
SELECT count(*) AS kept FROM cdp_traits.compiled_definitions;

-- the stamp of something that does not exist
SELECT cdp_traits._deps_stamp(ARRAY[0]::oid[], '{}') AS no_relation,
       cdp_traits._deps_stamp('{}', ARRAY[0]::oid[]) AS no_function,
       cdp_traits._deps_stamp('{}', '{}') IS NOT NULL AS nothing_is_a_stamp;

-- Two forms of the same definition: a value that the outer expressions do
-- not rework goes straight into the aggregate (no lateral subquery, lat
-- empty); "outer_value": "(value)" keeps the lateral form.  Both give the
-- same values, the same states and skip the same bad values, for every type,
-- with conditions, weights and conversions.
DELETE FROM cdp_traits.attributes;
INSERT INTO cev (id, source_id, type, event_time, payload)
SELECT md5('f' || i)::uuid, CASE WHEN i % 3 = 0 THEN 'app' ELSE 'web' END,
       CASE WHEN i % 2 = 0 THEN 'purchase' ELSE 'view' END,
       timestamptz '2026-02-01' + i * interval '1 hour',
       jsonb_build_object('email', 'f' || i % 4 || '@x', 'tag', (ARRAY['red', 'blue', NULL])[i % 3 + 1],
                          'amount', CASE WHEN i % 7 = 0 THEN 'n/a' ELSE (i * 1.5)::text END,
                          'w', i % 5, 'day', CASE WHEN i % 6 = 0 THEN 'soon' ELSE '2026-03-0' || i % 9 + 1 END)
  FROM generate_series(1, 60) i
UNION ALL
SELECT md5('s' || i)::uuid, 'web', 'view', timestamptz '2026-02-01', jsonb_build_object('email', 's' || i || '@x', 'tag', 'red')
  FROM generate_series(1, 40) i;
CREATE FUNCTION pg_temp.pair(id text, def jsonb) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO cdp_traits.attributes (id, definition) VALUES
    (id, def), (id || '_l', def || '{"outer_value": "(value)"}');
$$;
SELECT pg_temp.pair('top', '{"type": "most_frequent", "value": "payload->>''tag''"}'),
       pg_temp.pair('heavy', '{"type": "most_frequent", "value": "payload->>''tag''", "weight": "(payload->>''w'')::float8", "sources": ["web"]}'),
       pg_temp.pair('rare', '{"type": "least_frequent", "value": "payload->>''tag''", "weight": "(payload->>''w'')::float8"}'),
       pg_temp.pair('first_tag', '{"type": "first", "value": "payload->>''tag''", "types": ["purchase"]}'),
       pg_temp.pair('last_tag', '{"type": "last", "value": "payload->>''tag''", "filter": "(payload->>''w'')::int > 1"}'),
       pg_temp.pair('tags', '{"type": "list", "value": "payload->>''tag''", "sources": ["app"]}'),
       pg_temp.pair('n_tags', '{"type": "num_of_unique", "value": "payload->>''tag''"}'),
       pg_temp.pair('spent', '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"]}'),
       pg_temp.pair('avg_spent', '{"type": "avg", "value": "payload->>''amount''"}'),
       pg_temp.pair('min_spent', '{"type": "min", "value": "payload->>''amount''", "data_type": "number"}'),
       pg_temp.pair('last_day', '{"type": "max", "value": "payload->>''day''", "data_type": "date", "sources": ["web"]}'),
       pg_temp.pair('any_w', '{"type": "max", "value": "(payload->>''w'')::int > 2", "data_type": "boolean"}');
SET cdp_traits.state_min_events = 2;
SELECT cdp_traits.calculate_attributes(force => true) AS recalculated;
SELECT c.attribute_id, c.lat = '' AS direct, c.stateful
  FROM cdp_traits.compiled_definitions c ORDER BY 1;
-- the values of each pair, entity by entity, and the values skipped
SELECT a.id, count(*) FILTER (WHERE ea.vals -> a.id IS NOT NULL) AS entities_with_value,
       count(*) FILTER (WHERE ea.vals -> a.id IS DISTINCT FROM ea.vals -> (a.id || '_l')) AS differing,
       (SELECT r.values_skipped FROM cdp_traits.calculation_run_attributes r
         WHERE r.attribute_id = a.id ORDER BY r.run_id DESC LIMIT 1) AS skipped,
       (SELECT r.values_skipped FROM cdp_traits.calculation_run_attributes r
         WHERE r.attribute_id = a.id || '_l' ORDER BY r.run_id DESC LIMIT 1) AS skipped_l
  FROM cdp_traits.attributes a CROSS JOIN cdp_traits.entity_attributes ea
 WHERE a.id NOT LIKE '%\_l'
 GROUP BY a.id ORDER BY a.id;
-- the stored states too, and after new events, a small run from them
SELECT count(*) AS states,
       count(*) FILTER (WHERE EXISTS (SELECT FROM pg_catalog.jsonb_object_keys(st.states) k
                                       WHERE st.states -> k IS DISTINCT FROM st.states -> (k || '_l')
                                         AND k NOT LIKE '%\_l')) AS differing
  FROM cdp_traits.entity_states st;
INSERT INTO cev (id, source_id, type, event_time, payload)
SELECT md5('g' || i)::uuid, 'web', 'purchase', timestamptz '2026-04-01' + i * interval '1 hour',
       jsonb_build_object('email', 'f1@x', 'tag', 'green', 'amount', 'x' || i, 'w', 4, 'day', '2026-04-01')
  FROM generate_series(1, 8) i;
-- (one dirty entity of 45 is "a few" by the planner's count of entities)
ANALYZE cdp_traits.customer_entities;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT (SELECT from_states FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1) AS from_states,
       count(*) FILTER (WHERE ea.vals -> a.id IS DISTINCT FROM ea.vals -> (a.id || '_l')) AS differing
  FROM cdp_traits.attributes a CROSS JOIN cdp_traits.entity_attributes ea
 WHERE a.id NOT LIKE '%\_l';
RESET cdp_traits.state_min_events;

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP TABLE cev CASCADE;
DROP FUNCTION public.cev_tag(text);
DROP FUNCTION public.cev_size(text);
RESET client_min_messages;
