-- Replica sessions (session_replication_role = replica: the apply worker of
-- logical replication, or a session that sets it) fire no ordinary trigger,
-- and the apply worker fires row triggers only.  attach_events installs,
-- beside the statement triggers, a row trigger and a TRUNCATE trigger
-- enabled for replica sessions only: each change is stitched once, whatever
-- the session's role, and to the same entities.
SET client_min_messages = warning;
CREATE TABLE ev (id text PRIMARY KEY, source_id text DEFAULT 'web', type text DEFAULT 'x',
                 version text DEFAULT '1', event_time timestamptz DEFAULT '2025-01-01', payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$lower(payload->>'email')$$), ('cookie', $$payload->>'cookie'$$),
       ('phone', $$jsonb_array_elements_text(payload->'phones')$$);
SELECT cdp_traits.attach_events('ev');
RESET client_min_messages;

-- the triggers: statement triggers as usual (O), the replica ones (R)
SELECT t.tgname, t.tgenabled, (t.tgtype & 1) = 1 AS for_each_row, t.tgfoid::regproc AS function
  FROM pg_trigger t WHERE t.tgrelid = 'ev'::regclass ORDER BY 1;

-- the entities as groups of events (ids differ between runs), and what
-- verify_stitching() finds
CREATE FUNCTION pg_temp.state() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(g, ' | ' ORDER BY g), '(none)') || ' [' ||
         (SELECT count(*) FROM cdp_traits.customer_entities) || ' entities, ' ||
         (SELECT count(*) FROM cdp_traits.matching) || ' identifiers, ' ||
         (SELECT count(*) FROM cdp_traits.verify_stitching()) || ' problems]'
    FROM (SELECT string_agg(c.id, ',' ORDER BY c.id) AS g
            FROM cdp_traits.customer_events c GROUP BY c.customer_entity_id) s $$;
CREATE TABLE pg_temp.states (run text, step int, state text);
-- one script of changes, its state after each step under the name run
CREATE FUNCTION pg_temp.changes(run text, tab regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	-- 1: separate customers, then an event that links two (a merge)
	EXECUTE format($q$INSERT INTO %s (id, payload) VALUES
		('1', '{"email": "A@x"}'), ('2', '{"cookie": "c1"}'), ('3', '{"phones": ["p1", "p2"]}'),
		('4', '{"email": "b@x"}')$q$, tab);
	EXECUTE format($q$INSERT INTO %s (id, payload) VALUES ('5', '{"email": "a@x", "cookie": "c1"}')$q$, tab);
	INSERT INTO pg_temp.states VALUES (run, 1, pg_temp.state());
	-- 2: several rows in one statement link across (a chain 4-6-3)
	EXECUTE format($q$INSERT INTO %s (id, payload) VALUES
		('6', '{"email": "b@x", "phones": ["p2"]}'), ('7', '{"cookie": "c9"}'), ('8', '{}')$q$, tab);
	INSERT INTO pg_temp.states VALUES (run, 2, pg_temp.state());
	-- 3: an update that changes the link: 6 leaves, the chain splits
	EXECUTE format($q$UPDATE %s SET payload = '{"cookie": "c9"}' WHERE id = '6'$q$, tab);
	INSERT INTO pg_temp.states VALUES (run, 3, pg_temp.state());
	-- 4: a delete that splits: 5 linked 1 and 2
	EXECUTE format($q$DELETE FROM %s WHERE id = '5'$q$, tab);
	INSERT INTO pg_temp.states VALUES (run, 4, pg_temp.state());
	-- 5: an update that touches no identifier, and one of several rows
	EXECUTE format($q$UPDATE %s SET type = 'y' WHERE id IN ('1', '3')$q$, tab);
	INSERT INTO pg_temp.states VALUES (run, 5, pg_temp.state());
	-- 6: TRUNCATE empties stitching
	EXECUTE format('TRUNCATE %s', tab);
	INSERT INTO pg_temp.states VALUES (run, 6, pg_temp.state());
END;
$$;

SELECT pg_temp.changes('origin', 'ev');
SET session_replication_role = replica;
SELECT pg_temp.changes('replica', 'ev');
RESET session_replication_role;
SELECT o.step, o.state, r.state = o.state AS replica_same
  FROM pg_temp.states o JOIN pg_temp.states r ON r.step = o.step AND r.run = 'replica'
 WHERE o.run = 'origin' ORDER BY o.step;

-- sessions of both roles write to the same stitching: an event of a
-- replica session joins the entity of one written as usual, and the next
-- of an ordinary session joins them both
INSERT INTO ev (id, payload) VALUES ('d1', '{"email": "d@x"}');
SET session_replication_role = replica;
INSERT INTO ev (id, payload) VALUES ('d2', '{"email": "D@x", "cookie": "cd"}');
RESET session_replication_role;
INSERT INTO ev (id, payload) VALUES ('d3', '{"cookie": "cd"}');
SELECT pg_temp.state();
TRUNCATE ev;

-- triggers that fire in every session (ENABLE ALWAYS, as a DBA may set on
-- a subscriber) still stitch each change once: the statement triggers leave
-- replica sessions to the row trigger, which leaves the others to them
ALTER TABLE ev ENABLE ALWAYS TRIGGER cdp_traits_stitch_insert, ENABLE ALWAYS TRIGGER cdp_traits_stitch_update,
  ENABLE ALWAYS TRIGGER cdp_traits_stitch_delete, ENABLE ALWAYS TRIGGER cdp_traits_stitch_truncate,
  ENABLE ALWAYS TRIGGER cdp_traits_stitch_replica, ENABLE ALWAYS TRIGGER cdp_traits_stitch_replica_truncate;
SELECT pg_temp.changes('always, origin', 'ev');
SET session_replication_role = replica;
SELECT pg_temp.changes('always, replica', 'ev');
RESET session_replication_role;
SELECT o.step, a.run, a.state = o.state AS same
  FROM pg_temp.states o JOIN pg_temp.states a ON a.step = o.step AND a.run LIKE 'always%'
 WHERE o.run = 'origin' ORDER BY o.step, a.run;

-- A transaction of many small statements holds a bounded number of key
-- locks: past cdp_traits.max_identifier_locks it stitches under the
-- exclusive stitching lock instead (a subscription's apply worker stitches
-- a large remote transaction row by row: without a bound the shared lock
-- table ran out).  The same transaction, as single-row inserts and as one
-- statement in a replica session (a row trigger each), gives the entities
-- one statement gives.
SET cdp_traits.max_identifier_locks = 64;
CREATE FUNCTION pg_temp.many(first int, last int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN first .. last LOOP
		INSERT INTO ev (id, payload)
		VALUES ('m' || i, jsonb_build_object('email', 'p' || (i % 97) || '@x', 'cookie', 'k' || (i % 131)));
	END LOOP;
END;
$$;
CREATE FUNCTION pg_temp.key_locks() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' $$;
INSERT INTO ev (id, payload)
SELECT 'm' || i, jsonb_build_object('email', 'p' || (i % 97) || '@x', 'cookie', 'k' || (i % 131))
  FROM generate_series(1, 600) i;
SELECT pg_temp.state() AS one_statement \gset
TRUNCATE ev;
BEGIN;
SELECT pg_temp.many(1, 600);
SELECT pg_temp.key_locks() BETWEEN 1 AND 64 + 10 AS bounded_locks;
COMMIT;
SELECT pg_temp.state() = :'one_statement' AS single_inserts_same;
TRUNCATE ev;
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO ev (id, payload)
SELECT 'm' || i, jsonb_build_object('email', 'p' || (i % 97) || '@x', 'cookie', 'k' || (i % 131))
  FROM generate_series(1, 600) i;
SELECT pg_temp.key_locks() BETWEEN 1 AND 64 + 10 AS bounded_locks;
COMMIT;
SELECT pg_temp.state() = :'one_statement' AS replica_rows_same;
TRUNCATE ev;
RESET cdp_traits.max_identifier_locks;

-- a partitioned events table: the row trigger goes on each partition (one
-- on the parent would be cloned to them), rows routed through the parent
-- or written to a partition are stitched alike; a partition created later
-- gets the triggers too
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP VIEW cdp_traits.customer_events;
CREATE TABLE evp (id text, source_id text DEFAULT 'web', type text DEFAULT 'x',
                  version text DEFAULT '1', event_time timestamptz DEFAULT '2025-01-01', payload jsonb,
                  PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE evp_a PARTITION OF evp FOR VALUES FROM (MINVALUE) TO ('4');
SELECT cdp_traits.attach_events('evp');
CREATE TABLE evp_b PARTITION OF evp FOR VALUES FROM ('4') TO (MAXVALUE);
RESET client_min_messages;
SELECT t.tgrelid::regclass AS tab, t.tgname, t.tgenabled
  FROM pg_trigger t WHERE t.tgrelid IN ('evp'::regclass, 'evp_a'::regclass, 'evp_b'::regclass)
   AND t.tgname LIKE 'cdp_traits_stitch_replica%' AND NOT t.tgisinternal ORDER BY 1, 2;
SET session_replication_role = replica;
SELECT pg_temp.changes('partitioned', 'evp');
RESET session_replication_role;
SELECT o.step, p.state = o.state AS partitioned_same
  FROM pg_temp.states o JOIN pg_temp.states p ON p.step = o.step AND p.run = 'partitioned'
 WHERE o.run = 'origin' ORDER BY o.step;
SET session_replication_role = replica;
INSERT INTO evp_b (id, payload) VALUES ('7', '{"email": "z@x"}');
INSERT INTO evp (id, payload) VALUES ('1', '{"email": "z@x"}');
RESET session_replication_role;
SELECT pg_temp.state();

-- detaching removes them all
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
RESET client_min_messages;
SELECT count(*) AS stitching_triggers_left FROM pg_trigger
 WHERE tgname LIKE 'cdp_traits_stitch%' AND NOT tgisinternal;
DROP VIEW cdp_traits.customer_events;
DROP TABLE evp, ev;
DELETE FROM cdp_traits.stitching_rules;

-- What a merge or split does to attribute values also happens in replica
-- sessions: the absorbed entity's values go at once, its audience exit is
-- logged and the counts follow (entities_removed is ENABLE ALWAYS; as an
-- ordinary trigger it did not fire there, and the dead entity kept its
-- values, counted, for good).  Segment toggles written there take the
-- toggle-log lock and notify as elsewhere (toggles_writer, toggles_notify).
SET client_min_messages = warning;
CREATE TABLE evr (id bigint PRIMARY KEY, source_id text DEFAULT 'web', type text DEFAULT 'x',
                  version text DEFAULT '1', event_time timestamptz DEFAULT '2025-01-01', payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
  VALUES ('email', $$jsonb_array_elements_text(payload->'emails')$$);
SELECT cdp_traits.attach_events('evr');
INSERT INTO evr (id, payload) VALUES (1, '{"emails": ["a"]}');
INSERT INTO evr (id, payload) VALUES (2, '{"emails": ["b"]}');
INSERT INTO cdp_traits.attributes VALUES ('n', '{"type": "sum", "value": "1"}'),
  ('aud', '{"type": "audience", "condition": "n >= 1"}');
SELECT cdp_traits.calculate_attributes() AS calculated;
RESET client_min_messages;
SELECT tgrelid::regclass AS tab, tgname, tgenabled FROM pg_trigger
 WHERE tgname IN ('entities_removed', 'toggles_writer', 'toggles_notify') ORDER BY 1, 2;
SET session_replication_role = replica;
INSERT INTO evr (id, payload) VALUES (3, '{"emails": ["a", "b"]}');
RESET session_replication_role;
SELECT (SELECT count(*) FROM cdp_traits.customer_entities) AS entities,
       (SELECT count(*) FROM cdp_traits.entity_attributes ea WHERE NOT EXISTS (
          SELECT FROM cdp_traits.customer_entities e WHERE e.id = ea.customer_entity_id)) AS values_of_dead_entities,
       (SELECT string_agg(attribute_id || '=' || customers, ', ' ORDER BY attribute_id) FROM cdp_traits.attribute_counts) AS counts,
       (SELECT count(*) FILTER (WHERE NOT member) FROM cdp_traits.segment_toggles WHERE vendor = 0) AS audience_exits;
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP VIEW cdp_traits.customer_events;
DROP TABLE evr;
DELETE FROM cdp_traits.attributes;
DELETE FROM cdp_traits.stitching_rules;
TRUNCATE cdp_traits.customer_entities, cdp_traits.matching, cdp_traits.event_entities,
         cdp_traits.entity_merges, cdp_traits.events_source, cdp_traits.segment_toggles,
         cdp_traits.calculation_runs;
RESET client_min_messages;
