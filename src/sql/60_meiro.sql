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
