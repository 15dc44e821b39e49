-- bridging_identifiers: the identifiers whose blocklisting would split their
-- entity, with what each would leave.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
CREATE SCHEMA br;
CREATE TABLE br.events (id bigint PRIMARY KEY, source_id text DEFAULT 'web', type text DEFAULT 'x',
                        version text DEFAULT '1-0-0', event_time timestamptz DEFAULT '2025-01-01',
                        payload jsonb);
-- no events table yet
SELECT * FROM cdp_traits.bridging_identifiers();
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$lower(btrim(payload->>'email'))$$),
  ('device', $$jsonb_array_elements_text(payload->'devices')$$),
  ('phone', $$payload->>'phone'$$);
SELECT cdp_traits.attach_events('br.events');
RESET client_min_messages;
-- an attached events table with no events yet has no bridges (this crashed
-- the server: a graph without any link)
SELECT * FROM cdp_traits.bridging_identifiers();

-- Two people: Ann (events 1-3, e-mail ann) and Bob (events 4-5, e-mail bob),
-- glued by a device both used (events 3 and 4).  Event 1 also has Ann's
-- phone, event 2 only her e-mail.  Elsewhere: Cy (6-7) shares a device with
-- himself only, Dee (8) has a single event.
INSERT INTO br.events (id, payload) VALUES
  (1, '{"email": "ann", "phone": "111"}'),
  (2, '{"email": "ann"}'),
  (3, '{"email": "ann", "devices": ["shared"]}'),
  (4, '{"email": "bob", "devices": ["shared"]}'),
  (5, '{"email": "bob"}'),
  (6, '{"devices": ["cy-tab"]}'),
  (7, '{"devices": ["cy-tab", "cy-phone"]}'),
  (8, '{"email": "dee"}');
CREATE TEMP TABLE names AS
  SELECT DISTINCT customer_entity_id AS id,
         CASE WHEN id <= 5 THEN 'ann+bob' WHEN id <= 7 THEN 'cy' ELSE 'dee' END AS name
    FROM cdp_traits.customer_events;
SELECT name, count(*) AS events FROM cdp_traits.customer_events JOIN names ON names.id = customer_entity_id
 GROUP BY name ORDER BY name;

-- The shared device comes first: blocking it gives 2 entities (3 + 2 events),
-- 2 events split off the largest, and each holds an e-mail address of its
-- own (conflicts: email).  Ann's e-mail is a bridge too, an innocent one:
-- blocking it leaves event 1 with her phone, event 2 with no identifier, and
-- event 3 with Bob through the device, and the two parts share no kind of
-- identifier.  Bob's e-mail is not a bridge (event 5 would only be left
-- without identifiers), nor is anything of Cy or Dee.
SELECT n.name, b.attribute_id, b.value, b.conflicts, b.events, b.entity_events, b.entities_after,
       b.largest_after, b.events_split_off, b.unstitched_after
  FROM cdp_traits.bridging_identifiers() b JOIN names n ON n.id = b.customer_entity_id;

-- One entity: by its id, or by any event's; the whole base above is the same
SELECT count(*) AS rows, min(b.value) AS first_value
  FROM cdp_traits.bridging_identifiers((SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 5)) b;
SELECT count(*) AS rows FROM cdp_traits.bridging_identifiers((SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 6));

-- Blocklisting the shared device splits them, as its row said; taking it off
-- the blocklist again joins them.
INSERT INTO cdp_traits.stitching_blocklist (attribute_id, value) VALUES ('device', 'shared');
SELECT cdp_traits.restitch() AS entities;
SELECT count(DISTINCT customer_entity_id) AS ann_and_bob_entities FROM cdp_traits.customer_events WHERE id <= 5;
SELECT count(*) AS bridges_left FROM cdp_traits.bridging_identifiers();
DELETE FROM cdp_traits.stitching_blocklist WHERE value = 'shared';
SELECT cdp_traits.restitch() AS entities;
-- a blocklisted value never counts: 'N/A' as the device of event 9 and 10
-- links nothing, so event 10 is Dee's through her e-mail alone
INSERT INTO br.events (id, payload) VALUES
  (9, '{"email": "eve", "devices": ["N/A"]}'),
  (10, '{"email": "dee", "devices": ["n/a "]}');
SELECT count(*) AS rows_naming_na FROM cdp_traits.bridging_identifiers() WHERE value ILIKE '%n/a%';

-- Merges: a new event links Cy and Dee by Cy's tablet and Dee's e-mail; the
-- absorbed id is followed, and the new event is the only way between them.
INSERT INTO br.events (id, payload) VALUES (11, '{"email": "dee", "devices": ["cy-tab"]}');
SELECT m.merged_id AS absorbed FROM cdp_traits.entity_merges m
 WHERE m.into_id = (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 11) \gset
SELECT b.customer_entity_id = (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 11) AS live_id,
       b.attribute_id, b.value, b.conflicts, b.entity_events, b.entities_after, b.largest_after, b.events_split_off, b.unstitched_after
  FROM cdp_traits.bridging_identifiers(:'absorbed') b;

-- An identifier twice in one event (two devices alike) is one link; so is a
-- value over 64 identifiers of one event (the many-identifier path).
INSERT INTO br.events (id, payload) VALUES
  (20, '{"devices": ["g1", "g1", "g2"]}'),
  (21, '{"devices": ["g2", "g3"]}');
INSERT INTO br.events (id, payload)
  SELECT 22, jsonb_build_object('devices', (SELECT jsonb_agg('h' || g) FROM generate_series(1, 70) g) || '["h5", "g3"]'::jsonb);
INSERT INTO br.events (id, payload) VALUES (23, '{"devices": ["h5", "h5", "h71"]}');
SELECT b.value, b.conflicts, b.events, b.entity_events, b.entities_after, b.largest_after, b.events_split_off, b.unstitched_after
  FROM cdp_traits.bridging_identifiers((SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 20)) b;

-- A part that reaches the bridge through two of its events is still split
-- off by it: blocking p leaves {30} (by s) and {31, 32} (by q).
INSERT INTO br.events (id, payload) VALUES
  (30, '{"phone": "p", "email": "s"}'),
  (31, '{"phone": "p", "email": "q"}'),
  (32, '{"phone": "p", "email": "q"}');
-- (the whole base's search reaches p from 30, the entity's from any event)
SELECT b.attribute_id, b.value, b.conflicts, b.events, b.entity_events, b.entities_after, b.largest_after, b.events_split_off, b.unstitched_after
  FROM cdp_traits.bridging_identifiers() b WHERE b.value IN ('p', 'q', 's');
SELECT b.attribute_id, b.value, b.conflicts, b.events, b.entity_events, b.entities_after, b.largest_after, b.events_split_off, b.unstitched_after
  FROM cdp_traits.bridging_identifiers((SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 30)) b;

-- Errors: an unknown id, NULL is the whole base, an id whose entity is gone
SELECT * FROM cdp_traits.bridging_identifiers('00000000-0000-0000-0000-000000000001');
SELECT count(*) > 0 AS whole_base FROM cdp_traits.bridging_identifiers(NULL);
DELETE FROM br.events WHERE id IN (6, 7, 8, 10, 11);
CREATE TEMP TABLE gone AS SELECT :'absorbed'::uuid AS id;
DO $$
BEGIN
  PERFORM cdp_traits.bridging_identifiers((SELECT id FROM gone));
EXCEPTION WHEN undefined_object THEN
  RAISE NOTICE '%: %', SQLSTATE, regexp_replace(SQLERRM, '[0-9a-f-]{36}', '<absorbed id>');
END $$;

-- an entity none of whose events carries an identifier under the current
-- rules (its only value blocklisted since it was stitched) has none either
INSERT INTO br.events (id, payload) VALUES (40, '{"email": "zed"}');
SET client_min_messages = warning;
INSERT INTO cdp_traits.stitching_blocklist (attribute_id, value) VALUES ('email', 'zed');
SELECT count(*) AS entity_of_40 FROM cdp_traits.customer_events WHERE id = 40 AND customer_entity_id IS NOT NULL;
SELECT * FROM cdp_traits.bridging_identifiers((SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 40));
DELETE FROM cdp_traits.stitching_blocklist WHERE value = 'zed';
RESET client_min_messages;
DELETE FROM br.events WHERE id = 40;

-- the rows of bridging_identifiers() and of the oracle that the other lacks
-- (none expected either way), and the rows of the whole base and of each
-- entity alone that the other lacks (as a count)
CREATE FUNCTION pg_temp.oracle_differs()
RETURNS TABLE(ent uuid, attr text, val text, conflicts text[], entity_events bigint,
              entities_after int, largest_after bigint, unstitched_after bigint)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  (SELECT b.customer_entity_id, b.attribute_id, b.value, b.conflicts, b.entity_events, b.entities_after,
          b.largest_after, b.unstitched_after
     FROM cdp_traits.bridging_identifiers() b
   EXCEPT
   SELECT o.ent, o.attr, o.val, o.conflicts, o.entity_events, o.entities_after, o.largest_after, o.unstitched_after
     FROM oracle o WHERE o.entities_after >= 2)
  UNION ALL
  (SELECT o.ent, o.attr, o.val, o.conflicts, o.entity_events, o.entities_after, o.largest_after, o.unstitched_after
     FROM oracle o WHERE o.entities_after >= 2
   EXCEPT
   SELECT b.customer_entity_id, b.attribute_id, b.value, b.conflicts, b.entity_events, b.entities_after,
          b.largest_after, b.unstitched_after
     FROM cdp_traits.bridging_identifiers() b);
END $$;
CREATE FUNCTION pg_temp.scopes_differ() RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN (SELECT count(*) FROM (
    (SELECT * FROM cdp_traits.bridging_identifiers()
     EXCEPT
     SELECT b.* FROM (SELECT DISTINCT ee.ent FROM ev_entity ee WHERE ee.ent IS NOT NULL) e,
            LATERAL cdp_traits.bridging_identifiers(e.ent) b)
    UNION ALL
    (SELECT b.* FROM (SELECT DISTINCT ee.ent FROM ev_entity ee WHERE ee.ent IS NOT NULL) e,
            LATERAL cdp_traits.bridging_identifiers(e.ent) b
     EXCEPT
     SELECT * FROM cdp_traits.bridging_identifiers())) d);
END $$;
-- for each identifier x: the events of its entity united (union-find, in
-- PL/pgSQL) by every identifier but x, then its parts counted
CREATE FUNCTION pg_temp.split_without(x_attr text, x_val text, x_ent uuid,
    OUT entity_events bigint, OUT entities_after int, OUT largest_after bigint, OUT unstitched_after bigint,
    OUT conflicts text[])
LANGUAGE plpgsql AS $$
DECLARE
  parent int[] := '{}';
  l record;
  prev_ev int;
  prev_key text := NULL;
  a int; b int;
BEGIN
  FOR l IN SELECT ee.ev FROM ev_entity ee WHERE ee.ent = x_ent LOOP
    parent[l.ev] := l.ev;
  END LOOP;
  FOR l IN SELECT k.ev, k.attr || chr(1) || k.val AS key FROM links k JOIN ev_entity ee ON ee.ev = k.ev
            WHERE ee.ent = x_ent AND (k.attr, k.val) <> (x_attr, x_val) ORDER BY 2, 1 LOOP
    IF l.key = prev_key THEN
      a := prev_ev; WHILE parent[a] <> a LOOP a := parent[a]; END LOOP;
      b := l.ev; WHILE parent[b] <> b LOOP b := parent[b]; END LOOP;
      IF a <> b THEN parent[greatest(a, b)] := least(a, b); END IF;
    END IF;
    prev_key := l.key; prev_ev := l.ev;
  END LOOP;
  WITH q AS (
    SELECT ee.ev,
           (WITH RECURSIVE up(v) AS (SELECT ee.ev UNION ALL SELECT parent[up.v] FROM up WHERE parent[up.v] <> up.v)
            SELECT min(v) FROM up) AS root,
           EXISTS (SELECT FROM links k WHERE k.ev = ee.ev AND (k.attr, k.val) <> (x_attr, x_val)) AS linked
      FROM ev_entity ee WHERE ee.ent = x_ent),
  r AS (SELECT q.*, count(*) OVER (PARTITION BY q.root) AS n FROM q)
  SELECT count(*), count(DISTINCT r.root) FILTER (WHERE r.linked),
         max(r.n) FILTER (WHERE r.linked), count(*) FILTER (WHERE NOT r.linked),
         (SELECT coalesce(array_agg(c.attr ORDER BY c.attr COLLATE "C"), '{}')
            FROM (SELECT k.attr FROM links k JOIN q ON q.ev = k.ev
                   WHERE (k.attr, k.val) <> (x_attr, x_val)
                   GROUP BY k.attr HAVING count(DISTINCT q.root) >= 2) c)
    INTO entity_events, entities_after, largest_after, unstitched_after, conflicts
    FROM r;
END $$;
-- the links the rules give (computed here in plain SQL), each event's
-- stored entity, and for each identifier what removing it leaves
CREATE FUNCTION pg_temp.build_oracle() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass('pg_temp.oracle') IS NOT NULL THEN
    DROP TABLE links, ev_entity, oracle;
  END IF;
  CREATE TEMP TABLE links AS
    SELECT DISTINCT e.id AS ev, i.attr, i.val
      FROM br.events e,
           LATERAL (SELECT 'email', lower(btrim(e.payload->>'email'))
                    UNION ALL SELECT 'device', jsonb_array_elements_text(e.payload->'devices')
                    UNION ALL SELECT 'phone', e.payload->>'phone') i(attr, val)
     WHERE i.val IS NOT NULL;
  CREATE TEMP TABLE ev_entity AS SELECT id AS ev, customer_entity_id AS ent FROM cdp_traits.customer_events;
  CREATE TEMP TABLE oracle AS
    SELECT x.attr, x.val, x.ent, (pg_temp.split_without(x.attr, x.val, x.ent)).*
      FROM (SELECT DISTINCT l.attr, l.val, ee.ent FROM links l JOIN ev_entity ee ON ee.ev = l.ev) x;
END $$;

-- Randomized: on generated events (e-mails and devices drawn from small
-- pools, so that entities of many shapes form), every row agrees with a
-- brute-force computation in SQL that removes each identifier in turn and
-- labels what is left, and no identifier it finds splitting is missing.
TRUNCATE br.events;
SELECT setseed(0.42);
INSERT INTO br.events (id, payload)
  SELECT g, jsonb_strip_nulls(jsonb_build_object(
           'email', CASE WHEN random() < 0.6 THEN 'e' || (random() * 110)::int END,
           'devices', (SELECT jsonb_agg('d' || (random() * 150)::int) FROM generate_series(1, (random() * 2.2)::int) k WHERE g > 0),
           'phone', CASE WHEN random() < 0.2 THEN 'p' || (random() * 60)::int END))
    FROM generate_series(1, 300) g;
SELECT pg_temp.build_oracle();
SELECT count(DISTINCT ent) AS entities, max(n) AS largest
  FROM (SELECT ent, count(*) OVER (PARTITION BY ent) AS n FROM ev_entity WHERE ent IS NOT NULL) s;
SELECT count(*) AS identifiers, count(*) FILTER (WHERE entities_after >= 2) AS splitting,
       count(*) FILTER (WHERE entities_after >= 2 AND conflicts <> '{}') AS with_conflicts,
       count(*) FILTER (WHERE entities_after >= 2 AND cardinality(conflicts) > 1) AS with_several
  FROM oracle;
SELECT count(*) AS rows, count(DISTINCT customer_entity_id) AS entities FROM cdp_traits.bridging_identifiers();
-- rows of one and not the other (none expected either way)
SELECT * FROM pg_temp.oracle_differs();
-- events: how many carry it; events_split_off: what leaves the largest part
SELECT count(*) AS wrong_counts
  FROM cdp_traits.bridging_identifiers() b
 WHERE b.events <> (SELECT count(*) FROM links l WHERE (l.attr, l.val) = (b.attribute_id, b.value))
    OR b.events_split_off <> b.entity_events - b.largest_after - b.unstitched_after;
-- the whole base and each entity alone give the same rows
SELECT pg_temp.scopes_differ() AS differ;
-- ordered by the kinds in conflict, then events split off, then entities after
SELECT bool_and(ok) AS ordered FROM (
  SELECT (lag(k) OVER w > k
          OR (lag(k) OVER w = k AND lag(events_split_off) OVER w > events_split_off)
          OR (lag(k) OVER w = k AND lag(events_split_off) OVER w = events_split_off
              AND lag(entities_after) OVER w >= entities_after)
          OR lag(k) OVER w IS NULL) AS ok
    FROM (SELECT *, cardinality(conflicts) AS k, row_number() OVER () AS rn
            FROM cdp_traits.bridging_identifiers()) b
  WINDOW w AS (ORDER BY rn)) s;

-- The same comparison on denser shapes the draw above seldom makes: few
-- values, so more cycles and larger entities; one event with 72 devices (two
-- of them the same) at the head of the table, so that the search starts
-- from it; and a chain of 30 events, each sharing a device with the next.
TRUNCATE br.events;
SELECT setseed(0.7);
INSERT INTO br.events (id, payload)
  SELECT 1000, jsonb_build_object('devices', (SELECT jsonb_agg('d' || g) FROM generate_series(1, 70) g) || '["d5", "d5"]'::jsonb);
INSERT INTO br.events (id, payload)
  SELECT g, jsonb_strip_nulls(jsonb_build_object(
           'email', CASE WHEN random() < 0.3 THEN 'e' || (random() * 120)::int END,
           'devices', (SELECT jsonb_agg('d' || (random() * 150)::int) FROM generate_series(1, (random() * 2.6)::int) k WHERE g > 0),
           'phone', CASE WHEN random() < 0.1 THEN 'p' || (random() * 60)::int END))
    FROM generate_series(1, 150) g;
INSERT INTO br.events (id, payload)
  SELECT 2000 + g, jsonb_build_object('devices', jsonb_build_array('c' || g, 'c' || (g + 1)), 'email', 'ce' || g)
    FROM generate_series(1, 30) g;
SELECT pg_temp.build_oracle();
SELECT count(*) AS identifiers, count(*) FILTER (WHERE entities_after >= 2) AS splitting,
       count(*) FILTER (WHERE entities_after >= 2 AND conflicts <> '{}') AS with_conflicts,
       max(entity_events) AS largest_entity
  FROM oracle;
SELECT * FROM pg_temp.oracle_differs();
SELECT pg_temp.scopes_differ() AS differ;

-- a reader may call it, a role without the reader's rights may not
CREATE ROLE br_reader IN ROLE cdp_traits_reader;
CREATE ROLE br_nobody;
SET ROLE br_reader;
SELECT count(*) > 0 AS reader_sees FROM cdp_traits.bridging_identifiers();
SET ROLE br_nobody;
SELECT count(*) FROM cdp_traits.bridging_identifiers();
RESET ROLE;
DROP ROLE br_reader;
DROP ROLE br_nobody;

-- Over 64 kinds of identifier: a shared device joining three events that
-- each hold their own values of 70 other kinds (k1 .. k70, k70 on all
-- three): the device splits them into three, and all 70 kinds conflict.
SET client_min_messages = warning;
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
  SELECT 'k' || g, format($$payload->>'k%s'$$, g) FROM generate_series(1, 70) g;
RESET client_min_messages;
INSERT INTO br.events (id, payload)
  SELECT 500 + e, (SELECT jsonb_object_agg('k' || g, 'v' || e || '-' || g) FROM generate_series(1, 70) g
                    WHERE e < 3 OR g = 70) || '{"devices": ["hub"]}'
    FROM generate_series(1, 3) e;
SELECT b.attribute_id, b.value, cardinality(b.conflicts) AS kinds, b.conflicts[1:3] AS first_kinds,
       b.conflicts[68:70] AS last_kinds, b.events, b.entity_events, b.entities_after, b.largest_after,
       b.events_split_off, b.unstitched_after
  FROM cdp_traits.bridging_identifiers((SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 501)) b;

-- no rules at all: no identifiers, no bridges
SET client_min_messages = warning;
DELETE FROM cdp_traits.stitching_rules;
RESET client_min_messages;
SELECT * FROM cdp_traits.bridging_identifiers();
