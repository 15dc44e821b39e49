/*-------------------------------------------------------------------------
 *
 * ddl_guard.c
 *		Event triggers at the start and end of every DDL command: a CASCADE
 *		drop of the user's objects must not drop the extension, and
 *		customer_events must not stop a column of the events table from
 *		being dropped or retyped.
 *
 * The published views (publish()) are members of the extension, and they
 * depend on cdp_traits.customer_events, which depends on the events table.
 * When a CASCADE drop reaches an extension member through such a chain
 * (DROP SCHEMA of a published schema or of the events table's schema, DROP
 * TABLE of the events table, a column dropped with CASCADE...), PostgreSQL
 * drops the member's extension instead, with every stitched entity,
 * attribute and segment in it.  So at the start of a CASCADE drop, the
 * published views that depend on what it names are released from the
 * extension (ALTER EXTENSION ... DROP VIEW), to be dropped as plain views;
 * at the end of the command, those still there are members again.  A
 * published schema dropped stays listed in publications (publishing into
 * it warns until unpublish() forgets it).
 *
 * Both functions return at once for any other command, and for DDL that
 * they run themselves.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_ddl_start);
PG_FUNCTION_INFO_V1(cdp_ddl_end);

/* set while the guard runs DDL of its own */
static bool Busy = false;

/*
 * The published views released from the extension at the start of the
 * command, to be members again at its end (OIDs, in TopTransactionContext,
 * for the transaction ReleasedXid names).
 */
static List *Released = NIL;
static LocalTransactionId ReleasedXid = InvalidLocalTransactionId;

/*
 * Objects a command names, as the addresses a CASCADE drop starts from
 * (roles for DROP OWNED: what they own is added by the search).
 */
typedef struct Targets
{
	List	   *classids;
	List	   *objids;
} Targets;

/*
 * add_target
 *		One object a command names (nothing if it does not exist).
 */
static void
add_target(Targets *t, Oid classid, Oid objid)
{
	if (!OidIsValid(objid))
		return;
	t->classids = lappend_oid(t->classids, classid);
	t->objids = lappend_oid(t->objids, objid);
}

/*
 * drop_targets
 *		The objects a DROP ... CASCADE names, resolved as the command will
 *		resolve them (the caller's search_path), without locks and without
 *		errors for those missing.
 */
static void
drop_targets(DropStmt *stmt, Targets *t)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *object = lfirst(lc);

		switch (stmt->removeType)
		{
			case OBJECT_TABLE:
			case OBJECT_VIEW:
			case OBJECT_MATVIEW:
			case OBJECT_FOREIGN_TABLE:
			case OBJECT_SEQUENCE:
			case OBJECT_INDEX:
				add_target(t, RelationRelationId,
						   RangeVarGetRelid(makeRangeVarFromNameList(castNode(List, object)),
											NoLock, true));
				break;
			case OBJECT_SCHEMA:
				add_target(t, NamespaceRelationId, get_namespace_oid(strVal(object), true));
				break;
			default:
				{
					Relation	rel = NULL;
					ObjectAddress addr = get_object_address(stmt->removeType, object, &rel,
															NoLock, true);

					if (rel != NULL)
						relation_close(rel, NoLock);
					add_target(t, addr.classId, addr.objectId);
				}
				break;
		}
	}
}

/*
 * reached_published_views
 *		The published views that depend, directly or not, on the targets or
 *		on what their roles own in this database (run as the extension
 *		owner, SPI connected).
 */
static List *
reached_published_views(Targets *t)
{
	int			n = list_length(t->objids);
	Datum	   *classids = palloc(sizeof(Datum) * n);
	Datum	   *objids = palloc(sizeof(Datum) * n);
	Datum		values[2];
	Oid			types[2] = {OIDARRAYOID, OIDARRAYOID};
	List	   *views = NIL;
	int			i;
	uint64		k;

	/* (nothing to look for: the usual case) */
	if (cdp_execute_sql("SELECT FROM cdp_traits._published_views() LIMIT 1",
						SPI_OK_SELECT, "looking for published views") == 0)
		return NIL;
	for (i = 0; i < n; i++)
	{
		classids[i] = ObjectIdGetDatum(list_nth_oid(t->classids, i));
		objids[i] = ObjectIdGetDatum(list_nth_oid(t->objids, i));
	}
	values[0] = PointerGetDatum(construct_array(classids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(objids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));

	/*
	 * A view depends on what it reads through its rule: from the rule, go on
	 * from the view.  Roles (DROP OWNED) lead to what they own here.
	 */
	cdp_execute(cdp_prepare("WITH RECURSIVE reach(classid, objid) AS ("
							"SELECT t.c, t.o FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) t(c, o) "
							"UNION "
							"SELECT CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
							"THEN 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid ELSE d.classid END, "
							"CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
							"THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid) "
							"ELSE d.objid END "
							"FROM reach JOIN ("
							"SELECT classid, objid, refclassid, refobjid FROM pg_catalog.pg_depend "
							"UNION ALL "
							"SELECT classid, objid, refclassid, refobjid FROM pg_catalog.pg_shdepend "
							"WHERE deptype = 'o' AND dbid = (SELECT oid FROM pg_catalog.pg_database "
							"WHERE datname = pg_catalog.current_database())) d "
							"ON d.refclassid = reach.classid AND d.refobjid = reach.objid) "
							"SELECT p.view::pg_catalog.oid FROM cdp_traits._published_views() p "
							"WHERE EXISTS (SELECT FROM reach "
							"WHERE reach.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
							"AND reach.objid = p.view::pg_catalog.oid)",
							2, types),
				values, NULL, SPI_OK_SELECT, "finding the published views a drop reaches");
	for (k = 0; k < SPI_processed; k++)
	{
		bool		isnull;

		views = lappend_oid(views, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[k],
																  SPI_tuptable->tupdesc, 1,
																  &isnull)));
	}
	return views;
}

/*
 * release_views
 *		Take the views out of the extension, and keep them for the end of
 *		the command.
 */
static void
release_views(List *views)
{
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, views)
		cdp_execute_sql(psprintf("ALTER EXTENSION %s DROP VIEW %s", CDP_EXTENSION_NAME,
								 quote_qualified_identifier(get_namespace_name(get_rel_namespace(lfirst_oid(lc))),
															get_rel_name(lfirst_oid(lc)))),
						SPI_OK_UTILITY, "releasing a published view");
	/*
	 * (added to what a command that runs this one, or one that failed in a
	 * subtransaction, released: the end of any command adds back those
	 * still there and not members)
	 */
	old = MemoryContextSwitchTo(TopTransactionContext);
	if (ReleasedXid != MyProc->lxid)
		Released = NIL;
	Released = list_concat(Released, views);
	ReleasedXid = MyProc->lxid;
	MemoryContextSwitchTo(old);
}

/*
 * is_cascade_drop
 *		Whether the command is a CASCADE drop, other than of the extension
 *		itself.
 */
static bool
is_cascade_drop(Node *parsetree)
{
	if (IsA(parsetree, DropStmt))
	{
		DropStmt   *stmt = (DropStmt *) parsetree;

		if (stmt->behavior != DROP_CASCADE)
			return false;
		if (stmt->removeType == OBJECT_EXTENSION)
		{
			ListCell   *lc;

			foreach(lc, stmt->objects)
				if (strcmp(strVal(lfirst(lc)), CDP_EXTENSION_NAME) == 0)
					return false;
		}
		return true;
	}
	if (IsA(parsetree, DropOwnedStmt))
		return ((DropOwnedStmt *) parsetree)->behavior == DROP_CASCADE;
	if (IsA(parsetree, AlterTableStmt))
	{
		ListCell   *lc;

		foreach(lc, ((AlterTableStmt *) parsetree)->cmds)
		{
			AlterTableCmd *cmd = lfirst(lc);

			if (IsA(cmd, AlterTableCmd) && cmd->behavior == DROP_CASCADE)
				return true;
		}
	}
	return false;
}

/*
 * cdp_ddl_start
 *		Event trigger at the start of every DDL command (see the top of this
 *		file).
 */
Datum
cdp_ddl_start(PG_FUNCTION_ARGS)
{
	Node	   *parsetree;
	bool		cascade;
	AlterTableStmt *alter = NULL;
	Oid			altered = InvalidOid;
	Targets		targets = {NIL, NIL};

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits._ddl_start() must be called as an event trigger")));
	if (Busy || creating_extension || IsBinaryUpgrade)
		PG_RETURN_NULL();
	parsetree = ((EventTriggerData *) fcinfo->context)->parsetree;
	if (parsetree == NULL)
		PG_RETURN_NULL();
	stitch_drop_start(parsetree);	/* (dropped partitions: partition_drop.c) */
	cascade = is_cascade_drop(parsetree);
	if (IsA(parsetree, AlterTableStmt) &&
		((AlterTableStmt *) parsetree)->objtype == OBJECT_TABLE &&
		(cascade || events_view_changes_columns((AlterTableStmt *) parsetree)))
		alter = (AlterTableStmt *) parsetree;
	if (!cascade && alter == NULL)
		PG_RETURN_NULL();

	/* what the command names, as it will resolve it */
	if (alter != NULL)
	{
		altered = RangeVarGetRelid(alter->relation, NoLock, true);
		if (!OidIsValid(altered))
			PG_RETURN_NULL();
		add_target(&targets, RelationRelationId, altered);
	}
	else if (IsA(parsetree, DropStmt))
		drop_targets((DropStmt *) parsetree, &targets);
	else
	{
		ListCell   *lc;

		foreach(lc, ((DropOwnedStmt *) parsetree)->roles)
			add_target(&targets, AuthIdRelationId, get_rolespec_oid(lfirst(lc), true));
	}
	if (targets.objids == NIL)
		PG_RETURN_NULL();

	Busy = true;
	PG_TRY();
	{
		CdpExecState es;

		cdp_exec_begin(&es);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		/*
		 * Only the table's owner may drop or retype its columns: another
		 * role's command fails anyway, and must not drop the views first.
		 */
		if (alter != NULL && pg_class_ownercheck(altered, es.save_userid))
			events_view_before_alter(altered, alter);
		if (cascade)
		{
			List	   *views = reached_published_views(&targets);

			if (views != NIL)
				release_views(views);
		}
		SPI_finish();
		cdp_exec_end(&es);
	}
	PG_FINALLY();
	{
		Busy = false;
	}
	PG_END_TRY();
	PG_RETURN_NULL();
}

/*
 * cdp_ddl_end
 *		Event trigger at the end of every DDL command: the published views
 *		released at its start that are still there are members of the
 *		extension again.
 */
Datum
cdp_ddl_end(PG_FUNCTION_ARGS)
{
	List	   *views;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits._ddl_end() must be called as an event trigger")));
	stitch_drop_end(((EventTriggerData *) fcinfo->context)->parsetree);	/* (partition_drop.c) */
	if (Busy || Released == NIL || ReleasedXid != MyProc->lxid)
		PG_RETURN_NULL();
	views = Released;
	Released = NIL;
	ReleasedXid = InvalidLocalTransactionId;

	Busy = true;
	PG_TRY();
	{
		CdpExecState es;
		ListCell   *lc;

		cdp_exec_begin(&es);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		foreach(lc, views)
		{
			Oid			view = lfirst_oid(lc);

			if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(view)) ||
				OidIsValid(getExtensionOfObject(RelationRelationId, view)))
				continue;
			cdp_execute_sql(psprintf("ALTER EXTENSION %s ADD VIEW %s", CDP_EXTENSION_NAME,
									 quote_qualified_identifier(get_namespace_name(get_rel_namespace(view)),
																get_rel_name(view))),
							SPI_OK_UTILITY, "publishing a view again");
		}
		SPI_finish();
		cdp_exec_end(&es);
	}
	PG_FINALLY();
	{
		Busy = false;
	}
	PG_END_TRY();
	PG_RETURN_NULL();
}
