-- Segments, randomized: after many batches of generated events -- single
-- events through ingest_segment_event(), small and large INSERT ... SELECT
-- batches, re-deliveries within and across batches -- the memberships, the
-- toggles and the profiles equal a plain-SQL recomputation from
-- segment_events in arrival order.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;
SET TimeZone = 'UTC';
SELECT setseed(0.7);

-- 6000 events over 3 vendors x 6 names x 40 users: 60% adds (30% of them
-- with a value), times in random order written with five offsets and
-- sometimes a fraction; 10% repeat an earlier event's id, mostly as an
-- exact re-delivery, sometimes with other content.
CREATE TABLE gen AS
WITH raw AS (
  SELECT i,
         1 + floor(random() * 3)::int AS vendor,
         'seg-' || floor(random() * 6)::int AS segment,
         'u' || floor(random() * 40)::int AS user_id,
         random() < 0.4 AS remove,
         random() < 0.3 AS with_value,
         timestamptz '2024-01-01 00:00Z' + floor(random() * 100000) * interval '1 minute'
           + CASE WHEN random() < 0.2 THEN floor(random() * 1000000) * interval '1 microsecond' ELSE '0' END AS t,
         1 + floor(random() * 5)::int AS zone,
         random() AS dup, random() AS pick
    FROM generate_series(1, 6000) i
), ids AS (
  SELECT r.*, CASE WHEN r.dup < 0.1 AND r.i > 1 THEN 1 + floor(r.pick * (r.i - 1))::int ELSE r.i END AS id_of,
         r.dup < 0.08 AS exact
    FROM raw r
)
SELECT x.i, md5('event ' || x.id_of)::uuid AS event, c.vendor, c.segment, c.user_id,
       to_char(c.t AT TIME ZONE (ARRAY[interval '0', '5:30', '-8:00', '-3:45', '14:00'])[c.zone],
               'YYYY-MM-DD"T"HH24:MI:SS.US') || (ARRAY['Z', '+05:30', '-08:00', '-03:45', '+14:00'])[c.zone] AS ts,
       c.remove, CASE WHEN NOT c.remove AND c.with_value THEN 'v' || c.i END AS value
  FROM ids x JOIN ids c ON c.i = CASE WHEN x.exact THEN x.id_of ELSE x.i END;
SELECT count(*) AS generated, count(DISTINCT event) AS ids, count(*) FILTER (WHERE remove) AS removes,
       count(value) AS with_value
  FROM gen;

-- 1..1500: one by one through ingest_segment_event()
SELECT count(*) FILTER (WHERE s IS NOT NULL) AS stored, count(*) FILTER (WHERE s IS NULL) AS ignored
  FROM (SELECT cdp_traits.ingest_segment_event(jsonb_strip_nulls(jsonb_build_object(
                 'event', event, 'user', user_id, 'segment', jsonb_build_object('vendor', vendor, 'name', segment),
                 'timestamp', ts, 'remove', CASE WHEN remove THEN true END, 'value', value))) AS s
          FROM gen WHERE i <= 1500 ORDER BY i) x;
-- 1501..3000: INSERT ... SELECT batches of 1 to 150 events (key locks)
SELECT format('INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value) '
              'SELECT event, user_id, vendor, segment, ts, remove, value FROM gen WHERE i BETWEEN %s AND %s ORDER BY i',
              lo, least(lo + step - 1, 3000))
  FROM (SELECT 1501 + sum(step) OVER (ORDER BY n) - step AS lo, step
          FROM (SELECT n, 1 + (n * 37) % 150 AS step FROM generate_series(1, 100) n) s) b
 WHERE lo <= 3000
\gexec
-- 3001..4500 in one statement (over cdp_traits.max_segment_locks: the
-- segments lock, and a repeated id makes the plain insert of ids fall back)
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
SELECT event, user_id, vendor, segment, ts, remove, value FROM gen WHERE i BETWEEN 3001 AND 4500 ORDER BY i;
-- 4501..6000: large-batch path for batches of 300, with single events between
SET cdp_traits.max_segment_locks = 0;
SELECT CASE WHEN i % 300 = 1
            THEN format('INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value) '
                        'SELECT event, user_id, vendor, segment, ts, remove, value FROM gen WHERE i BETWEEN %s AND %s ORDER BY i',
                        i, i + 298)
            ELSE format('SELECT cdp_traits.ingest_segment_event(%L) IS NOT NULL AS stored',
                        (SELECT jsonb_strip_nulls(jsonb_build_object(
                           'event', event, 'user', user_id, 'segment', jsonb_build_object('vendor', vendor, 'name', segment),
                           'timestamp', ts, 'remove', CASE WHEN remove THEN true END, 'value', value)) FROM gen g WHERE g.i = s.i))
       END
  FROM generate_series(4501, 6000) s(i)
 WHERE i % 300 IN (0, 1)
\gexec
RESET cdp_traits.max_segment_locks;

-- segment_events holds each id's first delivery, in arrival order
SELECT (SELECT array_agg(row(event, vendor, segment COLLATE "default", user_id COLLATE "default",
                             "timestamp"::timestamptz, remove, value) ORDER BY seq)
          FROM cdp_traits.segment_events)
     = (SELECT array_agg(row(event, vendor, segment, user_id, ts::timestamptz, remove, value) ORDER BY i)
          FROM (SELECT DISTINCT ON (event) * FROM gen ORDER BY event, i) f)
       AS first_deliveries_kept;

-- the recomputation: plain SQL over segment_events in seq order
-- (first and last compare instants: "timestamp" is a cdp_traits.rfc3339)
CREATE VIEW expected_memberships AS
SELECT vendor, segment, user_id,
       min("timestamp"::timestamptz) FILTER (WHERE NOT remove) AS first,
       max("timestamp"::timestamptz) AS last,
       NOT (array_agg(remove ORDER BY seq DESC))[1] AS member,
       (array_agg(value ORDER BY seq DESC) FILTER (WHERE value IS NOT NULL))[1] AS value,
       (array_agg(event ORDER BY seq DESC))[1] AS last_event,
       (array_agg("timestamp"::timestamptz ORDER BY seq DESC))[1] AS last_event_time,
       max(seq) AS last_seq
  FROM cdp_traits.segment_events
 GROUP BY vendor, segment, user_id;
CREATE VIEW expected_toggles AS
SELECT seq, vendor, segment, user_id, NOT remove AS member, event, "timestamp"::timestamptz AS event_time,
       value, prev_event AS previous_event, prev_time AS previous_time
  FROM (SELECT e.*,
               lag(remove) OVER w AS prev_remove, lag(event) OVER w AS prev_event,
               lag("timestamp"::timestamptz) OVER w AS prev_time,
               COALESCE(bool_or(NOT remove) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                        false) AS added_before
          FROM cdp_traits.segment_events e
        WINDOW w AS (PARTITION BY vendor, segment, user_id ORDER BY seq)) x
 WHERE prev_remove <> remove AND added_before;

SELECT count(*) AS memberships, count(*) FILTER (WHERE member) AS members,
       count(*) FILTER (WHERE first IS NULL) AS never_added, count(value) AS with_value
  FROM cdp_traits.segment_memberships;
SELECT count(*) AS differences FROM (
  (SELECT vendor, segment, user_id, first, last, member, value, last_event, last_event_time, last_seq
     FROM cdp_traits.segment_memberships
   EXCEPT ALL SELECT * FROM expected_memberships)
  UNION ALL
  (SELECT * FROM expected_memberships
   EXCEPT ALL SELECT vendor, segment, user_id, first, last, member, value, last_event, last_event_time, last_seq
     FROM cdp_traits.segment_memberships)) d;

SELECT count(*) AS toggles, count(*) FILTER (WHERE member) AS adds FROM cdp_traits.segment_toggles;
-- the same toggles, in the same order, with the same previous events
SELECT (SELECT array_agg(row(vendor, segment, user_id, member, event, event_time, value, previous_event, previous_time)
                         ORDER BY seq)
          FROM cdp_traits.segment_toggles)
     = (SELECT array_agg(row(vendor, segment, user_id, member, event, event_time, value, previous_event, previous_time)
                         ORDER BY seq)
          FROM expected_toggles)
       AS same_toggles;
-- and what toggles_since() hands out page by page is the whole log
WITH RECURSIVE pages(last, n) AS (
  SELECT 0::bigint, 0::bigint
  UNION ALL
  SELECT (SELECT max(seq) FROM cdp_traits.toggles_since(p.last, 250)),
         p.n + (SELECT count(*) FROM cdp_traits.toggles_since(p.last, 250))
    FROM pages p WHERE p.last < (SELECT max(seq) FROM cdp_traits.segment_toggles)
)
SELECT max(n) = (SELECT count(*) FROM cdp_traits.segment_toggles) AS all_paged FROM pages;

-- profiles equal the ones rebuilt from the memberships
CREATE TEMP TABLE kept AS SELECT * FROM cdp_traits.segment_profiles;
SELECT cdp_traits.rebuild_segment_profiles() AS users;
SELECT count(*) AS differences
  FROM kept k FULL JOIN cdp_traits.segment_profiles p USING (user_id)
 WHERE k.segments IS DISTINCT FROM p.segments;
