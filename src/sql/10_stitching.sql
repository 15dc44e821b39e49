/*
 * Profile stitching (SPEC sections 1 and 2).
 *
 * State: which events table is attached (events_source), the rules and the
 * blocklist (user configuration), and the result of stitching: matching
 * (identifier -> entity), event_entities (event -> entity), customer_entities
 * and entity_merges.  The C triggers keep them current; restitch() rebuilds
 * them; verify_stitching() checks them.
 */

-- The attached events table (at most one per database).
CREATE TABLE cdp_traits.events_source (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	events regclass NOT NULL,
	id_type regtype NOT NULL,
	attached boolean NOT NULL DEFAULT true,
	attached_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	uuid_keys boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp_traits.events_source IS
	'the events table stitching reads (set by attach_events, kept by detach_events)';
COMMENT ON COLUMN cdp_traits.events_source.uuid_keys IS
	'event_entities stores the uuid ids of the events by key (see event_key(uuid)), not by text';

CREATE TABLE cdp_traits.stitching_rules (
	attribute_id text NOT NULL,
	source_id text,
	type text,
	version text,
	value_expression text NOT NULL
);
COMMENT ON TABLE cdp_traits.stitching_rules IS
	'how identifiers are read from events: a SQL expression over the event per attribute id; NULL source_id/type/version match any';
-- One rule per attribute, filters and expression.  The expression by its
-- md5: one of a few kB (a long CASE mapping values) fits no btree entry.
CREATE UNIQUE INDEX stitching_rules_unique ON cdp_traits.stitching_rules
	(attribute_id, source_id, type, version, pg_catalog.md5(value_expression)) NULLS NOT DISTINCT;

CREATE TABLE cdp_traits.stitching_blocklist (
	attribute_id text,
	value text NOT NULL,
	CONSTRAINT stitching_blocklist_unique UNIQUE NULLS NOT DISTINCT (attribute_id, value)
);
COMMENT ON TABLE cdp_traits.stitching_blocklist IS
	'identifier values that never link (compared trimmed and case-insensitively); NULL attribute_id = every attribute';
-- The default entries (for every attribute): inserted here, and known to
-- stitching_blocklist_removed_defaults and its trigger below.  (The filter of
-- the blocklist's rows pg_dump dumps, 80_dump.sql, is a literal: keep it so.)
CREATE FUNCTION cdp_traits._blocklist_defaults() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ARRAY['', 'null', 'none', 'undefined', 'unknown', 'n/a', '0', '-']
$$;
INSERT INTO cdp_traits.stitching_blocklist (attribute_id, value)
SELECT NULL, d.value FROM pg_catalog.unnest(cdp_traits._blocklist_defaults()) WITH ORDINALITY d(value, i) ORDER BY d.i;

-- The default entries deleted (or changed) since the install, so that a dump
-- keeps them deleted: the install script inserts the defaults, in a restore
-- too, and the dump holds only the other rows of the blocklist (80_dump.sql)
-- and every row of this table.  Loading a row here deletes its default
-- again, whichever of the two tables a restore loads first.
CREATE TABLE cdp_traits.stitching_blocklist_removed_defaults (
	value text PRIMARY KEY
		CHECK (value = ANY (cdp_traits._blocklist_defaults()))
);
COMMENT ON TABLE cdp_traits.stitching_blocklist_removed_defaults IS
	'default blocklist entries deleted or changed since the install (kept so by a dump and restore); written by triggers';

-- Keeps stitching_blocklist_removed_defaults current: a default entry
-- deleted, changed or truncated is noted, one inserted again is no longer;
-- a noted entry loaded by a restore deletes its default.
CREATE FUNCTION cdp_traits._blocklist_defaults_kept() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	defaults CONSTANT text[] := cdp_traits._blocklist_defaults();
BEGIN
	IF TG_TABLE_NAME = 'stitching_blocklist_removed_defaults' THEN
		DELETE FROM cdp_traits.stitching_blocklist b
		 WHERE b.attribute_id IS NULL AND b.value = NEW.value;
	ELSIF TG_OP = 'TRUNCATE' THEN
		INSERT INTO cdp_traits.stitching_blocklist_removed_defaults (value)
		SELECT pg_catalog.unnest(defaults)
		ON CONFLICT DO NOTHING;
	ELSE
		IF TG_OP IN ('UPDATE', 'DELETE') THEN
			IF OLD.attribute_id IS NULL AND OLD.value = ANY (defaults) THEN
				INSERT INTO cdp_traits.stitching_blocklist_removed_defaults (value)
				VALUES (OLD.value)
				ON CONFLICT DO NOTHING;
			END IF;
		END IF;
		IF TG_OP IN ('INSERT', 'UPDATE') THEN
			IF NEW.attribute_id IS NULL AND NEW.value = ANY (defaults) THEN
				DELETE FROM cdp_traits.stitching_blocklist_removed_defaults r
				 WHERE r.value = NEW.value;
			END IF;
		END IF;
	END IF;
	RETURN NULL;
END;
$$;
CREATE TRIGGER stitching_blocklist_defaults
	AFTER INSERT OR UPDATE OR DELETE ON cdp_traits.stitching_blocklist
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._blocklist_defaults_kept();
CREATE TRIGGER stitching_blocklist_defaults_truncated
	AFTER TRUNCATE ON cdp_traits.stitching_blocklist
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._blocklist_defaults_kept();
CREATE TRIGGER removed_default_loaded
	AFTER INSERT ON cdp_traits.stitching_blocklist_removed_defaults
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._blocklist_defaults_kept();

-- Every new event updates its entity's modified/calculated: no index on those
-- columns and room on each page keep that update HOT (no index writes).
CREATE TABLE cdp_traits.customer_entities (
	id uuid PRIMARY KEY,
	created timestamptz NOT NULL DEFAULT pg_catalog.now(),
	modified timestamptz NOT NULL DEFAULT pg_catalog.now(),
	calculated timestamptz
) WITH (fillfactor = 70);
COMMENT ON TABLE cdp_traits.customer_entities IS
	'one row per live customer entity; calculated IS NULL means its attributes must be recalculated';

-- Identifiers and event ids compare byte-wise ("C"): exact, and fast to index.
CREATE TABLE cdp_traits.matching (
	attribute_id text COLLATE "C" NOT NULL,
	value text COLLATE "C" NOT NULL,
	customer_entity_id uuid NOT NULL,
	PRIMARY KEY (attribute_id, value)
);
COMMENT ON TABLE cdp_traits.matching IS 'one row per identifier: the entity it belongs to';
CREATE INDEX matching_entity ON cdp_traits.matching (customer_entity_id);

CREATE TABLE cdp_traits.event_entities (
	event_id text COLLATE "C" PRIMARY KEY,
	customer_entity_id uuid NOT NULL
);
COMMENT ON TABLE cdp_traits.event_entities IS
	'the entity of each event that has an identifier (event id as text; a uuid id as its key, see event_key(uuid))';
CREATE INDEX event_entities_entity ON cdp_traits.event_entities (customer_entity_id);

-- Statistics: the ids in these tables are random, and what the planner needs
-- of them is how many there are and how many rows share one: a sample of
-- 3,000 rows (target 10) tells that about as well as 30,000, and the ANALYZE
-- that ends a whole stitching pass of 1M events takes 35 ms instead of 165 ms.
-- (Neither sample counts the entities of event_entities well: 40k or 72k of
-- 202k.  With the smaller estimate the attribute engine's statement over
-- every entity runs as two halves side by side, 6 % faster on 1M events.)
ALTER TABLE cdp_traits.customer_entities
	ALTER COLUMN id SET STATISTICS 10, ALTER COLUMN created SET STATISTICS 10,
	ALTER COLUMN modified SET STATISTICS 10, ALTER COLUMN calculated SET STATISTICS 10;
ALTER TABLE cdp_traits.matching
	ALTER COLUMN attribute_id SET STATISTICS 10, ALTER COLUMN value SET STATISTICS 10,
	ALTER COLUMN customer_entity_id SET STATISTICS 10;
ALTER TABLE cdp_traits.event_entities
	ALTER COLUMN event_id SET STATISTICS 10, ALTER COLUMN customer_entity_id SET STATISTICS 10;

-- The key under which event_entities stores a uuid event id: its 16 bytes in
-- 22 characters (ids of other types are stored as their text).
CREATE FUNCTION cdp_traits.event_key(uuid) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_event_key';
COMMENT ON FUNCTION cdp_traits.event_key(uuid) IS
	'the key of a uuid event id in event_entities (22 characters, in the order of the uuids)';
CREATE FUNCTION cdp_traits.event_key_uuid(text) RETURNS uuid
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_event_key_uuid';
COMMENT ON FUNCTION cdp_traits.event_key_uuid(text) IS
	'the uuid event id of a key made by event_key(uuid)';
-- After an update from 0.1.0, which stored uuid ids by their text.
CREATE FUNCTION cdp_traits.rekey_events() RETURNS bigint
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_rekey_events';
COMMENT ON FUNCTION cdp_traits.rekey_events() IS
	'store the assignments of uuid events by key, as attach_events does since 0.2.0 (after an update from 0.1.0); returns the rows rewritten';

CREATE TABLE cdp_traits.entity_merges (
	merged_id uuid PRIMARY KEY,
	into_id uuid NOT NULL,
	merged_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE cdp_traits.entity_merges IS 'entities absorbed by another one when an event linked them';
CREATE INDEX entity_merges_into ON cdp_traits.entity_merges (into_id);

-- current_entity: follow merges from an entity id that may have been absorbed.
CREATE FUNCTION cdp_traits.current_entity(id uuid) RETURNS uuid
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH RECURSIVE chain(id, depth) AS (
		SELECT $1, 0
		UNION ALL
		SELECT m.into_id, c.depth + 1
		  FROM cdp_traits.entity_merges m JOIN chain c ON m.merged_id = c.id
		 WHERE c.depth < 100000
	)
	SELECT e.id
	  FROM (SELECT id FROM chain ORDER BY depth DESC LIMIT 1) last
	  JOIN cdp_traits.customer_entities e ON e.id = last.id
$$;
COMMENT ON FUNCTION cdp_traits.current_entity(uuid) IS
	'the live entity an entity id now belongs to (following merges), NULL if it no longer exists';

/*
 * Erase a customer (a data subject's request to be forgotten): the events of
 * the entity id belongs to (following merges) are deleted from the attached
 * events table, through its triggers, so that stitching removes the entity,
 * its identifiers and values and records audience exits as for any delete;
 * then what the extension keeps after an entity has gone: the history of its
 * values and of every id merged into it, the merges linking those ids, and a
 * failing custom query's note of one of them.  An id whose entity has gone
 * already erases that history.  Owner only; runs as its caller, who must be
 * allowed to delete from the events table.  One row per table touched.
 */
CREATE FUNCTION cdp_traits.erase_entity(id uuid) RETURNS TABLE(what text, removed bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	root uuid;
	ids uuid[];
	src record;
	n bigint;
BEGIN
	IF id IS NULL THEN
		RAISE EXCEPTION 'entity id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- the last id of the merges from id on (the live entity, or the one
	-- that went last), then every id merged into it, directly or not (each
	-- id is merged at most once: a path, then a tree; UNION stops at a
	-- cycle, which verify_stitching reports)
	WITH RECURSIVE fwd(id, depth) AS (
		SELECT erase_entity.id, 0
		UNION ALL
		SELECT m.into_id, f.depth + 1
		  FROM cdp_traits.entity_merges m JOIN fwd f ON m.merged_id = f.id
		 WHERE f.depth < 100000
	)
	SELECT f.id INTO root FROM fwd f ORDER BY f.depth DESC LIMIT 1;
	WITH RECURSIVE back(id) AS (
		SELECT root
		UNION
		SELECT m.merged_id FROM cdp_traits.entity_merges m JOIN back b ON m.into_id = b.id
	)
	SELECT pg_catalog.array_agg(b.id) INTO ids FROM back b;

	SELECT s.events, s.attached INTO src FROM cdp_traits.events_source s;
	n := 0;
	IF EXISTS (SELECT FROM cdp_traits.customer_entities ce WHERE ce.id = root) THEN
		IF NOT COALESCE(src.attached, false) THEN
			RAISE EXCEPTION 'cannot erase entity %: no events table is attached', root
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  DETAIL = 'Its events are deleted through the stitching triggers of the attached table.',
					  HINT = 'Attach the events table again (attach_events), then erase the entity.';
		END IF;
		EXECUTE pg_catalog.format('DELETE FROM %s ev WHERE ev.id IN (SELECT ce.id FROM cdp_traits.customer_events ce '
								  'WHERE ce.customer_entity_id = $1)', src.events)
			USING root;
		GET DIAGNOSTICS n = ROW_COUNT;
	END IF;
	what := 'events'; removed := n; RETURN NEXT;

	DELETE FROM cdp_traits.attribute_history h WHERE h.customer_entity_id = ANY (ids);
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'attribute_history'; removed := n; RETURN NEXT;

	DELETE FROM cdp_traits.entity_merges m WHERE m.merged_id = ANY (ids);
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'entity_merges'; removed := n; RETURN NEXT;

	UPDATE cdp_traits.calculation_run_attributes r SET failing_entity = NULL
	 WHERE r.failing_entity = ANY (ids);
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'calculation_run_attributes.failing_entity'; removed := n; RETURN NEXT;

	-- (a new event that arrived meanwhile, or is still being written, keeps
	-- the entity; its values come back with the next run)
	IF EXISTS (SELECT FROM cdp_traits.customer_entities ce WHERE ce.id = root) THEN
		RAISE WARNING 'the erased customer still has events'
			USING DETAIL = 'Events of this customer were written while it was erased: they keep its entity.',
				  HINT = 'Call erase_entity again once those writers have committed.';
	END IF;
END;
$$;
COMMENT ON FUNCTION cdp_traits.erase_entity(uuid) IS
	'erase a customer: its events (through stitching), and the history and merges of every id it had; one row per table touched';

-- Rule validation, and the notice that existing events need restitch().
CREATE FUNCTION cdp_traits.stitching_rules_check() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_stitching_rules_check';
CREATE FUNCTION cdp_traits.stitching_config_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_stitching_config_changed';

CREATE TRIGGER stitching_rules_check
	BEFORE INSERT OR UPDATE ON cdp_traits.stitching_rules
	FOR EACH ROW EXECUTE FUNCTION cdp_traits.stitching_rules_check();
CREATE TRIGGER stitching_rules_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp_traits.stitching_rules
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits.stitching_config_changed();
CREATE TRIGGER stitching_blocklist_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp_traits.stitching_blocklist
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits.stitching_config_changed();

-- The trigger function installed on the attached events table.
CREATE FUNCTION cdp_traits.stitch_events() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_stitch_events';
COMMENT ON FUNCTION cdp_traits.stitch_events() IS
	'statement trigger on the attached events table: keeps stitching current';

-- The trigger function of replica sessions (logical replication's apply
-- worker fires row triggers only): installed beside stitch_events, enabled
-- for replica sessions only.
CREATE FUNCTION cdp_traits.stitch_event_row() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_stitch_event_row';
COMMENT ON FUNCTION cdp_traits.stitch_event_row() IS
	'row trigger on the attached events table for replica sessions (logical replication): stitches each row';

-- Installs those triggers where an attached table lacks them (the update
-- from 0.1.0).
CREATE FUNCTION cdp_traits._install_replica_triggers() RETURNS void
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_install_replica_triggers';

CREATE FUNCTION cdp_traits.attach_events(events regclass) RETURNS void
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_attach_events';
COMMENT ON FUNCTION cdp_traits.attach_events(regclass) IS
	'validate an events table, install the stitching triggers on it and stitch its rows';

CREATE FUNCTION cdp_traits.detach_events() RETURNS void
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_detach_events';
COMMENT ON FUNCTION cdp_traits.detach_events() IS
	'remove the stitching triggers from the events table; stitching state is kept';

CREATE FUNCTION cdp_traits.restitch() RETURNS bigint
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_restitch';
COMMENT ON FUNCTION cdp_traits.restitch() IS
	'rebuild stitching from all events under the current rules and blocklist; returns the number of entities';

CREATE FUNCTION cdp_traits.verify_stitching() RETURNS TABLE(event_id text, problem text)
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_verify_stitching';
COMMENT ON FUNCTION cdp_traits.verify_stitching() IS
	'compare the stored stitching with a fresh computation; no rows means consistent';

-- Memory and size figures of the last restitch()/verify_stitching() in this session.
CREATE FUNCTION cdp_traits.stitching_stats(
	OUT events bigint, OUT identifiers bigint, OUT entities bigint,
	OUT memory_bytes bigint, OUT changed_events bigint, OUT changed_identifiers bigint)
RETURNS record
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_stitching_stats';
COMMENT ON FUNCTION cdp_traits.stitching_stats() IS
	'figures of the last full stitching pass in this session (restitch or verify)';

-- Partitions created or attached after attach_events get the stitching
-- triggers too, and the rows of an attached partition are stitched.
CREATE FUNCTION cdp_traits.new_partition() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_new_partition';
COMMENT ON FUNCTION cdp_traits.new_partition() IS
	'event trigger: install the stitching triggers on new partitions of the events table';
CREATE EVENT TRIGGER cdp_traits_new_partition ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
	EXECUTE FUNCTION cdp_traits.new_partition();
-- (ENABLE ALWAYS: also in sessions with session_replication_role = replica,
-- which DBAs and loading tools set to skip triggers)
ALTER EVENT TRIGGER cdp_traits_new_partition ENABLE ALWAYS;

-- Around every DDL command (see src/ddl_guard.c): a CASCADE drop that
-- reaches a published view must not drop the extension (PostgreSQL drops
-- the extension of a member a cascade reaches), and a column of the events
-- table dropped or retyped takes customer_events out first (when nothing
-- else depends on it), made again at the end; a drop or rename that would
-- leave a stitching rule unable to compile is refused, naming the rule
-- (src/rule_guard.c); a dropped partition's events leave stitching
-- (src/partition_drop.c).
CREATE FUNCTION cdp_traits._ddl_start() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_ddl_start';
COMMENT ON FUNCTION cdp_traits._ddl_start() IS
	'event trigger: before a CASCADE drop, release the published views it reaches from the extension; before a column of the events table is dropped or retyped, drop customer_events; before a drop or rename, note the stitching rules that compile and the events table''s partitions';
CREATE FUNCTION cdp_traits._ddl_end() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_ddl_end';
COMMENT ON FUNCTION cdp_traits._ddl_end() IS
	'event trigger: published views released by _ddl_start() that are still there join the extension again, customer_events follows the events table, a drop or rename that broke a stitching rule fails, and dropped partitions'' events leave stitching';
CREATE EVENT TRIGGER cdp_traits_ddl_start ON ddl_command_start
	EXECUTE FUNCTION cdp_traits._ddl_start();
CREATE EVENT TRIGGER cdp_traits_ddl_end ON ddl_command_end
	EXECUTE FUNCTION cdp_traits._ddl_end();
ALTER EVENT TRIGGER cdp_traits_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_ddl_end ENABLE ALWAYS;

