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
