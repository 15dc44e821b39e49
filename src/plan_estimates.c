/*-------------------------------------------------------------------------
 *
 * plan_estimates.c
 *		Size estimates of the extension's own tables when their statistics
 *		say "no rows" of a table that has pages.
 *
 * ANALYZE counts only committed rows (and the analyzing transaction's own).
 * When autovacuum analyzes a stitching or segment table while a long
 * transaction fills it -- a subscription's apply worker applying a large
 * remote transaction, a bulk load, a session ingesting events one by one in
 * one transaction -- pg_class records the table's pages and zero rows.  The
 * planner derives a table's rows from its current size times the recorded
 * density, so it then takes every page for empty however large the table
 * grows: a whole-index scan whose keys are checked by a join filter, or one
 * whose rows are filtered by `= ANY (...)`, looks cheaper than one probe per
 * key, and each statement reads the table whole.  A 40,000-event remote
 * transaction took 250 s instead of 15 s, until autovacuum analyzed the
 * table again after the commit.
 *
 * For the tables of the extension's schema whose pg_class row says pages
 * and no rows, this planner hook estimates the rows as PostgreSQL does for
 * a table never analyzed: its current pages times the rows a page holds by
 * the columns' average widths.  A table that really is empty and kept its
 * pages is then thought to hold rows, which only makes the planner favour
 * index probes over scans of it.  Other tables, and tables with any
 * recorded rows, are left as the planner sees them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "nodes/pathnodes.h"
#include "optimizer/plancat.h"
#include "storage/bufpage.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "cdp_traits.h"

static get_relation_info_hook_type prev_get_relation_info = NULL;

/*
 * recorded_empty
 *		Whether pg_class records pages and no rows for a relation of the
 *		extension's schema.
 */
static bool
recorded_empty(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;
	bool		empty;
	Oid			nsp;

	if (!HeapTupleIsValid(tup))
		return false;
	form = (Form_pg_class) GETSTRUCT(tup);
	empty = form->relkind == RELKIND_RELATION &&
		form->relpages > 0 && form->reltuples == 0;
	nsp = form->relnamespace;
	ReleaseSysCache(tup);
	return empty && nsp == get_namespace_oid(CDP_SCHEMA_NAME, true);
}

/*
 * cdp_relation_info
 *		get_relation_info_hook: for a table of the extension recorded as
 *		pages and no rows (see the file's header), estimate its rows from its
 *		current pages and its columns' widths, and give its indexes (other
 *		than partial ones) the same number of rows, as the planner does.
 */
static void
cdp_relation_info(PlannerInfo *root, Oid relid, bool inhparent, RelOptInfo *rel)
{
	Relation	relation;
	int32		tuple_width;
	double		density;
	ListCell   *lc;

	if (prev_get_relation_info)
		prev_get_relation_info(root, relid, inhparent, rel);
	if (inhparent || rel->pages == 0 || !recorded_empty(relid))
		return;

	relation = table_open(relid, NoLock);
	tuple_width = get_rel_data_width(relation, NULL);
	table_close(relation, NoLock);
	tuple_width += MAXALIGN(SizeofHeapTupleHeader) + sizeof(ItemIdData);
	density = (double) (BLCKSZ - SizeOfPageHeaderData) / tuple_width;

	rel->tuples = rint(density * (double) rel->pages);
	foreach(lc, rel->indexlist)
	{
		IndexOptInfo *index = (IndexOptInfo *) lfirst(lc);

		if (index->indpred == NIL)
			index->tuples = rel->tuples;
	}
}

/*
 * cdp_plan_estimates_init
 *		Install the planner hook; called by _PG_init.
 */
void
cdp_plan_estimates_init(void)
{
	prev_get_relation_info = get_relation_info_hook;
	get_relation_info_hook = cdp_relation_info;
}
