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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/storage.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/smgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "cdp_traits.h"
#include "stitch.h"

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
 * stitch_drop_start
 *		At the start of a DDL command: if it may drop tables while a
 *		partitioned events table is attached, the table's partitions, noted
 *		in TopTransactionContext for stitch_drop_end; else NULL.
 */
void *
stitch_drop_start(Node *parsetree)
{
	CdpExecState es;
	Oid			events;
	bool		attached;
	List	   *partitions = NIL;

	if (!may_drop_tables(parsetree))
		return NULL;

	/* (read as the extension owner: this fires for every role's drop) */
	cdp_exec_begin(&es);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	events = stitch_source(NULL, &attached);
	SPI_finish();
	cdp_exec_end(&es);
	if (!OidIsValid(events) || !attached ||
		get_rel_relkind(events) != RELKIND_PARTITIONED_TABLE)
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

	{
		CdpExecState es;
		StitchConfig *cfg;
		MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
												  "cdp_traits dropped partitions",
												  ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		cdp_exec_begin(&es);
		cdp_exec_pin_rule_settings();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		cfg = stitch_config(true);
		if (cfg != NULL && cfg->attached && cfg->events_relid == w->events)
		{
			(void) stitch_config(false);
			stitch_partitions_left();
		}
		SPI_finish();
		cdp_exec_end(&es);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
	}
}
