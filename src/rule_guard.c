/*-------------------------------------------------------------------------
 *
 * rule_guard.c
 *		Event triggers around DDL that drops or renames objects: a command
 *		that would leave a stitching rule unable to compile is refused.
 *
 * A rule's value_expression is SQL text (stitching_rules), so PostgreSQL
 * records no dependency on the functions, types, operators, casts,
 * collations, schemas or tables it uses: they could be dropped or renamed
 * from under it, and every write of events, restitch() and every other
 * stitching pass would then fail.  So at the start of such a command the
 * rules are checked as they are when written (stitch_rule_problem), and
 * again at its end; a rule that compiled before and no longer does fails
 * the command (the error aborts it: nothing is dropped), naming the rule.
 * Rules that did not compile before the command (a state reached with the
 * event triggers disabled, say) do not stop it: stitching names them
 * (stitch_check_rules).
 *
 * Only drops (DROP ..., DROP OWNED, DROP EXTENSION) and renames (... RENAME,
 * ... SET SCHEMA) are checked, and only when rules exist: the event
 * triggers fire for the tags listed in 10_stitching.sql, and return at once
 * for any other statement.  Each check compiles every rule expression once,
 * as the extension owner with the rules' settings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "tcop/cmdtag.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_rules_ddl_start);
PG_FUNCTION_INFO_V1(cdp_rules_ddl_end);

/*
 * What the start of a command found: whether rules exist, and the
 * expressions that did not compile then.  Kept per command (its parse tree)
 * in TopTransactionContext, for the transaction BaselineXid names.
 */
typedef struct Baseline
{
	Node	   *parsetree;
	bool		rules;
	List	   *broken;			/* value_expressions (char *) */
} Baseline;

static List *Baselines = NIL;
static LocalTransactionId BaselineXid = InvalidLocalTransactionId;

/* a rule that does not compile */
typedef struct BrokenRule
{
	char	   *attr;
	char	   *expr;
	char	   *problem;
} BrokenRule;

/*
 * drops_or_renames
 *		Whether a command may drop or rename an object that a rule
 *		expression can use.
 */
static bool
drops_or_renames(Node *parsetree)
{
	if (parsetree == NULL)
		return false;
	switch (nodeTag(parsetree))
	{
		case T_DropStmt:
			switch (((DropStmt *) parsetree)->removeType)
			{
					/* nothing an expression names */
				case OBJECT_INDEX:
				case OBJECT_TRIGGER:
				case OBJECT_POLICY:
				case OBJECT_RULE:
				case OBJECT_PUBLICATION:
				case OBJECT_STATISTIC_EXT:
				case OBJECT_EVENT_TRIGGER:
				case OBJECT_PROCEDURE:
					return false;
				default:
					return true;
			}
		case T_DropOwnedStmt:
		case T_RenameStmt:
		case T_AlterObjectSchemaStmt:
			return true;
		default:
			return false;
	}
}

/*
 * guard_applies
 *		Whether the guard has anything to check in this database: the
 *		rules table exists (not while the extension's own script runs, nor
 *		once the command dropped the extension), and this is neither a
 *		binary upgrade nor a superuser's pg_restore (whose --clean drops
 *		the functions a rule uses before the extension with the rules).
 */
static bool
guard_applies(void)
{
	Oid			nsp;

	if (IsBinaryUpgrade)
		return false;
	if (application_name != NULL && strcmp(application_name, CDP_RESTORE_APPNAME) == 0 &&
		superuser())
		return false;
	if (creating_extension &&
		CurrentExtensionObject == get_extension_oid(CDP_EXTENSION_NAME, true))
		return false;
	nsp = get_namespace_oid(CDP_SCHEMA_NAME, true);
	return OidIsValid(nsp) && OidIsValid(get_relname_relid("stitching_rules", nsp));
}

/*
 * check_rules
 *		Compile every rule as the triggers run them (extension owner, the
 *		rules' settings), over ids of the attached table's type.  Returns
 *		the rules that do not compile (BrokenRule, one per attribute id and
 *		expression), made in cxt; *any says whether there are rules at all.
 */
static List *
check_rules(MemoryContext cxt, bool *any)
{
	CdpExecState es;
	List	   *broken = NIL;
	Oid			idtype;
	uint64		i;
	uint64		n;
	SPITupleTable *rules;
	char	   *last_expr = NULL;
	char	   *last_problem = NULL;

	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cdp_execute_sql("SELECT DISTINCT value_expression, attribute_id "
					"FROM cdp_traits.stitching_rules ORDER BY 1, 2",
					SPI_OK_SELECT, "reading stitching rules");
	rules = SPI_tuptable;
	n = SPI_processed;
	*any = (n > 0);
	if (n > 0)
		(void) stitch_source(&idtype, NULL);
	for (i = 0; i < n; i++)
	{
		char	   *expr = SPI_getvalue(rules->vals[i], rules->tupdesc, 1);
		char	   *attr = SPI_getvalue(rules->vals[i], rules->tupdesc, 2);
		char	   *problem;

		/* (each expression is compiled once) */
		if (last_expr != NULL && strcmp(last_expr, expr) == 0)
			problem = last_problem;
		else
			problem = stitch_rule_problem(expr, idtype);
		last_expr = expr;
		last_problem = problem;
		if (problem != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);
			BrokenRule *b = palloc(sizeof(BrokenRule));

			b->attr = pstrdup(attr);
			b->expr = pstrdup(expr);
			b->problem = pstrdup(problem);
			broken = lappend(broken, b);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	cdp_exec_end(&es);
	return broken;
}

/*
 * baseline_of
 *		The baseline recorded for the command parsetree in this transaction,
 *		NULL if none; with remove, it is forgotten.
 */
static Baseline *
baseline_of(Node *parsetree, bool remove)
{
	ListCell   *lc;

	if (BaselineXid != MyProc->lxid)
	{
		/* (the list of an earlier transaction went with its memory) */
		Baselines = NIL;
		BaselineXid = MyProc->lxid;
	}
	foreach(lc, Baselines)
	{
		Baseline   *b = lfirst(lc);

		if (b->parsetree == parsetree)
		{
			if (remove)
				Baselines = foreach_delete_current(Baselines, lc);
			return b;
		}
	}
	return NULL;
}

/*
 * cdp_rules_ddl_start
 *		Event trigger at the start of the commands that may drop or rename
 *		an object a rule uses (see the top of this file): records which
 *		rules do not compile before the command.
 */
Datum
cdp_rules_ddl_start(PG_FUNCTION_ARGS)
{
	EventTriggerData *trig;
	Baseline   *b;
	List	   *broken;
	bool		any;
	ListCell   *lc;
	MemoryContext old;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits._rules_ddl_start() must be called as an event trigger")));
	trig = (EventTriggerData *) fcinfo->context;
	if (!drops_or_renames(trig->parsetree) || !guard_applies())
		PG_RETURN_NULL();

	broken = check_rules(TopTransactionContext, &any);

	(void) baseline_of(trig->parsetree, true);
	old = MemoryContextSwitchTo(TopTransactionContext);
	b = palloc0(sizeof(Baseline));
	b->parsetree = trig->parsetree;
	b->rules = any;
	foreach(lc, broken)
		b->broken = lappend(b->broken, ((BrokenRule *) lfirst(lc))->expr);
	Baselines = lappend(Baselines, b);
	MemoryContextSwitchTo(old);
	PG_RETURN_NULL();
}

/*
 * cdp_rules_ddl_end
 *		Event trigger at the end of the same commands: a rule that compiled
 *		at the start and does not now fails the command, naming the rule.
 */
Datum
cdp_rules_ddl_end(PG_FUNCTION_ARGS)
{
	EventTriggerData *trig;
	Baseline   *b;
	List	   *broken;
	List	   *now_broken = NIL;
	bool		any;
	ListCell   *lc;
	StringInfoData detail;
	const char *tag;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_traits._rules_ddl_end() must be called as an event trigger")));
	trig = (EventTriggerData *) fcinfo->context;
	if (!drops_or_renames(trig->parsetree))
		PG_RETURN_NULL();
	b = baseline_of(trig->parsetree, true);
	if (b == NULL || !b->rules || !guard_applies())
		PG_RETURN_NULL();

	broken = check_rules(CurrentMemoryContext, &any);
	foreach(lc, broken)
	{
		BrokenRule *r = lfirst(lc);
		ListCell   *lc2;
		bool		before = false;

		foreach(lc2, b->broken)
			if (strcmp(lfirst(lc2), r->expr) == 0)
				before = true;
		if (!before)
			now_broken = lappend(now_broken, r);
	}
	if (now_broken == NIL)
		PG_RETURN_NULL();

	tag = GetCommandTagName(trig->tag);
	if (list_length(now_broken) == 1)
	{
		BrokenRule *r = linitial(now_broken);

		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("stitching rule for attribute \"%s\" would no longer compile after %s", r->attr, tag),
				 errdetail("After the command, its value_expression %s fails: %s.", r->expr, r->problem),
				 errhint("Change the rule's value_expression in cdp_traits.stitching_rules, or delete the rule, "
						 "then run the command again.")));
	}
	initStringInfo(&detail);
	foreach(lc, now_broken)
	{
		BrokenRule *r = lfirst(lc);

		appendStringInfo(&detail, "%sthe rule for attribute \"%s\", value_expression %s: %s",
						 detail.len ? "\n" : "", r->attr, r->expr, r->problem);
	}
	ereport(ERROR,
			(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
			 errmsg("%d stitching rules would no longer compile after %s", list_length(now_broken), tag),
			 errdetail("After the command, these fail: %s.", detail.data),
			 errhint("Change those rules' value_expression in cdp_traits.stitching_rules, or delete them, "
					 "then run the command again.")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}
