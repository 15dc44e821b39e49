/*-------------------------------------------------------------------------
 *
 * definition_deps.c
 *		A stamp of the catalog rows a compiled attribute definition depends
 *		on, so that calculate_attributes can keep what _compile made of a
 *		definition (cdp_traits.compiled_definitions) and use it in a later
 *		run instead of compiling again.
 *
 * _compile turns a definition into SQL text and facts about it: the type
 * of its value (which chooses the conversion), whether its value is
 * set-returning, and whether its expressions call only immutable functions
 * (whether its aggregate state may be stored).  Those facts come from
 * parse analysis, so they depend on the relations and functions the
 * definition's statement names.  _query_deps (sqlcheck.c) lists them when
 * _compile analyses that statement; _deps_stamp reads
 * the version of each one's catalog rows, as PL/pgSQL checks whether a
 * function it compiled was replaced: the xmin of a catalog row changes with
 * every update of the row (ALTER FUNCTION, CREATE OR REPLACE, a column
 * added, dropped, renamed or retyped, a view redefined), and a dropped
 * object is gone.  An update that changes nothing that matters (a
 * statistics target, say) only costs one compilation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "common/md5.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_deps_stamp);

/*
 * row_version
 *		Append the xmin of a syscache row to buf; false if there is no row.
 */
static bool
row_version(StringInfo buf, char tag, HeapTuple tuple)
{
	if (!HeapTupleIsValid(tuple))
		return false;
	appendStringInfo(buf, "%c%u;", tag, HeapTupleHeaderGetRawXmin(tuple->t_data));
	ReleaseSysCache(tuple);
	return true;
}

/*
 * cdp_deps_stamp
 *		SQL: _deps_stamp(rels oid[], funcs oid[]) RETURNS text: an md5 of the
 *		versions of the catalog rows of the relations (pg_class, each column
 *		in pg_attribute, a view's rule) and functions (pg_proc); NULL when
 *		one of them no longer exists.
 */
Datum
cdp_deps_stamp(PG_FUNCTION_ARGS)
{
	ArrayType  *rels = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *funcs = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;
	int			i;
	StringInfoData buf;
	char		hex[33];
	const char *errstr = NULL;

	initStringInfo(&buf);
	deconstruct_array(rels, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &elem_nulls, &n);
	for (i = 0; i < n; i++)
	{
		Oid			relid = DatumGetObjectId(elems[i]);
		HeapTuple	tuple;
		int			natts;
		char		relkind;
		int			att;

		if (elem_nulls[i])
			PG_RETURN_NULL();
		tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		if (!HeapTupleIsValid(tuple))
			PG_RETURN_NULL();
		natts = ((Form_pg_class) GETSTRUCT(tuple))->relnatts;
		relkind = ((Form_pg_class) GETSTRUCT(tuple))->relkind;
		appendStringInfo(&buf, "r%u:", relid);
		(void) row_version(&buf, 'c', tuple);
		for (att = 1; att <= natts; att++)
		{
			if (!row_version(&buf, 'a', SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid),
														Int16GetDatum(att))))
				PG_RETURN_NULL();
		}
		if (relkind == RELKIND_VIEW &&
			!row_version(&buf, 'v', SearchSysCache2(RULERELNAME, ObjectIdGetDatum(relid),
													 CStringGetDatum("_RETURN"))))
			PG_RETURN_NULL();
	}
	deconstruct_array(funcs, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &elem_nulls, &n);
	for (i = 0; i < n; i++)
	{
		if (elem_nulls[i])
			PG_RETURN_NULL();
		appendStringInfo(&buf, "f%u:", DatumGetObjectId(elems[i]));
		if (!row_version(&buf, 'p', SearchSysCache1(PROCOID, elems[i])))
			PG_RETURN_NULL();
	}
	if (!pg_md5_hash(buf.data, buf.len, hex, &errstr))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not compute a stamp of a definition's dependencies: %s", errstr)));
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}
