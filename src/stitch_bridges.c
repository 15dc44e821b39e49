/*-------------------------------------------------------------------------
 *
 * stitch_bridges.c
 *		The identifiers that hold customer entities together, for
 *		bridging_identifiers().
 *
 * An entity is a connected component of the graph whose nodes are events
 * and identifiers, with an edge from each event to each identifier the
 * current rules read from it (blocklisted values left out, as stitching
 * leaves them).  An identifier is a bridge when removing it (blocklisting
 * its value) would disconnect its component: it is then an articulation
 * point of the graph.  For each one, the function tells how many entities
 * the component would become, how many events the largest of them would
 * keep and how many events would be left with no identifier at all.  A
 * shared device or a test e-mail address that glues real customers together
 * separates large groups of events; an ordinary identifier of one customer
 * separates few.
 *
 * The graph is read with the stitching code's own reader (stitch_read.c) as
 * the extension owner with the rules' pinned settings, like explain_entity,
 * and analysed in one iterative depth-first search per component (Hopcroft
 * and Tarjan's articulation points), so that the cost is linear in events
 * and identifiers whatever the size of the entities: the whole base is one
 * pass over the events, like verify_stitching().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_bridging_identifiers);

/* columns of _bridging_identifiers() */
#define BRIDGE_NATTS 8

/* State of the read: the graph, its edges and each event's stored entity. */
typedef struct BridgeReader
{
	StitchConfig *cfg;
	StitchGraph *g;
	MemoryContext cxt;			/* of the edges (rows are read in a shorter one) */
	int32	   *edge_ev;		/* (event, identifier) per edge */
	int32	   *edge_id;
	int64		nedges;
	int64		maxedges;
	int32		seen_buf[64];	/* identifiers of the current event */
} BridgeReader;

/* One bridging identifier found. */
typedef struct Bridge
{
	int32		ident;
	int32		root;			/* first event of its component */
	int32		degree;			/* events carrying it */
	int32		parts;			/* entities once it is blocklisted */
	int64		comp_events;
	int64		largest;
	int64		unstitched;
} Bridge;

/*
 * add_edge
 *		Record that an event carries an identifier.
 */
static void
add_edge(BridgeReader *r, int32 ev, int32 id)
{
	if (r->nedges >= r->maxedges)
	{
		r->maxedges = Max(r->maxedges * 2, 1024);
		if ((Size) r->maxedges * sizeof(int32) > MaxAllocHugeSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("identifier graph too large")));
		r->edge_ev = r->edge_ev ?
			repalloc_huge(r->edge_ev, sizeof(int32) * r->maxedges) :
			MemoryContextAllocHuge(r->cxt, sizeof(int32) * r->maxedges);
		r->edge_id = r->edge_id ?
			repalloc_huge(r->edge_id, sizeof(int32) * r->maxedges) :
			MemoryContextAllocHuge(r->cxt, sizeof(int32) * r->maxedges);
	}
	r->edge_ev[r->nedges] = ev;
	r->edge_id[r->nedges] = id;
	r->nedges++;
}

/*
 * bridge_row
 *		EventRowCallback: add an event and an edge to each distinct
 *		identifier it carries.  Events without an identifier, and stored
 *		assignments whose event is gone, have no edge and are left out.
 */
static void
bridge_row(EventRow *row, void *arg)
{
	BridgeReader *r = arg;
	int			ev;
	int			i;
	int			nseen = 0;

	if (row->event_id == NULL || row->nidents == 0)
		return;
	ev = graph_add_event(r->g, row->event_id, row->event_id_len, row->old_entity);
	for (i = 0; i < row->nidents; i++)
	{
		const char *attr = r->cfg->attrs[row->attr[i]];
		int32		id = graph_add_identifier(r->g, ev, attr, strlen(attr),
											  row->val[i], row->len[i]);
		bool		dup = false;
		int			k;

		/* an identifier twice in one event (two rules, a repeated value) */
		for (k = 0; k < nseen; k++)
			if (r->seen_buf[k] == id)
				dup = true;
		if (dup)
			continue;
		if (nseen < lengthof(r->seen_buf))
			r->seen_buf[nseen++] = id;
		else
		{
			/* many identifiers: look back over this event's edges */
			int64		e;

			for (e = r->nedges - 1; e >= 0 && r->edge_ev[e] == ev; e--)
				if (r->edge_id[e] == id)
					dup = true;
			if (dup)
				continue;
		}
		add_edge(r, ev, id);
	}
}

/*
 * find_bridges
 *		Articulation points of the bipartite graph (events 0..nev-1,
 *		identifiers nev..nev+nid-1) that are identifiers, with what removing
 *		each leaves.  Iterative depth-first search from each event not yet
 *		reached, so that no recursion depth limits the size of an entity.
 *		Returns the bridges found (palloc'd) and their number in *nbridges.
 */
static Bridge *
find_bridges(BridgeReader *r, int nev, int nid, int *nbridges)
{
	int64		nnodes = (int64) nev + nid;
	int64	   *off;			/* adjacency (CSR): off[v] .. off[v+1] */
	int32	   *adj;
	int64	   *next;			/* next adjacency position to try */
	int32	   *disc;			/* discovery time, 0 = not reached */
	int32	   *low;
	int32	   *parent;
	int32	   *stack;
	int32	   *sub_ev;			/* events in the search subtree */
	int32	   *sub_id;			/* identifiers in it */
	/* per identifier: what its separated subtrees hold */
	int32	   *sep_parts;		/* subtrees with an identifier (entities) */
	int64	   *sep_events;
	int32	   *sep_ids;
	int64	   *sep_unstitched; /* events of subtrees without identifier */
	int64	   *sep_largest;
	int32	   *comp_members;	/* identifiers of the current component */
	int			ncomp_members;
	Bridge	   *out = NULL;
	int			nout = 0;
	int			maxout = 0;
	int32		time = 0;
	int64		e;
	int32		root;

	off = palloc_extended(sizeof(int64) * (nnodes + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (e = 0; e < r->nedges; e++)
	{
		off[r->edge_ev[e] + 1]++;
		off[nev + r->edge_id[e] + 1]++;
	}
	for (e = 0; e < nnodes; e++)
		off[e + 1] += off[e];
	adj = palloc_extended(sizeof(int32) * Max(2 * r->nedges, 1), MCXT_ALLOC_HUGE);
	next = palloc_extended(sizeof(int64) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	memcpy(next, off, sizeof(int64) * nnodes);
	for (e = 0; e < r->nedges; e++)
	{
		int32		ev = r->edge_ev[e];
		int32		id = nev + r->edge_id[e];

		adj[next[ev]++] = id;
		adj[next[id]++] = ev;
	}
	pfree(r->edge_ev);
	pfree(r->edge_id);
	r->edge_ev = r->edge_id = NULL;
	memcpy(next, off, sizeof(int64) * nnodes);

	disc = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	low = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	parent = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	stack = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	sub_ev = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	sub_id = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	sep_parts = palloc_extended(sizeof(int32) * Max(nid, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sep_events = palloc_extended(sizeof(int64) * Max(nid, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sep_ids = palloc_extended(sizeof(int32) * Max(nid, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sep_unstitched = palloc_extended(sizeof(int64) * Max(nid, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sep_largest = palloc_extended(sizeof(int64) * Max(nid, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	comp_members = palloc_extended(sizeof(int32) * Max(nid, 1), MCXT_ALLOC_HUGE);

	for (root = 0; root < nev; root++)
	{
		int			depth = 0;
		int			i;
		int64		comp_ev;
		int64		comp_id;

		if (disc[root] != 0 || off[root] == off[root + 1])
			continue;
		CHECK_FOR_INTERRUPTS();
		ncomp_members = 0;
		disc[root] = low[root] = ++time;
		parent[root] = -1;
		sub_ev[root] = 1;
		sub_id[root] = 0;
		stack[depth++] = root;
		while (depth > 0)
		{
			int32		v = stack[depth - 1];

			if (next[v] < off[v + 1])
			{
				int32		w = adj[next[v]++];

				if (w == parent[v])
					continue;	/* no two edges join the same pair */
				if (disc[w] == 0)
				{
					disc[w] = low[w] = ++time;
					parent[w] = v;
					sub_ev[w] = (w < nev) ? 1 : 0;
					sub_id[w] = (w < nev) ? 0 : 1;
					if (w >= nev)
						comp_members[ncomp_members++] = w - nev;
					stack[depth++] = w;
				}
				else if (disc[w] < low[v])
					low[v] = disc[w];
				continue;
			}
			/* v is done: report it to its parent */
			depth--;
			if (parent[v] >= 0)
			{
				int32		p = parent[v];

				sub_ev[p] += sub_ev[v];
				sub_id[p] += sub_id[v];
				if (low[v] < low[p])
					low[p] = low[v];
				/* an identifier whose subtree under v has no other way up */
				if (p >= nev && low[v] >= disc[p])
				{
					int32		id = p - nev;

					sep_events[id] += sub_ev[v];
					sep_ids[id] += sub_id[v];
					if (sub_id[v] > 0)
					{
						sep_parts[id]++;
						if (sub_ev[v] > sep_largest[id])
							sep_largest[id] = sub_ev[v];
					}
					else
						sep_unstitched[id] += sub_ev[v];
				}
			}
		}

		/* the component is done: the identifiers it makes bridges */
		comp_ev = sub_ev[root];
		comp_id = sub_id[root];
		for (i = 0; i < ncomp_members; i++)
		{
			int32		id = comp_members[i];
			int64		rest_ev;
			int64		rest_id;
			Bridge		b;

			if (sep_events[id] == 0)
				continue;
			/* the part still holding the search's root (identifiers are never it) */
			rest_ev = comp_ev - sep_events[id];
			rest_id = comp_id - 1 - sep_ids[id];
			b.ident = id;
			b.root = root;
			b.degree = (int32) (off[nev + id + 1] - off[nev + id]);
			b.parts = sep_parts[id];
			b.comp_events = comp_ev;
			b.largest = sep_largest[id];
			b.unstitched = sep_unstitched[id];
			if (rest_id > 0)
			{
				b.parts++;
				if (rest_ev > b.largest)
					b.largest = rest_ev;
			}
			else
				b.unstitched += rest_ev;
			if (b.parts < 2)
				continue;		/* it only leaves events without identifiers */
			if (nout >= maxout)
			{
				maxout = Max(maxout * 2, 64);
				out = out ? repalloc_huge(out, sizeof(Bridge) * maxout) :
					MemoryContextAllocHuge(CurrentMemoryContext, sizeof(Bridge) * maxout);
			}
			out[nout++] = b;
		}
	}
	*nbridges = nout;
	return out;
}

/* An event key and the stored entity found for it. */
typedef struct RootEntity
{
	int32		root;
	bool		found;
	pg_uuid_t	entity;
} RootEntity;

/*
 * stored_entities
 *		The stored entity of each given event (by its key in event_entities),
 *		for the whole-base search, whose reader does not join them.
 */
static void
stored_entities(StitchGraph *g, RootEntity *roots, int nroots)
{
	const char **keys = palloc(sizeof(char *) * Max(nroots, 1));
	SPIPlanPtr	plan;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1];
	uint64		i;
	int			k;

	for (k = 0; k < nroots; k++)
		keys[k] = graph_event_id(g, roots[k].root);
	values[0] = cdp_text_array(keys, nroots);
	plan = cdp_prepare("SELECT u.i::int4, ee.customer_entity_id "
					   "FROM pg_catalog.unnest($1) WITH ORDINALITY u(k, i) "
					   "JOIN cdp_traits.event_entities ee ON ee.event_id = u.k", 1, types);
	/* on the snapshot the events were read with */
	if (SPI_execute_plan(plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading stored entities failed");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int32		pos = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 1, &isnull)) - 1;
		Datum		ent = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);

		roots[pos].found = true;
		roots[pos].entity = *DatumGetUUIDP(ent);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * cmp_root
 *		qsort order of RootEntity by event number.
 */
static int
cmp_root(const void *a, const void *b)
{
	int32		x = ((const RootEntity *) a)->root;
	int32		y = ((const RootEntity *) b)->root;

	return (x > y) - (x < y);
}

/*
 * cdp_bridging_identifiers
 *		SQL: _bridging_identifiers(entities uuid[]) RETURNS TABLE(
 *		customer_entity_id uuid, attribute_id text, value text, events
 *		bigint, entity_events bigint, entities_after integer, largest_after
 *		bigint, unstitched_after bigint): the bridging identifiers of the
 *		stored events of the given entities, or of every event when
 *		entities is NULL.
 */
Datum
cdp_bridging_identifiers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		all = PG_ARGISNULL(0);
	CdpExecState es;
	BridgeReader r;
	MemoryContext cxt;
	MemoryContext oldcxt;
	Bridge	   *bridges;
	RootEntity *roots = NULL;
	int			nroots = 0;
	int			nbridges;
	int			nev;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != BRIDGE_NATTS)
		elog(ERROR, "_bridging_identifiers must return %d columns", BRIDGE_NATTS);

	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits bridging identifiers",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	memset(&r, 0, sizeof(r));
	r.cxt = cxt;
	r.cfg = stitch_rules_config();
	/* (the identifiers are numbered with this configuration's attributes) */
	stitch_config_pin();
	r.g = graph_create(cxt, all ? (int) Min(Max(stitch_table_size("matching"), 1024.0),
											 64.0 * 1024 * 1024) : 1024);
	graph_set_attrs(r.g, r.cfg->attrs, r.cfg->nattrs);

	PushActiveSnapshot(GetTransactionSnapshot());
	stitch_read_events(all ? SRC_ALL_EVENTS : SRC_ENTITY_EVENTS, InvalidOid,
					   all ? (Datum) 0 : PG_GETARG_DATUM(0), true, bridge_row, &r);
	nev = graph_nevents(r.g);
	bridges = find_bridges(&r, nev, graph_nidents(r.g), &nbridges);
	elog(DEBUG1, "cdp_traits bridging identifiers: %d events, %d identifiers, " INT64_FORMAT
		 " links, %d bridges, %zu bytes of memory",
		 nev, graph_nidents(r.g), r.nedges, nbridges, MemoryContextMemAllocated(cxt, true));

	/* the stored entity of each component with a bridge */
	if (all && nbridges > 0)
	{
		roots = palloc(sizeof(RootEntity) * nbridges);
		for (i = 0; i < nbridges; i++)
		{
			roots[nroots].root = bridges[i].root;
			roots[nroots].found = false;
			nroots++;
		}
		qsort(roots, nroots, sizeof(RootEntity), cmp_root);
		for (i = 1, nroots = nroots > 0 ? 1 : 0; i < nbridges; i++)
			if (roots[i].root != roots[nroots - 1].root)
				roots[nroots++] = roots[i];
		stored_entities(r.g, roots, nroots);
	}
	PopActiveSnapshot();

	for (i = 0; i < nbridges; i++)
	{
		Bridge	   *b = &bridges[i];
		Datum		values[BRIDGE_NATTS];
		bool		nulls[BRIDGE_NATTS];
		const char *attr;
		const char *val;
		const pg_uuid_t *ent = NULL;

		memset(nulls, 0, sizeof(nulls));
		if (all)
		{
			RootEntity	key;
			RootEntity *found;

			key.root = b->root;
			found = bsearch(&key, roots, nroots, sizeof(RootEntity), cmp_root);
			if (found && found->found)
				ent = &found->entity;
		}
		else
			ent = graph_event_old_entity(r.g, b->root);
		if (ent != NULL)
			values[0] = UUIDPGetDatum(ent);
		else
			nulls[0] = true;
		graph_identifier(r.g, b->ident, &attr, &val);
		values[1] = CStringGetTextDatum(attr);
		values[2] = CStringGetTextDatum(val);
		values[3] = Int64GetDatum(b->degree);
		values[4] = Int64GetDatum(b->comp_events);
		values[5] = Int32GetDatum(b->parts);
		values[6] = Int64GetDatum(b->largest);
		values[7] = Int64GetDatum(b->unstitched);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	stitch_config_unpin();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	SPI_finish();
	cdp_exec_end(&es);
	return (Datum) 0;
}
