
/*
 * Privileges (least privilege).  This file runs last: every table, view,
 * sequence and function of the schema is classified here, in one list, and
 * gets exactly the grants of its class.  Nothing keeps PostgreSQL's default
 * (EXECUTE for PUBLIC on functions): an object that is not in the list keeps
 * a NULL ACL, and the regression test "privileges" fails on it, so add every
 * new object below (and to the upgrade script that introduces it).
 *
 * Roles (cluster-wide, created here if missing, never dropped by the
 * extension; NOLOGIN: grant them to login roles):
 *   cdp_traits_reader  reads results (stitching, attributes, context, runs)
 *   cdp_traits_admin   also writes configuration (rules, blocklist,
 *                      definitions, context) and runs the calculations;
 *                      member of cdp_traits_reader
 * Everything else belongs to the extension owner (a superuser).
 *
 * Relation classes:
 *   config      reader SELECT; admin SELECT, INSERT, UPDATE, DELETE, TRUNCATE
 *   calculated  reader SELECT; admin SELECT, INSERT, UPDATE, DELETE (the
 *               calculation runs as its caller and writes them); sequences:
 *               reader SELECT, admin SELECT, USAGE
 *   log         an append-only log the calculation appends to as its caller:
 *               reader SELECT; admin SELECT, INSERT (no UPDATE or DELETE,
 *               so that an admin cannot rewrite or drop what consumers read;
 *               its sequence is 'calculated')
 *   result      reader and admin SELECT (written by the extension owner only)
 * Function classes:
 *   public      EXECUTE for PUBLIC: aggregates, their support functions and
 *               conversions that read no table
 *   reader      EXECUTE for reader (and admin): read-only functions
 *   admin       EXECUTE for admin: configuration and calculation, and the
 *               internal helpers the calculation and the definition checks call
 *               as the admin
 *   owner       nobody but the owner: trigger functions (a trigger does not
 *               check EXECUTE), attaching tables, publishing views
 */

DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'cdp_traits_reader') THEN
		CREATE ROLE cdp_traits_reader NOLOGIN;
		COMMENT ON ROLE cdp_traits_reader IS 'cdp_traits: may read results (stitching, attributes, context)';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'cdp_traits_admin') THEN
		CREATE ROLE cdp_traits_admin NOLOGIN;
		COMMENT ON ROLE cdp_traits_admin IS 'cdp_traits: may write rules, blocklist, definitions and context, and run calculations';
	END IF;
	IF NOT pg_catalog.pg_has_role('cdp_traits_admin', 'cdp_traits_reader', 'MEMBER') THEN
		GRANT cdp_traits_reader TO cdp_traits_admin;
	END IF;
END;
$roles$;

GRANT USAGE ON SCHEMA cdp_traits TO PUBLIC;

-- Applies the grants of one class to a relation of the schema (also used for
-- the views the extension creates at run time).
CREATE FUNCTION cdp_traits._grant(rel regclass, class text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	seq boolean := (SELECT c.relkind = 'S' FROM pg_catalog.pg_class c WHERE c.oid = rel);
BEGIN
	EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC, cdp_traits_reader, cdp_traits_admin', rel);
	IF class = 'config' THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'calculated' AND seq THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, USAGE ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'calculated' THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'log' AND NOT seq THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader', rel);
		EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON %s TO cdp_traits_admin', rel);
	ELSIF class = 'result' THEN
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_traits_reader, cdp_traits_admin', rel);
	ELSE
		RAISE EXCEPTION 'unknown privilege class "%" for %', class, rel;
	END IF;
END;
$$;

DO $grants$
DECLARE
	r record;
	f regprocedure;
BEGIN
	FOR r IN SELECT * FROM (VALUES
		-- configuration
		('stitching_rules', 'config'),
		('stitching_blocklist', 'config'),
		('attributes', 'config'),
		('context', 'config'),
		-- written by calculate_attributes (as its caller)
		('entity_attributes', 'calculated'),
		('entity_states', 'calculated'),
		('entity_state_events', 'calculated'),
		('compiled_definitions', 'calculated'),
		('attribute_context_seen', 'calculated'),
		('attribute_history', 'calculated'),
		('calculation_runs', 'calculated'),
		('calculation_runs_id_seq', 'calculated'),
		('calculation_run_attributes', 'calculated'),
		-- the toggle log: audience enter/exit are appended by the calculation
		-- (and by deleting an audience), never updated or deleted by an admin
		('segment_toggles', 'log'),
		('segment_toggles_seq_seq', 'calculated'),
		('attribute_counts', 'calculated'),
		('attribute_value_counts', 'calculated'),
		('pending_count_changes', 'calculated'),
		-- written by the stitching triggers and the worker (as the owner)
		('stitching_blocklist_removed_defaults', 'result'),
		('events_source', 'result'),
		('customer_entities', 'result'),
		('matching', 'result'),
		('event_entities', 'result'),
		('entity_merges', 'result'),
		('job_runs', 'result'),
		('job_runs_id_seq', 'result'),
		('customer_attributes', 'result'),
		('attribute_top_values', 'result'),
		('pivoted_customer_attributes', 'result'),
		('pivot_source', 'result'),
		('publications', 'result'),
		('audience_changes', 'result'),
		-- segments: events are inserted (or COPYed) by admins; the statement
		-- trigger folds them in as the owner
		('segment_events', 'config'),
		('segment_events_seq_seq', 'calculated'),
		('segment_event_ids', 'result'),
		('segment_memberships', 'result'),
		('segment_profiles', 'result')
	) v(name, class) LOOP
		PERFORM cdp_traits._grant(pg_catalog.format('cdp_traits.%I', r.name)::regclass, r.class);
	END LOOP;
	-- the calculation marks entities calculated (and locks them FOR KEY SHARE)
	GRANT UPDATE (calculated) ON cdp_traits.customer_entities TO cdp_traits_admin;

	FOR r IN SELECT * FROM (VALUES
		-- aggregates (SPEC section 3) and their support functions
		('most_frequent', 'public'), ('least_frequent', 'public'), ('first', 'public'),
		('last', 'public'), ('num_of_unique', 'public'), ('unique_list', 'public'),
		('any_value', 'public'), ('any_value_add', 'public'),
		('frequency_state', 'public'), ('unique_state', 'public'), ('first_state', 'public'),
		('last_state', 'public'), ('merge_states', 'public'), ('_jsonb_merge', 'public'),
		('agg_state_in', 'public'), ('agg_state_out', 'public'), ('agg_state_recv', 'public'),
		('agg_state_send', 'public'), ('agg_state_combine', 'public'), ('agg_state_pack', 'public'),
		('agg_state_merge', 'public'),
		('frequency_add', 'public'), ('unique_add', 'public'), ('first_add', 'public'),
		('last_add', 'public'), ('most_frequent_final', 'public'), ('least_frequent_final', 'public'),
		('first_final', 'public'), ('last_final', 'public'),
		('state_most_frequent', 'public'), ('state_least_frequent', 'public'),
		('state_first', 'public'), ('state_last', 'public'), ('state_num_of_unique', 'public'),
		('state_unique_list', 'public'),
		-- conversions (used by the pivot view) and the library version
		('to_number', 'public'), ('_to_boolean', 'public'), ('_to_date', 'public'),
		('_to_timestamptz', 'public'), ('version', 'public'),
		-- event keys (the customer_events view joins through event_key)
		('event_key', 'public'), ('event_key_uuid', 'public'),
		-- read-only
		('current_entity', 'reader'), ('context_value', 'reader'),
		('verify_stitching', 'reader'), ('stitching_stats', 'reader'),
		-- explain_entity shows what a reader can already read (customer_events,
		-- matching, entity_merges); its helper runs the rules as the triggers do
		('explain_entity', 'reader'), ('_explain_graph', 'reader'),
		('_explain_events', 'reader'), ('_dot_quote', 'reader'), ('_live_entity', 'reader'),
		-- so does bridging_identifiers (identifier values and event counts)
		('bridging_identifiers', 'reader'), ('_bridging_identifiers', 'reader'),
		-- health() reads what a reader can read (job_runs, runs, context) and
		-- the worker's settings
		('health', 'reader'), ('_worker_config', 'reader'),
		-- configuration and calculation
		('calculate_attributes', 'admin'), ('refresh_context', 'admin'),
		('restitch', 'admin'), ('run_jobs', 'admin'),
		-- writes configuration as its caller, through the tables' checks
		('import_meiro_config', 'admin'),
		-- helpers the calculation and the definition checks call as the admin
		('_audience_order', 'admin'), ('_calc_audience', 'admin'), ('_calc_audiences', 'admin'), ('_pivot_column', 'admin'), ('_calc_predefined', 'admin'),
		('_calc_query', 'admin'), ('_calc_step', 'admin'), ('_check_definition', 'admin'),
		('_compile', 'admin'), ('_convert', 'admin'), ('_given_sql', 'admin'), ('_count_changes', 'admin'), ('_count_changes_at_commit', 'admin'), ('_apply_counts_at_commit', 'admin'),
		('_categorical', 'admin'), ('_custom_sql', 'admin'), ('_data_type', 'admin'),
		('_definition_error', 'admin'), ('_events_attached', 'admin'), ('_events_rel', 'admin'),
		('_expression_columns', 'admin'), ('_opt', 'admin'), ('_outcome', 'admin'),
		('_pivot_type', 'admin'), ('_query_columns', 'admin'), ('_query_returns_set', 'admin'),
		('_rebuild_pivot', 'admin'), ('_scoped_events', 'admin'), ('_event_id_of_key', 'admin'),
		('_analyze_temp', 'admin'),
		('_states_fetch', 'admin'), ('_states_signature', 'admin'), ('_states_gather', 'admin'),
		('_states_store', 'admin'), ('_query_deps', 'admin'), ('_deps_stamp', 'admin'), ('_context_md5', 'admin'), ('_custom_fails', 'admin'), ('_failing_entity', 'admin'), ('_calculation_lock', 'admin'),
		('_sql_problem', 'admin'), ('_setting', 'admin'), ('_context_timer', 'admin'), ('_attribute_timer', 'admin'),
		('_sql_type', 'admin'), ('_text_form', 'admin'), ('_to_uuid', 'admin'), ('_to_float8', 'admin'), ('_write_values', 'admin'), ('_jsonb_object_of', 'admin'), ('_merge_values', 'admin'), ('_values_changed', 'admin'), ('_halves', 'admin'), ('_swap_settings', 'admin'),
		('_drop_values', 'admin'),
		('_value_deltas', 'admin'), ('_clear_new', 'admin'), ('_drop_run_tables', 'admin'), ('_without_waiting', 'admin'), ('_value_deltas_trans', 'admin'), ('_value_deltas_final', 'admin'),
		-- the owner only
		('attach_events', 'owner'), ('detach_events', 'owner'), ('rekey_events', 'owner'),
		-- erasure deletes what only stitching and the segment trigger write
		('erase_entity', 'owner'), ('erase_segment_user', 'owner'),
		('publish', 'owner'),
		-- segments (SPEC section 6)
		('rfc3339_in', 'public'), ('rfc3339_out', 'public'), ('rfc3339_recv', 'public'),
		('rfc3339_send', 'public'), ('rfc3339', 'public'),
		('ingest_segment_event', 'admin'), ('rebuild_segment_profiles', 'admin'),
		('_segment_event_error', 'admin'), ('toggles_since', 'reader'), ('toggles_position', 'reader'),
		('_toggles_upto', 'reader'),
		('_toggles_writer', 'owner'), ('_toggles_notify', 'owner'),
		('_segment_events_insert', 'owner'), ('_profile_merge', 'owner'), ('_segment_events_immutable', 'owner'),
		('_segment_events_truncated', 'owner'), ('_segment_event_row', 'owner'),
		-- the segment locks: toggles_since() runs as its reader,
		-- rebuild_segment_profiles() as the owner (SECURITY DEFINER)
		('_toggles_wait', 'reader'), ('_segments_lock_exclusive', 'owner'),
		('unpublish', 'owner'), ('_grant', 'owner'), ('_relation_depends_on_extension', 'owner'),
		('stitch_events', 'owner'), ('stitch_event_row', 'owner'), ('_install_replica_triggers', 'owner'),
		('stitching_rules_check', 'owner'),
		('stitching_config_changed', 'owner'), ('_blocklist_defaults_kept', 'owner'), ('_blocklist_defaults', 'owner'), ('new_partition', 'owner'), ('_ddl_start', 'owner'), ('_ddl_end', 'owner'),
		('_attributes_check', 'owner'), ('_attributes_changed', 'owner'), ('_events_locked_first', 'owner'),
		('_attribute_dropped', 'owner'), ('_runs_deleted', 'owner'),
		('_context_check', 'owner'), ('_entities_removed', 'owner'), ('_pending_counts_apply', 'owner'),
		('_published_names', 'owner'), ('_is_published_view', 'owner'),
		('_publish_view', 'owner'), ('_unpublish_view', 'owner'),
		('_republish_view', 'owner'), ('_publications_added', 'owner'),
		('_schema_oid', 'owner'), ('_published_views', 'owner'), ('_publications_lock', 'owner'), ('_schema_renamed', 'owner'),
		('_grants_of_others', 'owner'), ('_views_using', 'owner')
	) v(name, class) LOOP
		FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
				  WHERE p.pronamespace = 'cdp_traits'::regnamespace AND p.proname = r.name LOOP
			EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);
			IF r.class = 'public' THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO PUBLIC', f);
			ELSIF r.class = 'reader' THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO cdp_traits_reader', f);
			ELSIF r.class = 'admin' THEN
				EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO cdp_traits_admin', f);
			ELSIF r.class <> 'owner' THEN
				RAISE EXCEPTION 'unknown privilege class "%" for %', r.class, f;
			END IF;
		END LOOP;
	END LOOP;
END;
$grants$;
