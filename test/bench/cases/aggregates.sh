# The attribute-calculation aggregates (issue 4) against their best built-in
# SQL formulations, on BENCH_AGG_ROWS events (default 5M) of BENCH_AGG_GROUPS
# customers (default 100k), grouped by customer.
# Sourced by test/bench/run.sh, which provides sql, compare and report.
#
# Two layouts of the same rows:
#   agg_events         in time order, as an events table is written: each
#                      customer's events come in sessions (10 events within
#                      minutes), about 500 sessions at a time
#   agg_events_random  the same rows in random order: every row a different
#                      customer, the worst case for hash aggregation (every
#                      row's group state is a cache miss)
# v is a page category (20 values, skewed), t the event time.

AGG_ROWS=${BENCH_AGG_ROWS:-5000000}
AGG_GROUPS=${BENCH_AGG_GROUPS:-100000}
AGG_SESSIONS=$((AGG_ROWS / 10))

sql -c "CREATE EXTENSION IF NOT EXISTS cdp_traits" -c "DROP TABLE IF EXISTS agg_events, agg_events_random" -c "
CREATE TABLE agg_events AS
SELECT customer_id, v, t
  FROM (SELECT s % $AGG_GROUPS + 1 AS customer_id,
               (ARRAY['home', 'search', 'product', 'cart', 'checkout', 'account', 'blog', 'help',
                      'category', 'deals', 'wishlist', 'reviews', 'compare', 'stores', 'careers',
                      'press', 'terms', 'privacy', 'contact', 'about'])
                 [1 + floor(20 * power((abs(hashint8(s * 10 + k)) % 1000000) / 1000000.0, 2))::int] AS v,
               timestamptz '2024-01-01' + (abs(hashint8(s)) % (30 * 86400)) * interval '1 second'
                 + k * (1 + abs(hashint8(s + 1)) % 600) * interval '1 second' AS t
          FROM generate_series(0, $AGG_SESSIONS - 1) s, generate_series(0, 9) k) e
 ORDER BY t" -c "
CREATE TABLE agg_events_random AS SELECT * FROM agg_events ORDER BY hashtext(t::text || customer_id)" \
	-c "VACUUM ANALYZE agg_events, agg_events_random"

# q AGG TABLE: one value per customer, all of them read
q() { echo "SELECT count(m) FROM (SELECT customer_id, $1 AS m FROM $2 GROUP BY customer_id) x"; }

MOST_BASE="mode() WITHIN GROUP (ORDER BY v)"
MOST="cdp_traits.most_frequent(v)"
UNIQ_BASE="count(DISTINCT v)"
UNIQ="cdp_traits.num_of_unique(v)"
LIST_BASE="array_agg(DISTINCT v ORDER BY v)"
LIST="cdp_traits.unique_list(v)"
FIRST_BASE="(array_agg(v ORDER BY t))[1]"
FIRST="cdp_traits.first(v, t)"
LAST_BASE="(array_agg(v ORDER BY t DESC))[1]"
LAST="cdp_traits.last(v, t)"

# Results agree (with ties on t broken as first/last break them).
for pair in "$MOST|$MOST_BASE" "$UNIQ|$UNIQ_BASE" "$LIST|$LIST_BASE" "$FIRST|(array_agg(v ORDER BY t, v))[1]" \
	"$LAST|(array_agg(v ORDER BY t DESC, v DESC))[1]"; do
	ours=${pair%%|*} base=${pair#*|}
	differing=$(sql -c "SELECT count(*) FROM (SELECT customer_id, $ours AS m FROM agg_events GROUP BY 1) a
		FULL JOIN (SELECT customer_id, $base AS m FROM agg_events GROUP BY 1) b USING (customer_id)
		WHERE a.m IS DISTINCT FROM b.m")
	[ "$differing" = 0 ] || die "$ours differs from $base for $differing customers"
done

for table in agg_events agg_events_random; do
	export AGG_TABLE=$table
	floor() { sql -c "$(q "count(*)" "$AGG_TABLE")"; }
	most_base() { sql -c "$(q "$MOST_BASE" "$AGG_TABLE")"; }
	most() { sql -c "$(q "$MOST" "$AGG_TABLE")"; }
	uniq_base() { sql -c "$(q "$UNIQ_BASE" "$AGG_TABLE")"; }
	uniq() { sql -c "$(q "$UNIQ" "$AGG_TABLE")"; }
	list_base() { sql -c "$(q "$LIST_BASE" "$AGG_TABLE")"; }
	list() { sql -c "$(q "$LIST" "$AGG_TABLE")"; }
	first_base() { sql -c "$(q "$FIRST_BASE" "$AGG_TABLE")"; }
	first() { sql -c "$(q "$FIRST" "$AGG_TABLE")"; }
	last_base() { sql -c "$(q "$LAST_BASE" "$AGG_TABLE")"; }
	last() { sql -c "$(q "$LAST" "$AGG_TABLE")"; }
	export -f floor most_base most uniq_base uniq list_base list first_base first last_base last q
	export MOST_BASE MOST UNIQ_BASE UNIQ LIST_BASE LIST FIRST_BASE FIRST LAST_BASE LAST

	compare "most_frequent, $table" "mode() WITHIN GROUP" most_base "most_frequent(v)" most "" ">= 2x"
	compare "num_of_unique, $table" "count(DISTINCT v)" uniq_base "num_of_unique(v)" uniq "" ">= 1.5x"
	compare "unique_list, $table" "array_agg(DISTINCT v ORDER BY v)" list_base "unique_list(v)" list "" ">= 1.5x"
	compare "first, $table" "(array_agg(v ORDER BY t))[1]" first_base "first(v, t)" first "" ">= 3x"
	compare "last, $table" "(array_agg(v ORDER BY t DESC))[1]" last_base "last(v, t)" last "" ">= 3x"
	compare "floor: count(*) by customer, $table" "count(*) GROUP BY" floor "most_frequent(v)" most "" "-"
done

# Memory: the peak of the hash aggregation (serial, not spilling) per group,
# and what the aggregate's state adds to a count(*) over the same groups.
sql -c "
CREATE OR REPLACE FUNCTION bench_hashagg_peak_kb(query text) RETURNS numeric LANGUAGE plpgsql AS \$\$
DECLARE
	plan jsonb;
BEGIN
	SET LOCAL work_mem = '2GB';
	SET LOCAL max_parallel_workers_per_gather = 0;
	SET LOCAL enable_sort = off;
	EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) ' || query INTO plan;
	RETURN (SELECT (p->>'Peak Memory Usage')::numeric FROM jsonb_path_query(plan, 'strict \$.**') p
			 WHERE jsonb_typeof(p) = 'object' AND p ? 'Peak Memory Usage' LIMIT 1);
END \$\$"
floor_kb=$(sql -c "SELECT bench_hashagg_peak_kb(\$q\$$(q "count(*)" agg_events)\$q\$)")
report "memory: count(*) by customer (hash table alone)" "$floor_kb kB, $(awk -v k="$floor_kb" -v g="$AGG_GROUPS" 'BEGIN { printf "%.0f", k * 1024 / g }') bytes/group"
for agg in "$MOST" "$UNIQ" "$LIST" "$FIRST" "$LAST" "$MOST_BASE" "$UNIQ_BASE"; do
	kb=$(sql -c "SELECT bench_hashagg_peak_kb(\$q\$$(q "$agg" agg_events)\$q\$)")
	if [ -n "$kb" ]; then
		report "memory: $agg" "$kb kB peak: $(awk -v k="$kb" -v g="$AGG_GROUPS" 'BEGIN { printf "%.0f", k * 1024 / g }') bytes/group, state $(awk -v k="$kb" -v f="$floor_kb" -v g="$AGG_GROUPS" 'BEGIN { printf "%.0f", (k - f) * 1024 / g }') bytes/group"
	else
		report "memory: $agg" "no hash aggregation (sorted: one group's state at a time)"
	fi
done
