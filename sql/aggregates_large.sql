-- Large inputs: one group of a million rows, a million groups of one row,
-- and hash aggregation over a million groups within work_mem (spilling).
CREATE SCHEMA agg_large;
SET search_path = agg_large, cdp_traits, public;

-- One group of 1M rows: 1000 distinct int8 values, and 1M distinct texts.
CREATE TABLE one_group AS
SELECT (abs(hashint4(i)) % 1000)::int8 AS n, 'customer-' || i AS s,
       CASE WHEN i % 10 = 0 THEN (abs(hashint4(i)) % 1000)::float8 END AS w,
       '2024-01-01'::timestamptz + (abs(hashint4(i + 1)) % 100000) * interval '1 second' AS t
  FROM generate_series(1, 1000000) i;
SELECT (SELECT most_frequent(n) FROM one_group) = (SELECT mode() WITHIN GROUP (ORDER BY n) FROM one_group)
         AS most_frequent,
       (SELECT least_frequent(n) FROM one_group) =
         (SELECT n FROM one_group GROUP BY n ORDER BY count(*), n LIMIT 1) AS least_frequent,
       (SELECT most_frequent(n, w) FROM one_group) =
         (SELECT n FROM one_group WHERE w IS NOT NULL GROUP BY n ORDER BY sum(w) DESC, n LIMIT 1) AS most_weighted,
       (SELECT first(n, t) FROM one_group) = (SELECT n FROM one_group ORDER BY t, n LIMIT 1) AS first,
       (SELECT last(n, t) FROM one_group) = (SELECT n FROM one_group ORDER BY t DESC, n DESC LIMIT 1) AS last,
       (SELECT num_of_unique(n) FROM one_group) = (SELECT count(DISTINCT n) FROM one_group) AS num_of_unique,
       (SELECT unique_list(n) FROM one_group) = (SELECT array_agg(DISTINCT n ORDER BY n) FROM one_group) AS unique_list;
SELECT (SELECT num_of_unique(s) FROM one_group) AS unique_texts,
       (SELECT unique_list(s) FROM one_group) = (SELECT array_agg(DISTINCT s ORDER BY s) FROM one_group) AS unique_list,
       (SELECT most_frequent(s) FROM one_group) = (SELECT mode() WITHIN GROUP (ORDER BY s) FROM one_group) AS most_frequent,
       (SELECT first(s, t) FROM one_group) = (SELECT s FROM one_group ORDER BY t, s LIMIT 1) AS first,
       (SELECT last(s, t) FROM one_group) = (SELECT s FROM one_group ORDER BY t DESC, s DESC LIMIT 1) AS last;

-- 1M groups of one row (every tenth without a value): the value itself.
CREATE TABLE one_row_groups AS
SELECT i AS g, CASE WHEN i % 10 <> 0 THEN 'v' || (i % 5000) END AS v,
       '2024-01-01'::timestamptz + i * interval '1 second' AS t
  FROM generate_series(1, 1000000) i;
ANALYZE one_row_groups;
CREATE FUNCTION one_row_mismatches() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*)
	  FROM (SELECT g, most_frequent(v) AS mf, least_frequent(v) AS lf, most_frequent(v, 2) AS mw,
				   first(v, t) AS fi, last(v, t) AS la, num_of_unique(v) AS nu,
				   unique_list(v) AS ul, any_value(v) AS av
			  FROM one_row_groups GROUP BY g) a
	  JOIN one_row_groups r USING (g)
	 WHERE mf IS DISTINCT FROM v OR lf IS DISTINCT FROM v OR mw IS DISTINCT FROM v
		OR fi IS DISTINCT FROM v OR la IS DISTINCT FROM v
		OR nu <> (v IS NOT NULL)::int OR ul IS DISTINCT FROM CASE WHEN v IS NOT NULL THEN ARRAY[v] END
		OR av IS DISTINCT FROM v
$$;
SELECT one_row_mismatches() AS mismatches;

-- Hash aggregation over 1M groups stays within its memory limit (work_mem
-- times hash_mem_multiplier) by spilling, and still gives the same results.
CREATE FUNCTION hash_agg_memory(query text)
RETURNS TABLE (strategy text, spilled bool, peak_within_limit bool)
LANGUAGE plpgsql AS $$
DECLARE
	plan jsonb;
	node jsonb;
	limit_kb numeric := pg_size_bytes(current_setting('work_mem')) / 1024
		* current_setting('hash_mem_multiplier')::numeric;
BEGIN
	EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON, COSTS OFF, TIMING OFF) ' || query INTO plan;
	SELECT p INTO node FROM jsonb_path_query(plan, 'strict $.**') p
	 WHERE jsonb_typeof(p) = 'object' AND p ? 'HashAgg Batches';
	RETURN QUERY SELECT node->>'Strategy', (node->>'HashAgg Batches')::int > 1,
		(node->>'Peak Memory Usage')::numeric <= 1.5 * limit_kb;
END $$;
SET work_mem = '4MB';
SET max_parallel_workers_per_gather = 0;
SET enable_sort = off;
SELECT * FROM hash_agg_memory('SELECT g, most_frequent(v), num_of_unique(v), first(v, t) FROM one_row_groups GROUP BY g');
SELECT * FROM hash_agg_memory('SELECT g % 300000, unique_list(v), most_frequent(v) FROM one_row_groups GROUP BY 1');
SELECT one_row_mismatches() AS mismatches_when_spilling;
RESET ALL;

RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA agg_large CASCADE;
