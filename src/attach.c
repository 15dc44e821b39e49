/*-------------------------------------------------------------------------
 *
 * attach.c
 *		attach_events() and detach_events(): connecting the user's events
 *		table to stitching.
 *
 * attach_events validates the table's columns, installs the statement
 * triggers (on the table and, for a partitioned table, on each existing
 * partition, so that writes addressed to a partition are stitched too) and
 * those of replica sessions (logical replication: install_replica_triggers),
 * creates the cdp_traits.customer_events view, and stitches the rows already
 * there.  The triggers and the view are not members of the extension (they
 * belong with the user's table and are dumped with it) but depend on it, so
 * DROP EXTENSION removes them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_class.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "tcop/deparse_utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_attach_events);
PG_FUNCTION_INFO_V1(cdp_relation_depends_on_extension);
PG_FUNCTION_INFO_V1(cdp_detach_events);
PG_FUNCTION_INFO_V1(cdp_rekey_events);
PG_FUNCTION_INFO_V1(cdp_new_partition);
PG_FUNCTION_INFO_V1(cdp_install_replica_triggers);

/*
 * The triggers on each table of the events table: the four statement
 * triggers, then the two enabled for replica sessions only (see
 * install_replica_triggers).
 */
#define NUM_STATEMENT_TRIGGERS 4
#define NUM_TRIGGERS 6
static const char *TriggerNames[NUM_TRIGGERS] = {
	"cdp_traits_stitch_insert", "cdp_traits_stitch_update",
	"cdp_traits_stitch_delete", "cdp_traits_stitch_truncate",
	CDP_REPLICA_TRIGGER_PREFIX, CDP_REPLICA_TRIGGER_PREFIX "_truncate"
};

/*
 * cdp_depend_on_extension
 *		Record that an object goes away with the extension (without making it
 *		a member, so pg_dump still dumps it).
 */
void
cdp_depend_on_extension(Oid classid, Oid objid)
{
	ObjectAddress obj;
	ObjectAddress ext;

	ObjectAddressSet(obj, classid, objid);
	ObjectAddressSet(ext, ExtensionRelationId, get_extension_oid(CDP_EXTENSION_NAME, false));
	recordDependencyOn(&obj, &ext, DEPENDENCY_AUTO_EXTENSION);
}

/*
 * cdp_relation_depends_on_extension
 *		SQL: _relation_depends_on_extension(regclass): a view the extension
 *		(re)creates at run time, such as pivoted_customer_attributes, goes
 *		away with the extension but is not a member, so pg_dump keeps it.
 */
Datum
cdp_relation_depends_on_extension(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);

	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
	if (getExtensionOfObject(RelationRelationId, relid) == InvalidOid)
		cdp_depend_on_extension(RelationRelationId, relid);
	PG_RETURN_VOID();
}

/*
 * install_replica_triggers
 *		The triggers of replica sessions on one table, those it lacks:
 *		where session_replication_role is replica -- the apply worker of
 *		logical replication, or a session that sets it -- ordinary triggers
 *		do not fire, and the apply worker fires row triggers only.  A row
 *		trigger (stitch_event_row) on each table that holds rows, and a
 *		TRUNCATE trigger on every table, both enabled for replica sessions
 *		only (ENABLE REPLICA TRIGGER), so that each change is stitched once
 *		whatever the session's role.  (A row trigger on a partitioned table
 *		would be cloned to its partitions: it goes on the partitions only.)
 */
static void
install_replica_triggers(Oid relid)
{
	char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	int			i;

	/* (a database still at 0.1.0 has no stitch_event_row) */
	if (!OidIsValid(LookupFuncName(list_make2(makeString(CDP_SCHEMA_NAME),
											  makeString("stitch_event_row")),
								   0, NULL, true)))
		return;
	for (i = NUM_STATEMENT_TRIGGERS; i < NUM_TRIGGERS; i++)
	{
		bool		row = (i == NUM_STATEMENT_TRIGGERS);
		Relation	rel;

		if (OidIsValid(get_trigger_oid(relid, TriggerNames[i], true)) ||
			(row && get_rel_relkind(relid) != RELKIND_RELATION))
			continue;
		cdp_execute_sql(psprintf(row ?
								 "CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s "
								 "FOR EACH ROW EXECUTE FUNCTION cdp_traits.stitch_event_row()" :
								 "CREATE TRIGGER %s AFTER TRUNCATE ON %s "
								 "FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits.stitch_events()",
								 TriggerNames[i], name),
						SPI_OK_UTILITY, "installing a stitching trigger for replica sessions");
		/* (as ALTER TABLE ... ENABLE REPLICA TRIGGER, without its event triggers) */
		rel = table_open(relid, ShareRowExclusiveLock);
		EnableDisableTrigger(rel, TriggerNames[i], TRIGGER_FIRES_ON_REPLICA, false,
							 ShareRowExclusiveLock);
		table_close(rel, NoLock);
		CommandCounterIncrement();
		cdp_depend_on_extension(TriggerRelationId,
							get_trigger_oid(relid, TriggerNames[i], false));
	}
}

/*
 * install_triggers
 *		The stitching triggers on one table: the four statement triggers and
 *		those of replica sessions.
 */
static void
install_triggers(Oid relid)
{
	char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	static const char *events[] = {
		"INSERT ON %s REFERENCING NEW TABLE AS " CDP_NEW_TABLE,
		"UPDATE ON %s REFERENCING OLD TABLE AS " CDP_OLD_TABLE " NEW TABLE AS " CDP_NEW_TABLE,
		"DELETE ON %s REFERENCING OLD TABLE AS " CDP_OLD_TABLE,
		"TRUNCATE ON %s"
	};
	int			i;

	for (i = 0; i < NUM_STATEMENT_TRIGGERS; i++)
	{
		char	   *on = psprintf(events[i], name);

		cdp_execute_sql(psprintf("CREATE TRIGGER %s AFTER %s FOR EACH STATEMENT "
								 "EXECUTE FUNCTION cdp_traits.stitch_events()",
								 TriggerNames[i], on),
						SPI_OK_UTILITY, "installing a stitching trigger");
		cdp_depend_on_extension(TriggerRelationId,
							get_trigger_oid(relid, TriggerNames[i], false));
	}
	install_replica_triggers(relid);
}

/*
 * remove_triggers
 *		Drop the stitching triggers from one table, if there.
 */
static void
remove_triggers(Oid relid)
{
	char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	int			i;

	for (i = 0; i < NUM_TRIGGERS; i++)
		if (OidIsValid(get_trigger_oid(relid, TriggerNames[i], true)))
			cdp_execute_sql(psprintf("DROP TRIGGER %s ON %s", TriggerNames[i], name),
							SPI_OK_UTILITY, "removing a stitching trigger");
}

/*
 * count_triggers
 *		How many of the four statement triggers a table carries.
 */
static int
count_triggers(Oid relid)
{
	int			i;
	int			n = 0;

	for (i = 0; i < NUM_STATEMENT_TRIGGERS; i++)
		if (OidIsValid(get_trigger_oid(relid, TriggerNames[i], true)))
			n++;
	return n;
}

/*
 * remove_all_triggers
 *		Drop the stitching triggers from every table that carries them: the
 *		events table and its partitions, but also a former partition that
 *		kept them (detached before that removed them, see cdp_new_partition).
 */
static void
remove_all_triggers(void)
{
	List	   *rels = NIL;
	ListCell   *lc;
	uint64		i;

	cdp_execute_sql("SELECT DISTINCT tgrelid FROM pg_catalog.pg_trigger "
					"WHERE tgfoid = 'cdp_traits.stitch_events()'::pg_catalog.regprocedure "
					"OR tgfoid = pg_catalog.to_regprocedure('cdp_traits.stitch_event_row()')",
					SPI_OK_SELECT, "finding the stitching triggers");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		rels = lappend_oid(rels, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 1,
																&isnull)));
	}
	foreach(lc, rels)
		if (get_rel_name(lfirst_oid(lc)) != NULL)
			remove_triggers(lfirst_oid(lc));
}

/*
 * tables_of
 *		The table and, if partitioned, all of its partitions.
 */
static List *
tables_of(Oid relid)
{
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		return find_all_inheritors(relid, NoLock, NULL);
	return list_make1_oid(relid);
}

/*
 * partition_row
 *		stitch_read_plan callback: add an event with identifiers to the graph
 *		(an event without an id is not stitched, as in a whole pass).
 */
static void
partition_row(EventRow *row, void *arg)
{
	if (row->event_id != NULL && row->nidents > 0)
		(void) graph_add_event_row((StitchGraph *) arg, row, NULL);
}

/*
 * invalidate_config
 *		Every backend must reload the attached table and its plans.
 */
static void
invalidate_config(void)
{
	CacheInvalidateRelcacheByRelid(get_relname_relid("events_source",
													 get_namespace_oid(CDP_SCHEMA_NAME, false)));
	stitch_invalidate();
}

/*
 * rekey
 *		Rewrite the stored event assignments from one form of their ids to
 *		the other (text to a uuid's key, or back; see event_key.c).  Keys
 *		that cannot name a uuid event (text that is not a uuid as uuid_out
 *		writes it) are dropped: a pass over the events then treats their
 *		entities as those of deleted events.  Returns the rows rewritten.
 */
static uint64
rekey(bool to_keys)
{
	/* (the queue of stored states holds keys too) */
	stitch_forget_states();
	if (!to_keys)
		return cdp_execute_sql("UPDATE cdp_traits.event_entities "
							   "SET event_id = cdp_traits.event_key_uuid(event_id)::text",
							   SPI_OK_UPDATE, "converting stored event keys");
	cdp_execute_sql("DELETE FROM cdp_traits.event_entities WHERE event_id !~ "
					"'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'",
					SPI_OK_DELETE, "dropping stored event keys");
	return cdp_execute_sql("UPDATE cdp_traits.event_entities "
						   "SET event_id = cdp_traits.event_key(event_id::uuid)",
						   SPI_OK_UPDATE, "converting stored event keys");
}

/*
 * convert_keys
 *		Stored event assignments are in the form of the ids of the table
 *		attached before.  Before a table whose ids take the other form is
 *		attached, convert them, so that the pass over its rows still finds
 *		the events they name (the caller has checked that events_source
 *		records the form: 0.2.0 and later).  Returns whether the new table's
 *		ids are stored as keys.
 */
static bool
convert_keys(Oid idtype)
{
	bool		keys = (idtype == UUIDOID);
	bool		isnull;

	if (cdp_execute_sql("SELECT id_type = 'uuid'::pg_catalog.regtype AND uuid_keys "
						"FROM cdp_traits.events_source",
						SPI_OK_SELECT, "reading the events table attached before") == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) != keys)
		(void) rekey(keys);
	return keys;
}

/*
 * cdp_attach_events
 *		SQL: attach_events(events regclass).
 */
Datum
cdp_attach_events(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	char		relkind;
	StringInfoData problems;
	Oid			idtype;
	StitchConfig *cfg;
	char	   *name;
	bool		keyed_schema;
	bool		keys;
	ListCell   *lc;

	/* lock the table against concurrent writes while we set up */
	rel = table_open(relid, ShareRowExclusiveLock);
	relkind = rel->rd_rel->relkind;
	name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
	table_close(rel, NoLock);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot attach \"%s\": it is not a table", name),
				 errdetail("Events must be in a plain or partitioned table.")));

	initStringInfo(&problems);
	idtype = stitch_columns_problems(relid, &problems);
	stitch_view_column_problem(relid, &problems);
	if (problems.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("cannot attach \"%s\" as the events table", name),
				 errdetail("%s.", problems.data),
				 errhint("The events table needs columns id, source_id text, type text, version text, "
						 "event_time timestamptz and payload jsonb; other columns are ignored.")));
	(void) stitch_owner_problems(relid, &problems);
	if (problems.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot attach \"%s\" as the events table", name),
				 errdetail("%s.", problems.data),
				 errhint("%s", STITCH_OWNER_HINT)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = stitch_config(true);
	if (cfg && cfg->attached)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("an events table is already attached: %s", cfg->events_name),
				 errdetail("cdp_traits stitches one events table per database."),
				 errhint("Run cdp_traits.detach_events() first to attach another table.")));

	/* (the form of stored ids is recorded from 0.2.0 on) */
	keyed_schema = stitch_keys_recorded();
	keys = keyed_schema && convert_keys(idtype);
	cdp_execute_sql(psprintf("INSERT INTO cdp_traits.events_source (events, id_type, attached%s) "
							 "VALUES (%u, %u, true%s) ON CONFLICT (singleton) DO UPDATE "
							 "SET events = EXCLUDED.events, id_type = EXCLUDED.id_type, "
							 "attached = true, attached_at = pg_catalog.now()%s",
							 keyed_schema ? ", uuid_keys" : "",
							 relid, idtype,
							 !keyed_schema ? "" : keys ? ", true" : ", false",
							 keyed_schema ? ", uuid_keys = EXCLUDED.uuid_keys" : ""),
					SPI_OK_INSERT, "recording the events table");

	foreach(lc, tables_of(relid))
	{
		/* (a former partition may still carry them, from an older version) */
		remove_triggers(lfirst_oid(lc));
		install_triggers(lfirst_oid(lc));
	}

	/*
	 * published copies (see publish()) go first, and come back below, with
	 * what was granted on them and on the view (from 0.2.0 on: this library
	 * also serves a database still at 0.1.0, which lacks what that reads)
	 */
	if (OidIsValid(get_relname_relid("customer_events", get_namespace_oid(CDP_SCHEMA_NAME, false))) &&
		stitch_keys_recorded())
		events_view_save_grants();
	cdp_execute_sql("SELECT cdp_traits._unpublish_view('customer_events')",
					SPI_OK_SELECT, "unpublishing customer_events");
	if (OidIsValid(get_relname_relid("customer_events", get_namespace_oid(CDP_SCHEMA_NAME, false))))
	{
		/* (the end of the DROP must not make it again: see ddl_guard.c) */
		ddl_guard_pause(true);
		PG_TRY();
		{
			cdp_execute_sql("DROP VIEW cdp_traits.customer_events",
							SPI_OK_UTILITY, "replacing customer_events");
		}
		PG_FINALLY();
		{
			ddl_guard_pause(false);
		}
		PG_END_TRY();
	}
	events_view_create(events_view_select(name, stitch_key_format(idtype, keys)));
	events_view_restore_grants();

	/*
	 * Admins calculate attributes, and a run over a few entities reads the
	 * events table itself (a run over all of them reads customer_events):
	 * they may read it.  (It gives them nothing new: they read every event
	 * through customer_events, and their stitching rules run as the owner.)
	 */
	cdp_execute_sql(psprintf("GRANT USAGE ON SCHEMA %s TO cdp_traits_admin",
							 quote_identifier(get_namespace_name(get_rel_namespace(relid)))),
					SPI_OK_UTILITY, "granting admins the events table's schema");
	cdp_execute_sql(psprintf("GRANT SELECT ON %s TO cdp_traits_admin", name),
					SPI_OK_UTILITY, "granting admins the events table");

	invalidate_config();
	CommandCounterIncrement();

	/* stitch what is already there */
	{
		CdpExecState es;
		StitchResult res;

		cdp_exec_begin(&es);
		cdp_exec_pin_rule_settings();
		(void) stitch_config(false);
		stitch_lock_global(true);
		stitch_scope(NULL, 0, true, NULL, &res);
		stitch_analyze_after(&res);
		cdp_exec_end(&es);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * cdp_detach_events
 *		SQL: detach_events().
 */
Datum
cdp_detach_events(PG_FUNCTION_ARGS)
{
	StitchConfig *cfg;
	ListCell   *lc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = stitch_config(true);
	if (cfg == NULL || !cfg->attached)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no events table is attached")));
	foreach(lc, tables_of(cfg->events_relid))
		remove_triggers(lfirst_oid(lc));
	remove_all_triggers();
	cdp_execute_sql("UPDATE cdp_traits.events_source SET attached = false",
					SPI_OK_UPDATE, "recording the detach");
	invalidate_config();
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * cdp_install_replica_triggers
 *		SQL: _install_replica_triggers(): the triggers of replica sessions
 *		on the attached events table's tables that lack them (the update
 *		from 0.1.0, which installed none).
 */
Datum
cdp_install_replica_triggers(PG_FUNCTION_ARGS)
{
	StitchConfig *cfg;
	ListCell   *lc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = stitch_config(true);
	if (cfg && cfg->attached)
		foreach(lc, tables_of(cfg->events_relid))
			install_replica_triggers(lfirst_oid(lc));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * cdp_rekey_events
 *		SQL: rekey_events() RETURNS bigint.  Under 0.1.0 the assignments of
 *		an events table with uuid ids were stored by the ids' text; an
 *		update leaves them so (the update script may not replace the
 *		customer_events view, which is not the extension's own).  This
 *		stores them by key (event_key.c), as attaching does now, and joins
 *		customer_events through the keys; views built on it stay.  Writers
 *		of the events table wait for it (and see the keys once it commits).
 *		Returns the assignments rewritten, 0 if there is nothing to do.
 */
Datum
cdp_rekey_events(PG_FUNCTION_ARGS)
{
	StitchConfig *cfg;
	uint64		n = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = stitch_config(true);
	if (cfg && cfg->attached && cfg->id_type == UUIDOID && !cfg->uuid_keys && stitch_keys_recorded())
	{
		char	   *name = pstrdup(cfg->events_name);

		/*
		 * A writer locks the events table before its trigger reads the
		 * configuration, so none is left holding the text form.
		 */
		cdp_execute_sql(psprintf("LOCK TABLE %s IN SHARE MODE", name),
						SPI_OK_UTILITY, "locking the events table");
		stitch_lock_global(true);
		n = rekey(true);
		events_view_rejoin(cfg, stitch_key_format(UUIDOID, true));
		cdp_execute_sql("UPDATE cdp_traits.events_source SET uuid_keys = true",
						SPI_OK_UPDATE, "recording the form of stored event ids");
		invalidate_config();
	}
	SPI_finish();
	PG_RETURN_INT64((int64) n);
}

/*
 * stitch_is_events_relation
 *		Whether relid is the attached events table or one of its partitions
 *		(a partition detached from it is not).
 */
bool
stitch_is_events_relation(StitchConfig *cfg, Oid relid)
{
	return stitch_is_events_relid(cfg->events_relid, relid);
}

/*
 * stitch_is_events_relid
 *		stitch_is_events_relation for the events table events_relid.
 */
bool
stitch_is_events_relid(Oid events_relid, Oid relid)
{
	if (!OidIsValid(events_relid))
		return false;
	if (relid == events_relid)
		return true;
	if (!get_rel_relispartition(relid))
		return false;
	return list_member_oid(get_partition_ancestors(relid), events_relid);
}

/*
 * partition_duplicate_id
 *		An id that a partition joining the events table (relid, quoted as
 *		name) would give to a second event: one repeated within it, or one
 *		of an event already stitched from another of the events table's
 *		tables; NULL if none.  Its rows may be stitched themselves (a
 *		partition detached under 0.1.0 kept its assignments): only when one
 *		is, is the rest of the events table read, once.
 */
static char *
partition_duplicate_id(StitchConfig *cfg, Oid relid, const char *name)
{
	cdp_execute_sql(psprintf("SELECT id::text FROM %s WHERE id IS NOT NULL GROUP BY 1 HAVING count(*) > 1 LIMIT 1", name),
					SPI_OK_SELECT, "checking the ids of an attached partition");
	if (SPI_processed > 0)
		return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (!stitch_rows_stitched(cfg, relid))
		return NULL;

	cdp_execute_sql(psprintf("SELECT p.id::text FROM %s p "
							 "JOIN cdp_traits.event_entities ee ON ee.event_id = %s "
							 "JOIN (SELECT %s AS k FROM %s e WHERE %s) o "
							 "ON o.k = ee.event_id LIMIT 1",
							 name, stitch_key_sql(cfg, "p.id"), stitch_key_sql(cfg, "e.id"),
							 cfg->events_name,
							 stitch_not_from_sql("e.tableoid", find_all_inheritors(relid, NoLock, NULL))),
					SPI_OK_SELECT, "checking the ids of an attached partition");
	return SPI_processed > 0 ?
		SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
}

/*
 * stitch_partition_rows
 *		Stitch the rows already in a partition that just joined the events
 *		table (as if inserted; assignments they had before are replaced).
 *		Without a unique index on id, a partition that would give an id to
 *		a second event is refused, as such an insert is.
 */
static void
stitch_partition_rows(Oid relid)
{
	char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	/* (checks the rules; the rows are read with this configuration) */
	StitchConfig *cfg = stitch_rules_config();
	const char **ids;
	int			n;

	stitch_config_pin();
	ids = stitch_read_ids(cdp_prepare(psprintf("SELECT %s FROM %s", stitch_key_sql(cfg, "id"), name),
									  0, NULL), &n);
	if (n > 0)
	{
		StitchGraph *g = graph_create(CurrentMemoryContext, 1024);

		graph_set_attrs(g, cfg->attrs, cfg->nattrs);
		stitch_read_plan(cdp_prepare(stitch_relation_sql(relid), 0, NULL), false, NULL,
						 false, partition_row, g);
		if (!cfg->unique_id)
		{
			char	   *dup;

			stitch_lock_events(g);
			dup = partition_duplicate_id(cfg, relid, name);
			if (dup != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_UNIQUE_VIOLATION),
						 errmsg("duplicate event id \"%s\"", dup),
						 errdetail("Another event of the events table, or of partition %s itself, has this id; the partition was not attached.",
								   name),
						 errhint("Give every event an id of its own, then attach the partition again.")));
		}
		stitch_batch(g, ids, n, NULL, 0);
	}
	stitch_config_unpin();
}

/*
 * partition_commands
 *		The relations that the DDL being reported names (objids), those its
 *		CREATE TABLE commands created (created), and the partitions its
 *		ALTER TABLE commands attached and detached (with, in detached_from,
 *		the table each was detached from).  Those are named
 *		in the commands' parse trees (the addresses of the subcommands do
 *		not say), so this runs before the search_path is pinned: the names
 *		resolve as they did for the command.  The lists are made in cxt
 *		(they outlive the SPI connection).
 */
static void
partition_commands(MemoryContext cxt, List **objids, List **created, List **attached,
				   List **detached, List **detached_from)
{
	uint64		i;
	MemoryContext old;

	*objids = NIL;
	*created = NIL;
	*attached = NIL;
	*detached = NIL;
	*detached_from = NIL;
	/*
	 * (no operator, cast or type name in it: under the caller's search_path
	 * they could resolve to objects of whoever may create objects in a
	 * schema on it, run as the caller; the rows are filtered here)
	 */
	cdp_execute_sql("SELECT objid, command, classid FROM pg_catalog.pg_event_trigger_ddl_commands()",
					SPI_OK_SELECT, "reading the DDL commands");
	old = MemoryContextSwitchTo(cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		Oid			objid = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		CollectedCommand *cmd;
		ListCell   *lc;
		bool		classnull;

		if (DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &classnull)) != RelationRelationId ||
			classnull)
			continue;
		if (!isnull)
			*objids = lappend_oid(*objids, objid);
		cmd = (CollectedCommand *) DatumGetPointer(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2,
																 &isnull));
		if (isnull || cmd == NULL)
			continue;
		if (cmd->type == SCT_Simple && cmd->parsetree != NULL && IsA(cmd->parsetree, CreateStmt) &&
			OidIsValid(cmd->d.simple.address.objectId))
			*created = lappend_oid(*created, cmd->d.simple.address.objectId);
		if (cmd->type != SCT_AlterTable)
			continue;
		foreach(lc, cmd->d.alterTable.subcmds)
		{
			CollectedATSubcmd *sub = lfirst(lc);
			AlterTableCmd *at = (AlterTableCmd *) sub->parsetree;
			PartitionCmd *pc;
			Oid			part;

			if (at == NULL || !IsA(at, AlterTableCmd) ||
				(at->subtype != AT_AttachPartition && at->subtype != AT_DetachPartition &&
				 at->subtype != AT_DetachPartitionFinalize) ||
				at->def == NULL || !IsA(at->def, PartitionCmd))
				continue;
			pc = (PartitionCmd *) at->def;
			part = RangeVarGetRelid(pc->name, NoLock, true);
			if (!OidIsValid(part))
				continue;
			if (at->subtype == AT_AttachPartition)
				*attached = lappend_oid(*attached, part);
			else
			{
				*detached = lappend_oid(*detached, part);
				*detached_from = lappend_oid(*detached_from, cmd->d.alterTable.objectId);
			}
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * cdp_new_partition
 *		Event trigger (CREATE TABLE, ALTER TABLE): partitions of the attached
 *		events table that have no stitching triggers yet get them, and the
 *		rows they already hold are stitched; so are the rows of a partition
 *		just attached that carried the triggers already.  A partition just
 *		detached from the events table loses its triggers, and its rows
 *		leave stitching (they are no longer events; attaching it again
 *		stitches them again): what is left is stitched again if one of them
 *		was stitched.
 */
Datum
cdp_new_partition(PG_FUNCTION_ARGS)
{
	StitchConfig *cfg = NULL;
	Oid			events;
	CdpExecState es;
	bool		relevant = false;
	List	   *objids;
	List	   *created;
	List	   *attached;
	List	   *detached;
	List	   *detached_from;
	bool		events_left = false;
	ListCell   *lc;
	ListCell   *lcf;
	MemoryContext outer = CurrentMemoryContext;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits.new_partition() must be called as an event trigger")));

	/* the commands, read as the caller (see partition_commands) */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	partition_commands(outer, &objids, &created, &attached, &detached, &detached_from);
	SPI_finish();

	/*
	 * This fires for every CREATE/ALTER TABLE of any role: read the
	 * extension's tables (and install triggers) as the extension owner.
	 */
	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	events = stitch_source(NULL, NULL);
	foreach(lc, objids)
		if (get_rel_name(lfirst_oid(lc)) != NULL &&
			stitch_is_events_relid(events, lfirst_oid(lc)))
			relevant = true;

	/*
	 * The configuration (and its rules) is loaded only for a command on the
	 * events table: DDL of other tables never depends on the rules.
	 */
	if (relevant)
		cfg = stitch_config(true);

	/*
	 * A change of the events table that stitching could not read any more
	 * (a column renamed, and another of that name added) is refused at once
	 * rather than at the next insert.
	 */
	if (relevant)
		stitch_check_columns(cfg, true);

	/*
	 * customer_events follows the columns of the events table itself; nor
	 * may the table get a column named as the one the view adds (ADD
	 * COLUMN, RENAME COLUMN): the view could no longer follow it.
	 */
	if (relevant && cfg->attached && list_member_oid(objids, cfg->events_relid))
	{
		StringInfoData problem;

		initStringInfo(&problem);
		stitch_view_column_problem(cfg->events_relid, &problem);
		if (problem.len > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("cannot change the columns of the events table %s that way while it is attached",
							cfg->events_name),
					 errdetail("After the change: %s.", problem.data),
					 errhint("Give the column another name.")));
		events_view_follow(cfg);
	}

	/*
	 * A detached partition (and its own partitions) is no longer stitched.
	 * If it was detached from the events table and holds rows, those have
	 * left the events table: what is left is stitched again, as after a
	 * TRUNCATE of the partition.
	 */
	forboth(lc, detached, lcf, detached_from)
	{
		Oid			part = lfirst_oid(lc);
		Oid			parent = lfirst_oid(lcf);
		ListCell   *lc3;

		if (!OidIsValid(events) || get_rel_name(part) == NULL ||
			stitch_is_events_relid(events, part))
			continue;
		foreach(lc3, tables_of(part))
			remove_triggers(lfirst_oid(lc3));
		/*
		 * (cfg is loaded only when the command names the events table.  The
		 * first transaction of DETACH ... CONCURRENTLY took the events of
		 * the partition out already, see partition_drop.c: only those
		 * stitched since, if any, are left.)
		 */
		if (cfg != NULL && cfg->attached && get_rel_name(parent) != NULL &&
			stitch_is_events_relation(cfg, parent) && stitch_rows_stitched(cfg, part))
			events_left = true;
	}
	if (events_left)
	{
		(void) stitch_config(false);
		stitch_partitions_left();
	}

	/*
	 * Install triggers on the partitions this command created or attached
	 * (and their own partitions), and only while the events table itself
	 * carries its triggers.  A restore creates and attaches the partitions
	 * before pg_dump recreates the triggers, and then alters the tables
	 * again (ENABLE REPLICA TRIGGER) while it recreates them one by one, in
	 * any order under pg_restore -j: other commands on the events table
	 * must neither install triggers that the dump is still to create nor
	 * stitch rows that the dump's stitching state holds already.
	 */
	if (relevant && cfg->attached &&
		get_rel_relkind(cfg->events_relid) == RELKIND_PARTITIONED_TABLE &&
		OidIsValid(get_trigger_oid(cfg->events_relid, TriggerNames[0], true)))
	{
		List	   *stitched = NIL;
		List	   *fresh = NIL;

		foreach(lc, list_concat(created, attached))
		{
			ListCell   *lc2;

			if (get_rel_name(lfirst_oid(lc)) == NULL ||
				!stitch_is_events_relation(cfg, lfirst_oid(lc)))
				continue;
			foreach(lc2, tables_of(lfirst_oid(lc)))
				if (lfirst_oid(lc2) != cfg->events_relid)
					fresh = list_append_unique_oid(fresh, lfirst_oid(lc2));
		}
		foreach(lc, fresh)
		{
			Oid			rel = lfirst_oid(lc);

			if (count_triggers(rel) == NUM_STATEMENT_TRIGGERS)
			{
				/* (an older version installed no replica triggers) */
				install_replica_triggers(rel);
				continue;
			}
			remove_triggers(rel);	/* (some, left behind by an older version) */
			install_triggers(rel);
			if (get_rel_relkind(rel) == RELKIND_RELATION)
			{
				stitch_partition_rows(rel);
				stitched = lappend_oid(stitched, rel);
			}
		}
		/* attached partitions that carried the triggers already */
		foreach(lc, attached)
		{
			ListCell   *lc2;

			if (get_rel_name(lfirst_oid(lc)) == NULL ||
				!stitch_is_events_relation(cfg, lfirst_oid(lc)))
				continue;
			foreach(lc2, tables_of(lfirst_oid(lc)))
			{
				Oid			rel = lfirst_oid(lc2);

				if (get_rel_relkind(rel) == RELKIND_RELATION &&
					!list_member_oid(stitched, rel))
				{
					stitch_partition_rows(rel);
					stitched = lappend_oid(stitched, rel);
				}
			}
		}
	}
	SPI_finish();
	cdp_exec_end(&es);
	PG_RETURN_NULL();
}
