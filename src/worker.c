/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The background worker: a launcher that starts, per database listed in
 *		cdp_traits.database, a short-lived job worker every cdp_traits.naptime.
 *
 * Processes (both with application_name "cdp_traits worker"):
 *
 *	launcher		backend_type "cdp_traits launcher", registered from
 *					_PG_init when the library is preloaded.  It is connected
 *					to no database (it reads only pg_database), so it never
 *					holds up DROP or ALTER DATABASE.  It waits on its latch
 *					(leaving when the postmaster dies), reloads the
 *					configuration on SIGHUP (a new naptime applies to the
 *					waiting databases at once), and exits with code 1 on
 *					SIGTERM, so that pg_terminate_backend() gets it restarted
 *					after CDP_LAUNCHER_RESTART seconds while a shutdown stops
 *					it; a crash (kill -9) makes the postmaster reinitialize and
 *					restart it as well.  It runs no query, so it ignores a
 *					query cancel (pg_cancel_backend).
 *
 *	job worker		backend_type "cdp_traits worker", a dynamic background
 *					worker that is never restarted: connects to one database,
 *					runs one cycle of jobs (jobs.c) and exits.  Between cycles
 *					nothing of ours is connected to a database.
 *
 * A database gets its next cycle cdp_traits.naptime after its previous
 * cycle ended, never two at a time: the launcher keeps the handle of each
 * running job worker (bgw_notify_pid wakes it when one stops), and a job
 * worker takes a session advisory lock on its database and leaves at once
 * if another holds it (one left running by a previous launcher).
 *
 * A job worker is an ordinary backend while it runs: it acts on SIGTERM
 * and ProcSignalBarriers at every CHECK_FOR_INTERRUPTS, and on a query
 * cancel while it runs a job (jobs.c): the cancel fails that job, the cycle
 * goes on.  Outside a job (its connection, the bookkeeping in job_runs,
 * between jobs) there is nothing to cancel: cancel interrupts are held off
 * there and a cancel that comes then is void, so that it neither ends the
 * cycle nor loses the outcome of a job that has committed.  Before
 * each job it also tries a lock on its database that DROP DATABASE, ALTER
 * DATABASE RENAME/SET TABLESPACE and CREATE DATABASE ... TEMPLATE conflict
 * with; if one of those waits, it ends its cycle and disconnects so that the
 * command can go ahead.
 *
 * Missing pieces are logged once each (until they appear) and checked again
 * at the next naptime: a listed database that does not exist or does not
 * accept connections (launcher), the extension not installed in it (job
 * worker), the database read-only by default_transaction_read_only (job
 * worker: a DBA's way of stopping writes, say when the disk fills up; the
 * jobs would only fail, one error per statement), no free background worker
 * slot (launcher).  The "logged" flags
 * live in shared memory, one slot per listed database, so they survive
 * launcher restarts and are shared with the job workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "cdp_traits.h"

/* seconds before the postmaster restarts a launcher that exited */
#define CDP_LAUNCHER_RESTART	5

/* What the processes share per listed database: messages logged once. */
typedef struct CdpWorkerSlot
{
	bool		database_missing_logged;	/* launcher */
	bool		no_bgworker_logged; /* launcher */
	bool		extension_missing_logged;	/* job workers: no extension or
											 * no job_runs */
	bool		read_only_logged;	/* job workers: read-only database */
} CdpWorkerSlot;

typedef struct CdpWorkerShared
{
	int			nslots;
	CdpWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} CdpWorkerShared;

/* The launcher's view of a listed database. */
typedef struct LauncherDb
{
	char	   *name;
	int			slot;
	BackgroundWorkerHandle *handle; /* its running job worker, or NULL */
	TimestampTz last_end;		/* when its last cycle ended; 0 = never ran */
} LauncherDb;

/* A listed database, as the launcher finds it in pg_database. */
typedef enum DatabaseState
{
	DATABASE_OK,
	DATABASE_MISSING,
	DATABASE_NO_CONNECTIONS
} DatabaseState;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static CdpWorkerShared *WorkerShared = NULL;
static int	WorkerSlots = 0;

/* in a job worker: the name of its database, for messages */
static char *JobDatabaseName = NULL;

static bool parse_databases(List **names);
static Size worker_shmem_size(void);
static void worker_shmem_request(void);
static void worker_shmem_startup(void);
static CdpWorkerSlot *worker_slot(int slot);
static DatabaseState lookup_database(const char *name, Oid *dboid);
static bool launch_job_worker(LauncherDb *db, Oid dboid);
static void launcher_start_cycle(LauncherDb *db);
static bool job_worker_lock(void);
static bool job_worker_start(int slot);
static bool job_worker_keep_going(void);

/*
 * cdp_worker_init
 *		From _PG_init while preloading: reserve the shared state and register
 *		the launcher.
 */
void
cdp_worker_init(void)
{
	BackgroundWorker worker;

	/* no jobs while pg_upgrade runs the server */
	if (IsBinaryUpgrade)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = CDP_LAUNCHER_RESTART;
	strlcpy(worker.bgw_library_name, CDP_EXTENSION_NAME, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "cdp_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "cdp_traits launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "cdp_traits launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * parse_databases
 *		The databases listed in cdp_traits.database, without repetitions
 *		(names as written: quoted or not, case is kept).  False if the list
 *		does not parse.
 */
static bool
parse_databases(List **names)
{
	List	   *raw = NIL;
	ListCell   *lc;

	*names = NIL;
	if (!SplitGUCList(pstrdup(cdp_worker_databases ? cdp_worker_databases : ""),
					  ',', &raw))
		return false;
	foreach(lc, raw)
	{
		char	   *name = (char *) lfirst(lc);
		ListCell   *seen;
		bool		repeated = false;

		if (name[0] == '\0')
			continue;
		foreach(seen, *names)
		{
			if (strcmp((char *) lfirst(seen), name) == 0)
				repeated = true;
		}
		if (!repeated)
			*names = lappend(*names, name);
	}
	return true;
}

/*
 * cdp_worker_config_sql
 *		SQL: _worker_config(OUT preloaded boolean, OUT databases text[]):
 *		whether this server preloaded the library (so runs the launcher),
 *		and the databases the worker serves, parsed from cdp_traits.database
 *		as the launcher parses it (NULL if the list does not parse), for
 *		health().
 */
PG_FUNCTION_INFO_V1(cdp_worker_config_sql);

Datum
cdp_worker_config_sql(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	List	   *names;
	ListCell   *lc;
	Datum	   *elems;
	int			n = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_worker_config must return a record");
	desc = BlessTupleDesc(desc);
	/* the shared state exists in the processes of a server that preloaded */
	values[0] = BoolGetDatum(WorkerShared != NULL);
	if (!parse_databases(&names))
		nulls[1] = true;
	else
	{
		elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
		foreach(lc, names)
			elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
		values[1] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * worker_shmem_size
 *		Size of the shared state: a slot per listed database.
 */
static Size
worker_shmem_size(void)
{
	return add_size(offsetof(CdpWorkerShared, slots),
					mul_size(Max(WorkerSlots, 1), sizeof(CdpWorkerSlot)));
}

/*
 * worker_shmem_request
 *		shmem_request_hook: reserve the shared state.  cdp_traits.database is
 *		fixed at server start, so its length is known now.
 */
static void
worker_shmem_request(void)
{
	List	   *names;

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	WorkerSlots = parse_databases(&names) ? list_length(names) : 0;
	RequestAddinShmemSpace(worker_shmem_size());
}

/*
 * worker_shmem_startup
 *		shmem_startup_hook: create (or, after a crash, recreate) the shared
 *		state.
 */
static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	WorkerShared = ShmemInitStruct("cdp_traits worker", worker_shmem_size(), &found);
	if (!found)
	{
		memset(WorkerShared, 0, worker_shmem_size());
		WorkerShared->nslots = WorkerSlots;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * worker_slot
 *		The shared slot of a listed database.  Each flag has one writer at a
 *		time (the launcher, or the job worker holding the database's lock),
 *		so no lock protects them.
 */
static CdpWorkerSlot *
worker_slot(int slot)
{
	if (WorkerShared == NULL || slot < 0 || slot >= WorkerShared->nslots)
		elog(ERROR, "cdp_traits worker slot %d does not exist", slot);
	return &WorkerShared->slots[slot];
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

/*
 * lookup_database
 *		Whether a listed database exists and accepts connections; its oid.
 *		Connected to no database, the launcher can only scan pg_database
 *		(no indexes, no caches), as the autovacuum launcher does.  Errors
 *		(none are expected) are logged and count as missing.
 */
static DatabaseState
lookup_database(const char *name, Oid *dboid)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile DatabaseState state = DATABASE_MISSING;

	*dboid = InvalidOid;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		Relation	rel;
		TableScanDesc scan;
		HeapTuple	tup;

		(void) GetTransactionSnapshot();
		rel = table_open(DatabaseRelationId, AccessShareLock);
		scan = table_beginscan_catalog(rel, 0, NULL);
		while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
		{
			Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);

			if (strcmp(NameStr(form->datname), name) != 0)
				continue;
			*dboid = form->oid;
			state = form->datallowconn ? DATABASE_OK : DATABASE_NO_CONNECTIONS;
#ifdef DATCONNLIMIT_INVALID_DB
			/* being dropped (or left half-dropped) */
			if (form->datconnlimit == DATCONNLIMIT_INVALID_DB)
				state = DATABASE_MISSING;
#endif
			break;
		}
		table_endscan(scan);
		table_close(rel, AccessShareLock);
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		state = DATABASE_MISSING;
	}
	PG_END_TRY();
	return state;
}

/*
 * launch_job_worker
 *		Start the job worker of a cycle in a database.  False if there is no
 *		background worker slot (logged once until one is found again).
 */
static bool
launch_job_worker(LauncherDb *db, Oid dboid)
{
	BackgroundWorker worker;
	CdpWorkerSlot *slot = worker_slot(db->slot);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, MyBgworkerEntry->bgw_library_name, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "cdp_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "cdp_traits worker for database %s", db->name);
	strlcpy(worker.bgw_type, "cdp_traits worker", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(db->slot);
	memcpy(worker.bgw_extra, &dboid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &db->handle))
	{
		db->handle = NULL;
		if (!slot->no_bgworker_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("cdp_traits: out of background worker slots, jobs in database \"%s\" wait",
							db->name),
					 errhint("Raise max_worker_processes: the worker needs one slot, plus one per database while its jobs run.")));
		slot->no_bgworker_logged = true;
		return false;
	}
	slot->no_bgworker_logged = false;
	return true;
}

/*
 * launcher_start_cycle
 *		Start a cycle in a database that is due, if it can run.
 */
static void
launcher_start_cycle(LauncherDb *db)
{
	CdpWorkerSlot *slot = worker_slot(db->slot);
	Oid			dboid;
	DatabaseState state = lookup_database(db->name, &dboid);

	if (state != DATABASE_OK)
	{
		if (!slot->database_missing_logged)
			ereport(LOG,
					(errcode(state == DATABASE_MISSING ? ERRCODE_UNDEFINED_DATABASE :
							 ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg(state == DATABASE_MISSING ?
							"cdp_traits: database \"%s\" does not exist, no jobs run there" :
							"cdp_traits: database \"%s\" does not accept connections, no jobs run there",
							db->name),
					 errdetail("It is listed in cdp_traits.database."),
					 errhint("The worker checks again every cdp_traits.naptime.")));
		slot->database_missing_logged = true;
		/* try again after a naptime */
		db->last_end = GetCurrentTimestamp();
		return;
	}
	if (slot->database_missing_logged)
		ereport(LOG,
				(errmsg("cdp_traits: database \"%s\" is available, jobs run there again",
						db->name)));
	slot->database_missing_logged = false;

	if (!launch_job_worker(db, dboid))
		db->last_end = GetCurrentTimestamp();
}

/*
 * cdp_launcher_main
 *		Entry point of the launcher.
 */
void
cdp_launcher_main(Datum main_arg)
{
	MemoryContext cxt;
	List	   *names;
	LauncherDb *dbs = NULL;
	int			ndbs = 0;
	ListCell   *lc;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	/* no query to cancel: a cancel must not make it exit */
	pqsignal(SIGINT, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	/* no database: shared catalogs only */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	SetConfigOption("application_name", CDP_WORKER_APPNAME, PGC_USERSET, PGC_S_SESSION);

	cxt = AllocSetContextCreate(TopMemoryContext, "cdp_traits launcher",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	if (!parse_databases(&names))
		ereport(LOG,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cdp_traits: invalid list syntax in cdp_traits.database, no jobs run"),
				 errhint("List database names separated by commas; double-quote a name that contains a comma or white space.")));
	else
	{
		dbs = palloc0(sizeof(LauncherDb) * Max(list_length(names), 1));
		foreach(lc, names)
		{
			/* the shared state has a slot for each (fixed at server start) */
			if (ndbs >= WorkerShared->nslots)
				break;
			dbs[ndbs].name = (char *) lfirst(lc);
			dbs[ndbs].slot = ndbs;
			ndbs++;
		}
	}
	elog(DEBUG1, "cdp_traits launcher started for %d database(s)", ndbs);

	for (;;)
	{
		TimestampTz now;
		long		wait_ms;
		int			i;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		wait_ms = cdp_naptime * 1000L;
		for (i = 0; i < ndbs; i++)
		{
			LauncherDb *db = &dbs[i];

			if (db->handle != NULL)
			{
				pid_t		pid;

				if (GetBackgroundWorkerPid(db->handle, &pid) != BGWH_STOPPED)
					continue;
				pfree(db->handle);
				db->handle = NULL;
				db->last_end = now;
			}
			if (!cdp_worker_enabled)
				continue;
			if (db->last_end == 0 ||
				now >= TimestampTzPlusMilliseconds(db->last_end, cdp_naptime * 1000L))
				launcher_start_cycle(db);
			else
			{
				long		secs;
				int			usecs;
				long		ms;

				TimestampDifference(now,
									TimestampTzPlusMilliseconds(db->last_end, cdp_naptime * 1000L),
									&secs, &usecs);
				ms = secs * 1000L + usecs / 1000 + 1;
				wait_ms = Min(wait_ms, ms);
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * The job worker
 * ---------------------------------------------------------------------
 */

/*
 * job_worker_lock
 *		Take this database's worker lock for the rest of the session; false
 *		if another job worker holds it.
 */
static bool
job_worker_lock(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, CDP_LOCK_WORKER);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * restore_connected
 *		Whether pg_restore (a superuser's session of this database whose
 *		application_name is pg_restore, its default) is connected: a cycle
 *		would write tables it is about to load (the runs, the toggle log) as
 *		soon as it has created the extension, and the dumped rows would then
 *		collide with the cycle's.  Only a superuser can create the extension,
 *		and so restore it; a session of another role named so is not one,
 *		and must not stop the jobs (any role that may connect could).  (A
 *		restore in one transaction shows nothing until it ends; one through
 *		psql is not recognized: see the README.)
 */
static bool
restore_connected(void)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);

		if (l != NULL && l->backendStatus.st_databaseid == MyDatabaseId &&
			l->backendStatus.st_procpid != MyProcPid &&
			strcmp(l->backendStatus.st_appname, CDP_RESTORE_APPNAME) == 0 &&
			superuser_arg(l->backendStatus.st_userid))
			return true;
	}
	return false;
}

/*
 * job_worker_start
 *		Before the jobs: take the database's worker lock, check that the
 *		extension is installed and that the database is not read-only
 *		(default_transaction_read_only; each logged once if not) and that no
 *		pg_restore is loading the database (restore_connected), and mark
 *		runs left 'running' by a crash as failed.  False if the cycle cannot
 *		run.
 */
static bool
job_worker_start(int slotno)
{
	MemoryContext cxt = CurrentMemoryContext;
	CdpWorkerSlot *slot = worker_slot(slotno);
	volatile bool ok = false;
	const char *missing;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		JobDatabaseName = MemoryContextStrdup(TopMemoryContext,
											  get_database_name(MyDatabaseId));
		if (!job_worker_lock())
			elog(DEBUG1, "cdp_traits: a previous cycle still runs in database \"%s\"",
				 JobDatabaseName);
		else if ((missing = cdp_jobs_installed()) != NULL)
		{
			if (!slot->extension_missing_logged)
				ereport(LOG,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("cdp_traits: %s is missing in database \"%s\", no jobs run there",
								missing, JobDatabaseName),
						 errdetail("The database is listed in cdp_traits.database."),
						 errhint("Run CREATE EXTENSION %s there; the worker checks again every cdp_traits.naptime.",
								 CDP_EXTENSION_NAME)));
			slot->extension_missing_logged = true;
		}
		else if (XactReadOnly)
		{
			if (!slot->read_only_logged)
				ereport(LOG,
						(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
						 errmsg("cdp_traits: database \"%s\" is read-only (default_transaction_read_only), no jobs run there",
								JobDatabaseName),
						 errdetail("The jobs write attributes, context values and cdp_traits.job_runs."),
						 errhint("Turn default_transaction_read_only off for the database; the worker checks again every cdp_traits.naptime.")));
			slot->read_only_logged = true;
		}
		else if (restore_connected())
			ereport(LOG,
					(errmsg("cdp_traits: pg_restore is connected to database \"%s\", no jobs run there until it ends",
							JobDatabaseName),
					 errdetail("A cycle would write the tables the restore is loading.")));
		else
		{
			int			n;

			if (slot->extension_missing_logged)
				ereport(LOG,
						(errmsg("cdp_traits: extension \"%s\" is installed in database \"%s\", jobs run there",
								CDP_EXTENSION_NAME, JobDatabaseName)));
			slot->extension_missing_logged = false;
			if (slot->read_only_logged)
				ereport(LOG,
						(errmsg("cdp_traits: database \"%s\" accepts writes again, jobs run there",
								JobDatabaseName)));
			slot->read_only_logged = false;

			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			n = cdp_jobs_mark_interrupted();
			SPI_finish();
			if (n > 0)
				ereport(LOG,
						(errmsg("cdp_traits: marked %d interrupted job run(s) in database \"%s\" as failed",
								n, JobDatabaseName)));
			ok = true;
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * job_worker_keep_going
 *		Between jobs: act on signals, and end the cycle if the jobs were
 *		turned off, the database was made read-only or the extension was
 *		dropped (the next cycle logs either, once), or a command on the
 *		database itself (DROP DATABASE, say) waits for us to leave.
 */
static bool
job_worker_keep_going(void)
{
	LOCKTAG		tag;
	LockAcquireResult res;
	bool		installed;

	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	if (!cdp_worker_enabled || DefaultXactReadOnly)
		return false;

	/* the lock every backend takes while connecting, held to commit */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	res = LockAcquire(&tag, RowExclusiveLock, false, true);
	/* DROP EXTENSION during the last job: the next would fail at each step */
	installed = cdp_jobs_installed() == NULL;
	CommitTransactionCommand();
	if (!installed)
		return false;
	if (res == LOCKACQUIRE_NOT_AVAIL)
	{
		ereport(LOG,
				(errmsg("cdp_traits: leaving database \"%s\" before the end of the cycle",
						JobDatabaseName),
				 errdetail("A command on the database itself (DROP DATABASE, ALTER DATABASE, CREATE DATABASE from it as template) is waiting.")));
		return false;
	}
	return true;
}

/*
 * cdp_worker_main
 *		Entry point of a job worker: one cycle of jobs in one database.
 */
void
cdp_worker_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	Oid			dboid;
	int			job;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	/* a query cancel only acts while a job runs (cdp_job_run_in_worker) */
	HOLD_CANCEL_INTERRUPTS();
	BackgroundWorkerUnblockSignals();

	/* as the bootstrap superuser; each job switches to its role */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", CDP_WORKER_APPNAME, PGC_USERSET, PGC_S_SESSION);

	if (job_worker_start(slot))
	{
		for (job = 0; job < cdp_job_count(); job++)
		{
			if (!job_worker_keep_going())
				break;
			cdp_job_run_in_worker(job);
		}
	}
	proc_exit(0);
}
