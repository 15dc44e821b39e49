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
 * separates few.  What gives a glue away is that the parts it joins each
 * hold their own identifiers of one kind (two user ids, two e-mail
 * addresses): the kinds for which that is so are returned with each bridge.
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
#define BRIDGE_NATTS 9

/* State of the read: the graph (with each event's stored entity) and its edges. */
typedef struct BridgeReader
{
	StitchConfig *cfg;
	StitchGraph *g;
	MemoryContext cxt;			/* of the edges (rows are read in a shorter one) */
	int32	   *edge_ev;		/* (event, identifier) per edge */
	int32	   *edge_id;
	int64		nedges;
	int64		maxedges;
	int32	   *row_ids;		/* identifiers of the current event */
	int			max_row_ids;
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
	int32		conflicts;		/* attribute numbers in Search.conflicts: */
	int32		nconflicts;		/* kinds of which 2+ parts hold values */
} Bridge;

/*
 * grow
 *		Enlarge an array to newmax elements, or allocate it in cxt if NULL.
 */
static void *
grow(MemoryContext cxt, void *arr, int64 newmax, Size elem)
{
	if ((Size) newmax > MaxAllocHugeSize / elem)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("identifier graph too large"),
				 errdetail("The events read and their identifiers need more than one allocation of %zu bytes.",
						   (Size) MaxAllocHugeSize),
				 errhint("Call cdp_traits.bridging_identifiers(id) for the entities to look at, the largest first.")));
	if (arr == NULL)
		return MemoryContextAllocHuge(cxt, (Size) newmax * elem);
	return repalloc_huge(arr, (Size) newmax * elem);
}

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
		r->edge_ev = grow(r->cxt, r->edge_ev, r->maxedges, sizeof(int32));
		r->edge_id = grow(r->cxt, r->edge_id, r->maxedges, sizeof(int32));
	}
	r->edge_ev[r->nedges] = ev;
	r->edge_id[r->nedges] = id;
	r->nedges++;
}

/*
 * cmp_int32
 *		qsort order of int32 values.
 */
static int
cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * bridge_row
 *		EventRowCallback: add an event and an edge to each distinct
 *		identifier it carries (one for an identifier it carries twice: two
 *		rules, a repeated value; sorted out, so that an event with very many
 *		identifiers costs no more than one pass over them and a sort).
 *		Events without an identifier, and stored assignments whose event is
 *		gone, have no edge and are left out.
 */
static void
bridge_row(EventRow *row, void *arg)
{
	BridgeReader *r = arg;
	int			ev;
	int			i;
	int			n;

	if (row->event_id == NULL || row->nidents == 0)
		return;
	if (row->nidents > r->max_row_ids)
	{
		r->max_row_ids = Max(row->nidents, 64);
		if (r->row_ids)
			pfree(r->row_ids);
		r->row_ids = MemoryContextAllocHuge(r->cxt, sizeof(int32) * r->max_row_ids);
	}
	ev = graph_add_event_row(r->g, row, r->row_ids);
	n = row->nidents;
	if (n > 1)
		qsort(r->row_ids, n, sizeof(int32), cmp_int32);
	for (i = 0; i < n; i++)
		if (i == 0 || r->row_ids[i] != r->row_ids[i - 1])
			add_edge(r, ev, r->row_ids[i]);
}

/*
 * State of the search for bridges.  Nodes are events 0..nev-1 and
 * identifiers nev..nev+nid-1.  Per node only its adjacency and discovery
 * time are kept; the rest is kept per slot of the depth-first stack, for the
 * nodes being searched, and per identifier only for those that separate
 * something.  The kinds of identifier a part holds are not counted per slot
 * (that would take a count per attribute for every slot of a deep search):
 * a subtree of the search is the nodes discovered from its first to its
 * last, so the identifiers of an attribute in a part are those of its
 * discovery times, kept in order per attribute, that fall within the
 * part's; they are counted once the component is done.
 */
typedef struct Search
{
	MemoryContext cxt;			/* of its arrays */
	int			nev;
	int			nid;
	int			nattrs;
	const int32 *ident_attr;
	int		   *attr_order;		/* attribute numbers by name */
	int64	   *off;			/* adjacency (CSR): off[v] .. off[v+1] */
	int32	   *adj;
	int32	   *disc;			/* discovery time, 0 = not reached */
	int32		time;

	/* the stack: node, next adjacency position, low point, subtree figures */
	int			maxdepth;
	int			deepest;
	int32	   *s_node;
	int64	   *s_next;
	int32	   *s_low;
	int64	   *s_events;
	int64	   *s_idents;

	/* discovery times of the identifiers of each attribute, ascending */
	int32	  **kind_times;
	int		   *kind_n;
	int		   *kind_max;

	/* identifiers with separated subtrees in the current component */
	int32	   *cand_of;		/* per identifier: candidate number, -1 */
	int32	   *cand_ident;
	int64	   *cand_events;	/* events in its separated subtrees */
	int64	   *cand_idents;	/* identifiers in them */
	int32	   *cand_parts;		/* of them with an identifier */
	int64	   *cand_unstitched;	/* events of those without */
	int64	   *cand_largest;
	int32	   *cand_first;		/* its first part with identifiers, -1 */
	int			ncand;
	int			maxcand;

	/* separated subtrees with identifiers: discovery times first .. last */
	int32	   *part_first;
	int32	   *part_last;
	int32	   *part_next;		/* the candidate's next part, -1 */
	int			nparts;
	int			maxparts;
	int32	   *kind_sum;		/* nattrs: a candidate's identifiers of each
								 * attribute in its parts */
	int32	   *kind_with;		/* nattrs: its parts holding one */
	int32	   *kind_comp;		/* nattrs: the component's identifiers of each */
	int		   *kinds_here;		/* the attributes the component has */

	/* the result */
	Bridge	   *out;
	int			nout;
	int			maxout;
	int32	   *conflicts;		/* attribute numbers, Bridge.conflicts on */
	int			nconflicts;
	int			maxconflicts;
} Search;

/*
 * build_adjacency
 *		Turn the edges read into adjacency lists (both directions), and free
 *		them (there may be none: no events, no rules, every value
 *		blocklisted).
 */
static void
build_adjacency(Search *s, BridgeReader *r)
{
	int64		nnodes = (int64) s->nev + s->nid;
	int64	   *pos;
	int64		e;

	s->off = palloc_extended(sizeof(int64) * (nnodes + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (e = 0; e < r->nedges; e++)
	{
		s->off[r->edge_ev[e] + 1]++;
		s->off[s->nev + r->edge_id[e] + 1]++;
	}
	for (e = 0; e < nnodes; e++)
		s->off[e + 1] += s->off[e];
	s->adj = palloc_extended(sizeof(int32) * Max(2 * r->nedges, 1), MCXT_ALLOC_HUGE);
	pos = palloc_extended(sizeof(int64) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	memcpy(pos, s->off, sizeof(int64) * nnodes);
	for (e = 0; e < r->nedges; e++)
	{
		int32		ev = r->edge_ev[e];
		int32		id = s->nev + r->edge_id[e];

		s->adj[pos[ev]++] = id;
		s->adj[pos[id]++] = ev;
	}
	pfree(pos);
	/* (none were allocated when no event carries an identifier) */
	if (r->edge_ev != NULL)
	{
		pfree(r->edge_ev);
		pfree(r->edge_id);
		r->edge_ev = r->edge_id = NULL;
	}
}

/*
 * push
 *		Reach node w: give it its discovery time and a stack slot.
 */
static void
push(Search *s, int depth, int32 w)
{
	if (depth >= s->maxdepth)
	{
		int			max = Max(s->maxdepth * 2, 1024);

		s->s_node = grow(s->cxt, s->s_node, max, sizeof(int32));
		s->s_next = grow(s->cxt, s->s_next, max, sizeof(int64));
		s->s_low = grow(s->cxt, s->s_low, max, sizeof(int32));
		s->s_events = grow(s->cxt, s->s_events, max, sizeof(int64));
		s->s_idents = grow(s->cxt, s->s_idents, max, sizeof(int64));
		s->maxdepth = max;
	}
	if (depth >= s->deepest)
		s->deepest = depth + 1;
	s->disc[w] = ++s->time;
	s->s_node[depth] = w;
	s->s_next[depth] = s->off[w];
	s->s_low[depth] = s->disc[w];
	if (w < s->nev)
	{
		s->s_events[depth] = 1;
		s->s_idents[depth] = 0;
	}
	else
	{
		int			a = s->ident_attr[w - s->nev];

		s->s_events[depth] = 0;
		s->s_idents[depth] = 1;
		if (s->kind_n[a] >= s->kind_max[a])
		{
			s->kind_max[a] = Max(s->kind_max[a] * 2, 64);
			s->kind_times[a] = grow(s->cxt, s->kind_times[a], s->kind_max[a], sizeof(int32));
		}
		s->kind_times[a][s->kind_n[a]++] = s->disc[w];
	}
}

/*
 * candidate
 *		The candidate number of an identifier that separates a subtree,
 *		adding it on its first one.
 */
static int
candidate(Search *s, int32 id)
{
	int			c = s->cand_of[id];

	if (c >= 0)
		return c;
	if (s->ncand >= s->maxcand)
	{
		int			max = Max(s->maxcand * 2, 256);

		s->cand_ident = grow(s->cxt, s->cand_ident, max, sizeof(int32));
		s->cand_events = grow(s->cxt, s->cand_events, max, sizeof(int64));
		s->cand_idents = grow(s->cxt, s->cand_idents, max, sizeof(int64));
		s->cand_parts = grow(s->cxt, s->cand_parts, max, sizeof(int32));
		s->cand_unstitched = grow(s->cxt, s->cand_unstitched, max, sizeof(int64));
		s->cand_largest = grow(s->cxt, s->cand_largest, max, sizeof(int64));
		s->cand_first = grow(s->cxt, s->cand_first, max, sizeof(int32));
		s->maxcand = max;
	}
	c = s->ncand++;
	s->cand_of[id] = c;
	s->cand_ident[c] = id;
	s->cand_events[c] = s->cand_idents[c] = s->cand_unstitched[c] = s->cand_largest[c] = 0;
	s->cand_parts[c] = 0;
	s->cand_first[c] = -1;
	return c;
}

/*
 * pop
 *		The node in slot depth (> 0) is done: add its subtree to its
 *		parent's, and if the parent is an identifier through which alone the
 *		subtree reaches the rest, record the subtree as a part it separates
 *		(the nodes discovered from it up to now).
 */
static void
pop(Search *s, int depth)
{
	int32		p = s->s_node[depth - 1];

	s->s_events[depth - 1] += s->s_events[depth];
	s->s_idents[depth - 1] += s->s_idents[depth];
	if (s->s_low[depth] < s->s_low[depth - 1])
		s->s_low[depth - 1] = s->s_low[depth];
	if (p >= s->nev && s->s_low[depth] >= s->disc[p])
	{
		int			c = candidate(s, p - s->nev);

		s->cand_events[c] += s->s_events[depth];
		s->cand_idents[c] += s->s_idents[depth];
		if (s->s_idents[depth] > 0)
		{
			int			k;

			s->cand_parts[c]++;
			if (s->s_events[depth] > s->cand_largest[c])
				s->cand_largest[c] = s->s_events[depth];
			if (s->nparts >= s->maxparts)
			{
				s->maxparts = Max(s->maxparts * 2, 256);
				s->part_first = grow(s->cxt, s->part_first, s->maxparts, sizeof(int32));
				s->part_last = grow(s->cxt, s->part_last, s->maxparts, sizeof(int32));
				s->part_next = grow(s->cxt, s->part_next, s->maxparts, sizeof(int32));
			}
			k = s->nparts++;
			s->part_first[k] = s->disc[s->s_node[depth]];
			s->part_last[k] = s->time;
			s->part_next[k] = s->cand_first[c];
			s->cand_first[c] = k;
		}
		else
			s->cand_unstitched[c] += s->s_events[depth];
	}
}

/*
 * kind_count
 *		The identifiers of attribute a discovered from time first to last.
 */
static int32
kind_count(Search *s, int a, int32 first, int32 last)
{
	const int32 *t = s->kind_times[a];
	int			lo = 0,
				hi = s->kind_n[a];
	int			start;

	/* the first at or after first, then the first after last */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (t[mid] < first)
			lo = mid + 1;
		else
			hi = mid;
	}
	start = lo;
	hi = s->kind_n[a];
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (t[mid] <= last)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - start;
}

/*
 * component_bridges
 *		The search from root is done (slot 0 holds the component's figures):
 *		turn its candidates into bridges, with the part holding the root,
 *		which is what the candidate's separated subtrees and itself leave of
 *		the component (identifiers are never the root).
 */
static void
component_bridges(Search *s, int32 root)
{
	int64		comp_ev = s->s_events[0];
	int64		comp_id = s->s_idents[0];
	int32		comp_first = s->disc[root];
	int			nhere = 0;
	int			c;
	int			a;
	int			k;
	int			h;

	if (s->ncand == 0)
		return;					/* (most components: nothing separates) */

	/* (only the kinds of identifier the component has are counted) */
	for (a = 0; a < s->nattrs; a++)
	{
		s->kind_comp[a] = kind_count(s, a, comp_first, s->time);
		if (s->kind_comp[a] > 0)
			s->kinds_here[nhere++] = a;
	}

	for (c = 0; c < s->ncand; c++)
	{
		int32		id = s->cand_ident[c];
		int64		rest_ev = comp_ev - s->cand_events[c];
		int64		rest_id = comp_id - 1 - s->cand_idents[c];
		Bridge		b;

		s->cand_of[id] = -1;
		b.ident = id;
		b.root = root;
		b.degree = (int32) (s->off[s->nev + id + 1] - s->off[s->nev + id]);
		b.parts = s->cand_parts[c];
		b.comp_events = comp_ev;
		b.largest = s->cand_largest[c];
		b.unstitched = s->cand_unstitched[c];
		if (rest_id > 0)
		{
			b.parts++;
			if (rest_ev > b.largest)
				b.largest = rest_ev;
		}
		else
			b.unstitched += rest_ev;
		if (b.parts < 2)
			continue;			/* it only leaves events without identifiers */
		CHECK_FOR_INTERRUPTS();

		/* the kinds each part holds: the separated ones, then the rest */
		memset(s->kind_sum, 0, sizeof(int32) * s->nattrs);
		memset(s->kind_with, 0, sizeof(int32) * s->nattrs);
		for (k = s->cand_first[c]; k >= 0; k = s->part_next[k])
			for (h = 0; h < nhere; h++)
			{
				int32		n;

				a = s->kinds_here[h];
				n = kind_count(s, a, s->part_first[k], s->part_last[k]);
				s->kind_sum[a] += n;
				if (n > 0)
					s->kind_with[a]++;
			}
		if (rest_id > 0)
			for (h = 0; h < nhere; h++)
			{
				a = s->kinds_here[h];
				if (s->kind_comp[a] - s->kind_sum[a] - (a == s->ident_attr[id] ? 1 : 0) > 0)
					s->kind_with[a]++;
			}

		b.conflicts = s->nconflicts;
		b.nconflicts = 0;
		for (k = 0; k < s->nattrs; k++)
		{
			a = s->attr_order[k];
			if (s->kind_with[a] < 2)
				continue;
			if (s->nconflicts >= s->maxconflicts)
			{
				s->maxconflicts = Max(s->maxconflicts * 2, 256);
				s->conflicts = grow(s->cxt, s->conflicts, s->maxconflicts, sizeof(int32));
			}
			s->conflicts[s->nconflicts++] = a;
			b.nconflicts++;
		}
		if (s->nout >= s->maxout)
		{
			s->maxout = Max(s->maxout * 2, 64);
			s->out = grow(s->cxt, s->out, s->maxout, sizeof(Bridge));
		}
		s->out[s->nout++] = b;
	}
	s->ncand = 0;
	s->nparts = 0;
}

/*
 * find_bridges
 *		The identifiers that are articulation points of the graph read, with
 *		what removing each leaves (Hopcroft and Tarjan: an identifier p
 *		separates the subtree of its child v when no node in it has an edge
 *		to a node discovered before p).  Iterative depth-first search from
 *		each event not yet reached, so that no recursion depth limits the
 *		size of an entity.
 */
static void
find_bridges(Search *s, BridgeReader *r)
{
	int32		root;
	int			i;

	build_adjacency(s, r);
	s->disc = palloc_extended(sizeof(int32) * Max((int64) s->nev + s->nid, 1),
							  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	s->cand_of = palloc_extended(sizeof(int32) * Max(s->nid, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < s->nid; i++)
		s->cand_of[i] = -1;
	s->kind_times = palloc0(sizeof(int32 *) * Max(s->nattrs, 1));
	s->kind_n = palloc0(sizeof(int) * Max(s->nattrs, 1));
	s->kind_max = palloc0(sizeof(int) * Max(s->nattrs, 1));
	s->kind_sum = palloc0(sizeof(int32) * Max(s->nattrs, 1));
	s->kind_with = palloc0(sizeof(int32) * Max(s->nattrs, 1));
	s->kind_comp = palloc0(sizeof(int32) * Max(s->nattrs, 1));
	s->kinds_here = palloc0(sizeof(int) * Max(s->nattrs, 1));

	for (root = 0; root < s->nev; root++)
	{
		int			depth = 0;

		if (s->disc[root] != 0 || s->off[root] == s->off[root + 1])
			continue;
		CHECK_FOR_INTERRUPTS();
		push(s, depth++, root);
		while (depth > 0)
		{
			int			d = depth - 1;
			int32		v = s->s_node[d];

			if (s->s_next[d] < s->off[v + 1])
			{
				int32		w = s->adj[s->s_next[d]++];

				if (d > 0 && w == s->s_node[d - 1])
					continue;	/* the edge to the parent (no two join the
								 * same pair) */
				if (s->disc[w] == 0)
				{
					/* (a large component takes a while) */
					if ((s->time & 0xFFFF) == 0)
						CHECK_FOR_INTERRUPTS();
					push(s, depth++, w);
				}
				else if (s->disc[w] < s->s_low[d])
					s->s_low[d] = s->disc[w];
				continue;
			}
			if (d > 0)
				pop(s, d);
			depth--;
		}
		component_bridges(s, root);
	}
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
	plan = stitch_cached_plan("bridges:stored_entities",
							  "SELECT u.i::int4, ee.customer_entity_id "
							  "FROM pg_catalog.unnest($1) WITH ORDINALITY u(k, i) "
							  "JOIN cdp_traits.event_entities ee ON ee.event_id = u.k",
							  1, types);
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
 * cmp_attr_name
 *		qsort_arg order of attribute numbers by their ids (byte-wise; arg:
 *		the ids).
 */
static int
cmp_attr_name(const void *a, const void *b, void *arg)
{
	char	  **names = (char **) arg;

	return strcmp(names[*(const int *) a], names[*(const int *) b]);
}

/*
 * cdp_bridging_identifiers
 *		SQL: _bridging_identifiers(entities uuid[]) RETURNS TABLE(
 *		customer_entity_id uuid, attribute_id text, value text, conflicts
 *		text[], events bigint, entity_events bigint, entities_after integer,
 *		largest_after bigint, unstitched_after bigint): the bridging
 *		identifiers of the
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
	Search		srch;
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

	/* the snapshot of the calling statement, which resolved the entity */
	cdp_push_caller_snapshot();
	stitch_read_events(all ? SRC_ALL_EVENTS : SRC_ENTITY_EVENTS, InvalidOid,
					   all ? (Datum) 0 : PG_GETARG_DATUM(0), true, bridge_row, &r);
	/* (SPI returns to its own context: the search's memory is counted in cxt) */
	MemoryContextSwitchTo(cxt);
	nev = graph_nevents(r.g);
	memset(&srch, 0, sizeof(srch));
	srch.cxt = cxt;
	srch.nev = nev;
	srch.nid = graph_nidents(r.g);
	srch.nattrs = r.cfg->nattrs;
	srch.ident_attr = graph_identifier_attrs(r.g);
	srch.attr_order = palloc(sizeof(int) * Max(srch.nattrs, 1));
	for (i = 0; i < srch.nattrs; i++)
		srch.attr_order[i] = i;
	qsort_arg(srch.attr_order, srch.nattrs, sizeof(int), cmp_attr_name, r.cfg->attrs);
	find_bridges(&srch, &r);
	bridges = srch.out;
	nbridges = srch.nout;
	elog(DEBUG1, "cdp_traits bridging identifiers: %d events, %d identifiers, " INT64_FORMAT
		 " links, %d bridges, %zu bytes of memory (deepest search %d)",
		 nev, srch.nid, r.nedges, nbridges, MemoryContextMemAllocated(cxt, true), srch.deepest);

	/*
	 * The stored entity of each component with a bridge (the bridges come
	 * component by component, in the order of their roots: no sort).
	 */
	if (all && nbridges > 0)
	{
		roots = palloc(sizeof(RootEntity) * nbridges);
		for (i = 0; i < nbridges; i++)
		{
			if (nroots > 0 && roots[nroots - 1].root == bridges[i].root)
				continue;
			roots[nroots].root = bridges[i].root;
			roots[nroots].found = false;
			nroots++;
		}
		stored_entities(r.g, roots, nroots);
		MemoryContextSwitchTo(cxt);
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
		Datum	   *kinds;
		int			k;

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
		kinds = palloc(sizeof(Datum) * Max(b->nconflicts, 1));
		for (k = 0; k < b->nconflicts; k++)
			kinds[k] = CStringGetTextDatum(r.cfg->attrs[srch.conflicts[b->conflicts + k]]);
		values[3] = PointerGetDatum(construct_array(kinds, b->nconflicts, TEXTOID, -1, false,
													TYPALIGN_INT));
		values[4] = Int64GetDatum(b->degree);
		values[5] = Int64GetDatum(b->comp_events);
		values[6] = Int32GetDatum(b->parts);
		values[7] = Int64GetDatum(b->largest);
		values[8] = Int64GetDatum(b->unstitched);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	stitch_config_unpin();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	SPI_finish();
	cdp_exec_end(&es);
	return (Datum) 0;
}
