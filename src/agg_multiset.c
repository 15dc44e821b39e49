/*-------------------------------------------------------------------------
 *
 * agg_multiset.c
 *		most_frequent, least_frequent, num_of_unique and unique_list: the
 *		aggregates over the multiset of values (SPEC section 3).
 *
 * most_frequent/least_frequent keep a frequency state (distinct values
 * with their total weight); num_of_unique/unique_list a unique state
 * (distinct values).  The final functions double as the state_* functions
 * that finish a stored state.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tupmacs.h"
#include "utils/array.h"
#include "utils/float.h"

#include "agg.h"

PG_FUNCTION_INFO_V1(cdp_agg_frequency_add);
PG_FUNCTION_INFO_V1(cdp_agg_distinct_add);
PG_FUNCTION_INFO_V1(cdp_agg_most_frequent_final);
PG_FUNCTION_INFO_V1(cdp_agg_least_frequent_final);
PG_FUNCTION_INFO_V1(cdp_agg_num_of_unique_final);
PG_FUNCTION_INFO_V1(cdp_agg_unique_list_final);

/*
 * multiset_add
 *		Transition function body: add argument 1 (weighted by argument 2
 *		when there is one) to the state.  Rows with a NULL value or weight
 *		are skipped.
 */
static Datum
multiset_add(FunctionCallInfo fcinfo, int kind, const char *name)
{
	AggTypeInfo *info;
	CdpAggState *state;
	float8		weight = 1.0;

	agg_check_context(fcinfo, name);
	info = agg_input_type_info(fcinfo, 1);
	state = PG_ARGISNULL(0) ? NULL : agg_state_arg_inplace(fcinfo, 0);

	if (PG_ARGISNULL(1) || (PG_NARGS() > 2 && PG_ARGISNULL(2)))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}
	if (PG_NARGS() > 2)
		weight = PG_GETARG_FLOAT8(2);
	if (state != NULL && state->typid != info->basetypid)
		elog(ERROR, "cdp_traits.agg_state of type %u used for values of type %u",
			 state->typid, info->basetypid);

	state = agg_multiset_add(info, state, kind, PG_GETARG_DATUM(1), weight);
	PG_RETURN_POINTER(state);
}

/*
 * cdp_agg_frequency_add
 *		frequency_add(agg_state, anyelement [, float8]): transition function
 *		of most_frequent, least_frequent and frequency_state.
 */
Datum
cdp_agg_frequency_add(PG_FUNCTION_ARGS)
{
	return multiset_add(fcinfo, AGG_KIND_FREQUENCY, "frequency_add");
}

/*
 * cdp_agg_distinct_add
 *		unique_add(agg_state, anyelement): transition function of
 *		num_of_unique, unique_list and unique_state.
 */
Datum
cdp_agg_distinct_add(PG_FUNCTION_ARGS)
{
	return multiset_add(fcinfo, AGG_KIND_DISTINCT, "unique_add");
}

/*
 * multiset_state
 *		The state argument of a final function, checked to be a multiset
 *		(of the given kind, if not 0), with its type info; the result type
 *		is checked against argument 1 when result_typed.  NULL for a NULL
 *		state.
 */
static CdpAggState *
multiset_state(FunctionCallInfo fcinfo, int kind, bool result_typed,
			   AggTypeInfo **info)
{
	CdpAggState *state;

	if (PG_ARGISNULL(0))
		return NULL;
	state = agg_state_arg(fcinfo, 0);
	if (kind != 0 ? state->kind != kind : !AGG_KIND_IS_MULTISET(state->kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a %s state cannot be used here", agg_kind_name(state->kind)),
				 errhint("Most and least frequent values need a frequency_state(); "
						 "unique values a frequency_state() or unique_state().")));
	*info = agg_type_info(fcinfo, state->typid, state->collid);
	if (result_typed)
		agg_check_hint(fcinfo, *info, 1);
	return state;
}

/*
 * weight_cmp
 *		> 0 if weight beats the best so far (there is none when !found): is
 *		larger (most) or smaller (least), as float8 compares in SQL.
 */
static inline int
weight_cmp(bool found, float8 weight, float8 best, bool most)
{
	int			c;

	if (!found)
		return 1;
	c = float8_cmp_internal(weight, best);
	return most ? c : -c;
}

/*
 * frequency_pick
 *		The value with the largest (most) or smallest total weight; on a
 *		tie the smallest value.  Weights compare as float8 does in SQL (NaN
 *		above everything).
 */
static Datum
frequency_pick(FunctionCallInfo fcinfo, bool most)
{
	AggTypeInfo *info;
	CdpAggState *state = multiset_state(fcinfo, AGG_KIND_FREQUENCY, true, &info);
	Datum		best = (Datum) 0;
	float8		bestweight = 0;
	bool		found = false;

	if (state == NULL)
		PG_RETURN_NULL();
	if (state->flags & AGG_FLAG_SMALL)
	{
		/* distinct but unsorted: a tie is broken by comparing the values */
		char	   *p = (char *) state + AGG_HEADER_SIZE;
		char	   *end = (char *) state + state->used;

		while (p < end)
		{
			Datum		value;
			float8		weight;
			int			c;

			p = agg_entry_read(info, AGG_FORMAT(state), p, &value, &weight);
			c = weight_cmp(found, weight, bestweight, most);

			if (c > 0 || (c == 0 &&
						  ApplySortComparator(value, false, best, false,
											  &info->ssup) < 0))
			{
				best = value;
				bestweight = weight;
				found = true;
			}
		}
	}
	else
	{
		/* in ascending order: the first of equal weights wins */
		uint32		count;
		AggItem    *items = agg_multiset_sorted(info, state, &count);
		uint32		i;

		for (i = 0; i < count; i++)
		{
			if (weight_cmp(found, items[i].weight, bestweight, most) > 0)
			{
				best = items[i].value;
				bestweight = items[i].weight;
				found = true;
			}
		}
	}
	if (!found)
		PG_RETURN_NULL();
	best = agg_result_value(info, best);
	agg_result_check(info, best);
	PG_RETURN_DATUM(best);
}

/*
 * cdp_agg_most_frequent_final
 *		Final function of most_frequent, and state_most_frequent(agg_state,
 *		anyelement).
 */
Datum
cdp_agg_most_frequent_final(PG_FUNCTION_ARGS)
{
	return frequency_pick(fcinfo, true);
}

/*
 * cdp_agg_least_frequent_final
 *		Final function of least_frequent, and state_least_frequent.
 */
Datum
cdp_agg_least_frequent_final(PG_FUNCTION_ARGS)
{
	return frequency_pick(fcinfo, false);
}

/*
 * cdp_agg_num_of_unique_final
 *		Final function of num_of_unique, and state_num_of_unique(agg_state):
 *		the number of distinct values, 0 for no values (as count does).
 */
Datum
cdp_agg_num_of_unique_final(PG_FUNCTION_ARGS)
{
	AggTypeInfo *info;
	CdpAggState *state = multiset_state(fcinfo, 0, false, &info);
	uint32		count;

	if (state == NULL)
		PG_RETURN_INT64(0);
	if (state->sorted_end == state->used || (state->flags & AGG_FLAG_SMALL))
		PG_RETURN_INT64(state->nitems);
	(void) agg_multiset_sorted(info, state, &count);
	PG_RETURN_INT64(count);
}

/*
 * build_array
 *		A one-dimensional array of the values (no NULLs).  Varlena values
 *		are copied straight into one allocation (construct_array would
 *		detoast, that is copy, each short-header value first).
 */
static ArrayType *
build_array(AggTypeInfo *info, AggItem *items, uint32 count, Oid elemtype)
{
	Size		nbytes = 0;
	Size		hdrsize = ARR_OVERHEAD_NONULLS(1);
	ArrayType  *array;
	char	   *data;
	uint32		i;

	if (info->typlen != -1)
	{
		Datum	   *values = palloc(sizeof(Datum) * count);

		for (i = 0; i < count; i++)
			values[i] = items[i].value;
		return construct_array(values, count, elemtype, info->typlen,
							   info->typbyval, info->typalign);
	}

	for (i = 0; i < count; i++)
	{
		nbytes = att_align_nominal(nbytes, info->typalign);
		nbytes += VARSIZE_ANY_EXHDR(DatumGetPointer(items[i].value)) + VARHDRSZ;
		if (!AllocSizeIsValid(hdrsize + nbytes))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("array size exceeds the maximum allowed (%d)",
							(int) MaxAllocSize)));
	}
	array = palloc0(hdrsize + nbytes);
	SET_VARSIZE(array, hdrsize + nbytes);
	array->ndim = 1;
	array->dataoffset = 0;
	array->elemtype = elemtype;
	ARR_DIMS(array)[0] = count;
	ARR_LBOUND(array)[0] = 1;
	data = ARR_DATA_PTR(array);
	nbytes = 0;
	for (i = 0; i < count; i++)
	{
		char	   *v = DatumGetPointer(items[i].value);
		Size		len = VARSIZE_ANY_EXHDR(v);

		nbytes = att_align_nominal(nbytes, info->typalign);
		SET_VARSIZE(data + nbytes, len + VARHDRSZ);
		memcpy(data + nbytes + VARHDRSZ, VARDATA_ANY(v), len);
		nbytes += len + VARHDRSZ;
	}
	return array;
}

/*
 * cdp_agg_unique_list_final
 *		Final function of unique_list, and state_unique_list(agg_state,
 *		anyelement): the distinct values as an array, in ascending order.
 */
Datum
cdp_agg_unique_list_final(PG_FUNCTION_ARGS)
{
	AggTypeInfo *info;
	CdpAggState *state = multiset_state(fcinfo, 0, true, &info);
	AggItem    *items;
	uint32		count;
	uint32		i;

	if (state == NULL)
		PG_RETURN_NULL();
	items = agg_multiset_sorted(info, state, &count);
	if (count == 0)
		PG_RETURN_NULL();
	if (info->hint_domain)
		for (i = 0; i < count; i++)
			agg_result_check(info, agg_result_value(info, items[i].value));
	PG_RETURN_ARRAYTYPE_P(build_array(info, items, count, agg_result_type(info)));
}
