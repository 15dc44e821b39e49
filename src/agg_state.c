/*-------------------------------------------------------------------------
 *
 * agg_state.c
 *		The aggregates' state (cdp_traits.agg_state) in memory: how values
 *		of a type are stored and compared, appending to multisets and
 *		merging them, one-value states for first/last, and the generic
 *		combine and pack functions.
 *
 * See agg.h for the layout.  Nothing here is exposed to SQL except
 * agg_state_combine (every aggregate's combine function, and the transition
 * function of merge_states) and agg_state_pack (the final function of the
 * aggregates that return a state).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/nbtree.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "agg.h"

PG_FUNCTION_INFO_V1(cdp_agg_state_combine);
PG_FUNCTION_INFO_V1(cdp_agg_state_pack);

/* agg_sort_items(items, n, ssup): sort AggItems by value */
#define ST_SORT agg_sort_items
#define ST_ELEMENT_TYPE AggItem
#define ST_COMPARE_ARG_TYPE SortSupportData
#define ST_COMPARE(a, b, ssup) \
	ApplySortComparator((a)->value, false, (b)->value, false, (ssup))
#define ST_SCOPE static
#define ST_CHECK_FOR_INTERRUPTS
#define ST_DEFINE
#include "lib/sort_template.h"

/* smallest chunk for a new state, by kind */
#define AGG_MIN_MULTISET	64
#define AGG_MIN_PICK		64

/*
 * A multiset stays small (linear scan, agg.h) up to this many distinct
 * values (fewer when equality needs the comparator) and bytes of entries.
 */
#define AGG_SMALL_ITEMS				32
#define AGG_SMALL_ITEMS_COMPARATOR	8
#define AGG_SMALL_BYTES				1024

/*
 * A small multiset that outgrows its first chunk gets at least this much:
 * chunks freed by growing states are rarely reused (all groups grow at
 * about the same pace), so every intermediate size would be lost memory.
 */
#define AGG_SMALL_GROWN				256

/* entries moved ahead in a small multiset are at most this big */
#define AGG_TRANSPOSE_MAX			64

/*
 * type_equalimage
 *		Whether values of a type that compare equal (with a collation) are
 *		always bitwise equal: the btree opclass's equalimage support
 *		function, as B-tree deduplication asks it.  Then equality can be
 *		tested with memcmp.
 */
static bool
type_equalimage(TypeCacheEntry *typentry, Oid collid)
{
	Oid			proc;

	if (!OidIsValid(typentry->btree_opf))
		return false;
	proc = get_opfamily_proc(typentry->btree_opf, typentry->btree_opintype,
							 typentry->btree_opintype, BTEQUALIMAGE_PROC);
	if (!OidIsValid(proc))
		return false;
	if (!OidIsValid(collid) && type_is_collatable(typentry->type_id))
		return false;
	return DatumGetBool(OidFunctionCall1Coll(proc, collid,
											 ObjectIdGetDatum(typentry->btree_opintype)));
}

/*
 * agg_type_info
 *		The storage and ordering of values of type typid compared with
 *		collation collid, cached in the calling function's fn_extra.
 *		Raises the error for a type without a default btree ordering.
 */
AggTypeInfo *
agg_type_info(FunctionCallInfo fcinfo, Oid typid, Oid collid)
{
	AggTypeInfo *info = (AggTypeInfo *) fcinfo->flinfo->fn_extra;
	TypeCacheEntry *typentry;
	Oid			basetypid;

	if (info != NULL && info->typid == typid && info->collid == collid)
		return info;
	if (!OidIsValid(typid))
		elog(ERROR, "could not determine the type of the aggregated values");

	basetypid = getBaseType(typid);
	typentry = lookup_type_cache(basetypid, TYPECACHE_LT_OPR |
								 TYPECACHE_BTREE_OPFAMILY);
	if (!OidIsValid(typentry->lt_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("could not identify an ordering operator for type %s",
						format_type_be(typid)),
				 errdetail("The cdp_traits aggregates compare values with the default btree operator class of their type."),
				 errhint("Cast the values to a type that has one, text for example.")));

	if (info == NULL)
		info = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
									  sizeof(AggTypeInfo));
	info->cxt = fcinfo->flinfo->fn_mcxt;
	info->typid = typid;
	info->basetypid = basetypid;
	info->collid = collid;
	info->typlen = typentry->typlen;
	info->typbyval = typentry->typbyval;
	info->typalign = typentry->typalign;
	info->packable = (typentry->typlen == -1 &&
					  typentry->typstorage != TYPSTORAGE_PLAIN);
	info->equalimage = type_equalimage(typentry, collid);
	info->small_items = info->equalimage ?
		AGG_SMALL_ITEMS : AGG_SMALL_ITEMS_COMPARATOR;
	info->hint_typid = InvalidOid;
	info->hint_domain = false;
	info->domain_extra = NULL;
	info->io_ready = false;

	memset(&info->ssup, 0, sizeof(SortSupportData));
	info->ssup.ssup_cxt = info->cxt;
	info->ssup.ssup_collation = collid;
	info->ssup.ssup_reverse = false;
	info->ssup.ssup_nulls_first = false;
	info->ssup.abbreviate = false;
	PrepareSortSupportFromOrderingOp(typentry->lt_opr, &info->ssup);

	fcinfo->flinfo->fn_extra = info;
	return info;
}

/*
 * agg_input_type_info
 *		agg_type_info for the aggregated argument argno of a transition
 *		function (its declared type, the aggregate's input collation).  The
 *		type of an argument does not change between calls, so a cached
 *		entry with the same collation is returned without looking again.
 */
AggTypeInfo *
agg_input_type_info(FunctionCallInfo fcinfo, int argno)
{
	AggTypeInfo *info = (AggTypeInfo *) fcinfo->flinfo->fn_extra;
	Oid			collid = PG_GET_COLLATION();

	if (info != NULL && info->collid == collid)
		return info;
	return agg_type_info(fcinfo,
						 get_fn_expr_argtype(fcinfo->flinfo, argno), collid);
}

/*
 * agg_check_hint
 *		A function returning values of the state's type learns that type
 *		from an argument (the aggregate's input, or a NULL of the type given
 *		by the caller of a state_* function).  Make sure it is the type the
 *		state holds, or a domain over it: a datum of another type would be
 *		misread.
 */
void
agg_check_hint(FunctionCallInfo fcinfo, AggTypeInfo *info, int argno)
{
	Oid			hint = get_fn_expr_argtype(fcinfo->flinfo, argno);

	if (!OidIsValid(hint) || hint == info->hint_typid)
		return;
	if (getBaseType(hint) != info->basetypid)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cdp_traits.agg_state holds values of type %s, not %s",
						format_type_be(info->basetypid), format_type_be(hint))));
	info->hint_typid = hint;
	info->hint_domain = (hint != info->basetypid);
	info->domain_extra = NULL;
}

/*
 * agg_result_type
 *		The type of the values a final function returns: the checked hint
 *		(which may be a domain), else the state's type.
 */
Oid
agg_result_type(AggTypeInfo *info)
{
	return OidIsValid(info->hint_typid) ? info->hint_typid : info->basetypid;
}

/*
 * agg_result_check
 *		A value returned as a domain must satisfy the domain's constraints
 *		(a state of text finished as a domain over text, for instance).
 */
void
agg_result_check(AggTypeInfo *info, Datum value)
{
	if (info->hint_domain)
		domain_check(value, false, info->hint_typid, &info->domain_extra,
					 info->cxt);
}

/*
 * agg_check_context
 *		Transition and combine functions modify their state in place: they
 *		may only be called by the executor's aggregate machinery.
 */
void
agg_check_context(FunctionCallInfo fcinfo, const char *what)
{
	if (!AggCheckCallContext(fcinfo, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s can only be called as an aggregate support function",
						what)));
}

/*
 * agg_kind_name
 *		What an aggregate state of a kind is for, for messages.
 */
const char *
agg_kind_name(int kind)
{
	switch (kind)
	{
		case AGG_KIND_FREQUENCY:
			return "frequency";
		case AGG_KIND_DISTINCT:
			return "unique";
		case AGG_KIND_FIRST:
			return "first";
		case AGG_KIND_LAST:
			return "last";
	}
	return "unknown";
}

/*
 * agg_state_check
 *		Cheap consistency check of an in-memory image.  States are only made
 *		by this extension, so failing it means a bug or a value written by
 *		an incompatible version of the library.
 */
void
agg_state_check(const CdpAggState *state)
{
	if (state->version != AGG_STATE_VERSION ||
		state->kind < AGG_KIND_FREQUENCY || state->kind > AGG_KIND_LAST ||
		state->used < AGG_HEADER_SIZE || state->used > VARSIZE(state) ||
		state->sorted_end < AGG_HEADER_SIZE ||
		state->sorted_end > state->used ||
		!OidIsValid(state->typid))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid cdp_traits.agg_state value"),
				 errdetail("Version %d, kind %d, %u of %u bytes used.",
						   state->version, state->kind, state->used,
						   (uint32) VARSIZE(state))));
}

/*
 * agg_state_arg
 *		A state argument for reading: detoasted (a stored state may be
 *		compressed or have a short header) and checked.
 */
CdpAggState *
agg_state_arg(FunctionCallInfo fcinfo, int argno)
{
	CdpAggState *state = (CdpAggState *) PG_DETOAST_DATUM(PG_GETARG_DATUM(argno));

	agg_state_check(state);
	return state;
}

/*
 * agg_state_arg_inplace
 *		The transition state argument of a transition or combine function:
 *		always a state this extension built in the aggregate context, which
 *		is modified in place.
 */
CdpAggState *
agg_state_arg_inplace(FunctionCallInfo fcinfo, int argno)
{
	CdpAggState *state = (CdpAggState *) PG_GETARG_POINTER(argno);

	if (!VARATT_IS_4B_U(state))
		elog(ERROR, "unexpected representation of a cdp_traits.agg_state transition value");
	agg_state_check(state);
	return state;
}

/*
 * agg_value_size
 *		Size of the image a value is stored as; *image gets the datum to
 *		store (a detoasted varlena if it was compressed or out of line).
 *		Byval values are stored as a whole Datum; varlenas of types that
 *		allow it with a short header when they fit one.
 */
Size
agg_value_size(AggTypeInfo *info, Datum value, Datum *image)
{
	struct varlena *v;

	*image = value;
	if (info->typbyval)
		return sizeof(Datum);
	if (info->typlen > 0)
		return info->typlen;
	if (info->typlen == -2)
		return strlen(DatumGetCString(value)) + 1;

	v = (struct varlena *) DatumGetPointer(value);
	if (VARATT_IS_EXTENDED(v) && !VARATT_IS_SHORT(v))
	{
		v = pg_detoast_datum_packed(v);
		*image = PointerGetDatum(v);
	}
	if (VARATT_IS_SHORT(v))
		return VARSIZE_SHORT(v);
	if (info->packable && VARATT_CAN_MAKE_SHORT(v))
		return VARATT_CONVERTED_SHORT_SIZE(v);
	return VARSIZE(v);
}

/*
 * agg_store_value
 *		Write a value image of size bytes (from agg_value_size) at dst,
 *		which is MAXALIGNed.
 */
void
agg_store_value(AggTypeInfo *info, char *dst, Datum image, Size size)
{
	if (info->typbyval)
		*(Datum *) dst = image;
	else if (info->typlen == -1)
	{
		struct varlena *v = (struct varlena *) DatumGetPointer(image);

		if (!VARATT_IS_SHORT(v) && size < VARSIZE(v))
		{
			/* convert to a short header, as heap_fill_tuple does */
			SET_VARSIZE_SHORT(dst, size);
			memcpy(dst + VARHDRSZ_SHORT, VARDATA(v), size - VARHDRSZ_SHORT);
		}
		else
			memcpy(dst, v, size);
	}
	else
		memcpy(dst, DatumGetPointer(image), size);
}

/*
 * agg_entry_value
 *		The datum of a value stored at ptr.
 */
Datum
agg_entry_value(AggTypeInfo *info, char *ptr)
{
	if (info->typbyval)
		return *(Datum *) ptr;
	return PointerGetDatum(ptr);
}

/*
 * agg_entry_size
 *		Size of the entry at entry (prefix, value and alignment padding).
 */
Size
agg_entry_size(AggTypeInfo *info, int kind, char *entry)
{
	Size		prefix = AGG_PREFIX_SIZE(kind);
	char	   *v = entry + prefix;
	Size		size;

	if (info->typbyval)
		size = sizeof(Datum);
	else if (info->typlen > 0)
		size = info->typlen;
	else if (info->typlen == -1)
		size = VARSIZE_ANY(v);
	else
		size = strlen(v) + 1;
	return MAXALIGN(prefix + size);
}

/*
 * agg_same_image
 *		Whether the value stored at stored has the same bytes as image.
 *		Equal bytes mean equal values for every btree opclass, so this is a
 *		safe shortcut (the converse does not hold: 1.0 and 1.00 differ).
 */
static inline bool
agg_same_image(AggTypeInfo *info, char *stored, Datum image, Size size)
{
	if (info->typbyval)
		return *(Datum *) stored == image;
	if (info->typlen > 0)
		return memcmp(stored, DatumGetPointer(image), info->typlen) == 0;
	if (info->typlen == -1)
	{
		char	   *v = DatumGetPointer(image);
		Size		len = VARSIZE_ANY_EXHDR(v);

		return VARSIZE_ANY_EXHDR(stored) == len &&
			memcmp(VARDATA_ANY(stored), VARDATA_ANY(v), len) == 0;
	}
	return strcmp(stored, DatumGetCString(image)) == 0;
}

/*
 * agg_result_value
 *		A stored value as a function result: a copy in the current memory
 *		context (never a pointer into the state, whose memory the executor
 *		may reuse), with a regular 4-byte varlena header.
 */
Datum
agg_result_value(AggTypeInfo *info, Datum value)
{
	char	   *v;

	if (info->typbyval)
		return value;
	v = DatumGetPointer(value);
	if (info->typlen == -1 && VARATT_IS_SHORT(v))
	{
		Size		len = VARSIZE_SHORT(v) - VARHDRSZ_SHORT;
		struct varlena *r = palloc(len + VARHDRSZ);

		SET_VARSIZE(r, len + VARHDRSZ);
		memcpy(VARDATA(r), VARDATA_SHORT(v), len);
		return PointerGetDatum(r);
	}
	return datumCopy(value, false, info->typlen);
}

/*
 * agg_capacity_for
 *		The chunk size (a power of two, at least min) for need bytes.
 */
static Size
agg_capacity_for(Size need, Size min)
{
	Size		cap;

	if (need > AGG_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cdp_traits aggregate state would exceed 1 GB"),
				 errdetail("The state of one group holds every distinct value of the group.")));
	cap = Max(need, min);
	cap = pg_nextpower2_64(cap);
	return Min(cap, AGG_MAX_SIZE);
}

/*
 * agg_state_new
 *		An empty state with room for need bytes of entries, allocated in the
 *		current (per-call) memory context: returned from a transition
 *		function, nodeAgg copies it into the aggregate context.
 */
CdpAggState *
agg_state_new(AggTypeInfo *info, int kind, Size need)
{
	Size		cap = agg_capacity_for(AGG_HEADER_SIZE + need,
									   AGG_KIND_IS_MULTISET(kind) ?
									   AGG_MIN_MULTISET : AGG_MIN_PICK);
	CdpAggState *state = palloc0(cap);

	SET_VARSIZE(state, cap);
	state->version = AGG_STATE_VERSION;
	state->kind = kind;
	state->typid = info->basetypid;
	state->collid = info->collid;
	state->used = AGG_HEADER_SIZE;
	state->nitems = 0;
	state->sorted_end = AGG_HEADER_SIZE;
	state->flags = AGG_KIND_IS_MULTISET(kind) ? AGG_FLAG_SMALL : 0;
	return state;
}

/*
 * agg_state_copy_cap
 *		A copy of a state in a chunk of cap bytes (the rest zeroed).
 */
static CdpAggState *
agg_state_copy_cap(const CdpAggState *state, Size cap)
{
	CdpAggState *copy = palloc(cap);

	memcpy(copy, state, state->used);
	memset((char *) copy + state->used, 0, cap - state->used);
	SET_VARSIZE(copy, cap);
	return copy;
}

/*
 * agg_state_copy
 *		A copy of a state with room for need more bytes.
 */
CdpAggState *
agg_state_copy(const CdpAggState *state, Size need)
{
	return agg_state_copy_cap(state,
							  agg_capacity_for(state->used + need,
											   AGG_KIND_IS_MULTISET(state->kind) ?
											   AGG_MIN_MULTISET : AGG_MIN_PICK));
}

/*
 * agg_items_reserve
 *		Make info->items hold at least n items.
 */
static AggItem *
agg_items_reserve(AggTypeInfo *info, Size n)
{
	if (info->items_cap < n)
	{
		Size		cap = Max(n, 64);

		if (info->items)
			pfree(info->items);
		info->items = MemoryContextAllocHuge(info->cxt, cap * sizeof(AggItem));
		info->items_cap = cap;
	}
	return info->items;
}

/*
 * agg_scratch_reserve
 *		Make info->scratch (MAXALIGNed) hold at least size bytes.
 */
static char *
agg_scratch_reserve(AggTypeInfo *info, Size size)
{
	if (info->scratch_cap < size)
	{
		Size		cap = Max(size, 1024);

		if (info->scratch)
			pfree(info->scratch);
		info->scratch = MemoryContextAllocHuge(info->cxt, cap);
		info->scratch_cap = cap;
	}
	return info->scratch;
}

/*
 * agg_multiset_merge
 *		Sort the unsorted tail of a multiset state, collapse equal values
 *		(adding up their weights) and merge it with the sorted prefix.
 *		Writes the resulting entries, distinct and in order, to info->scratch
 *		and returns their total size; *count gets their number.  The state
 *		is not changed.
 */
static Size
agg_multiset_merge(AggTypeInfo *info, CdpAggState *state, uint32 *count)
{
	bool		weighted = (state->kind == AGG_KIND_FREQUENCY);
	Size		prefix = AGG_PREFIX_SIZE(state->kind);
	char	   *base = (char *) state;
	char	   *p = base + state->sorted_end;
	char	   *end = base + state->used;
	char	   *h = base + AGG_HEADER_SIZE;
	char	   *hend = p;
	AggItem    *tail;
	Size		ntail = 0;
	Size		i;
	Size		j;
	char	   *out;
	Size		outlen = 0;
	uint32		nout = 0;
	Datum		hvalue = (Datum) 0;
	Size		hsize = 0;

	/* the tail's entries, sorted, equal values collapsed */
	tail = agg_items_reserve(info, state->nitems);
	while (p < end)
	{
		AggItem    *item = &tail[ntail++];

		item->entry = p;
		item->size = agg_entry_size(info, state->kind, p);
		item->value = agg_entry_value(info, p + prefix);
		item->weight = weighted ? *(float8 *) p : 0;
		p += item->size;
	}
	if (ntail > 1)
	{
		agg_sort_items(tail, ntail, &info->ssup);
		for (i = 1, j = 0; i < ntail; i++)
		{
			if (ApplySortComparator(tail[j].value, false, tail[i].value, false,
									&info->ssup) == 0)
				tail[j].weight += tail[i].weight;
			else
				tail[++j] = tail[i];
		}
		ntail = j + 1;
	}

	/* merge with the prefix */
	out = agg_scratch_reserve(info, state->used - AGG_HEADER_SIZE);
	if (h < hend)
	{
		hsize = agg_entry_size(info, state->kind, h);
		hvalue = agg_entry_value(info, h + prefix);
	}
	i = 0;
	while (h < hend || i < ntail)
	{
		int			c;

		if (h >= hend)
			c = 1;
		else if (i >= ntail)
			c = -1;
		else
			c = ApplySortComparator(hvalue, false, tail[i].value, false,
									&info->ssup);
		if (c <= 0)
		{
			memcpy(out + outlen, h, hsize);
			if (c == 0)
			{
				if (weighted)
					*(float8 *) (out + outlen) += tail[i].weight;
				i++;
			}
			outlen += hsize;
			h += hsize;
			if (h < hend)
			{
				hsize = agg_entry_size(info, state->kind, h);
				hvalue = agg_entry_value(info, h + prefix);
			}
		}
		else
		{
			memcpy(out + outlen, tail[i].entry, tail[i].size);
			if (weighted)
				*(float8 *) (out + outlen) = tail[i].weight;
			outlen += tail[i].size;
			i++;
		}
		nout++;
	}
	*count = nout;
	return outlen;
}

/*
 * agg_multiset_compact
 *		Merge the unsorted tail into the sorted prefix, in place.
 */
static void
agg_multiset_compact(AggTypeInfo *info, CdpAggState *state)
{
	uint32		count;
	Size		len = agg_multiset_merge(info, state, &count);

	memcpy((char *) state + AGG_HEADER_SIZE, info->scratch, len);
	state->used = AGG_HEADER_SIZE + len;
	state->sorted_end = state->used;
	state->nitems = count;
}

/*
 * agg_make_room
 *		Make room for need more bytes in a full multiset state: compact it,
 *		and if it is still more than half full, move it to a chunk at least
 *		twice as big (so that the next compaction is at least as many
 *		appends away as the state has entries: the sorting stays amortized
 *		O(log n) per value).  Returns the state, which may have moved.
 */
static CdpAggState *
agg_make_room(AggTypeInfo *info, CdpAggState *state, Size need)
{
	Size		cap = AGG_CAPACITY(state);
	Size		newcap = cap;

	if (state->sorted_end < state->used)
		agg_multiset_compact(info, state);
	while (state->used + need > newcap / 2 && newcap < AGG_MAX_SIZE)
		newcap = Min(newcap * 2, AGG_MAX_SIZE);
	if (state->used + need > newcap)
		(void) agg_capacity_for(state->used + need, 0); /* raises the error */
	if (newcap != cap)
		state = agg_state_copy_cap(state, newcap);
	return state;
}

/*
 * agg_small_equal
 *		Whether the value stored at stored equals image (in a small
 *		multiset): same bytes, or for types whose equal values may differ in
 *		their bytes (numeric, float, nondeterministic collations), the
 *		comparator says so.
 */
static inline bool
agg_small_equal(AggTypeInfo *info, char *stored, Datum image, Size size)
{
	if (agg_same_image(info, stored, image, size))
		return true;
	if (info->equalimage)
		return false;
	return ApplySortComparator(agg_entry_value(info, stored), false,
							   image, false, &info->ssup) == 0;
}

/*
 * agg_transpose
 *		Swap the adjacent entries a (sa bytes) and b (sb bytes, right after
 *		a).  Big entries are left where they are.
 */
static inline void
agg_transpose(char *a, Size sa, char *b, Size sb)
{
	char		tmp[AGG_TRANSPOSE_MAX];

	if (sa > AGG_TRANSPOSE_MAX)
		return;
	memcpy(tmp, a, sa);
	memmove(a, b, sb);
	memcpy(a + sb, tmp, sa);
}

/*
 * agg_small_locate
 *		Find a value in a small multiset: the entry holding it, or NULL.
 *		*prev and *prevsize get the entry before it (NULL if none), *size
 *		its size.  The loops for equal-image varlenas (text with a
 *		deterministic collation) and by-value types are the hot paths and
 *		are spelled out.
 */
static inline char *
agg_small_locate(AggTypeInfo *info, CdpAggState *state, Datum image,
				 Size vsize, char **prev, Size *prevsize, Size *size)
{
	Size		prefix = AGG_PREFIX_SIZE(state->kind);
	char	   *p = (char *) state + AGG_HEADER_SIZE;
	char	   *end = (char *) state + state->used;

	*prev = NULL;
	*prevsize = 0;
	if (info->equalimage && info->typlen == -1)
	{
		char	   *data = VARDATA_ANY(DatumGetPointer(image));
		Size		len = VARSIZE_ANY_EXHDR(DatumGetPointer(image));

		while (p < end)
		{
			char	   *v = p + prefix;
			Size		esize = MAXALIGN(prefix + VARSIZE_ANY(v));

			if (VARSIZE_ANY_EXHDR(v) == len &&
				(len == 0 || (VARDATA_ANY(v)[0] == data[0] &&
							  memcmp(VARDATA_ANY(v), data, len) == 0)))
			{
				*size = esize;
				return p;
			}
			*prev = p;
			*prevsize = esize;
			p += esize;
		}
		return NULL;
	}
	if (info->equalimage && info->typbyval)
	{
		Size		esize = MAXALIGN(prefix + sizeof(Datum));

		for (; p < end; p += esize)
		{
			if (*(Datum *) (p + prefix) == image)
			{
				*size = esize;
				return p;
			}
			*prev = p;
			*prevsize = esize;
		}
		return NULL;
	}
	while (p < end)
	{
		Size		esize = agg_entry_size(info, state->kind, p);

		if (agg_small_equal(info, p + prefix, image, vsize))
		{
			*size = esize;
			return p;
		}
		*prev = p;
		*prevsize = esize;
		p += esize;
	}
	return NULL;
}

/*
 * agg_small_find
 *		Look a value up in a small multiset; if it is there, add the weight
 *		(frequency) and move it one step ahead when it now weighs more than
 *		its predecessor (unique states: on every hit), and return true.
 */
static bool
agg_small_find(AggTypeInfo *info, CdpAggState *state, Datum image, Size vsize,
			   float8 weight)
{
	char	   *prev;
	Size		prevsize;
	Size		size;
	char	   *p = agg_small_locate(info, state, image, vsize, &prev, &prevsize,
									 &size);

	if (p == NULL)
		return false;
	if (state->kind == AGG_KIND_FREQUENCY)
	{
		*(float8 *) p += weight;
		if (prev != NULL && *(float8 *) p > *(float8 *) prev)
			agg_transpose(prev, prevsize, p, size);
	}
	else if (prev != NULL)
		agg_transpose(prev, prevsize, p, size);
	return true;
}

/*
 * agg_multiset_add
 *		Add a value (with a weight, for a frequency state) to a multiset
 *		state, creating the state if it is NULL.  Returns the state, which
 *		may have moved.
 *
 *		A small state adds to the value's entry if it has one, else appends
 *		one; past the small limits it becomes a large state (its distinct,
 *		unsorted entries become the tail).  A large state appends, and sorts
 *		and merges its tail when the chunk is full.
 */
CdpAggState *
agg_multiset_add(AggTypeInfo *info, CdpAggState *state, int kind,
				 Datum value, float8 weight)
{
	Size		prefix = AGG_PREFIX_SIZE(kind);
	Datum		image;
	Size		vsize = agg_value_size(info, value, &image);
	Size		esize = MAXALIGN(prefix + vsize);
	char	   *dst;

	if (state == NULL)
		state = agg_state_new(info, kind, esize);
	else if (state->flags & AGG_FLAG_SMALL)
	{
		if (agg_small_find(info, state, image, vsize, weight))
			return state;
		if (state->nitems >= info->small_items ||
			state->used - AGG_HEADER_SIZE + esize > AGG_SMALL_BYTES)
			state->flags &= ~AGG_FLAG_SMALL;
		else if (state->used + esize > AGG_CAPACITY(state))
			state = agg_state_copy_cap(state,
									   agg_capacity_for(state->used + esize,
														AGG_SMALL_GROWN));
	}
	if (!(state->flags & AGG_FLAG_SMALL) &&
		state->used + esize > AGG_CAPACITY(state))
		state = agg_make_room(info, state, esize);

	dst = (char *) state + state->used;
	if (kind == AGG_KIND_FREQUENCY)
		*(float8 *) dst = weight;
	agg_store_value(info, dst + prefix, image, vsize);
	state->used += esize;
	state->nitems++;
	return state;
}

/*
 * agg_multiset_union
 *		Add the entries of other to a multiset state (NULL: a copy of
 *		other).  A small state adds them one by one; a large one appends
 *		them all as unsorted tail (other may even have been sorted with
 *		another collation), for the next compaction to merge.
 */
CdpAggState *
agg_multiset_union(AggTypeInfo *info, CdpAggState *state, CdpAggState *other)
{
	Size		need = other->used - AGG_HEADER_SIZE;
	Size		prefix = AGG_PREFIX_SIZE(other->kind);
	char	   *p = (char *) other + AGG_HEADER_SIZE;
	char	   *end = (char *) other + other->used;

	if (state == NULL)
		return agg_state_copy(other, 0);

	/* one by one while the state is small */
	while (p < end && (state->flags & AGG_FLAG_SMALL))
	{
		Size		size = agg_entry_size(info, other->kind, p);

		state = agg_multiset_add(info, state, other->kind,
								 agg_entry_value(info, p + prefix),
								 other->kind == AGG_KIND_FREQUENCY ?
								 *(float8 *) p : 0);
		p += size;
		need -= size;
	}
	if (need == 0)
		return state;

	/* the rest in one piece */
	if (state->used + need > AGG_CAPACITY(state))
		state = agg_make_room(info, state, need);
	memcpy((char *) state + state->used, p, need);
	state->used += need;
	while (p < end)
	{
		state->nitems++;
		p += agg_entry_size(info, other->kind, p);
	}
	return state;
}

/*
 * agg_multiset_sorted
 *		The distinct values of a multiset state in ascending order, with
 *		their total weights: an array in info->items, valid until the next
 *		use of info.  *count gets its length.  The state is not changed.
 */
AggItem *
agg_multiset_sorted(AggTypeInfo *info, CdpAggState *state, uint32 *count)
{
	Size		prefix = AGG_PREFIX_SIZE(state->kind);
	bool		weighted = (state->kind == AGG_KIND_FREQUENCY);
	char	   *p;
	char	   *end;
	AggItem    *items;
	uint32		n = 0;

	if (state->sorted_end < state->used)
	{
		uint32		merged;
		Size		len = agg_multiset_merge(info, state, &merged);

		p = info->scratch;
		end = p + len;
	}
	else
	{
		p = (char *) state + AGG_HEADER_SIZE;
		end = (char *) state + state->used;
	}

	items = agg_items_reserve(info, state->nitems);
	while (p < end)
	{
		AggItem    *item = &items[n++];

		item->entry = p;
		item->size = agg_entry_size(info, state->kind, p);
		item->value = agg_entry_value(info, p + prefix);
		item->weight = weighted ? *(float8 *) p : 0;
		p += item->size;
	}
	*count = n;
	return items;
}

/*
 * agg_pick_at
 *		The timestamp of a first/last state.
 */
int64
agg_pick_at(CdpAggState *state)
{
	return *(int64 *) ((char *) state + AGG_HEADER_SIZE);
}

/*
 * agg_pick_value
 *		The value of a first/last state.
 */
Datum
agg_pick_value(AggTypeInfo *info, CdpAggState *state)
{
	return agg_entry_value(info, (char *) state + AGG_HEADER_SIZE + sizeof(int64));
}

/*
 * agg_pick_set
 *		Make a first/last state hold (at, value); NULL state: a new one.
 *		Overwrites in place when the value fits.  Returns the state, which
 *		may have moved.
 */
CdpAggState *
agg_pick_set(AggTypeInfo *info, CdpAggState *state, int kind, int64 at,
			 Datum value)
{
	Datum		image;
	Size		vsize = agg_value_size(info, value, &image);
	Size		need = MAXALIGN(sizeof(int64) + vsize);
	char	   *dst;

	if (state == NULL || AGG_HEADER_SIZE + need > AGG_CAPACITY(state))
		state = agg_state_new(info, kind, need);
	dst = (char *) state + AGG_HEADER_SIZE;
	*(int64 *) dst = at;
	agg_store_value(info, dst + sizeof(int64), image, vsize);
	state->used = AGG_HEADER_SIZE + need;
	state->sorted_end = state->used;
	state->nitems = 1;
	return state;
}

/*
 * agg_pick_better
 *		Whether (at, value) beats what a first/last state holds: an earlier
 *		(first) or later (last) timestamp; on a tie, the smaller (first) or
 *		larger (last) value.
 */
bool
agg_pick_better(AggTypeInfo *info, CdpAggState *state, int64 at, Datum value)
{
	int64		cur = agg_pick_at(state);
	int			c;

	if (at != cur)
		return (state->kind == AGG_KIND_FIRST) ? (at < cur) : (at > cur);
	c = ApplySortComparator(value, false, agg_pick_value(info, state), false,
							&info->ssup);
	return (state->kind == AGG_KIND_FIRST) ? (c < 0) : (c > 0);
}

/*
 * agg_pick_union
 *		Combine two first/last states: the better of the two.
 */
CdpAggState *
agg_pick_union(AggTypeInfo *info, CdpAggState *state, CdpAggState *other)
{
	if (state == NULL)
		return agg_state_copy(other, 0);
	if (!agg_pick_better(info, state, agg_pick_at(other),
						 agg_pick_value(info, other)))
		return state;
	if (other->used > AGG_CAPACITY(state))
		return agg_state_copy(other, 0);
	memcpy((char *) state + AGG_HEADER_SIZE, (char *) other + AGG_HEADER_SIZE,
		   other->used - AGG_HEADER_SIZE);
	state->used = other->used;
	state->sorted_end = other->used;
	state->nitems = 1;
	return state;
}

/*
 * agg_state_pack_copy
 *		A copy of a state without spare room, multisets sorted and merged:
 *		the form states are stored and sent in.
 */
CdpAggState *
agg_state_pack_copy(AggTypeInfo *info, CdpAggState *state)
{
	CdpAggState *copy;

	if (AGG_KIND_IS_MULTISET(state->kind) &&
		(state->sorted_end < state->used || (state->flags & AGG_FLAG_SMALL)))
	{
		uint32		count;
		Size		len = agg_multiset_merge(info, state, &count);

		copy = palloc(AGG_HEADER_SIZE + len);
		memcpy(copy, state, AGG_HEADER_SIZE);
		memcpy((char *) copy + AGG_HEADER_SIZE, info->scratch, len);
		copy->used = AGG_HEADER_SIZE + len;
		copy->nitems = count;
	}
	else
	{
		copy = palloc(state->used);
		memcpy(copy, state, state->used);
	}
	SET_VARSIZE(copy, copy->used);
	copy->sorted_end = copy->used;
	copy->flags &= ~AGG_FLAG_SMALL;
	return copy;
}

/*
 * cdp_agg_state_combine
 *		agg_state_combine(agg_state, agg_state): the combine function of
 *		every aggregate with an agg_state, and the transition function of
 *		merge_states.  Both states must be of the same kind and type.
 */
Datum
cdp_agg_state_combine(PG_FUNCTION_ARGS)
{
	CdpAggState *state;
	CdpAggState *other;
	AggTypeInfo *info;

	agg_check_context(fcinfo, "agg_state_combine");
	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	other = agg_state_arg(fcinfo, 1);
	state = PG_ARGISNULL(0) ? NULL : agg_state_arg_inplace(fcinfo, 0);
	if (state != NULL &&
		(state->kind != other->kind || state->typid != other->typid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cannot combine a %s state of type %s with a %s state of type %s",
						agg_kind_name(state->kind), format_type_be(state->typid),
						agg_kind_name(other->kind), format_type_be(other->typid))));

	/*
	 * The first state of a group: nodeAgg copies what we return into the
	 * aggregate context (after detoasting, other is a regular varlena with a
	 * 4-byte header), so it can be returned as it is.
	 */
	if (state == NULL)
		PG_RETURN_POINTER(other);

	info = agg_type_info(fcinfo, state->typid, state->collid);
	if (AGG_KIND_IS_MULTISET(other->kind))
		state = agg_multiset_union(info, state, other);
	else
		state = agg_pick_union(info, state, other);
	PG_RETURN_POINTER(state);
}

/*
 * cdp_agg_state_pack
 *		agg_state_pack(agg_state): final function of the aggregates that
 *		return a state (frequency_state, unique_state, first_state,
 *		last_state, merge_states): the state without spare room.
 */
Datum
cdp_agg_state_pack(PG_FUNCTION_ARGS)
{
	CdpAggState *state = agg_state_arg(fcinfo, 0);
	AggTypeInfo *info = agg_type_info(fcinfo, state->typid, state->collid);

	PG_RETURN_POINTER(agg_state_pack_copy(info, state));
}
