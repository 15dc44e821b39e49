/*-------------------------------------------------------------------------
 *
 * rule_guard.c
 *		Around DDL that drops or renames objects (called from the event
 *		triggers of ddl_guard.c): a command that would leave a stitching
 *		rule unable to compile is refused.
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
 * Only drops (DROP ..., DROP OWNED, DROP EXTENSION), renames (... RENAME,
 * ... SET SCHEMA, ALTER TYPE ... RENAME VALUE) and the ALTER TABLE / ALTER
 * TYPE commands that drop or retype a column or attribute are checked, and
 * only when rules exist; any other statement returns at once.  Each check
 * compiles every rule expression once, as the extension owner with the
 * rules' settings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/cmdtag.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "cdp_traits.h"
#include "stitch.h"

/*
 * What the start of a command found: the expressions that did not compile
 * then (kept by ddl_guard.c for the end of the command).
 */
typedef struct Baseline
{
	List	   *broken;			/* value_expressions (char *) */
} Baseline;

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
		case T_AlterTableStmt:
			{
				ListCell   *lc;

				/*
				 * A column (or a composite type's attribute) that a rule's
				 * subquery or row type reads, dropped or retyped
				 */
				foreach(lc, ((AlterTableStmt *) parsetree)->cmds)
				{
					AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

					if (cmd->subtype == AT_DropColumn ||
						cmd->subtype == AT_AlterColumnType)
						return true;
				}
				return false;
			}
		case T_AlterEnumStmt:
			/* a label a rule's literal names, renamed (not ADD VALUE) */
			return ((AlterEnumStmt *) parsetree)->oldVal != NULL;
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
	if (cdp_loaded_by_restore())
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
 * rules_ddl_start
 *		At the start of a command that may drop or rename an object a rule
 *		uses (see the top of this file), while rules exist: which rules do
 *		not compile before it, in TopTransactionContext for rules_ddl_end.
 *		NULL for any other command.
 */
void *
rules_ddl_start(Node *parsetree)
{
	Baseline   *b;
	List	   *broken;
	bool		any;
	ListCell   *lc;
	MemoryContext old;

	if (!drops_or_renames(parsetree) || !guard_applies())
		return NULL;
	broken = check_rules(TopTransactionContext, &any);
	if (!any)
		return NULL;
	old = MemoryContextSwitchTo(TopTransactionContext);
	b = palloc0(sizeof(Baseline));
	foreach(lc, broken)
		b->broken = lappend(b->broken, ((BrokenRule *) lfirst(lc))->expr);
	MemoryContextSwitchTo(old);
	return b;
}

/*
 * rules_ddl_end
 *		At the end of the same command (tag): a rule that compiled at its
 *		start (baseline) and does not now fails the command, naming the
 *		rule.
 */
void
rules_ddl_end(void *baseline, CommandTag tag)
{
	Baseline   *b = (Baseline *) baseline;
	List	   *broken;
	List	   *now_broken = NIL;
	bool		any;
	ListCell   *lc;
	StringInfoData detail;
	const char *tagname;

	if (!guard_applies())
		return;
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
		return;

	tagname = GetCommandTagName(tag);
	if (list_length(now_broken) == 1)
	{
		BrokenRule *r = linitial(now_broken);

		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("stitching rule for attribute \"%s\" would no longer compile after %s", r->attr, tagname),
				 errdetail("After the command, its value_expression %s fails: %s.", r->expr, r->problem),
				 errhint("Change the rule's value_expression in cdp_traits.stitching_rules, or delete the rule, "
						 "then run the command again.")));
	}
	initStringInfo(&detail);
	foreach(lc, now_broken)
	{
		BrokenRule *r = lfirst(lc);

		stitch_append_broken_rule(&detail, r->attr, r->expr, r->problem);
	}
	ereport(ERROR,
			(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
			 errmsg("%d stitching rules would no longer compile after %s", list_length(now_broken), tagname),
			 errdetail("After the command, these fail: %s.", detail.data),
			 errhint("Change those rules' value_expression in cdp_traits.stitching_rules, or delete them, "
					 "then run the command again.")));
}
