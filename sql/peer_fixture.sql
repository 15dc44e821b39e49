-- The peer project's identity-resolution seeds, reshaped as events, stitch to
-- exactly the expected partition, whatever order the events arrive in.
CREATE TABLE peer_events (id text PRIMARY KEY, source_id text NOT NULL, type text NOT NULL DEFAULT 'seed',
                          version text NOT NULL DEFAULT '1', event_time timestamptz NOT NULL DEFAULT '2025-01-01',
                          payload jsonb);
CREATE TEMP TABLE raw_lines (line text);
\copy raw_lines FROM 'test/data/peer/events.txt'
CREATE TEMP TABLE peer_rules (attribute_id text, source_id text, value_expression text);
\copy peer_rules FROM 'test/data/peer/rules.tsv'
CREATE TEMP TABLE expected (label int, event_id text);
\copy expected FROM 'test/data/peer/expected_entities.tsv'
CREATE TEMP TABLE input AS
SELECT split_part(line, ',', 1) AS id, split_part(line, ',', 2) AS source_id,
       substr(line, length(split_part(line, ',', 1)) + length(split_part(line, ',', 2)) + 3)::jsonb AS payload
  FROM raw_lines;
SELECT count(*) AS events, count(DISTINCT source_id) AS sources FROM input;

SET client_min_messages = warning;
INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, value_expression)
SELECT attribute_id, source_id, value_expression FROM peer_rules;
SELECT cdp_traits.attach_events('peer_events');
RESET client_min_messages;

-- partitions compared as sets of sets of event ids, ignoring ids and labels
CREATE FUNCTION pg_temp.partition_matches() RETURNS boolean LANGUAGE sql AS $$
  SELECT (SELECT string_agg(ids, ' | ' ORDER BY ids) FROM
            (SELECT string_agg(id, ',' ORDER BY id) AS ids FROM cdp_traits.customer_events GROUP BY customer_entity_id) a)
       = (SELECT string_agg(ids, ' | ' ORDER BY ids) FROM
            (SELECT string_agg(event_id, ',' ORDER BY event_id) AS ids FROM expected GROUP BY label) b)
$$;

-- 1. all at once
INSERT INTO peer_events (id, source_id, payload) SELECT id, source_id, payload FROM input;
SELECT pg_temp.partition_matches() AS all_at_once,
       (SELECT count(*) FROM cdp_traits.customer_entities) AS entities,
       (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
SELECT count(*) AS events_per_entity FROM cdp_traits.customer_events GROUP BY customer_entity_id ORDER BY 1 DESC;

-- 2. one event per statement, in id order, reverse order and a shuffled order
TRUNCATE peer_events;
SELECT count(*) AS entities_after_truncate FROM cdp_traits.customer_entities;
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM input ORDER BY id LOOP
    INSERT INTO peer_events (id, source_id, payload) VALUES (r.id, r.source_id, r.payload);
  END LOOP; END $$;
SELECT pg_temp.partition_matches() AS one_by_one, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
DELETE FROM peer_events;
SELECT count(*) AS entities_after_delete FROM cdp_traits.customer_entities;
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM input ORDER BY id DESC LOOP
    INSERT INTO peer_events (id, source_id, payload) VALUES (r.id, r.source_id, r.payload);
  END LOOP; END $$;
SELECT pg_temp.partition_matches() AS reverse_order, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
DELETE FROM peer_events;
DELETE FROM cdp_traits.entity_merges;
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM input ORDER BY md5(id) LOOP
    INSERT INTO peer_events (id, source_id, payload) VALUES (r.id, r.source_id, r.payload);
  END LOOP; END $$;
SELECT pg_temp.partition_matches() AS shuffled, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
-- merges happened along the way and every absorbed id leads to a live entity
SELECT count(*) > 0 AS merged_some,
       bool_and(cdp_traits.current_entity(merged_id) IS NOT NULL) AS all_resolve
  FROM cdp_traits.entity_merges;

-- 3. restitch from scratch gives the same partition and keeps every id
CREATE TEMP TABLE before AS SELECT id, customer_entity_id FROM cdp_traits.customer_events;
SELECT cdp_traits.restitch() AS entities;
SELECT count(*) AS ids_changed FROM before b JOIN cdp_traits.customer_events c USING (id)
 WHERE b.customer_entity_id IS DISTINCT FROM c.customer_entity_id;
SELECT changed_events, changed_identifiers FROM cdp_traits.stitching_stats();

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP TABLE peer_events CASCADE;
DELETE FROM cdp_traits.stitching_rules;
DELETE FROM cdp_traits.events_source;
