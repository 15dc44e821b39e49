/*-------------------------------------------------------------------------
 *
 * jsonb_object.c
 *		Building the per-entity object of attribute values.
 *
 * A calculation turns one row per entity with one jsonb column per
 * attribute into {"attribute": value, ...} without the NULLs.  In SQL that is
 * jsonb_strip_nulls(jsonb_build_object(...)), which re-serializes every
 * value and walks the result again; here the values are pushed as they are.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_jsonb_object);

/*
 * cdp_jsonb_object
 *		SQL: _jsonb_object(keys text[], vals jsonb[]) RETURNS jsonb: the
 *		object of the keys whose value is not NULL; NULL when there is none.
 */
Datum
cdp_jsonb_object(PG_FUNCTION_ARGS)
{
	ArrayType  *karr = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *varr = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *keys;
	bool	   *knulls;
	int			nkeys;
	Datum	   *vals;
	bool	   *vnulls;
	int			nvals;
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			added = 0;
	int			i;

	deconstruct_array(karr, TEXTOID, -1, false, TYPALIGN_INT, &keys, &knulls, &nkeys);
	deconstruct_array(varr, JSONBOID, -1, false, TYPALIGN_INT, &vals, &vnulls, &nvals);
	if (nkeys != nvals)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%d keys but %d values", nkeys, nvals)));

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < nkeys; i++)
	{
		JsonbValue	k;
		JsonbValue	v;
		Jsonb	   *jb;

		if (vnulls[i] || knulls[i])
			continue;
		k.type = jbvString;
		k.val.string.val = VARDATA_ANY(DatumGetPointer(keys[i]));
		k.val.string.len = VARSIZE_ANY_EXHDR(DatumGetPointer(keys[i]));
		(void) pushJsonbValue(&state, WJB_KEY, &k);

		jb = DatumGetJsonbP(vals[i]);
		if (JB_ROOT_IS_SCALAR(jb))
			(void) JsonbExtractScalar(&jb->root, &v);
		else
		{
			v.type = jbvBinary;
			v.val.binary.data = &jb->root;
			v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
		}
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
		added++;
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	if (added == 0)
		PG_RETURN_NULL();
	PG_RETURN_POINTER(JsonbValueToJsonb(result));
}
