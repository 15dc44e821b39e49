-- A whole stitching pass (attach_events, restitch) that finds a stitching
-- table empty loads it in bulk: heap inserts without index maintenance, then
-- each index rebuilt.  The result must be the one the row-by-row path gives,
-- the indexes must match the heap (amcheck), and everything after it
-- (incremental batches, merges, splits, a rolled-back restitch) must work as
-- before.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS amcheck;
\set ECHO none
\i test/gen/cdp_gen.sql
\set ECHO all
-- start from an empty stitching state
TRUNCATE cdp_traits.event_entities, cdp_traits.matching;
DELETE FROM cdp_traits.customer_entities;
DELETE FROM cdp_traits.entity_merges;
CREATE TABLE bev (id uuid PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                  version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb NOT NULL);
INSERT INTO bev SELECT * FROM cdp_gen.events(3000, 11);
INSERT INTO cdp_traits.stitching_rules SELECT * FROM cdp_gen.rules();
RESET client_min_messages;

-- Helpers: the relfilenodes of the stitching indexes (a bulk load rebuilds
-- them), an amcheck of each index against its table, the partition.
CREATE TEMP TABLE files (name text, node oid);
CREATE FUNCTION pg_temp.save_files() RETURNS void LANGUAGE sql AS $$
  DELETE FROM files;
  INSERT INTO files SELECT relname, relfilenode FROM pg_class
   WHERE relnamespace = 'cdp_traits'::regnamespace
     AND relname IN ('customer_entities_pkey', 'matching_pkey', 'matching_entity',
                     'event_entities_pkey', 'event_entities_entity') $$;
CREATE FUNCTION pg_temp.rebuilt() RETURNS TABLE(index text, rebuilt boolean) LANGUAGE sql AS $$
  SELECT f.name, c.relfilenode <> f.node FROM files f
    JOIN pg_class c ON c.relname = f.name AND c.relnamespace = 'cdp_traits'::regnamespace
   ORDER BY 1 $$;
CREATE FUNCTION pg_temp.indexes_ok() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM bt_index_check(c.oid, true) FROM pg_class c
   WHERE c.relnamespace = 'cdp_traits'::regnamespace
     AND c.relname IN ('customer_entities_pkey', 'matching_pkey', 'matching_entity',
                       'event_entities_pkey', 'event_entities_entity');
  RETURN 'indexes match their tables';
END $$;
CREATE FUNCTION pg_temp.partition() RETURNS text LANGUAGE sql AS $$
  SELECT md5(string_agg(ids, '|' ORDER BY ids)) FROM (
    SELECT string_agg(event_id, ',' ORDER BY event_id) AS ids
      FROM cdp_traits.event_entities GROUP BY customer_entity_id) g $$;
CREATE FUNCTION pg_temp.ok() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(coalesce(event_id, '-') || ': ' || problem, '; '), 'consistent')
    FROM cdp_traits.verify_stitching() $$;
-- no events table, no stitching state (the next attach starts from empty)
CREATE FUNCTION pg_temp.clear_stitching() RETURNS void LANGUAGE sql AS $$
  DELETE FROM cdp_traits.events_source;
  TRUNCATE cdp_traits.event_entities, cdp_traits.matching;
  DELETE FROM cdp_traits.customer_entities;
  DELETE FROM cdp_traits.entity_merges $$;
CREATE FUNCTION pg_temp.counts(OUT events bigint, OUT identifiers bigint, OUT entities bigint)
LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM cdp_traits.event_entities), (SELECT count(*) FROM cdp_traits.matching),
         (SELECT count(*) FROM cdp_traits.customer_entities) $$;

-- 1. attach stitches the events already there: all three tables in bulk
SELECT pg_temp.save_files();
SET client_min_messages = warning;
SELECT cdp_traits.attach_events('bev');
RESET client_min_messages;
SELECT * FROM pg_temp.rebuilt();
SELECT pg_temp.indexes_ok(), pg_temp.ok();
SELECT * FROM pg_temp.counts();
-- one entity per component, every entity with events, identifiers with their events' entity
SELECT (SELECT count(DISTINCT customer_entity_id) FROM cdp_traits.event_entities) =
       (SELECT count(*) FROM cdp_traits.customer_entities) AS entities_match;
-- new entities: created = modified = the transaction's start, to be calculated
SELECT count(DISTINCT created) AS creation_times, bool_and(created = modified) AS unmodified,
       bool_and(calculated IS NULL) AS to_calculate FROM cdp_traits.customer_entities;
-- the indexes answer look-ups
SET enable_seqscan = off;
SELECT count(*) AS found_by_index FROM bev b
  JOIN cdp_traits.event_entities e ON e.event_id = cdp_traits.event_key(b.id);
SELECT count(*) AS identifiers_found FROM cdp_traits.matching m
  JOIN cdp_traits.customer_entities c ON c.id = m.customer_entity_id;
RESET enable_seqscan;
CREATE TEMP TABLE bulk_partition AS SELECT pg_temp.partition() AS p;

-- uuid ids are stored as their 22-character keys (event_key), which name
-- them back (event_key_uuid) and sort as the uuids do
SELECT count(*) AS assignments, count(*) FILTER (WHERE length(e.event_id) = 22) AS keyed,
       count(*) FILTER (WHERE cdp_traits.event_key_uuid(e.event_id) = b.id) AS named_back
  FROM cdp_traits.event_entities e JOIN bev b ON e.event_id = cdp_traits.event_key(b.id);
SELECT cdp_traits.event_key('00000000-0000-0000-0000-000000000000') AS lowest,
       cdp_traits.event_key('ffffffff-ffff-ffff-ffff-ffffffffffff') AS highest,
       cdp_traits.event_key('0123abcd-4567-89ef-fedc-ba9876543210') AS key,
       cdp_traits.event_key_uuid(cdp_traits.event_key('0123abcd-4567-89ef-fedc-ba9876543210')) AS back,
       cdp_traits.event_key(NULL) IS NULL AND cdp_traits.event_key_uuid(NULL) IS NULL AS strict;
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE (cdp_traits.event_key(a) COLLATE "C" < cdp_traits.event_key(b) COLLATE "C") = (a < b)
                          AND (cdp_traits.event_key(a) = cdp_traits.event_key(b)) = (a = b)
                          AND cdp_traits.event_key_uuid(cdp_traits.event_key(a)) = a) AS in_order
  FROM (SELECT md5(i::text)::uuid, md5((i * 7919 % 5003)::text)::uuid FROM generate_series(1, 5000) i
        UNION ALL
        VALUES ('00000000-0000-0000-0000-000000000001'::uuid, '00000000-0000-0000-0000-000000000002'::uuid),
               ('10000000-0000-0000-0000-000000000000', '0fffffff-ffff-ffff-ffff-ffffffffffff'),
               ('00000000-0000-0000-0000-0000000000ff', '00000000-0000-0000-0000-000000000100'),
               ('7f000000-0000-0000-0000-000000000000', '7f000000-0000-0000-0000-000000000000')) p(a, b);
-- what is not a key: a wrong length, a character outside the alphabet, the
-- unused last 4 bits set
SELECT cdp_traits.event_key_uuid('0123abcd-4567-89ef-fedc-ba9876543210');
SELECT cdp_traits.event_key_uuid('---------------------+');
SELECT cdp_traits.event_key_uuid('-------------------+--');
SELECT cdp_traits.event_key_uuid('---------------------1');

-- 2. the same from the row-by-row path: an insert trigger on the stitching
-- tables (nothing a bulk load would fire) makes the pass fall back to it
CREATE TEMP TABLE fired (tbl text);
CREATE FUNCTION pg_temp.note_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO fired VALUES (TG_TABLE_NAME); RETURN NULL; END $$;
CREATE TRIGGER note_insert AFTER INSERT ON cdp_traits.event_entities
  FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.note_insert();
CREATE TRIGGER note_insert AFTER INSERT ON cdp_traits.matching
  FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.note_insert();
CREATE TRIGGER note_insert AFTER INSERT ON cdp_traits.customer_entities
  FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.note_insert();
TRUNCATE cdp_traits.event_entities, cdp_traits.matching;
DELETE FROM cdp_traits.customer_entities;
SELECT pg_temp.save_files();
SELECT cdp_traits.restitch() > 0 AS restitched;
SELECT tbl, count(*) FROM fired GROUP BY 1 ORDER BY 1;
-- (nothing was loaded in bulk)
SELECT * FROM pg_temp.rebuilt();
SELECT pg_temp.ok(), pg_temp.partition() = (SELECT p FROM bulk_partition) AS same_partition;
DROP TRIGGER note_insert ON cdp_traits.event_entities;
DROP TRIGGER note_insert ON cdp_traits.matching;
DROP TRIGGER note_insert ON cdp_traits.customer_entities;
-- incremental batches insert directly unless a table has insert triggers
CREATE TRIGGER note_insert AFTER INSERT ON cdp_traits.event_entities
  FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.note_insert();
DELETE FROM fired;
INSERT INTO bev SELECT * FROM cdp_gen.events(200, 14);
SELECT tbl, count(*) FROM fired GROUP BY 1 ORDER BY 1;
SELECT pg_temp.indexes_ok(), pg_temp.ok();
DROP TRIGGER note_insert ON cdp_traits.event_entities;
DELETE FROM bev b USING cdp_gen.events(200, 14) g WHERE b.id = g.id;
SELECT pg_temp.ok(), pg_temp.partition() = (SELECT p FROM bulk_partition) AS same_partition;

-- 3. one table emptied: only it is loaded in bulk, the others are compared
DELETE FROM cdp_traits.matching;
SELECT pg_temp.save_files();
SELECT cdp_traits.restitch() > 0 AS restitched;
SELECT * FROM pg_temp.rebuilt();
SELECT changed_events, changed_identifiers > 0 AS identifiers_rewritten FROM cdp_traits.stitching_stats();
SELECT pg_temp.indexes_ok(), pg_temp.ok();

-- 4. a restitch from empty that rolls back leaves the state it found
TRUNCATE cdp_traits.event_entities, cdp_traits.matching;
DELETE FROM cdp_traits.customer_entities;
BEGIN;
SELECT cdp_traits.restitch() > 0 AS restitched;
SELECT pg_temp.ok();
ROLLBACK;
SELECT * FROM pg_temp.counts();
SELECT pg_temp.indexes_ok();
-- and one that commits: restitch with everything current then writes nothing
SELECT cdp_traits.restitch() > 0 AS restitched;
SELECT pg_temp.save_files();
SELECT cdp_traits.restitch() > 0 AS restitched;
SELECT changed_events, changed_identifiers FROM cdp_traits.stitching_stats();
SELECT * FROM pg_temp.rebuilt();

-- 5. incremental batches after a bulk load: new events, merges, splits
CREATE TEMP TABLE pick AS
SELECT b.id, b.payload, e.customer_entity_id AS ent FROM bev b
  JOIN cdp_traits.event_entities e ON e.event_id = cdp_traits.event_key(b.id)
 WHERE b.source_id = 'web' AND b.payload ? 'email' AND b.payload ? 'cookie_id'
 ORDER BY b.id LIMIT 40;
-- link pairs of entities through a new event carrying one's email and the other's cookie
INSERT INTO bev
SELECT gen_random_uuid(), 'web', 'login', '1-0-0', '2025-06-01',
       jsonb_build_object('email', a.payload->>'email', 'cookie_id', b.payload->>'cookie_id')
  FROM (SELECT *, row_number() OVER (ORDER BY id) n FROM pick) a
  JOIN (SELECT *, row_number() OVER (ORDER BY id) n FROM pick) b ON b.n = a.n + 20
 WHERE a.ent <> b.ent;
SELECT count(*) > 0 AS merged FROM cdp_traits.entity_merges;
SELECT pg_temp.ok();
-- delete the linking events again: the merged entities split
DELETE FROM bev WHERE event_time = '2025-06-01';
SELECT pg_temp.ok(), pg_temp.partition() = (SELECT p FROM bulk_partition) AS same_partition;
-- more events in one statement, and single ones
INSERT INTO bev SELECT * FROM cdp_gen.events(500, 12);
INSERT INTO bev SELECT * FROM cdp_gen.events(1, 13);
SELECT pg_temp.indexes_ok(), pg_temp.ok();

-- 6. a partitioned events table: attaching it loads in bulk too
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
SELECT pg_temp.clear_stitching();
CREATE TABLE pev (id uuid, source_id text NOT NULL, type text NOT NULL, version text NOT NULL,
                  event_time timestamptz NOT NULL, payload jsonb NOT NULL) PARTITION BY HASH (id);
CREATE TABLE pev0 PARTITION OF pev FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE pev1 PARTITION OF pev FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO pev SELECT * FROM bev;
SELECT pg_temp.save_files();
SELECT cdp_traits.attach_events('pev');
RESET client_min_messages;
SELECT count(*) AS rebuilt FROM pg_temp.rebuilt() WHERE rebuilt;
SELECT pg_temp.indexes_ok(), pg_temp.ok();

-- 7. bulk loads write entities and identifiers in the order of their primary
-- key (byte-wise, as "C"), so that its build finds the input sorted, and
-- event assignments in the order the events were read; incremental batches
-- insert all three in key order.  Also for keys that share their first 16
-- bytes, are prefixes of one another or hold bytes above 0x7f, and attribute
-- ids that are prefixes of one another.  The other indexes are built with
-- parallel workers where allowed (here even for small tables).
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
SELECT pg_temp.clear_stitching();
DELETE FROM cdp_traits.stitching_rules;
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('k', $$payload->>'k'$$), ('key', $$payload->>'key'$$), ('Z', $$payload->>'z'$$),
  ('é', $$payload->>'e'$$);
CREATE TABLE tev (id text PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                  version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb NOT NULL);
INSERT INTO tev
SELECT (ARRAY['same-sixteen-bytes/', 'same-sixteen-bytes', 'Ä', 'ä-', 'short', ''])[1 + i % 6]
       || (i * 7919 % 3000), 'web', 'view', '1', '2025-01-01',
       jsonb_build_object('k', 'a-long-common-identifier-prefix-' || (i % 700),
                          'key', 'a-long-common-identifier-prefix-' || (i % 500) || 'ü',
                          'z', CASE WHEN i % 3 = 0 THEN 'zz' || (i % 900) END,
                          'e', CASE WHEN i % 5 = 0 THEN 'ÿ' || (i % 11) END)
  FROM generate_series(1, 3000) i;
-- (parallel index builds on these small tables; the events read serially, so
-- that their assignments are written in the events' order)
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 0;
SELECT pg_temp.save_files();
SELECT cdp_traits.attach_events('tev');
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET client_min_messages;
SELECT count(*) AS rebuilt FROM pg_temp.rebuilt() WHERE rebuilt;
SELECT * FROM pg_temp.counts();
SELECT 'customer_entities' AS heap, bool_and(a = b) AS in_key_order
  FROM (SELECT row_number() OVER (ORDER BY ctid) a, row_number() OVER (ORDER BY id) b
          FROM cdp_traits.customer_entities) x
UNION ALL
SELECT 'matching', bool_and(a = b)
  FROM (SELECT row_number() OVER (ORDER BY ctid) a, row_number() OVER (ORDER BY attribute_id, value) b
          FROM cdp_traits.matching) x
UNION ALL
SELECT 'event_entities (in the events'' order)', bool_and(a = b)
  FROM (SELECT row_number() OVER (ORDER BY e.ctid) a, row_number() OVER (ORDER BY t.ctid) b
          FROM cdp_traits.event_entities e JOIN tev t ON t.id = e.event_id) x;
SELECT pg_temp.indexes_ok(), pg_temp.ok();
SET enable_seqscan = off;
SELECT count(*) AS found_by_index FROM tev t
  JOIN cdp_traits.event_entities e ON e.event_id = t.id;
RESET enable_seqscan;
-- an incremental batch of such keys (sorted in C for its inserts), merging
CREATE TEMP TABLE before_batch AS SELECT * FROM pg_temp.counts();
INSERT INTO tev
SELECT (ARRAY['same-sixteen-bytes/x', 'same-sixteen-bytes', 'Äb', 'ä', 'shorter', ''])[1 + i % 6]
       || (3000 + i * 7919 % 3000), 'web', 'view', '1', '2025-01-02',
       jsonb_build_object('k', CASE WHEN i % 4 = 0 THEN 'a-long-common-identifier-prefix-' || (i % 700) END,
                          'key', 'a-long-common-identifier-prefix-' || (i % 37) || 'ÿ',
                          'z', 'a-long-common-identifier-prefix-' || i)
  FROM generate_series(1, 400) i;
SELECT c.events - b.events AS new_events, c.identifiers - b.identifiers AS new_identifiers
  FROM pg_temp.counts() c, before_batch b;
SELECT pg_temp.indexes_ok(), pg_temp.ok();

-- 6. re-attaching a table whose ids take the other stored form (text, or a
-- uuid's key) converts the stored keys: every event keeps its entity, and a
-- stored key that can name no event of the new table goes
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DELETE FROM cdp_traits.stitching_rules;
INSERT INTO cdp_traits.stitching_rules SELECT * FROM cdp_gen.rules();
CREATE TABLE kev_text (id text PRIMARY KEY, source_id text, type text, version text,
                       event_time timestamptz, payload jsonb);
INSERT INTO kev_text SELECT id::text, source_id, type, version, event_time, payload FROM bev;
INSERT INTO kev_text VALUES ('not-a-uuid', 'web', 'view', '1', '2025-01-01', '{"cookie_id": "ck-1-0"}');
CREATE TABLE kev_uuid (id uuid PRIMARY KEY, source_id text, type text, version text,
                       event_time timestamptz, payload jsonb);
INSERT INTO kev_uuid SELECT * FROM bev;
SELECT cdp_traits.attach_events('kev_text');
RESET client_min_messages;
CREATE TEMP TABLE kev_entities AS SELECT id, customer_entity_id FROM cdp_traits.customer_events;
CREATE FUNCTION pg_temp.kev_moved() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM kev_entities k JOIN cdp_traits.customer_events c ON c.id::text = k.id
	 WHERE c.customer_entity_id IS DISTINCT FROM k.customer_entity_id $$;
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
SELECT cdp_traits.attach_events('kev_uuid');
RESET client_min_messages;
SELECT 'text -> uuid' AS reattached, (SELECT count(*) FROM cdp_traits.event_entities) AS assignments,
       (SELECT count(*) FROM cdp_traits.event_entities WHERE length(event_id) <> 22) AS not_keyed,
       pg_temp.kev_moved() AS moved, changed_events AS rewritten, pg_temp.ok()
  FROM cdp_traits.stitching_stats();
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
SELECT cdp_traits.attach_events('kev_text');
RESET client_min_messages;
SELECT 'uuid -> text' AS reattached, (SELECT count(*) FROM cdp_traits.event_entities) AS assignments,
       (SELECT count(*) FROM cdp_traits.event_entities WHERE length(event_id) = 22) AS keyed,
       pg_temp.kev_moved() AS moved, changed_events AS rewritten, pg_temp.ok()
  FROM cdp_traits.stitching_stats();

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP TABLE kev_text CASCADE;
DROP TABLE kev_uuid CASCADE;
DROP TABLE bev CASCADE;
DROP TABLE pev CASCADE;
DROP TABLE tev CASCADE;
DELETE FROM cdp_traits.stitching_rules;
SELECT pg_temp.clear_stitching();
DROP EXTENSION amcheck;
