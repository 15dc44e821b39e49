# Setup shared by the stitching cases: BENCH_EVENTS generated events in
# "events" (attached) and "events_plain" (a copy, not attached), the
# generator's rules, and the label-propagation baseline.  Sourced by them.

say "stitching: loading $BENCH_EVENTS events"
sql -f "$DIR/cdp_gen.sql" >/dev/null
sql >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cdp_traits;
DROP TABLE IF EXISTS events, events_plain CASCADE;
CREATE TABLE events (id uuid PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                     version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb NOT NULL);
SELECT cdp_gen.load_events('events', $BENCH_EVENTS);
CREATE TABLE events_plain (LIKE events INCLUDING ALL);
INSERT INTO events_plain SELECT * FROM events;
VACUUM ANALYZE events;
VACUUM ANALYZE events_plain;
DELETE FROM cdp_traits.stitching_rules;
INSERT INTO cdp_traits.stitching_rules SELECT * FROM cdp_gen.rules();
SELECT cdp_traits.attach_events('events');

-- The baseline: iterative label propagation in plain SQL, the way dbt
-- identity-resolution packages do it: an edge table of (event, identifier)
-- from the same rules and blocklist, then "every node takes the smallest
-- label among its neighbours" until nothing changes, each step a new table.
CREATE OR REPLACE FUNCTION bench_label_propagation() RETURNS integer
LANGUAGE plpgsql AS \$\$
DECLARE
	changed bigint;
	iterations integer := 0;
BEGIN
	DROP TABLE IF EXISTS lp_edges, lp_label, lp_ident, lp_next;
	CREATE TABLE lp_edges AS
	SELECT e.id::text AS event_id, x.attr || ':' || x.val AS ident
	  FROM events e CROSS JOIN LATERAL (VALUES
		('email', CASE WHEN e.source_id IN ('web', 'crm', 'esp') THEN lower(btrim(e.payload->>'email')) END),
		('cookie_id', CASE WHEN e.source_id = 'web' THEN e.payload->>'cookie_id' END),
		('device_id', CASE WHEN e.source_id = 'app' THEN e.payload->>'device_id' END),
		('user_id', CASE WHEN e.source_id IN ('app', 'crm') THEN e.payload->>'user_id' END),
		('loyalty_card', CASE WHEN e.source_id IN ('crm', 'pos') THEN e.payload->>'loyalty_card' END)) x(attr, val)
	 WHERE x.val IS NOT NULL
	   AND lower(btrim(x.val)) NOT IN (SELECT lower(btrim(value)) FROM cdp_traits.stitching_blocklist);
	CREATE TABLE lp_label AS SELECT DISTINCT event_id, event_id AS label FROM lp_edges;
	LOOP
		iterations := iterations + 1;
		CREATE TABLE lp_ident AS
		SELECT e.ident, min(l.label) AS label FROM lp_edges e JOIN lp_label l USING (event_id) GROUP BY e.ident;
		CREATE TABLE lp_next AS
		SELECT e.event_id, min(i.label) AS label FROM lp_edges e JOIN lp_ident i USING (ident) GROUP BY e.event_id;
		SELECT count(*) INTO changed FROM lp_next n JOIN lp_label l USING (event_id) WHERE n.label <> l.label;
		DROP TABLE lp_label, lp_ident;
		ALTER TABLE lp_next RENAME TO lp_label;
		EXIT WHEN changed = 0;
	END LOOP;
	RETURN iterations;
END \$\$;
SQL

