/*-------------------------------------------------------------------------
 *
 * value_deltas.c
 *		What a calculation's changes do to the attribute counts.
 *
 * A calculation writes, per entity, the old and the new object of attribute
 * values.  The counts for segmentation UIs (customers having an attribute,
 * customers per value of a categorical attribute) follow from the values
 * that differ between the two.  In SQL that is one row per changed value,
 * expanded once more per list element and grouped by (attribute, value):
 * several million rows for a full calculation.  This aggregate walks the two
 * objects of each entity once and sums the changes in a hash table keyed by
 * (attribute, value), so that only the distinct values leave it.
 *
 * _value_deltas(old jsonb, new jsonb, keys text[], categorical boolean[])
 * returns
 *		{"attribute": {"n": customers delta, "w": values written,
 *					   "r": values removed, "v": [[value, delta], ...]}, ...}
 * with only the attributes that changed and only the non-zero value deltas
 * ("v" only for categorical attributes; a list counts once per element).
 * A value longer than CDP_MAX_COUNTED_VALUE_BYTES is not counted per value:
 * attribute_value_counts is keyed by (attribute, value), and a btree entry
 * holds at most 2704 bytes (a URL with tracking parameters would fail every
 * run that writes it).  Such a value is nearly unique per customer anyway;
 * it still counts as a value of its attribute ("n").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "cdp_traits.h"

/* the longest value counted per value (see the top of the file) */
#define CDP_MAX_COUNTED_VALUE_BYTES 2000

PG_FUNCTION_INFO_V1(cdp_value_deltas_trans);
PG_FUNCTION_INFO_V1(cdp_value_deltas_final);

/* a value of an attribute: the attribute's index and the value's bytes */
typedef struct DeltaKey
{
	int			attr;
	uint32		len;
	const char *bytes;
} DeltaKey;

typedef struct DeltaEntry
{
	DeltaKey	key;			/* must be first */
	int64		delta;
	Jsonb	   *value;			/* the value itself, for the result */
} DeltaEntry;

typedef struct DeltaState
{
	MemoryContext cxt;			/* the aggregate context: everything below */
	int			nattrs;
	char	  **names;
	int		   *namelens;
	bool	   *categorical;
	int64	   *customers;
	int64	   *written;
	int64	   *removed;
	HTAB	   *values;
	StringInfoData scratch;		/* the bytes of the value being looked up */
} DeltaState;

/*
 * delta_hash
 *		Hash of a DeltaKey (dynahash callback).
 */
static uint32
delta_hash(const void *key, Size keysize)
{
	const DeltaKey *k = (const DeltaKey *) key;

	return hash_bytes((const unsigned char *) k->bytes, k->len) ^
		murmurhash32((uint32) k->attr);
}

/*
 * delta_match
 *		Equality of two DeltaKeys (dynahash callback; 0 means equal).
 */
static int
delta_match(const void *key1, const void *key2, Size keysize)
{
	const DeltaKey *a = (const DeltaKey *) key1;
	const DeltaKey *b = (const DeltaKey *) key2;

	if (a->attr != b->attr || a->len != b->len)
		return 1;
	return memcmp(a->bytes, b->bytes, a->len);
}

/*
 * value_bytes
 *		The canonical bytes of a value into buf: a type tag and the value,
 *		so that equal jsonb values give equal bytes (numbers normalized,
 *		containers in jsonb's own normalized text).
 */
static void
value_bytes(StringInfo buf, JsonbValue *v)
{
	resetStringInfo(buf);
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoChar(buf, 'n');
			break;
		case jbvBool:
			appendStringInfoChar(buf, v->val.boolean ? 't' : 'f');
			break;
		case jbvString:
			appendStringInfoChar(buf, 's');
			appendBinaryStringInfo(buf, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			appendStringInfoChar(buf, 'd');
			appendStringInfoString(buf, numeric_normalize(v->val.numeric));
			break;
		case jbvBinary:
			appendStringInfoChar(buf, 'j');
			(void) JsonbToCString(buf, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

/*
 * add_value
 *		Add delta to the count of one value of attribute attr (none for a
 *		value too long to be counted).
 */
static void
add_value(DeltaState *st, int attr, JsonbValue *v, int64 delta)
{
	DeltaKey	key;
	DeltaEntry *e;
	bool		found;

	value_bytes(&st->scratch, v);
	/* (the bytes after the type tag: the value's) */
	if (st->scratch.len - 1 > CDP_MAX_COUNTED_VALUE_BYTES)
		return;
	key.attr = attr;
	key.len = st->scratch.len;
	key.bytes = st->scratch.data;
	e = (DeltaEntry *) hash_search(st->values, &key, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(st->cxt);
		char	   *copy = palloc(key.len);

		memcpy(copy, key.bytes, key.len);
		e->key.bytes = copy;
		e->delta = 0;
		e->value = JsonbValueToJsonb(v);
		MemoryContextSwitchTo(old);
	}
	e->delta += delta;
}

/*
 * add_values
 *		Add delta to the counts of a categorical attribute's value: each
 *		element of a list, or the value itself.
 */
static void
add_values(DeltaState *st, int attr, JsonbValue *v, int64 delta)
{
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	elem;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (tok == WJB_ELEM)
				add_value(st, attr, &elem, delta);
		}
	}
	else
		add_value(st, attr, v, delta);
}

/*
 * new_state
 *		The state of a new aggregation over the attributes of keys.
 */
static DeltaState *
new_state(MemoryContext cxt, ArrayType *keys, ArrayType *cats)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	DeltaState *st = palloc0(sizeof(DeltaState));
	Datum	   *kd;
	bool	   *kn;
	Datum	   *cd;
	bool	   *cn;
	int			nk;
	int			nc;
	HASHCTL		ctl;
	int			i;

	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nk);
	deconstruct_array(cats, BOOLOID, 1, true, TYPALIGN_CHAR, &cd, &cn, &nc);
	if (nk != nc)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%d attributes but %d categorical flags", nk, nc)));
	st->cxt = cxt;
	st->nattrs = nk;
	st->names = palloc(sizeof(char *) * Max(nk, 1));
	st->namelens = palloc(sizeof(int) * Max(nk, 1));
	st->categorical = palloc(sizeof(bool) * Max(nk, 1));
	st->customers = palloc0(sizeof(int64) * Max(nk, 1));
	st->written = palloc0(sizeof(int64) * Max(nk, 1));
	st->removed = palloc0(sizeof(int64) * Max(nk, 1));
	for (i = 0; i < nk; i++)
	{
		if (kn[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("attribute names must not be null")));
		st->names[i] = text_to_cstring(DatumGetTextPP(kd[i]));
		st->namelens[i] = strlen(st->names[i]);
		st->categorical[i] = !cn[i] && DatumGetBool(cd[i]);
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(DeltaKey);
	ctl.entrysize = sizeof(DeltaEntry);
	ctl.hash = delta_hash;
	ctl.match = delta_match;
	ctl.hcxt = cxt;
	st->values = hash_create("cdp_traits value deltas", 1024, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	initStringInfo(&st->scratch);
	MemoryContextSwitchTo(old);
	return st;
}

/*
 * cdp_value_deltas_trans
 *		Transition: the changes between one entity's old and new objects.
 */
Datum
cdp_value_deltas_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	DeltaState *st;
	Jsonb	   *oldj;
	Jsonb	   *newj;
	int			i;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "_value_deltas called in a non-aggregate context");
	if (PG_ARGISNULL(3) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the attribute names and categorical flags must not be null")));
	if (PG_ARGISNULL(0))
		st = new_state(aggcxt, PG_GETARG_ARRAYTYPE_P(3), PG_GETARG_ARRAYTYPE_P(4));
	else
		st = (DeltaState *) PG_GETARG_POINTER(0);
	oldj = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	newj = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	if ((oldj != NULL && !JB_ROOT_IS_OBJECT(oldj)) || (newj != NULL && !JB_ROOT_IS_OBJECT(newj)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an entity's values must be a jsonb object"),
				 errdetail("_value_deltas compares the stored and the new object of attribute values of each entity.")));

	for (i = 0; i < st->nattrs; i++)
	{
		JsonbValue	ob;
		JsonbValue	nb;
		JsonbValue *ov = NULL;
		JsonbValue *nv = NULL;

		if (oldj != NULL)
			ov = getKeyJsonValueFromContainer(&oldj->root, st->names[i],
											  st->namelens[i], &ob);
		if (newj != NULL)
			nv = getKeyJsonValueFromContainer(&newj->root, st->names[i],
											  st->namelens[i], &nb);
		if (ov == NULL && nv == NULL)
			continue;
		if (ov != NULL && nv != NULL && cdp_jsonb_values_equal(ov, nv))
			continue;
		if (ov != NULL)
		{
			st->customers[i]--;
			if (st->categorical[i])
				add_values(st, i, ov, -1);
		}
		if (nv != NULL)
		{
			st->customers[i]++;
			st->written[i]++;
			if (st->categorical[i])
				add_values(st, i, nv, 1);
		}
		else
			st->removed[i]++;
	}
	PG_RETURN_POINTER(st);
}

/*
 * push_int
 *		Push a key and an integer value into an object being built.
 */
static void
push_int(JsonbParseState **ps, const char *key, int64 n)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(ps, WJB_KEY, &k);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(n)));
	(void) pushJsonbValue(ps, WJB_VALUE, &v);
}

/*
 * push_jsonb
 *		Push a stored jsonb as an array element.
 */
static void
push_jsonb(JsonbParseState **ps, Jsonb *jb)
{
	JsonbValue	v;

	cdp_jsonb_as_value(PointerGetDatum(jb), &v);
	(void) pushJsonbValue(ps, WJB_ELEM, &v);
}

/*
 * cdp_value_deltas_final
 *		The object of the changes (see the file header); {} if nothing changed.
 */
Datum
cdp_value_deltas_final(PG_FUNCTION_ARGS)
{
	DeltaState *st;
	JsonbParseState *ps = NULL;
	JsonbValue *result;
	List	  **per_attr;
	HASH_SEQ_STATUS seq;
	DeltaEntry *e;
	int			i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (DeltaState *) PG_GETARG_POINTER(0);

	/* the non-zero value deltas, by attribute */
	per_attr = palloc0(sizeof(List *) * Max(st->nattrs, 1));
	hash_seq_init(&seq, st->values);
	while ((e = (DeltaEntry *) hash_seq_search(&seq)) != NULL)
	{
		if (e->delta != 0)
			per_attr[e->key.attr] = lappend(per_attr[e->key.attr], e);
	}

	(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < st->nattrs; i++)
	{
		JsonbValue	k;
		ListCell   *lc;

		if (st->customers[i] == 0 && st->written[i] == 0 && st->removed[i] == 0 &&
			per_attr[i] == NIL)
			continue;
		k.type = jbvString;
		k.val.string.val = st->names[i];
		k.val.string.len = st->namelens[i];
		(void) pushJsonbValue(&ps, WJB_KEY, &k);
		(void) pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		push_int(&ps, "n", st->customers[i]);
		push_int(&ps, "w", st->written[i]);
		push_int(&ps, "r", st->removed[i]);
		k.val.string.val = "v";
		k.val.string.len = 1;
		(void) pushJsonbValue(&ps, WJB_KEY, &k);
		(void) pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
		foreach(lc, per_attr[i])
		{
			JsonbValue	d;

			e = (DeltaEntry *) lfirst(lc);
			(void) pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
			push_jsonb(&ps, e->value);
			d.type = jbvNumeric;
			d.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric,
																Int64GetDatum(e->delta)));
			(void) pushJsonbValue(&ps, WJB_ELEM, &d);
			(void) pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
		}
		(void) pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
		(void) pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}
	result = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}
