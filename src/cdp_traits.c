/*-------------------------------------------------------------------------
 *
 * cdp_traits.c
 *		Module entry point: library magic and _PG_init.
 *
 * The library works both preloaded (shared_preload_libraries) and loaded on
 * demand by the first call of one of its SQL functions.  Only the background
 * worker (worker.c) needs preloading.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(cdp_traits_version);
PG_FUNCTION_INFO_V1(cdp_traits_claim_schema);

/*
 * _PG_init
 *		Define the configuration variables and install the planner hook;
 *		when preloaded, also set up the background worker.  Called once per
 *		process when the library is loaded.
 */
void
_PG_init(void)
{
	cdp_define_gucs();
	stitch_register_callbacks();
	cdp_plan_estimates_init();
	if (process_shared_preload_libraries_in_progress)
		cdp_worker_init();
}

/*
 * cdp_traits_version
 *		SQL-callable: the version this library was built as.
 */
Datum
cdp_traits_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CDP_VERSION));
}

/*
 * cdp_traits_claim_schema
 *		Called once by the install script.  When CREATE EXTENSION created the
 *		schema cdp_traits itself (it did not exist before), make the schema
 *		depend on the extension so that DROP EXTENSION removes it again.  A
 *		schema the user created beforehand is left alone.  Only the 0.1.0
 *		install script calls it: the dependency makes a loop pg_dump cannot
 *		order (the extension needs its schema first), so the install
 *		script no longer calls it (an upgrade from 0.1.0 must delete that
 *		pg_depend row).
 */
Datum
cdp_traits_claim_schema(PG_FUNCTION_ARGS)
{
	Oid			nspid;
	Oid			extid;
	HeapTuple	tup;
	bool		created_now;
	ObjectAddress schema;
	ObjectAddress ext;

	if (!creating_extension)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cdp_traits_claim_schema() may only be called by CREATE EXTENSION")));

	nspid = get_namespace_oid(CDP_SCHEMA_NAME, false);
	extid = CurrentExtensionObject;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nspid);
	created_now = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data));
	ReleaseSysCache(tup);

	if (created_now)
	{
		ObjectAddressSet(schema, NamespaceRelationId, nspid);
		ObjectAddressSet(ext, ExtensionRelationId, extid);
		recordDependencyOn(&schema, &ext, DEPENDENCY_AUTO);
	}
	PG_RETURN_BOOL(created_now);
}
