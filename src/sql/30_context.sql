
/*
 * Context (SPEC section 5): whole-customer-base figures in a key-value table,
 * each refreshed by its query when older than cdp_traits.context_ttl.
 */

-- Internal helpers shared by context and attributes: checking SQL fragments
-- without running them, and describing prepared statements.
CREATE FUNCTION cdp_traits._sql_problem(sql text, kind text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_sql_problem';
COMMENT ON FUNCTION cdp_traits._sql_problem(text, text) IS
	'internal: NULL if sql is one expression (kind expression) or one plain SELECT (kind query), else the problem';
CREATE FUNCTION cdp_traits._expression_columns(expr text) RETURNS text[]
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_expression_columns';
COMMENT ON FUNCTION cdp_traits._expression_columns(text) IS
	'internal: the column names an expression refers to';
CREATE FUNCTION cdp_traits._query_columns(sql text, OUT name text, OUT type regtype)
RETURNS SETOF record
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_query_columns';
COMMENT ON FUNCTION cdp_traits._query_columns(text) IS
	'internal: the result columns of a statement (prepared, not run)';
CREATE FUNCTION cdp_traits._query_returns_set(sql text) RETURNS boolean
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_query_returns_set';
COMMENT ON FUNCTION cdp_traits._query_returns_set(text) IS
	'internal: whether a SELECT''s target list is set-returning (prepared, not run)';
CREATE FUNCTION cdp_traits._query_deps(sql text, OUT rels oid[], OUT funcs oid[], OUT immutable boolean)
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'cdp_query_deps';
COMMENT ON FUNCTION cdp_traits._query_deps(text) IS
	'internal: the relations and functions a statement names, and whether it calls only immutable functions (parse-analysed, not run; views not looked into)';

-- Conversions that return NULL instead of failing (attribute data types).
CREATE FUNCTION cdp_traits._to_boolean(text) RETURNS boolean
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_boolean';
CREATE FUNCTION cdp_traits._to_date(text) RETURNS date
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_date';
CREATE FUNCTION cdp_traits._to_timestamptz(text) RETURNS timestamptz
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_timestamptz';
CREATE FUNCTION cdp_traits._to_uuid(text) RETURNS uuid
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_uuid';
CREATE FUNCTION cdp_traits._to_float8(text) RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_float8';
COMMENT ON FUNCTION cdp_traits._to_boolean(text) IS 'text to boolean, NULL when it is not one';
COMMENT ON FUNCTION cdp_traits._to_date(text) IS 'text to date, NULL when it is not one';
COMMENT ON FUNCTION cdp_traits._to_uuid(text) IS 'text to uuid (surrounding blanks ignored), NULL when it is not one';
COMMENT ON FUNCTION cdp_traits._to_float8(text) IS
	'text to float8 (a weight), NULL when it is not a number as to_number reads it or beyond float8''s range';
COMMENT ON FUNCTION cdp_traits._to_timestamptz(text) IS
	'text to timestamptz (no offset = session time zone), NULL when it is not one';

CREATE TABLE cdp_traits.context (
	key text PRIMARY KEY,
	value text,
	query text,
	-- the last successful refresh, in UTC (see refresh_context)
	modified timestamp,
	-- the last refresh that failed: its error and time (cleared by a success)
	error text,
	error_at timestamptz
);
COMMENT ON TABLE cdp_traits.context IS
	'whole-customer-base figures: value is the first column of the first row of query, refreshed when older than cdp_traits.context_ttl';

-- A context query must be one SELECT; checked when written, nothing stored
-- otherwise.  It is read as refresh_context reads it (standard_conforming
-- strings on), whatever the writer's session has.
CREATE FUNCTION cdp_traits._context_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET standard_conforming_strings = on
SET transform_null_equals = off
AS $$
DECLARE
	problem text;
BEGIN
	-- a changed or removed query: the last refresh's error was the old
	-- query's (on a key made a plain value, never refreshed, it stayed)
	IF TG_OP = 'UPDATE' AND NEW.query IS DISTINCT FROM OLD.query THEN
		NEW.error := NULL;
		NEW.error_at := NULL;
	END IF;
	IF NEW.query IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.query IS DISTINCT FROM OLD.query) THEN
		problem := cdp_traits._sql_problem(NEW.query, 'query');
		IF problem IS NOT NULL THEN
			RAISE EXCEPTION 'invalid query for context key "%": %', NEW.key, problem
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Query: %s', NEW.query),
					  HINT = 'A context query is one SELECT; its first column of the first row becomes the value.';
		END IF;
		BEGIN
			PERFORM cdp_traits._query_columns(NEW.query);
		EXCEPTION WHEN OTHERS THEN
			DECLARE
				msg text;
				state text;
			BEGIN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
				-- (a name not found: the writer's search_path is not the
				-- query's, which may be why)
				IF state IN ('42P01', '42883', '42704', '3F000') THEN
					RAISE EXCEPTION 'invalid query for context key "%": %', NEW.key, msg
						USING ERRCODE = 'invalid_parameter_value',
							  DETAIL = format('Query: %s', NEW.query),
							  HINT = 'Context queries run with search_path = pg_catalog, cdp_traits, pg_temp: schema-qualify your own tables, types and functions.';
				END IF;
				RAISE EXCEPTION 'invalid query for context key "%": %', NEW.key, msg
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = format('Query: %s', NEW.query);
			END;
		END;
		-- a new or changed query runs at the next refresh, unless the row comes
		-- with its value and refresh time (as a restore from pg_dump does)
		IF TG_OP = 'UPDATE' OR NEW.value IS NULL THEN
			NEW.modified := NULL;
		END IF;
	END IF;
	RETURN NEW;
END;
$$;
CREATE TRIGGER context_check BEFORE INSERT OR UPDATE ON cdp_traits.context
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._context_check();

-- The time limit of each context query (cdp_traits.context_timeout; see
-- src/context.c).
CREATE FUNCTION cdp_traits._context_timer(arm boolean) RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_context_timer';
COMMENT ON FUNCTION cdp_traits._context_timer(boolean) IS
	'internal: arm (true) or disarm (false) the time limit of one context query; disarming returns whether it fired';
-- The time limit of each custom or external attribute's query
-- (cdp_traits.attribute_timeout; the same timer, see src/context.c).
CREATE FUNCTION cdp_traits._attribute_timer(arm boolean) RETURNS boolean
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_attribute_timer';
COMMENT ON FUNCTION cdp_traits._attribute_timer(boolean) IS
	'internal: arm (true) or disarm (false) the time limit of one custom or external attribute''s query; disarming returns whether it fired';

-- Runs in UTC (as calculate_attributes does): modified is a timestamp without
-- time zone (SPEC section 5), stored and compared as UTC, so that staleness
-- does not depend on the TimeZone of the session that refreshed or of the
-- one that refreshes now; and the text stored of a query's time (a
-- timestamptz, a date_trunc) does not depend on them either; nor does the
-- text of an interval, a float8 or a bytea (IntervalStyle,
-- extra_float_digits, bytea_output, xmlbinary, xmloption), nor the names and separators of
-- to_char (lc_time, lc_numeric, lc_monetary: 'TMMonth', '9G999D99' and
-- 'L' gave the session's locale, the worker the server's); and the
-- queries are read as SQL
-- reads them by default (standard_conforming_strings on: '\d' is a
-- backslash and a d; transform_null_equals off).  plpgsql.extra_errors and
-- extra_warnings off: the value is the first column of the first row,
-- which their checks too_many_rows and strict_multi_assignment would make
-- an error (or a warning per refresh) for a query of more rows or columns.
-- row_security off, as calculate_attributes has it (and its refresh had
-- it): a query over a table with a row-level security policy is refused
-- and recorded, rather than run the policy's functions, written by that
-- table's owner, with the rights of the admin or worker refreshing, and
-- store the part of the figure the policy lets through.
CREATE FUNCTION cdp_traits.refresh_context(force boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET lc_numeric = 'C'
SET lc_time = 'C'
SET xmlbinary = 'base64'
SET xmloption = 'content'
SET standard_conforming_strings = on
SET transform_null_equals = off
SET array_nulls = on
SET quote_all_identifiers = off
SET plpgsql.extra_errors = 'none'
SET plpgsql.extra_warnings = 'none'
SET row_security = off
AS $$
DECLARE
	k record;
	v text;
	n integer := 0;
	msg text;
	ttl interval := cdp_traits._setting('cdp_traits.context_ttl')::interval;
BEGIN
	-- the calculation lock, as calculate_attributes takes it before it
	-- refreshes: the context rows updated here stay locked to the end of
	-- the caller's transaction, so a caller that refreshes and then
	-- calculates (run_jobs(), or by hand) would otherwise wait for a
	-- calculation that waits for those rows (a deadlock)
	PERFORM cdp_traits._calculation_lock();
	FOR k IN
		SELECT c.key, c.query FROM cdp_traits.context c
		 WHERE c.query IS NOT NULL
		   AND (force OR c.modified IS NULL OR c.modified < LOCALTIMESTAMP - ttl)
		 ORDER BY c.key
	LOOP
		msg := NULL;
		BEGIN
			-- each query within cdp_traits.context_timeout (see context.c)
			PERFORM cdp_traits._context_timer(true);
			-- first column of the first row; no row gives NULL
			EXECUTE k.query INTO v;
			PERFORM cdp_traits._context_timer(false);
			-- (only while the key has the query run: one changed meanwhile
			-- runs at the next refresh, and a key made a plain value keeps
			-- the value it was given; the old query's result written over
			-- them, stamped fresh, stood until context_ttl had passed.  And
			-- not a key a transaction still open is changing: it stays
			-- stale, and the next refresh runs what that transaction left;
			-- waiting for it held the calculation lock, and the worker's
			-- every run, for as long as it stayed open)
			PERFORM FROM cdp_traits.context c
			  WHERE c.key = k.key AND c.query = k.query FOR NO KEY UPDATE SKIP LOCKED;
			IF FOUND THEN
				UPDATE cdp_traits.context
				   SET value = v, modified = LOCALTIMESTAMP, error = NULL, error_at = NULL
				 WHERE key = k.key;
				n := n + 1;
			ELSIF EXISTS (SELECT FROM cdp_traits.context c WHERE c.key = k.key AND c.query = k.query) THEN
				-- (said, not silent: an admin session left open stalls the
				-- key for as long, and its value stays stale)
				RAISE WARNING 'context key "%" was not refreshed: a transaction in progress is changing it', k.key
					USING DETAIL = 'Its value stays as it is; the next refresh after that transaction ends runs its query.',
						  HINT = 'Look for an open transaction that changed cdp_traits.context (pg_stat_activity: idle in transaction).';
			END IF;
		EXCEPTION
			WHEN query_canceled THEN
				-- this key's time limit: its failure; any other cancel
				-- (a user's, the caller's statement timeout) ends the refresh
				IF NOT cdp_traits._context_timer(false) THEN
					RAISE;
				END IF;
				msg := pg_catalog.format('query canceled after cdp_traits.context_timeout (%s)',
										 cdp_traits._setting('cdp_traits.context_timeout'));
			WHEN OTHERS THEN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		END;
		IF msg IS NOT NULL THEN
			-- (as above: on the query that failed, without waiting)
			PERFORM FROM cdp_traits.context c
			  WHERE c.key = k.key AND c.query = k.query FOR NO KEY UPDATE SKIP LOCKED;
			IF FOUND THEN
				UPDATE cdp_traits.context SET error = msg, error_at = pg_catalog.now()
				 WHERE key = k.key;
			END IF;
			RAISE WARNING 'context key "%" was not refreshed: %', k.key, msg;
		END IF;
	END LOOP;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION cdp_traits.refresh_context(boolean) IS
	'run the query of every stale context key (all with force); a failing query keeps the old value and records its error; returns the number refreshed';

CREATE FUNCTION cdp_traits.context_value(key text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT c.value FROM cdp_traits.context c WHERE c.key = $1 $$;
COMMENT ON FUNCTION cdp_traits.context_value(text) IS 'the value stored for a context key (NULL if none)';
