
/*
 * Publishing: customer_events and pivoted_customer_attributes as views in a
 * schema the rest of the CDP reads (public, say), in place of the tables or
 * views of those names a previous pipeline produced (renamed to *_backup).
 *
 * The published views are members of the extension (pg_dump leaves them out)
 * and every published schema is a row of publications (which it dumps): a
 * restore re-publishes when that row is loaded.  A published
 * pivoted_customer_attributes is recreated whenever the pivot is (its
 * columns follow the attributes).
 *
 * A publication names its schema (a name, not an OID: pg_dump writes it as
 * is, and pg_upgrade refuses tables with regnamespace columns), and follows
 * it when it is renamed (the event trigger cdp_traits_schema_renamed).  The
 * published views themselves are found as what they are, members of the
 * extension named customer_events or pivoted_customer_attributes outside
 * cdp_traits, so that dropping them never depends on a schema's name.
 */

CREATE TABLE cdp_traits.publications (
	target_schema name PRIMARY KEY,
	published_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE cdp_traits.publications IS
	'schemas holding published views of customer_events and pivoted_customer_attributes (see publish())';

-- Names published, in order.
CREATE FUNCTION cdp_traits._published_names() RETURNS name[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['customer_events', 'pivoted_customer_attributes']::name[] $$;

-- The OID of the schema named target (NULL if there is none), the name
-- taken as it is (to_regnamespace would parse it as an identifier: "Mart"
-- would be looked up as mart).
CREATE FUNCTION cdp_traits._schema_oid(target name) RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = target
$$;

-- Every published view, wherever it is now: the members of the extension
-- with a published name outside the schema cdp_traits (publish() creates
-- no others).
CREATE FUNCTION cdp_traits._published_views()
RETURNS TABLE (view regclass, nsp name, rel name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.oid::regclass, n.nspname, c.relname
	  FROM pg_catalog.pg_class c
	  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
	   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
	 WHERE c.relkind = 'v' AND c.relname = ANY (cdp_traits._published_names())
	   AND n.nspname <> 'cdp_traits'
	 ORDER BY n.nspname, c.relname
$$;

-- Publishing, unpublishing and the rebuilds of published views run one at a
-- time: each looks up the published views and then drops or replaces them,
-- and one that came second named views the first had dropped meanwhile
-- (isolation spec publish_concurrent).  SHARE ROW EXCLUSIVE conflicts with
-- itself and with writes of publications, not with its readers.  Every
-- caller runs as the owner.
CREATE FUNCTION cdp_traits._publications_lock() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	LOCK TABLE cdp_traits.publications IN SHARE ROW EXCLUSIVE MODE;
$$;

-- Whether target.name is one of our published views (a member of the extension).
CREATE FUNCTION cdp_traits._is_published_view(target name, rel name) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (
		SELECT FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
		   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
		 WHERE c.relnamespace = cdp_traits._schema_oid(target) AND c.relname = rel)
$$;

-- Create one published view (target.rel over cdp_traits.rel), as a member.
CREATE FUNCTION cdp_traits._publish_view(target name, rel name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	grants text[];
	g text;
BEGIN
	IF pg_catalog.to_regclass(pg_catalog.format('cdp_traits.%I', rel)) IS NULL THEN
		RETURN;		-- customer_events before attach_events: published by attach
	END IF;
	IF cdp_traits._is_published_view(target, rel) THEN
		-- Columns only added: replaced in place, keeping its privileges and
		-- the views over it (any role may make one, even one that may not
		-- read it: dropping the view would fail for them).
		BEGIN
			EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW %I.%I AS SELECT * FROM cdp_traits.%I',
									  target, rel, rel);
			RETURN;
		EXCEPTION WHEN invalid_table_definition OR feature_not_supported OR datatype_mismatch THEN
			NULL;	-- columns removed, renamed or retyped: made again below
		END;
		-- (what other roles were granted on it is granted again, at the end)
		SELECT pg_catalog.array_agg(g.statement) INTO grants
		  FROM cdp_traits._grants_of_others(ARRAY[pg_catalog.format('%I.%I', target, rel)::pg_catalog.regclass::pg_catalog.oid]) g;
		EXECUTE pg_catalog.format('ALTER EXTENSION cdp_traits DROP VIEW %I.%I', target, rel);
		EXECUTE pg_catalog.format('DROP VIEW %I.%I', target, rel);
	END IF;
	EXECUTE pg_catalog.format('CREATE VIEW %I.%I AS SELECT * FROM cdp_traits.%I', target, rel, rel);
	EXECUTE pg_catalog.format('COMMENT ON VIEW %I.%I IS %L', target, rel,
		pg_catalog.format('published by cdp_traits.publish(): cdp_traits.%s', rel));
	-- (granted before it becomes a member: ALTER EXTENSION ADD records its
	-- privileges then as the initial ones, which pg_dump leaves out with the
	-- view; granted after, they were dumped as GRANTs on a view the dump
	-- does not create, which failed a schema-only restore)
	PERFORM cdp_traits._grant(pg_catalog.format('%I.%I', target, rel)::regclass, 'result');
	IF NOT cdp_traits._is_published_view(target, rel) THEN
		EXECUTE pg_catalog.format('ALTER EXTENSION cdp_traits ADD VIEW %I.%I', target, rel);
	END IF;
	FOREACH g IN ARRAY COALESCE(grants, '{}') LOOP
		EXECUTE g;
	END LOOP;
END;
$$;

-- AFTER INSERT row trigger on publications (publish() and a restore):
-- move what holds the names aside and create the views.
CREATE FUNCTION cdp_traits._publications_added() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rel name;
	kind "char";
BEGIN
	PERFORM cdp_traits._publications_lock();
	IF cdp_traits._schema_oid(NEW.target_schema) IS NULL THEN
		RAISE EXCEPTION 'schema "%" does not exist', NEW.target_schema
			USING ERRCODE = 'invalid_schema_name';
	END IF;
	IF NEW.target_schema = 'cdp_traits' THEN
		RAISE EXCEPTION 'cannot publish into the schema cdp_traits itself'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOREACH rel IN ARRAY cdp_traits._published_names() LOOP
		SELECT c.relkind INTO kind FROM pg_catalog.pg_class c
		 WHERE c.relnamespace = cdp_traits._schema_oid(NEW.target_schema) AND c.relname = rel;
		-- the events table itself (cdp_ce.customer_events, say) is not moved
		-- aside: writers would insert into the published view
		IF FOUND AND EXISTS (SELECT FROM cdp_traits.events_source s
							  WHERE pg_catalog.format('%I.%I', NEW.target_schema, rel)::regclass
									IN (SELECT s.events UNION ALL
										SELECT t.relid FROM pg_catalog.pg_partition_tree(s.events) t)) THEN
			RAISE EXCEPTION 'cannot publish %.%: it is the events table', NEW.target_schema, rel
				USING ERRCODE = 'object_in_use',
					  DETAIL = 'Publishing moves a relation of that name aside (to a *_backup name), and the events table must keep its name for those who write it.',
					  HINT = 'Publish into another schema, or rename the events table first.';
		END IF;
		IF FOUND AND NOT cdp_traits._is_published_view(NEW.target_schema, rel) THEN
			IF EXISTS (SELECT FROM pg_catalog.pg_class c
						WHERE c.relnamespace = cdp_traits._schema_oid(NEW.target_schema)
						  AND c.relname = rel || '_backup') THEN
				RAISE EXCEPTION 'cannot publish %.%: %.% exists already', NEW.target_schema, rel,
					NEW.target_schema, rel || '_backup'
					USING ERRCODE = 'duplicate_table',
						  HINT = 'Rename or drop the old backup first.';
			END IF;
			EXECUTE pg_catalog.format('ALTER %s %I.%I RENAME TO %I',
				CASE kind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
						  WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
				NEW.target_schema, rel, rel || '_backup');
		END IF;
		PERFORM cdp_traits._publish_view(NEW.target_schema, rel);
	END LOOP;
	RETURN NULL;
END;
$$;
CREATE TRIGGER publications_added AFTER INSERT ON cdp_traits.publications
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._publications_added();

CREATE FUNCTION cdp_traits.publish(target_schema name DEFAULT 'public') RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cdp_traits._publications_lock();
	-- already published there: refresh the views (the pivot's columns may have changed)
	IF EXISTS (SELECT FROM cdp_traits.publications p WHERE p.target_schema = publish.target_schema) THEN
		PERFORM cdp_traits._publish_view(publish.target_schema, rel)
		   FROM pg_catalog.unnest(cdp_traits._published_names()) rel;
		RETURN;
	END IF;
	INSERT INTO cdp_traits.publications (target_schema) VALUES (publish.target_schema);
END;
$$;
COMMENT ON FUNCTION cdp_traits.publish(name) IS
	'create the views customer_events and pivoted_customer_attributes in target_schema, renaming objects of those names to *_backup';

CREATE FUNCTION cdp_traits.unpublish() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v record;
	target name;
	rel name;
	kind "char";
	schemas name[];
BEGIN
	PERFORM cdp_traits._publications_lock();
	-- the published schemas that exist, and every schema holding a published
	-- view (one renamed while its publication could not follow, say)
	SELECT pg_catalog.array_agg(DISTINCT s.nsp ORDER BY s.nsp) INTO schemas
	  FROM (SELECT p.target_schema FROM cdp_traits.publications p
			 WHERE cdp_traits._schema_oid(p.target_schema) IS NOT NULL
			UNION ALL
			SELECT pv.nsp FROM cdp_traits._published_views() pv) s(nsp);
	FOR v IN SELECT * FROM cdp_traits._published_views() LOOP
		EXECUTE pg_catalog.format('ALTER EXTENSION cdp_traits DROP VIEW %s', v.view);
		EXECUTE pg_catalog.format('DROP VIEW %s', v.view);
	END LOOP;
	FOREACH target IN ARRAY COALESCE(schemas, '{}') LOOP
		FOREACH rel IN ARRAY cdp_traits._published_names() LOOP
			SELECT c.relkind INTO kind FROM pg_catalog.pg_class c
			 WHERE c.relnamespace = cdp_traits._schema_oid(target)
			   AND c.relname = rel || '_backup';
			IF FOUND AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c
						WHERE c.relnamespace = cdp_traits._schema_oid(target)
						  AND c.relname = rel) THEN
				EXECUTE pg_catalog.format('ALTER %s %I.%I RENAME TO %I',
					CASE kind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
							  WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
					target, rel || '_backup', rel);
			END IF;
		END LOOP;
	END LOOP;
	DELETE FROM cdp_traits.publications;
END;
$$;
COMMENT ON FUNCTION cdp_traits.unpublish() IS
	'drop the published views and rename the *_backup objects back';

-- Drop the published views of rel (before cdp_traits.rel is dropped), and
-- create them again (after it is recreated): used by attach_events and the
-- pivot's rebuild.
CREATE FUNCTION cdp_traits._unpublish_view(rel name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v regclass;
BEGIN
	PERFORM cdp_traits._publications_lock();
	-- wherever they are: one left in a schema that is no longer published
	-- would keep cdp_traits.rel from being dropped
	FOR v IN SELECT p.view FROM cdp_traits._published_views() p WHERE p.rel = _unpublish_view.rel LOOP
		EXECUTE pg_catalog.format('ALTER EXTENSION cdp_traits DROP VIEW %s', v);
		BEGIN
			EXECUTE pg_catalog.format('DROP VIEW %s', v);
		EXCEPTION WHEN dependent_objects_still_exist THEN
			-- (named: any role with CREATE on a schema may make a view over it)
			RAISE EXCEPTION 'cannot make the published view % again: other objects depend on it', v
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = 'Its columns change with cdp_traits.' || rel || '. These use it: '
						|| COALESCE(cdp_traits._views_using(v), 'objects other than views') || '.',
					  HINT = 'Drop the views that use it, make the change again, then recreate them.';
		END;
	END LOOP;
END;
$$;
CREATE FUNCTION cdp_traits._republish_view(rel name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target name;
BEGIN
	PERFORM cdp_traits._publications_lock();
	FOR target IN SELECT p.target_schema FROM cdp_traits.publications p ORDER BY 1 LOOP
		IF cdp_traits._schema_oid(target) IS NULL THEN
			RAISE WARNING 'cannot publish %.%: schema "%" does not exist', target, rel, target
				USING DETAIL = 'The schema was dropped or renamed after it was published.',
					  HINT = 'Run cdp_traits.unpublish() to forget it, then cdp_traits.publish() into the schema you want.';
			CONTINUE;
		END IF;
		PERFORM cdp_traits._publish_view(target, rel);
	END LOOP;
END;
$$;

-- Event trigger at the end of ALTER SCHEMA: a published schema renamed stays
-- published under its new name.  The renamed schema holds published views;
-- its publication is the one naming no schema any more.  SECURITY DEFINER:
-- the schema's owner, who may rename it, may not write publications.
CREATE FUNCTION cdp_traits._schema_renamed() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target name;
	stale name[];
BEGIN
	IF NOT EXISTS (SELECT FROM cdp_traits.publications) THEN
		RETURN;
	END IF;
	FOR target IN SELECT n.nspname FROM pg_catalog.pg_event_trigger_ddl_commands() c
					JOIN pg_catalog.pg_namespace n ON n.oid = c.objid
				   WHERE c.classid = 'pg_catalog.pg_namespace'::regclass LOOP
		CONTINUE WHEN EXISTS (SELECT FROM cdp_traits.publications p WHERE p.target_schema = target)
				   OR NOT EXISTS (SELECT FROM cdp_traits._published_views() v WHERE v.nsp = target);
		SELECT pg_catalog.array_agg(p.target_schema) INTO stale FROM cdp_traits.publications p
		 WHERE cdp_traits._schema_oid(p.target_schema) IS NULL;
		IF pg_catalog.cardinality(stale) = 1 THEN
			UPDATE cdp_traits.publications SET target_schema = target WHERE target_schema = stale[1];
		ELSE
			RAISE WARNING 'cannot tell which publication schema "%" was', target
				USING DETAIL = pg_catalog.format('Published schemas that no longer exist: %s.',
												 COALESCE(pg_catalog.array_to_string(stale, ', '), 'none')),
					  HINT = 'Run cdp_traits.unpublish(), then cdp_traits.publish() into each schema.';
		END IF;
	END LOOP;
END;
$$;
CREATE EVENT TRIGGER cdp_traits_schema_renamed ON ddl_command_end
	WHEN TAG IN ('ALTER SCHEMA')
	EXECUTE FUNCTION cdp_traits._schema_renamed();
ALTER EVENT TRIGGER cdp_traits_schema_renamed ENABLE ALWAYS;
