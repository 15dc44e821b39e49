-- cdp_gen: a deterministic synthetic event generator for cdp_traits tests and
-- benchmarks.  Plain SQL, no dependency on the cdp_traits extension:
--
--     psql -f test/gen/cdp_gen.sql            -- (re)load, idempotent
--     SELECT * FROM cdp_gen.events(1000, 42);
--     SELECT cdp_gen.load_events('my_events', 1000000);
--     SELECT * FROM cdp_gen.rules();
--
-- THE MODEL
--
-- events(n, seed, start_time) returns the events i = 1..n.  Nothing is
-- random(): every choice is a hash of (seed, i, purpose) -- hashint8extended,
-- which PostgreSQL keeps stable across versions and platforms because hash
-- partitioning depends on it -- so the output is the same on every run and
-- machine.  Row i depends on n only through the number of persons P.
--
--   Persons   P = greatest(1, n / 12).  Event i belongs to person
--             1 + floor(P * u^2), u uniform in [0,1): low-numbered persons
--             have many events, the tail a handful (expected >= ~6 each).
--             Per person, fixed: first name, country, usual device family,
--             one or two web cookies, e-mail 'name.<person>@example.com'.
--   Sources   web 40%, app 25%, esp 15%, pos 10%, crm 10%.
--     web     page_view 75%, add_to_cart 10%, login 10%, purchase 5%;
--             cookie_id 'ck-<person>-<k>' (k 0..1), url, device_family
--             (the person's usual one 90% of the time), country; a login
--             also carries the e-mail (this links cookies to e-mails).
--     app     screen_view 65%, app_open 27%, purchase 8%;
--             device_id 'dev-<person>', user_id 'u<person>' on 60%.
--     crm     customer_created 25%, customer_updated 75%;
--             email, user_id, loyalty_card 'LC<person, 8 digits>',
--             first_name, country.
--     esp     email_sent 60%, email_opened 25%, email_clicked 15%;
--             email, campaign.
--     pos     purchase; loyalty_card, store.
--   Purchases (any source) carry amount (numeric, 2 decimals, the sum of
--             price * quantity), currency 'EUR' and items: 1..5 objects
--             {sku, name, category, price, quantity} from cdp_gen.catalog(),
--             a fixed catalog of 200 products in 8 categories.
--   Noise     ~30% of e-mails have case and/or space noise; the canonical
--             form is lower(btrim(payload->>'email')).
--             ~1% of identifier values are junk: 'unknown', '', 'null',
--             'NULL ', 'n/a', 'none', '0', '-'.
--             ~2% of events carry no identifier key at all.
--             ~0.5% of persons p (odd p only, so pairs never chain) share
--             their app device with person p+1, who uses 'dev-<p>': the two
--             persons become one stitched entity.
--   version   '1-0-0' 90%, '2-0-0' 10%.
--   time      start_time + a millisecond offset within 365 days.
--   id        md5(seed || ':' || i)::uuid.
--   _person   payload._person is the true person (ground truth for checks).
--
-- The identifier keys are cookie_id, email, device_id, user_id and
-- loyalty_card; rules() lists the stitching rules meant for this data.

CREATE SCHEMA IF NOT EXISTS cdp_gen;

-- The product catalog: 200 products, SKU-0001 .. SKU-0200, the same for
-- every seed.  Names are unique (adjective x noun of the category).
CREATE OR REPLACE FUNCTION cdp_gen.catalog()
RETURNS TABLE(product integer, sku text, name text, category text, price numeric)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog
AS $fn$
  SELECT p,
         'SKU-' || lpad(p::text, 4, '0'),
         (ARRAY['Classic', 'Urban', 'Eco', 'Pro', 'Mini', 'Deluxe', 'Smart'])
           [1 + (p - 1) / 32]
         || ' ' ||
         (ARRAY[ARRAY['T-Shirt', 'Jacket', 'Hoodie', 'Scarf'],
                ARRAY['Sneakers', 'Boots', 'Sandals', 'Loafers'],
                ARRAY['Headphones', 'Charger', 'Speaker', 'Smartwatch'],
                ARRAY['Lamp', 'Mug', 'Pillow', 'Blanket'],
                ARRAY['Shampoo', 'Lipstick', 'Face Cream', 'Perfume'],
                ARRAY['Yoga Mat', 'Dumbbell', 'Water Bottle', 'Backpack'],
                ARRAY['Puzzle', 'Robot', 'Teddy Bear', 'Board Game'],
                ARRAY['Coffee', 'Tea', 'Chocolate', 'Olive Oil']])
           [1 + (p - 1) % 8][1 + ((p - 1) / 8) % 4],
         (ARRAY['apparel', 'shoes', 'electronics', 'home',
                'beauty', 'sports', 'toys', 'grocery'])[1 + (p - 1) % 8],
         (((hashint8extended(p, 200) & 9223372036854775807) % 29500 + 499)
           / 100.0)::numeric(10,2)
    FROM generate_series(1, 200) AS p
$fn$;

-- The events.  One SELECT over generate_series; each layer is fenced with
-- OFFSET 0 so that a derived value is computed once per row rather than
-- re-evaluated wherever the next layer mentions it.
CREATE OR REPLACE FUNCTION cdp_gen.events(
    n bigint,
    seed bigint DEFAULT 1,
    start_time timestamptz DEFAULT '2025-01-01 00:00:00+00')
RETURNS TABLE(id uuid, source_id text, type text, version text,
              event_time timestamptz, payload jsonb)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog
AS $fn$
WITH
-- Per-call constants: the number of persons, the junk identifier values and
-- one hash salt per purpose.
params AS (
  SELECT greatest(1, events.n / 12) AS persons,
         ARRAY['unknown', '', 'null', 'NULL ', 'n/a', 'none', '0', '-'] AS junk,
         hashint8extended(1, events.seed)  AS s_person,
         hashint8extended(2, events.seed)  AS s_source,
         hashint8extended(3, events.seed)  AS s_type,
         hashint8extended(4, events.seed)  AS s_time,
         hashint8extended(5, events.seed)  AS s_version,
         hashint8extended(6, events.seed)  AS s_noid,
         hashint8extended(7, events.seed)  AS s_email,
         hashint8extended(8, events.seed)  AS s_misc,
         hashint8extended(9, events.seed)  AS s_items,
         hashint8extended(10, events.seed) AS s_junk_cookie,
         hashint8extended(11, events.seed) AS s_junk_email,
         hashint8extended(12, events.seed) AS s_junk_device,
         hashint8extended(13, events.seed) AS s_junk_user,
         hashint8extended(14, events.seed) AS s_junk_loyalty,
         -- per-person salts
         hashint8extended(101, events.seed) AS s_p_name,
         hashint8extended(102, events.seed) AS s_p_country,
         hashint8extended(103, events.seed) AS s_p_device,
         hashint8extended(104, events.seed) AS s_p_cookies,
         hashint8extended(105, events.seed) AS s_p_shared
  OFFSET 0
),
-- The catalog as arrays indexed by product number.
cat AS (
  SELECT array_agg(jsonb_build_object('sku', c.sku, 'name', c.name,
                                      'category', c.category, 'price', c.price)
                   ORDER BY c.product) AS item,
         array_agg(c.price ORDER BY c.product) AS price,
         array_agg(c.sku ORDER BY c.product) AS sku,
         array_agg(c.category ORDER BY c.product) AS category
    FROM cdp_gen.catalog() AS c
  OFFSET 0
),
-- Layer 1: the raw draws of event i, each a non-negative 63-bit hash
-- (u_person is uniform in [0,1), from the top 53 bits).
draw AS (
  SELECT g.i, p.*,
         ((hashint8extended(g.i, p.s_person) >> 11) & 9007199254740991)::float8
           / 9007199254740992.0 AS u_person,
         hashint8extended(g.i, p.s_source)       & 9223372036854775807 AS r_source,
         hashint8extended(g.i, p.s_type)         & 9223372036854775807 AS r_type,
         hashint8extended(g.i, p.s_time)         & 9223372036854775807 AS r_time,
         hashint8extended(g.i, p.s_version)      & 9223372036854775807 AS r_version,
         hashint8extended(g.i, p.s_noid)         & 9223372036854775807 AS r_noid,
         hashint8extended(g.i, p.s_email)        & 9223372036854775807 AS r_email,
         hashint8extended(g.i, p.s_misc)         & 9223372036854775807 AS r_misc,
         hashint8extended(g.i, p.s_junk_cookie)  & 9223372036854775807 AS r_j_cookie,
         hashint8extended(g.i, p.s_junk_email)   & 9223372036854775807 AS r_j_email,
         hashint8extended(g.i, p.s_junk_device)  & 9223372036854775807 AS r_j_device,
         hashint8extended(g.i, p.s_junk_user)    & 9223372036854775807 AS r_j_user,
         hashint8extended(g.i, p.s_junk_loyalty) & 9223372036854775807 AS r_j_loyalty
    FROM params AS p
         CROSS JOIN generate_series(1, events.n) AS g(i)
  OFFSET 0
),
-- Layer 2: person and source of event i, and whether it has identifiers.
ev AS (
  SELECT d.*,
         least(d.persons, 1 + floor(d.persons * (d.u_person * d.u_person))::bigint)
           AS person,
         CASE WHEN d.r_source % 100 < 40 THEN 'web'
              WHEN d.r_source % 100 < 65 THEN 'app'
              WHEN d.r_source % 100 < 80 THEN 'esp'
              WHEN d.r_source % 100 < 90 THEN 'pos'
              ELSE 'crm' END AS source,
         d.r_noid % 100 < 2 AS no_id
    FROM draw AS d
  OFFSET 0
),
-- Layer 3: the event type, and what is fixed per person.
per AS (
  SELECT e.*,
         CASE e.source
           WHEN 'web' THEN CASE WHEN e.r_type % 100 < 10 THEN 'login'
                                WHEN e.r_type % 100 < 15 THEN 'purchase'
                                WHEN e.r_type % 100 < 25 THEN 'add_to_cart'
                                ELSE 'page_view' END
           WHEN 'app' THEN CASE WHEN e.r_type % 100 < 8  THEN 'purchase'
                                WHEN e.r_type % 100 < 35 THEN 'app_open'
                                ELSE 'screen_view' END
           WHEN 'esp' THEN CASE WHEN e.r_type % 100 < 60 THEN 'email_sent'
                                WHEN e.r_type % 100 < 85 THEN 'email_opened'
                                ELSE 'email_clicked' END
           WHEN 'pos' THEN 'purchase'
           ELSE CASE WHEN e.r_type % 100 < 25 THEN 'customer_created'
                     ELSE 'customer_updated' END
         END AS event_type,
         (ARRAY['anna', 'jan', 'petra', 'tomas', 'eva', 'martin', 'lucie',
                'jakub', 'sophie', 'lukas', 'maria', 'james', 'emily',
                'dara', 'sokha', 'nina'])
           [1 + (hashint8extended(e.person, e.s_p_name) & 9223372036854775807) % 16]
           AS name,
         (ARRAY['CZ', 'CZ', 'CZ', 'CZ', 'SK', 'SK', 'DE', 'DE', 'KH', 'US'])
           [1 + (hashint8extended(e.person, e.s_p_country) & 9223372036854775807) % 10]
           AS country,
         (ARRAY['iPhone', 'Android', 'Windows', 'Mac'])
           [1 + (hashint8extended(e.person, e.s_p_device) & 9223372036854775807) % 4]
           AS usual_device,
         -- 40% of persons have two cookies; pick one of them
         CASE WHEN (hashint8extended(e.person, e.s_p_cookies) & 9223372036854775807) % 10 < 4
              THEN (e.r_misc / 1000) % 2 ELSE 0 END AS cookie_k,
         -- odd person p shares its device with p + 1 with probability 1%
         CASE WHEN e.person % 2 = 0
               AND (hashint8extended(e.person - 1, e.s_p_shared) & 9223372036854775807) % 100 < 1
              THEN e.person - 1 ELSE e.person END AS device_owner
    FROM ev AS e
  OFFSET 0
),
-- Layer 4: the identifier values (absent, junk ~1%, e-mail noise ~30%) and
-- the other per-event choices.
val AS (
  SELECT x.*,
         CASE WHEN x.no_id OR x.source <> 'web' THEN NULL
              WHEN x.r_j_cookie % 1000 < 10
                THEN x.junk[1 + (x.r_j_cookie / 1000) % 8]
              ELSE 'ck-' || x.person || '-' || x.cookie_k END AS cookie_id,
         CASE WHEN x.no_id
                OR NOT (x.source IN ('crm', 'esp') OR x.event_type = 'login') THEN NULL
              WHEN x.r_j_email % 1000 < 10
                THEN x.junk[1 + (x.r_j_email / 1000) % 8]
              WHEN x.r_email % 100 >= 30
                THEN x.name || '.' || x.person || '@example.com'
              ELSE CASE (x.r_email / 100) % 6
                     WHEN 0 THEN initcap(x.name) || '.' || x.person || '@example.com'
                     WHEN 1 THEN initcap(x.name) || '.' || x.person || '@Example.COM'
                     WHEN 2 THEN upper(x.name) || '.' || x.person || '@EXAMPLE.COM'
                     WHEN 3 THEN ' ' || x.name || '.' || x.person || '@example.com'
                     WHEN 4 THEN x.name || '.' || x.person || '@example.com  '
                     ELSE ' ' || initcap(x.name) || '.' || x.person || '@Example.com '
                   END
         END AS email,
         CASE WHEN x.no_id OR x.source <> 'app' THEN NULL
              WHEN x.r_j_device % 1000 < 10
                THEN x.junk[1 + (x.r_j_device / 1000) % 8]
              ELSE 'dev-' || x.device_owner END AS device_id,
         CASE WHEN x.no_id
                OR NOT (x.source = 'crm'
                        OR (x.source = 'app' AND (x.r_misc / 10000) % 100 < 60))
                THEN NULL
              WHEN x.r_j_user % 1000 < 10
                THEN x.junk[1 + (x.r_j_user / 1000) % 8]
              ELSE 'u' || x.person END AS user_id,
         CASE WHEN x.no_id OR x.source NOT IN ('crm', 'pos') THEN NULL
              WHEN x.r_j_loyalty % 1000 < 10
                THEN x.junk[1 + (x.r_j_loyalty / 1000) % 8]
              ELSE 'LC' || lpad(x.person::text, 8, '0') END AS loyalty_card,
         -- r_misc's decimal digits are independent draws: 0-2 pick (list
         -- choices), 3 cookie, 4-5 user_id presence, 6-7 usual device or
         -- not, 8 other device, 9 number of items, 10 kind of page
         CASE WHEN x.source = 'web'
              THEN CASE WHEN (x.r_misc / 1000000) % 100 < 90 THEN x.usual_device
                        ELSE (ARRAY['iPhone', 'Android', 'Windows', 'Mac'])
                               [1 + (x.r_misc / 100000000) % 4] END
         END AS device_family,
         x.r_misc % 1000 AS pick,
         (ARRAY[1, 1, 1, 2, 2, 2, 3, 3, 4, 5])[1 + (x.r_misc / 1000000000) % 10]
           AS n_items,
         (x.r_misc / 10000000000) % 10 AS page_kind
    FROM per AS x
  OFFSET 0
)
SELECT md5(events.seed || ':' || v.i)::uuid,
       v.source,
       v.event_type,
       CASE WHEN v.r_version % 100 < 90 THEN '1-0-0' ELSE '2-0-0' END,
       events.start_time + (v.r_time % 31536000000) * interval '1 millisecond',
       -- one object per source with only its keys (jsonb_build_object costs
       -- per key); absent identifiers are NULL here and stripped
       jsonb_strip_nulls(CASE v.source
         WHEN 'web' THEN jsonb_build_object(
           '_person',       v.person,
           'cookie_id',     v.cookie_id,
           'email',         v.email,
           'device_family', v.device_family,
           'country',       v.country,
           'url',
             CASE WHEN v.event_type = 'login' THEN 'https://shop.example.com/login'
                  WHEN v.event_type = 'purchase' THEN 'https://shop.example.com/checkout/done'
                  WHEN v.event_type = 'add_to_cart' THEN 'https://shop.example.com/cart'
                  WHEN v.page_kind < 5
                    THEN 'https://shop.example.com/p/' || c.sku[1 + v.pick % 200]
                  WHEN v.page_kind < 8
                    THEN 'https://shop.example.com/c/' || c.category[1 + v.pick % 200]
                  ELSE 'https://shop.example.com/' END,
           'sku',
             CASE WHEN v.event_type = 'add_to_cart' THEN c.sku[1 + v.pick % 200] END)
         WHEN 'app' THEN jsonb_build_object(
           '_person',       v.person,
           'device_id',     v.device_id,
           'user_id',       v.user_id,
           'screen',
             CASE WHEN v.event_type = 'screen_view'
                  THEN (ARRAY['home', 'search', 'product', 'cart', 'profile', 'orders'])
                         [1 + v.pick % 6] END)
         WHEN 'crm' THEN jsonb_build_object(
           '_person',       v.person,
           'email',         v.email,
           'user_id',       v.user_id,
           'loyalty_card',  v.loyalty_card,
           'first_name',    initcap(v.name),
           'country',       v.country)
         WHEN 'esp' THEN jsonb_build_object(
           '_person',       v.person,
           'email',         v.email,
           'campaign',
             (ARRAY['welcome', 'newsletter', 'spring-sale', 'summer-sale',
                    'black-friday', 'winback'])[1 + v.pick % 6])
         ELSE jsonb_build_object(              -- pos
           '_person',       v.person,
           'loyalty_card',  v.loyalty_card,
           'store',         'store-' || v.country || '-' || lpad((1 + v.pick % 20)::text, 2, '0'))
       END)
       || CASE WHEN v.event_type <> 'purchase' THEN '{}'::jsonb
          ELSE (SELECT jsonb_build_object(
                         'amount',   sum(c.price[b.product] * b.quantity),
                         'currency', 'EUR',
                         'items',    jsonb_agg(c.item[b.product]
                                               || jsonb_build_object('quantity', b.quantity)
                                               ORDER BY b.j))
                  FROM (SELECT k.j,
                               1 + k.h % 200 AS product,
                               (ARRAY[1, 1, 1, 1, 1, 2, 2, 2, 3, 4])[1 + (k.h / 200) % 10]
                                 AS quantity
                          FROM (SELECT j, hashint8extended(v.i, v.s_items # j)
                                          & 9223372036854775807 AS h
                                  FROM generate_series(1, v.n_items) AS j) AS k
                        OFFSET 0) AS b)
          END
  FROM val AS v
       CROSS JOIN cat AS c
$fn$;

COMMENT ON FUNCTION cdp_gen.events(bigint, bigint, timestamptz) IS
  'n deterministic synthetic CDP events for (n, seed, start_time); see test/gen/cdp_gen.sql';

-- Insert events(n, seed, start_time) into a table with the columns
-- (id, source_id, type, version, event_time, payload); id may be uuid or text
-- (the assignment cast converts).  Returns the number of rows inserted.
CREATE OR REPLACE FUNCTION cdp_gen.load_events(
    target regclass,
    n bigint,
    seed bigint DEFAULT 1,
    start_time timestamptz DEFAULT '2025-01-01 00:00:00+00')
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog
AS $fn$
DECLARE
  inserted bigint;
BEGIN
  -- target::text is schema-qualified here, as search_path is pg_catalog
  EXECUTE format(
    'INSERT INTO %s (id, source_id, type, version, event_time, payload)
     SELECT e.id, e.source_id, e.type, e.version, e.event_time, e.payload
       FROM cdp_gen.events($1, $2, $3) AS e', target)
    USING n, seed, start_time;
  GET DIAGNOSTICS inserted = ROW_COUNT;
  RETURN inserted;
END
$fn$;

-- The stitching rules this data is meant for: one row per (attribute,
-- source); type and version NULL (any).  value_expression is an SQL
-- expression over the event's payload.
CREATE OR REPLACE FUNCTION cdp_gen.rules()
RETURNS TABLE(attribute_id text, source_id text, type text, version text,
              value_expression text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog
AS $fn$
  SELECT r.attribute_id, r.source_id, NULL::text, NULL::text, r.value_expression
    FROM (VALUES
      ('email',        'web', $$lower(btrim(payload->>'email'))$$),
      ('email',        'crm', $$lower(btrim(payload->>'email'))$$),
      ('email',        'esp', $$lower(btrim(payload->>'email'))$$),
      ('cookie_id',    'web', $$payload->>'cookie_id'$$),
      ('device_id',    'app', $$payload->>'device_id'$$),
      ('user_id',      'app', $$payload->>'user_id'$$),
      ('user_id',      'crm', $$payload->>'user_id'$$),
      ('loyalty_card', 'crm', $$payload->>'loyalty_card'$$),
      ('loyalty_card', 'pos', $$payload->>'loyalty_card'$$)
    ) AS r(attribute_id, source_id, value_expression)
$fn$;
