/*-------------------------------------------------------------------------
 *
 * agg_first_last.c
 *		first, last and any_value (SPEC section 3).
 *
 * first/last keep one (timestamp, value) pair: the best so far.  A row
 * replaces it when its timestamp is earlier (first) or later (last), or on
 * the same timestamp when its value is smaller (first) or larger (last).
 * Nothing is sorted; a row costs one timestamp comparison.
 *
 * any_value needs no state type of its own: its state is the first
 * non-NULL value, which the executor copies for a strict transition
 * function with a NULL initial state.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "agg.h"

PG_FUNCTION_INFO_V1(cdp_agg_first_add);
PG_FUNCTION_INFO_V1(cdp_agg_last_add);
PG_FUNCTION_INFO_V1(cdp_agg_first_final);
PG_FUNCTION_INFO_V1(cdp_agg_last_final);
PG_FUNCTION_INFO_V1(cdp_agg_any_value_add);

/*
 * pick_add
 *		Transition function body: (state, value, at).  Rows with a NULL
 *		value or timestamp are skipped.
 */
static Datum
pick_add(FunctionCallInfo fcinfo, int kind, const char *name)
{
	AggTypeInfo *info;
	CdpAggState *state;
	TimestampTz at;
	Datum		value;

	agg_check_context(fcinfo, name);
	info = agg_input_type_info(fcinfo, 1);
	state = PG_ARGISNULL(0) ? NULL : agg_state_arg_inplace(fcinfo, 0);

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}
	value = PG_GETARG_DATUM(1);
	at = PG_GETARG_TIMESTAMPTZ(2);
	if (state != NULL)
	{
		if (state->typid != info->basetypid)
			elog(ERROR, "cdp_traits.agg_state of type %u used for values of type %u",
				 state->typid, info->basetypid);
		if (!agg_pick_better(info, state, at, value))
			PG_RETURN_POINTER(state);
	}
	PG_RETURN_POINTER(agg_pick_set(info, state, kind, at, value));
}

/*
 * cdp_agg_first_add
 *		first_add(agg_state, anyelement, timestamptz): transition function
 *		of first and first_state.
 */
Datum
cdp_agg_first_add(PG_FUNCTION_ARGS)
{
	return pick_add(fcinfo, AGG_KIND_FIRST, "first_add");
}

/*
 * cdp_agg_last_add
 *		last_add(agg_state, anyelement, timestamptz): transition function of
 *		last and last_state.
 */
Datum
cdp_agg_last_add(PG_FUNCTION_ARGS)
{
	return pick_add(fcinfo, AGG_KIND_LAST, "last_add");
}

/*
 * pick_final
 *		Final function body: the value a first or last state holds.
 */
static Datum
pick_final(FunctionCallInfo fcinfo, int kind)
{
	CdpAggState *state;
	AggTypeInfo *info;
	Datum		value;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = agg_state_arg(fcinfo, 0);
	if (state->kind != kind)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a %s state cannot be used here", agg_kind_name(state->kind)),
				 errhint("state_first() needs a first_state(), state_last() a last_state().")));
	info = agg_type_info(fcinfo, state->typid, state->collid);
	agg_check_hint(fcinfo, info, 1);
	value = agg_result_value(info, agg_pick_value(info, state));
	agg_result_check(info, value);
	PG_RETURN_DATUM(value);
}

/*
 * cdp_agg_first_final
 *		Final function of first, and state_first(agg_state, anyelement).
 */
Datum
cdp_agg_first_final(PG_FUNCTION_ARGS)
{
	return pick_final(fcinfo, AGG_KIND_FIRST);
}

/*
 * cdp_agg_last_final
 *		Final function of last, and state_last(agg_state, anyelement).
 */
Datum
cdp_agg_last_final(PG_FUNCTION_ARGS)
{
	return pick_final(fcinfo, AGG_KIND_LAST);
}

/*
 * cdp_agg_any_value_add
 *		any_value_add(anyelement, anyelement): transition and combine
 *		function of any_value.  Strict with no initial value, so the
 *		executor makes the first non-NULL value the state; every later row
 *		keeps it.
 */
Datum
cdp_agg_any_value_add(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}
