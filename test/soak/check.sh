#!/bin/bash
# The soak's checks (called by soak.sh; can be run again on a cluster kept
# with SOAK_KEEP=1): stop the worker, check the invariants, compare the
# values with a forced recalculation in a copy, summarize errors and the log.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${PGP:+$PGP/usr/lib/postgresql/15/bin}
BIN=${BIN:-/usr/lib/postgresql/15/bin}
D=${SOAK_DIR:-/tmp/soak}
PORT=${SOAK_PORT:-5464}
RUN="runuser -u postgres --"
PSQL="$RUN $BIN/psql -X -q -h $D -p $PORT"
$PSQL -d soak -c "ALTER SYSTEM SET cdp_traits.enabled = off" -c "SELECT pg_reload_conf()" >/dev/null
sleep 5
$PSQL -d soak -v ON_ERROR_STOP=0 -f $HERE/check.sql 2>&1 | tee $D/check.out
echo "== attributes: a forced recalculation of all in a copy gives the same values"
$PSQL -d postgres -c "DROP DATABASE IF EXISTS soak_copy" -c "CREATE DATABASE soak_copy TEMPLATE soak"
$PSQL -d soak_copy -v ON_ERROR_STOP=1 <<'EOQ' 2>&1 | tee -a $D/check.out
SET client_min_messages = warning;
SELECT cdp_traits.calculate_attributes() IS NOT NULL AS incremental;
CREATE TEMP TABLE before AS SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes;
SELECT cdp_traits.calculate_attributes(true) IS NOT NULL AS forced;
SELECT attribute_id, count(*) AS differing_after_force, min(customer_entity_id::text) AS example FROM (
  (SELECT * FROM before EXCEPT SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes)
  UNION ALL
  (SELECT customer_entity_id, attribute_id, value FROM cdp_traits.customer_attributes EXCEPT SELECT * FROM before)) s
 GROUP BY 1 ORDER BY 1;
EOQ
echo "== errors by worker (first of each kind)"
for f in $D/out/*.err; do echo "-- $(basename $f): $(grep -c ERROR $f) errors"; grep -o 'ERROR: .*' $f | sed 's/[0-9a-f-]\{36\}/<uuid>/g; s/[0-9]\+/N/g' | sort | uniq -c | sort -rn | head -12; done
echo "== server log"
grep -E 'deadlock detected|could not serialize|unexpected|PANIC|TRAP|terminated by signal|WARNING|server process' $D/log | sed 's/^[^]]*\] //' | sed 's/[0-9a-f-]\{36\}/<uuid>/g; s/[0-9]\+/N/g' | sort | uniq -c | sort -rn | head -40
echo "== core files"
ls -l $D/data/core* 2>/dev/null || echo none
