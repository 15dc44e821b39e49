-- examples/dbt: the SQL its models compile to (dbt is not installed here; the
-- statements below are the models with {{ source(...) }} resolved and the table
-- materialization and post-hook written out, kept in step with the model files).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
CREATE SCHEMA shop;
CREATE TABLE shop.events (id bigint PRIMARY KEY, source_id text, type text, version text,
                          event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$lower(payload->>'email')$$);
SELECT cdp_traits.attach_events('shop.events');
RESET client_min_messages;
INSERT INTO shop.events VALUES
  (1, 'web', 'view', '1', '2025-01-01 10:00+00', '{"email": "ann@x", "device": "ios", "channel": "ads"}'),
  (2, 'app', 'open', '1', '2025-01-02 10:00+00', '{"email": "ann@x", "device": "ios", "channel": "push"}'),
  (3, 'web', 'purchase', '1', '2025-01-03 10:00+00', '{"email": "ANN@x", "device": "mac", "channel": "email", "amount": "120.5"}'),
  (4, 'pos', 'purchase', '1', '2025-01-04 10:00+00', '{"email": "bob@x", "amount": "30"}'),
  (5, 'web', 'view', '1', '2025-01-05 10:00+00', '{"email": "bob@x", "device": "android", "channel": "seo"}'),
  (6, 'web', 'view', '1', '2025-01-06 10:00+00', '{"device": "ios"}');   -- no identifier, no entity
CREATE SCHEMA analytics;

-- First dbt run.
-- models/customer_traits.sql
CREATE TABLE analytics.customer_traits AS (
-- One row per customer entity: traits computed with cdp_traits' aggregates.
select
    customer_entity_id,
    cdp_traits.most_frequent(payload->>'device') as top_device,
    cdp_traits.unique_list(source_id) as sources,
    cdp_traits.first(payload->>'channel', event_time) as first_channel,
    cdp_traits.last(payload->>'channel', event_time) as last_channel,
    count(*) as events
from cdp_traits.customer_events
where customer_entity_id is not null
group by customer_entity_id
);
-- post-hook
select cdp_traits.run_jobs();

-- models/customer_ltv.sql
CREATE TABLE analytics.customer_ltv AS (
-- Revenue per customer entity; cdp_traits imports it as the external trait
-- "ltv" (see README.md) when the post-hook runs cdp_traits.run_jobs().
select
    customer_entity_id,
    sum(cdp_traits.to_number(payload->>'amount')) as value
from cdp_traits.customer_events
where customer_entity_id is not null and type = 'purchase'
group by customer_entity_id
);
-- post-hook
select cdp_traits.run_jobs();

-- Setup from examples/dbt/README.md, after the first run (a definition is checked
-- when written: its table must exist).
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('ltv', '{"type": "external", "query": "SELECT customer_entity_id, value FROM analytics.customer_ltv", "data_type": "number"}');

-- Second dbt run of models/customer_ltv.sql, as dbt-postgres runs a table model
-- that exists: build a new table, swap it in, drop the old one, post-hook.
INSERT INTO shop.events VALUES
  (7, 'app', 'purchase', '1', '2025-01-07 10:00+00', '{"email": "bob@x", "amount": "12.25"}');
CREATE TABLE analytics.customer_ltv__dbt_tmp AS (
-- Revenue per customer entity; cdp_traits imports it as the external trait
-- "ltv" (see README.md) when the post-hook runs cdp_traits.run_jobs().
select
    customer_entity_id,
    sum(cdp_traits.to_number(payload->>'amount')) as value
from cdp_traits.customer_events
where customer_entity_id is not null and type = 'purchase'
group by customer_entity_id
);
ALTER TABLE analytics.customer_ltv RENAME TO customer_ltv__dbt_backup;
ALTER TABLE analytics.customer_ltv__dbt_tmp RENAME TO customer_ltv;
DROP TABLE analytics.customer_ltv__dbt_backup CASCADE;
-- post-hook
select cdp_traits.run_jobs();

-- The traits, per customer (named by their e-mail).
CREATE TEMP VIEW who AS
  SELECT DISTINCT m.customer_entity_id, m.value AS email FROM cdp_traits.matching m WHERE m.attribute_id = 'email';
SELECT w.email, t.top_device, t.sources, t.first_channel, t.last_channel, t.events
  FROM analytics.customer_traits t JOIN who w USING (customer_entity_id) ORDER BY 1;
SELECT pg_typeof(sources) AS sources_type FROM analytics.customer_traits LIMIT 1;
-- the model tests of sources.yml: unique, not null
SELECT count(*) = count(DISTINCT customer_entity_id) AND count(customer_entity_id) = count(*) AS keys_ok
  FROM analytics.customer_traits;
-- the post-hook imported the external trait
SELECT w.email, p.ltv FROM cdp_traits.pivoted_customer_attributes p JOIN who w ON w.customer_entity_id = p.customer_entity_id ORDER BY 1;
SELECT job, status, run_by FROM cdp_traits.job_runs ORDER BY id;

SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP SCHEMA shop, analytics CASCADE;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
RESET client_min_messages;
