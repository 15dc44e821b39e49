/*-------------------------------------------------------------------------
 *
 * partition_drop.c
 *		Partitions of the events table that are dropped: their events leave
 *		stitching as if they had been deleted.
 *
 * DROP TABLE fires no row or statement trigger, so the stitching triggers
 * of a partition never see its rows go: DROP TABLE of a partition (or of a
 * partition that is itself partitioned), and the CASCADE drops that reach
 * one (DROP SCHEMA ... CASCADE, DROP OWNED, DROP SERVER ... CASCADE of a
 * foreign partition) would leave its events stitched.  So, from the event
 * triggers around DDL (ddl_guard.c calls in here, and keeps the note for
 * the end of the command): at the start of a drop that may remove tables,
 * the partitions of the attached events table are noted (OIDs and the
 * files of their rows; no lock is taken, nothing is read from them); at
 * the end of the same command, if one of them is gone
 * and the events table itself is still there, what is left is stitched
 * again, as after TRUNCATE of one partition (stitch_partitions_left: one
 * pass over all remaining events).  That pass is skipped when every table
 * dropped was empty: its file, which this transaction deletes at commit,
 * has no block (the drop holds it exclusively: no row can come in after).
 * A drop of the events table itself is left alone (see README).
 *
 * Such a drop (or a DETACH) locks the events table and then, removing the
 * entities left without events, their values; a change of the attributes
 * locks the values it takes away and then, rebuilding the pivot view (a
 * DDL command whose event triggers compile the stitching rules), the
 * events table.  So a change of the attributes takes the events table's
 * lock first (cdp_events_locked_first, a BEFORE statement trigger), and
 * the two wait for each other at their start, not crosswise.  So does
 * restitch(), which takes the stitching lock that the drop's pass asks for
 * after it holds the table (stitch_lock_events_first).
 *
 * DETACH PARTITION ... CONCURRENTLY commits its first transaction in the
 * middle of the command: from then on the partition is "detach pending",
 * its rows are no longer read through the events table and its triggers
 * leave it alone (stitch_is_events_relid), but the end of the command, where
 * cdp_new_partition makes its events leave, comes only in the second
 * transaction, which may be cancelled (leaving the partition pending until
 * DETACH ... FINALIZE).  So the start of such a command notes the partition
 * (stitch_detach_start), and the first transaction, just before it commits,
 * stitches what is left (detach_pre_commit): stitching commits with the
 * catalog change that took the events out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/storage.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/smgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_events_locked_first);

/* A partition of the events table, as a drop found it at its start. */
typedef struct Partition
{
	Oid			relid;
	char		relkind;
	RelFileNode file;			/* of a table (RELKIND_RELATION) */
} Partition;

/*
 * The partitions of the events table when a drop started, kept for its end
 * (by ddl_guard.c, with the rest of what the command's start noted).
 */
typedef struct DropWatch
{
	Oid			events;
	int			npartitions;
	Partition  *partitions;
} DropWatch;

/*
 * may_drop_tables
 *		Whether a command can drop tables: DROP TABLE, DROP FOREIGN TABLE,
 *		DROP SCHEMA, DROP OWNED, or any drop with CASCADE (but that of the
 *		extension itself).
 */
static bool
may_drop_tables(Node *parsetree)
{
	DropStmt   *stmt;

	if (IsA(parsetree, DropOwnedStmt))
		return true;
	if (!IsA(parsetree, DropStmt))
		return false;
	stmt = (DropStmt *) parsetree;
	if (cdp_drops_extension(stmt))
		return false;
	return stmt->removeType == OBJECT_TABLE ||
		stmt->removeType == OBJECT_FOREIGN_TABLE ||
		stmt->removeType == OBJECT_SCHEMA ||
		stmt->behavior == DROP_CASCADE;
}

/*
 * attached_events
 *		The attached events table, or InvalidOid.  Read as the extension
 *		owner: the DDL triggers that ask fire for every role's commands.
 */
static Oid
attached_events(void)
{
	CdpExecState es;
	Oid			events;
	bool		attached;

	cdp_exec_begin(&es);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	events = stitch_source(NULL, &attached);
	SPI_finish();
	cdp_exec_end(&es);
	return attached ? events : InvalidOid;
}

/*
 * stitch_drop_start
 *		At the start of a DDL command: if it may drop tables while a
 *		partitioned events table is attached, the table's partitions, noted
 *		in TopTransactionContext for stitch_drop_end; else NULL.
 */
void *
stitch_drop_start(Node *parsetree)
{
	Oid			events;
	List	   *partitions = NIL;

	if (!may_drop_tables(parsetree))
		return NULL;

	events = attached_events();
	if (!OidIsValid(events) || get_rel_relkind(events) != RELKIND_PARTITIONED_TABLE)
		return NULL;

	/* (without locks: a drop that fails leaves them all there) */
	partitions = list_delete_first(find_all_inheritors(events, NoLock, NULL));
	if (partitions == NIL)
		return NULL;

	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		DropWatch  *w = palloc(sizeof(DropWatch));
		ListCell   *lc;

		w->events = events;
		w->npartitions = 0;
		w->partitions = palloc0(sizeof(Partition) * list_length(partitions));
		foreach(lc, partitions)
		{
			HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(lfirst_oid(lc)));
			Form_pg_class form;
			Partition  *part;

			if (!HeapTupleIsValid(tup))
				continue;
			form = (Form_pg_class) GETSTRUCT(tup);
			part = &w->partitions[w->npartitions++];
			part->relid = form->oid;
			part->relkind = form->relkind;
			part->file.spcNode = OidIsValid(form->reltablespace) ?
				form->reltablespace : MyDatabaseTableSpace;
			part->file.dbNode = MyDatabaseId;
			part->file.relNode = form->relfilenode;
			ReleaseSysCache(tup);
		}
		MemoryContextSwitchTo(old);
		return w;
	}
}

/*
 * dropped_empty
 *		Whether a partition this transaction just dropped held no rows: a
 *		table whose file (as noted at the start of the drop) is among those
 *		this transaction deletes at commit, and has no block.  Anything else
 *		(a foreign table, a file rewritten since) counts as rows.
 */
static bool
dropped_empty(Partition *part, RelFileNode *deleted, int ndeleted)
{
	SMgrRelation smgr;
	int			i;

	if (part->relkind == RELKIND_PARTITIONED_TABLE)
		return true;			/* (its own partitions are in the list) */
	if (part->relkind != RELKIND_RELATION || !OidIsValid(part->file.relNode))
		return false;
	for (i = 0; i < ndeleted; i++)
		if (RelFileNodeEquals(deleted[i], part->file))
			break;
	if (i == ndeleted)
		return false;
	smgr = smgropen(part->file, InvalidBackendId);
	return smgrexists(smgr, MAIN_FORKNUM) && smgrnblocks(smgr, MAIN_FORKNUM) == 0;
}

/*
 * stitch_what_is_left
 *		Stitch again what is left of the attached events table events after
 *		partitions left it, as after a TRUNCATE of one.  leaving: a partition
 *		the transaction still reads through the events table (the first
 *		transaction of DETACH ... CONCURRENTLY): its rows are skipped, and
 *		nothing is done if none of them is stitched; else InvalidOid.
 */
static void
stitch_what_is_left(Oid events, Oid leaving)
{
	CdpExecState es;
	StitchConfig *cfg;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "cdp_traits partitions left",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = stitch_config(true);
	if (cfg != NULL && cfg->attached && cfg->events_relid == events &&
		(!OidIsValid(leaving) || stitch_rows_stitched(cfg, leaving)))
	{
		(void) stitch_config(false);
		if (OidIsValid(leaving))
			stitch_read_skip(find_all_inheritors(leaving, NoLock, NULL));
		PG_TRY();
		{
			stitch_partitions_left();
		}
		PG_FINALLY();
		{
			stitch_read_skip(NIL);
		}
		PG_END_TRY();
	}
	SPI_finish();
	cdp_exec_end(&es);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*
 * stitch_drop_end
 *		At the end of a drop whose start noted the events table's
 *		partitions (watch, from stitch_drop_start): if one of them that held
 *		rows is gone while the events table is still there and attached,
 *		the events of the dropped partitions have left: stitch what is left
 *		again.
 */
void
stitch_drop_end(void *watch)
{
	DropWatch  *w = (DropWatch *) watch;
	bool		rows_gone = false;

	if (creating_extension)
		return;
	{
		RelFileNode *deleted = NULL;
		int			ndeleted = smgrGetPendingDeletes(true, &deleted);
		int			i;

		for (i = 0; i < w->npartitions; i++)
			if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(w->partitions[i].relid)) &&
				!dropped_empty(&w->partitions[i], deleted, ndeleted))
				rows_gone = true;
	}
	if (!rows_gone || !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(w->events)) ||
		!OidIsValid(get_extension_oid(CDP_EXTENSION_NAME, true)))
		return;

	stitch_what_is_left(w->events, InvalidOid);
}

/*
 * The partition of the events table that a DETACH PARTITION ...
 * CONCURRENTLY is taking out, noted at the start of the command for the
 * end of its first transaction (DetachLxid: that transaction).
 */
static Oid	DetachEvents = InvalidOid;
static Oid	DetachPartition = InvalidOid;
static LocalTransactionId DetachLxid = InvalidLocalTransactionId;
static bool DetachCallbackRegistered = false;

/*
 * concurrent_detach
 *		The partition that an ALTER TABLE ... DETACH PARTITION ...
 *		CONCURRENTLY names, and (*parent) the table it is detached from,
 *		resolved as the command resolves them; InvalidOid for any other
 *		command.
 */
static Oid
concurrent_detach(Node *parsetree, Oid *parent)
{
	AlterTableStmt *stmt;
	ListCell   *lc;

	if (!IsA(parsetree, AlterTableStmt))
		return InvalidOid;
	stmt = (AlterTableStmt *) parsetree;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
		PartitionCmd *pc = (PartitionCmd *) cmd->def;

		/* (CONCURRENTLY is alone in its command) */
		if (cmd->subtype == AT_DetachPartition && pc != NULL && IsA(pc, PartitionCmd) &&
			pc->concurrent)
		{
			*parent = RangeVarGetRelid(stmt->relation, NoLock, true);
			return OidIsValid(*parent) ? RangeVarGetRelid(pc->name, NoLock, true) : InvalidOid;
		}
	}
	return InvalidOid;
}

/*
 * stitch_rows_stitched
 *		Whether a row of table relid (a partition leaving the events table,
 *		one that left it, or one joining it) has an entity (caller SPI
 *		connected, as the extension owner).
 */
bool
stitch_rows_stitched(StitchConfig *cfg, Oid relid)
{
	return cdp_execute_sql(psprintf("SELECT FROM %s p WHERE EXISTS (SELECT FROM cdp_traits.event_entities ee "
									"WHERE ee.event_id = %s) LIMIT 1",
									quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
															   get_rel_name(relid)),
									stitch_key_sql(cfg, "p.id")),
						   SPI_OK_SELECT, "looking for stitched rows of a partition") > 0;
}

/*
 * detach_pre_commit
 *		Just before the first transaction of the DETACH ... CONCURRENTLY
 *		noted by stitch_detach_start commits: if the partition has left the
 *		events table (it is detach pending now), still attached, and one
 *		of its rows has an entity, stitch what is left again.  An error here aborts
 *		that transaction, and the command fails with the partition attached.
 */
static void
detach_pre_commit(Oid events, Oid part)
{
	/* (the command's last catalog changes are not visible yet) */
	CommandCounterIncrement();
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(events)) ||
		get_rel_name(part) == NULL || stitch_is_events_relid(events, part) ||
		!OidIsValid(get_extension_oid(CDP_EXTENSION_NAME, true)))
		return;

	/* (the command popped its snapshot before committing) */
	PushActiveSnapshot(GetTransactionSnapshot());
	stitch_what_is_left(events, part);
	PopActiveSnapshot();
}

/*
 * detach_xact_callback
 *		Transaction callback: the first transaction of a DETACH ...
 *		CONCURRENTLY that stitch_detach_start noted is about to commit (see
 *		detach_pre_commit); any end of a transaction forgets the note.
 */
static void
detach_xact_callback(XactEvent event, void *arg)
{
	Oid			events = DetachEvents;
	Oid			part = DetachPartition;
	bool		ours = OidIsValid(part) && DetachLxid == MyProc->lxid;

	if (event != XACT_EVENT_PRE_COMMIT || !ours)
	{
		if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PARALLEL_PRE_COMMIT &&
			event != XACT_EVENT_PRE_PREPARE)
			DetachPartition = InvalidOid;
		return;
	}
	DetachPartition = InvalidOid;
	detach_pre_commit(events, part);
}

/*
 * stitch_detach_start
 *		At the start of a DDL command: if it is ALTER TABLE ... DETACH
 *		PARTITION ... CONCURRENTLY of a partition of the attached events
 *		table, note it for the end of the command's first transaction (see
 *		the top of this file).
 */
void
stitch_detach_start(Node *parsetree)
{
	Oid			parent = InvalidOid;
	Oid			part = concurrent_detach(parsetree, &parent);
	Oid			events;

	if (!OidIsValid(part))
		return;

	events = attached_events();
	if (!stitch_is_events_relid(events, parent) || !stitch_is_events_relid(events, part))
		return;

	if (!DetachCallbackRegistered)
	{
		RegisterXactCallback(detach_xact_callback, NULL);
		DetachCallbackRegistered = true;
	}
	DetachEvents = events;
	DetachPartition = part;
	DetachLxid = MyProc->lxid;
}

/*
 * stitch_lock_events_first
 *		Lock the attached events table (AccessShareLock, to the end of the
 *		transaction), if one is attached: what locks entities' values or the
 *		stitching lock takes it first (see the top of this file), as a DROP
 *		or DETACH of a partition does.  It waits for such a command.
 */
void
stitch_lock_events_first(void)
{
	Oid			events = attached_events();

	if (OidIsValid(events))
		LockRelationOid(events, AccessShareLock);
}

/*
 * cdp_events_locked_first
 *		BEFORE statement trigger on cdp_traits.attributes: the events table
 *		locked before the statement locks any entity's values (the lock the
 *		rules' compilation takes later anyway).
 */
Datum
cdp_events_locked_first(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(((TriggerData *) fcinfo->context)->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits._events_locked_first() must be called as a BEFORE trigger")));
	stitch_lock_events_first();
	return PointerGetDatum(NULL);
}
