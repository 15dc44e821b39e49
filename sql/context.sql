-- Context (SPEC section 5): key-value figures refreshed by their queries.
\set SHOW_CONTEXT never
-- a fresh extension: no state from earlier tests
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS ev CASCADE;
RESET client_min_messages;
CREATE TABLE numbers (n int);
INSERT INTO numbers SELECT generate_series(1, 10);

INSERT INTO cdp_traits.context (key, value, query) VALUES
  ('static', 'fixed', NULL),
  ('total', NULL, 'SELECT sum(n) FROM public.numbers'),
  ('two_cols', NULL, 'SELECT ''first'', ''second'''),
  ('empty', 'old', 'SELECT n FROM public.numbers WHERE false'),
  ('entities', NULL, 'SELECT count(*) >= 0 FROM customer_entities');
-- new queries have no modified time: all four run
SELECT cdp_traits.refresh_context();
SELECT key, value, modified IS NOT NULL AS refreshed, error FROM cdp_traits.context ORDER BY key;
SELECT cdp_traits.context_value('total'), cdp_traits.context_value('static'),
       cdp_traits.context_value('no such key') IS NULL AS missing;
-- the queries run with search_path = pg_catalog, cdp_traits, pg_temp: a
-- table found through the writer's search_path is not theirs, and the error
-- says so (it only said the table did not exist)
INSERT INTO cdp_traits.context (key, query) VALUES ('unqualified', 'SELECT sum(n) FROM numbers');

-- fresh values are not refreshed again; force refreshes all
INSERT INTO numbers VALUES (100);
SELECT cdp_traits.refresh_context();
SELECT cdp_traits.context_value('total');
SELECT cdp_traits.refresh_context(force => true);
SELECT cdp_traits.context_value('total');

-- older than cdp_traits.context_ttl: refreshed
INSERT INTO numbers VALUES (1000);
UPDATE cdp_traits.context SET modified = (now() AT TIME ZONE 'UTC') - interval '25 hours' WHERE key = 'total';
SELECT cdp_traits.refresh_context();
SELECT cdp_traits.context_value('total');
SET cdp_traits.context_ttl = '1h';
UPDATE cdp_traits.context SET modified = (now() AT TIME ZONE 'UTC') - interval '2 hours' WHERE key = 'total';
SELECT cdp_traits.refresh_context();
RESET cdp_traits.context_ttl;

-- a changed query runs at the next refresh
UPDATE cdp_traits.context SET query = 'SELECT max(n) FROM public.numbers' WHERE key = 'total';
SELECT modified IS NULL AS pending FROM cdp_traits.context WHERE key = 'total';
SELECT cdp_traits.refresh_context();
SELECT cdp_traits.context_value('total');

-- a failing query keeps the old value and records the error; the others still run
UPDATE cdp_traits.context SET query = 'SELECT 1 / (SELECT count(*) - count(*) FROM public.numbers)' WHERE key = 'static';
UPDATE cdp_traits.context SET query = 'SELECT min(n) FROM public.numbers' WHERE key = 'total';
SELECT cdp_traits.refresh_context();
SELECT key, value, error, error_at IS NOT NULL AS failed FROM cdp_traits.context WHERE key IN ('static', 'total') ORDER BY key;
-- fixed: the error is cleared
UPDATE cdp_traits.context SET query = 'SELECT ''fixed again''' WHERE key = 'static';
SELECT cdp_traits.refresh_context();
SELECT key, value, error FROM cdp_traits.context WHERE key = 'static';
-- a failing key made a plain value (no query: never refreshed) or given
-- another query: the old query's error goes with it (it stayed, on a plain
-- value for good)
INSERT INTO cdp_traits.context (key, query) VALUES
  ('to_plain', 'SELECT 1 / (SELECT count(*) - count(*) FROM public.numbers)'),
  ('to_other', 'SELECT 1 / (SELECT count(*) - count(*) FROM public.numbers)');
SELECT cdp_traits.refresh_context();
UPDATE cdp_traits.context SET query = NULL, value = 'typed' WHERE key = 'to_plain';
UPDATE cdp_traits.context SET query = 'SELECT 2' WHERE key = 'to_other';
SELECT key, value, modified IS NULL AS pending, error, error_at IS NULL AS no_error_at FROM cdp_traits.context
 WHERE key IN ('to_plain', 'to_other') ORDER BY key;
DELETE FROM cdp_traits.context WHERE key IN ('to_plain', 'to_other');

-- a dropped table is recorded as an error, not a failure of the refresh
DROP TABLE numbers;
SELECT cdp_traits.refresh_context(true);
SELECT key, value, error FROM cdp_traits.context WHERE key = 'total';

-- bad queries are rejected when written; nothing is stored
INSERT INTO cdp_traits.context (key, query) VALUES ('bad', 'SELEC 1');
INSERT INTO cdp_traits.context (key, query) VALUES ('bad', 'SELECT 1; SELECT 2');
INSERT INTO cdp_traits.context (key, query) VALUES ('bad', 'DELETE FROM cdp_traits.context');
INSERT INTO cdp_traits.context (key, query) VALUES ('bad', 'WITH d AS (DELETE FROM cdp_traits.context RETURNING 1) SELECT count(*) FROM d');
INSERT INTO cdp_traits.context (key, query) VALUES ('bad', 'SELECT no_such_column FROM cdp_traits.customer_entities');
INSERT INTO cdp_traits.context (key, query) VALUES ('bad', 'SELECT 1 INTO TEMP t');
UPDATE cdp_traits.context SET query = 'SELECT 1 FROM nowhere' WHERE key = 'static';
SELECT key, query FROM cdp_traits.context ORDER BY key;

-- Staleness does not depend on the session's time zone: modified is stored
-- in UTC and compared in UTC, whichever TimeZone refreshed or refreshes.
DELETE FROM cdp_traits.context;
INSERT INTO cdp_traits.context (key, query) VALUES
  ('tz_at', 'SELECT timestamptz ''2025-06-01 12:00:00+00'''),
  ('tz_day', 'SELECT date_trunc(''day'', timestamptz ''2025-06-01 23:30:00+00'')');
SET TimeZone = 'Pacific/Kiritimati';   -- UTC+14
SELECT cdp_traits.refresh_context(true) AS refreshed;
-- stored in UTC, whatever the refreshing session's time zone
SELECT key, abs(extract(epoch FROM modified - (now() AT TIME ZONE 'UTC'))) < 600 AS modified_in_utc
  FROM cdp_traits.context ORDER BY key;
-- 2 hours old under a TTL of 1 hour: stale, from a session in another time zone
SET TimeZone = 'UTC';
SET cdp_traits.context_ttl = '1h';
UPDATE cdp_traits.context SET modified = modified - interval '2 hours';
SELECT cdp_traits.refresh_context() AS refreshed_2;
-- just refreshed in UTC-10, read from UTC+14 and from UTC: fresh
SET TimeZone = 'Pacific/Honolulu';
SELECT cdp_traits.refresh_context(true) AS refreshed;
SET TimeZone = 'Pacific/Kiritimati';
SELECT cdp_traits.refresh_context() AS refreshed_0;
SET TimeZone = 'UTC';
SELECT cdp_traits.refresh_context() AS refreshed_0;
-- the text of a time stored does not depend on the refreshing session's
-- TimeZone or DateStyle (queries run in UTC, ISO)
SET TimeZone = 'Asia/Tokyo';
SET DateStyle = 'SQL, DMY';
SELECT cdp_traits.refresh_context(true) AS refreshed;
SELECT key, value FROM cdp_traits.context ORDER BY key;
RESET DateStyle;
RESET TimeZone;
RESET cdp_traits.context_ttl;
DELETE FROM cdp_traits.context;

-- Each query runs within cdp_traits.context_timeout: one that runs longer is
-- canceled and recorded as its key's error; the other keys still refresh,
-- and the caller goes on (calculate_attributes, which refreshes first, too).
CREATE TABLE numbers (n int);
INSERT INTO numbers VALUES (7);
INSERT INTO cdp_traits.context (key, value, query) VALUES
  ('a_fast', NULL, 'SELECT sum(n) FROM public.numbers'),
  ('b_slow', 'old', 'SELECT pg_catalog.pg_sleep(30)::text'),
  ('c_fast', NULL, 'SELECT count(*) FROM public.numbers');
SET cdp_traits.context_timeout = '200ms';
SELECT cdp_traits.refresh_context() AS refreshed;
SELECT key, value, modified IS NOT NULL AS refreshed, error FROM cdp_traits.context ORDER BY key;
SELECT cdp_traits.calculate_attributes() AS entities;
SELECT error FROM cdp_traits.context WHERE key = 'b_slow';
-- nothing is left armed: a query after a refresh is not canceled by the
-- timer of a key that ended in time, or of one that failed
DELETE FROM cdp_traits.context WHERE key = 'b_slow';
INSERT INTO cdp_traits.context (key, query) VALUES ('d_error', 'SELECT 1 / 0');
SET cdp_traits.context_timeout = '300ms';
BEGIN;
SELECT cdp_traits.refresh_context(true) AS refreshed;
SELECT pg_sleep(0.6);
SELECT 'not canceled' AS after_refresh;
COMMIT;
-- the caller's statement_timeout, when it comes first, cancels the whole
-- refresh (its keys keep what they had: the refresh is rolled back)
INSERT INTO cdp_traits.context (key, value, query) VALUES ('b_slow', 'old', 'SELECT pg_catalog.pg_sleep(30)::text');
SET cdp_traits.context_timeout = '10s';
SET statement_timeout = '300ms';
SELECT cdp_traits.refresh_context(true) AS refreshed;
RESET statement_timeout;
SELECT key, value, error FROM cdp_traits.context WHERE key = 'b_slow';
-- 0: no limit of its own (here the statement timeout ends it)
SET cdp_traits.context_timeout = 0;
SET statement_timeout = '300ms';
SELECT cdp_traits.refresh_context(true) AS refreshed;
RESET statement_timeout;
-- a user's cancel is not a timeout either: it ends the refresh
SET cdp_traits.context_timeout = '10s';
UPDATE cdp_traits.context SET query = 'SELECT pg_catalog.pg_cancel_backend(pg_catalog.pg_backend_pid())::text || pg_catalog.pg_sleep(5)::text' WHERE key = 'b_slow';
SELECT cdp_traits.refresh_context(true) AS refreshed;
SELECT key, value, error FROM cdp_traits.context WHERE key = 'b_slow';
RESET cdp_traits.context_timeout;
SHOW cdp_traits.context_timeout;
DELETE FROM cdp_traits.context;

-- the text stored does not depend on the session's settings: a float8, an
-- interval, a bytea; and a query of more rows or columns gives its first
-- column of the first row even where plpgsql's extra checks are errors
INSERT INTO cdp_traits.context (key, query) VALUES
  ('float', 'SELECT 0.1::float8 + 0.2'),
  ('interval', 'SELECT interval ''1 day 2 hours'''),
  ('bytes', 'SELECT ''\x0102''::bytea'),
  ('rows', 'SELECT x, x * 10 FROM pg_catalog.generate_series(7, 9) x ORDER BY x'),
  ('backslash', 'SELECT ''a\b'''),
  ('null_equals', 'SELECT (NULL = NULL) IS NULL');
SET extra_float_digits = -10;
SET IntervalStyle = iso_8601;
SET bytea_output = escape;
SET plpgsql.extra_errors = 'all';
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SET transform_null_equals = on;
SELECT cdp_traits.refresh_context() AS refreshed;
RESET extra_float_digits;
RESET IntervalStyle;
RESET bytea_output;
RESET plpgsql.extra_errors;
RESET standard_conforming_strings;
RESET escape_string_warning;
RESET transform_null_equals;
SELECT key, value, error FROM cdp_traits.context ORDER BY key;
DELETE FROM cdp_traits.context;
-- a query is checked as refresh_context reads it, whatever the writer's
-- standard_conforming_strings
SET standard_conforming_strings = off;
SET escape_string_warning = off;
INSERT INTO cdp_traits.context (key, query) VALUES ('quoted', $q$SELECT 'it\'s'$q$);
RESET standard_conforming_strings;
RESET escape_string_warning;
SELECT count(*) AS quoted_stored FROM cdp_traits.context;
DROP TABLE numbers;
