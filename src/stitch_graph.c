/*-------------------------------------------------------------------------
 *
 * stitch_graph.c
 *		The in-memory identifier graph behind every stitching pass.
 *
 * Events, identifiers and (for incremental batches) existing entities are
 * nodes of one union-find forest.  Each event is joined to all of its
 * identifiers by uniting the identifiers with the event's first identifier,
 * so an event needs no node of its own: its component is the component of its
 * first identifier (none if it has no identifier).
 *
 * Identifiers are interned in a simplehash table keyed by (attribute number,
 * value); attribute ids are few and interned in a short list.  Strings live
 * in a bump arena, so memory per event and per identifier stays close to the
 * size of the data (see graph_memory).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"

#include "stitch.h"

#define ARENA_BLOCK (256 * 1024)

/* Key of an identifier: interned attribute number and the value's bytes. */
typedef struct IdentKey
{
	int32		attr;
	int32		len;
	const char *val;
} IdentKey;

typedef struct IdentEntry
{
	IdentKey	key;
	uint32		hash;
	int32		ident;			/* index into the identifier arrays */
	char		status;
} IdentEntry;

typedef struct EntityEntry
{
	pg_uuid_t	key;
	int32		node;
	char		status;
} EntityEntry;

static uint32 ident_key_hash(IdentKey key);
static uint32 entity_key_hash(pg_uuid_t key);

#define SH_PREFIX identhash
#define SH_ELEMENT_TYPE IdentEntry
#define SH_KEY_TYPE IdentKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) ident_key_hash(k)
#define SH_EQUAL(tb, a, b) ((a).attr == (b).attr && (a).len == (b).len && \
							memcmp((a).val, (b).val, (a).len) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

#define SH_PREFIX entityhash
#define SH_ELEMENT_TYPE EntityEntry
#define SH_KEY_TYPE pg_uuid_t
#define SH_KEY key
#define SH_HASH_KEY(tb, k) entity_key_hash(k)
#define SH_EQUAL(tb, a, b) (memcmp((a).data, (b).data, UUID_LEN) == 0)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

struct StitchGraph
{
	MemoryContext cxt;

	/* strings (event ids, identifier values, attribute ids) */
	StrArena	arena;

	/* attribute ids seen, interned */
	int			nattrs;
	int			maxattrs;
	char	  **attrs;
	int		   *attrlens;

	/* identifiers */
	identhash_hash *idents;
	int			nidents;
	int			maxidents;
	int32	   *ident_attr;
	const char **ident_val;
	int32	   *ident_node;

	/* existing entities (incremental batches only) */
	entityhash_hash *entities;

	/* events */
	int			nevents;
	int			maxevents;
	const char **event_id;
	pg_uuid_t  *event_old;		/* zero uuid = none */
	int32	   *event_node;		/* first identifier's node, -1 = none */

	/* union-find over all nodes */
	int			nnodes;
	int			maxnodes;
	int32	   *parent;
	int32	   *size;
};

/*
 * ident_key_hash
 *		Hash of an identifier key: the value's bytes mixed with the attribute.
 */
static uint32
ident_key_hash(IdentKey key)
{
	return hash_bytes((const unsigned char *) key.val, key.len) ^
		murmurhash32((uint32) key.attr);
}

/*
 * entity_key_hash
 *		Hash of an entity uuid.
 */
static uint32
entity_key_hash(pg_uuid_t key)
{
	uint64		v;

	memcpy(&v, key.data, sizeof(v));
	return (uint32) hash_bytes_uint32((uint32) (v ^ (v >> 32)));
}

/*
 * arena_strdup
 *		Copy len bytes into an arena, NUL-terminated.
 */
const char *
arena_strdup(StrArena *a, const char *s, int len)
{
	char	   *p;

	if ((Size) len + 1 > a->left)
	{
		a->left = Max((Size) ARENA_BLOCK, (Size) len + 1);
		a->ptr = MemoryContextAlloc(a->cxt, a->left);
	}
	p = a->ptr;
	memcpy(p, s, len);
	p[len] = '\0';
	a->ptr += len + 1;
	a->left -= len + 1;
	return p;
}

/*
 * resize_array
 *		Allocate or enlarge a graph array to newmax elements.
 */
static void *
resize_array(StitchGraph *g, void *arr, int newmax, Size elem)
{
	if (arr == NULL)
		return MemoryContextAllocHuge(g->cxt, (Size) newmax * elem);
	return repalloc_huge(arr, (Size) newmax * elem);
}

/*
 * next_capacity
 *		The capacity to grow an array of capacity max to, to hold needed.
 */
static int
next_capacity(int max, int needed)
{
	if (needed > MaxAllocHugeSize / sizeof(pg_uuid_t) / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stitching graph too large")));
	return Max(max * 2, Max(needed, 64));
}

/*
 * new_node
 *		Add a singleton node to the union-find forest.
 */
static int
new_node(StitchGraph *g)
{
	int			n = g->nnodes;

	if (n >= g->maxnodes)
	{
		int			max = next_capacity(g->maxnodes, n + 1);

		g->parent = resize_array(g, g->parent, max, sizeof(int32));
		g->size = resize_array(g, g->size, max, sizeof(int32));
		g->maxnodes = max;
	}
	g->parent[n] = n;
	g->size[n] = 1;
	g->nnodes++;
	return n;
}

/*
 * graph_create
 *		An empty graph whose memory lives in a new child of cxt.
 */
StitchGraph *
graph_create(MemoryContext cxt, int expected_idents)
{
	MemoryContext gcxt;
	StitchGraph *g;

	gcxt = AllocSetContextCreate(cxt, "cdp_traits stitching graph",
								 ALLOCSET_DEFAULT_SIZES);
	g = MemoryContextAllocZero(gcxt, sizeof(StitchGraph));
	g->cxt = gcxt;
	g->arena.cxt = gcxt;
	g->idents = identhash_create(gcxt, Max(expected_idents, 64), NULL);
	g->entities = entityhash_create(gcxt, 64, NULL);
	return g;
}

/*
 * graph_add_event
 *		Add an event (its id as text, and the entity it had, if any).
 */
int
graph_add_event(StitchGraph *g, const char *event_id, int len,
				const pg_uuid_t *old_entity)
{
	int			e = g->nevents;

	if (e >= g->maxevents)
	{
		int			max = next_capacity(g->maxevents, e + 1);

		g->event_id = resize_array(g, g->event_id, max, sizeof(char *));
		g->event_old = resize_array(g, g->event_old, max, sizeof(pg_uuid_t));
		g->event_node = resize_array(g, g->event_node, max, sizeof(int32));
		g->maxevents = max;
	}

	g->event_id[e] = arena_strdup(&g->arena, event_id, len);
	if (old_entity)
		g->event_old[e] = *old_entity;
	else
		memset(&g->event_old[e], 0, sizeof(pg_uuid_t));
	g->event_node[e] = -1;
	g->nevents++;
	return e;
}

/*
 * intern_attr
 *		The number of an attribute id, adding it if new.
 */
static int
intern_attr(StitchGraph *g, const char *attr, int len)
{
	int			i;

	for (i = 0; i < g->nattrs; i++)
		if (g->attrlens[i] == len && memcmp(g->attrs[i], attr, len) == 0)
			return i;
	if (g->nattrs >= g->maxattrs)
	{
		int			max = next_capacity(g->maxattrs, g->nattrs + 1);

		g->attrs = resize_array(g, g->attrs, max, sizeof(char *));
		g->attrlens = resize_array(g, g->attrlens, max, sizeof(int));
		g->maxattrs = max;
	}
	g->attrs[g->nattrs] = (char *) arena_strdup(&g->arena, attr, len);
	g->attrlens[g->nattrs] = len;
	return g->nattrs++;
}

/*
 * new_identifier
 *		Give a freshly inserted hash entry its identifier number and node,
 *		copying its value into the arena.
 */
static int
new_identifier(StitchGraph *g, IdentEntry *entry)
{
	int			id = g->nidents;

	entry->key.val = arena_strdup(&g->arena, entry->key.val, entry->key.len);
	entry->ident = id;
	if (id >= g->maxidents)
	{
		int			max = next_capacity(g->maxidents, id + 1);

		g->ident_attr = resize_array(g, g->ident_attr, max, sizeof(int32));
		g->ident_val = resize_array(g, g->ident_val, max, sizeof(char *));
		g->ident_node = resize_array(g, g->ident_node, max, sizeof(int32));
		g->maxidents = max;
	}
	g->ident_attr[id] = entry->key.attr;
	g->ident_val[id] = entry->key.val;
	g->ident_node[id] = new_node(g);
	g->nidents++;
	return id;
}

/*
 * intern_identifier
 *		The number of an identifier, adding it (and its node) if new.
 */
static int
intern_identifier(StitchGraph *g, const char *attr, int attrlen,
				  const char *val, int vallen, bool add)
{
	IdentKey	key;
	IdentEntry *entry;
	bool		found;

	key.attr = intern_attr(g, attr, attrlen);
	key.len = vallen;
	key.val = val;
	if (!add)
	{
		entry = identhash_lookup(g->idents, key);
		return entry ? entry->ident : -1;
	}
	entry = identhash_insert(g->idents, key, &found);
	if (found)
		return entry->ident;

	return new_identifier(g, entry);
}

/*
 * graph_add_identifier
 *		Record that an event carries an identifier; returns the identifier's
 *		number.  event may be -1 to intern an identifier on its own.
 */
int
graph_add_identifier(StitchGraph *g, int event, const char *attr, int attrlen,
					 const char *val, int vallen)
{
	int			id = intern_identifier(g, attr, attrlen, val, vallen, true);

	if (event >= 0)
	{
		if (g->event_node[event] < 0)
			g->event_node[event] = g->ident_node[id];
		else
			graph_union(g, g->event_node[event], g->ident_node[id]);
	}
	return id;
}

/*
 * graph_set_attrs
 *		Intern attribute ids in a given order, so that attribute number i of
 *		the graph is attrs[i] (the numbering of EventRow.attr).
 */
void
graph_set_attrs(StitchGraph *g, char **attrs, int nattrs)
{
	int			i;

	Assert(g->nattrs == 0);
	for (i = 0; i < nattrs; i++)
		(void) intern_attr(g, attrs[i], strlen(attrs[i]));
}

/*
 * graph_add_event_row
 *		Add an event read by stitch_read_events, with its identifiers (the
 *		graph's attributes must have been set with graph_set_attrs); returns
 *		the event's number, and the number of each identifier in ids (NULL:
 *		not wanted; else room for row->nidents).
 */
int
graph_add_event_row(StitchGraph *g, EventRow *row, int32 *ids)
{
	int			e = graph_add_event(g, row->event_id, row->event_id_len, row->old_entity);
	int			i;

	for (i = 0; i < row->nidents; i++)
	{
		IdentKey	key;
		IdentEntry *entry;
		bool		found;
		int			id;

		key.attr = row->attr[i];
		key.len = row->len[i];
		key.val = row->val[i];
		entry = identhash_insert(g->idents, key, &found);
		if (found)
			id = entry->ident;
		else
			id = new_identifier(g, entry);
		if (ids != NULL)
			ids[i] = id;
		if (g->event_node[e] < 0)
			g->event_node[e] = g->ident_node[id];
		else
			graph_union(g, g->event_node[e], g->ident_node[id]);
	}
	return e;
}

/*
 * graph_lookup_identifier
 *		The number of an identifier already in the graph, or -1.
 */
int
graph_lookup_identifier(StitchGraph *g, const char *attr, int attrlen,
						const char *val, int vallen)
{
	int			i;

	/* do not intern an attribute id just to look it up */
	for (i = 0; i < g->nattrs; i++)
		if (g->attrlens[i] == attrlen && memcmp(g->attrs[i], attr, attrlen) == 0)
			break;
	if (i == g->nattrs)
		return -1;
	return intern_identifier(g, attr, attrlen, val, vallen, false);
}

/*
 * graph_entity_node
 *		The node of an existing entity, added on first use.
 */
int
graph_entity_node(StitchGraph *g, const pg_uuid_t *entity)
{
	EntityEntry *entry;
	bool		found;

	entry = entityhash_insert(g->entities, *entity, &found);
	if (!found)
		entry->node = new_node(g);
	return entry->node;
}

/*
 * graph_find
 *		Root of a node's component (with path halving).
 */
int
graph_find(StitchGraph *g, int node)
{
	int32	   *parent = g->parent;

	while (parent[node] != node)
	{
		parent[node] = parent[parent[node]];
		node = parent[node];
	}
	return node;
}

/*
 * graph_union
 *		Join the components of two nodes (union by size).
 */
void
graph_union(StitchGraph *g, int a, int b)
{
	a = graph_find(g, a);
	b = graph_find(g, b);
	if (a == b)
		return;
	if (g->size[a] < g->size[b])
	{
		int			t = a;

		a = b;
		b = t;
	}
	g->parent[b] = a;
	g->size[a] += g->size[b];
}

/* Accessors. */

/* graph_nevents: number of events in the graph */
int
graph_nevents(StitchGraph *g)
{
	return g->nevents;
}

/* graph_nidents: number of distinct identifiers in the graph */
int
graph_nidents(StitchGraph *g)
{
	return g->nidents;
}

/* graph_nnodes: number of union-find nodes (identifiers and entities) */
int
graph_nnodes(StitchGraph *g)
{
	return g->nnodes;
}

/* graph_event_node: node of an event's first identifier, -1 if none */
int
graph_event_node(StitchGraph *g, int event)
{
	return g->event_node[event];
}

/* graph_event_id: an event's id as text */
const char *
graph_event_id(StitchGraph *g, int event)
{
	return g->event_id[event];
}

/* graph_event_old_entity: the entity an event had, NULL if none */
const pg_uuid_t *
graph_event_old_entity(StitchGraph *g, int event)
{
	static const pg_uuid_t zero;

	if (memcmp(&g->event_old[event], &zero, sizeof(zero)) == 0)
		return NULL;
	return &g->event_old[event];
}

/* graph_identifier: attribute id and value of an identifier */
void
graph_identifier(StitchGraph *g, int ident, const char **attr, const char **val)
{
	*attr = g->attrs[g->ident_attr[ident]];
	*val = g->ident_val[ident];
}

/* graph_identifier_attrs: each identifier's attribute number */
const int32 *
graph_identifier_attrs(StitchGraph *g)
{
	return g->ident_attr;
}

/* graph_identifier_node: an identifier's union-find node */
int
graph_identifier_node(StitchGraph *g, int ident)
{
	return g->ident_node[ident];
}
