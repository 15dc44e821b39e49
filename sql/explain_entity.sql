-- explain_entity: the identity graph behind one entity, as rows and as DOT.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
CREATE SCHEMA xp;
CREATE TABLE xp.events (id bigint PRIMARY KEY, source_id text, type text, version text DEFAULT '1-0-0',
                        event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, value_expression) VALUES
  ('email', NULL, $$lower(btrim(payload->>'email'))$$),
  ('cookie', 'web', $$payload->>'cookie'$$),
  ('device', 'app', $$jsonb_array_elements_text(payload->'devices')$$);
SELECT cdp_traits.attach_events('xp.events');
RESET client_min_messages;

-- Three entities: A (a web cookie), B (an e-mail), C (an app device) ...
INSERT INTO xp.events VALUES (1, 'web', 'page_view', '1-0-0', '2025-01-01 10:00+00', '{"cookie": "c1"}');
INSERT INTO xp.events VALUES (2, 'crm', 'signup', '1-0-0', '2025-01-01 11:00+00', '{"email": "bob@example.com"}');
INSERT INTO xp.events VALUES (3, 'app', 'open', '2-0-0', '2025-01-01 12:00+00', '{"devices": ["d7"]}');
SELECT (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 1) AS a,
       (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 2) AS b,
       (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 3) AS c \gset
-- ... C is merged into B by an event carrying B's e-mail and C's device, then B
-- into A by a login with A's cookie and B's e-mail (the oldest entity survives).
INSERT INTO xp.events VALUES (4, 'app', 'login', '2-0-0', '2025-01-01 13:00+00', '{"devices": ["d7"], "email": "bob@example.com"}');
INSERT INTO xp.events VALUES (5, 'web', 'login', '1-0-0', '2025-01-01 14:00+00', '{"cookie": "c1", "email": " BOB@example.com"}');
-- a blocklisted value is shown, marked, and links nothing; a value that needs
-- quoting in DOT
INSERT INTO xp.events VALUES (6, 'web', 'login', '1-0-0', '2025-01-01 15:00+00', '{"cookie": "c1", "email": "N/A"}');
INSERT INTO xp.events VALUES (7, 'web', 'page_view', '1-0-0', '2025-01-01 16:00+00', E'{"cookie": "say \\"hi\\" \\\\o/"}');
SELECT customer_entity_id AS e FROM cdp_traits.customer_events WHERE id = 7 \gset
INSERT INTO xp.events VALUES (8, 'web', 'page_view', '1-0-0', '2025-01-01 16:30+00', E'{"cookie": "say \\"hi\\" \\\\o/", "email": "bob@example.com"}');
-- an unrelated entity
INSERT INTO xp.events VALUES (9, 'web', 'page_view', '1-0-0', '2025-01-01 17:00+00', '{"cookie": "other", "email": "n/a"}');
SELECT cdp_traits.current_entity(:'c') = :'a' AS c_now_a, cdp_traits.current_entity(:'b') = :'a' AS b_now_a;
-- fixed merge times, and names for the random entity ids
UPDATE cdp_traits.entity_merges SET merged_at = '2025-01-01 13:00+00' WHERE merged_id = :'c';
UPDATE cdp_traits.entity_merges SET merged_at = '2025-01-01 14:00+00' WHERE merged_id = :'b';
UPDATE cdp_traits.entity_merges SET merged_at = '2025-01-01 16:30+00' WHERE merged_id = :'e';
CREATE TEMP TABLE names (id uuid, name text);
INSERT INTO names VALUES (:'a', 'A'), (:'b', 'B'), (:'c', 'C'), (:'e', 'E'),
  ((SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 9), 'D');
CREATE FUNCTION pg_temp.named(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM names LOOP s := replace(s, r.id::text, r.name); END LOOP;
  RETURN s;
END $$;

-- Rows: the entity, the ids it absorbed (C through B), its events, the
-- identifiers the rules read from them, and which event carries which.
-- Asked for C, explained is A (current_entity).
SELECT kind, pg_temp.named(node) AS node, pg_temp.named(label) AS label, pg_temp.named(linked_to) AS linked_to
  FROM cdp_traits.explain_entity(:'c');
-- the same graph for the live id itself
SELECT count(*) AS rows_differ_only_in_entity_label FROM (
  (SELECT * FROM cdp_traits.explain_entity(:'a') EXCEPT SELECT * FROM cdp_traits.explain_entity(:'c'))
  UNION ALL
  (SELECT * FROM cdp_traits.explain_entity(:'c') EXCEPT SELECT * FROM cdp_traits.explain_entity(:'a'))) d;
-- every edge joins two nodes of the graph
SELECT count(*) AS dangling_edges FROM cdp_traits.explain_entity(:'a') e
 WHERE e.linked_to IS NOT NULL
   AND e.linked_to NOT IN (SELECT node FROM cdp_traits.explain_entity(:'a') WHERE kind <> 'link');
-- an identifier node is machine-readable: ["attribute", "value"]
SELECT (substr(node, 12)::jsonb)->>0 AS attribute_id, (substr(node, 12)::jsonb)->>1 AS value
  FROM cdp_traits.explain_entity(:'a') WHERE kind = 'identifier' ORDER BY 1, 2;

-- DOT
SELECT pg_temp.named(cdp_traits.explain_entity(:'b', format => 'dot')) AS dot;
SELECT cdp_traits.explain_entity(:'a', 'DOT') = cdp_traits.explain_entity(:'c', 'dot') AS same_graph;
-- line feeds and carriage returns are escaped, not dropped: distinct strings
-- (event ids of a text column) stay distinct DOT node ids
SELECT cdp_traits._dot_quote(E'event:a\rb') AS cr, cdp_traits._dot_quote(E'event:a\nb') AS lf,
       cdp_traits._dot_quote(E'event:a\\rb') AS backslash_r, cdp_traits._dot_quote('event:ab') AS plain;

-- Another entity: its own small graph, its blocklisted e-mail shown as such.
SELECT kind, pg_temp.named(node) AS node, pg_temp.named(label) AS label, pg_temp.named(linked_to) AS linked_to
  FROM cdp_traits.explain_entity((SELECT id FROM names WHERE name = 'D'));

-- A rule added without restitch(): its identifiers are shown as not stored yet.
SET client_min_messages = warning;
INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, value_expression) VALUES
  ('crm_type', 'crm', $$type$$);
RESET client_min_messages;
SELECT kind, label FROM cdp_traits.explain_entity(:'a') WHERE node LIKE '%crm_type%';
SET client_min_messages = warning;
DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'crm_type';
RESET client_min_messages;

-- Errors: unknown ids, an absorbed id whose entity has gone, a bad format.
\set SHOW_CONTEXT never
SELECT * FROM cdp_traits.explain_entity('00000000-0000-0000-0000-000000000000');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO xp.events VALUES (20, 'web', 'page_view', '1-0-0', '2025-01-02', '{"cookie": "gone1"}');
INSERT INTO xp.events VALUES (21, 'crm', 'signup', '1-0-0', '2025-01-02', '{"email": "gone@example.com"}');
SELECT customer_entity_id AS gone FROM cdp_traits.customer_events WHERE id = 21 \gset
INSERT INTO xp.events VALUES (22, 'web', 'login', '1-0-0', '2025-01-02', '{"cookie": "gone1", "email": "gone@example.com"}');
DELETE FROM xp.events WHERE id IN (20, 21, 22);
SET xp.gone = :'gone';
DO $$
DECLARE st text; msg text; det text; hint text;
BEGIN
  PERFORM cdp_traits.explain_entity(current_setting('xp.gone')::uuid);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  RAISE NOTICE E'%: %\nDETAIL: %\nHINT: %', st, replace(msg, current_setting('xp.gone'), '<gone>'), det, hint;
END $$;
SELECT cdp_traits.explain_entity(NULL::uuid, 'dot');
\echo :LAST_ERROR_SQLSTATE
SELECT cdp_traits.explain_entity(:'a', 'json');
\echo :LAST_ERROR_SQLSTATE

-- A reader may explain (it can read customer_events and matching anyway);
-- a role without the reader's grants may not.
CREATE ROLE regress_xp_reader;
GRANT cdp_traits_reader TO regress_xp_reader;
CREATE ROLE regress_xp_nobody;
SET ROLE regress_xp_reader;
SELECT count(*) AS reader_rows FROM cdp_traits.explain_entity(:'a');
SET ROLE regress_xp_nobody;
SELECT count(*) FROM cdp_traits.explain_entity(:'a');
RESET ROLE;
DROP ROLE regress_xp_reader;
DROP ROLE regress_xp_nobody;

-- Leave the database as the next tests expect it.
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP SCHEMA xp CASCADE;
DROP EXTENSION cdp_traits;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;
