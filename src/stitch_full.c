/*-------------------------------------------------------------------------
 *
 * stitch_full.c
 *		Stitching a whole scope from scratch: all events (restitch,
 *		verify_stitching) or the events of a set of entities (after deletes
 *		and updates, to find splits).
 *
 * One pass reads every event of the scope with its identifiers and its
 * current entity, unites identifiers in memory, and compares the components
 * with the stored assignment.  Entity ids are kept stable: going from the
 * oldest stored entity to the newest, each keeps the component that holds
 * most of its events, if no older entity took it; components left over get
 * new ids.  Stored entities that keep no component were merged (into the
 * component holding most of their events) or lost all their events.  Only
 * differences are written, so a restitch that changes nothing writes nothing.
 * With write = false the differences are reported as problems instead
 * (verify_stitching).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_restitch);
PG_FUNCTION_INFO_V1(cdp_verify_stitching);
PG_FUNCTION_INFO_V1(cdp_stitching_stats);

#define FETCH_CHUNK 10000

/* figures of the last full pass in this backend */
static StitchResult LastResult;

/* A stored entity of the scope. */
typedef struct OldEntity
{
	pg_uuid_t	id;
	TimestampTz created;
	int			comp;			/* component it keeps, -1 = none */
	int			best_comp;		/* component holding most of its events */
	bool		stored;			/* row exists in customer_entities */
} OldEntity;

/* (component, stored entity, events) */
typedef struct Candidate
{
	int			ent;
	int			comp;
	int			events;
} Candidate;

static OldEntity *OldEnts;		/* for the comparator */

/*
 * cmp_pair
 *		Order candidates by entity, then component (for counting).
 */
static int
cmp_pair(const void *a, const void *b)
{
	const Candidate *x = a;
	const Candidate *y = b;

	if (x->ent != y->ent)
		return x->ent < y->ent ? -1 : 1;
	return x->comp < y->comp ? -1 : x->comp > y->comp ? 1 : 0;
}

/*
 * cmp_candidate
 *		Oldest entity first, then its largest component.
 */
static int
cmp_candidate(const void *a, const void *b)
{
	const Candidate *x = a;
	const Candidate *y = b;
	OldEntity  *ex = &OldEnts[x->ent];
	OldEntity  *ey = &OldEnts[y->ent];

	if (x->ent != y->ent)
	{
		if (ex->created != ey->created)
			return ex->created < ey->created ? -1 : 1;
		return uuid_cmp_internal(&ex->id, &ey->id);
	}
	if (x->events != y->events)
		return x->events > y->events ? -1 : 1;
	return x->comp < y->comp ? -1 : x->comp > y->comp ? 1 : 0;
}

/*
 * run_query
 *		Execute a kept plan, read-only on the active snapshot when not
 *		writing (so that verify sees one consistent state).
 */
static void
run_query(SPIPlanPtr plan, Datum *args, bool write, const char *what)
{
	int			rc = SPI_execute_plan(plan, args, NULL, !write, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * add_problem
 *		One row of verify_stitching().
 */
static void
add_problem(Tuplestorestate *ts, TupleDesc desc, const char *event_id,
			char *problem)
{
	Datum		values[2];
	bool		nulls[2] = {event_id == NULL, false};

	values[0] = event_id ? CStringGetTextDatum(event_id) : (Datum) 0;
	values[1] = CStringGetTextDatum(problem);
	tuplestore_putvalues(ts, desc, values, nulls);
}

static char *
uuid_str(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/*
 * stitch_scope
 *		Stitch the events of the given entities (all events if entities is
 *		NULL) from scratch and write (or, without write, report) the
 *		differences from what is stored.
 */
void
stitch_scope(const pg_uuid_t *entities, int nentities, bool write,
			 Tuplestorestate *problems, StitchResult *result)
{
	MemoryContext cxt;
	MemoryContext old;
	StitchGraph *g;
	SPIPlanPtr	plan;
	Portal		portal;
	Datum		args[1];
	bool		all = (entities == NULL);
	TupleDesc	pdesc = NULL;
	int			nevents,
				nidents,
				nnodes,
				ent_base,
				nold = 0,
				ncomps = 0,
				i;
	pg_uuid_t  *ident_old;
	bool	   *ident_has_old;
	int32	   *comp_of_root;
	pg_uuid_t  *comp_entity;
	bool	   *comp_kept;
	OldEntity  *olds;
	int			maxold;
	StitchChanges c;
	const char **orphans = NULL;
	int			norphans = 0;
	int			ndel_idents = 0;
	const char **del_attr = NULL;
	const char **del_val = NULL;
	pg_uuid_t  *del_owner = NULL;

	if (!all && nentities == 0)
		return;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits stitching pass",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	if (problems)
	{
		pdesc = CreateTemplateTupleDesc(2);
		TupleDescInitEntry(pdesc, 1, "event_id", TEXTOID, -1, 0);
		TupleDescInitEntry(pdesc, 2, "problem", TEXTOID, -1, 0);
	}
	if (!all)
		args[0] = cdp_uuid_array(entities, nentities);

	/* 1. every event of the scope with its identifiers and stored entity */
	g = graph_create(cxt, 1024);
	plan = stitch_identifier_plan(all ? SRC_ALL_EVENTS : SRC_ENTITY_EVENTS, InvalidOid);
	portal = SPI_cursor_open(NULL, plan, args, NULL, !write);
	for (;;)
	{
		uint64		r;
		int			last = -1;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, FETCH_CHUNK);
		if (SPI_processed == 0)
			break;
		if (graph_nevents(g) > 0)
			last = graph_nevents(g) - 1;
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			text	   *eid = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
			char	   *eidp = VARDATA_ANY(eid);
			int			eidlen = VARSIZE_ANY_EXHDR(eid);
			Datum		d;

			if (last < 0 || strncmp(graph_event_id(g, last), eidp, eidlen) != 0 ||
				graph_event_id(g, last)[eidlen] != '\0')
			{
				d = SPI_getbinval(tup, desc, 2, &isnull);
				last = graph_add_event(g, eidp, eidlen,
									   isnull ? NULL : DatumGetUUIDP(d));
			}
			d = SPI_getbinval(tup, desc, 3, &isnull);
			if (!isnull)
			{
				text	   *attr = DatumGetTextPP(d);
				text	   *val = DatumGetTextPP(SPI_getbinval(tup, desc, 4, &isnull));

				graph_add_identifier(g, last, VARDATA_ANY(attr), VARSIZE_ANY_EXHDR(attr),
									 VARDATA_ANY(val), VARSIZE_ANY_EXHDR(val));
			}
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	nevents = graph_nevents(g);
	nidents = graph_nidents(g);

	/* 2. the stored identifiers of the scope */
	ident_old = palloc_extended(sizeof(pg_uuid_t) * Max(nidents, 1), MCXT_ALLOC_HUGE);
	ident_has_old = palloc_extended(sizeof(bool) * Max(nidents, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	{
		Oid			types[1] = {UUIDARRAYOID};

		plan = all ?
			stitch_cached_plan("matching:all",
							   "SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching",
							   0, NULL) :
			stitch_cached_plan("matching:scope",
							   "SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching "
							   "WHERE customer_entity_id = ANY ($1)", 1, types);
	}
	portal = SPI_cursor_open(NULL, plan, args, NULL, !write);
	for (;;)
	{
		uint64		r;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, FETCH_CHUNK);
		if (SPI_processed == 0)
			break;
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			text	   *attr = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
			text	   *val = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));
			pg_uuid_t  *ent = DatumGetUUIDP(SPI_getbinval(tup, desc, 3, &isnull));
			int			id = graph_lookup_identifier(g, VARDATA_ANY(attr), VARSIZE_ANY_EXHDR(attr),
													 VARDATA_ANY(val), VARSIZE_ANY_EXHDR(val));

			if (id >= 0)
			{
				ident_old[id] = *ent;
				ident_has_old[id] = true;
			}
			else
			{
				if (del_attr == NULL || (ndel_idents & (ndel_idents - 1)) == 0)
				{
					int			m = Max(ndel_idents * 2, 16);

					del_attr = del_attr ? repalloc_huge(del_attr, sizeof(char *) * m) : palloc(sizeof(char *) * m);
					del_val = del_val ? repalloc_huge(del_val, sizeof(char *) * m) : palloc(sizeof(char *) * m);
					del_owner = del_owner ? repalloc_huge(del_owner, sizeof(pg_uuid_t) * m) : palloc(sizeof(pg_uuid_t) * m);
				}
				del_attr[ndel_idents] = text_to_cstring(attr);
				del_val[ndel_idents] = text_to_cstring(val);
				del_owner[ndel_idents++] = *ent;
			}
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	/* 3. the stored entities of the scope (and those events point to) */
	ent_base = graph_nnodes(g);
	maxold = 1024;
	olds = palloc(sizeof(OldEntity) * maxold);
	{
		Oid			types[1] = {UUIDARRAYOID};

		plan = all ?
			stitch_cached_plan("entities:all",
							   "SELECT id, created FROM cdp_traits.customer_entities", 0, NULL) :
			stitch_cached_plan("entities:scope",
							   "SELECT id, created FROM cdp_traits.customer_entities "
							   "WHERE id = ANY ($1)", 1, types);
	}
	portal = SPI_cursor_open(NULL, plan, args, NULL, !write);
	for (;;)
	{
		uint64		r;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, FETCH_CHUNK);
		if (SPI_processed == 0)
			break;
		for (r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
			int			node = graph_entity_node(g, id);

			if (node - ent_base < nold)
				continue;		/* duplicate: cannot happen with a primary key */
			if (nold >= maxold)
			{
				maxold *= 2;
				olds = repalloc_huge(olds, sizeof(OldEntity) * maxold);
			}
			olds[nold].id = *id;
			olds[nold].created = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
			olds[nold].stored = true;
			nold++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	/* entities that events or identifiers name but that have no row */
	for (i = 0; i < nevents; i++)
	{
		const pg_uuid_t *o = graph_event_old_entity(g, i);

		if (o && graph_entity_node(g, o) - ent_base >= nold)
		{
			if (nold >= maxold)
			{
				maxold *= 2;
				olds = repalloc_huge(olds, sizeof(OldEntity) * maxold);
			}
			olds[nold].id = *o;
			olds[nold].created = DT_NOEND;
			olds[nold].stored = false;
			nold++;
		}
	}
	for (i = 0; i < nold; i++)
	{
		olds[i].comp = -1;
		olds[i].best_comp = -1;
	}

	/* 4. components, and which stored entity keeps which */
	nnodes = graph_nnodes(g);
	comp_of_root = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	memset(comp_of_root, -1, sizeof(int32) * Max(nnodes, 1));
	for (i = 0; i < nevents; i++)
	{
		int			node = graph_event_node(g, i);

		if (node >= 0)
		{
			int			root = graph_find(g, node);

			if (comp_of_root[root] < 0)
				comp_of_root[root] = ncomps++;
		}
	}
	comp_entity = palloc_extended(sizeof(pg_uuid_t) * Max(ncomps, 1), MCXT_ALLOC_HUGE);
	comp_kept = palloc_extended(sizeof(bool) * Max(ncomps, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	{
		Candidate  *cand = palloc_extended(sizeof(Candidate) * Max(nevents, 1), MCXT_ALLOC_HUGE);
		int			ncand = 0,
					m = 0;

		for (i = 0; i < nevents; i++)
		{
			const pg_uuid_t *o = graph_event_old_entity(g, i);
			int			node = graph_event_node(g, i);

			if (o == NULL || node < 0)
				continue;
			cand[ncand].ent = graph_entity_node(g, o) - ent_base;
			cand[ncand].comp = comp_of_root[graph_find(g, node)];
			cand[ncand].events = 1;
			ncand++;
		}
		qsort(cand, ncand, sizeof(Candidate), cmp_pair);
		for (i = 0; i < ncand; i++)
		{
			if (m > 0 && cand[m - 1].ent == cand[i].ent && cand[m - 1].comp == cand[i].comp)
				cand[m - 1].events++;
			else
				cand[m++] = cand[i];
		}
		OldEnts = olds;
		qsort(cand, m, sizeof(Candidate), cmp_candidate);
		for (i = 0; i < m; i++)
		{
			OldEntity  *oe = &olds[cand[i].ent];

			if (oe->best_comp < 0)
				oe->best_comp = cand[i].comp;
			if (oe->comp < 0 && !comp_kept[cand[i].comp] && oe->stored)
			{
				oe->comp = cand[i].comp;
				comp_kept[cand[i].comp] = true;
				comp_entity[cand[i].comp] = oe->id;
			}
		}
	}

	/* 5. the differences */
	stitch_changes_init(&c, nevents, nidents, nold + ncomps);
	/* an entity may be touched once per changed event and identifier */
	c.touched = palloc_extended(sizeof(pg_uuid_t) * ((Size) 2 * nevents + ndel_idents + 1),
								MCXT_ALLOC_HUGE);
	for (i = 0; i < ncomps; i++)
		if (!comp_kept[i])
		{
			cdp_random_uuid(&comp_entity[i]);
			c.new_entities[c.n_new_entities++] = comp_entity[i];
		}
	for (i = 0; i < nold; i++)
	{
		if (olds[i].comp >= 0 || !olds[i].stored)
			continue;
		if (olds[i].best_comp >= 0)
		{
			c.merged[c.n_merged] = olds[i].id;
			c.merged_into[c.n_merged++] = comp_entity[olds[i].best_comp];
		}
		else
			c.removed[c.n_removed++] = olds[i].id;
	}
	for (i = 0; i < nevents; i++)
	{
		const pg_uuid_t *o = graph_event_old_entity(g, i);
		int			node = graph_event_node(g, i);
		const char *eid = graph_event_id(g, i);

		if (node < 0)
		{
			if (o)
			{
				c.del_events[c.n_del_events++] = eid;
				c.touched[c.n_touched++] = *o;
				if (problems)
					add_problem(problems, pdesc, eid,
								psprintf("has entity %s but carries no identifier", uuid_str(o)));
			}
			continue;
		}
		{
			int			k = comp_of_root[graph_find(g, node)];

			if (o && uuid_cmp_internal(o, &comp_entity[k]) == 0)
				continue;
			c.event_ids[c.n_events] = eid;
			c.event_entity[c.n_events++] = comp_entity[k];
			c.touched[c.n_touched++] = comp_entity[k];
			if (o)
				c.touched[c.n_touched++] = *o;
			if (problems)
			{
				if (!o)
					add_problem(problems, pdesc, eid, pstrdup("carries identifiers but has no entity"));
				else if (comp_kept[k])
					add_problem(problems, pdesc, eid,
								psprintf("is in entity %s but belongs with the events of entity %s",
										 uuid_str(o), uuid_str(&comp_entity[k])));
				else
					add_problem(problems, pdesc, eid,
								psprintf("is in entity %s but its events there are not all connected (entity must split)",
										 uuid_str(o)));
			}
		}
	}
	for (i = 0; i < nidents; i++)
	{
		int			k = comp_of_root[graph_find(g, graph_identifier_node(g, i))];
		const char *attr;
		const char *val;

		if (ident_has_old[i] && uuid_cmp_internal(&ident_old[i], &comp_entity[k]) == 0)
			continue;
		graph_identifier(g, i, &attr, &val);
		c.ident_attr[c.n_idents] = attr;
		c.ident_val[c.n_idents] = val;
		c.ident_entity[c.n_idents++] = comp_entity[k];
		if (problems)
			add_problem(problems, pdesc, NULL,
						ident_has_old[i] ?
						psprintf("identifier %s=%s is stored with entity %s, not with its events' entity",
								 attr, val, uuid_str(&ident_old[i])) :
						psprintf("identifier %s=%s is missing from matching", attr, val));
	}
	c.del_ident_attr = del_attr;
	c.del_ident_val = del_val;
	c.n_del_idents = ndel_idents;
	for (i = 0; i < ndel_idents; i++)
	{
		c.touched[c.n_touched++] = del_owner[i];
		if (problems)
			add_problem(problems, pdesc, NULL,
						psprintf("identifier %s=%s is in matching but no event carries it",
								 del_attr[i], del_val[i]));
	}
	if (problems)
	{
		for (i = 0; i < c.n_removed; i++)
			add_problem(problems, pdesc, NULL,
						psprintf("entity %s has no events", uuid_str(&c.removed[i])));
	}

	/* events stitched before that are gone from the events table */
	if (all)
	{
		StitchConfig *cfg = stitch_config(false);
		uint64		r;

		plan = stitch_cached_plan("orphans",
								  psprintf("SELECT ee.event_id FROM cdp_traits.event_entities ee "
										   "WHERE NOT EXISTS (SELECT FROM %s ev WHERE ev.id::text = ee.event_id)",
										   cfg->events_name), 0, NULL);
		run_query(plan, NULL, write, "finding stitched events that no longer exist");
		norphans = (int) SPI_processed;
		orphans = palloc(sizeof(char *) * Max(norphans, 1));
		for (r = 0; r < SPI_processed; r++)
		{
			orphans[r] = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
			if (problems)
				add_problem(problems, pdesc, orphans[r],
							pstrdup("has an entity but is not in the events table"));
		}
		if (norphans > 0)
		{
			/* make room for them in the delete list */
			const char **d = palloc_extended(sizeof(char *) * (c.n_del_events + norphans), MCXT_ALLOC_HUGE);

			memcpy(d, c.del_events, sizeof(char *) * c.n_del_events);
			memcpy(d + c.n_del_events, orphans, sizeof(char *) * norphans);
			c.del_events = d;
			c.n_del_events += norphans;
		}
	}

	/* entities that still exist and changed get recalculated */
	{
		int			n = sort_unique_uuids(c.touched, c.n_touched);
		int			j = 0;
		pg_uuid_t  *gone = palloc(sizeof(pg_uuid_t) * Max(c.n_merged + c.n_removed, 1));
		int			ngone = 0;

		for (i = 0; i < c.n_merged; i++)
			gone[ngone++] = c.merged[i];
		for (i = 0; i < c.n_removed; i++)
			gone[ngone++] = c.removed[i];
		ngone = sort_unique_uuids(gone, ngone);
		for (i = 0; i < n; i++)
			if (!bsearch(&c.touched[i], gone, ngone, sizeof(pg_uuid_t),
						 (int (*) (const void *, const void *)) uuid_cmp_internal))
				c.touched[j++] = c.touched[i];
		c.n_touched = j;
	}

	if (write)
		stitch_write_changes(&c);

	LastResult.events = nevents;
	LastResult.identifiers = nidents;
	LastResult.entities = ncomps;
	LastResult.changed_events = c.n_events + c.n_del_events;
	LastResult.changed_identifiers = c.n_idents + c.n_del_idents;
	LastResult.memory = graph_memory(g);
	if (result)
		*result = LastResult;

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*
 * stitch_truncate
 *		All events are gone: so are all identifiers and entities.
 */
void
stitch_truncate(void)
{
	stitch_lock_global(true);
	cdp_execute_sql("TRUNCATE cdp_traits.event_entities, cdp_traits.matching",
					SPI_OK_UTILITY, "emptying stitching");
	cdp_execute_sql("DELETE FROM cdp_traits.customer_entities",
					SPI_OK_DELETE, "removing entities");
}

/*
 * cdp_restitch
 *		SQL: rebuild stitching from all events; returns the number of entities.
 */
Datum
cdp_restitch(PG_FUNCTION_ARGS)
{
	CdpExecState es;
	StitchResult res;

	cdp_exec_begin(&es);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) stitch_config(false);
	stitch_lock_global(true);
	stitch_scope(NULL, 0, true, NULL, &res);
	SPI_finish();
	cdp_exec_end(&es);
	PG_RETURN_INT64(res.entities);
}

/*
 * cdp_verify_stitching
 *		SQL: compare stored stitching with a fresh computation, on one
 *		snapshot; one row per problem.
 */
Datum
cdp_verify_stitching(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CdpExecState es;
	Tuplestorestate *ts;

	InitMaterializedSRF(fcinfo, 0);
	ts = rsinfo->setResult;

	cdp_exec_begin(&es);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) stitch_config(false);
	PushActiveSnapshot(GetTransactionSnapshot());
	stitch_scope(NULL, 0, false, ts, NULL);
	PopActiveSnapshot();
	SPI_finish();
	cdp_exec_end(&es);
	return (Datum) 0;
}

/*
 * cdp_stitching_stats
 *		SQL: figures of the last full pass in this session.
 */
Datum
cdp_stitching_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {0};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(LastResult.events);
	values[1] = Int64GetDatum(LastResult.identifiers);
	values[2] = Int64GetDatum(LastResult.entities);
	values[3] = Int64GetDatum((int64) LastResult.memory);
	values[4] = Int64GetDatum(LastResult.changed_events);
	values[5] = Int64GetDatum(LastResult.changed_identifiers);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
