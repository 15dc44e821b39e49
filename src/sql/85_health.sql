/*
 * health(): one place for a DBA or a monitoring system to see whether
 * cdp_traits is doing its work in this database: the events table, the
 * rules, the background worker, the jobs, the entities waiting for their
 * attributes, failing definitions and context keys, and the extension's
 * version.  One row per item, status 'ok', 'warning' or 'error', with what
 * to do.  It reads only small tables and catalogs (and counts the entities
 * waiting, a scan of customer_entities); it writes nothing.
 */

-- Whether the server preloaded the library (and so runs the worker), and the
-- databases the worker serves (cdp_traits.database as the launcher parses
-- it; NULL if it does not parse).
CREATE FUNCTION cdp_traits._worker_config(OUT preloaded boolean, OUT databases text[])
LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'cdp_worker_config_sql';
COMMENT ON FUNCTION cdp_traits._worker_config() IS
	'internal: whether the library is preloaded, and the databases listed in cdp_traits.database, as the worker reads them';

CREATE FUNCTION cdp_traits.health()
RETURNS TABLE(item text, status text, detail text, hint text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, cdp_traits, pg_temp
SET intervalstyle = postgres
AS $$
DECLARE
	src record;
	n bigint;
	m bigint;
	t timestamptz;
	naptime interval;
	enabled boolean;
	preloaded boolean;
	launcher boolean;
	served text[];
	serves boolean := false;
	r record;
	names text;
BEGIN
	-- (a C function first: it loads the library, which defines the settings)
	SELECT w.preloaded, w.databases INTO preloaded, served FROM cdp_traits._worker_config() w;
	naptime := pg_catalog.current_setting('cdp_traits.naptime')::interval;
	enabled := pg_catalog.current_setting('cdp_traits.enabled')::boolean;

	-- the events table
	SELECT * INTO src FROM cdp_traits.events_source;
	IF NOT FOUND THEN
		RETURN QUERY SELECT 'events table', 'error', 'no events table is attached: nothing is stitched',
			'Attach the customer events table with cdp_traits.attach_events(''schema.table'').';
	ELSIF NOT src.attached THEN
		RETURN QUERY SELECT 'events table', 'warning',
			pg_catalog.format('%s is detached: its new events are not stitched', src.events),
			'Attach it again with cdp_traits.attach_events(), which stitches its events, those written meanwhile included.';
	ELSE
		RETURN QUERY SELECT 'events table', 'ok',
			pg_catalog.format('%s, attached at %s', src.events,
							  pg_catalog.to_char(src.attached_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
			NULL::text;
	END IF;

	-- the stitching rules
	SELECT pg_catalog.count(*), pg_catalog.count(DISTINCT x.attribute_id) INTO n, m
	  FROM cdp_traits.stitching_rules x;
	IF n = 0 THEN
		RETURN QUERY SELECT 'stitching rules', 'warning', 'no stitching rules: no event gets an entity',
			'Insert the identifier rules into cdp_traits.stitching_rules, then run cdp_traits.restitch().';
	ELSE
		RETURN QUERY SELECT 'stitching rules', 'ok',
			pg_catalog.format('%s rules, %s kinds of identifier', n, m), NULL::text;
	END IF;

	-- the background worker
	launcher := EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'cdp_traits launcher');
	serves := pg_catalog.current_database() = ANY (served);
	SELECT max(j.finished_at) INTO t FROM cdp_traits.job_runs j WHERE j.run_by = 'worker';
	IF pg_catalog.pg_is_in_recovery() THEN
		RETURN QUERY SELECT 'worker', 'ok',
			'a standby: the worker runs on the primary (here it starts if this server is promoted)', NULL::text;
	ELSIF NOT preloaded AND NOT launcher THEN
		RETURN QUERY SELECT 'worker', 'ok',
			'no background worker (cdp_traits is not in shared_preload_libraries): jobs run when cdp_traits.run_jobs() is called',
			NULL::text;
	ELSIF NOT launcher THEN
		RETURN QUERY SELECT 'worker', 'error', 'the cdp_traits launcher is not running',
			'Look in the server log for why it stopped (max_worker_processes, a crash); it starts with the server.';
	ELSIF NOT enabled THEN
		RETURN QUERY SELECT 'worker', 'warning', 'the worker is disabled (cdp_traits.enabled = off): no job runs on a schedule',
			'ALTER SYSTEM SET cdp_traits.enabled = on; SELECT pg_reload_conf();';
	ELSIF served IS NULL OR NOT serves THEN
		RETURN QUERY SELECT 'worker', 'warning',
			pg_catalog.format('the worker does not serve this database (cdp_traits.database = %L)',
							  pg_catalog.current_setting('cdp_traits.database')),
			'Add it to cdp_traits.database (ALTER SYSTEM, then pg_reload_conf()), or run cdp_traits.run_jobs() on a schedule of your own.';
	ELSIF t IS NULL THEN
		RETURN QUERY SELECT 'worker', 'warning', 'the worker serves this database but has not finished a job here yet',
			'If this lasts longer than cdp_traits.naptime, look in the server log.';
	ELSIF t < pg_catalog.now() - 3 * naptime - interval '1 minute'
		  AND NOT EXISTS (SELECT FROM cdp_traits.job_runs j WHERE j.run_by = 'worker' AND j.status = 'running'
							 AND j.finished_at IS NULL AND j.started_at > t) THEN
		RETURN QUERY SELECT 'worker', 'warning',
			pg_catalog.format('the worker''s last job here finished %s ago (cdp_traits.naptime = %s)',
							  pg_catalog.date_trunc('second', pg_catalog.now() - t), pg_catalog.current_setting('cdp_traits.naptime')),
			'Look in the server log and pg_stat_activity for the cdp_traits worker of this database.';
	ELSE
		RETURN QUERY SELECT 'worker', 'ok',
			pg_catalog.format('serves this database every %s; its last job finished at %s',
							  pg_catalog.current_setting('cdp_traits.naptime'),
							  pg_catalog.to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
			NULL::text;
	END IF;

	-- each job's latest run
	FOR r IN SELECT DISTINCT ON (j.job) j.job, j.status, j.started_at, j.finished_at, j.error
			   FROM cdp_traits.job_runs j ORDER BY j.job, j.id DESC LOOP
		IF r.status = 'failed' THEN
			RETURN QUERY SELECT 'job ' || r.job, 'error',
				pg_catalog.format('its last run failed: %s', r.error),
				'See cdp_traits.job_runs (detail holds the error''s SQLSTATE, detail and hint).';
		ELSIF r.status = 'partial' THEN
			RETURN QUERY SELECT 'job ' || r.job, 'warning',
				pg_catalog.format('its last run finished, but part of it failed: %s', r.error),
				'See the failing attributes and context keys below, and cdp_traits.job_runs.';
		ELSIF r.status = 'running' THEN
			RETURN QUERY SELECT 'job ' || r.job, 'ok',
				pg_catalog.format('running since %s',
								  pg_catalog.to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
				NULL::text;
		ELSE
			RETURN QUERY SELECT 'job ' || r.job, 'ok',
				pg_catalog.format('last run succeeded at %s',
								  pg_catalog.to_char(r.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'),
				NULL::text;
		END IF;
	END LOOP;

	-- entities waiting for their attributes
	SELECT pg_catalog.count(*), min(c.modified) INTO n, t
	  FROM cdp_traits.customer_entities c WHERE c.calculated IS NULL;
	names := CASE WHEN n = 0 THEN 'none waiting'
				  ELSE pg_catalog.format('%s %s, the oldest since %s ago', n,
										 CASE WHEN n = 1 THEN 'entity waits for its attributes'
											  ELSE 'entities wait for their attributes' END,
										 pg_catalog.date_trunc('second', pg_catalog.now() - t)) END;
	IF n > 0 AND serves AND launcher AND enabled
	   AND t < pg_catalog.now() - 3 * naptime - interval '10 minutes' THEN
		RETURN QUERY SELECT 'entities to calculate', 'warning', names,
			'The worker''s calculate_attributes job is behind or failing: see the job rows above.';
	ELSE
		RETURN QUERY SELECT 'entities to calculate', 'ok', names, NULL::text;
	END IF;

	-- definitions whose latest calculation failed
	SELECT pg_catalog.count(*), pg_catalog.string_agg(f.attribute_id, ', ' ORDER BY f.attribute_id)
	  INTO n, names
	  FROM (SELECT DISTINCT ON (ra.attribute_id) ra.attribute_id, ra.error
			  FROM cdp_traits.calculation_run_attributes ra
			  JOIN cdp_traits.attributes d ON d.id = ra.attribute_id
			 ORDER BY ra.attribute_id, ra.run_id DESC) f
	 WHERE f.error IS NOT NULL;
	SELECT pg_catalog.count(*) INTO m FROM cdp_traits.attributes;
	IF n > 0 THEN
		RETURN QUERY SELECT 'attributes', 'warning',
			pg_catalog.format('%s of %s definitions failed in their last calculation: %s', n, m, names),
			'Their errors are in cdp_traits.calculation_run_attributes (error, failing_entity); they keep their old values until fixed.';
	ELSE
		RETURN QUERY SELECT 'attributes', 'ok', pg_catalog.format('%s definitions, none failing', m), NULL::text;
	END IF;

	-- context keys whose refresh failed
	SELECT pg_catalog.count(*) FILTER (WHERE x.error IS NOT NULL),
		   pg_catalog.string_agg(x.key, ', ' ORDER BY x.key) FILTER (WHERE x.error IS NOT NULL),
		   pg_catalog.count(*)
	  INTO n, names, m
	  FROM cdp_traits.context x;
	IF n > 0 THEN
		RETURN QUERY SELECT 'context', 'warning',
			pg_catalog.format('%s of %s keys failed in their last refresh: %s', n, m, names),
			'Their errors are in cdp_traits.context (error, error_at); they keep their old values until fixed.';
	ELSE
		RETURN QUERY SELECT 'context', 'ok', pg_catalog.format('%s keys, none failing', m), NULL::text;
	END IF;

	-- the extension's version: its objects, what is installed, the library loaded
	SELECT e.extversion, a.default_version INTO r
	  FROM pg_catalog.pg_extension e
	  LEFT JOIN pg_catalog.pg_available_extensions a ON a.name = e.extname
	 WHERE e.extname = 'cdp_traits';
	IF r.extversion IS DISTINCT FROM r.default_version THEN
		RETURN QUERY SELECT 'version', 'warning',
			pg_catalog.format('the extension is at %s, the installed files at %s', r.extversion, r.default_version),
			'ALTER EXTENSION cdp_traits UPDATE; (see README, Upgrades).';
	ELSIF cdp_traits.version() IS DISTINCT FROM r.extversion THEN
		RETURN QUERY SELECT 'version', 'warning',
			pg_catalog.format('the extension is at %s, the library loaded at %s', r.extversion, cdp_traits.version()),
			'Restart the server after installing a new version (sessions opened since load the new library only when it is not preloaded).';
	ELSE
		RETURN QUERY SELECT 'version', 'ok', r.extversion, NULL::text;
	END IF;
END;
$$;
COMMENT ON FUNCTION cdp_traits.health() IS
	'whether cdp_traits does its work here: events table, rules, worker, jobs, entities waiting, failing definitions and context keys, version; one row per item, status ok/warning/error, with a hint';
