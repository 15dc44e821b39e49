#!/bin/bash
# Concurrency soak of cdp_traits (not part of CI): every feature at once on
# one cluster with the worker enabled, then the invariants.  See README
# ("Development").  Usage, as root, from the repository:
#   PGP=/tmp/pgp-X SOAK_DIR=/tmp/soak-X SOAK_PORT=5464 SOAK_SECONDS=600 SOAK_EVENTS=60000 bash test/soak/soak.sh
# PGP is an install made by mkpgp.sh-like scripts (BIN = $PGP/usr/lib/postgresql/15/bin);
# with PGP unset the system's PostgreSQL 15 is used.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${PGP:+$PGP/usr/lib/postgresql/15/bin}
BIN=${BIN:-/usr/lib/postgresql/15/bin}
D=${SOAK_DIR:-/tmp/soak}
PORT=${SOAK_PORT:-5464}
SECS=${SOAK_SECONDS:-600}
EVENTS=${SOAK_EVENTS:-60000}
RUN="runuser -u postgres --"
PSQL="$RUN $BIN/psql -X -q -h $D -p $PORT"

$RUN $BIN/pg_ctl -D $D/data -m immediate stop >/dev/null 2>&1
rm -rf $D; mkdir -p $D/out $D/copy; chown -R postgres $D
$RUN $BIN/initdb -D $D/data -E UTF8 --no-locale >/dev/null || exit 1
cat >> $D/data/postgresql.conf <<EOC
port = $PORT
unix_socket_directories = '$D'
listen_addresses = ''
shared_preload_libraries = 'cdp_traits'
cdp_traits.enabled = on
cdp_traits.database = soak
cdp_traits.naptime = 2s
cdp_traits.recalculate_after = '1min'
cdp_traits.context_ttl = '20s'
max_worker_processes = 16
max_connections = 40
deadlock_timeout = 200ms
log_line_prefix = '%m [%p] %a: '
log_min_messages = warning
log_lock_waits = on
EOC
# (core files in $D/data: a crash is reported by check.sh; gdb $BIN/postgres <core>)
$RUN bash -c "ulimit -c unlimited; $BIN/pg_ctl -D $D/data -l $D/log -w start" >/dev/null || exit 1
$RUN $BIN/createdb -h $D -p $PORT soak
echo "setup: $EVENTS events"
$PSQL -d soak -v gen=$REPO/test/gen/cdp_gen.sql -v events=$EVENTS -f $HERE/setup.sql || exit 1
# COPY batches: files of 200 new events each, loaded once each
$PSQL -d soak -c "DO \$\$ BEGIN FOR i IN 1..300 LOOP
  EXECUTE format('COPY (SELECT * FROM public.soak_events(200)) TO %L', '$D/copy/' || i || '.csv'); END LOOP; END \$\$"

END=$(( $(date +%s) + SECS ))
# worker NAME SQL-GENERATOR: one long session fed by the generator until END
worker() {
	local name=$1; shift
	( i=0; while [ $(date +%s) -lt $END ]; do i=$((i + 1)); "$@" $i; done ) |
		PGAPPNAME=soak_$name $PSQL -d soak -v ON_ERROR_STOP=0 >$D/out/$name.out 2>$D/out/$name.err &
	PIDS="$PIDS $!"
}

ins() {		# inserts of linking events, small batches, sometimes in a transaction
	echo "INSERT INTO cdp_ce.customer_events SELECT * FROM public.soak_events(1 + (random() * 20)::int);"
	[ $(($1 % 5)) = 0 ] && echo "BEGIN; INSERT INTO cdp_ce.customer_events SELECT * FROM public.soak_events(3); INSERT INTO cdp_ce.customer_events SELECT * FROM public.soak_events(3); COMMIT;"
	sleep 0.05
}
upd() {		# identifiers changed (merges and splits), updates that change nothing stitched
	echo "UPDATE cdp_ce.customer_events SET payload = public.soak_payload(source_id) WHERE id IN (SELECT id FROM cdp_ce.customer_events TABLESAMPLE SYSTEM (0.05) LIMIT 3);"
	echo "UPDATE cdp_ce.customer_events SET payload = payload || '{\"touched\": 1}' WHERE id IN (SELECT id FROM cdp_ce.customer_events TABLESAMPLE SYSTEM (0.05) LIMIT 2);"
	[ $(($1 % 7)) = 0 ] && echo "UPDATE cdp_ce.customer_events SET event_time = event_time + interval '10 days' WHERE id IN (SELECT id FROM cdp_ce.customer_events TABLESAMPLE SYSTEM (0.05) WHERE event_time < '2025-12-01' LIMIT 2);"
	sleep 0.1
}
del() {		# deletes (splits, entities that go)
	echo "DELETE FROM cdp_ce.customer_events WHERE id IN (SELECT id FROM cdp_ce.customer_events TABLESAMPLE SYSTEM (0.05) LIMIT 3);"
	sleep 0.15
}
cpy() {		# COPY batches
	[ -f $D/copy/$1.csv ] && echo "COPY cdp_ce.customer_events FROM '$D/copy/$1.csv';"
	sleep 1
}
seg() {		# segment ingestion: new events, duplicate deliveries, removes, batches
	echo "SELECT cdp_traits.ingest_segment_event(jsonb_build_object('event', gen_random_uuid(), 'user', 'user' || (1 + (random() * 2500)::int), 'segment', jsonb_build_object('vendor', 7, 'name', (ARRAY['news', 'cart', 'high', 'new'])[1 + (random() * 3)::int]), 'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) || CASE WHEN random() < 0.4 THEN '{\"remove\": true}' ELSE jsonb_build_object('value', 'v' || (random() * 3)::int) END);"
	echo "SELECT cdp_traits.ingest_segment_event(jsonb_build_object('event', md5('dup' || (random() * 300)::int)::uuid, 'user', 'dupuser' || (random() * 30)::int, 'segment', jsonb_build_object('vendor', 8, 'name', 'dups'), 'timestamp', '2025-05-01T10:00:00Z'));"
	[ $(($1 % 10)) = 0 ] && echo "INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, \"timestamp\", remove) SELECT gen_random_uuid(), 'user' || (1 + (random() * 2500)::int), 7, 'cart', now(), random() < 0.5 FROM generate_series(1, 50);"
	sleep 0.05
}
calc() {	# periodic calculations and jobs by hand, restitch now and then
	echo "SELECT cdp_traits.calculate_attributes();"
	[ $(($1 % 3)) = 0 ] && echo "SELECT cdp_traits.refresh_context();"
	[ $(($1 % 4)) = 0 ] && echo "SELECT cdp_traits.run_jobs();"
	[ $(($1 % 15)) = 0 ] && echo "SELECT cdp_traits.restitch();"
	[ $(($1 % 10)) = 0 ] && echo "UPDATE analytics.ltv SET value = value + 1 WHERE random() < 0.1; INSERT INTO analytics.ltv SELECT id, 5 FROM cdp_traits.customer_entities TABLESAMPLE SYSTEM (1) LIMIT 20;"
	sleep 2
}
edit() {	# edits of rules, blocklist, definitions, context
	case $(($1 % 8)) in
	0) echo "INSERT INTO cdp_traits.stitching_blocklist VALUES ('email', 'name.7@example.com');" ;;
	1) echo "DELETE FROM cdp_traits.stitching_blocklist WHERE attribute_id = 'email' AND value = 'name.7@example.com';" ;;
	2) echo "UPDATE cdp_traits.attributes SET definition = definition || jsonb_build_object('filter', 'event_time > ''2025-0' || (1 + $1 % 9) || '-01''') WHERE id = 'top_device';" ;;
	3) echo "INSERT INTO cdp_traits.attributes VALUES ('temp_attr', '{\"type\": \"first\", \"value\": \"payload->>''campaign''\"}') ON CONFLICT (id) DO UPDATE SET definition = '{\"type\": \"list\", \"value\": \"payload->>''campaign''\"}';" ;;
	4) echo "DELETE FROM cdp_traits.attributes WHERE id = 'temp_attr';" ;;
	5) echo "UPDATE cdp_traits.context SET query = 'SELECT count(*) + $1 FROM cdp_traits.customer_entities' WHERE key = 'customers'; UPDATE cdp_traits.context SET value = ((random() * 200)::int)::text WHERE key = 'threshold';" ;;
	6) echo "INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, value_expression) VALUES ('campaign_x', 'esp', 'payload->>''campaign_x''');" ;;
	7) echo "DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'campaign_x';"
	   echo "UPDATE cdp_traits.attributes SET definition = jsonb_build_object('type', 'audience', 'condition', 'events_n >= ' || (15 + $1 % 10) || ' AND NOT coalesce(vip, false)') WHERE id = 'active';" ;;
	esac
	sleep 1.5
}
ddl() {		# publish/unpublish, partition attach/detach/drop
	case $(($1 % 6)) in
	0) echo "SELECT cdp_traits.publish('public');" ;;
	1) echo "SELECT cdp_traits.unpublish();" ;;
	2) echo "CREATE TABLE cdp_ce.ev_x (LIKE cdp_ce.customer_events INCLUDING ALL); INSERT INTO cdp_ce.ev_x SELECT id, source_id, type, version, timestamptz '2030-01-01 00:00+00' + random() * interval '20 days', payload FROM public.soak_events(200); ALTER TABLE cdp_ce.customer_events ATTACH PARTITION cdp_ce.ev_x FOR VALUES FROM ('2030-01-01') TO ('2030-02-01');" ;;
	3) echo "INSERT INTO cdp_ce.customer_events SELECT id, source_id, type, version, timestamptz '2030-01-02 00:00+00', payload FROM public.soak_events(20);" ;;
	4) echo "ALTER TABLE cdp_ce.customer_events DETACH PARTITION cdp_ce.ev_x;" ;;
	5) echo "DROP TABLE cdp_ce.ev_x;" ;;
	esac
	sleep 3
}
look() {	# readers of the graph: the whole base's bridges, one entity's
	echo "SELECT count(*) AS bridges FROM cdp_traits.bridging_identifiers();"
	echo "SELECT count(*) AS bridges FROM cdp_traits.bridging_identifiers((SELECT id FROM cdp_traits.customer_entities ORDER BY random() LIMIT 1));"
	echo "SELECT count(*) AS graph_rows FROM cdp_traits.explain_entity((SELECT id FROM cdp_traits.customer_entities ORDER BY random() LIMIT 1));"
	sleep 1
}
cancel() {	# cancels of random backends of the soak and of the worker
	echo "SELECT pg_cancel_backend(pid), application_name, left(query, 60) FROM pg_stat_activity WHERE (application_name LIKE 'soak\\_%' OR backend_type = 'cdp_traits worker') AND application_name <> 'soak_cancel' AND state = 'active' ORDER BY random() LIMIT 1;"
	sleep $(( 2 + RANDOM % 3 ))
}

PIDS=
echo "soak: $SECS s from $(date -u +%T)"
worker ins1 ins; worker ins2 ins; worker upd upd; worker del del; worker cpy cpy
worker seg1 seg; worker seg2 seg; worker calc calc; worker edit edit; worker ddl ddl; worker look look
worker cancel cancel
# the generators stop at END; psql may still have statements queued in its
# pipe: give it 30 s, then end the sessions (their open transactions roll back)
alive() { for p in $PIDS; do kill -0 $p 2>/dev/null && return 0; done; return 1; }
while [ $(date +%s) -lt $((END + 30)) ] && alive; do sleep 2; done
for p in $PIDS; do kill $p 2>/dev/null; done
wait $PIDS 2>/dev/null
# (a backend whose psql went notices only when it next writes to it)
$PSQL -d soak -c "SELECT count(pg_terminate_backend(pid)) AS sessions_ended FROM pg_stat_activity WHERE application_name LIKE 'soak\\_%'"
echo "soak ended $(date -u +%T); checking"
bash $HERE/check.sh
[ -n "${SOAK_KEEP:-}" ] || $RUN $BIN/pg_ctl -D $D/data -m fast stop >/dev/null
