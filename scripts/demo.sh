#!/usr/bin/env bash
# The cdp_traits demo: installs what it needs, builds and installs the
# extension, starts a throw-away PostgreSQL cluster, loads a realistic sample
# of customer events, runs everything the extension does, prints a summary a
# person can read, and stops the cluster again.
#
#   bash scripts/demo.sh               100,000 events
#   DEMO_EVENTS=1000000 bash scripts/demo.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EVENTS=${DEMO_EVENTS:-100000}
PORT=${DEMO_PORT:-54329}
DIR=$(mktemp -d /tmp/cdp_traits-demo.XXXXXX)

ensure_deps
build_install
say "starting a throw-away cluster in $DIR (port $PORT)"
start_cluster "$DIR" "$PORT" "cdp_traits.database = 'demo'
shared_buffers = 512MB
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = 4GB"
# the postgres user must be able to read the demo's SQL files
cp "$REPO/scripts/demo.sql" "$REPO/test/gen/cdp_gen.sql" "$DIR/"
chown postgres: "$DIR"/*.sql
as_postgres createdb -h "$DIR" -p "$PORT" demo

say "loading $EVENTS generated events and running cdp_traits"
as_postgres psql -h "$DIR" -p "$PORT" -d demo -X -q -v ON_ERROR_STOP=1 \
	-v events="$EVENTS" -v gen="$DIR/cdp_gen.sql" -f "$DIR/demo.sql"
say "done; the cluster is stopped and removed"
