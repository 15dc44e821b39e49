-- Databases that are not C-locale UTF8, and sessions with settings of their
-- own: what stitching and the calculation store must not depend on the
-- caller's locale settings, and the checks must not reject what the
-- database's encoding spells differently.  Each part has a database of its
-- own (ICU collations and the encodings exist on every server).
\set regression_db :DBNAME
SET client_min_messages = warning;

--
-- 1. A Turkish default collation: lower('I') is a dotless 'ı' there.  The
-- blocklist is compared case-insensitively, values and entries alike:
-- ASCII letters are lower-cased directly, the rest as lower() does.
--
CREATE DATABASE cdp_locales_tr TEMPLATE template0 ENCODING UTF8 LOCALE_PROVIDER icu ICU_LOCALE 'tr' LOCALE 'C';
\c cdp_locales_tr
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
SELECT lower('MISSING') AS turkish_lower, lower('WİFİ') AS turkish_lower_dotted;
CREATE SCHEMA cdp_ce;
CREATE TABLE cdp_ce.customer_events (id text PRIMARY KEY, source_id text, type text,
  version text, event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
  VALUES ('email', $$payload->>'email'$$);
-- entries written in capitals, one with a dotted capital İ
INSERT INTO cdp_traits.stitching_blocklist (attribute_id, value)
  VALUES (NULL, 'MISSING'), ('email', 'Wİfİ'), ('email', ' INVALID ');
INSERT INTO cdp_ce.customer_events
SELECT 'e' || i, 'web', 'view', '1', '2025-01-01 00:00:00+00'::timestamptz + i * interval '1 hour',
       jsonb_build_object('email', v)
  FROM unnest(ARRAY['MISSING', 'missing', ' Missing ', 'WIFI', 'wifi', 'WİFİ', 'Invalid',
                    'UNDEFINED', 'undefined', 'ali@x', 'ALI@x']) WITH ORDINALITY AS t(v, i);
SELECT cdp_traits.attach_events('cdp_ce.customer_events');
-- only the two real identifiers link (blocklisted values never do)
SELECT attribute_id, value FROM cdp_traits.matching ORDER BY value COLLATE "C";
SELECT count(*) FILTER (WHERE customer_entity_id IS NULL) AS unstitched,
       count(DISTINCT customer_entity_id) AS entities
  FROM cdp_traits.customer_events;
-- new events, restitch and the check agree
INSERT INTO cdp_ce.customer_events VALUES
  ('n1', 'web', 'view', '1', '2025-02-01 00:00:00+00', '{"email": "MİSSİNG"}'),
  ('n2', 'web', 'view', '1', '2025-02-01 00:00:00+00', '{"email": "wİfi"}');
SELECT id, customer_entity_id IS NULL AS unstitched FROM cdp_traits.customer_events
 WHERE id IN ('n1', 'n2') ORDER BY id COLLATE "C";
SELECT cdp_traits.restitch() AS entities;
SELECT * FROM cdp_traits.verify_stitching();
SELECT kind, label FROM cdp_traits.explain_entity(
  (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 'e10'))
 WHERE kind IN ('identifier', 'blocked') ORDER BY label COLLATE "C";

--
-- 2. The calculation and context refresh pin the locale settings that
-- change text (to_char's month names and separators) as stitching does:
-- the same values whatever the session's (or the worker's) lc_time,
-- lc_numeric and lc_monetary.
--
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('settings', '{"type": "custom", "query": "SELECT current_setting(''lc_time'') || ''/'' || current_setting(''lc_numeric'') || ''/'' || current_setting(''lc_monetary'') || ''/'' || current_setting(''xmloption'') AS value FROM base LIMIT 1"}'),
  ('month', '{"type": "custom", "query": "SELECT to_char(min(event_time), ''TMMonth'') AS value FROM base"}');
INSERT INTO cdp_traits.context (key, query) VALUES
  ('settings', 'SELECT current_setting(''lc_time'') || ''/'' || current_setting(''lc_numeric'') || ''/'' || current_setting(''lc_monetary'') || ''/'' || current_setting(''xmloption'')');
SET lc_time = 'C.UTF-8';
SET lc_numeric = 'C.UTF-8';
SET lc_monetary = 'C.UTF-8';
SET xmloption = document;
SELECT cdp_traits.calculate_attributes() AS entities;
SELECT DISTINCT attribute_id, value FROM cdp_traits.customer_attributes ORDER BY 1, 2;
SELECT key, value FROM cdp_traits.context;
-- the session's settings are back
SELECT current_setting('lc_time') AS lc_time, current_setting('xmloption') AS xmloption;
RESET lc_time;
RESET lc_numeric;
RESET lc_monetary;
RESET xmloption;

\c :regression_db
DROP DATABASE cdp_locales_tr;
SET client_min_messages = warning;

--
-- 3. SQL_ASCII: the bytes of a multibyte character are characters of their
-- own, so only ASCII control characters make an attribute id invalid (the
-- second byte of a UTF-8 Ü, 0x9C, is a C1 control in Latin-1).
--
CREATE DATABASE cdp_locales_ascii TEMPLATE template0 ENCODING SQL_ASCII LOCALE 'C';
\c cdp_locales_ascii
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('Ünïcödé_ÅÄÖ', '{"type": "value", "value": "payload->>''city''"}'),
  ('Привет', '{"type": "value", "value": "payload->>''city''"}');
SELECT id FROM cdp_traits.attributes ORDER BY 1;
-- ASCII controls are still refused
CREATE FUNCTION pg_temp.try_id(id text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO cdp_traits.attributes VALUES (id, '{"type": "value", "value": "payload->>''city''"}');
	RETURN 'accepted';
EXCEPTION WHEN invalid_parameter_value THEN
	RETURN 'rejected';
END $$;
SELECT pg_temp.try_id(E'a\tb') AS tab, pg_temp.try_id(E'a\x7fb') AS del,
       pg_temp.try_id(E'a\x1bb') AS esc, pg_temp.try_id('plain') AS plain;
SELECT attname FROM pg_attribute
 WHERE attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass AND attnum > 0
 ORDER BY attnum;

\c :regression_db
DROP DATABASE cdp_locales_ascii;

--
-- 4. A replica session (session_replication_role = replica: logical
-- replication's apply worker, or a session that sets it for a bulk load)
-- stitches events through the replica triggers; the extension's triggers on
-- its own tables fire there as anywhere, so a merge takes the absorbed
-- entity's values away (history closed, audience exit logged, counts
-- right), and configuration written there is checked and seen at once.
--
CREATE DATABASE cdp_locales_replica TEMPLATE template0 ENCODING UTF8 LOCALE 'C';
\c cdp_locales_replica
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
-- every trigger of the extension on its own tables fires in every session
-- (the replica triggers of segment_events in replica sessions only)
SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'cdp_traits'::regnamespace AND NOT t.tgisinternal
 ORDER BY 1, 2;
CREATE TABLE public.ev (id text PRIMARY KEY, source_id text, type text, version text,
  event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
  VALUES ('a', $$payload->>'a'$$), ('b', $$payload->>'b'$$);
SELECT cdp_traits.attach_events('public.ev');
INSERT INTO public.ev VALUES
  ('a1', 'web', 'view', '1', '2025-01-01 00:00:00+00', '{"a": "x", "amt": 5}'),
  ('b1', 'web', 'view', '1', '2025-01-02 00:00:00+00', '{"b": "y", "amt": 7}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('amt', '{"type": "sum", "value": "payload->>''amt''", "history": true}'),
  ('big', '{"type": "audience", "condition": "amt > 1"}');
SELECT cdp_traits.calculate_attributes() AS entities;
SET session_replication_role = replica;
-- an event that links both: one entity is absorbed
INSERT INTO public.ev VALUES ('m1', 'web', 'view', '1', '2025-01-03 00:00:00+00', '{"a": "x", "b": "y"}');
-- a rule written here applies at once, also in this session
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('c', $$payload->>'c'$$);
INSERT INTO public.ev VALUES
  ('c1', 'web', 'view', '1', '2025-01-04 00:00:00+00', '{"c": "z"}'),
  ('c2', 'web', 'view', '1', '2025-01-05 00:00:00+00', '{"c": "z"}');
-- and is checked
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('d', $$payload->>$$);
-- a definition written here gets its column of the pivot
INSERT INTO cdp_traits.attributes (id, definition)
  VALUES ('events', '{"type": "custom", "query": "SELECT count(*) AS value FROM base", "data_type": "number"}');
RESET session_replication_role;
SELECT (SELECT count(*) FROM cdp_traits.customer_entities) AS entities,
       (SELECT count(*) FROM cdp_traits.entity_attributes ea
         WHERE NOT EXISTS (SELECT FROM cdp_traits.customer_entities e WHERE e.id = ea.customer_entity_id)) AS values_of_absorbed,
       (SELECT count(*) FROM cdp_traits.attribute_history WHERE valid_to IS NULL) AS open_history,
       (SELECT count(*) FILTER (WHERE entered) || ' in, ' || count(*) FILTER (WHERE NOT entered) || ' out'
          FROM cdp_traits.audience_changes) AS audience_changes;
SELECT * FROM cdp_traits.attribute_counts ORDER BY 1;
SELECT id, customer_entity_id IS NOT NULL AS stitched,
       customer_entity_id = (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 'c1') AS with_c1
  FROM cdp_traits.customer_events WHERE id IN ('c1', 'c2') ORDER BY 1;
SELECT * FROM cdp_traits.verify_stitching();
SELECT cdp_traits.calculate_attributes() AS entities;
SELECT count(*) AS entities, count(events) AS with_events, sum(events) AS events
  FROM cdp_traits.pivoted_customer_attributes;

\c :regression_db
DROP DATABASE cdp_locales_replica;
