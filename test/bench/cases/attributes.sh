# Attribute calculation (issue 5), on BENCH_EVENTS generated events (default
# 1M), stitched.  Sourced by test/bench/run.sh, which provides sql, compare
# and report.

source "$REPO/test/bench/stitching_setup.sh"

say "attributes: 20 definitions"
sql >/dev/null <<'SQL'
SET client_min_messages = warning;
DELETE FROM cdp_traits.attributes;
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('top_device',    '{"type": "most_frequent", "value": "payload->>''device_family''", "sources": ["web"]}'),
  ('countries',     '{"type": "list", "value": "payload->>''country''"}'),
  ('country',       '{"type": "most_frequent", "value": "payload->>''country''"}'),
  ('first_country', '{"type": "first", "value": "payload->>''country''"}'),
  ('last_country',  '{"type": "last", "value": "payload->>''country''"}'),
  ('n_devices',     '{"type": "num_of_unique", "value": "payload->>''device_family''"}'),
  ('revenue',       '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"]}'),
  ('avg_order',     '{"type": "avg", "value": "payload->>''amount''", "types": ["purchase"]}'),
  ('max_order',     '{"type": "max", "value": "payload->>''amount''", "types": ["purchase"], "data_type": "number"}'),
  ('min_order',     '{"type": "min", "value": "payload->>''amount''", "types": ["purchase"], "data_type": "number"}'),
  ('first_seen',    '{"type": "min", "value": "event_time", "data_type": "datetime"}'),
  ('last_seen',     '{"type": "max", "value": "event_time", "data_type": "datetime"}'),
  ('last_purchase', '{"type": "max", "value": "event_time", "types": ["purchase"], "data_type": "datetime"}'),
  ('campaigns',     '{"type": "list", "value": "payload->>''campaign''", "sources": ["esp"]}'),
  ('top_campaign',  '{"type": "most_frequent", "value": "payload->>''campaign''", "types": ["email_clicked"]}'),
  ('first_name',    '{"type": "last", "value": "payload->>''first_name''", "sources": ["crm"]}'),
  ('rare_screen',   '{"type": "least_frequent", "value": "payload->>''screen''", "sources": ["app"]}'),
  ('sources',       '{"type": "list", "value": "source_id"}'),
  ('skus',          '{"type": "list", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''sku''", "types": ["purchase"]}'),
  ('top_category',  '{"type": "most_frequent", "value": "jsonb_array_elements(payload->''items'')", "outer_value": "value->>''category''", "weight": "1", "outer_weight": "(value->>''quantity'')::float8", "types": ["purchase"]}');
SQL

floor_group() { sql -c "SELECT customer_entity_id, count(*) FROM cdp_traits.customer_events GROUP BY 1" >/dev/null; }
no_values() {
	sql -c "TRUNCATE cdp_traits.entity_attributes, cdp_traits.attribute_history, cdp_traits.attribute_counts, cdp_traits.attribute_value_counts" \
		-c "UPDATE cdp_traits.attributes SET calculated_version = NULL" \
		-c "UPDATE cdp_traits.customer_entities SET calculated = NULL" -c "VACUUM cdp_traits.customer_entities" \
		-c "CHECKPOINT"
}
full_run() { sql -c "SELECT cdp_traits.calculate_attributes(force => true)"; }
# 1k new events, copies (new ids) of random events: about 1k entities (~0.5%) touched
new_events() {
	sql -c "SELECT cdp_traits.calculate_attributes()" -c "
	INSERT INTO events (id, source_id, type, version, event_time, payload)
	SELECT gen_random_uuid(), source_id, type, version, event_time + interval '1 day', payload
	  FROM (SELECT * FROM events ORDER BY random() LIMIT 1000) e" -c "CHECKPOINT"
}
incremental_run() { sql -c "SELECT cdp_traits.calculate_attributes()"; }

compare "attributes: 20 definitions, full (1)" "GROUP BY entity over customer_events" floor_group \
	"calculate_attributes(force), no values yet" full_run no_values "<= 3x the floor (ratio >= 0.33)"
full_run >/dev/null
compare "attributes: full forced, values current (2)" "GROUP BY entity over customer_events" floor_group \
	"calculate_attributes(force), nothing changes" full_run "" "-"
compare "attributes: incremental after 1k events (3)" "full calculation" full_run \
	"calculate_attributes() after 1k new events" incremental_run new_events ">= 20x (incremental <= 5% of full)"
touched=$(sql -c "SELECT entities FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1")
entities=$(sql -c "SELECT count(*) FROM cdp_traits.customer_entities")
values=$(sql -c "SELECT count(*) FROM cdp_traits.customer_attributes")
report "attributes: incremental run touched" "$touched of $entities entities; $values values stored"

# The same in a base that keeps calculating: case 3's run follows a forced
# run, which stored the states of the large entities (see README, "Stored
# states"); here each timed run is the sixth small run in a row, after five
# rounds of 1k new events and a small run, so the states it reads are those
# the small runs stored (the forced baseline runs between, and renews them).
steady_events() { for _ in 1 2 3 4 5; do new_events; done; }
compare "attributes: incremental, steady state (4)" "full calculation" full_run \
	"calculate_attributes() after 1k new events, 6th small run in a row" incremental_run steady_events \
	">= 20x (incremental <= 5% of full)"
states=$(sql -c "SELECT count(*) FROM cdp_traits.entity_states")
from_states=$(sql -c "SELECT from_states FROM cdp_traits.calculation_runs ORDER BY id DESC LIMIT 1")
report "attributes: steady-state run from states" "$from_states of its entities from stored states; $states states stored"
