/*
 * The extension's triggers on its own tables fire in every session, also
 * where session_replication_role is replica: there, ordinary (ENABLE
 * ORIGIN) triggers do not fire, and replica sessions do write these tables.
 * Logical replication's apply worker stitches replicated events and applies
 * replicated segment events (their replica triggers, see attach_events and
 * 60_segments.sql); a merge or split then deletes customer entities, whose
 * values, history, counts and audience exits entities_removed takes care
 * of, and toggles are appended, which toggles_writer orders for
 * toggles_since() and toggles_notify announces.  A session that sets the
 * role itself (a bulk load, say) may write the configuration: its rules and
 * definitions are checked, other sessions see the change, and the pivot
 * follows, as in any session.  (ALTER TABLE ... DISABLE TRIGGER, as
 * pg_restore --disable-triggers does, still turns them off.)
 */
ALTER TABLE cdp_traits.stitching_rules
	ENABLE ALWAYS TRIGGER stitching_rules_check,
	ENABLE ALWAYS TRIGGER stitching_rules_changed;
ALTER TABLE cdp_traits.stitching_blocklist
	ENABLE ALWAYS TRIGGER stitching_blocklist_changed,
	ENABLE ALWAYS TRIGGER stitching_blocklist_defaults,
	ENABLE ALWAYS TRIGGER stitching_blocklist_defaults_truncated;
ALTER TABLE cdp_traits.stitching_blocklist_removed_defaults
	ENABLE ALWAYS TRIGGER removed_default_loaded;
ALTER TABLE cdp_traits.context
	ENABLE ALWAYS TRIGGER context_check;
ALTER TABLE cdp_traits.attributes
	ENABLE ALWAYS TRIGGER attributes_check,
	ENABLE ALWAYS TRIGGER attributes_changed,
	ENABLE ALWAYS TRIGGER attributes_events_first,
	ENABLE ALWAYS TRIGGER attribute_dropped,
	ENABLE ALWAYS TRIGGER attribute_updated,
	ENABLE ALWAYS TRIGGER attribute_deleted,
	ENABLE ALWAYS TRIGGER attributes_truncated;
ALTER TABLE cdp_traits.calculation_runs
	ENABLE ALWAYS TRIGGER runs_deleted,
	ENABLE ALWAYS TRIGGER runs_truncated;
ALTER TABLE cdp_traits.customer_entities
	ENABLE ALWAYS TRIGGER entities_removed;
ALTER TABLE cdp_traits.segment_toggles
	ENABLE ALWAYS TRIGGER toggles_writer,
	ENABLE ALWAYS TRIGGER toggles_notify;
ALTER TABLE cdp_traits.publications
	ENABLE ALWAYS TRIGGER publications_added;
