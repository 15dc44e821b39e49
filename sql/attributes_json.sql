-- An events table with a json payload and a timestamp event_time (SPEC
-- section 1: json accepted, timestamp read as UTC): definitions and custom
-- queries see payload as jsonb and event_time as timestamptz, as the
-- stitching rules do, so that Meiro definitions written for jsonb
-- (jsonb_array_elements(payload->'items'), payload ? 'key') work, and give
-- the same values as over a jsonb/timestamptz table, in every path of a run
-- (all entities, a few dirty ones, stored states) and whatever the
-- session's TimeZone.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS ev CASCADE;
RESET client_min_messages;
SET client_min_messages = warning;
SET TimeZone = 'Pacific/Kiritimati';
SET cdp_traits.state_min_events = 3;
CREATE TABLE ev (id text PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                 version text NOT NULL DEFAULT '1', event_time timestamp NOT NULL,
                 payload json, extra int);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$);
-- 40 customers c1..c40 with 4 events each, the last a purchase of items
INSERT INTO ev
SELECT 'c' || c || '-' || k, 'web', CASE WHEN k = 4 THEN 'purchase' ELSE 'view' END, '1',
       timestamp '2025-01-01 10:00' + (k || ' hours')::interval,
       json_strip_nulls(json_build_object('email', 'c' || c || '@x', 'device', CASE WHEN k % 2 = 0 THEN 'ios' ELSE 'mac' END,
                         'vip', c % 3 = 0,
                         'items', CASE WHEN k = 4 THEN json_build_array(json_build_object('sku', 'A' || c % 2),
                                                                       json_build_object('sku', 'B')) END)),
       k
  FROM generate_series(1, 40) c, generate_series(1, 4) k;
SELECT cdp_traits.attach_events('ev');
RESET client_min_messages;

-- SPEC section 4's own multi-level example, jsonb operators in a filter and
-- in custom queries, time windows and times over event_time
INSERT INTO cdp_traits.attributes VALUES
  ('skus', '{"type": "list", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''sku''"}'),
  ('vip_views', '{"type": "num_of_unique", "value": "id", "filter": "payload @> ''{\"vip\": true}'' AND payload ? ''device''"}'),
  ('first_device', '{"type": "first", "value": "payload->''device''"}'),
  ('last_seen', '{"type": "max", "value": "event_time", "data_type": "datetime"}'),
  ('late_views', '{"type": "num_of_unique", "value": "id", "outer_filter": "event_time >= ''2025-01-01 13:00+00''"}'),
  ('c_items', '{"type": "custom", "query": "SELECT sum(jsonb_array_length(payload->''items'')) AS value FROM base WHERE payload ? ''items''"}'),
  ('c_first', '{"type": "custom", "query": "SELECT min(event_time) AS value FROM base"}');
SELECT cdp_traits.calculate_attributes() AS all_entities;
SELECT attribute_id, error FROM cdp_traits.calculation_run_attributes WHERE error IS NOT NULL;
-- the values of three customers (c3 is a vip), by e-mail
CREATE TEMP VIEW vals AS
SELECT m.value AS email, a.attribute_id, a.value
  FROM cdp_traits.customer_attributes a
  JOIN cdp_traits.matching m ON m.customer_entity_id = a.customer_entity_id
 WHERE m.value IN ('c1@x', 'c2@x', 'c3@x');
SELECT * FROM vals ORDER BY 1, 2;
-- a few dirty entities (their events probed by id, their stored states read)
INSERT INTO ev VALUES ('c3-5', 'app', 'purchase', '1', '2025-01-02 09:00',
  '{"email": "c3@x", "device": "android", "vip": true, "items": [{"sku": "Z"}]}', 5);
SELECT cdp_traits.calculate_attributes() AS dirty_entities;
SELECT * FROM vals WHERE email = 'c3@x' ORDER BY 1, 2;
SELECT count(*) > 0 AS states_stored FROM cdp_traits.entity_states;
-- the same events in a jsonb/timestamptz table give the same values
CREATE TEMP TABLE json_values AS SELECT * FROM vals;
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
CREATE TABLE evb (id text PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                  version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb, extra int);
INSERT INTO evb SELECT id, source_id, type, version, event_time AT TIME ZONE 'UTC', payload, extra FROM ev;
SELECT cdp_traits.attach_events('evb');
RESET client_min_messages;
SELECT cdp_traits.calculate_attributes(force => true) > 0 AS recalculated;
SELECT count(*) AS values_compared,
       count(*) FILTER (WHERE j.value IS DISTINCT FROM b.value) AS values_differing
  FROM json_values j FULL JOIN vals b USING (email, attribute_id);
