
/*
 * pg_dump: the rows of every table holding configuration or state are dumped
 * with the database and restored after CREATE EXTENSION (the extension's own
 * objects are not dumped).  The default blocklist rows are inserted by the
 * install script, so only the others are dumped, and the defaults deleted
 * since the install are noted in stitching_blocklist_removed_defaults, whose
 * rows delete them again when a restore loads them (10_stitching.sql).  Views the extension creates at run time:
 * customer_events is an ordinary object (pg_dump keeps it, depending on the
 * events table); pivoted_customer_attributes and published views are members,
 * rebuilt from the rows of attributes and publications as they are restored.
 * pg_restore -j loads these tables in any order (the archive records no order
 * between the data of tables): no foreign key links them, and the trigger on
 * segment_events keeps what pg_restore loads as it is (segment_trigger.c).
 */
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.stitching_rules', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.stitching_blocklist',
	$$WHERE attribute_id IS NOT NULL OR value NOT IN ('', 'null', 'none', 'undefined', 'unknown', 'n/a', '0', '-')$$);
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.stitching_blocklist_removed_defaults', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.events_source', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.customer_entities', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.matching', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.event_entities', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.entity_merges', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.context', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.attributes', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.entity_attributes', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.attribute_history', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.attribute_context_seen', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.calculation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.calculation_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.calculation_run_attributes', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_events_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_event_ids', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_memberships', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_toggles', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.segment_toggles_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.attribute_counts', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.attribute_value_counts', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.job_runs', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.job_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp_traits.publications', '');
