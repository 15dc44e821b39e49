-- The aggregates against the best built-in SQL formulation, on generated
-- data, for every type SPEC section 3 names (text in two collations,
-- numeric, int2/4/8, uuid, timestamptz, date, boolean, float8): ties, NULL
-- values, weights and times, groups without values, small and large groups.
-- Each check prints one row per type with the number of groups whose
-- result differs, per aggregate (all 0), under four plans: serial with
-- hash and with sorted aggregation, and forced parallel with both.
CREATE SCHEMA agg_types;
SET search_path = agg_types, cdp_traits, public;

-- k is a value's rank (NULL: no value), converted to each type below
CREATE TABLE src (g int, k int, w float8, t timestamptz, h int);
INSERT INTO src
SELECT g, CASE WHEN h % 11 = 0 OR g % 8 = 7 THEN NULL ELSE k END,
       CASE WHEN h % 13 = 0 THEN NULL ELSE (h % 5) / 2.0 END,  -- exact sums
       CASE WHEN h % 17 = 0 THEN NULL ELSE '2024-01-01'::timestamptz + (h % 20) * interval '1 hour' END,
       h
  FROM (SELECT g, i, abs(hashint4(g * 7919 + i)) AS h,
               CASE g % 4
                 WHEN 0 THEN abs(hashint4(i + g)) % 3        -- 1-3 rows
                 WHEN 1 THEN abs(hashint4(i * 31 + g)) % 5   -- 40 rows over 5 values: ties
                 WHEN 2 THEN abs(hashint4(i * 17 + g)) % 100 -- 300 rows over 100 values
                 ELSE abs(hashint4(i * 13 + g)) % 10         -- 30 rows over 10 values
               END AS k
          FROM generate_series(1, 200) g,
               LATERAL generate_series(1, CASE g % 4 WHEN 0 THEN 1 + g % 3 WHEN 1 THEN 40
                                                     WHEN 2 THEN (CASE WHEN g % 8 = 2 THEN 300 ELSE 20 END)
                                                     ELSE 30 END) i) s
UNION ALL
-- one group of 5000 rows over 3000 values
SELECT 0, abs(hashint4(i)) % 3000, (i % 3) / 2.0, '2024-01-01'::timestamptz + (i % 700) * interval '1 minute', i
  FROM generate_series(1, 5000) i;
SELECT count(*) AS rows, count(DISTINCT g) AS groups, count(k) AS values FROM src;

-- the types, and each as a table of (g, v, w, t)
CREATE TABLE types (label text PRIMARY KEY, type text, expr text);
INSERT INTO types VALUES
  ('text C',      'text COLLATE "C"',         $$chr(97 + k % 26) || (k / 26)$$),
  ('text icu',    'text COLLATE "und-x-icu"', $$CASE WHEN k % 3 = 0 THEN upper(chr(97 + k % 26)) ELSE chr(97 + k % 26) END || (k / 26)$$),
  ('numeric',     'numeric',     $$CASE WHEN h % 2 = 0 THEN round(k / 4.0, 2) ELSE round(k / 4.0, 3) END$$),
  ('int2',        'int2',        $$(k - 50)::int2$$),
  ('int4',        'int4',        $$(k::int8 * 1000003 % 2000000 - 1000000)::int4$$),
  ('int8',        'int8',        $$k * 10000000000 - 5000000000$$),
  ('uuid',        'uuid',        $$md5(k::text)::uuid$$),
  ('timestamptz', 'timestamptz', $$'2024-01-01'::timestamptz + k * interval '37 minutes'$$),
  ('date',        'date',        $$'2024-01-01'::date + k$$),
  ('boolean',     'boolean',     $$k % 2 = 0$$),
  ('float8',      'float8',      $$CASE k WHEN 0 THEN '-0'::float8 WHEN 1 THEN '0' WHEN 2 THEN 'NaN' ELSE k / 8.0 END$$);

CREATE FUNCTION make_typed_tables() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM types LOOP
		EXECUTE format('CREATE TABLE %I (g int, v %s, w float8, t timestamptz)',
					   'typed ' || r.label, r.type);
		EXECUTE format('INSERT INTO %I SELECT g, CASE WHEN k IS NOT NULL THEN %s END, w, t FROM src ORDER BY h',
					   'typed ' || r.label, r.expr);
		EXECUTE format('ANALYZE %I', 'typed ' || r.label);
	END LOOP;
END $$;
SELECT make_typed_tables();

-- Per type: groups whose result differs from the built-in formulation.
CREATE FUNCTION compare_builtin()
RETURNS TABLE (type text, most_frequent bigint, most_weighted bigint, least_frequent bigint,
			   least_weighted bigint, first bigint, last bigint, num_of_unique bigint,
			   unique_list bigint, any_value bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM types ORDER BY label LOOP
		RETURN QUERY EXECUTE format($q$
		WITH ours AS (
			SELECT g, most_frequent(v) AS mf, most_frequent(v, w) AS mfw,
				   least_frequent(v) AS lf, least_frequent(v, w) AS lfw,
				   first(v, t) AS fi, last(v, t) AS la, num_of_unique(v) AS nu,
				   unique_list(v) AS ul, any_value(v) AS av
			  FROM %1$I GROUP BY g),
		builtin AS (
			SELECT g, mode() WITHIN GROUP (ORDER BY v) AS mf,
				   (array_agg(v ORDER BY t, v) FILTER (WHERE v IS NOT NULL AND t IS NOT NULL))[1] AS fi,
				   (array_agg(v ORDER BY t DESC, v DESC) FILTER (WHERE v IS NOT NULL AND t IS NOT NULL))[1] AS la,
				   count(DISTINCT v) AS nu,
				   array_agg(DISTINCT v ORDER BY v) FILTER (WHERE v IS NOT NULL) AS ul,
				   array_agg(v) FILTER (WHERE v IS NOT NULL) AS vals
			  FROM %1$I GROUP BY g),
		counted AS (
			SELECT g, v, count(*) AS n, sum(w) AS s, count(w) AS nw
			  FROM %1$I WHERE v IS NOT NULL GROUP BY g, v),
		most_weighted AS (
			SELECT DISTINCT ON (g) g, v FROM counted WHERE nw > 0 ORDER BY g, s DESC, v),
		least AS (
			SELECT DISTINCT ON (g) g, v FROM counted ORDER BY g, n, v),
		least_weighted AS (
			SELECT DISTINCT ON (g) g, v FROM counted WHERE nw > 0 ORDER BY g, s, v)
		SELECT %2$L,
			   count(*) FILTER (WHERE o.mf IS DISTINCT FROM b.mf),
			   count(*) FILTER (WHERE o.mfw IS DISTINCT FROM mw.v),
			   count(*) FILTER (WHERE o.lf IS DISTINCT FROM l.v),
			   count(*) FILTER (WHERE o.lfw IS DISTINCT FROM lw.v),
			   count(*) FILTER (WHERE o.fi IS DISTINCT FROM b.fi),
			   count(*) FILTER (WHERE o.la IS DISTINCT FROM b.la),
			   count(*) FILTER (WHERE o.nu IS DISTINCT FROM b.nu),
			   count(*) FILTER (WHERE o.ul IS DISTINCT FROM b.ul),
			   count(*) FILTER (WHERE (o.av IS NULL) <> (b.vals IS NULL)
									 OR NOT coalesce(o.av = ANY (b.vals), true))
		  FROM ours o FULL JOIN builtin b USING (g)
		  LEFT JOIN most_weighted mw USING (g)
		  LEFT JOIN least l USING (g)
		  LEFT JOIN least_weighted lw USING (g)
		$q$, 'typed ' || r.label, r.label);
	END LOOP;
END $$;

-- Per type: groups whose result differs from the serial (hash) results.
CREATE FUNCTION save_serial() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM types LOOP
		EXECUTE format($q$
			CREATE TABLE %I AS
			SELECT g, most_frequent(v) AS mf, most_frequent(v, w) AS mfw,
				   least_frequent(v) AS lf, least_frequent(v, w) AS lfw,
				   first(v, t) AS fi, last(v, t) AS la, num_of_unique(v) AS nu,
				   unique_list(v) AS ul
			  FROM %I GROUP BY g$q$, 'serial ' || r.label, 'typed ' || r.label);
	END LOOP;
END $$;
CREATE FUNCTION compare_serial() RETURNS TABLE (type text, differing bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM types ORDER BY label LOOP
		RETURN QUERY EXECUTE format($q$
			SELECT %L, count(*) FROM (
			  (SELECT g, most_frequent(v) AS mf, most_frequent(v, w) AS mfw,
					  least_frequent(v) AS lf, least_frequent(v, w) AS lfw,
					  first(v, t) AS fi, last(v, t) AS la, num_of_unique(v) AS nu,
					  unique_list(v) AS ul
				 FROM %I GROUP BY g
			   EXCEPT ALL SELECT * FROM %I)
			  UNION ALL
			  (SELECT * FROM %I
			   EXCEPT ALL
			   SELECT g, most_frequent(v), most_frequent(v, w), least_frequent(v),
					  least_frequent(v, w), first(v, t), last(v, t), num_of_unique(v),
					  unique_list(v)
				 FROM %I GROUP BY g)) d$q$,
			r.label, 'typed ' || r.label, 'serial ' || r.label, 'serial ' || r.label,
			'typed ' || r.label);
	END LOOP;
END $$;

-- 1. serial, hash aggregation (the planner's choice for these aggregates)
EXPLAIN (COSTS OFF) SELECT g, most_frequent(v) FROM "typed int8" GROUP BY g;
SELECT * FROM compare_builtin();
SELECT save_serial();

-- 2. serial, sorted aggregation
SET enable_hashagg = off;
EXPLAIN (COSTS OFF) SELECT g, most_frequent(v) FROM "typed int8" GROUP BY g;
SELECT * FROM compare_builtin();
SELECT * FROM compare_serial();
RESET enable_hashagg;

-- 3. forced parallel plans: partial aggregates in several workers, combined
-- in the leader
SET force_parallel_mode = on;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 4;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT g, most_frequent(v), first(v, t) FROM "typed int8" GROUP BY g;
SELECT * FROM compare_builtin();
SELECT * FROM compare_serial();

-- the plan really ran in workers, and groups had partial states in several of
-- them, so that the combine function ran (which workers scan which blocks
-- depends on timing: a bigger table, and a few tries)
CREATE TABLE wide AS SELECT g, v, t FROM "typed int8", generate_series(1, 12);
ANALYZE wide;
CREATE FUNCTION parallel_run(query text, OUT workers_launched int, OUT groups_combined bool)
LANGUAGE plpgsql AS $$
DECLARE
	plan jsonb;
BEGIN
	FOR try IN 1 .. 5 LOOP
		EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON, COSTS OFF, TIMING OFF) ' || query INTO plan;
		SELECT max((p->>'Workers Launched')::int) INTO workers_launched
		  FROM jsonb_path_query(plan, 'strict $.**') p
		 WHERE jsonb_typeof(p) = 'object' AND p ? 'Workers Launched';
		SELECT sum((p->>'Actual Rows')::numeric * (p->>'Actual Loops')::numeric)
			   > (SELECT count(DISTINCT g) FROM src) INTO groups_combined
		  FROM jsonb_path_query(plan, 'strict $.**') p
		 WHERE jsonb_typeof(p) = 'object' AND p->>'Partial Mode' = 'Partial';
		EXIT WHEN groups_combined;
	END LOOP;
END $$;
SELECT * FROM parallel_run('SELECT g, most_frequent(v), first(v, t) FROM wide GROUP BY g');

-- 4. forced parallel, sorted aggregation
SET enable_hashagg = off;
EXPLAIN (COSTS OFF) SELECT g, unique_list(v) FROM "typed int8" GROUP BY g;
SELECT * FROM compare_builtin();
SELECT * FROM compare_serial();
SELECT * FROM parallel_run('SELECT g, unique_list(v) FROM wide GROUP BY g');
RESET ALL;

RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA agg_types CASCADE;
