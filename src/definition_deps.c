/*-------------------------------------------------------------------------
 *
 * definition_deps.c
 *		What a compiled attribute definition depends on in the catalogs, and
 *		a stamp of it, so that calculate_attributes can keep what _compile
 *		made of a definition (cdp_traits.compiled_definitions) and use it in
 *		a later run instead of compiling again.
 *
 * _compile turns a definition into SQL text and facts about it: the type
 * of its value (which chooses the conversion), whether its value is
 * set-returning, and whether its expressions call only immutable functions
 * (whether its aggregate state may be stored).  Those facts come from
 * parse analysis, so they depend on the relations and functions the
 * definition's statement names.  _query_deps lists them; _deps_stamp reads
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
#include "catalog/pg_type.h"
#include "common/md5.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_query_deps);
PG_FUNCTION_INFO_V1(cdp_deps_stamp);

typedef struct QueryDeps
{
	List	   *rels;			/* OIDs of the relations named */
	List	   *funcs;			/* OIDs of the functions called */
} QueryDeps;

/*
 * deps_function
 *		check_functions_in_node callback: note the function, look further.
 */
static bool
deps_function(Oid func_id, void *context)
{
	QueryDeps  *deps = (QueryDeps *) context;

	deps->funcs = list_append_unique_oid(deps->funcs, func_id);
	return false;
}

/*
 * deps_walker
 *		Query and expression tree walker collecting the relations (range
 *		table entries, views included as such) and functions (operators
 *		and casts by their functions) of a parse-analysed statement.
 */
static bool
deps_walker(Node *node, void *context)
{
	QueryDeps  *deps = (QueryDeps *) context;

	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
			deps->rels = list_append_unique_oid(deps->rels, rte->relid);
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, deps_walker, context,
								 QTW_EXAMINE_RTES_BEFORE);
	(void) check_functions_in_node(node, deps_function, context);
	return expression_tree_walker(node, deps_walker, context);
}

/*
 * oid_array
 *		A sorted oid[] of a list of OIDs.
 */
static ArrayType *
oid_array(List *oids)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(oids) + 1));
	int			n = 0;
	ListCell   *lc;

	list_sort(oids, list_oid_cmp);
	foreach(lc, oids)
		elems[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	return construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
}

/*
 * cdp_query_deps
 *		SQL: _query_deps(sql text, OUT rels oid[], OUT funcs oid[]): the
 *		relations and functions a statement names, as parse analysis
 *		resolves them now (the statement is not run, views are not looked
 *		into: a view's columns and definition are its own catalog rows).
 */
Datum
cdp_query_deps(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	QueryDeps	deps = {NIL, NIL};
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	List	   *raw;
	ListCell   *lc;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	foreach(lc, raw)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		Query	   *q = parse_analyze_fixedparams(rs, sql, NULL, 0, NULL);

		(void) deps_walker((Node *) q, &deps);
	}
	values[0] = PointerGetDatum(oid_array(deps.rels));
	values[1] = PointerGetDatum(oid_array(deps.funcs));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

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
