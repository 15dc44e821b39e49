/*
 * Attribute calculation types (SPEC section 3): the aggregates, their state
 * type, and to_number.
 *
 * All aggregates but any_value keep their state in cdp_traits.agg_state, a
 * real (varlena) type: parallel workers hand it to the leader as it is, the
 * combine function merges states, and because the state type is not a
 * pseudo-type Citus can run single-argument aggregates on the shards and
 * combine on the coordinator.  The *_state aggregates, merge_states and the
 * state_* functions expose the same states for rollups (README).
 */

-- The state type.  Its text form is "\x" and the portable binary form in hex.
CREATE TYPE cdp_traits.agg_state;

CREATE FUNCTION cdp_traits.agg_state_in(cstring) RETURNS cdp_traits.agg_state
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_in';
CREATE FUNCTION cdp_traits.agg_state_out(cdp_traits.agg_state) RETURNS cstring
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_out';
CREATE FUNCTION cdp_traits.agg_state_recv(internal) RETURNS cdp_traits.agg_state
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_recv';
CREATE FUNCTION cdp_traits.agg_state_send(cdp_traits.agg_state) RETURNS bytea
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_send';

CREATE TYPE cdp_traits.agg_state (
	INPUT = cdp_traits.agg_state_in,
	OUTPUT = cdp_traits.agg_state_out,
	RECEIVE = cdp_traits.agg_state_recv,
	SEND = cdp_traits.agg_state_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = double,
	STORAGE = extended
);
COMMENT ON TYPE cdp_traits.agg_state IS
	'state of the cdp_traits aggregates: values seen (with weights), or the first/last value';
COMMENT ON FUNCTION cdp_traits.agg_state_in(cstring) IS
	'input of agg_state: \x and the portable binary form in hex (validated)';
COMMENT ON FUNCTION cdp_traits.agg_state_out(cdp_traits.agg_state) IS
	'output of agg_state: \x and the portable binary form in hex';
COMMENT ON FUNCTION cdp_traits.agg_state_recv(internal) IS
	'binary input of agg_state (validated)';
COMMENT ON FUNCTION cdp_traits.agg_state_send(cdp_traits.agg_state) IS
	'binary output of agg_state: element type and collation by name, values in their send format';

-- Transition functions (not strict: they create the state and skip NULLs).
CREATE FUNCTION cdp_traits.frequency_add(cdp_traits.agg_state, anyelement)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_frequency_add';
CREATE FUNCTION cdp_traits.frequency_add(cdp_traits.agg_state, anyelement, float8)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_frequency_add';
CREATE FUNCTION cdp_traits.unique_add(cdp_traits.agg_state, anyelement)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_distinct_add';
CREATE FUNCTION cdp_traits.first_add(cdp_traits.agg_state, anyelement, timestamptz)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_first_add';
CREATE FUNCTION cdp_traits.last_add(cdp_traits.agg_state, anyelement, timestamptz)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_last_add';
COMMENT ON FUNCTION cdp_traits.frequency_add(cdp_traits.agg_state, anyelement) IS
	'transition function of most_frequent, least_frequent and frequency_state';
COMMENT ON FUNCTION cdp_traits.frequency_add(cdp_traits.agg_state, anyelement, float8) IS
	'transition function of the weighted most_frequent, least_frequent and frequency_state';
COMMENT ON FUNCTION cdp_traits.unique_add(cdp_traits.agg_state, anyelement) IS
	'transition function of num_of_unique, unique_list and unique_state';
COMMENT ON FUNCTION cdp_traits.first_add(cdp_traits.agg_state, anyelement, timestamptz) IS
	'transition function of first and first_state';
COMMENT ON FUNCTION cdp_traits.last_add(cdp_traits.agg_state, anyelement, timestamptz) IS
	'transition function of last and last_state';

-- Combining and packing states.
CREATE FUNCTION cdp_traits.agg_state_combine(cdp_traits.agg_state, cdp_traits.agg_state)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_combine';
COMMENT ON FUNCTION cdp_traits.agg_state_combine(cdp_traits.agg_state, cdp_traits.agg_state) IS
	'combine function of the cdp_traits aggregates (merges two states of the same kind and type)';
CREATE FUNCTION cdp_traits.agg_state_merge(cdp_traits.agg_state, cdp_traits.agg_state)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_merge';
COMMENT ON FUNCTION cdp_traits.agg_state_merge(cdp_traits.agg_state, cdp_traits.agg_state) IS
	'two states of the same kind and type merged into one (NULL if both are NULL, the other if one is)';
CREATE FUNCTION cdp_traits.agg_state_pack(cdp_traits.agg_state)
RETURNS cdp_traits.agg_state
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_state_pack';
COMMENT ON FUNCTION cdp_traits.agg_state_pack(cdp_traits.agg_state) IS
	'final function of the aggregates returning a state: the state sorted and without spare room';

-- Finishing a state: the aggregates' final functions, also callable on a
-- stored state.  The anyelement argument only carries the result type (pass
-- NULL::the_type); it must be the type of the state's values.
CREATE FUNCTION cdp_traits.state_most_frequent(state cdp_traits.agg_state, as_type anyelement)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_most_frequent_final';
CREATE FUNCTION cdp_traits.state_least_frequent(state cdp_traits.agg_state, as_type anyelement)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_least_frequent_final';
CREATE FUNCTION cdp_traits.state_first(state cdp_traits.agg_state, as_type anyelement)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_first_final';
CREATE FUNCTION cdp_traits.state_last(state cdp_traits.agg_state, as_type anyelement)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_last_final';
CREATE FUNCTION cdp_traits.state_num_of_unique(state cdp_traits.agg_state)
RETURNS bigint
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_num_of_unique_final';
CREATE FUNCTION cdp_traits.state_unique_list(state cdp_traits.agg_state, as_type anyelement)
RETURNS anyarray
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_unique_list_final';
COMMENT ON FUNCTION cdp_traits.state_most_frequent(cdp_traits.agg_state, anyelement) IS
	'most frequent value of a frequency state (ties: smallest value); pass NULL::type as as_type';
COMMENT ON FUNCTION cdp_traits.state_least_frequent(cdp_traits.agg_state, anyelement) IS
	'least frequent value of a frequency state (ties: smallest value); pass NULL::type as as_type';
COMMENT ON FUNCTION cdp_traits.state_first(cdp_traits.agg_state, anyelement) IS
	'value of a first state; pass NULL::type as as_type';
COMMENT ON FUNCTION cdp_traits.state_last(cdp_traits.agg_state, anyelement) IS
	'value of a last state; pass NULL::type as as_type';
COMMENT ON FUNCTION cdp_traits.state_num_of_unique(cdp_traits.agg_state) IS
	'number of distinct values of a unique or frequency state (0 for NULL)';
COMMENT ON FUNCTION cdp_traits.state_unique_list(cdp_traits.agg_state, anyelement) IS
	'distinct values of a unique or frequency state, ascending; pass NULL::type as as_type';

-- Final functions with the extra arguments of two-argument aggregates
-- (FINALFUNC_EXTRA passes NULLs of every aggregated argument's type).
CREATE FUNCTION cdp_traits.most_frequent_final(cdp_traits.agg_state, anyelement, float8)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_most_frequent_final';
CREATE FUNCTION cdp_traits.least_frequent_final(cdp_traits.agg_state, anyelement, float8)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_least_frequent_final';
CREATE FUNCTION cdp_traits.first_final(cdp_traits.agg_state, anyelement, timestamptz)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_first_final';
CREATE FUNCTION cdp_traits.last_final(cdp_traits.agg_state, anyelement, timestamptz)
RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_last_final';
COMMENT ON FUNCTION cdp_traits.most_frequent_final(cdp_traits.agg_state, anyelement, float8) IS
	'final function of the weighted most_frequent';
COMMENT ON FUNCTION cdp_traits.least_frequent_final(cdp_traits.agg_state, anyelement, float8) IS
	'final function of the weighted least_frequent';
COMMENT ON FUNCTION cdp_traits.first_final(cdp_traits.agg_state, anyelement, timestamptz) IS
	'final function of first';
COMMENT ON FUNCTION cdp_traits.last_final(cdp_traits.agg_state, anyelement, timestamptz) IS
	'final function of last';

-- The aggregates (SPEC section 3).  SSPACE is the typical size of a group's
-- state, for the planner's hash aggregation estimate.
CREATE AGGREGATE cdp_traits.most_frequent(anyelement) (
	SFUNC = cdp_traits.frequency_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.state_most_frequent, FINALFUNC_EXTRA,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.most_frequent(anyelement, float8) (
	SFUNC = cdp_traits.frequency_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.most_frequent_final, FINALFUNC_EXTRA,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.least_frequent(anyelement) (
	SFUNC = cdp_traits.frequency_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.state_least_frequent, FINALFUNC_EXTRA,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.least_frequent(anyelement, float8) (
	SFUNC = cdp_traits.frequency_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.least_frequent_final, FINALFUNC_EXTRA,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.first(anyelement, timestamptz) (
	SFUNC = cdp_traits.first_add, STYPE = cdp_traits.agg_state, SSPACE = 64,
	FINALFUNC = cdp_traits.first_final, FINALFUNC_EXTRA,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.last(anyelement, timestamptz) (
	SFUNC = cdp_traits.last_add, STYPE = cdp_traits.agg_state, SSPACE = 64,
	FINALFUNC = cdp_traits.last_final, FINALFUNC_EXTRA,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.num_of_unique(anyelement) (
	SFUNC = cdp_traits.unique_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.state_num_of_unique,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.unique_list(anyelement) (
	SFUNC = cdp_traits.unique_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.state_unique_list, FINALFUNC_EXTRA,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);

CREATE FUNCTION cdp_traits.any_value_add(anyelement, anyelement) RETURNS anyelement
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_agg_any_value_add';
COMMENT ON FUNCTION cdp_traits.any_value_add(anyelement, anyelement) IS
	'transition and combine function of any_value (keeps the first value)';
CREATE AGGREGATE cdp_traits.any_value(anyelement) (
	SFUNC = cdp_traits.any_value_add, STYPE = anyelement,
	COMBINEFUNC = cdp_traits.any_value_add, PARALLEL = SAFE);

COMMENT ON AGGREGATE cdp_traits.most_frequent(anyelement) IS
	'value that occurs most often (ties: smallest value); NULLs skipped';
COMMENT ON AGGREGATE cdp_traits.most_frequent(anyelement, float8) IS
	'value with the largest total weight (ties: smallest value); rows with a NULL value or weight skipped';
COMMENT ON AGGREGATE cdp_traits.least_frequent(anyelement) IS
	'value that occurs least often (ties: smallest value); NULLs skipped';
COMMENT ON AGGREGATE cdp_traits.least_frequent(anyelement, float8) IS
	'value with the smallest total weight (ties: smallest value); rows with a NULL value or weight skipped';
COMMENT ON AGGREGATE cdp_traits.first(anyelement, timestamptz) IS
	'value at the earliest time (ties: smallest value); rows with a NULL value or time skipped';
COMMENT ON AGGREGATE cdp_traits.last(anyelement, timestamptz) IS
	'value at the latest time (ties: largest value); rows with a NULL value or time skipped';
COMMENT ON AGGREGATE cdp_traits.num_of_unique(anyelement) IS
	'number of distinct non-NULL values (0 when there are none)';
COMMENT ON AGGREGATE cdp_traits.unique_list(anyelement) IS
	'distinct non-NULL values, ascending (NULL when there are none)';
COMMENT ON AGGREGATE cdp_traits.any_value(anyelement) IS
	'one of the non-NULL values';

-- Aggregates returning the state, for rollups and two-step distribution.
CREATE AGGREGATE cdp_traits.frequency_state(anyelement) (
	SFUNC = cdp_traits.frequency_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.agg_state_pack,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.frequency_state(anyelement, float8) (
	SFUNC = cdp_traits.frequency_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.agg_state_pack,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.unique_state(anyelement) (
	SFUNC = cdp_traits.unique_add, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.agg_state_pack,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.first_state(anyelement, timestamptz) (
	SFUNC = cdp_traits.first_add, STYPE = cdp_traits.agg_state, SSPACE = 64,
	FINALFUNC = cdp_traits.agg_state_pack,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.last_state(anyelement, timestamptz) (
	SFUNC = cdp_traits.last_add, STYPE = cdp_traits.agg_state, SSPACE = 64,
	FINALFUNC = cdp_traits.agg_state_pack,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
CREATE AGGREGATE cdp_traits.merge_states(cdp_traits.agg_state) (
	SFUNC = cdp_traits.agg_state_combine, STYPE = cdp_traits.agg_state, SSPACE = 256,
	FINALFUNC = cdp_traits.agg_state_pack,
	COMBINEFUNC = cdp_traits.agg_state_combine, PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp_traits.frequency_state(anyelement) IS
	'state for most/least frequent (and unique) values; finish with state_most_frequent(merge_states(s), NULL::type)';
COMMENT ON AGGREGATE cdp_traits.frequency_state(anyelement, float8) IS
	'weighted state for most/least frequent values; finish with state_most_frequent(merge_states(s), NULL::type)';
COMMENT ON AGGREGATE cdp_traits.unique_state(anyelement) IS
	'state for unique values; finish with state_num_of_unique / state_unique_list';
COMMENT ON AGGREGATE cdp_traits.first_state(anyelement, timestamptz) IS
	'state for the first value; finish with state_first(merge_states(s), NULL::type)';
COMMENT ON AGGREGATE cdp_traits.last_state(anyelement, timestamptz) IS
	'state for the last value; finish with state_last(merge_states(s), NULL::type)';
COMMENT ON AGGREGATE cdp_traits.merge_states(cdp_traits.agg_state) IS
	'merges states of the same kind and type (e.g. daily rollups, or shards)';

-- to_number: text to numeric, NULL for text that is not a number.
CREATE FUNCTION cdp_traits.to_number(text) RETURNS numeric
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_to_number';
COMMENT ON FUNCTION cdp_traits.to_number(text) IS
	'the number in a text, NULL (never an error) if it is not one: no NaN/Infinity, no decimal comma, within numeric''s range';
