/*-------------------------------------------------------------------------
 *
 * agg_rank.c
 *		Ranks of recurring values: ordering small multisets without the
 *		comparator.
 *
 * unique_list sorts each group's distinct values.  Customer attributes
 * mostly take their values from a small domain (device families, page
 * categories, countries), so the same few values are compared again and
 * again, group after group; with a linguistic collation every comparison
 * is a strcoll() call.  A final function therefore keeps, for the query,
 * the distinct values it has met in sorted order (each new one placed by a
 * binary search with the comparator) in a hash table keyed by their bytes.
 * A group's values are then ordered by their ranks, integers.
 *
 * Only for types whose equal values have equal bytes (info->equalimage),
 * so that the bytes identify a value.  The cache is bounded (AGG_RANK_MAX
 * values, AGG_RANK_BYTES of them); when it is full, groups with values it
 * does not know are sorted with the comparator as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/datum.h"

#include "agg.h"

#define AGG_RANK_MAX	4096
#define AGG_RANK_BYTES	(256 * 1024)

typedef struct AggRankEntry
{
	Datum		value;			/* a copy, in the cache's context */
	uint32		hash;
	uint32		rank;			/* position in value order */
} AggRankEntry;

struct AggRankCache
{
	int			n;				/* entries */
	Size		bytes;			/* bytes of the values copied */
	AggRankEntry entries[AGG_RANK_MAX];
	int			sorted[AGG_RANK_MAX];	/* entry indexes in value order */
	int			slots[AGG_RANK_MAX * 2];	/* entry index + 1, 0 if free */
};

#define AGG_RANK_SLOT_MASK	(AGG_RANK_MAX * 2 - 1)

/*
 * value_hash
 *		Hash of a value's bytes.
 */
static uint32
value_hash(AggTypeInfo *info, Datum value)
{
	if (info->typbyval)
		return hash_bytes((const unsigned char *) &value, sizeof(Datum));
	if (info->typlen > 0)
		return hash_bytes((const unsigned char *) DatumGetPointer(value),
						  info->typlen);
	if (info->typlen == -1)
		return hash_bytes((const unsigned char *) VARDATA_ANY(DatumGetPointer(value)),
						  VARSIZE_ANY_EXHDR(DatumGetPointer(value)));
	return hash_bytes((const unsigned char *) DatumGetCString(value),
					  strlen(DatumGetCString(value)));
}

/*
 * agg_rank_entry
 *		The rank cache's entry for a value, adding it if it is new; -1 if
 *		it is new and the cache is full.  Adding a value changes the ranks
 *		of the values after it: read ranks (agg_rank_of) once a group's
 *		values all have entries.
 */
int
agg_rank_entry(AggTypeInfo *info, Datum value)
{
	AggRankCache *cache = info->ranks;
	uint32		hash = value_hash(info, value);
	uint32		slot = hash & AGG_RANK_SLOT_MASK;
	AggRankEntry *entry;
	MemoryContext oldcxt;
	Size		size;
	int			lo;
	int			hi;
	int			i;

	Assert(info->equalimage);
	if (cache == NULL)
		cache = info->ranks = MemoryContextAllocZero(info->cxt,
													 sizeof(AggRankCache));

	for (; cache->slots[slot] != 0; slot = (slot + 1) & AGG_RANK_SLOT_MASK)
	{
		entry = &cache->entries[cache->slots[slot] - 1];
		if (entry->hash == hash && agg_same_image(info, entry->value, value))
			return cache->slots[slot] - 1;
	}

	size = info->typbyval ? 0 : datumGetSize(value, false, info->typlen);
	if (cache->n >= AGG_RANK_MAX || cache->bytes + size > AGG_RANK_BYTES)
		return -1;

	/* a new value: its place in value order, by binary search */
	lo = 0;
	hi = cache->n;
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (ApplySortComparator(cache->entries[cache->sorted[mid]].value, false,
								value, false, &info->ssup) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}

	entry = &cache->entries[cache->n];
	oldcxt = MemoryContextSwitchTo(info->cxt);
	entry->value = datumCopy(value, info->typbyval, info->typlen);
	MemoryContextSwitchTo(oldcxt);
	entry->hash = hash;
	cache->bytes += size;
	memmove(&cache->sorted[lo + 1], &cache->sorted[lo],
			(cache->n - lo) * sizeof(int));
	cache->sorted[lo] = cache->n;
	cache->slots[slot] = cache->n + 1;
	cache->n++;
	for (i = lo; i < cache->n; i++)
		cache->entries[cache->sorted[i]].rank = i;
	return cache->n - 1;
}

/*
 * agg_rank_of
 *		The rank of a value, by its entry.
 */
uint32
agg_rank_of(AggTypeInfo *info, int entry)
{
	return info->ranks->entries[entry].rank;
}
