-- Stored aggregate states (entity_states): a small run reads only the
-- events queued since (entity_state_events) for a dirty entity with 20 or
-- more events, and combines their states with the stored ones.  The
-- stitching trigger queues an entity's new events and drops its state on
-- anything else (a merge, a deleted or updated event, a restitch).  Whatever
-- happened to the entity, the values must be those a full forced
-- recalculation gives.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS sev CASCADE;
RESET client_min_messages;

-- Values now as text, and the rows that differ from a full forced
-- recalculation (0: the run left what a full one computes).
CREATE FUNCTION pg_temp.snapshot() RETURNS TABLE (entity uuid, vals text)
LANGUAGE sql AS $$
  SELECT ea.customer_entity_id, ea.vals::text FROM cdp_traits.entity_attributes ea
$$;
CREATE FUNCTION pg_temp.differences_from_full() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  d bigint;
BEGIN
  CREATE TEMP TABLE inc_values AS SELECT * FROM pg_temp.snapshot();
  PERFORM cdp_traits.calculate_attributes(force => true);
  SELECT count(*) INTO d FROM (
    (SELECT * FROM inc_values EXCEPT SELECT * FROM pg_temp.snapshot())
    UNION ALL
    (SELECT * FROM pg_temp.snapshot() EXCEPT SELECT * FROM inc_values)) x;
  DROP TABLE inc_values;
  RETURN d;
END $$;
-- The stored states: whose (by e-mail), of how many events.
CREATE FUNCTION pg_temp.states() RETURNS TABLE (email text, n bigint, attributes bigint)
LANGUAGE sql AS $$
  SELECT (SELECT min(m.value) FROM cdp_traits.matching m WHERE m.customer_entity_id = st.customer_entity_id),
         st.n, (SELECT count(*) FROM jsonb_object_keys(st.states))
    FROM cdp_traits.entity_states st ORDER BY 1
$$;
-- The queued events, per entity.
CREATE FUNCTION pg_temp.queued() RETURNS TABLE (email text, events bigint)
LANGUAGE sql AS $$
  SELECT (SELECT min(m.value) FROM cdp_traits.matching m WHERE m.customer_entity_id = q.customer_entity_id),
         count(*)
    FROM cdp_traits.entity_state_events q GROUP BY q.customer_entity_id ORDER BY 1
$$;
-- What the last run did.
CREATE FUNCTION pg_temp.last_run() RETURNS TABLE (entities bigint, from_states bigint)
LANGUAGE sql AS $$
  SELECT r.entities, r.from_states FROM cdp_traits.calculation_runs r ORDER BY r.id DESC LIMIT 1
$$;
-- Event i of customer who: every third a purchase with an item.
CREATE FUNCTION pg_temp.ev(who text, i int, kind text DEFAULT NULL)
RETURNS TABLE (id uuid, source_id text, type text, event_time timestamptz, payload jsonb)
LANGUAGE sql AS $$
  SELECT md5(who || '.' || i)::uuid, 'web',
         COALESCE(kind, CASE WHEN i % 3 = 0 THEN 'purchase' ELSE 'page_view' END),
         timestamptz '2026-01-01' + i * interval '1 hour',
         jsonb_build_object('email', who || '@x', 'country', (ARRAY['CZ', 'SK', 'DE', 'AT'])[1 + (i * 7 + length(who)) % 4],
           'w', (i % 5) + 0.5, 'amount', (i * 13 % 97) + 0.25, 'day', (date '2026-01-01' + i)::text,
           'vip', (i % 4 = 0)::text, 'n', i::text,
           'items', jsonb_build_array(jsonb_build_object('sku', 'S' || (i % 6), 'category', 'C' || (i % 3),
                                                         'quantity', i % 4 + 1)))
$$;

CREATE TABLE sev (id uuid PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                  version text NOT NULL DEFAULT '1', event_time timestamptz NOT NULL, payload jsonb NOT NULL);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$), ('email', $$payload->>'also'$$);
SELECT cdp_traits.attach_events('sev');
-- every type that has a state form, each data type of min and max, weights,
-- an expansion of items with an outer weight, and a cast that can fail
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('top_country',   '{"type": "most_frequent", "value": "payload->>''country''"}'),
  ('rare_country',  '{"type": "least_frequent", "value": "payload->>''country''", "weight": "(payload->>''w'')::float8"}'),
  ('first_country', '{"type": "first", "value": "payload->>''country''"}'),
  ('last_country',  '{"type": "last", "value": "payload->>''country''"}'),
  ('countries',     '{"type": "list", "value": "payload->>''country''"}'),
  ('n_countries',   '{"type": "num_of_unique", "value": "payload->>''country''"}'),
  ('revenue',       '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"]}'),
  ('avg_order',     '{"type": "avg", "value": "payload->>''amount''", "types": ["purchase"]}'),
  ('max_order',     '{"type": "max", "value": "payload->>''amount''", "types": ["purchase"], "data_type": "number"}'),
  ('min_order',     '{"type": "min", "value": "payload->>''amount''", "types": ["purchase"], "data_type": "number"}'),
  ('first_seen',    '{"type": "min", "value": "event_time", "data_type": "datetime"}'),
  ('last_day',      '{"type": "max", "value": "payload->>''day''", "data_type": "date"}'),
  ('ever_vip',      '{"type": "max", "value": "payload->>''vip''", "data_type": "boolean"}'),
  ('always_vip',    '{"type": "min", "value": "payload->>''vip''", "data_type": "boolean"}'),
  ('top_n',         '{"type": "max", "value": "(payload->>''n'')::int"}'),
  ('skus',          '{"type": "list", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''sku''", "types": ["purchase"]}'),
  ('top_category',  '{"type": "most_frequent", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''category''", "outer_weight": "(value->>''quantity'')::float8", "weight": "1", "types": ["purchase"]}');
-- a, b, c have many events; 200 customers one each (the dirty ones stay
-- few: the path of a few dirty entities, see attributes_incremental)
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM generate_series(1, 30) i, pg_temp.ev('a', i) e;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM generate_series(1, 25) i, pg_temp.ev('b', i) e;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM generate_series(1, 21) i, pg_temp.ev('c', i) e;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM generate_series(1, 200) i, pg_temp.ev('p' || i, i) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
ANALYZE cdp_traits.customer_entities;
-- every definition can be kept from states
SELECT count(*) FILTER (WHERE c.stateful) AS stateful, count(*) AS compiled
  FROM cdp_traits.attributes a CROSS JOIN LATERAL cdp_traits._compile(a.id, a.definition, 'x') c;
-- new definitions are computed for every entity, as in a forced run, and
-- that run stores the states of the large entities (a, b and c) it marks
-- calculated, so that the small runs after it start from them
SELECT * FROM pg_temp.states();

-- New events of a and of a customer with one event: a's are queued, and
-- the run reads them and a's state (not a's other 30 events); the small
-- entity gets no state.
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM generate_series(31, 33) i, pg_temp.ev('a', i) e;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('p7', 500) e;
SELECT * FROM pg_temp.queued();
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT * FROM pg_temp.states();
SELECT * FROM pg_temp.queued();
-- (a forced run recalculates from the events alone, and keeps the states:
-- they still hold exactly the entities' events)
SELECT pg_temp.differences_from_full() AS differences;
SELECT * FROM pg_temp.states();

-- Again new events of a, and of b: both from their states.
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM generate_series(34, 35) i, pg_temp.ev('a', i) e;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('b', 26) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT * FROM pg_temp.states();
SELECT vals->>'revenue' AS revenue, vals->>'avg_order' AS avg_order, vals->>'top_country' AS top_country,
       vals->'skus' AS skus, vals->>'top_n' AS top_n
  FROM cdp_traits.entity_attributes ea
 WHERE ea.customer_entity_id = cdp_traits.current_entity((SELECT m.customer_entity_id FROM cdp_traits.matching m WHERE m.value = 'a@x'));
SELECT pg_temp.differences_from_full() AS differences;

-- The state is trusted: an event changed behind the triggers' back (the
-- trigger disabled) is not seen by a run that uses it, and is by a forced
-- run.
ALTER TABLE sev DISABLE TRIGGER cdp_traits_stitch_update;
UPDATE sev SET payload = payload || '{"amount": 1000000}' WHERE id = md5('a.3')::uuid;
ALTER TABLE sev ENABLE TRIGGER cdp_traits_stitch_update;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 38) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.differences_from_full() AS differences_after_bypass;
-- The forced run (in differences_from_full) recalculated from the events
-- alone and renewed a's state with them: a small run from that state now
-- agrees with a full one.
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 39) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.differences_from_full() AS differences_after_forced_run;

-- An event updated through the triggers (same identifiers): b's state is
-- dropped with its queue, and b is read whole (and gets a new state).
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('b', 29) e;
SELECT * FROM pg_temp.queued();
UPDATE sev SET payload = payload || '{"country": "PL", "amount": 7}' WHERE id = md5('b.3')::uuid;
SELECT * FROM pg_temp.states();
SELECT * FROM pg_temp.queued();
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT vals->>'last_country' AS last_country, vals->'countries' AS countries
  FROM cdp_traits.entity_attributes ea
 WHERE ea.customer_entity_id = (SELECT m.customer_entity_id FROM cdp_traits.matching m WHERE m.value = 'b@x');
SELECT pg_temp.differences_from_full() AS differences;

-- A deleted event: a's state goes.
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 41) e;
DELETE FROM sev WHERE id = md5('a.6')::uuid;
SELECT * FROM pg_temp.states();
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.differences_from_full() AS differences;

-- A merge: an event names a and c.  The older entity (a) survives with
-- c's events added: the states of both go, and a is read whole.
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.id, e.source_id, e.type, e.event_time, e.payload || '{"also": "c@x"}' FROM pg_temp.ev('a', 43) e;
SELECT count(DISTINCT customer_entity_id) AS entities_of_a_and_c FROM cdp_traits.matching WHERE value IN ('a@x', 'c@x');
SELECT * FROM pg_temp.states();
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT * FROM pg_temp.states();
SELECT pg_temp.differences_from_full() AS differences;

-- A restitch may change any entity's events: every state goes.
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 44) e;
SELECT * FROM pg_temp.queued();
SELECT cdp_traits.restitch() IS NOT NULL AS restitched;
SELECT count(*) AS states, (SELECT count(*) FROM cdp_traits.entity_state_events) AS queued
  FROM cdp_traits.entity_states;
SELECT cdp_traits.calculate_attributes(force => true) AS recalculated;
SELECT * FROM pg_temp.states();
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 45) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.differences_from_full() AS differences;

-- A changed definition is computed for every entity, the others for the
-- dirty ones: that run stores no states and drops those of its entities.
-- The states are of the definitions as compiled: the next small run finds
-- a's gone and writes a new one; the one after uses it.
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 46) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
UPDATE cdp_traits.attributes SET definition = definition || '{"types": ["purchase"]}' WHERE id = 'top_country';
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 47) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 48) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 52) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT pg_temp.differences_from_full() AS differences;

-- An attribute that fails on a new event: no states are stored for the
-- run's entities, and theirs are dropped (the failed attribute's would be
-- missing).
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 49) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT count(*) AS states FROM cdp_traits.entity_states;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.id, e.source_id, e.type, e.event_time, e.payload || '{"n": "fifty"}' FROM pg_temp.ev('a', 50) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT attribute_id, error FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) AND error IS NOT NULL;
SELECT count(*) AS states FROM cdp_traits.entity_states;
DELETE FROM sev WHERE id = md5('a.50')::uuid;

-- A definition that reads the clock (or a context value) has no state form:
-- with it, runs read every event as before, store no states, and drop
-- those of their entities.
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('recent', '{"type": "sum", "value": "payload->>''amount''", "filter": "event_time > now() - interval ''100 years''"}');
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT c.stateful FROM cdp_traits.attributes a CROSS JOIN LATERAL cdp_traits._compile(a.id, a.definition, 'x') c
 WHERE a.id = 'recent';
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 51) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT * FROM pg_temp.states();
SELECT pg_temp.differences_from_full() AS differences;
-- Nor has a definition that reads another table (a subquery in a filter):
-- its rows may change while a state is stored.
DELETE FROM cdp_traits.attributes WHERE id = 'recent';
CREATE TABLE counted (country text);
INSERT INTO counted VALUES ('CZ');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('counted', '{"type": "sum", "value": "payload->>''amount''", "filter": "EXISTS (SELECT FROM public.counted c WHERE c.country = payload->>''country'')"}');
SELECT cdp_traits.calculate_attributes(force => true) AS recalculated;
SELECT c.stateful FROM cdp_traits.attributes a CROSS JOIN LATERAL cdp_traits._compile(a.id, a.definition, 'x') c
 WHERE a.id = 'counted';
SELECT count(*) AS states FROM cdp_traits.entity_states;
-- (a change of the table makes no entity dirty, as the clock does not: a
-- dirty one is computed from all its events and the table as it is now)
INSERT INTO counted VALUES ('SK');
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('a', 70) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
SELECT (ea.vals->>'counted')::numeric AS counted,
       (ea.vals->>'counted')::numeric = (SELECT sum((v.payload->>'amount')::numeric) FROM cdp_traits.customer_events v
                                          WHERE v.customer_entity_id = ea.customer_entity_id
                                            AND v.payload->>'country' IN ('CZ', 'SK')) AS as_now
  FROM cdp_traits.entity_attributes ea
 WHERE ea.customer_entity_id = (SELECT m.customer_entity_id FROM cdp_traits.matching m WHERE m.value = 'a@x');
DELETE FROM cdp_traits.attributes WHERE id = 'counted';
DROP TABLE counted;
-- _to_timestamptz and _to_date depend only on settings the run pins
SELECT (cdp_traits._query_deps('SELECT cdp_traits._to_timestamptz(payload->>''t''), cdp_traits._to_date(''2026-01-01'') FROM cdp_traits.customer_events')).immutable AS pinned,
       (cdp_traits._query_deps('SELECT (payload->>''t'')::timestamptz FROM cdp_traits.customer_events')).immutable AS cast_to_timestamptz,
       (cdp_traits._query_deps('SELECT cdp_traits.context_value(''k'') FROM cdp_traits.customer_events')).immutable AS context_value,
       (cdp_traits._query_deps('SELECT current_date')).immutable AS current_date;

-- agg_state_merge: two states into one, outside an aggregate
SELECT cdp_traits.state_most_frequent(cdp_traits.agg_state_merge(
         (SELECT cdp_traits.frequency_state(x) FROM unnest(ARRAY['a', 'b', 'b']) x),
         (SELECT cdp_traits.frequency_state(x) FROM unnest(ARRAY['a', 'a']) x)), NULL::text) AS merged,
       cdp_traits.agg_state_merge(NULL, NULL) IS NULL AS both_null,
       cdp_traits.state_last(cdp_traits.agg_state_merge(NULL,
         (SELECT cdp_traits.last_state(x, t) FROM (VALUES ('p', timestamptz '2026-01-02'), ('q', '2026-01-01')) v(x, t))), NULL::text) AS one_null;
SELECT cdp_traits.agg_state_merge(
         (SELECT cdp_traits.frequency_state(x) FROM unnest(ARRAY['a']) x),
         (SELECT cdp_traits.unique_state(x) FROM unnest(ARRAY['a']) x));

-- What a calculation writes is compressed with lz4 where the server has it
-- (see calculate_attributes): here z's state and values, over 2 kB each.
SELECT ('default_toast_compression=lz4' = ANY (p.proconfig))
       = (SELECT 'lz4' = ANY (s.enumvals) FROM pg_settings s WHERE s.name = 'default_toast_compression')
         AS lz4_where_the_server_has_it
  FROM pg_proc p WHERE p.oid = 'cdp_traits.calculate_attributes(boolean)'::regprocedure;
DELETE FROM cdp_traits.attributes WHERE id = 'recent';
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('all_n', '{"type": "list", "value": "payload->>''n''"}');
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM generate_series(1, 400) i, pg_temp.ev('z', i) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('z', 401) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
WITH m AS (SELECT CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'lz4' ELSE 'pglz' END AS expected
             FROM pg_settings s WHERE s.name = 'default_toast_compression')
SELECT st.n, pg_column_compression(st.states) = m.expected AS state_compressed_as_expected,
       pg_column_compression(ea.vals) = m.expected AS values_compressed_as_expected,
       jsonb_array_length(ea.vals->'all_n') AS all_n
  FROM m, cdp_traits.entity_states st
  JOIN cdp_traits.entity_attributes ea ON ea.customer_entity_id = st.customer_entity_id
 WHERE st.customer_entity_id = (SELECT mt.customer_entity_id FROM cdp_traits.matching mt WHERE mt.value = 'z@x');
-- (the caller's setting is its own again)
SHOW default_toast_compression;
SELECT pg_temp.differences_from_full() AS differences;

-- Two runs in one transaction (a dbt post-hook that calculates twice, say),
-- with new events between them: the second run uses the states the first
-- stored.  (The second failed with "relation with OID ... does not exist":
-- a function kept a plan of the first run's temporary tables.)
BEGIN;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('z', 402) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
INSERT INTO sev (id, source_id, type, event_time, payload)
SELECT e.* FROM pg_temp.ev('z', 403) e;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.last_run();
COMMIT;
SELECT pg_temp.differences_from_full() AS differences;

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP TABLE sev CASCADE;
RESET client_min_messages;
