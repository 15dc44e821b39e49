-- import_meiro_config: a Meiro CPS setup copied into cdp_traits, bad rows reported.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;

-- A fake Meiro installation: the event-type catalogue (cdp_ce), the stitching
-- configuration (cdp_ps), attribute definitions and context (cdp_attr).
CREATE SCHEMA meiro_ce;
CREATE SCHEMA meiro_ps;
CREATE SCHEMA meiro_attr;
CREATE TABLE meiro_ce.events (id text PRIMARY KEY, source_id text, type text, version text, name text);
INSERT INTO meiro_ce.events VALUES
  ('ev-web-login', 'web', 'login', '1-0-0', 'Web login'),
  ('ev-crm-signup', 'crm', 'signup', '2-0-0', 'CRM signup'),
  ('ev-app-open', 'app', 'open', '1-0-0', 'App open'),
  ('ev-pos-buy', 'pos', 'purchase', '1-0-0', 'Purchase');
CREATE TABLE meiro_ps.stitching_attributes_config (attribute_id text, event_id text, value_expression text);
INSERT INTO meiro_ps.stitching_attributes_config VALUES
  ('email', 'ev-web-login', $$lower(payload->>'email')$$),
  ('email', 'ev-crm-signup', $$lower(payload->'customer'->>'email')$$),
  ('device', 'ev-app-open', $$payload->>'device_id'$$),
  ('loyalty', 'ev-pos-buy', $$jsonb_array_elements_text(payload->'cards')$$),
  -- bad rows: an unknown event type, SQL that does not parse, an unknown column
  ('email', 'ev-gone', $$payload->>'email'$$),
  ('phone', 'ev-crm-signup', $$payload->>>'phone'$$),
  ('cookie', 'ev-web-login', $$no_such_column$$);
CREATE TABLE meiro_attr.attributes (id text PRIMARY KEY, definition jsonb);
INSERT INTO meiro_attr.attributes VALUES
  -- an audience sorted before the attribute its condition names
  ('big_spender', '{"type": "audience", "condition": "revenue > 100"}'),
  ('revenue', '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"], "filter": ""}'),
  ('top_device', '{"type": "most_frequent", "value": "payload->>''device_id''", "sources": ["app"]}'),
  ('visits', '{"type": "custom", "query": "SELECT count(*) AS value FROM base"}'),
  -- bad rows: an unknown type, SQL that does not parse, an audience over a missing
  -- attribute (SQL that parses but names an unknown operator would be checked only
  -- once an events table is attached: README "Attributes")
  ('median_basket', '{"type": "median", "value": "payload->>''amount''"}'),
  ('broken', '{"type": "sum", "value": "(payload->>''amount''"}'),
  ('vip', '{"type": "audience", "condition": "lifetime_value > 1000"}');
CREATE TABLE meiro_attr.context (key text PRIMARY KEY, value text, query text, modified timestamp);
INSERT INTO meiro_attr.context VALUES
  ('currency', 'EUR', NULL, now()),
  ('customers', NULL, 'SELECT count(*) FROM cdp_traits.customer_entities', now()),
  ('no_query', 'x', '', now()),
  -- bad: a second statement
  ('bad', NULL, 'SELECT 1; DELETE FROM cdp_traits.context', now());

\set VERBOSITY terse
SELECT * FROM cdp_traits.import_meiro_config('meiro_ce', 'meiro_ps', 'meiro_attr');

-- What was imported: the good rows, with source/type/version from the catalogue.
SELECT attribute_id, source_id, type, version, value_expression FROM cdp_traits.stitching_rules ORDER BY 1, 2;
SELECT id, definition->>'type' AS type FROM cdp_traits.attributes ORDER BY id;
SELECT key, value, query, modified FROM cdp_traits.context ORDER BY key;

-- Idempotent: a second run imports nothing and reports the rows as present (the
-- bad rows are still reported as errors).
SELECT kind, status, count(*) FROM cdp_traits.import_meiro_config('meiro_ce', 'meiro_ps', 'meiro_attr')
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS rules, (SELECT count(*) FROM cdp_traits.attributes) AS attributes,
       (SELECT count(*) FROM cdp_traits.context) AS context
  FROM cdp_traits.stitching_rules;

-- A definition changed in Meiro, and a value changed here: conflicts, left alone.
UPDATE meiro_attr.attributes SET definition = definition || '{"types": ["purchase", "refund"]}' WHERE id = 'revenue';
UPDATE cdp_traits.context SET value = 'USD' WHERE key = 'currency';
SELECT * FROM cdp_traits.import_meiro_config('meiro_ce', 'meiro_ps', 'meiro_attr')
 WHERE status NOT IN ('present', 'error');
SELECT definition->'types' AS revenue_types FROM cdp_traits.attributes WHERE id = 'revenue';

-- Missing tables are reported, the rest is still imported.
CREATE SCHEMA meiro_only_context;
CREATE TABLE meiro_only_context.context (key text, value text, query text);
INSERT INTO meiro_only_context.context VALUES ('region', 'EU', NULL);
SELECT * FROM cdp_traits.import_meiro_config('nowhere', 'meiro_ps', 'meiro_only_context');
-- An attribute without an id (a Meiro table without a primary key) is
-- reported too: every row is.
CREATE TABLE meiro_only_context.attributes (id text, definition text);
INSERT INTO meiro_only_context.attributes VALUES
  (NULL, '{"type": "sum", "value": "1"}'), ('units', '{"type": "sum", "value": "1"}');
SELECT * FROM cdp_traits.import_meiro_config('nowhere', 'meiro_ps', 'meiro_only_context')
 WHERE kind = 'attribute';
DELETE FROM cdp_traits.attributes WHERE id = 'units';
-- A long rule expression (a CASE mapping many values: several kB, more than
-- a btree entry holds) is imported, and a second run finds it present.
CREATE SCHEMA meiro_long;
CREATE TABLE meiro_long.stitching_attributes_config (attribute_id text, event_id text, value_expression text);
INSERT INTO meiro_long.stitching_attributes_config
SELECT 'region', 'ev-web-login', 'CASE ' || string_agg(format('WHEN payload->>%L = %L THEN %L', 'k' || i,
         md5(i::text), md5((i * 7)::text)), ' ' ORDER BY i) || ' END'
  FROM generate_series(1, 60) i;
SELECT kind, id, status FROM cdp_traits.import_meiro_config('meiro_ce', 'meiro_long', 'meiro_only_context')
 WHERE kind = 'stitching_rule' AND id IS NOT NULL;
SELECT kind, id, status FROM cdp_traits.import_meiro_config('meiro_ce', 'meiro_long', 'meiro_only_context')
 WHERE kind = 'stitching_rule' AND id IS NOT NULL;
SELECT length(value_expression) > 5000 AS long_rule FROM cdp_traits.stitching_rules WHERE attribute_id = 'region';
DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'region';
DROP SCHEMA meiro_long CASCADE;
SELECT cdp_traits.import_meiro_config(NULL, 'meiro_ps', 'meiro_attr');

-- The imported rules stitch.
CREATE TABLE meiro_ce.customer_events (id text PRIMARY KEY, source_id text, type text, version text,
                                       event_time timestamptz, payload jsonb);
SET client_min_messages = warning;
SELECT cdp_traits.attach_events('meiro_ce.customer_events');
RESET client_min_messages;
INSERT INTO meiro_ce.customer_events VALUES
  ('1', 'web', 'login', '1-0-0', '2025-01-01', '{"email": "Ann@X"}'),
  ('2', 'crm', 'signup', '2-0-0', '2025-01-02', '{"customer": {"email": "ann@x"}}'),
  ('3', 'pos', 'purchase', '1-0-0', '2025-01-03', '{"cards": ["L1"], "amount": 150}'),
  ('4', 'pos', 'purchase', '1-0-0', '2025-01-04', '{"cards": ["L1"], "amount": 10}');
SELECT string_agg(id, ',' ORDER BY id) AS events FROM cdp_traits.customer_events
 GROUP BY customer_entity_id ORDER BY 1;

-- Admins only.
CREATE ROLE regress_meiro_reader;
GRANT cdp_traits_reader TO regress_meiro_reader;
SET ROLE regress_meiro_reader;
SELECT * FROM cdp_traits.import_meiro_config('meiro_ce', 'meiro_ps', 'meiro_attr');
RESET ROLE;
DROP ROLE regress_meiro_reader;
SELECT has_function_privilege('cdp_traits_admin', 'cdp_traits.import_meiro_config(name, name, name)', 'EXECUTE') AS admin_may,
       has_function_privilege('public', 'cdp_traits.import_meiro_config(name, name, name)', 'EXECUTE') AS public_may;

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP SCHEMA meiro_ce, meiro_ps, meiro_attr, meiro_only_context CASCADE;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;
