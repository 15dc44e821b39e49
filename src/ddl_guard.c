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
#include "catalog/pg_inherits.h"
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
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_ddl_start);
PG_FUNCTION_INFO_V1(cdp_ddl_end);

/* set while the guard runs DDL of its own */
static bool Busy = false;

/* A published view released from the extension at the start of a command. */
typedef struct ReleasedView
{
	Oid			view;
	char	   *name;			/* qualified, as it was */
} ReleasedView;

/*
 * What the start of a command left for its end.  Kept per command, by its
 * parse tree (the same pointer at both ends): commands that it runs (a
 * CHECK constraint's function, another event trigger) have ends of their
 * own, which run first.
 */
typedef struct DdlCommand
{
	Node	   *parsetree;
	List	   *released;		/* ReleasedView: members again at the end */
	bool		check_view;		/* customer_events may be gone or stale */
	void	   *rules;			/* the rules' state before (rule_guard.c) */
	void	   *partitions;		/* the events table's partitions
								 * (partition_drop.c) */
} DdlCommand;

/* (in TopTransactionContext, for the transaction CommandsXid names) */
static List *Commands = NIL;
static LocalTransactionId CommandsXid = InvalidLocalTransactionId;

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
 *		resolve them (the caller's search_path), without errors for those
 *		missing.  Relations and schemas are looked up without a lock; any
 *		other object is locked as the drop itself locks it, a moment
 *		early (get_object_address cannot look up without a lock).
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
															AccessExclusiveLock, true);

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
 *		owner, SPI connected); *view says whether customer_events is reached
 *		too.
 */
static List *
reached_published_views(Targets *t, bool *view)
{
	int			n = list_length(t->objids);
	Datum	   *classids = palloc(sizeof(Datum) * n);
	Datum	   *objids = palloc(sizeof(Datum) * n);
	Datum		values[2];
	Oid			types[2] = {OIDARRAYOID, OIDARRAYOID};
	List	   *views = NIL;
	int			i;
	uint64		k;

	*view = false;
	/* (nothing to look for: the usual case) */
	if (cdp_execute_sql("SELECT FROM cdp_traits._published_views() UNION ALL "
						"SELECT FROM pg_catalog.pg_class WHERE oid = "
						"pg_catalog.to_regclass('cdp_traits.customer_events') LIMIT 1",
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
	 * from the view.  A column's default leads to its table (a generated
	 * column is dropped with a function its expression calls).  Roles (DROP
	 * OWNED) lead to what they own here.
	 */
	cdp_execute(cdp_prepare("WITH RECURSIVE reach(classid, objid) AS ("
							"SELECT t.c, t.o FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) t(c, o) "
							"UNION "
							"SELECT CASE WHEN d.classid IN ('pg_catalog.pg_rewrite'::pg_catalog.regclass, "
							"'pg_catalog.pg_attrdef'::pg_catalog.regclass) "
							"THEN 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid ELSE d.classid END, "
							"CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
							"THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid) "
							"WHEN d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass "
							"THEN (SELECT a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = d.objid) "
							"ELSE d.objid END "
							"FROM reach JOIN ("
							"SELECT classid, objid, refclassid, refobjid FROM pg_catalog.pg_depend "
							"UNION ALL "
							"SELECT classid, objid, refclassid, refobjid FROM pg_catalog.pg_shdepend "
							"WHERE deptype = 'o' AND dbid = (SELECT oid FROM pg_catalog.pg_database "
							"WHERE datname = pg_catalog.current_database())) d "
							"ON d.refclassid = reach.classid AND d.refobjid = reach.objid) "
							"SELECT v.oid FROM (SELECT p.view::pg_catalog.oid, false "
							"FROM cdp_traits._published_views() p UNION ALL "
							"SELECT pg_catalog.to_regclass('cdp_traits.customer_events'), true) v(oid, events) "
							"WHERE EXISTS (SELECT FROM reach "
							"WHERE reach.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
							"AND reach.objid = v.oid)",
							2, types),
				values, NULL, SPI_OK_SELECT, "finding the published views a drop reaches");
	for (k = 0; k < SPI_processed; k++)
	{
		bool		isnull;
		Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[k],
														 SPI_tuptable->tupdesc, 1, &isnull));

		(void) isnull;			/* (the query returns no null) */

		if (oid == get_relname_relid("customer_events", get_namespace_oid(CDP_SCHEMA_NAME, false)))
			*view = true;
		else
			views = lappend_oid(views, oid);
	}
	return views;
}

/*
 * release_views
 *		Take the views out of the extension; returns them (ReleasedView),
 *		for the end of the command, made in TopTransactionContext.
 */
static List *
release_views(List *views)
{
	ListCell   *lc;
	List	   *released = NIL;
	MemoryContext old;

	foreach(lc, views)
	{
		char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(lfirst_oid(lc))),
													  get_rel_name(lfirst_oid(lc)));
		ReleasedView *r;

		cdp_execute_sql(psprintf("ALTER EXTENSION %s DROP VIEW %s", CDP_EXTENSION_NAME, name),
						SPI_OK_UTILITY, "releasing a published view");
		old = MemoryContextSwitchTo(TopTransactionContext);
		r = palloc(sizeof(ReleasedView));
		r->view = lfirst_oid(lc);
		r->name = pstrdup(name);
		released = lappend(released, r);
		MemoryContextSwitchTo(old);
	}
	return released;
}

/*
 * remember_command
 *		Keep what the start of a command left for its end (nothing is kept
 *		when it left nothing).  An entry of an earlier command that failed
 *		before its end, whose parse tree had the same address, goes.
 */
static void
remember_command(DdlCommand *cmd)
{
	MemoryContext old;
	DdlCommand *kept;

	if (CommandsXid != MyProc->lxid)
	{
		/* (the list of an earlier transaction went with its memory) */
		Commands = NIL;
		CommandsXid = MyProc->lxid;
	}
	{
		ListCell   *lc;

		foreach(lc, Commands)
			if (((DdlCommand *) lfirst(lc))->parsetree == cmd->parsetree)
				Commands = foreach_delete_current(Commands, lc);
	}
	if (cmd->released == NIL && !cmd->check_view && cmd->rules == NULL &&
		cmd->partitions == NULL)
		return;
	old = MemoryContextSwitchTo(TopTransactionContext);
	kept = palloc(sizeof(DdlCommand));
	*kept = *cmd;
	Commands = lappend(Commands, kept);
	MemoryContextSwitchTo(old);
}

/*
 * take_command
 *		What the start of the command parsetree left for its end, forgotten
 *		here; NULL if nothing.
 */
static DdlCommand *
take_command(Node *parsetree)
{
	ListCell   *lc;

	if (CommandsXid != MyProc->lxid)
		return NULL;
	foreach(lc, Commands)
	{
		DdlCommand *cmd = lfirst(lc);

		if (cmd->parsetree == parsetree)
		{
			Commands = foreach_delete_current(Commands, lc);
			return cmd;
		}
	}
	return NULL;
}

/*
 * cdp_drops_extension
 *		Whether a DROP statement drops the cdp_traits extension itself.
 */
bool
cdp_drops_extension(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
		if (strcmp(strVal(lfirst(lc)), CDP_EXTENSION_NAME) == 0)
			return true;
	return false;
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

		return stmt->behavior == DROP_CASCADE && !cdp_drops_extension(stmt);
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
 * ddl_guard_pause
 *		Pause (or resume) both event triggers, for DDL of the extension's
 *		own that they must leave alone (attach_events replacing
 *		customer_events).
 */
void
ddl_guard_pause(bool pause)
{
	Busy = pause;
}

/*
 * altered_events_table
 *		The attached events table, when an ALTER of relid changes its
 *		columns: relid is the table, a table it inherits from (its columns
 *		are dropped with the parent's), or the composite type it is a typed
 *		table of (ALTER TYPE ... DROP ATTRIBUTE ... CASCADE).  InvalidOid
 *		otherwise.
 */
static Oid
altered_events_table(Oid relid)
{
	bool		attached;
	Oid			events = stitch_source(NULL, &attached);
	HeapTuple	tup;
	Oid			oftype = InvalidOid;

	if (!OidIsValid(events) || !attached)
		return InvalidOid;
	if (relid == events)
		return relid;
	if (get_rel_relkind(relid) == RELKIND_COMPOSITE_TYPE)
	{
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(events));
		if (HeapTupleIsValid(tup))
		{
			oftype = ((Form_pg_class) GETSTRUCT(tup))->reloftype;
			ReleaseSysCache(tup);
		}
		return OidIsValid(oftype) && oftype == get_rel_type_id(relid) ? events : InvalidOid;
	}
	if (has_subclass(relid) &&
		list_member_oid(find_all_inheritors(relid, NoLock, NULL), events))
		return events;
	return InvalidOid;
}

/*
 * restore_drop_view
 *		A DROP VIEW of pg_restore (cdp_loaded_by_restore): pg_restore --clean
 *		drops cdp_traits.customer_events, then the events table, then the
 *		extension, before it restores them.  The published customer_events
 *		views (members of the extension) depend on the view, so they are
 *		dropped first (the extension's rows, publications among them, go
 *		with the extension, and the restore publishes again), and the view
 *		is not made again at the end of the command: it would keep the
 *		events table, and with it the extension, from being dropped.
 */
static void
restore_drop_view(DropStmt *stmt)
{
	Targets		targets = {NIL, NIL};

	drop_targets(stmt, &targets);
	if (targets.objids == NIL)
		return;
	Busy = true;
	PG_TRY();
	{
		CdpExecState es;
		bool		view;

		cdp_exec_begin(&es);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		(void) reached_published_views(&targets, &view);
		if (view)
			cdp_execute_sql("SELECT cdp_traits._unpublish_view('customer_events')",
							SPI_OK_SELECT, "unpublishing customer_events");
		SPI_finish();
		cdp_exec_end(&es);
	}
	PG_FINALLY();
	{
		Busy = false;
	}
	PG_END_TRY();
}

/*
 * guard_start
 *		The guard's part of the start of a command (see the top of this
 *		file), filling cmd: published views released, and whether the end
 *		must look at customer_events.
 */
static void
guard_start(Node *parsetree, DdlCommand *cmd)
{
	bool		cascade = is_cascade_drop(parsetree);
	AlterTableStmt *alter = NULL;
	bool		columns = false;
	Oid			altered = InvalidOid;
	Targets		targets = {NIL, NIL};

	/*
	 * What the command names, as it will resolve it: the relation an ALTER
	 * TABLE, ALTER FOREIGN TABLE or ALTER TYPE (of a composite type, whose
	 * relation has its name) changes; the objects a DROP names; the roles
	 * of a DROP OWNED.
	 */
	if (IsA(parsetree, AlterTableStmt))
	{
		/*
		 * (any ALTER TABLE or ALTER TYPE may change the events table's
		 * columns, through a parent or a composite type too: the end of
		 * the command follows them)
		 */
		cmd->check_view = true;
		alter = (AlterTableStmt *) parsetree;
		columns = events_view_changes_columns(alter);
		if (!cascade && !columns)
			return;
		altered = RangeVarGetRelid(alter->relation, NoLock, true);
		add_target(&targets, RelationRelationId, altered);
	}
	else if (!cascade)
	{
		if (IsA(parsetree, DropStmt) && ((DropStmt *) parsetree)->removeType == OBJECT_VIEW)
		{
			/* (pg_restore --clean: see restore_drop_view) */
			if (cdp_loaded_by_restore())
			{
				restore_drop_view((DropStmt *) parsetree);
				return;
			}
			/* (a view dropped: customer_events is made again if it was that) */
			cmd->check_view = true;
		}
		return;
	}
	else if (IsA(parsetree, DropStmt))
		drop_targets((DropStmt *) parsetree, &targets);
	else if (IsA(parsetree, DropOwnedStmt))
	{
		ListCell   *lc;

		foreach(lc, ((DropOwnedStmt *) parsetree)->roles)
			add_target(&targets, AuthIdRelationId, get_rolespec_oid(lfirst(lc), true));
	}
	if (targets.objids == NIL)
		return;
	cmd->check_view = true;

	Busy = true;
	PG_TRY();
	{
		CdpExecState es;
		Oid			events = InvalidOid;

		cdp_exec_begin(&es);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		/*
		 * Only the owner of what is altered may drop or retype its columns:
		 * another role's command fails anyway, and must not drop the views
		 * first.
		 */
		if (columns)
			events = altered_events_table(altered);
		if (OidIsValid(events) && pg_class_ownercheck(altered, es.save_userid))
			events_view_before_alter(events, alter);
		if (cascade)
		{
			bool		view;
			List	   *views = reached_published_views(&targets, &view);

			/* (what was granted on customer_events is granted again) */
			if (view && !OidIsValid(events))
				events_view_save_grants();
			cmd->released = release_views(views);
		}
		SPI_finish();
		cdp_exec_end(&es);
	}
	PG_FINALLY();
	{
		Busy = false;
	}
	PG_END_TRY();
}

/*
 * cdp_ddl_start
 *		Event trigger at the start of every DDL command: the rules' state
 *		before a drop or rename (rule_guard.c), the events table's
 *		partitions before a drop and a partition detached concurrently
 *		(partition_drop.c), and the guard of this file; what they leave for
 *		the end of the command is kept.
 */
Datum
cdp_ddl_start(PG_FUNCTION_ARGS)
{
	DdlCommand	cmd;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits._ddl_start() must be called as an event trigger")));
	memset(&cmd, 0, sizeof(cmd));
	cmd.parsetree = ((EventTriggerData *) fcinfo->context)->parsetree;
	if (Busy || IsBinaryUpgrade || cmd.parsetree == NULL)
		PG_RETURN_NULL();
	/* (also in other extensions' scripts: they may drop what a rule uses) */
	cmd.rules = rules_ddl_start(cmd.parsetree);
	if (!creating_extension)
	{
		cmd.partitions = stitch_drop_start(cmd.parsetree);
		stitch_detach_start(cmd.parsetree);
		guard_start(cmd.parsetree, &cmd);
	}
	remember_command(&cmd);
	PG_RETURN_NULL();
}

/*
 * guard_end
 *		The guard's part of the end of a command: the published views
 *		released at its start that are still there are members of the
 *		extension again, and after a command that may have changed the
 *		events table's columns or dropped customer_events (an ALTER TABLE or
 *		ALTER TYPE, a CASCADE drop that reached it through a type, a
 *		function or a parent table, a DROP VIEW), customer_events follows
 *		the table's columns, made again if it is gone (events_view_follow).
 *		A released view dropped and replaced by another relation of its name
 *		during the command is an error: that relation is not the
 *		extension's.
 */
static void
guard_end(DdlCommand *cmd)
{
	Busy = true;
	PG_TRY();
	{
		CdpExecState es;
		ListCell   *lc;
		bool		attached = false;

		cdp_exec_begin(&es);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		foreach(lc, cmd->released)
		{
			ReleasedView *r = lfirst(lc);
			Oid			view = r->view;

			if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(view)))
			{
				Oid			now = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(r->name)),
												   NoLock, true);

				if (OidIsValid(now))
					ereport(ERROR,
							(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							 errmsg("published view %s was replaced during the command", r->name),
							 errdetail("The command dropped the view that cdp_traits.publish() made, "
									   "and another relation of that name was created in its place."),
							 errhint("Run the command without replacing the view; "
									 "cdp_traits.publish() makes the published views.")));
				continue;
			}
			if (OidIsValid(getExtensionOfObject(RelationRelationId, view)))
				continue;
			cdp_execute_sql(psprintf("ALTER EXTENSION %s ADD VIEW %s", CDP_EXTENSION_NAME, r->name),
							SPI_OK_UTILITY, "publishing a view again");
		}
		/* (the configuration, and its rules, only while a table is attached) */
		if (cmd->check_view && OidIsValid(stitch_source(NULL, &attached)) && attached)
			events_view_follow(stitch_config(true));
		SPI_finish();
		cdp_exec_end(&es);
	}
	PG_FINALLY();
	{
		Busy = false;
	}
	PG_END_TRY();
}

/*
 * cdp_ddl_end
 *		Event trigger at the end of every DDL command: what its start left
 *		(see cdp_ddl_start) is acted on.  A rule the command broke fails it
 *		first; a pass over the events after dropped partitions comes last.
 */
Datum
cdp_ddl_end(PG_FUNCTION_ARGS)
{
	EventTriggerData *trig = (EventTriggerData *) fcinfo->context;
	DdlCommand *cmd;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits._ddl_end() must be called as an event trigger")));
	if (Busy || (cmd = take_command(trig->parsetree)) == NULL)
		PG_RETURN_NULL();
	if (cmd->rules != NULL)
		rules_ddl_end(cmd->rules, trig->tag);
	if (cmd->released != NIL || cmd->check_view)
		guard_end(cmd);
	if (cmd->partitions != NULL)
		stitch_drop_end(cmd->partitions);
	PG_RETURN_NULL();
}
