# Profile stitching (issue 3), on BENCH_EVENTS generated events (default 1M).
# Sourced by test/bench/run.sh, which provides sql, compare and report.

source "$REPO/test/bench/stitching_setup.sh"

empty_state() {
	sql -c "TRUNCATE cdp_traits.event_entities, cdp_traits.matching" \
		-c "DELETE FROM cdp_traits.customer_entities" -c "DELETE FROM cdp_traits.entity_merges" \
		-c "VACUUM cdp_traits.event_entities, cdp_traits.matching, cdp_traits.customer_entities" \
		-c "CHECKPOINT"
}
label_propagation() { sql -c "SELECT bench_label_propagation()"; }
restitch() { sql -c "SELECT cdp_traits.restitch()"; }
# The floor gets what restitch() gets: one parallel worker (restitch() reads
# the events with one; see stitch_read_events).
floor_select() {
	sql -c "SET max_parallel_workers_per_gather = 1" -c "
	SELECT count(lower(btrim(payload->>'email'))), count(lower(btrim(payload->>'email'))),
	       count(lower(btrim(payload->>'email'))), count(payload->>'cookie_id'),
	       count(payload->>'device_id'), count(payload->>'user_id'), count(payload->>'user_id'),
	       count(payload->>'loyalty_card'), count(payload->>'loyalty_card')
	  FROM events"
}
nothing() { :; }

compare "restitch, from empty state (1)" "SQL label propagation" label_propagation \
	"restitch()" restitch empty_state ">= 20x"
restitch >/dev/null
compare "restitch, state current (2)" "SQL label propagation" label_propagation \
	"restitch()" restitch nothing ">= 20x"
compare "restitch vs floor (3)" "SELECT of all rule expressions" floor_select \
	"restitch()" restitch nothing "<= 2x the floor (ratio >= 0.5)"
sql -c "SELECT count(*) FROM cdp_traits.verify_stitching()" | grep -qx 0 || die "verify_stitching not empty"

stats=$(sql -F ' ' -c "SELECT cdp_traits.restitch()" -c "SELECT events, identifiers, entities, memory_bytes FROM cdp_traits.stitching_stats()" | tail -1)
read -r ev id en mem <<<"$stats"
report "restitch memory" "$mem bytes for $ev events, $id identifiers, $en entities: $((mem / ev)) bytes/event, $((mem / (ev + id))) bytes per event+identifier"
iters=$(sql -c "SELECT bench_label_propagation()")
report "label propagation iterations" "$iters"
same=$(sql -c "
	SELECT (SELECT string_agg(md5(ids), '' ORDER BY md5(ids)) FROM (SELECT string_agg(event_id, ',' ORDER BY event_id) ids FROM lp_label GROUP BY label) a)
	     = (SELECT string_agg(md5(ids), '' ORDER BY md5(ids)) FROM (SELECT string_agg(id::text, ',' ORDER BY id::text) ids FROM cdp_traits.customer_events WHERE customer_entity_id IS NOT NULL GROUP BY customer_entity_id) b)")
report "label propagation partition = restitch partition" "$same"

# bridging_identifiers() over the whole base reads every event as
# verify_stitching() does, then searches the graph: no target, the ratio says
# what the search adds to the read.
verify() { sql -c "SELECT count(*) FROM cdp_traits.verify_stitching()"; }
bridging() { sql -c "SELECT count(*) FROM cdp_traits.bridging_identifiers()"; }
compare "bridging identifiers, whole base (7)" "verify_stitching()" verify \
	"bridging_identifiers()" bridging nothing "(none; about 1x)"
bridges=$(sql -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE conflicts <> '{}'), count(*) FILTER (WHERE attribute_id = 'device_id' AND 'user_id' = ANY (conflicts)) FROM cdp_traits.bridging_identifiers()")
read -r nb nc nd <<<"$bridges"
report "bridging identifiers found" "$nb bridges, $nc with conflicts, $nd devices joining two user ids (the generator has about 0.5 % of people share their device with the next)"

# COPY of 200k new events (returning customers: same identifier pools)
COPY_N=${BENCH_COPY_EVENTS:-200000}
sql -c "COPY (SELECT * FROM cdp_gen.events($COPY_N, 7)) TO '$DIR/copy.csv' (FORMAT csv)"
sql -c "DROP TABLE IF EXISTS copy_ids" -c "CREATE TABLE copy_ids AS SELECT id FROM cdp_gen.events($COPY_N, 7)"
copy_reset() {
	sql -c "DELETE FROM events e USING copy_ids c WHERE e.id = c.id" \
		-c "DELETE FROM events_plain e USING copy_ids c WHERE e.id = c.id" \
		-c "VACUUM events, events_plain, cdp_traits.event_entities, cdp_traits.matching, cdp_traits.customer_entities" \
		-c "CHECKPOINT"
}
copy_plain() { sql -c "COPY events_plain FROM '$DIR/copy.csv' (FORMAT csv)"; }
copy_attached() { sql -c "COPY events FROM '$DIR/copy.csv' (FORMAT csv)"; }
compare "COPY $COPY_N events (4)" "COPY into the table, detached" copy_plain \
	"COPY into the attached table" copy_attached copy_reset "<= 1.5x (ratio >= 0.67)"
copy_reset >/dev/null
sql -c "SELECT count(*) FROM cdp_traits.verify_stitching()" | grep -qx 0 || die "verify_stitching not empty after COPY"

# single-row INSERTs from 4 concurrent clients
cat >"$DIR/insert_plain.sql" <<'PGB'
\set p random(1, 80000)
INSERT INTO events_plain VALUES (gen_random_uuid(), 'web', 'page_view', '1-0-0', now(),
  jsonb_build_object('cookie_id', 'ck-' || :p || '-0', 'email', 'name.' || :p || '@example.com', 'url', '/p'));
PGB
sed 's/events_plain/events/' "$DIR/insert_plain.sql" >"$DIR/insert_attached.sql"
chown postgres: "$DIR"/*.sql
PGB_T=${BENCH_PGBENCH_SECONDS:-20}
tps() {
	as_postgres pgbench -h "$DIR" -p "$PORT" -n -c 4 -j 2 -T "$PGB_T" -f "$DIR/$1" bench 2>&1 |
		awk '/^tps = / { print $3 }'
}
plain_tps=() att_tps=()
for ((i = 0; i < 3; i++)); do
	plain_tps+=("$(tps insert_plain.sql)")
	att_tps+=("$(tps insert_attached.sql)")
done
mp=$(median "${plain_tps[@]}")
ma=$(median "${att_tps[@]}")
report "single-row INSERT, 4 clients (5)" "detached $mp tps, attached $ma tps (median of 3 x ${PGB_T}s): attached/detached $(awk -v a="$ma" -v p="$mp" 'BEGIN { printf "%.2f", a / p }') (target >= 0.50); runs ${plain_tps[*]} / ${att_tps[*]}"
sql -c "SELECT count(*) FROM cdp_traits.verify_stitching()" | grep -qx 0 || die "verify_stitching not empty after pgbench"
