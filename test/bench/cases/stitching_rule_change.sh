# restitch() after a rule change (issue 3): the device rule is dropped, so app
# events stop linking through devices and many entities split.  Baseline: SQL
# label propagation under the same rules.  Needs the events table and the
# bench_label_propagation() of stitching_setup.sh (loaded if missing).

if [ "$(sql -c "SELECT to_regclass('events') IS NOT NULL AND to_regproc('bench_label_propagation') IS NOT NULL")" != t ]; then
	source "$REPO/test/bench/stitching_setup.sh"
fi
sql -c "DROP FUNCTION IF EXISTS bench_label_propagation_no_device()" >/dev/null
sql -c "SELECT pg_get_functiondef('bench_label_propagation'::regproc)" |
	sed -e 's/bench_label_propagation/bench_label_propagation_no_device/' \
		-e "/('device_id', CASE/d" >"$DIR/lp_no_device.sql"
sql -f "$DIR/lp_no_device.sql" >/dev/null

with_device() {
	sql -c "INSERT INTO cdp_traits.stitching_rules SELECT * FROM cdp_gen.rules() WHERE attribute_id = 'device_id' ON CONFLICT DO NOTHING" \
		-c "SELECT cdp_traits.restitch()" -c "DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'device_id'" \
		-c "CHECKPOINT"
}
lp_no_device() { sql -c "SELECT bench_label_propagation_no_device()"; }
restitch_after_change() { sql -c "SELECT cdp_traits.restitch()"; }

compare "restitch after dropping a rule (6)" "SQL label propagation, same rules" lp_no_device \
	"restitch()" restitch_after_change with_device ">= 20x"
with_device >/dev/null
stats=$(sql -F ' ' -c "DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'device_id'" \
	-c "SELECT cdp_traits.restitch()" \
	-c "SELECT entities, changed_events, changed_identifiers FROM cdp_traits.stitching_stats()" | tail -1)
read -r ents cev cid <<<"$stats"
report "rule change: what restitch() rewrote" "$cev event assignments and $cid identifiers; $ents entities after the change"
with_device >/dev/null
