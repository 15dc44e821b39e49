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
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_jsonb_object);
PG_FUNCTION_INFO_V1(cdp_jsonb_object_of);

/* how a value of one argument's type becomes a jsonb value */
typedef enum ValueKind
{
	VK_TEXT,					/* text, varchar: a string as it is */
	VK_NUMERIC,					/* a number (NaN, infinities: a string) */
	VK_INT,						/* int2/4/8: a number */
	VK_BOOL,
	VK_DATETIME,				/* date, timestamp(tz): ISO string as to_jsonb */
	VK_JSONB,
	VK_OTHER					/* whatever to_jsonb makes of it */
} ValueKind;

typedef struct ArgInfo
{
	Oid			type;
	ValueKind	kind;
	/* arrays: the elements' */
	bool		is_array;
	Oid			elemtype;
	ValueKind	elemkind;
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
	FmgrInfo	to_jsonb;		/* VK_OTHER (of the type or element type) */
} ArgInfo;

typedef struct ObjectCache
{
	int			nargs;
	ArgInfo		args[FLEXIBLE_ARRAY_MEMBER];
} ObjectCache;

/*
 * cdp_jsonb_as_value
 *		A jsonb datum as a value to push into an object or array being built:
 *		its scalar, or the container itself (pushed without being copied).
 */
void
cdp_jsonb_as_value(Datum jsonb, JsonbValue *v)
{
	Jsonb	   *jb = DatumGetJsonbP(jsonb);

	if (JB_ROOT_IS_SCALAR(jb))
		(void) JsonbExtractScalar(&jb->root, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/*
 * cdp_jsonb_object
 *		SQL (0.1.0 only; 0.2.0 builds objects with _jsonb_object_of and drops
 *		it, but the 0.1.0 install script still names this symbol):
 *		_jsonb_object(keys text[], vals jsonb[]) RETURNS jsonb: the object of
 *		the keys whose value is not NULL; NULL when there is none.
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
		if (vnulls[i] || knulls[i])
			continue;
		k.type = jbvString;
		k.val.string.val = VARDATA_ANY(DatumGetPointer(keys[i]));
		k.val.string.len = VARSIZE_ANY_EXHDR(DatumGetPointer(keys[i]));
		(void) pushJsonbValue(&state, WJB_KEY, &k);

		cdp_jsonb_as_value(vals[i], &v);
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
		added++;
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	if (added == 0)
		PG_RETURN_NULL();
	PG_RETURN_POINTER(JsonbValueToJsonb(result));
}

/*
 * value_kind
 *		How values of type t are converted.
 */
static ValueKind
value_kind(Oid t)
{
	switch (t)
	{
		case TEXTOID:
		case VARCHAROID:
			return VK_TEXT;
		case NUMERICOID:
			return VK_NUMERIC;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return VK_INT;
		case BOOLOID:
			return VK_BOOL;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return VK_DATETIME;
		case JSONBOID:
			return VK_JSONB;
		default:
			return VK_OTHER;
	}
}

/*
 * init_to_jsonb
 *		Set up a call of to_jsonb() for values of type t: to_jsonb reads its
 *		argument's type from the call expression, so one is made for it.
 */
static void
init_to_jsonb(FmgrInfo *fi, Oid t, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	fmgr_info_cxt(F_TO_JSONB, fi, cxt);
	fi->fn_expr = (Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
										list_make1(makeNullConst(t, -1, InvalidOid)),
										InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	MemoryContextSwitchTo(old);
}

/*
 * scalar_value
 *		The jsonb value of d (not NULL) of a scalar kind into v, as to_jsonb
 *		would make it.  VK_OTHER and VK_JSONB may give a container (jbvBinary).
 */
static void
scalar_value(ValueKind kind, Oid t, FmgrInfo *to_jsonb_fi, Datum d, JsonbValue *v)
{
	switch (kind)
	{
		case VK_TEXT:
			{
				text	   *x = DatumGetTextPP(d);

				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(x);
				v->val.string.len = VARSIZE_ANY_EXHDR(x);
				return;
			}
		case VK_NUMERIC:
			{
				Numeric		n = DatumGetNumeric(d);

				if (numeric_is_nan(n) || numeric_is_inf(n))
				{
					char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, d));

					v->type = jbvString;
					v->val.string.val = s;
					v->val.string.len = strlen(s);
				}
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = n;
				}
				return;
			}
		case VK_INT:
			{
				int64		i = t == INT8OID ? DatumGetInt64(d) :
				t == INT4OID ? DatumGetInt32(d) : DatumGetInt16(d);

				v->type = jbvNumeric;
				v->val.numeric = int64_to_numeric(i);
				return;
			}
		case VK_BOOL:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(d);
			return;
		case VK_DATETIME:
			{
				char	   *s = JsonEncodeDateTime(NULL, d, t, NULL);

				v->type = jbvString;
				v->val.string.val = s;
				v->val.string.len = strlen(s);
				return;
			}
		case VK_JSONB:
		case VK_OTHER:
			cdp_jsonb_as_value(kind == VK_JSONB ? d : FunctionCall1(to_jsonb_fi, d), v);
			return;
	}
}

/*
 * cdp_jsonb_object_of
 *		SQL: _jsonb_object_of(keys text[], VARIADIC "any") RETURNS jsonb: the
 *		object {key: to_jsonb(value)} of the values that are not NULL, NULL
 *		when there is none.  What to_jsonb does per call (find out how the
 *		type converts, print the value, parse it back) is done once per
 *		argument here, and common types are pushed as they are.
 */
Datum
cdp_jsonb_object_of(PG_FUNCTION_ARGS)
{
	ObjectCache *cache = (ObjectCache *) fcinfo->flinfo->fn_extra;
	ArrayType  *karr;
	Datum	   *keys;
	bool	   *knulls;
	int			nkeys;
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			added = 0;
	int			i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (get_fn_expr_variadic(fcinfo->flinfo) && PG_NARGS() == 2)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("_jsonb_object_of does not take an array as VARIADIC")));
	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
									   offsetof(ObjectCache, args) +
									   sizeof(ArgInfo) * PG_NARGS());
		cache->nargs = PG_NARGS();
		for (i = 1; i < PG_NARGS(); i++)
		{
			ArgInfo    *a = &cache->args[i];

			a->type = get_fn_expr_argtype(fcinfo->flinfo, i);
			if (!OidIsValid(a->type))
				elog(ERROR, "could not determine the type of argument %d", i + 1);
			a->kind = value_kind(a->type);
			a->elemtype = get_element_type(a->type);
			a->is_array = a->kind == VK_OTHER && OidIsValid(a->elemtype);
			if (a->is_array)
			{
				a->elemkind = value_kind(a->elemtype);
				get_typlenbyvalalign(a->elemtype, &a->elmlen, &a->elmbyval, &a->elmalign);
				if (a->elemkind == VK_OTHER)
					a->is_array = false;	/* to_jsonb does the whole array */
			}
			if (a->kind == VK_OTHER)
				init_to_jsonb(&a->to_jsonb, a->type, fcinfo->flinfo->fn_mcxt);
		}
		fcinfo->flinfo->fn_extra = cache;
	}

	karr = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(karr, TEXTOID, -1, false, TYPALIGN_INT, &keys, &knulls, &nkeys);
	if (nkeys != PG_NARGS() - 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%d keys but %d values", nkeys, PG_NARGS() - 1)));

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < nkeys; i++)
	{
		ArgInfo    *a = &cache->args[i + 1];
		JsonbValue	k;
		JsonbValue	v;

		if (knulls[i] || PG_ARGISNULL(i + 1))
			continue;
		k.type = jbvString;
		k.val.string.val = VARDATA_ANY(DatumGetPointer(keys[i]));
		k.val.string.len = VARSIZE_ANY_EXHDR(DatumGetPointer(keys[i]));
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		if (a->is_array)
		{
			ArrayType  *arr = DatumGetArrayTypeP(PG_GETARG_DATUM(i + 1));
			Datum	   *elems;
			bool	   *enulls;
			int			n;
			int			j;

			if (ARR_NDIM(arr) > 1)
			{
				/* nested arrays: to_jsonb's nesting */
				init_to_jsonb(&a->to_jsonb, a->type, fcinfo->flinfo->fn_mcxt);
				a->is_array = false;
				a->kind = VK_OTHER;
				scalar_value(VK_OTHER, a->type, &a->to_jsonb, PG_GETARG_DATUM(i + 1), &v);
				(void) pushJsonbValue(&state, WJB_VALUE, &v);
				added++;
				continue;
			}
			deconstruct_array(arr, a->elemtype, a->elmlen, a->elmbyval, a->elmalign,
							  &elems, &enulls, &n);
			(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
			for (j = 0; j < n; j++)
			{
				if (enulls[j])
					v.type = jbvNull;
				else
					scalar_value(a->elemkind, a->elemtype, NULL, elems[j], &v);
				(void) pushJsonbValue(&state, WJB_ELEM, &v);
			}
			(void) pushJsonbValue(&state, WJB_END_ARRAY, NULL);
		}
		else
		{
			scalar_value(a->kind, a->type, &a->to_jsonb, PG_GETARG_DATUM(i + 1), &v);
			(void) pushJsonbValue(&state, WJB_VALUE, &v);
		}
		added++;
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	if (added == 0)
		PG_RETURN_NULL();
	PG_RETURN_POINTER(JsonbValueToJsonb(result));
}

PG_FUNCTION_INFO_V1(cdp_merge_values);

/*
 * The attribute names a statement replaces (the same array on every row):
 * kept once per call site, sorted as jsonb sorts object keys (length, then
 * bytes), so that each stored key is looked up by binary search instead of
 * a comparison with every name on every row.
 */
typedef struct ReplacedKeys
{
	Size		arrlen;			/* the array's bytes, to see that it is the same */
	char	   *arr;
	int			n;
	struct ReplacedKey
	{
		int			len;
		char	   *name;
	}		   *keys;
} ReplacedKeys;

/*
 * key_cmp
 *		Order of two names as jsonb orders object keys.
 */
static int
key_cmp(int alen, const char *a, int blen, const char *b)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/*
 * replaced_key_qsort_cmp
 *		qsort comparator of ReplacedKey entries.
 */
static int
replaced_key_qsort_cmp(const void *a, const void *b)
{
	const struct ReplacedKey *x = a;
	const struct ReplacedKey *y = b;

	return key_cmp(x->len, x->name, y->len, y->name);
}

/*
 * replaced_keys
 *		The sorted names of the array arr, from the call site's cache when it
 *		holds the same array.
 */
static ReplacedKeys *
replaced_keys(FunctionCallInfo fcinfo, ArrayType *arr)
{
	ReplacedKeys *rk = (ReplacedKeys *) fcinfo->flinfo->fn_extra;
	MemoryContext old;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (rk != NULL && rk->arrlen == VARSIZE(arr) && memcmp(rk->arr, arr, rk->arrlen) == 0)
		return rk;
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	if (rk == NULL)
		rk = palloc0(sizeof(ReplacedKeys));
	else
	{
		pfree(rk->arr);
		for (i = 0; i < rk->n; i++)
			pfree(rk->keys[i].name);
		if (rk->keys)
			pfree(rk->keys);
	}
	rk->arrlen = VARSIZE(arr);
	rk->arr = palloc(rk->arrlen);
	memcpy(rk->arr, arr, rk->arrlen);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	rk->keys = palloc(sizeof(struct ReplacedKey) * Max(n, 1));
	rk->n = 0;
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		rk->keys[rk->n].len = VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i]));
		rk->keys[rk->n].name = pnstrdup(VARDATA_ANY(DatumGetPointer(elems[i])),
										rk->keys[rk->n].len);
		rk->n++;
	}
	qsort(rk->keys, rk->n, sizeof(struct ReplacedKey), replaced_key_qsort_cmp);
	fcinfo->flinfo->fn_extra = rk;
	MemoryContextSwitchTo(old);
	return rk;
}

/*
 * is_replaced
 *		Whether the name (len bytes) is one of rk's.
 */
static bool
is_replaced(ReplacedKeys *rk, const char *name, int len)
{
	int			lo = 0;
	int			hi = rk->n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = key_cmp(len, name, rk->keys[mid].len, rk->keys[mid].name);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return false;
}

/*
 * cdp_merge_values
 *		SQL: _merge_values(old jsonb, new jsonb, replaced text[]) RETURNS jsonb:
 *		an entity's stored object of values with the attributes of replaced
 *		taken out and those of new put in, i.e.
 *		(COALESCE(old, '{}') - replaced) || COALESCE(new, '{}'), without
 *		rebuilding anything when there is nothing to merge (no stored values,
 *		or nothing replaced and nothing new).
 */
Datum
cdp_merge_values(PG_FUNCTION_ARGS)
{
	Jsonb	   *old;
	Jsonb	   *new = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	ReplacedKeys *rk;
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *result;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the attributes replaced must not be null")));
	if (new != NULL && !JB_ROOT_IS_OBJECT(new))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("new values must be a jsonb object")));
	if (PG_ARGISNULL(0))
	{
		if (new != NULL)
			PG_RETURN_JSONB_P(new);
		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		PG_RETURN_JSONB_P(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
	}
	old = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(old))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stored values must be a jsonb object")));
	rk = replaced_keys(fcinfo, PG_GETARG_ARRAYTYPE_P(2));
	if (new == NULL && rk->n == 0)
		PG_RETURN_JSONB_P(old);

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(&old->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	tmp;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (is_replaced(rk, k.val.string.val, k.val.string.len) ||
			(new != NULL && getKeyJsonValueFromContainer(&new->root, k.val.string.val,
														 k.val.string.len, &tmp) != NULL))
			continue;
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}
	if (new != NULL)
	{
		it = JsonbIteratorInit(&new->root);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			(void) pushJsonbValue(&state, WJB_KEY, &k);
			tok = JsonbIteratorNext(&it, &v, true);
			(void) pushJsonbValue(&state, WJB_VALUE, &v);
		}
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}
