/*-------------------------------------------------------------------------
 *
 * exec.c
 *		Running the extension's SQL safely: as the extension owner, with a
 *		pinned search_path, through SPI; plus small SPI/tuplestore helpers.
 *
 * The stitching triggers fire for whoever writes events, but they maintain
 * tables only the extension owner may write.  cdp_exec_begin switches to the
 * owner for the duration (as REFRESH MATERIALIZED VIEW does, with
 * SECURITY_RESTRICTED_OPERATION) and pins search_path, so that nothing on
 * the caller's search_path (a malicious lower() in an earlier schema, say)
 * is picked up by the extension's statements or the stitching rules.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/trigger.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "cdp_traits.h"
#include "stitch.h"

/* the owner, cached until the stitching cache is invalidated */
static Oid	CachedOwner = InvalidOid;
static uint64 CachedOwnerGeneration = 0;

/*
 * cdp_extension_owner
 *		The role that owns the cdp_traits extension in this database.
 */
Oid
cdp_extension_owner(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	if (OidIsValid(CachedOwner) && CachedOwnerGeneration == stitch_generation())
		return CachedOwner;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(CDP_EXTENSION_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" is not installed in this database",
						CDP_EXTENSION_NAME),
				 errhint("Run CREATE EXTENSION %s.", CDP_EXTENSION_NAME)));
	CachedOwner = owner;
	CachedOwnerGeneration = stitch_generation();
	return owner;
}

/*
 * cdp_exec_begin
 *		Switch to the extension owner with a pinned search_path.  Errors need
 *		no cleanup: transaction (and subtransaction) abort restores both.
 */
void
cdp_exec_begin(CdpExecState *state)
{
	Oid			owner = cdp_extension_owner();

	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	SetUserIdAndSecContext(owner, state->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	state->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", CDP_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Settings that change how values read as text, or how text reads as dates
 * and times: the stitching rules turn values into identifiers by casts to
 * text ((payload->>'dob')::date, event_time::date), which must not depend
 * on the session that happens to write the event.  Nor must the way a rule
 * is read as SQL: with standard_conforming_strings off the literal '\D' of
 * regexp_replace(payload->>'phone', '\D', '', 'g') is a plain D, and
 * transform_null_equals, array_nulls and quote_all_identifiers change what
 * "= NULL", an array literal and quote_ident() yield.  The values are those
 * of a default server in the C locale; calculate_attributes and
 * refresh_context pin the same.
 */
static const char *const RuleSettings[][2] = {
	{"TimeZone", "UTC"},
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
	{"xmlbinary", "base64"},
	{"xmloption", "content"},
	{"lc_monetary", "C"},
	{"lc_numeric", "C"},
	{"lc_time", "C"},
	{"standard_conforming_strings", "on"},
	{"transform_null_equals", "off"},
	{"array_nulls", "on"},
	{"quote_all_identifiers", "off"},
};

/*
 * cdp_exec_pin_rule_settings
 *		After cdp_exec_begin, before stitching rules are planned or run: pin
 *		the settings that change what a rule expression yields (see
 *		RuleSettings) until cdp_exec_end.  A setting already at its value
 *		is left alone (the common case costs a lookup each).
 */
void
cdp_exec_pin_rule_settings(void)
{
	int			i;

	for (i = 0; i < lengthof(RuleSettings); i++)
	{
		const char *cur = GetConfigOption(RuleSettings[i][0], true, false);

		if (cur == NULL || strcmp(cur, RuleSettings[i][1]) != 0)
			(void) set_config_option(RuleSettings[i][0], RuleSettings[i][1],
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
	}
}

/*
 * cdp_exec_end
 *		Undo cdp_exec_begin.
 */
void
cdp_exec_end(CdpExecState *state)
{
	AtEOXact_GUC(true, state->save_nestlevel);
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/*
 * cdp_push_caller_snapshot
 *		Make the snapshot of the calling statement the active one, for a
 *		function that reads what its caller resolved in that statement (an
 *		entity id followed to the live entity): a fresh snapshot, under READ
 *		COMMITTED, could already see that entity merged into another and its
 *		events gone.  Pop it with PopActiveSnapshot().
 */
void
cdp_push_caller_snapshot(void)
{
	PushActiveSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot());
}

/*
 * cdp_growth_generation
 *		A number that changes whenever one of the watched tables has more
 *		than doubled in size since it last changed: a kept plan made under
 *		another number is to be made again.
 *
 *		A kept plan is generic and lives as long as the backend, or until
 *		the tables' statistics change.  One made while a table was nearly
 *		empty (just created, attached or truncated, and analyzed so) scans
 *		it whole where it should probe an index, and every statement of a
 *		long-lived backend -- a subscription's apply worker, a pooled
 *		connection ingesting events one by one -- grows slower with every
 *		row stored until autovacuum analyzes it.  The planner reads a
 *		table's current size, so plans made again fit it.  Each table is
 *		watched on its own: a table emptied by DELETE keeps its pages, and
 *		summed with the others it would hide their growth.  Doubling bounds
 *		the re-planning to a few times per backend.  The sizes come from
 *		the storage manager, without reading the tables, at most once a
 *		second.
 */
uint64
cdp_growth_generation(CdpGrowthWatch *watch)
{
	TimestampTz now = GetCurrentTimestamp();
	Oid			nsp;
	int64		blocks[CDP_GROWTH_MAX_TABLES];
	bool		grown = false;
	int			i;

	Assert(watch->ntables <= CDP_GROWTH_MAX_TABLES);
	if (watch->looked &&
		!TimestampDifferenceExceeds(watch->last_check, now, 1000))
		return watch->generation;
	watch->last_check = now;
	nsp = get_namespace_oid(CDP_SCHEMA_NAME, true);
	if (!OidIsValid(nsp))
		return watch->generation;
	for (i = 0; i < watch->ntables; i++)
	{
		Oid			relid = get_relname_relid(watch->tables[i], nsp);
		Relation	rel;

		blocks[i] = 0;
		if (!OidIsValid(relid))
			continue;
		rel = table_open(relid, AccessShareLock);
		blocks[i] = RelationGetNumberOfBlocks(rel);
		table_close(rel, NoLock);
		if (watch->looked && blocks[i] > 2 * watch->planned_blocks[i] + 8)
			grown = true;
	}
	if (!watch->looked || grown)
	{
		if (grown)
			watch->generation++;
		watch->looked = true;
		memcpy(watch->planned_blocks, blocks, sizeof(int64) * watch->ntables);
	}
	return watch->generation;
}

/*
 * cdp_plan_probes
 *		Make the generic plan of a kept statement now, with sequential
 *		scans, hash joins and merge joins disabled, so that it reads the
 *		tables it names by index probes; returns the plan's generation (see
 *		cdp_plan_generation).
 *
 *		For the statements that look rows of the extension's tables up by
 *		key, a few keys per execution, probes are the best plan; what the
 *		planner makes of the tables' statistics need not be.  Statistics
 *		recorded while a long transaction filled a table say it is empty
 *		(plan_estimates.c corrects its size, but its columns keep default
 *		selectivities: each key then seems to match hundreds of rows, and a
 *		hash of the whole table looks cheaper than probing for ten keys);
 *		a table that grew without doubling (cdp_growth_generation) is
 *		planned at its old size.  Such a plan reads the whole table at
 *		every execution: in a subscription's apply worker, at every row.
 *		With sane statistics these statements are planned as probes anyway.
 *
 *		plan must be kept (SPI_keepplan) and hold one statement.
 */
int
cdp_plan_probes(SPIPlanPtr plan)
{
	static const char *const off[] = {"enable_seqscan", "enable_hashjoin", "enable_mergejoin"};
	int			nestlevel = NewGUCNestLevel();
	CachedPlan *cplan;
	int			i;

	for (i = 0; i < lengthof(off); i++)
		(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	cplan = SPI_plan_get_cached_plan(plan);
	if (cplan == NULL)
		elog(ERROR, "could not make the generic plan of a kept statement");
	ReleaseCachedPlan(cplan, CurrentResourceOwner);
	AtEOXact_GUC(true, nestlevel);
	return cdp_plan_generation(plan);
}

/*
 * cdp_plan_generation
 *		How many plans the plan cache has made for a kept statement: the plan
 *		made by cdp_plan_probes is still the one in use while this returns
 *		what cdp_plan_probes returned.  (The plan cache makes a plan again by
 *		itself, under the session's settings, when an invalidation reaches
 *		it while it takes its locks.)
 */
int
cdp_plan_generation(SPIPlanPtr plan)
{
	List	   *sources = SPI_plan_get_plan_sources(plan);

	Assert(list_length(sources) == 1);
	return ((CachedPlanSource *) linitial(sources))->generation;
}

/*
 * cdp_trigger_not_this_session
 *		Whether a trigger is not the one to act in this session: the
 *		triggers of replica sessions (their names begin with
 *		replica_prefix, enabled with ENABLE REPLICA TRIGGER) act where
 *		session_replication_role is replica -- logical replication's apply
 *		worker -- and the others everywhere else.  This keeps a change from
 *		being applied twice where they were enabled otherwise (ALTER TABLE
 *		... ENABLE TRIGGER ALL makes them all fire in ordinary sessions).
 */
bool
cdp_trigger_not_this_session(TriggerData *td, const char *replica_prefix)
{
	bool		replica_trigger = strncmp(td->tg_trigger->tgname, replica_prefix,
										  strlen(replica_prefix)) == 0;

	return replica_trigger != (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA);
}

/*
 * cdp_loaded_by_restore
 *		Whether the statement is pg_restore loading a dump of the database:
 *		a superuser's session (only a superuser can create the extension, so
 *		only one restores it) named pg_restore (CDP_RESTORE_APPNAME).  The
 *		rows it loads into the events table and into segment_events are
 *		those of the dump, whose stitching and segment state the dump holds
 *		too: the triggers keep them as they are.  Both the session's role
 *		(that of SET ROLE) and the current one must be superusers: a
 *		superuser's SECURITY DEFINER function that inserts events for
 *		another role runs in that role's session.  Call it as the role that
 *		runs the statement, before cdp_exec_begin: under the switch the
 *		current role is the extension owner, and any role that may insert
 *		events could name its session pg_restore to have them skipped.
 */
bool
cdp_loaded_by_restore(void)
{
	return application_name != NULL &&
		strcmp(application_name, CDP_RESTORE_APPNAME) == 0 &&
		superuser_arg(GetOuterUserId()) && superuser();
}

/*
 * one_row
 *		A transition table of one row.
 */
static Tuplestorestate *
one_row(HeapTuple tuple)
{
	Tuplestorestate *ts = tuplestore_begin_heap(false, false, work_mem);

	tuplestore_puttuple(ts, tuple);
	return ts;
}

/*
 * cdp_row_as_statement
 *		The trigger data of the statement that a row trigger's row would be
 *		alone: AFTER, the same operation, one-row transition tables named
 *		newtable (the row inserted, or an UPDATE's new version) and oldtable
 *		(the row deleted, or an UPDATE's old version).  Logical
 *		replication's apply worker fires row triggers only; the statement
 *		triggers' code takes each row this way.  trig holds the statement's
 *		trigger; free the tables with cdp_row_statement_end.
 */
void
cdp_row_as_statement(TriggerData *row, const char *newtable, const char *oldtable,
					 TriggerData *stmt, Trigger *trig)
{
	memset(stmt, 0, sizeof(*stmt));
	stmt->type = T_TriggerData;
	stmt->tg_event = row->tg_event & TRIGGER_EVENT_OPMASK;
	stmt->tg_relation = row->tg_relation;
	*trig = *row->tg_trigger;
	trig->tgoldtable = NULL;
	trig->tgnewtable = NULL;
	stmt->tg_trigger = trig;
	if (TRIGGER_FIRED_BY_INSERT(row->tg_event))
	{
		trig->tgnewtable = (char *) newtable;
		stmt->tg_newtable = one_row(row->tg_trigtuple);
		return;
	}
	trig->tgoldtable = (char *) oldtable;
	stmt->tg_oldtable = one_row(row->tg_trigtuple);
	if (TRIGGER_FIRED_BY_UPDATE(row->tg_event))
	{
		trig->tgnewtable = (char *) newtable;
		stmt->tg_newtable = one_row(row->tg_newtuple);
	}
}

/*
 * cdp_row_statement_end
 *		Free the transition tables of cdp_row_as_statement.
 */
void
cdp_row_statement_end(TriggerData *stmt)
{
	if (stmt->tg_newtable)
		tuplestore_end(stmt->tg_newtable);
	if (stmt->tg_oldtable)
		tuplestore_end(stmt->tg_oldtable);
}

/*
 * cdp_prepare
 *		SPI_prepare that reports failure as an internal error.
 */
SPIPlanPtr
cdp_prepare(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	return plan;
}

/*
 * cdp_execute
 *		Run a prepared statement; check its result code against expected.
 *		Returns the number of rows processed.
 */
int
cdp_execute(SPIPlanPtr plan, Datum *values, const char *nulls,
			int expected, const char *what)
{
	instr_time	start,
				duration;
	int			rc;

	INSTR_TIME_SET_CURRENT(start);
	rc = SPI_execute_plan(plan, values, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	elog(DEBUG2, "cdp_traits: %s: " UINT64_FORMAT " rows in %.1f ms",
		 what, SPI_processed, INSTR_TIME_GET_MILLISEC(duration));
	return (int) SPI_processed;
}

/*
 * cdp_execute_sql
 *		Run one SQL string once (no plan kept).
 */
int
cdp_execute_sql(const char *sql, int expected, const char *what)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/*
 * cdp_in_subtransaction
 *		Run fn(arg) in a subtransaction of its own: NULL if it succeeded,
 *		else its error, caught (the subtransaction rolled back, the error
 *		copied into the caller's memory context) for the caller to raise
 *		again or report.  The caller's memory context and resource owner
 *		are current again either way.
 */
ErrorData *
cdp_in_subtransaction(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return edata;
}
