-- Soak invariants: every query prints the number of violations (0 = fine)
-- and a few examples where there are some.
\pset footer off
SET client_min_messages = warning;
\echo '== stitching'
SELECT count(*) AS verify_stitching_problems FROM cdp_traits.verify_stitching();
SELECT * FROM cdp_traits.verify_stitching() LIMIT 5;
SELECT count(*) AS identifiers_of_dead_entities FROM cdp_traits.matching m
 WHERE NOT EXISTS (SELECT FROM cdp_traits.customer_entities e WHERE e.id = m.customer_entity_id);
SELECT count(*) AS events_of_dead_entities FROM cdp_traits.event_entities m
 WHERE NOT EXISTS (SELECT FROM cdp_traits.customer_entities e WHERE e.id = m.customer_entity_id);
SELECT count(*) AS entity_rows_without_events FROM cdp_traits.customer_entities e
 WHERE NOT EXISTS (SELECT FROM cdp_traits.event_entities m WHERE m.customer_entity_id = e.id);
SELECT count(*) AS assignments_of_missing_events FROM cdp_traits.event_entities m
 WHERE NOT EXISTS (SELECT FROM cdp_ce.customer_events ev WHERE cdp_traits.event_key(ev.id) = m.event_id);
SELECT count(*) AS identifiers_without_events FROM cdp_traits.matching m
 WHERE NOT EXISTS (SELECT FROM cdp_traits.event_entities e WHERE e.customer_entity_id = m.customer_entity_id);
-- an identifier in two entities: two events of different entities with the same e-mail
SELECT count(*) AS emails_in_two_entities FROM (
  SELECT lower(btrim(payload->>'email')) FROM cdp_traits.customer_events
   WHERE source_id IN ('web', 'crm', 'esp') AND customer_entity_id IS NOT NULL
     AND lower(btrim(payload->>'email')) NOT IN (SELECT lower(btrim(value)) FROM cdp_traits.stitching_blocklist)
   GROUP BY 1 HAVING count(DISTINCT customer_entity_id) > 1) s;
SELECT count(*) AS events_with_email_not_stitched FROM cdp_traits.customer_events
 WHERE source_id IN ('web', 'crm', 'esp') AND customer_entity_id IS NULL
   AND lower(btrim(payload->>'email')) NOT IN (SELECT lower(btrim(value)) FROM cdp_traits.stitching_blocklist);
WITH RECURSIVE walk(start, cur, depth) AS (
  SELECT merged_id, into_id, 1 FROM cdp_traits.entity_merges
  UNION ALL
  SELECT w.start, m.into_id, w.depth + 1 FROM walk w JOIN cdp_traits.entity_merges m ON m.merged_id = w.cur
   WHERE w.cur <> w.start AND w.depth < 1000)
SELECT count(DISTINCT start) AS merge_cycles FROM walk WHERE cur = start;
SELECT count(*) AS merges_into_nothing FROM cdp_traits.entity_merges m
 WHERE cdp_traits.current_entity(m.merged_id) IS NULL
   AND EXISTS (SELECT FROM cdp_traits.customer_entities e WHERE e.id = m.into_id);
SELECT count(*) AS merged_ids_still_live FROM cdp_traits.entity_merges m
 JOIN cdp_traits.customer_entities e ON e.id = m.merged_id;

\echo '== attributes (after a calculation)'
SELECT cdp_traits.calculate_attributes() IS NOT NULL AS calculated;
SELECT count(*) AS dirty_after_calc FROM cdp_traits.customer_entities WHERE calculated IS NULL;
SELECT count(*) AS values_of_dead_entities FROM cdp_traits.entity_attributes a
 WHERE NOT EXISTS (SELECT FROM cdp_traits.customer_entities e WHERE e.id = a.customer_entity_id);
SELECT count(*) AS values_of_unknown_attributes FROM cdp_traits.customer_attributes a
 WHERE NOT EXISTS (SELECT FROM cdp_traits.attributes d WHERE d.id = a.attribute_id);
-- plain-SQL recomputation of a few types
WITH ev AS (SELECT * FROM cdp_traits.customer_events WHERE customer_entity_id IS NOT NULL),
     expect AS (
  SELECT customer_entity_id, 'events_n' AS a, to_jsonb(count(*)::numeric) AS v FROM ev GROUP BY 1
  UNION ALL SELECT customer_entity_id, 'channels', to_jsonb(count(DISTINCT source_id)) FROM ev GROUP BY 1
  UNION ALL SELECT customer_entity_id, 'orders', to_jsonb(count(*) FILTER (WHERE type = 'purchase')) FROM ev GROUP BY 1
  UNION ALL SELECT customer_entity_id, 'revenue', to_jsonb(sum((payload->>'amount')::numeric)) FROM ev WHERE type = 'purchase' AND payload ? 'amount' GROUP BY 1
  UNION ALL SELECT customer_entity_id, 'countries', to_jsonb(array_agg(DISTINCT payload->>'country' ORDER BY payload->>'country') FILTER (WHERE payload->>'country' IS NOT NULL)) FROM ev GROUP BY 1 HAVING count(payload->>'country') > 0),
     got AS (SELECT customer_entity_id, attribute_id AS a, value AS v FROM cdp_traits.customer_attributes
              WHERE attribute_id IN ('events_n', 'channels', 'orders', 'revenue', 'countries')),
     diff AS (SELECT coalesce(e.a, g.a) AS a, e.customer_entity_id, e.v AS expected, g.v AS got
                FROM expect e FULL JOIN got g USING (customer_entity_id, a)
               WHERE CASE WHEN jsonb_typeof(e.v) = 'number' AND jsonb_typeof(g.v) = 'number'
                          THEN e.v::text::numeric IS DISTINCT FROM g.v::text::numeric
                          ELSE e.v IS DISTINCT FROM g.v END)
SELECT a AS attribute, count(*) AS values_differing_from_sql, min(expected::text) AS ex_expected, min(got::text) AS ex_got
  FROM diff GROUP BY 1 ORDER BY 1;
SELECT count(*) AS attribute_count_mismatches FROM (
  SELECT attribute_id, count(*) AS n FROM cdp_traits.customer_attributes GROUP BY 1) c
  FULL JOIN cdp_traits.attribute_counts k USING (attribute_id)
 WHERE c.n IS DISTINCT FROM k.customers AND coalesce(k.customers, 0) + coalesce(c.n, 0) > 0;
SELECT attribute_id, c.n, k.customers FROM (
  SELECT attribute_id, count(*) AS n FROM cdp_traits.customer_attributes GROUP BY 1) c
  FULL JOIN cdp_traits.attribute_counts k USING (attribute_id)
 WHERE c.n IS DISTINCT FROM k.customers AND coalesce(k.customers, 0) + coalesce(c.n, 0) > 0 LIMIT 5;
SELECT count(*) AS open_history_differing FROM (
  SELECT customer_entity_id, attribute_id, value FROM cdp_traits.attribute_history WHERE valid_to IS NULL
  EXCEPT ALL
  SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes WHERE attribute_id IN ('first_name', 'revenue')) s;
SELECT count(*) AS values_without_open_history FROM (
  SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes WHERE attribute_id IN ('first_name', 'revenue')
  EXCEPT ALL
  SELECT customer_entity_id, attribute_id, value FROM cdp_traits.attribute_history WHERE valid_to IS NULL) s;
SELECT count(*) AS open_history_twice FROM (
  SELECT FROM cdp_traits.attribute_history WHERE valid_to IS NULL
   GROUP BY customer_entity_id, attribute_id HAVING count(*) > 1) s;
SELECT count(*) AS open_history_of_missing_entities FROM cdp_traits.attribute_history h
 WHERE h.valid_to IS NULL
   AND NOT EXISTS (SELECT FROM cdp_traits.customer_entities e WHERE e.id = h.customer_entity_id);
SELECT count(*) AS history_ending_before_it_starts FROM cdp_traits.attribute_history WHERE valid_to < valid_from;
SELECT count(*) AS overlapping_history FROM cdp_traits.attribute_history a JOIN cdp_traits.attribute_history b
  USING (customer_entity_id, attribute_id)
 WHERE a.ctid < b.ctid AND a.valid_to >= a.valid_from AND b.valid_to >= b.valid_from
   AND tstzrange(a.valid_from, a.valid_to) && tstzrange(b.valid_from, b.valid_to);
SELECT count(*) AS stale_calculated FROM cdp_traits.customer_entities WHERE calculated < modified;

\echo '== audiences (vendor 0 toggles)'
WITH t AS (SELECT *, lag(member) OVER (PARTITION BY segment, user_id ORDER BY seq) AS prev FROM cdp_traits.segment_toggles WHERE vendor = 0)
SELECT count(*) FILTER (WHERE prev = member) AS audience_toggles_not_alternating,
       count(*) FILTER (WHERE prev IS NULL AND NOT member) AS audience_first_toggle_exit FROM t;
WITH last AS (SELECT DISTINCT ON (segment, user_id) segment, user_id, member FROM cdp_traits.segment_toggles
               WHERE vendor = 0 ORDER BY segment, user_id, seq DESC),
     cur AS (SELECT attribute_id AS segment, customer_entity_id::text AS user_id FROM cdp_traits.customer_attributes
              WHERE attribute_id IN ('vip', 'active') AND value = 'true')
SELECT count(*) AS audience_members_differing_from_log FROM (
  SELECT segment, user_id FROM last WHERE member EXCEPT SELECT * FROM cur
  UNION ALL
  SELECT * FROM (SELECT * FROM cur EXCEPT SELECT segment, user_id FROM last WHERE member) x) s;

\echo '== segments'
WITH ev AS (SELECT * FROM cdp_traits.segment_events),
     expect AS (
  SELECT vendor, segment, user_id,
         min("timestamp"::timestamptz) FILTER (WHERE NOT remove) AS first,
         max("timestamp"::timestamptz) AS last,
         (array_agg(NOT remove ORDER BY seq DESC))[1] AS member,
         (array_agg(value ORDER BY seq DESC) FILTER (WHERE value IS NOT NULL))[1] AS value,
         (array_agg(event ORDER BY seq DESC))[1] AS last_event
    FROM ev GROUP BY 1, 2, 3)
SELECT count(*) AS memberships_differing FROM expect e FULL JOIN cdp_traits.segment_memberships m USING (vendor, segment, user_id)
 WHERE (e.first, e.last, e.member, e.value, e.last_event) IS DISTINCT FROM (m.first, m.last, m.member, m.value, m.last_event);
SELECT count(*) AS duplicate_segment_event_ids FROM (SELECT event FROM cdp_traits.segment_events GROUP BY 1 HAVING count(*) > 1) s;
SELECT (SELECT count(*) FROM cdp_traits.segment_events) - (SELECT count(*) FROM cdp_traits.segment_event_ids) AS segment_ids_missing;
WITH t AS (SELECT *, lag(member) OVER (PARTITION BY vendor, segment, user_id ORDER BY seq) AS prev FROM cdp_traits.segment_toggles WHERE vendor > 0)
SELECT count(*) FILTER (WHERE prev = member) AS toggles_not_alternating,
       count(*) FILTER (WHERE prev IS NULL AND member) AS first_toggle_is_add FROM t;
SELECT count(*) AS toggles_bad_event FROM cdp_traits.segment_toggles t
 WHERE vendor > 0 AND NOT EXISTS (SELECT FROM cdp_traits.segment_events e WHERE e.event = t.event
        AND (e.vendor, e.segment, e.user_id) = (t.vendor, t.segment, t.user_id) AND e.remove = NOT t.member);
SELECT count(*) AS toggles_bad_previous FROM cdp_traits.segment_toggles t
 WHERE vendor > 0 AND NOT EXISTS (SELECT FROM cdp_traits.segment_events p JOIN cdp_traits.segment_events e ON e.event = t.event
        WHERE p.event = t.previous_event AND (p.vendor, p.segment, p.user_id) = (t.vendor, t.segment, t.user_id)
          AND p.remove = t.member AND p.seq < e.seq);
WITH last AS (SELECT DISTINCT ON (vendor, segment, user_id) * FROM cdp_traits.segment_toggles WHERE vendor > 0
               ORDER BY vendor, segment, user_id, seq DESC)
SELECT count(*) AS toggle_log_differs_from_status FROM last l JOIN cdp_traits.segment_memberships m USING (vendor, segment, user_id)
 WHERE l.member <> m.member;
CREATE TEMP TABLE prof AS SELECT * FROM cdp_traits.segment_profiles;
SELECT cdp_traits.rebuild_segment_profiles() IS NOT NULL AS rebuilt;
SELECT count(*) AS profiles_differing_from_rebuild FROM (
  (SELECT user_id, segments FROM prof EXCEPT SELECT user_id, segments FROM cdp_traits.segment_profiles)
  UNION ALL
  (SELECT user_id, segments FROM cdp_traits.segment_profiles EXCEPT SELECT user_id, segments FROM prof)) s;

\echo '== jobs and context'
SELECT status, job, count(*) FROM cdp_traits.job_runs GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS jobs_left_running FROM cdp_traits.job_runs j WHERE status = 'running'
   AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = j.pid);
SELECT left(error, 100) AS job_error, count(*) FROM cdp_traits.job_runs WHERE error IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 10;
SELECT key, value, error FROM cdp_traits.context ORDER BY key;
SELECT attribute_id, left(error, 100), count(*) FROM cdp_traits.calculation_run_attributes WHERE error IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10;

\echo '== sizes'
SELECT c.relname, c.reltuples::bigint AS est_rows, s.n_live_tup, s.n_dead_tup, pg_size_pretty(pg_total_relation_size(c.oid)) AS size
  FROM pg_class c JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.relnamespace = 'cdp_traits'::regnamespace ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 25;
SELECT (SELECT count(*) FROM cdp_ce.customer_events) AS events, (SELECT count(*) FROM cdp_traits.event_entities) AS stitched,
       (SELECT count(*) FROM cdp_traits.customer_entities) AS entities, (SELECT count(*) FROM cdp_traits.entity_merges) AS merges,
       (SELECT count(*) FROM cdp_traits.segment_events) AS segment_events, (SELECT count(*) FROM cdp_traits.segment_toggles) AS toggles;
