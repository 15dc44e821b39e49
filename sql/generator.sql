-- The synthetic data generator (test/gen/cdp_gen.sql): deterministic, and
-- the data has the shape the stitching rules and tests rely on.
\set ECHO none
\i test/gen/cdp_gen.sql
\set ECHO all

-- Loading it again is harmless.
SET client_min_messages = warning;
\set ECHO none
\i test/gen/cdp_gen.sql
\set ECHO all
RESET client_min_messages;
SELECT count(*) AS generator_functions
  FROM pg_proc WHERE pronamespace = 'cdp_gen'::regnamespace;

-- A digest of events(n, seed), independent of session settings.
CREATE FUNCTION pg_temp.digest(n bigint, seed bigint) RETURNS text
LANGUAGE sql AS $$
  SELECT md5(string_agg(concat_ws('|', e.id, e.source_id, e.type, e.version,
                                  extract(epoch FROM e.event_time), e.payload::text),
                        E'\n' ORDER BY e.id))
    FROM cdp_gen.events(n, seed) AS e
$$;

-- Determinism: two calls give the same rows, another seed other rows.
CREATE TEMP TABLE first_call AS SELECT pg_temp.digest(5000, 1) AS md5;
SELECT pg_temp.digest(5000, 1) = md5 AS same_on_second_call,
       pg_temp.digest(5000, 2) <> md5 AS other_seed_differs
  FROM first_call;
-- The fixed digest: if this changes, the generator's output changed (and
-- expectations built on it may need a look).
SELECT md5 AS digest_5000_seed_1 FROM first_call;

-- Exactly n rows.
SELECT n, (SELECT count(*) FROM cdp_gen.events(n)) AS rows
  FROM (VALUES (0), (1), (13), (1000)) AS t(n);
-- Row i depends on n only through the number of persons greatest(1, n/12):
-- with 24 and 35 events there are 2 persons, and the first 24 rows agree.
SELECT count(*) AS rows_in_common
  FROM cdp_gen.events(24) AS a JOIN cdp_gen.events(35) AS b
       ON (a.*) IS NOT DISTINCT FROM (b.*);
-- start_time only shifts event_time; ids are unique.
SELECT bool_and(a.event_time - '2025-01-01 00:00:00+00' = b.event_time - '2030-06-15 12:00:00+00'
                AND a.payload = b.payload) AS start_time_shifts_only
  FROM cdp_gen.events(500, 5) AS a
       JOIN cdp_gen.events(500, 5, '2030-06-15 12:00:00+00') AS b USING (id);
SELECT count(DISTINCT id) = 1000 AS ids_unique,
       bool_and(event_time >= '2025-01-01 00:00:00+00'
                AND event_time < timestamptz '2025-01-01 00:00:00+00' + interval '365 days')
         AS times_within_a_year
  FROM cdp_gen.events(1000, 9);

-- The rest looks at one sample of 50,000 events (4,166 persons).
CREATE TEMP TABLE ev AS SELECT * FROM cdp_gen.events(50000, 7);
CREATE TEMP VIEW ev_ids AS
  SELECT e.source_id, e.type, k AS key, e.payload->>k AS value,
         (e.payload->>'_person')::bigint AS person
    FROM ev AS e, unnest(ARRAY['cookie_id', 'email', 'device_id', 'user_id', 'loyalty_card']) AS k
   WHERE e.payload ? k;

-- Source shares.
SELECT source_id,
       count(*)::numeric / 50000 BETWEEN lo AND hi AS share_ok
  FROM ev JOIN (VALUES ('web', 0.37, 0.43), ('app', 0.22, 0.28), ('esp', 0.13, 0.17),
                       ('pos', 0.08, 0.12), ('crm', 0.08, 0.12)) AS s(source_id, lo, hi)
       USING (source_id)
 GROUP BY source_id, lo, hi
 ORDER BY source_id;
-- Types per source, and the keys each source's payloads carry.
SELECT source_id, array_agg(DISTINCT type ORDER BY type) AS types
  FROM ev GROUP BY source_id ORDER BY source_id;
SELECT source_id, array_agg(DISTINCT k ORDER BY k) AS keys
  FROM ev, jsonb_object_keys(payload) AS k GROUP BY source_id ORDER BY source_id;
SELECT count(*) FILTER (WHERE type = 'login')::numeric / count(*) BETWEEN 0.08 AND 0.12 AS web_login_share_ok,
       count(*) FILTER (WHERE type = 'purchase')::numeric / count(*) BETWEEN 0.04 AND 0.06 AS web_purchase_share_ok,
       bool_and(NOT (payload ? 'email') OR type = 'login') AS only_logins_carry_email
  FROM ev WHERE source_id = 'web';
SELECT count(*) FILTER (WHERE type = 'purchase')::numeric / count(*) BETWEEN 0.06 AND 0.10 AS app_purchase_share_ok,
       count(*) FILTER (WHERE payload ? 'user_id')::numeric / count(*) BETWEEN 0.55 AND 0.65 AS app_user_id_share_ok
  FROM ev WHERE source_id = 'app';
SELECT count(*) FILTER (WHERE version = '1-0-0')::numeric / count(*) BETWEEN 0.88 AND 0.92 AS version_1_share_ok,
       array_agg(DISTINCT version ORDER BY version) AS versions
  FROM ev;

-- Persons: at most n/12, nearly all of them seen, skewed (the busiest 1% of
-- persons have far more than 1% of the events).
WITH per_person AS (
  SELECT (payload->>'_person')::bigint AS person, count(*) AS c FROM ev GROUP BY 1)
SELECT max(person) = 50000 / 12 AS max_person_is_n_over_12,
       count(*) > 0.95 * (50000 / 12) AS most_persons_seen,
       (SELECT sum(c) FROM (SELECT c FROM per_person ORDER BY c DESC LIMIT 42) AS top)
         > 0.05 * 50000 AS skewed
  FROM per_person;
-- Country and first name are fixed per person.
SELECT count(*) AS persons_with_two_countries_or_names
  FROM (SELECT payload->>'_person' FROM ev WHERE payload ? 'country'
         GROUP BY 1
        HAVING count(DISTINCT payload->>'country') > 1
            OR count(DISTINCT payload->>'first_name') > 1) AS t;
SELECT array_agg(DISTINCT payload->>'country' ORDER BY payload->>'country') AS countries,
       array_agg(DISTINCT payload->>'device_family' ORDER BY payload->>'device_family') AS device_families
  FROM ev WHERE source_id = 'web';

-- Identifier formats (junk aside).
SELECT key, bool_and(CASE key
         WHEN 'cookie_id' THEN value ~ ('^ck-' || person || '-[01]$')
         WHEN 'email' THEN lower(btrim(value)) ~ ('^[a-z]+\.' || person || '@example\.com$')
         WHEN 'device_id' THEN value IN ('dev-' || person, 'dev-' || (person - 1))
         WHEN 'user_id' THEN value = 'u' || person
         WHEN 'loyalty_card' THEN value = 'LC' || lpad(person::text, 8, '0')
       END) AS format_ok
  FROM ev_ids
 WHERE value NOT IN ('unknown', '', 'null', 'NULL ', 'n/a', 'none', '0', '-')
 GROUP BY key ORDER BY key;

-- Junk identifier values: about 1%, all eight kinds.
SELECT count(*) FILTER (WHERE value IN ('unknown', '', 'null', 'NULL ', 'n/a', 'none', '0', '-'))::numeric
         / count(*) BETWEEN 0.005 AND 0.015 AS junk_share_ok,
       count(DISTINCT value) FILTER (WHERE value IN ('unknown', '', 'null', 'NULL ', 'n/a', 'none', '0', '-'))
         AS junk_kinds
  FROM ev_ids;
-- Events without any identifier key: about 2%, from every source.
SELECT count(*)::numeric / 50000 BETWEEN 0.01 AND 0.03 AS no_identifier_share_ok,
       count(DISTINCT source_id) AS sources
  FROM ev
 WHERE NOT payload ?| ARRAY['cookie_id', 'email', 'device_id', 'user_id', 'loyalty_card'];

-- E-mails: ~30% noisy, all recovered by lower(btrim()), one per person.
SELECT count(*) FILTER (WHERE value <> lower(btrim(value)))::numeric / count(*)
         BETWEEN 0.25 AND 0.35 AS noisy_share_ok,
       count(*) FILTER (WHERE value <> lower(value)) > 0 AS case_noise,
       count(*) FILTER (WHERE value <> btrim(value)) > 0 AS space_noise,
       count(DISTINCT lower(btrim(value))) = count(DISTINCT person) AS one_email_per_person
  FROM ev_ids
 WHERE key = 'email' AND value LIKE '%@%';

-- Shared devices: pairs (p, p + 1), p odd, use device 'dev-<p>'.
SELECT count(*) > 5 AS shared_devices_present,
       bool_and(persons[2] = persons[1] + 1 AND persons[1] % 2 = 1
                AND device = 'dev-' || persons[1]) AS pairs_ok
  FROM (SELECT value AS device, array_agg(DISTINCT person ORDER BY person) AS persons
          FROM ev_ids WHERE key = 'device_id' AND value LIKE 'dev-%'
         GROUP BY value HAVING count(DISTINCT person) > 1) AS t;

-- Purchases (every source): 1..5 items from the catalog, currency EUR,
-- amount = sum(price * quantity) with two decimals.  Others have no amount.
SELECT source_id, count(*) > 0 AS has_purchases,
       bool_and(jsonb_array_length(payload->'items') BETWEEN 1 AND 5) AS items_1_to_5,
       bool_and(payload->>'currency' = 'EUR') AS eur,
       bool_and((payload->>'amount')::numeric =
                (SELECT sum((it->>'price')::numeric * (it->>'quantity')::int)
                   FROM jsonb_array_elements(payload->'items') AS it)) AS amount_is_sum,
       bool_and(scale((payload->>'amount')::numeric) = 2) AS two_decimals
  FROM ev WHERE type = 'purchase'
 GROUP BY source_id ORDER BY source_id;
SELECT count(*) AS non_purchases_with_amount
  FROM ev WHERE type <> 'purchase' AND payload ?| ARRAY['amount', 'items', 'currency'];
SELECT bool_and(c.sku IS NOT NULL AND c.name = it->>'name' AND c.category = it->>'category'
                AND c.price = (it->>'price')::numeric
                AND (it->>'quantity')::int >= 1) AS items_match_catalog,
       count(DISTINCT it->>'sku') > 150 AS many_products_sold
  FROM ev, jsonb_array_elements(payload->'items') AS it
       LEFT JOIN cdp_gen.catalog() AS c ON c.sku = it->>'sku'
 WHERE type = 'purchase';
SELECT count(*) AS products, count(DISTINCT sku) AS skus, count(DISTINCT name) AS names,
       count(DISTINCT category) AS categories, min(sku) AS first_sku, max(sku) AS last_sku,
       bool_and(price > 0 AND scale(price) = 2) AS prices_ok
  FROM cdp_gen.catalog();

-- load_events into a table whose id is text.
CREATE TEMP TABLE loaded (
  id text PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
  version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb NOT NULL,
  loaded_at timestamptz DEFAULT now());
SELECT cdp_gen.load_events('loaded', 1000, 3) AS inserted;
SELECT count(*) AS same_as_events
  FROM loaded AS l
  JOIN cdp_gen.events(1000, 3) AS e
    ON l.id = e.id::text AND (l.source_id, l.type, l.version, l.event_time, l.payload)
                           = (e.source_id, e.type, e.version, e.event_time, e.payload);
-- ... and into one whose id is uuid, in another schema.
CREATE SCHEMA gen_target;
CREATE TABLE gen_target."Events" (id uuid PRIMARY KEY, source_id text, type text,
                                  version text, event_time timestamptz, payload jsonb);
SELECT cdp_gen.load_events('gen_target."Events"', 100) AS inserted;
SELECT count(*) AS rows FROM gen_target."Events";
DROP TABLE gen_target."Events";
DROP SCHEMA gen_target;

-- The stitching rules meant for this data.
SELECT * FROM cdp_gen.rules() ORDER BY attribute_id, source_id;
