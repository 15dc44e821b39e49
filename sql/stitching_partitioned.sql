-- A partitioned events table: writes through the parent and straight into a
-- partition are stitched alike; a row moving between partitions keeps its
-- entity; truncating one partition leaves the rest stitched.
SET client_min_messages = warning;
CREATE TABLE pev (id text NOT NULL, source_id text NOT NULL, type text NOT NULL DEFAULT 'x',
                  version text NOT NULL DEFAULT '1', event_time timestamptz NOT NULL,
                  payload jsonb, PRIMARY KEY (id, event_time))
  PARTITION BY RANGE (event_time);
CREATE TABLE pev_2024 PARTITION OF pev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE pev_2025 PARTITION OF pev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO pev VALUES ('a1', 'web', 'x', '1', '2024-05-01', '{"email": "a"}');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$), ('phone', $$payload->>'phone'$$);
SELECT cdp_traits.attach_events('pev');
RESET client_min_messages;
-- triggers on the parent and on every partition
SELECT c.relname, count(*) AS triggers FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgname LIKE 'cdp_traits%' GROUP BY 1 ORDER BY 1;

CREATE FUNCTION pg_temp.groups() RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(g, ' | ' ORDER BY g) FROM (SELECT string_agg(id, ',' ORDER BY id) g
    FROM cdp_traits.customer_events WHERE customer_entity_id IS NOT NULL GROUP BY customer_entity_id) s $$;

-- through the parent, across both partitions
INSERT INTO pev VALUES ('a2', 'web', 'x', '1', '2025-02-01', '{"email": "a", "phone": "p"}'),
                       ('b1', 'app', 'x', '1', '2024-03-01', '{"phone": "q"}');
-- straight into a partition
INSERT INTO pev_2025 VALUES ('b2', 'app', 'x', '1', '2025-03-01', '{"phone": "q", "email": "b"}');
INSERT INTO pev_2024 VALUES ('c1', 'crm', 'x', '1', '2024-07-01', '{"email": "b", "phone": "p"}');
SELECT pg_temp.groups() AS one_customer, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;

-- a row that moves to the other partition keeps its entity
SELECT customer_entity_id AS e FROM cdp_traits.customer_events WHERE id = 'b1' \gset
UPDATE pev SET event_time = '2025-06-01' WHERE id = 'b1';
SELECT customer_entity_id = :'e' AS same_entity, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems
  FROM cdp_traits.customer_events WHERE id = 'b1';
-- so is one that a MERGE moves, when the MERGE has a DELETE and an INSERT
-- action (PostgreSQL 15 passes the rows a MERGE moves to the statement
-- triggers only as deleted and inserted rows, see README)
BEGIN;
MERGE INTO pev t USING (VALUES ('b1', '{"phone": "q", "email": "m"}'::jsonb)) s(id, p) ON t.id = s.id
  WHEN MATCHED AND false THEN DELETE
  WHEN MATCHED THEN UPDATE SET event_time = '2024-06-01', payload = s.p
  WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'web', 'x', '1', '2024-06-01', s.p);
SELECT (SELECT tableoid::regclass FROM pev WHERE id = 'b1') AS moved_to, customer_entity_id = :'e' AS same_entity,
       (SELECT count(*) FROM cdp_traits.matching WHERE value = 'm') AS new_identifier,
       (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems
  FROM cdp_traits.customer_events WHERE id = 'b1';
ROLLBACK;

-- a partition created after attach gets the triggers; writes straight into it are stitched
CREATE TABLE pev_2026 PARTITION OF pev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT count(*) AS triggers_on_new_partition FROM pg_trigger WHERE tgrelid = 'pev_2026'::regclass;
INSERT INTO pev_2026 VALUES ('d1', 'web', 'x', '1', '2026-02-01', '{"email": "a", "phone": "r"}');
-- a table attached as a partition: its rows are stitched on the spot
CREATE TABLE pev_2023 (LIKE pev INCLUDING ALL);
INSERT INTO pev_2023 VALUES ('e1', 'pos', 'x', '1', '2023-02-01', '{"phone": "r"}'),
                            ('e2', 'pos', 'x', '1', '2023-03-01', '{"phone": "z"}');
ALTER TABLE pev ATTACH PARTITION pev_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
SELECT pg_temp.groups() AS with_new_partitions, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
-- a detached partition is not stitched any more (its events leave at once)
ALTER TABLE pev DETACH PARTITION pev_2023;
INSERT INTO pev_2023 VALUES ('e3', 'pos', 'x', '1', '2023-04-01', '{"phone": "z"}');
SELECT count(*) AS detached_rows_stitched FROM cdp_traits.event_entities WHERE event_id = 'e3';
SELECT cdp_traits.restitch() > 0 AS restitched, pg_temp.groups() AS after_detach,
       (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
-- the same pass with its read planned again, with a parallel worker over the
-- partitions (forced on these small tables)
SET min_parallel_table_scan_size = 0;
DISCARD PLANS;
SELECT cdp_traits.restitch() > 0 AS restitched, pg_temp.groups() AS parallel_read,
       (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
RESET min_parallel_table_scan_size;
-- the detached partition lost the stitching triggers; attached again (with
-- the late event), all its rows are stitched again
SELECT count(*) AS triggers_on_detached FROM pg_trigger WHERE tgrelid = 'pev_2023'::regclass;
ALTER TABLE pev ATTACH PARTITION pev_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
SELECT pg_temp.groups() AS attached_again, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
-- the same when detached concurrently
ALTER TABLE pev DETACH PARTITION pev_2023 CONCURRENTLY;
SELECT count(*) AS triggers_on_detached FROM pg_trigger WHERE tgrelid = 'pev_2023'::regclass;
SELECT cdp_traits.restitch() > 0 AS restitched, pg_temp.groups() AS after_detach,
       (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
-- a partition that still carries a stitching trigger (detached under an
-- older version) is stitched when attached, and gets all four
CREATE TRIGGER cdp_traits_stitch_insert AFTER INSERT ON pev_2023
  REFERENCING NEW TABLE AS cdp_new_events FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits.stitch_events();
ALTER TABLE pev ATTACH PARTITION pev_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
SELECT pg_temp.groups() AS attached_with_trigger, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
SELECT count(*) AS triggers_on_attached FROM pg_trigger WHERE tgrelid = 'pev_2023'::regclass;
ALTER TABLE pev DETACH PARTITION pev_2023;
SELECT cdp_traits.restitch() > 0 AS restitched;
DROP TABLE pev_2023;
DELETE FROM pev_2026;

-- without a unique index on id, a partition that would give an id to a
-- second event is refused, as such an insert is, and nothing changes
CREATE TABLE pev_2022 (LIKE pev INCLUDING ALL);
INSERT INTO pev_2022 VALUES ('c1', 'pos', 'x', '1', '2022-02-01', '{"phone": "q"}');
ALTER TABLE pev ATTACH PARTITION pev_2022 FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
UPDATE pev_2022 SET id = 'f1';
INSERT INTO pev_2022 VALUES ('f1', 'pos', 'x', '1', '2022-03-01', '{"phone": "q2"}');
ALTER TABLE pev ATTACH PARTITION pev_2022 FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
SELECT count(*) AS partitions, pg_temp.groups() AS after_refused,
       (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems
  FROM pg_inherits WHERE inhparent = 'pev'::regclass;
-- a partition whose rows are stitched already (one detached while the
-- event triggers were off, as under 0.1.0) is no duplicate of itself
DELETE FROM pev_2022 WHERE id = 'f1' AND payload->>'phone' = 'q2';
ALTER TABLE pev ATTACH PARTITION pev_2022 FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
ALTER EVENT TRIGGER cdp_traits_new_partition DISABLE;
ALTER EVENT TRIGGER cdp_traits_ddl_end DISABLE;
ALTER TABLE pev DETACH PARTITION pev_2022;
ALTER EVENT TRIGGER cdp_traits_new_partition ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_ddl_end ENABLE ALWAYS;
SELECT count(*) AS still_stitched FROM cdp_traits.event_entities WHERE event_id = 'f1';
ALTER TABLE pev ATTACH PARTITION pev_2022 FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
SELECT pg_temp.groups() AS attached_stitched, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
ALTER TABLE pev DETACH PARTITION pev_2022;
DROP TABLE pev_2022;

-- deleting from a partition splits
DELETE FROM pev_2024 WHERE id = 'c1';
SELECT pg_temp.groups() AS after_delete, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;

-- truncating one partition: its events leave, the rest stays stitched
TRUNCATE pev_2024;
SELECT pg_temp.groups() AS after_truncating_2024, (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems;
TRUNCATE pev;
SELECT count(*) AS entities_after_truncating_all FROM cdp_traits.customer_entities;

-- the event trigger fires for everybody's DDL: a role without any right on
-- the extension's schema can still create and alter its own tables
CREATE ROLE cdp_plain_role;
CREATE SCHEMA plain_space AUTHORIZATION cdp_plain_role;
SET ROLE cdp_plain_role;
CREATE TABLE plain_space.t (x int);
ALTER TABLE plain_space.t ADD COLUMN y int;
RESET ROLE;
DROP SCHEMA plain_space CASCADE;
DROP ROLE cdp_plain_role;

-- while the events table has no stitching triggers (as in the middle of a
-- restore, before pg_dump recreates them), new partitions are left alone
DROP TRIGGER cdp_traits_stitch_insert ON pev;
CREATE TABLE pev_2027 PARTITION OF pev FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT count(*) AS triggers_installed_mid_restore FROM pg_trigger WHERE tgrelid = 'pev_2027'::regclass;
DROP TABLE pev_2027;

-- a table that kept stitching triggers (a partition detached under an older
-- version): detach_events() removes them too, so it can be attached itself
CREATE TABLE pev_old (LIKE pev INCLUDING ALL);
CREATE TRIGGER cdp_traits_stitch_insert AFTER INSERT ON pev_old
  REFERENCING NEW TABLE AS cdp_new_events FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits.stitch_events();

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname LIKE 'cdp_traits%';
SELECT cdp_traits.attach_events('pev_old');
SELECT cdp_traits.detach_events();
DROP TABLE pev_old CASCADE;
DROP TABLE pev CASCADE;
DELETE FROM cdp_traits.stitching_rules;
DELETE FROM cdp_traits.events_source;
