-- One statement that deletes some events and changes the identifiers of
-- others (MERGE with DELETE and UPDATE actions, a writable CTE) stitches as
-- the same changes made by separate statements: the same entities, keeping
-- the same ids.  The DELETE trigger fires first, while the updated events
-- already read as their new versions; the entity they are in is left to
-- the UPDATE trigger.
SET client_min_messages = warning;
CREATE TABLE ev (id text PRIMARY KEY, source_id text DEFAULT 'web', type text DEFAULT 'x',
                 version text DEFAULT '1', event_time timestamptz DEFAULT '2025-01-01', payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$), ('phone', $$payload->>'phone'$$),
       ('cookie', $$payload->>'cookie'$$);
SELECT cdp_traits.attach_events('ev');
RESET client_min_messages;

-- the entities as groups of events, each named by the events whose entity
-- id it kept (from pg_temp.before), or "new"
CREATE TABLE pg_temp.before (id text, entity uuid);
CREATE FUNCTION pg_temp.snapshot() RETURNS void LANGUAGE sql AS $$
  DELETE FROM pg_temp.before;
  INSERT INTO pg_temp.before SELECT id, customer_entity_id FROM cdp_traits.customer_events $$;
CREATE FUNCTION pg_temp.state() RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(g, ' | ' ORDER BY g) || ' (' ||
         (SELECT count(*) FROM cdp_traits.verify_stitching()) || ' problems)'
    FROM (SELECT string_agg(c.id, ',' ORDER BY c.id) || ' kept ' ||
                 coalesce((SELECT string_agg(b.id, ',' ORDER BY b.id) FROM pg_temp.before b
                            WHERE b.entity = c.customer_entity_id), 'new') AS g
            FROM cdp_traits.customer_events c WHERE c.customer_entity_id IS NOT NULL
           GROUP BY c.customer_entity_id) s $$;

-- entity X = events 1, 2, 3 (email a); entity Y = event 4 (phone p);
-- delete event 1 and move event 3 to Y
INSERT INTO ev (id, payload) VALUES ('1', '{"email": "a"}'), ('2', '{"email": "a"}'),
                                    ('3', '{"email": "a"}'), ('4', '{"phone": "p"}');
SELECT pg_temp.snapshot();
BEGIN;
DELETE FROM ev WHERE id = '1';
UPDATE ev SET payload = '{"phone": "p"}' WHERE id = '3';
SELECT pg_temp.state() AS separate \gset
ROLLBACK;
SELECT :'separate' AS separate;
BEGIN;
MERGE INTO ev USING (VALUES ('1', NULL), ('3', '{"phone": "p"}'::jsonb)) s(id, p) ON ev.id = s.id
  WHEN MATCHED AND s.p IS NULL THEN DELETE
  WHEN MATCHED THEN UPDATE SET payload = s.p;
SELECT pg_temp.state() = :'separate' AS merge_same, pg_temp.state() AS merge;
ROLLBACK;
BEGIN;
WITH u AS (UPDATE ev SET payload = '{"phone": "p"}' WHERE id = '3')
DELETE FROM ev WHERE id = '1';
SELECT pg_temp.state() = :'separate' AS cte_same, pg_temp.state() AS cte;
ROLLBACK;
-- the CTE the other way round (UPDATE in the main statement)
BEGIN;
WITH d AS (DELETE FROM ev WHERE id = '1')
UPDATE ev SET payload = '{"phone": "p"}' WHERE id = '3';
SELECT pg_temp.state() = :'separate' AS cte_reversed_same, pg_temp.state() AS cte_reversed;
ROLLBACK;

-- the updated event was the bridge of its entity, and now links it to Y:
-- X = 5 (email b), 6 (email b, cookie k), 7 (cookie k), 8 (cookie k);
-- delete 8, update 6 to (email b, phone p): 7 splits off, X and Y merge
INSERT INTO ev (id, payload) VALUES ('5', '{"email": "b"}'), ('6', '{"email": "b", "cookie": "k"}'),
                                    ('7', '{"cookie": "k"}'), ('8', '{"cookie": "k"}');
SELECT pg_temp.snapshot();
BEGIN;
DELETE FROM ev WHERE id = '8';
UPDATE ev SET payload = '{"email": "b", "phone": "p"}' WHERE id = '6';
SELECT pg_temp.state() AS separate \gset
ROLLBACK;
SELECT :'separate' AS separate;
BEGIN;
MERGE INTO ev USING (VALUES ('8', NULL), ('6', '{"email": "b", "phone": "p"}'::jsonb)) s(id, p)
  ON ev.id = s.id
  WHEN MATCHED AND s.p IS NULL THEN DELETE
  WHEN MATCHED THEN UPDATE SET payload = s.p;
SELECT pg_temp.state() = :'separate' AS merge_same;
ROLLBACK;
BEGIN;
WITH u AS (UPDATE ev SET payload = '{"email": "b", "phone": "p"}' WHERE id = '6')
DELETE FROM ev WHERE id = '8';
SELECT pg_temp.state() = :'separate' AS cte_same;
ROLLBACK;

-- deletes, updates that keep or change identifiers, and inserts in one MERGE
SELECT pg_temp.snapshot();
BEGIN;
DELETE FROM ev WHERE id IN ('1', '7');
UPDATE ev SET payload = '{"email": "a", "x": 1}' WHERE id = '2';
UPDATE ev SET payload = '{"cookie": "k"}' WHERE id = '5';
UPDATE ev SET payload = '{"phone": "p", "email": "c"}' WHERE id = '3';
INSERT INTO ev (id, payload) VALUES ('9', '{"email": "c", "cookie": "k"}');
SELECT pg_temp.state() AS separate \gset
ROLLBACK;
SELECT :'separate' AS separate;
BEGIN;
MERGE INTO ev USING (VALUES ('1', NULL), ('7', NULL), ('2', '{"email": "a", "x": 1}'::jsonb),
                            ('5', '{"cookie": "k"}'), ('3', '{"phone": "p", "email": "c"}'),
                            ('9', '{"email": "c", "cookie": "k"}')) s(id, p)
  ON ev.id = s.id
  WHEN MATCHED AND s.p IS NULL THEN DELETE
  WHEN MATCHED THEN UPDATE SET payload = s.p
  WHEN NOT MATCHED THEN INSERT (id, payload) VALUES (s.id, s.p);
SELECT pg_temp.state() = :'separate' AS merge_same;
ROLLBACK;
BEGIN;
WITH d AS (DELETE FROM ev WHERE id IN ('1', '7')),
     u AS (UPDATE ev SET payload = CASE id WHEN '2' THEN '{"email": "a", "x": 1}'::jsonb
                                           WHEN '5' THEN '{"cookie": "k"}'
                                           ELSE '{"phone": "p", "email": "c"}' END
            WHERE id IN ('2', '5', '3'))
INSERT INTO ev (id, payload) VALUES ('9', '{"email": "c", "cookie": "k"}');
SELECT pg_temp.state() = :'separate' AS cte_same;
ROLLBACK;

-- events stitched under rules since changed can carry an identifier of
-- another entity too: deleting one of their entity's events keeps their
-- stitching (until restitch, which merges them into the older Z) instead of
-- failing.  Z = 11 (email z, and a
-- name not read yet), 12 (email z); Q = 13 (phone q), then 14 (phone q,
-- name n) stores the name with Q under the new rule.
DELETE FROM ev;
INSERT INTO ev (id, payload) VALUES ('11', '{"email": "z", "name": "n"}'), ('12', '{"email": "z"}');
INSERT INTO ev (id, payload) VALUES ('13', '{"phone": "q"}');
SET client_min_messages = warning;
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('name', $$payload->>'name'$$);
RESET client_min_messages;
INSERT INTO ev (id, payload) VALUES ('14', '{"phone": "q", "name": "n"}');
SELECT pg_temp.snapshot();
DELETE FROM ev WHERE id = '12';
SELECT pg_temp.state() AS stale_rules_kept;
SELECT cdp_traits.restitch() IS NOT NULL AS restitched, pg_temp.state() AS after_restitch;

-- A trigger of the user's that changes the rows of an INSERT before the
-- stitching trigger fires (AFTER ROW triggers fire first): an enrichment
-- that updates an inserted event's identifiers, a clean-up that deletes an
-- inserted event.  Each event is stitched as it is once the statement is
-- over: the updated one by its new identifiers, the deleted one not at all
-- (it failed with a duplicate key in event_entities, and a deleted event
-- stayed stitched, its identifier and entity with it).
DELETE FROM ev;
CREATE FUNCTION pg_temp.fix_up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ev SET payload = '{"email": "b"}' WHERE id = NEW.id AND NEW.type = 'enrich';
  DELETE FROM ev WHERE id = NEW.id AND NEW.type = 'junk';
  RETURN NULL;
END $$;
CREATE TRIGGER fix_up AFTER INSERT ON ev FOR EACH ROW EXECUTE FUNCTION pg_temp.fix_up();
INSERT INTO ev (id, type, payload) VALUES ('21', 'enrich', '{"email": "a"}'), ('22', 'x', '{"email": "a"}'),
  ('23', 'junk', '{"email": "c"}'), ('24', 'x', '{"email": "b"}');
SELECT pg_temp.snapshot();
SELECT pg_temp.state() AS fixed_up_by_trigger;
SELECT attribute_id, value FROM cdp_traits.matching ORDER BY 1, 2;
SELECT event_id FROM cdp_traits.event_entities ORDER BY 1;
-- a later INSERT is stitched as usual
INSERT INTO ev (id, type, payload) VALUES ('25', 'x', '{"email": "c"}');
SELECT pg_temp.state() AS then_another;
DROP TRIGGER fix_up ON ev;
-- the same on an UPDATE: a trigger that normalizes the e-mail address the
-- UPDATE wrote (updating the row again), or deletes the row (the UPDATE's
-- own version was stitched over the trigger's: 22 stayed apart from 25 by
-- "C", and 24 stayed stitched)
CREATE FUNCTION pg_temp.normalize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.payload->>'email' <> lower(NEW.payload->>'email') THEN
    UPDATE ev SET payload = jsonb_build_object('email', lower(NEW.payload->>'email')) WHERE id = NEW.id;
  END IF;
  DELETE FROM ev WHERE id = NEW.id AND NEW.type = 'junk';
  RETURN NULL;
END $$;
CREATE TRIGGER normalize AFTER UPDATE ON ev FOR EACH ROW EXECUTE FUNCTION pg_temp.normalize();
SELECT pg_temp.snapshot();
UPDATE ev SET payload = '{"email": "C"}' WHERE id = '22';
UPDATE ev SET type = 'junk', payload = '{"email": "q"}' WHERE id = '24';
SELECT pg_temp.state() AS normalized_by_trigger;
SELECT attribute_id, value FROM cdp_traits.matching ORDER BY 1, 2;
DROP TRIGGER normalize ON ev;

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP TABLE ev CASCADE;
TRUNCATE cdp_traits.event_entities, cdp_traits.matching, cdp_traits.customer_entities CASCADE;
DELETE FROM cdp_traits.stitching_rules;
DELETE FROM cdp_traits.events_source;
