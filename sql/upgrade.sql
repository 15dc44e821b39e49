-- Upgrades: every update path (pg_extension_update_paths) gives the same objects
-- as a fresh install of its target version, and data written under 0.1.0 survives
-- ALTER EXTENSION cdp_traits UPDATE.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
RESET client_min_messages;

-- A census of everything the extension owns or configures: one row per object,
-- with what matters about it (definitions, ACLs, comments, pg_dump marks).
CREATE FUNCTION pg_temp.census() RETURNS TABLE(what text, name text, detail text)
LANGUAGE sql AS $$
  SELECT 'schema', n.nspname::text, concat_ws(' | ', n.nspacl::text, obj_description(n.oid, 'pg_namespace'))
    FROM pg_namespace n WHERE n.nspname = 'cdp_traits'
  UNION ALL
  SELECT 'extension', e.extname::text, concat_ws(' | ', e.extrelocatable, e.extnamespace::regnamespace::text)
    FROM pg_extension e WHERE e.extname = 'cdp_traits'
  UNION ALL
  SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
    FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
   WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'cdp_traits'
  UNION ALL
  SELECT 'pg_dump mark', u.rel::regclass::text, u.cond
    FROM pg_extension e, unnest(e.extconfig, e.extcondition) u(rel, cond) WHERE e.extname = 'cdp_traits'
  UNION ALL
  SELECT 'function', p.oid::regprocedure::text,
         concat_ws(' | ', p.prokind, pg_get_function_result(p.oid), pg_get_function_arguments(p.oid),
                   p.provolatile, p.proisstrict, p.prosecdef, p.proparallel, p.proconfig::text,
                   p.proacl::text, l.lanname, md5(p.prosrc), p.probin, obj_description(p.oid, 'pg_proc'))
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
   WHERE p.pronamespace = 'cdp_traits'::regnamespace
  UNION ALL
  SELECT 'aggregate', a.aggfnoid::regprocedure::text,
         concat_ws(' | ', a.aggkind, a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                   a.aggdeserialfn, a.aggtranstype::regtype, a.agginitval, a.aggfinalmodify)
    FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
   WHERE p.pronamespace = 'cdp_traits'::regnamespace
  UNION ALL
  SELECT 'relation', c.relname::text,
         concat_ws(' | ', c.relkind, c.relpersistence, c.reloptions::text, c.relacl::text,
                   obj_description(c.oid, 'pg_class'),
                   CASE WHEN c.relkind IN ('v', 'm') THEN md5(pg_get_viewdef(c.oid)) END,
                   CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END)
    FROM pg_class c WHERE c.relnamespace = 'cdp_traits'::regnamespace
  UNION ALL
  SELECT 'column', c.relname || '.' || a.attname,
         concat_ws(' | ', row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                   format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attcollation::regcollation,
                   pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated, a.attacl::text,
                   a.attstattarget,
                   col_description(c.oid, a.attnum))
    FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
   WHERE c.relnamespace = 'cdp_traits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  UNION ALL
  SELECT 'constraint', co.conrelid::regclass::text || ' ' || co.conname, pg_get_constraintdef(co.oid)
    FROM pg_constraint co WHERE co.connamespace = 'cdp_traits'::regnamespace
  UNION ALL
  SELECT 'trigger', t.tgrelid::regclass::text || ' ' || t.tgname, pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
   WHERE NOT t.tgisinternal AND (c.relnamespace = 'cdp_traits'::regnamespace
         OR t.tgfoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'cdp_traits'::regnamespace))
  UNION ALL
  SELECT 'event trigger', t.evtname::text,
         concat_ws(' | ', t.evtevent, t.evtfoid::regproc, t.evtenabled, t.evttags::text)
    FROM pg_event_trigger t
  UNION ALL
  SELECT 'type', t.typname::text,
         concat_ws(' | ', t.typtype, t.typlen, t.typinput::regproc, t.typoutput::regproc,
                   t.typreceive::regproc, t.typsend::regproc, t.typalign, t.typstorage, t.typacl::text)
    FROM pg_type t WHERE t.typnamespace = 'cdp_traits'::regnamespace
  UNION ALL
  SELECT 'sequence', s.seqrelid::regclass::text,
         concat_ws(' | ', s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
   WHERE c.relnamespace = 'cdp_traits'::regnamespace
  UNION ALL
  -- the privileges pg_dump takes as given (those of the published views
  -- included: a GRANT dumped on one fails a schema-only restore)
  SELECT 'initial privileges', pg_describe_object(i.classoid, i.objoid, i.objsubid),
         concat_ws(' | ', i.privtype, i.initprivs::text)
    FROM pg_init_privs i
    JOIN pg_depend d ON d.classid = i.classoid AND d.objid = i.objoid AND d.objsubid = 0 AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'cdp_traits'
  UNION ALL
  SELECT 'role', r.rolname::text, concat_ws(' | ', r.rolcanlogin, r.rolsuper,
         (SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY 1) FROM pg_auth_members m WHERE m.member = r.oid))
    FROM pg_roles r WHERE r.rolname LIKE 'cdp\_traits\_%'
$$;

-- The versions shipped, and the update paths between them.
SELECT name, version, installed, superuser, relocatable, schema, requires
  FROM pg_available_extension_versions WHERE name = 'cdp_traits' ORDER BY version;
SELECT source, target, path FROM pg_extension_update_paths('cdp_traits')
 WHERE path IS NOT NULL ORDER BY source, target;

-- Walk every path: install the source version, update to the target, take the
-- census; install the target fresh, take the census; they must be equal.
CREATE TEMP TABLE census_diff (source text, target text, side text, what text, name text, detail text);
CREATE TEMP TABLE walked (source text, target text, objects bigint, extversion text);
DO $walk$
DECLARE
	p record;
	v text;
BEGIN
	SET LOCAL client_min_messages = warning;
	FOR p IN SELECT source, target FROM pg_extension_update_paths('cdp_traits')
			  WHERE path IS NOT NULL ORDER BY source, target LOOP
		DROP EXTENSION IF EXISTS cdp_traits CASCADE;
		EXECUTE format('CREATE EXTENSION cdp_traits VERSION %L', p.source);
		EXECUTE format('ALTER EXTENSION cdp_traits UPDATE TO %L', p.target);
		SELECT extversion INTO v FROM pg_extension WHERE extname = 'cdp_traits';
		CREATE TEMP TABLE updated AS SELECT * FROM pg_temp.census();
		DROP EXTENSION cdp_traits CASCADE;
		EXECUTE format('CREATE EXTENSION cdp_traits VERSION %L', p.target);
		CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.census();
		INSERT INTO census_diff
			SELECT p.source, p.target, 'only after update', * FROM (TABLE updated EXCEPT TABLE fresh) d
			UNION ALL
			SELECT p.source, p.target, 'only in fresh install', * FROM (TABLE fresh EXCEPT TABLE updated) d;
		INSERT INTO walked SELECT p.source, p.target, (SELECT count(*) FROM updated), v;
		DROP TABLE updated, fresh;
	END LOOP;
	DROP EXTENSION IF EXISTS cdp_traits CASCADE;
END;
$walk$;
SELECT source, target, extversion, objects > 300 AS census_not_empty FROM walked ORDER BY 1, 2;
SELECT * FROM census_diff ORDER BY source, target, what, name, side;

-- Data written under 0.1.0 survives the update, and stitching goes on.
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits VERSION '0.1.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'cdp_traits';
SELECT count(*) AS explain_in_0_1_0 FROM pg_proc WHERE proname = 'explain_entity';

-- This library serves a database still at 0.1.0, which has no stored
-- aggregate states: a TRUNCATE of the events table empties its stitching.
CREATE TABLE up_scratch (id text PRIMARY KEY, source_id text, type text, version text,
						 event_time timestamptz, payload jsonb);
SET client_min_messages = warning;
SELECT cdp_traits.attach_events('up_scratch');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('scratch', $r$payload->>'k'$r$);
RESET client_min_messages;
INSERT INTO up_scratch VALUES ('s1', 'web', 'view', '1', '2025-01-01', '{"k": "x"}'),
	('s2', 'web', 'view', '1', '2025-01-02', '{"k": "x"}');
SELECT count(*) AS scratch_entities FROM cdp_traits.customer_entities;
TRUNCATE up_scratch;
SELECT (SELECT count(*) FROM cdp_traits.customer_entities) AS entities_left,
	   (SELECT count(*) FROM cdp_traits.event_entities) AS assignments_left;
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
RESET client_min_messages;
DELETE FROM cdp_traits.stitching_rules;

-- The same setup under either version.
CREATE FUNCTION pg_temp.setup() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	SET LOCAL client_min_messages = warning;
	CREATE TABLE up_events (id text PRIMARY KEY, source_id text, type text, version text,
							event_time timestamptz, payload jsonb);
	INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
		('email', $r$lower(payload->>'email')$r$), ('cookie', $r$payload->>'cookie'$r$);
	INSERT INTO cdp_traits.stitching_blocklist (attribute_id, value) VALUES ('email', 'test@example.com');
	INSERT INTO up_events VALUES
		('e1', 'web', 'view', '1', '2025-01-01', '{"cookie": "c1", "amount": 5}'),
		('e2', 'crm', 'buy', '1', '2025-01-02', '{"email": "a@x", "amount": 7}'),
		('e3', 'web', 'login', '1', '2025-01-03', '{"cookie": "c1", "email": "A@x", "amount": 1}'),
		('e4', 'web', 'view', '1', '2025-01-04', '{"cookie": "c2", "email": "test@example.com"}');
	PERFORM cdp_traits.attach_events('up_events');
	INSERT INTO cdp_traits.attributes (id, definition) VALUES
		('spend', '{"type": "sum", "value": "payload->>''amount''", "history": true}'),
		('big', '{"type": "audience", "condition": "spend > 10"}');
	INSERT INTO cdp_traits.context (key, value) VALUES ('currency', 'EUR');
	PERFORM cdp_traits.calculate_attributes();
	PERFORM cdp_traits.publish('up_published');
END;
$$;
CREATE SCHEMA up_published;
SELECT pg_temp.setup();

-- Every table pg_dump keeps, as rows (entity ids and times included): before ...
CREATE FUNCTION pg_temp.contents() RETURNS TABLE(tbl text, rows bigint, digest text)
LANGUAGE plpgsql AS $$
DECLARE r regclass;
BEGIN
	FOR r IN SELECT unnest(extconfig)::regclass FROM pg_extension WHERE extname = 'cdp_traits' LOOP
		tbl := r::text;
		IF (SELECT relkind FROM pg_class WHERE oid = r) = 'S' THEN
			EXECUTE format('SELECT last_value, md5(last_value::text || is_called::text) FROM %s', r)
				INTO rows, digest;
		ELSIF r = 'cdp_traits.entity_attributes'::regclass THEN
			-- 0.2.0 keeps no per-entity map of definition versions (the
			-- versions come from attributes.calculated_version): the rest
			SELECT count(*), md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), ''))
			  INTO rows, digest
			  FROM (SELECT customer_entity_id, vals, calculated_at, run_id FROM cdp_traits.entity_attributes) t;
		ELSIF r = 'cdp_traits.calculation_runs'::regclass THEN
			-- 0.2.0 records how many entities a run took from stored states
			-- (from_states, NULL for 0.1.0's runs): the rest
			SELECT count(*), md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), ''))
			  INTO rows, digest
			  FROM (SELECT id, started_at, finished_at, forced, entities, attributes, failed_attributes,
						   values_written, values_removed, values_skipped FROM cdp_traits.calculation_runs) t;
		ELSIF r = 'cdp_traits.calculation_run_attributes'::regclass THEN
			-- 0.2.0 records an entity a failing custom query fails for
			-- (failing_entity, NULL for 0.1.0's runs): the rest
			SELECT count(*), md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), ''))
			  INTO rows, digest
			  FROM (SELECT run_id, attribute_id, definition_version, scope, entities, values_written,
						   values_removed, values_skipped, duration_ms, error
					  FROM cdp_traits.calculation_run_attributes) t;
		ELSIF r = 'cdp_traits.events_source'::regclass THEN
			-- 0.2.0 records whether uuid ids are stored by key (uuid_keys,
			-- false after the update: as 0.1.0 stored them): the rest
			SELECT count(*), md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), ''))
			  INTO rows, digest
			  FROM (SELECT events, id_type, attached, attached_at FROM cdp_traits.events_source) t;
		ELSE
			EXECUTE format('SELECT count(*), md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) FROM %s t', r)
				INTO rows, digest;
		END IF;
		RETURN NEXT;
	END LOOP;
END;
$$;
-- 0.1.0's audience log numbers with gaps (rolled-back calculations, or the
-- 32 numbers a sequence is logged ahead and skips after a crash): its
-- readers keep the last seq they read, which must stay valid
SELECT count(nextval('cdp_traits.audience_changes_seq_seq')) AS gap FROM generate_series(1, 32);
CREATE TEMP TABLE before_update AS SELECT * FROM pg_temp.contents();
CREATE TEMP TABLE pivot_before AS SELECT * FROM cdp_traits.pivoted_customer_attributes;
CREATE TEMP TABLE values_before AS SELECT * FROM cdp_traits.customer_attributes;
CREATE TEMP TABLE audiences_before AS
SELECT seq, audience_id, customer_entity_id, entered, changed_at FROM cdp_traits.audience_changes;
CREATE TEMP TABLE audience_seq_before AS SELECT last_value FROM cdp_traits.audience_changes_seq_seq;

SET client_min_messages = warning;
ALTER EXTENSION cdp_traits UPDATE;
RESET client_min_messages;
SELECT extversion, cdp_traits.version() = extversion AS library_matches_sql
  FROM pg_extension WHERE extname = 'cdp_traits';

-- ... and after: no table lost or changed a row, but for 0.1.0's audience
-- log, whose rows moved to the toggle log (audience_changes is a view on it).
SELECT b.tbl, b.rows, a.rows AS rows_after
  FROM before_update b LEFT JOIN pg_temp.contents() a USING (tbl)
 WHERE a.digest IS DISTINCT FROM b.digest;
-- (with their numbers, and the toggle log numbers on from 0.1.0's last: a
-- reader's last seq is not passed over by the next changes)
SELECT count(*) AS audience_changes_before,
       (SELECT count(*) FROM (TABLE audiences_before EXCEPT
          SELECT seq, audience_id, customer_entity_id, entered, changed_at FROM cdp_traits.audience_changes) m) AS missing_after,
       (SELECT s.last_value FROM cdp_traits.segment_toggles_seq_seq s) = (TABLE audience_seq_before) AS numbering_goes_on
  FROM audiences_before;
SELECT count(*) AS tables_compared, sum(rows) > 20 AS with_rows FROM before_update;
SELECT count(*) AS pivot_rows_changed FROM (
  (TABLE pivot_before EXCEPT SELECT * FROM cdp_traits.pivoted_customer_attributes)
  UNION ALL (SELECT * FROM cdp_traits.pivoted_customer_attributes EXCEPT TABLE pivot_before)) d;
-- values and their provenance (definition versions) read the same
SELECT count(*) AS values_before, (SELECT count(*) FROM (
  (TABLE values_before EXCEPT SELECT * FROM cdp_traits.customer_attributes)
  UNION ALL (SELECT * FROM cdp_traits.customer_attributes EXCEPT TABLE values_before)) d) AS values_changed
  FROM values_before;
SELECT * FROM cdp_traits.verify_stitching();

-- The triggers installed under 0.1.0 keep stitching; 0.2.0's explain_entity
-- explains entities stitched under 0.1.0.
INSERT INTO up_events VALUES ('e5', 'web', 'view', '1', '2025-01-05', '{"cookie": "c2", "email": "a@x"}');
SELECT count(DISTINCT customer_entity_id) AS entities, count(*) AS events FROM cdp_traits.customer_events;
SELECT * FROM cdp_traits.verify_stitching();
SELECT kind, count(*) FROM cdp_traits.explain_entity(
  (SELECT customer_entity_id FROM cdp_traits.customer_events WHERE id = 'e1'))
 GROUP BY kind ORDER BY kind;
SELECT cdp_traits.calculate_attributes() AS recalculated;
SELECT spend, big FROM up_published.pivoted_customer_attributes;

-- With the same data, the updated extension has the same objects as a fresh
-- 0.2.0 (the views created at run time included: customer_events, the pivot,
-- the published views).
DELETE FROM up_events WHERE id = 'e5';
CREATE TEMP TABLE updated_with_data AS SELECT * FROM pg_temp.census();
SET client_min_messages = warning;
SELECT cdp_traits.unpublish();
DROP SCHEMA up_published CASCADE;
DROP TABLE up_events CASCADE;
DROP EXTENSION cdp_traits CASCADE;
CREATE SCHEMA up_published;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;
SELECT pg_temp.setup();
SELECT 'only after update' AS side, * FROM (TABLE updated_with_data EXCEPT SELECT * FROM pg_temp.census()) d
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM pg_temp.census() EXCEPT TABLE updated_with_data) d
ORDER BY 2, 3, 1;

-- An events table with uuid ids: 0.1.0 stored their text, 0.2.0 their keys
-- (event_key).  After the update they stay text, and stitching goes on so;
-- rekey_events() stores them by key and joins customer_events through the
-- keys, as attaching under 0.2.0 does: a view a user built on
-- customer_events stays, and every event keeps its entity.
SET client_min_messages = warning;
SELECT cdp_traits.unpublish();
DROP SCHEMA up_published CASCADE;
DROP TABLE up_events CASCADE;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits VERSION '0.1.0';
CREATE TABLE uu_events (id uuid PRIMARY KEY, source_id text, type text, version text,
						event_time timestamptz, payload jsonb, origin text);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
	('email', $r$lower(payload->>'email')$r$), ('cookie', $r$payload->>'cookie'$r$);
INSERT INTO uu_events VALUES
	('00000000-0000-0000-0000-00000000000a', 'web', 'view', '1', '2025-01-01', '{"cookie": "c1"}'),
	('00000000-0000-0000-0000-00000000000b', 'crm', 'buy', '1', '2025-01-02', '{"email": "a@x"}'),
	('00000000-0000-0000-0000-00000000000c', 'web', 'login', '1', '2025-01-03', '{"cookie": "c1", "email": "A@x"}'),
	('00000000-0000-0000-0000-00000000000d', 'web', 'view', '1', '2025-01-04', '{"cookie": "c2"}');
SELECT cdp_traits.attach_events('uu_events');
CREATE VIEW uu_user_view AS SELECT id, customer_entity_id FROM cdp_traits.customer_events;
CREATE TEMP TABLE uu_before AS SELECT * FROM uu_user_view;
-- (0.1.0's customer_events keeps a renamed column's old name)
ALTER TABLE uu_events RENAME COLUMN origin TO channel_origin;
ALTER EXTENSION cdp_traits UPDATE;
RESET client_min_messages;
CREATE FUNCTION pg_temp.uu_columns() RETURNS text LANGUAGE sql AS $$
SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
 WHERE attrelid = 'cdp_traits.customer_events'::regclass AND attnum > 0 $$;
SELECT pg_temp.uu_columns() AS updated_columns;
CREATE FUNCTION pg_temp.uu_state() RETURNS TABLE(assignments bigint, keyed bigint, entities_changed bigint,
                                                 problems bigint, joins_by_key boolean)
LANGUAGE sql AS $$
SELECT count(*), count(*) FILTER (WHERE length(event_id) = 22),
       (SELECT count(*) FROM (TABLE uu_before EXCEPT TABLE uu_user_view) d),
       (SELECT count(*) FROM cdp_traits.verify_stitching()),
       pg_get_viewdef('cdp_traits.customer_events'::regclass) LIKE '%cdp_traits.event_key(ev.id)%'
  FROM cdp_traits.event_entities $$;
SELECT 'updated' AS step, * FROM pg_temp.uu_state();
-- the attribute engine reads the events through the stored form too
INSERT INTO cdp_traits.attributes (id, definition) VALUES
	('cookies', '{"type": "list", "value": "payload->>''cookie''"}');
SELECT cdp_traits.calculate_attributes() AS calculated;
-- stitching goes on by text: a new event
INSERT INTO uu_events VALUES
	('00000000-0000-0000-0000-00000000000e', 'web', 'view', '1', '2025-01-05', '{"cookie": "c9"}');
INSERT INTO uu_before SELECT * FROM uu_user_view WHERE id = '00000000-0000-0000-0000-00000000000e';
SELECT 'new event' AS step, * FROM pg_temp.uu_state();
SELECT cdp_traits.calculate_attributes() AS recalculated;
CREATE TEMP TABLE uu_values AS SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes;
-- 0.2.0 follows the table's columns: the rename, and an added column after
-- customer_entity_id; rekeying keeps them as they are
ALTER TABLE uu_events ADD COLUMN channel text;
SELECT pg_temp.uu_columns() AS followed_columns;
SELECT cdp_traits.rekey_events() AS rekeyed;
SELECT pg_temp.uu_columns() AS rekeyed_columns;
SELECT 'rekeyed' AS step, * FROM pg_temp.uu_state();
SELECT cdp_traits.calculate_attributes(force => true) AS recalculated,
       (SELECT count(*) FROM uu_values) AS values_before,
       (SELECT count(*) FROM ((TABLE uu_values EXCEPT
          SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes)
        UNION ALL (SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes
          EXCEPT TABLE uu_values)) d) AS values_changed;
SELECT cdp_traits.rekey_events() AS rekeyed_again;
-- and by key: an event that links the two entities
INSERT INTO uu_events VALUES
	('00000000-0000-0000-0000-00000000000f', 'web', 'view', '1', '2025-01-06', '{"cookie": "c2", "email": "a@x"}');
SELECT count(DISTINCT customer_entity_id) AS entities, count(*) AS events,
       (SELECT count(*) FROM cdp_traits.verify_stitching()) AS problems
  FROM uu_user_view;

-- Leave a fresh extension for the following tests.
SET client_min_messages = warning;
DROP VIEW uu_user_view;
DROP TABLE uu_events CASCADE;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;
