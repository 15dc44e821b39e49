-- The aggregates of SPEC section 3 on small hand-made inputs: results, ties,
-- NULLs, empty input, weights, collations, types, errors; and to_number.
CREATE SCHEMA agg_basic;
SET search_path = agg_basic, cdp_traits, public;

CREATE TABLE ev (g int, v text, w float8, at timestamptz);
INSERT INTO ev VALUES
  -- group 1: b three times, a and c twice, d once; NULLs everywhere
  (1, 'b', 1, '2024-01-03'), (1, 'a', 1, '2024-01-02'), (1, 'b', 1, '2024-01-05'),
  (1, 'c', 5, '2024-01-01'), (1, 'c', 1, '2024-01-09'), (1, 'a', 1, '2024-01-09'),
  (1, 'b', 1, NULL), (1, NULL, 7, '2023-01-01'), (1, 'd', NULL, '2024-01-04'),
  -- group 2: a tie everywhere: x and y twice, at the same times
  (2, 'y', 2, '2024-02-01'), (2, 'x', 2, '2024-02-01'), (2, 'y', 2, '2024-02-02'),
  (2, 'x', 2, '2024-02-02'),
  -- group 3: only NULL values
  (3, NULL, 1, '2024-03-01'), (3, NULL, NULL, NULL),
  -- group 4: one row
  (4, 'only', 0.5, '2024-04-01');

SELECT g, most_frequent(v), least_frequent(v), most_frequent(v, w) AS most_weighted,
       least_frequent(v, w) AS least_weighted
  FROM ev GROUP BY g ORDER BY g;
SELECT g, first(v, at), last(v, at), num_of_unique(v), unique_list(v),
       any_value(v) IS NOT NULL AS has_any
  FROM ev GROUP BY g ORDER BY g;
-- any_value is one of the group's values
SELECT g, any_value(v) = ANY (array_agg(v)) AS is_a_value FROM ev WHERE g IN (1, 2, 4) GROUP BY g ORDER BY g;

-- no rows at all: NULL, and 0 for num_of_unique (as count)
SELECT most_frequent(v), least_frequent(v, w), first(v, at), last(v, at),
       num_of_unique(v), unique_list(v), any_value(v)
  FROM ev WHERE false;

-- weights: negative, zero, fractional; NaN counts as the largest weight (as
-- in SQL's float ordering) and infinity as infinity
SELECT most_frequent(v, w), least_frequent(v, w)
  FROM (VALUES ('a', -1.0), ('b', 0.0), ('c', 0.25), ('c', 0.5), ('a', 2.0)) t(v, w);
SELECT most_frequent(v, w), least_frequent(v, w)
  FROM (VALUES ('a', 'NaN'::float8), ('b', 'Infinity'), ('c', '-Infinity')) t(v, w);

-- first/last ties on the time: the smallest / largest value
SELECT first(v, at), last(v, at)
  FROM (VALUES ('m', '2024-01-01'::timestamptz), ('z', '2024-01-01'), ('a', '2024-01-01'),
               ('k', '2023-01-01'), ('q', '2025-01-01'), ('b', '2023-01-01'), ('p', '2025-01-01')) t(v, at);
-- infinite times are times like others
SELECT first(v, at), last(v, at)
  FROM (VALUES ('early', '-infinity'::timestamptz), ('late', 'infinity'), ('now', '2024-01-01')) t(v, at);

-- Collation: comparisons use the input collation
SELECT unique_list(v COLLATE "C") AS c_order, unique_list(v COLLATE "und-x-icu") AS icu_order,
       most_frequent(v COLLATE "C") AS c_tie, most_frequent(v COLLATE "und-x-icu") AS icu_tie,
       first(v COLLATE "C", '2024-01-01') AS c_first, first(v COLLATE "und-x-icu", '2024-01-01') AS icu_first
  FROM unnest(ARRAY['b', 'B', 'a', 'A', '_a']) v;
-- a nondeterministic (case-insensitive) collation: a and A are one value
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
SELECT num_of_unique(v COLLATE case_insensitive), lower(most_frequent(v COLLATE case_insensitive)),
       cardinality(unique_list(v COLLATE case_insensitive))
  FROM unnest(ARRAY['b', 'B', 'a', 'A', 'a']) v;

-- Types: equal values with different bytes (numeric scale, float zero) are one
-- value; NaN equals NaN; results keep the input's type
SELECT most_frequent(v), num_of_unique(v), unique_list(v)
  FROM unnest(ARRAY[1.0, 1.00, 2, 1.000, 2.0]::numeric[]) v;
SELECT most_frequent(v), num_of_unique(v), unique_list(v)
  FROM unnest(ARRAY['-0', '0', 'NaN', 'NaN', '1']::float8[]) v;
SELECT most_frequent(v), first(v, '2024-01-01'), unique_list(v)
  FROM unnest(ARRAY[true, false, true]) v;
SELECT most_frequent(v), last(v, '2024-01-01'), unique_list(v)
  FROM unnest(ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '00000000-0000-0000-0000-000000000000']::uuid[]) v;
SELECT most_frequent(v), least_frequent(v), unique_list(v), pg_typeof(most_frequent(v))
  FROM unnest(ARRAY[1, 2, 2, 3]::int2[]) v GROUP BY ();
-- composite and array values compare as records and arrays do
CREATE TYPE pair AS (a int, b text);
SELECT most_frequent(p), unique_list(p), num_of_unique(ARRAY[(p).a])
  FROM (VALUES (ROW(1, 'a')::pair), (ROW(1, 'a')::pair), (ROW(0, 'z')::pair)) t(p);
-- domains: the result has the domain type
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE TABLE contacts (v email);
INSERT INTO contacts VALUES ('a@x'), ('b@x'), ('b@x');
SELECT pg_typeof(most_frequent(v)), pg_typeof(unique_list(v)), unique_list(v), first(v, '2024-01-01')
  FROM contacts;
-- big (toasted) values
SELECT num_of_unique(repeat(i::text, 10000)), length(most_frequent(repeat(i::text, 10000)))
  FROM generate_series(1, 20) i;
-- many distinct values in one group (beyond the small, linear-scan form)
SELECT most_frequent(i % 37), least_frequent(i % 37), num_of_unique(i % 37),
       unique_list(i % 37) = ARRAY(SELECT generate_series(0, 36)) AS all_in_order
  FROM generate_series(1, 1000) i;
SELECT most_frequent(i::text), num_of_unique(i::text), most_frequent(i::text, -i)
  FROM generate_series(1, 500) i;

-- How values are stored: by value, fixed-length needing alignment (interval,
-- macaddr, tid, timetz), plain-storage varlena (tsquery), long varlenas (4-byte
-- headers, aligned), arrays and records; few and many distinct values
-- (arrays of arrays do not exist: for array values unique_list is left out)
CREATE FUNCTION storage_check(expr text) RETURNS TABLE (small bool, large bool)
LANGUAGE plpgsql AS $$
DECLARE
	q text := 'SELECT most_frequent(v) = mode() WITHIN GROUP (ORDER BY v)
					  AND least_frequent(v) = (SELECT v FROM s GROUP BY v ORDER BY count(*), v LIMIT 1)
					  AND num_of_unique(v) = count(DISTINCT v)
					  AND first(v, t) = (SELECT v FROM s ORDER BY t, v LIMIT 1)'
			  || CASE WHEN expr LIKE 'ARRAY%' THEN '' ELSE
				 ' AND unique_list(v) = array_agg(DISTINCT v ORDER BY v)' END
			  || ' FROM s';
	r1 bool;
	r2 bool;
BEGIN
	EXECUTE format('CREATE TEMP TABLE s AS SELECT %s AS v, now() - i %% 7 * interval ''1 day'' AS t
					FROM generate_series(1, 60) j, LATERAL (SELECT j %% 5 AS i) x', expr);
	EXECUTE q INTO r1;
	DROP TABLE s;
	EXECUTE format('CREATE TEMP TABLE s AS SELECT %s AS v, now() - i %% 7 * interval ''1 day'' AS t
					FROM generate_series(1, 2000) j, LATERAL (SELECT j * 7 %% 300 AS i) x', expr);
	EXECUTE q INTO r2;
	DROP TABLE s;
	RETURN QUERY SELECT r1, r2;
END $$;
SELECT e, c.* FROM unnest(ARRAY[
	'i::int2', 'i::int4', 'i * 1000000000000::int8', '(i = 1)', 'i::float4 / 3', 'chr(65 + i % 50)::"char"',
	'i * interval ''1 hour 3 minutes''', '(''08:00:2b:01:02:'' || lpad(to_hex(i % 256), 2, ''0''))::macaddr',
	'format(''(%s,%s)'', i, i % 3)::tid', '(''w'' || i)::tsquery', '(''10:00:00+0'' || (i % 10))::timetz + i * interval ''1 minute''', 'repeat(i::text, 60)',
	'ARRAY[i, i + 1]', 'ARRAY[repeat(i::text, 50), ''x'']', 'ROW(i, i::text)::pair', 'md5(i::text)::uuid',
	'i::text::name', 'i::numeric / 7']) e, storage_check(e) c;

-- Types without a default btree ordering are refused, even for NULL input
SELECT most_frequent(v::json) FROM (VALUES ('1')) t(v);
SELECT num_of_unique(point(1, 2));
SELECT first(NULL::json, now());
-- but any_value needs no ordering
SELECT any_value(v::json) FROM (VALUES ('1')) t(v);

-- As window functions; a group's state is shared by aggregates with the same
-- transition (most/least frequent, num_of_unique/unique_list)
SELECT i, most_frequent(v) OVER w, least_frequent(v) OVER w, num_of_unique(v) OVER w,
       unique_list(v) OVER w, last(v, at) OVER w
  FROM (VALUES (1, 'b', '2024-01-01'::timestamptz), (2, 'a', '2024-01-03'), (3, 'b', '2024-01-02'),
               (4, 'a', '2024-01-01'), (5, NULL, '2024-01-09')) t(i, v, at)
WINDOW w AS (ORDER BY i)
ORDER BY i;
SELECT i, most_frequent(v) OVER (ORDER BY i ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
  FROM (VALUES (1, 'b'), (2, 'a'), (3, 'a'), (4, 'c')) t(i, v) ORDER BY i;

-- the transition and combine functions are not for direct calls
SELECT frequency_add(NULL, 1);
SELECT agg_state_combine(NULL, NULL);
SELECT first_add(NULL, 1, now());

-- Every aggregate of the extension is marked parallel safe and has a
-- combine function, but for _value_deltas: the calculation's one serial pass
-- over its changes (for the counts), never used in a query of users'
SELECT p.proname, p.prokind, p.proparallel
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cdp_traits')
   AND p.proname <> '_value_deltas'
   AND p.prokind = 'a' AND (p.proparallel <> 's'
       OR NOT EXISTS (SELECT FROM pg_aggregate a WHERE a.aggfnoid = p.oid AND a.aggcombinefn <> 0));
SELECT count(*) AS aggregates FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
 WHERE p.pronamespace = 'cdp_traits'::regnamespace;

-- to_number: NULL, never an error, for what is not a number
SELECT s, to_number(s)
  FROM unnest(ARRAY['42', ' -1.5 ', '+.5', '5.', '1e3', '1.5E-2', '-0', '007', '1e+2',
                    E'\t12\n', '0e999999999',
                    '', ' ', 'abc', '1.2.3', '1,5', '1 000', '--1', '+-1', '.', 'e5', '1e',
                    '1e+', '0x1F', 'NaN', 'nan', 'Infinity', '-inf', '1e999999', '1e131072',
                    '1e-16384', '0.5e-16383', '1e2147483647', '1e-2147483647', '１２', '1_000',
                    '1e 5', NULL]) s;
SELECT to_number('1e-16383') = 1e-16383 AS smallest_scale,
       length(to_number('1e131071')::text) AS largest_weight,
       length(to_number(repeat('9', 5000))::text) AS long_number;
-- to_number agrees with numeric input on every string built from number-like
-- pieces (where numeric input fails, to_number is NULL; NaN and infinities
-- are NULL by design)
CREATE FUNCTION numeric_or_null(s text) RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
	IF s ~* 'nan|inf' THEN
		RETURN NULL;
	END IF;
	RETURN s::numeric;
EXCEPTION WHEN OTHERS THEN
	RETURN NULL;
END $$;
WITH strings AS (
	SELECT lead || sign || digits || dot || frac || exp || trail AS s
	  FROM unnest(ARRAY['', ' ', E'\n']) lead,
		   unnest(ARRAY['', '+', '-', '+-']) sign,
		   unnest(ARRAY['', '0', '7', '0012', 'x']) digits,
		   unnest(ARRAY['', '.', ',']) dot,
		   unnest(ARRAY['', '5', '000001']) frac,
		   unnest(ARRAY['', 'e', 'E5', 'e-5', 'e+3', 'e131071', 'e131072', 'e-16383', 'e-16384',
						'e1073741822', 'e1073741823', 'e-1073741823', 'e99999999999', 'e-', 'E+0']) exp,
		   unnest(ARRAY['', ' ', 'a']) trail
	UNION ALL
	-- at the limits of the numeric format: 131072 digits before the point,
	-- 16383 after it
	SELECT sign || digits || exp
	  FROM unnest(ARRAY['', '-']) sign,
		   unnest(ARRAY['1' || repeat('0', 131070), '1' || repeat('0', 131071), repeat('0', 200000) || '1',
						'0.' || repeat('0', 16382) || '1', '0.' || repeat('1', 16383), '0.' || repeat('1', 16384),
						'0.' || repeat('0', 16384), '1.' || repeat('0', 16383)]) digits,
		   unnest(ARRAY['', 'e1', 'e-1', 'e-4', 'e3', 'e4', 'e131071', 'e-131072', 'e-16383']) exp
)
SELECT count(*) AS strings, count(to_number(s)) AS numbers,
	   count(*) FILTER (WHERE to_number(s) IS DISTINCT FROM numeric_or_null(s)) AS disagreeing
  FROM strings;

RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA agg_basic CASCADE;
