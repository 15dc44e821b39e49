# Segments and toggles (issue 7): COPY of segmentation events generated like
# the reference streaming demo (Estuary Flow's examples/segment/generate.go,
# scaled to 500 segments and 10,000 users) into segment_events, whose
# trigger maintains memberships, toggles and profiles, against a plain COPY
# into an unindexed table with the same columns.  Sourced by
# test/bench/run.sh, which provides sql, compare and report.

SEG_N=${BENCH_SEGMENT_EVENTS:-1000000}

say "segments: generating 2 x $SEG_N events"
sql >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cdp_traits;
-- n events numbered from first + 1: segments drawn Zipf (s = 1.1) from 500,
-- vendor = 1 + segment mod 10, users half-normal over 10,000 (clipped at 10
-- standard deviations, as in the reference), 70% adds; 40% of the events
-- re-send an earlier add (one of the last 20,000, like the reference's
-- reservoir).  Timestamps advance one second per 1,000 events, written with
-- three offsets in turn.
CREATE OR REPLACE FUNCTION bench_segment_events(n int, first bigint, seed float8)
RETURNS TABLE (event uuid, user_id text, vendor int, segment text, ts text, remove boolean)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM setseed(seed);
	RETURN QUERY
	WITH zipf AS (	-- upper bounds of the cumulative distribution of ranks 0..498
	  SELECT array_agg(c ORDER BY k) AS bounds
	    FROM (SELECT k, (sum(w) OVER (ORDER BY k) / sum(w) OVER ())::float8 AS c
	            FROM (SELECT k, power(1 + k, -1.1) AS w FROM generate_series(0, 498) k) w) c
	), draws AS (
	  SELECT i, random() AS u_seg, random() AS u1, random() AS u2, random() AS u_add,
	         random() < 0.4 AS resend, random() AS u_pick
	    FROM generate_series(1, n) i
	), novel AS (
	  SELECT d.i, d.resend, d.u_pick, width_bucket(d.u_seg, z.bounds) AS seg,
	         least(9999, floor(10000 * least(1.0, abs(sqrt(-2 * ln(1 - d.u1)) * cos(2 * pi() * d.u2)) / 10)))::int AS usr,
	         d.u_add < 0.7 AS is_add
	    FROM draws d CROSS JOIN zipf z
	), numbered AS (
	  SELECT x.*, count(*) FILTER (WHERE NOT x.resend AND x.is_add) OVER (ORDER BY x.i) AS adds_so_far
	    FROM novel x
	), adds AS (
	  SELECT y.adds_so_far AS r, y.seg, y.usr FROM numbered y WHERE NOT y.resend AND y.is_add
	), final AS (
	  SELECT x.i,
	         CASE WHEN x.resend AND x.adds_so_far > 0 THEN a.seg ELSE x.seg END AS seg,
	         CASE WHEN x.resend AND x.adds_so_far > 0 THEN a.usr ELSE x.usr END AS usr,
	         CASE WHEN x.resend AND x.adds_so_far > 0 THEN true ELSE x.is_add END AS is_add
	    FROM numbered x
	    LEFT JOIN adds a ON x.resend
	     AND a.r = greatest(1, x.adds_so_far - floor(x.u_pick * least(x.adds_so_far, 20000))::bigint)
	)
	SELECT md5('segment event ' || (first + f.i))::uuid,
	       'usr-' || lpad(to_hex(f.usr), 6, '0'),
	       1 + f.seg % 10,
	       'seg-' || upper(to_hex(f.seg)),
	       to_char((timestamptz '2024-03-19 17:00:00+00' + ((first + f.i) / 1000) * interval '1 second')
	                AT TIME ZONE (ARRAY[interval '0', interval '-04:00', interval '+05:30'])[1 + f.i % 3],
	               'YYYY-MM-DD"T"HH24:MI:SS') || (ARRAY['Z', '-04:00', '+05:30'])[1 + f.i % 3],
	       NOT f.is_add
	  FROM final f ORDER BY f.i;
END;
$$;
DROP TABLE IF EXISTS plain_segment_events;
-- the same columns (and identity and generated column), no constraints
-- beyond NOT NULL, no index, no trigger
CREATE TABLE plain_segment_events
	(LIKE cdp_traits.segment_events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED);
SQL
sql -c "COPY (SELECT * FROM bench_segment_events($SEG_N, 0, 0.42)) TO '$DIR/segments1.csv' (FORMAT csv)"
sql -c "COPY (SELECT * FROM bench_segment_events($SEG_N, $SEG_N, 0.43)) TO '$DIR/segments2.csv' (FORMAT csv)"
SEG_COLS='(event, user_id, vendor, segment, "timestamp", remove)'

seg_empty() {
	sql -c "TRUNCATE cdp_traits.segment_events, cdp_traits.segment_event_ids, cdp_traits.segment_memberships,
	        cdp_traits.segment_profiles, cdp_traits.segment_toggles, plain_segment_events" \
		-c "VACUUM ANALYZE cdp_traits.segment_events, cdp_traits.segment_memberships" -c "CHECKPOINT"
}
seg_copy_plain() { sql -c "COPY plain_segment_events $SEG_COLS FROM '$DIR/segments$1.csv' (FORMAT csv)"; }
seg_copy() { sql -c "COPY cdp_traits.segment_events $SEG_COLS FROM '$DIR/segments$1.csv' (FORMAT csv)"; }
seg_plain1() { seg_copy_plain 1; }
seg_trig1() { seg_copy 1; }
seg_plain2() { seg_copy_plain 2; }
seg_trig2() { seg_copy 2; }
# the state after the first million, for the second
seg_first_loaded() {
	seg_empty
	seg_copy 1
	sql -c "TRUNCATE plain_segment_events" -c "VACUUM ANALYZE cdp_traits.segment_events, cdp_traits.segment_memberships" \
		-c "CHECKPOINT"
}

# events/s from a median time in ms
rate() { awk -v n="$SEG_N" -v ms="$1" 'BEGIN { printf "%.0f", n / (ms / 1000) }'; }

compare "segments: COPY $SEG_N events, empty state (1)" "plain COPY, unindexed table" seg_plain1 \
	"COPY into segment_events" seg_trig1 seg_empty ">= 100k events/s"
p=$(tail -1 "$OUT" | awk -F'|' '{print $4}')
c=$(tail -1 "$OUT" | awk -F'|' '{print $6}')
report "segments (1): events/s" "plain COPY $(rate "$p")/s, segment_events $(rate "$c")/s, contender takes $(awk -v p="$p" -v c="$c" 'BEGIN { printf "%.2f", c / p }')x the plain COPY's time"

seg_empty >/dev/null
seg_copy 1 >/dev/null
counts=$(sql -F ' ' -c "SELECT (SELECT count(*) FROM cdp_traits.segment_events), (SELECT count(*) FROM cdp_traits.segment_memberships),
	(SELECT count(*) FROM cdp_traits.segment_memberships WHERE member), (SELECT count(*) FROM cdp_traits.segment_toggles),
	(SELECT count(*) FROM cdp_traits.segment_profiles)")
read -r ev ms mem tg pr <<<"$counts"
report "segments (1): state" "$ev events, $ms memberships ($mem members), $tg toggles, $pr profiles"
# the trigger's state equals a plain-SQL recomputation from the events
same=$(sql -c "
	SELECT count(*) = 0 FROM (
	  SELECT vendor, segment, user_id, min(\"timestamp\"::timestamptz) FILTER (WHERE NOT remove) AS first,
	         max(\"timestamp\"::timestamptz) AS last,
	         NOT (array_agg(remove ORDER BY seq DESC))[1] AS member
	    FROM cdp_traits.segment_events GROUP BY 1, 2, 3
	  EXCEPT SELECT vendor, segment, user_id, first, last, member FROM cdp_traits.segment_memberships) d")
report "segments (1): memberships = SQL recomputation" "$same"

compare "segments: COPY $SEG_N more events (2)" "plain COPY, unindexed table" seg_plain2 \
	"COPY into segment_events holding 1M" seg_trig2 seg_first_loaded "-"
p=$(tail -1 "$OUT" | awk -F'|' '{print $4}')
c=$(tail -1 "$OUT" | awk -F'|' '{print $6}')
report "segments (2): events/s" "plain COPY $(rate "$p")/s, segment_events $(rate "$c")/s, contender takes $(awk -v p="$p" -v c="$c" 'BEGIN { printf "%.2f", c / p }')x the plain COPY's time"

# single events: 20,000 ingest_segment_event() calls (one statement, so no
# commit per event) on top of the first million, against as many
# single-row INSERTs of the same JSON into the plain table
sql >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS segment_docs;
CREATE TABLE segment_docs AS
SELECT i, jsonb_strip_nulls(jsonb_build_object('event', event, 'user', user_id,
         'segment', jsonb_build_object('vendor', vendor, 'name', segment), 'timestamp', ts,
         'remove', CASE WHEN remove THEN true END)) AS doc
  FROM bench_segment_events(20000, 2000000, 0.44) WITH ORDINALITY x(event, user_id, vendor, segment, ts, remove, i);
CREATE OR REPLACE FUNCTION bench_plain_insert(doc jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE s bigint;
BEGIN
	INSERT INTO plain_segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES ((doc->>'event')::uuid, doc->>'user', (doc#>>'{segment,vendor}')::int, doc#>>'{segment,name}',
	        (doc->>'timestamp')::cdp_traits.rfc3339, doc ? 'remove', doc->>'value')
	RETURNING seq INTO s;
	RETURN s;
END;
$$;
SQL
seg_single_plain() { sql -c "SELECT count(bench_plain_insert(doc)) FROM (SELECT doc FROM segment_docs ORDER BY i) d"; }
seg_single() { sql -c "SELECT count(cdp_traits.ingest_segment_event(doc)) FROM (SELECT doc FROM segment_docs ORDER BY i) d"; }
compare "segments: 20000 single events (3)" "single-row INSERTs, plain table" seg_single_plain \
	"ingest_segment_event() each" seg_single seg_first_loaded "-"
p=$(tail -1 "$OUT" | awk -F'|' '{print $4}')
c=$(tail -1 "$OUT" | awk -F'|' '{print $6}')
report "segments (3): events/s" "plain $(awk -v ms="$p" 'BEGIN { printf "%.0f", 20000 / (ms / 1000) }')/s, ingest_segment_event $(awk -v ms="$c" 'BEGIN { printf "%.0f", 20000 / (ms / 1000) }')/s"
