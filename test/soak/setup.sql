-- Soak setup: a partitioned events table of generated events, rules,
-- definitions of every kind, context keys and segment events.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
\i :gen
CREATE EXTENSION cdp_traits;
CREATE SCHEMA cdp_ce;
CREATE TABLE cdp_ce.customer_events (
	id uuid NOT NULL,
	source_id text NOT NULL,
	type text NOT NULL,
	version text NOT NULL,
	event_time timestamptz NOT NULL,
	payload jsonb NOT NULL,
	PRIMARY KEY (id, event_time)
) PARTITION BY RANGE (event_time);
DO $$
BEGIN
	FOR m IN 0..12 LOOP
		EXECUTE format('CREATE TABLE cdp_ce.ev_%s PARTITION OF cdp_ce.customer_events
		                FOR VALUES FROM (%L) TO (%L)', m,
		               timestamptz '2025-01-01 00:00+00' + m * interval '1 month',
		               timestamptz '2025-01-01 00:00+00' + (m + 1) * interval '1 month');
	END LOOP;
END $$;
-- the partition the soak attaches and detaches (2030)
SELECT cdp_gen.load_events('cdp_ce.customer_events', :events);
INSERT INTO cdp_traits.stitching_rules SELECT * FROM cdp_gen.rules();
SELECT cdp_traits.attach_events('cdp_ce.customer_events');

CREATE SCHEMA analytics;
CREATE TABLE analytics.ltv (customer_entity_id uuid, value numeric);
INSERT INTO cdp_traits.context (key, query) VALUES
  ('customers', 'SELECT count(*) FROM cdp_traits.customer_entities'),
  ('avg_order', 'SELECT coalesce(round(avg((payload->>''amount'')::numeric), 2), 1) FROM cdp_ce.customer_events WHERE type = ''purchase''');
INSERT INTO cdp_traits.context (key, value) VALUES ('threshold', '100');
SELECT cdp_traits.refresh_context();
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('top_device',   '{"type": "most_frequent", "value": "payload->>''device_family''", "sources": ["web"]}'),
  ('countries',    '{"type": "list", "value": "payload->>''country''"}'),
  ('first_name',   '{"type": "last", "value": "payload->>''first_name''", "sources": ["crm"], "history": true}'),
  ('channels',     '{"type": "num_of_unique", "value": "source_id"}'),
  ('revenue',      '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"], "history": true}'),
  ('events_n',     '{"type": "sum", "value": "1"}'),
  ('orders',       '{"type": "custom", "query": "SELECT count(*) AS value FROM base WHERE type = ''purchase''", "data_type": "number"}'),
  ('last_purchase','{"type": "max", "value": "event_time", "types": ["purchase"], "data_type": "datetime"}'),
  ('first_seen',   '{"type": "min", "value": "event_time", "data_type": "datetime"}'),
  ('top_category', '{"type": "most_frequent", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''category''", "outer_weight": "(value->>''quantity'')::float8", "types": ["purchase"]}'),
  ('rare_source',  '{"type": "least_frequent", "value": "source_id"}'),
  ('ltv',          '{"type": "external", "query": "SELECT customer_entity_id, value FROM analytics.ltv", "data_type": "number"}'),
  ('vip',          '{"type": "audience", "condition": "revenue > 3 * context_value(''avg_order'')::numeric"}'),
  ('active',       '{"type": "audience", "condition": "events_n >= 20 AND NOT coalesce(vip, false)"}');
SELECT cdp_traits.calculate_attributes();
INSERT INTO analytics.ltv SELECT id, 10 * random() FROM cdp_traits.customer_entities TABLESAMPLE BERNOULLI (30);

-- segment events: 2000 users x 3 segments
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
SELECT gen_random_uuid(), 'user' || u, 7, (ARRAY['news', 'cart', 'high'])[1 + (u + n) % 3],
       timestamptz '2025-03-01 00:00+00' + u * interval '1 second' + n * interval '1 day',
       n > 1 AND (u * n) % 3 = 0, CASE WHEN n = 1 THEN 'tier-' || (u % 3) END
  FROM generate_series(1, 2000) u CROSS JOIN generate_series(1, 4) n;

-- helpers for the workers
CREATE FUNCTION public.soak_payload(src text) RETURNS jsonb LANGUAGE sql VOLATILE AS $$
  SELECT CASE src
    WHEN 'web' THEN jsonb_build_object('cookie_id', 'ck-' || p || '-' || (p % 2), 'email', CASE WHEN random() < 0.3 THEN 'name.' || q || '@example.com' END,
                                       'device_family', (ARRAY['iPhone', 'Android', 'Mac', 'Windows'])[1 + p % 4], 'country', (ARRAY['CZ', 'KH', 'DE'])[1 + q % 3])
    WHEN 'app' THEN jsonb_build_object('device_id', 'dev-' || p, 'user_id', CASE WHEN random() < 0.6 THEN 'u' || q END)
    WHEN 'crm' THEN jsonb_build_object('email', 'name.' || p || '@example.com', 'user_id', 'u' || p, 'loyalty_card', 'LC' || lpad(q::text, 8, '0'), 'first_name', 'N' || (p % 50))
    WHEN 'esp' THEN jsonb_build_object('email', 'name.' || p || '@example.com', 'campaign', 'c' || (q % 5))
    ELSE jsonb_build_object('loyalty_card', 'LC' || lpad(p::text, 8, '0'), 'amount', round((random() * 200)::numeric, 2),
                            'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-000' || (p % 9), 'category', (ARRAY['home', 'toys', 'shoes'])[1 + q % 3], 'quantity', 1 + q % 3)))
  END
  FROM (SELECT 1 + floor(random() * 5000)::int AS p,
               CASE WHEN random() < 0.02 THEN 1 + floor(random() * 5000)::int END AS q0) x,
       LATERAL (SELECT coalesce(q0, p) AS q) y
$$;
CREATE FUNCTION public.soak_events(n int) RETURNS TABLE(id uuid, source_id text, type text, version text, event_time timestamptz, payload jsonb)
LANGUAGE sql VOLATILE AS $$
  SELECT gen_random_uuid(), s, CASE WHEN s = 'pos' OR random() < 0.1 THEN 'purchase' ELSE 'view' END, '1-0-0',
         timestamptz '2025-01-01 00:00+00' + random() * interval '364 days', public.soak_payload(s)
    FROM generate_series(1, n) g, LATERAL (SELECT (ARRAY['web', 'app', 'crm', 'esp', 'pos'])[1 + floor(random() * 5)::int + 0 * g] AS s) z
$$;
CREATE TABLE public.soak_log (at timestamptz DEFAULT clock_timestamp(), what text);
