-- Audience enter/exit in the toggle log (SPEC sections 4 and 6): the log
-- holds real membership changes only, so per (audience, entity) it
-- alternates enter, exit, enter, ... and its last entry says whether the
-- entity holds the audience now.  Whatever takes an audience's values away
-- (deleting, renaming or retyping it, truncating attributes, a merge, an
-- entity's last event deleted) logs the exits in the same transaction.
\set SHOW_CONTEXT never
-- a fresh extension: no state from earlier tests
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
CREATE TABLE aud_ev (id bigint PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                 version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$), ('user', $$payload->>'user'$$);
SELECT cdp_traits.attach_events('aud_ev');
-- (one by one: a@x's entity is the oldest, and survives the merge below)
INSERT INTO aud_ev VALUES (1, 'web', 'buy', '1', '2021-01-01', '{"email": "a@x", "amount": 50}');
INSERT INTO aud_ev VALUES (2, 'web', 'buy', '1', '2021-01-02', '{"email": "b@x", "amount": 500}');
INSERT INTO aud_ev VALUES (3, 'web', 'buy', '1', '2021-01-03', '{"email": "c@x", "amount": 15}');

-- who: the entity of an e-mail address
CREATE FUNCTION pg_temp.who(email text) RETURNS uuid LANGUAGE sql
AS $$ SELECT customer_entity_id FROM cdp_traits.matching WHERE attribute_id = 'email' AND value = email $$;
-- the log of audience changes since a seq, with entities named by their
-- e-mail addresses, by transaction (within one in a stable order)
CREATE FUNCTION pg_temp.log_since(after bigint)
RETURNS TABLE (audience text, who text, entered boolean) LANGUAGE sql
AS $$
	SELECT c.audience_id, w.who, c.entered
	  FROM cdp_traits.audience_changes c
	 CROSS JOIN LATERAL (
		SELECT COALESCE(string_agg(m.value, ',' ORDER BY m.value), '(gone)') AS who
		  FROM cdp_traits.matching m
		 WHERE m.attribute_id = 'email' AND m.customer_entity_id = c.customer_entity_id) w
	 WHERE c.seq > after ORDER BY c.changed_at, c.audience_id, w.who, c.seq
$$;
-- every way the log can be wrong: an enter after an enter, an exit after an
-- exit or first, a member whose last logged change is not an enter, a logged
-- member that is not one (no rows: consistent)
CREATE FUNCTION pg_temp.log_problems() RETURNS TABLE (audience text, problem text) LANGUAGE sql
AS $$
	WITH t AS (
		SELECT segment, user_id, member, seq,
		       lag(member) OVER (PARTITION BY segment, user_id ORDER BY seq) AS prev
		  FROM cdp_traits.segment_toggles WHERE vendor = 0
	), last AS (
		SELECT DISTINCT ON (segment, user_id) segment, user_id, member
		  FROM t ORDER BY segment, user_id, seq DESC
	), cur AS (
		SELECT a.id AS segment, ea.customer_entity_id::text AS user_id
		  FROM cdp_traits.entity_attributes ea
		  JOIN cdp_traits.attributes a ON a.definition->>'type' = 'audience' AND ea.vals -> a.id = 'true'
	)
	SELECT segment, CASE WHEN member THEN 'enter after enter' ELSE 'exit without enter' END
	  FROM t WHERE member IS NOT DISTINCT FROM prev OR (prev IS NULL AND NOT member)
	UNION ALL
	SELECT segment, 'member without enter' FROM cur
	 WHERE NOT EXISTS (SELECT FROM last l WHERE l.segment = cur.segment AND l.user_id = cur.user_id AND l.member)
	UNION ALL
	SELECT segment, 'logged member not a member' FROM last l
	 WHERE l.member AND NOT EXISTS (SELECT FROM cur WHERE cur.segment = l.segment AND cur.user_id = l.user_id)
$$;

INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('rev', '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'),
  ('big', '{"type": "audience", "condition": "rev > 10", "history": true}'),
  ('vip', '{"type": "audience", "condition": "rev > 100"}');
SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.log_since(0);
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset

-- 1. Deleting an audience logs an exit for each member at once; created
-- again with the same condition, its members enter again (not twice in a row).
DELETE FROM cdp_traits.attributes WHERE id = 'big';
SELECT * FROM pg_temp.log_since(:s);
SELECT count(*) AS open_big_history FROM cdp_traits.attribute_history
 WHERE attribute_id = 'big' AND valid_to IS NULL;
SELECT cdp_traits.calculate_attributes();
INSERT INTO cdp_traits.attributes VALUES ('big', '{"type": "audience", "condition": "rev > 10"}');
SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.log_since(:s);
SELECT * FROM pg_temp.log_problems();
-- rolled back, a deletion logs nothing
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
BEGIN;
DELETE FROM cdp_traits.attributes WHERE id = 'vip';
SELECT count(*) AS exits_in_transaction FROM pg_temp.log_since(:s);
ROLLBACK;
SELECT count(*) AS after_rollback FROM pg_temp.log_since(:s);

-- 2. Renaming an audience: its members exit the old id and enter the new one.
UPDATE cdp_traits.attributes SET id = 'top' WHERE id = 'vip';
SELECT * FROM pg_temp.log_since(:s);
SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.log_since(:s);
SELECT * FROM pg_temp.log_problems();

-- 3. An audience that becomes another type: its members exit at once, and
-- the pivot shows the new type (no stale true in a numeric column).
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
UPDATE cdp_traits.attributes SET definition = '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'
 WHERE id = 'big';
SELECT * FROM pg_temp.log_since(:s);
SELECT big, top FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT cdp_traits.calculate_attributes();
SELECT big, top FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT * FROM pg_temp.log_problems();

-- 4. An attribute that becomes an audience: only its members enter; c@x,
-- which held a number, does not "exit".
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
UPDATE cdp_traits.attributes SET definition = '{"type": "audience", "condition": "rev > 20"}'
 WHERE id = 'big';
SELECT big FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.log_since(:s);
SELECT * FROM pg_temp.log_problems();

-- 5. A merge: the absorbed entity's memberships exit; its events now count
-- for the survivor, which enters what it newly qualifies for.
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
INSERT INTO aud_ev VALUES (4, 'crm', 'link', '1', '2021-02-01', '{"email": "b@x", "user": "u1"}'),
                      (5, 'crm', 'link', '1', '2021-02-02', '{"email": "a@x", "user": "u1"}');
SELECT * FROM pg_temp.log_since(:s);
SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.log_since(:s);
SELECT * FROM pg_temp.log_problems();

-- 6. An entity's last events deleted: it goes, its memberships exit.
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
DELETE FROM aud_ev WHERE id IN (1, 2, 4, 5);
SELECT * FROM pg_temp.log_since(:s);
SELECT cdp_traits.calculate_attributes();
SELECT * FROM pg_temp.log_problems();

-- 7. Truncating the definitions: every member exits.
INSERT INTO aud_ev VALUES (6, 'web', 'buy', '1', '2021-03-01', '{"email": "d@x", "amount": 900}');
SELECT cdp_traits.calculate_attributes();
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
TRUNCATE cdp_traits.attributes;
SELECT * FROM pg_temp.log_since(:s);
SELECT count(*) AS values_left FROM cdp_traits.entity_attributes;
SELECT * FROM pg_temp.log_problems();

-- 8. An id that goes and is taken again in the same statement (deleted and
-- inserted again, or two ids swapped) is another attribute: the values of
-- the one that went go (members exit), as over two statements; an audience
-- now does not hold the numbers of a sum, nor fail the pivot with them.
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('rev', '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'),
  ('n', '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'),
  ('m', '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'),
  ('vip', '{"type": "audience", "condition": "rev > 100"}');
SELECT cdp_traits.calculate_attributes();
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
WITH d AS (DELETE FROM cdp_traits.attributes WHERE id = 'n' RETURNING id)
INSERT INTO cdp_traits.attributes SELECT d.id, '{"type": "audience", "condition": "rev > 10"}' FROM d;
SELECT rev, n, vip FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT attribute_id, customers FROM cdp_traits.attribute_counts ORDER BY attribute_id;
SELECT cdp_traits.calculate_attributes();
SELECT rev, n, vip FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT * FROM pg_temp.log_since(:s);
-- the sum m renamed k and the audience vip renamed m in one statement:
-- vip's members exit, m holds none of the sum's numbers, k none at all
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
WITH r AS (UPDATE cdp_traits.attributes SET id = 'k' WHERE id = 'm' RETURNING id)
UPDATE cdp_traits.attributes SET id = 'm' WHERE id = 'vip' AND EXISTS (SELECT FROM r);
SELECT rev, k, m FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT * FROM pg_temp.log_since(:s);
SELECT cdp_traits.calculate_attributes();
SELECT rev, k, m FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT * FROM pg_temp.log_since(:s);
SELECT * FROM pg_temp.log_problems();

-- 9. A definition that reads context (an audience over a threshold kept in
-- context, a sum scaled by a context figure) is calculated for every entity
-- by the first run after a value it reads changes, not only for the dirty
-- ones (no entity is dirty here); a change of another key costs nothing.
TRUNCATE cdp_traits.attributes;
INSERT INTO cdp_traits.context (key, value) VALUES ('big', '100'), ('rate', '2'), ('other', 'x');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('rev', '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'),
  ('scaled', '{"type": "sum", "value": "(payload->>''amount'')::numeric * cdp_traits.context_value(''rate'')::numeric"}'),
  ('big', '{"type": "audience", "condition": "rev > context_value( ''big'' )::numeric"}'),
  ('any_ctx', '{"type": "audience", "condition": "rev > context_value(''b'' || ''ig'')::numeric"}');
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT max(seq) AS s FROM cdp_traits.segment_toggles \gset
SELECT rev, scaled, big, any_ctx FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
UPDATE cdp_traits.context SET value = '1000' WHERE key = 'big';
UPDATE cdp_traits.context SET value = '3' WHERE key = 'rate';
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT rev, scaled, big, any_ctx FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT * FROM pg_temp.log_since(:s);
SELECT attribute_id, scope FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) ORDER BY 1;
-- another key: only any_ctx (its key is not a literal) reads every key
UPDATE cdp_traits.context SET value = 'y' WHERE key = 'other';
SELECT cdp_traits.calculate_attributes() AS calculated;
SELECT attribute_id, scope FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) ORDER BY 1;
-- nothing changed: nothing is calculated for every entity
SELECT cdp_traits.calculate_attributes() AS calculated;
SELECT attribute_id, scope FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) ORDER BY 1;
SELECT * FROM pg_temp.log_problems();
DELETE FROM cdp_traits.context WHERE key IN ('big', 'rate', 'other');
-- keys named by literals are found in the SQL the definition holds, not in
-- its JSON text: a key with a double quote, a backslash or a tab (spelled
-- otherwise in JSON: its changes were missed and the values stayed stale),
-- a call over two lines and one with a cast name their key only (another
-- key's change does not recalculate them); a definition that reads the
-- context table itself reads every key
TRUNCATE cdp_traits.attributes;
INSERT INTO cdp_traits.context (key, value) VALUES
  ('q"k', '1'), (E'b\\k', '1'), (E't\tk', '1'), ('nl', '1'), ('cast', '1'), ('other', 'x');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('rev', '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'),
  ('by_quote', jsonb_build_object('type', 'audience', 'condition', $$rev > context_value('q"k')::numeric$$)),
  ('by_backslash', jsonb_build_object('type', 'audience', 'condition', $$rev > context_value('b\k')::numeric$$)),
  ('by_tab', jsonb_build_object('type', 'audience', 'condition', E'rev > context_value(''t\tk'')::numeric')),
  ('by_lines', jsonb_build_object('type', 'audience', 'condition', E'rev > context_value(\n  ''nl''\n)::numeric')),
  ('by_cast', jsonb_build_object('type', 'audience', 'condition', $$rev > context_value('cast'::text)::numeric$$)),
  ('by_table', jsonb_build_object('type', 'custom', 'data_type', 'number', 'query',
     $$SELECT sum((payload->>'amount')::numeric) * (SELECT c.value::numeric FROM cdp_traits.context c WHERE c.key = 'cast') AS value FROM base$$));
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT rev, by_quote, by_backslash, by_tab, by_lines, by_cast, by_table FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
UPDATE cdp_traits.context SET value = '1000' WHERE key <> 'other';
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT rev, by_quote, by_backslash, by_tab, by_lines, by_cast, by_table FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT attribute_id, scope FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) ORDER BY 1;
UPDATE cdp_traits.context SET value = 'y' WHERE key = 'other';
SELECT cdp_traits.calculate_attributes() AS calculated;
SELECT attribute_id, scope FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) ORDER BY 1;
SELECT * FROM pg_temp.log_problems();
DELETE FROM cdp_traits.context WHERE key IN ('q"k', E'b\\k', E't\tk', 'nl', 'cast', 'other');
-- audiences that do not depend on each other are written together: the
-- first run of six new audiences and one over two of them writes each
-- entity's values once per level of dependency, not once per audience it
-- joins: 5 writes of the 2 entities (2 of by_table, whose values went with
-- the context key it read, 2 for the first level, 1 for the second), 9
-- before (the first run of 61 audiences over 10k entities took 90 s, 83 of
-- them writing)
INSERT INTO cdp_traits.attributes (id, definition)
SELECT format('level1_%s', i), jsonb_build_object('type', 'audience', 'condition', format('rev > %s', i * 200))
  FROM generate_series(0, 5) i;
INSERT INTO cdp_traits.attributes VALUES
  ('level2', '{"type": "audience", "condition": "level1_0 AND NOT level1_4"}');
-- And each level's audiences are computed in one statement, which reads
-- the entities' values once (reads of them in the run: 5, against 10 when each audience read them)
CREATE FUNCTION pg_temp.writes() RETURNS bigint LANGUAGE sql
AS $$ SELECT pg_stat_get_xact_tuples_inserted('cdp_traits.entity_attributes'::regclass)
           + pg_stat_get_xact_tuples_updated('cdp_traits.entity_attributes'::regclass) $$;
CREATE FUNCTION pg_temp.reads() RETURNS bigint LANGUAGE sql
AS $$ SELECT pg_stat_get_xact_numscans('cdp_traits.entity_attributes'::regclass) $$;
BEGIN;
SELECT pg_temp.writes() AS writes_before, pg_temp.reads() AS reads_before \gset
SELECT cdp_traits.calculate_attributes() > 0 AS calculated;
SELECT pg_temp.writes() - :writes_before AS writes, pg_temp.reads() - :reads_before AS reads,
       (SELECT count(*) FROM cdp_traits.entity_attributes) AS entities;
COMMIT;
SELECT rev, level1_0, level1_1, level1_2, level1_3, level1_4, level1_5, level2
  FROM cdp_traits.pivoted_customer_attributes ORDER BY rev;
SELECT t.segment, p.rev, t.member
  FROM cdp_traits.segment_toggles t
  JOIN cdp_traits.pivoted_customer_attributes p ON p.customer_entity_id::text = t.user_id
 WHERE t.segment LIKE 'level%' ORDER BY 1, 2, 3;
SELECT attribute_id, scope, values_written FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) ORDER BY 1;
DELETE FROM cdp_traits.attributes WHERE id LIKE 'level%';
SELECT * FROM pg_temp.log_problems();
SELECT cdp_traits.detach_events();
DROP TABLE aud_ev CASCADE;
