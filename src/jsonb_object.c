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
PG_FUNCTION_INFO_V1(cdp_values_changed);

static int	key_cmp(int alen, const char *a, int blen, const char *b);

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

/*
 * A text[] of names that a call site gets (the same array on every row of a
 * statement), kept with its non-NULL names sorted as jsonb sorts object keys
 * (length, then bytes; a repeated name by position), so that per row nothing
 * is deconstructed or sorted again.
 */
typedef struct NameList
{
	Size		arrlen;			/* the array's bytes, to see that it is the same */
	char	   *arr;
	int			nelems;			/* its elements, NULLs included */
	int			n;				/* the names below */
	struct SortedName
	{
		int			pos;		/* 0-based position in the array */
		int			len;
		char	   *name;
	}		   *names;
} NameList;

typedef struct ObjectCache
{
	NameList	keys;			/* the keys array */
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
 * sorted_name_cmp
 *		qsort comparator of a NameList's names: jsonb's key order, then the
 *		position in the array.
 */
static int
sorted_name_cmp(const void *a, const void *b)
{
	const struct SortedName *x = a;
	const struct SortedName *y = b;
	int			c = key_cmp(x->len, x->name, y->len, y->name);

	if (c != 0)
		return c;
	return x->pos < y->pos ? -1 : x->pos > y->pos ? 1 : 0;
}

/*
 * name_list
 *		nl made the list of arr (a text[]) unless it holds that array
 *		already; what it keeps is allocated in cxt.
 */
static void
name_list(NameList *nl, ArrayType *arr, MemoryContext cxt)
{
	MemoryContext old;
	Datum	   *elems;
	bool	   *nulls;
	int			i;

	if (nl->arr != NULL && nl->arrlen == VARSIZE(arr) && memcmp(nl->arr, arr, nl->arrlen) == 0)
		return;
	old = MemoryContextSwitchTo(cxt);
	if (nl->arr != NULL)
	{
		for (i = 0; i < nl->n; i++)
			pfree(nl->names[i].name);
		pfree(nl->names);
		pfree(nl->arr);
	}
	nl->arrlen = VARSIZE(arr);
	nl->arr = palloc(nl->arrlen);
	memcpy(nl->arr, arr, nl->arrlen);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nl->nelems);
	nl->names = palloc(sizeof(struct SortedName) * Max(nl->nelems, 1));
	nl->n = 0;
	for (i = 0; i < nl->nelems; i++)
	{
		struct SortedName *sn = &nl->names[nl->n];

		if (nulls[i])
			continue;
		sn->pos = i;
		sn->len = VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i]));
		sn->name = pnstrdup(VARDATA_ANY(DatumGetPointer(elems[i])), sn->len);
		nl->n++;
	}
	pfree(elems);
	pfree(nulls);
	qsort(nl->names, nl->n, sizeof(struct SortedName), sorted_name_cmp);
	MemoryContextSwitchTo(old);
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
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			added = 0;
	int			i;
	int			ki;

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

	name_list(&cache->keys, PG_GETARG_ARRAYTYPE_P(0), fcinfo->flinfo->fn_mcxt);
	if (cache->keys.nelems != PG_NARGS() - 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%d keys but %d values", cache->keys.nelems, PG_NARGS() - 1)));

	/*
	 * The keys go in in the order jsonb stores them, so that the sort of the
	 * object's pairs at its end finds them sorted (and a repeated key keeps
	 * its last value, as its later argument is pushed later).
	 */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (ki = 0; ki < cache->keys.n; ki++)
	{
		struct SortedName *sn = &cache->keys.names[ki];
		ArgInfo    *a = &cache->args[sn->pos + 1];
		JsonbValue	k;
		JsonbValue	v;

		i = sn->pos;
		if (PG_ARGISNULL(i + 1))
			continue;
		k.type = jbvString;
		k.val.string.val = sn->name;
		k.val.string.len = sn->len;
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
 * is_replaced
 *		Whether the name (len bytes) is one of nl's (binary search).
 */
static bool
is_replaced(NameList *nl, const char *name, int len)
{
	int			lo = 0;
	int			hi = nl->n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = key_cmp(len, name, nl->names[mid].len, nl->names[mid].name);

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
 * The pairs of a jsonb object, in the order it stores them (jsonb's key
 * order); containers among the values are left as they are (jbvBinary).
 */
typedef struct ObjectPairs
{
	int			n;
	JsonbValue *keys;
	JsonbValue *vals;
} ObjectPairs;

/*
 * object_pairs
 *		The pairs of the object jb (NULL: none) into p.
 */
static void
object_pairs(Jsonb *jb, ObjectPairs *p)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	int			size = jb ? JsonContainerSize(&jb->root) : 0;

	p->n = 0;
	p->keys = palloc(sizeof(JsonbValue) * Max(size, 1));
	p->vals = palloc(sizeof(JsonbValue) * Max(size, 1));
	if (jb == NULL)
		return;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		Assert(p->n < size);
		p->keys[p->n] = k;
		tok = JsonbIteratorNext(&it, &p->vals[p->n], true);
		Assert(tok == WJB_VALUE);
		p->n++;
	}
}

/*
 * pair_cmp
 *		Order of key i of a and key j of b (jsonb's key order); a key past
 *		the end of its object comes after every other.
 */
static int
pair_cmp(ObjectPairs *a, int i, ObjectPairs *b, int j)
{
	if (i >= a->n)
		return 1;
	if (j >= b->n)
		return -1;
	return key_cmp(a->keys[i].val.string.len, a->keys[i].val.string.val,
				   b->keys[j].val.string.len, b->keys[j].val.string.val);
}

/*
 * cdp_jsonb_values_equal
 *		Whether two values found in jsonb objects (scalars, or containers as
 *		jbvBinary) are equal as jsonb compares them.
 */
bool
cdp_jsonb_values_equal(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetBool(DirectFunctionCall2(numeric_eq,
													NumericGetDatum(a->val.numeric),
													NumericGetDatum(b->val.numeric)));
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvBinary:
			return compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) a->type);
	}
	return false;				/* keep compiler quiet */
}

/*
 * merge_arguments
 *		The arguments of _merge_values and _values_changed, checked: old and
 *		new (NULL when NULL) and the names replaced.
 */
static NameList *
merge_arguments(FunctionCallInfo fcinfo, Jsonb **old, Jsonb **new)
{
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the attributes replaced must not be null")));
	*new = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	if (*new != NULL && !JB_ROOT_IS_OBJECT(*new))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("new values must be a jsonb object")));
	*old = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	if (*old != NULL && !JB_ROOT_IS_OBJECT(*old))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stored values must be a jsonb object")));
	if (fcinfo->flinfo->fn_extra == NULL)
		fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(NameList));
	name_list(fcinfo->flinfo->fn_extra, PG_GETARG_ARRAYTYPE_P(2), fcinfo->flinfo->fn_mcxt);
	return fcinfo->flinfo->fn_extra;
}

/*
 * cdp_merge_values
 *		SQL: _merge_values(old jsonb, new jsonb, replaced text[]) RETURNS jsonb:
 *		an entity's stored object of values with the attributes of replaced
 *		taken out and those of new put in, i.e.
 *		(COALESCE(old, '{}') - replaced) || COALESCE(new, '{}'), without
 *		rebuilding anything when there is nothing to merge (no stored values,
 *		or nothing replaced and nothing new).  Both objects' keys are walked
 *		in their stored order, so the result's pairs come out sorted.
 */
Datum
cdp_merge_values(PG_FUNCTION_ARGS)
{
	Jsonb	   *old;
	Jsonb	   *new;
	NameList *rk = merge_arguments(fcinfo, &old, &new);
	JsonbParseState *state = NULL;
	ObjectPairs o;
	ObjectPairs n;
	int			i = 0;
	int			j = 0;

	if (old == NULL)
	{
		if (new != NULL)
			PG_RETURN_JSONB_P(new);
		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		PG_RETURN_JSONB_P(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
	}
	if (new == NULL && rk->n == 0)
		PG_RETURN_JSONB_P(old);

	object_pairs(old, &o);
	object_pairs(new, &n);
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	while (i < o.n || j < n.n)
	{
		int			c = pair_cmp(&o, i, &n, j);

		if (c < 0)
		{
			/* a stored value that is not new: kept unless replaced */
			if (!is_replaced(rk, o.keys[i].val.string.val, o.keys[i].val.string.len))
			{
				(void) pushJsonbValue(&state, WJB_KEY, &o.keys[i]);
				(void) pushJsonbValue(&state, WJB_VALUE, &o.vals[i]);
			}
			i++;
		}
		else
		{
			/* a new value (in place of the stored one, if any) */
			(void) pushJsonbValue(&state, WJB_KEY, &n.keys[j]);
			(void) pushJsonbValue(&state, WJB_VALUE, &n.vals[j]);
			if (c == 0)
				i++;
			j++;
		}
	}
	PG_RETURN_JSONB_P(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/*
 * cdp_values_changed
 *		SQL: _values_changed(old jsonb, new jsonb, replaced text[]) RETURNS
 *		boolean: old IS DISTINCT FROM _merge_values(old, new, replaced),
 *		found without building the merged object (most entities' values do
 *		not change when a calculation runs again).
 */
Datum
cdp_values_changed(PG_FUNCTION_ARGS)
{
	Jsonb	   *old;
	Jsonb	   *new;
	NameList *rk = merge_arguments(fcinfo, &old, &new);
	ObjectPairs o;
	ObjectPairs n;
	int			i = 0;
	int			j = 0;

	if (old == NULL)
		PG_RETURN_BOOL(true);
	object_pairs(old, &o);
	object_pairs(new, &n);
	while (i < o.n || j < n.n)
	{
		int			c = pair_cmp(&o, i, &n, j);

		if (c < 0)
		{
			/* a stored value with no new one: gone if replaced */
			if (is_replaced(rk, o.keys[i].val.string.val, o.keys[i].val.string.len))
				PG_RETURN_BOOL(true);
			i++;
		}
		else if (c > 0)
			PG_RETURN_BOOL(true);	/* a value that was not there */
		else
		{
			if (!cdp_jsonb_values_equal(&o.vals[i], &n.vals[j]))
				PG_RETURN_BOOL(true);
			i++;
			j++;
		}
	}
	PG_RETURN_BOOL(false);
}
