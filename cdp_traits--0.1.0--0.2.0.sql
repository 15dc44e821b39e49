/*
 * cdp_traits 0.1.0 -> 0.2.0
 *
 * Exactly what 0.2.0 adds to 0.1.0, so that ALTER EXTENSION cdp_traits UPDATE
 * gives the same objects, privileges and pg_dump marks as a fresh install of
 * 0.2.0 (the regression test "upgrade" compares the two catalog censuses):
 *   - explain_entity(id), explain_entity(id, format) and their helpers
 *     (src/sql/15_explain.sql)
 *   - import_meiro_config(cdp_schema, ps_schema, attr_schema)
 *     (src/sql/60_meiro.sql)
 * and their classification in src/sql/90_privileges.sql.
 */

-- complain if the script is sourced in psql rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION cdp_traits UPDATE TO '0.2.0'" to load this file. \quit

-- BEGIN generated: src/sql/15_explain.sql
/*
 * explain_entity: the identity graph behind one customer entity (why its
 * events were stitched together), as rows and as Graphviz DOT text.
 *
 * Nodes: the live entity, the ids it absorbed (entity_merges, followed
 * through chains of merges), its events and the identifiers the current
 * rules read from them (re-evaluated by the C stitching code, blocklisted
 * values included and marked).  Edges: absorbed id -> the id that absorbed
 * it, event -> entity, and one "link" row per (event, identifier).
 */

-- The stored events of an entity with the identifiers the current rules read
-- from them: one row per (event, identifier value), blocklisted values
-- flagged, one row with a NULL identifier for an event yielding none.  Runs
-- the rules as the stitching triggers do (extension owner, pinned
-- search_path, restricted operation).
CREATE FUNCTION cdp_traits._explain_events(entity uuid)
RETURNS TABLE(event_id text, source_id text, type text, version text, event_time timestamptz,
			  attribute_id text, value text, blocked boolean)
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_explain_events';
COMMENT ON FUNCTION cdp_traits._explain_events(uuid) IS
	'internal: the events of an entity with the identifiers the current rules read from them';

-- A string as a double-quoted DOT id or label: backslashes doubled, double
-- quotes escaped, line feeds as \n (a centred line break in a label) and
-- carriage returns as \r, so that distinct strings (event ids) stay
-- distinct node ids.
CREATE FUNCTION cdp_traits._dot_quote(s text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT '"' || pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
		$1, E'\\', E'\\\\'), '"', E'\\"'), E'\r', E'\\r'), E'\n', E'\\n') || '"'
$$;
COMMENT ON FUNCTION cdp_traits._dot_quote(text) IS 'internal: a string as a quoted Graphviz DOT id';

-- The live entity an id belongs to now (merges followed), or an error saying
-- why there is none: the id is NULL, unknown, or its entity lost all its
-- events.
CREATE FUNCTION cdp_traits._live_entity(asked uuid) RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	live uuid := cdp_traits.current_entity(asked);
BEGIN
	IF asked IS NULL THEN
		RAISE EXCEPTION 'entity id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Pass the id of a customer entity (cdp_traits.customer_entities.id).';
	END IF;
	IF live IS NULL THEN
		IF EXISTS (SELECT FROM cdp_traits.entity_merges m WHERE m.merged_id = asked) THEN
			RAISE EXCEPTION 'customer entity % no longer exists', asked
				USING ERRCODE = 'undefined_object',
					  DETAIL = 'It was absorbed by a merge, and the entity it ended up in has since lost all its events.',
					  HINT = 'Live entity ids are in cdp_traits.customer_entities.';
		END IF;
		RAISE EXCEPTION 'customer entity % does not exist', asked
			USING ERRCODE = 'undefined_object',
				  HINT = 'Live entity ids are in cdp_traits.customer_entities; ids absorbed by merges are in cdp_traits.entity_merges.';
	END IF;
	RETURN live;
END;
$$;
COMMENT ON FUNCTION cdp_traits._live_entity(uuid) IS
	'internal: the live entity an id belongs to (merges followed), or an error saying why there is none';

-- The graph of the entity an id now belongs to (following merges), one row
-- per node or edge in display order, with the row label and the DOT label.
CREATE FUNCTION cdp_traits._explain_graph(id uuid)
RETURNS TABLE(ord bigint, kind text, node text, label text, linked_to text, dot_label text, entity uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	asked uuid := $1;
BEGIN
	-- (the entity is resolved in the statement that reads it: one snapshot)
	RETURN QUERY
	WITH RECURSIVE
	target(live) AS (SELECT cdp_traits._live_entity(asked)),
	absorbed(merged_id, into_id, merged_at, depth) AS (
		SELECT m.merged_id, m.into_id, m.merged_at, 1
		  FROM cdp_traits.entity_merges m, target t WHERE m.into_id = t.live
		UNION ALL
		SELECT m.merged_id, m.into_id, m.merged_at, a.depth + 1
		  FROM cdp_traits.entity_merges m JOIN absorbed a ON m.into_id = a.merged_id
		 WHERE a.depth < 100000
	),
	ev AS (
		SELECT e.*, (e.attribute_id IS NOT NULL) AS has_ident,
			   'event:' || e.event_id AS ev_node,
			   pg_catalog.to_char(e.event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' AS at,
			   CASE WHEN e.attribute_id IS NOT NULL THEN
				   CASE WHEN e.blocked THEN 'blocked:' ELSE 'identifier:' END ||
				   pg_catalog.jsonb_build_array(e.attribute_id, e.value)::text
			   END AS ident_node
		  FROM target t, cdp_traits._explain_events(t.live) e
	),
	events AS (
		SELECT DISTINCT ON (ev.event_id) ev.event_id, ev.ev_node, ev.source_id, ev.type,
			   ev.version, ev.event_time, ev.at
		  FROM ev ORDER BY ev.event_id
	),
	idents AS (
		SELECT DISTINCT ON (ev.ident_node) ev.ident_node, ev.attribute_id, ev.value, ev.blocked,
			   m.customer_entity_id AS stored_in
		  FROM ev
		  LEFT JOIN cdp_traits.matching m
			ON m.attribute_id = ev.attribute_id COLLATE "C" AND m.value = ev.value COLLATE "C"
		 WHERE ev.has_ident
		 ORDER BY ev.ident_node
	),
	figures AS (
		SELECT (SELECT pg_catalog.count(*) FROM events) AS n_events,
			   (SELECT pg_catalog.count(*) FROM idents WHERE NOT idents.blocked) AS n_idents,
			   (SELECT pg_catalog.count(*) FROM absorbed) AS n_absorbed
	),
	graph AS (
		-- the live entity
		SELECT 1 AS part, 0::bigint AS depth, NULL::timestamptz AS t1, ''::text AS k1, ''::text AS k2,
			   'entity'::text AS kind, 'entity:' || t.live AS node,
			   pg_catalog.format('entity %s: events %s, identifiers %s, absorbed ids %s%s',
								 t.live, f.n_events, f.n_idents, f.n_absorbed,
								 CASE WHEN asked <> t.live THEN pg_catalog.format(' (asked for %s, which it absorbed)', asked) ELSE '' END) AS label,
			   NULL::text AS linked_to,
			   pg_catalog.format(E'entity %s\nevents %s, identifiers %s, absorbed ids %s',
								 t.live, f.n_events, f.n_idents, f.n_absorbed) AS dot_label
		  FROM figures f, target t
		UNION ALL
		-- ids absorbed into it, directly or through other absorbed ids
		SELECT 2, a.depth, a.merged_at, a.merged_id::text, '',
			   'merged', 'entity:' || a.merged_id,
			   pg_catalog.format('entity %s: merged into %s at %s', a.merged_id, a.into_id,
								 pg_catalog.to_char(a.merged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
			   'entity:' || a.into_id,
			   pg_catalog.format(E'entity %s\nmerged %s', a.merged_id,
								 pg_catalog.to_char(a.merged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC')
		  FROM absorbed a
		UNION ALL
		-- its events
		SELECT 3, 0, e.event_time, e.event_id, '',
			   'event', e.ev_node,
			   pg_catalog.format('%s / %s / %s at %s', e.source_id, e.type, e.version, e.at),
			   'entity:' || t.live,
			   pg_catalog.format(E'event %s\n%s / %s / %s\n%s', e.event_id, e.source_id, e.type, e.version, e.at)
		  FROM events e, target t
		UNION ALL
		-- the identifiers the rules read from them
		SELECT 4, CASE WHEN i.blocked THEN 1 ELSE 0 END, NULL, i.attribute_id, i.value,
			   CASE WHEN i.blocked THEN 'blocked' ELSE 'identifier' END, i.ident_node,
			   i.attribute_id || ': ' || i.value || coalesce(' ' || n.note, ''),
			   NULL,
			   i.attribute_id || ': ' || i.value || coalesce(E'\n' || n.note, '')
		  FROM idents i
		  CROSS JOIN target t
		  CROSS JOIN LATERAL (SELECT CASE
				WHEN i.blocked THEN '(blocklisted: does not link)'
				WHEN i.stored_in IS NULL THEN '(not stored: the rules changed since the last restitch())'
				WHEN i.stored_in <> t.live THEN pg_catalog.format('(stored for entity %s: the rules changed since the last restitch())', i.stored_in)
			END AS note) n
		UNION ALL
		-- which event carries which identifier
		SELECT 5, 0, ev.event_time, ev.event_id, pg_catalog.jsonb_build_array(ev.attribute_id, ev.value)::text,
			   'link', ev.ev_node,
			   ev.attribute_id || CASE WHEN ev.blocked THEN ' (blocklisted)' ELSE '' END,
			   ev.ident_node,
			   NULL
		  FROM (SELECT DISTINCT ev.event_time, ev.event_id, ev.ev_node, ev.attribute_id,
					   ev.value, ev.blocked, ev.ident_node
				  FROM ev WHERE ev.has_ident) ev
	)
	SELECT pg_catalog.row_number() OVER (ORDER BY g.part, g.depth, g.t1, g.k1, g.k2),
		   g.kind, g.node, g.label, g.linked_to, g.dot_label, t.live
	  FROM graph g, target t
	 ORDER BY 1;
END;
$$;
COMMENT ON FUNCTION cdp_traits._explain_graph(uuid) IS
	'internal: the identity graph of the entity an id belongs to, with row and DOT labels';

CREATE FUNCTION cdp_traits.explain_entity(id uuid)
RETURNS TABLE(kind text, node text, label text, linked_to text)
LANGUAGE sql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
	SELECT g.kind, g.node, g.label, g.linked_to
	  FROM cdp_traits._explain_graph($1) g
	 ORDER BY g.ord
$$;
COMMENT ON FUNCTION cdp_traits.explain_entity(uuid) IS
	'the identity graph behind an entity (following merges): its absorbed ids, events, identifiers and the links between them';

CREATE FUNCTION cdp_traits.explain_entity(id uuid, format text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	result text;
BEGIN
	IF format IS NULL OR pg_catalog.lower(format) <> 'dot' THEN
		RAISE EXCEPTION 'unknown explain format "%"', format
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use format => ''dot'' for Graphviz DOT text, or call explain_entity(id) without a format for rows.';
	END IF;
	SELECT pg_catalog.format(E'graph %s {\n', cdp_traits._dot_quote('cdp_traits entity ' || min(g.entity::text)))
		|| E'\tgraph [labelloc=t, fontname="Helvetica", label=' || cdp_traits._dot_quote('why these events are one customer (entity ' || min(g.entity::text) || ')') || E'];\n'
		|| E'\tnode [fontname="Helvetica", fontsize=10];\n'
		|| E'\tedge [fontname="Helvetica", fontsize=9];\n'
		|| pg_catalog.string_agg(E'\t' || g.stmt || E';\n', '' ORDER BY g.ord, g.sub)
		|| '}'
	  INTO result
	  FROM (
		WITH x AS MATERIALIZED (SELECT * FROM cdp_traits._explain_graph($1))
		-- a node statement for every row but the links
		SELECT x.ord, 0 AS sub, x.entity,
			   cdp_traits._dot_quote(x.node) || ' [' || CASE x.kind
					WHEN 'entity' THEN 'shape=box, style=bold'
					WHEN 'merged' THEN 'shape=box, style=dashed, color=gray40'
					WHEN 'event' THEN 'shape=ellipse'
					WHEN 'identifier' THEN 'shape=box, style=rounded'
					WHEN 'blocked' THEN 'shape=box, style="rounded,dashed", color=gray50, fontcolor=gray50'
				END || ', label=' || cdp_traits._dot_quote(x.dot_label) || ']' AS stmt
		  FROM x
		 WHERE x.kind <> 'link'
		UNION ALL
		-- an edge statement for every link and every node hanging off another
		SELECT x.ord, 1, x.entity,
			   cdp_traits._dot_quote(x.node) || ' -- ' || cdp_traits._dot_quote(x.linked_to) || CASE
					WHEN x.kind = 'merged' THEN ' [style=dashed, color=gray40, label="merged into"]'
					WHEN x.kind = 'event' THEN ' [style=dotted, color=gray70]'
					WHEN x.kind = 'link' AND x.linked_to LIKE 'blocked:%' THEN ' [style=dashed, color=gray50]'
					ELSE ''
				END
		  FROM x
		 WHERE x.linked_to IS NOT NULL
	  ) g;
	RETURN result;
END;
$$;
COMMENT ON FUNCTION cdp_traits.explain_entity(uuid, text) IS
	'the identity graph behind an entity as Graphviz DOT text (format => ''dot'')';

/*
 * bridging_identifiers: the identifiers that hold entities together.  An
 * identifier is a bridge when blocklisting its value would split its entity
 * in two or more (an articulation point of the event-identifier graph, found
 * in C in one pass, src/stitch_bridges.c).  Ranked by the kinds of
 * identifier of which two or more of those parts hold values of their own
 * (conflicts: two user ids joined by one device), then by how many events it
 * keeps apart from the largest part, so that a shared device or a test
 * address gluing customers together comes first.
 */
CREATE FUNCTION cdp_traits._bridging_identifiers(entities uuid[])
RETURNS TABLE(customer_entity_id uuid, attribute_id text, value text, conflicts text[],
			  events bigint, entity_events bigint, entities_after integer, largest_after bigint,
			  unstitched_after bigint)
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_bridging_identifiers';
COMMENT ON FUNCTION cdp_traits._bridging_identifiers(uuid[]) IS
	'internal: the bridging identifiers of the events of the given entities (NULL: of every event)';

CREATE FUNCTION cdp_traits.bridging_identifiers(id uuid DEFAULT NULL)
RETURNS TABLE(customer_entity_id uuid, attribute_id text, value text, conflicts text[],
			  events bigint, entity_events bigint, entities_after integer, largest_after bigint,
			  events_split_off bigint, unstitched_after bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
#variable_conflict use_column
BEGIN
	-- (the entity is resolved in the statement that reads it: one snapshot)
	RETURN QUERY
	SELECT b.customer_entity_id, b.attribute_id, b.value, b.conflicts, b.events,
		   b.entity_events, b.entities_after, b.largest_after,
		   b.entity_events - b.largest_after - b.unstitched_after, b.unstitched_after
	  FROM cdp_traits._bridging_identifiers(
			CASE WHEN $1 IS NOT NULL THEN ARRAY[cdp_traits._live_entity($1)] END) b
	 ORDER BY pg_catalog.cardinality(b.conflicts) DESC, 9 DESC, b.entities_after DESC,
			  b.entity_events DESC, b.customer_entity_id, b.attribute_id, b.value;
END;
$$;
COMMENT ON FUNCTION cdp_traits.bridging_identifiers(uuid) IS
	'identifiers whose blocklisting would split their entity (of the entity an id belongs to, or of every entity when NULL): the kinds of identifier the parts would each hold, how many entities it would become, the largest, the events split off it and those left without identifiers';
-- END generated: src/sql/15_explain.sql

-- BEGIN generated: src/sql/60_meiro.sql
/*
 * import_meiro_config: copy a Meiro CPS setup (stitching configuration,
 * attribute definitions, context) into cdp_traits.
 *
 * Assumed Meiro tables (extra columns are ignored; every column is read as
 * text, definitions as jsonb):
 *   <cdp_schema>.events(id, source_id, type, version)     event types
 *   <ps_schema>.stitching_attributes_config(attribute_id, event_id,
 *                                           value_expression)
 *   <attr_schema>.attributes(id, definition)
 *   <attr_schema>.context(key, value, query)
 * Each row is written in a subtransaction, through the triggers that check
 * rules, definitions and context queries: a bad row is reported and skipped,
 * the good ones are imported.  Rows already present unchanged are reported as
 * such (a re-run imports nothing); rows whose key exists with a different
 * content are reported as conflicts and left alone.
 */
CREATE FUNCTION cdp_traits.import_meiro_config(cdp_schema name, ps_schema name, attr_schema name)
RETURNS TABLE(kind text, id text, status text, message text)
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET client_min_messages = warning
AS $$
#variable_conflict use_column
DECLARE
	r record;
	def jsonb;
	n_rules integer := 0;
	src jsonb;
	pending text[];
	still text[];
	errors jsonb;
BEGIN
	IF cdp_schema IS NULL OR ps_schema IS NULL OR attr_schema IS NULL THEN
		RAISE EXCEPTION 'schema names must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Call import_meiro_config(cdp_schema, ps_schema, attr_schema), e.g. (''cdp_ce'', ''cdp_ps'', ''cdp_attr'').';
	END IF;

	-- stitching rules: one per (attribute, event type) of stitching_attributes_config.
	-- The source rows are read first (a table that cannot be read is reported),
	-- then written one by one.
	BEGIN
		EXECUTE pg_catalog.format(
			'SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q) ORDER BY q.attribute_id, q.event_id, q.value_expression)
			   FROM (SELECT c.attribute_id::text AS attribute_id, c.event_id::text AS event_id,
							c.value_expression::text AS value_expression,
							e.id IS NOT NULL AS known, e.source_id::text AS source_id,
							e.type::text AS type, e.version::text AS version
					   FROM %I.stitching_attributes_config c
					   LEFT JOIN %I.events e ON e.id::text = c.event_id::text) q',
			ps_schema, cdp_schema) INTO src;
	EXCEPTION WHEN OTHERS THEN
		kind := 'stitching_rule'; id := NULL; status := 'error';
		message := pg_catalog.format('cannot read %I.stitching_attributes_config with %I.events: %s',
									 ps_schema, cdp_schema, SQLERRM);
		RETURN NEXT;
	END;
	FOR r IN SELECT * FROM pg_catalog.jsonb_to_recordset(coalesce(src, '[]'))
			 AS x(attribute_id text, event_id text, value_expression text, known boolean,
				  source_id text, type text, version text) LOOP
		kind := 'stitching_rule';
		id := pg_catalog.format('%s @ %s', r.attribute_id, r.event_id);
		IF NOT r.known THEN
			status := 'error';
			message := pg_catalog.format('event id %s is not in %I.events', r.event_id, cdp_schema);
		ELSIF EXISTS (SELECT FROM cdp_traits.stitching_rules s
					   WHERE s.attribute_id = r.attribute_id
						 AND s.source_id IS NOT DISTINCT FROM r.source_id
						 AND s.type IS NOT DISTINCT FROM r.type
						 AND s.version IS NOT DISTINCT FROM r.version
						 AND s.value_expression = r.value_expression) THEN
			status := 'present';
			message := pg_catalog.format('rule for %s / %s / %s already present', r.source_id, r.type, r.version);
		ELSE
			BEGIN
				INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, type, version, value_expression)
				VALUES (r.attribute_id, r.source_id, r.type, r.version, r.value_expression);
				status := 'imported';
				message := pg_catalog.format('rule for %s / %s / %s', r.source_id, r.type, r.version);
				n_rules := n_rules + 1;
			EXCEPTION WHEN unique_violation THEN
				-- written meanwhile by a concurrent run, which committed (the
				-- unique index is on everything the check above compares)
				status := 'present';
				message := pg_catalog.format('rule for %s / %s / %s already present', r.source_id, r.type, r.version);
			WHEN OTHERS THEN
				status := 'error';
				message := SQLERRM;
			END;
		END IF;
		RETURN NEXT;
	END LOOP;
	IF n_rules > 0 THEN
		kind := 'stitching_rule'; id := NULL; status := 'note';
		message := 'the rules apply to new events at once; run cdp_traits.restitch() to apply them to stored events';
		RETURN NEXT;
	END IF;

	-- attribute definitions: in passes, so that an audience may follow the
	-- attributes its condition names, whatever the order of ids
	src := NULL;
	BEGIN
		EXECUTE pg_catalog.format(
			'SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(''id'', a.id::text, ''definition'', a.definition::text)
										 ORDER BY a.id::text)
			   FROM %I.attributes a', attr_schema) INTO src;
	EXCEPTION WHEN OTHERS THEN
		kind := 'attribute'; id := NULL; status := 'error';
		message := pg_catalog.format('cannot read %I.attributes: %s', attr_schema, SQLERRM);
		RETURN NEXT;
	END;
	-- (a row without an id, which the passes below cannot name)
	FOR r IN SELECT * FROM pg_catalog.jsonb_to_recordset(coalesce(src, '[]')) AS x(id text, definition text)
			  WHERE x.id IS NULL LOOP
		kind := 'attribute'; id := NULL; status := 'error'; message := 'attribute id is null';
		RETURN NEXT;
	END LOOP;
	errors := '{}';
	still := '{}';
	SELECT coalesce(pg_catalog.array_agg(x.id), '{}') INTO pending
	  FROM pg_catalog.jsonb_to_recordset(coalesce(src, '[]')) AS x(id text, definition text)
	 WHERE x.id IS NOT NULL;
	WHILE pg_catalog.cardinality(pending) > 0 LOOP
		still := '{}';
		FOR r IN SELECT * FROM pg_catalog.jsonb_to_recordset(coalesce(src, '[]')) AS x(id text, definition text)
				  WHERE x.id = ANY (pending) LOOP
			kind := 'attribute';
			id := r.id;
			def := NULL;
			BEGIN
				def := r.definition::jsonb;
				IF def IS NULL THEN
					status := 'error'; message := 'definition is null';
				END IF;
				-- looked at again after a unique violation: a concurrent run
				-- wrote the row meanwhile, and committed
				FOR attempt IN 1 .. 2 LOOP
					EXIT WHEN def IS NULL;
					IF EXISTS (SELECT FROM cdp_traits.attributes a WHERE a.id = r.id AND a.definition = def) THEN
						status := 'present'; message := 'same definition already present';
					ELSIF EXISTS (SELECT FROM cdp_traits.attributes a WHERE a.id = r.id) THEN
						status := 'conflict'; message := 'an attribute with this id has a different definition; not changed';
					ELSIF attempt = 1 THEN
						BEGIN
							INSERT INTO cdp_traits.attributes (id, definition) VALUES (r.id, def);
							status := 'imported'; message := def->>'type';
						EXCEPTION WHEN unique_violation THEN
							CONTINUE;
						END;
					ELSE
						status := 'error'; message := 'written and removed by a concurrent session';
					END IF;
					EXIT;
				END LOOP;
			EXCEPTION WHEN OTHERS THEN
				status := 'error'; message := SQLERRM;
			END;
			IF status = 'error' AND def IS NOT NULL THEN
				-- perhaps it names an attribute imported later: try again next pass
				still := still || r.id;
				errors := errors || pg_catalog.jsonb_build_object(r.id, message);
			ELSE
				RETURN NEXT;
			END IF;
		END LOOP;
		EXIT WHEN pg_catalog.cardinality(still) = pg_catalog.cardinality(pending);
		pending := still;
	END LOOP;
	-- what failed in the last pass, with its error
	FOREACH id IN ARRAY still LOOP
		kind := 'attribute'; status := 'error'; message := errors->>id;
		RETURN NEXT;
	END LOOP;

	-- context: a key with a query is refreshed by the next refresh_context()
	src := NULL;
	BEGIN
		EXECUTE pg_catalog.format(
			'SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q) ORDER BY q.key)
			   FROM (SELECT c.key::text AS key, c.value::text AS value,
							NULLIF(c.query::text, '''') AS query FROM %I.context c) q', attr_schema) INTO src;
	EXCEPTION WHEN OTHERS THEN
		kind := 'context'; id := NULL; status := 'error';
		message := pg_catalog.format('cannot read %I.context: %s', attr_schema, SQLERRM);
		RETURN NEXT;
	END;
	FOR r IN SELECT * FROM pg_catalog.jsonb_to_recordset(coalesce(src, '[]')) AS x(key text, value text, query text) LOOP
		kind := 'context';
		id := r.key;
		-- looked at again after a unique violation: a concurrent run wrote
		-- the key meanwhile, and committed
		FOR attempt IN 1 .. 2 LOOP
			IF EXISTS (SELECT FROM cdp_traits.context c WHERE c.key = r.key
						AND c.query IS NOT DISTINCT FROM r.query
						AND (r.query IS NOT NULL OR c.value IS NOT DISTINCT FROM r.value)) THEN
				status := 'present'; message := 'same key already present';
			ELSIF EXISTS (SELECT FROM cdp_traits.context c WHERE c.key = r.key) THEN
				status := 'conflict'; message := 'a context key with this name has a different value or query; not changed';
			ELSIF attempt = 1 THEN
				BEGIN
					INSERT INTO cdp_traits.context (key, value, query) VALUES (r.key, r.value, r.query);
					status := 'imported';
					message := CASE WHEN r.query IS NULL THEN 'value' ELSE 'query (run by the next refresh_context())' END;
				EXCEPTION WHEN unique_violation THEN
					CONTINUE;
				WHEN OTHERS THEN
					status := 'error'; message := SQLERRM;
				END;
			ELSE
				status := 'error'; message := 'written and removed by a concurrent session';
			END IF;
			EXIT;
		END LOOP;
		RETURN NEXT;
	END LOOP;
END;
$$;
COMMENT ON FUNCTION cdp_traits.import_meiro_config(name, name, name) IS
	'copy a Meiro CPS setup (stitching_attributes_config, attributes, context) into cdp_traits; one report row per item';
-- END generated: src/sql/60_meiro.sql

-- health(), new in 0.2.0: as in 85_health.sql (granted with the other routines
-- new in 0.2.0, after the generated functions).
-- BEGIN generated: src/sql/85_health.sql
/*
 * health(): one place for a DBA or a monitoring system to see whether
 * cdp_traits is doing its work in this database: the events table, the
 * rules, the background worker, the jobs, the entities waiting for their
 * attributes, failing definitions and context keys, and the extension's
 * version.  One row per item, status 'ok', 'warning' or 'error', with what
 * to do.  It reads only small tables and catalogs (and counts the entities
 * waiting, a scan of customer_entities); it writes nothing.
 */

-- Whether the server preloaded the library (and so runs the worker), and the
-- databases the worker serves (cdp_traits.database as the launcher parses
-- it; NULL if it does not parse).
CREATE FUNCTION cdp_traits._worker_config(OUT preloaded boolean, OUT databases text[])
LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_worker_config_sql';
COMMENT ON FUNCTION cdp_traits._worker_config() IS
	'internal: whether the library is preloaded, and the databases listed in cdp_traits.database, as the worker reads them';

CREATE FUNCTION cdp_traits.health()
RETURNS TABLE(item text, status text, detail text, hint text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, cdp_traits, pg_temp
SET intervalstyle = postgres
AS $$
DECLARE
	src record;
	n bigint;
	m bigint;
	t timestamptz;
	naptime interval;
	enabled boolean;
	preloaded boolean;
	launcher boolean;
	served text[];
	serves boolean := false;
	r record;
	names text;
BEGIN
	-- (a C function first: it loads the library, which defines the settings)
	SELECT w.preloaded, w.databases INTO preloaded, served FROM cdp_traits._worker_config() w;
	naptime := pg_catalog.current_setting('cdp_traits.naptime')::interval;
	enabled := pg_catalog.current_setting('cdp_traits.enabled')::boolean;

	-- the events table
	SELECT * INTO src FROM cdp_traits.events_source;
	IF NOT FOUND THEN
		RETURN QUERY SELECT 'events table', 'error', 'no events table is attached: nothing is stitched',
			'Attach the customer events table with cdp_traits.attach_events(''schema.table'').';
	ELSIF NOT src.attached THEN
		RETURN QUERY SELECT 'events table', 'warning',
			pg_catalog.format('%s is detached: its new events are not stitched', src.events),
			'Attach it again with cdp_traits.attach_events(), which stitches its events, those written meanwhile included.';
	ELSE
		RETURN QUERY SELECT 'events table', 'ok',
			pg_catalog.format('%s, attached at %s', src.events,
							  pg_catalog.to_char(src.attached_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
			NULL::text;
	END IF;

	-- the stitching rules
	SELECT pg_catalog.count(*), pg_catalog.count(DISTINCT x.attribute_id) INTO n, m
	  FROM cdp_traits.stitching_rules x;
	IF n = 0 THEN
		RETURN QUERY SELECT 'stitching rules', 'warning', 'no stitching rules: no event gets an entity',
			'Insert the identifier rules into cdp_traits.stitching_rules, then run cdp_traits.restitch().';
	ELSE
		RETURN QUERY SELECT 'stitching rules', 'ok',
			pg_catalog.format('%s rules, %s kinds of identifier', n, m), NULL::text;
	END IF;

	-- the background worker
	launcher := EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'cdp_traits launcher');
	serves := pg_catalog.current_database() = ANY (served);
	SELECT max(j.finished_at) INTO t FROM cdp_traits.job_runs j WHERE j.run_by = 'worker';
	IF pg_catalog.pg_is_in_recovery() THEN
		RETURN QUERY SELECT 'worker', 'ok',
			'a standby: the worker runs on the primary (here it starts if this server is promoted)', NULL::text;
	ELSIF NOT preloaded AND NOT launcher THEN
		RETURN QUERY SELECT 'worker', 'ok',
			'no background worker (cdp_traits is not in shared_preload_libraries): jobs run when cdp_traits.run_jobs() is called',
			NULL::text;
	ELSIF NOT launcher THEN
		RETURN QUERY SELECT 'worker', 'error', 'the cdp_traits launcher is not running',
			'Look in the server log for why it stopped (max_worker_processes, a crash); it starts with the server.';
	ELSIF NOT enabled THEN
		RETURN QUERY SELECT 'worker', 'warning', 'the worker is disabled (cdp_traits.enabled = off): no job runs on a schedule',
			'ALTER SYSTEM SET cdp_traits.enabled = on; SELECT pg_reload_conf();';
	ELSIF served IS NULL OR NOT serves THEN
		RETURN QUERY SELECT 'worker', 'warning',
			pg_catalog.format('the worker does not serve this database (cdp_traits.database = %L)',
							  pg_catalog.current_setting('cdp_traits.database')),
			'Add it to cdp_traits.database (ALTER SYSTEM, then pg_reload_conf()), or run cdp_traits.run_jobs() on a schedule of your own.';
	ELSIF t IS NULL THEN
		RETURN QUERY SELECT 'worker', 'warning', 'the worker serves this database but has not finished a job here yet',
			'If this lasts longer than cdp_traits.naptime, look in the server log.';
	ELSIF t < pg_catalog.now() - 3 * naptime - interval '1 minute'
		  AND NOT EXISTS (SELECT FROM cdp_traits.job_runs j WHERE j.run_by = 'worker' AND j.status = 'running'
							 AND j.finished_at IS NULL AND j.started_at > t) THEN
		RETURN QUERY SELECT 'worker', 'warning',
			pg_catalog.format('the worker''s last job here finished %s ago (cdp_traits.naptime = %s)',
							  pg_catalog.date_trunc('second', pg_catalog.now() - t), pg_catalog.current_setting('cdp_traits.naptime')),
			'Look in the server log and pg_stat_activity for the cdp_traits worker of this database.';
	ELSE
		RETURN QUERY SELECT 'worker', 'ok',
			pg_catalog.format('serves this database every %s; its last job finished at %s',
							  pg_catalog.current_setting('cdp_traits.naptime'),
							  pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
			NULL::text;
	END IF;

	-- each job's latest run
	FOR r IN SELECT DISTINCT ON (j.job) j.job, j.status, j.started_at, j.finished_at, j.error
			   FROM cdp_traits.job_runs j ORDER BY j.job, j.id DESC LOOP
		IF r.status = 'failed' THEN
			RETURN QUERY SELECT 'job ' || r.job, 'error',
				pg_catalog.format('its last run failed: %s', r.error),
				'See cdp_traits.job_runs (detail holds the error''s SQLSTATE, detail and hint).';
		ELSIF r.status = 'partial' THEN
			RETURN QUERY SELECT 'job ' || r.job, 'warning',
				pg_catalog.format('its last run finished, but part of it failed: %s', r.error),
				'See the failing attributes and context keys below, and cdp_traits.job_runs.';
		ELSIF r.status = 'running' THEN
			RETURN QUERY SELECT 'job ' || r.job, 'ok',
				pg_catalog.format('running since %s',
								  pg_catalog.to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
				NULL::text;
		ELSE
			RETURN QUERY SELECT 'job ' || r.job, 'ok',
				pg_catalog.format('last run succeeded at %s',
								  pg_catalog.to_char(r.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
				NULL::text;
		END IF;
	END LOOP;

	-- entities waiting for their attributes
	SELECT pg_catalog.count(*), min(c.modified) INTO n, t
	  FROM cdp_traits.customer_entities c WHERE c.calculated IS NULL;
	names := CASE WHEN n = 0 THEN 'none waiting'
				  ELSE pg_catalog.format('%s %s, the oldest since %s ago', n,
										 CASE WHEN n = 1 THEN 'entity waits for its attributes'
											  ELSE 'entities wait for their attributes' END,
										 pg_catalog.date_trunc('second', pg_catalog.now() - t)) END;
	IF n > 0 AND serves AND launcher AND enabled
	   AND t < pg_catalog.now() - 3 * naptime - interval '10 minutes' THEN
		RETURN QUERY SELECT 'entities to calculate', 'warning', names,
			'The worker''s calculate_attributes job is behind or failing: see the job rows above.';
	ELSE
		RETURN QUERY SELECT 'entities to calculate', 'ok', names, NULL::text;
	END IF;

	-- definitions whose latest calculation failed
	SELECT pg_catalog.count(*), pg_catalog.string_agg(f.attribute_id, ', ' ORDER BY f.attribute_id)
	  INTO n, names
	  FROM (SELECT DISTINCT ON (ra.attribute_id) ra.attribute_id, ra.error
			  FROM cdp_traits.calculation_run_attributes ra
			  JOIN cdp_traits.attributes d ON d.id = ra.attribute_id
			 ORDER BY ra.attribute_id, ra.run_id DESC) f
	 WHERE f.error IS NOT NULL;
	SELECT pg_catalog.count(*) INTO m FROM cdp_traits.attributes;
	IF n > 0 THEN
		RETURN QUERY SELECT 'attributes', 'warning',
			pg_catalog.format('%s of %s definitions failed in their last calculation: %s', n, m, names),
			'Their errors are in cdp_traits.calculation_run_attributes (error, failing_entity); they keep their old values until fixed.';
	ELSE
		RETURN QUERY SELECT 'attributes', 'ok', pg_catalog.format('%s definitions, none failing', m), NULL::text;
	END IF;

	-- context keys whose refresh failed
	SELECT pg_catalog.count(*) FILTER (WHERE x.error IS NOT NULL),
		   pg_catalog.string_agg(x.key, ', ' ORDER BY x.key) FILTER (WHERE x.error IS NOT NULL),
		   pg_catalog.count(*)
	  INTO n, names, m
	  FROM cdp_traits.context x;
	IF n > 0 THEN
		RETURN QUERY SELECT 'context', 'warning',
			pg_catalog.format('%s of %s keys failed in their last refresh: %s', n, m, names),
			'Their errors are in cdp_traits.context (error, error_at); they keep their old values until fixed.';
	ELSE
		RETURN QUERY SELECT 'context', 'ok', pg_catalog.format('%s keys, none failing', m), NULL::text;
	END IF;

	-- the extension's version: its objects, what is installed, the library loaded
	SELECT e.extversion, a.default_version INTO r
	  FROM pg_catalog.pg_extension e
	  LEFT JOIN pg_catalog.pg_available_extensions a ON a.name = e.extname
	 WHERE e.extname = 'cdp_traits';
	IF r.extversion IS DISTINCT FROM r.default_version THEN
		RETURN QUERY SELECT 'version', 'warning',
			pg_catalog.format('the extension is at %s, the installed files at %s', r.extversion, r.default_version),
			'ALTER EXTENSION cdp_traits UPDATE; (see README, Upgrades).';
	ELSIF cdp_traits.version() IS DISTINCT FROM r.extversion THEN
		RETURN QUERY SELECT 'version', 'warning',
			pg_catalog.format('the extension is at %s, the library loaded at %s', r.extversion, cdp_traits.version()),
			'Restart the server after installing a new version (sessions opened since load the new library only when it is not preloaded).';
	ELSE
		RETURN QUERY SELECT 'version', 'ok', r.extversion, NULL::text;
	END IF;
END;
$$;
COMMENT ON FUNCTION cdp_traits.health() IS
	'whether cdp_traits does its work here: events table, rules, worker, jobs, entities waiting, failing definitions and context keys, version; one row per item, status ok/warning/error, with a hint';
-- END generated: src/sql/85_health.sql

-- The calculation's object of an entity's values, and what its changes do to
-- the counts, in C (as in 40_attributes.sql; granted with the other routines
-- new in 0.2.0, after the generated functions).
CREATE FUNCTION cdp_traits._value_deltas_trans(internal, jsonb, jsonb, text[], boolean[]) RETURNS internal
LANGUAGE c CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'cdp_value_deltas_trans';
CREATE FUNCTION cdp_traits._value_deltas_final(internal) RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_value_deltas_final';
CREATE FUNCTION cdp_traits._merge_values(old jsonb, new jsonb, replaced text[]) RETURNS jsonb
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_merge_values';
CREATE FUNCTION cdp_traits._values_changed(old jsonb, new jsonb, replaced text[]) RETURNS boolean
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_values_changed';
CREATE FUNCTION cdp_traits._jsonb_object_of(keys text[], VARIADIC "any") RETURNS jsonb
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_jsonb_object_of';
CREATE AGGREGATE cdp_traits._value_deltas(old jsonb, new jsonb, keys text[], categorical boolean[]) (
	sfunc = cdp_traits._value_deltas_trans, stype = internal,
	finalfunc = cdp_traits._value_deltas_final
);

-- The counts are applied by _count_changes from _value_deltas: 0.1.0's
-- helpers that built count statements go.
DROP FUNCTION cdp_traits._count_ctes(text);
DROP FUNCTION cdp_traits._count_cleanup();

-- The objects of values are built by _jsonb_object_of: 0.1.0's
-- _jsonb_object goes (its C function stays for 0.1.0's install script).
DROP FUNCTION cdp_traits._jsonb_object(text[], jsonb[]);

-- A value's definition version is its attribute's calculated_version (see
-- 40_attributes.sql): the per-entity map of versions goes.
CREATE OR REPLACE VIEW cdp_traits.customer_attributes AS
SELECT ea.customer_entity_id, kv.key AS attribute_id, kv.value, ea.calculated_at,
	   a.calculated_version AS definition_version, ea.run_id
  FROM cdp_traits.entity_attributes ea
 CROSS JOIN LATERAL pg_catalog.jsonb_each(ea.vals) kv
  LEFT JOIN cdp_traits.attributes a ON a.id = kv.key;
ALTER TABLE cdp_traits.entity_attributes DROP COLUMN versions;

-- Descriptions of the aggregate state type's input and output functions.
COMMENT ON FUNCTION cdp_traits.agg_state_in(cstring) IS
	'input of agg_state: \x and the portable binary form in hex (validated)';
COMMENT ON FUNCTION cdp_traits.agg_state_out(cdp_traits.agg_state) IS
	'output of agg_state: \x and the portable binary form in hex';
COMMENT ON FUNCTION cdp_traits.agg_state_recv(internal) IS
	'binary input of agg_state (validated)';
COMMENT ON FUNCTION cdp_traits.agg_state_send(cdp_traits.agg_state) IS
	'binary output of agg_state: element type and collation by name, values in their send format';

-- uuid event ids are stored as their 22-character keys (see src/event_key.c
-- and 10_stitching.sql).  The update leaves an attached table's assignments
-- as 0.1.0 stored them, by text (uuid_keys false), and the library goes on
-- so: it may not replace customer_events, which views of users may use;
-- rekey_events() does it, outside the update.
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
CREATE FUNCTION cdp_traits.rekey_events() RETURNS bigint
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_rekey_events';
COMMENT ON FUNCTION cdp_traits.rekey_events() IS
	'store the assignments of uuid events by key, as attach_events does since 0.2.0 (after an update from 0.1.0); returns the rows rewritten';
COMMENT ON TABLE cdp_traits.event_entities IS
	'the entity of each event that has an identifier (event id as text; a uuid id as its key, see event_key(uuid))';
-- Stitching in replica sessions (logical replication), as in
-- 10_stitching.sql; the triggers go on an attached table at the end.
CREATE FUNCTION cdp_traits.stitch_event_row() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_stitch_event_row';
COMMENT ON FUNCTION cdp_traits.stitch_event_row() IS
	'row trigger on the attached events table for replica sessions (logical replication): stitches each row';
CREATE FUNCTION cdp_traits._install_replica_triggers() RETURNS void
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_install_replica_triggers';
-- Around every DDL command (as in 10_stitching.sql)
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
-- (the event triggers fire in replica sessions too, as in 10_stitching.sql)
ALTER EVENT TRIGGER cdp_traits_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_ddl_end ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_new_partition ENABLE ALWAYS;
-- (as in 40_attributes.sql)
CREATE FUNCTION cdp_traits._event_id_of_key(key_sql text) RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'cdp_event_id_of_key';
ALTER TABLE cdp_traits.events_source ADD COLUMN uuid_keys boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN cdp_traits.events_source.uuid_keys IS
	'event_entities stores the uuid ids of the events by key (see event_key(uuid)), not by text';

-- Stored aggregate states of entities with many events (as in
-- 40_attributes.sql and 30_context.sql; granted after the generated
-- functions).  _compile gains their forms as OUT columns: it is dropped
-- here and created again with the functions changed since 0.1.0.
CREATE TABLE cdp_traits.entity_states (
	customer_entity_id uuid PRIMARY KEY,
	signature text NOT NULL,		-- md5 of the compiled attributes the states are of
	n bigint NOT NULL,				-- events the states hold
	states jsonb NOT NULL			-- {attribute id: to_jsonb(state)}
);
COMMENT ON TABLE cdp_traits.entity_states IS
	'internal: aggregate states of entities with many events, so that a calculation reads only their new events (a cache)';
CREATE TABLE cdp_traits.entity_state_events (
	customer_entity_id uuid NOT NULL,
	event_id text NOT NULL
);
CREATE INDEX entity_state_events_entity ON cdp_traits.entity_state_events (customer_entity_id);
COMMENT ON TABLE cdp_traits.entity_state_events IS
	'internal: events assigned to an entity since its stored state (entity_states) was computed';
-- Compiled definitions kept for later runs (as in 40_attributes.sql and
-- 30_context.sql)
CREATE TABLE cdp_traits.compiled_definitions (
	attribute_id text NOT NULL,
	alias text NOT NULL,
	definition_md5 text NOT NULL,	-- md5 of the extension version and the definition
	cond text, lat text, agg text, srf boolean, skipped text, inner_sql text, lat_shared text,
	stateful boolean, st_agg text, st_comb text, st_fin text, st_read text,
	rels oid[] NOT NULL,			-- relations the compiled statement names
	funcs oid[] NOT NULL,			-- functions it calls, and _compile
	stamp text NOT NULL,			-- _deps_stamp(rels, funcs) when compiled
	-- (rels and funcs as _compile gives them)
	PRIMARY KEY (attribute_id, alias)
);
COMMENT ON TABLE cdp_traits.compiled_definitions IS
	'internal: compiled attribute definitions, reused while what they depend on is unchanged (a cache)';
-- The source of pivoted_customer_attributes as last built (as in
-- 40_attributes.sql; empty here, so the next change of attributes rebuilds it)
CREATE TABLE cdp_traits.pivot_source (
	source_md5 text NOT NULL
);
COMMENT ON TABLE cdp_traits.pivot_source IS
	'internal: md5 of the SQL of pivoted_customer_attributes as last built';
-- the time limit of custom and external queries (as in 30_context.sql)
CREATE FUNCTION cdp_traits._attribute_timer(arm boolean) RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_attribute_timer';
COMMENT ON FUNCTION cdp_traits._attribute_timer(boolean) IS
	'internal: arm (true) or disarm (false) the time limit of one custom or external attribute''s query; disarming returns whether it fired';
-- ids of external traits read from text (as in 30_context.sql)
CREATE FUNCTION cdp_traits._to_uuid(text) RETURNS uuid
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_uuid';
COMMENT ON FUNCTION cdp_traits._to_uuid(text) IS 'text to uuid (surrounding blanks ignored), NULL when it is not one';
-- weights of most_frequent/least_frequent read from text (as in 30_context.sql)
CREATE FUNCTION cdp_traits._to_float8(text) RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_float8';
COMMENT ON FUNCTION cdp_traits._to_float8(text) IS
	'text to float8 (a weight), NULL when it is not a number as to_number reads it or beyond float8''s range';
CREATE FUNCTION cdp_traits._deps_stamp(rels oid[], funcs oid[]) RETURNS text
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_deps_stamp';
COMMENT ON FUNCTION cdp_traits._deps_stamp(oid[], oid[]) IS
	'internal: md5 of the versions of the catalog rows of relations and functions; NULL if one is gone';
-- The counts' changes of stitching transactions, applied at commit (as in
-- 40_attributes.sql; the SQL functions are among the generated ones below)
CREATE TABLE cdp_traits.pending_count_changes (
	xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
	deltas jsonb NOT NULL			-- what _value_deltas gave (one row per statement)
);
CREATE INDEX pending_count_changes_xid ON cdp_traits.pending_count_changes (xid);
COMMENT ON TABLE cdp_traits.pending_count_changes IS
	'internal: changes of attribute_counts made by an open transaction, applied when it commits (always empty between transactions)';
-- The context values of context-dependent attributes (as in 40_attributes.sql;
-- _context_md5 is among the generated functions below)
CREATE TABLE cdp_traits.attribute_context_seen (
	attribute_id text PRIMARY KEY,
	context_md5 text NOT NULL		-- _context_md5 of the definition then
);
COMMENT ON TABLE cdp_traits.attribute_context_seen IS
	'internal: the context values each context-dependent attribute was last calculated for every entity with';
CREATE FUNCTION cdp_traits._apply_counts_at_commit() RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_apply_counts_at_commit';
COMMENT ON FUNCTION cdp_traits._apply_counts_at_commit() IS
	'internal: apply the pending_count_changes of this transaction just before it commits';
CREATE FUNCTION cdp_traits._events_locked_first() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_events_locked_first';
COMMENT ON FUNCTION cdp_traits._events_locked_first() IS
	'internal: trigger locking the attached events table before a change of the attributes locks values';
CREATE FUNCTION cdp_traits._calculation_lock() RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_calculation_lock';
COMMENT ON FUNCTION cdp_traits._calculation_lock() IS
	'internal: wait for the lock of attribute calculations, held until the end of the transaction';
CREATE FUNCTION cdp_traits._query_deps(sql text, OUT rels oid[], OUT funcs oid[], OUT immutable boolean)
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_query_deps';
COMMENT ON FUNCTION cdp_traits._query_deps(text) IS
	'internal: the relations and functions a statement names, and whether it calls only immutable functions (parse-analysed, not run; views not looked into)';
DROP FUNCTION cdp_traits._compile(text, jsonb, text);
ALTER TABLE cdp_traits.calculation_runs ADD COLUMN from_states bigint;
ALTER TABLE cdp_traits.calculation_run_attributes ADD COLUMN failing_entity uuid;
-- (as in 20_aggregates.sql)
CREATE FUNCTION cdp_traits.agg_state_merge(cdp_traits.agg_state, cdp_traits.agg_state)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_merge';
COMMENT ON FUNCTION cdp_traits.agg_state_merge(cdp_traits.agg_state, cdp_traits.agg_state) IS
	'two states of the same kind and type merged into one (NULL if both are NULL, the other if one is)';

-- (as in 01_info.sql; refresh_context and calculate_attributes read their
-- settings through it, so that they need no library loaded beforehand)
CREATE FUNCTION cdp_traits._setting(name text) RETURNS text
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_setting';
COMMENT ON FUNCTION cdp_traits._setting(text) IS
	'internal: current_setting() of a cdp_traits.* setting, the library loaded first';

-- (as in 30_context.sql: the time limit of each context query)
CREATE FUNCTION cdp_traits._context_timer(arm boolean) RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_context_timer';
COMMENT ON FUNCTION cdp_traits._context_timer(boolean) IS
	'internal: arm (true) or disarm (false) the time limit of one context query; disarming returns whether it fired';

-- (as in 10_stitching.sql)
ALTER TABLE cdp_traits.customer_entities
	ALTER COLUMN id SET STATISTICS 10, ALTER COLUMN created SET STATISTICS 10,
	ALTER COLUMN modified SET STATISTICS 10, ALTER COLUMN calculated SET STATISTICS 10;
ALTER TABLE cdp_traits.matching
	ALTER COLUMN attribute_id SET STATISTICS 10, ALTER COLUMN value SET STATISTICS 10,
	ALTER COLUMN customer_entity_id SET STATISTICS 10;
ALTER TABLE cdp_traits.event_entities
	ALTER COLUMN event_id SET STATISTICS 10, ALTER COLUMN customer_entity_id SET STATISTICS 10;

-- Segments and toggles (SPEC section 6), new in 0.2.0: as in 60_segments.sql.

/*
 * Segments and toggles (SPEC section 6): segmentation events, membership per
 * (vendor, segment, user), profiles per user, and a change log for
 * activation.
 *
 *   segment_events        the events, one column per field, in arrival order
 *                         (seq); only accepted events stay (a repeated event
 *                         id is removed again by the trigger)
 *   segment_event_ids     every event id ever accepted (idempotent delivery)
 *   segment_memberships   per key: first add, last event time, status, value,
 *                         and the key's last event (a toggle's "previous")
 *   segment_profiles      per user: all memberships as a JSON array
 *   segment_toggles       append-only log of status changes, also of audience
 *                         traits (vendor 0); audience_changes is a view on it
 *
 * The statement trigger on segment_events (C, src/segment_trigger.c) does the
 * work for every INSERT or COPY, in the same transaction: it locks the keys,
 * keeps the new event ids, folds each key's new events into its stored
 * membership in arrival order, and writes toggles, memberships and the
 * profiles of the users touched with one statement each.
 */

-- The type of segment_events.timestamp: an instant whose text input is RFC
-- 3339 with an offset and nothing else (an error naming the field), so
-- that COPY is checked like ingest_segment_event().  Stored and compared
-- like timestamptz (binary-compatible, implicit cast); written in UTC.
-- Every way in (text, binary, the cast from timestamptz) accepts only the
-- instants of the years 0000 to 9999 in UTC, which the output can write:
-- whatever is stored reads back (a dump restores).
CREATE TYPE cdp_traits.rfc3339;
CREATE FUNCTION cdp_traits.rfc3339_in(cstring) RETURNS cdp_traits.rfc3339
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_in';
CREATE FUNCTION cdp_traits.rfc3339_out(cdp_traits.rfc3339) RETURNS cstring
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_out';
CREATE FUNCTION cdp_traits.rfc3339_recv(internal) RETURNS cdp_traits.rfc3339
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_recv';
CREATE FUNCTION cdp_traits.rfc3339_send(cdp_traits.rfc3339) RETURNS bytea
LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE
AS 'timestamptz_send';
CREATE TYPE cdp_traits.rfc3339 (
	INPUT = cdp_traits.rfc3339_in,
	OUTPUT = cdp_traits.rfc3339_out,
	RECEIVE = cdp_traits.rfc3339_recv,
	SEND = cdp_traits.rfc3339_send,
	LIKE = pg_catalog.timestamptz,
	CATEGORY = 'D'
);
COMMENT ON TYPE cdp_traits.rfc3339 IS
	'a point in time written as RFC 3339 with an offset (input) and in UTC (output); compares as timestamptz';
CREATE CAST (cdp_traits.rfc3339 AS timestamptz) WITHOUT FUNCTION AS IMPLICIT;
CREATE FUNCTION cdp_traits.rfc3339(timestamptz) RETURNS cdp_traits.rfc3339
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_from_timestamptz';
CREATE CAST (timestamptz AS cdp_traits.rfc3339) WITH FUNCTION cdp_traits.rfc3339(timestamptz) AS ASSIGNMENT;
-- INSERT ... SELECT of text columns: checked by the input function
CREATE CAST (text AS cdp_traits.rfc3339) WITH INOUT AS ASSIGNMENT;

CREATE TABLE cdp_traits.segment_events (
	seq bigint GENERATED ALWAYS AS IDENTITY,	-- arrival order
	event uuid NOT NULL,
	user_id text COLLATE "C" NOT NULL,
	vendor integer NOT NULL,
	segment text COLLATE "C" NOT NULL,	-- segment.name
	"timestamp" cdp_traits.rfc3339 NOT NULL,
	remove boolean NOT NULL DEFAULT false,
	value text,
	CONSTRAINT segment_events_user_not_empty CHECK (user_id <> ''),
	-- (the memberships' and profiles' primary keys hold it: a B-tree entry
	-- may not exceed 2704 bytes)
	CONSTRAINT segment_events_user_length CHECK (pg_catalog.octet_length(user_id) <= 2000),
	CONSTRAINT segment_events_vendor_positive CHECK (vendor >= 1),
	CONSTRAINT segment_events_segment_length CHECK (pg_catalog.char_length(segment) BETWEEN 1 AND 32),
	CONSTRAINT segment_events_value_only_on_adds CHECK (value IS NULL OR NOT remove)
);
-- An append-only log in seq order: a BRIN index finds rows by seq at almost no
-- cost per insert (a B-tree would cost as much as the rest of a COPY).
CREATE INDEX segment_events_seq ON cdp_traits.segment_events USING brin (seq)
	WITH (autosummarize = on);
COMMENT ON TABLE cdp_traits.segment_events IS
	'segmentation events (SPEC section 6) in arrival order (seq); insert or COPY into it, or call ingest_segment_event()';
COMMENT ON COLUMN cdp_traits.segment_events.segment IS 'segment.name of the event';
COMMENT ON COLUMN cdp_traits.segment_events."timestamp" IS 'the event''s time (RFC 3339 with an offset when written; an instant)';

CREATE TABLE cdp_traits.segment_event_ids (
	event uuid PRIMARY KEY,
	seq bigint NOT NULL				-- the accepted event's segment_events.seq
);
COMMENT ON TABLE cdp_traits.segment_event_ids IS
	'every segmentation event id accepted so far: a repeated id is ignored';

CREATE TABLE cdp_traits.segment_memberships (
	vendor integer NOT NULL,
	segment text COLLATE "C" NOT NULL,
	user_id text COLLATE "C" NOT NULL,
	first timestamptz,				-- earliest add (NULL: never added)
	last timestamptz NOT NULL,		-- latest event time
	member boolean NOT NULL,		-- status of the last event in arrival order
	value text,						-- value of the last add that carried one
	value_seq bigint,				-- ... that add's segment_events.seq
	last_event uuid NOT NULL,		-- the last event in arrival order ...
	last_event_time timestamptz NOT NULL,	-- ... its time
	last_seq bigint NOT NULL,		-- ... and its segment_events.seq
	PRIMARY KEY (vendor, segment, user_id)
) WITH (fillfactor = 80);		-- room for HOT updates: rows change, keys never do
COMMENT ON TABLE cdp_traits.segment_memberships IS
	'status of every (vendor, segment, user) that has events';

CREATE TABLE cdp_traits.segment_profiles (
	user_id text COLLATE "C" PRIMARY KEY,
	segments jsonb NOT NULL
);
COMMENT ON TABLE cdp_traits.segment_profiles IS
	'per user, the details of all its memberships as a JSON array sorted by (name, vendor)';
-- Profiles are rewritten whole; lz4 compresses them several times faster than pglz.
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_settings
				WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
		ALTER TABLE cdp_traits.segment_profiles ALTER COLUMN segments SET COMPRESSION lz4;
	END IF;
END;
$$;

CREATE TABLE cdp_traits.segment_toggles (
	seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	vendor integer NOT NULL,		-- 0: an audience trait (attribute engine)
	segment text COLLATE "C" NOT NULL,	-- segment name; audiences: the attribute id
	user_id text COLLATE "C" NOT NULL,	-- audiences: the customer entity id
	member boolean NOT NULL,		-- status after the change (true: added, entered)
	event uuid,						-- the event that changed it (NULL for audiences)
	event_time timestamptz NOT NULL,	-- its time (audiences: of the calculation)
	value text,						-- the value the add carried
	previous_event uuid,			-- the key's last event before it
	previous_time timestamptz,		-- and its time
	recorded_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE cdp_traits.segment_toggles IS
	'append-only log of membership changes (member <-> non-member) of segments and audiences (vendor 0); read it with toggles_since()';

/*
 * The segment locks are advisory locks in key spaces of their own (objsubid
 * 17225 and 17226 in pg_locks, see src/segment_trigger.c), out of reach of
 * pg_advisory_lock(): no role can stall segment writers or toggle readers
 * from SQL.  The SQL functions below take them through these C functions.
 */
-- the segments lock, exclusively, until the end of the transaction
CREATE FUNCTION cdp_traits._segments_lock_exclusive() RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_segments_lock_exclusive';
-- a stored profile with the changed entries of a writer merged in (the
-- trigger's profile writes, under the row lock: see src/segment_trigger.c)
CREATE FUNCTION cdp_traits._profile_merge(user_id text, stored jsonb, changes jsonb) RETURNS jsonb
LANGUAGE c IMMUTABLE STRICT
AS 'MODULE_PATHNAME', 'cdp_profile_merge';
-- wait for the transactions writing toggles at this moment (holds nothing)
CREATE FUNCTION cdp_traits._toggles_wait() RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_toggles_wait';

-- The profiles as the memberships define them (the trigger keeps them so).
-- SECURITY DEFINER: the profiles are written by the extension owner only (the
-- trigger runs as the owner too), and admins, who may only read them, rebuild
-- them; it runs no SQL of theirs (fixed statements, every name qualified).
CREATE FUNCTION cdp_traits.rebuild_segment_profiles() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	-- the segments lock, exclusively: no segment events are written meanwhile
	PERFORM cdp_traits._segments_lock_exclusive();
	DELETE FROM cdp_traits.segment_profiles;
	INSERT INTO cdp_traits.segment_profiles (user_id, segments)
	SELECT m.user_id,
		   jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
			   'segment', jsonb_build_object('vendor', m.vendor, 'name', m.segment),
			   'first', m.first::cdp_traits.rfc3339, 'last', m.last::cdp_traits.rfc3339,
			   'member', m.member, 'value', m.value))
			   ORDER BY m.segment, m.vendor)
	  FROM cdp_traits.segment_memberships m
	 GROUP BY m.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION cdp_traits.rebuild_segment_profiles() IS
	'rebuild every profile from the memberships (the trigger keeps them current; this repairs them); returns the number of users';

/*
 * Erase a user of the segment events (a data subject's request to be
 * forgotten): their events, memberships, profile and toggles, of every
 * vendor (audience toggles, vendor 0, are entities' and stay: see
 * erase_entity).  Under the segments lock, exclusively: writers in progress
 * commit first, and new ones wait.  The ids of the erased events stay in
 * segment_event_ids, so a redelivered event is still ignored.  Owner only;
 * runs as its caller.  One row per table touched.
 */
CREATE FUNCTION cdp_traits.erase_segment_user(user_id text) RETURNS TABLE(what text, removed bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF erase_segment_user.user_id IS NULL THEN
		RAISE EXCEPTION 'user id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM cdp_traits._segments_lock_exclusive();
	DELETE FROM cdp_traits.segment_events e WHERE e.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_events'; removed := n; RETURN NEXT;
	DELETE FROM cdp_traits.segment_memberships m WHERE m.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_memberships'; removed := n; RETURN NEXT;
	DELETE FROM cdp_traits.segment_profiles p WHERE p.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_profiles'; removed := n; RETURN NEXT;
	DELETE FROM cdp_traits.segment_toggles t WHERE t.vendor <> 0 AND t.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_toggles'; removed := n; RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION cdp_traits.erase_segment_user(text) IS
	'erase a user of the segment events: their events, memberships, profile and toggles; one row per table touched';


-- 0.1.0 kept audience enter/exit in a table of its own: its rows move to the
-- toggle log (vendor 0), and audience_changes becomes a view on it.  They
-- keep their numbers, and the log numbers on from 0.1.0's last one: a
-- reader's last seq stays valid (renumbered without 0.1.0's gaps, the next
-- changes would take numbers it had passed, and it would skip them).
INSERT INTO cdp_traits.segment_toggles (seq, vendor, segment, user_id, member, event_time, recorded_at)
OVERRIDING SYSTEM VALUE
SELECT a.seq, 0, a.audience_id, a.customer_entity_id::text, a.entered, a.changed_at, a.changed_at
  FROM cdp_traits.audience_changes a ORDER BY a.seq;
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('cdp_traits.segment_toggles', 'seq'),
                         GREATEST(s.last_value, (SELECT pg_catalog.max(a.seq) FROM cdp_traits.audience_changes a)),
                         s.is_called OR EXISTS (SELECT FROM cdp_traits.audience_changes))
  FROM cdp_traits.audience_changes_seq_seq s;
-- (leaving the extension first takes them off pg_dump's list)
ALTER EXTENSION cdp_traits DROP SEQUENCE cdp_traits.audience_changes_seq_seq;
ALTER EXTENSION cdp_traits DROP TABLE cdp_traits.audience_changes;
DROP TABLE cdp_traits.audience_changes;

-- Audience enter/exit (SPEC section 4) are toggles of vendor 0.
CREATE VIEW cdp_traits.audience_changes AS
SELECT t.seq, t.segment::text AS audience_id,
	   CASE WHEN t.vendor = 0 THEN t.user_id::uuid END AS customer_entity_id,
	   t.member AS entered, t.recorded_at AS changed_at
  FROM cdp_traits.segment_toggles t
 WHERE t.vendor = 0;
COMMENT ON VIEW cdp_traits.audience_changes IS
	'audience membership changes (enter = true, exit = false), in order: the audience toggles';

/*
 * The toggle log is read by sequence number, so a reader must not pass a
 * number that a transaction still in progress holds: writers hold the log
 * lock shared from their first toggle to commit, and toggles_since() waits
 * for the writers of the moment before reading up to the last number given
 * out before it waited.
 */
CREATE FUNCTION cdp_traits._toggles_writer() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_toggles_writer';
CREATE TRIGGER toggles_writer BEFORE INSERT ON cdp_traits.segment_toggles
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._toggles_writer();

-- Consumers that listen are told the last sequence number at commit.
CREATE FUNCTION cdp_traits._toggles_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	last bigint;
BEGIN
	SELECT max(n.seq) INTO last FROM cdp_new_toggles n;
	IF last IS NOT NULL THEN
		PERFORM pg_catalog.pg_notify('cdp_traits_toggles', last::text);
	END IF;
	RETURN NULL;
END;
$$;
CREATE TRIGGER toggles_notify AFTER INSERT ON cdp_traits.segment_toggles
	REFERENCING NEW TABLE AS cdp_new_toggles
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._toggles_notify();
-- (enabled always, also in replica sessions: see 95_replica_sessions.sql)

-- The number up to which every toggle has been committed or rolled back:
-- the last number given out, read before waiting for the writers of that
-- moment (taken and released at once).  A standby knows neither the
-- primary's writers of the moment (their locks are not replicated, and a
-- writer that took its number may not have written anything yet) nor the
-- last number given out (a sequence is logged ahead): a reader there would
-- pass over a toggle committed later.  Called by toggles_since() and
-- toggles_position() (caller: the name given in errors).
CREATE FUNCTION cdp_traits._toggles_upto(caller text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	given_out bigint;
BEGIN
	IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION '%() must run in a READ COMMITTED transaction', caller
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'A snapshot taken earlier in the transaction could miss toggles committed since, and the reader would skip them.';
	END IF;
	IF pg_catalog.pg_is_in_recovery() THEN
		RAISE EXCEPTION '%() cannot run on a standby', caller
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'A standby cannot see which transactions on the primary are still writing toggles, so a toggle with a lower seq could commit after the reader passed it.',
				  HINT = pg_catalog.format('Call %s() on the primary.', caller);
	END IF;
	SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO given_out
	  FROM cdp_traits.segment_toggles_seq_seq s;
	PERFORM cdp_traits._toggles_wait();
	RETURN given_out;
END;
$$;

CREATE FUNCTION cdp_traits.toggles_since("after" bigint, max integer)
RETURNS SETOF cdp_traits.segment_toggles
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
-- the cached plan must stay a range read of the primary key however the log grows
SET enable_seqscan = off
AS $$
DECLARE
	given_out bigint;
BEGIN
	IF max IS NULL OR max < 0 THEN
		RAISE EXCEPTION 'max must be 0 or more'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	given_out := cdp_traits._toggles_upto('toggles_since');
	RETURN QUERY
	SELECT t.* FROM cdp_traits.segment_toggles t
	 WHERE t.seq > COALESCE("after", 0) AND t.seq <= given_out
	 ORDER BY t.seq
	 LIMIT max;
END;
$$;
COMMENT ON FUNCTION cdp_traits.toggles_since(bigint, integer) IS
	'toggles with seq > after, in order, at most max; never skips a toggle of a transaction still in progress (waits for it)';

-- Where a new consumer starts: every toggle up to the number returned is
-- committed (or rolled back), so a snapshot taken after it (the next
-- statement of a READ COMMITTED session) holds the state they made, and
-- toggles_since(that number) hands out every change after it (README,
-- "Starting a consumer").
CREATE FUNCTION cdp_traits.toggles_position() RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
	SELECT cdp_traits._toggles_upto('toggles_position')
$$;
COMMENT ON FUNCTION cdp_traits.toggles_position() IS
	'the seq up to which every toggle is committed or rolled back (waits for writers in progress): where a new consumer of toggles_since() starts';

/*
 * ingest_segment_event: validate one JSON event and insert it.  Returns its
 * seq, or NULL when its id was seen before (ignored).
 */
CREATE FUNCTION cdp_traits._segment_event_error(field text, must text, got jsonb DEFAULT NULL,
												 ev text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	shape CONSTANT text := 'A segment event is {"event": uuid, "user": string, "segment": {"vendor": integer, '
						   '"name": string}, "timestamp": RFC 3339} with "remove": true or a string "value".';
BEGIN
	-- (the event's id, once it is known to be one, names the document that
	-- failed among the many of a batch: SELECT ingest_segment_event(doc) FROM ...)
	IF got IS NULL AND ev IS NULL THEN
		RAISE EXCEPTION 'invalid segment event: "%" %', field, must
			USING ERRCODE = 'invalid_parameter_value', HINT = shape;
	ELSIF got IS NULL THEN
		RAISE EXCEPTION 'invalid segment event: "%" %', field, must
			USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The event is ' || ev || '.', HINT = shape;
	END IF;
	RAISE EXCEPTION 'invalid segment event: "%" %', field, must
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = 'The value is ' || got::text || '.' || COALESCE(' The event is ' || ev || '.', '');
END;
$$;

CREATE FUNCTION cdp_traits.ingest_segment_event(doc jsonb) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	seg jsonb;
	v jsonb;
	vendor numeric;
	name text;
	is_remove boolean := false;
	new_seq bigint;
	new_tid tid;
	ev text;				-- the event's id, once checked
	stamp cdp_traits.rfc3339;
	msg text;
	det text;
	hint text;
BEGIN
	IF doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN
		RAISE EXCEPTION 'invalid segment event: it must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The value is ' || COALESCE(doc::text, 'NULL') || '.';
	END IF;

	v := doc->'event';
	IF v IS NULL THEN
		PERFORM _segment_event_error('event', 'is missing');
	ELSIF jsonb_typeof(v) <> 'string'
		  OR (v->>0) !~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN
		PERFORM _segment_event_error('event', 'must be a UUID string', v);
	END IF;
	ev := v->>0;

	v := doc->'user';
	IF v IS NULL THEN
		PERFORM _segment_event_error('user', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(v) <> 'string' OR v->>0 = '' THEN
		PERFORM _segment_event_error('user', 'must be a non-empty string', v, ev);
	ELSIF pg_catalog.octet_length(v->>0) > 2000 THEN
		PERFORM _segment_event_error('user', pg_catalog.format('must be at most 2000 bytes long (it has %s)',
																pg_catalog.octet_length(v->>0)), NULL, ev);
	END IF;

	seg := doc->'segment';
	IF seg IS NULL THEN
		PERFORM _segment_event_error('segment', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(seg) <> 'object' THEN
		PERFORM _segment_event_error('segment', 'must be an object with "vendor" and "name"', seg, ev);
	END IF;
	v := seg->'vendor';
	IF v IS NULL THEN
		PERFORM _segment_event_error('segment.vendor', 'is missing', NULL, ev);
	END IF;
	IF jsonb_typeof(v) = 'number' THEN
		vendor := (v #>> '{}')::numeric;
	END IF;
	IF vendor IS NULL OR vendor <> trunc(vendor) OR vendor < 1 OR vendor > 2147483647 THEN
		PERFORM _segment_event_error('segment.vendor', 'must be an integer from 1 to 2147483647', v, ev);
	END IF;
	v := seg->'name';
	IF v IS NULL THEN
		PERFORM _segment_event_error('segment.name', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(v) <> 'string' THEN
		PERFORM _segment_event_error('segment.name', 'must be a string of 1 to 32 characters', v, ev);
	END IF;
	name := v->>0;
	IF char_length(name) NOT BETWEEN 1 AND 32 THEN
		PERFORM _segment_event_error('segment.name', 'must be a string of 1 to 32 characters', v, ev);
	END IF;

	v := doc->'timestamp';
	IF v IS NULL THEN
		PERFORM _segment_event_error('timestamp', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(v) <> 'string' THEN
		PERFORM _segment_event_error('timestamp', 'must be an RFC 3339 date-time with an offset', v, ev);
	END IF;
	-- the format itself is checked by the column's type, cdp_traits.rfc3339;
	-- its error is given again with the event's id (no subtransaction id is
	-- taken: the block writes nothing)
	BEGIN
		stamp := (v->>0)::cdp_traits.rfc3339;
	EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
		det := CASE WHEN det <> '' THEN det || ' ' ELSE 'The value is ' || v::text || '. ' END
			   || 'The event is ' || ev || '.';
		IF hint <> '' THEN
			RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = msg, DETAIL = det, HINT = hint;
		END IF;
		RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = msg, DETAIL = det;
	END;

	v := doc->'remove';
	IF v IS NOT NULL THEN
		IF v <> 'true'::jsonb THEN
			PERFORM _segment_event_error('remove', 'must be true when present (leave it out for an add)', v, ev);
		END IF;
		is_remove := true;
	END IF;

	v := doc->'value';
	IF v IS NOT NULL THEN
		IF is_remove THEN
			PERFORM _segment_event_error('value', 'is only allowed on adds, not with "remove"', v, ev);
		ELSIF jsonb_typeof(v) <> 'string' THEN
			PERFORM _segment_event_error('value', 'must be a string', v, ev);
		END IF;
	END IF;

	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES ((doc->>'event')::uuid, doc->>'user', vendor::integer, name, stamp,
			is_remove, doc->>'value')
	RETURNING seq, ctid INTO new_seq, new_tid;
	-- a repeated id: the trigger has removed the row again (found by its
	-- tid, which nothing can reuse before this transaction ends)
	IF NOT EXISTS (SELECT FROM cdp_traits.segment_events e WHERE e.ctid = new_tid) THEN
		RETURN NULL;
	END IF;
	RETURN new_seq;
END;
$$;
COMMENT ON FUNCTION cdp_traits.ingest_segment_event(jsonb) IS
	'validate a segmentation event (JSON) and insert it; returns its seq, NULL if its id was seen before';

-- The statement triggers on segment_events.
CREATE FUNCTION cdp_traits._segment_events_insert() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_segment_events_insert';
CREATE TRIGGER segment_events_insert AFTER INSERT ON cdp_traits.segment_events
	REFERENCING NEW TABLE AS cdp_new_segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_insert();

CREATE FUNCTION cdp_traits._segment_events_immutable() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'segmentation events cannot be updated'
		USING ERRCODE = 'feature_not_supported',
			  DETAIL = 'Memberships, profiles and toggles were computed from the events as they arrived.',
			  HINT = 'Send a new event instead; delete old events to trim the log (the state is kept).';
END;
$$;
CREATE TRIGGER segment_events_immutable BEFORE UPDATE ON cdp_traits.segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_immutable();

-- Arrival order is seq order: the trigger takes an event whose seq is below
-- its key's last_seq for a late one.  TRUNCATE ... RESTART IDENTITY starts
-- the sequence again, and every event to come arrives after the stored
-- ones: their seqs above the sequence's last value go back to 0 (value_seq
-- to NULL, older than any event).  A plain TRUNCATE leaves the sequence,
-- and so the seqs, as they are.
CREATE FUNCTION cdp_traits._segment_events_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	-- (NULL: nothing given out since the restart)
	given CONSTANT bigint := COALESCE(pg_catalog.pg_sequence_last_value(
		pg_catalog.pg_get_serial_sequence('cdp_traits.segment_events', 'seq')::pg_catalog.regclass), 0);
BEGIN
	-- (one pass; value_seq <= last_seq, so only rows with last_seq > given)
	UPDATE cdp_traits.segment_memberships m
	   SET last_seq = 0, value_seq = CASE WHEN m.value_seq <= given THEN m.value_seq END
	 WHERE m.last_seq > given;
	RETURN NULL;
END;
$$;
CREATE TRIGGER segment_events_truncated AFTER TRUNCATE ON cdp_traits.segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_truncated();

-- Events that arrive by logical replication.  The apply worker runs as a
-- replica session, where ordinary triggers do not fire, and fires row
-- triggers only.  Triggers enabled for replica sessions only: a row trigger
-- that applies each replicated event as an INSERT of that one row would be
-- (the statement trigger and it each act only in their kind of session, so
-- ENABLE ALWAYS does not apply an event twice), and the UPDATE and TRUNCATE
-- triggers above again.
CREATE FUNCTION cdp_traits._segment_event_row() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_segment_event_row';
CREATE TRIGGER segment_events_replica AFTER INSERT ON cdp_traits.segment_events
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._segment_event_row();
CREATE TRIGGER segment_events_replica_update BEFORE UPDATE ON cdp_traits.segment_events
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._segment_events_immutable();
CREATE TRIGGER segment_events_replica_truncate AFTER TRUNCATE ON cdp_traits.segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_truncated();
ALTER TABLE cdp_traits.segment_events
	ENABLE REPLICA TRIGGER segment_events_replica,
	ENABLE REPLICA TRIGGER segment_events_replica_update,
	ENABLE REPLICA TRIGGER segment_events_replica_truncate;

-- BEGIN generated: functions changed since 0.1.0
CREATE FUNCTION cdp_traits._analyze_temp(tab text, cols text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	EXECUTE pg_catalog.format('ALTER TABLE pg_temp.%I %s', tab,
		(SELECT pg_catalog.string_agg(pg_catalog.format('ALTER COLUMN %I SET STATISTICS 10', c), ', ')
		   FROM pg_catalog.unnest(cols) c));
	EXECUTE pg_catalog.format('ANALYZE pg_temp.%I (%s)', tab,
		(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') FROM pg_catalog.unnest(cols) c));
END;
$$;

CREATE FUNCTION cdp_traits._attribute_dropped() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped text[];
	dropped_auds text[];
	switched text[];
	switched_on text[];
	at timestamptz;
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM cdp_traits._drop_values(pg_catalog.array_agg(a.id),
										pg_catalog.array_agg(a.id) FILTER (WHERE a.definition->>'type' = 'audience'))
		   FROM cdp_traits.attributes a
		HAVING pg_catalog.count(*) > 0;
		RETURN NULL;
	ELSIF TG_LEVEL = 'ROW' THEN
		-- renamed: an audience's members exit; the id went and is another
		-- attribute's again in the same statement (ids swapped): its values
		-- are the one's that went, not the new one's (an audience now would
		-- read a number as its boolean, and the pivot fail);
		-- _attributes_changed takes only those of ids that no longer exist
		IF OLD.definition->>'type' = 'audience' THEN
			PERFORM cdp_traits._drop_values(ARRAY[OLD.id], ARRAY[OLD.id]);
		ELSIF EXISTS (SELECT FROM cdp_traits.attributes a WHERE a.id = OLD.id) THEN
			PERFORM cdp_traits._drop_values(ARRAY[OLD.id], NULL);
		END IF;
		RETURN NULL;
	ELSIF TG_OP = 'DELETE' THEN
		-- a deleted audience's members exit; an id deleted and inserted
		-- again in the same statement is another attribute (as above)
		SELECT pg_catalog.array_agg(o.id ORDER BY o.id),
			   pg_catalog.array_agg(o.id ORDER BY o.id) FILTER (WHERE o.definition->>'type' = 'audience')
		  INTO dropped, dropped_auds
		  FROM cdp_old_attributes o
		 WHERE o.definition->>'type' = 'audience'
			OR EXISTS (SELECT FROM cdp_traits.attributes a WHERE a.id = o.id);
		IF dropped IS NOT NULL THEN
			PERFORM cdp_traits._drop_values(dropped, dropped_auds);
		END IF;
		RETURN NULL;
	END IF;
	-- UPDATE: the rows paired by id.  An audience no longer: its members
	-- exit; an audience now: the values of its former type are no
	-- memberships; another kind of value (a data_type or type that changes
	-- the pivot's column: text to number, a value to a list): the values
	-- held are not of it, and the pivot would fail to read them (or read a
	-- list as text) until the next run; nor would their counts per value be
	-- taken back (those of text only).  All of them in one pass (over the
	-- rows whose definition changed: a run's UPDATE of calculated_version
	-- changes none).
	SELECT pg_catalog.array_agg(n.id ORDER BY n.id) FILTER (WHERE c.drop),
		   pg_catalog.array_agg(n.id ORDER BY n.id) FILTER (WHERE c.drop AND c.was_audience AND NOT c.is_audience),
		   pg_catalog.array_agg(n.id ORDER BY n.id) FILTER (WHERE c.had_history <> c.has_history),
		   pg_catalog.array_agg(n.id ORDER BY n.id) FILTER (WHERE c.has_history AND NOT c.had_history)
	  INTO dropped, dropped_auds, switched, switched_on
	  FROM cdp_old_attributes o
	  JOIN cdp_new_attributes n ON n.id = o.id AND n.definition IS DISTINCT FROM o.definition
	 CROSS JOIN LATERAL (SELECT o.definition->>'type' = 'audience' AS was_audience,
								n.definition->>'type' = 'audience' AS is_audience,
								COALESCE((o.definition->>'history')::boolean, false) AS had_history,
								COALESCE((n.definition->>'history')::boolean, false) AS has_history) f
	 CROSS JOIN LATERAL (SELECT f.was_audience, f.is_audience, f.had_history, f.has_history,
								f.was_audience <> f.is_audience
								OR cdp_traits._pivot_type(n.definition) <> cdp_traits._pivot_type(o.definition) AS drop) c;
	IF dropped IS NOT NULL THEN
		PERFORM cdp_traits._drop_values(dropped, dropped_auds);
	END IF;
	-- "history" switched off: the open rows end now (the values are no
	-- longer followed); switched on: the values the entities hold now
	-- start their history (a run records only changes, and an unchanged
	-- value would never get a row)
	IF switched IS NOT NULL THEN
		at := pg_catalog.clock_timestamp();
		UPDATE cdp_traits.attribute_history h SET valid_to = GREATEST(at, h.valid_from)
		 WHERE h.attribute_id IN (SELECT pg_catalog.unnest(switched)) AND h.valid_to IS NULL;
		IF switched_on IS NOT NULL THEN
			-- the values are locked (in entity order), so that an entity
			-- that goes meanwhile either is gone before (and has no row
			-- here) or waits for this transaction and then ends the rows
			-- opened here (see _entities_removed); the rows start at at,
			-- or at the end of the entity's history if later (see
			-- attribute_history).  Each entity's values are read once
			-- (jsonb_each), not once per attribute; the rows go in in the
			-- order of the history's index (in the order of the attributes,
			-- 3.4M rows took 30 s, mostly in random writes of the index).
			INSERT INTO cdp_traits.attribute_history (customer_entity_id, attribute_id, value, valid_from)
			SELECT l.customer_entity_id, kv.key, kv.value, GREATEST(at, p.latest)
			  FROM (SELECT ea.customer_entity_id, ea.vals
					  FROM cdp_traits.entity_attributes ea
					 WHERE ea.vals ?| switched_on
					 ORDER BY ea.customer_entity_id FOR KEY SHARE) l
			 CROSS JOIN LATERAL pg_catalog.jsonb_each(l.vals) kv
			  JOIN pg_catalog.unnest(switched_on) k(aid) ON k.aid = kv.key
			  LEFT JOIN (SELECT h.customer_entity_id, h.attribute_id,
								pg_catalog.max(GREATEST(h.valid_from, h.valid_to)) AS latest
						   FROM cdp_traits.attribute_history h
						  WHERE h.attribute_id IN (SELECT pg_catalog.unnest(switched_on))
						  GROUP BY h.customer_entity_id, h.attribute_id) p
				ON p.customer_entity_id = l.customer_entity_id AND p.attribute_id = kv.key
			 ORDER BY l.customer_entity_id, kv.key;
		END IF;
	END IF;
	RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._attributes_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	r record;
	msg text;
	removed text[];
	n_audiences bigint;
	conditions text;
	all_boolean boolean := false;
BEGIN
	-- values of attributes that no longer exist (deleted or renamed; those
	-- of audiences went already, with their exits: _attribute_dropped)
	SELECT pg_catalog.array_agg(c.attribute_id) INTO removed FROM cdp_traits.attribute_counts c
	 WHERE NOT EXISTS (SELECT FROM cdp_traits.attributes a WHERE a.id = c.attribute_id);
	IF removed IS NOT NULL THEN
		PERFORM cdp_traits._drop_values(removed, NULL);
	END IF;
	PERFORM cdp_traits._audience_order();
	PERFORM cdp_traits._rebuild_pivot();
	-- every audience's condition in one statement over the pivot (prepared,
	-- not run): preparing one per audience read the view's 1,600 columns
	-- for each, 60 ms of any change of attributes with 61 audiences; where
	-- that fails or a column is not a boolean, each alone, for its error
	SELECT pg_catalog.count(*),
		   pg_catalog.string_agg(pg_catalog.format(E'(%s\n) AS c%s', x.condition, x.n), ', ' ORDER BY x.n)
	  INTO n_audiences, conditions
	  FROM (SELECT a.definition->>'condition' AS condition, pg_catalog.row_number() OVER (ORDER BY a.id) AS n
			  FROM cdp_traits.attributes a WHERE a.definition->>'type' = 'audience') x;
	IF n_audiences > 0 THEN
		BEGIN
			SELECT pg_catalog.count(*) = n_audiences
				   AND pg_catalog.bool_and(c.type = 'boolean'::regtype AND c.name = 'c' || c.n)
			  INTO all_boolean
			  FROM cdp_traits._query_columns('SELECT ' || conditions
					|| ' FROM cdp_traits.pivoted_customer_attributes') WITH ORDINALITY c(name, type, n);
		EXCEPTION WHEN OTHERS THEN
			all_boolean := false;
		END;
	END IF;
	FOR r IN SELECT id, definition FROM cdp_traits.attributes
			  WHERE definition->>'type' = 'audience' AND NOT all_boolean ORDER BY id LOOP
		BEGIN
			IF (SELECT c.type FROM cdp_traits._query_columns(pg_catalog.format(
					E'SELECT (%s\n) AS c FROM cdp_traits.pivoted_customer_attributes',
					r.definition->>'condition')) c) <> 'boolean'::regtype THEN
				RAISE EXCEPTION 'the condition is not boolean' USING ERRCODE = 'datatype_mismatch';
			END IF;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			PERFORM cdp_traits._definition_error(r.id, msg,
				pg_catalog.format('condition: %s', r.definition->>'condition'),
				'An audience condition is a boolean expression over the columns of cdp_traits.pivoted_customer_attributes (attribute ids).'
				|| CASE WHEN msg LIKE '%jsonb%' THEN ' A custom or external attribute without a data_type is a jsonb column:'
					' give it a data_type, or convert it in the condition ((x)::numeric > 1, x #>> ''{}'' = ''text'').' ELSE '' END);
		END;
	END LOOP;
	RETURN NULL;
END;
$$;

CREATE FUNCTION cdp_traits._blocklist_defaults() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT ARRAY['', 'null', 'none', 'undefined', 'unknown', 'n/a', '0', '-']
$$;

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

CREATE FUNCTION cdp_traits._calc_audiences(aids text[], scope_sql text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	cols text;
	objs text;
BEGIN
	SELECT pg_catalog.string_agg(pg_catalog.format(E',\n\t%s AS %I',
				cdp_traits._pivot_column(a.id, a.definition), a.id), '' ORDER BY a.id)
	  INTO cols
	  FROM cdp_traits.attributes a
	 WHERE a.id IN (SELECT pg_catalog.unnest(cdp_traits._expression_columns(c.definition->>'condition'))
					  FROM cdp_traits.attributes c WHERE c.id = ANY (aids));
	-- (_jsonb_object_of takes up to 99 values: objects of 90, concatenated)
	SELECT pg_catalog.string_agg(pg_catalog.format('COALESCE(cdp_traits._jsonb_object_of(ARRAY[%s]::text[], %s), ''{}'')',
				g.keys, g.conds), ' || ' ORDER BY g.chunk)
	  INTO objs
	  FROM (SELECT (x.i - 1) / 90 AS chunk,
				   pg_catalog.string_agg(pg_catalog.quote_literal(x.aid), ', ' ORDER BY x.i) AS keys,
				   pg_catalog.string_agg(pg_catalog.format(E'CASE WHEN (%s\n)::boolean THEN true END',
						c.definition->>'condition'), ', ' ORDER BY x.i) AS conds
			  FROM pg_catalog.unnest(aids) WITH ORDINALITY x(aid, i)
			  JOIN cdp_traits.attributes c ON c.id = x.aid
			 GROUP BY 1) g;
	EXECUTE 'INSERT INTO pg_temp.cdp_new (eid, vals) SELECT q.eid, q.vals FROM (SELECT p.customer_entity_id AS eid, '
		|| objs || E' AS vals\n  FROM (SELECT e.id AS customer_entity_id' || COALESCE(cols, '')
		|| E'\n  FROM cdp_traits.customer_entities e'
		|| E'\n  LEFT JOIN (SELECT x.customer_entity_id, x.vals || ''{}''::jsonb AS vals FROM cdp_traits.entity_attributes x'
		|| ' WHERE x.customer_entity_id IN (' || scope_sql || ') OFFSET 0) ea ON ea.customer_entity_id = e.id) p'
		|| E'\n WHERE p.customer_entity_id IN (' || scope_sql || ')) q WHERE q.vals <> ''{}''';
	PERFORM cdp_traits._outcome(aids, NULL, NULL, pg_catalog.clock_timestamp());
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._calc_predefined(aids text[], events_sql text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	aggs text := '';
	skipcols text := '';
	skips text := '';
	laterals text := '';
	c record;
	i integer := 0;
	one text;
	skipped bigint[];
	sql text;
	shared text := '';
	where_sql text := '';
	keys text := '';
	part text := 'cdp_part_' || (SELECT count(*) + 1 FROM pg_temp.cdp_parts);
	objs text[] := '{}';
	head text;
	tail text;
	median uuid;
	sort_was text[];
	halves_was text[];
	halves_set CONSTANT text[] := '{min_parallel_table_scan_size, enable_hashagg}';
	-- with stored states (_states_fetch made cdp_valid): the states of the
	-- events read, combined with the stored ones, give the values
	vals_expr text;
	with_states CONSTANT boolean := pg_catalog.to_regclass('pg_temp.cdp_valid') IS NOT NULL;
	first_part boolean;
	first_part_name text;
	st_txt text;
	kept text;
	-- without stored states, the states of what is read are given beside
	-- the values when calculate_attributes asks (cdp_stemit: their minimum
	-- number of events, see _states_gather)
	emit_min integer;
	st_aggs text := '';
	st_plain text[] := '{}';
	st_one text := '';
	combs text := '';
	skip_z text := '';
	sts_objs text[] := '{}';
	cbs text := '';
BEGIN
	IF pg_catalog.to_regclass('pg_temp.cdp_stemit') IS NOT NULL THEN
		SELECT x.min_events INTO emit_min FROM pg_temp.cdp_stemit x;
		-- (the first part has every entity that has events, with their number)
		SELECT min(x.name) INTO first_part_name FROM pg_temp.cdp_parts x;
		first_part := first_part_name IS NULL;
		IF NOT first_part AND NOT with_states THEN
			-- the later parts give the states of the entities the first
			-- keeps (a constant array: a temporary table would keep the
			-- statement out of parallel plans)
			EXECUTE pg_catalog.format('SELECT pg_catalog.quote_literal(COALESCE(pg_catalog.array_agg(q.eid), '
				'''{}'')::text) FROM pg_temp.%I q WHERE q.n >= $1', first_part_name)
			   INTO kept USING emit_min;
			kept := kept || '::uuid[]';
		END IF;
	END IF;
	FOREACH one IN ARRAY aids LOOP
		i := i + 1;
		-- compiled once per run by calculate_attributes (alias unique per run)
		SELECT * INTO STRICT c FROM pg_temp.cdp_compiled k WHERE k.aid = one;
		-- (a state of the aggregates' own type goes into the object as its
		-- text, by a cast: to_jsonb would look its output function up for
		-- each)
		st_txt := CASE WHEN c.st_read LIKE '%::cdp_traits.agg_state' THEN '::text' ELSE '' END;
		IF with_states THEN
			-- (_states_fetch is only used when every attribute is stateful)
			st_aggs := st_aggs || E',\n\t' || c.st_agg || ' AS st' || i;
			combs := combs || E',\n\t' || pg_catalog.replace(pg_catalog.replace(c.st_comb, '$A', 'q.st' || i),
				'$B', pg_catalog.replace(c.st_read, '$J', '(v.states -> ' || pg_catalog.quote_literal(one) || ')'))
				|| ' AS cb' || i;
			c.agg := pg_catalog.replace(c.st_fin, '$S', 'z.cb' || i);
		END IF;
		IF c.srf THEN
			-- set-returning values: callers group attributes with the same
			-- expansion and conditions; it is done once, in front
			IF i = 1 THEN
				shared := pg_catalog.format(E'\n  CROSS JOIN LATERAL (%s) xs', c.inner_sql);
				where_sql := E'\n WHERE ' || c.cond;
			END IF;
			c.lat := c.lat_shared;
		END IF;
		-- _jsonb_object_of takes up to 99 values: objects of chunks of 90, concatenated
		IF i % 90 = 1 THEN
			IF i > 1 THEN
				objs := objs || pg_catalog.format('cdp_traits._jsonb_object_of(ARRAY[%s]::text[], %s)', keys, aggs);
				sts_objs := sts_objs || pg_catalog.format('cdp_traits._jsonb_object_of(ARRAY[%s]::text[], %s)', keys, cbs);
				st_plain := st_plain || pg_catalog.format('cdp_traits._jsonb_object_of(ARRAY[%s]::text[], %s)', keys, st_one);
			END IF;
			st_one := '';
			aggs := '';
			keys := '';
			cbs := '';
		END IF;
		aggs := aggs || CASE WHEN aggs <> '' THEN ',' ELSE '' END || E'\n\t\t' || c.agg;
		cbs := cbs || CASE WHEN cbs <> '' THEN ', ' ELSE '' END || 'z.cb' || i || st_txt;
		IF emit_min IS NOT NULL AND NOT with_states THEN
			st_one := st_one || CASE WHEN st_one <> '' THEN ', ' ELSE '' END || '(' || c.st_agg || ')' || st_txt;
		END IF;
		IF c.skipped <> '0::bigint' THEN
			skipcols := skipcols || pg_catalog.format(E',\n\t%s AS s%s', c.skipped, i);
			skip_z := skip_z || pg_catalog.format(', q.s%s', i);
			skips := skips || CASE WHEN i > 1 THEN ', ' ELSE '' END || pg_catalog.format('sum(q.s%s)::bigint', i);
		ELSE
			skips := skips || CASE WHEN i > 1 THEN ', ' ELSE '' END || '0::bigint';
		END IF;
		laterals := laterals || E'\n  ' || c.lat;
		keys := keys || CASE WHEN keys <> '' THEN ', ' ELSE '' END || pg_catalog.quote_literal(one);
	END LOOP;
	objs := objs || pg_catalog.format('cdp_traits._jsonb_object_of(ARRAY[%s]::text[], %s)', keys, aggs);
	sts_objs := sts_objs || pg_catalog.format('cdp_traits._jsonb_object_of(ARRAY[%s]::text[], %s)', keys, cbs);
	st_plain := st_plain || pg_catalog.format('cdp_traits._jsonb_object_of(ARRAY[%s]::text[], %s)', keys, st_one);
	-- the aggregation builds each entity's object of values itself, into a
	-- table of its own that _write_values reads (a plain CREATE TABLE AS may
	-- use parallel workers; a statement with a data-modifying WITH may not)
	-- (the statement is head || FROM item || tail: the definitions' SQL may
	-- hold a % and goes through no format string)
	vals_expr := CASE WHEN pg_catalog.cardinality(objs) = 1 THEN objs[1]
			  ELSE 'NULLIF(' || pg_catalog.array_to_string(ARRAY(
					SELECT 'COALESCE(' || o || ', ''{}'')' FROM pg_catalog.unnest(objs) o), ' || ')
				   || ', ''{}'')' END;
	head := E'SELECT e.customer_entity_id AS eid,\n\t' || vals_expr || ' AS vals' || skipcols
		-- (the states' objects only for the entities that keep them)
		|| CASE WHEN emit_min IS NOT NULL AND NOT with_states THEN
				E',\n\tCASE WHEN '
				|| CASE WHEN first_part THEN 'count(*) >= ' || emit_min
						ELSE 'e.customer_entity_id = ANY (' || kept || ')' END
				|| ' THEN '
				|| pg_catalog.array_to_string(ARRAY(
					SELECT 'COALESCE(' || o || ', ''{}'')' FROM pg_catalog.unnest(st_plain) o), ' || ')
				|| E' END AS sts,\n\tcount(*) AS n'
		   ELSE '' END
		|| E'\n  FROM ';
	tail := shared || laterals || where_sql || E'\n GROUP BY e.customer_entity_id';
	-- a set-returning value: the planner takes each event for 100 values
	-- (the default estimate of a set-returning function), so it sorts the
	-- events before the expansion and aggregates the groups in order; they
	-- are a few (2.4 items per purchase in the benchmark) and hashing the
	-- groups is cheaper: 0.85-0.92 s instead of 1.18 s for the items
	-- statement over a million events (the setting is restored after it, and
	-- with the subtransaction if it fails)
	IF shared <> '' THEN
		sort_was := cdp_traits._swap_settings('{enable_sort}', '{off}');
	END IF;
	IF with_states THEN
		-- the states of the events read (q), combined with the stored ones
		-- (v) in z (OFFSET 0: each combined once, not once per use), give
		-- the values and the states to store (sts); each entity's stored
		-- states are read (detoasted) once, in v (|| '{}' makes a copy in
		-- memory that each state's -> reads), not once per attribute: with
		-- 500 attributes the statement of a small run over 112 entities took
		-- 7.5 s, reading each entity's object of states 500 times from the
		-- TOAST table
		sql := pg_catalog.format(E'CREATE TEMP TABLE %I AS\nSELECT z.eid,\n\t', part)
			|| vals_expr || E' AS vals,\n\t'
			|| 'NULLIF(' || pg_catalog.array_to_string(ARRAY(
					SELECT 'COALESCE(' || o || ', ''{}'')' FROM pg_catalog.unnest(sts_objs) o), ' || ')
			|| ', ''{}'') AS sts, z.n'
			|| pg_catalog.replace(skip_z, 'q.', 'z.')
			|| E'\n  FROM (SELECT COALESCE(q.eid, v.eid) AS eid' || combs || skip_z
			|| ', COALESCE(q.n, 0) + COALESCE(v.n, 0) AS n'
			|| E'\n  FROM (SELECT e.customer_entity_id AS eid' || st_aggs || skipcols || ', count(*) AS n'
			|| E'\n  FROM '
			|| events_sql || tail
			|| E') q\n  FULL JOIN (SELECT x.eid, x.n, x.states || ''{}''::jsonb AS states'
			|| E'\n  FROM pg_temp.cdp_valid x OFFSET 0) v ON v.eid = q.eid OFFSET 0) z';
	ELSE
		-- over many entities, maybe in two halves (see _halves), planned
		-- with no parallel scan inside either half, and the plain
		-- attributes' halves aggregated in order.  Given the choice, the
		-- planner made each half a parallel plan of its own, one after the
		-- other, which _halves rejects, so the statement ran whole: 2.8-3.15
		-- s on a million events, against 2.55-2.7 s for the halves side by
		-- side; and it hashed the halves' groups (10-15 % slower than in
		-- order).  The settings are restored right after the statement, or
		-- as soon as the halves are not run, and with the subtransaction if
		-- it fails.
		median := (SELECT b.median FROM pg_temp.cdp_branches b);
		IF median IS NOT NULL THEN
			halves_was := cdp_traits._swap_settings(halves_set, ARRAY['1TB',
				CASE WHEN shared = '' THEN 'off' ELSE pg_catalog.current_setting('enable_hashagg') END]);
			sql := cdp_traits._halves(head, events_sql, tail, median);
			IF sql IS NULL THEN
				PERFORM cdp_traits._swap_settings(halves_set, halves_was);
				halves_was := NULL;
			END IF;
		END IF;
		sql := pg_catalog.format(E'CREATE TEMP TABLE %I AS\n', part)
			|| COALESCE(sql, head || events_sql || tail);
	END IF;
	RAISE DEBUG 'cdp_traits: computing %: %', aids, sql;
	EXECUTE sql;
	IF sort_was IS NOT NULL THEN
		PERFORM cdp_traits._swap_settings('{enable_sort}', sort_was);
	END IF;
	IF halves_was IS NOT NULL THEN
		PERFORM cdp_traits._swap_settings(halves_set, halves_was);
	END IF;
	-- (statistics for the join with the stored values: without them a few
	-- hundred entities looked like tens of thousands, and the stored values
	-- were read whole instead of through their primary key)
	PERFORM cdp_traits._analyze_temp(part, ARRAY['eid']);
	INSERT INTO pg_temp.cdp_parts VALUES (part);
	IF skipcols <> '' THEN
		EXECUTE pg_catalog.format('SELECT ARRAY[%s] FROM pg_temp.%I q', skips, part) INTO skipped;
	END IF;
	PERFORM cdp_traits._outcome(aids, NULL, skipped, pg_catalog.clock_timestamp());
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._calc_query(aid text, scope_sql text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	def jsonb := (SELECT a.definition FROM cdp_traits.attributes a WHERE a.id = aid);
	dt text := cdp_traits._opt(def, 'data_type');
	q text;
	vtype regtype;
	conv text;
	idx text;
	skipped bigint;
	given text;				-- SQL: r.value holds a value (see _given_sql)
BEGIN
	IF def->>'type' = 'custom' THEN
		q := cdp_traits._custom_sql(def, scope_sql);
	ELSE
		-- ids read from text (a dbt model's varchar column) that are not
		-- uuids ('', 'n/a') name no entity: their rows come with eid NULL,
		-- to be counted as skipped, instead of failing the whole trait
		-- (a string type: text, varchar, citext, a domain over one).  A join,
		-- not "IN (scope) OR ...", which the planner cannot make a semi-join:
		-- a scope of more ids than work_mem holds was scanned once per row
		IF (SELECT t.typcategory = 'S' OR t.oid = 'unknown'::regtype
			  FROM cdp_traits._query_columns(def->>'query') c
			  JOIN pg_catalog.pg_type t ON t.oid = c.type
			 WHERE c.name = 'customer_entity_id' LIMIT 1) THEN
			idx := 'cdp_traits._to_uuid(x.customer_entity_id::text)';
		ELSE
			idx := 'x.customer_entity_id::uuid';
		END IF;
		-- A model computed before a merge names the absorbed entity: its
		-- rows are followed along entity_merges to the live entity, unless
		-- the model has rows of that entity itself, which win.  Only the
		-- ids outside the scope (every live entity) are looked up there,
		-- usually a few: the model's other rows are read once.
		q := pg_catalog.format($q$WITH RECURSIVE own AS MATERIALIZED (
	SELECT y.id AS eid, y.value, s.id IS NOT NULL OR y.id IS NULL AS kept
	  FROM (SELECT %1$s AS id, x.value FROM (
%2$s
) x WHERE pg_catalog.num_nulls(x.value) = 0 AND x.customer_entity_id IS NOT NULL) y
	  LEFT JOIN (%3$s) s(id) ON s.id = y.id
), chain AS (
	SELECT m.merged_id AS id, m.into_id AS at, 1 AS depth
	  FROM cdp_traits.entity_merges m
	 WHERE m.merged_id IN (SELECT o.eid FROM own o WHERE NOT o.kept)
	UNION ALL
	SELECT c.id, m.into_id, c.depth + 1
	  FROM chain c JOIN cdp_traits.entity_merges m ON m.merged_id = c.at
	 WHERE c.depth < 100000
)
SELECT o.eid, o.value FROM own o WHERE o.kept
UNION ALL
SELECT c.at, o.value
  FROM own o JOIN chain c ON c.id = o.eid
 WHERE NOT o.kept AND c.at IN (%3$s)
   AND NOT EXISTS (SELECT FROM own o2 WHERE o2.eid = c.at)$q$,
			idx, def->>'query', scope_sql);
	END IF;
	SELECT c.type INTO vtype FROM cdp_traits._query_columns(q) c WHERE c.name = 'value';
	-- (a numeric NaN or Infinity, an infinite date or time: no value of
	-- the data_type, skipped and counted, see _convert)
	-- (a JSON null is no value, as in predefined attributes: not stored
	-- without a data_type, and with one not counted as a value that did
	-- not convert)
	given := cdp_traits._given_sql('r.value', vtype, 'true');
	conv := CASE WHEN dt IS NULL THEN pg_catalog.format('CASE WHEN %s THEN r.value END', given)
				 ELSE cdp_traits._convert('r.value', vtype, dt) END;
	EXECUTE pg_catalog.format(
		'WITH r AS (%s), v AS (SELECT r.eid, CASE WHEN r.eid IS NOT NULL THEN %s END AS v, '
		'r.eid IS NULL OR %s AS given FROM r), '
		'ins AS (INSERT INTO pg_temp.cdp_new (eid, vals) '
		'SELECT eid, pg_catalog.jsonb_build_object(%L, CASE WHEN count(*) = 1 THEN (pg_catalog.array_agg(j))[1] '
		'ELSE pg_catalog.jsonb_agg(j ORDER BY j) END) '
		'FROM (SELECT eid, pg_catalog.to_jsonb(v) AS j FROM v WHERE pg_catalog.num_nulls(v) = 0) vj GROUP BY eid) '
		'SELECT count(*) FILTER (WHERE pg_catalog.num_nulls(v) = 1 AND given) FROM v', q, conv,
		given, aid) INTO skipped;
	PERFORM cdp_traits._outcome(ARRAY[aid], NULL, ARRAY[skipped], pg_catalog.clock_timestamp());
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._calc_step(kind text, aids text[], scope_sql text, events_sql text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	msg text;
	named uuid;				-- an entity a failing custom query fails for
	t0 timestamptz := pg_catalog.clock_timestamp();
	half integer := pg_catalog.cardinality(aids) / 2;
	-- the most predefined attributes one statement computes, and the most
	-- of them that take a lateral subquery of their own (see below)
	per_statement CONSTANT integer := 500;
	laterals_per_statement CONSTANT integer := 32;
	c record;
	chunk text[] := '{}';
	nlat integer := 0;
BEGIN
	IF pg_catalog.cardinality(aids) = 0 THEN
		RETURN;
	END IF;
	-- Predefined attributes in statements of at most per_statement of
	-- them, and at most laterals_per_statement with a lateral subquery
	-- (an outer_value, outer_weight or outer_filter, or a set-returning
	-- value: see _compile), each statement a read of the events.  The
	-- statement's table has a column of skipped values for most attributes,
	-- and more than about a thousand bigint columns do not fit a row (1,200
	-- attributes failed with "row is too big" and were computed one by
	-- one, see below).  Planning pulls each lateral subquery up into a copy
	-- of the whole statement: 32 of them took 0.5 s, 100 took 12 s and 640
	-- MB, 200 more than 3 GB (the server was killed for memory).
	IF kind = 'predefined' AND (pg_catalog.cardinality(aids) > per_statement
		OR (SELECT pg_catalog.count(*) FROM pg_temp.cdp_compiled k
			 WHERE k.aid = ANY (aids) AND (k.srf OR k.lat <> '')) > laterals_per_statement) THEN
		FOR c IN SELECT u.aid, COALESCE(k.srf OR k.lat <> '', false) AS lateral
				   FROM pg_catalog.unnest(aids) WITH ORDINALITY u(aid, i)
				   LEFT JOIN pg_temp.cdp_compiled k ON k.aid = u.aid
				  ORDER BY u.i LOOP
			IF pg_catalog.cardinality(chunk) = per_statement
			   OR (c.lateral AND nlat = laterals_per_statement) THEN
				PERFORM cdp_traits._calc_step(kind, chunk, scope_sql, events_sql);
				chunk := '{}';
				nlat := 0;
			END IF;
			chunk := chunk || c.aid;
			nlat := nlat + CASE WHEN c.lateral THEN 1 ELSE 0 END;
		END LOOP;
		PERFORM cdp_traits._calc_step(kind, chunk, scope_sql, events_sql);
		RETURN;
	END IF;
	BEGIN
		CASE kind
			WHEN 'predefined' THEN PERFORM cdp_traits._calc_predefined(aids, events_sql);
			WHEN 'query' THEN
				-- within cdp_traits.attribute_timeout (see src/context.c)
				PERFORM cdp_traits._attribute_timer(true);
				PERFORM cdp_traits._calc_query(aids[1], scope_sql);
				PERFORM cdp_traits._attribute_timer(false);
			WHEN 'audience' THEN PERFORM cdp_traits._calc_audience(aids[1], scope_sql);
			WHEN 'audiences' THEN
				IF pg_catalog.cardinality(aids) = 1 THEN
					PERFORM cdp_traits._calc_audience(aids[1], scope_sql);
				ELSE
					PERFORM cdp_traits._calc_audiences(aids, scope_sql);
				END IF;
		END CASE;
		UPDATE pg_temp.cdp_outcome SET duration_ms =
			round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - t0)::numeric * 1000, 1)
		 WHERE cdp_outcome.aid = ANY (aids);
	EXCEPTION
		WHEN query_canceled THEN
			-- the attribute's own time limit: its failure; any other cancel
			-- (a user's, the caller's statement timeout) ends the run
			IF kind <> 'query' OR NOT cdp_traits._attribute_timer(false) THEN
				RAISE;
			END IF;
			msg := pg_catalog.format('query canceled after cdp_traits.attribute_timeout (%s)',
									 cdp_traits._setting('cdp_traits.attribute_timeout'));
			PERFORM cdp_traits._outcome(aids, msg, NULL, t0);
			RAISE WARNING 'attribute "%" was not calculated: %', aids[1], msg;
		WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			IF pg_catalog.cardinality(aids) > 1 THEN
				-- each half again, down to the attributes that fail alone:
				-- one failing definition among n costs about 2 log2(n)
				-- statements, and as many tables of values.  One by one, it
				-- cost n statements (each a read of the events), and
				-- joining their n tables to write the values took over 3 GB
				-- with 300 attributes: the server was killed for memory at
				-- every run of the worker
				PERFORM cdp_traits._calc_step(kind, aids[1:half], scope_sql, events_sql);
				PERFORM cdp_traits._calc_step(kind, aids[half + 1:], scope_sql, events_sql);
			ELSE
				PERFORM cdp_traits._outcome(aids, msg, NULL, t0);
				-- a custom query's error: an entity it fails for, in the
				-- run's record (its statement runs over all at once, and the
				-- error, "division by zero" say, names none)
				IF kind = 'query' THEN
					UPDATE pg_temp.cdp_outcome o
					   SET failing_entity = cdp_traits._failing_entity(aids[1], scope_sql,
																	   pg_catalog.clock_timestamp() - t0)
					 WHERE o.aid = aids[1]
					RETURNING o.failing_entity INTO named;
				END IF;
				IF named IS NOT NULL THEN
					RAISE WARNING 'attribute "%" was not calculated: %', aids[1], msg
						USING HINT = 'calculation_run_attributes.failing_entity names an entity its query fails for.';
				ELSE
					RAISE WARNING 'attribute "%" was not calculated: %', aids[1], msg;
				END IF;
			END IF;
	END;
END;
$$;

CREATE FUNCTION cdp_traits._categorical(aids text[]) RETURNS boolean[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT COALESCE(pg_catalog.array_agg(
			COALESCE(cdp_traits._pivot_type(a.definition) IN ('text', 'boolean', 'text[]'), false)
			ORDER BY u.i), '{}')
	  FROM pg_catalog.unnest($1) WITH ORDINALITY u(aid, i)
	  LEFT JOIN cdp_traits.attributes a ON a.id = u.aid
$$;

CREATE OR REPLACE FUNCTION cdp_traits._check_definition(id text, def jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET standard_conforming_strings = on
SET transform_null_equals = off
AS $$
DECLARE
	typ text;
	k text;
	problem text;
	msg text;
	required text[];
	cols record;
	names text[];
	c record;
	base text;
BEGIN
	-- control characters; in a SQL_ASCII database only ASCII ones: there
	-- the bytes of a multibyte character are characters of their own, and
	-- [[:cntrl:]] takes the second byte of a UTF-8 Ü (0x9C) for one
	IF id IS NULL OR id = '' OR id ~ '[\x01-\x1f\x7f]'
	   OR (pg_catalog.getdatabaseencoding() <> 'SQL_ASCII' AND id ~ '[[:cntrl:]]') THEN
		RAISE EXCEPTION 'invalid attribute id "%"', id
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'An attribute id names a column of pivoted_customer_attributes.',
				  HINT = 'Use printable characters, 1 to 63 bytes.';
	END IF;
	-- the id is the column's name as it is: a longer name would be cut to
	-- 63 bytes (NAMEDATALEN - 1, in the database's encoding), and two ids
	-- alike in those would name one column
	IF pg_catalog.octet_length(id) > 63 THEN
		PERFORM cdp_traits._definition_error(id,
			pg_catalog.format('the id is %s bytes long', pg_catalog.octet_length(id)),
			'An attribute id names a column of pivoted_customer_attributes, and a column name has at most 63 bytes.',
			'Use an id of at most 63 bytes (a character outside ASCII takes 2 to 4 of them in UTF-8).');
	END IF;
	IF id = 'customer_entity_id' THEN
		PERFORM cdp_traits._definition_error(id,
			'the id is the name of the key column of pivoted_customer_attributes',
			'An attribute id names a column of pivoted_customer_attributes, beside its key column customer_entity_id.',
			'Use another id.');
	END IF;
	IF pg_catalog.jsonb_typeof(def) IS DISTINCT FROM 'object' THEN
		PERFORM cdp_traits._definition_error(id, 'the definition must be a JSON object',
			pg_catalog.format('Definition: %s', def));
	END IF;
	typ := def->>'type';
	IF typ IS NULL THEN
		PERFORM cdp_traits._definition_error(id, 'missing key "type"');
	END IF;
	IF typ NOT IN ('avg', 'first', 'last', 'least_frequent', 'list', 'max', 'min', 'most_frequent',
				   'num_of_unique', 'sum', 'value', 'custom', 'external', 'audience') THEN
		PERFORM cdp_traits._definition_error(id, pg_catalog.format('unknown type "%s"', typ), NULL,
			'type is one of avg, first, last, least_frequent, list, max, min, most_frequent, '
			'num_of_unique, sum, value, custom, external, audience.');
	END IF;
	required := CASE typ WHEN 'custom' THEN ARRAY['query'] WHEN 'external' THEN ARRAY['query']
					 WHEN 'audience' THEN ARRAY['condition'] ELSE ARRAY['value'] END;
	FOREACH k IN ARRAY required LOOP
		IF cdp_traits._opt(def, k) IS NULL THEN
			PERFORM cdp_traits._definition_error(id,
				pg_catalog.format('missing key "%s" (required for type %s)', k, typ));
		END IF;
	END LOOP;
	FOREACH k IN ARRAY ARRAY['type', 'value', 'outer_value', 'weight', 'outer_weight', 'filter',
							 'outer_filter', 'data_type', 'query', 'condition'] LOOP
		IF def ? k AND pg_catalog.jsonb_typeof(def->k) NOT IN ('string', 'null') THEN
			PERFORM cdp_traits._definition_error(id, pg_catalog.format('"%s" must be a string', k));
		END IF;
	END LOOP;
	FOREACH k IN ARRAY ARRAY['sources', 'types', 'versions'] LOOP
		IF def ? k AND pg_catalog.jsonb_typeof(def->k) <> 'null' AND (pg_catalog.jsonb_typeof(def->k) <> 'array'
			OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(def->k) x
						WHERE pg_catalog.jsonb_typeof(x) <> 'string')) THEN
			PERFORM cdp_traits._definition_error(id,
				pg_catalog.format('"%s" must be an array of strings', k));
		END IF;
	END LOOP;
	IF def ? 'history' AND pg_catalog.jsonb_typeof(def->'history') NOT IN ('boolean', 'null') THEN
		PERFORM cdp_traits._definition_error(id, '"history" must be true or false');
	END IF;
	IF cdp_traits._opt(def, 'data_type') IS NOT NULL
	   AND cdp_traits._opt(def, 'data_type') NOT IN ('text', 'number', 'boolean', 'date', 'datetime') THEN
		PERFORM cdp_traits._definition_error(id,
			pg_catalog.format('unknown data_type "%s"', def->>'data_type'), NULL,
			'data_type is one of text, number, boolean, date, datetime.');
	END IF;
	IF typ IN ('sum', 'avg') AND cdp_traits._data_type(def) <> 'number' THEN
		PERFORM cdp_traits._definition_error(id,
			pg_catalog.format('type %s needs data_type number', typ));
	END IF;

	-- every SQL fragment is exactly one expression or one SELECT
	FOREACH k IN ARRAY ARRAY['value', 'outer_value', 'weight', 'outer_weight', 'filter',
							 'outer_filter', 'condition', 'query'] LOOP
		IF cdp_traits._opt(def, k) IS NOT NULL THEN
			problem := cdp_traits._sql_problem(cdp_traits._opt(def, k),
				CASE k WHEN 'query' THEN 'subquery' ELSE 'expression' END);
			IF problem IS NOT NULL THEN
				PERFORM cdp_traits._definition_error(id,
					pg_catalog.format('"%s" is not valid SQL: %s', k, problem),
					pg_catalog.format('%s: %s', k, def->>k));
			END IF;
		END IF;
	END LOOP;

	-- type-check against the events (when attached) and the custom/external shapes
	BEGIN
		IF typ NOT IN ('custom', 'external', 'audience') AND cdp_traits._events_attached() THEN
			SELECT * INTO c FROM cdp_traits._compile(id, def, 'a');
			PERFORM cdp_traits._query_columns(pg_catalog.format(
				'SELECT %s, %s FROM %s e %s GROUP BY e.customer_entity_id',
				c.agg, c.skipped, cdp_traits._events_rel('cdp_traits.customer_events'::pg_catalog.regclass), c.lat));
		ELSIF typ = 'custom' THEN
			-- base as the calculation gives it: the events' own column types
			-- (an id of bigint or uuid), or, with no events attached, text
			IF cdp_traits._events_attached() THEN
				base := pg_catalog.format(
					'SELECT ev.id, ev.source_id, ev.type, ev.version, ev.event_time, ev.payload FROM %s ev',
					cdp_traits._events_rel(pg_catalog.to_regclass('cdp_traits.customer_events')));
			ELSE
				base := 'SELECT NULL::text AS id, NULL::text AS source_id, NULL::text AS type, '
					'NULL::text AS version, NULL::timestamptz AS event_time, NULL::jsonb AS payload';
			END IF;
			SELECT pg_catalog.array_agg(q.name ORDER BY q.name) INTO names
			  FROM cdp_traits._query_columns(pg_catalog.format(
					E'WITH base AS (%s) SELECT * FROM (\n%s\n) q', base, def->>'query')) q;
			IF names IS DISTINCT FROM ARRAY['value'] THEN
				PERFORM cdp_traits._definition_error(id,
					'a custom query must return exactly one column, named "value"',
					pg_catalog.format('The query returns: %s.', COALESCE(pg_catalog.array_to_string(names, ', '), 'no columns')));
			END IF;
			IF cdp_traits._events_attached() THEN
				PERFORM cdp_traits._query_columns(cdp_traits._custom_sql(def, 'SELECT NULL::uuid AS id'));
			END IF;
		ELSIF typ = 'external' THEN
			SELECT pg_catalog.array_agg(q.name ORDER BY q.name) INTO names
			  FROM cdp_traits._query_columns(def->>'query') q;
			IF NOT names @> ARRAY['customer_entity_id', 'value'] THEN
				PERFORM cdp_traits._definition_error(id,
					'an external query must return columns "customer_entity_id" and "value"',
					pg_catalog.format('The query returns: %s.', COALESCE(pg_catalog.array_to_string(names, ', '), 'no columns')));
			END IF;
			SELECT pg_catalog.format_type(qc.type, NULL) INTO k
			  FROM cdp_traits._query_columns(def->>'query') qc
			  JOIN pg_catalog.pg_type qt ON qt.oid = qc.type
			 WHERE qc.name = 'customer_entity_id'
			   AND NOT (qt.typcategory = 'S' OR qc.type IN ('uuid'::regtype, 'unknown'::regtype)
						OR qt.typbasetype = 'uuid'::regtype)
			 LIMIT 1;
			IF k IS NOT NULL THEN
				PERFORM cdp_traits._definition_error(id,
					pg_catalog.format('"customer_entity_id" of an external query is %s, not uuid', k),
					pg_catalog.format('query: %s', def->>'query'),
					'Return the ids of cdp_traits.customer_entities as uuid (or as text holding one).');
			END IF;
			PERFORM cdp_traits._query_columns(pg_catalog.format(
				E'SELECT q.customer_entity_id::uuid, q.value FROM (\n%s\n) q', def->>'query'));
		END IF;
	EXCEPTION
		WHEN invalid_parameter_value THEN RAISE;
		WHEN undefined_table OR undefined_function THEN
			-- a table or function of the user's, not schema-qualified
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			PERFORM cdp_traits._definition_error(id, msg,
				pg_catalog.format('Definition: %s', def),
				CASE WHEN msg NOT LIKE 'operator %' THEN
					'Definitions'' SQL runs with search_path = pg_catalog, cdp_traits, pg_temp: '
					'schema-qualify your own tables and functions (public.my_table).' END);
		WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			PERFORM cdp_traits._definition_error(id, msg,
				pg_catalog.format('Definition: %s', def));
	END;
END;
$$;

CREATE FUNCTION cdp_traits._clear_new() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	part text;
BEGIN
	TRUNCATE pg_temp.cdp_new;
	FOR part IN SELECT p.name FROM pg_temp.cdp_parts p LOOP
		EXECUTE pg_catalog.format('DROP TABLE pg_temp.%I', part);
	END LOOP;
	TRUNCATE pg_temp.cdp_parts;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._compile(id text, def jsonb, alias text,
	OUT cond text, OUT lat text, OUT agg text, OUT srf boolean, OUT skipped text,
	OUT inner_sql text, OUT lat_shared text, OUT stateful boolean,
	OUT st_agg text, OUT st_comb text, OUT st_fin text, OUT st_read text,
	OUT rels oid[], OUT funcs oid[])
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	typ text := def->>'type';
	dt text := cdp_traits._data_type(def);
	val text := cdp_traits._opt(def, 'value');
	weight text := cdp_traits._opt(def, 'weight', '1');
	oval text := cdp_traits._opt(def, 'outer_value', 'value');
	oweight text := cdp_traits._opt(def, 'outer_weight', 'weight');
	filt text := cdp_traits._opt(def, 'filter');
	ofilt text := cdp_traits._opt(def, 'outer_filter');
	weighted boolean;
	sel text;
	direct boolean;
	vx text;
	rx text;
	wx text;
	fx text;
	rtype regtype;
	wtype regtype;
	wconv text;
	wr text;
	bad text[] := '{}';
	conds text[] := '{}';
	k text;
	fn text;
	-- the events as the definition sees them (json payload as jsonb, ...)
	evs text := cdp_traits._events_rel('cdp_traits.customer_events'::pg_catalog.regclass);
BEGIN
	FOREACH k IN ARRAY ARRAY['sources', 'types', 'versions'] LOOP
		IF pg_catalog.jsonb_typeof(def->k) = 'array' AND pg_catalog.jsonb_array_length(def->k) > 0 THEN
			-- one value: a plain comparison (cheaper per event than = ANY)
			conds := conds || CASE WHEN pg_catalog.jsonb_array_length(def->k) = 1
				THEN pg_catalog.format('e.%I = %L::text',
					CASE k WHEN 'sources' THEN 'source_id' WHEN 'types' THEN 'type' ELSE 'version' END,
					def->k->>0)
				ELSE pg_catalog.format('e.%I = ANY (%L::text[])',
					CASE k WHEN 'sources' THEN 'source_id' WHEN 'types' THEN 'type' ELSE 'version' END,
					(SELECT pg_catalog.array_agg(x) FROM pg_catalog.jsonb_array_elements_text(def->k) x)) END;
		END IF;
	END LOOP;
	IF filt IS NOT NULL THEN
		conds := conds || ('(' || filt || E'\n)');
	END IF;
	cond := COALESCE(pg_catalog.array_to_string(conds, ' AND '), 'true');
	IF cond = '' THEN cond := 'true'; END IF;

	inner_sql := pg_catalog.format(
		E'SELECT (%s\n) AS value, (%s\n) AS weight, e.event_time AS event_time', val, weight);
	srf := cdp_traits._query_returns_set(inner_sql || ' FROM ' || evs || ' e');
	-- An outer expression that returns a set (outer_value
	-- jsonb_array_elements_text(value->'tags')) gives several rows per
	-- value, in a lateral subquery of its own: beside the laterals of other
	-- attributes in one statement, the rows of each event were the product
	-- of both expansions (a sum counted each value once per element of
	-- another attribute's array, an event whose other array was empty gave
	-- no values at all).  Such an attribute is computed as a set-returning
	-- one (its statement one of the set-returning groups), alone in its
	-- group: its inner SQL carries a mark of its own, which callers group
	-- by (md5 of inner_sql and cond).
	IF cdp_traits._query_returns_set(pg_catalog.format(
			E'SELECT (%s\n), (%s\n), (%s\n) FROM (%s FROM %s e) x',
			oval, oweight, COALESCE(ofilt, 'true'), inner_sql, evs)) THEN
		srf := true;
		inner_sql := inner_sql || E'\n/* outer set ' || pg_catalog.md5(id) || ' */';
	END IF;
	SELECT c.type INTO rtype
	  FROM cdp_traits._query_columns(pg_catalog.format(
			E'SELECT y.r FROM %s e CROSS JOIN LATERAL (SELECT (%s\n) AS r FROM (%s) x) y',
			evs, oval, inner_sql)) c;
	IF filt IS NOT NULL AND (SELECT c.type FROM cdp_traits._query_columns(pg_catalog.format(
			E'SELECT (%s\n) AS f FROM %s e', filt, evs)) c) <> 'boolean'::regtype THEN
		RAISE EXCEPTION '"filter" must be a boolean expression' USING ERRCODE = 'datatype_mismatch';
	END IF;
	IF ofilt IS NOT NULL AND (SELECT c.type FROM cdp_traits._query_columns(pg_catalog.format(
			E'SELECT y.f FROM %s e CROSS JOIN LATERAL (SELECT (%s\n) AS f FROM (%s) x) y',
			evs, ofilt, inner_sql)) c) <> 'boolean'::regtype THEN
		RAISE EXCEPTION '"outer_filter" must be a boolean expression' USING ERRCODE = 'datatype_mismatch';
	END IF;
	IF NOT srf AND cond <> 'true' THEN
		-- extract values only from the events that qualify (one scan serves
		-- attributes over different sources and types)
		inner_sql := pg_catalog.format(
			E'SELECT CASE WHEN %s THEN (%s\n) END AS value, CASE WHEN %s THEN (%s\n) END AS weight, '
			'e.event_time AS event_time', cond, val, cond, weight);
	END IF;

	weighted := typ IN ('most_frequent', 'least_frequent')
		AND (weight <> '1' OR oweight <> 'weight');
	IF weighted THEN
		-- the weight as a float8 ($W its expression): a number, text or
		-- JSON that is not one (or beyond float8's range: numeric 1e400) is
		-- NULL, its row skipped and counted, not a cast's error that failed
		-- the attribute for every entity
		SELECT c.type INTO wtype
		  FROM cdp_traits._query_columns(pg_catalog.format(
				E'SELECT y.w FROM %s e CROSS JOIN LATERAL (SELECT (%s\n) AS w FROM (%s) x) y',
				evs, oweight, inner_sql)) c;
		wconv := CASE
			WHEN wtype IN ('double precision'::regtype, 'real'::regtype, 'smallint'::regtype,
						   'integer'::regtype, 'bigint'::regtype) THEN '(($W)::float8)'
			WHEN wtype = 'numeric'::regtype THEN 'cdp_traits._to_float8(($W)::text)'
			WHEN wtype IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype,
						   'name'::regtype, 'unknown'::regtype, 'jsonb'::regtype, 'json'::regtype)
				THEN 'cdp_traits._to_float8(' || cdp_traits._text_form('$W', wtype) || ')'
			ELSE '(($W)::float8)' END;
	END IF;
	-- the per-value expressions over x (value, weight, event_time): x is the
	-- attribute's own expansion, or (lat_shared) one shared in front as xs
	sel := pg_catalog.format(E'SELECT %s AS v, (%s\n) AS r, %s AS w, %s AS f, %s AS wr',
		cdp_traits._convert(oval, rtype, dt), oval,
		CASE WHEN weighted THEN pg_catalog.replace(wconv, '$W', oweight || E'\n') ELSE 'NULL::float8' END,
		CASE WHEN ofilt IS NULL THEN 'true' ELSE '((' || ofilt || E'\n)::boolean)' END,
		CASE WHEN weighted THEN '(' || oweight || E'\n)' ELSE 'NULL::float8' END);
	lat := pg_catalog.format('CROSS JOIN LATERAL (%s FROM (%s) x) %I', sel, inner_sql, alias);
	lat_shared := pg_catalog.format(
		'CROSS JOIN LATERAL (%s FROM (SELECT xs.value, xs.weight, xs.event_time) x) %I', sel, alias);
	-- A value of one row per event that the outer expressions do not
	-- rework (no outer_value, outer_weight or outer_filter: most
	-- definitions) goes straight into the aggregate, without a lateral
	-- subquery (lat empty).  The plan is the same: the planner pulls each
	-- lateral subquery up into the statement.  But each pull-up copies the
	-- whole statement, so planning a statement of 20 of them touched 6 MB of
	-- memory: 20 ms in a new session, whose first touch of each page is a
	-- page fault, against 2-5 ms for the same statement written directly.
	direct := NOT srf AND oval = 'value' AND oweight = 'weight' AND ofilt IS NULL;
	IF direct THEN
		rx := CASE WHEN cond = 'true' THEN '(' || val || E'\n)'
			  ELSE pg_catalog.format(E'(CASE WHEN %s THEN (%s\n) END)', cond, val) END;
		vx := '(' || cdp_traits._convert(rx, rtype, dt) || ')';
		wr := CASE WHEN NOT weighted THEN 'NULL::float8'
			  WHEN cond = 'true' THEN '(' || weight || E'\n)'
			  ELSE pg_catalog.format(E'(CASE WHEN %s THEN (%s\n) END)', cond, weight) END;
		wx := CASE WHEN NOT weighted THEN 'NULL::float8' ELSE pg_catalog.replace(wconv, '$W', wr) END;
		fx := 'true';
		lat := '';
	ELSE
		vx := pg_catalog.quote_ident(alias) || '.v';
		rx := pg_catalog.quote_ident(alias) || '.r';
		wx := pg_catalog.quote_ident(alias) || '.w';
		wr := pg_catalog.quote_ident(alias) || '.wr';
		fx := pg_catalog.quote_ident(alias) || '.f';
	END IF;
	fn := CASE typ
		WHEN 'most_frequent' THEN 'cdp_traits.most_frequent(' || vx || CASE WHEN weighted THEN ', ' || wx ELSE '' END || ')'
		WHEN 'least_frequent' THEN 'cdp_traits.least_frequent(' || vx || CASE WHEN weighted THEN ', ' || wx ELSE '' END || ')'
		WHEN 'first' THEN 'cdp_traits.first(' || vx || ', e.event_time)'
		WHEN 'last' THEN 'cdp_traits.last(' || vx || ', e.event_time)'
		WHEN 'list' THEN 'cdp_traits.unique_list(' || vx || ')'
		WHEN 'num_of_unique' THEN 'cdp_traits.num_of_unique(' || vx || ')'
		WHEN 'value' THEN 'cdp_traits.any_value(' || vx || ')'
		WHEN 'sum' THEN 'sum(' || vx || ')'
		WHEN 'avg' THEN 'avg(' || vx || ')'
		WHEN 'min' THEN CASE WHEN dt = 'boolean' THEN 'bool_and(' ELSE 'min(' END || vx || ')'
		WHEN 'max' THEN CASE WHEN dt = 'boolean' THEN 'bool_or(' ELSE 'max(' END || vx || ')'
	END;
	agg := pg_catalog.format('%s FILTER (WHERE %s AND %s IS TRUE)', fn, cond, fx);
	-- skipped: the rows of a value given (see _given_sql) that did not
	-- convert, or whose weight was given and did not
	IF cdp_traits._convert('x', rtype, dt) ~ '^(cdp_traits\.(to_number|_to_)|NULLIF)' THEN
		bad := bad || (vx || ' IS NULL');
	END IF;
	IF weighted AND wconv LIKE 'cdp_traits._to_float8(%' THEN
		bad := bad || pg_catalog.format('(%s AND %s IS NULL)',
			cdp_traits._given_sql(wr, wtype, wr || ' IS NOT NULL'), wx);
	END IF;
	IF pg_catalog.cardinality(bad) > 0 THEN
		skipped := pg_catalog.format(
			'count(*) FILTER (WHERE %s AND %s IS TRUE AND %s AND (%s))',
			cond, fx, cdp_traits._given_sql(rx, rtype, rx || ' IS NOT NULL'),
			pg_catalog.array_to_string(bad, ' OR '));
	ELSE
		skipped := '0::bigint';
	END IF;
	IF typ = 'num_of_unique' THEN
		-- no qualifying value: no row, not 0
		agg := pg_catalog.format('NULLIF(%s FILTER (WHERE %s AND %s IS TRUE), 0)', fn, cond, fx);
	END IF;

	-- the state form: an aggregate whose result can be stored, combined
	-- with the state of further events, and finished into the same value
	-- as agg over all of them (sum and avg of numbers only: numeric sums
	-- are exact in any order)
	st_read := '($J #>> ''{}'')::cdp_traits.agg_state';
	CASE
		WHEN typ IN ('most_frequent', 'least_frequent') THEN
			st_agg := 'cdp_traits.frequency_state(' || vx
				|| CASE WHEN weighted THEN ', ' || wx ELSE '' END || ')';
			st_fin := 'cdp_traits.state_' || typ || '($S, NULL::' || cdp_traits._sql_type(dt) || ')';
		WHEN typ IN ('first', 'last') THEN
			st_agg := 'cdp_traits.' || typ || '_state(' || vx || ', e.event_time)';
			st_fin := 'cdp_traits.state_' || typ || '($S, NULL::' || cdp_traits._sql_type(dt) || ')';
		WHEN typ = 'list' THEN
			st_agg := 'cdp_traits.unique_state(' || vx || ')';
			st_fin := 'cdp_traits.state_unique_list($S, NULL::' || cdp_traits._sql_type(dt) || ')';
		WHEN typ = 'num_of_unique' THEN
			st_agg := 'cdp_traits.unique_state(' || vx || ')';
			st_fin := 'NULLIF(cdp_traits.state_num_of_unique($S), 0)';
		WHEN typ = 'sum' AND dt = 'number' THEN
			st_agg := 'sum(' || vx || ')';
			st_comb := 'COALESCE($A + $B, $A, $B)';
			st_fin := '$S';
			st_read := '($J #>> ''{}'')::numeric';
		WHEN typ = 'avg' AND dt = 'number' THEN
			-- {sum, count}: avg(numeric) is sum / count (numeric_div)
			st_agg := NULL;
			st_comb := 'ARRAY[COALESCE(($A)[1] + ($B)[1], ($A)[1], ($B)[1]), COALESCE(($A)[2], 0) + COALESCE(($B)[2], 0)]';
			st_fin := 'CASE WHEN ($S)[2] > 0 THEN ($S)[1] / ($S)[2] END';
			st_read := 'ARRAY[($J ->> 0)::numeric, ($J ->> 1)::numeric]';
		WHEN typ IN ('min', 'max') THEN
			st_agg := fn;
			st_comb := CASE WHEN dt = 'boolean' THEN
							CASE typ WHEN 'min' THEN 'COALESCE($A AND $B, $A, $B)' ELSE 'COALESCE($A OR $B, $A, $B)' END
						ELSE CASE typ WHEN 'min' THEN 'LEAST($A, $B)' ELSE 'GREATEST($A, $B)' END END;
			st_fin := '$S';
			st_read := '($J #>> ''{}'')::' || cdp_traits._sql_type(dt);
		ELSE
			st_read := NULL;
	END CASE;
	IF st_agg IS NOT NULL THEN
		st_agg := st_agg || pg_catalog.format(' FILTER (WHERE %s AND %s IS TRUE)', cond, fx);
	ELSIF st_read IS NOT NULL THEN
		-- avg
		st_agg := pg_catalog.format('ARRAY[sum(%s) FILTER (WHERE %s AND %s IS TRUE), '
			'count(%s) FILTER (WHERE %s AND %s IS TRUE)]::numeric[]', vx, cond, fx, vx, cond, fx);
	END IF;
	st_comb := COALESCE(st_comb, CASE WHEN st_read IS NOT NULL THEN 'cdp_traits.agg_state_merge($A, $B)' END);
	-- whether the expressions are immutable (as written, views not looked
	-- into: the events' columns are what they are) and read no relation but
	-- the events (a subquery of another table: its rows may change under a
	-- stored state), and what the compilation depends on (see
	-- compiled_definitions): the relations and functions of a statement of
	-- every expression of the definition, and _compile itself
	SELECT d.rels, d.funcs || 'cdp_traits._compile(text, jsonb, text)'::pg_catalog.regprocedure::oid,
		   st_read IS NOT NULL AND d.immutable
		   AND d.rels <@ ARRAY['cdp_traits.customer_events'::pg_catalog.regclass::oid]
	  INTO rels, funcs, stateful
	  FROM cdp_traits._query_deps(pg_catalog.format(
			'SELECT %s, %s, %s, (%s) FROM %s e %s',
			vx, wx, fx, cond, evs, lat)) d;
	IF NOT stateful THEN
		st_agg := NULL; st_comb := NULL; st_fin := NULL; st_read := NULL;
	END IF;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._context_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET standard_conforming_strings = on
SET transform_null_equals = off
AS $$
DECLARE
	problem text;
BEGIN
	-- a changed or removed query: the last refresh's error was the old
	-- query's (on a key made a plain value, never refreshed, it stayed)
	IF TG_OP = 'UPDATE' AND NEW.query IS DISTINCT FROM OLD.query THEN
		NEW.error := NULL;
		NEW.error_at := NULL;
	END IF;
	IF NEW.query IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.query IS DISTINCT FROM OLD.query) THEN
		problem := cdp_traits._sql_problem(NEW.query, 'query');
		IF problem IS NOT NULL THEN
			RAISE EXCEPTION 'invalid query for context key "%": %', NEW.key, problem
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Query: %s', NEW.query),
					  HINT = 'A context query is one SELECT; its first column of the first row becomes the value.';
		END IF;
		BEGIN
			PERFORM cdp_traits._query_columns(NEW.query);
		EXCEPTION WHEN OTHERS THEN
			DECLARE
				msg text;
				state text;
			BEGIN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
				-- (a name not found: the writer's search_path is not the
				-- query's, which may be why)
				IF state IN ('42P01', '42883', '42704', '3F000') THEN
					RAISE EXCEPTION 'invalid query for context key "%": %', NEW.key, msg
						USING ERRCODE = 'invalid_parameter_value',
							  DETAIL = format('Query: %s', NEW.query),
							  HINT = 'Context queries run with search_path = pg_catalog, cdp_traits, pg_temp: schema-qualify your own tables, types and functions.';
				END IF;
				RAISE EXCEPTION 'invalid query for context key "%": %', NEW.key, msg
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = format('Query: %s', NEW.query);
			END;
		END;
		-- a new or changed query runs at the next refresh, unless the row comes
		-- with its value and refresh time (as a restore from pg_dump does)
		IF TG_OP = 'UPDATE' OR NEW.value IS NULL THEN
			NEW.modified := NULL;
		END IF;
	END IF;
	RETURN NEW;
END;
$$;

CREATE FUNCTION cdp_traits._context_md5(def jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF pg_catalog.strpos(pg_catalog.lower(def::text), 'context') = 0 THEN
		RETURN NULL;
	END IF;
	RETURN (WITH d AS (SELECT s #>> '{}' AS t
				 FROM pg_catalog.jsonb_path_query(def, 'strict $.** ? (@.type() == "string")') s),
	calls AS (SELECT (SELECT pg_catalog.count(*) FROM d, pg_catalog.regexp_matches(d.t, 'context_value', 'gi') m)
				   + (SELECT pg_catalog.count(*) FROM d, pg_catalog.regexp_matches(d.t,
						'(?:\mcdp_traits"?\s*\.\s*"?|\m(?:from|join)\s+"?)context"?(?![_[:alnum:]$])', 'gi') m) AS n),
	lit AS (SELECT pg_catalog.replace(m[1], '''''', '''') AS key
			  FROM d, pg_catalog.regexp_matches(d.t, 'context_value"?\s*\(\s*''((?:[^'']|'''')*)''(?:\s*::\s*(?:pg_catalog\s*\.\s*)?"?text"?)?\s*\)', 'gi') m)
	SELECT CASE WHEN (SELECT n FROM calls) > 0 THEN (
		SELECT pg_catalog.md5(COALESCE(pg_catalog.string_agg(
				   pg_catalog.quote_literal(c.key) || '=' || pg_catalog.quote_nullable(c.value),
				   E'\n' ORDER BY c.key COLLATE "C"), ''))
		  FROM cdp_traits.context c
		 WHERE (SELECT n FROM calls) > (SELECT pg_catalog.count(*) FROM lit)
			OR c.key IN (SELECT lit.key FROM lit))
	END);
END
$$;

CREATE OR REPLACE FUNCTION cdp_traits._convert(x text, t regtype, dt text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE $3
		WHEN 'text' THEN cdp_traits._text_form($1, $2)
		WHEN 'number' THEN CASE
			WHEN $2 IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)
				THEN '(' || $1 || ')::numeric'
			WHEN $2 = 'numeric'::regtype
				THEN 'NULLIF(NULLIF(NULLIF((' || $1 || '), ''NaN''::numeric), '
					 || '''Infinity''::numeric), ''-Infinity''::numeric)'
			WHEN $2 IN ('real'::regtype, 'double precision'::regtype)
				THEN 'cdp_traits.to_number((' || $1 || ')::text)'
			ELSE 'cdp_traits.to_number(' || cdp_traits._text_form($1, $2) || ')' END
		WHEN 'boolean' THEN CASE WHEN $2 = 'boolean'::regtype THEN '(' || $1 || ')'
			ELSE 'cdp_traits._to_boolean(' || cdp_traits._text_form($1, $2) || ')' END
		WHEN 'date' THEN CASE
			WHEN $2 = 'date'::regtype THEN 'NULLIF(NULLIF((' || $1 || '), ''infinity''::date), ''-infinity''::date)'
			WHEN $2 = 'timestamp with time zone'::regtype
				THEN 'NULLIF(NULLIF(((' || $1 || ') AT TIME ZONE ''UTC'')::date, ''infinity''::date), ''-infinity''::date)'
			WHEN $2 = 'timestamp without time zone'::regtype
				THEN 'NULLIF(NULLIF((' || $1 || ')::date, ''infinity''::date), ''-infinity''::date)'
			ELSE 'cdp_traits._to_date(' || cdp_traits._text_form($1, $2) || ')' END
		WHEN 'datetime' THEN CASE
			WHEN $2 = 'timestamp with time zone'::regtype
				THEN 'NULLIF(NULLIF((' || $1 || '), ''infinity''::timestamptz), ''-infinity''::timestamptz)'
			WHEN $2 IN ('timestamp without time zone'::regtype, 'date'::regtype)
				THEN 'NULLIF(NULLIF(((' || $1 || ')::timestamp AT TIME ZONE ''UTC''), '
					 || '''infinity''::timestamptz), ''-infinity''::timestamptz)'
			ELSE 'cdp_traits._to_timestamptz(' || cdp_traits._text_form($1, $2) || ')' END
	END
$$;

CREATE FUNCTION cdp_traits._count_changes(deltas jsonb) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO cdp_traits.attribute_counts AS c (attribute_id, customers)
	SELECT d.key, (d.value->>'n')::bigint FROM pg_catalog.jsonb_each($1) d
	 WHERE (d.value->>'n')::bigint <> 0 ORDER BY 1
	ON CONFLICT (attribute_id) DO UPDATE SET customers = c.customers + EXCLUDED.customers;
	INSERT INTO cdp_traits.attribute_value_counts AS c (attribute_id, value, customers)
	SELECT d.key, v->0, (v->>1)::bigint
	  FROM pg_catalog.jsonb_each($1) d CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(d.value->'v') v
	 ORDER BY 1, 2
	ON CONFLICT (attribute_id, value) DO UPDATE SET customers = c.customers + EXCLUDED.customers;
	DELETE FROM cdp_traits.attribute_counts WHERE customers <= 0;
	DELETE FROM cdp_traits.attribute_value_counts WHERE customers <= 0;
$$;

CREATE FUNCTION cdp_traits._count_changes_at_commit(deltas jsonb) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO cdp_traits.pending_count_changes (deltas)
	SELECT $1 WHERE $1 IS NOT NULL AND $1 <> '{}';
	SELECT cdp_traits._apply_counts_at_commit() WHERE $1 IS NOT NULL AND $1 <> '{}';
$$;

CREATE FUNCTION cdp_traits._custom_fails(def jsonb, ids uuid[]) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
BEGIN
	EXECUTE 'SELECT pg_catalog.count(*) FROM ('
			|| cdp_traits._custom_sql(def, 'SELECT pg_catalog.unnest($1::uuid[]) AS id') || ') x'
		USING ids;
	RETURN false;
EXCEPTION
	WHEN query_canceled THEN
		RAISE;
	WHEN OTHERS THEN
		RETURN true;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._custom_sql(def jsonb, scope_sql text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.format(E'SELECT s.id AS eid, q.value FROM (%s) s CROSS JOIN LATERAL ('
		'WITH base AS (SELECT ev.id, ev.source_id, ev.type, ev.version, ev.event_time, ev.payload '
		'FROM cdp_traits.event_entities ee JOIN %s ev ON ev.id = %s '
		'WHERE ee.customer_entity_id = s.id) '
		|| E'SELECT value FROM (\n%s\n) q0) q WHERE pg_catalog.num_nulls(q.value) = 0',
		$2, cdp_traits._events_rel(src.events), cdp_traits._event_id_of_key('ee.event_id'), $1->>'query')
	  FROM cdp_traits.events_source src
$$;

CREATE FUNCTION cdp_traits._drop_run_tables() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	part text;
BEGIN
	IF pg_catalog.to_regclass('pg_temp.cdp_parts') IS NOT NULL THEN
		FOR part IN SELECT p.name FROM pg_temp.cdp_parts p LOOP
			EXECUTE pg_catalog.format('DROP TABLE IF EXISTS pg_temp.%I', part);
		END LOOP;
	END IF;
	DROP TABLE IF EXISTS pg_temp.cdp_scope, pg_temp.cdp_new, pg_temp.cdp_outcome, pg_temp.cdp_changed,
		pg_temp.cdp_compiled, pg_temp.cdp_parts, pg_temp.cdp_branches, pg_temp.cdp_events,
		pg_temp.cdp_valid, pg_temp.cdp_stemit, pg_temp.cdp_stw,
		pg_temp.cdp_changes, pg_temp.cdp_live, pg_temp.cdp_diff;
END;
$$;

CREATE FUNCTION cdp_traits._drop_values(aids text[], auds text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF auds IS NOT NULL THEN
		INSERT INTO cdp_traits.segment_toggles (vendor, segment, user_id, member, event_time)
		SELECT 0, k.aid, ea.customer_entity_id::text, false, pg_catalog.now()
		  FROM cdp_traits.entity_attributes ea
		 CROSS JOIN LATERAL pg_catalog.unnest(auds) k(aid)
		 WHERE ea.vals ?| auds AND ea.vals -> k.aid = 'true'::jsonb
		 ORDER BY ea.customer_entity_id, k.aid;
	END IF;
	-- (the rows in entity order, as _entities_removed takes them: two such
	-- statements over the same entities do not deadlock)
	PERFORM FROM cdp_traits.entity_attributes ea WHERE ea.vals ?| aids
	  ORDER BY ea.customer_entity_id FOR NO KEY UPDATE;
	DELETE FROM cdp_traits.entity_attributes ea WHERE ea.vals ?| aids AND ea.vals - aids = '{}';
	UPDATE cdp_traits.entity_attributes ea SET vals = ea.vals - aids WHERE ea.vals ?| aids;
	-- (once the values are held; see attribute_history for the instant)
	UPDATE cdp_traits.attribute_history h SET valid_to = GREATEST(pg_catalog.clock_timestamp(), h.valid_from)
	 WHERE h.attribute_id = ANY (aids) AND h.valid_to IS NULL;
	DELETE FROM cdp_traits.attribute_counts c WHERE c.attribute_id = ANY (aids);
	DELETE FROM cdp_traits.attribute_value_counts c WHERE c.attribute_id = ANY (aids);
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._entities_removed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	aids text[] := ARRAY(SELECT a.id FROM cdp_traits.attributes a ORDER BY a.id);
	deltas jsonb;
BEGIN
	-- (their values in entity order first, as _drop_values and switching
	-- history on take them: a statement removing several entities does not
	-- deadlock with those)
	PERFORM FROM cdp_traits.entity_attributes ea
	 WHERE ea.customer_entity_id IN (SELECT o.id FROM cdp_traits_old o)
	 ORDER BY ea.customer_entity_id FOR UPDATE;
	EXECUTE $q$
	WITH gone AS (
		DELETE FROM cdp_traits.entity_attributes ea
		 USING cdp_traits_old o
		 WHERE ea.customer_entity_id = o.id
		RETURNING ea.customer_entity_id, ea.vals
	), kv AS (
		SELECT g.customer_entity_id, x.key AS attribute_id, x.value
		  FROM gone g CROSS JOIN LATERAL pg_catalog.jsonb_each(g.vals) x
	), exits AS (
		INSERT INTO cdp_traits.segment_toggles (vendor, segment, user_id, member, event_time)
		SELECT 0, kv.attribute_id, kv.customer_entity_id::text, false, pg_catalog.now()
		  FROM kv JOIN cdp_traits.attributes a ON a.id = kv.attribute_id
		 WHERE a.definition->>'type' = 'audience' AND kv.value = 'true'::jsonb
		 ORDER BY kv.customer_entity_id, kv.attribute_id
	)
	SELECT cdp_traits._value_deltas(g.vals, NULL, $1, $2) FROM gone g
	$q$ INTO deltas USING aids, cdp_traits._categorical(aids);
	-- history: every open row of the entities ends, in a statement of its
	-- own, once the values are held: a calculation whose lock the delete
	-- waited for wrote rows after that statement began, which it could not
	-- see (and so left open for an entity that no longer exists), nor could
	-- it see those of history switched on for their values meanwhile
	UPDATE cdp_traits.attribute_history h SET valid_to = GREATEST(pg_catalog.clock_timestamp(), h.valid_from)
	  FROM cdp_traits_old o
	 WHERE h.customer_entity_id = o.id AND h.valid_to IS NULL;
	-- (at commit: see pending_count_changes)
	PERFORM cdp_traits._count_changes_at_commit(deltas);
	RETURN NULL;
END;
$$;

CREATE FUNCTION cdp_traits._events_rel(rel regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN pg_catalog.bool_or(
				(a.attname = 'event_time' AND a.atttypid = 'pg_catalog.timestamp'::pg_catalog.regtype)
				OR (a.attname = 'payload' AND a.atttypid = 'pg_catalog.json'::pg_catalog.regtype))
		THEN pg_catalog.format('(SELECT %s FROM %s n)', pg_catalog.string_agg(
			CASE WHEN a.attname = 'event_time' AND a.atttypid = 'pg_catalog.timestamp'::pg_catalog.regtype
				THEN '(n.event_time AT TIME ZONE ''UTC'') AS event_time'
				WHEN a.attname = 'payload' AND a.atttypid = 'pg_catalog.json'::pg_catalog.regtype
				THEN 'n.payload::pg_catalog.jsonb AS payload'
				ELSE 'n.' || pg_catalog.quote_ident(a.attname) END, ', ' ORDER BY a.attnum), $1)
		ELSE $1::text END
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
$$;

CREATE FUNCTION cdp_traits._failing_entity(aid text, scope_sql text, took interval)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	def jsonb := (SELECT a.definition FROM cdp_traits.attributes a WHERE a.id = aid);
	was uuid := (SELECT r.failing_entity FROM cdp_traits.calculation_run_attributes r
				  WHERE r.attribute_id = aid AND r.failing_entity IS NOT NULL
				  ORDER BY r.run_id DESC LIMIT 1);
	limit_ms bigint := (EXTRACT(epoch FROM took) * 2000)::bigint + 1000;
	configured bigint := (SELECT s.setting::bigint FROM pg_catalog.pg_settings s
						   WHERE s.name = 'cdp_traits.attribute_timeout');
	saved text[];
	ids uuid[];
	lo integer := 1;
	hi integer;
	mid integer;
	found uuid;
BEGIN
	IF def->>'type' IS DISTINCT FROM 'custom' THEN
		RETURN NULL;
	END IF;
	IF configured > 0 THEN
		limit_ms := LEAST(limit_ms, configured);
	END IF;
	BEGIN
		-- (put back below, or by this block's end if it fails)
		saved := cdp_traits._swap_settings(ARRAY['cdp_traits.attribute_timeout'], ARRAY[limit_ms || 'ms']);
		PERFORM cdp_traits._attribute_timer(true);
		IF was IS NOT NULL THEN
			EXECUTE 'SELECT pg_catalog.array_agg(x) FROM (' || scope_sql || ') s(x) WHERE x = $1'
				INTO ids USING was;
			IF ids IS NOT NULL AND cdp_traits._custom_fails(def, ids) THEN
				found := was;
			END IF;
		END IF;
		IF found IS NULL THEN
			EXECUTE 'SELECT pg_catalog.array_agg(x ORDER BY x) FROM (' || scope_sql || ') s(x)' INTO ids;
			hi := COALESCE(pg_catalog.cardinality(ids), 0);
			-- the query fails over ids[lo:hi]
			WHILE lo < hi LOOP
				mid := (lo + hi) / 2;
				IF cdp_traits._custom_fails(def, ids[lo:mid]) THEN
					hi := mid;
				ELSIF cdp_traits._custom_fails(def, ids[mid + 1:hi]) THEN
					lo := mid + 1;
				ELSE
					EXIT;			-- it fails only for several together
				END IF;
			END LOOP;
			IF lo = hi AND cdp_traits._custom_fails(def, ids[lo:lo]) THEN
				found := ids[lo];
			END IF;
		END IF;
		PERFORM cdp_traits._attribute_timer(false);
		PERFORM cdp_traits._swap_settings(ARRAY['cdp_traits.attribute_timeout'], saved);
	EXCEPTION WHEN query_canceled THEN
		IF NOT cdp_traits._attribute_timer(false) THEN
			RAISE;
		END IF;
		RETURN NULL;
	END;
	RETURN found;
END;
$$;

CREATE FUNCTION cdp_traits._given_sql(x text, t regtype, otherwise text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE $2
		WHEN 'jsonb'::regtype THEN '(' || $1 || ') <> ''null''::jsonb'
		WHEN 'json'::regtype THEN 'pg_catalog.json_typeof(' || $1 || ') <> ''null'''
		ELSE $3 END
$$;

CREATE OR REPLACE FUNCTION cdp_traits._grant(rel regclass, class text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	seq boolean := (SELECT c.relkind = 'S' FROM pg_catalog.pg_class c WHERE c.oid = rel);
BEGIN
	EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC, cdp_traits_reader, cdp_traits_admin', rel);
	IF class = 'config' THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'calculated' AND seq THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, USAGE ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'calculated' THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'log' AND NOT seq THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'result' THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader, cdp_traits_admin', rel);
	ELSE
		RAISE EXCEPTION 'unknown privilege class "%" for %', class, rel;
	END IF;
END;
$$;

CREATE FUNCTION cdp_traits._grants_of_others(rels oid[], OUT rel text, OUT statement text)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.oid::pg_catalog.regclass::pg_catalog.text,
		   pg_catalog.format('GRANT %s ON %s TO %s%s', x.privilege_type, c.oid::pg_catalog.regclass,
				CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END,
				CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
	  FROM pg_catalog.pg_class c
	 CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) x
	  LEFT JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
	 WHERE c.oid = ANY (rels) AND x.grantee <> c.relowner
	   AND COALESCE(r.rolname NOT IN ('cdp_traits_reader', 'cdp_traits_admin'), true)
$$;

CREATE FUNCTION cdp_traits._halves(head text, events_sql text, tail text, median uuid,
								   planned boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	sql text;
	plan jsonb;
BEGIN
	IF median IS NULL THEN
		RETURN NULL;
	END IF;
	sql := head || pg_catalog.format('(SELECT * FROM %s WHERE e.customer_entity_id < %L::uuid) e',
									 events_sql, median) || tail
		|| E'\nUNION ALL\n'
		|| head || pg_catalog.format('(SELECT * FROM %s WHERE e.customer_entity_id >= %L::uuid) e',
									 events_sql, median) || tail;
	IF NOT planned THEN
		RETURN sql;
	END IF;
	EXECUTE 'EXPLAIN (FORMAT JSON) ' || sql INTO plan;
	IF plan->0->'Plan'->>'Node Type' = 'Gather'
	   AND plan->0->'Plan'->'Plans'->0->>'Node Type' = 'Append'
	   AND plan->0->'Plan'->'Plans'->0->>'Parallel Aware' = 'true' THEN
		RETURN sql;
	END IF;
	RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._is_published_view(target name, rel name) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT EXISTS (
		SELECT FROM pg_catalog.pg_class c
		  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
		   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
		 WHERE c.relnamespace = cdp_traits._schema_oid(target) AND c.relname = rel)
$$;

CREATE FUNCTION cdp_traits._pending_counts_apply() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	total jsonb;
BEGIN
	WITH gone AS (
		DELETE FROM cdp_traits.pending_count_changes p WHERE p.xid = pg_catalog.pg_current_xact_id()
		RETURNING p.deltas
	), d AS (
		SELECT x.key, x.value FROM gone g CROSS JOIN LATERAL pg_catalog.jsonb_each(g.deltas) x
	), n AS (
		-- (attributes deleted or renamed since have no counts any more)
		SELECT d.key, pg_catalog.sum(COALESCE((d.value->>'n')::bigint, 0)) AS n FROM d
		 WHERE d.key IN (SELECT a.id FROM cdp_traits.attributes a) GROUP BY d.key
	), v AS (
		SELECT d.key, e->0 AS value, pg_catalog.sum((e->>1)::bigint) AS c
		  FROM d CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(d.value->'v') e
		 GROUP BY 1, 2
	)
	SELECT pg_catalog.jsonb_object_agg(n.key, pg_catalog.jsonb_build_object('n', n.n, 'v',
			COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(v.value, v.c))
						FROM v WHERE v.key = n.key AND v.c <> 0), '[]')))
	  INTO total FROM n;
	IF total IS NOT NULL THEN
		PERFORM cdp_traits._count_changes(total);
	END IF;
END;
$$;

CREATE FUNCTION cdp_traits._pivot_column(id text, def jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
			WHEN x.pt = 'jsonb' THEN x.ex
			WHEN $2->>'type' = 'audience' THEN pg_catalog.format('COALESCE((%s)::boolean, false)', x.ex)
			WHEN x.pt LIKE '%[]' THEN pg_catalog.format(
				'CASE WHEN %s IS NOT NULL THEN ARRAY(SELECT x::%s FROM pg_catalog.jsonb_array_elements_text(%s) x) END',
				x.ex, pg_catalog.left(x.pt, -2), x.ex)
			WHEN $2->>'type' IN ('custom', 'external') THEN pg_catalog.format(
				'CASE WHEN pg_catalog.jsonb_typeof(%s) NOT IN (''array'', ''object'') THEN %s END',
				x.ex, cdp_traits._convert(x.ex, 'jsonb', cdp_traits._data_type($2)))
			ELSE pg_catalog.format('(%s #>> ''{}'')::%s', x.ex, x.pt)
		END
	  FROM (SELECT pg_catalog.format('ea.vals -> %L', $1) AS ex, cdp_traits._pivot_type($2) AS pt) x
$$;

CREATE OR REPLACE FUNCTION cdp_traits._publications_added() RETURNS trigger
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

CREATE FUNCTION cdp_traits._publications_lock() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
	LOCK TABLE cdp_traits.publications IN SHARE ROW EXCLUSIVE MODE;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._publish_view(target name, rel name) RETURNS void
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

CREATE OR REPLACE FUNCTION cdp_traits._rebuild_pivot() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	cols text;
	sql text;
	published boolean;
	users text;
	views oid[];
	granted_on text[];
	grants text[];
	n bigint;
BEGIN
	-- a column per attribute, and a view has at most 1600 columns (a
	-- statement that went past it failed with PostgreSQL's "tables can have
	-- at most 1600 columns" or "target lists can have at most 1664
	-- entries", in the context of a view the user did not write)
	SELECT count(*) INTO n FROM cdp_traits.attributes;
	IF n > 1599 THEN
		RAISE EXCEPTION 'too many attributes: % (at most 1599)', n
			USING ERRCODE = 'too_many_columns',
				  DETAIL = 'cdp_traits.pivoted_customer_attributes has a column for each attribute '
					|| 'besides customer_entity_id, and a view has at most 1600 columns.',
				  HINT = 'Delete attributes that are no longer used, or compute values that belong '
					|| 'together as one custom attribute whose query returns a JSON object.';
	END IF;
	-- (in one statement, each definition's column type computed once: a
	-- loop calling _pivot_type up to three times per attribute, each a
	-- call of functions with their own search_path that are not inlined,
	-- and growing the text by concatenation took 140 ms of each change of
	-- 1,600 attributes, even one that leaves the view as it is)
	SELECT COALESCE(pg_catalog.string_agg(pg_catalog.format(E',\n\t%s AS %I',
				cdp_traits._pivot_column(at.id, at.definition), at.id), '' ORDER BY at.created, at.id), '')
	  INTO cols
	  FROM cdp_traits.attributes at;
	sql := E'SELECT e.id AS customer_entity_id' || cols || E'\n  FROM cdp_traits.customer_entities e'
		|| E'\n  LEFT JOIN cdp_traits.entity_attributes ea ON ea.customer_entity_id = e.id';
	-- (the view as it is already: see pivot_source)
	IF pg_catalog.to_regclass('cdp_traits.pivoted_customer_attributes') IS NOT NULL
	   AND EXISTS (SELECT FROM cdp_traits.pivot_source p WHERE p.source_md5 = pg_catalog.md5(sql)) THEN
		RETURN;
	END IF;
	-- published copies (see publish()) are recreated with the new columns;
	-- publishing waits meanwhile, and this for publishing under way (the
	-- lock comes first: see _publications_lock)
	published := pg_catalog.to_regclass('cdp_traits.publications') IS NOT NULL;
	IF published THEN
		PERFORM cdp_traits._publications_lock();
	END IF;
	DELETE FROM cdp_traits.pivot_source;
	INSERT INTO cdp_traits.pivot_source VALUES (pg_catalog.md5(sql));
	-- What roles other than the owner and the extension's own were granted
	-- on the view and its published copies (a user's grants to a reporting
	-- role) is granted again on the views made again below: dropping them
	-- must not take it away.
	views := ARRAY[pg_catalog.to_regclass('cdp_traits.pivoted_customer_attributes')::pg_catalog.oid];
	IF published THEN
		views := views || ARRAY(SELECT p.view::pg_catalog.oid FROM cdp_traits._published_views() p
								 WHERE p.rel = 'pivoted_customer_attributes');
	END IF;
	SELECT pg_catalog.array_agg(g.rel), pg_catalog.array_agg(g.statement)
	  INTO granted_on, grants
	  FROM cdp_traits._grants_of_others(views) g;
	-- Columns only added: the view and its published copies are replaced in
	-- place (at the end), so that views over them -- which any role may
	-- make, even one that may not read them -- do not stand in the way.
	BEGIN
		EXECUTE 'CREATE OR REPLACE VIEW cdp_traits.pivoted_customer_attributes AS ' || sql;
	EXCEPTION WHEN invalid_table_definition OR feature_not_supported OR datatype_mismatch THEN
		-- columns removed, renamed or retyped: the view must be recreated,
		-- its published copies (which depend on it) dropped first
		IF published THEN
			PERFORM cdp_traits._unpublish_view('pivoted_customer_attributes');
		END IF;
		IF EXISTS (SELECT FROM pg_catalog.pg_depend d
					WHERE d.classid = 'pg_catalog.pg_class'::regclass
					  AND d.objid = 'cdp_traits.pivoted_customer_attributes'::regclass
					  AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e') THEN
			-- a member cannot be dropped; its replacement becomes one again below
			ALTER EXTENSION cdp_traits DROP VIEW cdp_traits.pivoted_customer_attributes;
		END IF;
		BEGIN
			DROP VIEW cdp_traits.pivoted_customer_attributes;
		EXCEPTION WHEN dependent_objects_still_exist THEN
			-- (named: any role may create a view over it)
			users := cdp_traits._views_using('cdp_traits.pivoted_customer_attributes'::regclass);
			RAISE EXCEPTION 'cannot rebuild cdp_traits.pivoted_customer_attributes: other objects depend on it'
				USING ERRCODE = 'dependent_objects_still_exist',
					  DETAIL = 'Removing, renaming or retyping an attribute changes the view''s columns. '
						|| 'These use it: ' || COALESCE(users, 'objects other than views') || '.',
					  HINT = 'Drop the views that use pivoted_customer_attributes (or cdp_traits.unpublish()), change the attribute, then recreate them.';
		END;
		EXECUTE 'CREATE VIEW cdp_traits.pivoted_customer_attributes AS ' || sql;
		PERFORM cdp_traits._grant('cdp_traits.pivoted_customer_attributes'::regclass, 'result');
	END;
	-- The view stays a member of the extension, so pg_dump leaves it out: a
	-- restore rebuilds it when the attributes' rows are loaded (their trigger),
	-- rather than creating it before they are there.
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
					WHERE d.classid = 'pg_catalog.pg_class'::regclass
					  AND d.objid = 'cdp_traits.pivoted_customer_attributes'::regclass
					  AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e') THEN
		ALTER EXTENSION cdp_traits ADD VIEW cdp_traits.pivoted_customer_attributes;
	END IF;
	COMMENT ON VIEW cdp_traits.pivoted_customer_attributes IS
		'one row per entity, one typed column per attribute (rebuilt when attributes change)';
	IF published THEN
		PERFORM cdp_traits._republish_view('pivoted_customer_attributes');
	END IF;
	FOR i IN 1 .. COALESCE(pg_catalog.array_length(grants, 1), 0) LOOP
		IF pg_catalog.to_regclass(granted_on[i]) IS NOT NULL THEN
			EXECUTE grants[i];
		END IF;
	END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._republish_view(rel name) RETURNS void
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

CREATE FUNCTION cdp_traits._runs_deleted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		TRUNCATE cdp_traits.calculation_run_attributes;
	ELSE
		DELETE FROM cdp_traits.calculation_run_attributes a
		 USING cdp_old_runs o
		 WHERE a.run_id = o.id;
	END IF;
	RETURN NULL;
END;
$$;

CREATE FUNCTION cdp_traits._schema_oid(target name) RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = target
$$;

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

CREATE OR REPLACE FUNCTION cdp_traits._scoped_events(scope_sql text, few boolean DEFAULT false) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	-- few: a small share of all entities; "= ANY (ARRAY(...))" makes the
	-- planner probe the entity index instead of scanning event_entities, and
	-- the events are then probed in the order of their stored keys (that of
	-- the ids for uuid keys), which keeps successive probes of the events'
	-- primary key on nearby pages (30k events of 1k entities: 160 ms against
	-- 176-181 ms in the order of event_entities' heap, in one A/B)
	SELECT CASE WHEN $2 THEN pg_catalog.format(
		'(SELECT ev.*, k.customer_entity_id FROM (SELECT ee.event_id, ee.customer_entity_id '
		'FROM cdp_traits.event_entities ee WHERE ee.customer_entity_id = ANY (ARRAY(%s)) '
		'ORDER BY ee.event_id) k JOIN %s ev ON ev.id = %s) e',
		$1, cdp_traits._events_rel(s.events), cdp_traits._event_id_of_key('k.event_id'))
	  ELSE pg_catalog.format(
		'(SELECT ev.*, ee.customer_entity_id FROM cdp_traits.event_entities ee '
		'JOIN %s ev ON ev.id = %s WHERE ee.customer_entity_id IN (%s)) e',
		cdp_traits._events_rel(s.events), cdp_traits._event_id_of_key('ee.event_id'), $1) END
	  FROM cdp_traits.events_source s
$$;

CREATE FUNCTION cdp_traits._states_fetch(sig text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	src record;
BEGIN
	-- (events: the table as definitions see it, see _events_rel)
	SELECT cdp_traits._events_rel(s.events) AS events INTO STRICT src FROM cdp_traits.events_source s;
	DROP TABLE IF EXISTS pg_temp.cdp_valid, pg_temp.cdp_events;
	CREATE TEMP TABLE cdp_valid (eid uuid PRIMARY KEY, states jsonb NOT NULL, n bigint NOT NULL);
	EXECUTE pg_catalog.format('CREATE TEMP TABLE cdp_events AS SELECT ev.*, NULL::uuid AS customer_entity_id '
		'FROM %s ev WITH NO DATA', src.events);
	-- (the events in the order of their keys, as _scoped_events does for a few entities)
	EXECUTE pg_catalog.format($q$
		WITH valid AS MATERIALIZED (
			-- (by primary key probes: the table is read whole otherwise)
			SELECT st.customer_entity_id AS eid, st.states, st.n
			  FROM cdp_traits.entity_states st
			 WHERE st.customer_entity_id = ANY (ARRAY(SELECT s.id FROM pg_temp.cdp_scope s))
			   AND st.signature = $1
		), keep_valid AS (
			INSERT INTO pg_temp.cdp_valid SELECT * FROM valid
		)
		INSERT INTO pg_temp.cdp_events
		SELECT ev.*, k.eid
		  FROM (SELECT ee.event_id AS k, ee.customer_entity_id AS eid FROM cdp_traits.event_entities ee
				 WHERE ee.customer_entity_id = ANY (ARRAY(
						SELECT s.id FROM pg_temp.cdp_scope s WHERE s.id NOT IN (SELECT v.eid FROM valid v)))
				UNION ALL
				SELECT q.event_id, q.customer_entity_id FROM cdp_traits.entity_state_events q
				 WHERE q.customer_entity_id IN (SELECT v.eid FROM valid v)
				ORDER BY 1) k
		  JOIN %s ev ON ev.id = %s
	$q$, src.events, cdp_traits._event_id_of_key('k.k')) USING sig;
	PERFORM cdp_traits._analyze_temp('cdp_events', ARRAY['customer_entity_id']);
	PERFORM cdp_traits._analyze_temp('cdp_valid', ARRAY['eid']);
	RETURN (SELECT count(*) FROM pg_temp.cdp_valid);
END;
$$;

CREATE FUNCTION cdp_traits._states_gather(sig text, aids text[]) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	parts text[];
	sts text;
	joins text;
BEGIN
	IF sig IS NOT NULL AND EXISTS (SELECT FROM pg_temp.cdp_outcome o
									WHERE o.aid = ANY (aids) AND o.error IS NOT NULL) THEN
		sig := NULL;
	END IF;
	DROP TABLE IF EXISTS pg_temp.cdp_stw;
	IF sig IS NOT NULL AND pg_catalog.to_regclass('pg_temp.cdp_stemit') IS NOT NULL THEN
		-- the states of the entities with many events, from every part (the
		-- first, of the attributes without set-returning values if any,
		-- has every entity that has events, with their number)
		SELECT pg_catalog.array_agg(p.name ORDER BY p.name) INTO parts FROM pg_temp.cdp_parts p;
		sts := 'COALESCE(p1.sts, ''{}'')';
		joins := pg_catalog.format('pg_temp.%I p1', parts[1]);
		IF pg_catalog.cardinality(parts) > 8 THEN
			-- (many: the states of the others merged per entity by one
			-- aggregation, as _write_values merges values; a join of 1,200
			-- of them took more memory than the machine had)
			sts := sts || ' || COALESCE(o.sts, ''{}'')';
			joins := joins || ' LEFT JOIN (SELECT u.eid, cdp_traits._jsonb_merge(u.sts) AS sts FROM ('
				|| (SELECT pg_catalog.string_agg(pg_catalog.format(
						'SELECT x.eid, x.sts FROM pg_temp.%I x WHERE x.sts IS NOT NULL', x), ' UNION ALL ')
					  FROM pg_catalog.unnest(parts[2:]) x)
				|| ') u GROUP BY u.eid) o ON o.eid = p1.eid';
			parts := parts[1:1];
		END IF;
		FOR i IN 2 .. pg_catalog.cardinality(parts) LOOP
			sts := sts || pg_catalog.format(' || COALESCE(p%s.sts, ''{}'')', i);
			-- (only the rows with states: a run over every entity hashes
			-- a few thousand rows instead of all)
			joins := joins || pg_catalog.format(' LEFT JOIN (SELECT x.eid, x.sts FROM pg_temp.%I x '
				'WHERE x.sts IS NOT NULL) p%s ON p%s.eid = p1.eid', parts[i], i, i);
		END LOOP;
		EXECUTE 'CREATE TEMP TABLE cdp_stw AS SELECT p1.eid, p1.n, ' || sts || ' AS sts FROM ' || joins
			|| ' WHERE p1.n >= $1'
		  USING (SELECT x.min_events FROM pg_temp.cdp_stemit x);
	END IF;
	DROP TABLE IF EXISTS pg_temp.cdp_valid, pg_temp.cdp_stemit;
	RETURN sig;
END;
$$;

CREATE FUNCTION cdp_traits._states_signature(aids text[]) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
BEGIN
	RETURN (SELECT CASE WHEN pg_catalog.bool_and(k.stateful) THEN
		pg_catalog.md5(pg_catalog.string_agg(k.aid || E'\x01' || k.cond || E'\x01' || k.lat
			|| E'\x01' || COALESCE(k.inner_sql, '') || E'\x01' || k.st_agg, E'\x02' ORDER BY k.aid)) END
	  FROM pg_temp.cdp_compiled k WHERE k.aid = ANY (aids));
END;
$$;

CREATE FUNCTION cdp_traits._states_store(sig text, marked_at timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
BEGIN
	WITH gone AS (
		DELETE FROM cdp_traits.entity_states st USING pg_temp.cdp_scope s
		 WHERE st.customer_entity_id = s.id AND st.signature IS DISTINCT FROM sig
		RETURNING st.customer_entity_id
	)
	DELETE FROM cdp_traits.entity_state_events q USING gone
	 WHERE q.customer_entity_id = gone.customer_entity_id;
	IF sig IS NULL OR pg_catalog.to_regclass('pg_temp.cdp_stw') IS NULL THEN
		DROP TABLE IF EXISTS pg_temp.cdp_stw;
		RETURN;
	END IF;
	-- marked by this run: the row version is the run's (calculated =
	-- marked_at, the instant it marks them with); (one primary key probe
	-- each: as a join, the planner takes that condition for one row of all
	-- and scans them for each)
	DELETE FROM pg_temp.cdp_stw w
	 WHERE (SELECT ce.calculated FROM cdp_traits.customer_entities ce WHERE ce.id = w.eid)
		   IS DISTINCT FROM marked_at;
	WITH emptied AS (
		DELETE FROM cdp_traits.entity_state_events q
		 WHERE q.customer_entity_id IN (SELECT w.eid FROM pg_temp.cdp_stw w)
	)
	INSERT INTO cdp_traits.entity_states AS st (customer_entity_id, signature, n, states)
	SELECT w.eid, sig, w.n, w.sts FROM pg_temp.cdp_stw w
	ON CONFLICT (customer_entity_id) DO UPDATE
	   SET signature = EXCLUDED.signature, n = EXCLUDED.n, states = EXCLUDED.states;
	DROP TABLE pg_temp.cdp_stw;
END;
$$;

CREATE FUNCTION cdp_traits._swap_settings(names text[], vals text[]) RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	was text[] := '{}';
BEGIN
	FOR i IN 1 .. pg_catalog.cardinality(names) LOOP
		was := was || pg_catalog.current_setting(names[i]);
		PERFORM pg_catalog.set_config(names[i], vals[i], true);
	END LOOP;
	RETURN was;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._unpublish_view(rel name) RETURNS void
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

CREATE FUNCTION cdp_traits._views_using(rel regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('%s (owner %s)',
				r.ev_class::pg_catalog.regclass, pg_catalog.pg_get_userbyid(c.relowner)), ', ')
	  FROM pg_catalog.pg_depend d
	  JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.oid = d.objid
	  JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
	 WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
	   AND d.refobjid = rel AND r.ev_class <> rel
$$;

CREATE FUNCTION cdp_traits._without_waiting(stmt text, idcol text, ids_sql text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
	n bigint;
	total bigint := 0;
	chunk CONSTANT integer := 4096;
	lo integer;
	one uuid;
	ids uuid[];
	part CONSTANT text := pg_catalog.format(stmt, idcol || ' = ANY ($1)');
BEGIN
	BEGIN
		EXECUTE pg_catalog.format(stmt, 'true');
		GET DIAGNOSTICS n = ROW_COUNT;
		RETURN n;
	EXCEPTION WHEN lock_not_available THEN
		NULL;
	END;
	EXECUTE 'SELECT pg_catalog.array_agg(x) FROM (' || ids_sql || ') s(x)' INTO ids;
	lo := 1;
	WHILE lo <= COALESCE(pg_catalog.cardinality(ids), 0) LOOP
		BEGIN
			EXECUTE part USING ids[lo:lo + chunk - 1];
			GET DIAGNOSTICS n = ROW_COUNT;
			total := total + n;
		EXCEPTION WHEN lock_not_available THEN
			FOREACH one IN ARRAY ids[lo:lo + chunk - 1] LOOP
				BEGIN
					EXECUTE part USING ARRAY[one];
					GET DIAGNOSTICS n = ROW_COUNT;
					total := total + n;
				EXCEPTION WHEN lock_not_available THEN
					NULL;
				END;
			END LOOP;
		END;
		lo := lo + chunk;
	END LOOP;
	RETURN total;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits._write_values(run bigint, aids text[], scope_sql text, scope text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	ok text[];
	hist text[];
	auds text[];
	versions jsonb;
	deltas jsonb;
	sources text[];
	new_sql text;
	changes bigint;
	written bigint;
	k bigint;
	n bigint;
	all_new boolean;
	flags boolean[];
	-- (the entities whose history changes)
	hist_entities bigint;
	-- (the instant of the run's changes of history: when it got its turn)
	run_start timestamptz;
BEGIN
	SELECT pg_catalog.array_agg(o.aid) INTO ok FROM pg_temp.cdp_outcome o
	 WHERE o.aid = ANY (aids) AND o.error IS NULL AND NOT o.written;
	IF ok IS NULL THEN
		RETURN;
	END IF;
	SELECT pg_catalog.array_agg(a.id) FILTER (WHERE (a.definition->>'history')::boolean),
		   pg_catalog.array_agg(a.id) FILTER (WHERE a.definition->>'type' = 'audience'),
		   pg_catalog.jsonb_object_agg(a.id, a.version)
	  INTO hist, auds, versions
	  FROM cdp_traits.attributes a WHERE a.id = ANY (ok);
	SELECT r.started_at INTO run_start FROM cdp_traits.calculation_runs r WHERE r.id = run;

	-- the new values: the tables of the predefined steps (one row per
	-- entity each) and cdp_new (the other steps': one row per entity and
	-- attribute), joined per entity if there are several
	SELECT pg_catalog.array_agg(pg_catalog.format('SELECT eid, vals FROM pg_temp.%I WHERE vals IS NOT NULL', p.name)
								ORDER BY p.name)
	  INTO sources FROM pg_temp.cdp_parts p;
	IF sources IS NULL OR EXISTS (SELECT FROM pg_temp.cdp_new) THEN
		sources := COALESCE(sources, '{}')
			|| 'SELECT eid, cdp_traits._jsonb_merge(vals) AS vals FROM pg_temp.cdp_new GROUP BY eid'::text;
	END IF;
	new_sql := sources[1];
	IF pg_catalog.cardinality(sources) > 8 THEN
		-- many tables (a statement of many attributes failed, and they were
		-- computed in parts; or thousands of attributes): their objects
		-- merged per entity by one aggregation, not by a join of each (the
		-- keys of the tables differ).  A full join of 300 of them, each on
		-- the COALESCE of the ids before it, took over 3 GB to plan
		new_sql := 'SELECT u.eid, cdp_traits._jsonb_merge(u.vals) AS vals FROM ('
			|| pg_catalog.array_to_string(sources, ' UNION ALL ') || ') u GROUP BY u.eid';
	ELSIF pg_catalog.cardinality(sources) > 1 THEN
		DECLARE
			eids text := 's1.eid';
			vals text := 's1.vals';
			joins text := '(' || sources[1] || ') s1';
		BEGIN
			FOR i IN 2 .. pg_catalog.cardinality(sources) LOOP
				joins := joins || pg_catalog.format(' FULL JOIN (%s) s%s ON s%s.eid = COALESCE(%s)',
					sources[i], i, i, eids);
				eids := eids || pg_catalog.format(', s%s.eid', i);
				vals := pg_catalog.format('cdp_traits._merge_values(%s, s%s.vals, ''{}''::text[])', vals, i);
			END LOOP;
			new_sql := pg_catalog.format('SELECT COALESCE(%s) AS eid, %s AS vals FROM %s', eids, vals, joins);
		END;
	END IF;

	-- per entity: its values with those of ok replaced by the new ones
	-- (every entity: the entities with new values or stored ones)
	DROP TABLE IF EXISTS pg_temp.cdp_changes;
	IF scope = 'all' THEN
		EXECUTE pg_catalog.format($q$
			CREATE TEMP TABLE cdp_changes AS
			SELECT COALESCE(n.eid, o.customer_entity_id) AS eid, o.vals AS old_vals,
				   cdp_traits._merge_values(o.vals, n.vals, $1) AS new_vals, o.vals IS NULL AS fresh,
				   o.xmin AS row_xmin
			  FROM (%s) n
			  FULL JOIN cdp_traits.entity_attributes o ON o.customer_entity_id = n.eid
			 WHERE cdp_traits._values_changed(o.vals, n.vals, $1)
		$q$, new_sql) USING ok;
	ELSE
		EXECUTE pg_catalog.format($q$
			CREATE TEMP TABLE cdp_changes AS
			SELECT s.id AS eid, o.vals AS old_vals,
				   cdp_traits._merge_values(o.vals, n.vals, $1) AS new_vals, o.vals IS NULL AS fresh,
				   o.xmin AS row_xmin
			  FROM (%s) s(id)
			  LEFT JOIN (%s) n
				ON n.eid = s.id
			  LEFT JOIN cdp_traits.entity_attributes o ON o.customer_entity_id = s.id
			 WHERE (o.vals IS NOT NULL OR n.vals IS NOT NULL)
			   AND cdp_traits._values_changed(o.vals, n.vals, $1)
		$q$, scope_sql, new_sql) USING ok;
	END IF;
	GET DIAGNOSTICS changes = ROW_COUNT;
	-- (the row count, the entities and which are new: the statements below
	-- join it with the entities and the stored values; without the share of
	-- new ones, the 200k entities of a first calculation looked like 1k, and
	-- were locked by as many index probes)
	PERFORM cdp_traits._analyze_temp('cdp_changes', ARRAY['eid', 'fresh']);

	-- Entities removed meanwhile are skipped, and nothing waits for a
	-- stitching transaction: a stored row is locked before it is updated or
	-- deleted (a stitching transaction removing the entity then waits for us
	-- and removes what we wrote); an entity that gets values for the first
	-- time is locked so that it cannot go until we commit.  Rows held by a
	-- stitching transaction are skipped: those entities are dirty again.
	-- cdp_live: the entities written (stored: they had a row), and now: the
	-- values a stored row holds when locked, if they are no longer those
	-- read above.
	DROP TABLE IF EXISTS pg_temp.cdp_live;
	CREATE TEMP TABLE cdp_live (id uuid NOT NULL, stored boolean NOT NULL, now jsonb);
	-- (SKIP LOCKED never waits, see _without_waiting: no lock order needed;
	-- the entities locked are listed only if some were skipped, locking
	-- again what we hold.  Stored rows only if some change is not of a new
	-- entity: a first calculation would scan its 200k changes three times
	-- more for nothing, 100-130 ms)
	SELECT count(*) INTO k FROM pg_temp.cdp_changes c WHERE c.fresh;
	written := 0;
	IF k < changes THEN
		written := cdp_traits._without_waiting(
			'INSERT INTO pg_temp.cdp_live SELECT ea.customer_entity_id, true, '
			'CASE WHEN ea.xmin <> c.row_xmin THEN ea.vals END '
			'FROM cdp_traits.entity_attributes ea JOIN pg_temp.cdp_changes c ON c.eid = ea.customer_entity_id '
			'WHERE NOT c.fresh AND %s FOR NO KEY UPDATE OF ea SKIP LOCKED',
			'ea.customer_entity_id', 'SELECT c.eid FROM pg_temp.cdp_changes c WHERE NOT c.fresh');
		-- The values of an attribute this run does not compute may have
		-- been taken away since they were read (it was deleted by a
		-- transaction open when the run started, which the run left out):
		-- those rows get the run's values merged into what they hold now,
		-- not what was read, which would bring the deleted values back; a
		-- row that held nothing else is gone, and the entity gets a new one.
		-- (Only those values can change under a run: the definitions it
		-- computes are locked, and other runs wait for it.)
		IF written < changes - k OR EXISTS (SELECT FROM pg_temp.cdp_live l WHERE l.now IS NOT NULL) THEN
			-- (the run's values: those of ok in new_vals; a row gone is
			-- merged into nothing, and its entity is new)
			UPDATE pg_temp.cdp_changes c
			   SET new_vals = cdp_traits._merge_values(COALESCE(g.now, '{}'), c.new_vals - ARRAY(
								  SELECT x FROM pg_catalog.jsonb_object_keys(c.new_vals) x WHERE x <> ALL (ok)), ok),
				   fresh = g.gone
			  FROM (SELECT c2.eid, l.now, l.id IS NULL AS gone
					  FROM pg_temp.cdp_changes c2 LEFT JOIN pg_temp.cdp_live l ON l.id = c2.eid
					 WHERE NOT c2.fresh
					   AND (l.now IS NOT NULL
							OR (l.id IS NULL AND NOT EXISTS (SELECT FROM cdp_traits.entity_attributes ea
															  WHERE ea.customer_entity_id = c2.eid)))) g
			 WHERE c.eid = g.eid;
			DELETE FROM pg_temp.cdp_changes c WHERE c.fresh AND c.new_vals = '{}';
			GET DIAGNOSTICS n = ROW_COUNT;
			changes := changes - n;
			SELECT count(*) INTO k FROM pg_temp.cdp_changes c WHERE c.fresh;
		END IF;
	END IF;
	n := cdp_traits._without_waiting(
		'SELECT FROM cdp_traits.customer_entities ce WHERE ce.id IN (SELECT c.eid FROM pg_temp.cdp_changes c '
		'WHERE c.fresh) AND %s FOR KEY SHARE SKIP LOCKED',
		'ce.id', 'SELECT c.eid FROM pg_temp.cdp_changes c WHERE c.fresh');
	all_new := n = k;
	IF NOT all_new THEN
		n := cdp_traits._without_waiting(
			'INSERT INTO pg_temp.cdp_live SELECT ce.id, false FROM cdp_traits.customer_entities ce '
			'WHERE ce.id IN (SELECT c.eid FROM pg_temp.cdp_changes c WHERE c.fresh) AND %s '
			'FOR KEY SHARE SKIP LOCKED',
			'ce.id', 'SELECT c.eid FROM pg_temp.cdp_changes c WHERE c.fresh');
	END IF;
	written := written + n;

	INSERT INTO cdp_traits.entity_attributes (customer_entity_id, vals, calculated_at, run_id)
	SELECT c.eid, c.new_vals, pg_catalog.now(), run
	  FROM pg_temp.cdp_changes c
	 WHERE c.fresh
	   AND (all_new OR c.eid IN (SELECT l.id FROM pg_temp.cdp_live l WHERE NOT l.stored));
	IF k < changes THEN		-- (as above)
		DELETE FROM cdp_traits.entity_attributes ea
		 USING pg_temp.cdp_changes c
		 WHERE c.new_vals = '{}' AND ea.customer_entity_id = c.eid
		   AND c.eid IN (SELECT l.id FROM pg_temp.cdp_live l WHERE l.stored);
		UPDATE cdp_traits.entity_attributes ea
		   SET vals = c.new_vals, calculated_at = pg_catalog.now(), run_id = run
		  FROM pg_temp.cdp_changes c
		 WHERE NOT c.fresh AND c.new_vals <> '{}' AND ea.customer_entity_id = c.eid
		   AND c.eid IN (SELECT l.id FROM pg_temp.cdp_live l WHERE l.stored);
	END IF;
	IF written < changes THEN
		DELETE FROM pg_temp.cdp_changes c
		 WHERE NOT EXISTS (SELECT FROM pg_temp.cdp_live l WHERE l.id = c.eid)
		   AND NOT (all_new AND c.fresh);
	END IF;

	-- the counts: one pass over the changed entities (in C), only the
	-- distinct (attribute, value) changes come out
	flags := cdp_traits._categorical(ok);
	SELECT cdp_traits._value_deltas(c.old_vals, c.new_vals, ok, flags)
	  INTO deltas
	  FROM pg_temp.cdp_changes c;
	-- (at commit, as stitching's: a run writes values in several steps, and
	-- one pass over the counts per step deadlocked with a stitching
	-- transaction's pass; see pending_count_changes)
	PERFORM cdp_traits._count_changes_at_commit(deltas);
	deltas := COALESCE(deltas, '{}');

	-- the changed values one by one, of the attributes that need them:
	-- history and audience enter/exit
	IF hist IS NOT NULL OR auds IS NOT NULL THEN
		DROP TABLE IF EXISTS pg_temp.cdp_diff;
		-- (each entity's objects read once: || '{}' makes a copy in memory
		-- that each attribute's -> reads; read for each of 611 attributes
		-- with history, they took 1.3 s for 87 entities)
		CREATE TEMP TABLE cdp_diff AS
		SELECT c.eid, k.aid, c.old_vals -> k.aid AS old_value, c.new_vals -> k.aid AS new_value,
			   CASE WHEN k.kept THEN run_start END AS at
		  FROM (SELECT c0.eid, c0.old_vals || '{}'::jsonb AS old_vals, c0.new_vals || '{}'::jsonb AS new_vals
				  FROM pg_temp.cdp_changes c0 OFFSET 0) c
		 CROSS JOIN LATERAL (SELECT DISTINCT u, u = ANY (hist)	-- (an audience that keeps history is in both)
							   FROM pg_catalog.unnest(COALESCE(hist, '{}') || COALESCE(auds, '{}')) u) k(aid, kept)
		 WHERE (c.old_vals -> k.aid) IS DISTINCT FROM (c.new_vals -> k.aid);
		-- (at is set for the attributes that keep history, and only for
		-- them: the statements below tell them by it, not by = ANY (hist),
		-- which compared each change with each of hundreds of them)

		-- history of attributes that keep it: the old value's row ends at
		-- the instant the new one's starts
		IF hist IS NOT NULL THEN
			-- (at: the run's start, or the end of the entity's history if
			-- later, see attribute_history; read now that the entities are
			-- locked, in one join, which over many changes the planner may
			-- hash: a function probing per change took about 4 s for 200k).
			-- With the statistics of the changes (and the condition on their
			-- entities alone) the planner probes the history's index where
			-- they are of a few entities (a small run), rather than read all
			-- of it: 6M rows of 611 attributes, 0.7 s of a small run's 3.4 s,
			-- and as much again for ending the old rows.  Where the history
			-- has no statistics yet (a bulk of rows written since autovacuum
			-- last analyzed it: history just switched on for hundreds of
			-- attributes), the planner still read all of it for the latest
			-- instants (0.55 s of 2 s): for a few entities (as
			-- calculate_attributes counts few) they are read entity by entity.
			PERFORM cdp_traits._analyze_temp('cdp_diff', ARRAY['eid', 'aid']);
			SELECT count(DISTINCT d.eid) INTO hist_entities FROM pg_temp.cdp_diff d WHERE d.at IS NOT NULL;
			IF hist_entities < 10000 AND hist_entities * 20 < (SELECT CASE WHEN c.reltuples < 0 THEN 'Infinity'::real ELSE c.reltuples END
										 FROM pg_catalog.pg_class c
										WHERE c.oid = 'cdp_traits.customer_entities'::pg_catalog.regclass) THEN
				UPDATE pg_temp.cdp_diff d SET at = l.latest
				  FROM (SELECT e.eid, h.attribute_id,
							   pg_catalog.max(GREATEST(h.valid_from, h.valid_to)) AS latest
						  FROM (SELECT DISTINCT d2.eid FROM pg_temp.cdp_diff d2 WHERE d2.at IS NOT NULL) e
						 CROSS JOIN LATERAL (SELECT h0.attribute_id, h0.valid_from, h0.valid_to
											   FROM cdp_traits.attribute_history h0
											  WHERE h0.customer_entity_id = e.eid OFFSET 0) h
						 GROUP BY e.eid, h.attribute_id) l
				 WHERE d.eid = l.eid AND d.aid = l.attribute_id AND l.latest > d.at;
			ELSE
				UPDATE pg_temp.cdp_diff d SET at = l.latest
				  FROM (SELECT h.customer_entity_id, h.attribute_id,
							   pg_catalog.max(GREATEST(h.valid_from, h.valid_to)) AS latest
						  FROM cdp_traits.attribute_history h
						 WHERE h.customer_entity_id IN (SELECT d2.eid FROM pg_temp.cdp_diff d2 WHERE d2.at IS NOT NULL)
						   AND (h.customer_entity_id, h.attribute_id) IN
							   (SELECT d2.eid, d2.aid FROM pg_temp.cdp_diff d2 WHERE d2.at IS NOT NULL)
						 GROUP BY h.customer_entity_id, h.attribute_id) l
				 WHERE d.eid = l.customer_entity_id AND d.aid = l.attribute_id AND l.latest > d.at;
			END IF;
			UPDATE cdp_traits.attribute_history h SET valid_to = c.at
			  FROM pg_temp.cdp_diff c
			 WHERE c.at IS NOT NULL AND h.customer_entity_id = c.eid AND h.attribute_id = c.aid
			   AND h.valid_to IS NULL
			   AND h.customer_entity_id IN (SELECT d2.eid FROM pg_temp.cdp_diff d2 WHERE d2.at IS NOT NULL);
			INSERT INTO cdp_traits.attribute_history (customer_entity_id, attribute_id, value, valid_from)
			SELECT c.eid, c.aid, c.new_value, c.at FROM pg_temp.cdp_diff c
			 WHERE c.at IS NOT NULL AND c.new_value IS NOT NULL;
		END IF;

		-- audience enter/exit: members hold the value true, and only a
		-- change of membership is a toggle
		IF auds IS NOT NULL THEN
			INSERT INTO cdp_traits.segment_toggles (vendor, segment, user_id, member, event_time)
			SELECT 0, c.aid, c.eid::text, COALESCE(c.new_value = 'true'::jsonb, false), pg_catalog.now()
			  FROM pg_temp.cdp_diff c
			 WHERE c.aid = ANY (auds)
			   AND COALESCE(c.old_value = 'true'::jsonb, false) <> COALESCE(c.new_value = 'true'::jsonb, false)
			 ORDER BY c.eid, c.aid;
		END IF;
	END IF;

	-- entities whose values changed: audiences re-evaluate them
	IF EXISTS (SELECT FROM cdp_traits.attributes a WHERE a.definition->>'type' = 'audience') THEN
		INSERT INTO pg_temp.cdp_changed
		SELECT c.eid FROM pg_temp.cdp_changes c WHERE c.old_vals IS DISTINCT FROM c.new_vals
		ON CONFLICT DO NOTHING;
	END IF;

	INSERT INTO cdp_traits.calculation_run_attributes AS r
		(run_id, attribute_id, definition_version, scope, values_written, values_removed)
	SELECT run, a, (versions->>a)::integer, scope,
		   COALESCE((deltas->a->>'w')::bigint, 0), COALESCE((deltas->a->>'r')::bigint, 0)
	  FROM pg_catalog.unnest(ok) a
	ON CONFLICT (run_id, attribute_id) DO UPDATE
	   SET values_written = r.values_written + EXCLUDED.values_written,
		   values_removed = r.values_removed + EXCLUDED.values_removed;
	UPDATE pg_temp.cdp_outcome SET written = true WHERE aid = ANY (ok);
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits.calculate_attributes(force boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET lc_numeric = 'C'
SET lc_time = 'C'
SET xmlbinary = 'base64'
SET xmloption = 'content'
SET standard_conforming_strings = on
SET transform_null_equals = off
SET array_nulls = on
SET quote_all_identifiers = off
SET client_min_messages = warning
SET jit = off
SET row_security = off
AS $$
DECLARE
	run bigint;
	n bigint;
	-- the definitions (not external traits' imports) computed for every
	-- entity in this run
	everyone text[];
	recalculated bigint;
	-- (computed once: in the scan below, now() - interval cost a third of
	-- the time of finding the dirty entities)
	stale_before CONSTANT timestamptz :=
		pg_catalog.now() - cdp_traits._setting('cdp_traits.recalculate_after')::interval;
	attached boolean := cdp_traits._events_attached();
	dirty_pre text[]; all_pre text[]; dirty_srf text[]; all_srf text[];
	dirty_q text[]; all_q text[]; ext text[]; aud text[]; aud_levels jsonb := '{}'; aud_cols jsonb; together text[]; lvl_scope text; lvl_kind text;
	a record;
	aid text;
	grp text[];
	few boolean;
	entities_est real;
	sig text;
	n_from_states bigint := 0;
	min_events CONSTANT integer := cdp_traits._setting('cdp_traits.state_min_events')::integer;
	events_sql text;
	srf_keys jsonb := '{}';
	median uuid;
	lock_timeout_was CONSTANT text := pg_catalog.current_setting('lock_timeout');
	parallel_was text[];
	dirty_scope CONSTANT text := 'SELECT id FROM pg_temp.cdp_scope';
	all_scope CONSTANT text := 'SELECT id FROM cdp_traits.customer_entities';
	aud_scope CONSTANT text := 'SELECT id FROM pg_temp.cdp_scope UNION SELECT eid FROM pg_temp.cdp_changed';
	-- (compiled definitions are kept per extension version)
	ext_version CONSTANT text :=
		(SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'cdp_traits');
	comp_alias text;
	def_md5 text;
	-- the definitions of this run (locked by it)
	ours text[] := '{}';
	-- those computed for every entity (new, changed, or their context
	-- changed), and the context values each read (see attribute_context_seen)
	everyone_now text[] := '{}';
	ctx_seen jsonb := '{}';
	-- those whose context values changed during the run
	ctx_changed text[];
	-- when the dirty entities were read: their "calculated" (see below)
	scope_read_at timestamptz;
BEGIN
	-- one run at a time per database (a lock no SQL can take: see calc_lock.c)
	PERFORM cdp_traits._calculation_lock();
	PERFORM cdp_traits.refresh_context();
	INSERT INTO cdp_traits.calculation_runs (forced) VALUES (force) RETURNING id INTO run;

	PERFORM cdp_traits._drop_run_tables();
	-- (serially: the table is small, about 25 bytes a row, and a parallel
	-- scan spends more starting its workers than it saves: 55 against 11 ms
	-- over 200k entities on 2 cores)
	parallel_was := cdp_traits._swap_settings('{max_parallel_workers_per_gather}', '{0}');
	CREATE TEMP TABLE cdp_scope AS
	SELECT ce.id, ce.xmin AS row_xmin FROM cdp_traits.customer_entities ce
	 WHERE force OR ce.calculated IS NULL OR ce.calculated < stale_before;
	GET DIAGNOSTICS n = ROW_COUNT;
	-- (the instant the entities marked calculated below get: after the
	-- read, so that every change of their events it saw is older, and the
	-- changes it did not see leave them dirty; now(), the start of the
	-- caller's transaction, was older than changes committed while a run
	-- waited for the previous one, or while run_jobs() refreshed context)
	scope_read_at := pg_catalog.clock_timestamp();
	PERFORM cdp_traits._swap_settings('{max_parallel_workers_per_gather}', parallel_was);
	-- (the planner's estimate of all entities, -1 before the first ANALYZE)
	SELECT c.reltuples INTO entities_est FROM pg_catalog.pg_class c
	 WHERE c.oid = 'cdp_traits.customer_entities'::regclass;
	few := n < 10000 AND (entities_est < 0 OR n * 20 < entities_est);
	-- (the statements probe the scope by its key only when it is a small
	-- part of the entities; over half of them or more they hash it, and the
	-- key would cost a sort of every entity: 90 ms over 200k)
	IF NOT (entities_est > 0 AND n * 2 >= entities_est) THEN
		ALTER TABLE pg_temp.cdp_scope ADD PRIMARY KEY (id);
	END IF;
	PERFORM cdp_traits._analyze_temp('cdp_scope', ARRAY['id', 'row_xmin']);
	CREATE TEMP TABLE cdp_new (eid uuid NOT NULL, vals jsonb NOT NULL);
	CREATE TEMP TABLE cdp_parts (name text PRIMARY KEY);
	CREATE TEMP TABLE cdp_outcome (aid text PRIMARY KEY, error text, skipped bigint,
								   duration_ms numeric, written boolean NOT NULL DEFAULT false,
								   failing_entity uuid);
	CREATE TEMP TABLE cdp_changed (eid uuid PRIMARY KEY);
	-- where _calc_predefined may split a statement over many entities in two
	-- (see _halves): the median entity id, from the statistics of
	-- customer_entities; set for the steps over every entity (the dirty
	-- entities' statements read the temporary table of them, which keeps
	-- them out of parallel plans)
	CREATE TEMP TABLE cdp_branches (median uuid);
	-- each predefined definition compiled once per run (_compile prepares statements)
	CREATE TEMP TABLE cdp_compiled (aid text PRIMARY KEY, cond text, lat text, agg text,
									srf boolean, skipped text, inner_sql text, lat_shared text,
									stateful boolean, st_agg text, st_comb text, st_fin text, st_read text,
									rels oid[], funcs oid[]);

	-- sort the definitions: which step computes each, over which entities
	-- (a new or changed definition is computed for every entity).  Each is
	-- locked (FOR SHARE) until the run ends, so that nobody changes, renames
	-- or deletes it while the run computes and writes it from what it read
	-- here: that left the values of a deleted attribute behind, an
	-- audience's members without their toggles, and an edited definition
	-- marked calculated with the old one's values.  Such a change waits for
	-- the run.  A definition already being changed (by a transaction still
	-- open) is left out of this run rather than waited for (see ours).
	dirty_pre := '{}'; all_pre := '{}'; dirty_srf := '{}'; all_srf := '{}';
	dirty_q := '{}'; all_q := '{}'; ext := '{}';
	-- (or one that reads context values changed since it was last computed
	-- for every entity: see attribute_context_seen)
	FOR a IN SELECT at.id, at.definition, at.definition->>'type' AS typ, cm.md5 AS ctx_md5,
					force OR at.calculated_version IS DISTINCT FROM at.version
					OR cm.md5 IS DISTINCT FROM (SELECT s.context_md5 FROM cdp_traits.attribute_context_seen s
												  WHERE s.attribute_id = at.id) AS everyone
			   FROM cdp_traits.attributes at
			  CROSS JOIN LATERAL (SELECT cdp_traits._context_md5(at.definition) AS md5) cm
			  ORDER BY at.id FOR SHARE OF at SKIP LOCKED LOOP
		ours := ours || a.id;
		IF a.ctx_md5 IS NOT NULL THEN
			ctx_seen := ctx_seen || pg_catalog.jsonb_build_object(a.id, a.ctx_md5);
		END IF;
		IF a.everyone THEN
			everyone_now := everyone_now || a.id;
		END IF;
		IF a.typ = 'audience' THEN
			CONTINUE;
		ELSIF a.typ = 'external' THEN
			ext := ext || a.id;
		ELSIF NOT attached THEN
			PERFORM cdp_traits._outcome(ARRAY[a.id], 'no events table is attached', NULL, pg_catalog.clock_timestamp());
		ELSIF a.typ = 'custom' THEN
			IF a.everyone THEN all_q := all_q || a.id; ELSE dirty_q := dirty_q || a.id; END IF;
		ELSIF n = 0 AND NOT a.everyone THEN
			-- nothing to compute it for (compiling 20 definitions is most of
			-- a run that finds no dirty entity)
			CONTINUE;
		ELSE
			DECLARE
				is_srf boolean;
				key text;
			BEGIN
				-- compiled in an earlier run, and nothing it depends on changed
				-- since (see compiled_definitions), or compiled now and kept
				comp_alias := 'a' || (SELECT count(*) + 1 FROM pg_temp.cdp_compiled);
				def_md5 := pg_catalog.md5(ext_version || E'\n' || a.definition::text);
				INSERT INTO pg_temp.cdp_compiled
				SELECT a.id, k.cond, k.lat, k.agg, k.srf, k.skipped, k.inner_sql, k.lat_shared,
					   k.stateful, k.st_agg, k.st_comb, k.st_fin, k.st_read, k.rels, k.funcs
				  FROM cdp_traits.compiled_definitions k
				 WHERE k.attribute_id = a.id AND k.alias = comp_alias AND k.definition_md5 = def_md5
				   AND k.stamp = cdp_traits._deps_stamp(k.rels, k.funcs)
				RETURNING srf, pg_catalog.md5(inner_sql || cond) INTO is_srf, key;
				IF NOT FOUND THEN
					INSERT INTO pg_temp.cdp_compiled
					SELECT a.id, c.* FROM cdp_traits._compile(a.id, a.definition, comp_alias) c
					RETURNING srf, pg_catalog.md5(inner_sql || cond) INTO is_srf, key;
					-- (its rows at other positions go, and those of removed attributes)
					DELETE FROM cdp_traits.compiled_definitions k
					 WHERE k.attribute_id = a.id
						OR NOT EXISTS (SELECT FROM cdp_traits.attributes at WHERE at.id = k.attribute_id);
					INSERT INTO cdp_traits.compiled_definitions
					SELECT a.id, comp_alias, def_md5, c.cond, c.lat, c.agg, c.srf, c.skipped, c.inner_sql,
						   c.lat_shared, c.stateful, c.st_agg, c.st_comb, c.st_fin, c.st_read,
						   c.rels, c.funcs, cdp_traits._deps_stamp(c.rels, c.funcs)
					  FROM pg_temp.cdp_compiled c
					 WHERE c.aid = a.id
					ON CONFLICT (attribute_id, alias) DO NOTHING;
				END IF;
				IF is_srf THEN
					srf_keys := srf_keys || pg_catalog.jsonb_build_object(a.id, key);
				END IF;
				IF a.everyone THEN
					IF is_srf THEN all_srf := all_srf || a.id; ELSE all_pre := all_pre || a.id; END IF;
				ELSE
					IF is_srf THEN dirty_srf := dirty_srf || a.id; ELSE dirty_pre := dirty_pre || a.id; END IF;
				END IF;
			EXCEPTION WHEN OTHERS THEN
				DECLARE
					msg text;
				BEGIN
					GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
					PERFORM cdp_traits._outcome(ARRAY[a.id], msg, NULL, pg_catalog.clock_timestamp());
					RAISE WARNING 'attribute "%" was not calculated: %', a.id, msg;
				END;
			END;
		END IF;
	END LOOP;

	-- dirty entities
	IF n > 0 AND attached THEN
		events_sql := cdp_traits._scoped_events(dirty_scope, few);
		-- stored states (see _states_fetch): when this step computes every
		-- predefined attribute and each has a state form; the states are of
		-- these attributes as compiled now (sig)
		IF min_events > 0 AND pg_catalog.cardinality(all_pre || all_srf) = 0 THEN
			sig := cdp_traits._states_signature(dirty_pre || dirty_srf);
		END IF;
		IF sig IS NOT NULL AND few THEN
			-- a few entities: stored states spare reading the old events of
			-- those with many
			n_from_states := cdp_traits._states_fetch(sig);
			events_sql := '(SELECT * FROM pg_temp.cdp_events) e';
		END IF;
		IF sig IS NOT NULL THEN
			CREATE TEMP TABLE cdp_stemit AS SELECT min_events AS min_events;
		ELSIF few AND pg_catalog.cardinality(dirty_srf) > 0 AND pg_catalog.cardinality(dirty_pre) > 0 THEN
			-- a few entities and more than one statement over their events:
			-- their events are fetched (by random index probes) once
			DROP TABLE IF EXISTS pg_temp.cdp_events;
			EXECUTE 'CREATE TEMP TABLE cdp_events AS SELECT * FROM ' || events_sql;
			-- (the row count and the entities: statistics of the payloads
			-- would cost more than the statements that read them)
			PERFORM cdp_traits._analyze_temp('cdp_events', ARRAY['customer_entity_id']);
			events_sql := '(SELECT * FROM pg_temp.cdp_events) e';
		END IF;
		PERFORM cdp_traits._calc_step('predefined', dirty_pre, dirty_scope, events_sql);
		-- set-returning values: one statement per distinct expansion
		FOR grp IN SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(dirty_srf) x
					GROUP BY srf_keys->>x ORDER BY 1 LOOP
			PERFORM cdp_traits._calc_step('predefined', grp, dirty_scope, events_sql);
		END LOOP;
		sig := cdp_traits._states_gather(sig, dirty_pre || dirty_srf);
		DROP TABLE IF EXISTS pg_temp.cdp_events;
		FOREACH aid IN ARRAY dirty_q LOOP
			PERFORM cdp_traits._calc_step('query', ARRAY[aid], dirty_scope, NULL);
		END LOOP;
		PERFORM cdp_traits._write_values(run, dirty_pre || dirty_srf || dirty_q, dirty_scope, 'dirty');
		PERFORM cdp_traits._clear_new();
	END IF;

	everyone := all_pre || all_srf || all_q;
	-- every entity: new or changed definitions, external traits (the
	-- median only when predefined attributes are computed for every entity:
	-- planning the read of pg_stats is a few milliseconds of a small run)
	IF pg_catalog.cardinality(all_pre || all_srf) > 0
	   AND pg_catalog.current_setting('max_parallel_workers_per_gather')::integer > 0
	   AND entities_est >= 50000 THEN
		SELECT x.b[pg_catalog.cardinality(x.b) / 2 + 1] INTO median
		  FROM (SELECT s.histogram_bounds::text::uuid[] AS b FROM pg_catalog.pg_stats s
				 WHERE s.schemaname = 'cdp_traits' AND s.tablename = 'customer_entities'
				   AND s.attname = 'id') x
		 WHERE pg_catalog.cardinality(x.b) > 2;
	END IF;
	IF median IS NOT NULL THEN
		INSERT INTO pg_temp.cdp_branches VALUES (median);
	END IF;
	IF attached THEN
		-- a forced run (or one of definitions all new) also gives the
		-- states of the large entities it marks calculated, so that the
		-- small runs after it read their new events only.  It costs the run
		-- about a tenth more (the state aggregates share the values'
		-- transitions, but finish for every entity); the first small run
		-- after it took a third less (see BENCHMARKS.md).  It rewrites the
		-- states it finds stored: a forced run recalculates from the events
		-- alone, and so renews the cache too.
		IF min_events > 0 AND n > 0 AND pg_catalog.cardinality(dirty_pre || dirty_srf) = 0 THEN
			sig := cdp_traits._states_signature(all_pre || all_srf);
		END IF;
		IF sig IS NOT NULL THEN
			CREATE TEMP TABLE cdp_stemit AS SELECT min_events AS min_events;
		END IF;
		PERFORM cdp_traits._calc_step('predefined', all_pre, all_scope,
			pg_catalog.format('(SELECT * FROM %s ce WHERE ce.customer_entity_id IS NOT NULL) e',
				cdp_traits._events_rel('cdp_traits.customer_events'::pg_catalog.regclass)));
		FOR grp IN SELECT pg_catalog.array_agg(x ORDER BY x) FROM pg_catalog.unnest(all_srf) x
					GROUP BY srf_keys->>x ORDER BY 1 LOOP
			PERFORM cdp_traits._calc_step('predefined', grp, all_scope,
				pg_catalog.format('(SELECT * FROM %s ce WHERE ce.customer_entity_id IS NOT NULL) e',
				cdp_traits._events_rel('cdp_traits.customer_events'::pg_catalog.regclass)));
		END LOOP;
		IF pg_catalog.cardinality(all_pre || all_srf) > 0 THEN
			sig := cdp_traits._states_gather(sig, all_pre || all_srf);
		END IF;
		FOREACH aid IN ARRAY all_q LOOP
			PERFORM cdp_traits._calc_step('query', ARRAY[aid], all_scope, NULL);
		END LOOP;
	END IF;
	FOREACH aid IN ARRAY ext LOOP
		PERFORM cdp_traits._calc_step('query', ARRAY[aid], all_scope, NULL);
	END LOOP;
	PERFORM cdp_traits._write_values(run, all_pre || all_srf || all_q || ext, all_scope, 'all');
	PERFORM cdp_traits._clear_new();

	-- audiences, dependencies first, over dirty entities and those whose
	-- values changed.  Those that do not depend on each other (a level:
	-- each depends only on audiences of the levels before) are computed one
	-- statement each and written together, the new or changed ones (over
	-- every entity) and then the others (over aud_scope, which holds the
	-- entities the levels before changed): one write of the entities'
	-- values per level and scope, not per audience.  Written one by one,
	-- each rewrote the values of its members (and compared every entity's):
	-- the first run of 61 new audiences over 10k entities with 611
	-- attributes took 90 s, 83 of them in writing.
	aud := ARRAY(SELECT x FROM pg_catalog.unnest(cdp_traits._audience_order()) WITH ORDINALITY o(x, i)
				  WHERE x = ANY (ours) ORDER BY i);
	-- (the columns each condition names, read once)
	SELECT pg_catalog.jsonb_object_agg(ad.id, pg_catalog.to_jsonb(cdp_traits._expression_columns(ad.definition->>'condition')))
	  INTO aud_cols
	  FROM cdp_traits.attributes ad WHERE ad.id = ANY (aud);
	FOREACH aid IN ARRAY aud LOOP
		-- (its level: 1 + the highest of the audiences it uses, which come
		-- before it in this order)
		aud_levels := aud_levels || pg_catalog.jsonb_build_object(aid, 1 + COALESCE((
			SELECT pg_catalog.max((aud_levels->>d)::integer)
			  FROM pg_catalog.jsonb_array_elements_text(aud_cols->aid) d
			 WHERE aud_levels ? d), 0));
	END LOOP;
	FOR grp IN SELECT pg_catalog.array_agg(x ORDER BY i)
				 FROM pg_catalog.unnest(aud) WITH ORDINALITY o(x, i)
				GROUP BY (aud_levels->>x)::integer, x = ANY (everyone_now)
				ORDER BY (aud_levels->>x)::integer, x = ANY (everyone_now) DESC LOOP
		-- (in one statement those whose conditions name attributes only,
		-- see _calc_audiences; the others over the pivot, each alone)
		together := ARRAY(SELECT x FROM pg_catalog.unnest(grp) WITH ORDINALITY o(x, i)
						   WHERE NOT EXISTS (
								SELECT FROM pg_catalog.jsonb_array_elements_text(aud_cols->x) d
								 WHERE d <> 'customer_entity_id'
								   AND NOT EXISTS (SELECT FROM cdp_traits.attributes ad WHERE ad.id = d))
						   ORDER BY i);
		IF grp[1] = ANY (everyone_now) THEN
			everyone := everyone || grp;
			lvl_scope := all_scope; lvl_kind := 'all';
		ELSE
			lvl_scope := aud_scope; lvl_kind := 'dirty';
		END IF;
		PERFORM cdp_traits._calc_step('audiences', together, lvl_scope, NULL);
		FOREACH aid IN ARRAY grp LOOP
			IF aid <> ALL (together) THEN
				PERFORM cdp_traits._calc_step('audience', ARRAY[aid], lvl_scope, NULL);
			END IF;
		END LOOP;
		PERFORM cdp_traits._write_values(run, grp, lvl_scope, lvl_kind);
		PERFORM cdp_traits._clear_new();
	END LOOP;

	-- outcomes; definitions computed for everyone are now complete
	INSERT INTO cdp_traits.calculation_run_attributes AS r
		(run_id, attribute_id, definition_version, scope, values_skipped, duration_ms, error, failing_entity)
	SELECT run, o.aid, at.version,
		   CASE WHEN o.aid = ANY (everyone_now) OR at.definition->>'type' = 'external'
				THEN 'all' ELSE 'dirty' END,
		   o.skipped, o.duration_ms, o.error, o.failing_entity
	  FROM pg_temp.cdp_outcome o JOIN cdp_traits.attributes at ON at.id = o.aid
	ON CONFLICT (run_id, attribute_id) DO UPDATE
	   SET values_skipped = EXCLUDED.values_skipped, duration_ms = EXCLUDED.duration_ms,
		   error = EXCLUDED.error, failing_entity = EXCLUDED.failing_entity;
	-- (the counts as they will be at commit: with this transaction's
	-- pending changes)
	UPDATE cdp_traits.calculation_run_attributes r
	   SET entities = NULLIF(COALESCE((SELECT c.customers FROM cdp_traits.attribute_counts c
									 WHERE c.attribute_id = r.attribute_id), 0)
						 + COALESCE((SELECT pg_catalog.sum((p.deltas->r.attribute_id->>'n')::bigint)
									   FROM cdp_traits.pending_count_changes p
									  WHERE p.xid = pg_catalog.pg_current_xact_id()), 0), 0)
	 WHERE r.run_id = run;
	-- the context values of those now complete for every entity, read when
	-- the run began; and if those of a definition of this run have changed
	-- since (its statements may have read the new ones, or some of them), it
	-- is computed for every entity by the next run: a value changed while a
	-- run computed with it and changed back after it was recorded as seen,
	-- and the values of the one in between stayed
	DELETE FROM cdp_traits.attribute_context_seen s
	 WHERE NOT EXISTS (SELECT FROM cdp_traits.attributes at WHERE at.id = s.attribute_id)
		OR (s.attribute_id = ANY (everyone_now) AND NOT ctx_seen ? s.attribute_id);
	ctx_changed := ARRAY(SELECT at.id FROM cdp_traits.attributes at
						  WHERE ctx_seen ? at.id
							AND cdp_traits._context_md5(at.definition) IS DISTINCT FROM ctx_seen->>at.id);
	INSERT INTO cdp_traits.attribute_context_seen AS s (attribute_id, context_md5)
	SELECT o.aid, ctx_seen->>o.aid FROM pg_temp.cdp_outcome o
	 WHERE o.aid = ANY (everyone) AND o.error IS NULL AND o.written AND ctx_seen ? o.aid
	   AND o.aid <> ALL (ctx_changed)
	ON CONFLICT (attribute_id) DO UPDATE SET context_md5 = EXCLUDED.context_md5
	 WHERE s.context_md5 IS DISTINCT FROM EXCLUDED.context_md5;
	DELETE FROM cdp_traits.attribute_context_seen s WHERE s.attribute_id = ANY (ctx_changed);
	-- (only if there is one: the statement trigger on attributes rebuilds
	-- the pivot view even for an UPDATE of no rows)
	IF EXISTS (SELECT FROM cdp_traits.attributes at JOIN pg_temp.cdp_outcome o ON o.aid = at.id
				WHERE o.error IS NULL AND o.written AND at.calculated_version IS DISTINCT FROM at.version) THEN
		UPDATE cdp_traits.attributes at SET calculated_version = at.version
		  FROM pg_temp.cdp_outcome o
		 WHERE o.aid = at.id AND o.error IS NULL AND o.written
		   AND at.calculated_version IS DISTINCT FROM at.version;
	END IF;

	-- the dirty entities are calculated, unless an event changed them meanwhile
	-- (their row version is no longer the one read: they stay dirty), and
	-- nothing waits for a stitching transaction: while another transaction
	-- holds customer_entities for writing, _without_waiting locks the rows
	-- with SKIP LOCKED and updates the row version locked, found by its ctid
	-- (a version changed meanwhile fails the xmin test when it is locked).
	-- Otherwise a plain UPDATE: the lock costs a WAL record per row, 0.77 s
	-- against 0.39 s for 200k entities.  (A stitching transaction that starts
	-- during that UPDATE and holds one of its rows is waited for 1 ms at
	-- most, then the first way: that transaction may itself be waiting for
	-- rows the UPDATE already holds.)  They stay dirty while a definition
	-- being changed was left out, or one computed for them alone failed:
	-- they were not computed by it, and the next run tries again (a
	-- definition computed for every entity is tried for all of them anyway
	-- until it works, and so is an external trait).
	IF NOT EXISTS (SELECT FROM cdp_traits.attributes at WHERE at.id <> ALL (ours))
	   AND NOT EXISTS (SELECT FROM pg_temp.cdp_outcome o
					    WHERE o.error IS NOT NULL AND o.aid <> ALL (everyone || ext)) THEN
		BEGIN
			-- (readers and VACUUM or ANALYZE, which autovacuum runs often on this
			-- table, lock no rows)
			IF EXISTS (SELECT FROM pg_catalog.pg_locks l
						WHERE l.locktype = 'relation'
						  AND l.mode NOT IN ('AccessShareLock', 'ShareUpdateExclusiveLock')
						  AND l.relation = 'cdp_traits.customer_entities'::regclass
						  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
											 WHERE d.datname = pg_catalog.current_database())
						  AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()) THEN
				RAISE lock_not_available;
			END IF;
			PERFORM pg_catalog.set_config('lock_timeout', '1ms', true);
			UPDATE cdp_traits.customer_entities ce SET calculated = scope_read_at
			  FROM pg_temp.cdp_scope s
			 WHERE ce.id = s.id AND ce.xmin = s.row_xmin;
			PERFORM pg_catalog.set_config('lock_timeout', lock_timeout_was, true);
		EXCEPTION WHEN lock_not_available THEN
			PERFORM cdp_traits._without_waiting(
				'UPDATE cdp_traits.customer_entities ce SET calculated = ' || pg_catalog.quote_literal(scope_read_at) || '::timestamptz '
				'FROM (SELECT c.ctid AS row_tid FROM cdp_traits.customer_entities c JOIN pg_temp.cdp_scope s '
				'ON s.id = c.id AND c.xmin = s.row_xmin WHERE %s '
				'FOR NO KEY UPDATE OF c SKIP LOCKED) l WHERE ce.ctid = l.row_tid',
				'c.id', 'SELECT s.id FROM pg_temp.cdp_scope s');
		END;
	END IF;
	-- the states of the entities marked (see _states_fetch)
	IF n > 0 THEN
		PERFORM cdp_traits._states_store(sig, scope_read_at);
	END IF;

	-- the entities recalculated: the dirty ones (every entity when forced),
	-- or every entity when a new or changed definition was computed and
	-- written for all of them (counted then only: a small run reads no more
	-- than its dirty entities).  A definition that failed, and so is tried
	-- for every entity again at each run, and external traits, imported for
	-- every entity at each run, do not count.
	recalculated := n;
	IF NOT force AND EXISTS (SELECT FROM pg_temp.cdp_outcome o
							  WHERE o.aid = ANY (everyone) AND o.error IS NULL AND o.written) THEN
		SELECT GREATEST(n, pg_catalog.count(*)) INTO recalculated
		  FROM cdp_traits.customer_entities;
	END IF;
	UPDATE cdp_traits.calculation_runs r
	   SET finished_at = pg_catalog.clock_timestamp(), entities = recalculated,
		   attributes = (SELECT count(*) FROM pg_temp.cdp_outcome),
		   failed_attributes = (SELECT count(*) FROM pg_temp.cdp_outcome WHERE error IS NOT NULL),
		   values_written = (SELECT sum(values_written) FROM cdp_traits.calculation_run_attributes WHERE run_id = run),
		   values_removed = (SELECT sum(values_removed) FROM cdp_traits.calculation_run_attributes WHERE run_id = run),
		   values_skipped = (SELECT sum(values_skipped) FROM cdp_traits.calculation_run_attributes WHERE run_id = run),
		   from_states = n_from_states
	 WHERE r.id = run;
	PERFORM cdp_traits._drop_run_tables();
	RETURN recalculated;
END;
$$;

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

CREATE OR REPLACE FUNCTION cdp_traits.publish(target_schema name DEFAULT 'public') RETURNS void
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

CREATE OR REPLACE FUNCTION cdp_traits.refresh_context(force boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET lc_numeric = 'C'
SET lc_time = 'C'
SET xmlbinary = 'base64'
SET xmloption = 'content'
SET standard_conforming_strings = on
SET transform_null_equals = off
SET array_nulls = on
SET quote_all_identifiers = off
SET plpgsql.extra_errors = 'none'
SET plpgsql.extra_warnings = 'none'
SET row_security = off
AS $$
DECLARE
	k record;
	v text;
	n integer := 0;
	msg text;
	ttl interval := cdp_traits._setting('cdp_traits.context_ttl')::interval;
BEGIN
	-- the calculation lock, as calculate_attributes takes it before it
	-- refreshes: the context rows updated here stay locked to the end of
	-- the caller's transaction, so a caller that refreshes and then
	-- calculates (run_jobs(), or by hand) would otherwise wait for a
	-- calculation that waits for those rows (a deadlock)
	PERFORM cdp_traits._calculation_lock();
	FOR k IN
		SELECT c.key, c.query FROM cdp_traits.context c
		 WHERE c.query IS NOT NULL
		   AND (force OR c.modified IS NULL OR c.modified < LOCALTIMESTAMP - ttl)
		 ORDER BY c.key
	LOOP
		msg := NULL;
		BEGIN
			-- each query within cdp_traits.context_timeout (see context.c)
			PERFORM cdp_traits._context_timer(true);
			-- first column of the first row; no row gives NULL
			EXECUTE k.query INTO v;
			PERFORM cdp_traits._context_timer(false);
			-- (only while the key has the query run: one changed meanwhile
			-- runs at the next refresh, and a key made a plain value keeps
			-- the value it was given; the old query's result written over
			-- them, stamped fresh, stood until context_ttl had passed.  And
			-- not a key a transaction still open is changing: it stays
			-- stale, and the next refresh runs what that transaction left;
			-- waiting for it held the calculation lock, and the worker's
			-- every run, for as long as it stayed open)
			PERFORM FROM cdp_traits.context c
			  WHERE c.key = k.key AND c.query = k.query FOR NO KEY UPDATE SKIP LOCKED;
			IF FOUND THEN
				UPDATE cdp_traits.context
				   SET value = v, modified = LOCALTIMESTAMP, error = NULL, error_at = NULL
				 WHERE key = k.key;
				n := n + 1;
			ELSIF EXISTS (SELECT FROM cdp_traits.context c WHERE c.key = k.key AND c.query = k.query) THEN
				-- (said, not silent: an admin session left open stalls the
				-- key for as long, and its value stays stale)
				RAISE WARNING 'context key "%" was not refreshed: a transaction in progress is changing it', k.key
					USING DETAIL = 'Its value stays as it is; the next refresh after that transaction ends runs its query.',
						  HINT = 'Look for an open transaction that changed cdp_traits.context (pg_stat_activity: idle in transaction).';
			END IF;
		EXCEPTION
			WHEN query_canceled THEN
				-- this key's time limit: its failure; any other cancel
				-- (a user's, the caller's statement timeout) ends the refresh
				IF NOT cdp_traits._context_timer(false) THEN
					RAISE;
				END IF;
				msg := pg_catalog.format('query canceled after cdp_traits.context_timeout (%s)',
										 cdp_traits._setting('cdp_traits.context_timeout'));
			WHEN OTHERS THEN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		END;
		IF msg IS NOT NULL THEN
			-- (as above: on the query that failed, without waiting)
			PERFORM FROM cdp_traits.context c
			  WHERE c.key = k.key AND c.query = k.query FOR NO KEY UPDATE SKIP LOCKED;
			IF FOUND THEN
				UPDATE cdp_traits.context SET error = msg, error_at = pg_catalog.now()
				 WHERE key = k.key;
			END IF;
			RAISE WARNING 'context key "%" was not refreshed: %', k.key, msg;
		END IF;
	END LOOP;
	RETURN n;
END;
$$;

CREATE OR REPLACE FUNCTION cdp_traits.unpublish() RETURNS void
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

DO $added_grants$
DECLARE
	f regprocedure;
	r record;
BEGIN
	FOR r IN SELECT * FROM (VALUES
		('_analyze_temp', 'admin'),
		('_apply_counts_at_commit', 'admin'),
		('_attribute_dropped', 'owner'),
		('_attribute_timer', 'admin'),
		('_blocklist_defaults', 'owner'),
		('_blocklist_defaults_kept', 'owner'),
		('_bridging_identifiers', 'reader'),
		('_calc_audiences', 'admin'),
		('_calculation_lock', 'admin'),
		('_categorical', 'admin'),
		('_clear_new', 'admin'),
		('_context_md5', 'admin'),
		('_context_timer', 'admin'),
		('_count_changes', 'admin'),
		('_count_changes_at_commit', 'admin'),
		('_custom_fails', 'admin'),
		('_ddl_end', 'owner'),
		('_ddl_start', 'owner'),
		('_deps_stamp', 'admin'),
		('_dot_quote', 'reader'),
		('_drop_run_tables', 'admin'),
		('_drop_values', 'admin'),
		('_event_id_of_key', 'admin'),
		('_events_locked_first', 'owner'),
		('_events_rel', 'admin'),
		('_explain_events', 'reader'),
		('_explain_graph', 'reader'),
		('_failing_entity', 'admin'),
		('_given_sql', 'admin'),
		('_grants_of_others', 'owner'),
		('_halves', 'admin'),
		('_install_replica_triggers', 'owner'),
		('_jsonb_object_of', 'admin'),
		('_live_entity', 'reader'),
		('_merge_values', 'admin'),
		('_pending_counts_apply', 'owner'),
		('_pivot_column', 'admin'),
		('_publications_lock', 'owner'),
		('_published_views', 'owner'),
		('_query_deps', 'admin'),
		('_runs_deleted', 'owner'),
		('_schema_oid', 'owner'),
		('_schema_renamed', 'owner'),
		('_setting', 'admin'),
		('_states_fetch', 'admin'),
		('_states_gather', 'admin'),
		('_states_signature', 'admin'),
		('_states_store', 'admin'),
		('_swap_settings', 'admin'),
		('_to_float8', 'admin'),
		('_to_uuid', 'admin'),
		('_value_deltas', 'admin'),
		('_value_deltas_final', 'admin'),
		('_value_deltas_trans', 'admin'),
		('_values_changed', 'admin'),
		('_views_using', 'owner'),
		('_without_waiting', 'admin'),
		('_worker_config', 'reader'),
		('agg_state_merge', 'public'),
		('bridging_identifiers', 'reader'),
		('erase_entity', 'owner'),
		('event_key', 'public'),
		('event_key_uuid', 'public'),
		('explain_entity', 'reader'),
		('health', 'reader'),
		('import_meiro_config', 'admin'),
		('rekey_events', 'owner'),
		('stitch_event_row', 'owner')
	) v(name, class) LOOP
		FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
				  WHERE p.pronamespace = 'cdp_traits'::regnamespace AND p.proname = r.name LOOP
			EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);
			IF r.class IN ('public', 'reader', 'admin') THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %s', f,
					CASE r.class WHEN 'public' THEN 'PUBLIC' WHEN 'reader' THEN 'cdp_traits_reader'
						ELSE 'cdp_traits_admin' END);
			END IF;
		END LOOP;
	END LOOP;
END;
$added_grants$;

-- END generated: functions changed since 0.1.0

-- erase_entity is new in a file 0.1.0 had (generated above, without its
-- comment: as in 10_stitching.sql)
COMMENT ON FUNCTION cdp_traits.erase_entity(uuid) IS
	'erase a customer: its events (through stitching), and the history and merges of every id it had; one row per table touched';

-- calculate_attributes writes with lz4 where the server has it (as in
-- 40_attributes.sql; after the generated CREATE OR REPLACE, which sets the
-- function's settings anew)
DO $lz4$
BEGIN
	IF (SELECT 'lz4' = ANY (s.enumvals) FROM pg_catalog.pg_settings s
		 WHERE s.name = 'default_toast_compression') THEN
		ALTER FUNCTION cdp_traits.calculate_attributes(boolean) SET default_toast_compression = lz4;
	END IF;
END;
$lz4$;

-- Whatever takes an audience's values away logs its members' exits (as in
-- 40_attributes.sql; the functions are among the generated ones above)
-- (renames row by row, the rest once per statement: see _attribute_dropped)
CREATE TRIGGER attribute_dropped AFTER UPDATE ON cdp_traits.attributes
	FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION cdp_traits._attribute_dropped();
CREATE TRIGGER attribute_updated AFTER UPDATE ON cdp_traits.attributes
	REFERENCING OLD TABLE AS cdp_old_attributes NEW TABLE AS cdp_new_attributes
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._attribute_dropped();
CREATE TRIGGER attribute_deleted AFTER DELETE ON cdp_traits.attributes
	REFERENCING OLD TABLE AS cdp_old_attributes
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._attribute_dropped();
CREATE TRIGGER attributes_truncated BEFORE TRUNCATE ON cdp_traits.attributes
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._attribute_dropped();
-- A change of the attributes locks the events table before any value (as in
-- 40_attributes.sql; see src/partition_drop.c; the function is created above)
CREATE TRIGGER attributes_events_first
	BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp_traits.attributes
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._events_locked_first();

-- A run's rows in calculation_run_attributes go with it by a trigger, not a
-- foreign key, which pg_restore -j could not load (as in 40_attributes.sql;
-- the function is among the generated ones above)
ALTER TABLE cdp_traits.calculation_run_attributes
	DROP CONSTRAINT calculation_run_attributes_run_id_fkey;
CREATE TRIGGER runs_deleted AFTER DELETE ON cdp_traits.calculation_runs
	REFERENCING OLD TABLE AS cdp_old_runs
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._runs_deleted();
CREATE TRIGGER runs_truncated AFTER TRUNCATE ON cdp_traits.calculation_runs
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._runs_deleted();
-- A published schema renamed stays published (as in 70_publish.sql; the
-- function is among the generated ones above)
CREATE EVENT TRIGGER cdp_traits_schema_renamed ON ddl_command_end
	WHEN TAG IN ('ALTER SCHEMA')
	EXECUTE FUNCTION cdp_traits._schema_renamed();
ALTER EVENT TRIGGER cdp_traits_schema_renamed ENABLE ALWAYS;

-- Default blocklist entries deleted since the install stay deleted through a
-- dump and restore (as in 10_stitching.sql; the function is among the
-- generated ones above).  Those a 0.1.0 database no longer has are noted.
CREATE TABLE cdp_traits.stitching_blocklist_removed_defaults (
	value text PRIMARY KEY
		CHECK (value = ANY (cdp_traits._blocklist_defaults()))
);
COMMENT ON TABLE cdp_traits.stitching_blocklist_removed_defaults IS
	'default blocklist entries deleted or changed since the install (kept so by a dump and restore); written by triggers';
INSERT INTO cdp_traits.stitching_blocklist_removed_defaults (value)
SELECT d.value
  FROM pg_catalog.unnest(cdp_traits._blocklist_defaults()) d(value)
 WHERE NOT EXISTS (SELECT FROM cdp_traits.stitching_blocklist b
					WHERE b.attribute_id IS NULL AND b.value = d.value);
CREATE TRIGGER stitching_blocklist_defaults
	AFTER INSERT OR UPDATE OR DELETE ON cdp_traits.stitching_blocklist
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._blocklist_defaults_kept();
CREATE TRIGGER stitching_blocklist_defaults_truncated
	AFTER TRUNCATE ON cdp_traits.stitching_blocklist
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._blocklist_defaults_kept();
CREATE TRIGGER removed_default_loaded
	AFTER INSERT ON cdp_traits.stitching_blocklist_removed_defaults
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._blocklist_defaults_kept();

-- pg_dump (as in 80_dump.sql)
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.stitching_blocklist_removed_defaults', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_events_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_event_ids', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_memberships', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_toggles', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_toggles_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.attribute_context_seen', '');

-- Privileges (as in 90_privileges.sql)
SELECT cdp_traits._grant('cdp_traits.entity_states'::regclass, 'calculated');
SELECT cdp_traits._grant('cdp_traits.entity_state_events'::regclass, 'calculated');
SELECT cdp_traits._grant('cdp_traits.compiled_definitions'::regclass, 'calculated');
SELECT cdp_traits._grant('cdp_traits.pivot_source'::regclass, 'result');
SELECT cdp_traits._grant('cdp_traits.pending_count_changes'::regclass, 'calculated');
SELECT cdp_traits._grant('cdp_traits.attribute_context_seen'::regclass, 'calculated');
SELECT cdp_traits._grant('cdp_traits.stitching_blocklist_removed_defaults'::regclass, 'result');
-- admins read the attached events table (as attach_events now lets them):
-- a calculation over a few entities reads it itself
DO $$
DECLARE
	t regclass := (SELECT s.events FROM cdp_traits.events_source s
					WHERE s.attached AND pg_catalog.to_regclass(s.events::text) IS NOT NULL);
BEGIN
	IF t IS NOT NULL THEN
		EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO cdp_traits_admin',
			(SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
				ON n.oid = c.relnamespace WHERE c.oid = t));
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_admin', t);
	END IF;
END;
$$;
REVOKE ALL ON FUNCTION cdp_traits._compile(text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdp_traits._compile(text, jsonb, text) TO cdp_traits_admin;
DO $segment_grants$
DECLARE
	r record;
	f regprocedure;
BEGIN
	FOR r IN SELECT * FROM (VALUES
		('segment_toggles', 'log'), ('segment_toggles_seq_seq', 'calculated'),
		('audience_changes', 'result'), ('segment_events', 'config'),
		('segment_events_seq_seq', 'calculated'), ('segment_event_ids', 'result'),
		('segment_memberships', 'result'), ('segment_profiles', 'result')) v(name, class) LOOP
		PERFORM cdp_traits._grant(pg_catalog.format('cdp_traits.%I', r.name)::regclass, r.class);
	END LOOP;
	FOR r IN SELECT * FROM (VALUES
		('rfc3339_in', 'public'), ('rfc3339_out', 'public'), ('rfc3339_recv', 'public'),
		('rfc3339_send', 'public'), ('rfc3339', 'public'),
		('ingest_segment_event', 'admin'), ('rebuild_segment_profiles', 'admin'),
		('_segment_event_error', 'admin'), ('toggles_since', 'reader'),
		('toggles_position', 'reader'), ('_toggles_upto', 'reader'),
		('_toggles_writer', 'owner'), ('_toggles_notify', 'owner'),
		('_segment_events_insert', 'owner'), ('_segment_events_immutable', 'owner'),
		('_toggles_wait', 'reader'), ('_segments_lock_exclusive', 'owner'),
		('_profile_merge', 'owner'), ('_segment_events_truncated', 'owner'),
		('_segment_event_row', 'owner'), ('erase_segment_user', 'owner')) v(name, class) LOOP
		FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
				  WHERE p.pronamespace = 'cdp_traits'::regnamespace AND p.proname = r.name LOOP
			EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);
			IF r.class = 'public' THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO PUBLIC', f);
			ELSIF r.class = 'reader' THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO cdp_traits_reader', f);
			ELSIF r.class = 'admin' THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO cdp_traits_admin', f);
			END IF;
		END LOOP;
	END LOOP;
END;
$segment_grants$;
-- The attached events table gets the triggers of replica sessions, as
-- attach_events installs them now (see 10_stitching.sql).
SELECT cdp_traits._install_replica_triggers();
-- One rule per attribute, filters and expression, the expression by its md5
-- (as in 10_stitching.sql): one of a few kB fits no btree entry.
ALTER TABLE cdp_traits.stitching_rules DROP CONSTRAINT stitching_rules_unique;
CREATE UNIQUE INDEX stitching_rules_unique ON cdp_traits.stitching_rules
	(attribute_id, source_id, type, version, pg_catalog.md5(value_expression)) NULLS NOT DISTINCT;

-- Published views: 0.1.0 granted them to the extension's roles after making
-- them members, so those grants are not their initial privileges and
-- pg_dump dumps them as GRANTs on views the dump does not create (a
-- schema-only restore failed on them).  As publish() records them now: a
-- view that holds no grant but those is made a member again, which records
-- them.  (A view that holds grants of the user's too is left as it is: here,
-- those would be recorded as well and no longer dumped; cdp_traits.publish()
-- of its schema after the update makes it again with both right.)
DO $published_privileges$
DECLARE
	v regclass;
BEGIN
	FOR v IN SELECT p.view FROM cdp_traits._published_views() p
			  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_init_privs i
								 WHERE i.classoid = 'pg_catalog.pg_class'::regclass AND i.objoid = p.view)
				AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c
								 CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) x
								 WHERE c.oid = p.view AND x.grantee <> c.relowner
								   AND x.grantee NOT IN ('cdp_traits_reader'::regrole, 'cdp_traits_admin'::regrole)) LOOP
		EXECUTE pg_catalog.format('ALTER EXTENSION cdp_traits DROP VIEW %s', v);
		EXECUTE pg_catalog.format('ALTER EXTENSION cdp_traits ADD VIEW %s', v);
	END LOOP;
END;
$published_privileges$;

-- (as in 95_replica_sessions.sql)
/*
 * The extension's triggers on its own tables fire in every session, also
 * where session_replication_role is replica: there, ordinary (ENABLE
 * ORIGIN) triggers do not fire, and replica sessions do write these tables.
 * Logical replication's apply worker stitches replicated events and applies
 * replicated segment events (their replica triggers, see attach_events and
 * 60_segments.sql); a merge or split then deletes customer entities, whose
 * values, history, counts and audience exits entities_removed takes care
 * of, and toggles are appended, which toggles_writer orders for
 * toggles_since() and toggles_notify announces.  A session that sets the
 * role itself (a bulk load, say) may write the configuration: its rules and
 * definitions are checked, other sessions see the change, and the pivot
 * follows, as in any session.  (ALTER TABLE ... DISABLE TRIGGER, as
 * pg_restore --disable-triggers does, still turns them off.)
 */
ALTER TABLE cdp_traits.stitching_rules
	ENABLE ALWAYS TRIGGER stitching_rules_check,
	ENABLE ALWAYS TRIGGER stitching_rules_changed;
ALTER TABLE cdp_traits.stitching_blocklist
	ENABLE ALWAYS TRIGGER stitching_blocklist_changed,
	ENABLE ALWAYS TRIGGER stitching_blocklist_defaults,
	ENABLE ALWAYS TRIGGER stitching_blocklist_defaults_truncated;
ALTER TABLE cdp_traits.stitching_blocklist_removed_defaults
	ENABLE ALWAYS TRIGGER removed_default_loaded;
ALTER TABLE cdp_traits.context
	ENABLE ALWAYS TRIGGER context_check;
ALTER TABLE cdp_traits.attributes
	ENABLE ALWAYS TRIGGER attributes_check,
	ENABLE ALWAYS TRIGGER attributes_changed,
	ENABLE ALWAYS TRIGGER attributes_events_first,
	ENABLE ALWAYS TRIGGER attribute_dropped,
	ENABLE ALWAYS TRIGGER attribute_updated,
	ENABLE ALWAYS TRIGGER attribute_deleted,
	ENABLE ALWAYS TRIGGER attributes_truncated;
ALTER TABLE cdp_traits.calculation_runs
	ENABLE ALWAYS TRIGGER runs_deleted,
	ENABLE ALWAYS TRIGGER runs_truncated;
ALTER TABLE cdp_traits.customer_entities
	ENABLE ALWAYS TRIGGER entities_removed;
ALTER TABLE cdp_traits.segment_toggles
	ENABLE ALWAYS TRIGGER toggles_writer,
	ENABLE ALWAYS TRIGGER toggles_notify;
ALTER TABLE cdp_traits.publications
	ENABLE ALWAYS TRIGGER publications_added;
