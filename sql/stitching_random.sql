-- Randomized (but deterministic) batches of inserts, updates and deletes on
-- generated data.  After every batch the stored stitching must be consistent
-- (verify_stitching() is empty) and equal, as a partition of the events, to
-- one computed independently in plain SQL from the same rules and blocklist.
SET client_min_messages = warning;
\set ECHO none
\i test/gen/cdp_gen.sql
\set ECHO all
CREATE TABLE rev (id uuid PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                  version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb NOT NULL);
INSERT INTO cdp_traits.stitching_rules SELECT * FROM cdp_gen.rules();
-- a set-returning rule too: crm events may carry extra e-mails
INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, value_expression)
VALUES ('email', 'crm', $$lower(btrim(jsonb_array_elements_text(payload->'other_emails')))$$);
SELECT cdp_traits.attach_events('rev');
RESET client_min_messages;

-- the pool of events the batches draw from (small identifier space: many links)
CREATE TABLE pool AS
SELECT row_number() OVER () AS n, id, source_id, type, version, event_time,
       CASE WHEN source_id = 'crm' AND hashint8extended(row_number() OVER (), 5) % 4 = 0
            THEN payload || jsonb_build_object('other_emails',
                 jsonb_build_array('name.' || (abs(hashint8extended(row_number() OVER (), 6)) % 300) || '@example.com'))
            ELSE payload END AS payload
  FROM cdp_gen.events(3600, 42);

-- The independent computation: evaluate each rule with dynamic SQL, drop
-- blocklisted values, and propagate the smallest event id over shared
-- identifiers until nothing changes.
CREATE FUNCTION pg_temp.reference_partition() RETURNS text LANGUAGE plpgsql
SET client_min_messages = warning AS $$
DECLARE
	r record;
	cond text;
	changed bigint;
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS ref_edges (event_id text, ident text);
	TRUNCATE ref_edges;
	FOR r IN SELECT * FROM cdp_traits.stitching_rules LOOP
		cond := concat_ws(' AND ', 'true',
			CASE WHEN r.source_id IS NOT NULL THEN format('source_id = %L', r.source_id) END,
			CASE WHEN r.type IS NOT NULL THEN format('type = %L', r.type) END,
			CASE WHEN r.version IS NOT NULL THEN format('version = %L', r.version) END);
		EXECUTE format('INSERT INTO ref_edges SELECT id::text, %L || chr(1) || v FROM
		                  (SELECT id, (%s)::text AS v FROM rev WHERE %s) s WHERE v IS NOT NULL',
		               r.attribute_id, r.value_expression, cond);
	END LOOP;
	DELETE FROM ref_edges e USING cdp_traits.stitching_blocklist b
	 WHERE lower(btrim(b.value)) = lower(btrim(split_part(e.ident, chr(1), 2)))
	   AND (b.attribute_id IS NULL OR b.attribute_id = split_part(e.ident, chr(1), 1));
	CREATE TEMP TABLE IF NOT EXISTS ref_label (event_id text PRIMARY KEY, label text);
	TRUNCATE ref_label;
	INSERT INTO ref_label SELECT DISTINCT event_id, event_id FROM ref_edges;
	LOOP
		WITH ident_min AS (
			SELECT e.ident, min(l.label) AS label FROM ref_edges e JOIN ref_label l USING (event_id) GROUP BY 1),
		event_min AS (
			SELECT e.event_id, min(i.label) AS label FROM ref_edges e JOIN ident_min i USING (ident) GROUP BY 1)
		UPDATE ref_label l SET label = m.label FROM event_min m
		 WHERE l.event_id = m.event_id AND m.label < l.label;
		GET DIAGNOSTICS changed = ROW_COUNT;
		EXIT WHEN changed = 0;
	END LOOP;
	RETURN (SELECT coalesce(string_agg(ids, '|' ORDER BY ids), '') FROM
	          (SELECT string_agg(event_id, ',' ORDER BY event_id) ids FROM ref_label GROUP BY label) s);
END $$;

CREATE FUNCTION pg_temp.stored_partition() RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(ids, '|' ORDER BY ids), '') FROM
	  (SELECT string_agg(id::text, ',' ORDER BY id::text) ids FROM cdp_traits.customer_events
	    WHERE customer_entity_id IS NOT NULL GROUP BY customer_entity_id) s $$;

-- One batch: insert a slice of the pool, update some events' identifiers,
-- delete some events; sizes and choices come from hashes of the batch number.
CREATE FUNCTION pg_temp.batch(b int) RETURNS TABLE(batch int, events bigint, entities bigint,
                                                   consistent boolean, matches_reference boolean)
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rev SELECT id, source_id, type, version, event_time, payload FROM pool
	 WHERE n > (b - 1) * 240 AND n <= b * 240
	   AND abs(hashint8extended(n, b)) % 10 < 8;
	UPDATE rev SET payload = payload - 'cookie_id' - 'device_id'
	 WHERE abs(hashint8extended(hashtext(id::text), b + 100)) % 25 = 0;
	UPDATE rev SET payload = payload || jsonb_build_object('loyalty_card', 'LC' || lpad((abs(hashint8extended(hashtext(id::text), b)) % 40)::text, 8, '0'))
	 WHERE source_id = 'crm' AND abs(hashint8extended(hashtext(id::text), b + 200)) % 10 = 0;
	DELETE FROM rev WHERE abs(hashint8extended(hashtext(id::text), b + 300)) % 12 = 0;
	IF b % 5 = 0 THEN
		-- a multi-statement transaction mixing all three
		DELETE FROM rev WHERE id IN (SELECT id FROM rev ORDER BY md5(id::text || b) LIMIT 20);
		INSERT INTO rev SELECT id, source_id, type, version, event_time, payload FROM pool
		 WHERE n <= b * 240 AND id NOT IN (SELECT id FROM rev) ORDER BY md5(id::text || b) LIMIT 30;
	END IF;
	RETURN QUERY SELECT b, (SELECT count(*) FROM rev), (SELECT count(*) FROM cdp_traits.customer_entities),
		(SELECT count(*) = 0 FROM cdp_traits.verify_stitching()),
		pg_temp.stored_partition() = pg_temp.reference_partition();
END $$;

SELECT (pg_temp.batch(b)).* FROM generate_series(1, 15) b;

-- one bulk statement with more than 10,000 identifiers, many already stored
-- (the batch then looks them up in one pass over matching)
INSERT INTO rev SELECT id, source_id, type, version, event_time, payload
  FROM cdp_gen.events(40000, 43) WHERE id NOT IN (SELECT id FROM rev);
SELECT count(*) AS events, (SELECT count(*) = 0 FROM cdp_traits.verify_stitching()) AS consistent,
       pg_temp.stored_partition() = pg_temp.reference_partition() AS matches_reference
  FROM rev;

-- a rule change followed by restitch() also matches the reference
SET client_min_messages = warning;
DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'cookie_id';
RESET client_min_messages;
SELECT cdp_traits.restitch() > 0 AS restitched,
       (SELECT count(*) = 0 FROM cdp_traits.verify_stitching()) AS consistent,
       pg_temp.stored_partition() = pg_temp.reference_partition() AS matches_reference;

-- A full pass reads the events with one parallel worker on a table big enough
-- for parallel query (test/t/010_stitch_stress.pl checks that one is planned).
-- Forced here on this small table: after a rule change, and from an empty
-- state, the pass still matches the reference.
SET min_parallel_table_scan_size = 0;
SET client_min_messages = warning;
INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, value_expression)
VALUES ('cookie_id', 'web', $$payload->>'cookie_id'$$);
RESET client_min_messages;
SELECT cdp_traits.restitch() > 0 AS restitched,
       (SELECT count(*) = 0 FROM cdp_traits.verify_stitching()) AS consistent,
       pg_temp.stored_partition() = pg_temp.reference_partition() AS matches_reference;
TRUNCATE cdp_traits.event_entities, cdp_traits.matching;
DELETE FROM cdp_traits.customer_entities;
SELECT cdp_traits.restitch() > 0 AS restitched,
       (SELECT count(*) = 0 FROM cdp_traits.verify_stitching()) AS consistent,
       pg_temp.stored_partition() = pg_temp.reference_partition() AS matches_reference;
RESET min_parallel_table_scan_size;

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP TABLE rev CASCADE;
DROP TABLE pool;
DELETE FROM cdp_traits.stitching_rules;
DELETE FROM cdp_traits.events_source;
