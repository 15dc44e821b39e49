-- The demo's SQL (run by scripts/demo.sh): a realistic sample, then every
-- step of cdp_traits that exists so far, with a readable summary.
\pset footer off
\set ECHO none
\i :gen
SET client_min_messages = warning;

\echo
\echo '== 1. The customer event log (an existing CDP table, cdp_ce.customer_events)'
CREATE EXTENSION cdp_traits;
CREATE SCHEMA cdp_ce;
CREATE TABLE cdp_ce.customer_events (
	id uuid PRIMARY KEY,
	source_id text NOT NULL,
	type text NOT NULL,
	version text NOT NULL,
	event_time timestamptz NOT NULL,
	payload jsonb NOT NULL
);
\timing on
SELECT cdp_gen.load_events('cdp_ce.customer_events', :events) AS events_loaded;
\timing off
SELECT source_id AS source, count(*) AS events,
       count(DISTINCT type) AS event_types,
       min(event_time)::date AS first, max(event_time)::date AS last
  FROM cdp_ce.customer_events GROUP BY 1 ORDER BY 2 DESC;
