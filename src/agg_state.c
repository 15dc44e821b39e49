/*-------------------------------------------------------------------------
 *
 * agg_state.c
 *		The aggregates' state (cdp_traits.agg_state) in memory: how values
 *		of a type are compared (type info cached in fn_extra), checks of
 *		arguments and results, allocating and copying states, the one-value
 *		states of first/last, and the generic combine and pack functions.
 *		Multisets are in agg_multiset_state.c.
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
#include "port/pg_bitutils.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "agg.h"

PG_FUNCTION_INFO_V1(cdp_agg_state_combine);
PG_FUNCTION_INFO_V1(cdp_agg_state_pack);
PG_FUNCTION_INFO_V1(cdp_agg_state_merge);

/* smallest chunk for a new state */
#define AGG_MIN_STATE		64

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
 * How many types (with collations) one function call site keeps the info
 * of.  A column of stored states may hold states of several types or
 * collations (a rollup of many attributes); a call site that met more
 * types than this forgets the least recently used one, and frees
 * everything it had allocated for it.
 */
#define AGG_TYPE_CACHE_SIZE	8

/*
 * type_info_init
 *		Fill info (its memory context empty) for type typid, whose base type
 *		basetypid has the ordering typentry, compared with collation collid.
 */
static void
type_info_init(AggTypeInfo *info, Oid typid, Oid basetypid, Oid collid,
			   TypeCacheEntry *typentry)
{
	MemoryContext cxt = info->cxt;
	AggTypeInfo *next = info->next;

	memset(info, 0, sizeof(AggTypeInfo));
	info->cxt = cxt;
	info->next = next;
	info->basetypid = basetypid;
	info->collid = collid;
	info->typlen = typentry->typlen;
	info->typbyval = typentry->typbyval;
	info->typalign = typentry->typalign;
	info->packable = (typentry->typlen == -1 &&
					  typentry->typstorage != TYPSTORAGE_PLAIN);
	info->alignby = (typentry->typalign == TYPALIGN_DOUBLE ? ALIGNOF_DOUBLE :
					 typentry->typalign == TYPALIGN_INT ? ALIGNOF_INT :
					 typentry->typalign == TYPALIGN_SHORT ? ALIGNOF_SHORT : 1);
	info->equalimage = type_equalimage(typentry, collid);
	info->hint_typid = InvalidOid;

	info->ssup.ssup_cxt = info->cxt;
	info->ssup.ssup_collation = collid;
	info->ssup.ssup_reverse = false;
	info->ssup.ssup_nulls_first = false;
	info->ssup.abbreviate = false;
	PrepareSortSupportFromOrderingOp(typentry->lt_opr, &info->ssup);

	/* valid only now (an error above leaves the entry matching nothing) */
	info->typid = typid;
}

/*
 * agg_type_info
 *		The storage and ordering of values of type typid compared with
 *		collation collid, cached in the calling function's fn_extra: a list
 *		of up to AGG_TYPE_CACHE_SIZE entries, the most recently used first
 *		(fn_extra points to it).  Each entry allocates in a memory context
 *		of its own, reset when the entry is reused for another type, so
 *		that a call site going through states of many types (or
 *		collations) does not accumulate memory row after row.  Raises the
 *		error for a type without a default btree ordering.
 */
AggTypeInfo *
agg_type_info(FunctionCallInfo fcinfo, Oid typid, Oid collid)
{
	AggTypeInfo *head = (AggTypeInfo *) fcinfo->flinfo->fn_extra;
	AggTypeInfo *info;
	AggTypeInfo *prev = NULL;
	TypeCacheEntry *typentry;
	Oid			basetypid;
	int			n = 0;

	if (head != NULL && head->typid == typid && head->collid == collid)
		return head;

	/* another type met before: move it to the front */
	for (info = head; info != NULL; prev = info, info = info->next)
	{
		n++;
		if (info->typid == typid && info->collid == collid)
		{
			prev->next = info->next;
			info->next = head;
			fcinfo->flinfo->fn_extra = info;
			return info;
		}
	}

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

	if (n < AGG_TYPE_CACHE_SIZE)
	{
		/* a new entry */
		info = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
									  sizeof(AggTypeInfo));
		info->cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt,
										  "cdp_traits aggregate type",
										  ALLOCSET_SMALL_SIZES);
		info->next = head;
	}
	else
	{
		/* reuse the least recently used entry, the last one */
		AggTypeInfo *before = NULL;

		for (info = head; info->next != NULL; info = info->next)
			before = info;
		before->next = NULL;
		MemoryContextReset(info->cxt);
		info->next = head;
	}
	fcinfo->flinfo->fn_extra = info;
	type_info_init(info, typid, basetypid, collid, typentry);
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

	if (info != NULL && info->collid == collid && OidIsValid(info->typid))
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
		((state->flags & AGG_FLAG_COUNTS) &&
		 (state->kind != AGG_KIND_FREQUENCY ||
		  !(state->flags & AGG_FLAG_SMALL))) ||
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
 *		Size of the image a value is stored as in a first/last state;
 *		*image gets the datum to store (a detoasted varlena if it was
 *		compressed or out of line).  Byval values are stored as a whole
 *		Datum; varlenas of types that allow it with a short header when
 *		they fit one.
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
 * agg_same_image
 *		Whether two values of the type have the same bytes (stored: a value
 *		as read from a state; image: as agg_value_size returned it).  Equal
 *		bytes mean equal values for every btree opclass, so this is a safe
 *		shortcut (the converse does not hold: 1.0 and 1.00 differ).
 */
bool
agg_same_image(AggTypeInfo *info, Datum stored, Datum image)
{
	if (info->typbyval)
		return stored == image;
	if (info->typlen > 0)
		return memcmp(DatumGetPointer(stored), DatumGetPointer(image),
					  info->typlen) == 0;
	if (info->typlen == -1)
	{
		char	   *a = DatumGetPointer(stored);
		char	   *b = DatumGetPointer(image);
		Size		len = VARSIZE_ANY_EXHDR(b);

		return VARSIZE_ANY_EXHDR(a) == len &&
			memcmp(VARDATA_ANY(a), VARDATA_ANY(b), len) == 0;
	}
	return strcmp(DatumGetCString(stored), DatumGetCString(image)) == 0;
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
Size
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
	Size		cap = agg_capacity_for(AGG_HEADER_SIZE + need, AGG_MIN_STATE);
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
CdpAggState *
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
							  agg_capacity_for(state->used + need, AGG_MIN_STATE));
}

/*
 * agg_items_reserve
 *		Make info->items hold at least n items.
 */
AggItem *
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
char *
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

	if (AGG_KIND_IS_MULTISET(state->kind))
		return agg_multiset_pack(info, state);
	copy = palloc(state->used);
	memcpy(copy, state, state->used);
	SET_VARSIZE(copy, copy->used);
	copy->sorted_end = copy->used;
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

	/*
	 * Values of an anonymous record type (ROW(...), record[]) carry a
	 * typmod that means something only in this session: a state of them,
	 * stored and read elsewhere, would decode its values with another row
	 * type, and its text form names a type no input accepts.
	 */
	if (get_typtype(state->typid) == TYPTYPE_PSEUDO)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot make a cdp_traits.agg_state of values of type %s",
						format_type_be(state->typid)),
				 errdetail("A state may be stored and read in another session; values of an anonymous record type mean nothing there."),
				 errhint("Cast the values to a composite type made with CREATE TYPE, or use the aggregate itself (most_frequent, unique_list, first, ...) instead of its state.")));
	PG_RETURN_POINTER(agg_state_pack_copy(info, state));
}

/*
 * cdp_agg_state_merge
 *		agg_state_merge(agg_state, agg_state): two states of the same kind
 *		and type merged into a new packed one, outside any aggregate (the
 *		attribute engine combines a stored state with that of new events);
 *		NULL if both are NULL, the other if one is.
 */
Datum
cdp_agg_state_merge(PG_FUNCTION_ARGS)
{
	CdpAggState *state;
	CdpAggState *other;
	AggTypeInfo *info;

	if (PG_ARGISNULL(0) && PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(PG_ARGISNULL(0) ? 1 : 0));
	state = agg_state_arg(fcinfo, 0);
	other = agg_state_arg(fcinfo, 1);
	if (state->kind != other->kind || state->typid != other->typid)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("cannot combine a %s state of type %s with a %s state of type %s",
						agg_kind_name(state->kind), format_type_be(state->typid),
						agg_kind_name(other->kind), format_type_be(other->typid)),
				 errhint("Merge states made by the same state aggregate (frequency_state, unique_state, "
						 "first_state or last_state) over values of the same type.")));
	info = agg_type_info(fcinfo, state->typid, state->collid);
	/* the union works in place: on a copy in this call's memory */
	state = agg_state_copy(state, 0);
	if (AGG_KIND_IS_MULTISET(other->kind))
		state = agg_multiset_union(info, state, other);
	else
		state = agg_pick_union(info, state, other);
	PG_RETURN_POINTER(agg_state_pack_copy(info, state));
}
