/*-------------------------------------------------------------------------
 *
 * events_view.c
 *		cdp_traits.customer_events, the attached events with the entity each
 *		belongs to: made by attach_events(), and kept in step with the events
 *		table's columns when they are added, renamed, dropped or retyped.
 *
 * The view lists the table's columns (ev.*, expanded when it is made), then
 * customer_entity_id; its published copies (publish()) are views of it.
 * PostgreSQL lets a view gain columns at its end and rename its columns in
 * place, so added and renamed columns are followed in place at the end of
 * the ALTER TABLE (events_view_follow, from the event trigger
 * cdp_new_partition), and views of one's own over the view or its copies
 * stay.
 *
 * A view depends on each column it lists: dropping a column of the table,
 * or changing its type, is refused while the view exists.  At the start of
 * such an ALTER TABLE by the table's owner (events_view_before_alter, from
 * ddl_guard.c), the view and its copies are dropped when nothing but
 * themselves depends on them; the end of the command makes them again from
 * the changed table and grants again what had been granted on them.  When
 * objects of one's own depend on them, the command is refused with their
 * names, unless it is a CASCADE drop: that drops them all (ddl_guard.c keeps
 * the extension out of it), and the end of the command makes the
 * extension's views again.  The six columns stitching reads are left
 * alone: stitching refuses to lose them, and their types are those it was
 * attached with.
 *
 * rekey_events() joins the view through the stored keys instead
 * (events_view_rejoin), in place too: its columns stay as they are.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "cdp_traits.h"
#include "stitch.h"

/*
 * The GRANT statements that give back the privileges on the view and its
 * copies, kept from the start of an ALTER TABLE that drops them to its end
 * (in TopTransactionContext, for the transaction that SavedXid names).
 */
typedef struct SavedGrant
{
	char	   *relation;		/* the view, qualified */
	char	   *statement;
} SavedGrant;

static List *SavedGrants = NIL;
static LocalTransactionId SavedXid = InvalidLocalTransactionId;

/* the published copies of customer_events, qualified (see publish()) */
#define PUBLISHED_COPIES \
	"SELECT p.view::pg_catalog.text FROM cdp_traits._published_views() p " \
	"WHERE p.rel = 'customer_events'"

/*
 * events_view_oid
 *		The view's OID, InvalidOid while there is none.
 */
static Oid
events_view_oid(void)
{
	return get_relname_relid("customer_events", get_namespace_oid(CDP_SCHEMA_NAME, false));
}

/*
 * events_view_select
 *		The view's query over the events table (quoted, qualified name),
 *		joined to event_entities by the events' keys (key_of: see
 *		stitch_key_format).
 */
char *
events_view_select(const char *events_name, const char *key_of)
{
	return psprintf("SELECT ev.*, ee.customer_entity_id FROM %s ev "
					"LEFT JOIN cdp_traits.event_entities ee ON ee.event_id = %s",
					events_name, psprintf(key_of, "ev.id"));
}

/*
 * events_view_create
 *		Make the view (there is none) from its query, with its comment and
 *		privileges, and publish it where the extension publishes.  Not a
 *		member of the extension: it goes with it, but pg_dump dumps it.
 */
void
events_view_create(const char *select_sql)
{
	cdp_execute_sql(psprintf("CREATE VIEW cdp_traits.customer_events AS %s", select_sql),
					SPI_OK_UTILITY, "creating customer_events");
	cdp_depend_on_extension(RelationRelationId, events_view_oid());
	cdp_execute_sql("COMMENT ON VIEW cdp_traits.customer_events IS "
					"'the attached events with the customer entity each belongs to'",
					SPI_OK_UTILITY, "commenting customer_events");
	/* readers and admins may read it (see src/sql/90_privileges.sql) */
	cdp_execute_sql("SELECT cdp_traits._grant('cdp_traits.customer_events', 'result')",
					SPI_OK_SELECT, "granting customer_events");
	cdp_execute_sql("SELECT cdp_traits._republish_view('customer_events')",
					SPI_OK_SELECT, "publishing customer_events");
}

/*
 * published_copies
 *		The qualified names of the view's published copies.
 */
static List *
published_copies(void)
{
	List	   *views = NIL;
	uint64		i;

	cdp_execute_sql(PUBLISHED_COPIES, SPI_OK_SELECT, "listing the published customer_events");
	for (i = 0; i < SPI_processed; i++)
		views = lappend(views, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	return views;
}

/*
 * events_view_save_grants
 *		Keep, for the end of this command, the GRANT statements that give
 *		back what is granted on the view and its copies to roles other than
 *		their owner.
 */
void
events_view_save_grants(void)
{
	uint64		i;
	MemoryContext old;

	cdp_execute_sql("SELECT g.rel, g.statement FROM cdp_traits._grants_of_others(ARRAY("
					"SELECT 'cdp_traits.customer_events'::pg_catalog.regclass::pg_catalog.oid UNION ALL "
					"SELECT p.view::pg_catalog.oid FROM cdp_traits._published_views() p "
					"WHERE p.rel = 'customer_events')) g",
					SPI_OK_SELECT, "reading the privileges on customer_events");
	old = MemoryContextSwitchTo(TopTransactionContext);
	SavedGrants = NIL;
	for (i = 0; i < SPI_processed; i++)
	{
		SavedGrant *g = palloc(sizeof(SavedGrant));

		g->relation = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		g->statement = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		SavedGrants = lappend(SavedGrants, g);
	}
	SavedXid = MyProc->lxid;
	MemoryContextSwitchTo(old);
}

/*
 * events_view_restore_grants
 *		Run the GRANT statements kept by events_view_save_grants in this
 *		transaction, on the views that exist again.
 */
void
events_view_restore_grants(void)
{
	ListCell   *lc;

	if (SavedXid != MyProc->lxid)
		return;
	foreach(lc, SavedGrants)
	{
		SavedGrant *g = lfirst(lc);
		RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(g->relation));

		if (OidIsValid(RangeVarGetRelid(rv, NoLock, true)))
			cdp_execute_sql(g->statement, SPI_OK_UTILITY, "granting customer_events again");
	}
	SavedGrants = NIL;
	SavedXid = InvalidLocalTransactionId;
}

/*
 * foreign_dependents
 *		What depends on the view or its copies besides themselves (as
 *		pg_describe_object names it, one per line), NULL if nothing does:
 *		then they may be dropped and made again.
 */
static char *
foreign_dependents(void)
{
	bool		isnull;
	Datum		d;

	cdp_execute_sql("WITH v AS (SELECT 'cdp_traits.customer_events'::pg_catalog.regclass::pg_catalog.oid AS oid "
					"UNION ALL SELECT p.view::pg_catalog.oid FROM cdp_traits._published_views() p "
					"WHERE p.rel = 'customer_events') "
					"SELECT pg_catalog.string_agg(DISTINCT CASE WHEN r.oid IS NOT NULL "
					"THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, r.ev_class, 0) "
					"ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END, E'\\n') "
					"FROM pg_catalog.pg_depend d "
					"LEFT JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
					"AND r.oid = d.objid "
					"WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
					"AND d.refobjid IN (SELECT oid FROM v) AND d.deptype <> 'i' "
					"AND (r.oid IS NULL OR r.ev_class NOT IN (SELECT oid FROM v))",
					SPI_OK_SELECT, "looking for views over customer_events");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

/* the columns stitching reads (see stitch_columns_problems) */
static const char *const StitchingColumns[] = {"id", "source_id", "type", "version", "event_time", "payload"};

/*
 * changed_column
 *		The first column that an ALTER TABLE drops or retypes among those
 *		stitching reads (stitching true) or among the others (false), NULL
 *		if none; *cascade says whether any such drop is CASCADE, *retype
 *		whether the first is a change of type.
 */
static const char *
changed_column(AlterTableStmt *stmt, bool stitching, bool *cascade, bool *retype)
{
	const char *first = NULL;
	ListCell   *lc;

	*cascade = false;
	*retype = false;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);
		int			i;
		bool		read = false;

		if (!IsA(cmd, AlterTableCmd) || cmd->name == NULL ||
			(cmd->subtype != AT_DropColumn && cmd->subtype != AT_AlterColumnType))
			continue;
		for (i = 0; i < lengthof(StitchingColumns); i++)
			read |= strcmp(cmd->name, StitchingColumns[i]) == 0;
		if (read != stitching)
			continue;
		if (first == NULL)
		{
			first = cmd->name;
			*retype = cmd->subtype == AT_AlterColumnType;
		}
		*cascade |= cmd->subtype == AT_DropColumn && cmd->behavior == DROP_CASCADE;
	}
	return first;
}

/*
 * events_view_changes_columns
 *		Whether an ALTER TABLE drops or retypes a column that the view lists
 *		if it alters the events table (see events_view_before_alter).
 */
bool
events_view_changes_columns(AlterTableStmt *stmt)
{
	bool		cascade;
	bool		retype;

	return changed_column(stmt, false, &cascade, &retype) != NULL ||
		changed_column(stmt, true, &cascade, &retype) != NULL;
}

/*
 * events_view_before_alter
 *		At the start of an ALTER TABLE of relid that drops or retypes a
 *		column (run as the extension owner, SPI connected): when relid is the
 *		attached events table, keep the privileges on the view and its
 *		copies for the end of the command, and drop them if nothing else
 *		depends on them.  When objects of one's own do, a CASCADE drop goes
 *		on (it drops them all, and the end of the command makes the
 *		extension's views again); anything else is refused here, naming
 *		those objects.
 */
void
events_view_before_alter(Oid relid, AlterTableStmt *stmt)
{
	StitchConfig *cfg = stitch_config(true);
	bool		cascade;
	bool		retype;
	const char *column;
	char	   *others;

	if (cfg == NULL || !cfg->attached || cfg->events_relid != relid)
		return;

	/* (refused at the end of the command anyway: said here, plainly) */
	column = changed_column(stmt, true, &cascade, &retype);
	if (column != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 retype ?
				 errmsg("cannot change the type of column \"%s\" of the events table %s while it is attached",
						column, cfg->events_name) :
				 errmsg("cannot drop column \"%s\" of the events table %s while it is attached",
						column, cfg->events_name),
				 errdetail("Stitching reads the columns id, source_id, type, version, event_time and payload."),
				 errhint("Run cdp_traits.detach_events(), change the table and attach it again.")));

	column = changed_column(stmt, false, &cascade, &retype);
	if (column == NULL || !OidIsValid(events_view_oid()))
		return;
	events_view_save_grants();
	others = foreign_dependents();
	if (others == NULL)
	{
		cdp_execute_sql("SELECT cdp_traits._unpublish_view('customer_events')",
						SPI_OK_SELECT, "unpublishing customer_events");
		cdp_execute_sql("DROP VIEW cdp_traits.customer_events",
						SPI_OK_UTILITY, "dropping customer_events");
	}
	else if (!cascade)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 retype ?
				 errmsg("cannot change the type of column \"%s\" of the events table %s while other objects depend on cdp_traits.customer_events",
						column, cfg->events_name) :
				 errmsg("cannot drop column \"%s\" of the events table %s while other objects depend on cdp_traits.customer_events",
						column, cfg->events_name),
				 errdetail("cdp_traits.customer_events lists every column of the events table and is made "
						   "again without it; these depend on it or on its published copies:\n%s", others),
				 retype ?
				 errhint("Drop those objects, change the column and create them again; cdp_traits makes "
						 "its own views again by itself.") :
				 errhint("Drop those objects first, or add CASCADE to drop them with the column; "
						 "cdp_traits makes its own views again by itself.")));
}

/*
 * view_columns
 *		The select list of the view's columns as they read the events table
 *		now (its current names, or, with keep_names, each aliased to the
 *		view's own name), then customer_entity_id where the view has it;
 *		with add, the table's columns the view does not list are appended
 *		(*added counts them).  Columns the table calls otherwise than the
 *		view are listed in *renames (old and new names, in pairs).  Returns
 *		NULL when a column of the view does not read the table (a view made
 *		by hand).
 */
static char *
view_columns(StitchConfig *cfg, Oid viewid, bool keep_names, bool add,
			 List **renames, int *added)
{
	Relation	view;
	Relation	table;
	Query	   *query;
	TupleDesc	vdesc;
	TupleDesc	tdesc;
	AttrNumber *reads;
	StringInfoData cols;
	char	   *result = NULL;
	int			i;
	ListCell   *lc;

	*renames = NIL;
	*added = 0;
	view = relation_open(viewid, AccessShareLock);
	table = relation_open(cfg->events_relid, AccessShareLock);
	vdesc = RelationGetDescr(view);
	tdesc = RelationGetDescr(table);

	/* the table's column that each column of the view reads */
	reads = palloc0(sizeof(AttrNumber) * vdesc->natts);
	query = get_view_query(view);
	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst(lc);
		Var		   *var = (Var *) tle->expr;
		RangeTblEntry *rte;

		if (tle->resjunk || !IsA(var, Var) || var->varlevelsup != 0 || var->varattno <= 0 ||
			tle->resno > vdesc->natts)
			continue;
		rte = rt_fetch(var->varno, query->rtable);
		if (rte->rtekind == RTE_RELATION && rte->relid == cfg->events_relid)
			reads[tle->resno - 1] = var->varattno;
	}

	initStringInfo(&cols);
	for (i = 0; i < vdesc->natts; i++)
	{
		const char *vname = NameStr(TupleDescAttr(vdesc, i)->attname);
		char	   *tname = reads[i] ? get_attname(cfg->events_relid, reads[i], true) : NULL;

		if (i > 0)
			appendStringInfoString(&cols, ", ");
		if (tname != NULL)
		{
			bool		renamed = strcmp(vname, tname) != 0;

			if (renamed)
				*renames = lappend(lappend(*renames, pstrdup(vname)), tname);
			appendStringInfo(&cols, "ev.%s", quote_identifier(tname));
			if (renamed && keep_names)
				appendStringInfo(&cols, " AS %s", quote_identifier(vname));
		}
		else if (strcmp(vname, "customer_entity_id") == 0)
			appendStringInfoString(&cols, "ee.customer_entity_id");
		else
			goto done;			/* (made by hand: left alone) */
	}
	for (i = 0; add && i < tdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tdesc, i);
		int			j;
		bool		listed = false;

		if (att->attisdropped)
			continue;
		for (j = 0; j < vdesc->natts && !listed; j++)
			listed = reads[j] == att->attnum;
		if (!listed)
		{
			appendStringInfo(&cols, ", ev.%s", quote_identifier(NameStr(att->attname)));
			(*added)++;
		}
	}
	result = cols.data;
done:
	relation_close(table, AccessShareLock);
	relation_close(view, AccessShareLock);
	return result;
}

/* follow_in_place's work, for cdp_in_subtransaction */
typedef struct ViewFollow
{
	StitchConfig *cfg;
	const char *cols;
	List	   *renames;
	int			added;
} ViewFollow;

/*
 * follow_in_place_in
 *		The renames and additions of follow_in_place, run in its
 *		subtransaction.
 */
static void
follow_in_place_in(void *arg)
{
	ViewFollow *f = arg;
	List	   *copies = published_copies();
	ListCell   *lc;
	int			i;

	for (i = 0; i < list_length(f->renames); i += 2)
	{
		const char *from = quote_identifier(list_nth(f->renames, i));
		const char *to = quote_identifier(list_nth(f->renames, i + 1));

		cdp_execute_sql(psprintf("ALTER VIEW cdp_traits.customer_events RENAME COLUMN %s TO %s",
								 from, to),
						SPI_OK_UTILITY, "renaming a column of customer_events");
		foreach(lc, copies)
			cdp_execute_sql(psprintf("ALTER VIEW %s RENAME COLUMN %s TO %s",
									 (char *) lfirst(lc), from, to),
							SPI_OK_UTILITY, "renaming a column of a published customer_events");
	}
	if (f->added > 0)
	{
		cdp_execute_sql(psprintf("CREATE OR REPLACE VIEW cdp_traits.customer_events AS "
								 "SELECT %s FROM %s ev "
								 "LEFT JOIN cdp_traits.event_entities ee ON ee.event_id = %s",
								 f->cols, f->cfg->events_name, stitch_key_sql(f->cfg, "ev.id")),
						SPI_OK_UTILITY, "adding columns to customer_events");
		foreach(lc, copies)
			cdp_execute_sql(psprintf("CREATE OR REPLACE VIEW %s AS "
									 "SELECT * FROM cdp_traits.customer_events",
									 (char *) lfirst(lc)),
							SPI_OK_UTILITY, "replacing a published customer_events");
	}
}

/*
 * follow_in_place
 *		Columns renamed in the events table are renamed in the view and its
 *		copies, and columns added join them (after customer_entity_id, where
 *		a view can grow); the copies are replaced in place, so views of one's
 *		own over them stay.  A failure is a warning: the ALTER TABLE goes
 *		through, and detaching and attaching again makes the view anew.
 */
static void
follow_in_place(StitchConfig *cfg, Oid viewid)
{
	ViewFollow	f;
	ErrorData  *edata;

	f.cfg = cfg;
	f.cols = view_columns(cfg, viewid, false, true, &f.renames, &f.added);
	if (f.cols == NULL || (f.added == 0 && f.renames == NIL))
		return;
	edata = cdp_in_subtransaction(follow_in_place_in, &f);
	if (edata == NULL)
		return;
	/* a cancel (statement timeout, pg_cancel_backend) cancels the command */
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);
	ereport(WARNING,
			(errmsg("cdp_traits.customer_events does not follow the columns of %s",
					cfg->events_name),
			 errdetail("%s", edata->message),
			 errhint("Once the cause is gone, detach and attach the events table again: "
					 "SELECT cdp_traits.detach_events(); SELECT cdp_traits.attach_events('%s');",
					 cfg->events_name)));
	FreeErrorData(edata);
}

/*
 * events_view_follow
 *		At the end of an ALTER TABLE of the attached events table: the view
 *		dropped at its start (or by its CASCADE) is made again from the
 *		table, with the privileges it had; otherwise renamed and added
 *		columns are followed in place.  Nothing while the table has a column
 *		named customer_entity_id (see stitch_has_view_column).
 */
void
events_view_follow(StitchConfig *cfg)
{
	Oid			viewid = events_view_oid();

	/* (a database still at 0.1.0 keeps its view as 0.1.0 did) */
	if (!stitch_keys_recorded())
		return;

	/*
	 * A column of the table named customer_entity_id cannot be followed (the
	 * view has one): an ALTER TABLE that makes one is refused by
	 * cdp_new_partition, which fires after this, naming it.
	 */
	if (stitch_has_view_column(cfg->events_relid))
		return;
	if (OidIsValid(viewid))
	{
		follow_in_place(cfg, viewid);
		return;
	}
	events_view_create(events_view_select(cfg->events_name, cfg->key_of));
	events_view_restore_grants();
}

/*
 * events_view_rejoin
 *		Join the view to event_entities by key_of (see stitch_key_format)
 *		instead, in place: its columns, their names and order stay, so views
 *		of one's own over it stay too (rekey_events).  A view made by hand
 *		is made again as attaching makes it.
 */
void
events_view_rejoin(StitchConfig *cfg, const char *key_of)
{
	Oid			viewid = events_view_oid();
	char	   *cols = NULL;
	List	   *renames;
	int			added;

	if (!OidIsValid(viewid))
	{
		events_view_create(events_view_select(cfg->events_name, key_of));
		return;
	}
	cols = view_columns(cfg, viewid, true, false, &renames, &added);
	if (cols == NULL)
	{
		cdp_execute_sql(psprintf("CREATE OR REPLACE VIEW cdp_traits.customer_events AS %s",
								 events_view_select(cfg->events_name, key_of)),
						SPI_OK_UTILITY, "joining customer_events by key");
		return;
	}
	cdp_execute_sql(psprintf("CREATE OR REPLACE VIEW cdp_traits.customer_events AS "
							 "SELECT %s FROM %s ev "
							 "LEFT JOIN cdp_traits.event_entities ee ON ee.event_id = %s",
							 cols, cfg->events_name, psprintf(key_of, "ev.id")),
					SPI_OK_UTILITY, "joining customer_events by key");
}
