/*-------------------------------------------------------------------------
 *
 * jobs.c
 *		The jobs of a cycle, how each one runs, and how its outcome is
 *		recorded in cdp_traits.job_runs; cdp_traits.run_jobs().
 *
 * A cycle runs these jobs in order:
 *
 *	refresh_context			cdp_traits.refresh_context()
 *	calculate_attributes	cdp_traits.calculate_attributes(): attributes,
 *							audiences and counts of the dirty entities
 *	prune_job_runs			delete job_runs rows older than
 *							cdp_traits.job_runs_retention
 *
 * In the background worker (worker.c) each job runs in a transaction of its
 * own, with cdp_traits.job_timeout as its statement timeout, as
 * cdp_traits.role or else the extension owner.  A 'running' row is committed
 * before the job starts and the outcome is written after it in another
 * transaction, so a failed job leaves a 'failed' row with its error, and a
 * job cut short by a crash or a termination leaves a 'running' row that the
 * next worker in that database marks failed.
 *
 * run_jobs() runs the same jobs in the caller's transaction, each in a
 * subtransaction (one failing does not stop the next), as the caller, and
 * inserts each outcome when the job is done.
 *
 * Attributes and context keys that fail inside their job do not fail it
 * (calculate_attributes and refresh_context record them and go on); the job
 * is then 'partial' and its row lists them in error.  job_runs is written
 * and pruned as the extension owner (exec.c), whoever runs the jobs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_run_jobs);

/* One job of the cycle. */
typedef struct CdpJob
{
	const char *name;
	/* the job: one row, one bigint column (job_runs.rows) */
	const char *sql;
	/* after it, in the same transaction: detail jsonb, error text */
	const char *detail_sql;
	/* housekeeping of the extension's own tables: run as its owner */
	bool		as_owner;
} CdpJob;

static const CdpJob cdp_jobs[] = {
	{
		"refresh_context",
		"SELECT cdp_traits.refresh_context()::bigint",
		/* keys that failed now (refresh_context stamps them with now()) */
		"SELECT pg_catalog.jsonb_build_object('failed_keys',"
		" pg_catalog.jsonb_agg(c.key ORDER BY c.key)),"
		" pg_catalog.string_agg(pg_catalog.format('context key \"%s\": %s', c.key, c.error),"
		" E'\\n' ORDER BY c.key)"
		" FROM cdp_traits.context c"
		" WHERE c.error IS NOT NULL AND c.error_at = pg_catalog.now()"
		" HAVING count(*) > 0",
		false
	},
	{
		"calculate_attributes",
		"SELECT cdp_traits.calculate_attributes()",
		/* the calculation run just made, and its failed attributes */
		"SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
		" 'calculation_run', r.id, 'entities', r.entities, 'attributes', r.attributes,"
		" 'failed_attributes', r.failed_attributes, 'values_written', r.values_written,"
		" 'values_removed', r.values_removed, 'values_skipped', r.values_skipped,"
		" 'errors', (SELECT pg_catalog.jsonb_object_agg(a.attribute_id, a.error)"
		"   FROM cdp_traits.calculation_run_attributes a"
		"  WHERE a.run_id = r.id AND a.error IS NOT NULL))),"
		" (SELECT pg_catalog.string_agg(pg_catalog.format('attribute \"%s\": %s',"
		"   a.attribute_id, a.error), E'\\n' ORDER BY a.attribute_id)"
		"   FROM cdp_traits.calculation_run_attributes a"
		"  WHERE a.run_id = r.id AND a.error IS NOT NULL)"
		" FROM cdp_traits.calculation_runs r"
		" WHERE r.id = pg_catalog.currval('cdp_traits.calculation_runs_id_seq')",
		false
	},
	{
		"prune_job_runs",
		/* retention 0 keeps every row */
		"WITH pruned AS (DELETE FROM cdp_traits.job_runs j"
		" WHERE j.status <> 'running'"
		" AND pg_catalog.current_setting('cdp_traits.job_runs_retention')::interval > '0'"
		" AND j.started_at < pg_catalog.now()"
		" - pg_catalog.current_setting('cdp_traits.job_runs_retention')::interval"
		" RETURNING 1)"
		" SELECT count(*) FROM pruned",
		"SELECT pg_catalog.jsonb_build_object('retention',"
		" pg_catalog.current_setting('cdp_traits.job_runs_retention')), NULL::text",
		true
	},
};

#define CDP_NJOBS	lengthof(cdp_jobs)

/* What a job did: the values of its job_runs row. */
typedef struct JobOutcome
{
	TimestampTz started_at;
	const char *status;			/* succeeded, partial or failed */
	bool		has_rows;
	int64		rows;
	char	   *detail;			/* jsonb text, or NULL */
	char	   *error;			/* NULL when it succeeded */
	char	   *run_as;			/* role name, NULL if not known */
	/* the error of a failed job */
	char	   *sqlstate;
	char	   *err_detail;
	char	   *err_hint;
	char	   *err_context;
} JobOutcome;

/* The outcome of job run $1. */
#define RECORD_FINISH_SQL \
	"UPDATE cdp_traits.job_runs" \
	" SET finished_at = pg_catalog.clock_timestamp(), status = $2, rows = $3," \
	" detail = NULLIF(pg_catalog.jsonb_strip_nulls(COALESCE($4::jsonb, '{}')" \
	" || pg_catalog.jsonb_build_object('sqlstate', $6, 'error_detail', $7," \
	" 'error_hint', $8, 'error_context', $9)), '{}'), error = $5, run_as = $10" \
	" WHERE id = $1"

/* A row for a job whose start was not recorded (run_jobs(), or failed). */
#define RECORD_INSERT_SQL \
	"INSERT INTO cdp_traits.job_runs (job, started_at, status, run_by)" \
	" VALUES ($1, $2, 'running', $3) RETURNING id"

static Oid	job_role(void);
static void job_execute(const CdpJob *job, bool switch_role,
						MemoryContext cxt, JobOutcome *out);
static void job_detail(const CdpJob *job, MemoryContext cxt, JobOutcome *out);
static void outcome_from_error(JobOutcome *out, ErrorData *edata);
static int64 record_insert(const char *job, const char *run_by,
						   TimestampTz started_at);
static void record_outcome(const char *job, int64 id, JobOutcome *out);
static int64 worker_record_start(const CdpJob *job, TimestampTz started_at);
static void worker_execute(const CdpJob *job, MemoryContext cxt,
						   JobOutcome *out);
static void worker_transaction_failed(MemoryContext cxt, ErrorData **edata);

/*
 * cdp_job_count
 *		Number of jobs in a cycle.
 */
int
cdp_job_count(void)
{
	return (int) CDP_NJOBS;
}

/*
 * job_role
 *		The role the worker runs jobs as: cdp_traits.role, or the extension
 *		owner.  A role that does not exist (dropped, renamed) fails the job.
 */
static Oid
job_role(void)
{
	Oid			role;

	if (cdp_worker_role == NULL || cdp_worker_role[0] == '\0')
		return cdp_extension_owner();
	role = get_role_oid(cdp_worker_role, true);
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", cdp_worker_role),
				 errdetail("cdp_traits.role names the role the background worker runs jobs as."),
				 errhint("Create the role, or change cdp_traits.role (empty: the extension owner).")));
	return role;
}

/*
 * job_execute
 *		Run one job through SPI (connected by the caller) and fill in its
 *		rows, detail and status.  switch_role: run it as job_role() with a
 *		pinned search_path (the worker), and stay that role when done: the
 *		caller commits the job's transaction as that role and then switches
 *		back (see worker_execute); otherwise as the current user with the
 *		caller's (pinned) search_path.  Strings go into cxt.  Errors
 *		propagate; the caller's (sub)transaction abort undoes the switches.
 */
static void
job_execute(const CdpJob *job, bool switch_role, MemoryContext cxt,
			JobOutcome *out)
{
	CdpExecState exec;
	Oid			role;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel = 0;
	int			rc;
	bool		isnull;
	Datum		value;

	if (job->as_owner)
	{
		role = cdp_extension_owner();
		cdp_exec_begin(&exec);
	}
	else if (switch_role)
	{
		role = job_role();
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(role, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		save_nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", CDP_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	else
		role = GetUserId();
	out->run_as = MemoryContextStrdup(cxt, GetUserNameFromId(role, false));

	rc = SPI_execute(job->sql, false, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1 ||
		SPI_tuptable->tupdesc->natts != 1 ||
		SPI_gettypeid(SPI_tuptable->tupdesc, 1) != INT8OID)
		elog(ERROR, "job %s: unexpected result of \"%s\": %s",
			 job->name, job->sql, SPI_result_code_string(rc));
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	out->has_rows = !isnull;
	if (!isnull)
		out->rows = DatumGetInt64(value);

	job_detail(job, cxt, out);

	if (job->as_owner)
		cdp_exec_end(&exec);
	else if (switch_role)
		AtEOXact_GUC(true, save_nestlevel);
	out->status = out->error ? "partial" : "succeeded";
}

/* what job_detail_query and job_step need, through cdp_in_subtransaction */
typedef struct JobCall
{
	const CdpJob *job;
	MemoryContext cxt;			/* where the outcome's strings go */
	JobOutcome *out;
} JobCall;

/*
 * job_detail_query
 *		The detail query of job_detail, as cdp_in_subtransaction runs it.
 */
static void
job_detail_query(void *arg)
{
	JobCall    *call = (JobCall *) arg;
	int			rc = SPI_execute(call->job->detail_sql, false, 0);

	if (rc != SPI_OK_SELECT || SPI_tuptable->tupdesc->natts != 2)
		elog(ERROR, "job %s: unexpected result of its detail query: %s",
			 call->job->name, SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		char	   *detail = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		call->out->detail = detail ? MemoryContextStrdup(call->cxt, detail) : NULL;
		call->out->error = error ? MemoryContextStrdup(call->cxt, error) : NULL;
	}
}

/*
 * job_detail
 *		Run the job's detail query (in the job's transaction, as its role):
 *		the figures for job_runs.detail and the failures inside the job for
 *		job_runs.error.  It runs in a subtransaction: should it fail, the job
 *		keeps its work and the problem goes into the detail instead.  A query
 *		cancel (timeout, termination) is not caught.
 */
static void
job_detail(const CdpJob *job, MemoryContext cxt, JobOutcome *out)
{
	JobCall		call = {job, cxt, out};
	ErrorData  *edata = cdp_in_subtransaction(job_detail_query, &call);
	StringInfoData buf;

	if (edata == NULL)
		return;
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(edata);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"detail_error\": ");
	escape_json(&buf, edata->message);
	appendStringInfoChar(&buf, '}');
	out->detail = MemoryContextStrdup(cxt, buf.data);
	pfree(buf.data);
	FreeErrorData(edata);
}

/*
 * outcome_from_error
 *		A failed job's outcome: its error.
 */
static void
outcome_from_error(JobOutcome *out, ErrorData *edata)
{
	out->status = "failed";
	out->has_rows = false;
	out->detail = NULL;
	out->error = edata->message ? edata->message : pstrdup("unknown error");
	out->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	out->err_detail = edata->detail;
	out->err_hint = edata->hint;
	out->err_context = edata->context;
}

/*
 * record_insert
 *		Insert a job_runs row for a job (filled in by record_outcome); its id.
 *		As the extension owner, SPI connected by the caller.
 */
static int64
record_insert(const char *job, const char *run_by, TimestampTz started_at)
{
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[3];
	CdpExecState exec;
	bool		isnull;
	int64		id;

	values[0] = CStringGetTextDatum(job);
	values[1] = TimestampTzGetDatum(started_at);
	values[2] = CStringGetTextDatum(run_by);
	cdp_exec_begin(&exec);
	if (SPI_execute_with_args(RECORD_INSERT_SQL, 3, argtypes, values, NULL,
							  false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not record job %s", job);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));
	cdp_exec_end(&exec);
	return id;
}

/*
 * record_outcome
 *		Write a job's outcome into its job_runs row, as the extension owner.
 *		In the current transaction, SPI connected by the caller.
 */
static void
record_outcome(const char *job, int64 id, JobOutcome *out)
{
	Oid			argtypes[10] = {INT8OID, TEXTOID, INT8OID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID};
	const char *texts[6] = {out->detail, out->error, out->sqlstate,
	out->err_detail, out->err_hint, out->err_context};
	Datum		values[10];
	char		nulls[10];
	CdpExecState exec;
	NameData	run_as;
	int			i;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(out->status);
	values[2] = Int64GetDatum(out->rows);
	if (!out->has_rows)
		nulls[2] = 'n';
	for (i = 0; i < 6; i++)
	{
		if (texts[i] != NULL)
			values[3 + i] = CStringGetTextDatum(texts[i]);
		else
			nulls[3 + i] = 'n';
	}
	if (out->run_as != NULL)
	{
		namestrcpy(&run_as, out->run_as);
		values[9] = NameGetDatum(&run_as);
	}
	else
		nulls[9] = 'n';

	cdp_exec_begin(&exec);
	if (SPI_execute_with_args(RECORD_FINISH_SQL, 10, argtypes, values, nulls,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the outcome of job %s", job);
	cdp_exec_end(&exec);
}

/* ---------------------------------------------------------------------
 * In the background worker: a transaction per step
 * ---------------------------------------------------------------------
 */

/*
 * worker_transaction_failed
 *		In a PG_CATCH of the worker: log the error, keep a copy of it in cxt
 *		(if edata is given), abort the transaction and leave the worker ready
 *		for the next one.
 */
static void
worker_transaction_failed(MemoryContext cxt, ErrorData **edata)
{
	HOLD_INTERRUPTS();
	disable_timeout(STATEMENT_TIMEOUT, false);
	MemoryContextSwitchTo(cxt);
	if (edata != NULL)
		*edata = CopyErrorData();
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	/* a cancel that came too late to act on is void now */
	QueryCancelPending = false;
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
	RESUME_INTERRUPTS();
}

/*
 * worker_record_start
 *		Commit a 'running' row for a job about to start; its id, or 0 if it
 *		could not be written (logged; the row is then inserted at the end).
 */
static int64
worker_record_start(const CdpJob *job, TimestampTz started_at)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int64 id = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		debug_query_string = RECORD_INSERT_SQL;
		pgstat_report_activity(STATE_RUNNING, RECORD_INSERT_SQL);
		id = record_insert(job->name, "worker", started_at);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		debug_query_string = NULL;
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		id = 0;
		worker_transaction_failed(cxt, NULL);
	}
	PG_END_TRY();
	return id;
}

/*
 * worker_execute
 *		Run a job in a transaction of its own, with cdp_traits.job_timeout as
 *		statement timeout.  Its failure is logged and becomes its outcome.
 *		Only here does the job worker act on a query cancel (the caller holds
 *		cancel interrupts off): one that came before the job is void, one
 *		that comes during it fails the job.
 *
 *		The transaction commits as the job's role (job_execute leaves it
 *		switched): what the job's SQL leaves to the end of its transaction
 *		-- a deferred trigger, a cursor WITH HOLD, queued by a function of
 *		whoever owns an object a definition or context query reads -- runs
 *		with that role's rights, not with the worker's (a superuser's).
 */
static void
worker_execute(const CdpJob *job, MemoryContext cxt, JobOutcome *out)
{
	Oid			save_userid;
	int			save_sec_context;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		debug_query_string = job->sql;
		pgstat_report_activity(STATE_RUNNING, job->sql);
		if (cdp_job_timeout > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, cdp_job_timeout);
		job_execute(job, true, cxt, out);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		SetUserIdAndSecContext(save_userid, save_sec_context);
		HOLD_CANCEL_INTERRUPTS();
		disable_timeout(STATEMENT_TIMEOUT, false);
		/* a timeout or cancel that came after the job is void */
		QueryCancelPending = false;
		debug_query_string = NULL;
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * held off again, as outside a job (set, not counted: the error may
		 * have come from inside a region that held them off too)
		 */
		QueryCancelHoldoffCount = 1;
		worker_transaction_failed(cxt, &edata);
		/* (the abort switched back already, unless the commit was done) */
		SetUserIdAndSecContext(save_userid, save_sec_context);
		outcome_from_error(out, edata);
	}
	PG_END_TRY();
}

/*
 * cdp_job_run_in_worker
 *		The worker's way of running a job: record its start, run it, record
 *		its outcome, each in a transaction of its own.  Never throws (but
 *		exits on termination, like any backend).  Called with cancel
 *		interrupts held off: a cancel only reaches the job (worker_execute),
 *		never the recording of its start or outcome.
 */
void
cdp_job_run_in_worker(int jobno)
{
	const CdpJob *job = &cdp_jobs[jobno];
	MemoryContext cxt;
	MemoryContext oldcxt;
	JobOutcome	out;
	int64		id;

	cxt = AllocSetContextCreate(TopMemoryContext, "cdp_traits job",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	memset(&out, 0, sizeof(out));
	out.started_at = GetCurrentTimestamp();

	id = worker_record_start(job, out.started_at);
	worker_execute(job, cxt, &out);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		debug_query_string = RECORD_FINISH_SQL;
		pgstat_report_activity(STATE_RUNNING, RECORD_FINISH_SQL);
		if (id == 0)
			id = record_insert(job->name, "worker", out.started_at);
		record_outcome(job->name, id, &out);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		debug_query_string = NULL;
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		worker_transaction_failed(cxt, NULL);
	}
	PG_END_TRY();

	if (strcmp(out.status, "succeeded") != 0)
		elog(DEBUG1, "cdp_traits job %s: %s", job->name, out.status);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
}

/*
 * cdp_jobs_installed
 *		Whether the extension, with its job_runs table, is installed in this
 *		database: NULL if so, else what is missing.  In a transaction.
 */
const char *
cdp_jobs_installed(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid(CDP_EXTENSION_NAME, true)))
		return "extension \"" CDP_EXTENSION_NAME "\"";
	nsp = get_namespace_oid(CDP_SCHEMA_NAME, true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("job_runs", nsp)))
		return "table " CDP_SCHEMA_NAME ".job_runs";
	return NULL;
}

/*
 * cdp_jobs_mark_interrupted
 *		Mark the job runs left 'running' in this database as failed.  Called
 *		by a worker that holds the database's worker lock: no other worker
 *		runs here, and run_jobs() never commits a 'running' row, so such rows
 *		belong to workers that were terminated or crashed.  In a transaction,
 *		SPI connected.  Returns the number of rows marked.
 */
int
cdp_jobs_mark_interrupted(void)
{
	CdpExecState exec;
	int			n;

	cdp_exec_begin(&exec);
	n = cdp_execute_sql("UPDATE cdp_traits.job_runs"
						" SET status = 'failed', error = 'the worker stopped before the job finished'"
						" || ' (server crash, restart or worker termination)'"
						" WHERE status = 'running'",
						SPI_OK_UPDATE, "marking interrupted job runs");
	cdp_exec_end(&exec);
	return n;
}

/* ---------------------------------------------------------------------
 * run_jobs(): the cycle from SQL
 * ---------------------------------------------------------------------
 */

/*
 * job_step
 *		One job of run_jobs, as cdp_in_subtransaction runs it: as the caller,
 *		with SPI of its own.
 */
static void
job_step(void *arg)
{
	JobCall    *call = (JobCall *) arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	job_execute(call->job, false, call->cxt, call->out);
	SPI_finish();
}

/*
 * cdp_run_jobs
 *		SQL-callable: run the jobs of a cycle now, in this transaction, each
 *		in a subtransaction so that one failing does not stop the next; each
 *		outcome is inserted into job_runs (and a failure also raised as a
 *		warning).  cdp_traits.job_timeout bounds each job unless the
 *		caller's statement_timeout ends sooner; a cancel or the caller's own
 *		timeout ends run_jobs() with the error.
 *
 *		The jobs take the calculation lock (refresh_context does, see there)
 *		in their subtransactions: a job that fails releases it, one that
 *		commits keeps it to the end of the caller's transaction.
 */
Datum
cdp_run_jobs(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			jobno;

	/* every job writes, and so does their record: say so before any runs */
	PreventCommandDuringRecovery("run_jobs()");
	PreventCommandIfReadOnly("run_jobs()");

	for (jobno = 0; jobno < (int) CDP_NJOBS; jobno++)
	{
		const CdpJob *job = &cdp_jobs[jobno];
		JobOutcome	out;
		JobCall		call = {job, cxt, &out};
		ErrorData  *edata;
		bool		ours;
		bool		caller_timeout = get_timeout_active(STATEMENT_TIMEOUT);
		TimestampTz caller_deadline = caller_timeout ?
			get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
		TimestampTz deadline = 0;

		CHECK_FOR_INTERRUPTS();
		memset(&out, 0, sizeof(out));
		out.started_at = GetCurrentTimestamp();

		/* our deadline, if the caller's statement timeout does not come first */
		if (cdp_job_timeout > 0)
		{
			deadline = TimestampTzPlusMilliseconds(out.started_at, cdp_job_timeout);
			if (caller_timeout && caller_deadline <= deadline)
				deadline = 0;
			else
				enable_timeout_at(STATEMENT_TIMEOUT, deadline);
		}

		edata = cdp_in_subtransaction(job_step, &call);
		/* a cancel is only ours to absorb when our deadline has passed */
		ours = edata == NULL || edata->sqlerrcode != ERRCODE_QUERY_CANCELED ||
			(deadline != 0 && GetCurrentTimestamp() >= deadline);

		/* the caller's statement timeout again */
		if (deadline != 0)
		{
			if (caller_timeout)
				enable_timeout_at(STATEMENT_TIMEOUT, caller_deadline);
			else
				disable_timeout(STATEMENT_TIMEOUT, false);
		}
		if (!ours)
			ReThrowError(edata);
		if (edata != NULL)
		{
			outcome_from_error(&out, edata);
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("cdp_traits job %s failed: %s", job->name, edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
					 edata->hint ? errhint("%s", edata->hint) : 0));
		}

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		record_outcome(job->name,
					   record_insert(job->name, "run_jobs", out.started_at),
					   &out);
		SPI_finish();
	}
	PG_RETURN_VOID();
}
