/*-------------------------------------------------------------------------
 *
 * stitch_apply.c
 *		Stitching one batch of events incrementally: locking, looking up the
 *		entities of the batch's identifiers, union-find, merges, and writing
 *		the changes with a handful of set-based statements.
 *
 * Concurrency.  Every stitching writer first takes the global stitching lock
 * (shared for ordinary batches, exclusive for bulk batches, restitch and
 * truncate).  An ordinary batch then locks each of its identifiers, in a
 * fixed (sorted) order, so that two transactions bringing the same new
 * identifier are serialized; then it looks the identifiers up and locks the
 * entities found, again sorted.  If a concurrent merge or split committed in
 * between, the lookup is repeated after releasing the entity locks, so that
 * locks are never waited for out of order within a statement.  Under READ
 * COMMITTED each lookup sees what committed before it.  A batch with more
 * identifiers than cdp_traits.max_identifier_locks takes the global lock
 * exclusively instead, so that bulk loads never fill the lock table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "portability/instr_time.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "cdp_traits.h"
#include "stitch.h"

static int	lock_keys(uint64 *keys, int n, uint16 kind);

/*
 * set_tag
 *		The advisory lock tag of a key of some kind in this database.
 */
static void
set_tag(LOCKTAG *tag, uint16 kind, uint64 key)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32),
						 (uint32) key, kind);
}

/*
 * The condition under which the marking of an entity row (alias c) --
 * calculated = NULL, modified = now() -- updates it: unless this
 * transaction wrote it with these very values already.  Such an update
 * would change nothing, and each new version of a row lengthens the chain
 * that every later look-up of it in this transaction walks (a
 * subscription's apply worker stitches a large remote transaction row by
 * row, marking the same entities over and over).
 */
#define NOT_MARKED_YET(c) \
	"(" c ".calculated IS NOT NULL OR " c ".modified <> pg_catalog.now() " \
	"OR " c ".xmin <> pg_catalog.pg_current_xact_id()::xid)"

/*
 * The key locks (identifiers, entities, event ids) this backend's current
 * transaction took.  They are held until it ends, so a transaction of many
 * small statements -- a loop of single inserts, or a subscription's apply
 * worker stitching a large remote transaction row by row -- would
 * accumulate them until the shared lock table ran out ("out of shared
 * memory").  Past cdp_traits.max_identifier_locks in one transaction, a
 * batch takes the stitching lock exclusively instead, as a large batch
 * does, and so does every later one of that transaction (the count never
 * falls back).
 */
static LocalTransactionId keys_lxid = InvalidLocalTransactionId;
static int64 keys_taken = 0;

/*
 * keys_held
 *		The key locks counted for the current transaction.
 */
static int64
keys_held(void)
{
	if (keys_lxid != MyProc->lxid)
	{
		keys_lxid = MyProc->lxid;
		keys_taken = 0;
	}
	return keys_taken;
}

/*
 * over_lock_budget
 *		Whether n more key locks would take the transaction past its budget
 *		(see keys_taken): the batch is then stitched under the exclusive
 *		stitching lock.
 */
static bool
over_lock_budget(int64 n)
{
	return keys_held() + n > cdp_max_identifier_locks;
}

/*
 * stitch_lock_global
 *		Take the global stitching lock, until the end of the transaction.
 */
void
stitch_lock_global(bool exclusive)
{
	LOCKTAG		tag;

	set_tag(&tag, CDP_LOCK_STITCH_GLOBAL, 0);
	(void) LockAcquire(&tag, exclusive ? ExclusiveLock : ShareLock, false, false);
}

/*
 * stitch_lock_events
 *		For an events table whose ids no unique index guards: serialize
 *		writers of the same event id, so that a duplicate from a concurrent
 *		transaction is seen (and reported) once that transaction commits.
 *		Large batches take the stitching lock exclusively instead.
 */
void
stitch_lock_events(StitchGraph *g)
{
	int			n = graph_nevents(g);
	uint64	   *keys;
	int			i;

	/*
	 * Take the global lock in the mode stitch_batch will want for the same
	 * batch: asking for it exclusively later, while holding it shared, could
	 * deadlock with another writer doing the same.
	 */
	if (over_lock_budget((int64) n + graph_nidents(g)))
	{
		stitch_lock_global(true);
		return;
	}
	keys = palloc(sizeof(uint64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		const char *id = graph_event_id(g, i);

		keys[i] = hash_bytes_extended((const unsigned char *) id, strlen(id), 0);
	}
	stitch_lock_global(false);
	(void) lock_keys(keys, n, CDP_LOCK_STITCH_EVENT);
}

/*
 * cmp_uint64
 *		qsort comparator for lock keys.
 */
static int
cmp_uint64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * lock_keys
 *		Sort and de-duplicate keys, then lock each exclusively in order.
 *		Returns the number of distinct keys (now at the front of keys).
 */
static int
lock_keys(uint64 *keys, int n, uint16 kind)
{
	int			i,
				m = 0;
	LOCKTAG		tag;

	qsort(keys, n, sizeof(uint64), cmp_uint64);
	for (i = 0; i < n; i++)
	{
		if (m > 0 && keys[m - 1] == keys[i])
			continue;
		keys[m++] = keys[i];
	}
	for (i = 0; i < m; i++)
	{
		set_tag(&tag, kind, keys[i]);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	(void) keys_held();
	keys_taken += m;
	return m;
}

/*
 * unlock_keys
 *		Release locks taken by lock_keys (before commit: only when nothing
 *		was written under them).
 */
static void
unlock_keys(uint64 *keys, int n, uint16 kind)
{
	int			i;
	LOCKTAG		tag;

	for (i = 0; i < n; i++)
	{
		set_tag(&tag, kind, keys[i]);
		(void) LockRelease(&tag, ExclusiveLock, false);
	}
}

/*
 * entity_key
 *		Lock key of an entity.
 */
static uint64
entity_key(const pg_uuid_t *u)
{
	return hash_bytes_extended(u->data, UUID_LEN, 0);
}

/*
 * cdp_random_uuid
 *		A new random (version 4) uuid for a new entity.
 */
void
cdp_random_uuid(pg_uuid_t *uuid)
{
	cdp_random_uuids(uuid, 1);
}

/*
 * cdp_random_uuids
 *		n new random uuids, from one call of the random source (a call per
 *		uuid costs about a microsecond: a restitch from scratch creates
 *		hundreds of thousands).
 */
void
cdp_random_uuids(pg_uuid_t *uuids, int n)
{
	int			i;

	/* (pg_strong_random takes a size_t; chunks keep each request moderate) */
	for (i = 0; i < n; i += 4096)
		if (!pg_strong_random(uuids[i].data, (size_t) UUID_LEN * Min(4096, n - i)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random entity id")));
	for (i = 0; i < n; i++)
	{
		uuids[i].data[6] = (uuids[i].data[6] & 0x0f) | 0x40;
		uuids[i].data[8] = (uuids[i].data[8] & 0x3f) | 0x80;
	}
}

/*
 * uuid_cmp_internal
 *		Byte order of two uuids (the order of the uuid type).
 */
int
uuid_cmp_internal(const pg_uuid_t *a, const pg_uuid_t *b)
{
	return memcmp(a->data, b->data, UUID_LEN);
}

/*
 * cdp_text_array / cdp_uuid_array
 *		SQL arrays built from C values, for statement parameters.
 */
Datum
cdp_text_array(const char **vals, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(vals[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

Datum
cdp_uuid_array(const pg_uuid_t *vals, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = UUIDPGetDatum(&vals[i]);
	return PointerGetDatum(construct_array(d, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}

/*
 * plan
 *		A statement of this file, prepared once per backend.  They read and
 *		write the stitching tables by key (arrays of keys from the events of
 *		a statement), so their plans are index probes (stitch_probe_plan).
 */
static SPIPlanPtr
plan(const char *key, const char *sql, int nargs, Oid t1, Oid t2, Oid t3)
{
	Oid			types[3] = {t1, t2, t3};

	return stitch_probe_plan(key, sql, nargs, types);
}

/*
 * stitch_remove_entities
 *		Delete entities (their attributes go with them, by foreign key).
 */
static void
remove_entities(const pg_uuid_t *ids, int n)
{
	Datum		args[1];

	if (n == 0)
		return;
	args[0] = cdp_uuid_array(ids, n);
	cdp_execute(plan("remove_entities",
					 "DELETE FROM cdp_traits.customer_entities WHERE id = ANY ($1)",
					 1, UUIDARRAYOID, 0, 0),
				args, NULL, SPI_OK_DELETE, "removing entities");
}

/*
 * write_merges
 *		Relabel everything of the absorbed entities with their survivor,
 *		record the merges, and remove the absorbed entities.
 */
static void
write_merges(const pg_uuid_t *merged, const pg_uuid_t *into, int n)
{
	Datum		args[2];

	if (n == 0)
		return;
	args[0] = cdp_uuid_array(merged, n);
	args[1] = cdp_uuid_array(into, n);
	cdp_execute(plan("merge_matching",
					 "UPDATE cdp_traits.matching m SET customer_entity_id = g.into_id "
					 "FROM unnest($1, $2) g(merged_id, into_id) "
					 "WHERE m.customer_entity_id = g.merged_id",
					 2, UUIDARRAYOID, UUIDARRAYOID, 0),
				args, NULL, SPI_OK_UPDATE, "merging identifiers");
	cdp_execute(plan("merge_events",
					 "UPDATE cdp_traits.event_entities e SET customer_entity_id = g.into_id "
					 "FROM unnest($1, $2) g(merged_id, into_id) "
					 "WHERE e.customer_entity_id = g.merged_id",
					 2, UUIDARRAYOID, UUIDARRAYOID, 0),
				args, NULL, SPI_OK_UPDATE, "merging events");
	cdp_execute(plan("merge_record",
					 "INSERT INTO cdp_traits.entity_merges (merged_id, into_id, merged_at) "
					 "SELECT g.merged_id, g.into_id, pg_catalog.now() "
					 "FROM unnest($1, $2) g(merged_id, into_id) "
					 "ON CONFLICT (merged_id) DO UPDATE SET into_id = EXCLUDED.into_id, "
					 "merged_at = EXCLUDED.merged_at",
					 2, UUIDARRAYOID, UUIDARRAYOID, 0),
				args, NULL, SPI_OK_INSERT, "recording merges");
	remove_entities(merged, n);
}

/* Rows per table_multi_insert call. */
#define INSERT_BATCH 1000

/* Fills one row to insert: values/nulls in the order of the column names. */
typedef void (*RowFill) (int row, Datum *values, bool *nulls, void *arg);

/*
 * direct_columns
 *		Map the columns of rel to the expected (name, type) list: map[attr] =
 *		index into names, -1 for a dropped column.  False if the table is not
 *		exactly these columns, or has anything a plain heap insert would skip
 *		(insert triggers, rules, row security, check constraints, generated
 *		columns).
 */
static bool
direct_columns(Relation rel, const char **names, const Oid *types, int ncols, int *map)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			seen = 0;
	int			i,
				k;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rules != NULL ||
		rel->rd_rel->relrowsecurity)
		return false;
	/* (triggers on delete, such as those of foreign keys to it, do not matter) */
	if (rel->trigdesc &&
		(rel->trigdesc->trig_insert_before_row || rel->trigdesc->trig_insert_after_row ||
		 rel->trigdesc->trig_insert_instead_row || rel->trigdesc->trig_insert_before_statement ||
		 rel->trigdesc->trig_insert_after_statement || rel->trigdesc->trig_insert_new_table))
		return false;
	if (desc->constr && (desc->constr->num_check > 0 || desc->constr->has_generated_stored))
		return false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		map[i] = -1;
		if (att->attisdropped)
			continue;
		for (k = 0; k < ncols; k++)
			if (strcmp(NameStr(att->attname), names[k]) == 0)
				break;
		if (k == ncols || att->atttypid != types[k])
			return false;
		map[i] = k;
		seen++;
	}
	return seen == ncols;
}

/*
 * build_indexes
 *		Rebuild every index of a table after a bulk load.  If the rows were
 *		written in the order of the primary key, that index is built by one
 *		process: the sort then finds its input already in order and only
 *		checks it (workers would each sort a part of the table and the leader
 *		merge them again).  The other indexes are built as REINDEX decides
 *		(in parallel where max_parallel_maintenance_workers allows), with at
 *		most one worker fewer than the machine has processors: the leader
 *		sorts its share too, and a worker more than there are cores only
 *		competes with it (on 2 cores, 1 worker built the two event_entities
 *		indexes of a 1M-event pass about 4 % faster than 2, in 4 of 4
 *		alternating runs).
 */
static void
build_indexes(Oid relid, bool pkey_ordered)
{
	Relation	rel = table_open(relid, NoLock);	/* locked by the caller */
	List	   *indexes = RelationGetIndexList(rel);
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	ListCell   *lc;
	int			max_workers = max_parallel_maintenance_workers;
#ifdef _SC_NPROCESSORS_ONLN
	long		ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (ncpu >= 1 && max_workers > ncpu - 1)
		max_workers = (int) (ncpu - 1);
#endif

	table_close(rel, NoLock);
	foreach(lc, indexes)
	{
		Oid			index = lfirst_oid(lc);
		char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(index)),
													  get_rel_name(index));
		int			nestlevel = -1;

		if (pkey_ordered && index == pkey)
		{
			nestlevel = NewGUCNestLevel();
			(void) set_config_option("max_parallel_maintenance_workers", "0",
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
		}
		else if (max_workers < max_parallel_maintenance_workers)
		{
			nestlevel = NewGUCNestLevel();
			(void) set_config_option("max_parallel_maintenance_workers",
									 psprintf("%d", max_workers),
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
		}
		cdp_execute_sql(psprintf("REINDEX INDEX %s", name),
						SPI_OK_UTILITY, "building the indexes of a bulk load");
		if (nestlevel >= 0)
			AtEOXact_GUC(true, nestlevel);
	}
	list_free(indexes);
}

/*
 * insert_rows
 *		Insert n rows into a stitching table directly (table_multi_insert,
 *		as COPY does), in the order of their numbers, without the executor
 *		and parameter arrays of an INSERT statement.  key_ordered: that is
 *		the order of the table's primary key.
 *
 *		bulk: the table holds no rows: skip index maintenance and rebuild its
 *		indexes afterwards (a sorted build is many times cheaper than a
 *		million random index insertions, and logs whole pages instead of one
 *		record per entry).  REINDEX locks the indexes exclusively until
 *		commit: only full passes, which hold the stitching lock exclusively,
 *		load this way, and only into empty tables, which nobody has reason to
 *		be reading.  A duplicate key fails the index build, as it would have
 *		failed the insert.
 *
 *		Otherwise each row's index entries are inserted as INSERT would (a
 *		duplicate key is the same unique violation).  Returns false (nothing
 *		done) if the table is not shaped as expected: the caller then inserts
 *		with SQL.
 */
static bool
insert_rows(const char *relname, const char **names, const Oid *types, int ncols,
			int n, bool key_ordered, RowFill fill, void *arg, bool bulk)
{
	Oid			relid = get_relname_relid(relname, get_namespace_oid(CDP_SCHEMA_NAME, false));
	Relation	rel;
	TupleDesc	desc;
	int		   *map;
	Datum	   *values;
	bool	   *nulls;
	TupleTableSlot **slots;
	BulkInsertState bistate;
	CommandId	cid;
	EState	   *estate = NULL;
	ResultRelInfo *rri = NULL;
	MemoryContext batchcxt;
	MemoryContext oldcxt;
	int			nslots = Min(n, INSERT_BATCH);
	int			i,
				k,
				a;
	instr_time	start,
				mid,
				end;

	if (!OidIsValid(relid) || n <= 0)
		return false;
	INSTR_TIME_SET_CURRENT(start);
	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	map = palloc(sizeof(int) * Max(desc->natts, 1));
	if (!direct_columns(rel, names, types, ncols, map))
	{
		table_close(rel, NoLock);
		return false;
	}
	if (!bulk)
	{
		estate = CreateExecutorState();
		rri = makeNode(ResultRelInfo);
		InitResultRelInfo(rri, rel, 1, NULL, 0);
		ExecOpenIndices(rri, false);
	}
	values = palloc(sizeof(Datum) * ncols);
	nulls = palloc(sizeof(bool) * ncols);
	slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (k = 0; k < nslots; k++)
		slots[k] = table_slot_create(rel, NULL);
	/* (a bulk-write buffer ring only for many rows: a few go to shared buffers) */
	bistate = n >= 256 ? GetBulkInsertState() : NULL;
	cid = GetCurrentCommandId(true);
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits insert",
									 ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < n; i += INSERT_BATCH)
	{
		int			m = Min(INSERT_BATCH, n - i);

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(batchcxt);
		for (k = 0; k < m; k++)
		{
			TupleTableSlot *slot = slots[k];

			ExecClearTuple(slot);
			fill(i + k, values, nulls, arg);
			for (a = 0; a < desc->natts; a++)
			{
				slot->tts_values[a] = map[a] >= 0 ? values[map[a]] : (Datum) 0;
				slot->tts_isnull[a] = map[a] >= 0 ? nulls[map[a]] : true;
			}
			ExecStoreVirtualTuple(slot);
		}
		table_multi_insert(rel, slots, m, cid, 0, bistate);
		if (!bulk)
			for (k = 0; k < m; k++)
			{
				(void) ExecInsertIndexTuples(rri, slots[k], estate, false, false, NULL, NIL);
				ResetPerTupleExprContext(estate);
			}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batchcxt);
	}
	if (bistate)
		FreeBulkInsertState(bistate);
	table_finish_bulk_insert(rel, 0);
	for (k = 0; k < nslots; k++)
		ExecDropSingleTupleTableSlot(slots[k]);
	MemoryContextDelete(batchcxt);
	if (!bulk)
	{
		ExecCloseIndices(rri);
		FreeExecutorState(estate);
	}
	table_close(rel, NoLock);
	CommandCounterIncrement();
	INSTR_TIME_SET_CURRENT(mid);
	if (bulk)
		build_indexes(relid, key_ordered);
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, mid);
	INSTR_TIME_SUBTRACT(mid, start);
	if (bulk)
		elog(DEBUG2, "cdp_traits: bulk load of %s: %d rows in %.1f ms, indexes built in %.1f ms",
			 relname, n, INSTR_TIME_GET_MILLISEC(mid), INSTR_TIME_GET_MILLISEC(end));
	else
		elog(DEBUG2, "cdp_traits: inserting into %s: %d rows in %.1f ms",
			 relname, n, INSTR_TIME_GET_MILLISEC(mid));
	return true;
}

/*
 * fill_entity / fill_ident / fill_event
 *		RowFill callbacks over a StitchChanges: new entities, identifiers
 *		and event assignments.
 */
static void
fill_entity(int row, Datum *values, bool *nulls, void *arg)
{
	StitchChanges *c = arg;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	values[0] = UUIDPGetDatum(&c->new_entities[row]);
	values[1] = TimestampTzGetDatum(now);
	values[2] = TimestampTzGetDatum(now);
	values[3] = (Datum) 0;
	nulls[0] = nulls[1] = nulls[2] = false;
	nulls[3] = true;
}

static void
fill_ident(int row, Datum *values, bool *nulls, void *arg)
{
	StitchChanges *c = arg;

	values[0] = CStringGetTextDatum(c->ident_attr[row]);
	values[1] = CStringGetTextDatum(c->ident_val[row]);
	values[2] = UUIDPGetDatum(&c->ident_entity[row]);
	nulls[0] = nulls[1] = nulls[2] = false;
}

static void
fill_event(int row, Datum *values, bool *nulls, void *arg)
{
	StitchChanges *c = arg;

	values[0] = CStringGetTextDatum(c->event_ids[row]);
	values[1] = UUIDPGetDatum(&c->event_entity[row]);
	nulls[0] = nulls[1] = false;
}

/*
 * The new rows of a pass are inserted in the order of their table's primary
 * key (byte-wise, as the "C" collation of its text columns): ordered index
 * insertion is several times faster than random, and a bulk load's primary
 * key build finds its input already sorted (build_indexes).
 *
 * Each list is sorted in place, its rows carried whole in the array being
 * sorted: writing them in order then reads memory in order, where gathering
 * them by row number cost three or four cache misses per row.  A row's sort
 * key starts with the first 16 bytes of its key read as two big-endian
 * numbers: comparing the numbers compares those bytes as memcmp does, and as
 * strcmp does (text holds no NUL byte, and a key shorter than 16 bytes is
 * padded with zeros, which sort first).  Only rows whose prefixes tie are
 * compared whole.
 */
typedef struct KeyPrefix
{
	uint64		hi;
	uint64		lo;
} KeyPrefix;

/*
 * set_prefix
 *		A KeyPrefix from 16 bytes.
 */
static inline void
set_prefix(KeyPrefix *k, const unsigned char *bytes)
{
	uint64		hi;
	uint64		lo;

	memcpy(&hi, bytes, sizeof(hi));
	memcpy(&lo, bytes + sizeof(hi), sizeof(lo));
	k->hi = pg_ntoh64(hi);
	k->lo = pg_ntoh64(lo);
}

/*
 * set_string_prefix
 *		A KeyPrefix from a string, after a leading byte if lead is not
 *		negative.
 */
static inline void
set_string_prefix(KeyPrefix *k, int lead, const char *s)
{
	unsigned char b[16];
	int			i = 0;

	if (lead >= 0)
		b[i++] = (unsigned char) lead;
	while (i < (int) sizeof(b) && *s)
		b[i++] = (unsigned char) *s++;
	if (i < (int) sizeof(b))
		memset(b + i, 0, sizeof(b) - i);
	set_prefix(k, b);
}

/*
 * cmp_prefix
 *		Compare two KeyPrefixes.
 */
static inline int
cmp_prefix(const KeyPrefix *a, const KeyPrefix *b)
{
	if (a->hi != b->hi)
		return a->hi < b->hi ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return 0;
}

/* An entity id is its own prefix. */
#define ST_SORT			sort_uuids
#define ST_ELEMENT_TYPE	pg_uuid_t
#define ST_COMPARE(a, b)	memcmp((a)->data, (b)->data, UUID_LEN)
#define ST_SCOPE		static
#define ST_DEFINE
#include "lib/sort_template.h"

/* An identifier to insert. */
typedef struct IdentRow
{
	KeyPrefix	prefix;			/* attribute's rank, then the value's bytes */
	const char *attr;
	const char *val;
	pg_uuid_t	entity;
} IdentRow;

/*
 * cmp_ident_row
 *		Compare two IdentRows by attribute id, then value.
 */
static inline int
cmp_ident_row(const IdentRow *a, const IdentRow *b)
{
	int			r = cmp_prefix(&a->prefix, &b->prefix);

	if (r == 0 && a->attr != b->attr)
		r = strcmp(a->attr, b->attr);
	return r != 0 ? r : strcmp(a->val, b->val);
}

#define ST_SORT			sort_ident_rows
#define ST_ELEMENT_TYPE	IdentRow
#define ST_COMPARE(a, b)	cmp_ident_row(a, b)
#define ST_SCOPE		static
#define ST_DEFINE
#include "lib/sort_template.h"

/* An event assignment to insert. */
typedef struct EventRowKey
{
	KeyPrefix	prefix;			/* the event id's bytes */
	const char *event_id;
	pg_uuid_t	entity;
} EventRowKey;

/*
 * cmp_event_row
 *		Compare two EventRowKeys by event id.
 */
static inline int
cmp_event_row(const EventRowKey *a, const EventRowKey *b)
{
	int			r = cmp_prefix(&a->prefix, &b->prefix);

	return r != 0 ? r : strcmp(a->event_id, b->event_id);
}

#define ST_SORT			sort_event_rows
#define ST_ELEMENT_TYPE	EventRowKey
#define ST_COMPARE(a, b)	cmp_event_row(a, b)
#define ST_SCOPE		static
#define ST_DEFINE
#include "lib/sort_template.h"

/* At most this many distinct attribute id pointers get a rank byte. */
#define MAX_RANKED_ATTRS 64

/*
 * sort_idents
 *		Put the new identifiers in (attribute id, value) order, in place.
 *		Attribute ids are a few interned strings: each gets its rank among
 *		them as the first byte of the prefix, followed by the value's first
 *		15 bytes.  (Should there be more distinct pointers than that, all
 *		prefixes are left zero: slower, but the same order.)
 */
static void
sort_idents(StitchChanges *c)
{
	const char *attrs[MAX_RANKED_ATTRS];
	int			rank[MAX_RANKED_ATTRS];
	int			nattrs = 0;
	int			last = -1;
	bool		ranked = true;
	IdentRow   *rows;
	int			i,
				j;

	/* distinct attribute pointers, ranked by their strings */
	for (i = 0; i < c->n_idents && ranked; i++)
	{
		if (last >= 0 && attrs[last] == c->ident_attr[i])
			continue;
		for (last = 0; last < nattrs; last++)
			if (attrs[last] == c->ident_attr[i])
				break;
		if (last == nattrs)
		{
			if (nattrs == MAX_RANKED_ATTRS)
				ranked = false;
			else
				attrs[nattrs++] = c->ident_attr[i];
		}
	}
	for (i = 0; i < nattrs; i++)
	{
		rank[i] = 0;
		for (j = 0; j < nattrs; j++)
			if (strcmp(attrs[j], attrs[i]) < 0)
				rank[i]++;
	}

	rows = palloc_extended(sizeof(IdentRow) * Max(c->n_idents, 1), MCXT_ALLOC_HUGE);
	last = 0;
	for (i = 0; i < c->n_idents; i++)
	{
		if (!ranked)
			memset(&rows[i].prefix, 0, sizeof(KeyPrefix));
		else
		{
			if (attrs[last] != c->ident_attr[i])
				for (last = 0; attrs[last] != c->ident_attr[i]; last++)
					;
			set_string_prefix(&rows[i].prefix, rank[last], c->ident_val[i]);
		}
		rows[i].attr = c->ident_attr[i];
		rows[i].val = c->ident_val[i];
		rows[i].entity = c->ident_entity[i];
	}
	sort_ident_rows(rows, c->n_idents);
	for (i = 0; i < c->n_idents; i++)
	{
		c->ident_attr[i] = rows[i].attr;
		c->ident_val[i] = rows[i].val;
		c->ident_entity[i] = rows[i].entity;
	}
	pfree(rows);
}

/*
 * sort_events
 *		Put the new event assignments in event id order, in place.
 */
static void
sort_events(StitchChanges *c)
{
	EventRowKey *rows = palloc_extended(sizeof(EventRowKey) * Max(c->n_events, 1),
										MCXT_ALLOC_HUGE);
	int			i;

	for (i = 0; i < c->n_events; i++)
	{
		set_string_prefix(&rows[i].prefix, -1, c->event_ids[i]);
		rows[i].event_id = c->event_ids[i];
		rows[i].entity = c->event_entity[i];
	}
	sort_event_rows(rows, c->n_events);
	for (i = 0; i < c->n_events; i++)
	{
		c->event_ids[i] = rows[i].event_id;
		c->event_entity[i] = rows[i].entity;
	}
	pfree(rows);
}

static const char *EntityCols[] = {"id", "created", "modified", "calculated"};
static const Oid EntityTypes[] = {UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
static const char *IdentCols[] = {"attribute_id", "value", "customer_entity_id"};
static const Oid IdentTypes[] = {TEXTOID, TEXTOID, UUIDOID};
static const char *EventCols[] = {"event_id", "customer_entity_id"};
static const Oid EventTypes[] = {TEXTOID, UUIDOID};

/*
 * stitch_write_changes
 *		The writes shared by incremental batches and full passes: new
 *		entities, identifier and event assignments (upserts and deletes), and
 *		marking entities for recalculation.  New rows are inserted directly
 *		(insert_rows), in bulk into tables a full pass found empty; with SQL
 *		only if a table is not as expected.  The lists of new entities,
 *		identifiers and event assignments are put in key order in place.
 */
void
stitch_write_changes(StitchChanges *c)
{
	Datum		args[3];

	/* new rows go in primary key order (their lists are sorted in place) */
	sort_uuids(c->new_entities, c->n_new_entities);
	if (c->n_new_entities > 0 &&
		!insert_rows("customer_entities", EntityCols, EntityTypes, 4, c->n_new_entities,
					 true, fill_entity, c, c->bulk_entities))
	{
		args[0] = cdp_uuid_array(c->new_entities, c->n_new_entities);
		cdp_execute(plan("new_entities",
						 "INSERT INTO cdp_traits.customer_entities (id, created, modified, calculated) "
						 "SELECT id, pg_catalog.now(), pg_catalog.now(), NULL FROM unnest($1) id ORDER BY 1",
						 1, UUIDARRAYOID, 0, 0),
					args, NULL, SPI_OK_INSERT, "creating entities");
	}
	write_merges(c->merged, c->merged_into, c->n_merged);
	if (c->n_del_idents > 0)
	{
		args[0] = cdp_text_array(c->del_ident_attr, c->n_del_idents);
		args[1] = cdp_text_array(c->del_ident_val, c->n_del_idents);
		cdp_execute(plan("del_matching",
						 "DELETE FROM cdp_traits.matching m USING unnest($1, $2) d(attr, val) "
						 "WHERE m.attribute_id = d.attr AND m.value = d.val",
						 2, TEXTARRAYOID, TEXTARRAYOID, 0),
					args, NULL, SPI_OK_DELETE, "deleting identifiers");
	}
	sort_idents(c);
	if (c->n_idents > 0 &&
		!insert_rows("matching", IdentCols, IdentTypes, 3, c->n_idents,
					 true, fill_ident, c, c->bulk_idents))
	{
		args[0] = cdp_text_array(c->ident_attr, c->n_idents);
		args[1] = cdp_text_array(c->ident_val, c->n_idents);
		args[2] = cdp_uuid_array(c->ident_entity, c->n_idents);
		cdp_execute(plan("put_matching",
						 "INSERT INTO cdp_traits.matching (attribute_id, value, customer_entity_id) "
						 "SELECT * FROM unnest($1, $2, $3) u(a, v, e) ORDER BY a COLLATE \"C\", v COLLATE \"C\"",
						 3, TEXTARRAYOID, TEXTARRAYOID, UUIDARRAYOID),
					args, NULL, SPI_OK_INSERT, "writing identifiers");
	}
	if (c->n_upd_idents > 0)
	{
		args[0] = cdp_text_array(c->upd_ident_attr, c->n_upd_idents);
		args[1] = cdp_text_array(c->upd_ident_val, c->n_upd_idents);
		args[2] = cdp_uuid_array(c->upd_ident_entity, c->n_upd_idents);
		cdp_execute(plan("move_matching",
						 "UPDATE cdp_traits.matching m SET customer_entity_id = u.entity "
						 "FROM unnest($1, $2, $3) u(attr, val, entity) "
						 "WHERE m.attribute_id = u.attr AND m.value = u.val",
						 3, TEXTARRAYOID, TEXTARRAYOID, UUIDARRAYOID),
					args, NULL, SPI_OK_UPDATE, "moving identifiers");
	}
	if (c->n_del_events > 0)
	{
		args[0] = cdp_text_array(c->del_events, c->n_del_events);
		cdp_execute(plan("del_events",
						 "DELETE FROM cdp_traits.event_entities WHERE event_id = ANY ($1)",
						 1, TEXTARRAYOID, 0, 0),
					args, NULL, SPI_OK_DELETE, "unassigning events");
	}
	/*
	 * (Except event assignments loaded in bulk: they stay in the order the
	 * events were read, the events table's.  Sorting them costs as much as
	 * their primary key build gains from it, and a later pass reading the
	 * stored assignments and then the events finds them in the same order.)
	 */
	if (!c->bulk_events)
		sort_events(c);
	if (c->n_events > 0 &&
		!insert_rows("event_entities", EventCols, EventTypes, 2, c->n_events,
					 !c->bulk_events, fill_event, c, c->bulk_events))
	{
		args[0] = cdp_text_array(c->event_ids, c->n_events);
		args[1] = cdp_uuid_array(c->event_entity, c->n_events);
		cdp_execute(plan("put_events",
						 "INSERT INTO cdp_traits.event_entities (event_id, customer_entity_id) "
						 "SELECT * FROM unnest($1, $2) u(id, e) ORDER BY id COLLATE \"C\"",
						 2, TEXTARRAYOID, UUIDARRAYOID, 0),
					args, NULL, SPI_OK_INSERT, "assigning events");
	}
	if (c->n_upd_events > 0)
	{
		args[0] = cdp_text_array(c->upd_event_ids, c->n_upd_events);
		args[1] = cdp_uuid_array(c->upd_event_entity, c->n_upd_events);
		cdp_execute(plan("move_events",
						 "UPDATE cdp_traits.event_entities e SET customer_entity_id = u.entity "
						 "FROM unnest($1, $2) u(id, entity) WHERE e.event_id = u.id",
						 2, TEXTARRAYOID, UUIDARRAYOID, 0),
					args, NULL, SPI_OK_UPDATE, "moving events");
	}
	remove_entities(c->removed, c->n_removed);
	if (c->n_touched > 0)
	{
		args[0] = cdp_uuid_array(c->touched, c->n_touched);
		cdp_execute(plan("touch_entities",
						 "UPDATE cdp_traits.customer_entities c "
						 "SET modified = pg_catalog.now(), calculated = NULL WHERE c.id = ANY ($1) "
						 "AND " NOT_MARKED_YET("c"),
						 1, UUIDARRAYOID, 0, 0),
					args, NULL, SPI_OK_UPDATE, "marking entities for recalculation");
	}
}

/*
 * changes_init
 *		Empty change lists sized for up to n events / identifiers.
 */
void
stitch_changes_init(StitchChanges *c, int nevents, int nidents, int nentities)
{
	memset(c, 0, sizeof(*c));
	nevents = Max(nevents, 1);
	nidents = Max(nidents, 1);
	nentities = Max(nentities, 1);
	c->new_entities = palloc_extended(sizeof(pg_uuid_t) * nentities, MCXT_ALLOC_HUGE);
	c->merged = palloc_extended(sizeof(pg_uuid_t) * nentities, MCXT_ALLOC_HUGE);
	c->merged_into = palloc_extended(sizeof(pg_uuid_t) * nentities, MCXT_ALLOC_HUGE);
	c->removed = palloc_extended(sizeof(pg_uuid_t) * nentities, MCXT_ALLOC_HUGE);
	c->touched = palloc_extended(sizeof(pg_uuid_t) * nentities, MCXT_ALLOC_HUGE);
	c->ident_attr = palloc_extended(sizeof(char *) * nidents, MCXT_ALLOC_HUGE);
	c->ident_val = palloc_extended(sizeof(char *) * nidents, MCXT_ALLOC_HUGE);
	c->ident_entity = palloc_extended(sizeof(pg_uuid_t) * nidents, MCXT_ALLOC_HUGE);
	c->upd_ident_attr = palloc_extended(sizeof(char *) * nidents, MCXT_ALLOC_HUGE);
	c->upd_ident_val = palloc_extended(sizeof(char *) * nidents, MCXT_ALLOC_HUGE);
	c->upd_ident_entity = palloc_extended(sizeof(pg_uuid_t) * nidents, MCXT_ALLOC_HUGE);
	c->del_ident_attr = NULL;
	c->del_ident_val = NULL;
	c->event_ids = palloc_extended(sizeof(char *) * nevents, MCXT_ALLOC_HUGE);
	c->event_entity = palloc_extended(sizeof(pg_uuid_t) * nevents, MCXT_ALLOC_HUGE);
	c->upd_event_ids = palloc_extended(sizeof(char *) * nevents, MCXT_ALLOC_HUGE);
	c->upd_event_entity = palloc_extended(sizeof(pg_uuid_t) * nevents, MCXT_ALLOC_HUGE);
	c->del_events = palloc_extended(sizeof(char *) * nevents, MCXT_ALLOC_HUGE);
}

/* Entity found for an identifier of the batch. */
typedef struct Found
{
	int			ident;
	pg_uuid_t	entity;
} Found;

/* State of scanning matching for a batch's identifiers. */
typedef struct FoundScan
{
	StitchGraph *g;
	Found	   *found;
	int			nfound;
	int			maxfound;
} FoundScan;

/*
 * found_row
 *		cdp_stream callback: keep a stored identifier if the batch has it.
 */
static void
found_row(TupleTableSlot *slot, void *arg)
{
	FoundScan  *fs = arg;
	text	   *attr = DatumGetTextPP(slot->tts_values[0]);
	text	   *val = DatumGetTextPP(slot->tts_values[1]);
	int			id = graph_lookup_identifier(fs->g, VARDATA_ANY(attr), VARSIZE_ANY_EXHDR(attr),
											 VARDATA_ANY(val), VARSIZE_ANY_EXHDR(val));

	if (id < 0)
		return;
	if (fs->nfound >= fs->maxfound)
	{
		fs->maxfound *= 2;
		fs->found = repalloc_huge(fs->found, sizeof(Found) * fs->maxfound);
	}
	fs->found[fs->nfound].ident = id;
	fs->found[fs->nfound].entity = *DatumGetUUIDP(slot->tts_values[2]);
	fs->nfound++;
}

/*
 * stitch_table_size
 *		The planner's estimate of the rows of a stitching table (-1 unknown).
 */
double
stitch_table_size(const char *relname)
{
	Oid			relid = get_relname_relid(relname, get_namespace_oid(CDP_SCHEMA_NAME, false));
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	double		n = -1;

	if (HeapTupleIsValid(tup))
	{
		n = ((Form_pg_class) GETSTRUCT(tup))->reltuples;
		ReleaseSysCache(tup);
	}
	return n;
}

/*
 * lookup_identifiers
 *		The existing entities of the batch's identifiers: one index probe per
 *		identifier, or, when the batch holds a sizeable share of all stored
 *		identifiers, one pass over matching probing the batch's hash table.
 */
static Found *
lookup_identifiers(StitchGraph *g, int *nfound)
{
	int			n = graph_nidents(g);
	const char **attrs;
	const char **vals;
	Datum		args[2];
	Found	   *found;
	uint64		i;

	if (n > 10000)
	{
		double		stored = stitch_table_size("matching");

		if (stored < 0 || (double) n * 4 > stored)
		{
			FoundScan	fs;

			fs.g = g;
			fs.maxfound = Max(n, 64);
			fs.found = palloc_extended(sizeof(Found) * fs.maxfound, MCXT_ALLOC_HUGE);
			fs.nfound = 0;
			cdp_stream(stitch_cached_plan("scan_matching",
										  "SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching",
										  0, NULL),
					   NULL, false, found_row, &fs);
			*nfound = fs.nfound;
			return fs.found;
		}
	}

	attrs = palloc(sizeof(char *) * Max(n, 1));
	vals = palloc(sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
		graph_identifier(g, i, &attrs[i], &vals[i]);
	args[0] = cdp_text_array(attrs, n);
	args[1] = cdp_text_array(vals, n);
	cdp_execute(plan("lookup_idents",
					 "SELECT (u.ord - 1)::int4, m.customer_entity_id "
					 "FROM unnest($1, $2) WITH ORDINALITY u(attr, val, ord) "
					 "JOIN cdp_traits.matching m ON m.attribute_id = u.attr AND m.value = u.val",
					 2, TEXTARRAYOID, TEXTARRAYOID, 0),
				args, NULL, SPI_OK_SELECT, "looking up identifiers");
	found = palloc(sizeof(Found) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];

		found[i].ident = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		found[i].entity = *DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
	*nfound = (int) SPI_processed;
	SPI_freetuptable(SPI_tuptable);
	return found;
}

/* the stored events of a batch and the entities they belong to */
typedef struct EventPairs
{
	int			n;				/* events found */
	const char **keys;			/* their keys, in strcmp() order */
	pg_uuid_t  *entities;		/* the entity of each */
	pg_uuid_t  *distinct;		/* the entities, sorted, each once */
	int			ndistinct;
} EventPairs;

/*
 * lookup_event_pairs
 *		The entities the given (stored) events belong to: each event's (for
 *		adopt_old_entities) and the distinct ones (to lock and re-check).
 */
static void
lookup_event_pairs(const char **ids, int n, EventPairs *out)
{
	Datum		args[1];
	uint64		r;

	memset(out, 0, sizeof(EventPairs));
	if (n == 0)
		return;
	args[0] = cdp_text_array(ids, n);
	cdp_execute(plan("lookup_event_pairs",
					 "SELECT event_id, customer_entity_id FROM cdp_traits.event_entities "
					 "WHERE event_id = ANY ($1) ORDER BY event_id COLLATE \"C\"",
					 1, TEXTARRAYOID, 0, 0),
				args, NULL, SPI_OK_SELECT, "looking up events");
	out->n = (int) SPI_processed;
	out->keys = palloc_extended(sizeof(char *) * Max(out->n, 1), MCXT_ALLOC_HUGE);
	out->entities = palloc_extended(sizeof(pg_uuid_t) * Max(out->n, 1), MCXT_ALLOC_HUGE);
	out->distinct = palloc_extended(sizeof(pg_uuid_t) * Max(out->n, 1), MCXT_ALLOC_HUGE);
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[r];

		out->keys[r] = TextDatumGetCString(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		out->entities[r] = *DatumGetUUIDP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	memcpy(out->distinct, out->entities, sizeof(pg_uuid_t) * out->n);
	out->ndistinct = sort_unique_uuids(out->distinct, out->n);
}

/*
 * entity_created
 *		Creation times of entities, for choosing merge survivors.
 */
static TimestampTz *
entity_created(const pg_uuid_t *ids, int n)
{
	Datum		args[1];
	TimestampTz *created = palloc(sizeof(TimestampTz) * Max(n, 1));
	uint64		i;
	int			j;

	for (j = 0; j < n; j++)
		created[j] = DT_NOEND;
	if (n == 0)
		return created;
	args[0] = cdp_uuid_array(ids, n);
	cdp_execute(plan("entity_created",
					 "SELECT u.ord::int4 - 1, e.created FROM unnest($1) WITH ORDINALITY u(id, ord) "
					 "JOIN cdp_traits.customer_entities e ON e.id = u.id",
					 1, UUIDARRAYOID, 0, 0),
				args, NULL, SPI_OK_SELECT, "reading entities");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];

		j = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		created[j] = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return created;
}

/*
 * cmp_uuid
 *		qsort comparator for uuids.
 */
static int
cmp_uuid(const void *a, const void *b)
{
	return uuid_cmp_internal((const pg_uuid_t *) a, (const pg_uuid_t *) b);
}

/*
 * sort_unique_uuids
 *		Sort and de-duplicate an array of uuids; returns the new length.
 */
int
sort_unique_uuids(pg_uuid_t *ids, int n)
{
	int			i,
				m = 0;

	qsort(ids, n, sizeof(pg_uuid_t), cmp_uuid);
	for (i = 0; i < n; i++)
		if (m == 0 || uuid_cmp_internal(&ids[m - 1], &ids[i]) != 0)
			ids[m++] = ids[i];
	return m;
}

/*
 * older_entity
 *		Whether entity a (created ca) is older than b: earliest created, then
 *		smallest id.
 */
static bool
older_entity(const pg_uuid_t *a, TimestampTz ca, const pg_uuid_t *b, TimestampTz cb)
{
	if (ca != cb)
		return ca < cb;
	return uuid_cmp_internal(a, b) < 0;
}

/*
 * follow_states
 *		Keep the stored aggregate states of entities (cdp_traits.entity_states,
 *		see _states_fetch) exact: the batch's new events of an entity that has
 *		one are queued in entity_state_events; an entity whose events changed
 *		otherwise (it absorbed or was absorbed, lost events, or had events
 *		updated: drop[]) loses its state and its queue.  Called once every
 *		entity row of the batch is updated: a calculation that stored the
 *		state of one of them holds that row until it commits, so this
 *		statement, with a snapshot of its own, sees the state.  Nothing to do
 *		(one cheap look) while no entity has a state.
 */
static void
follow_states(const StitchChanges *c, const pg_uuid_t *drop, int ndrop)
{
	Datum		args[3];
	bool		isnull;

	if ((c->n_events == 0 && ndrop == 0) || !stitch_states_kept())
		return;
	cdp_execute(plan("states_exist",
					 "SELECT EXISTS (SELECT FROM cdp_traits.entity_states)",
					 0, 0, 0, 0),
				NULL, NULL, SPI_OK_SELECT, "looking for stored states");
	if (SPI_processed != 1 ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return;
	args[0] = cdp_text_array(c->event_ids, c->n_events);
	args[1] = cdp_uuid_array(c->event_entity, c->n_events);
	args[2] = cdp_uuid_array(drop, ndrop);
	cdp_execute(plan("follow_states",
					 "WITH gone AS ("
					 " DELETE FROM cdp_traits.entity_states s WHERE s.customer_entity_id = ANY ($3)"
					 " RETURNING s.customer_entity_id"
					 "), emptied AS ("
					 " DELETE FROM cdp_traits.entity_state_events q"
					 " WHERE q.customer_entity_id = ANY ($3)"
					 ") "
					 "INSERT INTO cdp_traits.entity_state_events (customer_entity_id, event_id) "
					 "SELECT u.e, u.id FROM unnest($1, $2) u(id, e) "
					 "WHERE u.e IN (SELECT s.customer_entity_id FROM cdp_traits.entity_states s) "
					 "AND u.e NOT IN (SELECT d FROM unnest($3) d)",
					 3, TEXTARRAYOID, UUIDARRAYOID, UUIDARRAYOID),
				args, NULL, SPI_OK_INSERT, "following stored states");
}

/*
 * stitch_forget_states
 *		Drop every stored aggregate state and its queue (see follow_states):
 *		for a whole pass over the events, or stored keys rewritten.
 */
void
stitch_forget_states(void)
{
	if (!stitch_states_kept())
		return;
	cdp_execute_sql("DELETE FROM cdp_traits.entity_state_events",
					SPI_OK_DELETE, "dropping queued events of stored states");
	cdp_execute_sql("DELETE FROM cdp_traits.entity_states",
					SPI_OK_DELETE, "dropping stored states");
}

/*
 * An event of the batch that had an entity before it (an updated event), and
 * the batch component its new version joined: see adopt_old_entities.
 */
typedef struct MovedEvent
{
	pg_uuid_t	entity;			/* the entity the event had */
	int			root;			/* the union-find root of its new version */
	int			events;			/* (after counting: such events) */
} MovedEvent;

/*
 * cmp_key_text
 *		qsort/bsearch comparator for event keys (strings).
 */
static int
cmp_key_text(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * cmp_moved
 *		qsort comparator for MovedEvent: by entity, then root.
 */
static int
cmp_moved(const void *a, const void *b)
{
	const MovedEvent *x = a;
	const MovedEvent *y = b;
	int			c = uuid_cmp_internal(&x->entity, &y->entity);

	if (c != 0)
		return c;
	return x->root < y->root ? -1 : x->root > y->root ? 1 : 0;
}

/*
 * adopt_old_entities
 *		Updated events whose identifiers changed are forgotten and stitched
 *		again from their new versions: by those alone, a component of the
 *		batch that reaches no stored identifier would get a new entity, and
 *		an entity whose events all moved there would be removed (its values
 *		with it), though its events are still one customer.  Where a
 *		component holds most of an entity's events -- no fewer than any other
 *		component, and more than the events the entity keeps (those the
 *		statement did not change) -- that entity joins the component as if one of its
 *		identifiers had been found there: the component keeps its id (or,
 *		if the component links other entities too, the oldest survives and
 *		the others are recorded as absorbed, as in any merge).  The entity's
 *		remaining events, if any, are re-checked afterwards (it lost events)
 *		and split off as its smaller part, so the part holding most of its
 *		events keeps the id, as after a delete.  Entities found by the
 *		batch's identifiers are left as they are.  Returns the entities that
 *		joined (*nadopted of them), to be added to those found.
 */
static pg_uuid_t *
adopt_old_entities(StitchGraph *g, const EventPairs *forgotten_pairs,
				   const Found *found, int nfound, int *nadopted)
{
	int			nevents = graph_nevents(g);
	Datum		args[1];
	int			npairs = forgotten_pairs->n;
	const char **keys = forgotten_pairs->keys;
	const pg_uuid_t *olds = forgotten_pairs->entities;
	pg_uuid_t  *known;
	MovedEvent *moved;
	pg_uuid_t  *cands;
	int64	   *totals;
	int64	   *forgotten;
	pg_uuid_t  *adopted;
	int			nknown = 0,
				nmoved = 0,
				ncands = 0,
				m = 0,
				i;
	uint64		r;

	*nadopted = 0;
	if (npairs == 0 || nevents == 0)
		return NULL;

	/* the entities found by the batch's identifiers stay as they are */
	known = palloc(sizeof(pg_uuid_t) * Max(nfound, 1));
	for (i = 0; i < nfound; i++)
		known[nknown++] = found[i].entity;
	nknown = sort_unique_uuids(known, nknown);

	/* each moved event: its old entity and the component it joined */
	moved = palloc_extended(sizeof(MovedEvent) * nevents, MCXT_ALLOC_HUGE);
	for (i = 0; i < nevents; i++)
	{
		int			node = graph_event_node(g, i);
		const char *id = graph_event_id(g, i);
		const char **hit;

		if (node < 0)
			continue;
		hit = bsearch(&id, keys, npairs, sizeof(char *), cmp_key_text);
		if (hit == NULL)
			continue;
		moved[nmoved].entity = olds[hit - keys];
		if (nknown > 0 &&
			bsearch(&moved[nmoved].entity, known, nknown, sizeof(pg_uuid_t), cmp_uuid) != NULL)
			continue;
		moved[nmoved].root = graph_find(g, node);
		moved[nmoved].events = 1;
		nmoved++;
	}
	if (nmoved == 0)
		return NULL;
	qsort(moved, nmoved, sizeof(MovedEvent), cmp_moved);
	for (i = 0; i < nmoved; i++)
	{
		if (m > 0 && cmp_moved(&moved[m - 1], &moved[i]) == 0)
			moved[m - 1].events++;
		else
			moved[m++] = moved[i];
	}
	nmoved = m;

	/* how many events each of those entities has (before the batch) */
	cands = palloc(sizeof(pg_uuid_t) * nmoved);
	for (i = 0; i < nmoved; i++)
		if (ncands == 0 || uuid_cmp_internal(&cands[ncands - 1], &moved[i].entity) != 0)
			cands[ncands++] = moved[i].entity;
	totals = palloc0(sizeof(int64) * ncands);
	args[0] = cdp_uuid_array(cands, ncands);
	cdp_execute(plan("count_entity_events",
					 "SELECT u.ord::int4 - 1, "
					 "(SELECT count(*) FROM cdp_traits.event_entities e WHERE e.customer_entity_id = u.id) "
					 "FROM unnest($1) WITH ORDINALITY u(id, ord)",
					 1, UUIDARRAYOID, 0, 0),
				args, NULL, SPI_OK_SELECT, "counting events of entities");
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[r];
		int			j = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));

		totals[j] = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	/* of which the statement forgets (the others stay where they are) */
	forgotten = palloc0(sizeof(int64) * ncands);
	for (i = 0; i < npairs; i++)
	{
		pg_uuid_t  *c = bsearch(&olds[i], cands, ncands, sizeof(pg_uuid_t), cmp_uuid);

		if (c != NULL)
			forgotten[c - cands]++;
	}

	/*
	 * An entity joins the component holding most of its events: no fewer
	 * than any other component of the batch, and more than all the events it
	 * keeps together (any part they split into afterwards is smaller).
	 */
	adopted = palloc(sizeof(pg_uuid_t) * ncands);
	for (i = 0; i < nmoved; i = m)
	{
		pg_uuid_t  *c = bsearch(&moved[i].entity, cands, ncands, sizeof(pg_uuid_t), cmp_uuid);
		int			best = i;

		/* (of equal components, the first: as a split keeps the id on one) */
		for (m = i + 1; m < nmoved &&
			 uuid_cmp_internal(&moved[m].entity, &moved[i].entity) == 0; m++)
			if (moved[m].events > moved[best].events)
				best = m;
		if ((int64) moved[best].events <= totals[c - cands] - forgotten[c - cands])
			continue;
		graph_union(g, moved[best].root, graph_entity_node(g, &moved[best].entity));
		adopted[(*nadopted)++] = moved[best].entity;
	}
	return adopted;
}

/*
 * stitch_batch
 *		Stitch a batch: the events of g (with their identifiers) get entities,
 *		linking to and merging existing entities; the events in forget lose
 *		their assignment first, and the entities they leave are re-checked
 *		for splits.
 */
void
stitch_batch(StitchGraph *g, const char **forget, int nforget,
			 const char **touch, int ntouch)
{
	int			nidents = graph_nidents(g);
	int			nevents = graph_nevents(g);
	bool		exclusive;
	uint64	   *held = NULL;
	int			nheld = 0;
	Found	   *found = NULL;
	int			nfound = 0;
	pg_uuid_t  *left = NULL;
	int			nleft = 0;
	pg_uuid_t  *marked = NULL;
	int			nmarked = 0;
	EventPairs	forgotten;
	EventPairs	touched;
	pg_uuid_t  *adopted;
	int			nadopted;
	int			i;

	if (nidents == 0 && nforget == 0 && ntouch == 0)
		return;

	/* 1. locks: identifiers first, then the entities they lead to */
	exclusive = over_lock_budget((int64) nidents + nforget + ntouch);
	stitch_lock_global(exclusive);
	if (!exclusive && nidents > 0)
	{
		uint64	   *keys = palloc(sizeof(uint64) * nidents);

		for (i = 0; i < nidents; i++)
		{
			const char *attr;
			const char *val;

			graph_identifier(g, i, &attr, &val);
			keys[i] = hash_bytes_extended((const unsigned char *) val, strlen(val),
										  hash_bytes((const unsigned char *) attr, strlen(attr)));
		}
		(void) lock_keys(keys, nidents, CDP_LOCK_STITCH_IDENT);
	}
	for (;;)
	{
		uint64	   *want;
		int			nwant = 0;
		bool		covered = true;

		CHECK_FOR_INTERRUPTS();
		found = nidents > 0 ? lookup_identifiers(g, &nfound) : NULL;
		lookup_event_pairs(forget, nforget, &forgotten);
		left = forgotten.distinct;
		nleft = forgotten.ndistinct;
		lookup_event_pairs(touch, ntouch, &touched);
		marked = touched.distinct;
		nmarked = touched.ndistinct;
		if (exclusive)
			break;
		want = palloc(sizeof(uint64) * Max(nfound + nleft + nmarked, 1));
		for (i = 0; i < nfound; i++)
			want[nwant++] = entity_key(&found[i].entity);
		for (i = 0; i < nleft; i++)
			want[nwant++] = entity_key(&left[i]);
		for (i = 0; i < nmarked; i++)
			want[nwant++] = entity_key(&marked[i]);
		for (i = 0; i < nwant && covered; i++)
			covered = bsearch(&want[i], held, nheld, sizeof(uint64), cmp_uint64) != NULL;
		if (covered)
			break;
		/* never wait out of order: drop what we hold, lock the new set */
		unlock_keys(held, nheld, CDP_LOCK_STITCH_ENTITY);
		nheld = lock_keys(want, nwant, CDP_LOCK_STITCH_ENTITY);
		held = want;
	}

	/* 2. union-find over the batch and the entities it touches */
	for (i = 0; i < nfound; i++)
		graph_union(g, graph_identifier_node(g, found[i].ident),
					graph_entity_node(g, &found[i].entity));
	adopted = adopt_old_entities(g, &forgotten, found, nfound, &nadopted);

	{
		int			nnodes = graph_nnodes(g);
		int32	   *comp_of_root = palloc(sizeof(int32) * nnodes);
		int			ncomps = 0;
		pg_uuid_t  *comp_entity;
		bool	   *comp_has;
		TimestampTz *comp_created;
		pg_uuid_t  *ents;
		int			nents = 0;
		TimestampTz *created;
		StitchChanges c;
		bool	   *ident_known = palloc0(sizeof(bool) * Max(nidents, 1));

		memset(comp_of_root, -1, sizeof(int32) * nnodes);
		for (i = 0; i < nevents; i++)
		{
			int			node = graph_event_node(g, i);
			int			root;

			if (node < 0)
				continue;
			root = graph_find(g, node);
			if (comp_of_root[root] < 0)
				comp_of_root[root] = ncomps++;
		}
		comp_entity = palloc(sizeof(pg_uuid_t) * Max(ncomps, 1));
		comp_has = palloc0(sizeof(bool) * Max(ncomps, 1));
		comp_created = palloc(sizeof(TimestampTz) * Max(ncomps, 1));

		/* distinct existing entities, with their creation times */
		ents = palloc(sizeof(pg_uuid_t) * Max(nfound + nadopted, 1));
		{
			bool	   *seen = palloc0(sizeof(bool) * nnodes);

			for (i = 0; i < nfound; i++)
			{
				int			node = graph_entity_node(g, &found[i].entity);

				ident_known[found[i].ident] = true;
				if (!seen[node])
				{
					seen[node] = true;
					ents[nents++] = found[i].entity;
				}
			}
			/* (entities that joined the component of their moved events) */
			for (i = 0; i < nadopted; i++)
				ents[nents++] = adopted[i];
		}
		/* creation times matter only where entities merge */
		{
			int32	   *per_comp = palloc0(sizeof(int32) * Max(ncomps, 1));
			bool		merging = false;

			for (i = 0; i < nents && !merging; i++)
			{
				int			k = comp_of_root[graph_find(g, graph_entity_node(g, &ents[i]))];

				merging = (++per_comp[k] > 1);
			}
			if (merging)
				created = entity_created(ents, nents);
			else
				created = palloc0(sizeof(TimestampTz) * Max(nents, 1));
		}

		stitch_changes_init(&c, nevents, nidents, nents + ncomps);

		/* survivor of each component: its oldest entity, or a new one */
		for (i = 0; i < nents; i++)
		{
			int			k = comp_of_root[graph_find(g, graph_entity_node(g, &ents[i]))];

			if (!comp_has[k])
			{
				comp_has[k] = true;
				comp_entity[k] = ents[i];
				comp_created[k] = created[i];
			}
			else if (older_entity(&ents[i], created[i], &comp_entity[k], comp_created[k]))
			{
				comp_entity[k] = ents[i];
				comp_created[k] = created[i];
			}
		}
		for (i = 0; i < nents; i++)
		{
			int			k = comp_of_root[graph_find(g, graph_entity_node(g, &ents[i]))];

			if (uuid_cmp_internal(&comp_entity[k], &ents[i]) != 0)
			{
				c.merged[c.n_merged] = ents[i];
				c.merged_into[c.n_merged++] = comp_entity[k];
			}
			else
				c.touched[c.n_touched++] = ents[i];
		}
		for (i = 0; i < ncomps; i++)
			if (!comp_has[i])
			{
				cdp_random_uuid(&comp_entity[i]);
				c.new_entities[c.n_new_entities++] = comp_entity[i];
			}

		/* new identifiers and the batch's events */
		for (i = 0; i < nidents; i++)
		{
			int			k;

			if (ident_known[i])
				continue;
			k = comp_of_root[graph_find(g, graph_identifier_node(g, i))];
			graph_identifier(g, i, &c.ident_attr[c.n_idents], &c.ident_val[c.n_idents]);
			c.ident_entity[c.n_idents++] = comp_entity[k];
		}
		for (i = 0; i < nevents; i++)
		{
			int			node = graph_event_node(g, i);

			if (node < 0)
				continue;
			c.event_ids[c.n_events] = graph_event_id(g, i);
			c.event_entity[c.n_events++] = comp_entity[comp_of_root[graph_find(g, node)]];
		}
		/* events that lose their assignment (deleted, or changed) */
		c.del_events = forget;
		c.n_del_events = nforget;

		/* (old assignments of forgotten events are deleted before new ones are written) */
		stitch_write_changes(&c);

		/* 3. entities that lost events may have split or emptied */
		if (nleft > 0)
		{
			pg_uuid_t  *recheck = palloc(sizeof(pg_uuid_t) * nleft);
			int			nrecheck = 0;

			/* follow this batch's merges: absorbed entities live on in survivors */
			for (i = 0; i < nleft; i++)
			{
				int			node = graph_entity_node(g, &left[i]);
				int			root = node < nnodes ? graph_find(g, node) : -1;

				/* (an entity the batch's events do not reach has no component) */
				if (root >= 0 && comp_of_root[root] >= 0 && comp_has[comp_of_root[root]])
					recheck[nrecheck++] = comp_entity[comp_of_root[root]];
				else
					recheck[nrecheck++] = left[i];
			}
			nrecheck = sort_unique_uuids(recheck, nrecheck);
			{
				StitchChanges t;

				/* they lost events: recalculate them (if they survive) */
				memset(&t, 0, sizeof(t));
				t.touched = recheck;
				t.n_touched = nrecheck;
				stitch_write_changes(&t);
			}
			stitch_scope(recheck, nrecheck, true, NULL, NULL);
		}

		/* 4. entities of events that changed but kept their identifiers */
		if (ntouch > 0)
		{
			Datum		args[1];

			args[0] = cdp_text_array(touch, ntouch);
			cdp_execute(plan("touch_updated",
							 "UPDATE cdp_traits.customer_entities c "
							 "SET modified = pg_catalog.now(), calculated = NULL "
							 "FROM cdp_traits.event_entities e "
							 "WHERE e.event_id = ANY ($1) AND c.id = e.customer_entity_id "
							 "AND " NOT_MARKED_YET("c"),
							 1, TEXTARRAYOID, 0, 0),
						args, NULL, SPI_OK_UPDATE, "marking entities for recalculation");
		}

		/* 5. stored aggregate states of the entities */
		{
			pg_uuid_t  *drop = palloc(sizeof(pg_uuid_t) * Max(2 * c.n_merged + nleft + nmarked, 1));
			int			ndrop = 0;

			for (i = 0; i < c.n_merged; i++)
			{
				drop[ndrop++] = c.merged[i];
				drop[ndrop++] = c.merged_into[i];
			}
			for (i = 0; i < nleft; i++)
				drop[ndrop++] = left[i];
			for (i = 0; i < nmarked; i++)
				drop[ndrop++] = marked[i];
			ndrop = sort_unique_uuids(drop, ndrop);
			follow_states(&c, drop, ndrop);
		}
	}
}
