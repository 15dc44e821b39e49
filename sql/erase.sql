-- Erasing a customer (a data subject's request to be forgotten):
-- erase_entity(id) and erase_segment_user(user_id).
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS er_events CASCADE;
DROP ROLE IF EXISTS er_admin;
RESET client_min_messages;
CREATE TABLE er_events (id int PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                        version text NOT NULL DEFAULT '1', event_time timestamptz NOT NULL,
                        payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$), ('user', $$payload->>'user'$$);
SELECT cdp_traits.attach_events('er_events');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('country', '{"type": "last", "value": "payload->>''country''", "history": true}'),
  ('spend',   '{"type": "sum", "value": "payload->>''amount''", "history": true}'),
  ('big',     '{"type": "audience", "condition": "spend > 10"}');
-- Eva: three entities merged in a chain (eva3 into eva2, then eva2 into
-- eva@x), with history before and after the merges; Otto: someone else
INSERT INTO er_events VALUES (1, 'crm', 'signup', '1', '2025-01-01', '{"email": "eva@x", "country": "CZ"}');
INSERT INTO er_events VALUES (2, 'web', 'visit', '1', '2025-01-02', '{"user": "eva2", "country": "SK", "amount": 20}');
INSERT INTO er_events VALUES (3, 'app', 'open', '1', '2025-01-03', '{"user": "eva3", "country": "AT"}');
INSERT INTO er_events VALUES (4, 'crm', 'signup', '1', '2025-01-04', '{"email": "otto@x", "country": "DE", "amount": 30}');
SELECT cdp_traits.calculate_attributes();
SELECT (SELECT customer_entity_id FROM cdp_traits.matching WHERE value = 'eva@x') AS e1,
       (SELECT customer_entity_id FROM cdp_traits.matching WHERE value = 'eva2') AS e2,
       (SELECT customer_entity_id FROM cdp_traits.matching WHERE value = 'eva3') AS e3,
       (SELECT customer_entity_id FROM cdp_traits.matching WHERE value = 'otto@x') AS otto \gset
INSERT INTO er_events VALUES (5, 'app', 'link', '1', '2025-01-05', '{"email": "eva3@x", "user": "eva3"}'),
                             (6, 'app', 'link', '1', '2025-01-06', '{"email": "eva3@x", "user": "eva2", "country": "PL"}');
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
INSERT INTO er_events VALUES (7, 'crm', 'link', '1', '2025-01-07', '{"email": "eva@x", "user": "eva2"}');
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT cdp_traits.current_entity(:'e3') = :'e1' AS one_customer,
       (SELECT count(*) FROM cdp_traits.entity_merges) AS merges,
       (SELECT count(*) FROM cdp_traits.attribute_history WHERE customer_entity_id IN (:'e1', :'e2', :'e3')) > 3 AS eva_history;

-- which tables of the extension still hold one of ids in a uuid column (or
-- its text), and the identifiers with a value like pattern
CREATE FUNCTION pg_temp.holding(ids uuid[], pattern text) RETURNS TABLE(tbl text, col text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT c.oid::regclass AS rel, a.attname, a.atttypid
			   FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
			  WHERE c.relnamespace = 'cdp_traits'::regnamespace AND c.relkind IN ('r', 'p')
				AND a.atttypid IN ('uuid'::regtype, 'text'::regtype)
			  ORDER BY 1, 2 LOOP
		IF r.atttypid = 'uuid'::regtype THEN
			EXECUTE format('SELECT count(*) FROM %s WHERE %I = ANY ($1)', r.rel, r.attname) INTO n USING ids;
		ELSE
			EXECUTE format('SELECT count(*) FROM %s WHERE %I = ANY ($1::text[]) OR %I LIKE $2', r.rel, r.attname, r.attname)
				INTO n USING ids, pattern;
		END IF;
		IF n > 0 THEN
			tbl := r.rel::text; col := r.attname; RETURN NEXT;
		END IF;
	END LOOP;
END;
$$;
SELECT * FROM pg_temp.holding(ARRAY[:'e1', :'e2', :'e3']::uuid[], 'eva%');

-- only the owner may erase
CREATE ROLE er_admin IN ROLE cdp_traits_admin;
SET ROLE er_admin;
SELECT * FROM cdp_traits.erase_entity(:'e3');
SELECT * FROM cdp_traits.erase_segment_user('eva');
RESET ROLE;
SELECT * FROM cdp_traits.erase_entity(NULL);

-- erase Eva by an id absorbed long ago: all her events (through stitching),
-- the history of every id she had, the merges between them
SELECT * FROM cdp_traits.erase_entity(:'e3');
SELECT id FROM er_events ORDER BY id;
-- nothing of hers is left but the audience exit, under the pseudonymous id
-- (vendor 0 of the toggle log: the activation must hear that she left)
SELECT * FROM pg_temp.holding(ARRAY[:'e1', :'e2', :'e3']::uuid[], 'eva%');
SELECT vendor, segment, user_id = :'e1' AS eva, member FROM cdp_traits.segment_toggles ORDER BY seq;
SELECT cdp_traits.current_entity(:'e3') IS NULL AS gone, count(*) AS merges_left FROM cdp_traits.entity_merges;
-- Otto is untouched, and stitching is consistent
SELECT attribute_id, value FROM cdp_traits.customer_attributes WHERE customer_entity_id = :'otto' ORDER BY 1;
SELECT count(*) AS otto_history FROM cdp_traits.attribute_history WHERE customer_entity_id = :'otto';
SELECT * FROM cdp_traits.verify_stitching();
SELECT cdp_traits.calculate_attributes() >= 0 AS calculated;
-- again: nothing left to erase
SELECT * FROM cdp_traits.erase_entity(:'e1');

-- a customer whose events were deleted before: the history that stays after
-- an entity has gone is erased by any of its ids
INSERT INTO er_events VALUES (8, 'crm', 'signup', '1', '2025-02-01', '{"email": "ida@x", "country": "HU"}');
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT customer_entity_id AS ida FROM cdp_traits.matching WHERE value = 'ida@x' \gset
DELETE FROM er_events WHERE id = 8;
SELECT count(*) AS ida_history FROM cdp_traits.attribute_history WHERE customer_entity_id = :'ida';
SELECT * FROM cdp_traits.erase_entity(:'ida');
SELECT * FROM pg_temp.holding(ARRAY[:'ida']::uuid[], 'ida%');

-- with the events table detached, its events cannot go through stitching:
-- refused, nothing erased
SELECT cdp_traits.detach_events();
SELECT set_config('er.otto', :'otto', false) IS NOT NULL AS noted;
DO $$
DECLARE
	m text; d text; h text; c text;
BEGIN
	PERFORM cdp_traits.erase_entity(current_setting('er.otto')::uuid);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT, c = RETURNED_SQLSTATE;
	RAISE NOTICE '% (%) / % / %', replace(m, current_setting('er.otto'), '<otto>'), c, d, h;
END;
$$;
SELECT count(*) AS otto_history FROM cdp_traits.attribute_history WHERE customer_entity_id = :'otto';
SELECT cdp_traits.attach_events('er_events');

-- a segment user: events, memberships, profile, toggles of every vendor
SELECT cdp_traits.ingest_segment_event(d::jsonb) IS NOT NULL AS accepted FROM (VALUES
  ('{"event": "00000000-0000-0000-0000-000000000001", "timestamp": "2025-01-01T00:00:00Z", "user": "eva@x", "segment": {"vendor": 1, "name": "news"}}'),
  ('{"event": "00000000-0000-0000-0000-000000000002", "timestamp": "2025-01-02T00:00:00Z", "user": "eva@x", "segment": {"vendor": 1, "name": "news"}, "remove": true}'),
  ('{"event": "00000000-0000-0000-0000-000000000003", "timestamp": "2025-01-03T00:00:00Z", "user": "eva@x", "segment": {"vendor": 2, "name": "vip"}, "value": "gold"}'),
  ('{"event": "00000000-0000-0000-0000-000000000004", "timestamp": "2025-01-04T00:00:00Z", "user": "otto@x", "segment": {"vendor": 1, "name": "news"}}'),
  ('{"event": "00000000-0000-0000-0000-000000000005", "timestamp": "2025-01-05T00:00:00Z", "user": "otto@x", "segment": {"vendor": 1, "name": "news"}, "remove": true}')) v(d);
SELECT * FROM cdp_traits.erase_segment_user(NULL);
SELECT * FROM cdp_traits.erase_segment_user('eva@x');
SELECT * FROM pg_temp.holding('{}', 'eva%');
SELECT user_id, vendor, segment, member FROM cdp_traits.segment_memberships ORDER BY 1, 2, 3;
SELECT user_id, member FROM cdp_traits.segment_toggles WHERE vendor <> 0 ORDER BY seq;
SELECT count(*) AS profiles FROM cdp_traits.segment_profiles;
-- a redelivered event stays ignored; a new one starts afresh
SELECT cdp_traits.ingest_segment_event('{"event": "00000000-0000-0000-0000-000000000003", "timestamp": "2025-01-03T00:00:00Z", "user": "eva@x", "segment": {"vendor": 2, "name": "vip"}, "value": "gold"}') AS redelivered;
SELECT cdp_traits.ingest_segment_event('{"event": "00000000-0000-0000-0000-000000000006", "timestamp": "2025-03-01T00:00:00Z", "user": "eva@x", "segment": {"vendor": 2, "name": "vip"}}') IS NOT NULL AS accepted;
SELECT user_id, vendor, segment, member, first IS NOT NULL AS added FROM cdp_traits.segment_memberships WHERE user_id = 'eva@x';
SELECT count(*) AS eva_toggles FROM cdp_traits.segment_toggles WHERE user_id = 'eva@x';
SELECT * FROM cdp_traits.erase_segment_user('nobody');

SET client_min_messages = warning;
DROP ROLE er_admin;
DROP TABLE er_events CASCADE;
RESET client_min_messages;
