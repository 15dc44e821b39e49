/*-------------------------------------------------------------------------
 *
 * stitch_config.c
 *		The attached events table and the stitching rules, compiled to SQL.
 *
 * All rules become one query that evaluates, per event, only the rules whose
 * source/type/version match it (a LATERAL UNION ALL), drops NULL and
 * blocklisted values, and yields (event id, attribute id, value) rows.  The
 * same rule body is used over the NEW/OLD transition tables of the triggers,
 * over the whole events table (restitch, verify) and over the events of a
 * set of entities (splits).
 *
 * Prepared plans are kept per (statement, relation) and thrown away when the
 * rules, the blocklist, the attached table or its definition change: a
 * statement trigger on the rule tables broadcasts a relcache invalidation
 * of the rules table, which the callback registered in _PG_init turns into
 * a new generation of the cache.  A change of the events table's schema (a
 * rename) does the same, through a syscache callback.
 *
 * Invalidations arrive whenever a lock is taken, in the middle of a
 * stitching pass too (another session commits a rule while the pass waits
 * for a stitching table).  A pass reads rows whose rule columns are those
 * of the configuration it built its statements from, and numbers their
 * attributes as that configuration does: so a pass pins the configuration
 * (stitch_config_pin) and finishes with it; the change applies from the
 * next statement on.  A plan is kept with the generation of the
 * configuration its SQL was made from, not the one current once it is
 * prepared.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/plancache.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_stitching_rules_check);
PG_FUNCTION_INFO_V1(cdp_stitching_config_changed);
PG_FUNCTION_INFO_V1(cdp_event_id_of_key);

typedef struct PlanKey
{
	char		name[48];
	Oid			relid;
} PlanKey;

typedef struct PlanEntry
{
	PlanKey		key;
	SPIPlanPtr	plan;
	uint64		generation;
	uint64		size_generation;
	bool		probes;			/* planned by cdp_plan_probes */
	int			plan_generation;	/* what cdp_plan_probes returned */
} PlanEntry;

static MemoryContext ConfigContext = NULL;
static StitchConfig Config;
static bool ConfigValid = false;
static uint64 ConfigGeneration = 1;
static HTAB *PlanCache = NULL;

/* the tables the kept plans probe (see cdp_growth_generation) */
static const char *const PlannedTables[] = {"matching", "event_entities", "customer_entities"};
static CdpGrowthWatch PlanGrowth = CDP_GROWTH_WATCH(PlannedTables);

/*
 * Whether Config is being loaded (what it watches is not known yet: any
 * invalidation counts), whether it is whole (its rebuild did not fail
 * half-way), and the passes under way that pinned it: the transaction
 * nesting level of each, innermost last (see stitch_config_pin).
 */
static bool ConfigLoading = false;
static bool ConfigComplete = false;
static int *PinLevels = NULL;
static int	NumPins = 0;
static int	MaxPins = 0;

/* relations whose change invalidates the cache */
static Oid	WatchRules = InvalidOid;
static Oid	WatchSource = InvalidOid;
static Oid	WatchEvents = InvalidOid;
static uint32 WatchNamespace = 0;	/* syscache hash of the events' schema */

/*
 * stitch_invalidate
 *		Forget the configuration and every prepared plan.
 */
void
stitch_invalidate(void)
{
	ConfigValid = false;
	ConfigGeneration++;
}

/*
 * stitch_generation
 *		Number of the current generation of cached state (bumped whenever
 *		the configuration may have changed).
 */
uint64
stitch_generation(void)
{
	return ConfigGeneration;
}

/*
 * relcache_callback
 *		Relcache invalidation hook: only marks the cache stale (no catalog
 *		access is allowed here).  While the configuration is loaded, the
 *		relations to watch are not all known yet: any invalidation marks
 *		what is being loaded stale.
 */
static void
relcache_callback(Datum arg, Oid relid)
{
	if (ConfigLoading || relid == InvalidOid || relid == WatchRules ||
		relid == WatchSource || relid == WatchEvents ||
		list_member_oid(Config.members, relid))
		stitch_invalidate();
}

/*
 * role_callback
 *		Syscache invalidation hook for roles and their memberships: whether
 *		the events table's owner is trusted may have changed.
 */
static void
role_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	stitch_invalidate();
}

/*
 * namespace_callback
 *		Syscache invalidation hook for schemas: the configuration holds the
 *		events table's name with its schema's (events_name, and the SQL
 *		compiled from it), and ALTER SCHEMA ... RENAME TO sends no relcache
 *		invalidation for the tables in the schema.  A change of the events
 *		table's schema (or of one with the same hash, or of all) marks the
 *		cache stale, in every session; so does any schema's while the
 *		configuration is loaded (the schema to watch is noted last).
 */
static void
namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	if (ConfigLoading || hashvalue == 0 || hashvalue == WatchNamespace)
		stitch_invalidate();
}

/*
 * pin_xact_callback
 *		Transaction callback: a transaction that ends leaves no pass under
 *		way (one that failed did not unpin), nor a load of the configuration
 *		(one that an error interrupted did not end).
 */
static void
pin_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT)
	{
		NumPins = 0;
		ConfigLoading = false;
	}
}

/*
 * pin_subxact_callback
 *		Subtransaction callback: the passes that pinned the configuration in
 *		a subtransaction that is rolled back (or in one nested in it) failed
 *		without unpinning it.
 */
static void
pin_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	while (NumPins > 0 && PinLevels[NumPins - 1] >= GetCurrentTransactionNestLevel())
		NumPins--;
}

/*
 * stitch_register_callbacks
 *		Register the invalidation hooks and the ends of pins; once per
 *		process, from _PG_init.
 */
void
stitch_register_callbacks(void)
{
	CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, role_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMMEMROLE, role_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_callback, (Datum) 0);
	RegisterXactCallback(pin_xact_callback, NULL);
	RegisterSubXactCallback(pin_subxact_callback, NULL);
}

/*
 * config_recompiled
 *		stitch_config(false), with rules found not to compile compiled
 *		again first: what they use may be back (nothing invalidates the
 *		configuration then), and they may have been compiled as another
 *		role.
 */
static StitchConfig *
config_recompiled(void)
{
	StitchConfig *cfg = stitch_config(false);

	if (cfg->nbroken > 0)
	{
		stitch_invalidate();
		cfg = stitch_config(false);
	}
	return cfg;
}

/*
 * stitch_config_pin
 *		A stitching pass starts with the configuration stitch_config just
 *		returned: until stitch_config_unpin, stitch_config returns it as it
 *		is, even if an invalidation arrives in the meantime (the pass's
 *		statements, its rows' rule columns and its graph's attributes all
 *		come from it, and its strings stay where they are).  Pins nest; an
 *		error ends those of the (sub)transaction it aborts.  The outermost
 *		pin compiles rules found not to compile again first
 *		(config_recompiled, as stitch_rules_config does: under the pin they
 *		could not be; the caller has just called stitch_config, and keeps
 *		no part of it yet).
 */
void
stitch_config_pin(void)
{
	if (NumPins == 0 && ConfigComplete)
		(void) config_recompiled();
	if (NumPins >= MaxPins)
	{
		int			max = Max(MaxPins * 2, 8);

		PinLevels = PinLevels == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(int) * max) :
			repalloc(PinLevels, sizeof(int) * max);
		MaxPins = max;
	}
	PinLevels[NumPins++] = GetCurrentTransactionNestLevel();
}

/*
 * stitch_config_unpin
 *		The pass that pinned the configuration last is over: a change that
 *		arrived during it is loaded by the next stitch_config.
 */
void
stitch_config_unpin(void)
{
	if (NumPins > 0)
		NumPins--;
}

/*
 * column_type
 *		Type of a column of the events table, InvalidOid if it is missing.
 */
static Oid
column_type(Oid relid, const char *name)
{
	AttrNumber	att = get_attnum(relid, name);

	if (att == InvalidAttrNumber)
		return InvalidOid;
	return get_atttype(relid, att);
}

/*
 * type_owner
 *		The role owning a type.
 */
static Oid
type_owner(Oid typid)
{
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	owner = ((Form_pg_type) GETSTRUCT(tup))->typowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * normalized_columns
 *		Select list turning the events table's columns into the shape rules
 *		see: timestamp read as UTC, json as jsonb.
 */
static char *
normalized_columns(Oid relid)
{
	StringInfoData buf;
	Oid			ttype = column_type(relid, "event_time");
	Oid			ptype = column_type(relid, "payload");

	initStringInfo(&buf);
	appendStringInfoString(&buf, "id, source_id::text AS source_id, type::text AS type, version::text AS version, ");
	if (ttype == TIMESTAMPOID)
		appendStringInfoString(&buf, "(event_time AT TIME ZONE 'UTC') AS event_time, ");
	else
		appendStringInfoString(&buf, "event_time, ");
	if (ptype == JSONOID)
		appendStringInfoString(&buf, "payload::jsonb AS payload");
	else
		appendStringInfoString(&buf, "payload");
	return buf.data;
}

/*
 * has_unique_id
 *		Whether a unique index on the id column alone guarantees unique ids.
 */
static bool
has_unique_id(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	AttrNumber	idatt = get_attnum(relid, "id");
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		if (idx->indisunique && idx->indnkeyatts == 1 &&
			idx->indkey.values[0] == idatt && heap_attisnull(tup, Anum_pg_index_indpred, NULL))
			found = true;
		ReleaseSysCache(tup);
	}
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * append_condition
 *		" AND ev.col = 'value'" for a rule's source/type/version filter.
 */
static void
append_condition(StringInfo buf, const char *col, HeapTuple tup, TupleDesc desc,
				 int attno, bool *any)
{
	bool		isnull;
	Datum		val = SPI_getbinval(tup, desc, attno, &isnull);

	if (isnull)
		return;
	appendStringInfo(buf, "%sev.%s = %s", *any ? " AND " : "", col,
					 quote_literal_cstr(TextDatumGetCString(val)));
	*any = true;
}

/*
 * rule_event_row
 *		One event of no values, with ids of type idtype, as "ev": what a rule
 *		expression is compiled over.
 */
static char *
rule_event_row(Oid idtype)
{
	return psprintf("(SELECT NULL::%s AS id, NULL::text AS source_id, "
					"NULL::text AS type, NULL::text AS version, "
					"NULL::timestamptz AS event_time, NULL::jsonb AS payload) ev",
					format_type_be_qualified(idtype));
}

/* a check of a rule expression, run by rule_in_subtransaction */
typedef void (*RuleCheck) (const char *expr, Oid idtype, bool *is_set);

/* a rule check and its arguments, for cdp_in_subtransaction */
typedef struct RuleCheckCall
{
	RuleCheck	check;
	const char *expr;
	Oid			idtype;
	bool	   *is_set;
} RuleCheckCall;

/*
 * rule_check_in
 *		The check of rule_in_subtransaction, SPI connected, in its
 *		subtransaction.
 */
static void
rule_check_in(void *arg)
{
	RuleCheckCall *call = arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	call->check(call->expr, call->idtype, call->is_set);
	SPI_finish();
}

/*
 * rule_in_subtransaction
 *		Run check (SPI connected) in a subtransaction of its own; NULL if it
 *		succeeded, else its error, caught.  A cancel or a lack of resources
 *		is not the rule's fault: raised again.
 */
static ErrorData *
rule_in_subtransaction(RuleCheck check, const char *expr, Oid idtype, bool *is_set)
{
	RuleCheckCall call = {check, expr, idtype, is_set};
	ErrorData  *edata = cdp_in_subtransaction(rule_check_in, &call);

	if (edata != NULL &&
		(edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		 ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES))
		ReThrowError(edata);
	return edata;
}

/*
 * rule_returns_set
 *		Whether a (validated) rule expression is set-returning (*is_set; a
 *		RuleCheck).
 */
static void
rule_returns_set(const char *expr, Oid idtype, bool *is_set)
{
	char	   *sql;
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *src;
	bool		result = false;
	ListCell   *lc;

	sql = psprintf("SELECT (%s)::text FROM %s", expr, rule_event_row(idtype));
	plan = cdp_prepare(sql, 0, NULL);
	sources = SPI_plan_get_plan_sources(plan);
	src = linitial(sources);
	foreach(lc, src->query_list)
		result |= ((Query *) lfirst(lc))->hasTargetSRFs;
	SPI_freeplan(plan);
	*is_set = result;
}

/*
 * rule_error_context
 *		Error context callback of a rule compiled without a subtransaction
 *		(compile_rule): names the rule.
 */
static void
rule_error_context(void *arg)
{
	const char *const *rule = (const char *const *) arg;

	errcontext("stitching rule for attribute \"%s\", value_expression: %s", rule[0], rule[1]);
}

/*
 * compile_rule
 *		Whether the rule (attr, expr) is set-returning; if it does not
 *		compile, *problem is set to the error's message and *sqlstate to its
 *		code, and it is left out.  Each rule is compiled in a subtransaction
 *		of its own, so that one that no longer compiles (an object it uses
 *		dropped where the guard of rule_guard.c could not see it) is named
 *		where stitching needs it (stitch_check_rules) and nothing else that
 *		reads the configuration fails.  (In parallel mode, where no
 *		subtransaction may start, an error is raised, naming the rule.)
 */
static bool
compile_rule(const char *attr, const char *expr, Oid idtype, char **problem,
			 int *sqlstate)
{
	bool		is_set = false;
	ErrorData  *edata;

	*problem = NULL;
	if (IsInParallelMode())
	{
		ErrorContextCallback cb;
		const char *rule[2];

		rule[0] = attr;
		rule[1] = expr;
		cb.callback = rule_error_context;
		cb.arg = rule;
		cb.previous = error_context_stack;
		error_context_stack = &cb;
		rule_returns_set(expr, idtype, &is_set);
		error_context_stack = cb.previous;
		return is_set;
	}
	edata = rule_in_subtransaction(rule_returns_set, expr, idtype, &is_set);
	if (edata != NULL)
	{
		*problem = edata->message;
		*sqlstate = edata->sqlerrcode;
	}
	return is_set;
}

/*
 * stitch_append_broken_rule
 *		Append to buf (a line each) a rule that does not compile, as error
 *		details list them.
 */
void
stitch_append_broken_rule(StringInfo buf, const char *attr, const char *expr,
						  const char *problem)
{
	appendStringInfo(buf, "%sthe rule for attribute \"%s\", value_expression %s: %s",
					 buf->len ? "\n" : "", attr, expr, problem);
}

/*
 * compile_rules
 *		Turn the rules into the rule columns of the identifier query: rules
 *		with the same attribute id and expression share one column, guarded
 *		by the OR of their source/type/version filters.  Rules that do not
 *		compile are left out and recorded (nbroken): stitching refuses to
 *		run without them (stitch_check_rules).
 */
static void
compile_rules(StitchConfig *cfg, MemoryContext cxt)
{
	StringInfoData cols;
	StringInfoData broken;
	SPITupleTable *rules;
	uint64		nrules,
				i;
	int			maxcols;
	MemoryContext old;

	cdp_execute_sql("SELECT attribute_id, source_id, type, version, value_expression "
					"FROM cdp_traits.stitching_rules "
					"ORDER BY attribute_id, value_expression, source_id, type, version",
					SPI_OK_SELECT, "reading stitching rules");
	rules = SPI_tuptable;
	nrules = SPI_processed;
	maxcols = Max((int) nrules, 1);

	old = MemoryContextSwitchTo(cxt);
	cfg->attrs = palloc(sizeof(char *) * maxcols);
	cfg->col_attr = palloc(sizeof(int) * maxcols);
	cfg->col_is_set = palloc(sizeof(bool) * maxcols);
	MemoryContextSwitchTo(old);
	cfg->nrules = (int) nrules;
	initStringInfo(&cols);
	initStringInfo(&broken);

	for (i = 0; i < nrules;)
	{
		HeapTuple	tup = rules->vals[i];
		TupleDesc	desc = rules->tupdesc;
		char	   *attr = SPI_getvalue(tup, desc, 1);
		char	   *expr = SPI_getvalue(tup, desc, 5);
		StringInfoData cond;
		bool		unconditional = false;
		uint64		j;
		int			a;
		bool		is_set;
		char	   *problem;
		int			sqlstate;

		/* the rules of this (attribute, expression) group */
		initStringInfo(&cond);
		for (j = i; j < nrules; j++)
		{
			HeapTuple	t = rules->vals[j];
			bool		any = false;
			StringInfoData one;

			if (strcmp(SPI_getvalue(t, desc, 1), attr) != 0 ||
				strcmp(SPI_getvalue(t, desc, 5), expr) != 0)
				break;
			initStringInfo(&one);
			append_condition(&one, "source_id", t, desc, 2, &any);
			append_condition(&one, "type", t, desc, 3, &any);
			append_condition(&one, "version", t, desc, 4, &any);
			if (!any)
				unconditional = true;
			else
				appendStringInfo(&cond, "%s(%s)", cond.len ? " OR " : "", one.data);
		}
		i = j;

		/*
		 * (the attribute ids are those of all rules, whether or not they
		 * compile: a stitching pass that read them before the rules were
		 * compiled again indexes them as the rule columns do)
		 */
		for (a = 0; a < cfg->nattrs; a++)
			if (strcmp(cfg->attrs[a], attr) == 0)
				break;
		if (a == cfg->nattrs)
			cfg->attrs[cfg->nattrs++] = MemoryContextStrdup(cxt, attr);

		is_set = compile_rule(attr, expr, cfg->id_type, &problem, &sqlstate);
		if (problem != NULL)
		{
			if (cfg->nbroken++ == 0)
			{
				cfg->broken_attr = MemoryContextStrdup(cxt, attr);
				cfg->broken_expr = MemoryContextStrdup(cxt, expr);
				cfg->broken_problem = MemoryContextStrdup(cxt, problem);
				cfg->broken_code = sqlstate;
			}
			stitch_append_broken_rule(&broken, attr, expr, problem);
			continue;
		}

		cfg->col_attr[cfg->ncols] = a;
		cfg->col_is_set[cfg->ncols] = is_set;
		cfg->ncols++;

		appendStringInfoString(&cols, ", ");
		if (!unconditional)
			appendStringInfo(&cols, "CASE WHEN %s THEN ", cond.data);
		if (is_set)
			appendStringInfo(&cols, "ARRAY(SELECT (%s)::text)", expr);
		else
			appendStringInfo(&cols, "(%s)::text", expr);
		if (!unconditional)
			appendStringInfoString(&cols, " END");
	}
	cfg->cols_sql = MemoryContextStrdup(cxt, cols.data);
	if (cfg->nbroken > 0)
		cfg->broken_list = MemoryContextStrdup(cxt, broken.data);
}

/*
 * load_blocklist
 *		The blocklist, normalized, for the attributes the rules produce.
 */
static void
load_blocklist(StitchConfig *cfg, MemoryContext cxt)
{
	uint64		i;

	cdp_execute_sql("SELECT attribute_id, value "
					"FROM cdp_traits.stitching_blocklist",
					SPI_OK_SELECT, "reading the stitching blocklist");
	/* a value starting with a non-ASCII byte may lower-case to anything */
	memset(cfg->blocked_first + 0x80, true, 0x80);
	cfg->blocked = MemoryContextAlloc(cxt, sizeof(char *) * Max(SPI_processed, 1));
	cfg->blocked_attr = MemoryContextAlloc(cxt, sizeof(int) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *attr = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *val = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		int			a = -1;
		char		buf[64];
		const char *s = val;
		const char *e = val + strlen(val);

		if (attr != NULL)
		{
			for (a = 0; a < cfg->nattrs; a++)
				if (strcmp(cfg->attrs[a], attr) == 0)
					break;
			if (a == cfg->nattrs)
				continue;		/* no rule produces this attribute */
		}
		/* trimmed and lower-cased as values are (stitch_is_blocked) */
		stitch_trim(&s, &e);
		val = stitch_blocklist_lower(s, e - s, buf, sizeof(buf));
		if (val[0] != '\0' && (unsigned char) val[0] < 0x80)
		{
			cfg->blocked_first[(unsigned char) val[0]] = true;
			cfg->blocked_first[(unsigned char) pg_toupper((unsigned char) val[0])] = true;
		}
		cfg->blocked[cfg->nblocked] = MemoryContextStrdup(cxt, val);
		cfg->blocked_attr[cfg->nblocked] = a;
		cfg->max_blocked_len = Max(cfg->max_blocked_len, (int) strlen(val));
		cfg->nblocked++;
	}
}

/*
 * compile_with_rule_path
 *		compile_rules (and load_blocklist, with blocklist) under the
 *		search_path the rules run with.
 */
static void
compile_with_rule_path(StitchConfig *cfg, MemoryContext cxt, bool blocklist)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", CDP_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	compile_rules(cfg, cxt);
	if (blocklist)
		load_blocklist(cfg, cxt);
	AtEOXact_GUC(true, nest);
}

/*
 * stitch_config
 *		The current configuration, loaded through SPI (the caller must be
 *		connected) when stale.  With missing_ok, a database where no events
 *		table was ever attached yields NULL; otherwise that is an error.
 */
StitchConfig *
stitch_config(bool missing_ok)
{
	MemoryContext old;
	uint64		generation = ConfigGeneration;

	/* (a pass under way keeps what it started with: see stitch_config_pin) */
	if (!ConfigValid && !(NumPins > 0 && ConfigComplete))
	{
		if (ConfigContext == NULL)
			ConfigContext = AllocSetContextCreate(CacheMemoryContext,
												  "cdp_traits stitching cache",
												  ALLOCSET_SMALL_SIZES);
		ConfigComplete = false;
		ConfigLoading = true;
		MemoryContextReset(ConfigContext);
		memset(&Config, 0, sizeof(Config));

		WatchRules = get_relname_relid("stitching_rules",
									   get_namespace_oid(CDP_SCHEMA_NAME, false));
		WatchSource = get_relname_relid("events_source",
										get_namespace_oid(CDP_SCHEMA_NAME, false));
		WatchEvents = InvalidOid;
		WatchNamespace = 0;

		/* (uuid_keys: a column since 0.2.0; see stitch_keys_recorded) */
		cdp_execute_sql(stitch_keys_recorded() ?
						"SELECT events::oid, id_type::oid, attached, uuid_keys FROM cdp_traits.events_source" :
						"SELECT events::oid, id_type::oid, attached, false FROM cdp_traits.events_source",
						SPI_OK_SELECT, "reading the attached events table");
		if (SPI_processed == 1)
		{
			bool		isnull;
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			Oid			relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
			Oid			idtype = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
			bool		attached = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
			bool		uuid_keys = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
			bool		unique_id;

			/* the table was dropped: as if nothing were attached */
			if (get_rel_name(relid) == NULL)
				goto loaded;
			unique_id = has_unique_id(relid);
			old = MemoryContextSwitchTo(ConfigContext);
			Config.events_relid = relid;
			Config.attached = attached;
			Config.id_type = idtype;
			Config.events_name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
															get_rel_name(relid));
			Config.uuid_keys = (idtype == UUIDOID && uuid_keys);
			Config.key_of = stitch_key_format(idtype, uuid_keys);
			Config.id_of = stitch_id_format(idtype, uuid_keys);
			Config.unique_id = unique_id;
			Config.id_is_uuid = (idtype == UUIDOID);
			{
				StringInfoData problems;
				Oid			column_idtype;

				/*
				 * (ids are made of type idtype, as recorded when the table
				 * was attached: the column must still be of that type)
				 */
				initStringInfo(&problems);
				column_idtype = stitch_columns_problems(relid, &problems);
				if (OidIsValid(column_idtype) && column_idtype != idtype)
					appendStringInfo(&problems, "%scolumn \"id\" is of type %s, but the table was "
									 "attached with ids of type %s",
									 problems.len ? "; " : "", format_type_be(column_idtype),
									 format_type_be(idtype));
				Config.columns_problem = problems.len > 0 ? problems.data : NULL;
				initStringInfo(&problems);
				Config.members = stitch_owner_problems(relid, &problems);
				Config.owner_problem = problems.len > 0 ? problems.data : NULL;
			}
			MemoryContextSwitchTo(old);
			compile_with_rule_path(&Config, ConfigContext, true);
			WatchEvents = relid;
			WatchNamespace = GetSysCacheHashValue1(NAMESPACEOID,
												   ObjectIdGetDatum(get_rel_namespace(relid)));
		}
loaded:

		/*
		 * An invalidation that arrived while this was read (the locks taken
		 * accept them) may have come after what it changed was read: the
		 * configuration is loaded again by the next call.
		 */
		Config.generation = generation;
		ConfigValid = (generation == ConfigGeneration);
		ConfigComplete = true;
		ConfigLoading = false;
	}
	if (!OidIsValid(Config.events_relid))
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no events table is attached"),
				 errhint("Attach the customer events table with cdp_traits.attach_events('schema.table').")));
	}
	if (!missing_ok)
		stitch_check_columns(&Config, false);
	return &Config;
}

/*
 * stitch_rules_config
 *		The configuration for a stitching pass: stitch_config(false), and an
 *		error naming the rules that do not compile, if any do (stitching
 *		without one of them would unlink what it links).  Rules found not
 *		to compile are compiled again first: what they use may be back
 *		(nothing invalidates the configuration then), and they may have
 *		been compiled as another role.
 */
StitchConfig *
stitch_rules_config(void)
{
	StitchConfig *cfg = config_recompiled();

	stitch_check_rules(cfg);
	return cfg;
}

/*
 * stitch_check_rules
 *		Error if a stitching rule does not compile (compile_rules), naming
 *		it and how to fix it.  Rules are checked when they are written and
 *		the objects they use cannot be dropped or renamed from under them
 *		(rule_guard.c), but a database may get there anyway (event triggers
 *		disabled, a drop in single-user mode).
 */
void
stitch_check_rules(StitchConfig *cfg)
{
	if (cfg->nbroken == 0)
		return;
	if (cfg->nbroken == 1)
		ereport(ERROR,
				(errcode(cfg->broken_code),
				 errmsg("stitching rule for attribute \"%s\" does not compile: %s",
						cfg->broken_attr, cfg->broken_problem),
				 errdetail("The rule's value_expression is: %s", cfg->broken_expr),
				 errhint("Change the rule's value_expression in cdp_traits.stitching_rules, or delete "
						 "the rule; events are stitched again once every rule compiles.")));
	ereport(ERROR,
			(errcode(cfg->broken_code),
			 errmsg("%d stitching rules do not compile", cfg->nbroken),
			 errdetail("%s.", cfg->broken_list),
			 errhint("Change those rules' value_expression in cdp_traits.stitching_rules, or delete "
					 "them; events are stitched again once every rule compiles.")));
}

/*
 * stitch_source
 *		The attached events table (InvalidOid if none is known, or it was
 *		dropped), read without compiling the rules; *idtype (if given) is
 *		the type of its ids (text when there is no table), *attached (if
 *		given) whether it is attached.  The caller must be connected to SPI.
 */
Oid
stitch_source(Oid *idtype, bool *attached)
{
	Oid			relid = InvalidOid;
	Oid			type = TEXTOID;
	bool		att = false;

	if (ConfigValid)
	{
		/* (kept current by the invalidation of events_source) */
		relid = Config.events_relid;
		if (OidIsValid(relid))
		{
			type = Config.id_type;
			att = Config.attached;
		}
	}
	else
	{
		cdp_execute_sql("SELECT events::oid, id_type::oid, attached FROM cdp_traits.events_source",
						SPI_OK_SELECT, "reading the attached events table");
		if (SPI_processed == 1)
		{
			bool		isnull;
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
			if (get_rel_name(relid) == NULL)
				relid = InvalidOid;
			else
			{
				type = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
				att = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
			}
		}
	}
	if (idtype)
		*idtype = type;
	if (attached)
		*attached = att;
	return relid;
}

/*
 * stitch_check_columns
 *		Error if the attached events table's columns are no longer what
 *		attach_events accepted (see stitch_columns_problems): nothing reads
 *		it then.  stitch_config(false), which every stitching pass and the
 *		calculation's reads go through, checks this; so does the event
 *		trigger after a change of the table (ddl: the change is refused).
 */
void
stitch_check_columns(StitchConfig *cfg, bool ddl)
{
	if (!cfg->attached)
		return;
	if (cfg->owner_problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 ddl ?
				 errmsg("cannot change the events table %s that way while it is attached", cfg->events_name) :
				 errmsg("the events table %s can no longer be read by cdp_traits", cfg->events_name),
				 errdetail("%s.", cfg->owner_problem),
				 errhint("%s", STITCH_OWNER_HINT)));
	if (cfg->columns_problem == NULL)
		return;
	if (ddl)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("cannot change the columns of the events table %s that way while it is attached",
						cfg->events_name),
				 errdetail("After the change: %s.", cfg->columns_problem),
				 errhint("Run cdp_traits.detach_events(), change the table and attach it again.")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("the events table %s can no longer be read by cdp_traits", cfg->events_name),
				 errdetail("Its columns changed after it was attached: %s.", cfg->columns_problem),
				 errhint("Change the columns back, or run cdp_traits.detach_events(), change the table "
						 "and attach it again.")));
}

/*
 * stitch_identifier_sql
 *		SQL yielding one row per event read from source: the event id (raw
 *		for uuid ids, else as text), then (ENTITY only) the stored event id
 *		and entity, then the rule columns.  ENTITY also yields the stored
 *		assignments of the given entities whose event is gone (id NULL).
 */
char *
stitch_identifier_sql(StitchSource source)
{
	StitchConfig *cfg = stitch_rules_config();
	char	   *cols = normalized_columns(cfg->events_relid);
	const char *id = cfg->id_is_uuid ? "ev.id" : "ev.id::text";

	switch (source)
	{
		case SRC_NEW_ROWS:
		case SRC_OLD_ROWS:
			return psprintf("SELECT %s%s FROM (SELECT %s FROM %s) ev",
							id, cfg->cols_sql, cols,
							source == SRC_NEW_ROWS ? CDP_NEW_TABLE : CDP_OLD_TABLE);
		case SRC_ALL_EVENTS:
			return psprintf("SELECT %s%s FROM (SELECT %s FROM %s) ev",
							id, cfg->cols_sql, cols, cfg->events_name);
		case SRC_NEW_ROWS_LIVE:
			return psprintf("SELECT %s%s FROM (SELECT %s FROM %s n "
							"WHERE EXISTS (SELECT FROM %s x WHERE x.id = n.id) "
							"AND NOT EXISTS (SELECT FROM cdp_traits.event_entities ee "
							"WHERE ee.event_id = %s)) ev",
							id, cfg->cols_sql, cols, CDP_NEW_TABLE, cfg->events_name,
							stitch_key_sql(cfg, "n.id"));
		case SRC_NEW_ROWS_CURRENT:
			return psprintf("SELECT %s%s FROM (SELECT %s FROM %s "
							"WHERE id IN (SELECT n.id FROM %s n)) ev",
							id, cfg->cols_sql, cols, cfg->events_name, CDP_NEW_TABLE);
		case SRC_ENTITY_EVENTS:
			return psprintf("SELECT %s, ee.event_id, ee.customer_entity_id%s "
							"FROM cdp_traits.event_entities ee "
							"LEFT JOIN (SELECT %s FROM %s) ev ON ev.id = %s "
							"WHERE ee.customer_entity_id = ANY ($1)",
							id, cfg->cols_sql, cols, cfg->events_name,
							stitch_id_sql(cfg, "ee.event_id"));
	}
	return NULL;				/* keep compiler quiet */
}

/*
 * stitch_all_events_sql_except
 *		stitch_identifier_sql(SRC_ALL_EVENTS) without the rows of the tables
 *		in leaves (OIDs): the partitions of a DETACH ... CONCURRENTLY, whose
 *		rows the transaction that marks them detached still reads through
 *		the events table (see partition_drop.c).
 */
char *
stitch_all_events_sql_except(List *leaves)
{
	StitchConfig *cfg = stitch_rules_config();
	const char *id = cfg->id_is_uuid ? "ev.id" : "ev.id::text";

	return psprintf("SELECT %s%s FROM (SELECT %s FROM %s WHERE %s) ev",
					id, cfg->cols_sql, normalized_columns(cfg->events_relid), cfg->events_name,
					stitch_not_from_sql("tableoid", leaves));
}

/*
 * stitch_not_from_sql
 *		SQL condition: the row whose tableoid expression is tableoid comes
 *		from none of the tables in leaves (OIDs).
 */
char *
stitch_not_from_sql(const char *tableoid, List *leaves)
{
	StringInfoData oids;
	ListCell   *lc;

	initStringInfo(&oids);
	foreach(lc, leaves)
		appendStringInfo(&oids, "%s%u", oids.len > 0 ? "," : "", lfirst_oid(lc));
	return psprintf("%s OPERATOR(pg_catalog.<>) ALL ('{%s}'::pg_catalog.oid[])",
					tableoid, oids.data);
}

/*
 * stitch_explain_sql
 *		SQL yielding, for the stored events of one entity ($1 uuid), the
 *		event id as text, source_id, type, version, event_time (normalized as
 *		rules see them), then the rule columns; ordered by time and id.  Used
 *		by explain_entity() to show each event's identifiers.
 */
char *
stitch_explain_sql(void)
{
	StitchConfig *cfg = stitch_rules_config();

	return psprintf("SELECT ev.id::text, ev.source_id, ev.type, ev.version, ev.event_time%s "
					"FROM cdp_traits.event_entities ee "
					"JOIN (SELECT %s FROM %s) ev ON ev.id = %s "
					"WHERE ee.customer_entity_id = $1 "
					"ORDER BY ev.event_time, 1",
					cfg->cols_sql, normalized_columns(cfg->events_relid),
					cfg->events_name, stitch_id_sql(cfg, "ee.event_id"));
}

/*
 * stitch_keys_recorded
 *		Whether events_source records the form of the stored event ids (its
 *		uuid_keys column, from 0.2.0 on; a database still at 0.1.0 runs this
 *		library with uuid ids stored as their text).
 */
bool
stitch_keys_recorded(void)
{
	Oid			relid = get_relname_relid("events_source",
										  get_namespace_oid(CDP_SCHEMA_NAME, false));

	return get_attnum(relid, "uuid_keys") != InvalidAttrNumber;
}

/*
 * stitch_states_kept
 *		Whether the installed version of the extension keeps stored aggregate
 *		states (entity_states and its queue, from 0.2.0 on; this library also
 *		serves a database still at 0.1.0).
 */
bool
stitch_states_kept(void)
{
	return OidIsValid(get_relname_relid("entity_state_events",
										get_namespace_oid(CDP_SCHEMA_NAME, false)));
}

/*
 * stitch_key_format
 *		SQL, with a %s for an event id expression, for the id's key in
 *		event_entities: a uuid's key (event_key.c) if the ids are uuids
 *		stored as keys (events_source.uuid_keys), else the id's text.
 */
const char *
stitch_key_format(Oid idtype, bool uuid_keys)
{
	return idtype == UUIDOID && uuid_keys ? "cdp_traits.event_key(%s)" : "(%s)::text";
}

/*
 * stitch_id_type_problem
 *		Why events with ids of type idtype cannot be stitched safely, or NULL
 *		if they can.  The passes turn stored keys back into ids (see
 *		stitch_id_format), as the extension owner: the input of a domain runs
 *		its CHECK constraints, and that of a composite, range or array type
 *		runs the input of its parts, which may be domains.  Whoever owns the
 *		events table may own such a type, and would get functions of their own
 *		run as the owner.  A base type (created by a superuser) or an enum
 *		runs nothing of anybody's.
 */
const char *
stitch_id_type_problem(Oid idtype)
{
	switch (get_typtype(idtype))
	{
		case TYPTYPE_DOMAIN:
			return "a domain";
		case TYPTYPE_COMPOSITE:
			return "a composite type";
		case TYPTYPE_RANGE:
		case TYPTYPE_MULTIRANGE:
			return "a range type";
		case TYPTYPE_PSEUDO:
			return "a pseudo-type";
		default:
			break;
	}
	if (OidIsValid(get_element_type(idtype)))
		return "an array type";
	if (!superuser_arg(type_owner(idtype)))
		return "a type owned by a role that is not a superuser";
	return NULL;
}

/*
 * check_column
 *		Append to buf ("; "-separated) what is wrong with column name of
 *		relid: missing, or (naccepted > 0) of a type not in accepted.
 *		Returns the column's type (InvalidOid if missing).
 */
static Oid
check_column(Oid relid, const char *name, const Oid *accepted, int naccepted,
			 const char *expected, StringInfo buf)
{
	Oid			type = column_type(relid, name);
	int			i;

	if (!OidIsValid(type))
	{
		appendStringInfo(buf, "%scolumn \"%s\" is missing (expected %s)",
						 buf->len ? "; " : "", name, expected);
		return InvalidOid;
	}
	if (naccepted == 0)
		return type;
	for (i = 0; i < naccepted; i++)
		if (type == accepted[i])
			return type;
	appendStringInfo(buf, "%scolumn \"%s\" is of type %s (expected %s)",
					 buf->len ? "; " : "", name, format_type_be(type), expected);
	return type;
}

/*
 * stitch_columns_problems
 *		Append to buf ("; "-separated) what keeps relid from being the events
 *		table: a column missing or of a type that is not read.  Stitching and
 *		the calculation read these columns as other roles than the table's
 *		owner (the extension owner, an admin), casting them to text and ids
 *		back from text: the types are built-in ones, or for the id a base
 *		type or an enum owned by a superuser, whose casts and input run
 *		nothing the table's owner chose.  Checked when the table is attached
 *		and again whenever it has changed (stitch_config), since its owner
 *		may rename a column and add another of that name.  Returns the id
 *		column's type (InvalidOid if it is missing).
 */
Oid
stitch_columns_problems(Oid relid, StringInfo buf)
{
	static const Oid text_types[] = {TEXTOID, VARCHAROID};
	static const Oid time_types[] = {TIMESTAMPTZOID, TIMESTAMPOID};
	static const Oid payload_types[] = {JSONBOID, JSONOID};
	Oid			idtype;
	const char *id_problem = NULL;

	idtype = check_column(relid, "id", NULL, 0, "a type with equality", buf);
	if (OidIsValid(idtype))
		id_problem = stitch_id_type_problem(idtype);
	if (id_problem != NULL)
		appendStringInfo(buf, "%scolumn \"id\" is of type %s, %s (expected a base type "
						 "such as text, uuid or bigint, or an enum owned by a superuser)",
						 buf->len ? "; " : "", format_type_be(idtype), id_problem);
	else if (OidIsValid(idtype) &&
			 !OidIsValid(lookup_type_cache(idtype, TYPECACHE_EQ_OPR)->eq_opr))
		appendStringInfo(buf, "%scolumn \"id\" is of type %s, which has no equality operator",
						 buf->len ? "; " : "", format_type_be(idtype));
	check_column(relid, "source_id", text_types, 2, "text", buf);
	check_column(relid, "type", text_types, 2, "text", buf);
	check_column(relid, "version", text_types, 2, "text", buf);
	check_column(relid, "event_time", time_types, 2, "timestamptz", buf);
	check_column(relid, "payload", payload_types, 2, "jsonb", buf);
	return idtype;
}

/*
 * stitch_has_view_column
 *		Whether relid has a column named customer_entity_id, the name of the
 *		column customer_events adds (see stitch_view_column_problem).
 */
bool
stitch_has_view_column(Oid relid)
{
	return OidIsValid(column_type(relid, "customer_entity_id"));
}

/*
 * stitch_view_column_problem
 *		Append to buf ("; "-separated) that relid has a column named
 *		customer_entity_id, if it has: customer_events lists every column of
 *		the events table and then its own customer_entity_id (the stitched
 *		entity), so the view could not be made, nor follow the table, and
 *		the calculation's reads of the events would find the name twice.
 *		Checked when the table is attached and after a change of it, not
 *		when it is read: stitching itself does not read that column.
 */
void
stitch_view_column_problem(Oid relid, StringInfo buf)
{
	if (stitch_has_view_column(relid))
		appendStringInfo(buf, "%scolumn \"customer_entity_id\" has the name of the column that "
						 "cdp_traits.customer_events adds (each event's entity): rename or drop it",
						 buf->len ? "; " : "");
}

/*
 * trusted_owner
 *		Whether a role may own the events table: it could act as the
 *		extension owner anyway (a superuser, a member of the owner, or of
 *		cdp_traits_admin, which is as trusted: see README, Privileges).
 */
static bool
trusted_owner(Oid role)
{
	Oid			admin = get_role_oid("cdp_traits_admin", true);

	return superuser_arg(role) || has_privs_of_role(role, cdp_extension_owner()) ||
		(OidIsValid(admin) && has_privs_of_role(role, admin));
}

/*
 * stitch_owner_problems
 *		Append to buf ("; "-separated) what keeps relid and the tables that
 *		inherit from it (its partitions) from being read as the events
 *		table: an owner not trusted, or a relation that is not a table.
 *		Stitching, the worker, admins and readers query the events table as
 *		roles other than its owner (the extension owner among them), and the
 *		owner of a table can make any query of it run functions of its own
 *		(an index predicate the planner folds, a rule that makes it a view):
 *		only a role that could act as the extension owner anyway may own it.
 *		Returns relid and its inheritors (to watch for changes).
 */
List *
stitch_owner_problems(Oid relid, StringInfo buf)
{
	List	   *members = find_all_inheritors(relid, NoLock, NULL);
	ListCell   *lc;

	foreach(lc, members)
	{
		Oid			member = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(member));
		Form_pg_class form;

		if (!HeapTupleIsValid(tup))
			continue;
		form = (Form_pg_class) GETSTRUCT(tup);
		if (form->relkind != RELKIND_RELATION && form->relkind != RELKIND_PARTITIONED_TABLE &&
			(member == relid || form->relkind != RELKIND_FOREIGN_TABLE))
			appendStringInfo(buf, "%s%s is not a table", buf->len ? "; " : "",
							 quote_qualified_identifier(get_namespace_name(form->relnamespace),
														NameStr(form->relname)));
		else if (!trusted_owner(form->relowner))
			appendStringInfo(buf, "%s%s is owned by role %s, which is neither a superuser nor "
							 "a member of cdp_traits_admin or of the extension's owner",
							 buf->len ? "; " : "",
							 quote_qualified_identifier(get_namespace_name(form->relnamespace),
														NameStr(form->relname)),
							 GetUserNameFromId(form->relowner, false));
		ReleaseSysCache(tup);
	}
	return members;
}

/*
 * stitch_id_format
 *		SQL, with a %s for a key expression, for the event id it stands for
 *		(the inverse of stitch_key_format).  Only used once the table's
 *		columns passed stitch_check_columns, which refuses id types whose
 *		input could run functions of their owner's (stitch_id_type_problem).
 */
const char *
stitch_id_format(Oid idtype, bool uuid_keys)
{
	if (idtype == UUIDOID && uuid_keys)
		return "cdp_traits.event_key_uuid(%s)";
	if (idtype == TEXTOID)
		return "%s";
	return psprintf("(%%s)::%s", format_type_be_qualified(idtype));
}

/*
 * cdp_event_id_of_key
 *		SQL: _event_id_of_key(key_sql text) RETURNS text: SQL for the id of
 *		the attached events table that the event_entities key expression
 *		key_sql stands for (what the stitching passes use, for the
 *		attribute engine's statements).
 */
Datum
cdp_event_id_of_key(PG_FUNCTION_ARGS)
{
	char	   *key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	StitchConfig *cfg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = stitch_config(false);
	SPI_finish();
	/* (the configuration lives in the cache, past SPI_finish) */
	PG_RETURN_TEXT_P(cstring_to_text(stitch_id_sql(cfg, key)));
}

/*
 * stitch_key_sql
 *		SQL for the key in event_entities of the event id expression id.
 */
char *
stitch_key_sql(StitchConfig *cfg, const char *id)
{
	return psprintf(cfg->key_of, id);
}

/*
 * stitch_id_sql
 *		SQL for the event id that the event_entities key expression key
 *		stands for.
 */
char *
stitch_id_sql(StitchConfig *cfg, const char *key)
{
	return psprintf(cfg->id_of, key);
}

/*
 * stitch_display_id
 *		An event key as the event's id reads in text, for messages and
 *		verify_stitching() (the key itself for ids stored as their text).
 */
const char *
stitch_display_id(StitchConfig *cfg, const char *key)
{
	pg_uuid_t	u;
	char	   *buf;

	if (!cfg->uuid_keys || !cdp_key_to_uuid(key, strlen(key), &u))
		return key;
	buf = palloc(UUID_TEXT_LEN + 1);
	cdp_uuid_to_text(&u, buf);
	return buf;
}

/*
 * stitch_relation_sql
 *		SQL yielding the identifier rows (as for SRC_NEW_ROWS) of all events
 *		stored in one relation (a partition of the events table).
 */
char *
stitch_relation_sql(Oid relid)
{
	StitchConfig *cfg = stitch_rules_config();

	return psprintf("SELECT %s%s FROM (SELECT %s FROM %s) ev",
					cfg->id_is_uuid ? "ev.id" : "ev.id::text", cfg->cols_sql,
					normalized_columns(relid),
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											   get_rel_name(relid)));
}

/*
 * check_rules_now
 *		Under a pin (stitch_config_pin), where the configuration may not be
 *		compiled again: compile the rules apart, and raise the error of
 *		stitch_check_rules if one of them no longer compiles (the
 *		configuration, which says they all do, is then loaded again by the
 *		next statement).
 */
static void
check_rules_now(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "cdp_traits rule check",
											  ALLOCSET_SMALL_SIZES);
	StitchConfig *check = MemoryContextAllocZero(cxt, sizeof(StitchConfig));

	check->id_type = Config.id_type;
	compile_with_rule_path(check, cxt, false);
	if (check->nbroken > 0)
		stitch_invalidate();
	stitch_check_rules(check);
	MemoryContextDelete(cxt);
}

/*
 * plan_entry
 *		The plan cache's entry for (key, current events table), its plan
 *		dropped (NULL) if an invalidation made it stale.  When the plan of a
 *		statement that evaluates the rules (rules) went stale while the
 *		configuration did not, an object a rule uses may have changed: the
 *		rules are compiled again (apart, under a pin), so that one that no
 *		longer compiles is named (stitch_check_rules) rather than failing to
 *		plan.
 */
static PlanEntry *
plan_entry(const char *key, bool rules)
{
	PlanKey		pk;
	PlanEntry  *entry;
	bool		found;
	StitchConfig *cfg = stitch_config(true);

	if (PlanCache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PlanKey);
		ctl.entrysize = sizeof(PlanEntry);
		ctl.hcxt = CacheMemoryContext;
		PlanCache = hash_create("cdp_traits plan cache", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&pk, 0, sizeof(pk));
	strlcpy(pk.name, key, sizeof(pk.name));
	pk.relid = cfg ? cfg->events_relid : InvalidOid;
	entry = hash_search(PlanCache, &pk, HASH_ENTER, &found);
	if (!found)
		entry->plan = NULL;
	else if (entry->plan != NULL &&
			 (entry->generation != Config.generation ||
			  entry->size_generation != cdp_growth_generation(&PlanGrowth) ||
			  !SPI_plan_is_valid(entry->plan) ||
			  (entry->probes &&
			   cdp_plan_generation(entry->plan) != entry->plan_generation)))
	{
		if (rules && entry->generation == Config.generation &&
			!SPI_plan_is_valid(entry->plan))
		{
			if (NumPins > 0)
				check_rules_now();
			else
			{
				stitch_invalidate();
				(void) stitch_config(true);
			}
		}
		SPI_freeplan(entry->plan);
		entry->plan = NULL;
	}
	return entry;
}

/*
 * keep_plan
 *		Prepare sql for a cache entry and keep the plan beyond this call.
 *
 *		Generic plans: the statements run with arrays of any size, and a
 *		custom plan per execution (which the plan cache keeps choosing, since
 *		a custom plan's estimate for a short array is always lower) would cost
 *		more than the statement itself.  Reading statements may run as
 *		parallel plans: the rule expressions are then evaluated by workers
 *		while this process unites.  With probes, the plan is made at once, as
 *		index probes (cdp_plan_probes).
 */
static SPIPlanPtr
keep_plan(PlanEntry *entry, const char *sql, int nargs, Oid *argtypes,
		  bool probes)
{
	SPIPlanPtr	plan;

	plan = SPI_prepare_cursor(sql, nargs, argtypes,
							  CURSOR_OPT_GENERIC_PLAN |
							  (strncmp(sql, "SELECT", 6) == 0 ? CURSOR_OPT_PARALLEL_OK : 0));
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	entry->plan = plan;
	/* (that of the configuration the SQL was made from) */
	entry->generation = Config.generation;
	entry->size_generation = cdp_growth_generation(&PlanGrowth);
	entry->probes = probes;
	if (probes)
		entry->plan_generation = cdp_plan_probes(plan);
	return plan;
}

/*
 * stitch_cached_plan
 *		A kept plan for (key, current events table), prepared from sql on
 *		first use and again after any invalidation.
 */
SPIPlanPtr
stitch_cached_plan(const char *key, const char *sql, int nargs, Oid *argtypes)
{
	PlanEntry  *entry = plan_entry(key, false);

	return entry->plan ? entry->plan : keep_plan(entry, sql, nargs, argtypes, false);
}

/*
 * stitch_probe_plan
 *		stitch_cached_plan for a statement that reads and writes the
 *		stitching tables by key: its plan probes their indexes whatever
 *		their statistics say (cdp_plan_probes).
 */
SPIPlanPtr
stitch_probe_plan(const char *key, const char *sql, int nargs, Oid *argtypes)
{
	PlanEntry  *entry = plan_entry(key, false);

	return entry->plan ? entry->plan : keep_plan(entry, sql, nargs, argtypes, true);
}

/*
 * stitch_identifier_plan
 *		The kept plan of the identifier query over source (its SQL is built
 *		only when the plan must be made).  For transition tables the plan is
 *		kept per relation that fired (partitions may have a different row
 *		layout than their parent).  The events of given entities are read by
 *		index probes (stitch_probe_plan) when a unique index on the events
 *		table's id guarantees an index to probe; probing a table without one
 *		would read it whole once per event.
 */
SPIPlanPtr
stitch_identifier_plan(StitchSource source, Oid relid)
{
	static const char *names[] = {"ids:new", "ids:old", "ids:all", "ids:entity", "ids:newlive", "ids:newnow"};
	char		key[48];
	Oid			argtypes[1] = {UUIDARRAYOID};
	PlanEntry  *entry;
	StitchConfig *cfg;

	snprintf(key, sizeof(key), "%s:%u", names[source], relid);
	entry = plan_entry(key, true);
	if (entry->plan)
		return entry->plan;
	cfg = stitch_config(true);
	return keep_plan(entry, stitch_identifier_sql(source),
					 source == SRC_ENTITY_EVENTS ? 1 : 0, argtypes,
					 source == SRC_ENTITY_EVENTS && cfg != NULL && cfg->unique_id);
}

/*
 * stitch_explain_plan
 *		The kept plan of stitch_explain_sql() (explain_entity).
 */
SPIPlanPtr
stitch_explain_plan(void)
{
	Oid			argtypes[1] = {UUIDOID};
	PlanEntry  *entry = plan_entry("explain", true);

	return entry->plan ? entry->plan :
		keep_plan(entry, stitch_explain_sql(), 1, argtypes, false);
}

/*
 * rule_type_checks
 *		Prepare a rule expression in the shape the triggers run it (a
 *		RuleCheck: an error if it does not type-check).
 */
static void
rule_type_checks(const char *expr, Oid idtype, bool *is_set)
{
	(void) cdp_prepare(psprintf("SELECT x.val FROM %s CROSS JOIN LATERAL (SELECT (%s)::text) x(val)",
								rule_event_row(idtype), expr),
					   0, NULL);
}

/*
 * validate_rule_sql
 *		Check that expr is one SQL expression that type-checks over an event
 *		and can be turned into text; returns NULL if so, else the problem.
 */
static char *
validate_rule_sql(const char *expr, Oid idtype)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	List	   *parsed;
	ErrorData  *edata;

	/* 1. exactly one expression, nothing around it */
	PG_TRY();
	{
		parsed = raw_parser(expr, RAW_PARSE_PLPGSQL_EXPR);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		return edata->message;
	}
	PG_END_TRY();
	{
		RawStmt    *raw = linitial_node(RawStmt, parsed);
		SelectStmt *sel = (SelectStmt *) raw->stmt;

		if (list_length(parsed) != 1 || !IsA(sel, SelectStmt) ||
			list_length(sel->targetList) != 1 || sel->fromClause != NIL ||
			sel->whereClause != NULL || sel->groupClause != NIL ||
			sel->havingClause != NULL || sel->windowClause != NIL ||
			sel->sortClause != NIL || sel->limitCount != NULL ||
			sel->limitOffset != NULL || sel->distinctClause != NIL ||
			sel->lockingClause != NIL || sel->intoClause != NULL ||
			sel->op != SETOP_NONE)
			return pstrdup("the expression must be a single SQL expression over the event's columns");
	}

	/* 2. it type-checks in the shape the triggers run it */
	edata = rule_in_subtransaction(rule_type_checks, expr, idtype, NULL);
	return edata != NULL ? edata->message : NULL;
}

/*
 * stitch_rule_problem
 *		NULL if the rule expression expr compiles as rules are checked when
 *		they are written, over events with ids of type idtype; else the
 *		problem.  The caller runs it as the triggers do (cdp_exec_begin,
 *		cdp_exec_pin_rule_settings).
 */
char *
stitch_rule_problem(const char *expr, Oid idtype)
{
	return validate_rule_sql(expr, idtype);
}

/*
 * cdp_stitching_rules_check
 *		BEFORE INSERT OR UPDATE row trigger on stitching_rules: a rule whose
 *		expression does not parse or type-check is rejected, naming the rule.
 */
Datum
cdp_stitching_rules_check(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	char	   *attr;
	char	   *expr;
	char	   *problem;
	Oid			idtype;
	CdpExecState es;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_stitching_rules_check() must be fired BEFORE ... FOR EACH ROW")));

	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = td->tg_relation->rd_att;

	d = heap_getattr(tup, 1, desc, &isnull);
	attr = isnull ? "" : TextDatumGetCString(d);
	if (strspn(attr, " \t\r\n") == strlen(attr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stitching rule has an empty attribute_id"),
				 errhint("Name the identifier the rule reads, e.g. 'email'.")));
	if (strlen(attr) > CDP_MAX_RULE_ATTRIBUTE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("stitching rule attribute_id is too long: %d bytes (at most %d)",
						(int) strlen(attr), CDP_MAX_RULE_ATTRIBUTE_BYTES),
				 errdetail("An identifier is stored as its attribute_id and value in one entry of "
						   "the index of cdp_traits.matching, which holds at most 2704 bytes; "
						   "values of up to %d bytes link.", CDP_MAX_IDENTIFIER_BYTES),
				 errhint("Name the identifier the rule reads shortly, e.g. 'email'.")));
	d = heap_getattr(tup, 5, desc, &isnull);
	expr = isnull ? "" : TextDatumGetCString(d);

	/*
	 * Type-check against the attached table's id type when there is one.
	 * Only this rule is checked: the others are not compiled here, so that a
	 * rule that no longer compiles can be changed.
	 */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) stitch_source(&idtype, NULL);
	SPI_finish();

	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	problem = validate_rule_sql(expr, idtype);
	cdp_exec_end(&es);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid stitching rule for attribute \"%s\": %s", attr, problem),
				 errdetail("The rule's value_expression is: %s", expr),
				 errhint("value_expression is one SQL expression over the event's columns "
						 "id, source_id, type, version, event_time and payload, "
						 "for example lower(payload->>'email').")));
	return PointerGetDatum(tup);
}

/*
 * cdp_stitching_config_changed
 *		AFTER statement trigger on stitching_rules and stitching_blocklist:
 *		tell every backend to recompile, and the user that existing events
 *		keep their stitching until restitch().
 */
Datum
cdp_stitching_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	bool		attached;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp_stitching_config_changed() must be fired AFTER ... FOR EACH STATEMENT")));

	/* the rules table's relcache entry stands for "stitching configuration" */
	CacheInvalidateRelcacheByRelid(get_relname_relid("stitching_rules",
													 RelationGetNamespace(td->tg_relation)));
	stitch_invalidate();

	/* (the rules are not compiled here: see cdp_stitching_rules_check) */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) stitch_source(NULL, &attached);
	if (attached)
		ereport(NOTICE,
				(errmsg("stitching configuration changed"),
				 errdetail("New and changed events are stitched with it at once; events stored before keep their stitching."),
				 errhint("Run cdp_traits.restitch() to apply it to all events.")));
	SPI_finish();
	return PointerGetDatum(NULL);
}
