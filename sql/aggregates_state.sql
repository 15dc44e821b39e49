-- The state type cdp_traits.agg_state: states of parts merged give the
-- aggregates of the whole (rollups, distribution), the text and binary
-- forms round-trip, and corrupt or forged states are rejected with an
-- error, never a crash.
CREATE SCHEMA agg_states;
SET search_path = agg_states, cdp_traits, public;

CREATE TABLE ev AS
SELECT i % 50 AS g, i % 7 AS part,
       CASE WHEN i % 13 <> 0 THEN 'v' || (abs(hashint4(i)) % (1 + i % 40)) END AS v,
       (abs(hashint4(i + 1)) % 4) / 2.0 AS w,
       '2024-01-01'::timestamptz + (abs(hashint4(i + 2)) % 1000) * interval '1 minute' AS at
  FROM generate_series(1, 20000) i;

-- States per (group, part), merged per group, finished: the same as the
-- aggregates over each group (numeric values too: equal values of
-- different scale merge)
CREATE TABLE parts AS
SELECT g, part, frequency_state(v) AS f, frequency_state(v, w) AS fw, unique_state(v) AS u,
       first_state(v, at) AS fi, last_state(v, at) AS la,
       frequency_state(length(v) / 2.0) AS fn
  FROM ev GROUP BY g, part;
SELECT count(*) AS groups_differing
  FROM (SELECT g, most_frequent(v) AS mf, least_frequent(v) AS lf, most_frequent(v, w) AS mfw,
               least_frequent(v, w) AS lfw, num_of_unique(v) AS nu, unique_list(v) AS ul,
               first(v, at) AS fi, last(v, at) AS la, most_frequent(length(v) / 2.0) AS mn
          FROM ev GROUP BY g) direct
  JOIN (SELECT g, state_most_frequent(merge_states(f), NULL::text) AS mf,
               state_least_frequent(merge_states(f), NULL::text) AS lf,
               state_most_frequent(merge_states(fw), NULL::text) AS mfw,
               state_least_frequent(merge_states(fw), NULL::text) AS lfw,
               state_num_of_unique(merge_states(u)) AS nu,
               state_unique_list(merge_states(u), NULL::text) AS ul,
               state_first(merge_states(fi), NULL::text) AS fi,
               state_last(merge_states(la), NULL::text) AS la,
               state_most_frequent(merge_states(fn), NULL::numeric) AS mn
          FROM parts GROUP BY g) merged USING (g)
 WHERE (direct.*) IS DISTINCT FROM (merged.*);
-- unique values can also come from a frequency state
SELECT state_num_of_unique(f), state_unique_list(f, NULL::text) FROM parts WHERE g = 1 AND part = 1;
-- states of no values are NULL
SELECT frequency_state(v) IS NULL AS no_state, state_num_of_unique(NULL) AS none
  FROM ev WHERE v IS NULL AND g = -1;

-- Text form: \x and the portable bytes in hex; it round-trips
SELECT frequency_state(v) FROM (VALUES ('b'), ('a'), ('b')) t(v);
SELECT first_state(v, '2024-01-01 00:00:00+00') FROM (VALUES (42::int4)) t(v);
SELECT count(*) AS round_trips FROM parts
 WHERE f::text::agg_state::text = f::text AND fw::text::agg_state::text = fw::text
   AND u::text::agg_state::text = u::text AND fi::text::agg_state::text = fi::text
   AND la::text::agg_state::text = la::text AND fn::text::agg_state::text = fn::text;
-- states from text are unsorted input like any other: repeated values merge
SELECT state_most_frequent(s, NULL::text), state_num_of_unique(s)
  FROM (SELECT (frequency_state(v)::text)::agg_state AS s
          FROM (VALUES ('x'), ('y'), ('y')) t(v)) q;

-- Binary form (COPY BINARY uses the send and receive functions)
\copy (SELECT g, part, f, fw, u, fi, la, fn FROM parts) TO 'results/agg_states.bin' WITH (FORMAT binary)
CREATE TABLE parts_copy (LIKE parts);
\copy parts_copy FROM 'results/agg_states.bin' WITH (FORMAT binary)
SELECT count(*) AS rows_differing
  FROM parts p JOIN parts_copy c USING (g, part)
 WHERE p.f::text <> c.f::text OR p.fw::text <> c.fw::text OR p.u::text <> c.u::text
    OR p.fi::text <> c.fi::text OR p.la::text <> c.la::text OR p.fn::text <> c.fn::text;

-- Mixing kinds, types, or reading a state as another type is refused
SELECT merge_states(s) FROM (SELECT frequency_state(v) s FROM ev UNION ALL SELECT unique_state(v) FROM ev) q;
SELECT merge_states(s) FROM (SELECT frequency_state(v) s FROM ev UNION ALL SELECT frequency_state(g) FROM ev) q;
SELECT state_first(la, NULL::text) FROM parts LIMIT 1;
SELECT state_most_frequent(u, NULL::text) FROM parts LIMIT 1;
SELECT state_most_frequent(f, NULL::int) FROM parts LIMIT 1;
SELECT state_unique_list(fi, NULL::text) FROM parts LIMIT 1;

-- Corrupt input, built from readable pieces: str() is a length-prefixed
-- string, val() a length-prefixed value.
CREATE FUNCTION try_state(bytes bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	detail text;
BEGIN
	RETURN 'accepted: ' || state_num_of_unique(('\x' || encode(bytes, 'hex'))::agg_state);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
	RETURN SQLSTATE || ' ' || SQLERRM || coalesce(' (' || nullif(detail, '') || ')', '');
END $$;
CREATE FUNCTION str(s text) RETURNS bytea LANGUAGE sql AS $$
	SELECT int4send(octet_length(s)) || convert_to(s, 'UTF8')
$$;
CREATE FUNCTION val(b bytea) RETURNS bytea LANGUAGE sql AS $$
	SELECT int4send(length(b)) || b
$$;
-- a valid unique state of int4 {7}, then variations
SELECT v.name, try_state(v.bytes)
  FROM (VALUES
	('valid', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val(int4send(7))),
	('no \x prefix', NULL),
	('empty', ''::bytea),
	('version 2', '\x0202'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val(int4send(7))),
	('kind 0', '\x0100'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val(int4send(7))),
	('kind 5', '\x0105'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val(int4send(7))),
	('type name too long', '\x0102'::bytea || int4send(1000) || convert_to('int4', 'UTF8')),
	('negative name length', '\x0102'::bytea || int4send(-5)),
	('no such type', '\x0102'::bytea || str('pg_catalog.nosuchtype') || str('') || str('') || int4send(1) || val(int4send(7))),
	('type name not a name', '\x0102'::bytea || str('int4); drop table ev; --') || str('') || str('') || int4send(1) || val(int4send(7))),
	('empty type name', '\x0102'::bytea || str('') || str('') || str('') || int4send(1) || val(int4send(7))),
	('zero byte in name', '\x0102'::bytea || int4send(5) || '\x696e740034'::bytea || str('') || str('') || int4send(1) || val(int4send(7))),
	('pseudo-type', '\x0102'::bytea || str('pg_catalog.anyelement') || str('') || str('') || int4send(1) || val(int4send(7))),
	('domain', '\x0102'::bytea || str('information_schema.cardinal_number') || str('') || str('') || int4send(1) || val(int4send(7))),
	('no ordering', '\x0102'::bytea || str('pg_catalog.json') || str('') || str('') || int4send(1) || val('\x01'::bytea || convert_to('1', 'UTF8'))),
	('no such collation', '\x0102'::bytea || str('pg_catalog.text') || str('pg_catalog') || str('nosuch') || int4send(1) || val(convert_to('a', 'UTF8'))),
	('half a collation', '\x0102'::bytea || str('pg_catalog.text') || str('pg_catalog') || str('') || int4send(1) || val(convert_to('a', 'UTF8'))),
	('count 0', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(0)),
	('count -1', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(-1) || val(int4send(7))),
	('count huge', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(2147483647) || val(int4send(7))),
	('count 2, one value', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(2) || val(int4send(7)) || int4send(4)),
	('value length -1', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || int4send(-1)),
	('value length past end', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || int4send(400) || int4send(7)),
	('int4 of 3 bytes', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val('\x000007'::bytea)),
	('int4 of 5 bytes', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val(int4send(7) || '\x00'::bytea)),
	('text not UTF-8', '\x0102'::bytea || str('pg_catalog.text') || str('pg_catalog') || str('default') || int4send(1) || val('\xc328'::bytea)),
	('numeric digit 10000', '\x0102'::bytea || str('pg_catalog.numeric') || str('') || str('') || int4send(1) || val('\x0001000000000000'::bytea || int2send(10000::int2))),
	('numeric bad sign', '\x0102'::bytea || str('pg_catalog.numeric') || str('') || str('') || int4send(1) || val('\x0000000012340000'::bytea)),
	('frequency without weight', '\x0101'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val(int4send(7))),
	('first, timestamp out of range', '\x0103'::bytea || str('pg_catalog.int4') || str('') || str('') || int8send(9223372036854775000) || val(int4send(7))),
	('trailing byte', '\x0102'::bytea || str('pg_catalog.int4') || str('') || str('') || int4send(1) || val(int4send(7)) || '\x00'::bytea)
  ) v(name, bytes)
 WHERE v.bytes IS NOT NULL;
SELECT 'abc'::agg_state;
SELECT '\x01'::agg_state;
SELECT '\x0'::agg_state;
SELECT '\xzz'::agg_state;

-- Every truncation and every single-byte change of valid states: an error
-- or a valid state, never a crash
CREATE FUNCTION mutations(s agg_state) RETURNS TABLE (truncations_rejected bigint, changes_tried bigint)
LANGUAGE plpgsql AS $$
DECLARE
	b bytea := decode(substr(s::text, 3), 'hex');
	i int;
	bit int;
	rejected bigint := 0;
	tried bigint := 0;
BEGIN
	FOR i IN 0 .. length(b) - 1 LOOP
		IF try_state(substr(b, 1, i)) NOT LIKE 'accepted%' THEN
			rejected := rejected + 1;
		END IF;
	END LOOP;
	FOR i IN 0 .. length(b) - 1 LOOP
		FOREACH bit IN ARRAY ARRAY[0, 1, 7] LOOP
			PERFORM try_state(set_byte(b, i, get_byte(b, i) # (1 << bit)));
			tried := tried + 1;
		END LOOP;
	END LOOP;
	RETURN QUERY SELECT rejected, tried;
END $$;
SELECT length(f::text) AS hex_length, m.*
  FROM (SELECT frequency_state(v, w) AS f FROM ev WHERE g = 3 AND part < 2) q, mutations(q.f) m;
SELECT m.* FROM (SELECT frequency_state(length(v) / 3.0) AS f FROM ev WHERE g = 3 AND part = 0) q, mutations(q.f) m;
SELECT m.* FROM (SELECT last_state(v, at) AS f FROM ev WHERE g = 3) q, mutations(q.f) m;

-- Small frequency states keep counts (uint32) while every weight is a
-- count, and weights (float8) once one is not, a count would overflow, or
-- states of both kinds meet: the results stay those of plain sums.
CREATE TABLE cw (g int, v text, w float8);
INSERT INTO cw VALUES
  (1, 'a', 1), (1, 'b', 1), (1, 'b', 1), (1, 'a', 2.5),        -- a count state meets 2.5: a 3.5, b 2
  (2, 'a', 4294967295), (2, 'b', 1), (2, 'a', 1),              -- a count would overflow: a 4294967296
  (2, 'b', 4294967295), (2, 'b', 1), (2, 'b', 0.5),            -- b 4294967297.5
  (3, 'a', -0.0), (3, 'b', 0), (3, 'a', 1), (3, 'b', 1),        -- -0 and 0 are no counts of note
  (4, 'x', 0.25), (4, 'y', 1), (4, 'y', 1), (4, 'x', 2);       -- weights first, then counts
SELECT g, most_frequent(v, w), least_frequent(v, w),
       (SELECT string_agg(v || '=' || s, ' ' ORDER BY v)
          FROM (SELECT c.v, sum(c.w) AS s FROM cw c WHERE c.g = cw.g GROUP BY 1) t) AS sums
  FROM cw GROUP BY g ORDER BY g;
-- states of counts (unweighted) merged with states of weights, in either order
SELECT state_most_frequent(merge_states(f ORDER BY k), NULL::text) AS count_then_weight,
       state_most_frequent(merge_states(f ORDER BY k DESC), NULL::text) AS weight_then_count
  FROM (SELECT 1 AS k, frequency_state(v) AS f FROM cw WHERE g = 1
        UNION ALL SELECT 2, frequency_state(v, w) FROM cw WHERE g = 4) s;
-- a state of counts stored and read back (packed states hold weights)
SELECT state_most_frequent(f::text::agg_state, NULL::text) AS stored,
       state_least_frequent(f::text::agg_state, NULL::text) AS stored_least
  FROM (SELECT frequency_state(v) AS f FROM cw WHERE g = 2) q;

-- One column of stored states of many types and collations (a rollup of
-- several attributes): the functions reading them keep a few types' lookups
-- and reuse their memory, rather than piling up a type lookup per row (it
-- took 1.2 kB a row: 470 MB for 400k rows).  The states read back right
-- with more types than are kept at once.
CREATE TYPE agg_pair AS (a int, b text);
CREATE TABLE mixed AS
SELECT i, CASE i % 10
  WHEN 0 THEN (SELECT unique_state(x) FROM (VALUES ('a'), ('b')) v(x))
  WHEN 1 THEN (SELECT unique_state(x COLLATE "C") FROM (VALUES ('a'), ('B'), ('b')) v(x))
  WHEN 2 THEN (SELECT unique_state(x) FROM (VALUES (1), (2)) v(x))
  WHEN 3 THEN (SELECT unique_state(x) FROM (VALUES (1::int8), (2), (3), (4)) v(x))
  WHEN 4 THEN (SELECT frequency_state(x) FROM (VALUES (1.5), (2)) v(x))
  WHEN 5 THEN (SELECT unique_state(x) FROM (VALUES (true), (false)) v(x))
  WHEN 6 THEN (SELECT unique_state(x) FROM (VALUES ('(1,a)'::agg_pair)) v(x))
  WHEN 7 THEN (SELECT unique_state(x) FROM (VALUES ('2024-01-01'::date)) v(x))
  WHEN 8 THEN (SELECT unique_state(x) FROM (VALUES ('a'::bytea), ('b'), ('c')) v(x))
  ELSE (SELECT unique_state(x) FROM (VALUES (array[1]), (array[2]), (array[3])) v(x)) END AS s
  FROM generate_series(1, 40000) i;
SELECT i % 10 AS k, min(state_num_of_unique(s)), max(state_num_of_unique(s)),
       count(DISTINCT s::text) AS forms, bool_and(s::text::agg_state::text = s::text) AS round_trip
  FROM mixed GROUP BY 1 ORDER BY 1;
WITH x AS MATERIALIZED (SELECT sum(state_num_of_unique(s)) AS n, sum(length(s::text)) AS len FROM mixed)
SELECT n, len,
       (SELECT sum(total_bytes) FROM pg_backend_memory_contexts
         WHERE name IN ('ExecutorState', 'cdp_traits aggregate type')) < 8 * 1024 * 1024 AS bounded
  FROM x;

-- No state of anonymous records: their row type is known to this session
-- only (a state stored and read in another one decoded its values with
-- another row type: wrong values).  The aggregates themselves take them.
SELECT unique_state(r) FROM (VALUES (row(1, 'a')), (row(2, 'b'))) v(r);
SELECT frequency_state(r, 1) FROM (VALUES (row(1, 'a'))) v(r);
SELECT first_state(r, now()) FROM (VALUES (array[row(1, 'a')])) v(r);
SELECT state_unique_list(unique_state(row(i, 'x')::agg_pair), NULL::agg_pair) FROM generate_series(1, 2) i;
SELECT unique_list(r), most_frequent(r), last(r, '2024-01-01') FROM (VALUES (row(1, 'a')), (row(2, 'b'))) v(r);

RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA agg_states CASCADE;
