-- An incremental calculation over a few dirty entities of a larger base (at
-- most 1 in 20, fewer than 10,000) takes another path than a full one: the
-- dirty entities' events are fetched once, by probes of the events' primary
-- key in the order of their stored keys, into a temporary table that the
-- statement of plain values and the statement of expanded values (items)
-- both read.  Whatever the path, the values must be those a full
-- recalculation gives.  Run for uuid ids (stored as keys) and bigint ids.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS iev CASCADE;
RESET client_min_messages;

-- The calculated values of every entity, as text, for comparison.
CREATE FUNCTION pg_temp.snapshot() RETURNS TABLE (entity uuid, vals text)
LANGUAGE sql AS $$
  SELECT ea.customer_entity_id, ea.vals::text FROM cdp_traits.entity_attributes ea
$$;
-- Rows that differ between the values now and a full forced recalculation
-- (0 = the incremental run left what a full one computes).
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

-- A deterministic base: 400 customers, 3 events each (a page view, a
-- purchase with items, an e-mail click), identified by e-mail.
CREATE FUNCTION pg_temp.load(idtype text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  SET LOCAL client_min_messages = warning;
  PERFORM cdp_traits.detach_events() FROM cdp_traits.events_source WHERE attached;
  DROP TABLE IF EXISTS iev CASCADE;
  EXECUTE format('CREATE TABLE iev (id %s PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                  version text NOT NULL DEFAULT ''1'', event_time timestamptz NOT NULL, payload jsonb)', idtype);
  EXECUTE format($q$
  INSERT INTO iev (id, source_id, type, event_time, payload)
  SELECT CASE WHEN %L = 'uuid' THEN md5('ev' || c || '.' || k)::uuid::text ELSE (c * 10 + k)::text END::%s,
         (ARRAY['web', 'shop', 'esp'])[k], (ARRAY['page_view', 'purchase', 'email_clicked'])[k],
         timestamptz '2025-01-01' + c * interval '1 hour' + k * interval '1 day',
         jsonb_build_object('email', 'c' || c || '@x', 'country', (ARRAY['CZ', 'SK', 'AT', 'DE'])[1 + c %% 4],
                            'amount', CASE WHEN k = 2 THEN c %% 50 + 0.5 END,
                            'items', CASE WHEN k = 2 THEN jsonb_build_array(
                                       jsonb_build_object('sku', 'S' || c %% 7, 'qty', 1 + c %% 3),
                                       jsonb_build_object('sku', 'S' || c %% 5, 'qty', 2)) END)
    FROM generate_series(1, 400) c, generate_series(1, 3) k$q$, idtype, idtype);
  DELETE FROM cdp_traits.attributes;
  DELETE FROM cdp_traits.stitching_rules;
  INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
    ('email', $r$payload->>'email'$r$), ('email', $r$payload->>'also'$r$);
  PERFORM cdp_traits.attach_events('iev');
  INSERT INTO cdp_traits.attributes (id, definition) VALUES
    ('country',   '{"type": "most_frequent", "value": "payload->>''country''"}'),
    ('revenue',   '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"]}'),
    ('last_seen', '{"type": "max", "value": "event_time", "data_type": "datetime"}'),
    ('first_src', '{"type": "first", "value": "source_id"}'),
    ('skus',      '{"type": "list", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''sku''", "types": ["purchase"]}'),
    ('top_sku',   '{"type": "most_frequent", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''sku''", "outer_weight": "(value->>''qty'')::float8", "types": ["purchase"]}');
  PERFORM cdp_traits.calculate_attributes();
  ANALYZE cdp_traits.customer_entities;
END $$;

-- New purchases of 5 customers, a page view of customer 78 that now names
-- customer 77 (a merge) and a deleted purchase of customer 99.
CREATE FUNCTION pg_temp.touch(idtype text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format($q$
  INSERT INTO iev (id, source_id, type, event_time, payload)
  SELECT CASE WHEN %L = 'uuid' THEN md5('new' || c)::uuid::text ELSE (100000 + c)::text END::%s,
         'shop', 'purchase', timestamptz '2025-06-01' + c * interval '1 minute',
         jsonb_build_object('email', 'c' || c || '@x', 'country', 'PL', 'amount', 1000,
                            'items', jsonb_build_array(jsonb_build_object('sku', 'NEW', 'qty', 9)))
    FROM unnest(ARRAY[11, 22, 33, 44, 55]) c$q$, idtype, idtype);
  UPDATE iev SET payload = payload || '{"also": "c77@x"}'
   WHERE payload->>'email' = 'c78@x' AND type = 'page_view';
  DELETE FROM iev WHERE payload->>'email' = 'c99@x' AND type = 'purchase';
END $$;

-- The few dirty entities are few enough for that path (at most 1 in 20 of
-- the entities, as counted by the statistics).
CREATE FUNCTION pg_temp.few_dirty() RETURNS boolean
LANGUAGE sql AS $$
  SELECT count(*) * 20 < (SELECT c.reltuples FROM pg_class c
                           WHERE c.oid = 'cdp_traits.customer_entities'::regclass)
    FROM cdp_traits.customer_entities WHERE calculated IS NULL
$$;
-- The values of the customers touched (77 and 78 are one entity now).
CREATE FUNCTION pg_temp.touched_values()
RETURNS TABLE (country text, revenue text, top_sku text, skus jsonb)
LANGUAGE sql AS $$
  SELECT vals->>'country', vals->>'revenue', vals->>'top_sku', vals->'skus'
    FROM cdp_traits.entity_attributes ea
    JOIN cdp_traits.matching m ON m.customer_entity_id = ea.customer_entity_id
   WHERE m.value IN ('c11@x', 'c77@x', 'c78@x', 'c99@x') ORDER BY m.value
$$;

-- uuid ids (stored as keys)
SELECT pg_temp.load('uuid');
SELECT count(*) AS entities, (SELECT count(*) FROM cdp_traits.customer_entities WHERE calculated IS NULL) AS dirty
  FROM cdp_traits.customer_entities;
SELECT pg_temp.touch('uuid');
SELECT pg_temp.few_dirty();
-- the touched entities only (the merged pair counts once), by the few path
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.touched_values();
SELECT pg_temp.differences_from_full() AS differences;

-- bigint ids
SELECT pg_temp.load('bigint');
SELECT pg_temp.touch('bigint');
SELECT pg_temp.few_dirty();
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT * FROM pg_temp.touched_values();
SELECT pg_temp.differences_from_full() AS differences;

-- A run that finds nothing dirty computes nothing and records a run.
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT entities, attributes, failed_attributes FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1;

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP TABLE iev CASCADE;
RESET client_min_messages;
