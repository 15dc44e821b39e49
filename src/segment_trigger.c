/*-------------------------------------------------------------------------
 *
 * segment_trigger.c
 *		The statement trigger on cdp_traits.segment_events (SPEC section 6):
 *		memberships, toggles and profiles kept current, set-based, in the
 *		transaction that inserts the events.
 *
 * For every INSERT or COPY the trigger
 *
 *	1. reads the NEW transition table once into memory: the events, and
 *	   each distinct (vendor, segment, user) key in a hash table;
 *
 *	2. locks either the segments lock shared and the key locks of the batch
 *	   (one of 256 per key), in order, or -- for batches of more than
 *	   cdp_traits.max_segment_locks events -- the segments lock exclusively.
 *	   Concurrent writers of one key are thus serialized; the order in which
 *	   they get the key's lock is their arrival order;
 *
 *	3. keeps the new event ids in segment_event_ids (sorted, one INSERT): an
 *	   id seen before, or twice in the batch, is ignored and its row deleted
 *	   from segment_events again -- unless the row is the accepted event
 *	   itself, its id stored with its seq (a serial restore loads
 *	   segment_event_ids first): that row is kept and not applied again.
 *	   (What pg_restore loads is kept as it is, whatever the order of the
 *	   tables: see loaded_by_restore.)
 *
 *	4. reads the stored memberships of the batch's keys and folds the
 *	   accepted events into them in arrival order (seq), collecting toggles;
 *
 *	5. writes the toggles (in arrival order), updates the memberships of
 *	   stored keys and inserts the new ones (sorted), and updates the
 *	   profiles of the users of the batch: each stored profile is merged
 *	   with the user's changed memberships (profiles are sorted by name and
 *	   vendor, and so are the changes), a new user's is built from them.
 *
 * The fold itself is a single pass in C: no sort of the batch (events arrive
 * in seq order), one hash probe per event.  The writes are one statement
 * each, with array parameters.  Memory grows with the statement (about 190
 * MB for a million events of 222k keys).
 *
 * Like the stitching triggers, the statements run as the extension owner
 * with a pinned search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "portability/instr_time.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "cdp_traits.h"
#include "segment.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_segment_events_insert);
PG_FUNCTION_INFO_V1(cdp_segment_event_row);
PG_FUNCTION_INFO_V1(cdp_toggles_writer);
PG_FUNCTION_INFO_V1(cdp_toggles_wait);
PG_FUNCTION_INFO_V1(cdp_segments_lock_exclusive);
PG_FUNCTION_INFO_V1(cdp_profile_merge);

/*
 * Lock tags.  Advisory locks in key spaces of their own (cdp_traits.h):
 * field4 ("objsubid" in pg_locks) is 17225 for the segments lock
 * (objid 0) and the toggle log (objid 1), and 17226 for the key locks (objid
 * = one of SEGMENT_KEY_STRIPES stripes, chosen by the hash of a (vendor,
 * segment, user) key); classid is 'CSEG' and 'CSEK'.  SQL's
 * pg_advisory_lock functions only make tags with field4 1 or 2, so no role
 * can take or hold these locks from SQL; the SQL functions that need them
 * call the C functions at the end of this file (_toggles_writer,
 * _toggles_wait, _segments_lock_exclusive).
 *
 * Key locks are held until commit, so a transaction ingesting events one
 * statement at a time holds the locks of all keys it wrote; striping bounds
 * that number (and the lock table it fills) whatever the number of keys.
 * The count is fixed: every backend must map a key to the same lock.
 */
#define SEGMENT_LOCKS		0x43534547
#define SEGMENT_KEY_LOCKS	0x4353454B
#define SEGMENTS_LOCK		0
#define TOGGLE_LOG_LOCK		1
#define SEGMENT_KEY_STRIPES	256

/* name of the NEW transition table of the trigger */
#define SEGMENT_NEW_TABLE	"cdp_new_segment_events"
/* the row trigger of replica sessions (see cdp_trigger_not_this_session) */
#define SEGMENT_REPLICA_TRIGGER "segment_events_replica"

/* A (vendor, segment, user) key; the strings are not NUL-terminated. */
typedef struct SegKeyId
{
	int32		vendor;
	int			seglen;
	int			userlen;
	const char *segment;
	const char *user;
} SegKeyId;

/* The state of a key: stored, then with the batch's events applied. */
typedef struct SegState
{
	SegKeyId	id;
	uint32		hash;
	bool		stored;			/* a membership row exists */
	bool		known;			/* it has a last event (stored or new) */
	bool		changed;		/* events of the batch were applied */
	bool		member;
	bool		has_first;		/* added at some time */
	TimestampTz first;
	TimestampTz last;
	pg_uuid_t	last_event;
	TimestampTz last_time;
	int64		last_seq;
	const char *value;			/* NULL: none */
	int			valuelen;
	bool		has_value_seq;	/* false: no value, or one older than any event */
	int64		value_seq;		/* seq of the add that carried value */
} SegState;

/* One event of the batch. */
typedef struct SegEvent
{
	int64		seq;
	TimestampTz time;
	pg_uuid_t	id;
	const char *value;			/* NULL: none */
	int32		valuelen;
	int32		key;			/* index into the states */
	bool		remove;
	bool		rejected;		/* its id was seen before */
	bool		loaded;			/* accepted before as this seq: not applied */
} SegEvent;

/* simplehash: key -> index into the states */
typedef struct SegKeyEntry
{
	SegKeyId	key;
	uint32		hash;
	char		status;
	int32		idx;
} SegKeyEntry;

/* Hash of a membership key (vendor, segment, user) for the key table. */
static inline uint32
seg_key_hash(const SegKeyId *k)
{
	uint32		h = hash_uint32((uint32) k->vendor);

	h = hash_combine(h, hash_bytes((const unsigned char *) k->segment, k->seglen));
	return hash_combine(h, hash_bytes((const unsigned char *) k->user, k->userlen));
}

/* Whether two membership keys are the same (bytes of segment and user). */
static inline bool
seg_key_equal(const SegKeyId *a, const SegKeyId *b)
{
	return a->vendor == b->vendor && a->seglen == b->seglen && a->userlen == b->userlen &&
		memcmp(a->segment, b->segment, a->seglen) == 0 &&
		memcmp(a->user, b->user, a->userlen) == 0;
}

#define SH_PREFIX		segkeys
#define SH_ELEMENT_TYPE	SegKeyEntry
#define SH_KEY_TYPE		SegKeyId
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	seg_key_hash(&(k))
#define SH_EQUAL(tb, a, b)	seg_key_equal(&(a), &(b))
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* Everything the trigger knows about its batch. */
typedef struct SegBatch
{
	MemoryContext cxt;
	StrArena	arena;
	segkeys_hash *keys;
	SegState   *states;
	int			nstates;
	int			maxstates;
	SegEvent   *events;
	int64		nevents;
	int64		maxevents;
	bool		small;			/* locked key by key, kept plans */
	bool		in_order;		/* events arrived in seq order */
	int64		rejected;
	int64		loaded;
	int64		late;			/* events that came after a higher seq */
	/* toggles found by the fold, in arrival order (indexes into events) */
	int64	   *toggles;
	pg_uuid_t  *toggle_prev;
	TimestampTz *toggle_prev_time;
	int64		ntoggles;
} SegBatch;

/* The statements, prepared once per backend (generic plans). */
typedef struct SegStatement
{
	const char *what;
	const char *sql;
	int			nargs;
	Oid			argtypes[11];
	SPIPlanPtr	plan;
	uint64		growth;			/* see cdp_growth_generation */
} SegStatement;

/* the tables the kept plans probe */
static const char *const planned_tables[] = {
	"segment_memberships", "segment_profiles", "segment_event_ids"
};
static CdpGrowthWatch plan_growth = CDP_GROWTH_WATCH(planned_tables);

enum
{
	ST_READ,
	ST_IDS,
	ST_IDS_CHECKED,
	ST_IDS_STORED,
	ST_STORED_COPIES,
	ST_DELETE_REPEATED,
	ST_STORED,
	ST_TOGGLES,
	ST_UPDATE,
	ST_INSERT,
	ST_INSERT_CHECKED,
	ST_PROFILES,
	ST_COUNT
};

/*
 * The insert of new memberships (two statements use it), and the parameters
 * of the statements that write memberships: one array per column
 */
#define MEMBERSHIPS_INSERT \
	"INSERT INTO cdp_traits.segment_memberships (vendor, segment, user_id, first, last, member, " \
	"value, last_event, last_event_time, last_seq, value_seq) " \
	"SELECT pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), " \
	"pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), " \
	"pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10), " \
	"pg_catalog.unnest($11)"
#define MEMBERSHIPS_PARAMS \
	11, {INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, \
	BOOLARRAYOID, TEXTARRAYOID, UUIDARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID, INT8ARRAYOID}

static SegStatement statements[ST_COUNT] = {
	[ST_READ] = {"reading the new events",
		"SELECT n.seq, n.event, n.vendor, n.segment, n.user_id, n.\"timestamp\", n.remove, n.value "
		"FROM " SEGMENT_NEW_TABLE " n", 0},
	[ST_IDS] = {"keeping event ids",
		"INSERT INTO cdp_traits.segment_event_ids (event, seq) "
		"SELECT pg_catalog.unnest($1), pg_catalog.unnest($2)",
		2, {UUIDARRAYOID, INT8ARRAYOID}},
	[ST_IDS_CHECKED] = {"keeping event ids not seen before",
		"INSERT INTO cdp_traits.segment_event_ids AS i (event, seq) "
		"SELECT pg_catalog.unnest($1), pg_catalog.unnest($2) "
		"ON CONFLICT (event) DO NOTHING RETURNING i.event",
		2, {UUIDARRAYOID, INT8ARRAYOID}},
	[ST_IDS_STORED] = {"reading stored event ids",
		"SELECT i.event, i.seq FROM pg_catalog.unnest($1) AS c(event) "
		"JOIN cdp_traits.segment_event_ids i ON i.event = c.event",
		1, {UUIDARRAYOID}},
	/* an accepted event stored twice: its row before and the batch's */
	[ST_STORED_COPIES] = {"looking for copies of accepted events",
		"SELECT e.event, e.seq FROM (SELECT pg_catalog.unnest($1) AS seq, "
		"pg_catalog.unnest($2) AS event) c "
		"JOIN cdp_traits.segment_events e ON e.seq = c.seq AND e.event = c.event "
		"GROUP BY e.event, e.seq HAVING pg_catalog.count(*) > 1 LIMIT 1",
		2, {INT8ARRAYOID, UUIDARRAYOID}},
	/*
	 * The rows of the repeated events, by seq and id; never a row whose id
	 * is stored with its seq (an accepted event), whatever seq a repeat
	 * carries (OVERRIDING SYSTEM VALUE can give it any).
	 */
	[ST_DELETE_REPEATED] = {"removing events with repeated ids",
		"DELETE FROM cdp_traits.segment_events e "
		"USING (SELECT pg_catalog.unnest($1) AS seq, pg_catalog.unnest($2) AS event) r "
		"WHERE e.seq = ANY ($1) AND e.seq = r.seq AND e.event = r.event "
		"AND NOT EXISTS (SELECT FROM cdp_traits.segment_event_ids i "
		"WHERE i.event = e.event AND i.seq = e.seq)",
		2, {INT8ARRAYOID, UUIDARRAYOID}},
	[ST_STORED] = {"reading stored memberships",
		"SELECT m.vendor, m.segment, m.user_id, m.first, m.last, m.member, m.value, "
		"m.last_event, m.last_event_time, m.last_seq, m.value_seq "
		"FROM (SELECT pg_catalog.unnest($1) AS vendor, pg_catalog.unnest($2) AS segment, "
		"pg_catalog.unnest($3) AS user_id) k "
		"JOIN cdp_traits.segment_memberships m ON m.vendor = k.vendor "
		"AND m.segment = k.segment COLLATE \"C\" AND m.user_id = k.user_id COLLATE \"C\"",
		3, {INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID}},
	[ST_TOGGLES] = {"appending toggles",
		"INSERT INTO cdp_traits.segment_toggles (vendor, segment, user_id, member, event, event_time, "
		"value, previous_event, previous_time) "
		"SELECT pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
		"pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
		"pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9)",
		9, {INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID, UUIDARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTARRAYOID, UUIDARRAYOID, TIMESTAMPTZARRAYOID}},
	[ST_UPDATE] = {"updating memberships",
		"UPDATE cdp_traits.segment_memberships m SET first = u.first, last = u.last, member = u.member, "
		"value = u.value, last_event = u.last_event, last_event_time = u.last_event_time, "
		"last_seq = u.last_seq, value_seq = u.value_seq "
		"FROM (SELECT pg_catalog.unnest($1) AS vendor, pg_catalog.unnest($2) AS segment, "
		"pg_catalog.unnest($3) AS user_id, pg_catalog.unnest($4) AS first, pg_catalog.unnest($5) AS last, "
		"pg_catalog.unnest($6) AS member, pg_catalog.unnest($7) AS value, pg_catalog.unnest($8) AS last_event, "
		"pg_catalog.unnest($9) AS last_event_time, pg_catalog.unnest($10) AS last_seq, "
		"pg_catalog.unnest($11) AS value_seq) u "
		"WHERE m.vendor = u.vendor AND m.segment = u.segment COLLATE \"C\" "
		"AND m.user_id = u.user_id COLLATE \"C\"", MEMBERSHIPS_PARAMS},
	[ST_INSERT] = {"inserting memberships", MEMBERSHIPS_INSERT, MEMBERSHIPS_PARAMS},
	/* the same, under a transaction snapshot: see write_memberships */
	[ST_INSERT_CHECKED] = {"inserting memberships",
		MEMBERSHIPS_INSERT " ON CONFLICT (vendor, segment, user_id) DO NOTHING", MEMBERSHIPS_PARAMS},
	[ST_PROFILES] = {"writing profiles",
		"INSERT INTO cdp_traits.segment_profiles AS p (user_id, segments) "
		"SELECT pg_catalog.unnest($1), pg_catalog.unnest($2) "
		"ON CONFLICT (user_id) DO UPDATE "
		"SET segments = cdp_traits._profile_merge(p.user_id, p.segments, EXCLUDED.segments)",
		2, {TEXTARRAYOID, JSONBARRAYOID}},
};

/*
 * statement
 *		The plan of one of the statements above.  For a small batch, a
 *		generic plan kept for the backend: a custom plan per execution
 *		would cost more than the statement itself.  For a large one, a plan
 *		made for this execution's arrays (hash joins rather than a probe per
 *		key), freed with the SPI connection.
 */
static SPIPlanPtr
statement(SegBatch *b, int which)
{
	SegStatement *st = &statements[which];
	SPIPlanPtr	plan;

	if (b->small && st->plan)
	{
		/* (made again once the tables have grown: see cdp_growth_generation) */
		if (st->growth == cdp_growth_generation(&plan_growth))
			return st->plan;
		SPI_freeplan(st->plan);
		st->plan = NULL;
	}
	plan = SPI_prepare_cursor(st->sql, st->nargs, st->argtypes,
							  b->small ? CURSOR_OPT_GENERIC_PLAN : CURSOR_OPT_CUSTOM_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 st->sql, SPI_result_code_string(SPI_result));
	if (b->small)
	{
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		st->plan = plan;
		st->growth = cdp_growth_generation(&plan_growth);
	}
	return plan;
}

/*
 * execute
 *		Run a statement with its arguments; returns SPI_processed.
 */
static uint64
execute(SegBatch *b, int which, Datum *args, int expected)
{
	return cdp_execute(statement(b, which), args, NULL, expected, statements[which].what);
}

/*
 * param_list
 *		Parameters for cdp_stream.
 */
static ParamListInfo
param_list(Datum *args, const Oid *types, int n)
{
	ParamListInfo params = makeParamList(n);
	int			i;

	for (i = 0; i < n; i++)
	{
		params->params[i].value = args[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = types[i];
	}
	return params;
}

/*
 * stream
 *		Run a reading statement, calling callback for each row (on a new
 *		snapshot: what writers of the keys committed before we locked them).
 */
static void
stream(SegBatch *b, int which, ParamListInfo params, SlotCallback callback, void *arg)
{
	cdp_stream(statement(b, which), params, false, callback, arg);
}

/*
 * lock_tag
 *		The tag of one of the segment locks (see above).
 */
static void
lock_tag(LOCKTAG *tag, uint32 key1, uint32 key2)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, key1, key2,
						 key1 == SEGMENT_KEY_LOCKS ? CDP_LOCK_SEGMENT_KEYS : CDP_LOCK_SEGMENTS);
}

/*
 * lock_pair
 *		Take one of the segment locks, until the end of the transaction.
 */
static void
lock_pair(uint32 key1, uint32 key2, LOCKMODE mode)
{
	LOCKTAG		tag;

	lock_tag(&tag, key1, key2);
	(void) LockAcquire(&tag, mode, false, false);
}

/* ---- reading the batch ---- */

/*
 * key_index
 *		The state index of a key, added (with copies of its strings) if new.
 */
static int
key_index(SegBatch *b, const SegKeyId *k)
{
	bool		found;
	SegKeyEntry *e = segkeys_insert(b->keys, *k, &found);

	if (!found)
	{
		SegState   *s;

		if (b->nstates >= b->maxstates)
		{
			b->maxstates *= 2;
			b->states = repalloc_huge(b->states, sizeof(SegState) * b->maxstates);
		}
		s = &b->states[b->nstates];
		memset(s, 0, sizeof(SegState));
		s->id.vendor = k->vendor;
		s->id.seglen = k->seglen;
		s->id.userlen = k->userlen;
		s->id.segment = arena_strdup(&b->arena, k->segment, k->seglen);
		s->id.user = arena_strdup(&b->arena, k->user, k->userlen);
		s->hash = e->hash;
		/* the entry must not point into the row being read */
		e->key = s->id;
		e->idx = b->nstates++;
	}
	return e->idx;
}

/*
 * text_arg
 *		Pointer and length of a (detoasted) text attribute.
 */
static inline const char *
text_arg(Datum d, int *len)
{
	text	   *t = DatumGetTextPP(d);

	*len = VARSIZE_ANY_EXHDR(t);
	return VARDATA_ANY(t);
}

/*
 * read_event
 *		cdp_stream callback for ST_READ: keep one new event.
 */
static void
read_event(TupleTableSlot *slot, void *arg)
{
	SegBatch   *b = arg;
	SegEvent   *ev;
	SegKeyId	k;
	MemoryContext old;

	if (b->nevents >= b->maxevents)
	{
		b->maxevents *= 2;
		b->events = repalloc_huge(b->events, sizeof(SegEvent) * b->maxevents);
	}
	ev = &b->events[b->nevents];
	ev->seq = DatumGetInt64(slot->tts_values[0]);
	ev->id = *DatumGetUUIDP(slot->tts_values[1]);
	k.vendor = DatumGetInt32(slot->tts_values[2]);
	k.segment = text_arg(slot->tts_values[3], &k.seglen);
	k.user = text_arg(slot->tts_values[4], &k.userlen);
	ev->time = DatumGetTimestampTz(slot->tts_values[5]);
	ev->remove = DatumGetBool(slot->tts_values[6]);
	ev->rejected = false;
	ev->loaded = false;

	old = MemoryContextSwitchTo(b->cxt);
	ev->key = key_index(b, &k);
	if (slot->tts_isnull[7])
	{
		ev->value = NULL;
		ev->valuelen = 0;
	}
	else
	{
		int			len;
		const char *v = text_arg(slot->tts_values[7], &len);

		ev->value = arena_strdup(&b->arena, v, len);
		ev->valuelen = len;
	}
	MemoryContextSwitchTo(old);

	if (b->nevents > 0 && ev->seq < b->events[b->nevents - 1].seq)
		b->in_order = false;
	b->nevents++;
}

/* qsort comparator: events in arrival order (their sequence number). */
static int
cmp_event_seq(const void *a, const void *b)
{
	int64		x = ((const SegEvent *) a)->seq;
	int64		y = ((const SegEvent *) b)->seq;

	return (x > y) - (x < y);
}

/* ---- arrays for statement parameters ---- */

/*
 * make_array
 *		A one-dimensional SQL array of n values of type elemtype (nulls may
 *		be NULL: none).
 */
static Datum
make_array(Datum *vals, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(vals, nulls, 1, dims, lbs, elemtype,
											  typlen, typbyval, typalign));
}

/* A text datum of len bytes of s. */
static inline Datum
text_datum(const char *s, int len)
{
	return PointerGetDatum(cstring_to_text_with_len(s, len));
}

/* Parameter arrays of the keys idx[0..n-1]: vendor, segment, user. */
static void
key_arrays(SegBatch *b, const int *idx, int n, Datum *args)
{
	Datum	   *v = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *s = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *u = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
	{
		SegKeyId   *k = &b->states[idx[i]].id;

		v[i] = Int32GetDatum(k->vendor);
		s[i] = text_datum(k->segment, k->seglen);
		u[i] = text_datum(k->user, k->userlen);
	}
	args[0] = make_array(v, NULL, n, INT4OID);
	args[1] = make_array(s, NULL, n, TEXTOID);
	args[2] = make_array(u, NULL, n, TEXTOID);
}

/* ---- step 2: locks ---- */

static int
cmp_uint32(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	return (x > y) - (x < y);
}

/*
 * lock_batch
 *		The keys' stripes in order (small batches) or all keys with the
 *		segments lock (large ones).  (The toggle log lock is taken by the
 *		toggles' insert, only by a batch that writes some: see
 *		cdp_toggles_wait.)
 */
static void
lock_batch(SegBatch *b)
{
	if (b->small)
	{
		uint32	   *h = palloc(sizeof(uint32) * Max(b->nstates, 1));
		int			i;

		lock_pair(SEGMENT_LOCKS, SEGMENTS_LOCK, ShareLock);
		for (i = 0; i < b->nstates; i++)
			h[i] = b->states[i].hash % SEGMENT_KEY_STRIPES;
		qsort(h, b->nstates, sizeof(uint32), cmp_uint32);
		for (i = 0; i < b->nstates; i++)
			if (i == 0 || h[i] != h[i - 1])
				lock_pair(SEGMENT_KEY_LOCKS, h[i], ExclusiveLock);
	}
	else
		lock_pair(SEGMENT_LOCKS, SEGMENTS_LOCK, ExclusiveLock);
}

/* ---- step 3: event ids ---- */

/* An event id as two integers in the uuid type's (byte) order, for sorting. */
typedef struct IdRef
{
	uint64		hi;
	uint64		lo;
	int64		seq;
	int64		event;			/* index into events */
} IdRef;

/* Eight bytes of a uuid as an integer that sorts as the bytes do. */
static inline uint64
uuid_half(const unsigned char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh64(v);
}

/* Order of event ids as the uuid type sorts them, then by arrival. */
static inline int
cmp_idref(const IdRef *x, const IdRef *y)
{
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

#define ST_SORT			sort_idrefs
#define ST_ELEMENT_TYPE	IdRef
#define ST_COMPARE(a, b)	cmp_idref(a, b)
#define ST_SCOPE		static
#define ST_DEFINE
#include "lib/sort_template.h"

/* insert_ids_optimistic's arguments, for cdp_in_subtransaction */
typedef struct IdsInsert
{
	SegBatch   *b;
	Datum	   *args;
} IdsInsert;

/*
 * insert_ids_in
 *		The plain insert of the ids, run in insert_ids_optimistic's
 *		subtransaction.
 */
static void
insert_ids_in(void *arg)
{
	IdsInsert  *ins = arg;

	execute(ins->b, ST_IDS, ins->args, SPI_OK_INSERT);
}

/*
 * insert_ids_optimistic
 *		The plain insert of the ids, in a subtransaction: true if it went
 *		through, false if an id was already stored (unique violation; the
 *		subtransaction is rolled back).  Other errors are raised.
 */
static bool
insert_ids_optimistic(SegBatch *b, Datum *args)
{
	IdsInsert	ins = {b, args};
	ErrorData  *edata = cdp_in_subtransaction(insert_ids_in, &ins);

	if (edata == NULL)
		return true;
	if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/*
 * find_ref
 *		The index of the id u among refs[0..n-1] (sorted, distinct ids), or
 *		-1.
 */
static int64
find_ref(const IdRef *refs, int64 n, const pg_uuid_t *u)
{
	IdRef		key;
	int64		lo = 0,
				hi = n;

	key.hi = uuid_half(u->data);
	key.lo = uuid_half(u->data + 8);
	while (lo < hi)
	{
		int64		mid = lo + (hi - lo) / 2;
		const IdRef *r = &refs[mid];

		if (r->hi == key.hi && r->lo == key.lo)
			return mid;
		if (r->hi < key.hi || (r->hi == key.hi && r->lo < key.lo))
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/*
 * copy_error
 *		Raise the error for a second row of an event with the same seq: an
 *		accepted event is stored once.
 */
static void
copy_error(Datum id, int64 seq)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("segment event %s would be stored twice as seq " INT64_FORMAT,
					DatumGetCString(DirectFunctionCall1(uuid_out, id)), seq),
			 errdetail("A row may carry the id and seq of an accepted event only while that event is not in segment_events, as when a restore loads it."),
			 errhint("Insert the event without seq (no OVERRIDING SYSTEM VALUE): a repeated id is then ignored as a re-delivery.")));
}

/*
 * sort_out_stored
 *		For the candidates refs[0..n-1] whose ids were stored before
 *		(stored[i] false): an id stored with the candidate's own seq is that
 *		accepted event loaded again (as a restore loads segment_events after
 *		segment_event_ids) -- kept, not applied, provided segment_events
 *		did not hold that row already (an error: an event is stored once);
 *		any other is a repeat.
 */
static void
sort_out_stored(SegBatch *b, IdRef *refs, int64 n, const bool *stored)
{
	IdRef	   *others = palloc_extended(sizeof(IdRef) * Max(n, 1), MCXT_ALLOC_HUGE);
	Datum	   *ids = palloc_extended(sizeof(Datum) * Max(n, 1), MCXT_ALLOC_HUGE);
	bool	   *matched;
	int64		m = 0,
				i;
	uint64		j;
	Datum		args[1];

	for (i = 0; i < n; i++)
		if (!stored[i])
		{
			others[m] = refs[i];
			ids[m] = UUIDPGetDatum(&b->events[refs[i].event].id);
			m++;
		}
	matched = palloc_extended(sizeof(bool) * Max(m, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	args[0] = make_array(ids, NULL, m, UUIDOID);
	execute(b, ST_IDS_STORED, args, SPI_OK_SELECT);
	for (j = 0; j < SPI_processed; j++)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 1, &isnull);
		int64		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[j],
													  SPI_tuptable->tupdesc, 2, &isnull));
		int64		k = find_ref(others, m, DatumGetUUIDP(id));

		if (k >= 0 && others[k].seq == seq)
		{
			b->events[others[k].event].loaded = true;
			b->loaded++;
			matched[k] = true;
		}
	}
	SPI_freetuptable(SPI_tuptable);
	/* the rest repeat an id stored with another seq */
	m = 0;
	for (i = 0; i < n; i++)
		if (!stored[i] && !matched[m++])
		{
			b->events[refs[i].event].rejected = true;
			b->rejected++;
		}

	/* an event loaded again must not be in segment_events already */
	if (b->loaded > 0)
	{
		Datum		cargs[2];
		Datum	   *seqs = palloc_extended(sizeof(Datum) * b->loaded, MCXT_ALLOC_HUGE);

		m = 0;
		for (i = 0; i < b->nevents; i++)
			if (b->events[i].loaded)
			{
				seqs[m] = Int64GetDatum(b->events[i].seq);
				ids[m] = UUIDPGetDatum(&b->events[i].id);
				m++;
			}
		cargs[0] = make_array(seqs, NULL, m, INT8OID);
		cargs[1] = make_array(ids, NULL, m, UUIDOID);
		if (execute(b, ST_STORED_COPIES, cargs, SPI_OK_SELECT) > 0)
		{
			bool		isnull;

			copy_error(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
					   DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 2, &isnull)));
		}
		SPI_freetuptable(SPI_tuptable);
		pfree(seqs);
	}
	pfree(matched);
	pfree(ids);
	pfree(others);
}

/*
 * keep_ids
 *		Store the ids of the batch's events; mark the events whose id was
 *		seen before (in an earlier statement or earlier in this one) as
 *		rejected and remove them from segment_events.  An event whose id is
 *		already stored with its own seq is the accepted event itself, loaded
 *		again (a restore): marked loaded, kept and not applied again.  No
 *		accepted event is ever removed, whatever seq a repeat carries: the
 *		repeats' rows are deleted by seq and id, never one whose id is
 *		stored with its seq; and a second row with an accepted event's id
 *		and seq is an error (see copy_error).
 *
 *		Small batches use INSERT ... ON CONFLICT DO NOTHING, which also waits
 *		for a concurrent transaction inserting the same id.  Large ones hold
 *		the segments lock exclusively and first try a plain INSERT, twice as
 *		fast; only if an id was stored before do they fall back.
 */
static void
keep_ids(SegBatch *b)
{
	IdRef	   *refs = palloc_extended(sizeof(IdRef) * Max(b->nevents, 1), MCXT_ALLOC_HUGE);
	Datum	   *ids;
	Datum	   *seqs;
	int64		i,
				n = 0;
	Datum		args[2];
	bool		checked = b->small;

	for (i = 0; i < b->nevents; i++)
	{
		refs[i].hi = uuid_half(b->events[i].id.data);
		refs[i].lo = uuid_half(b->events[i].id.data + 8);
		refs[i].seq = b->events[i].seq;
		refs[i].event = i;
	}
	sort_idrefs(refs, b->nevents);

	/* the first of each id (in seq order) is kept, later ones repeat it */
	ids = palloc_extended(sizeof(Datum) * Max(b->nevents, 1), MCXT_ALLOC_HUGE);
	seqs = palloc_extended(sizeof(Datum) * Max(b->nevents, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < b->nevents; i++)
	{
		if (n > 0 && refs[i].hi == refs[n - 1].hi && refs[i].lo == refs[n - 1].lo)
		{
			if (refs[i].seq == refs[n - 1].seq)
				copy_error(UUIDPGetDatum(&b->events[refs[i].event].id), refs[i].seq);
			b->events[refs[i].event].rejected = true;
			b->rejected++;
			continue;
		}
		ids[n] = UUIDPGetDatum(&b->events[refs[i].event].id);
		seqs[n] = Int64GetDatum(refs[i].seq);
		refs[n] = refs[i];
		n++;
	}
	args[0] = make_array(ids, NULL, n, UUIDOID);
	args[1] = make_array(seqs, NULL, n, INT8OID);

	if (!checked && !insert_ids_optimistic(b, args))
		checked = true;
	if (checked)
	{
		uint64		nstored = execute(b, ST_IDS_CHECKED, args, SPI_OK_INSERT_RETURNING);

		if (nstored < (uint64) n)
		{
			/* candidates whose id did not come back were stored before */
			bool	   *stored = palloc_extended(sizeof(bool) * Max(n, 1),
												 MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
			uint64		j;

			for (j = 0; j < nstored; j++)
			{
				bool		isnull;
				Datum		id = SPI_getbinval(SPI_tuptable->vals[j],
											   SPI_tuptable->tupdesc, 1, &isnull);
				int64		k = find_ref(refs, n, DatumGetUUIDP(id));

				if (k < 0)
					elog(ERROR, "stored event id not in the batch");
				stored[k] = true;
			}
			SPI_freetuptable(SPI_tuptable);
			sort_out_stored(b, refs, n, stored);
			pfree(stored);
		}
		else
			SPI_freetuptable(SPI_tuptable);
	}

	if (b->rejected > 0)
	{
		Datum	   *rseq = palloc_extended(sizeof(Datum) * b->rejected, MCXT_ALLOC_HUGE);
		Datum	   *rid = palloc_extended(sizeof(Datum) * b->rejected, MCXT_ALLOC_HUGE);
		int64		m = 0;

		for (i = 0; i < b->nevents; i++)
			if (b->events[i].rejected)
			{
				rseq[m] = Int64GetDatum(b->events[i].seq);
				rid[m] = UUIDPGetDatum(&b->events[i].id);
				m++;
			}
		args[0] = make_array(rseq, NULL, m, INT8OID);
		args[1] = make_array(rid, NULL, m, UUIDOID);
		execute(b, ST_DELETE_REPEATED, args, SPI_OK_DELETE);
	}
	pfree(refs);
}

/* ---- step 4: stored state and the fold ---- */

/*
 * read_stored
 *		cdp_stream callback for ST_STORED: the stored membership of a key.
 */
static void
read_stored(TupleTableSlot *slot, void *arg)
{
	SegBatch   *b = arg;
	SegKeyId	k;
	SegKeyEntry *e;
	SegState   *s;

	slot_getallattrs(slot);
	k.vendor = DatumGetInt32(slot->tts_values[0]);
	k.segment = text_arg(slot->tts_values[1], &k.seglen);
	k.user = text_arg(slot->tts_values[2], &k.userlen);
	e = segkeys_lookup(b->keys, k);
	if (e == NULL)
		elog(ERROR, "stored membership of a key not in the batch");
	s = &b->states[e->idx];
	s->stored = true;
	s->known = true;
	s->has_first = !slot->tts_isnull[3];
	if (s->has_first)
		s->first = DatumGetTimestampTz(slot->tts_values[3]);
	s->last = DatumGetTimestampTz(slot->tts_values[4]);
	s->member = DatumGetBool(slot->tts_values[5]);
	if (!slot->tts_isnull[6])
	{
		int			len;
		const char *v = text_arg(slot->tts_values[6], &len);
		MemoryContext old = MemoryContextSwitchTo(b->cxt);

		s->value = arena_strdup(&b->arena, v, len);
		s->valuelen = len;
		MemoryContextSwitchTo(old);
		/* (a value of unknown origin counts as older than any event) */
		s->has_value_seq = !slot->tts_isnull[10];
		if (s->has_value_seq)
			s->value_seq = DatumGetInt64(slot->tts_values[10]);
	}
	s->last_event = *DatumGetUUIDP(slot->tts_values[7]);
	s->last_time = DatumGetTimestampTz(slot->tts_values[8]);
	s->last_seq = DatumGetInt64(slot->tts_values[9]);
}

/*
 * fold
 *		Apply the accepted events to their keys in arrival order, which is
 *		seq order.  An event is a toggle if its key has a previous event, the
 *		status changes, and the key had been added before (so a first add,
 *		repeated adds or removes, and the first add after a key's initial
 *		removes are not).  Instants are compared, never texts.
 *
 *		An event whose seq is below that of the key's last event is late: a
 *		concurrent writer that took its seq later locked the key first (or
 *		the row was written with an explicit seq).  In arrival order it came
 *		before that last event, which decides the status, so it changes
 *		neither the status nor the last event and toggles nothing; first and
 *		last take it in (they do not depend on order), and so does the value
 *		when no later add carried one.  (TRUNCATE ... RESTART IDENTITY sets
 *		the stored seqs back to 0: see _segment_events_truncated.)
 */
static void
fold(SegBatch *b)
{
	int64		i;

	b->toggles = palloc_extended(sizeof(int64) * Max(b->nevents, 1), MCXT_ALLOC_HUGE);
	b->toggle_prev = palloc_extended(sizeof(pg_uuid_t) * Max(b->nevents, 1), MCXT_ALLOC_HUGE);
	b->toggle_prev_time = palloc_extended(sizeof(TimestampTz) * Max(b->nevents, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < b->nevents; i++)
	{
		SegEvent   *ev = &b->events[i];
		SegState   *s = &b->states[ev->key];
		bool		member = !ev->remove;
		bool		late;

		if (ev->rejected || ev->loaded)
			continue;
		late = s->known && ev->seq < s->last_seq;
		if (late)
			b->late++;
		if (!late && s->known && s->member != member && s->has_first)
		{
			b->toggles[b->ntoggles] = i;
			b->toggle_prev[b->ntoggles] = s->last_event;
			b->toggle_prev_time[b->ntoggles] = s->last_time;
			b->ntoggles++;
		}
		if (member)
		{
			if (!s->has_first || ev->time < s->first)
				s->first = ev->time;
			s->has_first = true;
			if (ev->value && (!late || !s->has_value_seq || ev->seq > s->value_seq))
			{
				s->value = ev->value;
				s->valuelen = ev->valuelen;
				s->value_seq = ev->seq;
				s->has_value_seq = true;
			}
		}
		if (!s->known || ev->time > s->last)
			s->last = ev->time;
		if (!late)
		{
			s->member = member;
			s->last_event = ev->id;
			s->last_time = ev->time;
			s->last_seq = ev->seq;
		}
		s->known = true;
		s->changed = true;
	}
}

/* ---- step 5: writes ---- */

/*
 * write_toggles
 *		Append the toggles, in arrival order.
 */
static void
write_toggles(SegBatch *b)
{
	int64		n = b->ntoggles;
	Datum	   *d[9];
	bool	   *valnull = palloc(sizeof(bool) * n);
	Datum		args[9];
	int64		i;
	int			c;

	if (n == 0)
		return;
	for (c = 0; c < 9; c++)
		d[c] = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	for (i = 0; i < n; i++)
	{
		SegEvent   *ev = &b->events[b->toggles[i]];
		SegKeyId   *k = &b->states[ev->key].id;

		d[0][i] = Int32GetDatum(k->vendor);
		d[1][i] = text_datum(k->segment, k->seglen);
		d[2][i] = text_datum(k->user, k->userlen);
		d[3][i] = BoolGetDatum(!ev->remove);
		d[4][i] = UUIDPGetDatum(&ev->id);
		d[5][i] = TimestampTzGetDatum(ev->time);
		valnull[i] = ev->value == NULL;
		d[6][i] = valnull[i] ? (Datum) 0 : text_datum(ev->value, ev->valuelen);
		d[7][i] = UUIDPGetDatum(&b->toggle_prev[i]);
		d[8][i] = TimestampTzGetDatum(b->toggle_prev_time[i]);
	}
	args[0] = make_array(d[0], NULL, n, INT4OID);
	args[1] = make_array(d[1], NULL, n, TEXTOID);
	args[2] = make_array(d[2], NULL, n, TEXTOID);
	args[3] = make_array(d[3], NULL, n, BOOLOID);
	args[4] = make_array(d[4], NULL, n, UUIDOID);
	args[5] = make_array(d[5], NULL, n, TIMESTAMPTZOID);
	args[6] = make_array(d[6], valnull, n, TEXTOID);
	args[7] = make_array(d[7], NULL, n, UUIDOID);
	args[8] = make_array(d[8], NULL, n, TIMESTAMPTZOID);
	execute(b, ST_TOGGLES, args, SPI_OK_INSERT);
}

/* Byte order of two strings, as the "C" collation orders text. */
static inline int
cmp_bytes(const char *a, int alen, const char *b, int blen)
{
	int			r = memcmp(a, b, Min(alen, blen));

	return r != 0 ? r : (alen > blen) - (alen < blen);
}

/* Keys in the order of the memberships' primary key (vendor, segment, user). */
static inline int
cmp_key_order(SegBatch *b, int i, int j)
{
	const SegKeyId *x = &b->states[i].id;
	const SegKeyId *y = &b->states[j].id;
	int			r;

	if (x->vendor != y->vendor)
		return x->vendor < y->vendor ? -1 : 1;
	r = cmp_bytes(x->segment, x->seglen, y->segment, y->seglen);
	return r != 0 ? r : cmp_bytes(x->user, x->userlen, y->user, y->userlen);
}

#define ST_SORT			sort_by_key
#define ST_ELEMENT_TYPE	int
#define ST_COMPARE_ARG_TYPE	SegBatch
#define ST_COMPARE(a, b, arg)	cmp_key_order(arg, *(a), *(b))
#define ST_SCOPE		static
#define ST_DEFINE
#include "lib/sort_template.h"

/* Segment entries of a profile are sorted by (name, vendor). */
static inline int
cmp_name_vendor(const char *an, int anlen, int32 av, const char *bn, int bnlen, int32 bv)
{
	int			r = cmp_bytes(an, anlen, bn, bnlen);

	if (r != 0)
		return r;
	return (av > bv) - (av < bv);
}

/* Keys by user, then in profile order. */
static inline int
cmp_profile_order(SegBatch *b, int i, int j)
{
	const SegKeyId *x = &b->states[i].id;
	const SegKeyId *y = &b->states[j].id;
	int			r = cmp_bytes(x->user, x->userlen, y->user, y->userlen);

	return r != 0 ? r : cmp_name_vendor(x->segment, x->seglen, x->vendor,
										y->segment, y->seglen, y->vendor);
}

#define ST_SORT			sort_by_profile
#define ST_ELEMENT_TYPE	int
#define ST_COMPARE_ARG_TYPE	SegBatch
#define ST_COMPARE(a, b, arg)	cmp_profile_order(arg, *(a), *(b))
#define ST_SCOPE		static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * write_memberships
 *		Update the stored memberships that changed, insert the new ones (in
 *		key order: ordered index insertion is much faster than random).
 *
 *		A new key is one the stored memberships did not hold when read, after
 *		its lock was taken: under READ COMMITTED no other writer can have
 *		inserted it since (a plain insert).  Under a transaction snapshot
 *		(REPEATABLE READ), another writer may have inserted it and committed
 *		after the snapshot was taken: the insert, with ON CONFLICT DO
 *		NOTHING, then fails with a serialization failure, which retry loops
 *		handle, instead of a unique violation on segment_memberships, which
 *		they do not; a key skipped otherwise is one too, never a membership
 *		lost.
 */
static void
write_memberships(SegBatch *b, bool stored)
{
	int		   *idx = palloc(sizeof(int) * Max(b->nstates, 1));
	int			n = 0;
	int			i;
	Datum	   *d[8];
	bool	   *firstnull;
	bool	   *valnull;
	bool	   *seqnull;
	Datum		args[11];
	int			c;

	for (i = 0; i < b->nstates; i++)
		if (b->states[i].changed && b->states[i].stored == stored)
			idx[n++] = i;
	if (n == 0)
		return;
	sort_by_key(idx, n, b);

	key_arrays(b, idx, n, args);
	for (c = 0; c < 8; c++)
		d[c] = palloc(sizeof(Datum) * n);
	firstnull = palloc(sizeof(bool) * n);
	valnull = palloc(sizeof(bool) * n);
	seqnull = palloc(sizeof(bool) * n);
	for (i = 0; i < n; i++)
	{
		SegState   *s = &b->states[idx[i]];

		firstnull[i] = !s->has_first;
		d[0][i] = s->has_first ? TimestampTzGetDatum(s->first) : (Datum) 0;
		d[1][i] = TimestampTzGetDatum(s->last);
		d[2][i] = BoolGetDatum(s->member);
		valnull[i] = s->value == NULL;
		d[3][i] = valnull[i] ? (Datum) 0 : text_datum(s->value, s->valuelen);
		d[4][i] = UUIDPGetDatum(&s->last_event);
		d[5][i] = TimestampTzGetDatum(s->last_time);
		d[6][i] = Int64GetDatum(s->last_seq);
		seqnull[i] = !s->has_value_seq;
		d[7][i] = seqnull[i] ? (Datum) 0 : Int64GetDatum(s->value_seq);
	}
	args[3] = make_array(d[0], firstnull, n, TIMESTAMPTZOID);
	args[4] = make_array(d[1], NULL, n, TIMESTAMPTZOID);
	args[5] = make_array(d[2], NULL, n, BOOLOID);
	args[6] = make_array(d[3], valnull, n, TEXTOID);
	args[7] = make_array(d[4], NULL, n, UUIDOID);
	args[8] = make_array(d[5], NULL, n, TIMESTAMPTZOID);
	args[9] = make_array(d[6], NULL, n, INT8OID);
	args[10] = make_array(d[7], seqnull, n, INT8OID);
	if (stored)
		execute(b, ST_UPDATE, args, SPI_OK_UPDATE);
	else if (!IsolationUsesXactSnapshot())
		execute(b, ST_INSERT, args, SPI_OK_INSERT);
	else if (execute(b, ST_INSERT_CHECKED, args, SPI_OK_INSERT) < (uint64) n)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to a concurrent segment event of the same key"),
				 errdetail("Another transaction wrote a membership of this batch after it read the stored ones."),
				 errhint("Retry the transaction.")));
}

/* ---- profiles ---- */

/* Push an object key onto a jsonb being built. */
static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &v);
}

/* Push a key and its string value (len bytes) onto a jsonb being built. */
static void
push_string(JsonbParseState **state, const char *key, const char *s, int len)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* an instant as cdp_traits.rfc3339 writes it: 2021-03-19T17:32:26Z */
static void
push_time(JsonbParseState **state, const char *key, TimestampTz t)
{
	char	   *buf = palloc(RFC3339_MAXLEN + 1);	/* the value points to it */
	int			len = cdp_format_rfc3339(t, buf);

	push_string(state, key, buf, len);
}

/*
 * push_membership
 *		A profile entry: {"segment": {"vendor", "name"}, "first", "last",
 *		"member", "value"}, first and value only when set.
 */
static void
push_membership(JsonbParseState **state, const SegState *s)
{
	JsonbValue	v;

	pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	push_key(state, "segment");
	pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	push_key(state, "vendor");
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(s->id.vendor);
	pushJsonbValue(state, WJB_VALUE, &v);
	push_string(state, "name", s->id.segment, s->id.seglen);
	pushJsonbValue(state, WJB_END_OBJECT, NULL);
	if (s->has_first)
		push_time(state, "first", s->first);
	push_time(state, "last", s->last);
	push_key(state, "member");
	v.type = jbvBool;
	v.val.boolean = s->member;
	pushJsonbValue(state, WJB_VALUE, &v);
	if (s->value)
		push_string(state, "value", s->value, s->valuelen);
	pushJsonbValue(state, WJB_END_OBJECT, NULL);
}

/*
 * profile_damaged
 *		A stored profile is not what the trigger writes: say how to repair it.
 */
static void profile_damaged(const char *user) pg_attribute_noreturn();

static void
profile_damaged(const char *user)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("segment profile of user \"%s\" is damaged", user),
			 errhint("Rebuild the profiles from the memberships with cdp_traits.rebuild_segment_profiles().")));
}

/* The (name, vendor) of a profile entry. */
typedef struct EntryKey
{
	const char *name;
	int			namelen;
	int32		vendor;
} EntryKey;

/*
 * entry_key
 *		The segment name and vendor of an entry of a profile.
 */
static void
entry_key(JsonbValue *elem, const char *user, EntryKey *key)
{
	JsonbValue	seg,
				v;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data) ||
		!getKeyJsonValueFromContainer(elem->val.binary.data, "segment", 7, &seg) ||
		seg.type != jbvBinary ||
		!getKeyJsonValueFromContainer(seg.val.binary.data, "name", 4, &v) || v.type != jbvString)
		profile_damaged(user);
	key->name = v.val.string.val;
	key->namelen = v.val.string.len;
	if (!getKeyJsonValueFromContainer(seg.val.binary.data, "vendor", 6, &v) ||
		v.type != jbvNumeric)
		profile_damaged(user);
	key->vendor = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
}

/*
 * Profiles are written as changes: for each user of the batch, the entries
 * of the keys whose memberships changed, sorted by (name, vendor) as a
 * profile is.  The INSERT makes a new user's profile of them; for a stored
 * one, ON CONFLICT merges them into the profile (_profile_merge) under the
 * row's lock, as it is when the lock is granted.  Reading the profile first
 * and writing it back whole would lose the changes of a concurrent writer:
 * writers of different segments of one user hold different key locks, so
 * only the profile row orders them.
 */
typedef struct ProfileWriter
{
	SegBatch   *b;
	MemoryContext cxt;			/* the batch's */
	MemoryContext usercxt;		/* reset per user */
	int		   *idx;			/* changed keys in user, name, vendor order */
	int			n;
	int			pos;			/* next key to write */
	Datum	   *users;
	Datum	   *profiles;
	int			nprofiles;
} ProfileWriter;

/*
 * build_changes
 *		The entries of the keys idx[pos...] of one user, in profile order.
 */
static void
build_changes(ProfileWriter *pw)
{
	SegBatch   *b = pw->b;
	const SegKeyId *first = &b->states[pw->idx[pw->pos]].id;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	MemoryContext old = MemoryContextSwitchTo(pw->usercxt);

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	while (pw->pos < pw->n &&
		   cmp_bytes(b->states[pw->idx[pw->pos]].id.user, b->states[pw->idx[pw->pos]].id.userlen,
					 first->user, first->userlen) == 0)
		push_membership(&state, &b->states[pw->idx[pw->pos++]]);
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);

	/* the result in the batch's context; the parse state goes */
	MemoryContextSwitchTo(pw->cxt);
	pw->users[pw->nprofiles] = text_datum(first->user, first->userlen);
	pw->profiles[pw->nprofiles] = JsonbPGetDatum(JsonbValueToJsonb(res));
	pw->nprofiles++;
	MemoryContextSwitchTo(old);
	MemoryContextReset(pw->usercxt);
}

/*
 * write_profiles
 *		Update the profiles of the users whose memberships changed.
 */
static void
write_profiles(SegBatch *b)
{
	ProfileWriter pw;
	int			i;
	Datum		args[2];

	memset(&pw, 0, sizeof(pw));
	pw.b = b;
	pw.idx = palloc(sizeof(int) * Max(b->nstates, 1));
	for (i = 0; i < b->nstates; i++)
		if (b->states[i].changed)
			pw.idx[pw.n++] = i;
	if (pw.n == 0)
		return;
	sort_by_profile(pw.idx, pw.n, b);

	pw.users = palloc(sizeof(Datum) * pw.n);
	pw.profiles = palloc(sizeof(Datum) * pw.n);
	pw.cxt = CurrentMemoryContext;
	pw.usercxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits profile",
									   ALLOCSET_DEFAULT_SIZES);
	while (pw.pos < pw.n)
		build_changes(&pw);
	MemoryContextDelete(pw.usercxt);

	args[0] = make_array(pw.users, NULL, pw.nprofiles, TEXTOID);
	args[1] = make_array(pw.profiles, NULL, pw.nprofiles, JSONBOID);
	execute(b, ST_PROFILES, args, SPI_OK_INSERT);
}

/*
 * profile_array
 *		The elements of a stored profile or of changes (a JSON array).
 */
static JsonbValue *
profile_array(Jsonb *j, const char *user, int *n)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *elems;
	int			cap;

	if (!JB_ROOT_IS_ARRAY(j) || JB_ROOT_IS_SCALAR(j))
		profile_damaged(user);
	cap = Max(JB_ROOT_COUNT(j), 1);
	elems = palloc(sizeof(JsonbValue) * cap);
	*n = 0;
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
			elems[(*n)++] = v;
	return elems;
}

/*
 * cdp_profile_merge
 *		SQL-callable _profile_merge(user text, stored jsonb, changes jsonb):
 *		the stored profile with the entries of changes replacing those of
 *		the same (name, vendor) and the others added.  Both are sorted by
 *		(name, vendor), so this is a merge, and so is the result; each
 *		entry's key is read once.
 */
Datum
cdp_profile_merge(PG_FUNCTION_ARGS)
{
	char	   *user = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *stored = PG_GETARG_JSONB_P(1);
	Jsonb	   *changes = PG_GETARG_JSONB_P(2);
	JsonbValue *a,
			   *c;
	int			na,
				nc,
				i = 0,
				k = 0;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	EntryKey	ak,
				ck;
	int			ak_of = -1,		/* the element ak is the key of */
				ck_of = -1;

	a = profile_array(stored, user, &na);
	c = profile_array(changes, user, &nc);
	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	while (i < na || k < nc)
	{
		int			r;

		if (i >= na)
			r = 1;
		else if (k >= nc)
			r = -1;
		else
		{
			if (ak_of != i)
				entry_key(&a[ak_of = i], user, &ak);
			if (ck_of != k)
				entry_key(&c[ck_of = k], user, &ck);
			r = cmp_name_vendor(ak.name, ak.namelen, ak.vendor, ck.name, ck.namelen, ck.vendor);
		}
		if (r < 0)
			pushJsonbValue(&state, WJB_ELEM, &a[i++]);
		else
		{
			if (r == 0)
				i++;
			pushJsonbValue(&state, WJB_ELEM, &c[k++]);
		}
	}
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

/* Run one phase of the trigger, timed at DEBUG2. */
#define PHASE(what, code) \
	do { \
		instr_time	phase_start, \
					phase_time; \
		INSTR_TIME_SET_CURRENT(phase_start); \
		code; \
		INSTR_TIME_SET_CURRENT(phase_time); \
		INSTR_TIME_SUBTRACT(phase_time, phase_start); \
		elog(DEBUG2, "cdp_traits: segments: %s: %.1f ms", what, \
			 INSTR_TIME_GET_MILLISEC(phase_time)); \
	} while (0)

/*
 * segment_statement
 *		Apply the events of one INSERT into segment_events, given as its
 *		trigger data with the NEW transition table cdp_new_segment_events.
 */
static void
segment_statement(TriggerData *td)
{
	int64		nrows;
	CdpExecState es;
	SegBatch	b;
	MemoryContext old;
	Datum		args[3];
	int		   *all;
	int			i;
	instr_time	start,
				duration;

	nrows = tuplestore_tuple_count(td->tg_newtable);
	if (nrows == 0)
		return;
	/*
	 * pg_restore loading a dump (cdp_loaded_by_restore): every row it loads
	 * is an accepted event of the dump, already folded into the memberships,
	 * profiles and toggles the dump holds, and its id is in the dump's
	 * segment_event_ids.  A parallel restore loads those tables in any
	 * order, so step 3's check (an id stored with its own seq) cannot tell
	 * such a row from a new event: the ids may come later.
	 */
	if (cdp_loaded_by_restore())
	{
		elog(DEBUG1, "cdp_traits: segments: " INT64_FORMAT " events loaded by pg_restore, kept as they are",
			 nrows);
		return;
	}
	INSTR_TIME_SET_CURRENT(start);

	memset(&b, 0, sizeof(b));
	b.small = nrows <= cdp_max_segment_locks;
	b.cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits segments trigger",
								  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(b.cxt);
	b.arena.cxt = b.cxt;
	b.keys = segkeys_create(b.cxt, Min(nrows, 1024 * 1024), NULL);
	b.maxstates = 1024;
	b.states = MemoryContextAllocHuge(b.cxt, sizeof(SegState) * b.maxstates);
	b.maxevents = Max(nrows, 16);
	b.events = MemoryContextAllocHuge(b.cxt, sizeof(SegEvent) * b.maxevents);
	b.in_order = true;

	cdp_exec_begin(&es);
	if (b.small)
	{
		/*
		 * The kept plans must stay right as the tables grow (a plan made
		 * while memberships was empty would scan it whole for every event
		 * until the next ANALYZE): index probes only.
		 */
		(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");

	/* 1. the batch */
	PHASE("reading the batch", {
		stream(&b, ST_READ, NULL, read_event, &b);
		if (!b.in_order)
			qsort(b.events, b.nevents, sizeof(SegEvent), cmp_event_seq);
	});

	/* 2. locks */
	lock_batch(&b);

	/* 3. ids */
	PHASE("ids", keep_ids(&b));

	/* 4. stored state of the keys, then the fold */
	all = palloc(sizeof(int) * Max(b.nstates, 1));
	for (i = 0; i < b.nstates; i++)
		all[i] = i;
	PHASE("stored", {
		key_arrays(&b, all, b.nstates, args);
		stream(&b, ST_STORED, param_list(args, statements[ST_STORED].argtypes, 3), read_stored, &b);
	});
	PHASE("fold", fold(&b));

	/* 5. writes */
	PHASE("toggles", write_toggles(&b));
	PHASE("memberships", {
		write_memberships(&b, true);
		write_memberships(&b, false);
	});
	PHASE("profiles", write_profiles(&b));

	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	elog(DEBUG1, "cdp_traits: segments: " INT64_FORMAT " events, " INT64_FORMAT
		 " repeated ids, " INT64_FORMAT " loaded again, " INT64_FORMAT " late, %d keys, "
		 INT64_FORMAT " toggles in %.1f ms, %zu kB of memory",
		 b.nevents, b.rejected, b.loaded, b.late, b.nstates, b.ntoggles, INSTR_TIME_GET_MILLISEC(duration),
		 MemoryContextMemAllocated(b.cxt, true) / 1024);

	SPI_finish();
	cdp_exec_end(&es);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(b.cxt);
}

/*
 * whether the trigger is not the one to apply events in this session: the
 * replica trigger applies them in replica sessions only, the statement
 * trigger everywhere else
 */
#define not_this_session(td) cdp_trigger_not_this_session(td, SEGMENT_REPLICA_TRIGGER)

/*
 * cdp_segment_events_insert
 *		AFTER INSERT FOR EACH STATEMENT trigger on segment_events, with the
 *		NEW transition table cdp_new_segment_events.
 */
Datum
cdp_segment_events_insert(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_segment_events_insert() must be fired AFTER INSERT FOR EACH STATEMENT")));
	if (td->tg_trigger->tgnewtable == NULL ||
		strcmp(td->tg_trigger->tgnewtable, SEGMENT_NEW_TABLE) != 0 || td->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trigger \"%s\" must have the transition table NEW TABLE AS %s",
						td->tg_trigger->tgname, SEGMENT_NEW_TABLE)));
	if (!not_this_session(td))
		segment_statement(td);
	return PointerGetDatum(NULL);
}

/*
 * cdp_segment_event_row
 *		AFTER INSERT FOR EACH ROW trigger on segment_events, enabled for
 *		replica sessions only (ENABLE REPLICA TRIGGER): logical
 *		replication's apply worker runs as one and fires row triggers only,
 *		one row at a time.  Each row is applied as an INSERT of that one row
 *		would be.
 */
Datum
cdp_segment_event_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TriggerData stmt;
	Trigger		trig;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_segment_event_row() must be fired AFTER INSERT FOR EACH ROW")));
	if (not_this_session(td))
		return PointerGetDatum(NULL);

	/* the statement of this row: AFTER INSERT, its one-row NEW table */
	cdp_row_as_statement(td, SEGMENT_NEW_TABLE, NULL, &stmt, &trig);
	segment_statement(&stmt);
	cdp_row_statement_end(&stmt);
	return PointerGetDatum(NULL);
}

/* ---- the segment locks, for the SQL functions ---- */

/*
 * cdp_toggles_writer
 *		BEFORE INSERT FOR EACH STATEMENT trigger on segment_toggles: hold the
 *		toggle log lock shared until commit (toggles_since() waits for the
 *		writers holding it).  A trigger function: SQL cannot call it.
 */
Datum
cdp_toggles_writer(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_toggles_writer() must be fired BEFORE ... FOR EACH STATEMENT")));
	lock_pair(SEGMENT_LOCKS, TOGGLE_LOG_LOCK, ShareLock);
	return PointerGetDatum(NULL);
}

/*
 * cdp_toggles_wait
 *		For toggles_since(): wait until the transactions writing toggles at
 *		this moment have ended, as CREATE INDEX CONCURRENTLY waits for the
 *		holders of a lock: for each transaction holding the toggle log lock
 *		now, until it ends.  It requests no lock on the log, so writers that
 *		start meanwhile are not queued behind the reader (an exclusive
 *		request would make every later writer wait for it, and so for the
 *		longest transaction writing toggles).
 */
Datum
cdp_toggles_wait(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag;

	lock_tag(&tag, SEGMENT_LOCKS, TOGGLE_LOG_LOCK);
	WaitForLockers(tag, ExclusiveLock, false);
	PG_RETURN_VOID();
}

/*
 * cdp_segments_lock_exclusive
 *		For rebuild_segment_profiles(): take the segments lock exclusively
 *		until the end of the transaction, so that no segment events are
 *		written meanwhile.
 */
Datum
cdp_segments_lock_exclusive(PG_FUNCTION_ARGS)
{
	lock_pair(SEGMENT_LOCKS, SEGMENTS_LOCK, ExclusiveLock);
	PG_RETURN_VOID();
}
