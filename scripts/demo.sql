-- The demo's SQL (run by scripts/demo.sh): a realistic sample, then every
-- step of cdp_traits that exists so far, with a readable summary.
\pset footer off
\set ECHO none
\i :gen
SET client_min_messages = warning;

\echo
\echo '== 1. The customer event log (an existing CDP table, cdp_ce.customer_events)'
CREATE EXTENSION cdp_traits;
CREATE SCHEMA cdp_ce;
CREATE TABLE cdp_ce.customer_events (
	id uuid PRIMARY KEY,
	source_id text NOT NULL,
	type text NOT NULL,
	version text NOT NULL,
	event_time timestamptz NOT NULL,
	payload jsonb NOT NULL
);
\timing on
SELECT cdp_gen.load_events('cdp_ce.customer_events', :events) AS events_loaded;
\timing off
SELECT source_id AS source, count(*) AS events,
       count(DISTINCT type) AS event_types,
       min(event_time)::date AS first, max(event_time)::date AS last
  FROM cdp_ce.customer_events GROUP BY 1 ORDER BY 2 DESC;

\echo
\echo '== 2. Profile stitching: rules (one SQL expression per identifier), then attach'
INSERT INTO cdp_traits.stitching_rules SELECT * FROM cdp_gen.rules();
SELECT attribute_id AS identifier, coalesce(source_id, 'any') AS from_source, value_expression AS read_as
  FROM cdp_traits.stitching_rules ORDER BY 1, 2;
\timing on
SELECT cdp_traits.attach_events('cdp_ce.customer_events');
\timing off
SELECT count(*) AS customers,
       (SELECT count(*) FROM cdp_traits.matching) AS identifiers,
       (SELECT count(*) FROM cdp_traits.customer_events WHERE customer_entity_id IS NULL) AS events_without_identifier,
       round(avg(n), 1) AS avg_events_per_customer, max(n) AS most_events
  FROM (SELECT count(*) AS n FROM cdp_traits.event_entities GROUP BY customer_entity_id) s;
\echo 'identifiers by kind (junk values like "unknown" or "" are blocklisted, never linked):'
SELECT attribute_id AS identifier, count(*) AS distinct_values FROM cdp_traits.matching GROUP BY 1 ORDER BY 2 DESC;
\echo 'how many sources a customer profile spans:'
SELECT sources, count(*) AS customers FROM (
  SELECT count(DISTINCT source_id) AS sources FROM cdp_traits.customer_events
   WHERE customer_entity_id IS NOT NULL GROUP BY customer_entity_id) s GROUP BY 1 ORDER BY 1;

\echo
\echo '== 3. One stitched customer: every identifier, and the events behind it'
SELECT customer_entity_id AS customer FROM cdp_traits.customer_events
 WHERE customer_entity_id IS NOT NULL GROUP BY 1
HAVING count(DISTINCT source_id) >= 4 ORDER BY count(*) DESC, 1 LIMIT 1 \gset
SELECT attribute_id AS identifier, value FROM cdp_traits.matching WHERE customer_entity_id = :'customer' ORDER BY 1, 2 LIMIT 12;
SELECT source_id AS source, type, count(*) AS events, max(event_time)::date AS last_seen
  FROM cdp_traits.customer_events WHERE customer_entity_id = :'customer' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10;

\echo
\echo '== 4. Which identifiers glue customers together? (a shared or junk value links people who are not one customer)'
\echo 'identifiers that alone join parts of a customer that each have their own user id (two accounts: two people?):'
\timing on
SELECT attribute_id AS identifier, value, conflicts AS both_parts_have_their_own, events AS events_with_it,
       entity_events AS customer_events, events_split_off
  FROM cdp_traits.bridging_identifiers() WHERE 'user_id' = ANY (conflicts) LIMIT 5;
\timing off
\echo 'by kind: devices shared by two people join two user ids; an e-mail usually joins one person''s sources:'
SELECT attribute_id AS identifier, count(*) AS bridges,
       count(*) FILTER (WHERE 'user_id' = ANY (conflicts)) AS joining_two_user_ids
  FROM cdp_traits.bridging_identifiers() GROUP BY 1 ORDER BY 3 DESC, 2 DESC;

\echo
\echo '== 5. New events are stitched as they arrive (statement triggers, same transaction)'
INSERT INTO cdp_ce.customer_events VALUES
  ('00000000-0000-4000-8000-000000000001', 'web', 'login', '1-0-0', now(),
   '{"cookie_id": "ck-new-visitor", "email": "  Brand.New@Example.COM "}'),
  ('00000000-0000-4000-8000-000000000002', 'pos', 'purchase', '1-0-0', now(),
   '{"loyalty_card": "LC-NEW-1", "amount": 42.5}');
SELECT count(DISTINCT customer_entity_id) AS customers_for_2_unlinked_events FROM cdp_traits.customer_events
 WHERE id IN ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002');
-- a CRM record carrying both the e-mail and the loyalty card links them: a merge
INSERT INTO cdp_ce.customer_events VALUES
  ('00000000-0000-4000-8000-000000000003', 'crm', 'customer_updated', '1-0-0', now(),
   '{"email": "brand.new@example.com", "loyalty_card": "LC-NEW-1"}');
SELECT count(DISTINCT customer_entity_id) AS customers_after_crm_event FROM cdp_traits.customer_events
 WHERE id::text LIKE '00000000-0000-4000-8000-00000000000%';
SELECT count(*) AS merges_recorded_so_far FROM cdp_traits.entity_merges;
-- deleting the linking event splits the customer again
DELETE FROM cdp_ce.customer_events WHERE id = '00000000-0000-4000-8000-000000000003';
SELECT count(DISTINCT customer_entity_id) AS customers_after_delete FROM cdp_traits.customer_events
 WHERE id::text LIKE '00000000-0000-4000-8000-00000000000%';

\echo
\echo '== 6. Consistency check and a full restitch (ids stay stable)'
\timing on
SELECT count(*) AS problems FROM cdp_traits.verify_stitching();
SELECT cdp_traits.restitch() AS customers;
\timing off
SELECT changed_events, changed_identifiers,
       pg_size_pretty(memory_bytes) AS memory_used FROM cdp_traits.stitching_stats();

\echo
\echo '== 7. Context: whole-customer-base figures from queries'
INSERT INTO cdp_traits.context (key, query) VALUES
  ('customers', 'SELECT count(*) FROM cdp_traits.customer_entities'),
  ('avg_order', 'SELECT round(avg((payload->>''amount'')::numeric), 2) FROM cdp_ce.customer_events WHERE type = ''purchase''');
SELECT cdp_traits.refresh_context() AS refreshed;
SELECT key, value FROM cdp_traits.context ORDER BY key;

\echo
\echo '== 8. Attributes (traits): Meiro-style definitions, computed in one pass per run'
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('top_device',   '{"type": "most_frequent", "value": "payload->>''device_family''", "sources": ["web"]}'),
  ('countries',    '{"type": "list", "value": "payload->>''country''"}'),
  ('first_name',   '{"type": "last", "value": "payload->>''first_name''", "sources": ["crm"]}'),
  ('channels',     '{"type": "num_of_unique", "value": "source_id"}'),
  ('revenue',      '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"]}'),
  ('orders',       '{"type": "custom", "query": "SELECT count(*) AS value FROM base WHERE type = ''purchase''", "data_type": "number"}'),
  ('last_purchase','{"type": "max", "value": "event_time", "types": ["purchase"], "data_type": "datetime"}'),
  ('top_category', '{"type": "most_frequent", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''category''", "outer_weight": "(value->>''quantity'')::float8", "types": ["purchase"]}'),
  ('campaigns',    '{"type": "list", "value": "payload->>''campaign''", "sources": ["esp"]}'),
  ('vip',          '{"type": "audience", "condition": "revenue > 3 * context_value(''avg_order'')::numeric"}');
\timing on
SELECT cdp_traits.calculate_attributes() AS customers_calculated;
\timing off
\echo 'one row per customer, one typed column per attribute (cdp_traits.pivoted_customer_attributes):'
SELECT first_name, top_device, countries, channels, revenue, orders, top_category, vip
  FROM cdp_traits.pivoted_customer_attributes
 WHERE revenue IS NOT NULL AND first_name IS NOT NULL ORDER BY revenue DESC, customer_entity_id LIMIT 5;
\echo 'customers per attribute, and the most common values (for a segmentation UI):'
SELECT attribute_id, customers FROM cdp_traits.attribute_counts ORDER BY customers DESC, 1;
SELECT attribute_id, value, customers FROM cdp_traits.attribute_top_values
 WHERE attribute_id IN ('top_device', 'top_category') AND rank <= 3 ORDER BY 1, 3 DESC, 2;
\echo 'the run: what it computed and what it skipped'
SELECT attribute_id, entities AS customers_with_value, values_written, values_skipped, duration_ms
  FROM cdp_traits.calculation_run_attributes ORDER BY attribute_id;

\echo
\echo '== 9. Incremental: a new purchase recalculates only its customer'
INSERT INTO cdp_ce.customer_events
SELECT gen_random_uuid(), 'pos', 'purchase', '1-0-0', now(),
       jsonb_build_object('loyalty_card', m.value, 'amount', 100000)
  FROM cdp_traits.matching m WHERE m.attribute_id = 'loyalty_card' ORDER BY m.value LIMIT 1;
\timing on
SELECT cdp_traits.calculate_attributes() AS customers_calculated;
\timing off
SELECT audience_id, entered, count(*) AS customers FROM cdp_traits.audience_changes GROUP BY 1, 2 ORDER BY 1, 2;

\echo
\echo '== 10. The background worker''s cycle, run on demand (the worker runs it every cdp_traits.naptime)'
SELECT cdp_traits.run_jobs();
SELECT job, status, rows, round(extract(epoch FROM duration) * 1000) AS ms FROM cdp_traits.job_runs ORDER BY id;
\echo 'one query for monitoring: is cdp_traits doing its work here? (the demo keeps the worker off)'
SELECT item, status, detail FROM cdp_traits.health();

\echo
\echo '== 11. Segments and toggles: who is in which segment, and a log of the real changes'
-- an activation tool reports adds and removes: 4 events for each of 5,000
-- customers (by e-mail) over 3 segments, as one INSERT (one trigger call)
\timing on
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
SELECT gen_random_uuid(), u.email, 7, s.name,
       timestamptz '2024-03-01 00:00+00' + u.r * interval '1 second' + n * interval '1 day',
       n > 1 AND abs(hashtext(u.email || n)) % 3 = 0,
       CASE WHEN n = 1 THEN 'tier-' || (1 + abs(hashtext(u.email)) % 3) END
  FROM (SELECT value AS email, row_number() OVER (ORDER BY value) AS r
          FROM cdp_traits.matching WHERE attribute_id = 'email' ORDER BY value LIMIT 5000) u
 CROSS JOIN generate_series(1, 4) n
 CROSS JOIN LATERAL (SELECT (ARRAY['newsletter', 'cart-abandoners', 'high-value'])[1 + abs(hashtext(u.email)) % 3] AS name) s;
\timing off
-- one more from a stream, as JSON; delivered twice, applied once
SELECT min(user_id) AS streamed_user FROM cdp_traits.segment_memberships WHERE segment = 'newsletter' AND member \gset
SELECT cdp_traits.ingest_segment_event(jsonb_build_object(
         'event', '0dd1e0a5-0000-4000-8000-000000000001', 'user', :'streamed_user',
         'segment', jsonb_build_object('vendor', 7, 'name', 'newsletter'),
         'timestamp', '2024-04-01T09:30:00+02:00', 'remove', true)) IS NOT NULL AS first_delivery_applied,
       cdp_traits.ingest_segment_event(jsonb_build_object(
         'event', '0dd1e0a5-0000-4000-8000-000000000001', 'user', :'streamed_user',
         'segment', jsonb_build_object('vendor', 7, 'name', 'newsletter'),
         'timestamp', '2024-04-01T09:30:00+02:00', 'remove', true)) IS NOT NULL AS second_delivery_applied;
\echo 'a malformed event is rejected whole, with the field named:'
CREATE TEMP TABLE rejected (error text);
DO $$
BEGIN
	PERFORM cdp_traits.ingest_segment_event('{"event": "0dd1e0a5-0000-4000-8000-000000000002", "user": "x",
	  "segment": {"vendor": 7, "name": "newsletter"}, "timestamp": "2024-04-01 09:30"}');
EXCEPTION WHEN others THEN
	INSERT INTO rejected VALUES (SQLERRM);
END;
$$;
SELECT error FROM rejected;
SELECT segment, count(*) FILTER (WHERE member) AS members, count(*) FILTER (WHERE NOT member) AS removed
  FROM cdp_traits.segment_memberships GROUP BY 1 ORDER BY 1;
\echo 'one customer''s segments (cdp_traits.segment_profiles):'
SELECT jsonb_pretty(segments) AS segments FROM cdp_traits.segment_profiles WHERE user_id = :'streamed_user';
\echo 'the toggle log that drives activation (segment changes; audiences such as vip are vendor 0):'
SELECT CASE WHEN vendor = 0 THEN 'audience ' ELSE 'segment ' END || segment AS of,
       count(*) FILTER (WHERE member) AS entered, count(*) FILTER (WHERE NOT member) AS left
  FROM cdp_traits.segment_toggles GROUP BY 1 ORDER BY 1;
SELECT seq, segment, user_id, member, event_time FROM cdp_traits.toggles_since(0, 1000000)
 WHERE vendor = 7 ORDER BY seq DESC LIMIT 3;
\echo 'a new sync job starts here (every toggle up to it is committed), reads the memberships, then polls toggles_since(it, n):'
SELECT cdp_traits.toggles_position() AS start_after_seq,
       (SELECT count(*) FROM cdp_traits.segment_memberships WHERE member) AS members_to_load_first;

\echo
\echo '== 12. Published for BI and reverse ETL: plain views in a schema of your choice'
CREATE SCHEMA mart;
\o /dev/null
SELECT cdp_traits.publish('mart');
\o
SELECT (SELECT count(*) FROM mart.customer_events) AS "mart.customer_events",
       (SELECT count(*) FROM mart.pivoted_customer_attributes) AS "mart.pivoted_customer_attributes";

\echo
\echo '== 13. A request to be forgotten: erase the customer of step 3 (any id it ever had will do)'
SELECT (SELECT count(*) FROM cdp_traits.customer_entities) AS customers_before \gset
SELECT * FROM cdp_traits.erase_entity(:'customer');
SELECT :customers_before - (SELECT count(*) FROM cdp_traits.customer_entities) AS customers_erased,
       (SELECT count(*) FROM cdp_traits.matching WHERE customer_entity_id = :'customer') AS identifiers_left,
       (SELECT count(*) FROM cdp_traits.customer_attributes WHERE customer_entity_id = :'customer') AS values_left,
       (SELECT count(*) FROM cdp_traits.attribute_history WHERE customer_entity_id = :'customer') AS history_left;
