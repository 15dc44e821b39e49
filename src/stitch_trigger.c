/*-------------------------------------------------------------------------
 *
 * stitch_trigger.c
 *		The statement-level triggers on the attached events table.
 *
 * INSERT: the identifiers of the new rows (one query over the NEW transition
 * table) are stitched as one batch.  DELETE: the deleted events lose their
 * entity and the entities they leave are re-stitched from their remaining
 * events (which finds splits).  UPDATE: only events whose identifiers changed
 * are re-stitched (as a delete of the old and an insert of the new version);
 * the entities of the others are marked for recalculation.  TRUNCATE: all
 * stitching is emptied.
 *
 * A trigger of the user's on the events table may change the rows of an
 * INSERT before its stitching trigger fires: PostgreSQL fires AFTER ROW
 * triggers (and AFTER STATEMENT triggers named before ours) first, and the
 * UPDATE or DELETE such a trigger runs is stitched at its own end, while
 * the INSERT's NEW transition table still holds the rows as inserted.  An
 * "enrichment" trigger that updated an inserted event's identifiers then
 * made the INSERT fail (duplicate key in event_entities: the UPDATE had
 * stitched the event already), and a "dedup" trigger that deleted one left
 * it stitched, with its identifiers, though it was gone.  So an UPDATE or
 * DELETE stitched from inside another trigger is noted for the rest of
 * the transaction, and from then on an INSERT stitches only its rows that
 * are still in the table and not stitched yet (SRC_NEW_ROWS_LIVE): an
 * updated row was stitched by its UPDATE, in its new version.  An UPDATE
 * then re-stitches every event it updated from its row as it is now
 * (SRC_NEW_ROWS_CURRENT): a trigger on the UPDATE that updated the row
 * again (normalizing an e-mail address) or deleted it had its change
 * stitched first, and the outer UPDATE stitched the version it wrote over
 * it.
 *
 * Where session_replication_role is replica (the logical replication apply
 * worker), statement triggers enabled as usual do not fire, and the apply
 * worker fires row triggers only: a row trigger enabled for replicas only
 * stitches each row there, as a statement of one row (and a TRUNCATE
 * trigger enabled for replicas does the TRUNCATE).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "cdp_traits.h"
#include "stitch.h"

/* the transaction in which an UPDATE or DELETE was stitched inside a trigger */
static LocalTransactionId NestedChangeLxid = InvalidLocalTransactionId;

static int	cmp_key(const void *a, const void *b);

PG_FUNCTION_INFO_V1(cdp_stitch_events);
PG_FUNCTION_INFO_V1(cdp_stitch_event_row);

/* One (event, attribute, value) row of the identifier query. */
typedef struct IdentRow
{
	const char *eid;
	const char *attr;
	const char *val;
} IdentRow;

/*
 * cmp_row
 *		Order identifier rows by event, attribute, value.
 */
static int
cmp_row(const void *a, const void *b)
{
	const IdentRow *x = a;
	const IdentRow *y = b;
	int			r = strcmp(x->eid, y->eid);

	if (r == 0)
		r = strcmp(x->attr, y->attr);
	if (r == 0)
		r = strcmp(x->val, y->val);
	return r;
}

/* State of collecting identifier rows. */
typedef struct RowCollector
{
	StitchConfig *cfg;
	MemoryContext cxt;
	bool		new_rows;		/* rows being written: a NULL id is an error */
	bool		null_id;		/* ... and one was seen */
	IdentRow   *rows;
	int			nrows;
	int			maxrows;
	/* the ids of events without identifiers, if wanted (keep_empty) */
	bool		keep_empty;
	const char **empty;
	int			nempty;
	int			maxempty;
} RowCollector;

/*
 * reject_null_id
 *		An event being written has no id.  Stitching records events by id
 *		(event_entities), so such an event could never be found again: a
 *		delete or update of it could not release its identifiers.  The
 *		statement is rejected, as a NOT NULL constraint would reject it.
 */
static void
reject_null_id(StitchConfig *cfg)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("event id must not be null"),
			 errdetail("Every event of the events table %s needs an id: stitching records "
					   "events by id; the statement was not applied.", cfg->events_name),
			 errhint("Give the event an id, and declare the id column NOT NULL so that "
					 "such events are rejected before stitching.")));
}

/*
 * collect_row
 *		stitch_read_events callback: keep each identifier as an IdentRow.
 */
static void
collect_row(EventRow *row, void *arg)
{
	RowCollector *rc = arg;
	char	   *eid;
	int			i;

	if (row->event_id == NULL)
	{
		/* (an old version without id was never stitched: nothing to forget) */
		rc->null_id |= rc->new_rows;
		return;
	}
	if (row->nidents == 0 && !rc->keep_empty)
		return;
	eid = MemoryContextAlloc(rc->cxt, row->event_id_len + 1);
	memcpy(eid, row->event_id, row->event_id_len);
	eid[row->event_id_len] = '\0';
	if (row->nidents == 0)
	{
		if (rc->nempty >= rc->maxempty)
		{
			rc->maxempty = Max(rc->maxempty * 2, 256);
			rc->empty = rc->empty ?
				repalloc_huge(rc->empty, sizeof(char *) * rc->maxempty) :
				MemoryContextAllocHuge(rc->cxt, sizeof(char *) * rc->maxempty);
		}
		rc->empty[rc->nempty++] = eid;
		return;
	}
	for (i = 0; i < row->nidents; i++)
	{
		char	   *val;

		if (rc->nrows >= rc->maxrows)
		{
			rc->maxrows = Max(rc->maxrows * 2, 256);
			rc->rows = rc->rows ?
				repalloc_huge(rc->rows, sizeof(IdentRow) * rc->maxrows) :
				MemoryContextAllocHuge(rc->cxt, sizeof(IdentRow) * rc->maxrows);
		}
		val = MemoryContextAlloc(rc->cxt, row->len[i] + 1);
		memcpy(val, row->val[i], row->len[i]);
		val[row->len[i]] = '\0';
		rc->rows[rc->nrows].eid = eid;
		rc->rows[rc->nrows].attr = rc->cfg->attrs[row->attr[i]];
		rc->rows[rc->nrows].val = val;
		rc->nrows++;
	}
}

/*
 * fetch_rows_empty
 *		The identifiers of the events of a transition table, as rows sorted
 *		by event, attribute and value; with empty, also the ids of the
 *		events that have none (sorted, into *empty and *nempty).
 */
static IdentRow *
fetch_rows_empty(StitchSource source, Oid relid, int *nrows,
				 const char ***empty, int *nempty)
{
	RowCollector rc;

	memset(&rc, 0, sizeof(rc));
	rc.cfg = stitch_config(false);
	rc.cxt = CurrentMemoryContext;
	rc.new_rows = (source == SRC_NEW_ROWS);
	rc.keep_empty = (empty != NULL);
	stitch_read_events(source, relid, (Datum) 0, false, collect_row, &rc);
	if (rc.null_id)
		reject_null_id(rc.cfg);
	if (rc.nrows > 1)
		qsort(rc.rows, rc.nrows, sizeof(IdentRow), cmp_row);
	*nrows = rc.nrows;
	if (empty != NULL)
	{
		if (rc.nempty > 1)
			qsort(rc.empty, rc.nempty, sizeof(char *), cmp_key);
		*empty = rc.empty;
		*nempty = rc.nempty;
	}
	return rc.rows;
}

/*
 * fetch_rows
 *		The identifiers of the events of a transition table, as rows sorted
 *		by event, attribute and value.
 */
static IdentRow *
fetch_rows(StitchSource source, Oid relid, int *nrows)
{
	return fetch_rows_empty(source, relid, nrows, NULL, NULL);
}

/* State of reading the NEW rows of an INSERT. */
typedef struct InsertReader
{
	StitchGraph *g;
	bool		null_id;		/* an event without an id was seen */
} InsertReader;

/*
 * graph_row
 *		stitch_read_events callback: add each new event to the graph (an
 *		event without an id is noted, and rejected once the read is over).
 */
static void
graph_row(EventRow *row, void *arg)
{
	InsertReader *ir = arg;

	if (row->event_id == NULL)
		ir->null_id = true;
	else if (row->nidents > 0)
		(void) graph_add_event_row(ir->g, row, NULL);
}

/*
 * group_end
 *		Index just past the rows of the event at rows[i].
 */
static int
group_end(IdentRow *rows, int n, int i)
{
	int			j = i + 1;

	while (j < n && strcmp(rows[j].eid, rows[i].eid) == 0)
		j++;
	return j;
}

/*
 * add_group
 *		Add one event and its identifier rows [from, to) to the graph.
 */
static void
add_group(StitchGraph *g, IdentRow *rows, int from, int to)
{
	int			e = graph_add_event(g, rows[from].eid, strlen(rows[from].eid), NULL);
	int			k;

	for (k = from; k < to; k++)
		graph_add_identifier(g, e, rows[k].attr, strlen(rows[k].attr),
							 rows[k].val, strlen(rows[k].val));
}

/*
 * all_ids
 *		The ids (as keys) of all rows of a transition table that have one
 *		(an event without an id was never stitched).
 */
static const char **
all_ids(const char *table, Oid relid, int *n)
{
	char		key[48];

	snprintf(key, sizeof(key), "ids_only:%s:%u", table, relid);
	return stitch_read_ids(stitch_cached_plan(key, psprintf("SELECT %s FROM %s",
															stitch_key_sql(stitch_config(false), "id"),
															table),
											  0, NULL), n);
}

/*
 * stored_events
 *		Of the events ids (keys), those event_entities holds.
 */
static const char **
stored_events(const char **ids, int n, int *nstored)
{
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	const char **stored;
	uint64		i;

	args[0] = cdp_text_array(ids, n);
	cdp_execute(stitch_cached_plan("stored_events",
								   "SELECT event_id FROM cdp_traits.event_entities "
								   "WHERE event_id = ANY ($1)",
								   1, argtypes),
				args, NULL, SPI_OK_SELECT, "looking up updated events");
	stored = palloc_extended(sizeof(char *) * Max(SPI_processed, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < SPI_processed; i++)
		stored[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	*nstored = (int) SPI_processed;
	SPI_freetuptable(SPI_tuptable);
	return stored;
}

/*
 * duplicate_id_error
 *		The error of a statement that would give two events the id id (as
 *		the user wrote it), without a unique index on id to say so.
 */
static void
duplicate_id_error(const char *id, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("duplicate event id \"%s\"", id),
			 errdetail("%s", detail),
			 errhint("Add a unique constraint on the id column of the events table.")));
}

/*
 * check_duplicate_ids
 *		Without a unique index on id, make sure the new events do not reuse
 *		an id (within the statement, or of an event already stitched).
 */
static void
check_duplicate_ids(Oid relid)
{
	char		key[48];

	snprintf(key, sizeof(key), "dup_ids:%u", relid);
	cdp_execute(stitch_cached_plan(key,
								   psprintf("SELECT id FROM (SELECT id::text FROM " CDP_NEW_TABLE
											" GROUP BY 1 HAVING count(*) > 1) d "
											"UNION ALL SELECT n.id::text FROM cdp_traits.event_entities ee "
											"JOIN " CDP_NEW_TABLE " n ON ee.event_id = %s LIMIT 1",
											stitch_key_sql(stitch_config(false), "n.id")),
								   0, NULL),
				NULL, NULL, SPI_OK_SELECT, "checking event ids");
	if (SPI_processed > 0)
		duplicate_id_error(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
						   "Every event needs an id of its own; the statement was not applied.");
}

/*
 * check_updated_ids
 *		Without a unique index on id, make sure an UPDATE that changes event
 *		ids does not give an event the id of another one: one it gives to
 *		several rows, or that an event not updated is stitched under (as
 *		check_duplicate_ids does for an INSERT).  Ids that stay, are swapped
 *		among the updated rows or move to free ones are fine.  Costs one read
 *		of the ids of both transition tables, and a probe of event_entities
 *		only when some id changed.
 */
static void
check_updated_ids(StitchConfig *cfg, Oid relid)
{
	int			nold,
				nnew,
				i = 0,
				j = 0,
				nchanged = 0;
	const char **oldids = all_ids(CDP_OLD_TABLE, relid, &nold);
	const char **newids = all_ids(CDP_NEW_TABLE, relid, &nnew);
	const char **changed;
	const char *dup = NULL;

	if (nold > 1)
		qsort(oldids, nold, sizeof(char *), cmp_key);
	if (nnew > 1)
		qsort(newids, nnew, sizeof(char *), cmp_key);
	changed = palloc_extended(sizeof(char *) * Max(nnew, 1), MCXT_ALLOC_HUGE);

	/* the new ids beyond the old ones (as multisets) */
	while (j < nnew && dup == NULL)
	{
		int			c = (i < nold) ? strcmp(oldids[i], newids[j]) : 1;

		if (c == 0)
		{
			i++;
			j++;
		}
		else if (c < 0)
			i++;
		else
		{
			/* an id given to several rows is a duplicate outright */
			if ((j > 0 && strcmp(newids[j - 1], newids[j]) == 0) ||
				(j + 1 < nnew && strcmp(newids[j + 1], newids[j]) == 0))
				dup = newids[j];
			else
				changed[nchanged++] = newids[j];
			j++;
		}
	}

	/* one given to a single row: taken if an event not updated has it */
	if (dup == NULL && nchanged > 0)
	{
		Datum		args[1];
		Oid			argtypes[1] = {TEXTARRAYOID};

		args[0] = cdp_text_array(changed, nchanged);
		cdp_execute(stitch_probe_plan("updated_ids_taken",
									  "SELECT event_id FROM cdp_traits.event_entities "
									  "WHERE event_id = ANY ($1) LIMIT 1",
									  1, argtypes),
					args, NULL, SPI_OK_SELECT, "checking event ids");
		if (SPI_processed > 0)
			dup = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	}
	if (dup == NULL)
		return;

	/* (a uuid id is stored by its key: name it as the user wrote it) */
	if (cfg->uuid_keys)
	{
		pg_uuid_t	u;

		if (cdp_key_to_uuid(dup, strlen(dup), &u))
			dup = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&u)));
	}
	duplicate_id_error(dup, "The update gives an event the id of another one; every event needs an id of its own. The statement was not applied.");
}

/* fetch_old_rows' arguments and result, for cdp_in_subtransaction */
typedef struct OldRowsFetch
{
	Oid			relid;
	IdentRow   *rows;
	int			nrows;
	const char **empty;
	int			nempty;
} OldRowsFetch;

/*
 * fetch_old_rows_in
 *		The body of fetch_old_rows, run in its subtransaction.
 */
static void
fetch_old_rows_in(void *arg)
{
	OldRowsFetch *f = arg;

	f->rows = fetch_rows_empty(SRC_OLD_ROWS, f->relid, &f->nrows, &f->empty, &f->nempty);
}

/*
 * fetch_old_rows
 *		fetch_rows_empty of the OLD rows of an UPDATE into *rows and *nrows
 *		(the ids of those without identifiers into *empty and *nempty);
 *		false (and no rows) if the rules fail for one of them.  A rule added since
 *		an event was stored may fail for it (a cast of a value it carries
 *		wrong): its old version is only read
 *		to tell which events changed, and failing on it would refuse the very
 *		UPDATE that corrects the event (its new version is read as strictly
 *		as an INSERT's).  The read runs in a subtransaction; an error other
 *		than a cancel is dropped, and the caller takes every updated event as
 *		changed.
 */
static bool
fetch_old_rows(Oid relid, IdentRow **rows, int *nrows, const char ***empty,
			   int *nempty)
{
	OldRowsFetch f = {relid, NULL, 0, NULL, 0};
	ErrorData  *edata = cdp_in_subtransaction(fetch_old_rows_in, &f);

	*rows = f.rows;
	*nrows = f.nrows;
	*empty = f.empty;
	*nempty = f.nempty;
	if (edata == NULL)
		return true;
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
		ReThrowError(edata);
	elog(DEBUG1, "cdp_traits: the rules fail for an old version of an updated event (%s): every updated event is stitched again",
		 edata->message);
	FreeErrorData(edata);
	*rows = NULL;
	*nrows = 0;
	*empty = NULL;
	*nempty = 0;
	return false;
}

/*
 * stitch_update
 *		Re-stitch the events whose identifiers an UPDATE changed; mark the
 *		entities of the other updated events for recalculation.
 */
static void
stitch_update(StitchGraph *g, Oid relid)
{
	int			nold,
				nnew,
				i = 0,
				j = 0,
				k;
	IdentRow   *oldr;
	const char **old_empty;
	int			nold_empty;
	bool		old_read = fetch_old_rows(relid, &oldr, &nold, &old_empty, &nold_empty);
	const char **new_empty;
	int			nnew_empty;
	IdentRow   *newr = fetch_rows_empty(SRC_NEW_ROWS, relid, &nnew, &new_empty, &nnew_empty);
	const char **forget = palloc_extended(sizeof(char *) * Max(nold + nnew + nold_empty, 1),
										  MCXT_ALLOC_HUGE);
	int			nforget = 0;
	const char **same = palloc_extended(sizeof(char *) * Max(nold + nold_empty, 1),
										MCXT_ALLOC_HUGE);
	int			nsame = 0;
	const char **fresh = palloc_extended(sizeof(char *) * Max(nnew, 1), MCXT_ALLOC_HUGE);
	int			nfresh = 0;

	/* merge-compare the two sorted lists, event by event */
	while (i < nold || j < nnew)
	{
		int			c;

		if (i >= nold)
			c = 1;
		else if (j >= nnew)
			c = -1;
		else
			c = strcmp(oldr[i].eid, newr[j].eid);

		if (c < 0)
		{
			/* the old version had identifiers, the new one has none */
			forget[nforget++] = oldr[i].eid;
			i = group_end(oldr, nold, i);
		}
		else if (c > 0)
		{
			/* the new version has identifiers, the old one none (now) */
			k = group_end(newr, nnew, j);
			add_group(g, newr, j, k);
			fresh[nfresh++] = newr[j].eid;
			j = k;
		}
		else
		{
			int			ie = group_end(oldr, nold, i);
			int			je = group_end(newr, nnew, j);
			bool		equal = (ie - i) == (je - j);

			for (k = 0; equal && k < ie - i; k++)
				equal = strcmp(oldr[i + k].attr, newr[j + k].attr) == 0 &&
					strcmp(oldr[i + k].val, newr[j + k].val) == 0;
			if (equal)
				same[nsame++] = oldr[i].eid;
			else
			{
				forget[nforget++] = oldr[i].eid;
				add_group(g, newr, j, je);
			}
			i = ie;
			j = je;
		}
	}

	/*
	 * An event whose old version has no identifier under the rules and
	 * blocklist of now may still have the entity it was stitched into under
	 * earlier ones (changed without restitch()).  If its new version has
	 * identifiers, that assignment goes first, as for any changed event
	 * (storing the new one failed on the primary key of event_entities).
	 * Only ids the statement updated: without a unique index on id, one of
	 * another event is a duplicate, which storing it reports.
	 */
	if (!old_read)
	{
		/* (old versions unread: every updated event is taken as changed) */
		forget = all_ids(CDP_OLD_TABLE, relid, &nforget);
	}
	else if (nold_empty > 0)
	{
		int			nstale;
		const char **stale;

		for (k = 0; k < nfresh; k++)
			if (bsearch(&fresh[k], old_empty, nold_empty, sizeof(char *), cmp_key) != NULL)
				forget[nforget++] = fresh[k];

		/*
		 * If its new version has none either, the event was in neither list
		 * above: one still under its id marks that entity, as an event whose
		 * identifiers did not change (it stayed set), and one whose id
		 * changed leaves it (its old id stayed in event_entities, an event
		 * that no longer exists).  Only events stitched at all are looked
		 * at: one probe of event_entities per updated event without
		 * identifiers.
		 */
		stale = stored_events(old_empty, nold_empty, &nstale);
		for (k = 0; k < nstale; k++)
		{
			if (bsearch(&stale[k], fresh, nfresh, sizeof(char *), cmp_key) != NULL)
				continue;		/* (forgotten above) */
			if (bsearch(&stale[k], new_empty, nnew_empty, sizeof(char *), cmp_key) != NULL)
				same[nsame++] = stale[k];
			else
				forget[nforget++] = stale[k];
		}
	}

	/* (the events in same only mark their entities, under the same locks) */
	stitch_batch(g, forget, nforget, same, nsame);
}

/*
 * trigger_depth
 *		How many triggers are running, this one included (pg_trigger_depth).
 */
static int
trigger_depth(void)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	return DatumGetInt32(pg_trigger_depth(fcinfo));
}

/*
 * note_nested_change
 *		An UPDATE or DELETE is stitched: if it runs inside another trigger
 *		(one of the user's on an INSERT, say), note it for this transaction
 *		(see the top of this file).
 */
static void
note_nested_change(void)
{
	if (trigger_depth() > 1)
		NestedChangeLxid = MyProc->lxid;
}

/*
 * cmp_key
 *		Order event keys.
 */
static int
cmp_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * stitch_update_current
 *		stitch_update after an UPDATE or DELETE stitched inside a trigger in
 *		this transaction (see the top of this file): every event the UPDATE
 *		touched (old and new ids) loses its assignment, and the events with
 *		those ids are stitched again from their rows as they are now.
 */
static void
stitch_update_current(StitchGraph *g, Oid relid)
{
	int			nold,
				nnew,
				nrows,
				n = 0,
				i,
				k;
	const char **oldids = all_ids(CDP_OLD_TABLE, relid, &nold);
	const char **newids = all_ids(CDP_NEW_TABLE, relid, &nnew);
	const char **forget = palloc_extended(sizeof(char *) * Max(nold + nnew, 1), MCXT_ALLOC_HUGE);
	IdentRow   *rows = fetch_rows(SRC_NEW_ROWS_CURRENT, relid, &nrows);

	memcpy(forget, oldids, sizeof(char *) * nold);
	memcpy(forget + nold, newids, sizeof(char *) * nnew);
	if (nold + nnew > 1)
		qsort(forget, nold + nnew, sizeof(char *), cmp_key);
	for (i = 0; i < nold + nnew; i++)
		if (n == 0 || strcmp(forget[n - 1], forget[i]) != 0)
			forget[n++] = forget[i];
	for (i = 0; i < nrows; i = k)
	{
		k = group_end(rows, nrows, i);
		add_group(g, rows, i, k);
	}
	stitch_batch(g, forget, n, NULL, 0);
}

/*
 * stitch_statement
 *		Stitch what one statement did to the events table (or one of its
 *		partitions): its transition tables are registered with SPI under
 *		the names the queries read (CDP_NEW_TABLE, CDP_OLD_TABLE).
 */
static void
stitch_statement(TriggerData *td)
{
	CdpExecState es;
	StitchConfig *cfg;
	Oid			relid;
	MemoryContext cxt;
	MemoryContext old;
	StitchGraph *g;
	bool		restore;

	if (!TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) &&
		((TRIGGER_FIRED_BY_DELETE(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)) &&
		 td->tg_trigger->tgoldtable == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trigger \"%s\" has no OLD TABLE", td->tg_trigger->tgname),
				 errhint("Install the triggers with cdp_traits.attach_events().")));
	if ((TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)) &&
		td->tg_trigger->tgnewtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trigger \"%s\" has no NEW TABLE", td->tg_trigger->tgname),
				 errhint("Install the triggers with cdp_traits.attach_events().")));

	relid = RelationGetRelid(td->tg_relation);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits stitching trigger",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);

	/* as the role that wrote the rows: after the switch it is the owner */
	restore = cdp_loaded_by_restore();
	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	cfg = stitch_config(false);
	/* (the statement's rows are stitched with this configuration) */
	stitch_config_pin();

	if (!stitch_is_events_relation(cfg, relid))
	{
		/* a partition since detached from the events table: not ours */
	}
	else if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		if (relid == cfg->events_relid)
			stitch_truncate();
		else
		{
			/* one partition emptied: re-stitch everything that is left */
			stitch_partitions_left();
		}
	}
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event) && restore)
	{
		/*
		 * pg_restore loading the events of a dump into a database whose
		 * triggers exist already (a data-only restore after a schema-only
		 * one): the dump's stitching state, loaded before or after them,
		 * holds their assignments.
		 */
		elog(DEBUG1, "cdp_traits: " UINT64_FORMAT " events loaded by pg_restore, kept as they are",
			 (uint64) tuplestore_tuple_count(td->tg_newtable));
	}
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		InsertReader ir;

		g = graph_create(cxt, 1024);
		graph_set_attrs(g, cfg->attrs, cfg->nattrs);
		ir.g = g;
		ir.null_id = false;
		stitch_read_events(NestedChangeLxid == MyProc->lxid ? SRC_NEW_ROWS_LIVE : SRC_NEW_ROWS,
						   relid, (Datum) 0, false, graph_row, &ir);
		if (ir.null_id)
			reject_null_id(cfg);
		if (!cfg->unique_id)
		{
			stitch_lock_events(g);
			check_duplicate_ids(relid);
		}
		stitch_batch(g, NULL, 0, NULL, 0);
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		int			n;
		const char **ids;

		note_nested_change();
		ids = all_ids(CDP_OLD_TABLE, relid, &n);
		g = graph_create(cxt, 16);
		stitch_batch(g, ids, n, NULL, 0);
	}
	else
	{
		note_nested_change();
		if (!cfg->unique_id)
			check_updated_ids(cfg, relid);
		g = graph_create(cxt, 1024);
		if (NestedChangeLxid == MyProc->lxid)
			stitch_update_current(g, relid);
		else
			stitch_update(g, relid);
	}

	stitch_config_unpin();
	SPI_finish();
	cdp_exec_end(&es);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*
 * stitch_statement_checked
 *		stitch_statement, and under REPEATABLE READ or SERIALIZABLE the
 *		error of a writer whose snapshot predates the commit of another
 *		writer of the same new identifier (or event id): it cannot see what
 *		that one stored, and storing it again fails on the primary key of
 *		matching (or event_entities).  That is a serialization failure, to
 *		be retried, not a unique violation the user could do anything about.
 */
static void
stitch_statement_checked(TriggerData *td)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (!IsolationUsesXactSnapshot())
	{
		stitch_statement(td);
		return;
	}
	PG_TRY();
	{
		stitch_statement(td);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION ||
			edata->schema_name == NULL || strcmp(edata->schema_name, CDP_SCHEMA_NAME) != 0 ||
			edata->table_name == NULL ||
			(strcmp(edata->table_name, "matching") != 0 &&
			 strcmp(edata->table_name, "event_entities") != 0))
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent stitching"),
				 errdetail("A transaction that committed after this one's snapshot was taken stored the same %s.%s%s",
						   strcmp(edata->table_name, "matching") == 0 ? "identifier" : "event id",
						   edata->detail ? " " : "", edata->detail ? edata->detail : ""),
				 errhint("Retry the transaction.  Writers of events under READ COMMITTED wait for each other instead.")));
	}
	PG_END_TRY();
}

/* whether the trigger is not the one to stitch in this session */
#define not_this_session(td) cdp_trigger_not_this_session(td, CDP_REPLICA_TRIGGER_PREFIX)

/*
 * cdp_stitch_events
 *		The trigger function: AFTER INSERT/UPDATE/DELETE/TRUNCATE FOR EACH
 *		STATEMENT on the events table (and its partitions).
 */
Datum
cdp_stitch_events(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits.stitch_events() must be fired AFTER ... FOR EACH STATEMENT")));
	if (not_this_session(td))
		return PointerGetDatum(NULL);
	stitch_statement_checked(td);
	return PointerGetDatum(NULL);
}

/*
 * cdp_stitch_event_row
 *		The trigger function of replica sessions: AFTER INSERT/UPDATE/DELETE
 *		FOR EACH ROW on the events table's tables, enabled as a replica
 *		trigger (ALTER TABLE ... ENABLE REPLICA TRIGGER), so that it fires
 *		only where session_replication_role is replica and the statement
 *		triggers do not.  That is where logical replication applies changes:
 *		its apply worker fires row triggers only, one row at a time.  Each
 *		row is stitched as a statement of that one row would be.
 */
Datum
cdp_stitch_event_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TriggerData stmt;
	Trigger		trig;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits.stitch_event_row() must be fired AFTER INSERT, UPDATE or DELETE FOR EACH ROW")));
	if (not_this_session(td))
		return PointerGetDatum(NULL);

	/* the statement of this row: AFTER, the same operation, its tables */
	cdp_row_as_statement(td, CDP_NEW_TABLE, CDP_OLD_TABLE, &stmt, &trig);
	stitch_statement_checked(&stmt);
	cdp_row_statement_end(&stmt);
	return PointerGetDatum(NULL);
}
