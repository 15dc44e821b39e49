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
#include "common/hashfn.h"
#include "funcapi.h"
#include "portability/instr_time.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_restitch);
PG_FUNCTION_INFO_V1(cdp_verify_stitching);
PG_FUNCTION_INFO_V1(cdp_stitching_stats);

/* DEBUG1 timing of the phases of a pass */
#define PHASE(name) \
	do { \
		instr_time	now_; \
		INSTR_TIME_SET_CURRENT(now_); \
		INSTR_TIME_SUBTRACT(now_, phase_start); \
		elog(DEBUG1, "cdp_traits stitching pass: %s took %.1f ms", name, \
			 INSTR_TIME_GET_MILLISEC(now_)); \
		INSTR_TIME_SET_CURRENT(phase_start); \
	} while (0)

/* figures of the last full pass in this backend */
static StitchResult LastResult;

/* A stored entity of the scope. */
typedef struct OldEntity
{
	pg_uuid_t	id;
	TimestampTz created;
	int			comp;			/* component it keeps, -1 = none */
	int			best_comp;		/* component holding most of its events */
	int			first_comp;		/* component of its first event, -1 = none */
	bool		mixed;			/* its events are in several components */
	bool		stored;			/* row exists in customer_entities */
} OldEntity;

/* (component, stored entity, events) */
typedef struct Candidate
{
	int			ent;
	int			comp;
	int			events;
} Candidate;

/* A stored event assignment (all-events scope), keyed by event id text. */
typedef struct StoredKey
{
	const char *s;
	int			len;
} StoredKey;

typedef struct StoredEntry
{
	StoredKey	key;
	uint32		hash;
	pg_uuid_t	entity;
	bool		seen;
	char		status;
} StoredEntry;

#define SH_PREFIX storedhash
#define SH_ELEMENT_TYPE StoredEntry
#define SH_KEY_TYPE StoredKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k).s, (k).len)
#define SH_EQUAL(tb, a, b) ((a).len == (b).len && memcmp((a).s, (b).s, (a).len) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* State of one pass. */
typedef struct ScopePass
{
	MemoryContext cxt;
	StitchGraph *g;
	storedhash_hash *stored;	/* all-events scope: stored assignments */
	StrArena	arena;			/* stored event ids, deleted identifiers */
	const char **orphans;		/* stored ids of events that are gone */
	pg_uuid_t  *orphan_owners;	/* the entity each was stored with */
	int			norphans;
	int			maxorphans;
	/* stored identifiers not produced by any event */
	const char **del_attr;
	const char **del_val;
	pg_uuid_t  *del_owner;
	int			ndel;
	int			maxdel;
	pg_uuid_t  *ident_old;		/* stored entity per identifier */
	bool	   *ident_has_old;
	OldEntity  *olds;
	int			nold;
	int			maxold;
	int			ent_base;		/* node number of the first stored entity */
	int64		nmatching;		/* stored identifiers read */
	int64		nentities;		/* stored entities read */
	int64		nnullids;		/* events without an id (not stitched) */
} ScopePass;

static OldEntity *OldEnts;		/* for the comparator */

/*
 * add_orphan
 *		Note a stored assignment whose event is gone, with the entity it was
 *		stored with (that entity lost an event; NULL: none known, noted as
 *		the nil uuid, which no entity has).
 */
static void
add_orphan(ScopePass *p, const char *id, int len, const pg_uuid_t *owner)
{
	if (p->norphans >= p->maxorphans)
	{
		p->maxorphans = Max(p->maxorphans * 2, 64);
		p->orphans = p->orphans ?
			repalloc_huge(p->orphans, sizeof(char *) * p->maxorphans) :
			MemoryContextAllocHuge(p->cxt, sizeof(char *) * p->maxorphans);
		p->orphan_owners = p->orphan_owners ?
			repalloc_huge(p->orphan_owners, sizeof(pg_uuid_t) * p->maxorphans) :
			MemoryContextAllocHuge(p->cxt, sizeof(pg_uuid_t) * p->maxorphans);
	}
	if (owner != NULL)
		p->orphan_owners[p->norphans] = *owner;
	else
		memset(&p->orphan_owners[p->norphans], 0, sizeof(pg_uuid_t));
	p->orphans[p->norphans++] = arena_strdup(&p->arena, id, len);
}

/*
 * stored_row
 *		cdp_stream callback: one stored assignment (event_id, entity).
 */
static void
stored_row(TupleTableSlot *slot, void *arg)
{
	ScopePass  *p = arg;
	text	   *t = DatumGetTextPP(slot->tts_values[0]);
	StoredKey	key;
	StoredEntry *e;
	bool		found;

	key.s = VARDATA_ANY(t);
	key.len = VARSIZE_ANY_EXHDR(t);
	e = storedhash_insert(p->stored, key, &found);
	if (!found)
	{
		e->key.s = arena_strdup(&p->arena, key.s, key.len);
		e->seen = false;
	}
	e->entity = *DatumGetUUIDP(slot->tts_values[1]);
}

/*
 * scope_row
 *		stitch_read_events callback: add an event to the graph with its
 *		stored entity, or note a stored assignment whose event is gone.
 */
static void
scope_row(EventRow *row, void *arg)
{
	ScopePass  *p = arg;

	if (row->event_id == NULL)
	{
		if (row->stored_id != NULL)
			add_orphan(p, row->stored_id, row->stored_id_len, row->old_entity);
		else
			p->nnullids++;		/* an event whose id is NULL */
		return;
	}
	if (p->stored && p->stored->members == 0)
		row->old_entity = NULL;
	else if (p->stored)
	{
		StoredKey	key;
		StoredEntry *e;

		key.s = row->event_id;
		key.len = row->event_id_len;
		e = storedhash_lookup(p->stored, key);
		row->old_entity = NULL;
		if (e)
		{
			e->seen = true;
			row->old_entity = &e->entity;
		}
	}
	(void) graph_add_event_row(p->g, row, NULL);
}

/*
 * matching_row
 *		cdp_stream callback: one stored identifier.
 */
static void
matching_row(TupleTableSlot *slot, void *arg)
{
	ScopePass  *p = arg;
	text	   *attr = DatumGetTextPP(slot->tts_values[0]);
	text	   *val = DatumGetTextPP(slot->tts_values[1]);
	pg_uuid_t  *ent = DatumGetUUIDP(slot->tts_values[2]);
	int			id = graph_lookup_identifier(p->g, VARDATA_ANY(attr), VARSIZE_ANY_EXHDR(attr),
											 VARDATA_ANY(val), VARSIZE_ANY_EXHDR(val));

	p->nmatching++;
	if (id >= 0)
	{
		p->ident_old[id] = *ent;
		p->ident_has_old[id] = true;
		return;
	}
	if (p->ndel >= p->maxdel)
	{
		p->maxdel = Max(p->maxdel * 2, 64);
		if (p->del_attr == NULL)
		{
			p->del_attr = MemoryContextAlloc(p->cxt, sizeof(char *) * p->maxdel);
			p->del_val = MemoryContextAlloc(p->cxt, sizeof(char *) * p->maxdel);
			p->del_owner = MemoryContextAlloc(p->cxt, sizeof(pg_uuid_t) * p->maxdel);
		}
		else
		{
			p->del_attr = repalloc_huge(p->del_attr, sizeof(char *) * p->maxdel);
			p->del_val = repalloc_huge(p->del_val, sizeof(char *) * p->maxdel);
			p->del_owner = repalloc_huge(p->del_owner, sizeof(pg_uuid_t) * p->maxdel);
		}
	}
	p->del_attr[p->ndel] = arena_strdup(&p->arena, VARDATA_ANY(attr), VARSIZE_ANY_EXHDR(attr));
	p->del_val[p->ndel] = arena_strdup(&p->arena, VARDATA_ANY(val), VARSIZE_ANY_EXHDR(val));
	p->del_owner[p->ndel++] = *ent;
}

/*
 * add_old
 *		Record a stored entity (created = DT_NOEND when it has no row).
 */
static void
add_old(ScopePass *p, const pg_uuid_t *id, TimestampTz created, bool stored)
{
	OldEntity  *o;

	if (p->nold >= p->maxold)
	{
		p->maxold = Max(p->maxold * 2, 1024);
		p->olds = p->olds ? repalloc_huge(p->olds, sizeof(OldEntity) * p->maxold) :
			MemoryContextAllocHuge(p->cxt, sizeof(OldEntity) * p->maxold);
	}
	o = &p->olds[p->nold++];
	o->id = *id;
	o->created = created;
	o->stored = stored;
	o->comp = o->best_comp = o->first_comp = -1;
	o->mixed = false;
}

/*
 * entity_row
 *		cdp_stream callback: one stored entity (id, created).
 */
static void
entity_row(TupleTableSlot *slot, void *arg)
{
	ScopePass  *p = arg;
	pg_uuid_t  *id = DatumGetUUIDP(slot->tts_values[0]);

	p->nentities++;
	if (graph_entity_node(p->g, id) - p->ent_base < p->nold)
		return;					/* seen already (cannot happen: primary key) */
	add_old(p, id, DatumGetTimestampTz(slot->tts_values[1]), true);
}

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
 * add_problem
 *		One row of verify_stitching() (event_id: the event's key).
 */
static void
add_problem(Tuplestorestate *ts, TupleDesc desc, const char *event_id,
			char *problem)
{
	Datum		values[2];
	bool		nulls[2] = {event_id == NULL, false};

	values[0] = event_id ?
		CStringGetTextDatum(stitch_display_id(stitch_config(false), event_id)) : (Datum) 0;
	values[1] = CStringGetTextDatum(problem);
	tuplestore_putvalues(ts, desc, values, nulls);
}

/*
 * uuid_str
 *		A uuid as text, for messages.
 */
static char *
uuid_str(const pg_uuid_t *u)
{
	char	   *buf = palloc(UUID_TEXT_LEN + 1);

	cdp_uuid_to_text(u, buf);
	return buf;
}

/*
 * assign_components
 *		Decide which stored entity keeps which component.  A component whose
 *		events all come from one stored entity that has no events elsewhere
 *		simply keeps it; only the mixed rest is counted and sorted (oldest
 *		entity first, each taking its largest free component).  ev_comp: the
 *		component of each event (-1 for an event without identifiers); ev_ent:
 *		the number of its stored entity among p->olds (-1 for none).
 */
static void
assign_components(ScopePass *p, const int32 *ev_comp, const int32 *ev_ent, int ncomps,
				  pg_uuid_t *comp_entity, bool *comp_kept)
{
	StitchGraph *g = p->g;
	int			nevents = graph_nevents(g);
	int32	   *comp_first = palloc_extended(sizeof(int32) * Max(ncomps, 1), MCXT_ALLOC_HUGE);
	bool	   *comp_mixed = palloc_extended(sizeof(bool) * Max(ncomps, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	Candidate  *cand;
	int			ncand = 0,
				m = 0,
				i;

	memset(comp_first, -1, sizeof(int32) * Max(ncomps, 1));
	for (i = 0; i < nevents; i++)
	{
		int			k = ev_comp[i];
		OldEntity  *oe;

		if (ev_ent[i] < 0 || k < 0)
			continue;
		oe = &p->olds[ev_ent[i]];
		if (oe->first_comp < 0)
			oe->first_comp = k;
		else if (oe->first_comp != k)
			oe->mixed = true;
		if (comp_first[k] < 0)
			comp_first[k] = ev_ent[i];
		else if (comp_first[k] != ev_ent[i])
			comp_mixed[k] = true;
	}

	/* exclusive pairs keep their entity; the rest become candidates */
	cand = palloc_extended(sizeof(Candidate) * Max(nevents, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < nevents; i++)
	{
		OldEntity  *oe;
		int			k = ev_comp[i];

		if (k < 0 || ev_ent[i] < 0)
			continue;
		oe = &p->olds[ev_ent[i]];
		if (!comp_mixed[k] && !oe->mixed)
		{
			oe->best_comp = k;
			if (oe->comp < 0 && oe->stored)
			{
				oe->comp = k;
				comp_kept[k] = true;
				comp_entity[k] = oe->id;
			}
			continue;
		}
		cand[ncand].ent = ev_ent[i];
		cand[ncand].comp = k;
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
	OldEnts = p->olds;
	qsort(cand, m, sizeof(Candidate), cmp_candidate);
	for (i = 0; i < m; i++)
	{
		OldEntity  *oe = &p->olds[cand[i].ent];

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

/*
 * foreign_identifiers
 *		Whether any identifier that the events of an entity scope carry now,
 *		and that is not stored with an entity of the scope, is stored with
 *		another entity.
 *
 *		The events of a scope were stitched with the identifiers stored with
 *		its entities.  One that carries an identifier of another entity has
 *		changed since it was stitched, without its trigger having seen it
 *		yet: one statement that deletes events and updates others (MERGE, a
 *		writable CTE) fires the DELETE trigger first, and the entities that
 *		lost events are re-stitched while the updated events already read
 *		as their new versions.  The UPDATE trigger that follows forgets such
 *		an event and re-stitches its entity from what remains, so the scope
 *		is left to it as it stands, as if the statements had run one after
 *		the other.  (Events stitched under rules changed since carry such
 *		identifiers too; they keep their stitching until restitch().)
 *		Identifiers stored nowhere are new, and are added as usual.
 */
static bool
foreign_identifiers(ScopePass *p)
{
	StitchGraph *g = p->g;
	int			nidents = graph_nidents(g);
	Datum	   *attrs = NULL;
	Datum	   *vals = NULL;
	int			n = 0;
	int			i;
	Datum		args[2];
	Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	bool		isnull;

	for (i = 0; i < nidents; i++)
	{
		const char *attr;
		const char *val;

		if (p->ident_has_old[i])
			continue;
		if (attrs == NULL)
		{
			attrs = palloc(sizeof(Datum) * nidents);
			vals = palloc(sizeof(Datum) * nidents);
		}
		graph_identifier(g, i, &attr, &val);
		attrs[n] = CStringGetTextDatum(attr);
		vals[n++] = CStringGetTextDatum(val);
	}
	if (n == 0)
		return false;
	args[0] = PointerGetDatum(construct_array(attrs, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(vals, n, TEXTOID, -1, false, TYPALIGN_INT));
	cdp_execute(stitch_probe_plan("foreign_idents",
								  "SELECT EXISTS (SELECT FROM unnest($1, $2) u(attr, val) "
								  "JOIN cdp_traits.matching m ON m.attribute_id = u.attr AND m.value = u.val)",
								  2, types),
				args, NULL, SPI_OK_SELECT, "looking up identifiers of other entities");
	return SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * read_scope_events
 *		stitch_read_events of the events of the entities of a scoped pass:
 *		those a statement's changed events left, stitched again from their
 *		remaining events.  The statement's own events were read before (an
 *		error of the rules for them failed it there), so a data exception
 *		raised here comes from an event stored earlier, for which a rule
 *		added or changed since fails: it is raised again saying so, with
 *		the entity and what to do (the bare error named an event of
 *		neither).  Other errors go on as they are.
 */
static void
read_scope_events(ParamListInfo params, bool read_only, ScopePass *p,
				  const pg_uuid_t *entities, int nentities)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		stitch_read_events(SRC_ENTITY_EVENTS, InvalidOid, params->params[0].value,
						   read_only, scope_row, p);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char		entity[UUID_TEXT_LEN + 1];

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->elevel != ERROR ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		cdp_uuid_to_text(&entities[0], entity);
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s", edata->message),
				 nentities == 1 ?
				 errdetail("A stitching rule fails for a stored event of entity %s. The statement "
						   "changed another event of that entity, whose remaining events are "
						   "stitched again by the current rules; the rule was added or changed "
						   "after the failing event was stored.", entity) :
				 errdetail("A stitching rule fails for a stored event of one of %d entities (%s "
						   "among them). The statement changed other events of those entities, "
						   "whose remaining events are stitched again by the current rules; the "
						   "rule was added or changed after the failing event was stored.",
						   nentities, entity),
				 errhint("Make the rule give NULL for values it cannot read (cdp_traits.to_number() "
						 "instead of a cast, a CASE on jsonb_typeof()), or first correct the failing "
						 "event with an UPDATE of its own, which reads only its new version; "
						 "cdp_traits.restitch() then applies the rule to every stored event."),
				 edata->context != NULL ? errcontext("%s", edata->context) : 0));
	}
	PG_END_TRY();
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
	MemoryContext oldcxt;
	ScopePass	p;
	StitchGraph *g;
	StitchConfig *cfg;
	bool		all = (entities == NULL);
	ParamListInfo params = NULL;
	TupleDesc	pdesc = NULL;
	int			nevents,
				nidents,
				nnodes,
				ncomps = 0,
				i;
	int32	   *comp_of_root;
	int32	   *ev_comp;
	int32	   *ev_ent;
	pg_uuid_t  *comp_entity;
	bool	   *comp_kept;
	StitchChanges c;
	Oid			types[1] = {UUIDARRAYOID};
	instr_time	phase_start;
	int			nstored_est = 1024;
	int			nidents_est = 1024;

	if (!all && nentities == 0)
		return;
	INSTR_TIME_SET_CURRENT(phase_start);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits stitching pass",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	memset(&p, 0, sizeof(p));
	p.cxt = cxt;
	p.arena.cxt = cxt;
	cfg = stitch_rules_config();
	/* (the pass reads and numbers attributes with this configuration) */
	stitch_config_pin();
	if (problems)
	{
		pdesc = CreateTemplateTupleDesc(2);
		TupleDescInitEntry(pdesc, 1, "event_id", TEXTOID, -1, 0);
		TupleDescInitEntry(pdesc, 2, "problem", TEXTOID, -1, 0);
	}
	if (!all)
		params = cdp_uuid_array_param(cdp_uuid_array(entities, nentities));
	if (all)
	{
		/*
		 * Size the hash tables for what is stored (growing them by doubling
		 * from small would move every entry about twice).
		 */
		nstored_est = (int) Min(Max(stitch_table_size("event_entities"), 1024.0), 64.0 * 1024 * 1024);
		nidents_est = (int) Min(Max(stitch_table_size("matching"), 1024.0), 64.0 * 1024 * 1024);
	}
	g = p.g = graph_create(cxt, nidents_est);
	graph_set_attrs(g, cfg->attrs, cfg->nattrs);

	/* 1. every event of the scope with its identifiers and stored entity */
	if (all)
	{
		p.stored = storedhash_create(cxt, nstored_est, NULL);
		cdp_stream(stitch_cached_plan("stored:all",
									  "SELECT event_id, customer_entity_id FROM cdp_traits.event_entities",
									  0, NULL),
				   NULL, !write, stored_row, &p);
		PHASE("reading stored assignments");
		stitch_read_events(SRC_ALL_EVENTS, InvalidOid, (Datum) 0, !write, scope_row, &p);
		{
			storedhash_iterator it;
			StoredEntry *e;

			storedhash_start_iterate(p.stored, &it);
			while ((e = storedhash_iterate(p.stored, &it)) != NULL)
				if (!e->seen)
					add_orphan(&p, e->key.s, e->key.len, &e->entity);
		}
		PHASE("reading events");
	}
	else
		read_scope_events(params, !write, &p, entities, nentities);
	nevents = graph_nevents(g);
	nidents = graph_nidents(g);

	/* 2. the stored identifiers of the scope */
	p.ident_old = palloc_extended(sizeof(pg_uuid_t) * Max(nidents, 1), MCXT_ALLOC_HUGE);
	p.ident_has_old = palloc_extended(sizeof(bool) * Max(nidents, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	cdp_stream(all ?
			   stitch_cached_plan("matching:all",
								  "SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching",
								  0, NULL) :
			   stitch_probe_plan("matching:scope",
								 "SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching "
								 "WHERE customer_entity_id = ANY ($1)", 1, types),
			   params, !write, matching_row, &p);

	PHASE("reading identifiers");
	/* events changed by this statement that a later trigger will handle */
	if (!all && write && foreign_identifiers(&p))
	{
		elog(DEBUG1, "cdp_traits stitching pass: left to a later trigger (events carry identifiers of other entities)");
		stitch_config_unpin();
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		return;
	}
	/* 3. the stored entities of the scope (and any that events name) */
	p.ent_base = graph_nnodes(g);
	cdp_stream(all ?
			   stitch_cached_plan("entities:all",
								  "SELECT id, created FROM cdp_traits.customer_entities", 0, NULL) :
			   stitch_probe_plan("entities:scope",
								 "SELECT id, created FROM cdp_traits.customer_entities "
								 "WHERE id = ANY ($1)", 1, types),
			   params, !write, entity_row, &p);
	/* each event's stored entity, as its number among them (-1: none) */
	ev_ent = palloc_extended(sizeof(int32) * Max(nevents, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < nevents; i++)
	{
		const pg_uuid_t *o = graph_event_old_entity(g, i);

		ev_ent[i] = -1;
		if (o == NULL)
			continue;
		ev_ent[i] = graph_entity_node(g, o) - p.ent_base;
		if (ev_ent[i] >= p.nold)
			add_old(&p, o, DT_NOEND, false);
	}

	PHASE("reading entities");
	/* 4. components, and which stored entity keeps which */
	nnodes = graph_nnodes(g);
	comp_of_root = palloc_extended(sizeof(int32) * Max(nnodes, 1), MCXT_ALLOC_HUGE);
	memset(comp_of_root, -1, sizeof(int32) * Max(nnodes, 1));
	/* each event's component, found once (-1: no identifier) */
	ev_comp = palloc_extended(sizeof(int32) * Max(nevents, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < nevents; i++)
	{
		int			node = graph_event_node(g, i);

		ev_comp[i] = -1;
		if (node >= 0)
		{
			int			root = graph_find(g, node);

			if (comp_of_root[root] < 0)
				comp_of_root[root] = ncomps++;
			ev_comp[i] = comp_of_root[root];
		}
	}
	comp_entity = palloc_extended(sizeof(pg_uuid_t) * Max(ncomps, 1), MCXT_ALLOC_HUGE);
	comp_kept = palloc_extended(sizeof(bool) * Max(ncomps, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	assign_components(&p, ev_comp, ev_ent, ncomps, comp_entity, comp_kept);

	PHASE("components");
	/* 5. the differences */
	stitch_changes_init(&c, nevents, nidents, p.nold + ncomps);
	/*
	 * an entity may be touched once per changed event and identifier, and
	 * once per stored event that is gone
	 */
	c.touched = palloc_extended(sizeof(pg_uuid_t) * ((Size) 2 * nevents + p.ndel + p.norphans + 1),
								MCXT_ALLOC_HUGE);
	for (i = 0; i < ncomps; i++)
		if (!comp_kept[i])
			c.n_new_entities++;
	cdp_random_uuids(c.new_entities, c.n_new_entities);
	c.n_new_entities = 0;
	for (i = 0; i < ncomps; i++)
		if (!comp_kept[i])
			comp_entity[i] = c.new_entities[c.n_new_entities++];
	for (i = 0; i < p.nold; i++)
	{
		OldEntity  *oe = &p.olds[i];

		if (oe->comp >= 0 || !oe->stored)
			continue;
		if (oe->best_comp >= 0)
		{
			c.merged[c.n_merged] = oe->id;
			c.merged_into[c.n_merged++] = comp_entity[oe->best_comp];
		}
		else
			c.removed[c.n_removed++] = oe->id;
	}
	for (i = 0; i < nevents; i++)
	{
		const pg_uuid_t *o = graph_event_old_entity(g, i);
		int			k = ev_comp[i];
		const char *eid = graph_event_id(g, i);

		if (k < 0)
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
		if (o && uuid_cmp_internal(o, &comp_entity[k]) == 0)
			continue;
		if (o)
		{
			c.upd_event_ids[c.n_upd_events] = eid;
			c.upd_event_entity[c.n_upd_events++] = comp_entity[k];
			c.touched[c.n_touched++] = *o;
		}
		else
		{
			c.event_ids[c.n_events] = eid;
			c.event_entity[c.n_events++] = comp_entity[k];
		}
		if (comp_kept[k])		/* (new entities need no marking) */
			c.touched[c.n_touched++] = comp_entity[k];
		if (problems)
		{
			if (!o)
				add_problem(problems, pdesc, eid, pstrdup("carries identifiers but has no entity"));
			else if (!p.olds[ev_ent[i]].stored)
				add_problem(problems, pdesc, eid,
							psprintf("is in entity %s, which is missing from customer_entities",
									 uuid_str(o)));
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
	for (i = 0; i < nidents; i++)
	{
		int			k = comp_of_root[graph_find(g, graph_identifier_node(g, i))];
		const char *attr;
		const char *val;

		if (p.ident_has_old[i] && uuid_cmp_internal(&p.ident_old[i], &comp_entity[k]) == 0)
			continue;
		graph_identifier(g, i, &attr, &val);
		if (p.ident_has_old[i])
		{
			c.upd_ident_attr[c.n_upd_idents] = attr;
			c.upd_ident_val[c.n_upd_idents] = val;
			c.upd_ident_entity[c.n_upd_idents++] = comp_entity[k];
		}
		else
		{
			c.ident_attr[c.n_idents] = attr;
			c.ident_val[c.n_idents] = val;
			c.ident_entity[c.n_idents++] = comp_entity[k];
		}
		if (problems)
			add_problem(problems, pdesc, NULL,
						p.ident_has_old[i] ?
						psprintf("identifier %s=%s is stored with entity %s, not with its events' entity",
								 attr, val, uuid_str(&p.ident_old[i])) :
						psprintf("identifier %s=%s is missing from matching", attr, val));
	}
	c.del_ident_attr = p.del_attr;
	c.del_ident_val = p.del_val;
	c.n_del_idents = p.ndel;
	for (i = 0; i < p.ndel; i++)
	{
		c.touched[c.n_touched++] = p.del_owner[i];
		if (problems)
			add_problem(problems, pdesc, NULL,
						psprintf("identifier %s=%s is in matching but no event carries it",
								 p.del_attr[i], p.del_val[i]));
	}
	if (problems)
		for (i = 0; i < c.n_removed; i++)
			add_problem(problems, pdesc, NULL,
						psprintf("entity %s has no events", uuid_str(&c.removed[i])));

	/* stored assignments of events that are gone from the events table */
	if (p.norphans > 0)
	{
		const char **d = palloc_extended(sizeof(char *) * (c.n_del_events + p.norphans), MCXT_ALLOC_HUGE);

		memcpy(d, c.del_events, sizeof(char *) * c.n_del_events);
		memcpy(d + c.n_del_events, p.orphans, sizeof(char *) * p.norphans);
		c.del_events = d;
		c.n_del_events += p.norphans;
		/* (their entities lost those events: recalculated if they stay) */
		for (i = 0; i < p.norphans; i++)
			c.touched[c.n_touched++] = p.orphan_owners[i];
		if (problems)
			for (i = 0; i < p.norphans; i++)
				add_problem(problems, pdesc, p.orphans[i],
							pstrdup("has an entity but is not in the events table"));
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

	LastResult.events = nevents;
	LastResult.identifiers = nidents;
	LastResult.entities = ncomps;
	LastResult.changed_events = c.n_events + c.n_upd_events + c.n_del_events;
	LastResult.changed_identifiers = c.n_idents + c.n_upd_idents + c.n_del_idents;
	LastResult.memory = MemoryContextMemAllocated(cxt, true);

	PHASE("differences");
	if (write)
	{
		/*
		 * A whole pass holds the stitching lock exclusively: a table it found
		 * empty (the first stitch of an attached table, a restitch from
		 * scratch) is loaded in bulk.
		 */
		if (all)
		{
			c.bulk_entities = (p.nentities == 0);
			c.bulk_idents = (p.nmatching == 0);
			c.bulk_events = (p.stored->members == 0);
		}
		stitch_write_changes(&c);

		/*
		 * Any entity's events may have changed: the stored aggregate states
		 * go, after the entity rows are written.  A calculation that stored
		 * an entity's state holds that entity's row until it commits, so the
		 * writes above waited for it, and this statement, with a snapshot of
		 * its own, sees that state too (deleted before the rows, it was not
		 * yet visible and stayed, for events the pass had changed).
		 */
		if (all)
			stitch_forget_states();
		if (p.nnullids > 0)
			ereport(WARNING,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg_plural("%lld event without an id was not stitched",
								   "%lld events without an id were not stitched",
								   p.nnullids, (long long) p.nnullids),
					 errdetail("Stitching records events by id: an event whose id is NULL "
							   "gets no entity, and the stitching triggers reject new ones."),
					 errhint("Give those events ids with UPDATE (they are stitched at once) "
							 "or delete them, and declare the id column NOT NULL.")));
	}
	PHASE("writing");
	if (result)
		*result = LastResult;

	stitch_config_unpin();
	MemoryContextSwitchTo(oldcxt);
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
	/* (and the stored states, which a database still at 0.1.0 lacks) */
	cdp_execute_sql(stitch_states_kept() ?
					"TRUNCATE cdp_traits.event_entities, cdp_traits.matching, "
					"cdp_traits.entity_states, cdp_traits.entity_state_events" :
					"TRUNCATE cdp_traits.event_entities, cdp_traits.matching",
					SPI_OK_UTILITY, "emptying stitching");
	cdp_execute_sql("DELETE FROM cdp_traits.customer_entities",
					SPI_OK_DELETE, "removing entities");
}

/*
 * stitch_partitions_left
 *		Partitions of the events table have left it (truncated, dropped or
 *		detached): their events have no entity any more, and the entities
 *		they were in may split or vanish.  Stitch what is left again, in one
 *		pass over all remaining events (the caller is SPI connected, as the
 *		extension owner with the rule settings pinned).
 */
void
stitch_partitions_left(void)
{
	stitch_lock_global(true);
	stitch_scope(NULL, 0, true, NULL, NULL);
}

/*
 * stitch_analyze_after
 *		After a pass that rewrote much of the stitching tables (the first
 *		stitch of an attached table, a restitch after a rule change), refresh
 *		their statistics: the attribute engine's plans join them with the
 *		events at once, long before autovacuum would get to them.
 */
void
stitch_analyze_after(const StitchResult *res)
{
	if (res->changed_events + res->changed_identifiers < 10000 &&
		(res->changed_events + res->changed_identifiers) * 10 < res->events + res->identifiers)
		return;
	{
		instr_time	phase_start;

		INSTR_TIME_SET_CURRENT(phase_start);
		cdp_execute_sql("ANALYZE cdp_traits.event_entities, cdp_traits.matching, cdp_traits.customer_entities",
						SPI_OK_UTILITY, "analyzing the stitching tables");
		PHASE("analyzing the stitching tables");
	}
}

/*
 * cdp_restitch
 *		SQL: rebuild stitching from all events; returns the number of entities.
 *		The events table is locked before the stitching lock, in the order of
 *		every other whole pass: a DROP or DETACH of a partition holds the
 *		table when its pass asks for the stitching lock, and a restitch()
 *		that took the stitching lock first and then waited for the table
 *		deadlocked with it (isolation spec restitch_vs_ddl).
 */
Datum
cdp_restitch(PG_FUNCTION_ARGS)
{
	CdpExecState es;
	StitchResult res;

	stitch_lock_events_first();
	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) stitch_rules_config();
	stitch_lock_global(true);
	stitch_scope(NULL, 0, true, NULL, &res);
	stitch_analyze_after(&res);
	SPI_finish();
	cdp_exec_end(&es);
	PG_RETURN_INT64(res.entities);
}

/* An entity_merges row, for verify_merges. */
typedef struct MergeRow
{
	pg_uuid_t	merged;
	pg_uuid_t	into;
} MergeRow;

/* qsort/bsearch comparator of MergeRows by merged id. */
static int
merge_row_cmp(const void *a, const void *b)
{
	return uuid_cmp_internal(&((const MergeRow *) a)->merged,
							 &((const MergeRow *) b)->merged);
}

/*
 * verify_merges
 *		verify_stitching()'s checks of entity_merges, on the active snapshot,
 *		from one read of its rows: an absorbed id is never a live entity
 *		(current_entity() would lead it elsewhere), and following merges
 *		never comes back to where it started.  The cycles are found in one
 *		walk over the rows sorted by merged id (each row is visited once),
 *		not by a recursive query from every row.
 */
static void
verify_merges(Tuplestorestate *ts, TupleDesc desc)
{
	MergeRow   *rows;
	int		   *next;
	char	   *state;			/* 0 new, 1 on the current walk, 2 done */
	int		   *walk;
	uint64		n;
	uint64		i;

	if (SPI_execute("SELECT m.merged_id, m.into_id, e.id IS NOT NULL "
					"FROM cdp_traits.entity_merges m "
					"LEFT JOIN cdp_traits.customer_entities e ON e.id = m.merged_id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading entity_merges failed");
	n = SPI_processed;
	if (n == 0)
		return;
	rows = palloc_extended(sizeof(MergeRow) * n, MCXT_ALLOC_HUGE);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;

		rows[i].merged = *DatumGetUUIDP(SPI_getbinval(tup, td, 1, &isnull));
		rows[i].into = *DatumGetUUIDP(SPI_getbinval(tup, td, 2, &isnull));
		if (DatumGetBool(SPI_getbinval(tup, td, 3, &isnull)))
			add_problem(ts, desc, NULL,
						psprintf("entity %s is live but recorded as merged into %s",
								 uuid_str(&rows[i].merged), uuid_str(&rows[i].into)));
	}
	SPI_freetuptable(SPI_tuptable);
	qsort(rows, n, sizeof(MergeRow), merge_row_cmp);

	next = palloc_extended(sizeof(int) * n, MCXT_ALLOC_HUGE);
	for (i = 0; i < n; i++)
	{
		MergeRow	key;
		MergeRow   *hit;

		key.merged = rows[i].into;
		hit = bsearch(&key, rows, n, sizeof(MergeRow), merge_row_cmp);
		next[i] = hit ? (int) (hit - rows) : -1;
	}

	state = palloc_extended(n, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	walk = palloc_extended(sizeof(int) * n, MCXT_ALLOC_HUGE);
	for (i = 0; i < n; i++)
	{
		int			len = 0;
		int			cur = (int) i;
		int			j;

		while (cur >= 0 && state[cur] == 0)
		{
			state[cur] = 1;
			walk[len++] = cur;
			cur = next[cur];
		}
		/* back at a row of this walk: from there on, the walk is a cycle */
		if (cur >= 0 && state[cur] == 1)
		{
			for (j = 0; j < len && walk[j] != cur; j++)
				;
			for (; j < len; j++)
				add_problem(ts, desc, NULL,
							psprintf("merges of entity %s lead back to it",
									 uuid_str(&rows[walk[j]].merged)));
		}
		for (j = 0; j < len; j++)
			state[walk[j]] = 2;
	}
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
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) stitch_rules_config();
	PushActiveSnapshot(GetTransactionSnapshot());
	stitch_scope(NULL, 0, false, ts, NULL);
	verify_merges(ts, rsinfo->setDesc);
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
