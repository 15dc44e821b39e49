/*-------------------------------------------------------------------------
 *
 * sqlcheck.c
 *		Checking and describing the SQL fragments users store in definitions
 *		(attribute values, filters, audience conditions, custom, external and
 *		context queries) before the extension ever runs them.
 *
 * The attribute engine embeds these fragments in larger statements, so a
 * fragment must be exactly what it claims to be: one expression, or one
 * plain SELECT (no data-modifying WITH, no INTO, no second statement), or
 * text like "1) FROM x; DROP TABLE y; --" could escape its place.  The raw
 * parser decides that, without looking anything up.  The describing
 * functions prepare (parse-analyse) a statement without running it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_sql_problem);
PG_FUNCTION_INFO_V1(cdp_expression_columns);
PG_FUNCTION_INFO_V1(cdp_query_columns);
PG_FUNCTION_INFO_V1(cdp_query_returns_set);
PG_FUNCTION_INFO_V1(cdp_query_deps);

/*
 * raw_parse_or_message
 *		Run the raw parser; on a syntax error return NULL and set *message.
 */
static List *
raw_parse_or_message(const char *sql, RawParseMode mode, char **message)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	List	   *parsed = NIL;

	PG_TRY();
	{
		parsed = raw_parser(sql, mode);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		*message = edata->message;
		return NIL;
	}
	PG_END_TRY();
	return parsed;
}

/*
 * parse_expression
 *		Raw-parse sql as one SQL expression; returns its SELECT wrapper, or
 *		NULL with *problem set when sql is anything else.
 */
static SelectStmt *
parse_expression(const char *sql, char **problem)
{
	List	   *parsed = raw_parse_or_message(sql, RAW_PARSE_PLPGSQL_EXPR, problem);
	SelectStmt *sel;

	if (*problem)
		return NULL;
	if (list_length(parsed) != 1)
	{
		*problem = pstrdup("expected one SQL expression");
		return NULL;
	}
	sel = (SelectStmt *) linitial_node(RawStmt, parsed)->stmt;
	if (!IsA(sel, SelectStmt) ||
		list_length(sel->targetList) != 1 || sel->fromClause != NIL ||
		sel->whereClause != NULL || sel->groupClause != NIL ||
		sel->havingClause != NULL || sel->windowClause != NIL ||
		sel->sortClause != NIL || sel->limitCount != NULL ||
		sel->limitOffset != NULL || sel->distinctClause != NIL ||
		sel->lockingClause != NIL || sel->intoClause != NULL ||
		sel->withClause != NULL || sel->op != SETOP_NONE)
	{
		*problem = pstrdup("expected one SQL expression, not a list, clause or statement");
		return NULL;
	}
	if (((ResTarget *) linitial(sel->targetList))->name != NULL)
	{
		*problem = pstrdup("expected one SQL expression without an alias");
		return NULL;
	}
	return sel;
}

/*
 * expression_problem
 *		NULL if sql is exactly one SQL expression, else what is wrong.
 */
static char *
expression_problem(const char *sql)
{
	char	   *problem = NULL;

	(void) parse_expression(sql, &problem);
	return problem;
}

/*
 * query_problem
 *		NULL if sql is exactly one plain SELECT statement, else what is wrong.
 */
static char *
query_problem(const char *sql)
{
	char	   *message = NULL;
	List	   *parsed = raw_parse_or_message(sql, RAW_PARSE_DEFAULT, &message);
	SelectStmt *sel;

	if (message)
		return message;
	if (list_length(parsed) != 1)
		return pstrdup("expected exactly one SELECT statement");
	sel = (SelectStmt *) linitial_node(RawStmt, parsed)->stmt;
	if (!IsA(sel, SelectStmt))
		return pstrdup("expected a SELECT statement");
	if (sel->intoClause != NULL)
		return pstrdup("SELECT INTO is not allowed");
	if (sel->lockingClause != NIL)
		return pstrdup("FOR UPDATE/SHARE is not allowed");
	if (sel->withClause != NULL)
	{
		ListCell   *lc;

		foreach(lc, sel->withClause->ctes)
		{
			CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

			if (!IsA(cte->ctequery, SelectStmt))
				return psprintf("WITH query \"%s\" must be a SELECT", cte->ctename);
		}
	}
	return NULL;
}

/*
 * subquery_problem
 *		NULL if sql is one plain SELECT that can be read as a subquery (the
 *		query of a custom or external attribute, put in parentheses), else
 *		what is wrong: a semicolon after the statement (a query pasted from
 *		a dbt model or a psql session) made "syntax error at or near ;".
 */
static char *
subquery_problem(const char *sql)
{
	char	   *message = query_problem(sql);
	List	   *parsed;
	RawStmt    *raw;

	if (message)
		return message;
	parsed = raw_parse_or_message(sql, RAW_PARSE_DEFAULT, &message);
	if (message)
		return message;
	raw = linitial_node(RawStmt, parsed);

	/*
	 * The statement starts after a semicolon (an empty statement before it)
	 * or has a length, which the last statement of a string has not unless
	 * a semicolon follows it.
	 */
	if (raw->stmt_location > 0)
		return pstrdup("a semicolon before the SELECT (the query is read as a subquery): remove it");
	if (raw->stmt_len > 0)
		return pstrdup("a semicolon after the SELECT (the query is read as a subquery): remove it");
	return NULL;
}

/*
 * cdp_sql_problem
 *		SQL: _sql_problem(sql text, kind text) RETURNS text.  NULL when sql is
 *		one expression (kind 'expression'), one plain SELECT (kind 'query')
 *		or one plain SELECT without a semicolon (kind 'subquery'); otherwise
 *		a description of the problem.
 */
Datum
cdp_sql_problem(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *problem;

	if (strcmp(kind, "expression") == 0)
		problem = expression_problem(sql);
	else if (strcmp(kind, "query") == 0)
		problem = query_problem(sql);
	else if (strcmp(kind, "subquery") == 0)
		problem = subquery_problem(sql);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown SQL fragment kind \"%s\"", kind),
				 errhint("Use 'expression', 'query' or 'subquery'.")));
	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

typedef struct ColumnRefNames
{
	List	   *names;
} ColumnRefNames;

/*
 * collect_column_refs
 *		Raw-tree walker: the last name of every column reference.
 */
static bool
collect_column_refs(Node *node, void *context)
{
	ColumnRefNames *acc = (ColumnRefNames *) context;

	if (node == NULL)
		return false;
	if (IsA(node, ColumnRef))
	{
		ColumnRef  *ref = (ColumnRef *) node;
		Node	   *last = llast(ref->fields);

		if (IsA(last, String))
			acc->names = list_append_unique(acc->names, makeString(strVal(last)));
		return false;
	}
	return raw_expression_tree_walker(node, collect_column_refs, context);
}

/*
 * cdp_expression_columns
 *		SQL: _expression_columns(expr text) RETURNS text[] — the column names
 *		an expression refers to (for the dependencies of audiences).
 */
Datum
cdp_expression_columns(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *problem = NULL;
	SelectStmt *sel = parse_expression(sql, &problem);
	ColumnRefNames acc = {NIL};
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;

	if (sel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid expression: %s", problem),
				 errdetail("Expression: %s", sql)));
	(void) collect_column_refs((Node *) sel->targetList, &acc);
	elems = palloc(sizeof(Datum) * (list_length(acc.names) + 1));
	foreach(lc, acc.names)
		elems[n++] = CStringGetTextDatum(strVal(lfirst(lc)));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * prepared_source
 *		Parse-analyse one statement through SPI (errors propagate) and return
 *		its plan source.  The caller must be connected to SPI.
 */
static CachedPlanSource *
prepared_source(const char *sql)
{
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);
	List	   *sources;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("expected exactly one statement")));
	return (CachedPlanSource *) linitial(sources);
}

/*
 * cdp_query_columns
 *		SQL: _query_columns(sql text) RETURNS TABLE(name text, type regtype):
 *		the result columns of a statement, found by preparing it (it is not
 *		run).  Errors in the statement are raised as they are.
 */
Datum
cdp_query_columns(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CachedPlanSource *src;
	TupleDesc	desc;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	src = prepared_source(sql);
	desc = src->resultDesc;
	for (i = 0; desc && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(NameStr(att->attname));
		values[1] = ObjectIdGetDatum(att->atttypid);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * cdp_query_returns_set
 *		SQL: _query_returns_set(sql text) RETURNS boolean: whether the
 *		target list of the (prepared, not run) SELECT has a set-returning
 *		function, i.e. one input row may give several output rows.
 */
Datum
cdp_query_returns_set(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CachedPlanSource *src;
	bool		result = false;
	ListCell   *lc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	src = prepared_source(sql);
	foreach(lc, src->query_list)
	{
		Query	   *q = lfirst_node(Query, lc);

		if (q->hasTargetSRFs)
			result = true;
	}
	SPI_finish();
	PG_RETURN_BOOL(result);
}

/*
 * pinned_function
 *		Whether a stable function of ours gives the same result for the same
 *		arguments throughout an attribute calculation: _to_date and
 *		_to_timestamptz depend only on TimeZone and DateStyle, which
 *		calculate_attributes pins.
 */
static bool
pinned_function(Oid func_id)
{
	char	   *name = get_func_name(func_id);
	Oid			nsp = get_func_namespace(func_id);
	char	   *nspname = OidIsValid(nsp) ? get_namespace_name(nsp) : NULL;

	return name != NULL && nspname != NULL && strcmp(nspname, "cdp_traits") == 0 &&
		(strcmp(name, "_to_date") == 0 || strcmp(name, "_to_timestamptz") == 0);
}

typedef struct StatementDeps
{
	List	   *rels;			/* OIDs of the relations named */
	List	   *funcs;			/* OIDs of the functions called */
	bool		is_mutable;	/* something may change with the same inputs */
} StatementDeps;

/*
 * deps_function
 *		check_functions_in_node callback: note the function, and whether its
 *		result may change while its arguments stay the same (not immutable,
 *		and not one of the pinned ones); look further.
 */
static bool
deps_function(Oid func_id, void *context)
{
	StatementDeps *deps = (StatementDeps *) context;

	deps->funcs = list_append_unique_oid(deps->funcs, func_id);
	if (func_volatile(func_id) != PROVOLATILE_IMMUTABLE && !pinned_function(func_id))
		deps->is_mutable = true;
	return false;
}

/*
 * deps_walker
 *		Query and expression tree walker collecting the relations (range
 *		table entries, views as such, not looked into) and the functions
 *		(operators and casts by their functions) of a parse-analysed
 *		statement, and whether it calls anything mutable (as
 *		contain_mutable_functions, with the pinned functions allowed).
 */
static bool
deps_walker(Node *node, void *context)
{
	StatementDeps *deps = (StatementDeps *) context;

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
	if (IsA(node, SQLValueFunction) || IsA(node, NextValueExpr) ||
		IsA(node, Param))
		deps->is_mutable = true;
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
 *		SQL: _query_deps(sql text, OUT rels oid[], OUT funcs oid[],
 *		OUT immutable boolean): the relations and functions a statement
 *		names, as parse analysis resolves them now (the statement is not
 *		run; views are not looked into: a view's columns and definition are
 *		its own catalog rows), and whether it calls only immutable functions,
 *		so that the same rows of the relations it reads always give the
 *		same result.  An attribute whose expressions are immutable and read
 *		no relation but the events (its caller checks rels) may be kept up
 *		to date from a stored aggregate state (see entity_states): one that
 *		reads the clock, a context value or another table may not.  What it
 *		names is what its compilation depends on (see compiled_definitions
 *		and src/definition_deps.c).
 */
Datum
cdp_query_deps(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	StatementDeps deps = {NIL, NIL, false};
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
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
	values[2] = BoolGetDatum(!deps.is_mutable);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
